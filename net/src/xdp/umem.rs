//! AF_XDP sockets, each with its own UMEM of `frames` chunks of [`CHUNK`] bytes, bound to one
//! queue of one interface: [`Xsk`] receives (fill and RX rings; its completion ring exists
//! because `bind` requires it), [`XskTx`] transmits (TX and completion rings; its fill ring
//! likewise exists only for `bind`).

use super::ring::{CompRing, FillRing, Mmap, RxRing, TxRing};
use super::sys::{self, SockaddrXdp, XdpDesc, XdpMmapOffsets, XdpRingOffset, XdpUmemReg};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// How long `bind` retries `EBUSY` (a queue still held by a socket closed a moment ago).
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// Bytes per UMEM chunk (one frame each; a page).
pub(crate) const CHUNK: u32 = 4096;

/// Which step of setting up the socket failed.
#[derive(Debug)]
pub(crate) struct XskError {
    pub(crate) what: &'static str,
    pub(crate) source: io::Error,
}

fn step<T>(what: &'static str, r: io::Result<T>) -> Result<T, XskError> {
    r.map_err(|source| XskError { what, source })
}

/// What both directions share: the AF_XDP socket, its UMEM of `frames` chunks, and the chunks
/// user space owns.
#[derive(Debug)]
pub(crate) struct Socket {
    // Field order is drop order: the socket closes before its UMEM is unmapped.
    fd: OwnedFd,
    umem: Mmap,
    /// Chunk addresses owned by user space (capacity `frames`, so pushing never allocates).
    pub(crate) free: Vec<u64>,
}

impl Socket {
    /// Creates the socket, registers a UMEM of `frames` chunks (all of them free, lowest
    /// handed out first), creates fill and completion rings of `ring_size` (the kernel refuses
    /// to bind without both) and the `extra` ring (`XDP_RX_RING` or `XDP_TX_RING`); returns
    /// the socket and the rings' mmap offsets.
    fn create(frames: u32, ring_size: u32, extra: libc::c_int) -> Result<(Socket, XdpMmapOffsets), XskError> {
        let fd = step("socket(AF_XDP)", sys::xsk_socket())?;
        let len = (frames as usize)
            .checked_mul(CHUNK as usize)
            .ok_or_else(|| XskError { what: "UMEM size", source: io::Error::other("overflow") })?;
        let umem = step("mmap UMEM", Mmap::anonymous(len))?;
        let reg = XdpUmemReg {
            addr: umem.as_ptr() as u64,
            len: len as u64,
            chunk_size: CHUNK,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        step("setsockopt(XDP_UMEM_REG)", sys::set_xdp_opt(&fd, sys::XDP_UMEM_REG, &reg))?;
        step("setsockopt(XDP_UMEM_FILL_RING)", sys::set_xdp_opt(&fd, sys::XDP_UMEM_FILL_RING, &ring_size))?;
        step(
            "setsockopt(XDP_UMEM_COMPLETION_RING)",
            sys::set_xdp_opt(&fd, sys::XDP_UMEM_COMPLETION_RING, &ring_size),
        )?;
        let what =
            if extra == sys::XDP_TX_RING { "setsockopt(XDP_TX_RING)" } else { "setsockopt(XDP_RX_RING)" };
        step(what, sys::set_xdp_opt(&fd, extra, &ring_size))?;
        let (off, off_len) = step(
            "getsockopt(XDP_MMAP_OFFSETS)",
            sys::get_xdp_opt::<XdpMmapOffsets>(fd.as_raw_fd(), sys::XDP_MMAP_OFFSETS),
        )?;
        if off_len != size_of::<XdpMmapOffsets>() {
            return Err(XskError {
                what: "getsockopt(XDP_MMAP_OFFSETS)",
                source: io::Error::other("kernel too old (no ring flags: need Linux 5.4+)"),
            });
        }
        let free = (0..u64::from(frames)).rev().map(|i| i * u64::from(CHUNK)).collect();
        Ok((Socket { fd, umem, free }, off))
    }

    /// Maps one ring of `entries` entries of `T` at page offset `pgoff` and wraps it with
    /// `new` (which checks the kernel's offsets against the mapping); `what` names the ring in
    /// errors.
    fn ring<T, R>(
        &self,
        what: &'static str,
        off: &XdpRingOffset,
        entries: u32,
        pgoff: libc::off_t,
        new: impl FnOnce(Mmap, &XdpRingOffset, u32) -> io::Result<R>,
    ) -> Result<R, XskError> {
        let len = off.desc as usize + entries as usize * size_of::<T>();
        let map = step(what, Mmap::ring(&self.fd, len, pgoff))?;
        step(what, new(map, off, entries))
    }

    /// Binds to `ifindex`/`queue` with `bind_flags` plus `XDP_USE_NEED_WAKEUP`.
    ///
    /// The kernel gives up a closed socket's hold on its queue asynchronously (the buffer pool
    /// is released from a workqueue), so binding right after another socket on the same queue
    /// was closed, as a restarted validator or a test that reopens does, can fail with `EBUSY`
    /// for a moment. `EBUSY` is retried for up to [`BUSY_WAIT`] before it is reported.
    fn bind(&self, ifindex: u32, queue: u32, bind_flags: u16) -> Result<(), XskError> {
        let addr = SockaddrXdp {
            family: sys::AF_XDP as u16,
            flags: bind_flags | sys::XDP_USE_NEED_WAKEUP,
            ifindex,
            queue_id: queue,
            shared_umem_fd: 0,
        };
        let deadline = Instant::now() + BUSY_WAIT;
        loop {
            // SAFETY: the fd is open; `addr` is a live sockaddr_xdp whose size is passed, read
            // only.
            let rc = unsafe {
                libc::bind(
                    self.fd.as_raw_fd(),
                    (&addr as *const SockaddrXdp).cast(),
                    size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                return Ok(());
            }
            let source = io::Error::last_os_error();
            if source.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            return Err(XskError { what: "bind", source });
        }
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The kernel's counters for this socket (`XDP_STATISTICS`).
    pub(crate) fn statistics(&self) -> io::Result<sys::XdpStatistics> {
        sys::get_xdp_opt::<sys::XdpStatistics>(self.fd.as_raw_fd(), sys::XDP_STATISTICS).map(|(s, _)| s)
    }

    /// The offset of `len` bytes at UMEM address `addr`, or `None` if they do not lie inside
    /// the UMEM (never trusted blindly, whoever supplied the address).
    fn span(&self, addr: u64, len: usize) -> Option<usize> {
        let start = usize::try_from(addr).ok()?;
        (start.checked_add(len)? <= self.umem.len()).then_some(start)
    }

    /// The bytes of the received frame `desc` describes, or `None` if it lies outside the UMEM
    /// (a kernel bug).
    pub(crate) fn frame(&self, desc: &XdpDesc) -> Option<&[u8]> {
        let len = desc.len as usize;
        let start = self.span(desc.addr, len)?;
        // SAFETY: `start..start + len` is inside the UMEM mapping owned by `self` (`span`); the
        // kernel wrote this frame before publishing its descriptor (acquired in `peek`) and does
        // not reuse the chunk until it is put back in the fill ring, which needs `&mut self`.
        Some(unsafe { std::slice::from_raw_parts(self.umem.as_ptr().add(start), len) })
    }

    /// The whole chunk at `addr` (a multiple of [`CHUNK`] taken from `free`) to write a frame
    /// into.
    pub(crate) fn chunk_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let len = CHUNK as usize;
        let start = self.span(addr, len)?;
        // SAFETY: `start..start + len` is inside the UMEM mapping owned by `self` (`span`); the
        // chunk came from `free`, so the kernel holds no descriptor of it (a chunk leaves `free`
        // only when its descriptor is written, and returns only from the completion ring), and
        // `&mut self` makes this the only reference.
        Some(unsafe { std::slice::from_raw_parts_mut(self.umem.as_ptr().add(start), len) })
    }
}

/// A receiving AF_XDP socket: its fill and RX rings and the socket with its UMEM.
#[derive(Debug)]
pub(crate) struct Xsk {
    // Field order is drop order: the ring mappings go first, then the socket and its UMEM.
    pub(crate) rx: RxRing,
    pub(crate) fill: FillRing,
    pub(crate) core: Socket,
    pub(crate) queue: u32,
}

// SAFETY: the raw pointers inside (ring and UMEM mappings) point into mappings this value owns;
// they are only dereferenced through `&mut self` (or `&self` for reads of frames the kernel
// handed over), so moving the whole to another thread is sound; the kernel side of the rings
// is synchronised by the acquire/release protocol regardless of thread.
unsafe impl Send for Xsk {}

impl Xsk {
    /// Creates the socket and UMEM, maps the rings, puts up to `ring_size` chunks in the fill
    /// ring and binds to `ifindex`/`queue` with `bind_flags` (`XDP_COPY` or `XDP_ZEROCOPY`,
    /// plus `XDP_USE_NEED_WAKEUP`).
    pub(crate) fn open(
        ifindex: u32,
        queue: u32,
        frames: u32,
        ring_size: u32,
        bind_flags: u16,
    ) -> Result<Xsk, XskError> {
        let (mut core, off) = Socket::create(frames, ring_size, sys::XDP_RX_RING)?;
        let mut fill: FillRing = core.ring::<u64, _>(
            "fill ring",
            &off.fr,
            ring_size,
            sys::XDP_UMEM_PGOFF_FILL_RING,
            FillRing::new,
        )?;
        let rx: RxRing =
            core.ring::<XdpDesc, _>("RX ring", &off.rx, ring_size, sys::XDP_PGOFF_RX_RING, RxRing::new)?;
        // Hand the kernel as many free chunks as the fill ring holds.
        fill.refill(&mut core.free);
        core.bind(ifindex, queue, bind_flags)?;
        Ok(Xsk { rx, fill, core, queue })
    }

    /// Kicks the kernel (`recvfrom(MSG_DONTWAIT)`) if it asked for a wake-up to use the fill
    /// ring.
    pub(crate) fn wake_if_needed(&self) {
        if self.fill.needs_wakeup() {
            // SAFETY: the fd is open; a zero-length receive with null buffers is the documented
            // AF_XDP wake-up and writes nothing.
            unsafe {
                libc::recvfrom(
                    self.core.raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
    }
}

/// A transmitting AF_XDP socket: its TX and completion rings and the socket with its UMEM.
#[derive(Debug)]
pub(crate) struct XskTx {
    // Field order is drop order: the ring mappings go first, then the socket and its UMEM.
    pub(crate) tx: TxRing,
    pub(crate) comp: CompRing,
    pub(crate) core: Socket,
}

// SAFETY: as for `Xsk`: the pointers are into mappings this value owns, used through `&mut self`.
unsafe impl Send for XskTx {}

impl XskTx {
    /// Creates the socket and UMEM, maps the TX and completion rings and binds to
    /// `ifindex`/`queue` with `bind_flags` (`XDP_COPY` or `XDP_ZEROCOPY`).
    pub(crate) fn open(
        ifindex: u32,
        queue: u32,
        frames: u32,
        ring_size: u32,
        bind_flags: u16,
    ) -> Result<XskTx, XskError> {
        let (core, off) = Socket::create(frames, ring_size, sys::XDP_TX_RING)?;
        let tx: TxRing =
            core.ring::<XdpDesc, _>("TX ring", &off.tx, ring_size, sys::XDP_PGOFF_TX_RING, TxRing::new)?;
        let comp: CompRing = core.ring::<u64, _>(
            "completion ring",
            &off.cr,
            ring_size,
            sys::XDP_UMEM_PGOFF_COMPLETION_RING,
            CompRing::new,
        )?;
        core.bind(ifindex, queue, bind_flags)?;
        Ok(XskTx { tx, comp, core })
    }

    /// Moves every completed chunk from the completion ring back to `free`; returns how many.
    pub(crate) fn reclaim(&mut self) -> u32 {
        let n = self.comp.peek(u32::MAX);
        for i in 0..n {
            self.core.free.push(self.comp.get(i) & !u64::from(CHUNK - 1));
        }
        if n > 0 {
            self.comp.release(n);
        }
        n
    }

    /// Asks the kernel to transmit what the TX ring holds (`sendto(MSG_DONTWAIT)`, the
    /// documented AF_XDP kick). In copy mode each call sends a bounded batch (32 frames on
    /// Linux 6.x) and fails with `EAGAIN` while more remain or the completion ring is full;
    /// `ENOBUFS`/`EBUSY` mean the device queue is full. All of these mean "call again".
    pub(crate) fn kick(&self) -> io::Result<()> {
        // SAFETY: the fd is open; a zero-length send with null buffers and no address is the
        // documented AF_XDP TX wake-up and reads nothing from user memory.
        let rc = unsafe {
            libc::sendto(self.core.raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
        };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::ENOBUFS | libc::EBUSY) => Ok(()),
            _ => Err(e),
        }
    }
}
