//! Build script: only does something with the `dpdk` feature. It finds Debian's DPDK 22.11
//! through `pkg-config libdpdk`, compiles the C shim (`dpdk/shim.c`) with DPDK's cflags and
//! links the libraries pkg-config lists, plus two the shim calls that `pkg-config --libs
//! libdpdk` leaves out: `rte_bus_vdev` (`rte_vdev_init`) and `rte_net_ring`
//! (`rte_eth_from_rings`).
//!
//! Poll-mode drivers are not linked: Debian's DPDK is a shared build whose EAL loads every
//! driver in its plugin directory (`<libdir>/dpdk/pmds-23.0`, compiled into librte_eal as
//! `RTE_EAL_PMD_PATH`) at `rte_eal_init`. The drivers export no symbols, so linking them would
//! be dropped by `--as-needed` anyway (and the `-as-needed` link modifier is nightly-only).
//! The build checks that the plugin directory holds `net_null`, `net_ring` and
//! `net_af_packet`, warns otherwise, and passes the directory to the crate as
//! `BASTION_DPDK_PMD_DIR` (reported by `check`). Without the feature the default build needs
//! neither libdpdk nor a C compiler.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_DPDK");
    if std::env::var_os("CARGO_FEATURE_DPDK").is_some() {
        #[cfg(feature = "dpdk")]
        dpdk::build();
        #[cfg(not(feature = "dpdk"))]
        panic!("CARGO_FEATURE_DPDK set but the build script was built without the dpdk feature");
    }
}

#[cfg(feature = "dpdk")]
mod dpdk {
    /// Libraries the shim calls that `pkg-config --libs libdpdk` does not list.
    const EXTRA_LIBS: [&str; 2] = ["rte_bus_vdev", "rte_net_ring"];

    /// Drivers the backend and its tests use, loaded from the EAL's plugin directory.
    const PMDS: [&str; 3] = ["librte_net_null.so", "librte_net_ring.so", "librte_net_af_packet.so"];

    pub(super) fn build() {
        println!("cargo:rerun-if-changed=dpdk/shim.c");
        println!("cargo:rerun-if-changed=dpdk/shim.h");
        let lib = match pkg_config::Config::new().atleast_version("22.11").probe("libdpdk") {
            Ok(lib) => lib,
            Err(e) => panic!(
                "the `dpdk` feature needs DPDK 22.11 or newer found through pkg-config: \
                 `apt-get install libdpdk-dev pkg-config` (Debian 12) ({e})"
            ),
        };
        let mut cc = cc::Build::new();
        cc.file("dpdk/shim.c").include("dpdk").warnings(true).extra_warnings(true).opt_level(3);
        for dir in &lib.include_paths {
            cc.include(dir);
        }
        for (key, value) in &lib.defines {
            cc.define(key, value.as_deref());
        }
        // pkg-config's cflags also carry `-include rte_config.h` and `-march=...`, which
        // `include_paths`/`defines` do not; pass the raw list.
        for flag in cflags() {
            if !flag.starts_with("-I") {
                cc.flag(&flag);
            }
        }
        cc.compile("bastion_dpdk_shim");
        for dir in &lib.link_paths {
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
        for name in EXTRA_LIBS {
            println!("cargo:rustc-link-lib=dylib={name}");
        }
        let pmd_dir = lib.link_paths.iter().chain(std::iter::once(&libdir())).find_map(|dir| {
            let rd = std::fs::read_dir(dir.join("dpdk")).ok()?;
            rd.flatten()
                .map(|e| e.path())
                .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pmds-")))
        });
        match pmd_dir {
            Some(dir) => {
                println!("cargo:rustc-env=BASTION_DPDK_PMD_DIR={}", dir.display());
                for pmd in PMDS {
                    if !dir.join(pmd).exists() && !dir.join(format!("{pmd}.23")).exists() {
                        println!(
                            "cargo:warning=DPDK driver {pmd} is not in {}: install librte-{}23",
                            dir.display(),
                            pmd.trim_start_matches("librte_").trim_end_matches(".so").replace('_', "-")
                        );
                    }
                }
            }
            None => {
                println!("cargo:rustc-env=BASTION_DPDK_PMD_DIR=");
                println!(
                    "cargo:warning=no DPDK plugin directory (<libdir>/dpdk/pmds-*) found: drivers will not load"
                );
            }
        }
    }

    /// `pkg-config --variable=libdir libdpdk`.
    fn libdir() -> std::path::PathBuf {
        pkg_config::get_variable("libdpdk", "libdir").unwrap_or_default().into()
    }

    /// `pkg-config --cflags libdpdk`, split the way the shell would (DPDK's flags hold no
    /// quoted spaces); `-include rte_config.h` stays one pair of arguments.
    fn cflags() -> Vec<String> {
        let out =
            std::process::Command::new(std::env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into()))
                .args(["--cflags", "libdpdk"])
                .output();
        match out {
            Ok(o) if o.status.success() => {
                String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_string).collect()
            }
            Ok(o) => panic!("pkg-config --cflags libdpdk failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!("running pkg-config --cflags libdpdk: {e}"),
        }
    }
}
