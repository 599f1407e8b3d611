//! Memory mappings and the two single-producer/single-consumer rings user space drives on the
//! receive path: the fill ring (user space produces free UMEM chunks, the kernel consumes them)
//! and the RX ring (the kernel produces descriptors of received frames, user space consumes).
//!
//! The protocol is the kernel's (`net/xdp/xsk_queue.h`): indices are free-running `u32`s
//! masked by `size - 1`. A producer writes entries, then publishes them with a
//! *store-release* of `producer`; a consumer *load-acquires* `producer` before reading
//! entries, and after it has finished with them publishes a *store-release* of `consumer`,
//! which the producer *load-acquires* before reusing those slots. Each side caches the other's
//! index and only re-reads it when the cached value says the ring is empty or full.

use super::sys::{XdpDesc, XdpRingOffset};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// An owned `mmap` region, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: *mut u8,
    len: usize,
}

impl Mmap {
    /// `len` bytes of anonymous, private, pre-faulted, page-aligned memory (the UMEM).
    pub(crate) fn anonymous(len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing; no existing
        // memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { ptr: ptr.cast(), len })
    }

    /// The ring of `fd` at page offset `pgoff` (one of `XDP_PGOFF_*`), `len` bytes, shared.
    pub(crate) fn ring(fd: &OwnedFd, len: usize, pgoff: libc::off_t) -> io::Result<Mmap> {
        // SAFETY: a fresh shared mapping of the socket's ring at an address of the kernel's
        // choosing; the kernel checks `len` against the ring's size and fails otherwise.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { ptr: ptr.cast(), len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and still owns; every
        // pointer derived from it lives in structs that own (and so drop before or with) it.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// Pointers into one mapped ring.
#[derive(Debug)]
struct RingPtrs {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut u8,
    mask: u32,
}

impl RingPtrs {
    /// Checks the kernel's offsets against the mapping (in bounds, aligned) and derives the
    /// pointers; `entry` is the size of one descriptor.
    fn new(map: &Mmap, off: &XdpRingOffset, size: u32, entry: usize) -> io::Result<RingPtrs> {
        let bad = |what: &str| io::Error::other(format!("kernel ring offset {what} outside the mapping"));
        let word = |o: u64, what: &str| -> io::Result<*const AtomicU32> {
            let o = usize::try_from(o).map_err(|_| bad(what))?;
            if o % align_of::<AtomicU32>() != 0 || o.checked_add(4).is_none_or(|e| e > map.len()) {
                return Err(bad(what));
            }
            // SAFETY: `o + 4 <= map.len()`, so the result stays inside the mapping.
            Ok(unsafe { map.as_ptr().add(o) }.cast::<AtomicU32>().cast_const())
        };
        let desc = usize::try_from(off.desc).map_err(|_| bad("desc"))?;
        let end = (size as usize).checked_mul(entry).and_then(|n| n.checked_add(desc));
        if desc % 8 != 0 || end.is_none_or(|e| e > map.len()) {
            return Err(bad("desc"));
        }
        Ok(RingPtrs {
            producer: word(off.producer, "producer")?,
            consumer: word(off.consumer, "consumer")?,
            flags: word(off.flags, "flags")?,
            // SAFETY: `desc + size * entry <= map.len()` was checked above.
            desc: unsafe { map.as_ptr().add(desc) },
            mask: size - 1,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points to an aligned u32 inside the live mapping owned by the ring (checked in
        // `new`), shared with the kernel, which accesses it atomically too.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    fn flags(&self) -> u32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.flags }.load(Ordering::Relaxed)
    }
}

/// The fill ring: user space gives the kernel UMEM chunk addresses to receive into.
#[derive(Debug)]
pub(crate) struct FillRing {
    ptrs: RingPtrs,
    size: u32,
    cached_prod: u32,
    cached_cons: u32,
    _map: Mmap,
}

impl FillRing {
    pub(crate) fn new(map: Mmap, off: &XdpRingOffset, size: u32) -> io::Result<FillRing> {
        let ptrs = RingPtrs::new(&map, off, size, size_of::<u64>())?;
        let cached_prod = ptrs.producer().load(Ordering::Relaxed);
        let cached_cons = ptrs.consumer().load(Ordering::Acquire);
        Ok(FillRing { ptrs, size, cached_prod, cached_cons, _map: map })
    }

    /// Free slots (re-reading the kernel's consumer index only when the cached one says fewer
    /// than `want` are free).
    fn free(&mut self, want: u32) -> u32 {
        let free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        // Pairs with the kernel's store-release of `consumer` after it read those entries.
        self.cached_cons = self.ptrs.consumer().load(Ordering::Acquire);
        self.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Produces as many of the addresses popped from the end of `addrs` as fit, in one batch
    /// (one release store); returns how many.
    pub(crate) fn refill(&mut self, addrs: &mut Vec<u64>) -> usize {
        let n = self.free(u32::try_from(addrs.len()).unwrap_or(u32::MAX)).min(addrs.len() as u32);
        for i in 0..n {
            let Some(addr) = addrs.pop() else { break };
            let slot = (self.cached_prod.wrapping_add(i) & self.ptrs.mask) as usize;
            // SAFETY: `slot <= mask < size`, and the ring maps `size` u64 entries from `desc`
            // (checked in `RingPtrs::new`); this slot is free (between the kernel's consumer
            // and our producer), so the kernel does not read it until we publish it below.
            unsafe { self.ptrs.desc.cast::<u64>().add(slot).write_volatile(addr) };
        }
        self.cached_prod = self.cached_prod.wrapping_add(n);
        // Publishes the entries written above; pairs with the kernel's load-acquire.
        self.ptrs.producer().store(self.cached_prod, Ordering::Release);
        n as usize
    }

    /// Whether the kernel asked to be woken (`XDP_RING_NEED_WAKEUP`) to pick up fill entries.
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.ptrs.flags() & super::sys::XDP_RING_NEED_WAKEUP != 0
    }
}

/// The RX ring: the kernel hands user space descriptors of received frames.
#[derive(Debug)]
pub(crate) struct RxRing {
    ptrs: RingPtrs,
    cached_prod: u32,
    cached_cons: u32,
    _map: Mmap,
}

impl RxRing {
    pub(crate) fn new(map: Mmap, off: &XdpRingOffset, size: u32) -> io::Result<RxRing> {
        let ptrs = RingPtrs::new(&map, off, size, size_of::<XdpDesc>())?;
        let cached_prod = ptrs.producer().load(Ordering::Acquire);
        let cached_cons = ptrs.consumer().load(Ordering::Relaxed);
        Ok(RxRing { ptrs, cached_prod, cached_cons, _map: map })
    }

    /// Descriptors ready to read, up to `max` (re-reading the kernel's producer index only when
    /// the cached one says none are).
    pub(crate) fn peek(&mut self, max: u32) -> u32 {
        let mut ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready == 0 {
            // Pairs with the kernel's store-release after it wrote the descriptors (and the
            // frames they describe).
            self.cached_prod = self.ptrs.producer().load(Ordering::Acquire);
            ready = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        ready.min(max)
    }

    /// The `i`-th ready descriptor (`i` below what `peek` returned).
    pub(crate) fn get(&self, i: u32) -> XdpDesc {
        let slot = (self.cached_cons.wrapping_add(i) & self.ptrs.mask) as usize;
        // SAFETY: `slot <= mask < size` entries of `XdpDesc` are mapped from `desc` (checked in
        // `RingPtrs::new`, 8-byte aligned); the slot is between our consumer and the producer we
        // load-acquired, so the kernel wrote it and will not touch it until we release it.
        unsafe { self.ptrs.desc.cast::<XdpDesc>().add(slot).read_volatile() }
    }

    /// Gives `n` read descriptors back to the kernel.
    pub(crate) fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // Done reading those slots; pairs with the kernel's load-acquire of `consumer`.
        self.ptrs.consumer().store(self.cached_cons, Ordering::Release);
    }
}
