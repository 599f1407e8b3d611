//! `bastion-kernels`: the device code of Bastion's GPU backend.
//!
//! - [`source`]: the CUDA C sources, embedded. The device math lives in headers written for both
//!   sides (`BK_HD` expands to `__host__ __device__` under CUDA and NVRTC, to nothing on the
//!   host), so the exact code a GPU runs is also compiled into the test binaries and checked on
//!   the CPU.
//! - [`host`]: that math built for the host with the `cc` crate: the ed25519 verification rule
//!   (ZIP-215) as the kernel implements it, callable from Rust.
//! - [`risk`]: the portfolio-risk kernel's math (the exchange's scenario-grid portfolio margin,
//!   bit-identical i128 arithmetic) built for the host, behind a validated safe API.
//! - [`nvrtc`]: runtime compilation of the sources to PTX and cubins with NVRTC, loaded
//!   dynamically (`libnvrtc.so.12`): the crate builds and runs with no CUDA toolkit and no GPU.

pub mod host;
pub mod nvrtc;
pub mod risk;
pub mod source;
