//! Latency and jitter without netem: this kernel has no `sch_netem`, so a node's outgoing
//! packets go through NFQUEUE ([`super::net::Fabric::queue_outbound`]) to a thread of this
//! process that entered the node's namespace, which holds each packet for its own seeded delay
//! (uniform in `mean ± jitter`) and then lets it go. Packets released out of order reorder on
//! the wire, as jittery links do. [`calibrate`] measures that the delay asked for is the delay
//! a packet gets.
//!
//! Why hand-written: the `nfq` crate speaks the netlink protocol (bind a queue, receive,
//! verdict); what it leaves to its user is exactly the part that is ours, the holding.

use super::net;
use nfq::{Queue, Verdict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most packets one queue holds at once (the kernel drops beyond its queue length).
const QUEUE_MAX: u32 = 65_536;

/// The delay a node's packets get now: `mean ± jitter` milliseconds (0: released at once).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Delay {
    pub mean_ms: u32,
    pub jitter_ms: u32,
}

/// One node's delayer thread.
pub struct Delayer {
    delay: Arc<Mutex<Delay>>,
    stop: Arc<AtomicBool>,
    /// Packets that went through the queue.
    pub packets: Arc<AtomicU64>,
    /// Times the kernel found the queue's socket full (its messages were lost: with fail-open
    /// the kernel passes packets it cannot queue, so only the count is kept).
    pub overruns: Arc<AtomicU64>,
    /// Verdicts the kernel refused because it had flushed the packet (see [`run`]).
    pub flushed: Arc<AtomicU64>,
    /// Why the thread stopped, once it has (see [`Delayer::check`]).
    failed: Arc<Mutex<Option<String>>>,
    handle: Option<JoinHandle<Result<(), String>>>,
}

/// A held packet, ordered by release time (earliest first in the max-heap).
struct Held {
    due: Instant,
    seq: u64,
    msg: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        self.due == o.due && self.seq == o.seq
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.due.cmp(&self.due).then(o.seq.cmp(&self.seq))
    }
}

impl Delayer {
    /// Starts the thread in the namespace behind `ns_fd`, listening on its queue 0.
    pub fn start(ns_fd: i32, seed: u64) -> Result<Delayer, String> {
        let delay = Arc::new(Mutex::new(Delay::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let overruns = Arc::new(AtomicU64::new(0));
        let flushed = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(None));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (d, s, p, o, fl, f) =
            (delay.clone(), stop.clone(), packets.clone(), overruns.clone(), flushed.clone(), failed.clone());
        let handle = std::thread::Builder::new()
            .name("chaos-delay".into())
            .spawn(move || {
                let opened = net::enter(ns_fd).and_then(|()| open_queue());
                let mut queue = match opened {
                    Ok(q) => {
                        let _ = ready_tx.send(Ok(()));
                        q
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                let ran = run(&mut queue, &d, &s, &p, &o, &fl, seed);
                if let Err(e) = &ran {
                    *f.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.clone());
                }
                ran
            })
            .map_err(|e| format!("cannot start a delay thread: {e}"))?;
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {
                Ok(Delayer { delay, stop, packets, overruns, flushed, failed, handle: Some(handle) })
            }
            Ok(Err(e)) => Err(format!("NFQUEUE delayer: {e}")),
            Err(_) => Err("NFQUEUE delayer: its thread did not start".into()),
        }
    }

    pub fn set(&self, d: Delay) {
        *self.delay.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = d;
    }

    /// Whether the thread still runs: a delayer that stopped can no longer delay anything
    /// (its queue's packets bypass it), so the campaign stops rather than report on faults it
    /// did not apply.
    pub fn check(&self) -> Result<(), String> {
        match &*self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(e) => Err(format!("the NFQUEUE delayer stopped: {e}")),
            None => Ok(()),
        }
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn open_queue() -> Result<Queue, String> {
    let mut q = Queue::open().map_err(|e| format!("open: {e}"))?;
    // The `nfq` crate opens its netlink socket without SOCK_CLOEXEC and does not expose it,
    // so every process this harness starts later (the nodes, `ip`, `nft`) would inherit it.
    // Inherited, the socket outlives this thread: should the thread stop, the kernel keeps
    // queueing the node's packets to a socket nobody reads (no `--queue-bypass`), and TCP
    // never retransmits a segment whose clone is still queued, so the node's connections
    // stall for good (a whole cluster did, in schedule 7290766089257094167, when three delayers
    // stopped on the ENOENT that [`run`] now survives). Mark every
    // descriptor of this process close-on-exec: Rust's own are already, stdio (0 to 2) is not
    // touched, and a child's stdio is dup2'ed, which clears the flag.
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC closes nothing; it only sets a flag on
    // descriptors this process owns, and takes no pointers.
    if unsafe { libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) } != 0 {
        return Err(format!("close_range: {}", std::io::Error::last_os_error()));
    }
    q.bind(0).map_err(|e| format!("bind queue 0: {e}"))?;
    // Only the verdict matters: no payload copied to user space.
    q.set_copy_range(0, 0).map_err(|e| format!("copy range: {e}"))?;
    q.set_queue_max_len(0, QUEUE_MAX).map_err(|e| format!("queue length: {e}"))?;
    // A full queue passes packets rather than dropping them: loss is a fault of its own.
    q.set_fail_open(0, true).map_err(|e| format!("fail open: {e}"))?;
    q.set_nonblocking(true);
    Ok(q)
}

fn run(
    queue: &mut Queue,
    delay: &Mutex<Delay>,
    stop: &AtomicBool,
    packets: &AtomicU64,
    overruns: &AtomicU64,
    flushed: &AtomicU64,
    seed: u64,
) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut held: BinaryHeap<Held> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let mut got = 0;
        // Take what arrived (bounded, so releases are never starved).
        while got < 256 && !stopping {
            match queue.recv() {
                Ok(mut msg) => {
                    got += 1;
                    packets.fetch_add(1, Ordering::Relaxed);
                    let d = *delay.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let ms = if d.jitter_ms == 0 {
                        f64::from(d.mean_ms)
                    } else {
                        let lo = f64::from(d.mean_ms.saturating_sub(d.jitter_ms));
                        rng.random_range(lo..=f64::from(d.mean_ms + d.jitter_ms))
                    };
                    msg.set_verdict(Verdict::Accept);
                    if ms <= 0.0 {
                        queue.verdict(msg).map_err(|e| format!("verdict: {e}"))?;
                    } else {
                        seq += 1;
                        held.push(Held {
                            due: Instant::now() + Duration::from_secs_f64(ms / 1000.0),
                            seq,
                            msg,
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // The socket overflowed while this thread was off the CPU: the kernel passed
                // what it could not queue (fail-open), and reports it once. Not a reason to stop.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    overruns.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                // The kernel refused a verdict: the packet is gone. Removing any netfilter hook
                // in a namespace (healing a partition deletes its nft table) flushes every
                // packet queued there, the ones this thread holds included, and the verdicts
                // sent for them later come back as ENOENT. They were dropped (TCP resends
                // them), which is what a flushed queue means; not a reason to stop.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    flushed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => break,
                Err(e) => return Err(format!("recv: {e}")),
            }
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h| h.due <= now || stopping) {
            if let Some(h) = held.pop() {
                queue.verdict(h.msg).map_err(|e| format!("verdict: {e}"))?;
            }
        }
        if stopping {
            return Ok(());
        }
        if got == 0 {
            let next =
                held.peek().map_or(Duration::from_micros(500), |h| h.due.saturating_duration_since(now));
            std::thread::sleep(next.min(Duration::from_micros(500)));
        }
    }
}

/// The round trip of `probes` UDP datagrams from node `a`'s namespace to an echo in node `b`'s,
/// in microseconds (p50, p99, max, lost), with node `a`'s delayer set as given.
pub fn round_trips(
    fabric: &net::Fabric,
    a: usize,
    b: usize,
    probes: u32,
) -> Result<(u64, u64, u64, u32), String> {
    use std::net::{SocketAddr, UdpSocket};
    let port = 9_999;
    let (fa, fb) = (fabric.ns_fd(a), fabric.ns_fd(b));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let s = stop.clone();
    let echo = std::thread::spawn(move || -> Result<(), String> {
        let sock = net::enter(fb)
            .and_then(|()| UdpSocket::bind((net::node_ip(b), port)).map_err(|e| format!("echo bind: {e}")));
        let sock = match sock {
            Ok(s) => s,
            Err(e) => {
                let _ = ready_tx.send(Err(e.clone()));
                return Err(e);
            }
        };
        let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
        let _ = ready_tx.send(Ok(()));
        let mut buf = [0u8; 64];
        while !s.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
        Ok(())
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).map_err(|_| "echo thread did not start".to_string())??;
    let probe = std::thread::spawn(move || -> Result<(Vec<u64>, u32), String> {
        net::enter(fa)?;
        let sock = UdpSocket::bind((net::node_ip(a), 0)).map_err(|e| format!("probe bind: {e}"))?;
        sock.connect(SocketAddr::from((net::node_ip(b), port))).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        let (mut rtts, mut lost) = (Vec::new(), 0u32);
        let mut buf = [0u8; 64];
        for i in 0..probes {
            let t = Instant::now();
            sock.send(&i.to_le_bytes()).map_err(|e| e.to_string())?;
            loop {
                match sock.recv(&mut buf) {
                    Ok(4) if buf[..4] == i.to_le_bytes() => {
                        rtts.push(t.elapsed().as_micros() as u64);
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        lost += 1;
                        break;
                    }
                }
            }
        }
        Ok((rtts, lost))
    });
    let probed = probe.join().map_err(|_| "probe thread panicked".to_string())?;
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
    let (mut rtts, lost) = probed?;
    if rtts.is_empty() {
        return Err(format!("no probe from node {a} to node {b} came back"));
    }
    rtts.sort_unstable();
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99), at(1.0), lost))
}
