//! Runtime compilation with NVRTC.
//!
//! [`Nvrtc`] is `libnvrtc.so.12`, loaded with `dlopen` at run time (never linked): a machine
//! without it builds, runs and gets a [`NvrtcError::NotFound`] that says where it looked and how
//! to install it. NVRTC needs no GPU: it compiles CUDA C to PTX for a virtual architecture
//! (`compute_90`) or to a cubin for a real one (`sm_90`).
//!
//! [`KernelCache`] keeps compiled kernels on disk, keyed by architecture and a hash of
//! everything that determines the output (source, headers, options, NVRTC version).

use std::ffi::{CStr, CString, OsStr, c_char, c_int, c_void};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The pip package that carries NVRTC, at the version Bastion is tested with.
pub const PIP_PACKAGE: &str = "nvidia-cuda-nvrtc-cu12==12.9.86";

/// The environment variable naming NVRTC: a path to `libnvrtc.so*` or to the directory holding it.
pub const ENV_VAR: &str = "BASTION_NVRTC";

/// Options passed to every compilation, before the architecture and the caller's own options.
///
/// `--device-int128` enables `unsigned __int128` in device code.
pub const DEFAULT_OPTIONS: &[&str] = &["--std=c++17", "--device-int128"];

/// The stack of the thread each compilation runs on (reserved, touched only as used).
pub const COMPILE_STACK_BYTES: usize = 256 << 20;

/// `nvrtcResult`'s `NVRTC_ERROR_COMPILATION`.
const NVRTC_ERROR_COMPILATION: c_int = 6;

/// An error from loading NVRTC, compiling with it, or the kernel cache.
#[derive(Debug, thiserror::Error)]
pub enum NvrtcError {
    /// No usable NVRTC library was found.
    #[error(
        "NVRTC (libnvrtc.so.12) not found. Tried:\n{}\nInstall it with \
         `python3 -m venv .venv && .venv/bin/pip install {PIP_PACKAGE}`, \
         or set {ENV_VAR} to the libnvrtc.so.12 file or the directory holding it.",
        .tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n")
    )]
    NotFound {
        /// Every place tried, each with why it was not used.
        tried: Vec<String>,
    },
    /// An NVRTC call other than the compilation itself failed.
    #[error("NVRTC {call} failed: {message} (nvrtcResult {code})")]
    Api {
        /// The NVRTC function.
        call: &'static str,
        /// The `nvrtcResult` it returned.
        code: i32,
        /// NVRTC's description of `code`.
        message: String,
    },
    /// The source did not compile; `log` is NVRTC's full program log.
    #[error("NVRTC compilation failed:\n{log}")]
    Compile {
        /// The program log (file, line and message of every diagnostic).
        log: String,
    },
    /// A string handed to NVRTC contains a NUL byte.
    #[error("{what} contains a NUL byte")]
    InteriorNul {
        /// Which input (source, name, header or option).
        what: String,
    },
    /// Reading or writing the kernel cache failed.
    #[error("kernel cache {}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No cache directory: neither `XDG_CACHE_HOME` nor `HOME` is set.
    #[error("no kernel cache directory: neither XDG_CACHE_HOME nor HOME is set")]
    NoCacheDir,
}

/// What to compile to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// PTX for the virtual architecture `compute_<arch>` (e.g. `90`): JIT-compiled by the driver.
    Ptx {
        /// Compute capability times ten, e.g. 90.
        arch: u32,
    },
    /// A cubin (ELF) for the real architecture `sm_<arch>` (e.g. `90`), compiled by NVRTC itself.
    Cubin {
        /// Compute capability times ten, e.g. 90.
        arch: u32,
    },
}

impl Target {
    /// The architecture number (e.g. 90).
    pub fn arch(self) -> u32 {
        match self {
            Target::Ptx { arch } | Target::Cubin { arch } => arch,
        }
    }

    /// The architecture name: `compute_90` for PTX, `sm_90` for a cubin.
    pub fn arch_name(self) -> String {
        match self {
            Target::Ptx { arch } => format!("compute_{arch}"),
            Target::Cubin { arch } => format!("sm_{arch}"),
        }
    }

    /// The file extension of the output: `ptx` or `cubin`.
    pub fn extension(self) -> &'static str {
        match self {
            Target::Ptx { .. } => "ptx",
            Target::Cubin { .. } => "cubin",
        }
    }

    /// The NVRTC option selecting the architecture: `-arch=compute_90` or `-arch=sm_90`.
    pub fn arch_option(self) -> String {
        format!("-arch={}", self.arch_name())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arch_name())
    }
}

/// A compiled program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// PTX text (without NVRTC's terminating NUL: append one before handing it to the driver as
    /// a C string) or cubin bytes (an ELF image).
    pub code: Vec<u8>,
    /// NVRTC's program log: warnings, or empty.
    pub log: String,
    /// What was compiled to.
    pub target: Target,
}

type Program = *mut c_void;
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;
type CreateFn = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type CompileFn = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
type SizeFn = unsafe extern "C" fn(Program, *mut usize) -> c_int;
type GetFn = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
type DestroyFn = unsafe extern "C" fn(*mut Program) -> c_int;

/// The NVRTC entry points used, copied out of the library (valid while it stays loaded).
#[derive(Debug, Clone, Copy)]
struct Api {
    version: VersionFn,
    get_error_string: ErrorStringFn,
    create_program: CreateFn,
    compile_program: CompileFn,
    get_program_log_size: SizeFn,
    get_program_log: GetFn,
    get_ptx_size: SizeFn,
    get_ptx: GetFn,
    get_cubin_size: SizeFn,
    get_cubin: GetFn,
    destroy_program: DestroyFn,
}

impl Api {
    fn resolve(lib: &libloading::Library) -> Result<Api, String> {
        fn sym<T: Copy>(lib: &libloading::Library, name: &str) -> Result<T, String> {
            // SAFETY: every `T` this is called with below is the exact C signature of the symbol
            // `name` in the NVRTC 12 API (nvrtc.h); the copied-out pointer is used only while
            // `lib` stays loaded, which `Nvrtc` guarantees by owning the library.
            unsafe { lib.get::<T>(name.as_bytes()) }.map(|s| *s).map_err(|e| format!("missing {name}: {e}"))
        }
        Ok(Api {
            version: sym(lib, "nvrtcVersion")?,
            get_error_string: sym(lib, "nvrtcGetErrorString")?,
            create_program: sym(lib, "nvrtcCreateProgram")?,
            compile_program: sym(lib, "nvrtcCompileProgram")?,
            get_program_log_size: sym(lib, "nvrtcGetProgramLogSize")?,
            get_program_log: sym(lib, "nvrtcGetProgramLog")?,
            get_ptx_size: sym(lib, "nvrtcGetPTXSize")?,
            get_ptx: sym(lib, "nvrtcGetPTX")?,
            get_cubin_size: sym(lib, "nvrtcGetCUBINSize")?,
            get_cubin: sym(lib, "nvrtcGetCUBIN")?,
            destroy_program: sym(lib, "nvrtcDestroyProgram")?,
        })
    }

    fn error(&self, call: &'static str, code: c_int) -> NvrtcError {
        // SAFETY: nvrtcGetErrorString accepts any value and returns a pointer to a static
        // NUL-terminated string (or null, checked).
        let ptr = unsafe { (self.get_error_string)(code) };
        let message = if ptr.is_null() {
            "unknown error".to_owned()
        } else {
            // SAFETY: non-null, NUL-terminated and static per the NVRTC API.
            unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
        };
        NvrtcError::Api { call, code, message }
    }

    fn check(&self, call: &'static str, code: c_int) -> Result<(), NvrtcError> {
        if code == 0 { Ok(()) } else { Err(self.error(call, code)) }
    }
}

/// An NVRTC program, destroyed when dropped (on every path out of [`Nvrtc::compile`]).
struct ProgramGuard<'a> {
    api: &'a Api,
    prog: Program,
}

impl Drop for ProgramGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: `prog` was created by nvrtcCreateProgram and is destroyed only here, once.
        unsafe { (self.api.destroy_program)(&mut self.prog) };
    }
}

impl ProgramGuard<'_> {
    /// Reads one of the program's outputs (log, PTX, cubin) with its size/get function pair.
    fn read(
        &self,
        size_name: &'static str,
        size: SizeFn,
        get_name: &'static str,
        get: GetFn,
    ) -> Result<Vec<u8>, NvrtcError> {
        let mut len = 0usize;
        // SAFETY: `prog` is a live program and `len` a valid out-pointer.
        self.api.check(size_name, unsafe { size(self.prog, &mut len) })?;
        let mut buf = vec![0u8; len];
        if len > 0 {
            // SAFETY: `buf` holds exactly the `len` bytes NVRTC reported it will write.
            self.api.check(get_name, unsafe { get(self.prog, buf.as_mut_ptr().cast()) })?;
        }
        Ok(buf)
    }

    fn log(&self) -> Result<String, NvrtcError> {
        let buf = self.read(
            "nvrtcGetProgramLogSize",
            self.api.get_program_log_size,
            "nvrtcGetProgramLog",
            self.api.get_program_log,
        )?;
        Ok(String::from_utf8_lossy(strip_nul(&buf)).into_owned())
    }
}

fn strip_nul(buf: &[u8]) -> &[u8] {
    let end = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &buf[..end]
}

fn cstring(what: impl Into<String>, s: &str) -> Result<CString, NvrtcError> {
    CString::new(s).map_err(|_| NvrtcError::InteriorNul { what: what.into() })
}

/// The NVRTC library, loaded dynamically.
pub struct Nvrtc {
    api: Api,
    version: (i32, i32),
    path: String,
    // Last: the entry points in `api` stay valid while this is loaded.
    _lib: libloading::Library,
}

impl fmt::Debug for Nvrtc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nvrtc").field("path", &self.path).field("version", &self.version).finish()
    }
}

impl Nvrtc {
    /// Finds and loads NVRTC. Searched, in order: `$BASTION_NVRTC` (the library or its
    /// directory); the `nvidia/cuda_nvrtc/lib` of the pip package in the virtual environments
    /// `$VIRTUAL_ENV`, `.venv`, `../.venv`, `target/nvrtc-venv`, `../target/nvrtc-venv` (relative
    /// to the working directory) and this crate's workspace `target/nvrtc-venv`; a CUDA toolkit's
    /// `lib64` (`$CUDA_HOME`, `$CUDA_PATH`, `/usr/local/cuda`); then the system loader's
    /// `libnvrtc.so.12`, `libnvrtc.so.13` and `libnvrtc.so`. Never panics;
    /// [`NvrtcError::NotFound`] lists every place tried.
    pub fn load() -> Result<Nvrtc, NvrtcError> {
        let mut tried = Vec::new();
        for candidate in candidates(&mut tried) {
            match Nvrtc::load_from(&candidate) {
                Ok(nvrtc) => return Ok(nvrtc),
                Err(reason) => tried.push(format!("{}: {reason}", candidate.display())),
            }
        }
        Err(NvrtcError::NotFound { tried })
    }

    /// Loads NVRTC from exactly `path` (a file path, or a bare name for the system loader).
    pub fn load_path(path: impl AsRef<OsStr>) -> Result<Nvrtc, NvrtcError> {
        let path = PathBuf::from(path.as_ref());
        Nvrtc::load_from(&path)
            .map_err(|reason| NvrtcError::NotFound { tried: vec![format!("{}: {reason}", path.display())] })
    }

    fn load_from(path: &Path) -> Result<Nvrtc, String> {
        // SAFETY: loading runs the library's initialisers; libnvrtc's are those of an ordinary
        // C++ shared library with no preconditions on the caller.
        let lib = unsafe { libloading::Library::new(path.as_os_str()) }.map_err(|e| e.to_string())?;
        let api = Api::resolve(&lib)?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        let rc = unsafe { (api.version)(&mut major, &mut minor) };
        if rc != 0 {
            return Err(format!("nvrtcVersion returned {rc}"));
        }
        Ok(Nvrtc { api, version: (major, minor), path: path.display().to_string(), _lib: lib })
    }

    /// NVRTC's version, `(major, minor)`, e.g. `(12, 9)`.
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    /// Where the library was loaded from (a path, or the bare name given to the system loader).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The options a compilation for `target` passes: [`DEFAULT_OPTIONS`], the architecture,
    /// then `extra_options`.
    pub fn options(target: Target, extra_options: &[&str]) -> Vec<String> {
        let mut options: Vec<String> = DEFAULT_OPTIONS.iter().map(|s| (*s).to_owned()).collect();
        options.push(target.arch_option());
        options.extend(extra_options.iter().map(|s| (*s).to_owned()));
        options
    }

    /// Compiles `source` (named `name` in diagnostics) to `target`. `headers` are in-memory
    /// include files, `(include name, contents)`; `extra_options` follow the defaults (see
    /// [`Nvrtc::options`]). A compile error returns [`NvrtcError::Compile`] with the full log.
    ///
    /// NVRTC recurses deeply on large sources (the ed25519 kernel overflows a 2 MiB test-thread
    /// stack), so the compilation runs on a scoped thread with a [`COMPILE_STACK_BYTES`] stack.
    pub fn compile(
        &self,
        source: &str,
        name: &str,
        headers: &[(&str, &str)],
        target: Target,
        extra_options: &[&str],
    ) -> Result<Compiled, NvrtcError> {
        let compile = || self.compile_here(source, name, headers, target, extra_options);
        std::thread::scope(|scope| {
            match std::thread::Builder::new()
                .name("nvrtc-compile".to_owned())
                .stack_size(COMPILE_STACK_BYTES)
                .spawn_scoped(scope, compile)
            {
                Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: compile on this one.
                Err(_) => compile(),
            }
        })
    }

    fn compile_here(
        &self,
        source: &str,
        name: &str,
        headers: &[(&str, &str)],
        target: Target,
        extra_options: &[&str],
    ) -> Result<Compiled, NvrtcError> {
        let c_source = cstring("source", source)?;
        let c_name = cstring("program name", name)?;
        let mut header_names = Vec::with_capacity(headers.len());
        let mut header_sources = Vec::with_capacity(headers.len());
        for (header_name, contents) in headers {
            header_names.push(cstring(format!("header name {header_name:?}"), header_name)?);
            header_sources.push(cstring(format!("header {header_name:?}"), contents)?);
        }
        let header_name_ptrs: Vec<*const c_char> = header_names.iter().map(|s| s.as_ptr()).collect();
        let header_source_ptrs: Vec<*const c_char> = header_sources.iter().map(|s| s.as_ptr()).collect();
        let options = Nvrtc::options(target, extra_options)
            .iter()
            .map(|o| cstring(format!("option {o:?}"), o))
            .collect::<Result<Vec<_>, _>>()?;
        let option_ptrs: Vec<*const c_char> = options.iter().map(|s| s.as_ptr()).collect();
        let num_headers = c_int::try_from(headers.len()).map_err(|_| NvrtcError::Api {
            call: "nvrtcCreateProgram",
            code: -1,
            message: "too many headers".to_owned(),
        })?;
        let num_options = c_int::try_from(option_ptrs.len()).map_err(|_| NvrtcError::Api {
            call: "nvrtcCompileProgram",
            code: -1,
            message: "too many options".to_owned(),
        })?;

        let mut prog: Program = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the call (NVRTC copies them); the
        // two header arrays have `num_headers` entries each; `prog` is a valid out-pointer.
        let rc = unsafe {
            (self.api.create_program)(
                &mut prog,
                c_source.as_ptr(),
                c_name.as_ptr(),
                num_headers,
                header_source_ptrs.as_ptr(),
                header_name_ptrs.as_ptr(),
            )
        };
        self.api.check("nvrtcCreateProgram", rc)?;
        let guard = ProgramGuard { api: &self.api, prog };

        // SAFETY: `prog` is live; `option_ptrs` has `num_options` NUL-terminated strings.
        let rc = unsafe { (self.api.compile_program)(guard.prog, num_options, option_ptrs.as_ptr()) };
        if rc == NVRTC_ERROR_COMPILATION {
            return Err(NvrtcError::Compile { log: guard.log()? });
        }
        self.api.check("nvrtcCompileProgram", rc)?;
        let log = guard.log()?;
        let code = match target {
            Target::Ptx { .. } => {
                let mut ptx =
                    guard.read("nvrtcGetPTXSize", self.api.get_ptx_size, "nvrtcGetPTX", self.api.get_ptx)?;
                ptx.truncate(strip_nul(&ptx).len());
                ptx
            }
            Target::Cubin { .. } => guard.read(
                "nvrtcGetCUBINSize",
                self.api.get_cubin_size,
                "nvrtcGetCUBIN",
                self.api.get_cubin,
            )?,
        };
        Ok(Compiled { code, log, target })
    }
}

/// The library's file names in a directory: `libnvrtc.so.12`, `libnvrtc.so`, then any other
/// `libnvrtc.so.*` (never the `-builtins` or `.alt` variants).
fn in_dir(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for preferred in ["libnvrtc.so.12", "libnvrtc.so"] {
        let p = dir.join(preferred);
        if p.is_file() {
            found.push(p);
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut others: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libnvrtc.so.") && n != "libnvrtc.so.12")
            })
            .collect();
        others.sort();
        found.extend(others);
    }
    found
}

/// The pip package's library directories under a virtual environment root
/// (`lib/python3.*/site-packages/nvidia/cuda_nvrtc/lib`).
fn venv_lib_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(root.join(lib)) else { continue };
        let mut pythons: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3")))
            .collect();
        pythons.sort();
        dirs.extend(pythons.into_iter().map(|p| p.join("site-packages/nvidia/cuda_nvrtc/lib")));
    }
    dirs
}

/// Every candidate to `dlopen`, in search order; places with nothing to try go into `tried`.
fn candidates(tried: &mut Vec<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    match std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
        Some(value) => {
            let path = PathBuf::from(value);
            if path.is_dir() {
                let found = in_dir(&path);
                if found.is_empty() {
                    tried.push(format!("${ENV_VAR}={}: no libnvrtc.so* in that directory", path.display()));
                }
                out.extend(found);
            } else {
                out.push(path);
            }
        }
        None => tried.push(format!("${ENV_VAR}: not set")),
    }

    let mut roots: Vec<PathBuf> = Vec::new();
    match std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        Some(v) => roots.push(PathBuf::from(v)),
        None => tried.push("$VIRTUAL_ENV: not set".to_owned()),
    }
    for rel in [".venv", "../.venv", "target/nvrtc-venv", "../target/nvrtc-venv"] {
        roots.push(PathBuf::from(rel));
    }
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/nvrtc-venv"));
    for root in roots {
        let dirs = venv_lib_dirs(&root);
        let found: Vec<PathBuf> = dirs.iter().flat_map(|d| in_dir(d)).collect();
        if found.is_empty() {
            tried.push(format!(
                "{}/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so*: not found",
                root.display()
            ));
        }
        out.extend(found);
    }

    // A CUDA toolkit's own copy (GPU machines usually have one, often outside the loader's
    // path): `$CUDA_HOME`, `$CUDA_PATH`, then /usr/local/cuda.
    let toolkits: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(|k| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from))
        .chain([PathBuf::from("/usr/local/cuda")])
        .collect();
    for root in toolkits {
        let dir = root.join("lib64");
        let found = in_dir(&dir);
        if found.is_empty() {
            tried.push(format!("{}/libnvrtc.so*: not found", dir.display()));
        }
        out.extend(found);
    }
    // The system loader: CUDA 12's soname, CUDA 13's (same C API), and the unversioned name.
    out.push(PathBuf::from("libnvrtc.so.12"));
    out.push(PathBuf::from("libnvrtc.so.13"));
    out.push(PathBuf::from("libnvrtc.so"));
    out
}

/// FNV-1a, 64 bits.
#[derive(Debug, Clone, Copy)]
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A length-prefixed field, so that field boundaries are part of the hash.
    fn field(&mut self, data: &[u8]) {
        self.bytes(&(data.len() as u64).to_le_bytes());
        self.bytes(data);
    }
}

/// Compiled kernels on disk, one file per (architecture, hash of source, headers, options and
/// NVRTC version), written atomically (temporary file, then rename).
#[derive(Debug, Clone)]
pub struct KernelCache {
    dir: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl KernelCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> KernelCache {
        KernelCache { dir: dir.into() }
    }

    /// The default directory: `$XDG_CACHE_HOME/bastion/kernels`, else
    /// `$HOME/.cache/bastion/kernels`.
    pub fn default_dir() -> Option<PathBuf> {
        let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        nonempty("XDG_CACHE_HOME")
            .or_else(|| nonempty("HOME").map(|h| h.join(".cache")))
            .map(|base| base.join("bastion/kernels"))
    }

    /// A cache in [`KernelCache::default_dir`].
    pub fn open_default() -> Result<KernelCache, NvrtcError> {
        KernelCache::default_dir().map(KernelCache::new).ok_or(NvrtcError::NoCacheDir)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a compilation is cached in:
    /// `<name>-<compute_90|sm_90>-<fnv1a64 hex>.<ptx|cubin>`.
    pub fn path_for(
        &self,
        nvrtc: &Nvrtc,
        source: &str,
        name: &str,
        headers: &[(&str, &str)],
        target: Target,
        extra_options: &[&str],
    ) -> PathBuf {
        let mut h = Fnv1a::new();
        h.field(b"bastion-kernels cache v1");
        let (major, minor) = nvrtc.version();
        h.field(format!("nvrtc {major}.{minor}").as_bytes());
        h.field(target.arch_name().as_bytes());
        for option in Nvrtc::options(target, extra_options) {
            h.field(option.as_bytes());
        }
        h.field(name.as_bytes());
        h.field(source.as_bytes());
        h.field(&(headers.len() as u64).to_le_bytes());
        for (header_name, contents) in headers {
            h.field(header_name.as_bytes());
            h.field(contents.as_bytes());
        }
        let stem: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
            .take(64)
            .collect();
        self.dir.join(format!("{stem}-{}-{:016x}.{}", target.arch_name(), h.0, target.extension()))
    }

    /// The cached code for this compilation, or compiles it with `nvrtc` and caches it.
    pub fn get_or_compile(
        &self,
        nvrtc: &Nvrtc,
        source: &str,
        name: &str,
        headers: &[(&str, &str)],
        target: Target,
        extra_options: &[&str],
    ) -> Result<Vec<u8>, NvrtcError> {
        let path = self.path_for(nvrtc, source, name, headers, target, extra_options);
        if let Ok(code) = std::fs::read(&path)
            && !code.is_empty()
        {
            return Ok(code);
        }
        let compiled = nvrtc.compile(source, name, headers, target, extra_options)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| NvrtcError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let tmp = path.with_extension(format!(
            "tmp.{}.{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = std::fs::write(&tmp, &compiled.code) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&path)(e));
        }
        Ok(compiled.code)
    }
}
