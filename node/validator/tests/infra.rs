//! The operator files in `infra/` checked with the tools an operator uses: each systemd unit
//! passes `systemd-analyze verify` with no warning, and its `ExecStart` is a command line
//! this build accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{BIN, tool};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The node's sources that register metrics, concatenated (to look names up in).
fn metric_registrations() -> String {
    ["telemetry.rs", "public_metrics.rs", "node.rs", "oracle.rs"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(repo().join("node/validator/src").join(f)).ok())
        .collect()
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
    let Some(tool) = tool("systemd-analyze", "systemd") else { return };
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

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    let Some(tool) = tool("promtool", "prometheus") else { return };
    let dir = repo().join("infra/prometheus");
    let check =
        Command::new(tool).args(["check", "rules", "bastion-rules.yml"]).current_dir(&dir).output().unwrap();
    let said = String::from_utf8_lossy(&check.stdout).into_owned() + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success() && said.contains("SUCCESS"), "promtool check rules:\n{said}");
    let test = Command::new(tool)
        .args(["test", "rules", "bastion-rules.test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&test.stdout).into_owned() + &String::from_utf8_lossy(&test.stderr);
    assert!(test.status.success() && said.contains("SUCCESS"), "promtool test rules:\n{said}");
    // Every alert has a unit test (the test file names each one it covers).
    let rules = std::fs::read_to_string(dir.join("bastion-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("bastion-rules.test.yml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {alert}")), "alert {alert} has no unit test");
    }
}

#[test]
fn alert_rules_name_only_metrics_a_node_exports() {
    // The bastion_* metrics the rules use, each registered by the node's telemetry (a rule on a
    // renamed metric never fires).
    let rules = std::fs::read_to_string(repo().join("infra/prometheus/bastion-rules.yml")).unwrap();
    let src = metric_registrations();
    let names = metric_names(&rules);
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        assert!(src.contains(&format!("\"{name}\"")), "the rules use {name}, which no node registers");
    }
}

/// The bastion_* metric names in a PromQL text, `_bucket` / `_sum` / `_count` series mapped to
/// their histogram.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("bastion_"))
        .map(|w| w.strip_suffix("_bucket").unwrap_or(w).to_string())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[test]
fn grafana_dashboard_queries_parse_and_use_exported_metrics() {
    let path = repo().join("infra/grafana/bastion-node.json");
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("every target has an expr").replace("$instance", ".*"))
        .collect();
    assert!(exprs.len() >= panels.len());
    let src = metric_registrations();
    for name in exprs.iter().flat_map(|e| metric_names(e)) {
        assert!(
            src.contains(&format!("\"{name}\"")),
            "the dashboard queries {name}, which no node registers"
        );
    }
    // Each query parsed by Prometheus itself: as recording rules for promtool.
    let Some(tool) = tool("promtool", "prometheus") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    let file = tmp.path().join("dashboard-rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new(tool).args(["check", "rules"]).arg(&file).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a dashboard query does not parse:\n{said}");
}

/// The syscalls a filter line such as `@system-service bpf` allows, expanded with
/// `systemd-analyze syscall-filter` (groups nest).
fn allowed_syscalls(analyze: &str, filter: &str) -> std::collections::BTreeSet<String> {
    let out = Command::new(analyze).arg("syscall-filter").output().unwrap();
    assert!(out.status.success(), "systemd-analyze syscall-filter failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut groups: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    let mut current = None;
    for line in text.lines() {
        if line.starts_with('@') {
            current = line.split_whitespace().next().map(str::to_string);
            groups.insert(current.clone().unwrap(), Vec::new());
        } else if let (Some(g), Some(item)) = (&current, line.split_whitespace().next())
            && !item.starts_with('#')
        {
            groups.get_mut(g).unwrap().push(item.to_string());
        }
    }
    fn expand(
        item: &str,
        groups: &std::collections::HashMap<String, Vec<String>>,
        out: &mut std::collections::BTreeSet<String>,
    ) {
        match groups.get(item) {
            Some(members) => members.iter().for_each(|m| expand(m, groups, out)),
            None => {
                assert!(!item.starts_with('@'), "unknown syscall group {item}");
                out.insert(item.to_string());
            }
        }
    }
    let mut allowed = std::collections::BTreeSet::new();
    filter.split_whitespace().for_each(|i| expand(i, &groups, &mut allowed));
    allowed
}

/// Every syscall a devnet's validators and full node make (traced with strace, children
/// followed) is in the units' `SystemCallFilter`: a new syscall in the node fails here, not on
/// an operator's box with EPERM.
#[test]
fn the_units_syscall_filter_allows_every_syscall_a_devnet_makes() {
    let (Some(analyze), Some(strace)) = (tool("systemd-analyze", "systemd"), tool("strace", "strace")) else {
        return;
    };
    let mut filters = Vec::new();
    for (path, _) in units() {
        let text = std::fs::read_to_string(&path).unwrap();
        let f = text.lines().find_map(|l| l.strip_prefix("SystemCallFilter=")).map(str::to_string);
        filters.push(f.unwrap_or_else(|| panic!("{}: no SystemCallFilter", path.display())));
    }
    assert!(filters.iter().all(|f| *f == filters[0]), "the units' filters differ: {filters:?}");
    let allowed = allowed_syscalls(analyze, &filters[0]);
    assert!(allowed.contains("io_uring_setup") && allowed.contains("bpf"), "{allowed:?}");

    let _one = common::exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let summary = tmp.path().join("syscalls.txt");
    let base = common::port_block(40).to_string();
    let out = Command::new(strace)
        .args(["-f", "-qq", "-c", "-o"])
        .arg(&summary)
        .args([BIN, "devnet", "--duration", "6s", "--base-port", &base])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "devnet under strace failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&summary).unwrap();
    let used: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| *w != "total" && *w != "syscall")
        .collect();
    assert!(used.len() > 30 && used.contains(&"fdatasync"), "strace saw too little:\n{text}");
    let outside: Vec<&&str> = used.iter().filter(|s| !allowed.contains(**s)).collect();
    assert!(outside.is_empty(), "syscalls outside `SystemCallFilter={}`: {outside:?}", filters[0]);
}
