//! Test and benchmark plumbing: two network namespaces joined by a veth pair, created with
//! `ip` (root only) and deleted on drop, and threads that run inside one of them (`setns` of
//! the calling thread only; sockets and XDP attachments made there stay in that namespace
//! when the values move to other threads).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

/// Two namespaces, `rx` (the validator's side) and `tx` (the sender's), joined by a veth pair
/// with fixed addresses (10.77.0.1/24 and 10.77.0.2/24) and MACs, all links up. Names are
/// unique per process and pair.
#[derive(Debug)]
pub struct VethPair {
    pub ns_rx: String,
    pub ns_tx: String,
    pub if_rx: String,
    pub if_tx: String,
    pub ip_rx: Ipv4Addr,
    pub ip_tx: Ipv4Addr,
    pub mac_rx: [u8; 6],
    pub mac_tx: [u8; 6],
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out =
        Command::new("ip").args(args).output().map_err(|e| format!("run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl VethPair {
    /// Creates the namespaces and the pair (needs root: `ip netns add`).
    pub fn create() -> Result<VethPair, String> {
        VethPair::create_with_queues(1)
    }

    /// [`VethPair::create`] with `queues` RX and TX queues on each end (veth delivers a frame
    /// sent on the peer's TX queue `i` to RX queue `i`, so flows spread over the queues).
    pub fn create_with_queues(queues: u16) -> Result<VethPair, String> {
        let q = queues.max(1).to_string();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 1_000_000);
        let pair = VethPair {
            ns_rx: format!("bxr{id}"),
            ns_tx: format!("bxt{id}"),
            if_rx: format!("bxr{id}"),
            if_tx: format!("bxt{id}"),
            ip_rx: Ipv4Addr::new(10, 77, 0, 1),
            ip_tx: Ipv4Addr::new(10, 77, 0, 2),
            mac_rx: [0x02, 0xb5, 0, 0, 0, 1],
            mac_tx: [0x02, 0xb5, 0, 0, 0, 2],
        };
        ip(&["netns", "add", &pair.ns_rx])?;
        // From here on, drop deletes whatever exists.
        ip(&["netns", "add", &pair.ns_tx])?;
        #[rustfmt::skip]
        ip(&["link", "add", &pair.if_rx, "netns", &pair.ns_rx, "address", &mac_str(pair.mac_rx),
             "numtxqueues", &q, "numrxqueues", &q, "type", "veth",
             "peer", "name", &pair.if_tx, "netns", &pair.ns_tx, "address", &mac_str(pair.mac_tx),
             "numtxqueues", &q, "numrxqueues", &q])?;
        for (ns, ifname, addr) in
            [(&pair.ns_rx, &pair.if_rx, pair.ip_rx), (&pair.ns_tx, &pair.if_tx, pair.ip_tx)]
        {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", ifname])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // veth offloads the sender's UDP checksum (CHECKSUM_PARTIAL): the frames an AF_XDP
        // socket sees on the peer would carry only the pseudo-header sum and fail the parser's
        // checksum check. Have the sender's kernel compute full checksums, as a NIC would.
        // (`ethtool -K IF tx off` inside the sender's namespace; ethtool is in Debian's
        // `ethtool` package, which `.ci/run` installs.)
        ip(&["netns", "exec", &pair.ns_tx, "ethtool", "-K", &pair.if_tx, "tx", "off"])
            .map_err(|e| format!("turn off TX checksum offload on {}: {e}", pair.if_tx))?;
        Ok(pair)
    }

    /// Runs `f` on a new thread inside the receiving namespace.
    pub fn spawn_rx<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<Result<T, String>> {
        spawn_in(&self.ns_rx, f)
    }

    /// Runs `f` on a new thread inside the sending namespace.
    pub fn spawn_tx<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<Result<T, String>> {
        spawn_in(&self.ns_tx, f)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end inside it, and with it the peer.
        let _ = ip(&["netns", "del", &self.ns_rx]);
        let _ = ip(&["netns", "del", &self.ns_tx]);
    }
}

/// Moves the calling thread into network namespace `name` (`/run/netns/<name>`).
pub fn enter_netns(name: &str) -> io::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns on an open namespace fd; it changes only the calling thread's network
    // namespace (CLONE_NEWNET), which no Rust invariant depends on.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Runs `f` on a new thread that first enters network namespace `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<Result<T, String>> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns).map_err(|e| format!("enter network namespace {ns}: {e}"))?;
        Ok(f())
    })
}
