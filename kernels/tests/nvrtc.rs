#![allow(clippy::unwrap_used, clippy::expect_used)]
//! NVRTC: loading, compiling to PTX and cubins, compile errors, the kernel cache.
//!
//! Without NVRTC these tests print a skip notice and pass, except under CI (`CI` set), where
//! NVRTC must be installed (`.ci/run` does it) and its absence fails.

use std::path::PathBuf;

use bastion_kernels::nvrtc::{KernelCache, Nvrtc, NvrtcError, Target};

const HEADER: &str = r#"
#pragma once
typedef unsigned long long u64;
__device__ __forceinline__ u64 bk_test_mul_hi(u64 a, u64 b) {
    return (u64)(((unsigned __int128)a * b) >> 64);
}
"#;

const KERNEL: &str = r#"
#include "bk_test.cuh"
extern "C" __global__ void bk_test_kernel(const u64* a, const u64* b, u64* out, unsigned n) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = bk_test_mul_hi(a[i], b[i]) ^ a[i];
}
"#;

const HEADERS: &[(&str, &str)] = &[("bk_test.cuh", HEADER)];

/// NVRTC, or `None` (with a notice) where it is absent outside CI.
fn nvrtc() -> Option<Nvrtc> {
    match Nvrtc::load() {
        Ok(n) => Some(n),
        Err(e) if std::env::var_os("CI").is_some() => panic!("CI requires NVRTC: {e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bastion-nvrtc-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn loads_and_reports_version() {
    let Some(nvrtc) = nvrtc() else { return };
    let (major, minor) = nvrtc.version();
    eprintln!("NVRTC {major}.{minor} from {}", nvrtc.path());
    assert!(major >= 12, "NVRTC {major}.{minor} is older than 12");
}

#[test]
fn compiles_ptx_for_compute_90() {
    let Some(nvrtc) = nvrtc() else { return };
    let out = nvrtc.compile(KERNEL, "bk_test.cu", HEADERS, Target::Ptx { arch: 90 }, &[]).unwrap();
    assert_eq!(out.target, Target::Ptx { arch: 90 });
    let ptx = std::str::from_utf8(&out.code).unwrap();
    assert!(ptx.contains(".target sm_90"), "{ptx}");
    assert!(ptx.contains(".entry bk_test_kernel"), "{ptx}");
    assert!(!ptx.ends_with('\0'));
    eprintln!("PTX: {} bytes; log: {:?}", out.code.len(), out.log);
}

#[test]
fn compiles_cubin_for_sm_90() {
    let Some(nvrtc) = nvrtc() else { return };
    let out = nvrtc.compile(KERNEL, "bk_test.cu", HEADERS, Target::Cubin { arch: 90 }, &[]).unwrap();
    assert!(out.code.starts_with(b"\x7fELF"), "not an ELF: {:?}", &out.code[..out.code.len().min(16)]);
    assert!(out.code.windows(b"bk_test_kernel".len()).any(|w| w == b"bk_test_kernel"));
    eprintln!("cubin: {} bytes", out.code.len());
}

#[test]
fn syntax_error_returns_the_log() {
    let Some(nvrtc) = nvrtc() else { return };
    let bad = "extern \"C\" __global__ void k(int* p) {\n    p[0] = 1\n}\n";
    let err = nvrtc.compile(bad, "bad.cu", &[], Target::Ptx { arch: 90 }, &[]).unwrap_err();
    let NvrtcError::Compile { log } = &err else { panic!("expected a compile error, got {err:?}") };
    assert!(log.contains("bad.cu(2)") || log.contains("bad.cu(3)"), "log names no line: {log}");
    assert!(log.contains("error"), "{log}");
    assert!(err.to_string().contains(log.as_str()));
}

#[test]
fn missing_header_is_a_compile_error() {
    let Some(nvrtc) = nvrtc() else { return };
    let err = nvrtc.compile(KERNEL, "bk_test.cu", &[], Target::Ptx { arch: 90 }, &[]).unwrap_err();
    let NvrtcError::Compile { log } = &err else { panic!("expected a compile error, got {err:?}") };
    assert!(log.contains("bk_test.cuh"), "{log}");
}

#[test]
fn nul_in_source_is_rejected() {
    let Some(nvrtc) = nvrtc() else { return };
    let err = nvrtc.compile("int x;\0", "nul.cu", &[], Target::Ptx { arch: 90 }, &[]).unwrap_err();
    assert!(matches!(err, NvrtcError::InteriorNul { .. }), "{err:?}");
}

#[test]
fn load_path_to_nothing_is_not_found() {
    let err = Nvrtc::load_path("/nonexistent/libnvrtc.so.12").unwrap_err();
    let NvrtcError::NotFound { tried } = &err else { panic!("{err:?}") };
    assert_eq!(tried.len(), 1);
    let msg = err.to_string();
    assert!(msg.contains("pip install nvidia-cuda-nvrtc-cu12"), "{msg}");
    assert!(msg.contains("BASTION_NVRTC"), "{msg}");
}

#[test]
fn kernel_cache_hits_and_keys_by_arch() {
    let Some(nvrtc) = nvrtc() else { return };
    let cache = KernelCache::new(temp_dir("cache"));
    let ptx90 = Target::Ptx { arch: 90 };
    let path = cache.path_for(&nvrtc, KERNEL, "bk_test.cu", HEADERS, ptx90, &[]);
    assert!(!path.exists());
    let first = cache.get_or_compile(&nvrtc, KERNEL, "bk_test.cu", HEADERS, ptx90, &[]).unwrap();
    assert!(path.is_file());
    assert_eq!(std::fs::read(&path).unwrap(), first);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let second = cache.get_or_compile(&nvrtc, KERNEL, "bk_test.cu", HEADERS, ptx90, &[]).unwrap();
    assert_eq!(first, second);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified, "rewritten: not a hit");

    // A cache hit returns the file as stored (proves the second call did not recompile).
    std::fs::write(&path, b"marker").unwrap();
    let hit = cache.get_or_compile(&nvrtc, KERNEL, "bk_test.cu", HEADERS, ptx90, &[]).unwrap();
    assert_eq!(hit, b"marker");
    std::fs::write(&path, &first).unwrap();

    let ptx80 = Target::Ptx { arch: 80 };
    let path80 = cache.path_for(&nvrtc, KERNEL, "bk_test.cu", HEADERS, ptx80, &[]);
    assert_ne!(path, path80);
    let other = cache.get_or_compile(&nvrtc, KERNEL, "bk_test.cu", HEADERS, ptx80, &[]).unwrap();
    assert!(path80.is_file());
    assert!(std::str::from_utf8(&other).unwrap().contains(".target sm_80"));

    let cubin90 = Target::Cubin { arch: 90 };
    let path_cubin = cache.path_for(&nvrtc, KERNEL, "bk_test.cu", HEADERS, cubin90, &[]);
    assert_ne!(path, path_cubin);
    let cubin = cache.get_or_compile(&nvrtc, KERNEL, "bk_test.cu", HEADERS, cubin90, &[]).unwrap();
    assert!(cubin.starts_with(b"\x7fELF"));

    // Any change to the source, headers or options changes the key.
    let edited = [("bk_test.cuh", "#pragma once\ntypedef unsigned long long u64; // v2\n")];
    assert_ne!(path, cache.path_for(&nvrtc, KERNEL, "bk_test.cu", &edited, ptx90, &[]));
    assert_ne!(path, cache.path_for(&nvrtc, "// v2\n", "bk_test.cu", HEADERS, ptx90, &[]));
    assert_ne!(path, cache.path_for(&nvrtc, KERNEL, "bk_test.cu", HEADERS, ptx90, &["-lineinfo"]));

    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(cache.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(cache.dir()).unwrap();
}

#[test]
fn default_cache_dir_is_under_bastion_kernels() {
    if let Some(dir) = KernelCache::default_dir() {
        assert!(dir.ends_with("bastion/kernels"), "{}", dir.display());
    }
}

/// The real kernel: a compile error here fails CI. PTX and cubin compile in parallel (each takes
/// tens of seconds).
#[test]
fn ed25519_verify_compiles_to_ptx_and_cubin() {
    use bastion_kernels::source::{
        ED25519_KERNEL_NAME, ED25519_PREHASHED_KERNEL_NAME, ED25519_VERIFY, HEADERS,
    };
    let Some(nvrtc) = nvrtc() else { return };
    let kernels = [ED25519_KERNEL_NAME, ED25519_PREHASHED_KERNEL_NAME];
    compile_both(&nvrtc, ED25519_VERIFY, "ed25519_verify.cu", HEADERS, &[], &kernels, |_| {});
}

/// The portfolio-risk kernel: a compile error here fails CI. PTX and cubin compile in parallel,
/// with the kernel's own options (`__int128` in device code).
#[test]
fn portfolio_risk_compiles_to_ptx_and_cubin() {
    use bastion_kernels::source::{
        HEADERS, PORTFOLIO_RISK, PORTFOLIO_RISK_KERNEL_NAME, PORTFOLIO_RISK_OPTIONS,
    };
    let Some(nvrtc) = nvrtc() else { return };
    let kernels = [PORTFOLIO_RISK_KERNEL_NAME];
    compile_both(
        &nvrtc,
        PORTFOLIO_RISK,
        "portfolio_risk.cu",
        HEADERS,
        PORTFOLIO_RISK_OPTIONS,
        &kernels,
        |ptx| {
            // The ABI: 13 parameters (8 input pointers, mm_ppm, n_accounts, 3 output pointers).
            let entry = &ptx[ptx.find(&format!(".entry {PORTFOLIO_RISK_KERNEL_NAME}(")).unwrap()..];
            let params = &entry[..entry.find(')').unwrap()];
            assert_eq!(params.matches(".param").count(), 13, "{params}");
            assert_eq!(params.matches(".param .u64").count(), 12, "{params}");
            assert_eq!(params.matches(".param .u32").count(), 1, "{params}");
            // No call to a software i128 division routine (the divisions are by constants).
            assert!(!ptx.contains("__udivti3") && !ptx.contains("__divti3"), "i128 division call in PTX");
            assert!(!ptx.contains("call.uni"), "unexpected call in PTX");
        },
    );
}

/// Compiles `source` to PTX (compute_90) and an sm_90 cubin in parallel; each must succeed and
/// contain every one of `kernels`, the PTX as `extern "C"` entries for sm_90 (then `check_ptx`
/// looks further), the cubin as an ELF image.
fn compile_both(
    nvrtc: &Nvrtc,
    source: &str,
    name: &str,
    headers: &[(&str, &str)],
    options: &[&str],
    kernels: &[&str],
    check_ptx: impl Fn(&str),
) {
    let targets = [Target::Ptx { arch: 90 }, Target::Cubin { arch: 90 }];
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .map(|target| {
                scope.spawn(move || {
                    let started = std::time::Instant::now();
                    (target, nvrtc.compile(source, name, headers, target, options), started.elapsed())
                })
            })
            .into_iter()
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (target, out, elapsed) in results {
        let out = match out {
            Ok(out) => out,
            Err(e) => panic!("{name} does not compile for {target}: {e}"),
        };
        eprintln!("{name} {target}: {} bytes in {elapsed:?}; log: {:?}", out.code.len(), out.log);
        for kernel in kernels {
            let bytes = kernel.as_bytes();
            assert!(out.code.windows(bytes.len()).any(|w| w == bytes), "{target}: no {kernel}");
        }
        match target {
            Target::Ptx { .. } => {
                let ptx = std::str::from_utf8(&out.code).unwrap();
                assert!(ptx.contains(".target sm_90"));
                for kernel in kernels {
                    assert!(ptx.contains(&format!(".entry {kernel}(")), "{kernel} is not extern \"C\"");
                }
                check_ptx(ptx);
            }
            Target::Cubin { .. } => assert!(out.code.starts_with(b"\x7fELF")),
        }
    }
}
