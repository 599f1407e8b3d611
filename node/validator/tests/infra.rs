//! The operator files in `infra/` checked with the tools an operator uses: each systemd unit
//! passes `systemd-analyze verify` with no warning, and its `ExecStart` is a command line
//! this build accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_bastion");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `systemd-analyze`, or `None` (after a notice) where it is not installed; under `CI` a
/// missing tool fails the test (`.ci/run` installs Debian's `systemd`).
fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if found {
        return Some("systemd-analyze");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set and systemd-analyze is missing (apt-get install systemd)"
    );
    println!("notice: systemd-analyze not installed; skipped (apt-get install systemd)");
    None
}

/// The units in `infra/systemd/`, each with the file name to verify it under (a template as
/// one instance of it).
fn units() -> Vec<(PathBuf, String)> {
    let dir = repo().join("infra/systemd");
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "service"))
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().replace("@.service", "@v0.service");
            (p, name)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 2, "expected bastion.service and bastion@.service in {}", dir.display());
    out
}

#[test]
fn systemd_units_verify_without_warnings() {
    let Some(tool) = systemd_analyze() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (path, name) in units() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/bastion "), "{}: ExecStart moved?", path.display());
        // The installed path does not exist here: verify against this build's binary (verify
        // refuses a command that is not executable).
        let copy = tmp.path().join(&name);
        std::fs::write(&copy, text.replace("/usr/local/bin/bastion", BIN)).unwrap();
        let out = Command::new(tool).arg("verify").arg(&copy).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: systemd-analyze verify failed:\n{stderr}", path.display());
        assert!(stderr.trim().is_empty(), "{}: systemd-analyze verify warned:\n{stderr}", path.display());
    }
}

#[test]
fn systemd_units_start_a_command_line_this_build_accepts() {
    for (path, _) in units() {
        let text = std::fs::read_to_string(&path).unwrap();
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{}: no ExecStart", path.display()));
        let args: Vec<String> =
            exec.split_whitespace().skip(1).map(|a| a.replace("%i", "instance-for-test")).collect();
        // The config does not exist: the run must fail on reading it, not on its arguments.
        let out = Command::new(BIN).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: `{exec}` ran without a config?", path.display());
        assert!(
            !stderr.contains("unexpected argument") && !stderr.contains("Usage:"),
            "{}: `{exec}` is not a command line this build takes:\n{stderr}",
            path.display()
        );
        assert!(
            stderr.contains("node.toml"),
            "{}: the error names the config file:\n{stderr}",
            path.display()
        );
    }
}

#[test]
fn systemd_units_keep_the_hardening_the_guide_describes() {
    for (path, _) in units() {
        let text = std::fs::read_to_string(&path).unwrap();
        for key in [
            "User=bastion",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "LimitMEMLOCK=infinity",
            "Restart=on-failure",
            "CapabilityBoundingSet=",
        ] {
            assert!(text.lines().any(|l| l.starts_with(key)), "{}: no `{key}`", path.display());
        }
    }
}
