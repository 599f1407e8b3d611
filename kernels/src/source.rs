//! The CUDA C sources, embedded so the binary needs no files at run time.
//!
//! NVRTC has no file system access for includes here: the kernel source is compiled with
//! [`HEADERS`] passed as in-memory include files (name, contents), and the kernel includes them
//! by these names (`#include "bk_ed25519.cuh"`). The same headers are compiled for the host by
//! `build.rs` (see [`crate::host`]), so the CPU tests check the very code the GPU runs.

/// Every device header: its include name and its contents.
pub const HEADERS: &[(&str, &str)] = &[
    ("bk_common.cuh", include_str!("../cuda/bk_common.cuh")),
    ("bk_sha512.cuh", include_str!("../cuda/bk_sha512.cuh")),
    ("bk_fe25519.cuh", include_str!("../cuda/bk_fe25519.cuh")),
    ("bk_ge25519.cuh", include_str!("../cuda/bk_ge25519.cuh")),
    ("bk_sc25519.cuh", include_str!("../cuda/bk_sc25519.cuh")),
    ("bk_ed25519.cuh", include_str!("../cuda/bk_ed25519.cuh")),
];

/// The ed25519 (ZIP-215) batch verification kernel source; compile it with [`HEADERS`].
///
/// It defines `extern "C" __global__ void bk_ed25519_verify_batch(const u8* pks, const u8* sigs,
/// const u8* msgs, const u32* msg_offsets, u32 n, u8* out)`: one thread per item, item `i` with
/// public key `pks[32 i..32 i + 32]`, signature `sigs[64 i..64 i + 64]` and message
/// `msgs[msg_offsets[i]..msg_offsets[i + 1]]` (`msg_offsets` has `n + 1` entries); `out[i]` is 1
/// for a valid signature and 0 otherwise.
pub const ED25519_VERIFY: &str = include_str!("../cuda/ed25519_verify.cu");

/// The name of the kernel in [`ED25519_VERIFY`] (declared `extern "C"`, so unmangled).
pub const ED25519_KERNEL_NAME: &str = "bk_ed25519_verify_batch";
