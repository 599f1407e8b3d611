//! What the block channel lets one peer make this validator hold, and which peers it blocks.
//!
//! **Unsolicited blocks.** A block that arrives without being asked for (neither a digest this
//! validator requests nor a height it backfills) is held *on the sender's account* until
//! consensus refers to it (the engine asks to verify it, a chain being executed or verified
//! walks through it, or it is this validator's own): then it is *claimed* and no longer counts.
//! Each peer's account holds at most [`UNSOLICITED_BLOCKS_PER_PEER`] blocks and
//! [`UNSOLICITED_BYTES_PER_PEER`] bytes (or one block of the largest size the limits allow, if
//! that is more); beyond either, the peer's oldest unclaimed block is evicted (dropped from
//! memory: if consensus wants it later, it is requested by digest like any missing block).
//! The bytes of a block are its encoded size plus its decoded transactions and
//! authorisations ([`held_bytes`]), which is what holding it costs. So, whatever peers send,
//!
//! ```text
//! unsolicited memory <= peers × max(UNSOLICITED_BYTES_PER_PEER, held_bytes(largest block))
//! unsolicited blocks <= peers × UNSOLICITED_BLOCKS_PER_PEER
//! ```
//!
//! Blocks that were asked for are accounted separately: at most [`crate::application`]'s
//! `REQUESTS_MAX` digests per request round and `RANGE_MAX` heights per backfill request, each
//! a block consensus needs; they are pruned with the chain (64 heights behind the tip).
//!
//! **Blocking.** A peer is blocked (commonware-p2p's `Blocker`: disconnected, and refused from
//! then on, on every channel) for data no honest validator sends ([`BlockReason`]): a block
//! that does not decode under the limits (which includes a non-canonical encoding), a
//! malformed request, [`UNKNOWN_TAGS_TO_BLOCK`] messages with unknown tags, a proposal of its
//! own that is invalid whatever the verifier's state and clock (bad signature, wrong parent or
//! height, an observation the exchange refuses), an invalid observation on the observation
//! channel ([`BlockReason::InvalidObservation`]), [`EVICTIONS_TO_BLOCK`] evictions within
//! one window of [`EVICTION_WINDOW`] executed heights, or backfill requests far beyond their
//! rate. A block that is merely not verifiable *yet* (its parent is missing, its timestamp is
//! outside this validator's clock window, its parent state root differs from this validator's)
//! never blocks anyone: an honest peer can send it.

use bastion_types::{Tx, TxAuth};
use commonware_cryptography::sha256::Digest;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Unclaimed blocks held per peer; more evicts the peer's oldest.
pub const UNSOLICITED_BLOCKS_PER_PEER: usize = 16;

/// Bytes of unclaimed blocks held per peer ([`held_bytes`]); more evicts the peer's oldest.
/// At least one block of the largest size the block limits allow is always held.
pub const UNSOLICITED_BYTES_PER_PEER: usize = 32 << 20;

/// A peer whose unclaimed blocks are evicted this many times within [`EVICTION_WINDOW`]
/// executed heights is flooding: blocked. An honest peer relays one proposal per view it leads
/// and forwards blocks that the chain goes on to use; to be evicted it would need
/// [`UNSOLICITED_BLOCKS_PER_PEER`] of them unclaimed at once, and then this many more, within
/// the window.
pub const EVICTIONS_TO_BLOCK: u64 = 64;

/// Executed heights over which evictions are counted (then the count restarts).
pub const EVICTION_WINDOW: u64 = 64;

/// Messages with an unknown tag tolerated from one peer (a newer version's message, say)
/// before it is blocked.
pub const UNKNOWN_TAGS_TO_BLOCK: u32 = 8;

/// Why the application blocked a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockReason {
    /// A block that does not decode under the block limits (too many transactions, too large,
    /// a non-canonical encoding, trailing bytes).
    Undecodable,
    /// A block request or range request that does not decode.
    MalformedRequest,
    /// Repeated messages with an unknown tag.
    UnknownTag,
    /// Its own proposal is invalid independently of the verifier's state and clock.
    InvalidProposal,
    /// More unsolicited blocks than the per-peer bounds, over and over.
    BlockFlood,
    /// Backfill requests far beyond the per-peer rate.
    BackfillFlood,
    /// An observation no honest validator sends, on the observation channel: undecodable or
    /// oversized, for another chain, not its sender's, or failing the exchange's gossip check
    /// for a reason other than staleness (see [`crate::observations`]).
    InvalidObservation,
    /// Sent a bridge attestation or voucher signature that is not its own or does not verify,
    /// or a malformed bridge message (see [`crate::bridge`]).
    InvalidAttestation,
}

/// Peers blocked, by reason (each peer counted once, under the first reason).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerBlocks {
    /// [`BlockReason::Undecodable`].
    pub undecodable: u64,
    /// [`BlockReason::MalformedRequest`].
    pub malformed_request: u64,
    /// [`BlockReason::UnknownTag`].
    pub unknown_tag: u64,
    /// [`BlockReason::InvalidProposal`].
    pub invalid_proposal: u64,
    /// [`BlockReason::BlockFlood`].
    pub block_flood: u64,
    /// [`BlockReason::BackfillFlood`].
    pub backfill_flood: u64,
    /// [`BlockReason::InvalidObservation`].
    pub invalid_observation: u64,
    /// [`BlockReason::InvalidAttestation`].
    pub invalid_attestation: u64,
}

impl PeerBlocks {
    pub(crate) fn add(&mut self, reason: BlockReason) {
        let slot = match reason {
            BlockReason::Undecodable => &mut self.undecodable,
            BlockReason::MalformedRequest => &mut self.malformed_request,
            BlockReason::UnknownTag => &mut self.unknown_tag,
            BlockReason::InvalidProposal => &mut self.invalid_proposal,
            BlockReason::BlockFlood => &mut self.block_flood,
            BlockReason::BackfillFlood => &mut self.backfill_flood,
            BlockReason::InvalidObservation => &mut self.invalid_observation,
            BlockReason::InvalidAttestation => &mut self.invalid_attestation,
        };
        *slot = slot.saturating_add(1);
    }

    /// Each reason's count, labelled as the metrics export it.
    pub fn by_reason(&self) -> [(&'static str, u64); 8] {
        [
            ("undecodable", self.undecodable),
            ("malformed_request", self.malformed_request),
            ("unknown_tag", self.unknown_tag),
            ("invalid_proposal", self.invalid_proposal),
            ("block_flood", self.block_flood),
            ("backfill_flood", self.backfill_flood),
            ("invalid_observation", self.invalid_observation),
            ("invalid_attestation", self.invalid_attestation),
        ]
    }

    /// Peers blocked for any reason.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().fold(0u64, |a, (_, n)| a.saturating_add(*n))
    }
}

/// What holding a block costs: its encoding plus its decoded transactions and authorisations.
pub fn held_bytes(encoded: usize, txs: usize) -> usize {
    encoded.saturating_add(txs.saturating_mul(std::mem::size_of::<Tx>() + std::mem::size_of::<TxAuth>()))
}

#[derive(Debug, Default)]
struct Account {
    /// Unclaimed blocks in arrival order, with their held bytes.
    order: VecDeque<(Digest, usize)>,
    bytes: usize,
    /// Evictions since `window_start` (an executed height).
    evicted: u64,
    window_start: u64,
    unknown_tags: u32,
}

/// Per-peer accounts of unclaimed blocks (see the module doc).
#[derive(Debug)]
pub(crate) struct Unsolicited<P: Ord + Clone> {
    accounts: BTreeMap<P, Account>,
    /// The account each unclaimed block is on.
    owner: HashMap<Digest, P>,
    bytes_cap: usize,
    /// Totals over all accounts.
    blocks: usize,
    bytes: usize,
}

/// What admitting one unsolicited block did.
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    /// Blocks evicted to make room (drop them from memory).
    pub(crate) evicted: Vec<Digest>,
    /// The peer passed [`EVICTIONS_TO_BLOCK`]: block it.
    pub(crate) flooding: bool,
}

impl<P: Ord + Clone> Unsolicited<P> {
    /// Accounts whose byte cap is [`UNSOLICITED_BYTES_PER_PEER`], or `largest` (the held bytes
    /// of the largest block the limits allow) if that is more.
    pub(crate) fn new(largest: usize) -> Self {
        Unsolicited {
            accounts: BTreeMap::new(),
            owner: HashMap::new(),
            bytes_cap: UNSOLICITED_BYTES_PER_PEER.max(largest),
            blocks: 0,
            bytes: 0,
        }
    }

    /// A new unclaimed block from `peer`, `tip` being the executed height.
    pub(crate) fn admit(&mut self, peer: &P, digest: Digest, bytes: usize, tip: u64) -> Admitted {
        let mut out = Admitted::default();
        if self.owner.contains_key(&digest) {
            return out;
        }
        let acct = self.accounts.entry(peer.clone()).or_default();
        acct.order.push_back((digest, bytes));
        acct.bytes = acct.bytes.saturating_add(bytes);
        self.owner.insert(digest, peer.clone());
        self.blocks = self.blocks.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
        if tip >= acct.window_start.saturating_add(EVICTION_WINDOW) {
            acct.window_start = tip;
            acct.evicted = 0;
        }
        while acct.order.len() > UNSOLICITED_BLOCKS_PER_PEER || acct.bytes > self.bytes_cap {
            let Some((old, b)) = acct.order.pop_front() else { break };
            acct.bytes = acct.bytes.saturating_sub(b);
            self.owner.remove(&old);
            self.blocks = self.blocks.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(b);
            acct.evicted = acct.evicted.saturating_add(1);
            out.evicted.push(old);
        }
        out.flooding = acct.evicted >= EVICTIONS_TO_BLOCK;
        out
    }

    /// Consensus refers to this block: it no longer counts against its sender.
    pub(crate) fn claim(&mut self, digest: &Digest) {
        let Some(peer) = self.owner.remove(digest) else { return };
        if let Some(acct) = self.accounts.get_mut(&peer)
            && let Some(i) = acct.order.iter().position(|(d, _)| d == digest)
            && let Some((_, b)) = acct.order.remove(i)
        {
            acct.bytes = acct.bytes.saturating_sub(b);
            self.blocks = self.blocks.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(b);
        }
    }

    /// Forgets blocks no longer held (pruned), as [`Self::claim`] does.
    pub(crate) fn retain(&mut self, held: impl Fn(&Digest) -> bool) {
        let gone: Vec<Digest> = self.owner.keys().filter(|d| !held(d)).copied().collect();
        for d in gone {
            self.claim(&d);
        }
    }

    /// One more unknown-tag message from `peer`; true once it reached [`UNKNOWN_TAGS_TO_BLOCK`].
    pub(crate) fn unknown_tag(&mut self, peer: &P) -> bool {
        let acct = self.accounts.entry(peer.clone()).or_default();
        acct.unknown_tags = acct.unknown_tags.saturating_add(1);
        acct.unknown_tags >= UNKNOWN_TAGS_TO_BLOCK
    }

    /// Drops a (blocked) peer's account, returning its unclaimed blocks.
    pub(crate) fn drop_peer(&mut self, peer: &P) -> Vec<Digest> {
        let Some(acct) = self.accounts.remove(peer) else { return Vec::new() };
        let mut out = Vec::new();
        for (d, b) in acct.order {
            self.owner.remove(&d);
            self.blocks = self.blocks.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(b);
            out.push(d);
        }
        out
    }

    /// Unclaimed blocks held, and their bytes, over all peers.
    pub(crate) fn totals(&self) -> (usize, usize) {
        (self.blocks, self.bytes)
    }

    /// The byte cap of one peer's account.
    #[cfg(test)]
    pub(crate) fn bytes_cap(&self) -> usize {
        self.bytes_cap
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(i: u32) -> Digest {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        Digest::from(b)
    }

    #[test]
    fn one_peer_cannot_hold_more_than_its_account() {
        let mut u = Unsolicited::<u8>::new(1_000);
        let cap = u.bytes_cap();
        let mut evicted = 0;
        for i in 0..1_000u32 {
            let a = u.admit(&1, d(i), 1_000, 0);
            evicted += a.evicted.len();
            let (blocks, bytes) = u.totals();
            assert!(blocks <= UNSOLICITED_BLOCKS_PER_PEER && bytes <= cap);
            assert_eq!(a.flooding, evicted as u64 >= EVICTIONS_TO_BLOCK);
        }
        // Another peer has its own account; a claimed block no longer counts.
        u.admit(&2, d(5_000), 1_000, 0);
        assert_eq!(u.totals().0, UNSOLICITED_BLOCKS_PER_PEER + 1);
        u.claim(&d(5_000));
        assert_eq!(u.totals(), (UNSOLICITED_BLOCKS_PER_PEER, UNSOLICITED_BLOCKS_PER_PEER * 1_000));
        // Bytes bound: big blocks evict earlier.
        let mut v = Unsolicited::<u8>::new(0);
        for i in 0..10u32 {
            v.admit(&1, d(i), UNSOLICITED_BYTES_PER_PEER / 3, 0);
            assert!(v.totals().1 <= UNSOLICITED_BYTES_PER_PEER);
        }
        assert_eq!(v.totals().0, 3);
        // Evictions are counted per window of executed heights.
        let mut w = Unsolicited::<u8>::new(0);
        for i in 0..(UNSOLICITED_BLOCKS_PER_PEER as u32 + EVICTIONS_TO_BLOCK as u32 - 1) {
            assert!(!w.admit(&1, d(i), 1, 0).flooding);
        }
        assert!(!w.admit(&1, d(9_999), 1, EVICTION_WINDOW).flooding, "a new window starts the count again");
    }
}
