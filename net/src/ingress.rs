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
}

impl Backend {
    /// Every backend, in the order they are documented.
    pub const ALL: [Backend; 2] = [Backend::Sockets, Backend::IoUring];

    /// The name used in configuration (`sockets`, `io_uring`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sockets => "sockets",
            Backend::IoUring => "io_uring",
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
}

impl IngressConfig {
    /// The defaults (batch 64, 1024 ring entries, 4096 buffers, kernel `SO_RCVBUF`).
    pub fn new(bind: SocketAddr, backend: Backend) -> Self {
        IngressConfig { bind, backend, batch: 64, ring_entries: 1024, buffers: 4096, recv_buffer_bytes: None }
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
    #[error("unknown ingress backend {0:?} (allowed: sockets, io_uring)")]
    UnknownBackend(String),
}

/// Opens the configured backend on a freshly bound UDP socket.
pub fn open(cfg: &IngressConfig) -> Result<Box<dyn Ingress>, NetError> {
    if cfg.batch == 0 {
        return Err(NetError::Config("batch must be at least 1".into()));
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
        assert!(e.contains("sockets") && e.contains("io_uring") && e.contains("xdp"), "{e}");
        assert_eq!(serde_json::to_string(&Backend::IoUring).unwrap(), "\"io_uring\"");
    }

    #[test]
    fn empty_frame_has_no_payload() {
        let f = Frame::empty();
        assert!(f.payload().is_empty());
    }
}
