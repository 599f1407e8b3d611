//! `bastion net check`: which ingress backends can run on this host for a configuration, and
//! why not, plus the host facts an operator tunes for them (hugepages, NIC channels, IRQs).
//!
//! Every check is read-only or undone before it returns (a socket bound and closed, an io_uring
//! created and dropped, an XDP program attached and detached), so it is safe on a running host.

use crate::ingress::{Backend, IngressConfig};
use std::path::Path;

/// One backend's verdict.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackendCheck {
    /// The backend.
    pub backend: &'static str,
    /// Whether it can run here with this configuration.
    pub ok: bool,
    /// What was found, or what is missing and how to get it.
    pub detail: String,
}

/// Host facts relevant to kernel-bypass ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostFacts {
    /// Whether this process runs as root (AF_XDP and DPDK need root or CAP_NET_ADMIN + CAP_BPF).
    pub root: bool,
    /// Hugepages per size: `(size in kB, total, free)`.
    pub hugepages: Vec<(u64, u64, u64)>,
    /// The interface examined, if any.
    pub iface: Option<String>,
    /// Its RX and combined queues (from `/sys/class/net/IF/queues`).
    pub rx_queues: Option<usize>,
    /// Its driver (from `/sys/class/net/IF/device/driver`), if it has a device.
    pub driver: Option<String>,
    /// Its MTU.
    pub mtu: Option<u32>,
    /// IRQs whose name mentions the interface, with their CPU affinity list.
    pub irqs: Vec<(u32, String)>,
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// Reads the host facts for `iface` (if given).
pub fn host_facts(iface: Option<&str>) -> HostFacts {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut hugepages = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(kb) = name.strip_prefix("hugepages-").and_then(|s| s.strip_suffix("kB")) else {
                continue;
            };
            let num = |f: &str| read_trimmed(entry.path().join(f)).and_then(|v| v.parse().ok()).unwrap_or(0);
            if let Ok(kb) = kb.parse() {
                hugepages.push((kb, num("nr_hugepages"), num("free_hugepages")));
            }
        }
    }
    hugepages.sort_unstable();
    let mut facts = HostFacts { root, hugepages, ..HostFacts::default() };
    let Some(iface) = iface else { return facts };
    facts.iface = Some(iface.to_owned());
    let base = Path::new("/sys/class/net").join(iface);
    facts.rx_queues = std::fs::read_dir(base.join("queues"))
        .ok()
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count());
    facts.driver = std::fs::read_link(base.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    facts.mtu = read_trimmed(base.join("mtu")).and_then(|m| m.parse().ok());
    if let Ok(text) = std::fs::read_to_string("/proc/interrupts") {
        for line in text.lines().filter(|l| l.contains(iface)) {
            let Some(irq) = line.split(':').next().and_then(|n| n.trim().parse::<u32>().ok()) else {
                continue;
            };
            let affinity = read_trimmed(format!("/proc/irq/{irq}/smp_affinity_list")).unwrap_or_default();
            facts.irqs.push((irq, affinity));
        }
    }
    facts
}

fn verdict(backend: Backend, r: Result<String, String>) -> BackendCheck {
    let (ok, detail) = match r {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    BackendCheck { backend: backend.name(), ok, detail }
}

fn check_sockets(cfg: &IngressConfig) -> Result<String, String> {
    let s = std::net::UdpSocket::bind(cfg.bind).map_err(|e| format!("cannot bind {}: {e}", cfg.bind))?;
    let addr = s.local_addr().map_err(|e| e.to_string())?;
    Ok(format!("UDP socket binds {addr} (recvmmsg)"))
}

fn check_uring() -> Result<String, String> {
    match io_uring::IoUring::new(8) {
        Ok(_) => Ok("io_uring available (multishot receive needs Linux 6.0+)".to_owned()),
        Err(e) => Err(format!("io_uring unavailable: {e} (is /proc/sys/kernel/io_uring_disabled set?)")),
    }
}

/// Every backend's verdict for `cfg` (its bind address, and `cfg.bypass` for the
/// kernel-bypass backends), in [`Backend::ALL`] order.
pub fn check(cfg: &IngressConfig) -> Vec<BackendCheck> {
    Backend::ALL
        .into_iter()
        .map(|b| {
            let r = match b {
                Backend::Sockets => check_sockets(cfg),
                Backend::IoUring => check_uring(),
                Backend::AfXdp => check_af_xdp(cfg),
                Backend::Dpdk => check_dpdk(cfg),
            };
            verdict(b, r)
        })
        .collect()
}

#[cfg(feature = "af_xdp")]
fn check_af_xdp(cfg: &IngressConfig) -> Result<String, String> {
    crate::xdp::check(cfg)
}

#[cfg(not(feature = "af_xdp"))]
fn check_af_xdp(_cfg: &IngressConfig) -> Result<String, String> {
    Err("not built into this binary: rebuild with `--features af_xdp`".to_owned())
}

#[cfg(feature = "dpdk")]
fn check_dpdk(cfg: &IngressConfig) -> Result<String, String> {
    crate::dpdk::check(cfg)
}

#[cfg(not(feature = "dpdk"))]
fn check_dpdk(_cfg: &IngressConfig) -> Result<String, String> {
    Err("not built into this binary: rebuild with `--features dpdk` (needs Debian's libdpdk-dev and pkg-config)"
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_pass_and_every_backend_answers() {
        let cfg = IngressConfig::new("127.0.0.1:0".parse().unwrap(), Backend::Sockets);
        let all = check(&cfg);
        assert_eq!(all.len(), Backend::ALL.len());
        assert!(all[0].ok && all[0].detail.contains("127.0.0.1"), "{all:?}");
        for c in &all {
            assert!(!c.detail.is_empty(), "{c:?}");
            let b: Backend = c.backend.parse().unwrap();
            if !b.compiled_in() {
                assert!(!c.ok && c.detail.contains("--features"), "{c:?}");
            }
        }
    }

    #[test]
    fn facts_of_loopback() {
        let f = host_facts(Some("lo"));
        assert_eq!(f.iface.as_deref(), Some("lo"));
        assert!(f.mtu.is_some_and(|m| m > 0), "{f:?}");
        assert!(f.rx_queues.is_some_and(|q| q >= 1), "{f:?}");
        assert!(f.driver.is_none(), "lo has no device: {f:?}");
        let none = host_facts(Some("bastion-no-such-if"));
        assert!(none.mtu.is_none() && none.rx_queues.is_none());
    }
}
