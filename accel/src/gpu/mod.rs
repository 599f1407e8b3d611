//! The GPU backend: ed25519 (ZIP-215) verification on an NVIDIA GPU, and the launcher of the
//! portfolio-risk kernel.
//!
//! The device code is `bastion-kernels`' CUDA C, compiled at run time with NVRTC for the GPU
//! found (a cubin for `sm_XY`, cached on disk per architecture; PTX if the cubin cannot be
//! built or loaded) and driven through CUDA's driver API with `cudarc`, which loads `libcuda`
//! at run time. Nothing here needs the CUDA toolkit or a GPU to build; without them every entry
//! point returns [`AccelError::Unavailable`] saying what is missing.
//!
//! # Guards
//! `cudarc` panics at its first driver call when `libcuda` cannot be loaded. So every way in
//! ([`gpu_probe`], [`GpuVerifier::open`], [`GpuRisk::open`]) first loads the driver library
//! itself ([`DRIVER_LIBRARIES`], with `libloading`) and returns a clear error when it is absent,
//! and every call into `cudarc` runs under `catch_unwind` as a second guard.

mod risk;
mod verify;

pub use risk::{GpuRisk, RISK_THREADS_PER_BLOCK, RiskTiming};
pub use verify::{CHUNK_ITEMS, CHUNK_MESSAGE_BYTES, GpuVerifier, HashOn, THREADS_PER_BLOCK, challenge};

use crate::{AccelError, Backend};
use bastion_kernels::nvrtc::{KernelCache, Nvrtc, NvrtcError, PIP_PACKAGE, Target};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, DriverError, sys};
use cudarc::nvrtc::Ptx;
use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

/// The NVIDIA driver library names tried, in order.
pub const DRIVER_LIBRARIES: [&str; 2] = ["libcuda.so.1", "libcuda.so"];

/// What the probe found on one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// The device ordinal (as CUDA numbers the visible devices).
    pub ordinal: usize,
    /// The device name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Compute capability `(major, minor)`, e.g. `(9, 0)`.
    pub compute_capability: (u32, u32),
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Device memory in bytes.
    pub total_memory: usize,
    /// The newest CUDA version the driver supports `(major, minor)`, e.g. `(12, 9)`; `(0, 0)` if
    /// the driver did not say.
    pub driver_cuda: (u32, u32),
    /// The driver library that was loaded.
    pub driver_library: &'static str,
}

impl GpuInfo {
    /// The architecture number: compute capability major times ten plus minor, e.g. 90.
    pub fn arch(&self) -> u32 {
        self.compute_capability.0.saturating_mul(10).saturating_add(self.compute_capability.1)
    }
}

impl fmt::Display for GpuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GPU {}: {} (sm_{}, {} SMs, {:.1} GiB, driver for CUDA {}.{})",
            self.ordinal,
            self.name,
            self.arch(),
            self.sm_count,
            self.total_memory as f64 / f64::from(1u32 << 30),
            self.driver_cuda.0,
            self.driver_cuda.1
        )
    }
}

/// An `Unavailable` error of the GPU backend.
pub(crate) fn unavailable(reason: impl Into<String>) -> AccelError {
    AccelError::Unavailable { backend: Backend::Gpu, reason: reason.into() }
}

/// Maps a driver error of `call` to an `Unavailable` error.
pub(crate) fn cuda_err(call: &'static str) -> impl FnOnce(DriverError) -> AccelError {
    move |e| unavailable(format!("CUDA {call} failed: {e}"))
}

/// The text of a panic payload.
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `f` (which calls into `cudarc`) and turns a panic into an `Unavailable` error.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, AccelError>) -> Result<T, AccelError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(unavailable(format!("{what}: the CUDA bindings panicked: {}", panic_text(payload.as_ref()))))
    })
}

/// The driver library, loaded once and kept for the life of the process (`cudarc` opens its own
/// handle to the same library; ours only has to prove it can be loaded).
static DRIVER: OnceLock<(libloading::Library, &'static str)> = OnceLock::new();

/// Loads the NVIDIA driver library, or says clearly that it is absent. Never panics.
pub(crate) fn driver_library() -> Result<&'static str, AccelError> {
    if let Some((_, name)) = DRIVER.get() {
        return Ok(name);
    }
    let mut tried = Vec::new();
    for name in DRIVER_LIBRARIES {
        // SAFETY: loading runs the library's initialisers; libcuda's are those of the NVIDIA user
        // mode driver, which have no preconditions on the caller (any process may load it).
        // No symbol is taken from this handle.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => {
                let (_, name) = DRIVER.get_or_init(|| (lib, name));
                return Ok(name);
            }
            // libloading's message names the file: "libcuda.so.1: cannot open shared object file".
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(unavailable(format!(
        "no NVIDIA driver: libcuda.so.1 not found ({}); install the NVIDIA driver, or use scalar, \
         batch, parallel or auto",
        tried.join("; ")
    )))
}

/// Opens `ordinal`'s primary context and reads what [`GpuInfo`] holds.
pub(crate) fn open_device(ordinal: usize) -> Result<(Arc<CudaContext>, GpuInfo), AccelError> {
    let driver_library = driver_library()?;
    guarded("opening the GPU", || {
        let count = CudaContext::device_count().map_err(cuda_err("cuInit/cuDeviceGetCount"))?;
        let count = usize::try_from(count).unwrap_or(0);
        if count == 0 {
            return Err(unavailable(format!("the NVIDIA driver ({driver_library}) sees no GPU")));
        }
        if ordinal >= count {
            return Err(unavailable(format!(
                "GPU {ordinal} does not exist: the driver sees {count} GPU(s), ordinals 0 to {}",
                count - 1
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_err("cuDevicePrimaryCtxRetain"))?;
        let name = ctx.name().map_err(cuda_err("cuDeviceGetName"))?;
        let (major, minor) = ctx.compute_capability().map_err(cuda_err("cuDeviceGetAttribute"))?;
        let sm_count = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(cuda_err("cuDeviceGetAttribute"))?;
        let total_memory = ctx.total_mem().map_err(cuda_err("cuDeviceTotalMem"))?;
        let mut version: std::ffi::c_int = 0;
        // SAFETY: `cuDriverGetVersion` writes one int through the valid pointer it is given and has
        // no other precondition; the driver library is loaded (checked above).
        let rc = unsafe { sys::cuDriverGetVersion(&mut version) };
        let driver_cuda = match (rc, u32::try_from(version)) {
            (sys::CUresult::CUDA_SUCCESS, Ok(v)) => (v / 1000, (v % 1000) / 10),
            _ => (0, 0),
        };
        let info = GpuInfo {
            ordinal,
            name,
            compute_capability: (u32::try_from(major).unwrap_or(0), u32::try_from(minor).unwrap_or(0)),
            sm_count: u32::try_from(sm_count).unwrap_or(0),
            total_memory,
            driver_cuda,
            driver_library,
        };
        Ok((ctx, info))
    })
}

/// Probes GPU `ordinal`: loads the driver, opens the device's context and reports what it is.
/// Without a driver or a GPU this is a clear [`AccelError::Unavailable`], never a panic.
pub fn gpu_probe(ordinal: usize) -> Result<GpuInfo, AccelError> {
    open_device(ordinal).map(|(_, info)| info)
}

/// Where NVRTC, the run-time CUDA C compiler the GPU backend needs, was found: `Ok("NVRTC
/// 12.9 (PATH)")`, or why it was not (with how to install it).
pub fn nvrtc_status() -> Result<String, String> {
    match Nvrtc::load() {
        Ok(n) => Ok(format!("NVRTC {}.{} ({})", n.version().0, n.version().1, n.path())),
        Err(e) => Err(nvrtc_unavailable(&e).to_string()),
    }
}

/// The directory compiled kernels are cached in (per architecture), if this host has one.
pub fn kernel_cache_dir() -> Option<std::path::PathBuf> {
    KernelCache::default_dir()
}

/// A kernel to compile and load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KernelSpec<'a> {
    /// The CUDA C source.
    pub source: &'a str,
    /// The program name (diagnostics and cache file name).
    pub program: &'a str,
    /// In-memory headers `(include name, contents)`.
    pub headers: &'a [(&'a str, &'a str)],
    /// NVRTC options beyond the defaults and the architecture.
    pub options: &'a [&'a str],
    /// The `extern "C"` kernel to load.
    pub kernel: &'a str,
}

/// A kernel loaded on a device.
#[derive(Debug)]
pub(crate) struct LoadedKernel {
    /// Keeps the module loaded (the function also holds it).
    #[allow(dead_code)]
    pub module: Arc<CudaModule>,
    /// The kernel.
    pub function: CudaFunction,
    /// What was compiled and loaded.
    pub target: Target,
}

/// The targets tried for a device of architecture `arch`, in order: its cubin, its PTX, and for
/// an architecture newer than 9.0 also `compute_90` PTX (JIT-compiled by the driver) for an
/// NVRTC that does not know the device.
fn targets(arch: u32) -> Vec<Target> {
    let mut t = vec![Target::Cubin { arch }, Target::Ptx { arch }];
    if arch > 90 {
        t.push(Target::Ptx { arch: 90 });
    }
    t
}

fn nvrtc_unavailable(e: &NvrtcError) -> AccelError {
    unavailable(format!(
        "the GPU kernels are compiled at start-up with NVRTC, which is missing: {e}\n(set \
         BASTION_NVRTC to libnvrtc.so.12 or its directory, or install the pip wheel \
         {PIP_PACKAGE} into .venv)"
    ))
}

/// Compiles `spec` for `target`, through the on-disk kernel cache when there is one.
fn compile(nvrtc: &Nvrtc, spec: &KernelSpec<'_>, target: Target) -> Result<Vec<u8>, NvrtcError> {
    let direct =
        || nvrtc.compile(spec.source, spec.program, spec.headers, target, spec.options).map(|c| c.code);
    match KernelCache::open_default() {
        Ok(cache) => {
            match cache.get_or_compile(nvrtc, spec.source, spec.program, spec.headers, target, spec.options) {
                Ok(code) => Ok(code),
                // The cache directory is not writable: compile without it.
                Err(NvrtcError::Io { .. }) => direct(),
                Err(e) => Err(e),
            }
        }
        Err(_) => direct(),
    }
}

/// Loads compiled code into the context and finds the kernel.
fn load(
    ctx: &Arc<CudaContext>,
    code: Vec<u8>,
    target: Target,
    kernel: &str,
) -> Result<(Arc<CudaModule>, CudaFunction), String> {
    let image = match target {
        Target::Cubin { .. } => Ptx::from_binary(code),
        Target::Ptx { .. } => {
            // cudarc turns PTX text into a C string: it must have no NUL inside.
            if code.contains(&0) {
                return Err("the PTX contains a NUL byte".to_owned());
            }
            Ptx::from_src(String::from_utf8(code).map_err(|e| format!("the PTX is not UTF-8: {e}"))?)
        }
    };
    let module = ctx.load_module(image).map_err(|e| format!("cuModuleLoadData: {e}"))?;
    let function = module.load_function(kernel).map_err(|e| format!("cuModuleGetFunction({kernel}): {e}"))?;
    Ok((module, function))
}

/// Compiles `spec` for the device and loads it: the cubin first, PTX if that fails.
pub(crate) fn load_kernel(
    ctx: &Arc<CudaContext>,
    info: &GpuInfo,
    spec: &KernelSpec<'_>,
) -> Result<LoadedKernel, AccelError> {
    guarded("loading the GPU kernel", || {
        let nvrtc = Nvrtc::load().map_err(|e| nvrtc_unavailable(&e))?;
        let mut failures = Vec::new();
        for target in targets(info.arch()) {
            let code = match compile(&nvrtc, spec, target) {
                Ok(code) => code,
                Err(e) => {
                    failures.push(format!("{target}: {e}"));
                    continue;
                }
            };
            match load(ctx, code, target, spec.kernel) {
                Ok((module, function)) => return Ok(LoadedKernel { module, function, target }),
                Err(e) => failures.push(format!("{target}: {e}")),
            }
        }
        Err(unavailable(format!(
            "could not build {} ({}) for {info} with NVRTC {}.{} ({}):\n{}",
            spec.kernel,
            spec.program,
            nvrtc.version().0,
            nvrtc.version().1,
            nvrtc.path(),
            failures.join("\n")
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_try_the_cubin_then_ptx() {
        assert_eq!(targets(90), vec![Target::Cubin { arch: 90 }, Target::Ptx { arch: 90 }]);
        assert_eq!(targets(86), vec![Target::Cubin { arch: 86 }, Target::Ptx { arch: 86 }]);
        assert_eq!(
            targets(100),
            vec![Target::Cubin { arch: 100 }, Target::Ptx { arch: 100 }, Target::Ptx { arch: 90 }]
        );
    }

    #[test]
    fn info_display_is_one_line() {
        let info = GpuInfo {
            ordinal: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            compute_capability: (9, 0),
            sm_count: 132,
            total_memory: 85_029_158_912,
            driver_cuda: (12, 9),
            driver_library: "libcuda.so.1",
        };
        assert_eq!(info.arch(), 90);
        let s = info.to_string();
        assert_eq!(s, "GPU 0: NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.2 GiB, driver for CUDA 12.9)");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn missing_nvrtc_says_how_to_get_it() {
        let e = nvrtc_unavailable(&NvrtcError::NotFound { tried: vec!["libnvrtc.so.12: not found".into()] });
        let text = e.to_string();
        assert!(matches!(e, AccelError::Unavailable { backend: Backend::Gpu, .. }));
        for needle in ["NVRTC", "BASTION_NVRTC", "nvidia-cuda-nvrtc-cu12", "libnvrtc.so.12"] {
            assert!(text.contains(needle), "{needle} missing from: {text}");
        }
    }

    #[test]
    fn panics_become_errors() {
        #[allow(clippy::panic)]
        let r: Result<(), AccelError> = guarded("testing", || panic!("boom"));
        match r {
            Err(AccelError::Unavailable { backend: Backend::Gpu, reason }) => {
                assert!(reason.contains("testing") && reason.contains("boom"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
