//! What the process-based tests share: running `bastion run` processes (validators `v{i}`
//! and full nodes `f{j}` of a `bastion init` directory), one network at a time per test
//! binary, and reading roots from a node's block log.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use bastion_storage::{BlockLog, LogConfig};
use bastion_store::LogEntry;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_bastion");

/// One network at a time in this binary (timing, ports).
pub static ONE_NETWORK_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_NETWORK_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The first port of a block of `span` loopback ports that are free for TCP and UDP now, all
/// below Linux's ephemeral range (32768 and up by default): a port there can be taken at any
/// moment by an outgoing connection, the nodes' own dials to each other included, and a node
/// that then cannot bind its listener never joins. The search starts at a place that depends
/// on the process id, so test binaries run side by side rarely probe the same block.
pub fn port_block(span: u16) -> u16 {
    const LOW: u16 = 10_000;
    // A devnet started at the block finds its other ports up to 4,000 above it.
    const HIGH: u16 = 28_000;
    let free = |p: u16| {
        std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
    };
    let blocks = (HIGH - LOW) / span;
    let first = (std::process::id() % u32::from(blocks)) as u16;
    for k in 0..blocks {
        let base = LOW + ((first + k) % blocks) * span;
        if (base..base + span).all(free) {
            return base;
        }
    }
    panic!("no free block of {span} loopback ports in {LOW}..{HIGH}");
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The processes (v0..v3, then f0), killed on drop.
pub struct Nodes {
    pub dir: PathBuf,
    names: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Nodes {
    pub fn new(dir: &Path, validators: usize, full: usize) -> Nodes {
        let names: Vec<String> =
            (0..validators).map(|i| format!("v{i}")).chain((0..full).map(|j| format!("f{j}"))).collect();
        let children = names.iter().map(|_| None).collect();
        Nodes { dir: dir.to_path_buf(), names, children }
    }

    pub fn start(&mut self, k: usize) {
        let dir = self.dir.join(&self.names[k]);
        let stderr =
            std::fs::OpenOptions::new().create(true).append(true).open(dir.join("stderr.log")).unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(dir.join("node.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.children[k] = Some(child);
    }

    pub fn kill(&mut self, k: usize) {
        if let Some(mut c) = self.children[k].take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    pub fn stop_all(&mut self) {
        for c in self.children.iter().flatten() {
            let ok = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().unwrap();
            assert!(ok.success());
        }
        for (k, c) in self.children.iter_mut().enumerate() {
            if let Some(mut c) = c.take() {
                let status = c.wait().unwrap();
                assert!(status.success(), "{} exited with {status} after SIGTERM", self.names[k]);
            }
        }
    }

    pub fn status(&self, k: usize) -> serde_json::Value {
        std::fs::read(self.dir.join(&self.names[k]).join("data/status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn stderr(&self, k: usize) -> String {
        std::fs::read_to_string(self.dir.join(&self.names[k]).join("stderr.log")).unwrap_or_default()
    }

    pub fn height(&self, k: usize) -> u64 {
        self.status(k)["height"].as_u64().unwrap_or(0)
    }

    /// Waits for `ok`; fails at once, with its stderr, when a started node has exited, and
    /// after `timeout` with every node's height and the end of every node's stderr.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, ok: impl Fn(&Nodes) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            for k in 0..self.children.len() {
                let exited = self.children[k].as_mut().and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    self.children[k] = None;
                    panic!(
                        "waiting for {what}: {} exited with {status}; its stderr ends:\n{}",
                        self.names[k],
                        tail(&self.stderr(k), 40)
                    );
                }
            }
            if start.elapsed() >= timeout {
                let heights: Vec<u64> = (0..self.names.len()).map(|k| self.height(k)).collect();
                let logs: String = (0..self.names.len())
                    .map(|k| format!("--- {} stderr ends:\n{}\n", self.names[k], tail(&self.stderr(k), 15)))
                    .collect();
                panic!("timed out after {timeout:?} waiting for {what}; heights {heights:?}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for k in 0..self.children.len() {
            self.kill(k);
        }
    }
}

/// The state root logged at `height` in a node's data dir.
pub fn root_at(data: &Path, height: u64) -> [u8; 32] {
    let (log, _) = BlockLog::open(&data.join("log"), LogConfig::default()).unwrap();
    LogEntry::decode(&log.read(height).unwrap()).unwrap().root
}

/// A node's block log with its first and last heights.
pub fn roots(data: &Path) -> (BlockLog, u64, u64) {
    let (log, _) = BlockLog::open(&data.join("log"), LogConfig::default()).unwrap();
    let (first, last) = (log.first_height().unwrap_or(1), log.last_height().unwrap_or(0));
    (log, first, last)
}

/// The root of `log` at height `h`.
pub fn root(log: &BlockLog, h: u64) -> [u8; 32] {
    LogEntry::decode(&log.read(h).unwrap()).unwrap().root
}

/// `bastion init` of 4 validators and `full` full nodes into `dir`; p2p ports from `base`,
/// ingress `base + 10`, metrics `base + 20`, public `base + 30`, API `base + 40`.
pub fn init(dir: &Path, base: u16, full: usize) -> bastion_consensus::ChainSpec {
    let port = |k: u16| (base + k).to_string();
    let out = Command::new(BIN)
        .args(["init", "--validators", "4", "--seed", "7", "--base-port", &port(0)])
        .args(["--ingress-port", &port(10), "--metrics-port", &port(20)])
        .args(["--public-port", &port(30), "--api-port", &port(40), "--full-nodes", &full.to_string()])
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for j in 0..full {
        assert!(text.contains(&format!("f{j} full node")), "{text}");
        let toml = std::fs::read_to_string(dir.join(format!("f{j}/node.toml"))).unwrap();
        assert!(toml.contains("role = \"full\""), "{toml}");
        assert!(!dir.join(format!("f{j}/keys.json")).exists(), "a full node holds no consensus keys");
    }
    bastion_consensus::ChainSpec::load(&dir.join("genesis.json")).unwrap()
}

/// `tool` (run by name), or `None` (after a notice) where it is not installed; under `CI` a
/// missing tool fails the test (`.ci/run` installs Debian's `package`).
pub fn tool(tool: &'static str, package: &str) -> Option<&'static str> {
    let found = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if found {
        return Some(tool);
    }
    assert!(std::env::var_os("CI").is_none(), "CI is set and {tool} is missing (apt-get install {package})");
    println!("notice: {tool} not installed; skipped (apt-get install {package})");
    None
}

/// `GET path` on a node's HTTP endpoint: the status line and the body.
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("HTTP at {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

/// `GET /metrics` of a node's metrics endpoint, the body (which names the metric `expect`).
pub fn scrape(addr: &str, expect: &str) -> String {
    let (status, body) = http_get(addr, "/metrics");
    assert!(status.starts_with("HTTP/1.0 200") || status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.contains(expect), "no {expect} at {addr}: {body}");
    body
}

/// `promtool check metrics` on `text`: no complaint at all. Skipped with a notice where
/// promtool is not installed (Debian's `prometheus`), except under `CI`.
pub fn promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let Some(promtool) = tool("promtool", "prometheus") else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}");
}
