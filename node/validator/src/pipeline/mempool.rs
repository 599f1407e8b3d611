//! The mempool: verified, admitted transactions waiting for a block, by signer and nonce.

use super::DropReason;
use bastion_types::{AccountId, Tx, TxAuth};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A bounded pool of `(Tx, TxAuth)` keyed by (signer, nonce), refusing a second transaction
/// for a live (signer, nonce) pair.
///
/// Not a thread: shared as `Arc<Mutex<Mempool>>` between the admission tile (which inserts)
/// and the proposer (which [`take`](Mempool::take)s).
///
/// Blocks carry strictly sequential nonces per signer (`bastion_exchange::State::check_txs`),
/// so [`take`](Mempool::take) offers, per signer that exists in the proposal's parent state,
/// only the run of consecutive nonces that starts at that state's nonce + 1; a later nonce
/// waits for the ones before it. Taking does not remove: a transaction stays until a block
/// that carries it is [`finalized`](Mempool::finalized) (or its nonce is committed by another
/// transaction: it is then stale), so the transactions of a proposal that never finalizes are
/// offered again, and a client's resend of one is answered as a duplicate of a live entry
/// instead of being needed. Every entry counts towards the capacity until it leaves.
#[derive(Debug)]
pub struct Mempool {
    /// Pending transactions per signer, by nonce.
    signers: HashMap<AccountId, BTreeMap<u64, (Tx, TxAuth)>>,
    /// Signers with pending transactions, in the order they first had one (the order `take`
    /// serves them in). Each at most once; at most one per entry.
    order: VecDeque<AccountId>,
    len: usize,
    capacity: usize,
    stale_dropped: u64,
}

impl Mempool {
    /// An empty mempool of at most `capacity` transactions (at least 1).
    pub fn new(capacity: usize) -> Mempool {
        Mempool {
            signers: HashMap::new(),
            order: VecDeque::new(),
            len: 0,
            capacity: capacity.max(1),
            stale_dropped: 0,
        }
    }

    /// Queues `tx`; refuses a (signer, nonce) pair already pending ([`DropReason::Duplicate`])
    /// and a full pool ([`DropReason::MempoolFull`]).
    pub fn insert(&mut self, tx: Tx, auth: TxAuth) -> Result<(), DropReason> {
        if self.signers.get(&tx.signer).is_some_and(|p| p.contains_key(&tx.nonce)) {
            return Err(DropReason::Duplicate);
        }
        if self.len >= self.capacity {
            return Err(DropReason::MempoolFull);
        }
        let pending = self.signers.entry(tx.signer).or_default();
        if pending.is_empty() {
            self.order.push_back(tx.signer);
        }
        pending.insert(tx.nonce, (tx, auth));
        self.len += 1;
        Ok(())
    }

    /// Up to `max` transactions for a block on a parent state where `parent(signer)` is the
    /// signer's nonce (`None`: no such account): per signer, in the order signers arrived, the
    /// run of pending nonces `parent + 1, parent + 2, ...` up to the first missing one. Signers
    /// the parent state does not hold are skipped (their transactions may not be included).
    ///
    /// Nothing is removed, except entries at or below `committed(signer)` (the finalized
    /// nonce), dropped as stale: a proposal that does not finalize leaves its transactions
    /// here to be offered again.
    pub fn take(
        &mut self,
        parent: impl Fn(AccountId) -> Option<u64>,
        committed: impl Fn(AccountId) -> Option<u64>,
        max: usize,
    ) -> Vec<(Tx, TxAuth)> {
        let mut out = Vec::with_capacity(max.min(self.len));
        let mut emptied = false;
        for signer in &self.order {
            if out.len() >= max {
                break;
            }
            let Some(pending) = self.signers.get_mut(signer) else { continue };
            if let Some(c) = committed(*signer) {
                let dropped = drop_through(pending, c);
                self.len -= dropped;
                self.stale_dropped += dropped as u64;
            }
            if pending.is_empty() {
                emptied = true;
                continue;
            }
            let Some(last) = parent(*signer) else { continue };
            let mut next = last.checked_add(1);
            while let Some(n) = next
                && out.len() < max
            {
                let Some((tx, auth)) = pending.get(&n) else { break };
                out.push((tx.clone(), *auth));
                next = n.checked_add(1);
            }
        }
        if emptied {
            self.forget_empty();
        }
        out
    }

    /// `txs` were committed in a finalized block: forgets them, and (as stale) any other
    /// pending transaction of their signers at or below their nonces, which can never be
    /// included now.
    pub fn finalized(&mut self, txs: &[Tx]) {
        let mut emptied = false;
        for tx in txs {
            let Some(pending) = self.signers.get_mut(&tx.signer) else { continue };
            let landed = usize::from(pending.contains_key(&tx.nonce));
            let dropped = drop_through(pending, tx.nonce);
            self.len -= dropped;
            self.stale_dropped += (dropped - landed) as u64;
            emptied |= pending.is_empty();
        }
        if emptied {
            self.forget_empty();
        }
    }

    /// Pending transactions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no transaction is pending.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Signers with pending transactions.
    #[cfg(test)]
    pub fn signers(&self) -> usize {
        self.signers.len()
    }

    /// The most pending transactions.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries dropped as stale since creation.
    pub fn stale_dropped(&self) -> u64 {
        self.stale_dropped
    }

    fn forget_empty(&mut self) {
        self.signers.retain(|_, p| !p.is_empty());
        let signers = &self.signers;
        self.order.retain(|s| signers.contains_key(s));
    }
}

/// Removes the entries of `pending` at or below `nonce`; returns how many.
fn drop_through(pending: &mut BTreeMap<u64, (Tx, TxAuth)>, nonce: u64) -> usize {
    if pending.first_key_value().is_none_or(|(n, _)| *n > nonce) {
        return 0;
    }
    let before = pending.len();
    match nonce.checked_add(1) {
        Some(above) => *pending = pending.split_off(&above),
        None => pending.clear(),
    }
    before - pending.len()
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

    fn pairs(v: &[(Tx, TxAuth)]) -> Vec<(u64, u64)> {
        v.iter().map(|(t, _)| (t.signer.0, t.nonce)).collect()
    }

    fn txs(v: &[(Tx, TxAuth)]) -> Vec<Tx> {
        v.iter().map(|(t, _)| t.clone()).collect()
    }

    /// Every account exists with nonce 0, as in a fresh parent state.
    fn fresh(_: AccountId) -> Option<u64> {
        Some(0)
    }

    fn none(_: AccountId) -> Option<u64> {
        None
    }

    #[test]
    fn refuses_duplicates_and_overflow() {
        let mut m = Mempool::new(3);
        ins(&mut m, 1, 1).unwrap();
        assert_eq!(ins(&mut m, 1, 1), Err(DropReason::Duplicate));
        ins(&mut m, 1, 2).unwrap();
        ins(&mut m, 2, 1).unwrap();
        assert_eq!(ins(&mut m, 3, 1), Err(DropReason::MempoolFull));
        assert_eq!((m.len(), m.signers(), m.capacity()), (3, 2, 3));
        assert!(!m.is_empty());
    }

    #[test]
    fn take_offers_consecutive_runs_from_the_parent_nonce() {
        let mut m = Mempool::new(100);
        // Arrival out of order; signer 1 has committed 1 in the parent state, 2 and 3 nothing,
        // 4 has a gap (5 missing), 9 does not exist in the parent state.
        for (s, n) in [(1, 3), (2, 1), (1, 2), (4, 1), (4, 2), (1, 4), (3, 2), (4, 4), (9, 1), (2, 2)] {
            ins(&mut m, s, n).unwrap();
        }
        let parent = |a: AccountId| match a.0 {
            1 => Some(1),
            2 | 3 => Some(0),
            4 => Some(0),
            _ => None,
        };
        let got = m.take(parent, none, 100);
        // Signers in arrival order; each its run: 1 -> 2,3,4; 2 -> 1,2; 4 -> 1,2 (4 waits for
        // 3); 3 -> nothing (2 waits for 1); 9 -> nothing (no account).
        assert_eq!(pairs(&got), vec![(1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (4, 1), (4, 2)]);
        // Nothing was removed by taking.
        assert_eq!((m.len(), m.stale_dropped()), (10, 0));
        // `max` cuts a run short; the rest comes in the next block built on the first.
        let got = m.take(parent, none, 2);
        assert_eq!(pairs(&got), vec![(1, 2), (1, 3)]);
        let after = |a: AccountId| if a.0 == 1 { Some(3) } else { parent(a) };
        assert_eq!(pairs(&m.take(after, none, 2)), vec![(1, 4), (2, 1)]);
    }

    #[test]
    fn a_gap_waits_until_it_is_filled() {
        let mut m = Mempool::new(100);
        ins(&mut m, 7, 2).unwrap();
        ins(&mut m, 7, 3).unwrap();
        assert!(m.take(fresh, none, 10).is_empty(), "nonce 1 is missing");
        assert_eq!(m.len(), 2, "the later nonces wait");
        ins(&mut m, 7, 1).unwrap();
        assert_eq!(pairs(&m.take(fresh, none, 10)), vec![(7, 1), (7, 2), (7, 3)]);
    }

    #[test]
    fn a_lost_proposal_is_offered_again_and_a_resend_stays_one_entry() {
        let mut m = Mempool::new(100);
        for n in 1..=3 {
            ins(&mut m, 5, n).unwrap();
        }
        // Proposed at height h on a parent where 5 has nonce 0; the proposal never finalizes.
        let lost = m.take(fresh, none, 10);
        assert_eq!(pairs(&lost), vec![(5, 1), (5, 2), (5, 3)]);
        // The client resends one: the original is still pending (nothing was lost), so the copy
        // is refused as a duplicate and the entry stays single.
        let (t, a) = lost[1].clone();
        assert_eq!(m.insert(t, a), Err(DropReason::Duplicate));
        assert_eq!(m.len(), 3);
        // The next leader builds on the same parent: the same transactions are offered again.
        assert_eq!(pairs(&m.take(fresh, none, 10)), vec![(5, 1), (5, 2), (5, 3)]);
        // A block carrying the first two finalizes: they leave, the third is offered next.
        m.finalized(&txs(&lost[..2]));
        assert_eq!((m.len(), m.stale_dropped()), (1, 0));
        let committed = |_| Some(2);
        assert_eq!(pairs(&m.take(committed, committed, 10)), vec![(5, 3)]);
        // Once it finalizes the pool is empty and forgets the signer.
        m.finalized(&txs(&lost[2..]));
        assert!(m.is_empty());
        assert_eq!(m.signers(), 0);
        // A transaction taken for a lost proposal and later dropped as stale (its nonce
        // committed by another transaction) may be sent again under a new nonce.
        ins(&mut m, 5, 4).unwrap();
        assert_eq!(pairs(&m.take(|_| Some(3), |_| Some(3), 10)), vec![(5, 4)]);
    }

    #[test]
    fn entries_at_or_below_the_committed_nonce_are_dropped_as_stale() {
        let mut m = Mempool::new(100);
        for n in [1, 2, 3, 5] {
            ins(&mut m, 1, n).unwrap();
        }
        ins(&mut m, 2, 1).unwrap();
        // Another transaction of signer 1 with nonce 2 finalized (a different body, e.g. signed
        // twice by the client): nonces 1 and 2 here can never be included.
        let other = Tx { signer: AccountId(1), nonce: 2, action: Action::SetMarginMode { portfolio: true } };
        m.finalized(&[other]);
        assert_eq!((m.len(), m.stale_dropped()), (3, 1), "(1,2) landed by key, (1,1) is stale");
        // A parent ahead of the committed state (a notarized, unfinalized block used nonce 3):
        // the entry at 3 is skipped, not dropped, since that block may still be lost.
        let parent = |a: AccountId| if a.0 == 1 { Some(3) } else { Some(0) };
        let committed = |a: AccountId| if a.0 == 1 { Some(2) } else { Some(0) };
        assert_eq!(pairs(&m.take(parent, committed, 10)), vec![(2, 1)]);
        assert_eq!(m.len(), 3);
        // Once committed past 3, take drops it.
        let committed = |a: AccountId| if a.0 == 1 { Some(3) } else { Some(0) };
        assert_eq!(pairs(&m.take(parent, committed, 10)), vec![(2, 1)]);
        assert_eq!((m.len(), m.stale_dropped()), (2, 2));
        // u64::MAX committed drops everything of the signer.
        m.take(|_| None, |a| (a.0 == 1).then_some(u64::MAX), 10);
        assert_eq!((m.len(), m.signers()), (1, 1));
    }

    #[test]
    fn memory_is_bounded_by_capacity() {
        let mut m = Mempool::new(64);
        for i in 0..1000u64 {
            let _ = ins(&mut m, i % 100, i / 100 + 1);
            assert!(m.len() <= m.capacity() && m.signers() <= m.capacity());
        }
        assert_eq!(m.len(), 64);
        // Finalizing frees room.
        let all = m.take(fresh, none, usize::MAX);
        m.finalized(&txs(&all));
        assert_eq!(m.len(), 64 - all.len());
        ins(&mut m, 999, 1).unwrap();
    }
}
