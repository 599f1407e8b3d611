//! `bastion configure check|apply` against this host and real tools: `check` reads the running
//! kernel; `apply` changes a veth's channels with `ethtool` and mounts hugetlbfs with `mount`
//! (root), and writes sysctl and sysfs knobs in a copy of the host's tree (`--root`), so the
//! test never retunes the machine it runs on beyond the veth it creates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{BIN, tool};
use std::path::Path;
use std::process::Command;

fn configure(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(BIN).arg("configure").args(args).arg("--json").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap(), v)
}

fn step<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {v:#}"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn check_reads_this_host_names_every_step_and_exits_by_readiness() {
    let (code, v) = configure(&["check"]);
    let names: Vec<&str> =
        v["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hugepages", "sysctl", "governor", "nic", "irq", "limits", "pins", "affinity"]);
    let ready = v["ready"].as_bool().unwrap();
    assert_eq!(code, i32::from(!ready), "{v:#}");
    // The defaults (sockets ingress, no pins) need no interface, no hugepages and no isolation.
    for name in ["hugepages", "nic", "irq", "pins", "affinity"] {
        assert_eq!(step(&v, name)["verdict"], "skip", "{name}: {v:#}");
    }
    // The sysctl step reports the running kernel's values.
    let rmem = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap();
    let found = step(&v, "sysctl")["found"].as_str().unwrap().to_string();
    assert!(found.contains(&format!("net.core.rmem_max = {}", rmem.trim())), "{found}");
    // Text output: one line per step, and the verdict line.
    let out = Command::new(BIN).args(["configure", "check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("sysctl ")), "{text}");
    assert!(text.contains("the host is ready") || text.contains("bastion configure apply"), "{text}");
    let bad = Command::new(BIN).args(["configure", "check", "--only", "tcp"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no such step; steps: hugepages"));
}

/// Removes the veth and unmounts hugetlbfs however the test ends.
struct Cleanup {
    veth: String,
    mount: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.veth]).status();
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

#[test]
fn apply_changes_what_differs_with_real_tools_and_a_second_apply_changes_nothing() {
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root; this test needs it");
        println!("notice: not root; skipped (ethtool -L and mount need root)");
        return;
    }
    let (Some(_), Some(_)) = (tool("ethtool", "ethtool"), tool("mount", "mount")) else {
        return;
    };
    // `ip` has no --version (it is -V), so not `tool`.
    let ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(ip || std::env::var_os("CI").is_none(), "CI is set and ip is missing (apt-get install iproute2)");
    if !ip {
        println!("notice: ip not installed; skipped (apt-get install iproute2)");
        return;
    }
    let hugetlbfs = std::fs::read_to_string("/proc/filesystems").unwrap().contains("hugetlbfs");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // A copy of the host's tree with small values, so apply has something to change.
    let put = |p: &str, v: &str| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, v).unwrap();
    };
    put("proc/sys/net/core/rmem_max", "212992\n");
    put("proc/sys/net/core/wmem_max", "212992\n");
    put("proc/sys/net/core/netdev_max_backlog", "1000\n");
    put("sys/devices/system/cpu/online", &std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap());
    put("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n");
    // The veth lives in the real tree; /sys/class/net is read under the root, so link it there.
    let veth = format!("cfg{}", std::process::id() % 100_000);
    let _cleanup = Cleanup { veth: veth.clone(), mount: root.join("dev/hugepages") };
    let peer = format!("{veth}p");
    let ok = Command::new("ip")
        .args(["link", "add", &veth, "type", "veth", "peer", "name", &peer])
        .status()
        .unwrap();
    assert!(ok.success(), "ip link add {veth}");
    std::fs::create_dir_all(root.join("sys/class/net")).unwrap();
    std::os::unix::fs::symlink(format!("/sys/class/net/{veth}"), root.join(format!("sys/class/net/{veth}")))
        .unwrap();
    let hugepages = if hugetlbfs { "hugepages = 2\n" } else { "" };
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "genesis = \"g.json\"\nkeys = \"k.json\"\ndata_dir = \"data\"\n[ingress]\nbackend = \"af_xdp\"\n\
             fallback = \"sockets\"\niface = \"{veth}\"\nqueues = 2\n[host]\n{hugepages}"
        ),
    )
    .unwrap();
    let args = |cmd: &'static str| -> Vec<String> {
        let mut a = vec![cmd.to_string(), "--config".into(), config.display().to_string()];
        a.extend(["--root".into(), root.display().to_string()]);
        for s in ["hugepages", "sysctl", "nic"] {
            a.extend(["--only".into(), s.into()]);
        }
        a
    };
    let run = |cmd: &'static str| {
        let a = args(cmd);
        configure(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let (code, before) = run("check");
    assert_eq!(code, 1, "{before:#}");
    assert_eq!(step(&before, "sysctl")["verdict"], "change");
    // A fresh veth has one RX channel of at most the CPU count; ask for 2 (CI has 2 cores).
    let nic = step(&before, "nic");
    assert_eq!(nic["verdict"], "change", "{nic:#}");
    assert!(nic["found"].as_str().unwrap().starts_with(&format!("{veth}: 1 rx channels")), "{nic:#}");
    if hugetlbfs {
        assert_eq!(step(&before, "hugepages")["verdict"], "change");
    }

    let (code, applied) = run("apply");
    assert_eq!(code, 0, "{applied:#}");
    assert!(applied["ready"].as_bool().unwrap());
    let done = |v: &serde_json::Value, name: &str| step(v, name)["changed"].as_array().unwrap().len();
    assert_eq!(done(&applied, "sysctl"), 3, "{applied:#}");
    assert_eq!(done(&applied, "nic"), 1);
    assert_eq!(std::fs::read_to_string(root.join("proc/sys/net/core/rmem_max")).unwrap(), "67108864\n");
    let channels = Command::new("ethtool").args(["-l", &veth]).output().unwrap();
    let channels = String::from_utf8_lossy(&channels.stdout);
    let current = channels.split("Current hardware settings:").nth(1).unwrap();
    assert!(current.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["RX:", "2"]), "{channels}");
    if hugetlbfs {
        assert_eq!(done(&applied, "hugepages"), 2, "the reservation and the mount: {applied:#}");
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let at = root.join("dev/hugepages").canonicalize().unwrap();
        assert!(
            mounts.lines().any(|l| l.contains(" hugetlbfs ") && l.contains(&*at.to_string_lossy())),
            "{mounts}"
        );
    }

    let (code, again) = run("apply");
    assert_eq!(code, 0, "{again:#}");
    for name in ["hugepages", "sysctl", "nic"] {
        assert_eq!(done(&again, name), 0, "a second apply changed {name}: {again:#}");
    }
    let (code, after) = run("check");
    assert_eq!(code, 0, "{after:#}");
    assert!(Path::new(&root.join("proc/sys/net/core/netdev_max_backlog")).exists());
}
