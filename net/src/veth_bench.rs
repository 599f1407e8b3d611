//! The `ingress` perf suite's veth runs: packets per second taken in by one receive path on
//! one veth end, in its own network namespace, while one sender thread in the peer namespace
//! sends 64-byte UDP datagrams for a fixed time. Every receive path (AF_XDP, DPDK on
//! `net_af_packet`, a `recv_from` loop, the sockets backend's `recvmmsg`, io_uring) can be fed
//! by either sender:
//!
//! - `sendmmsg`: 64 datagrams per call through the sender's UDP/IP stack, qdisc and neighbour
//!   code (what a client host does);
//! - `xdp_tx` (feature `af_xdp`): an [`XdpSender`](crate::xdp::XdpSender) writing pre-built
//!   Ethernet frames to the veth's TX ring in copy mode, which skips the sender's stack. On a
//!   small box where sender and receiver share the cores this is the heavier load.
//!
//! Needs root (namespaces, XDP, AF_PACKET). A fresh veth pair is made for every run.

use crate::ingress::{Backend, Frame, Ingress, IngressConfig, IngressStats, XdpMode};
use crate::veth::VethPair;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The receiver's UDP port.
const PORT: u16 = 9400;
/// The sender's UDP source port.
const SRC_PORT: u16 = 40_000;
/// RX ring entries of the AF_XDP socket and the DPDK `net_af_packet` ring.
const RX_RING: u32 = 8192;
/// How long a receiver keeps taking after the sender stopped (what was queued still counts).
const DRAIN: Duration = Duration::from_millis(100);

/// A receive path under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VethRx {
    /// The AF_XDP backend, attached in this mode.
    #[cfg(feature = "af_xdp")]
    AfXdp(XdpMode),
    /// The DPDK backend on a `net_af_packet` device over the veth end (the kernel keeps the
    /// interface and its address; DPDK reads a copy of every frame through a PACKET_MMAP ring).
    #[cfg(feature = "dpdk")]
    Dpdk,
    /// A plain blocking `UdpSocket::recv_from` loop.
    RecvFrom,
    /// The sockets backend (`poll` + `recvmmsg`, batch 64).
    Recvmmsg,
    /// The io_uring backend (multishot receive).
    IoUring,
}

impl VethRx {
    /// The name used in reports: `af_xdp-<mode asked>`, `dpdk`, `recv_from`, `recvmmsg`,
    /// `io_uring`.
    pub fn name(self) -> String {
        match self {
            #[cfg(feature = "af_xdp")]
            VethRx::AfXdp(m) => format!("af_xdp-{}", m.name()),
            #[cfg(feature = "dpdk")]
            VethRx::Dpdk => "dpdk".into(),
            VethRx::RecvFrom => "recv_from".into(),
            VethRx::Recvmmsg => "recvmmsg".into(),
            VethRx::IoUring => "io_uring".into(),
        }
    }
}

/// A sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VethTx {
    /// `sendmmsg` of 64 datagrams per call on a connected UDP socket.
    Sendmmsg,
    /// An AF_XDP socket's TX ring, copy mode, 64 frames per call, as fast as it goes.
    #[cfg(feature = "af_xdp")]
    XdpTx,
    /// The same, paced to this many frames per second (an offered load for a loss-free
    /// throughput search: the sender spins until the next batch is due).
    #[cfg(feature = "af_xdp")]
    XdpTxAt(u64),
}

impl VethTx {
    /// `sendmmsg`, `xdp_tx` or `xdp_tx@<rate>`.
    pub fn name(self) -> String {
        match self {
            VethTx::Sendmmsg => "sendmmsg".into(),
            #[cfg(feature = "af_xdp")]
            VethTx::XdpTx => "xdp_tx".into(),
            #[cfg(feature = "af_xdp")]
            VethTx::XdpTxAt(rate) => format!("xdp_tx@{rate}"),
        }
    }

    /// The paced rate, if any.
    pub fn offered(self) -> Option<u64> {
        match self {
            #[cfg(feature = "af_xdp")]
            VethTx::XdpTxAt(rate) => Some(rate),
            _ => None,
        }
    }
}

/// Where the work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VethCpus {
    /// Wherever the scheduler puts it. veth hands a frame to the peer inside the sender's
    /// `send` call, so the receiving side's kernel work (IP/UDP, or generic XDP and the copy
    /// into the UMEM) runs as softirq on the sender's CPU, and the sender is the limit.
    Shared,
    /// As on a real host with a NIC: the sender thread pinned to CPU 0, the receiver thread to
    /// the last CPU, and the receiving veth's queue steered to that CPU with RPS
    /// (`rps_cpus`), so the kernel's receive work (IP/UDP for sockets, generic XDP for
    /// AF_XDP in skb mode, the AF_PACKET tap for DPDK) runs on the receiver's core. Native
    /// (driver-mode) XDP runs in veth's NAPI, which RPS does not move: that NAPI is switched to
    /// threaded mode and its kernel thread pinned to the receiver's CPU too. Needs two CPUs.
    Split,
}

impl VethCpus {
    /// `shared` or `split`.
    pub fn name(self) -> &'static str {
        match self {
            VethCpus::Shared => "shared",
            VethCpus::Split => "split",
        }
    }
}

/// Pins task `pid` (0: the calling thread) to `cpu` (below 64, see `split_cpus`).
fn pin(pid: libc::pid_t, cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of the set; `cpu` is below 64, inside CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the set is initialised and its size passed; a `pid` that no longer exists makes
    // the call fail with ESRCH, nothing else.
    let rc = unsafe { libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("pin task {pid} to CPU {cpu}: {}", std::io::Error::last_os_error()))
    }
}

/// The (sender, receiver) CPUs of [`VethCpus::Split`].
fn split_cpus() -> Result<(usize, usize), String> {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if n < 2 {
        return Err(format!("split CPUs need at least 2 CPUs, this process may use {n}"));
    }
    Ok((0, (n - 1).min(63)))
}

/// Runs `script` with `sh` inside `pair`'s receiving namespace through `ip netns exec`, which
/// mounts the namespace's own sysfs (where its interfaces are visible).
fn sh_in_rx(pair: &VethPair, script: &str) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &pair.ns_rx, "sh", "-c", script])
        .output()
        .map_err(|e| format!("run ip netns exec: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{script}`: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Steers RX queue 0 of `pair`'s receiving end to `cpu` with RPS.
fn steer_rps(pair: &VethPair, cpu: usize) -> Result<(), String> {
    let path = format!("/sys/class/net/{}/queues/rx-0/rps_cpus", pair.if_rx);
    sh_in_rx(pair, &format!("echo {:x} > {path}", 1u64 << cpu))
        .map_err(|e| format!("steer to CPU {cpu}: {e}"))
}

/// Moves the receiving veth's NAPI (which runs native XDP) into kernel threads and pins them
/// to `cpu`: RPS steers only the generic path, while veth polls its NAPI on whichever CPU
/// scheduled it, the sender's. Returns how many NAPI threads were pinned (0: none found).
fn thread_napi(pair: &VethPair, cpu: usize) -> Result<usize, String> {
    sh_in_rx(pair, &format!("echo 1 > /sys/class/net/{}/threaded", pair.if_rx))
        .map_err(|e| format!("threaded NAPI: {e}"))?;
    // The threads are named `napi/<iface>-<napi id>`; a task name keeps 15 bytes.
    let name = format!("napi/{}-", pair.if_rx);
    let prefix = &name[..name.len().min(15)];
    let mut pinned = 0;
    for entry in std::fs::read_dir("/proc").map_err(|e| format!("read /proc: {e}"))?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else { continue };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        // A thread that exited meanwhile fails to pin and is not counted.
        if pin(pid, cpu).is_ok() {
            pinned += 1;
        }
    }
    Ok(pinned)
}

/// What one [`veth_run`] measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VethRun {
    /// [`VethRx::name`].
    pub receiver: String,
    /// [`VethTx::name`].
    pub sender: String,
    /// The paced sender's rate (frames/s), `None` for the unpaced ones.
    pub offered: Option<u64>,
    /// [`VethCpus::name`].
    pub cpus: String,
    /// veth NAPI threads pinned to the receiver's CPU (split CPUs with native XDP only).
    pub napi_threads: usize,
    /// The XDP mode the AF_XDP receiver obtained (`None` for the others).
    pub xdp_mode: Option<XdpMode>,
    /// Datagram payload bytes.
    pub payload: usize,
    /// Seconds the sender sent.
    pub seconds: f64,
    /// Datagrams the receiver took (during the send and up to 100 ms after).
    pub received: u64,
    /// Datagrams the sender got out (`sendmmsg` accepted, or AF_XDP completions).
    pub sent: u64,
    /// CPU seconds of the receiving thread over the run.
    pub receiver_cpu_s: f64,
    /// The receive backend's counters (`None` for the `recv_from` loop).
    pub stats: Option<IngressStats>,
}

impl VethRun {
    /// Datagrams received per second of sending.
    pub fn rx_pps(&self) -> f64 {
        self.received as f64 / self.seconds.max(1e-9)
    }

    /// Datagrams sent per second.
    pub fn sent_pps(&self) -> f64 {
        self.sent as f64 / self.seconds.max(1e-9)
    }

    /// Datagrams received per CPU-second of the receiving thread.
    pub fn per_receiver_cpu_s(&self) -> f64 {
        self.received as f64 / self.receiver_cpu_s.max(1e-9)
    }
}

/// CPU time consumed so far by the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live timespec the call writes into; the clock id is a constant.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// The receive path's handle inside its thread.
enum Taker {
    Plain(UdpSocket, Vec<u8>),
    Net(Box<dyn Ingress>),
}

/// Opens `rx` on `pair`'s receiving end; runs inside the receiving namespace.
fn open_rx(rx: VethRx, pair_if: &str, bind: SocketAddrV4) -> Result<(Taker, Option<XdpMode>), String> {
    let net = |backend: Backend| -> Result<Taker, String> {
        let mut cfg = IngressConfig::new(SocketAddr::V4(bind), backend);
        cfg.recv_buffer_bytes = Some(4 << 20);
        crate::ingress::open(&cfg).map(Taker::Net).map_err(|e| e.to_string())
    };
    match rx {
        #[cfg(feature = "af_xdp")]
        VethRx::AfXdp(mode) => {
            let mut cfg = IngressConfig::new(SocketAddr::V4(bind), Backend::AfXdp);
            cfg.bypass.iface = Some(pair_if.to_owned());
            cfg.bypass.xdp_mode = mode;
            // About as much buffering as the socket paths' 4 MiB receive buffer holds of
            // 64-byte datagrams (a few milliseconds at these rates), so a receiver that is
            // briefly descheduled loses as little here as there.
            cfg.bypass.ring_size = RX_RING;
            cfg.bypass.frames = 2 * RX_RING;
            let ing = crate::xdp::XdpIngress::open(&cfg).map_err(|e| e.to_string())?;
            let got = ing.mode();
            Ok((Taker::Net(Box::new(ing)), Some(got)))
        }
        #[cfg(feature = "dpdk")]
        VethRx::Dpdk => {
            use crate::dpdk;
            use std::sync::atomic::AtomicU32;
            static NEXT: AtomicU32 = AtomicU32::new(0);
            // The EAL starts once per process: with the arguments the `net_null` bench uses,
            // so both can run in one process; the veth end becomes a hot-plugged device.
            let args = dpdk::bench_eal_args();
            dpdk::init_eal(&args).map_err(|e| e.to_string())?;
            let n = 900 + NEXT.fetch_add(1, Ordering::Relaxed);
            // The PMD's PACKET_MMAP ring holds 512 frames by default; give it the AF_XDP
            // ring's depth.
            let port = dpdk::attach_vdev(&format!("net_af_packet{n},iface={pair_if},framecnt={RX_RING}"))
                .map_err(|e| e.to_string())?;
            let mut cfg = IngressConfig::new(SocketAddr::V4(bind), Backend::Dpdk);
            cfg.bypass.eal_args = args;
            cfg.bypass.dpdk_port = port;
            cfg.bypass.ring_size = 4096;
            cfg.bypass.frames = 8192;
            let ing = dpdk::DpdkIngress::open(&cfg).map_err(|e| e.to_string())?;
            Ok((Taker::Net(Box::new(ing)), None))
        }
        VethRx::RecvFrom => {
            let _ = pair_if;
            let s = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(20))).map_err(|e| e.to_string())?;
            Ok((Taker::Plain(s, vec![0u8; 2048]), None))
        }
        VethRx::Recvmmsg => Ok((net(Backend::Sockets)?, None)),
        VethRx::IoUring => Ok((net(Backend::IoUring)?, None)),
    }
}

/// Sends with `sendmmsg` from the sending namespace until `duration` has passed.
fn send_mmsg(pair: &VethPair, payload: usize, duration: Duration) -> Result<u64, String> {
    let s =
        UdpSocket::bind(SocketAddrV4::new(pair.ip_tx, SRC_PORT)).map_err(|e| format!("sender bind: {e}"))?;
    s.connect(SocketAddrV4::new(pair.ip_rx, PORT)).map_err(|e| format!("sender connect: {e}"))?;
    // Resolve the neighbour first (one datagram through the normal path).
    let _ = s.send(&vec![0u8; payload]);
    std::thread::sleep(Duration::from_millis(50));
    let buf = vec![0x5au8; payload];
    // SAFETY: zeroed mmsghdr/iovec are valid (null pointers, zero lengths); filled in below.
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
        // SAFETY: the fd is open; `hdrs` holds 64 initialised headers, each pointing to the one
        // iovec over `buf` (alive, read only) with no address (connected socket).
        let n = unsafe { libc::sendmmsg(s.as_raw_fd(), hdrs.as_mut_ptr(), 64, 0) };
        if n > 0 {
            sent += n as u64;
        }
    }
    Ok(sent)
}

/// Sends pre-built frames on an AF_XDP TX ring from the sending namespace until `duration` has
/// passed; returns the frames the kernel completed.
#[cfg(feature = "af_xdp")]
fn send_xdp(pair: &VethPair, payload: usize, duration: Duration, rate: Option<u64>) -> Result<u64, String> {
    let mut frame = Vec::new();
    crate::l2::build_udp_frame(
        pair.mac_tx,
        pair.mac_rx,
        SocketAddrV4::new(pair.ip_tx, SRC_PORT),
        SocketAddrV4::new(pair.ip_rx, PORT),
        &vec![0x5au8; payload],
        None,
        &mut frame,
    )
    .map_err(|e| e.to_string())?;
    let mut tx =
        crate::xdp::XdpSender::open(&pair.if_tx, 0, XdpMode::Auto, 4096, 2048).map_err(|e| e.to_string())?;
    let len = frame.len();
    let start = Instant::now();
    let mut queued = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let want = match rate {
            None => 64,
            Some(r) => {
                let due = (r as f64 * elapsed.as_secs_f64()) as u64;
                let n = due.saturating_sub(queued).min(64);
                if n == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                n as usize
            }
        };
        queued += tx
            .send_with(want, |_, chunk| {
                chunk[..len].copy_from_slice(&frame);
                len
            })
            .map_err(|e| format!("AF_XDP send: {e}"))? as u64;
    }
    let _ = tx.flush(Duration::from_secs(1));
    let s = tx.stats();
    if s.invalid_descs > 0 {
        return Err(format!("the kernel rejected {} TX descriptors", s.invalid_descs));
    }
    Ok(s.completed)
}

/// Runs `tx` against `rx` on a fresh veth pair for `duration` with `payload`-byte datagrams.
pub fn veth_run(
    rx: VethRx,
    tx: VethTx,
    cpus: VethCpus,
    duration: Duration,
    payload: usize,
) -> Result<VethRun, String> {
    let split = match cpus {
        VethCpus::Shared => None,
        VethCpus::Split => Some(split_cpus()?),
    };
    let pair = Arc::new(VethPair::create()?);
    if let Some((_, rx_cpu)) = split {
        steer_rps(&pair, rx_cpu)?;
    }
    let bind = SocketAddrV4::new(pair.ip_rx, PORT);
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Option<XdpMode>, String>>();
    let iface = pair.if_rx.clone();
    let stop2 = stop.clone();
    let receiver = pair.spawn_rx(move || -> Result<(u64, Duration, Option<IngressStats>), String> {
        let opened = match split {
            Some((_, cpu)) => pin(0, cpu).and_then(|()| open_rx(rx, &iface, bind)),
            None => open_rx(rx, &iface, bind),
        };
        let (mut taker, mode) = match opened {
            Ok(t) => t,
            Err(e) => {
                let _ = ready_tx.send(Err(e.clone()));
                return Err(e);
            }
        };
        let _ = ready_tx.send(Ok(mode));
        let cpu0 = thread_cpu();
        let mut frames = vec![Frame::empty(); 64];
        let mut n = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            match &mut taker {
                Taker::Plain(s, buf) => {
                    if s.recv_from(buf).is_ok() {
                        n += 1;
                    }
                }
                Taker::Net(ing) => {
                    n += ing.recv(&mut frames, Duration::from_millis(20)).map_err(|e| e.to_string())? as u64;
                }
            }
        }
        let stats = match &taker {
            Taker::Net(ing) => Some(ing.stats()),
            Taker::Plain(..) => None,
        };
        Ok((n, thread_cpu().saturating_sub(cpu0), stats))
    });
    let mode = match ready_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            let _ = receiver.join();
            return Err(format!("{}: {e}", rx.name()));
        }
        Err(_) => {
            stop.store(true, Ordering::Relaxed);
            let _ = receiver.join();
            return Err(format!("{}: the receiver did not start within 20 s", rx.name()));
        }
    };
    // Native XDP on veth runs in veth's NAPI on the sending CPU: give it the receiver's core.
    let mut napi_threads = 0;
    if let (Some((_, rx_cpu)), Some(XdpMode::Drv | XdpMode::ZeroCopy)) = (split, mode) {
        napi_threads = thread_napi(&pair, rx_cpu).inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
    }
    let p = pair.clone();
    let sent = pair
        .spawn_tx(move || {
            if let Some((cpu, _)) = split {
                pin(0, cpu)?;
            }
            match tx {
                VethTx::Sendmmsg => send_mmsg(&p, payload, duration),
                #[cfg(feature = "af_xdp")]
                VethTx::XdpTx => send_xdp(&p, payload, duration, None),
                #[cfg(feature = "af_xdp")]
                VethTx::XdpTxAt(rate) => send_xdp(&p, payload, duration, Some(rate)),
            }
        })
        .join()
        .map_err(|_| "sender thread panicked".to_string())
        .and_then(|r| r)
        .and_then(|r| r);
    std::thread::sleep(DRAIN);
    stop.store(true, Ordering::Relaxed);
    let got =
        receiver.join().map_err(|_| "receiver thread panicked".to_string()).and_then(|r| r).and_then(|r| r);
    let sent = sent.map_err(|e| format!("{} sender: {e}", tx.name()))?;
    let (received, cpu, stats) = got.map_err(|e| format!("{} receiver: {e}", rx.name()))?;
    Ok(VethRun {
        receiver: rx.name(),
        sender: tx.name(),
        offered: tx.offered(),
        cpus: cpus.name().into(),
        napi_threads,
        xdp_mode: mode,
        payload,
        seconds: duration.as_secs_f64(),
        received,
        sent,
        receiver_cpu_s: cpu.as_secs_f64(),
        stats,
    })
}
