//! The campaign's network: one network namespace per node, each joined by a veth pair to one
//! bridge in the root namespace (where the client and the harness live), and the commands that
//! break it: nftables rules inside a node's namespace (loss, partitions, the NFQUEUE hook of
//! the delayer) and a tbf qdisc on its interface (bandwidth).
//!
//! Everything here is created by [`Fabric::create`] and removed by its `Drop` (and by the next
//! campaign's `create`, should a killed harness have left anything behind): names all start
//! with [`prefix`], which holds the campaign's instance (`BASTION_CHAOS_INSTANCE`, 0 to 9:
//! campaigns side by side on one machine each take their own names and subnet).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// This process's campaign instance (set once by [`set_instance`]; 0 by default).
static INSTANCE: std::sync::OnceLock<u8> = std::sync::OnceLock::new();

/// Sets the instance (0 to 9) before anything is created.
pub fn set_instance(i: u8) -> Result<(), String> {
    if i > 9 {
        return Err(format!("BASTION_CHAOS_INSTANCE {i}: 0 to 9"));
    }
    INSTANCE.set(i).map_err(|_| "the chaos instance is set once".to_string())
}

pub fn instance() -> u8 {
    INSTANCE.get().copied().unwrap_or(0)
}

/// What every name this module creates starts with (namespaces, links, nft tables): `bchaos`
/// for instance 0, `bchaos{i}` for the others.
pub fn prefix() -> String {
    match instance() {
        0 => "bchaos".into(),
        i => format!("bchaos{i}"),
    }
}

/// The bridge in the root namespace.
fn bridge() -> String {
    format!("{}-br", prefix())
}

/// The /24 the nodes and the client share: 10.231.0.0/24 for instance 0, 10.(231+i).0.0/24.
fn subnet() -> [u8; 3] {
    [10, 231 + instance(), 0]
}

/// The client's (the root namespace's) address on the bridge.
pub fn client_ip() -> Ipv4Addr {
    let s = subnet();
    Ipv4Addr::new(s[0], s[1], s[2], 1)
}
/// The interface inside every node's namespace.
pub const IFACE: &str = "eth0";

/// The delayer's rule (deleted as is; added with `-A` for `-D`).
const QUEUE_RULE: [&str; 10] =
    ["-D", "OUTPUT", "-o", IFACE, "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass", "-w"];

/// Node `k`'s address.
pub fn node_ip(k: usize) -> Ipv4Addr {
    let s = subnet();
    Ipv4Addr::new(s[0], s[1], s[2], 10 + k as u8)
}

/// Node `k`'s namespace.
pub fn ns_name(k: usize) -> String {
    format!("{}-n{k}", prefix())
}

/// Runs `cmd`; an error quotes its stderr.
pub fn sh(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `ip ARGS`.
fn ip(args: &[&str]) -> Result<(), String> {
    sh(Command::new("ip").args(args))
}

/// `ip netns exec NS PROGRAM ARGS`.
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<(), String> {
    sh(Command::new("ip").args(["netns", "exec", ns, program]).args(args))
}

/// `nft -f -` inside `ns`, with `script` on its stdin.
pub fn nft(ns: &str, script: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft in {ns}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|e| format!("nft in {ns}: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft in {ns}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("nft in {ns} failed: {}\nscript:\n{script}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// What the campaign needs on the host: root, `ip`, `nft`, `tc`, and the kernel's nfqueue.
pub fn preflight() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "the chaos suite builds network namespaces, nftables rules and tmpfs mounts: run it as root"
                .into(),
        );
    }
    for (tool, package) in
        [("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables"), ("iptables", "iptables")]
    {
        let found = Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            return Err(format!("`{tool}` is missing: apt-get install {package}"));
        }
    }
    Ok(())
}

/// The namespaces, veths and bridge of one campaign.
pub struct Fabric {
    /// An open handle on each namespace (`/run/netns/NAME`), for `setns`.
    handles: Vec<File>,
}

impl Fabric {
    /// Removes whatever a previous campaign left, then builds `nodes` namespaces on a bridge.
    pub fn create(nodes: usize) -> Result<Fabric, String> {
        cleanup();
        let br = bridge();
        ip(&["link", "add", &br, "type", "bridge"])?;
        let client = format!("{}/24", client_ip());
        ip(&["addr", "add", &client, "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        let mut handles = Vec::with_capacity(nodes);
        for k in 0..nodes {
            let ns = ns_name(k);
            let host = format!("{}-v{k}", prefix());
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &host, "type", "veth", "peer", "name", IFACE, "netns", &ns])?;
            ip(&["link", "set", &host, "master", &br, "up"])?;
            let addr = format!("{}/24", node_ip(k));
            in_ns(&ns, "ip", &["addr", "add", &addr, "dev", IFACE])?;
            in_ns(&ns, "ip", &["link", "set", IFACE, "up"])?;
            in_ns(&ns, "ip", &["link", "set", "lo", "up"])?;
            let path = format!("/run/netns/{ns}");
            handles.push(File::open(&path).map_err(|e| format!("{path}: {e}"))?);
        }
        Ok(Fabric { handles })
    }

    /// The raw fd of node `k`'s namespace handle (valid while `self` lives).
    pub fn ns_fd(&self, k: usize) -> i32 {
        self.handles[k].as_raw_fd()
    }

    /// Drops every packet node `k` sends to or receives from `peers` (one direction each when
    /// `outbound`/`inbound` say so). One nft table per fault: `heal` deletes it.
    pub fn block(
        &self,
        fault: usize,
        k: usize,
        peers: &[usize],
        inbound: bool,
        outbound: bool,
    ) -> Result<(), String> {
        let set: Vec<String> = peers.iter().map(|p| node_ip(*p).to_string()).collect();
        let set = set.join(", ");
        let mut script = format!("table inet {}_f{fault} {{\n", prefix());
        if inbound {
            script += &format!(
                "  chain input {{ type filter hook input priority -10; policy accept; ip saddr {{ {set} }} drop; }}\n"
            );
        }
        if outbound {
            script += &format!(
                "  chain output {{ type filter hook output priority -10; policy accept; ip daddr {{ {set} }} drop; }}\n"
            );
        }
        script += "}\n";
        nft(&ns_name(k), &script)
    }

    /// Drops `percent`% of node `k`'s packets at random, both directions, on its interface.
    pub fn loss(&self, fault: usize, k: usize, percent: u32) -> Result<(), String> {
        let p = prefix();
        let script = format!(
            "table inet {p}_f{fault} {{\n\
             \x20 chain input {{ type filter hook input priority -10; policy accept; iifname \"{IFACE}\" numgen random mod 100 < {percent} drop; }}\n\
             \x20 chain output {{ type filter hook output priority -10; policy accept; oifname \"{IFACE}\" numgen random mod 100 < {percent} drop; }}\n\
             }}\n"
        );
        nft(&ns_name(k), &script)
    }

    /// Removes fault `fault`'s table from node `k`'s namespace.
    pub fn heal(&self, fault: usize, k: usize) -> Result<(), String> {
        nft(&ns_name(k), &format!("delete table inet {}_f{fault}\n", prefix()))
    }

    /// Sends node `k`'s outgoing packets on its interface through NFQUEUE 0 (the delayer);
    /// `--queue-bypass`: they pass when no program listens. Through iptables (its nft
    /// back end with the xtables NFQUEUE target): this kernel lacks nft's own `queue`
    /// expression (`nft_queue`).
    pub fn queue_outbound(&self, k: usize) -> Result<(), String> {
        in_ns(&ns_name(k), "iptables", &QUEUE_RULE.map(|a| if a == "-D" { "-A" } else { a }))
    }

    pub fn unqueue_outbound(&self, k: usize) -> Result<(), String> {
        in_ns(&ns_name(k), "iptables", &QUEUE_RULE)
    }

    /// Packets node `k`'s kernel holds in NFQUEUE 0 waiting for the delayer's verdict
    /// (`/proc/net/netfilter/nfnetlink_queue`'s `queue_total`; 0 when nothing is bound).
    pub fn queued(&self, k: usize) -> Result<u64, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns_name(k), "cat", "/proc/net/netfilter/nfnetlink_queue"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot read node {k}'s queue: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        // Fields: queue number, peer port id, queue total, copy mode, copy range, ...
        Ok(text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&"0")).then(|| f.get(2).and_then(|t| t.parse::<u64>().ok())).flatten()
            })
            .sum())
    }

    /// A token bucket of `kbit` on node `k`'s outgoing interface.
    pub fn limit(&self, k: usize, kbit: u32) -> Result<(), String> {
        let rate = format!("{kbit}kbit");
        // A burst of at least one MTU-sized packet per tick, and a queue of 200 ms at the rate.
        let burst = format!("{}b", (kbit as usize * 1000 / 8 / 100).max(3_000));
        in_ns(
            &ns_name(k),
            "tc",
            &[
                "qdisc", "replace", "dev", IFACE, "root", "tbf", "rate", &rate, "burst", &burst, "latency",
                "200ms",
            ],
        )
    }

    pub fn unlimit(&self, k: usize) -> Result<(), String> {
        in_ns(&ns_name(k), "tc", &["qdisc", "del", "dev", IFACE, "root"])
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        cleanup();
    }
}

/// Deletes every namespace and link named [`prefix`]`-*` (the veths go with their namespace).
pub fn cleanup() {
    let quiet = |args: &[&str]| {
        let _ = Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
    };
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{}-", prefix())) {
                quiet(&["netns", "del", &name]);
            }
        }
    }
    // A namespace something still holds outlives `netns del`, and its veth's host end with it.
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{}-", prefix())) {
                quiet(&["link", "del", &name]);
            }
        }
    }
}

/// Moves the calling thread into the namespace behind `fd` (a thread's network namespace is
/// its own: the rest of the process stays where it is).
pub fn enter(fd: i32) -> Result<(), String> {
    // SAFETY: setns only reads the fd, which the caller keeps open; it changes this thread's
    // network namespace and nothing else.
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    if rc == 0 { Ok(()) } else { Err(format!("setns: {}", std::io::Error::last_os_error())) }
}
