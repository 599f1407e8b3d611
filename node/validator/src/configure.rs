//! `bastion configure check|apply`: the host settings a node's config needs, the idea of
//! Firedancer's `fdctl configure`. Each step reads what the host has, says what the config
//! wants and why; `apply` changes only what differs (safe to re-run), `check` exits 1 when the
//! host is not ready. This is the one implementation of the host tuning (it replaced the shell
//! scripts that were in `infra/host/`).
//!
//! Steps, in order:
//! - `hugepages`: pages reserved for DPDK and a hugetlbfs mount (`/dev/hugepages`);
//! - `sysctl`: socket buffer ceilings and the backlog the ingress leans on;
//! - `governor`: the `performance` CPU frequency governor on the cores the node uses;
//! - `nic`: the interface's receive channels against `ingress.queues` (kernel bypass);
//! - `irq`: the interface's IRQs on the housekeeping cores, away from the pinned tiles;
//! - `limits`: locked memory (AF_XDP's UMEM, DPDK) and open files for the service user;
//! - `pins`: the tile pins against the online and isolated cores (apply cannot isolate cores:
//!   that is the kernel command line, and the step says what to add).
//!
//! Every path is read under a root (`/`, or a fixture tree in tests); `ethtool` and `mount`
//! are the real tools.

use crate::node::NodeConfig;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The `[host]` table: what `bastion configure` tunes beyond what the rest of the config implies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostSection {
    /// Hugepages to reserve (0: only when `ingress.backend = "dpdk"`, then 1024).
    pub hugepages: u64,
    /// Size of those pages in kB (2048 or 1048576).
    pub hugepage_kb: u64,
    /// Floor for `net.core.rmem_max` and `net.core.wmem_max`, bytes.
    pub socket_buffer_max: u64,
    /// Floor for `net.core.netdev_max_backlog`, packets.
    pub netdev_max_backlog: u64,
    /// CPU frequency governor for the cores the node uses (empty: leave it).
    pub governor: String,
    /// CPUs for the interface's IRQs, e.g. `0-1` (default: the online CPUs no tile is pinned to).
    pub irq_cpus: Option<String>,
    /// The user the node runs as (the systemd units' `bastion`), for the limits drop-in.
    pub user: String,
    /// Floor for the open-files limit.
    pub nofile: u64,
    /// The systemd unit the node runs as, for the CPU affinity drop-in (`bastion@NAME.service`
    /// for an instance of the template).
    pub unit: String,
}

impl Default for HostSection {
    fn default() -> Self {
        HostSection {
            hugepages: 0,
            hugepage_kb: 2048,
            socket_buffer_max: 64 << 20,
            netdev_max_backlog: 10_000,
            governor: "performance".into(),
            irq_cpus: None,
            user: "bastion".into(),
            nofile: 1 << 20,
            unit: "bastion.service".into(),
        }
    }
}

impl HostSection {
    /// Checks the table's values; errors name the key.
    pub fn check(&self, file: &Path) -> Result<(), String> {
        let file = file.display();
        if ![2048, 1_048_576].contains(&self.hugepage_kb) {
            return Err(format!(
                "{file}: key `host.hugepage_kb` is {}; allowed: 2048, 1048576",
                self.hugepage_kb
            ));
        }
        if !["", "performance", "powersave", "schedutil", "ondemand", "conservative", "userspace"]
            .contains(&self.governor.as_str())
        {
            return Err(format!(
                "{file}: key `host.governor` is {:?}; allowed: performance, powersave, schedutil, ondemand, \
                 conservative, userspace, or \"\" to leave it",
                self.governor
            ));
        }
        if let Some(list) = &self.irq_cpus {
            parse_cpu_list(list).map_err(|e| format!("{file}: key `host.irq_cpus`: {e}"))?;
        }
        if !self.unit.ends_with(".service") || self.unit.contains(['/', ' ']) {
            return Err(format!(
                "{file}: key `host.unit` is {:?}; a unit name such as bastion.service or bastion@v0.service",
                self.unit
            ));
        }
        if self.user.is_empty() || self.user.contains(char::is_whitespace) {
            return Err(format!("{file}: key `host.user` is {:?}; a user name", self.user));
        }
        Ok(())
    }
}

/// `bastion configure` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigureCommand {
    /// Report each host setting the node's config needs: what is there, what is wanted and
    /// why. Exits 1 when anything needs changing, 0 when the host is ready.
    Check(ConfigureArgs),
    /// Change what `check` reports as differing (as root), then check again. Safe to re-run:
    /// a setting that already holds is left alone.
    Apply(ConfigureArgs),
}

/// Inputs of `bastion configure check|apply`.
#[derive(Args, Debug)]
pub struct ConfigureArgs {
    /// The node's config (its `[ingress]`, `[pipeline]` pins and `[host]` tables); none: the
    /// defaults (sockets ingress, no pins).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Only these steps (repeatable): hugepages, sysctl, governor, nic, irq, limits, pins.
    #[arg(long = "only", value_name = "STEP")]
    only: Vec<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Read and write `/proc`, `/sys` and `/etc` under this directory instead of `/` (a copy
    /// of a host's tree, for tests and dry runs).
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
}

/// What one step found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The host has what the config needs.
    Ok,
    /// Not needed by this config (or not present on this host, e.g. no cpufreq in a VM).
    Skip,
    /// Differs; `apply` changes it.
    Change,
    /// Differs, and only the operator can change it (kernel command line, hardware).
    Manual,
    /// Could not be read or changed.
    Error,
}

impl Verdict {
    fn label(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Skip => "skip",
            Verdict::Change => "change",
            Verdict::Manual => "manual",
            Verdict::Error => "error",
        }
    }
    fn ready(&self) -> bool {
        matches!(self, Verdict::Ok | Verdict::Skip)
    }
}

/// One step's report: what it found, what it wants and why, and (after `apply`) what it did.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub verdict: Verdict,
    pub found: String,
    pub want: String,
    pub why: String,
    /// What `apply` changed (empty: nothing).
    pub changed: Vec<String>,
    #[serde(skip)]
    actions: Vec<Action>,
}

impl Step {
    fn new(name: &'static str, verdict: Verdict, found: String, want: String, why: &str) -> Step {
        Step { name, verdict, found, want, why: why.to_string(), changed: Vec::new(), actions: Vec::new() }
    }
    fn skip(name: &'static str, found: String, why: &str) -> Step {
        Step::new(name, Verdict::Skip, found, String::new(), why)
    }
}

/// A change `apply` makes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    /// Write `value` to the file (a sysctl, a sysfs or procfs knob, a drop-in).
    Write { path: PathBuf, value: String },
    /// Mount hugetlbfs with this page size at the directory.
    MountHugetlbfs { dir: PathBuf, page_kb: u64 },
    /// `ethtool -L IFACE KIND N`.
    Channels { iface: String, kind: &'static str, count: u64 },
}

const STEPS: [&str; 8] = ["hugepages", "sysctl", "governor", "nic", "irq", "limits", "pins", "affinity"];

/// The host, seen under a root directory.
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: &Path) -> Host {
        Host { root: root.to_path_buf() }
    }
    /// `path` (absolute, as on a host) under the root.
    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
    fn read(&self, path: &str) -> Result<String, String> {
        let p = self.path(path);
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read {}: {e}", p.display()))
    }
    fn read_u64(&self, path: &str) -> Result<u64, String> {
        let s = self.read(path)?;
        s.parse().map_err(|_| format!("{}: {s:?} is not a number", self.path(path).display()))
    }
    fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }
    /// The online CPUs (`/sys/devices/system/cpu/online`).
    fn online(&self) -> Result<Vec<usize>, String> {
        parse_cpu_list(&self.read("/sys/devices/system/cpu/online")?)
    }
    /// The isolated CPUs (`isolcpus=`; empty when none).
    fn isolated(&self) -> Vec<usize> {
        self.read("/sys/devices/system/cpu/isolated")
            .ok()
            .and_then(|s| parse_cpu_list(&s).ok())
            .unwrap_or_default()
    }
    /// Whether hugetlbfs is mounted at `dir`: the real mount table (a mount under a test root
    /// is a real mount too).
    fn hugetlbfs_at(&self, dir: &Path) -> bool {
        let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return false };
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        mounts.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[2] == "hugetlbfs" && Path::new(&unescape_mount(f[1])) == dir
        })
    }
    fn apply(&self, action: &Action) -> Result<String, String> {
        match action {
            Action::Write { path, value } => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                std::fs::write(path, value).map_err(|e| {
                    let hint =
                        if e.kind() == std::io::ErrorKind::PermissionDenied { " (run as root)" } else { "" };
                    format!("cannot write {}: {e}{hint}", path.display())
                })?;
                Ok(format!("wrote {:?} to {}", value.trim_end(), path.display()))
            }
            Action::MountHugetlbfs { dir, page_kb } => {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let opt = format!("pagesize={page_kb}K");
                run_tool("mount", &["-t", "hugetlbfs", "-o", &opt, "nodev", &dir.to_string_lossy()])?;
                Ok(format!("mounted hugetlbfs ({opt}) at {}", dir.display()))
            }
            Action::Channels { iface, kind, count } => {
                run_tool("ethtool", &["-L", iface, kind, &count.to_string()])?;
                Ok(format!("ethtool -L {iface} {kind} {count}"))
            }
        }
    }
}

/// Runs a tool and returns its stdout; the error quotes its stderr.
fn run_tool(tool: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(tool).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "`{tool}` is not installed (apt-get install {})",
                if tool == "mount" { "mount" } else { tool }
            )
        } else {
            format!("cannot run {tool}: {e}")
        }
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`{tool} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `/proc/mounts` escapes spaces and such as `\040`.
fn unescape_mount(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            let code: String = it.by_ref().take(3).collect();
            if let Ok(n) = u8::from_str_radix(&code, 8) {
                out.push(char::from(n));
                continue;
            }
            out.push('\\');
            out.push_str(&code);
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a CPU list such as `0-3,8,10-11` (the kernel's format).
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.trim().is_empty()) {
        let part = part.trim();
        let bad = || format!("{part:?} in {s:?} is not a CPU or a range like 2-5");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Formats CPUs as the kernel does (`0-3,8`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    out.join(",")
}

/// What the steps need from a node's config.
struct Wants<'a> {
    backend: &'a str,
    iface: Option<&'a str>,
    queues: u64,
    /// UMEM or mbuf memory the bypass backend locks, bytes.
    locked_bytes: u64,
    pins: Vec<(&'static str, usize)>,
    host: &'a HostSection,
}

impl<'a> Wants<'a> {
    fn of(cfg: &'a NodeConfig) -> Wants<'a> {
        let p = &cfg.pipeline;
        let pins = [
            ("pin_net", p.pin_net),
            ("pin_verify", p.pin_verify),
            ("pin_admission", p.pin_admission),
            ("pin_storage", p.pin_storage),
            ("pin_execution", p.pin_execution),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|c| (k, c)))
        .collect();
        let bypass = matches!(cfg.ingress.backend.as_str(), "af_xdp" | "dpdk");
        Wants {
            backend: &cfg.ingress.backend,
            iface: cfg.ingress.iface.as_deref().filter(|_| bypass),
            queues: u64::from(cfg.ingress.queues),
            // One 4 KiB frame (AF_XDP's chunk, DPDK's mbuf with headroom) per frame per queue,
            // plus the rings.
            locked_bytes: if bypass {
                u64::from(cfg.ingress.frames) * 4096 * u64::from(cfg.ingress.queues)
                    + u64::from(cfg.ingress.ring_size) * 4 * 16 * u64::from(cfg.ingress.queues)
            } else {
                0
            },
            pins,
            host: &cfg.host,
        }
    }
    fn bypass(&self) -> bool {
        matches!(self.backend, "af_xdp" | "dpdk")
    }
    fn pinned(&self) -> Vec<usize> {
        let mut c: Vec<usize> = self.pins.iter().map(|p| p.1).collect();
        c.sort_unstable();
        c.dedup();
        c
    }
}

fn hugepages(h: &Host, w: &Wants) -> Step {
    const NAME: &str = "hugepages";
    let pages = if w.host.hugepages > 0 {
        w.host.hugepages
    } else if w.backend == "dpdk" {
        1024
    } else {
        return Step::skip(NAME, "not needed: ingress.backend is not dpdk and host.hugepages = 0".into(), "");
    };
    let kb = w.host.hugepage_kb;
    let why = "DPDK's mbuf pools want IOVA-contiguous hugepage memory (without it DPDK runs --no-huge: slower, \
               and no real NIC's PMD works); reserve at boot (hugepages=N on the kernel command line) when \
               memory is fragmented";
    let knob = format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB/nr_hugepages");
    let have = match h.read_u64(&knob) {
        Ok(n) => n,
        Err(e) => {
            let sizes = std::fs::read_dir(h.path("/sys/kernel/mm/hugepages"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            return Step::new(
                NAME,
                Verdict::Error,
                format!("{e} (sizes here: {sizes})"),
                format!("{pages} pages of {kb} kB"),
                why,
            );
        }
    };
    let dir = h.path("/dev/hugepages");
    let mounted = h.hugetlbfs_at(&dir);
    let found = format!(
        "{have} pages of {kb} kB reserved; hugetlbfs {}",
        if mounted {
            format!("mounted at {}", dir.display())
        } else {
            format!("not mounted at {}", dir.display())
        }
    );
    let want = format!("at least {pages} pages of {kb} kB; hugetlbfs at {}", dir.display());
    let mut step = Step::new(NAME, Verdict::Ok, found, want, why);
    if have < pages {
        step.actions.push(Action::Write { path: h.path(&knob), value: format!("{pages}\n") });
    }
    if !mounted {
        step.actions.push(Action::MountHugetlbfs { dir, page_kb: kb });
    }
    if !step.actions.is_empty() {
        step.verdict = Verdict::Change;
    }
    step
}

fn sysctl(h: &Host, w: &Wants) -> Step {
    const NAME: &str = "sysctl";
    let floors = [
        ("net.core.rmem_max", w.host.socket_buffer_max),
        ("net.core.wmem_max", w.host.socket_buffer_max),
        ("net.core.netdev_max_backlog", w.host.netdev_max_backlog),
    ];
    let mut found = Vec::new();
    let mut want = Vec::new();
    let mut actions = Vec::new();
    for (key, floor) in floors {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        match h.read_u64(&path) {
            Ok(v) => {
                found.push(format!("{key} = {v}"));
                if v < floor {
                    actions.push(Action::Write { path: h.path(&path), value: format!("{floor}\n") });
                }
            }
            Err(e) => {
                return Step::new(NAME, Verdict::Error, e, format!("{key} >= {floor}"), "");
            }
        }
        want.push(format!("{key} >= {floor}"));
    }
    let mut step = Step::new(
        NAME,
        if actions.is_empty() { Verdict::Ok } else { Verdict::Change },
        found.join(", "),
        want.join(", "),
        "the kernel caps every socket's buffer at rmem_max/wmem_max: the UDP ingress, the p2p and public \
         network's TCP; a small cap drops bursts of client packets before the node sees them. The backlog \
         holds packets between the NIC and the stack. (apply sets the running kernel; keep them in \
         /etc/sysctl.d/ for reboots)",
    );
    step.actions = actions;
    step
}

fn governor(h: &Host, w: &Wants) -> Step {
    const NAME: &str = "governor";
    if w.host.governor.is_empty() {
        return Step::skip(NAME, "host.governor is \"\": left as it is".into(), "");
    }
    let cpus = match h.online() {
        Ok(c) => c,
        Err(e) => return Step::new(NAME, Verdict::Error, e, String::new(), ""),
    };
    let scope = if w.pins.is_empty() { cpus } else { w.pinned() };
    let mut found: Vec<String> = Vec::new();
    let mut actions = Vec::new();
    let mut missing = 0;
    for cpu in &scope {
        let path = format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor");
        match h.read(&path) {
            Ok(g) => {
                found.push(format!("cpu{cpu} {g}"));
                if g != w.host.governor {
                    actions
                        .push(Action::Write { path: h.path(&path), value: format!("{}\n", w.host.governor) });
                }
            }
            Err(_) => missing += 1,
        }
    }
    if missing == scope.len() {
        return Step::skip(
            NAME,
            "no cpufreq on these CPUs (a virtual machine, or frequency set by firmware)".into(),
            "",
        );
    }
    let mut step = Step::new(
        NAME,
        if actions.is_empty() { Verdict::Ok } else { Verdict::Change },
        found.join(", "),
        format!("{} on CPUs {}", w.host.governor, format_cpu_list(&scope)),
        "a core that ramps its clock up on demand adds its ramp to every packet and every vote after an idle \
         gap; finality is a chain of such gaps",
    );
    step.actions = actions;
    step
}

/// `ethtool -l` output: (pre-set maximum, current) for combined and rx channels.
fn parse_channels(text: &str) -> [(Option<u64>, Option<u64>); 2] {
    let mut out = [(None, None), (None, None)];
    let mut section = 0;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("Pre-set maximums") {
            section = 1;
        } else if l.starts_with("Current hardware settings") {
            section = 2;
        }
        for (i, key) in ["Combined:", "RX:"].iter().enumerate() {
            if let Some(v) = l.strip_prefix(key) {
                let v = v.trim().parse().ok();
                match section {
                    1 => out[i].0 = v,
                    2 => out[i].1 = v,
                    _ => {}
                }
            }
        }
    }
    out
}

fn nic(h: &Host, w: &Wants) -> Step {
    const NAME: &str = "nic";
    let Some(iface) = w.iface else {
        return Step::skip(NAME, format!("ingress.backend = {}: no interface to tune", w.backend), "");
    };
    if !h.exists(&format!("/sys/class/net/{iface}")) {
        return Step::new(
            NAME,
            Verdict::Error,
            format!("no interface {iface}"),
            format!("{} receive channels", w.queues),
            "",
        );
    }
    let why = "AF_XDP binds one socket per queue and DPDK polls one queue per core, and the NIC's RSS only \
               spreads packets over its channels: fewer channels than ingress.queues leaves sockets idle, more \
               sends the validator's traffic to queues nobody polls (it reaches the kernel's UDP path, slower)";
    let text = match run_tool("ethtool", &["-l", iface]) {
        Ok(t) => t,
        Err(e) if e.contains("not installed") => {
            return Step::new(NAME, Verdict::Error, e, String::new(), why);
        }
        Err(_) => {
            return Step::skip(
                NAME,
                format!("{iface} reports no channel settings (a virtual device has none)"),
                why,
            );
        }
    };
    let [combined, rx] = parse_channels(&text);
    let (kind, (max, cur)) = match (combined, rx) {
        ((Some(m), c), _) if m > 0 => ("combined", (m, c.unwrap_or(0))),
        (_, (Some(m), c)) if m > 0 => ("rx", (m, c.unwrap_or(0))),
        _ => return Step::skip(NAME, format!("{iface} reports no configurable channels"), why),
    };
    let found = format!("{iface}: {cur} {kind} channels (at most {max})");
    let want = format!("{} {kind} channels (ingress.queues)", w.queues);
    if w.queues > max {
        return Step::new(
            NAME,
            Verdict::Manual,
            found,
            want + &format!(": {iface} has at most {max}; lower ingress.queues"),
            why,
        );
    }
    let mut step = Step::new(NAME, Verdict::Ok, found, want, why);
    if cur != w.queues {
        step.verdict = Verdict::Change;
        step.actions.push(Action::Channels { iface: iface.to_string(), kind, count: w.queues });
    }
    step
}

fn irq(h: &Host, w: &Wants) -> Step {
    const NAME: &str = "irq";
    let Some(iface) = w.iface else {
        return Step::skip(NAME, format!("ingress.backend = {}: no interface to tune", w.backend), "");
    };
    let online = match h.online() {
        Ok(c) => c,
        Err(e) => return Step::new(NAME, Verdict::Error, e, String::new(), ""),
    };
    let targets = match &w.host.irq_cpus {
        Some(list) => parse_cpu_list(list).unwrap_or_default(),
        None if w.pins.is_empty() => {
            return Step::skip(
                NAME,
                "no tile pinned and host.irq_cpus unset: IRQs left where they are".into(),
                "",
            );
        }
        None => {
            let pinned = w.pinned();
            online.iter().copied().filter(|c| !pinned.contains(c)).collect()
        }
    };
    if targets.is_empty() || targets.iter().any(|c| !online.contains(c)) {
        return Step::new(
            NAME,
            Verdict::Manual,
            format!("online CPUs {}", format_cpu_list(&online)),
            format!("IRQ CPUs {}", format_cpu_list(&targets)),
            "no housekeeping CPU is left for the IRQs (or host.irq_cpus names an offline CPU): set host.irq_cpus",
        );
    }
    let interrupts = match h.read("/proc/interrupts") {
        Ok(t) => t,
        Err(e) => return Step::new(NAME, Verdict::Error, e, String::new(), ""),
    };
    let irqs: Vec<String> = interrupts
        .lines()
        .filter(|l| l.split_whitespace().any(|f| f == iface || f.starts_with(&format!("{iface}-"))))
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty())
        .collect();
    let why = "an IRQ on a core a tile busy-polls steals that core's time in bursts; the IRQs go to the \
               housekeeping cores (irqbalance rewrites affinities: stop it or ban these IRQs)";
    if irqs.is_empty() {
        return Step::skip(
            NAME,
            format!("no IRQs named after {iface} in /proc/interrupts (a virtual device has none)"),
            why,
        );
    }
    let mut found = Vec::new();
    let mut actions = Vec::new();
    for (i, n) in irqs.iter().enumerate() {
        let path = format!("/proc/irq/{n}/smp_affinity_list");
        let want = targets[i % targets.len()];
        match h.read(&path) {
            Ok(cur) => {
                found.push(format!("IRQ {n} on {cur}"));
                if parse_cpu_list(&cur).ok() != Some(vec![want]) {
                    actions.push(Action::Write { path: h.path(&path), value: format!("{want}\n") });
                }
            }
            Err(e) => return Step::new(NAME, Verdict::Error, e, String::new(), why),
        }
    }
    let mut step = Step::new(
        NAME,
        if actions.is_empty() { Verdict::Ok } else { Verdict::Change },
        found.join(", "),
        format!("{} IRQ(s) of {iface} round-robin on CPUs {}", irqs.len(), format_cpu_list(&targets)),
        why,
    );
    step.actions = actions;
    step
}

/// The `limits.d` drop-in `apply` writes.
const LIMITS_FILE: &str = "/etc/security/limits.d/90-bastion.conf";

fn limits(h: &Host, w: &Wants) -> Step {
    const NAME: &str = "limits";
    let user = &w.host.user;
    let memlock_want = if w.bypass() { Some(w.locked_bytes) } else { None };
    let (nofile, memlock) = (rlimit(libc::RLIMIT_NOFILE), rlimit(libc::RLIMIT_MEMLOCK));
    let show = |v: u64| if v == u64::MAX { "unlimited".to_string() } else { v.to_string() };
    let present = h.read(LIMITS_FILE).ok();
    let found = format!(
        "this process: nofile {}, memlock {} bytes; {}",
        show(nofile),
        show(memlock),
        if present.is_some() { format!("{LIMITS_FILE} present") } else { format!("no {LIMITS_FILE}") }
    );
    let mut drop_in = format!(
        "# Written by `bastion configure apply`: limits for the user the node runs as, for login \
         sessions.\n# The systemd units in infra/systemd set their own (LimitNOFILE, LimitMEMLOCK).\n{user} soft nofile {n}\n{user} hard nofile {n}\n",
        n = w.host.nofile
    );
    if memlock_want.is_some() {
        let _ = writeln!(drop_in, "{user} soft memlock unlimited\n{user} hard memlock unlimited");
    }
    let want = match memlock_want {
        Some(b) => format!("nofile >= {}, memlock >= {b} bytes (ingress.{})", w.host.nofile, w.backend),
        None => format!("nofile >= {}", w.host.nofile),
    };
    let why = "every peer, API client and journal file is a descriptor; AF_XDP's UMEM and DPDK's memory are \
               locked, and a locked-memory limit below them fails the ingress at start";
    let process_ok = nofile >= w.host.nofile && memlock_want.is_none_or(|b| memlock >= b);
    let file_ok = present.is_some_and(|t| t.trim() == drop_in.trim());
    let mut step = Step::new(NAME, Verdict::Ok, found, want, why);
    if !process_ok && !file_ok {
        step.verdict = Verdict::Change;
        step.actions.push(Action::Write { path: h.path(LIMITS_FILE), value: drop_in });
    }
    step
}

/// The soft limit of a resource (`u64::MAX`: unlimited).
fn rlimit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `r`.
    let rc = unsafe { libc::getrlimit(resource, &mut r) };
    if rc != 0 {
        return 0;
    }
    if r.rlim_cur == libc::RLIM_INFINITY { u64::MAX } else { r.rlim_cur }
}

fn pins(h: &Host, w: &Wants) -> Step {
    const NAME: &str = "pins";
    if w.pins.is_empty() {
        return Step::skip(NAME, "no tile pinned ([pipeline] pin_*): nothing to isolate".into(), "");
    }
    let online = match h.online() {
        Ok(c) => c,
        Err(e) => return Step::new(NAME, Verdict::Error, e, String::new(), ""),
    };
    let isolated = h.isolated();
    let pinned = w.pinned();
    let found = format!(
        "{}; online CPUs {}, isolated {}",
        w.pins.iter().map(|(k, c)| format!("{k} = {c}")).collect::<Vec<_>>().join(", "),
        format_cpu_list(&online),
        if isolated.is_empty() { "none".to_string() } else { format_cpu_list(&isolated) }
    );
    let why = "a pinned tile polls its core; the scheduler still runs other threads there unless the core \
               is isolated, and each such preemption is a latency spike on the hot path";
    let offline: Vec<String> =
        w.pins.iter().filter(|(_, c)| !online.contains(c)).map(|(k, c)| format!("{k} = {c}")).collect();
    if !offline.is_empty() {
        return Step::new(
            NAME,
            Verdict::Manual,
            found,
            format!("pins on online CPUs: {} is not online; change [pipeline]", offline.join(", ")),
            why,
        );
    }
    let mut shared = Vec::new();
    for c in &pinned {
        let on: Vec<&str> = w.pins.iter().filter(|p| p.1 == *c).map(|p| p.0).collect();
        if on.len() > 1 {
            shared.push(format!("{} share CPU {c}", on.join(" and ")));
        }
    }
    let not_isolated: Vec<usize> = pinned.iter().copied().filter(|c| !isolated.contains(c)).collect();
    let list = format_cpu_list(&pinned);
    let mut want = format!("CPUs {list} isolated");
    if !shared.is_empty() {
        let _ = write!(want, "; one tile per CPU ({})", shared.join("; "));
    }
    if not_isolated.is_empty() && shared.is_empty() {
        return Step::new(NAME, Verdict::Ok, found, want, why);
    }
    if !not_isolated.is_empty() {
        let _ = write!(
            want,
            ": add `isolcpus=managed_irq,domain,{list} nohz_full={list} rcu_nocbs={list}` to the kernel command \
             line and reboot (apply cannot isolate a running kernel's cores)"
        );
    }
    Step::new(NAME, Verdict::Manual, found, want, why)
}

/// The drop-in `apply` writes for the unit's CPU affinity.
fn affinity_drop_in(unit: &str) -> String {
    format!("/etc/systemd/system/{unit}.d/50-bastion-cpu-affinity.conf")
}

fn affinity(h: &Host, w: &Wants) -> Step {
    const NAME: &str = "affinity";
    if w.pins.is_empty() {
        return Step::skip(NAME, "no tile pinned: the unit runs on every core".into(), "");
    }
    let online = match h.online() {
        Ok(c) => c,
        Err(e) => return Step::new(NAME, Verdict::Error, e, String::new(), ""),
    };
    let pinned = w.pinned();
    let housekeeping: Vec<usize> = online.iter().copied().filter(|c| !pinned.contains(c)).collect();
    let why = "the node's unpinned threads (the runtime, consensus, the public network) start on the \
               housekeeping cores, so they never preempt a pinned tile; each tile then pins itself to its \
               core (sched_setaffinity may leave the unit's CPUAffinity, within its cgroup)";
    let path = affinity_drop_in(&w.host.unit);
    if housekeeping.is_empty() {
        return Step::new(
            NAME,
            Verdict::Manual,
            format!("tiles pinned to every online CPU ({})", format_cpu_list(&online)),
            "at least one CPU no tile is pinned to, for the rest of the node: change [pipeline]".into(),
            why,
        );
    }
    let list = format_cpu_list(&housekeeping);
    let text = format!(
        "# Written by `bastion configure apply` from node.toml: the node's unpinned threads on the\n\
         # housekeeping cores; its tiles pin themselves to the [pipeline] pin_* cores ({}).\n\
         [Service]\nCPUAffinity={list}\n",
        format_cpu_list(&pinned)
    );
    let present = h.read(&path);
    let found = match &present {
        Ok(t) => t.lines().find_map(|l| l.strip_prefix("CPUAffinity=")).map_or_else(
            || format!("{} without CPUAffinity", h.path(&path).display()),
            |v| format!("CPUAffinity={v} in {}", h.path(&path).display()),
        ),
        Err(_) => format!("no {}", h.path(&path).display()),
    };
    let ok = present.is_ok_and(|t| t.trim() == text.trim());
    let mut step = Step::new(
        NAME,
        if ok { Verdict::Ok } else { Verdict::Change },
        found,
        format!("CPUAffinity={list} for {} (then `systemctl daemon-reload` and restart)", w.host.unit),
        why,
    );
    if !ok {
        step.actions.push(Action::Write { path: h.path(&path), value: text });
    }
    step
}

/// One step: reads the host for what the config wants.
type StepFn = fn(&Host, &Wants) -> Step;

/// Every step's report for `cfg` on `host` (all steps, or `only`).
pub fn check(host: &Host, cfg: &NodeConfig, only: &[String]) -> Vec<Step> {
    let w = Wants::of(cfg);
    let run: [(&str, StepFn); 8] = [
        ("hugepages", hugepages),
        ("sysctl", sysctl),
        ("governor", governor),
        ("nic", nic),
        ("irq", irq),
        ("limits", limits),
        ("pins", pins),
        ("affinity", affinity),
    ];
    run.iter()
        .filter(|(n, _)| only.is_empty() || only.iter().any(|o| o == n))
        .map(|(_, f)| f(host, &w))
        .collect()
}

/// Applies each step's changes; a step whose change fails becomes an error naming it.
pub fn apply(host: &Host, steps: &mut [Step]) {
    for s in steps.iter_mut() {
        for a in std::mem::take(&mut s.actions) {
            match host.apply(&a) {
                Ok(done) => s.changed.push(done),
                Err(e) => {
                    s.verdict = Verdict::Error;
                    s.changed.push(format!("failed: {e}"));
                }
            }
        }
    }
}

/// Runs `bastion configure check|apply`: `Ok((stdout, exit code))`, or a usage error (exit 2).
pub fn run(cmd: &ConfigureCommand) -> Result<(String, u8), String> {
    let (a, applying) = match cmd {
        ConfigureCommand::Check(a) => (a, false),
        ConfigureCommand::Apply(a) => (a, true),
    };
    for o in &a.only {
        if !STEPS.contains(&o.as_str()) {
            return Err(format!("--only {o}: no such step; steps: {}", STEPS.join(", ")));
        }
    }
    let cfg = match &a.config {
        Some(p) => NodeConfig::load(p)?,
        // Only the tables configure reads matter; the paths are never opened.
        None => toml::from_str("genesis = \"\"\ndata_dir = \"\"\n")
            .map_err(|e| format!("the default config does not parse: {e}"))?,
    };
    let host = Host::new(&a.root);
    let mut steps = check(&host, &cfg, &a.only);
    if applying {
        apply(&host, &mut steps);
        // The host as it is now: what apply left undone shows as still differing, and a step
        // whose change failed stays an error until it holds.
        let done = std::mem::replace(&mut steps, check(&host, &cfg, &a.only));
        for (s, d) in steps.iter_mut().zip(&done) {
            s.changed.clone_from(&d.changed);
            if d.verdict == Verdict::Error && !s.verdict.ready() {
                s.verdict = Verdict::Error;
            }
        }
    }
    let ready = steps.iter().all(|s| s.verdict.ready());
    let code = u8::from(!ready);
    if a.json {
        let v = serde_json::json!({ "ready": ready, "applied": applying, "steps": steps });
        return Ok((format!("{v:#}\n"), code));
    }
    Ok((render(&steps, applying, ready, a.config.as_deref()), code))
}

fn render(steps: &[Step], applying: bool, ready: bool, config: Option<&Path>) -> String {
    let mut out = String::new();
    for s in steps {
        let _ = writeln!(out, "{:<10} {:<7} {}", s.name, s.verdict.label(), s.found);
        if !s.want.is_empty() && s.verdict != Verdict::Skip {
            let _ = writeln!(out, "{:<18} want: {}", "", s.want);
        }
        if !s.verdict.ready() && !s.why.is_empty() {
            let _ = writeln!(out, "{:<18} why:  {}", "", s.why);
        }
        for c in &s.changed {
            let _ = writeln!(out, "{:<18} done: {c}", "");
        }
    }
    let changes = steps.iter().filter(|s| s.verdict == Verdict::Change).count();
    let manual: Vec<&str> = steps.iter().filter(|s| s.verdict == Verdict::Manual).map(|s| s.name).collect();
    let errors: Vec<&str> = steps.iter().filter(|s| s.verdict == Verdict::Error).map(|s| s.name).collect();
    let _ = writeln!(out);
    if ready {
        let _ = writeln!(out, "the host is ready for this config");
        return out;
    }
    if changes > 0 {
        let cfg = config.map(|p| format!(" --config {}", p.display())).unwrap_or_default();
        let verb = if applying { "still differ after apply" } else { "differ" };
        let _ = writeln!(out, "{changes} step(s) {verb}: `sudo bastion configure apply{cfg}` changes them");
    }
    if !manual.is_empty() {
        let _ = writeln!(out, "needs the operator: {} (see want above)", manual.join(", "));
    }
    if !errors.is_empty() {
        let _ = writeln!(out, "could not be checked or changed: {}", errors.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host tree: 4 online CPUs with cpufreq, small sysctls, no isolated CPUs, 0 hugepages.
    fn fixture() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let put = |p: &str, v: &str| {
            let path = d.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, v).unwrap();
        };
        put("/sys/devices/system/cpu/online", "0-3\n");
        put("/sys/devices/system/cpu/isolated", "\n");
        for c in 0..4 {
            put(&format!("/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"), "powersave\n");
        }
        put("/proc/sys/net/core/rmem_max", "212992\n");
        put("/proc/sys/net/core/wmem_max", "212992\n");
        put("/proc/sys/net/core/netdev_max_backlog", "1000\n");
        put("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n");
        d
    }

    /// A config as parsed, without `NodeConfig::load`'s checks against this machine (its pins
    /// are checked against the fixture's CPUs here).
    fn cfg(extra: &str) -> NodeConfig {
        let c: NodeConfig =
            toml::from_str(&format!("genesis = \"g.json\"\ndata_dir = \"data\"\n{extra}")).unwrap();
        c.host.check(Path::new("node.toml")).unwrap();
        c
    }

    fn step<'a>(steps: &'a [Step], name: &str) -> &'a Step {
        steps.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn cpu_lists_parse_and_format_like_the_kernel() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n").unwrap(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").unwrap_err().contains("\"a\""));
    }

    #[test]
    fn apply_changes_only_what_differs_and_a_second_apply_changes_nothing() {
        let root = fixture();
        let host = Host::new(root.path());
        let c = cfg("[pipeline]\npin_verify = 2\npin_net = 3\n");
        let mut steps = check(&host, &c, &[]);
        assert_eq!(step(&steps, "sysctl").verdict, Verdict::Change, "{steps:?}");
        assert_eq!(step(&steps, "governor").verdict, Verdict::Change);
        // Only the pinned cores' governors are the node's business.
        assert_eq!(step(&steps, "governor").want, "performance on CPUs 2-3");
        assert_eq!(step(&steps, "hugepages").verdict, Verdict::Skip);
        assert_eq!(step(&steps, "pins").verdict, Verdict::Manual);
        assert!(
            step(&steps, "pins").want.contains("isolcpus=managed_irq,domain,2-3"),
            "{:?}",
            step(&steps, "pins")
        );
        apply(&host, &mut steps);
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read("proc/sys/net/core/rmem_max"), "67108864\n");
        assert_eq!(read("proc/sys/net/core/netdev_max_backlog"), "10000\n");
        assert_eq!(read("sys/devices/system/cpu/cpu2/cpufreq/scaling_governor"), "performance\n");
        assert_eq!(read("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"), "powersave\n");
        let again = check(&host, &c, &[]);
        for name in ["sysctl", "governor", "affinity"] {
            assert_eq!(step(&again, name).verdict, Verdict::Ok, "{name}: {:?}", step(&again, name));
            assert!(step(&again, name).actions.is_empty());
        }
        // A value above the floor is left alone (a floor, not a setting).
        std::fs::write(root.path().join("proc/sys/net/core/rmem_max"), "268435456\n").unwrap();
        let mut third = check(&host, &c, &["sysctl".into()]);
        apply(&host, &mut third);
        assert!(third[0].changed.is_empty());
        assert_eq!(read("proc/sys/net/core/rmem_max"), "268435456\n");
        // The unit's unpinned threads go to the housekeeping cores, once.
        assert_eq!(step(&again, "affinity").verdict, Verdict::Ok, "{:?}", step(&again, "affinity"));
        let drop_in = read("etc/systemd/system/bastion.service.d/50-bastion-cpu-affinity.conf");
        assert!(drop_in.contains("[Service]\nCPUAffinity=0-1\n"), "{drop_in}");
        // Isolating the pinned cores makes the pins step ready.
        std::fs::write(root.path().join("sys/devices/system/cpu/isolated"), "2-3\n").unwrap();
        assert_eq!(step(&check(&host, &c, &[]), "pins").verdict, Verdict::Ok);
    }

    #[test]
    fn pins_on_offline_or_shared_cores_need_the_operator() {
        let root = fixture();
        let host = Host::new(root.path());
        std::fs::write(root.path().join("sys/devices/system/cpu/isolated"), "1-3\n").unwrap();
        let s = check(&host, &cfg("[pipeline]\npin_verify = 9\n"), &["pins".into()]);
        assert_eq!(s[0].verdict, Verdict::Manual);
        assert!(s[0].want.contains("pin_verify = 9 is not online"), "{:?}", s[0]);
        let s = check(&host, &cfg("[pipeline]\npin_verify = 2\npin_admission = 2\n"), &["pins".into()]);
        assert_eq!(s[0].verdict, Verdict::Manual);
        assert!(s[0].want.contains("pin_verify and pin_admission share CPU 2"), "{:?}", s[0]);
        assert!(!s[0].want.contains("isolcpus"), "CPU 2 is isolated: {:?}", s[0]);
        let s = check(&host, &cfg(""), &["pins".into()]);
        assert_eq!(s[0].verdict, Verdict::Skip);
    }

    #[test]
    fn irqs_of_the_interface_go_round_robin_to_the_housekeeping_cores() {
        let root = fixture();
        let host = Host::new(root.path());
        let interrupts = "           CPU0       CPU1       CPU2       CPU3\n\
             24:          5          0          0          0  PCI-MSI 1-edge      eth1-TxRx-0\n\
             25:          5          0          0          0  PCI-MSI 2-edge      eth1-TxRx-1\n\
             26:          5          0          0          0  PCI-MSI 3-edge      eth1-TxRx-2\n\
             27:          5          0          0          0  PCI-MSI 4-edge      eth10-TxRx-0\n\
             NMI:          0          0          0          0   Non-maskable interrupts\n";
        std::fs::write(root.path().join("proc/interrupts"), interrupts).unwrap();
        for n in 24..28 {
            let d = root.path().join(format!("proc/irq/{n}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("smp_affinity_list"), "0-3\n").unwrap();
        }
        std::fs::create_dir_all(root.path().join("sys/class/net/eth1")).unwrap();
        let c = cfg(
            "[ingress]\nbackend = \"af_xdp\"\niface = \"eth1\"\n[pipeline]\npin_net = 2\npin_verify = 3\n",
        );
        let mut s = check(&host, &c, &["irq".into()]);
        assert_eq!(s[0].verdict, Verdict::Change, "{:?}", s[0]);
        assert_eq!(s[0].want, "3 IRQ(s) of eth1 round-robin on CPUs 0-1");
        apply(&host, &mut s);
        let aff = |n: u32| {
            std::fs::read_to_string(root.path().join(format!("proc/irq/{n}/smp_affinity_list"))).unwrap()
        };
        assert_eq!((aff(24), aff(25), aff(26)), ("0\n".into(), "1\n".into(), "0\n".into()));
        assert_eq!(aff(27), "0-3\n", "eth10's IRQ is not eth1's");
        assert_eq!(check(&host, &c, &["irq".into()])[0].verdict, Verdict::Ok);
        // host.irq_cpus overrides the housekeeping set.
        let c = cfg("[ingress]\nbackend = \"af_xdp\"\niface = \"eth1\"\n[host]\nirq_cpus = \"1\"\n");
        assert_eq!(check(&host, &c, &["irq".into()])[0].verdict, Verdict::Change);
    }

    #[test]
    fn hugepages_for_dpdk_are_reserved_and_a_missing_size_is_an_error() {
        let root = fixture();
        let host = Host::new(root.path());
        let c = cfg("[ingress]\nbackend = \"dpdk\"\n[host]\nhugepages = 64\n");
        let mut s = check(&host, &c, &["hugepages".into()]);
        assert_eq!(s[0].verdict, Verdict::Change);
        assert!(s[0].found.starts_with("0 pages of 2048 kB reserved; hugetlbfs not mounted"), "{:?}", s[0]);
        // The write is checked here; the mount is a real mount, done by the integration test as root.
        s[0].actions.retain(|a| matches!(a, Action::Write { .. }));
        apply(&host, &mut s);
        assert_eq!(
            std::fs::read_to_string(
                root.path().join("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
            )
            .unwrap(),
            "64\n"
        );
        let s = check(&host, &cfg("[host]\nhugepages = 2\nhugepage_kb = 1048576\n"), &["hugepages".into()]);
        assert_eq!(s[0].verdict, Verdict::Error);
        assert!(s[0].found.contains("hugepages-2048kB"), "names the sizes there: {:?}", s[0]);
    }

    #[test]
    fn limits_drop_in_is_written_once_for_the_service_user() {
        let root = fixture();
        let host = Host::new(root.path());
        // A floor no process has, so the drop-in decides.
        let c =
            cfg("[ingress]\nbackend = \"af_xdp\"\n[host]\nnofile = 18446744073709551614\nuser = \"val\"\n");
        let mut s = check(&host, &c, &["limits".into()]);
        assert_eq!(s[0].verdict, Verdict::Change, "{:?}", s[0]);
        apply(&host, &mut s);
        let text =
            std::fs::read_to_string(root.path().join("etc/security/limits.d/90-bastion.conf")).unwrap();
        assert!(
            text.contains("val hard memlock unlimited")
                && text.contains("val soft nofile 18446744073709551614")
        );
        assert_eq!(check(&host, &c, &["limits".into()])[0].verdict, Verdict::Ok);
    }

    #[test]
    fn ethtool_channel_listings_parse() {
        let veth = "Channel parameters for v0:\nPre-set maximums:\nRX:\t\t2\nTX:\t\t2\nOther:\t\tn/a\n\
                    Combined:\tn/a\nCurrent hardware settings:\nRX:\t\t1\nTX:\t\t1\nOther:\t\tn/a\nCombined:\tn/a\n";
        assert_eq!(parse_channels(veth), [(None, None), (Some(2), Some(1))]);
        let nic = "Pre-set maximums:\nRX:\t\tn/a\nCombined:\t63\nCurrent hardware settings:\nRX:\t\tn/a\nCombined:\t8\n";
        assert_eq!(parse_channels(nic), [(Some(63), Some(8)), (None, None)]);
    }

    #[test]
    fn host_table_errors_name_the_key() {
        let bad = |t: &str| {
            let d = tempfile::tempdir().unwrap();
            let p = d.path().join("node.toml");
            std::fs::write(&p, format!("genesis = \"g\"\nkeys = \"k\"\ndata_dir = \"d\"\n[host]\n{t}\n"))
                .unwrap();
            NodeConfig::load(&p).unwrap_err()
        };
        assert!(bad("hugepage_kb = 4").contains("`host.hugepage_kb` is 4"));
        assert!(bad("governor = \"turbo\"").contains("`host.governor`"));
        assert!(bad("irq_cpus = \"x\"").contains("`host.irq_cpus`"));
    }
}
