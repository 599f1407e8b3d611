//! Memory mappings and the four single-producer/single-consumer rings of an AF_XDP socket.
//! User space produces into two ([`ProdRing`]): the fill ring (free UMEM chunks to receive
//! into) and the TX ring (descriptors of frames to send). The kernel produces into the other
//! two ([`ConsRing`]): the RX ring (descriptors of received frames) and the completion ring
//! (chunks whose frames were sent, free again).
//!
//! The protocol is the kernel's (`net/xdp/xsk_queue.h`): indices are free-running `u32`s
//! masked by `size - 1`. A producer writes entries, then publishes them with a
//! *store-release* of `producer`; a consumer *load-acquires* `producer` before reading
//! entries, and after it has finished with them publishes a *store-release* of `consumer`,
//! which the producer *load-acquires* before reusing those slots. Each side caches the other's
//! index and only re-reads it when the cached value says the ring is empty or full.

use super::sys::{XdpDesc, XdpRingOffset};
pub(crate) use crate::mmap::Mmap;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

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

/// A ring user space produces into: the fill ring (`u64` UMEM chunk addresses the kernel may
/// receive into) and the TX ring ([`XdpDesc`]s of frames for the kernel to send).
#[derive(Debug)]
pub(crate) struct ProdRing<T: Copy> {
    ptrs: RingPtrs,
    size: u32,
    cached_prod: u32,
    cached_cons: u32,
    _map: Mmap,
    _entry: PhantomData<T>,
}

/// The fill ring: user space gives the kernel UMEM chunk addresses to receive into.
pub(crate) type FillRing = ProdRing<u64>;
/// The TX ring: user space hands the kernel descriptors of frames to send.
pub(crate) type TxRing = ProdRing<XdpDesc>;

impl<T: Copy> ProdRing<T> {
    pub(crate) fn new(map: Mmap, off: &XdpRingOffset, size: u32) -> io::Result<ProdRing<T>> {
        let ptrs = RingPtrs::new(&map, off, size, size_of::<T>())?;
        let cached_prod = ptrs.producer().load(Ordering::Relaxed);
        let cached_cons = ptrs.consumer().load(Ordering::Acquire);
        Ok(ProdRing { ptrs, size, cached_prod, cached_cons, _map: map, _entry: PhantomData })
    }

    /// Free slots (re-reading the kernel's consumer index only when the cached one says fewer
    /// than `want` are free).
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        // Pairs with the kernel's store-release of `consumer` after it read those entries.
        self.cached_cons = self.ptrs.consumer().load(Ordering::Acquire);
        self.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes `entry` into the `i`-th free slot after the producer index, unpublished. The
    /// caller has seen at least `i + 1` slots free (from [`ProdRing::free`]).
    pub(crate) fn write(&mut self, i: u32, entry: T) {
        debug_assert!(i < self.size - self.cached_prod.wrapping_sub(self.cached_cons));
        let slot = (self.cached_prod.wrapping_add(i) & self.ptrs.mask) as usize;
        // SAFETY: `slot <= mask < size`, and the ring maps `size` entries of `T` from `desc`
        // (checked in `RingPtrs::new`, 8-byte aligned, and `T` is u64 or XdpDesc); this slot is
        // free (between the kernel's consumer and our producer), so the kernel does not read it
        // until we publish it in `submit`.
        unsafe { self.ptrs.desc.cast::<T>().add(slot).write_volatile(entry) };
    }

    /// Publishes the first `n` slots written since the last submit (one release store).
    pub(crate) fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        // Publishes the entries written before; pairs with the kernel's load-acquire.
        self.ptrs.producer().store(self.cached_prod, Ordering::Release);
    }

    /// Entries published and not yet consumed by the kernel (re-reads its consumer index).
    pub(crate) fn outstanding(&mut self) -> u32 {
        self.cached_cons = self.ptrs.consumer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Whether the kernel asked to be woken (`XDP_RING_NEED_WAKEUP`) to pick up entries.
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.ptrs.flags() & super::sys::XDP_RING_NEED_WAKEUP != 0
    }
}

impl ProdRing<u64> {
    /// Produces as many of the addresses popped from the end of `addrs` as fit, in one batch
    /// (one release store); returns how many.
    pub(crate) fn refill(&mut self, addrs: &mut Vec<u64>) -> usize {
        let n = self.free(u32::try_from(addrs.len()).unwrap_or(u32::MAX)).min(addrs.len() as u32);
        let mut written = 0;
        while written < n {
            let Some(addr) = addrs.pop() else { break };
            self.write(written, addr);
            written += 1;
        }
        self.submit(written);
        written as usize
    }
}

/// A ring the kernel produces into: the RX ring ([`XdpDesc`]s of received frames) and the
/// completion ring (`u64` addresses of UMEM chunks whose frames were sent).
#[derive(Debug)]
pub(crate) struct ConsRing<T: Copy> {
    ptrs: RingPtrs,
    cached_prod: u32,
    cached_cons: u32,
    _map: Mmap,
    _entry: PhantomData<T>,
}

/// The RX ring: the kernel hands user space descriptors of received frames.
pub(crate) type RxRing = ConsRing<XdpDesc>;
/// The completion ring: the kernel hands back the chunks of frames it has sent.
pub(crate) type CompRing = ConsRing<u64>;

impl<T: Copy> ConsRing<T> {
    pub(crate) fn new(map: Mmap, off: &XdpRingOffset, size: u32) -> io::Result<ConsRing<T>> {
        let ptrs = RingPtrs::new(&map, off, size, size_of::<T>())?;
        let cached_prod = ptrs.producer().load(Ordering::Acquire);
        let cached_cons = ptrs.consumer().load(Ordering::Relaxed);
        Ok(ConsRing { ptrs, cached_prod, cached_cons, _map: map, _entry: PhantomData })
    }

    /// Entries ready to read, up to `max` (re-reading the kernel's producer index only when
    /// the cached one says none are).
    pub(crate) fn peek(&mut self, max: u32) -> u32 {
        let mut ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready == 0 {
            // Pairs with the kernel's store-release after it wrote the entries (and, on the RX
            // ring, the frames they describe).
            self.cached_prod = self.ptrs.producer().load(Ordering::Acquire);
            ready = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        ready.min(max)
    }

    /// The `i`-th ready entry (`i` below what `peek` returned).
    pub(crate) fn get(&self, i: u32) -> T {
        let slot = (self.cached_cons.wrapping_add(i) & self.ptrs.mask) as usize;
        // SAFETY: `slot <= mask < size` entries of `T` are mapped from `desc` (checked in
        // `RingPtrs::new`, 8-byte aligned); the slot is between our consumer and the producer we
        // load-acquired, so the kernel wrote it and will not touch it until we release it.
        unsafe { self.ptrs.desc.cast::<T>().add(slot).read_volatile() }
    }

    /// Gives `n` read entries back to the kernel.
    pub(crate) fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // Done reading those slots; pairs with the kernel's load-acquire of `consumer`.
        self.ptrs.consumer().store(self.cached_cons, Ordering::Release);
    }
}
