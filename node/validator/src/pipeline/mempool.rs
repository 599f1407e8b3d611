//! The mempool: a bounded FIFO of verified, admitted transactions waiting for a block.

use super::DropReason;
use bastion_types::{AccountId, Tx, TxAuth};
use std::collections::{HashMap, VecDeque};

/// A bounded FIFO of `(Tx, TxAuth)`, refusing a second copy of a (signer, nonce) pair.
///
/// Not a thread: shared as `Arc<Mutex<Mempool>>` between the admission tile (which inserts)
/// and the proposer (which [`take`](Mempool::take)s). The capacity counts queue slots, dead
/// entries (finalized meanwhile) included, so memory stays bounded; a full queue with dead
/// entries is compacted before an insert is refused.
#[derive(Debug)]
pub struct Mempool {
    queue: VecDeque<Entry>,
    /// Live (signer, nonce) pairs and the sequence number of their live queue entry.
    live: HashMap<(AccountId, u64), u64>,
    capacity: usize,
    next_seq: u64,
    stale_dropped: u64,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    tx: Tx,
    auth: TxAuth,
}

impl Mempool {
    /// An empty mempool of at most `capacity` queue slots (at least 1).
    pub fn new(capacity: usize) -> Mempool {
        let capacity = capacity.max(1);
        Mempool { queue: VecDeque::new(), live: HashMap::new(), capacity, next_seq: 0, stale_dropped: 0 }
    }

    /// Queues `tx`; refuses a (signer, nonce) pair already queued ([`DropReason::Duplicate`])
    /// and a full queue ([`DropReason::MempoolFull`]).
    pub fn insert(&mut self, tx: Tx, auth: TxAuth) -> Result<(), DropReason> {
        let key = (tx.signer, tx.nonce);
        if self.live.contains_key(&key) {
            return Err(DropReason::Duplicate);
        }
        if self.queue.len() >= self.capacity {
            self.compact();
            if self.queue.len() >= self.capacity {
                return Err(DropReason::MempoolFull);
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.live.insert(key, seq);
        self.queue.push_back(Entry { seq, tx, auth });
        Ok(())
    }

    /// Pops up to `max` transactions from the front, in order. Drops (counted as stale) entries
    /// whose nonce is at or below `committed_nonce(signer)` or at or below a nonce already
    /// taken for the same signer in this batch, and entries [`finalized`](Mempool::finalized)
    /// meanwhile.
    pub fn take(&mut self, committed_nonce: impl Fn(AccountId) -> u64, max: usize) -> Vec<(Tx, TxAuth)> {
        let mut out = Vec::with_capacity(max.min(self.live.len()));
        let mut last: HashMap<AccountId, u64> = HashMap::new();
        while out.len() < max {
            let Some(entry) = self.queue.pop_front() else { break };
            let key = (entry.tx.signer, entry.tx.nonce);
            if self.live.get(&key) != Some(&entry.seq) {
                self.stale_dropped += 1;
                continue;
            }
            self.live.remove(&key);
            let floor = *last.entry(entry.tx.signer).or_insert_with(|| committed_nonce(entry.tx.signer));
            if entry.tx.nonce <= floor {
                self.stale_dropped += 1;
                continue;
            }
            last.insert(entry.tx.signer, entry.tx.nonce);
            out.push((entry.tx, entry.auth));
        }
        out
    }

    /// Forgets `txs` (committed in a finalized block): their queued copies are skipped.
    pub fn finalized(&mut self, txs: &[Tx]) {
        for tx in txs {
            self.live.remove(&(tx.signer, tx.nonce));
        }
    }

    /// Live entries (queued and not finalized).
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no live entry is queued.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Queue slots in use, dead entries included (at most [`capacity`](Mempool::capacity)).
    pub fn slots(&self) -> usize {
        self.queue.len()
    }

    /// The most queue slots.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries dropped as stale since creation.
    pub fn stale_dropped(&self) -> u64 {
        self.stale_dropped
    }

    /// Removes dead entries (counted as stale).
    fn compact(&mut self) {
        if self.queue.len() == self.live.len() {
            return;
        }
        let live = &self.live;
        let before = self.queue.len();
        self.queue.retain(|e| live.get(&(e.tx.signer, e.tx.nonce)) == Some(&e.seq));
        self.stale_dropped += (before - self.queue.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bastion_types::Action;

    fn tx(signer: u64, nonce: u64) -> (Tx, TxAuth) {
        let tx = Tx { signer: AccountId(signer), nonce, action: Action::SetMarginMode { portfolio: false } };
        (tx, TxAuth { public_key: [signer as u8; 32], signature: [nonce as u8; 64] })
    }

    fn ins(m: &mut Mempool, signer: u64, nonce: u64) -> Result<(), DropReason> {
        let (t, a) = tx(signer, nonce);
        m.insert(t, a)
    }

    fn nonces(v: &[(Tx, TxAuth)]) -> Vec<(u64, u64)> {
        v.iter().map(|(t, _)| (t.signer.0, t.nonce)).collect()
    }

    #[test]
    fn refuses_duplicates_and_overflow() {
        let mut m = Mempool::new(3);
        ins(&mut m, 1, 1).unwrap();
        assert_eq!(ins(&mut m, 1, 1), Err(DropReason::Duplicate));
        ins(&mut m, 1, 2).unwrap();
        ins(&mut m, 2, 1).unwrap();
        assert_eq!(ins(&mut m, 3, 1), Err(DropReason::MempoolFull));
        assert_eq!((m.len(), m.slots(), m.capacity()), (3, 3, 3));
        assert!(!m.is_empty());
    }

    #[test]
    fn take_skips_committed_finalized_and_out_of_order_nonces() {
        let mut m = Mempool::new(100);
        for (s, n) in [(1, 1), (1, 2), (2, 5), (1, 4), (1, 3), (3, 1), (2, 6), (4, 9)] {
            ins(&mut m, s, n).unwrap();
        }
        // Signer 1 committed nonce 1; (2, 6) and (4, 9) were finalized.
        let (t26, _) = tx(2, 6);
        let (t49, _) = tx(4, 9);
        m.finalized(&[t26, t49]);
        assert_eq!(m.len(), 6);
        let committed = |a: AccountId| if a == AccountId(1) { 1 } else { 0 };
        let got = m.take(committed, 100);
        // (1,1) committed; (1,3) after (1,4) in this batch; (2,6) and (4,9) finalized.
        assert_eq!(nonces(&got), vec![(1, 2), (2, 5), (1, 4), (3, 1)]);
        assert_eq!(m.stale_dropped(), 4);
        assert_eq!((m.len(), m.slots()), (0, 0));
        // Taken pairs may be queued again (the proposer may retry them).
        ins(&mut m, 1, 2).unwrap();
    }

    #[test]
    fn take_respects_max_and_fifo() {
        let mut m = Mempool::new(10);
        for n in 1..=5 {
            ins(&mut m, 7, n).unwrap();
        }
        assert_eq!(nonces(&m.take(|_| 0, 2)), vec![(7, 1), (7, 2)]);
        // A new batch starts from the committed nonce again.
        assert_eq!(nonces(&m.take(|_| 0, 10)), vec![(7, 3), (7, 4), (7, 5)]);
        assert!(m.take(|_| 0, 10).is_empty());
    }

    #[test]
    fn capacity_counts_dead_slots_until_compacted() {
        let mut m = Mempool::new(4);
        for n in 1..=4 {
            ins(&mut m, 1, n).unwrap();
        }
        let (t, _) = tx(1, 2);
        m.finalized(&[t]);
        assert_eq!((m.len(), m.slots()), (3, 4));
        // Full by slots: the insert compacts the dead entry away, then fits.
        ins(&mut m, 2, 1).unwrap();
        assert_eq!((m.len(), m.slots(), m.stale_dropped()), (4, 4, 1));
        assert_eq!(ins(&mut m, 3, 1), Err(DropReason::MempoolFull));
        // A finalized pair queued again is a fresh live entry; its old copy stays dead.
        let mut m = Mempool::new(8);
        ins(&mut m, 1, 1).unwrap();
        let (t, _) = tx(1, 1);
        m.finalized(&[t]);
        ins(&mut m, 1, 1).unwrap();
        assert_eq!(nonces(&m.take(|_| 0, 8)), vec![(1, 1)]);
        assert_eq!(m.stale_dropped(), 1);
        for i in 0..1000 {
            let _ = ins(&mut m, i, 1);
            assert!(m.slots() <= m.capacity());
        }
    }
}
