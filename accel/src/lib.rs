//! `bastion-accel`: ed25519 signature verification backends behind one interface, every one of
//! them implementing exactly one rule.
//!
//! # The rule: ZIP-215
//! Client transactions are ed25519-signed and verified under ZIP-215, as `ed25519-zebra`
//! implements it, on every backend (a backend that disagrees on one input splits the chain):
//! - the public key `A` and the signature's `R` must decode to curve points; non-canonical
//!   encodings of the y coordinate (y >= p) are *accepted*, and small-order points are
//!   *accepted* (no small-order blacklist);
//! - the scalar `S` must be canonical (`S < L`), otherwise the signature is rejected;
//! - `k = SHA-512(R || A || M)` reduced mod `L`, and the check is the *cofactored* equation
//!   `[8][S]B = [8]R + [8][k]A`.
//!
//! Strict RFC 8032 verification differs on non-canonical encodings and small-order components;
//! on Wycheproof's ed25519 vectors ZIP-215 accepts exactly the cases marked valid plus tcId 151
//! (R encodes y = 1 with the sign bit of x set). Because the batch equation is the cofactored
//! single equation summed with random 128-bit weights, single and batch verification accept the
//! same set (up to a 2^-128 chance over the weights, which come from the OS, unpredictable to an
//! attacker).
//!
//! # Backends
//! - `scalar`: one signature at a time.
//! - `batch`: one multi-scalar batch per call on the calling core; a failing batch is bisected
//!   until exactly the invalid items are found, so one bad signature never rejects its
//!   neighbours.
//! - `parallel`: the batch split into chunks verified on all cores (rayon), each chunk as
//!   `batch`.
//! - `gpu`: an NVIDIA GPU ([`GpuVerifier`]): the CUDA C kernel of `bastion-kernels` (the same
//!   ZIP-215 code its host build checks against zebra), compiled at start-up with NVRTC for the
//!   device (cached on disk), driven through CUDA's driver API (`cudarc`, loaded at run time).
//!   Batches are split into chunks of [`CHUNK_ITEMS`] processed on two streams, so one chunk's
//!   copy-in overlaps the previous one's kernel. Any CUDA error during a call sends that call to
//!   `parallel` (counted by [`GpuVerifier::fallbacks`]); without a driver, a GPU or NVRTC, asking
//!   for `gpu` is a clear [`AccelError::Unavailable`] ([`gpu_probe`] says what is there).
//!
//! [`calibrate`] measures the three CPU backends at start-up, and the GPU against `parallel` when
//! one opens; [`Auto`] dispatches each call by its size; configuration chooses with
//! [`Selection`]: `auto`, or a backend's name as an override.
//!
//! [`GpuRisk`] runs `bastion-kernels`' portfolio-risk kernel on the GPU.

mod backend;
mod cache;
pub mod gpu;
mod item;
mod stage;

pub use backend::{
    Auto, Backend, Calibration, GPU_CALIBRATION_SIZES, Selection, Verifier, calibrate, curve_backend,
    verifier, verify_one,
};
pub use cache::{CacheKey, VerifiedCache};
pub use gpu::{
    CHUNK_ITEMS, GpuInfo, GpuRisk, GpuVerifier, HashOn, RiskTiming, challenge, gpu_probe, kernel_cache_dir,
    nvrtc_status,
};
pub use item::{OwnedSigItem, PUBLIC_KEY_LEN, SIGNATURE_LEN, SigItem};
pub use stage::{Outcome, StageConfig, StageCounters, VerifyStage};

/// Everything that can go wrong before a signature is checked. An invalid signature is not an
/// error: it is a `false` verdict.
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    #[error("{field}: not hex ({reason})")]
    Hex { field: &'static str, reason: String },
    #[error("{field}: expected {expected} bytes, got {got}")]
    Length { field: &'static str, expected: usize, got: usize },
    #[error(
        "unknown backend '{0}'; backends are scalar, batch, parallel and gpu (configuration also takes auto)"
    )]
    UnknownBackend(String),
    #[error("backend {backend} is unavailable: {reason}")]
    Unavailable { backend: Backend, reason: String },
    #[error("invalid verify stage configuration: {0}")]
    Config(String),
    /// A portfolio-risk input [`GpuRisk::run`] refused before touching the GPU.
    #[error("portfolio-risk input refused: {0}")]
    RiskInput(#[from] bastion_kernels::risk::RiskError),
}
