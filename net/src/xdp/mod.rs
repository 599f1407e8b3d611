//! The AF_XDP backend (cargo feature `af_xdp`): an XDP program on the configured interface
//! redirects UDP datagrams for the validator's port (and address, when one is bound) to one
//! AF_XDP socket per receive queue; everything else (ARP, SSH, other ports, later IPv4
//! fragments) goes on to the kernel's stack. Each socket has its own UMEM of
//! `bypass.frames` 4 KiB chunks; received frames are parsed with [`crate::l2::parse`], their
//! payload copied into the caller's [`Frame`]s, and the chunks returned to the fill ring in
//! batches. Raw system calls only (no libbpf/libxdp); the program is assembled in [`prog`]
//! (listing there) and attached with a BPF link (see `link.rs`), so it detaches when the
//! ingress is dropped or the process dies.
//!
//! [`XdpMode::Auto`] tries native (driver) mode with zero-copy, then native mode with copies,
//! then generic (skb) mode, and [`XdpIngress::mode`] says which it got; an explicit mode fails
//! with [`NetError::Unavailable`] when the interface cannot do it.

mod link;
mod prog;
mod ring;
mod sys;
mod tx;
mod umem;

pub use tx::{TxStats, XdpSender};

use crate::ingress::{Backend, Frame, Ingress, IngressConfig, IngressStats, NetError, XdpMode};
use crate::l2::{self, L2, L2Drop, L2Filter};
use link::{AttachMode, XdpLink};
use std::fmt;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use umem::{CHUNK, Xsk};

/// RX descriptors taken per ring read before the chunks go back to the fill ring.
const BATCH: u32 = 64;

/// Receives the validator's UDP port from AF_XDP sockets on every configured queue.
pub struct XdpIngress {
    // Field order is drop order: detach the program first, then close the sockets (and unmap
    // their rings and UMEMs), then the map and the program.
    _link: XdpLink,
    socks: Vec<Xsk>,
    _map: OwnedFd,
    _prog: OwnedFd,
    mode: XdpMode,
    iface: String,
    bind: SocketAddrV4,
    filter: L2Filter,
    next: usize,
    stats: IngressStats,
    /// One per socket, reused by every `poll` (no per-call allocation).
    pollfds: Vec<libc::pollfd>,
}

impl fmt::Debug for XdpIngress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpIngress")
            .field("iface", &self.iface)
            .field("bind", &self.bind)
            .field("mode", &self.mode)
            .field("queues", &self.socks.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn unavailable(reason: impl Into<String>) -> NetError {
    NetError::Unavailable { backend: Backend::AfXdp, reason: reason.into() }
}

/// Capabilities the backend needs that the process lacks (from `CapEff` in
/// `/proc/thread-self/status`: capabilities are per thread), named; empty when it has them all (root has).
fn missing_capabilities() -> Vec<&'static str> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_NET_RAW: u32 = 13;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") else { return Vec::new() };
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    else {
        return Vec::new();
    };
    let has = |c: u32| eff & (1u64 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN (to attach the XDP program)");
    }
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW (to open AF_XDP sockets)");
    }
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF (to load the XDP program and create its map)");
    }
    missing
}

/// The configuration checks that need no system call; returns (bind, iface).
fn validate(cfg: &IngressConfig) -> Result<(SocketAddrV4, &str), NetError> {
    let SocketAddr::V4(bind) = cfg.bind else {
        return Err(NetError::Config(format!("af_xdp receives IPv4 only; bind {} is IPv6", cfg.bind)));
    };
    if bind.port() == 0 {
        return Err(NetError::Config(
            "af_xdp needs a fixed UDP port in bind: port 0 cannot be steered by the XDP program".into(),
        ));
    }
    let b = &cfg.bypass;
    let iface = b.iface.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
        NetError::Config("af_xdp needs the network interface to attach to (bypass.iface / --iface)".into())
    })?;
    if b.queues == 0 {
        return Err(NetError::Config("af_xdp needs at least 1 queue".into()));
    }
    if !b.ring_size.is_power_of_two() || b.ring_size > (1 << 20) {
        return Err(NetError::Config(format!(
            "af_xdp ring_size {} must be a power of two up to 2^20",
            b.ring_size
        )));
    }
    if b.frames == 0 || u64::from(b.frames) * u64::from(CHUNK) > (1 << 36) {
        return Err(NetError::Config(format!("af_xdp frames {} must be between 1 and 2^24", b.frames)));
    }
    Ok((bind, iface))
}

impl XdpIngress {
    /// Loads and attaches the program on `cfg.bypass.iface`, opens one AF_XDP socket per
    /// queue `0..cfg.bypass.queues` and registers them in the program's map.
    pub fn open(cfg: &IngressConfig) -> Result<XdpIngress, NetError> {
        let (bind, iface) = validate(cfg)?;
        let b = &cfg.bypass;
        let ifindex = sys::ifindex(iface).ok_or_else(|| {
            unavailable(format!("network interface {iface:?} not found (in this network namespace)"))
        })?;
        let missing = missing_capabilities();
        if !missing.is_empty() {
            return Err(unavailable(format!(
                "insufficient privileges: run as root or grant {}",
                missing.join(", ")
            )));
        }
        let map = prog::create_xskmap(u32::from(b.queues)).map_err(unavailable)?;
        let insns = prog::program(map.as_raw_fd(), *bind.ip(), bind.port()).map_err(unavailable)?;
        let prog_fd = prog::load(&insns).map_err(unavailable)?;
        let queues = u32::from(b.queues);
        let open_all = |flags: u16| -> Result<Vec<Xsk>, String> {
            (0..queues)
                .map(|q| {
                    Xsk::open(ifindex, q, b.frames, b.ring_size, flags).map_err(|e| {
                        let hint = match (e.what, e.source.raw_os_error()) {
                            ("bind", Some(libc::EINVAL)) => format!(
                                " (does {iface} have an RX queue {q}? {})",
                                queue_count(iface)
                                    .map_or("its queue count is unknown".into(), |n| format!("it has {n}"))
                            ),
                            ("bind", Some(libc::EOPNOTSUPP)) => " (the driver cannot do zero-copy)".into(),
                            ("bind", Some(libc::EBUSY)) => {
                                " (another AF_XDP socket still holds this queue after 1 s)".into()
                            }
                            (_, Some(libc::EPERM)) => " (needs root, or CAP_NET_RAW)".into(),
                            (_, Some(libc::ENOMEM)) | (_, Some(libc::ENOBUFS)) => {
                                " (UMEM too large for RLIMIT_MEMLOCK or memory)".into()
                            }
                            _ => String::new(),
                        };
                        format!("AF_XDP socket for {iface} queue {q}: {}: {}{hint}", e.what, e.source)
                    })
                })
                .collect()
        };
        let attach = |mode: AttachMode| {
            link::attach(&prog_fd, ifindex, mode).map_err(|e| link::attach_error(iface, mode, &e))
        };
        let (link, socks, mode) = match b.xdp_mode {
            XdpMode::Skb => {
                let l = attach(AttachMode::Skb).map_err(unavailable)?;
                (l, open_all(sys::XDP_COPY).map_err(unavailable)?, XdpMode::Skb)
            }
            XdpMode::Drv => {
                let l = attach(AttachMode::Drv).map_err(unavailable)?;
                (l, open_all(sys::XDP_COPY).map_err(unavailable)?, XdpMode::Drv)
            }
            XdpMode::ZeroCopy => {
                let l = attach(AttachMode::Drv).map_err(unavailable)?;
                (l, open_all(sys::XDP_ZEROCOPY).map_err(unavailable)?, XdpMode::ZeroCopy)
            }
            XdpMode::Auto => {
                let mut tried = Vec::new();
                let mut got = None;
                match attach(AttachMode::Drv) {
                    Ok(l) => match open_all(sys::XDP_ZEROCOPY) {
                        Ok(s) => got = Some((l, s, XdpMode::ZeroCopy)),
                        Err(e) => {
                            tried.push(e);
                            match open_all(sys::XDP_COPY) {
                                Ok(s) => got = Some((l, s, XdpMode::Drv)),
                                Err(e) => tried.push(e),
                            }
                        }
                    },
                    Err(e) => tried.push(e),
                }
                match got {
                    Some(g) => g,
                    None => {
                        let l = attach(AttachMode::Skb)
                            .map_err(|e| unavailable(format!("{e}; before that: {}", tried.join("; "))))?;
                        let s = open_all(sys::XDP_COPY)
                            .map_err(|e| unavailable(format!("{e}; before that: {}", tried.join("; "))))?;
                        (l, s, XdpMode::Skb)
                    }
                }
            }
        };
        for s in &socks {
            prog::set_socket(&map, s.queue, s.core.raw_fd()).map_err(unavailable)?;
        }
        let pollfds = socks
            .iter()
            .map(|s| libc::pollfd { fd: s.core.raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        Ok(XdpIngress {
            _link: link,
            socks,
            _map: map,
            _prog: prog_fd,
            mode,
            iface: iface.to_string(),
            bind,
            filter: L2Filter { ip: *bind.ip(), port: bind.port() },
            next: 0,
            stats: IngressStats::default(),
            pollfds,
        })
    }

    /// The XDP mode obtained: [`XdpMode::ZeroCopy`], [`XdpMode::Drv`] or [`XdpMode::Skb`]
    /// (never `Auto`).
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The interface the program is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Frames the kernel dropped before they reached user space, summed over the sockets
    /// (`XDP_STATISTICS`: RX ring full, fill ring empty, other): a sign that `recv` is called
    /// too rarely or the rings are too small.
    pub fn kernel_drops(&self) -> u64 {
        self.socks
            .iter()
            .filter_map(|s| s.core.statistics().ok())
            .map(|st| st.rx_dropped + st.rx_ring_full + st.rx_invalid_descs)
            .sum()
    }

    /// Takes ready frames from the RX rings (round-robin over the sockets, starting one further
    /// each call) into `out`; returns how many were delivered.
    fn drain(&mut self, out: &mut [Frame]) -> usize {
        let mut filled = 0;
        let k = self.socks.len();
        for step in 0..k {
            let sock = &mut self.socks[(self.next + step) % k];
            while filled < out.len() {
                let ready = sock.rx.peek(BATCH);
                if ready == 0 {
                    break;
                }
                let mut used = 0;
                while used < ready && filled < out.len() {
                    let desc = sock.rx.get(used);
                    used += 1;
                    if let Some(slot) = out.get_mut(filled)
                        && deliver(sock.core.frame(&desc), &self.filter, &mut self.stats, slot)
                    {
                        filled += 1;
                    }
                    // Aligned mode: any address inside a chunk names the chunk.
                    sock.core.free.push(desc.addr & !u64::from(CHUNK - 1));
                }
                sock.rx.release(used);
                sock.fill.refill(&mut sock.core.free);
            }
        }
        self.next = if k == 0 { 0 } else { (self.next + 1) % k };
        filled
    }

    /// Waits up to `timeout` for any socket to have frames.
    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ms = i32::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        for p in &mut self.pollfds {
            p.revents = 0;
        }
        // SAFETY: `pollfds` holds one initialised pollfd per open socket fd (owned by
        // `self.socks`), and its length is passed; the kernel writes only `revents`.
        let rc = unsafe { libc::poll(self.pollfds.as_mut_ptr(), self.pollfds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                self.stats.errors += 1;
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Parses one frame and, if it is a datagram for us that fits, copies it into `slot`; counts
/// everything else. True if `slot` was filled.
fn deliver(frame: Option<&[u8]>, filter: &L2Filter, stats: &mut IngressStats, slot: &mut Frame) -> bool {
    let Some(bytes) = frame else {
        stats.errors += 1;
        return false;
    };
    match l2::parse(bytes, filter) {
        L2::Udp { from, payload, .. } => {
            let Some(dst) = slot.bytes.get_mut(..payload.len()) else {
                stats.oversized += 1;
                return false;
            };
            dst.copy_from_slice(payload);
            slot.len = payload.len() as u16;
            slot.from = SocketAddr::V4(from);
            true
        }
        L2::Drop(d) => {
            if matches!(d, L2Drop::Fragment) {
                stats.fragments += 1;
            } else if d.is_malformed() {
                stats.malformed += 1;
            } else {
                stats.foreign += 1;
            }
            false
        }
        // ARP and anything else the program should have passed to the kernel.
        _ => {
            stats.foreign += 1;
            false
        }
    }
}

impl Ingress for XdpIngress {
    fn recv(&mut self, out: &mut [Frame], timeout: Duration) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let start = Instant::now();
        loop {
            let n = self.drain(out);
            if n > 0 {
                self.stats.received += n as u64;
                self.stats.batches += 1;
                for s in &self.socks {
                    s.wake_if_needed();
                }
                return Ok(n);
            }
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return Ok(0);
            }
            for s in &self.socks {
                s.wake_if_needed();
            }
            self.wait(timeout - elapsed)?;
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.bind))
    }

    fn stats(&self) -> IngressStats {
        self.stats
    }

    fn backend(&self) -> Backend {
        Backend::AfXdp
    }
}

/// RX queues of `iface`: ethtool's combined + RX channel counts, else the `rx-*` entries under
/// `/sys/class/net/<iface>/queues` (of the mount namespace's view).
fn queue_count(iface: &str) -> Option<u32> {
    if let Ok(ch) = sys::channels(iface) {
        let n = ch.combined_count + ch.rx_count;
        if n > 0 {
            return Some(n);
        }
    }
    let dir = std::fs::read_dir(format!("/sys/class/net/{iface}/queues")).ok()?;
    let n = dir.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count();
    u32::try_from(n).ok().filter(|&n| n > 0)
}

/// What `bastion net check` reports for the AF_XDP backend on the configured interface: the
/// interface, its driver and queues, privileges, whether an AF_XDP socket opens and the XDP
/// program loads, and which attach modes work (each tried briefly and detached again; an
/// interface already running an XDP program, e.g. a running validator, reports busy). `Ok`
/// when the backend can run on it, `Err` (with the same report) when not.
pub fn check(cfg: &IngressConfig) -> Result<String, String> {
    let mut lines = Vec::new();
    let mut ok = true;
    let Some(iface) = cfg.bypass.iface.as_deref().filter(|s| !s.is_empty()) else {
        return Err("af_xdp: no interface configured (bypass.iface / --iface)".into());
    };
    let Some(ifindex) = sys::ifindex(iface) else {
        return Err(format!("af_xdp: network interface {iface:?} not found"));
    };
    lines.push(format!("interface: {iface} (index {ifindex})"));
    lines.push(match sys::driver_name(iface) {
        Ok(d) => format!("driver: {d}"),
        Err(e) => format!("driver: unknown (ETHTOOL_GDRVINFO: {e})"),
    });
    lines.push(match sys::channels(iface) {
        Ok(ch) => format!(
            "channels: combined {} (max {}), rx {} (max {}); configured queues: {}",
            ch.combined_count, ch.max_combined, ch.rx_count, ch.max_rx, cfg.bypass.queues
        ),
        Err(e) => format!(
            "channels: ETHTOOL_GCHANNELS: {e}; RX queues from sysfs: {}; configured queues: {}",
            queue_count(iface).map_or("unknown".into(), |n| n.to_string()),
            cfg.bypass.queues
        ),
    });
    let missing = missing_capabilities();
    if missing.is_empty() {
        lines.push("privileges: ok (CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF)".into());
    } else {
        ok = false;
        lines.push(format!("privileges: missing {}", missing.join(", ")));
    }
    match sys::xsk_socket() {
        Ok(_) => lines.push("AF_XDP socket: ok".into()),
        Err(e) => {
            ok = false;
            lines.push(format!("AF_XDP socket: {e}"));
        }
    }
    let port = if cfg.bind.port() == 0 { 1 } else { cfg.bind.port() };
    let ip = match cfg.bind {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
    };
    let loaded = prog::create_xskmap(u32::from(cfg.bypass.queues.max(1))).and_then(|map| {
        prog::program(map.as_raw_fd(), ip, port).and_then(|p| prog::load(&p)).map(|p| (map, p))
    });
    match loaded {
        Err(e) => {
            ok = false;
            lines.push(format!("XDP program: {e}"));
        }
        Ok((_map, prog_fd)) => {
            lines.push("XDP program: loads".into());
            let mut any = false;
            for mode in [AttachMode::Skb, AttachMode::Drv] {
                match link::attach(&prog_fd, ifindex, mode) {
                    Ok(l) => {
                        any = true;
                        if mode == AttachMode::Drv {
                            let zc = Xsk::open(ifindex, 0, 64, 64, sys::XDP_ZEROCOPY);
                            lines.push(format!(
                                "mode {}: attaches; zero-copy: {}",
                                mode.name(),
                                match zc {
                                    Ok(_) => "yes".to_string(),
                                    Err(e) => format!("no ({}: {})", e.what, e.source),
                                }
                            ));
                        } else {
                            lines.push(format!("mode {}: attaches", mode.name()));
                        }
                        drop(l);
                    }
                    Err(e) => {
                        lines.push(format!("mode {}: {}", mode.name(), link::attach_error(iface, mode, &e)))
                    }
                }
            }
            ok &= any;
        }
    }
    let report = lines.join("\n");
    if ok { Ok(report) } else { Err(report) }
}
