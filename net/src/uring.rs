//! The io_uring backend: one multishot `recvmsg` on the UDP socket, fed from a provided buffer
//! ring; each completion names the buffer the kernel filled (receive header, sender address,
//! payload), which is copied into the caller's frame and handed back to the ring.
//!
//! Memory the kernel writes into (the buffer ring and the buffers) is owned by
//! [`UringIngress`] in page-aligned anonymous mappings; the multishot receive is cancelled,
//! and its final completion awaited, before that memory is unmapped, and the ring itself is
//! the first field dropped.

use crate::ingress::{Backend, Frame, Ingress, IngressConfig, IngressStats, MAX_DATAGRAM, NetError};
use crate::mmap::Mmap;
use crate::sockaddr;
use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The buffer group of the provided buffer ring.
const BGID: u16 = 0;
/// `user_data` of the multishot receive and of its cancellation.
const RECV_TAG: u64 = 1;
const CANCEL_TAG: u64 = 2;
/// `struct io_uring_recvmsg_out`: namelen, controllen, payloadlen, flags (four u32).
const RECVMSG_OUT_HEADER: usize = 16;
/// Room reserved for the sender address: enough for `sockaddr_in6` (and `sockaddr_in`).
const NAME_LEN: usize = size_of::<libc::sockaddr_in6>();
/// One provided buffer: header, name, and exactly MAX_DATAGRAM of payload, so that any longer
/// datagram comes back flagged `MSG_TRUNC`.
const BUF_SIZE: usize = RECVMSG_OUT_HEADER + NAME_LEN + MAX_DATAGRAM;
/// How long `Drop` waits for the kernel to confirm the multishot receive has ended.
const CANCEL_WAIT: Duration = Duration::from_secs(1);

pub(crate) struct UringIngress {
    /// Dropped first (fields drop in declaration order): closing the ring releases the buffer
    /// group before the memory below goes away.
    ring: IoUring,
    socket: UdpSocket,
    /// The template the multishot receive reads `msg_namelen`/`msg_controllen` from, boxed so
    /// its address is stable while the SQE refers to it.
    msghdr: Box<libc::msghdr>,
    /// `entries` BufRingEntry slots, registered as buffer group BGID.
    buf_ring: Mmap,
    /// `entries` buffers of BUF_SIZE bytes each; buffer `bid` starts at `bid * BUF_SIZE`.
    buffers: Mmap,
    entries: u16,
    /// Our copy of the buffer ring's tail (published with a release store).
    tail: u16,
    /// A multishot receive is submitted and has not posted its final completion.
    armed: bool,
    stats: IngressStats,
}

// SAFETY: the raw pointers (`Mmap`s, `msghdr`'s null fields) refer to memory owned by this
// struct and used only through `&mut self`; `IoUring` is Send. Moving the whole ingress to
// another thread moves sole ownership of all of it.
unsafe impl Send for UringIngress {}

impl UringIngress {
    pub(crate) fn new(socket: UdpSocket, cfg: &IngressConfig) -> Result<Self, NetError> {
        let entries = cfg.buffers;
        if entries == 0 || !entries.is_power_of_two() || entries > 32_768 {
            return Err(NetError::Config(format!(
                "buffers must be a power of two from 1 to 32768, not {entries}"
            )));
        }
        if cfg.ring_entries == 0 {
            return Err(NetError::Config("ring_entries must be at least 1".into()));
        }
        // Every completion holds one buffer, so a completion queue at least as long as the
        // buffer count cannot overflow with receive completions.
        let cq = cfg.ring_entries.max(u32::from(entries));
        let ring = match IoUring::builder().setup_cqsize(cq).setup_coop_taskrun().build(cfg.ring_entries) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
                .setup_cqsize(cq)
                .build(cfg.ring_entries)
                .map_err(NetError::UringUnavailable)?,
            Err(e) => return Err(NetError::UringUnavailable(e)),
        };
        if !ring.params().is_feature_ext_arg() {
            return Err(NetError::UringUnavailable(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel lacks IORING_FEAT_EXT_ARG (needs Linux 5.11+)",
            )));
        }
        let setup = |what: &'static str| move |source| NetError::UringSetup { what, source };
        let buf_ring = Mmap::anonymous(usize::from(entries) * size_of::<BufRingEntry>())
            .map_err(setup("map buffer ring"))?;
        let buffers = Mmap::anonymous(usize::from(entries) * BUF_SIZE).map_err(setup("map buffers"))?;
        // SAFETY: all-zero bytes are a valid msghdr (null pointers, zero lengths).
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = NAME_LEN as libc::socklen_t;
        let mut this = UringIngress {
            ring,
            socket,
            msghdr,
            buf_ring,
            buffers,
            entries,
            tail: 0,
            armed: false,
            stats: IngressStats::default(),
        };
        for bid in 0..entries {
            this.recycle(bid);
        }
        this.publish();
        // SAFETY: `buf_ring` is a page-aligned mapping of exactly `entries` BufRingEntry slots,
        // initialised above, owned by `this` and kept mapped until the ring is closed (the
        // ring is dropped first, after the receive is cancelled).
        unsafe {
            this.ring
                .submitter()
                .register_buf_ring_with_flags(this.buf_ring.as_ptr() as u64, entries, BGID, 0)
                .map_err(setup("register buffer ring"))?;
        }
        this.arm().map_err(setup("submit multishot recvmsg"))?;
        Ok(this)
    }

    /// Puts buffer `bid` back in the ring (visible to the kernel after `publish`).
    fn recycle(&mut self, bid: u16) {
        let base = self.buf_ring.as_ptr().cast::<BufRingEntry>();
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `idx < entries`, so the slot lies inside the `buf_ring` mapping. The kernel
        // only reads slots between its head and our published tail, and this slot is past the
        // published tail; the setters leave the `resv` field (the tail, in slot 0) untouched.
        let entry = unsafe { &mut *base.add(idx) };
        entry.set_addr(self.buffers.as_ptr() as u64 + u64::from(bid) * BUF_SIZE as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the recycled buffers to the kernel.
    fn publish(&self) {
        let base = self.buf_ring.as_ptr().cast::<BufRingEntry>();
        // SAFETY: `base` is the first entry of the initialised, mapped buffer ring, so `tail`
        // yields the (2-aligned) address of its tail field, which lives as long as the mapping;
        // the kernel reads it with acquire semantics, and all accesses from our side go through
        // this atomic.
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(base).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Submits the multishot receive.
    fn arm(&mut self) -> io::Result<()> {
        let sqe = opcode::RecvMsgMulti::new(Fd(self.socket.as_raw_fd()), &*self.msghdr, BGID)
            .build()
            .user_data(RECV_TAG);
        // SAFETY: the SQE refers to the socket fd and to `msghdr`, both owned by `self` and kept
        // alive (the msghdr boxed, at a stable address) until the receive is cancelled in Drop.
        let pushed = unsafe { self.ring.submission().push(&sqe) }.is_ok();
        if !pushed {
            self.ring.submit()?;
            // SAFETY: as above.
            unsafe { self.ring.submission().push(&sqe) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        self.ring.submit()?;
        self.armed = true;
        Ok(())
    }

    /// Moves ready completions into `out`; returns how many frames were filled.
    fn drain(&mut self, out: &mut [Frame]) -> usize {
        let mut filled = 0;
        let mut recycled = false;
        while filled < out.len() {
            let Some(cqe) = self.ring.completion().next() else { break };
            if cqe.user_data() != RECV_TAG {
                continue;
            }
            let flags = cqe.flags();
            if !cqueue::more(flags) {
                self.armed = false;
            }
            let res = cqe.result();
            if res < 0 {
                // ENOBUFS: every buffer was in use and the multishot ended; it is re-armed.
                if res != -libc::ENOBUFS {
                    self.stats.errors += 1;
                }
                continue;
            }
            let Some(bid) = cqueue::buffer_select(flags) else {
                self.stats.errors += 1;
                continue;
            };
            if bid >= self.entries {
                self.stats.errors += 1;
                continue;
            }
            let len = (res as usize).min(BUF_SIZE);
            // SAFETY: buffer `bid` lies inside the `buffers` mapping (bid < entries); the kernel
            // finished writing its first `len` bytes before posting this completion and will
            // not touch it again until it is recycled below.
            let buf = unsafe {
                std::slice::from_raw_parts(self.buffers.as_ptr().add(usize::from(bid) * BUF_SIZE), len)
            };
            match RecvMsgOut::parse(buf, &self.msghdr) {
                Ok(msg) => {
                    let payload = msg.payload_data();
                    if msg.is_payload_truncated()
                        || msg.incoming_payload_len() as usize > MAX_DATAGRAM
                        || payload.len() > MAX_DATAGRAM
                    {
                        self.stats.oversized += 1;
                    } else if let Some(from) =
                        (!msg.is_name_data_truncated()).then(|| sockaddr::parse(msg.name_data())).flatten()
                    {
                        let frame = &mut out[filled];
                        frame.bytes[..payload.len()].copy_from_slice(payload);
                        frame.len = payload.len() as u16;
                        frame.from = from;
                        filled += 1;
                    } else {
                        self.stats.errors += 1;
                    }
                }
                Err(()) => self.stats.errors += 1,
            }
            self.recycle(bid);
            recycled = true;
        }
        if recycled {
            self.publish();
        }
        filled
    }
}

impl Ingress for UringIngress {
    fn recv(&mut self, out: &mut [Frame], timeout: Duration) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let filled = self.drain(out);
            if !self.armed {
                self.arm().inspect_err(|_| self.stats.errors += 1)?;
            }
            if filled > 0 {
                self.stats.received += filled as u64;
                self.stats.batches += 1;
                return Ok(filled);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(0);
            }
            let ts = Timespec::from(remaining);
            let args = SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
                Err(e) => {
                    self.stats.errors += 1;
                    return Err(e);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn stats(&self) -> IngressStats {
        self.stats
    }

    fn backend(&self) -> Backend {
        Backend::IoUring
    }
}

impl Drop for UringIngress {
    fn drop(&mut self) {
        // End the multishot receive and wait for its final completion, so the kernel holds no
        // reference to `msghdr` or the buffers when they are freed.
        if self.armed {
            let cancel = opcode::AsyncCancel::new(RECV_TAG).build().user_data(CANCEL_TAG);
            // SAFETY: a cancellation holds no pointers.
            let mut pushed = unsafe { self.ring.submission().push(&cancel) }.is_ok();
            if !pushed && self.ring.submit().is_ok() {
                // SAFETY: as above.
                pushed = unsafe { self.ring.submission().push(&cancel) }.is_ok();
            }
            let deadline = Instant::now() + CANCEL_WAIT;
            while pushed && self.armed && Instant::now() < deadline {
                let ts = Timespec::from(Duration::from_millis(50));
                let args = SubmitArgs::new().timespec(&ts);
                let _ = self.ring.submitter().submit_with_args(1, &args);
                for cqe in self.ring.completion() {
                    if cqe.user_data() == RECV_TAG && !cqueue::more(cqe.flags()) {
                        self.armed = false;
                    }
                }
            }
        }
        if self.armed {
            // The kernel did not confirm the end of the receive: leak the memory it may still
            // write into rather than unmap it.
            self.buf_ring.leak();
            self.buffers.leak();
            std::mem::forget(std::mem::replace(
                &mut self.msghdr,
                Box::new(
                    // SAFETY: all-zero bytes are a valid msghdr.
                    unsafe { std::mem::zeroed() },
                ),
            ));
        }
    }
}
