//! The ingress API: configuration, the [`Ingress`] trait every receive backend implements,
//! fixed-size [`Frame`]s and [`open`].

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;
use std::time::Duration;

/// Largest datagram accepted; larger ones are counted as oversized and dropped (never
/// truncated into a frame).
pub const MAX_DATAGRAM: usize = 1232; // IPv6 minimum MTU minus headers

/// One received datagram, fixed size, no allocation per packet.
#[derive(Clone)]
pub struct Frame {
    /// Bytes of `bytes` that hold the datagram (at most [`MAX_DATAGRAM`]).
    pub len: u16,
    /// The sender.
    pub from: SocketAddr,
    /// The datagram in its first `len` bytes; the rest is stale.
    pub bytes: [u8; MAX_DATAGRAM],
}

impl Frame {
    /// The datagram.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(MAX_DATAGRAM)]
    }

    /// A zero-length frame from `0.0.0.0:0`, to pre-allocate receive slots.
    pub fn empty() -> Frame {
        Frame {
            len: 0,
            from: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            bytes: [0; MAX_DATAGRAM],
        }
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame").field("len", &self.len).field("from", &self.from).finish_non_exhaustive()
    }
}

/// A receive backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// A UDP socket read with `poll` + `recvmmsg`.
    Sockets,
    /// io_uring multishot `recvmsg` into a provided buffer ring.
    IoUring,
    /// AF_XDP sockets (kernel bypass): an XDP program steers the validator's UDP port to a UMEM
    /// shared with user space; everything else goes on to the kernel. Cargo feature `af_xdp`.
    AfXdp,
    /// DPDK (kernel bypass): the port is owned by DPDK's poll-mode driver. Cargo feature `dpdk`.
    Dpdk,
}

impl Backend {
    /// Every backend, in the order they are documented.
    pub const ALL: [Backend; 4] = [Backend::Sockets, Backend::IoUring, Backend::AfXdp, Backend::Dpdk];

    /// The name used in configuration (`sockets`, `io_uring`, `af_xdp`, `dpdk`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sockets => "sockets",
            Backend::IoUring => "io_uring",
            Backend::AfXdp => "af_xdp",
            Backend::Dpdk => "dpdk",
        }
    }

    /// Whether this binary was built with the backend (the kernel-bypass backends are cargo
    /// features, so the default build needs neither libxdp nor libdpdk).
    pub fn compiled_in(self) -> bool {
        match self {
            Backend::Sockets | Backend::IoUring => true,
            Backend::AfXdp => cfg!(feature = "af_xdp"),
            Backend::Dpdk => cfg!(feature = "dpdk"),
        }
    }

    /// Whether the backend bypasses the kernel's network stack (and so parses Ethernet, IPv4
    /// and UDP itself).
    pub fn is_bypass(self) -> bool {
        matches!(self, Backend::AfXdp | Backend::Dpdk)
    }
}

/// XDP attach mode of the AF_XDP backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// Driver mode with zero-copy where the NIC supports it, else driver mode with copies, else
    /// generic (skb) mode.
    #[default]
    Auto,
    /// Generic (skb) mode: works on every interface (veth, lo), at kernel-stack speed.
    Skb,
    /// Native driver mode, copying frames into the UMEM.
    Drv,
    /// Native driver mode with zero-copy (the NIC DMAs into the UMEM).
    ZeroCopy,
}

impl XdpMode {
    /// The name used in configuration.
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Auto => "auto",
            XdpMode::Skb => "skb",
            XdpMode::Drv => "drv",
            XdpMode::ZeroCopy => "zero_copy",
        }
    }
}

impl FromStr for XdpMode {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [XdpMode::Auto, XdpMode::Skb, XdpMode::Drv, XdpMode::ZeroCopy]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                NetError::Config(format!("unknown XDP mode {s:?} (allowed: auto, skb, drv, zero_copy)"))
            })
    }
}

/// Settings of the kernel-bypass backends (ignored by `sockets` and `io_uring`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BypassConfig {
    /// The network interface (AF_XDP: the NIC or veth the XDP program attaches to; DPDK: the
    /// interface of a `net_af_packet` device, informational otherwise).
    pub iface: Option<String>,
    /// Receive queues, one AF_XDP socket or DPDK RX queue each (default 1).
    pub queues: u16,
    /// XDP attach mode (AF_XDP).
    pub xdp_mode: XdpMode,
    /// Frames of the UMEM (AF_XDP) or mbufs of the mempool (DPDK), per queue (default 4096).
    pub frames: u32,
    /// Descriptors per ring: AF_XDP fill/completion/RX/TX, DPDK RX/TX (default 2048).
    pub ring_size: u32,
    /// DPDK EAL arguments, e.g. `["-l", "0", "--no-huge", "-m", "256", "--no-pci",
    /// "--no-shconf", "--vdev", "net_null0"]`.
    pub eal_args: Vec<String>,
    /// DPDK port id (default 0).
    pub dpdk_port: u16,
    /// The MAC address the DPDK backend answers ARP with; default: the port's own.
    pub mac: Option<[u8; 6]>,
}

impl Default for BypassConfig {
    fn default() -> Self {
        BypassConfig {
            iface: None,
            queues: 1,
            xdp_mode: XdpMode::Auto,
            frames: 4096,
            ring_size: 2048,
            eal_args: Vec::new(),
            dpdk_port: 0,
            mac: None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| NetError::UnknownBackend(s.to_string()))
    }
}

/// How to open an ingress.
#[derive(Clone, Debug)]
pub struct IngressConfig {
    /// Address to bind the UDP socket to.
    pub bind: SocketAddr,
    /// Receive backend.
    pub backend: Backend,
    /// Datagrams taken from the kernel per system call (sockets backend); at least 1.
    pub batch: usize,
    /// io_uring submission queue entries; the completion queue gets as many.
    pub ring_entries: u32,
    /// io_uring provided buffers: a power of two, at most 32768.
    pub buffers: u16,
    /// `SO_RCVBUF` in bytes, where set (the kernel doubles it and caps it at `rmem_max`).
    pub recv_buffer_bytes: Option<usize>,
    /// Settings of the kernel-bypass backends (`af_xdp`, `dpdk`).
    pub bypass: BypassConfig,
}

impl IngressConfig {
    /// The defaults (batch 64, 1024 ring entries, 4096 buffers, kernel `SO_RCVBUF`).
    pub fn new(bind: SocketAddr, backend: Backend) -> Self {
        IngressConfig {
            bind,
            backend,
            batch: 64,
            ring_entries: 1024,
            buffers: 4096,
            recv_buffer_bytes: None,
            bypass: BypassConfig::default(),
        }
    }
}

/// Counters of one ingress since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngressStats {
    /// Datagrams delivered in frames.
    pub received: u64,
    /// Datagrams longer than [`MAX_DATAGRAM`], dropped.
    pub oversized: u64,
    /// Receive errors (each also returned or, for io_uring completions, skipped).
    pub errors: u64,
    /// Calls of `recv` that delivered at least one frame.
    pub batches: u64,
    /// Kernel-bypass backends: frames dropped as malformed (truncated, bad IPv4 header or
    /// checksum, bad UDP length or checksum).
    pub malformed: u64,
    /// Kernel-bypass backends: IPv4 fragments, dropped (clients' datagrams fit one packet).
    pub fragments: u64,
    /// Kernel-bypass backends: well-formed frames not for this validator (another address,
    /// port or protocol), dropped (AF_XDP passes those to the kernel before they get here).
    pub foreign: u64,
    /// DPDK: ARP requests for the validator's address answered.
    pub arp_replies: u64,
}

/// A receive backend, opened and bound.
pub trait Ingress: Send {
    /// Receives up to `out.len()` datagrams into `out` (pre-allocated frames, reused), waiting
    /// at most `timeout` for the first one; returns how many were filled (0 on timeout).
    fn recv(&mut self, out: &mut [Frame], timeout: Duration) -> std::io::Result<usize>;
    /// The address the socket is bound to (with the port the kernel chose for port 0).
    fn local_addr(&self) -> std::io::Result<SocketAddr>;
    /// Counters since open.
    fn stats(&self) -> IngressStats;
    /// Which backend this is.
    fn backend(&self) -> Backend;
}

/// Why an ingress could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("set SO_RCVBUF to {bytes} bytes on {addr}: {source}")]
    RecvBuffer { addr: SocketAddr, bytes: usize, source: std::io::Error },
    #[error("io_uring unavailable: {0} (is /proc/sys/kernel/io_uring_disabled set?)")]
    UringUnavailable(std::io::Error),
    #[error("io_uring setup: {what}: {source}")]
    UringSetup { what: &'static str, source: std::io::Error },
    #[error("invalid ingress config: {0}")]
    Config(String),
    #[error("unknown ingress backend {0:?} (allowed: sockets, io_uring, af_xdp, dpdk)")]
    UnknownBackend(String),
    #[error(
        "ingress backend {0} is not built into this binary: rebuild with `cargo build --release --features {0}` \
         (it needs {1}), or use sockets or io_uring"
    )]
    NotCompiled(Backend, &'static str),
    #[error("ingress backend {backend} unavailable: {reason}")]
    Unavailable { backend: Backend, reason: String },
}

/// Opens the configured backend on a freshly bound UDP socket.
pub fn open(cfg: &IngressConfig) -> Result<Box<dyn Ingress>, NetError> {
    if cfg.batch == 0 {
        return Err(NetError::Config("batch must be at least 1".into()));
    }
    match cfg.backend {
        #[cfg(feature = "af_xdp")]
        Backend::AfXdp => return Ok(Box::new(crate::xdp::XdpIngress::open(cfg)?)),
        #[cfg(not(feature = "af_xdp"))]
        Backend::AfXdp => {
            return Err(NetError::NotCompiled(Backend::AfXdp, "nothing beyond Linux 5.9+ headers"));
        }
        #[cfg(feature = "dpdk")]
        Backend::Dpdk => return Ok(Box::new(crate::dpdk::DpdkIngress::open(cfg)?)),
        #[cfg(not(feature = "dpdk"))]
        Backend::Dpdk => {
            return Err(NetError::NotCompiled(Backend::Dpdk, "Debian's libdpdk-dev and pkg-config"));
        }
        Backend::Sockets | Backend::IoUring => {}
    }
    let socket =
        std::net::UdpSocket::bind(cfg.bind).map_err(|source| NetError::Bind { addr: cfg.bind, source })?;
    if let Some(bytes) = cfg.recv_buffer_bytes {
        crate::sockaddr::set_recv_buffer(&socket, bytes).map_err(|source| NetError::RecvBuffer {
            addr: cfg.bind,
            bytes,
            source,
        })?;
    }
    Ok(match cfg.backend {
        Backend::Sockets => Box::new(crate::sockets::SocketIngress::new(socket, cfg.batch)),
        Backend::IoUring => Box::new(crate::uring::UringIngress::new(socket, cfg)?),
        // Opened above.
        Backend::AfXdp | Backend::Dpdk => {
            return Err(NetError::Config(format!("{} is opened without a UDP socket", cfg.backend)));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip_and_unknown_lists_allowed() {
        for b in Backend::ALL {
            assert_eq!(b.to_string().parse::<Backend>().unwrap(), b);
        }
        let e = "xdp".parse::<Backend>().unwrap_err().to_string();
        assert!(
            e.contains("sockets") && e.contains("io_uring") && e.contains("af_xdp") && e.contains("dpdk"),
            "{e}"
        );
        for b in [Backend::AfXdp, Backend::Dpdk] {
            assert!(b.is_bypass());
            if !b.compiled_in() {
                let cfg = IngressConfig::new("127.0.0.1:0".parse().unwrap(), b);
                let e = open(&cfg).err().unwrap().to_string();
                assert!(e.contains("--features") && e.contains(b.name()), "{e}");
            }
        }
        assert_eq!(serde_json::to_string(&Backend::IoUring).unwrap(), "\"io_uring\"");
    }

    #[test]
    fn empty_frame_has_no_payload() {
        let f = Frame::empty();
        assert!(f.payload().is_empty());
    }
}
