//! The AF_XDP transmit path: [`XdpSender`] writes whole Ethernet frames into the chunks of its
//! own UMEM, hands their descriptors to the kernel on the TX ring in batches, kicks the kernel
//! with `sendto` when the ring asks for a wake-up, and takes the chunks back from the
//! completion ring once the frames are gone. No XDP program is involved (transmission does not
//! pass through one), and nothing is allocated per frame.
//!
//! Copy mode (`XDP_COPY`) works on every interface: the kernel copies each frame into an skb
//! and hands it to the driver (`xsk_generic_xmit`, at most 32 frames per kick on Linux 6.x).
//! Zero-copy mode (`XDP_ZEROCOPY`) needs a driver that DMAs straight from the UMEM.
//!
//! The validator itself only receives; this is the sender the `ingress` suite and the tests
//! use to load an interface far harder than `sendmmsg` through the kernel's UDP stack can, and
//! the transmit half an operator's own load generator would use.

use super::umem::{CHUNK, XskError, XskTx};
use super::{sys, unavailable};
use crate::ingress::{NetError, XdpMode};
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

/// What an [`XdpSender`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TxStats {
    /// Frames put on the TX ring.
    pub submitted: u64,
    /// Frames the kernel reported sent (returned on the completion ring).
    pub completed: u64,
    /// `sendto` wake-ups issued.
    pub kicks: u64,
    /// Calls that could not queue every frame asked for (no free chunk or TX slot).
    pub ring_full: u64,
    /// Frames refused before queueing: empty, or longer than a UMEM chunk (4096 bytes).
    pub refused: u64,
    /// Descriptors the kernel rejected (`XDP_STATISTICS.tx_invalid_descs`; should stay 0).
    pub invalid_descs: u64,
}

/// Transmits Ethernet frames from one AF_XDP socket bound to one queue of one interface.
pub struct XdpSender {
    sock: XskTx,
    iface: String,
    queue: u32,
    zero_copy: bool,
    stats: TxStats,
}

impl fmt::Debug for XdpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpSender")
            .field("iface", &self.iface)
            .field("queue", &self.queue)
            .field("zero_copy", &self.zero_copy)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl XdpSender {
    /// Opens a transmitting socket on `iface` queue `queue` with a UMEM of `frames` chunks and
    /// TX/completion rings of `ring_size` entries (a power of two). `mode`: [`XdpMode::ZeroCopy`]
    /// insists on zero-copy, [`XdpMode::Auto`] tries it and falls back to copy mode, and
    /// [`XdpMode::Skb`] / [`XdpMode::Drv`] use copy mode (transmission in copy mode goes through
    /// the same generic path whatever mode a receiver attached its program in).
    pub fn open(
        iface: &str,
        queue: u32,
        mode: XdpMode,
        frames: u32,
        ring_size: u32,
    ) -> Result<XdpSender, NetError> {
        if !ring_size.is_power_of_two() || ring_size > (1 << 20) {
            return Err(NetError::Config(format!(
                "af_xdp TX ring_size {ring_size} must be a power of two up to 2^20"
            )));
        }
        if frames == 0 || frames > (1 << 22) {
            return Err(NetError::Config(format!("af_xdp TX frames {frames} must be 1..=4194304")));
        }
        let ifindex = sys::ifindex(iface).ok_or_else(|| {
            unavailable(format!("no network interface {iface:?} in this network namespace"))
        })?;
        let open = |flags: u16| XskTx::open(ifindex, queue, frames, ring_size, flags);
        let explain = |e: XskError| -> NetError {
            let hint = match e.source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => " (AF_XDP sockets need CAP_NET_RAW: run as root)",
                Some(libc::EAFNOSUPPORT) => " (kernel without CONFIG_XDP_SOCKETS)",
                Some(libc::EINVAL) if e.what == "bind" => {
                    " (is the queue id below the interface's TX queue count?)"
                }
                Some(libc::EOPNOTSUPP) if e.what == "bind" => " (the driver does not support this mode)",
                Some(libc::EBUSY) if e.what == "bind" => {
                    " (another AF_XDP socket still holds this queue after 1 s)"
                }
                _ => "",
            };
            unavailable(format!(
                "AF_XDP TX socket on {iface} queue {queue}: {} failed: {}{hint}",
                e.what, e.source
            ))
        };
        let (sock, zero_copy) = match mode {
            XdpMode::ZeroCopy => (open(sys::XDP_ZEROCOPY).map_err(explain)?, true),
            XdpMode::Skb | XdpMode::Drv => (open(sys::XDP_COPY).map_err(explain)?, false),
            XdpMode::Auto => match open(sys::XDP_ZEROCOPY) {
                Ok(s) => (s, true),
                Err(_) => (open(sys::XDP_COPY).map_err(explain)?, false),
            },
        };
        Ok(XdpSender { sock, iface: iface.to_owned(), queue, zero_copy, stats: TxStats::default() })
    }

    /// Whether the socket transmits in zero-copy mode (else copy mode).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Queues up to `n` frames, each written by `write(i, chunk)` straight into a free UMEM
    /// chunk (4096 bytes) and returning the frame's length, then kicks the kernel if the ring
    /// asks for it. A length of 0 or over the chunk skips frame `i` (counted as refused).
    /// Returns how many frames were queued: fewer than `n` when the TX ring or the UMEM is
    /// full (the kernel has not sent or not completed the earlier ones yet). Frames `i` are
    /// taken in order, so a caller resumes from the count returned.
    pub fn send_with(
        &mut self,
        n: usize,
        mut write: impl FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        self.stats.completed += u64::from(self.sock.reclaim());
        let want = u32::try_from(n).unwrap_or(u32::MAX);
        let room = self.sock.tx.free(want).min(self.sock.core.free.len() as u32).min(want);
        let mut queued = 0u32;
        let mut taken = 0usize;
        while queued < room && taken < n {
            let Some(addr) = self.sock.core.free.pop() else { break };
            let len = match self.sock.core.chunk_mut(addr) {
                Some(chunk) => write(taken, chunk),
                None => 0,
            };
            taken += 1;
            if len == 0 || len > CHUNK as usize {
                self.sock.core.free.push(addr);
                self.stats.refused += 1;
                continue;
            }
            self.sock.tx.write(queued, sys::XdpDesc { addr, len: len as u32, options: 0 });
            queued += 1;
        }
        if queued > 0 {
            self.sock.tx.submit(queued);
            self.stats.submitted += u64::from(queued);
        }
        if taken < n {
            self.stats.ring_full += 1;
        }
        self.kick_if_needed()?;
        Ok(taken)
    }

    /// Queues copies of `frames` (see [`XdpSender::send_with`]); returns how many were taken.
    pub fn send(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.send_with(frames.len(), |i, chunk| {
            let f = frames[i];
            match chunk.get_mut(..f.len()) {
                Some(dst) => {
                    dst.copy_from_slice(f);
                    f.len()
                }
                None => 0,
            }
        })
    }

    fn kick_if_needed(&mut self) -> io::Result<()> {
        if self.sock.tx.needs_wakeup() {
            self.stats.kicks += 1;
            self.sock.kick()?;
        }
        Ok(())
    }

    /// Kicks and reclaims until every queued frame has completed or `timeout` passes; true when
    /// all completed.
    pub fn flush(&mut self, timeout: Duration) -> io::Result<bool> {
        let start = Instant::now();
        loop {
            self.stats.completed += u64::from(self.sock.reclaim());
            if self.stats.completed >= self.stats.submitted {
                return Ok(true);
            }
            if start.elapsed() >= timeout {
                return Ok(false);
            }
            if self.sock.tx.outstanding() > 0 {
                self.kick_if_needed()?;
            }
            std::thread::yield_now();
        }
    }

    /// Counters, with the kernel's invalid-descriptor count read now.
    pub fn stats(&self) -> TxStats {
        let mut s = self.stats;
        if let Ok(k) = self.sock.core.statistics() {
            s.invalid_descs = k.tx_invalid_descs;
        }
        s
    }
}
