//! Fixed-size transaction frames and the bounded lock-free ring that carries them between
//! tiles.

use bastion_net::MAX_DATAGRAM;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One datagram's bytes, fixed size: moving it never allocates.
#[derive(Clone, Copy)]
pub struct TxFrame {
    len: u16,
    /// Whether the admission tile hands this transaction to the public network once admitted
    /// (received over UDP or `POST /v1/tx`); false for what the public network delivered (it
    /// forwards those itself).
    publish: bool,
    bytes: [u8; MAX_DATAGRAM],
}

impl TxFrame {
    /// A frame holding `payload`; `None` if it is longer than [`MAX_DATAGRAM`].
    pub fn from_slice(payload: &[u8]) -> Option<TxFrame> {
        if payload.len() > MAX_DATAGRAM {
            return None;
        }
        let len = u16::try_from(payload.len()).ok()?;
        let mut bytes = [0u8; MAX_DATAGRAM];
        bytes[..payload.len()].copy_from_slice(payload);
        Some(TxFrame { len, publish: true, bytes })
    }

    /// This frame, marked as delivered by the public network (not to be published again).
    pub fn delivered_by_network(mut self) -> TxFrame {
        self.publish = false;
        self
    }

    /// Whether admission publishes it on the public network (see the field).
    pub fn publish(&self) -> bool {
        self.publish
    }

    /// The datagram.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(MAX_DATAGRAM)]
    }
}

impl std::fmt::Debug for TxFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxFrame").field("len", &self.len).finish_non_exhaustive()
    }
}

/// A bounded multi-producer multi-consumer queue of [`TxFrame`]s, preallocated at
/// construction (capacity × ~1.2 KiB) and never blocking.
pub struct Ring {
    queue: ArrayQueue<TxFrame>,
    high_water: AtomicUsize,
}

impl Ring {
    /// A ring of `capacity` frames (at least 1).
    pub fn new(capacity: usize) -> Ring {
        Ring { queue: ArrayQueue::new(capacity.max(1)), high_water: AtomicUsize::new(0) }
    }

    /// Appends `frame`; when the ring is full, hands it back (the producer drops and counts it).
    #[allow(
        clippy::result_large_err,
        reason = "hands the frame back by value like ArrayQueue::push; boxing would allocate on the drop path"
    )]
    pub fn push(&self, frame: TxFrame) -> Result<(), TxFrame> {
        self.queue.push(frame)?;
        self.high_water.fetch_max(self.queue.len(), Ordering::Relaxed);
        Ok(())
    }

    /// The oldest frame, if any.
    pub fn pop(&self) -> Option<TxFrame> {
        self.queue.pop()
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no frame is queued.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The most frames the ring holds.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// The most frames ever queued at once (observed after each push).
    pub fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("high_water", &self.high_water())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn frame_round_trips_and_refuses_oversize() {
        let f = TxFrame::from_slice(b"hello").unwrap();
        assert_eq!(f.payload(), b"hello");
        assert!(TxFrame::from_slice(&[0u8; MAX_DATAGRAM]).is_some());
        assert!(TxFrame::from_slice(&[0u8; MAX_DATAGRAM + 1]).is_none());
        assert!(TxFrame::from_slice(&[]).unwrap().payload().is_empty());
    }

    #[test]
    fn ring_is_bounded_fifo_with_high_water() {
        let ring = Ring::new(4);
        assert_eq!((ring.capacity(), ring.len(), ring.high_water()), (4, 0, 0));
        assert!(ring.is_empty());
        for i in 0..4u8 {
            ring.push(TxFrame::from_slice(&[i]).unwrap()).unwrap();
        }
        let back = ring.push(TxFrame::from_slice(&[9]).unwrap()).unwrap_err();
        assert_eq!(back.payload(), &[9]);
        assert_eq!((ring.len(), ring.high_water()), (4, 4));
        for i in 0..4u8 {
            assert_eq!(ring.pop().unwrap().payload(), &[i]);
        }
        assert!(ring.pop().is_none());
        assert_eq!((ring.len(), ring.high_water()), (0, 4));
        ring.push(TxFrame::from_slice(&[5]).unwrap()).unwrap();
        assert_eq!(ring.high_water(), 4);
    }
}
