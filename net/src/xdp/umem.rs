//! AF_XDP sockets, each with its own UMEM of `frames` chunks of [`CHUNK`] bytes, bound to one
//! queue of one interface: [`Xsk`] receives (fill and RX rings; its completion ring exists
//! because `bind` requires it), [`XskTx`] transmits (TX and completion rings; its fill ring
//! likewise exists only for `bind`).

use super::ring::{CompRing, FillRing, Mmap, RxRing, TxRing};
use super::sys::{self, SockaddrXdp, XdpDesc, XdpMmapOffsets, XdpUmemReg};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// How long `bind` retries `EBUSY` (a queue still held by a socket closed a moment ago).
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// Bytes per UMEM chunk (one frame each; a page).
pub(crate) const CHUNK: u32 = 4096;

/// An AF_XDP socket, its UMEM and its mapped rings.
#[derive(Debug)]
pub(crate) struct Xsk {
    // Field order is drop order: the ring mappings go first, then the socket, then the UMEM.
    pub(crate) rx: RxRing,
    pub(crate) fill: FillRing,
    fd: OwnedFd,
    umem: Mmap,
    /// Chunk addresses owned by user space, waiting for room in the fill ring (capacity
    /// `frames`, so pushing never allocates).
    pub(crate) free: Vec<u64>,
    pub(crate) queue: u32,
}

// SAFETY: the raw pointers inside (ring and UMEM mappings) point into mappings this value owns;
// they are only dereferenced through `&mut self` (or `&self` for reads of frames the kernel
// handed over), so moving the whole to another thread is sound; the kernel side of the rings
// is synchronised by the acquire/release protocol regardless of thread.
unsafe impl Send for Xsk {}

/// Which step of setting up the socket failed.
#[derive(Debug)]
pub(crate) struct XskError {
    pub(crate) what: &'static str,
    pub(crate) source: io::Error,
}

fn step<T>(what: &'static str, r: io::Result<T>) -> Result<T, XskError> {
    r.map_err(|source| XskError { what, source })
}

/// What every AF_XDP socket needs before `bind`: the socket, its UMEM of `frames` chunks
/// registered, fill and completion rings of `ring_size` created (the kernel refuses to bind
/// without both), and the rings' mmap offsets.
struct Setup {
    fd: OwnedFd,
    umem: Mmap,
    off: XdpMmapOffsets,
}

impl Setup {
    /// `extra` names the RX or TX ring socket option to create besides fill and completion.
    fn new(frames: u32, ring_size: u32, extra: libc::c_int) -> Result<Setup, XskError> {
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
        Ok(Setup { fd, umem, off })
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
}

/// Every chunk address of a UMEM of `frames` chunks, lowest last (so `pop` hands out the
/// lowest first).
fn all_chunks(frames: u32) -> Vec<u64> {
    (0..u64::from(frames)).rev().map(|i| i * u64::from(CHUNK)).collect()
}

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
        let setup = Setup::new(frames, ring_size, sys::XDP_RX_RING)?;
        let fill_len = setup.off.fr.desc as usize + ring_size as usize * size_of::<u64>();
        let fill_map =
            step("mmap fill ring", Mmap::ring(&setup.fd, fill_len, sys::XDP_UMEM_PGOFF_FILL_RING))?;
        let mut fill = step("fill ring offsets", FillRing::new(fill_map, &setup.off.fr, ring_size))?;
        let rx_len = setup.off.rx.desc as usize + ring_size as usize * size_of::<XdpDesc>();
        let rx_map = step("mmap RX ring", Mmap::ring(&setup.fd, rx_len, sys::XDP_PGOFF_RX_RING))?;
        let rx = step("RX ring offsets", RxRing::new(rx_map, &setup.off.rx, ring_size))?;
        // Every chunk starts free; hand the kernel as many as the fill ring holds (lowest
        // addresses first, so pop from the end of a reversed list).
        let mut free = all_chunks(frames);
        fill.refill(&mut free);
        setup.bind(ifindex, queue, bind_flags)?;
        let Setup { fd, umem, .. } = setup;
        Ok(Xsk { rx, fill, fd, umem, free, queue })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The bytes of the frame `desc` describes, or `None` if it lies outside the UMEM (a
    /// kernel bug; never trusted blindly).
    pub(crate) fn frame(&self, desc: &XdpDesc) -> Option<&[u8]> {
        let start = usize::try_from(desc.addr).ok()?;
        let end = start.checked_add(desc.len as usize)?;
        if end > self.umem.len() {
            return None;
        }
        // SAFETY: `start..end` is inside the UMEM mapping owned by `self` (checked above); the
        // kernel wrote this frame before publishing its descriptor (acquired in `peek`) and does
        // not reuse the chunk until we put it back in the fill ring, which needs `&mut self`.
        Some(unsafe { std::slice::from_raw_parts(self.umem.as_ptr().add(start), end - start) })
    }

    /// Kicks the kernel (`recvfrom(MSG_DONTWAIT)`) if it asked for a wake-up to use the fill
    /// ring.
    pub(crate) fn wake_if_needed(&self) {
        if self.fill.needs_wakeup() {
            // SAFETY: the fd is open; a zero-length receive with null buffers is the documented
            // AF_XDP wake-up and writes nothing.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
    }

    /// The kernel's drop counters for this socket.
    pub(crate) fn statistics(&self) -> io::Result<sys::XdpStatistics> {
        sys::get_xdp_opt::<sys::XdpStatistics>(self.fd.as_raw_fd(), sys::XDP_STATISTICS).map(|(s, _)| s)
    }
}

/// A transmitting AF_XDP socket: its UMEM, TX ring and completion ring.
#[derive(Debug)]
pub(crate) struct XskTx {
    // Field order is drop order: the ring mappings go first, then the socket, then the UMEM.
    pub(crate) tx: TxRing,
    pub(crate) comp: CompRing,
    fd: OwnedFd,
    umem: Mmap,
    /// Chunk addresses owned by user space (capacity `frames`, so pushing never allocates).
    pub(crate) free: Vec<u64>,
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
        let setup = Setup::new(frames, ring_size, sys::XDP_TX_RING)?;
        let tx_len = setup.off.tx.desc as usize + ring_size as usize * size_of::<XdpDesc>();
        let tx_map = step("mmap TX ring", Mmap::ring(&setup.fd, tx_len, sys::XDP_PGOFF_TX_RING))?;
        let tx = step("TX ring offsets", TxRing::new(tx_map, &setup.off.tx, ring_size))?;
        let comp_len = setup.off.cr.desc as usize + ring_size as usize * size_of::<u64>();
        let comp_map = step(
            "mmap completion ring",
            Mmap::ring(&setup.fd, comp_len, sys::XDP_UMEM_PGOFF_COMPLETION_RING),
        )?;
        let comp = step("completion ring offsets", CompRing::new(comp_map, &setup.off.cr, ring_size))?;
        setup.bind(ifindex, queue, bind_flags)?;
        let free = all_chunks(frames);
        let Setup { fd, umem, .. } = setup;
        Ok(XskTx { tx, comp, fd, umem, free })
    }

    /// The whole chunk at `addr` (a multiple of [`CHUNK`] from `free`) to write a frame into.
    pub(crate) fn chunk_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(CHUNK as usize)?;
        if end > self.umem.len() {
            return None;
        }
        // SAFETY: `start..end` is inside the UMEM mapping owned by `self` (checked above); the
        // chunk came from `free`, so the kernel holds no descriptor of it (a chunk leaves `free`
        // only when its descriptor is written, and returns only from the completion ring), and
        // `&mut self` makes this the only reference.
        Some(unsafe { std::slice::from_raw_parts_mut(self.umem.as_ptr().add(start), end - start) })
    }

    /// Moves every completed chunk from the completion ring back to `free`; returns how many.
    pub(crate) fn reclaim(&mut self) -> u32 {
        let n = self.comp.peek(u32::MAX);
        for i in 0..n {
            self.free.push(self.comp.get(i) & !u64::from(CHUNK - 1));
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
            libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
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

    /// The kernel's counters for this socket.
    pub(crate) fn statistics(&self) -> io::Result<sys::XdpStatistics> {
        sys::get_xdp_opt::<sys::XdpStatistics>(self.fd.as_raw_fd(), sys::XDP_STATISTICS).map(|(s, _)| s)
    }
}
