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
    ("bk_ed25519_btable.cuh", include_str!("../cuda/bk_ed25519_btable.cuh")),
    ("bk_ge25519.cuh", include_str!("../cuda/bk_ge25519.cuh")),
    ("bk_sc25519.cuh", include_str!("../cuda/bk_sc25519.cuh")),
    ("bk_ed25519.cuh", include_str!("../cuda/bk_ed25519.cuh")),
    ("bk_risk.cuh", include_str!("../cuda/bk_risk.cuh")),
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

/// The second kernel in [`ED25519_VERIFY`]: `bk_ed25519_verify_prehashed_batch(const u8* pks,
/// const u8* sigs, const u8* ks, u32 n, u8* out)`, the same verification with each item's
/// challenge `k = SHA-512(R || A || M) mod L` computed by the host (`ks[32 i..32 i + 32]`).
pub const ED25519_PREHASHED_KERNEL_NAME: &str = "bk_ed25519_verify_prehashed_batch";

/// The portfolio-risk (scenario-grid reduction) kernel source; compile it with [`HEADERS`] and
/// [`PORTFOLIO_RISK_OPTIONS`].
///
/// It defines `extern "C" __global__ void bk_portfolio_risk(const i64* diffs, const i64* lots,
/// const u8* market_ok, const u32* acct_groups, const u32* group_pos, const u32* pos_market,
/// const i64* pos_size, const u8* acct_ok, i64 mm_ppm, u32 n_accounts, __int128* out_worst,
/// __int128* out_mm, u8* out_status)`: one thread per account, launched with up to 256 threads
/// per block (128 recommended). See [`crate::risk`] for the layout, its validation and the
/// semantics; `out_worst` and `out_mm` need 16-byte alignment.
pub const PORTFOLIO_RISK: &str = include_str!("../cuda/portfolio_risk.cu");

/// The name of the kernel in [`PORTFOLIO_RISK`] (declared `extern "C"`, so unmangled).
pub const PORTFOLIO_RISK_KERNEL_NAME: &str = "bk_portfolio_risk";

/// The NVRTC options [`PORTFOLIO_RISK`] needs beyond [`crate::nvrtc::DEFAULT_OPTIONS`] (pass them
/// as `extra_options`): `__int128` in device code. `DEFAULT_OPTIONS` already carries it; it is
/// repeated here so the kernel states its own requirement (NVRTC accepts the flag twice).
pub const PORTFOLIO_RISK_OPTIONS: &[&str] = &["--device-int128"];

/// Threads per block the launcher should use for [`PORTFOLIO_RISK`]; the kernel's
/// `__launch_bounds__` allows at most [`PORTFOLIO_RISK_MAX_THREADS`].
pub const PORTFOLIO_RISK_THREADS: u32 = 128;

/// The kernel's `__launch_bounds__` maximum: a launch with more threads per block fails.
pub const PORTFOLIO_RISK_MAX_THREADS: u32 = 256;
