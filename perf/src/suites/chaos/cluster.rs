//! The validators of one schedule: `bastion init` with one address per namespace, each node's
//! directory on its own small tmpfs (so a disk can fill), and `bastion run` processes started
//! inside their namespaces, killed, paused, resumed and restarted.

use super::net::{self, Fabric};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Each node's tmpfs.
const DISK_MIB: u64 = 256;
/// Ports (the same on every node: each has its own address).
pub const P2P_PORT: u16 = 7400;
pub const INGRESS_PORT: u16 = 8400;
pub const API_PORT: u16 = 8090;

pub struct Cluster {
    pub bin: PathBuf,
    /// The chain directory: `genesis.json`, `v{k}/` per validator and `f{j}/` per full node,
    /// each a tmpfs mount.
    pub dir: PathBuf,
    /// Each node's stderr, outside its tmpfs.
    pub logs: PathBuf,
    /// Validators `0..validators`, full nodes `validators..nodes`.
    pub validators: usize,
    pub nodes: usize,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    /// Times each node was started (1 + restarts).
    pub starts: Vec<u32>,
    /// Whether node `k`'s file system filled while its current process ran: a write that
    /// failed then can surface after the space is freed (commonware's journal buffers it).
    filled_this_life: Vec<bool>,
}

/// What a node's log says when a write to its data dir failed: the OS's own error, commonware
/// runtime's storage errors, or the hint `bastion run` prints after such a panic.
const WRITE_FAILED: [&str; 4] =
    ["No space left on device", "WriteFailed", "StorageFull", "could not write its data dir"];

impl Cluster {
    /// Mounts the nodes' file systems under `work` (once per campaign).
    pub fn new(bin: &Path, work: &Path, validators: usize, full: usize) -> Result<Cluster, String> {
        unmount_stale();
        let dir = work.join("chain");
        let logs = work.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        let nodes = validators + full;
        for k in 0..nodes {
            let mount = dir.join(name(validators, k));
            let _ = net::sh(Command::new("umount").arg(&mount));
            std::fs::create_dir_all(&mount).map_err(|e| format!("{}: {e}", mount.display()))?;
            net::sh(
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={DISK_MIB}m"), "tmpfs"])
                    .arg(&mount),
            )?;
        }
        Ok(Cluster {
            bin: bin.to_path_buf(),
            dir,
            logs,
            validators,
            nodes,
            children: (0..nodes).map(|_| None).collect(),
            paused: vec![false; nodes],
            starts: vec![0; nodes],
            filled_this_life: vec![false; nodes],
        })
    }

    pub fn node_dir(&self, k: usize) -> PathBuf {
        self.dir.join(name(self.validators, k))
    }

    pub fn log_path(&self, k: usize) -> PathBuf {
        self.logs.join(format!("{}.log", name(self.validators, k)))
    }

    /// A fresh chain: every node's disk emptied, `bastion init` with one address per node,
    /// and each node.toml given its API on its own address and small log segments.
    pub fn init(&mut self, seed: u64) -> Result<(), String> {
        self.stop_all();
        let _ = std::fs::remove_file(self.dir.join("genesis.json"));
        for k in 0..self.nodes {
            let d = self.node_dir(k);
            for e in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?.flatten() {
                let p = e.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
            let _ = std::fs::remove_file(self.log_path(k));
        }
        self.starts = vec![0; self.nodes];
        let hosts: Vec<String> = (0..self.nodes).map(|k| net::node_ip(k).to_string()).collect();
        let out = Command::new(&self.bin)
            .args([
                "init",
                "--validators",
                &self.validators.to_string(),
                "--seed",
                &(seed % 1_000_000).to_string(),
            ])
            .args(["--full-nodes", &(self.nodes - self.validators).to_string()])
            .args(["--hosts", &hosts.join(",")])
            .args(["--base-port", &P2P_PORT.to_string(), "--ingress-port", &INGRESS_PORT.to_string()])
            .arg("--out")
            .arg(&self.dir)
            .output()
            .map_err(|e| format!("cannot run {} init: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(format!("bastion init failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        for k in 0..self.nodes {
            let path = self.node_dir(k).join("node.toml");
            let toml = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let api = format!("listen = \"{}:{API_PORT}\"\nrate_per_ip = 1000000", net::node_ip(k));
            // A validator's API line is a comment; a full node's listens on loopback at
            // `init`'s --api-port (8080 + j).
            let full_api = format!("listen = \"127.0.0.1:{}\"", 8080 + k.saturating_sub(self.validators));
            let toml = toml.replace("# listen = \"127.0.0.1:8090\"", &api).replace(&full_api, &api);
            let toml =
                format!("{toml}\n[storage]\nsnapshot_every = 100\nkeep_snapshots = 2\nsegment_kib = 1024\n");
            std::fs::write(&path, toml).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Starts node `k` inside its namespace.
    pub fn start(&mut self, fabric: &Fabric, k: usize) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(k))
            .map_err(|e| format!("{}: {e}", self.log_path(k).display()))?;
        let ns = fabric.ns_fd(k);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("run")
            .arg("--config")
            .arg(self.node_dir(k).join("node.toml"))
            .env("RUST_LOG", std::env::var("BASTION_CHAOS_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
        // setns(2) (on an fd the parent holds open for the fabric's lifetime) and close_range(2),
        // all async-signal-safe system calls. PR_SET_PDEATHSIG: a harness that is killed (or interrupted) takes
        // its nodes with it instead of leaving them running in their namespaces.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setns(ns, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing of the harness's but stdio goes to the node (a C library's socket
                // opened without SOCK_CLOEXEC would otherwise outlive its owner; see `delay`).
                if libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start node {k}: {e}"))?;
        self.children[k] = Some(child);
        self.paused[k] = false;
        self.starts[k] += 1;
        self.filled_this_life[k] = false;
        Ok(())
    }

    fn signal(&self, k: usize, sig: i32) {
        if let Some(c) = &self.children[k] {
            // SAFETY: kill(2) on our own child's pid (not yet reaped: we hold its Child).
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    pub fn kill(&mut self, k: usize) {
        if self.paused[k] {
            self.resume(k);
        }
        if let Some(mut c) = self.children[k].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pause(&mut self, k: usize) {
        self.signal(k, libc::SIGSTOP);
        self.paused[k] = true;
    }

    pub fn resume(&mut self, k: usize) {
        self.signal(k, libc::SIGCONT);
        self.paused[k] = false;
    }

    /// Whether node `k`'s process exited on its own; `Some(status)` once (it is reaped).
    pub fn exited(&mut self, k: usize) -> Option<std::process::ExitStatus> {
        let status = self.children[k].as_mut().and_then(|c| c.try_wait().ok().flatten());
        if status.is_some() {
            self.children[k] = None;
        }
        status
    }

    /// Whether node `k`'s process, which exited, stopped because its disk filled while it ran:
    /// its file system filled during its life and its log ends with the write that failed
    /// (the stop a full disk is documented to cause; anything else is a crash).
    pub fn stopped_by_full_disk(&self, k: usize) -> bool {
        self.filled_this_life[k] && {
            let tail = self.log_tail(k, 60);
            WRITE_FAILED.iter().any(|m| tail.contains(m))
        }
    }

    pub fn running(&self, k: usize) -> bool {
        self.children[k].is_some()
    }

    /// SIGTERM to every node, then waits (SIGKILL after `grace`); returns the nodes that did
    /// not exit cleanly, with why.
    pub fn stop_all_gracefully(&mut self, grace: Duration) -> Vec<(usize, String)> {
        for k in 0..self.nodes {
            if self.paused[k] {
                self.resume(k);
            }
            self.signal(k, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + grace;
        let mut bad = Vec::new();
        for k in 0..self.nodes {
            let Some(mut c) = self.children[k].take() else { continue };
            loop {
                match c.try_wait() {
                    Ok(Some(st)) if st.success() => break,
                    Ok(Some(st)) => {
                        bad.push((k, format!("exited with {st} after SIGTERM")));
                        break;
                    }
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        bad.push((k, format!("did not exit within {grace:?} of SIGTERM")));
                        break;
                    }
                }
            }
        }
        bad
    }

    pub fn stop_all(&mut self) {
        for k in 0..self.nodes {
            self.kill(k);
        }
    }

    /// Fills node `k`'s file system to the last byte (a ballast file).
    pub fn fill_disk(&mut self, k: usize) -> Result<u64, String> {
        use std::io::Write as _;
        self.filled_this_life[k] = true;
        let path = self.node_dir(k).join("ballast");
        let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        // Whatever is left under one chunk.
        loop {
            match f.write(&chunk[..4096]) {
                Ok(n) if n > 0 => written += n as u64,
                _ => break,
            }
        }
        Ok(written)
    }

    pub fn free_disk(&self, k: usize) {
        let _ = std::fs::remove_file(self.node_dir(k).join("ballast"));
    }

    /// The end of node `k`'s stderr.
    pub fn log_tail(&self, k: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(k)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Unmounts the nodes' file systems.
    pub fn unmount(&mut self) {
        self.stop_all();
        for k in 0..self.nodes {
            let _ = net::sh(Command::new("umount").arg(self.node_dir(k)));
        }
    }
}

/// Unmounts the node file systems of campaigns whose harness is gone (killed before its
/// `Drop` ran): `<tmp>/bastion-chaos-<pid>/chain/*` with no process `<pid>`.
fn unmount_stale() {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let tmp = std::env::temp_dir().join("bastion-chaos-");
    let tmp = tmp.to_string_lossy();
    for point in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        let Some(rest) = point.strip_prefix(tmp.as_ref()) else { continue };
        let Some(pid) = rest.split('/').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = net::sh(Command::new("umount").arg(point));
        }
    }
}

/// Node `k`'s directory name: `v{k}` for a validator, `f{j}` for full node `j`.
pub fn name(validators: usize, k: usize) -> String {
    if k < validators { format!("v{k}") } else { format!("f{}", k - validators) }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.unmount();
    }
}
