//! The `ingress` perf suite's AF_XDP hook: packets per second received on one veth by an
//! [`XdpIngress`](super::XdpIngress), a plain UDP socket's `recv_from` loop and the sockets
//! backend (`recvmmsg`), each fed for the same time by a `sendmmsg` blaster in the peer
//! namespace.

use super::XdpIngress;
use crate::ingress::{Backend, Frame, Ingress, IngressConfig, XdpMode};
use crate::veth::VethPair;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One run of [`veth_bench`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct VethBench {
    /// The XDP mode the AF_XDP receiver obtained.
    pub mode: XdpMode,
    /// Datagram payload bytes.
    pub payload: usize,
    /// Seconds each receiver was fed.
    pub seconds: f64,
    pub af_xdp_pps: f64,
    pub recv_from_pps: f64,
    pub recvmmsg_pps: f64,
    /// The io_uring backend (multishot receive) on the same veth.
    pub io_uring_pps: f64,
    /// Datagrams the sender got out per second in each run (af_xdp, recv_from, recvmmsg,
    /// io_uring).
    pub sent_pps: [f64; 4],
}

const PORT: u16 = 9400;

enum Receiver {
    Xdp(XdpMode),
    RecvFrom,
    Recvmmsg,
    IoUring,
}

/// Sends `payload`-byte datagrams from `pair`'s sender namespace with `sendmmsg` (64 per
/// call) for `duration`; returns how many the kernel accepted.
fn blast(pair: &VethPair, payload: usize, duration: Duration) -> Result<u64, String> {
    let to = SocketAddrV4::new(pair.ip_rx, PORT);
    let from = SocketAddrV4::new(pair.ip_tx, 0);
    pair.spawn_tx(move || -> Result<u64, String> {
        let s = UdpSocket::bind(from).map_err(|e| format!("sender bind: {e}"))?;
        s.connect(to).map_err(|e| format!("sender connect: {e}"))?;
        // Resolve the neighbour first (one datagram through the normal path).
        let _ = s.send(&vec![0u8; payload]);
        std::thread::sleep(Duration::from_millis(50));
        let buf = vec![0x5au8; payload];
        // SAFETY: zeroed mmsghdr/iovec are valid (null pointers, zero lengths); they are filled
        // in below before use.
        let mut iov: libc::iovec = unsafe { std::mem::zeroed() };
        iov.iov_base = buf.as_ptr() as *mut libc::c_void;
        iov.iov_len = buf.len();
        // SAFETY: as above.
        let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        hdr.msg_hdr.msg_iov = &mut iov;
        hdr.msg_hdr.msg_iovlen = 1;
        let mut hdrs = vec![hdr; 64];
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < duration {
            // SAFETY: the fd is open; `hdrs` holds 64 initialised headers, each pointing to the
            // one iovec over `buf` (alive, read only) with no address (connected socket).
            let n = unsafe { libc::sendmmsg(s.as_raw_fd(), hdrs.as_mut_ptr(), 64, 0) };
            if n > 0 {
                sent += n as u64;
            }
        }
        Ok(sent)
    })
    .join()
    .map_err(|_| "sender thread panicked".to_string())?
    .and_then(|r| r)
}

/// Runs one receiver against the blaster; returns (received, sent, mode).
fn run(payload: usize, duration: Duration, which: Receiver) -> Result<(u64, u64, XdpMode), String> {
    let pair = VethPair::create()?;
    let bind = SocketAddr::V4(SocketAddrV4::new(pair.ip_rx, PORT));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<XdpMode, String>>();
    let iface = pair.if_rx.clone();
    let (stop2, count2) = (stop.clone(), count.clone());
    let rx = pair.spawn_rx(move || {
        let mut frames = vec![Frame::empty(); 64];
        let mut n = 0u64;
        match which {
            Receiver::Xdp(mode) => {
                let mut cfg = IngressConfig::new(bind, Backend::AfXdp);
                cfg.bypass.iface = Some(iface);
                cfg.bypass.xdp_mode = mode;
                let mut ing = match XdpIngress::open(&cfg) {
                    Ok(i) => i,
                    Err(e) => return ready_tx.send(Err(e.to_string())).map_err(|_| ()).map(|_| 0),
                };
                let _ = ready_tx.send(Ok(ing.mode()));
                while !stop2.load(Ordering::Relaxed) {
                    n += ing.recv(&mut frames, Duration::from_millis(20)).unwrap_or(0) as u64;
                }
            }
            Receiver::Recvmmsg | Receiver::IoUring => {
                let backend =
                    if matches!(which, Receiver::IoUring) { Backend::IoUring } else { Backend::Sockets };
                let mut cfg = IngressConfig::new(bind, backend);
                cfg.recv_buffer_bytes = Some(4 << 20);
                let mut ing = match crate::ingress::open(&cfg) {
                    Ok(i) => i,
                    Err(e) => return ready_tx.send(Err(e.to_string())).map_err(|_| ()).map(|_| 0),
                };
                let _ = ready_tx.send(Ok(XdpMode::Auto));
                while !stop2.load(Ordering::Relaxed) {
                    n += ing.recv(&mut frames, Duration::from_millis(20)).unwrap_or(0) as u64;
                }
            }
            Receiver::RecvFrom => {
                let s = match UdpSocket::bind(bind) {
                    Ok(s) => s,
                    Err(e) => return ready_tx.send(Err(e.to_string())).map_err(|_| ()).map(|_| 0),
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
                let _ = ready_tx.send(Ok(XdpMode::Auto));
                let mut buf = [0u8; 2048];
                while !stop2.load(Ordering::Relaxed) {
                    if s.recv_from(&mut buf).is_ok() {
                        n += 1;
                    }
                }
            }
        }
        count2.store(n, Ordering::Relaxed);
        Ok(n)
    });
    let mode = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "receiver did not start".to_string())
        .and_then(|r| r);
    let mode = match mode {
        Ok(m) => m,
        Err(e) => {
            let _ = rx.join();
            return Err(e);
        }
    };
    let sent = blast(&pair, payload, duration);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let got = rx.join().map_err(|_| "receiver thread panicked".to_string())?;
    let got = got?.map_err(|()| "receiver failed".to_string())?;
    Ok((got, sent?, mode))
}

/// Measures packets/s received on a fresh veth pair by AF_XDP in `mode` (normally
/// [`XdpMode::Skb`]), a `recv_from` loop, the sockets backend's `recvmmsg` and the io_uring
/// backend, each fed for
/// `duration` with `payload`-byte datagrams by a `sendmmsg` sender in the peer namespace.
/// Needs root (namespaces, XDP). Received counts include datagrams still queued up to 100 ms
/// after the sender stops.
pub fn veth_bench(duration: Duration, payload: usize, mode: XdpMode) -> Result<VethBench, String> {
    let secs = duration.as_secs_f64().max(1e-9);
    let (x, xs, got_mode) = run(payload, duration, Receiver::Xdp(mode))?;
    let (r, rs, _) = run(payload, duration, Receiver::RecvFrom)?;
    let (m, ms, _) = run(payload, duration, Receiver::Recvmmsg)?;
    let (u, us, _) = run(payload, duration, Receiver::IoUring)?;
    Ok(VethBench {
        mode: got_mode,
        payload,
        seconds: secs,
        af_xdp_pps: x as f64 / secs,
        recv_from_pps: r as f64 / secs,
        recvmmsg_pps: m as f64 / secs,
        io_uring_pps: u as f64 / secs,
        sent_pps: [xs as f64 / secs, rs as f64 / secs, ms as f64 / secs, us as f64 / secs],
    })
}
