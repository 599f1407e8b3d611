//! Ordered, exactly-once delivery of finalized blocks for execution, from whatever order they
//! arrive in (gossip, range answers, duplicates), and their execution into a [`Store`].
//!
//! The [`Follower`] trusts its inputs' certificates: every [`Verified`] and [`Ready`] must come
//! from [`crate::CertChecker`]. It holds blocks above its tip, at most `window` heights ahead
//! (memory is bounded by `window` largest blocks), and hands out the block at `tip + 1` only
//! when that block is final: it carries its own certificate, or it is linked by parent digests
//! to a certified block (a buffered certified descendant, or the certified last block of the
//! range answer it came in, which [`crate::CertChecker::check_range`] linked), and its parent is
//! the tip. Each height is delivered once, in order.

use crate::{
    application::{genesis_block, logged_block},
    block::{BlockLimits, ChainBlock},
    certified::Verified,
};
use bastion_exchange::{BlockOutcome, Genesis};
use bastion_store::{Store, hex};
use bytes::Bytes;
use commonware_cryptography::sha256::Digest;
use std::collections::BTreeMap;

/// A block ready for execution (or a verified block of a range answer).
#[derive(Clone, Debug)]
pub struct Ready {
    /// The block.
    pub block: ChainBlock,
    /// Its own encoded finalization, when it has one (a block finalized implicitly, as the
    /// ancestor of a certified block, has none).
    pub certificate: Option<Bytes>,
}

/// What [`Follower::offer`] did with a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    /// Held for delivery.
    Buffered,
    /// At or below the tip, or already held: dropped.
    Duplicate,
    /// More than the window above the tip: dropped (fetch it again later).
    TooFar,
    /// Another block is already held at its height: dropped (with valid certificates this means
    /// a safety failure of the validator set, or a bug: say so loudly).
    Conflict,
}

/// Counters of a [`Follower`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowerStats {
    /// Blocks offered (singly or in ranges).
    pub offered: u64,
    /// Dropped as duplicates.
    pub duplicates: u64,
    /// Dropped as beyond the window.
    pub too_far: u64,
    /// Dropped as conflicting with a held block, or (at `tip + 1`) not linking to the tip.
    pub conflicts: u64,
    /// Delivered by [`Follower::next`].
    pub delivered: u64,
}

#[derive(Debug)]
struct Held {
    block: ChainBlock,
    certificate: Option<Bytes>,
    /// Final: certified itself, linked to a certified descendant, or from a checked range.
    anchored: bool,
}

/// Turns certified blocks in any order into an ordered, exactly-once stream.
#[derive(Debug)]
pub struct Follower {
    tip: (u64, Digest),
    window: u64,
    held: BTreeMap<u64, Held>,
    stats: FollowerStats,
}

impl Follower {
    /// A follower whose last executed block is `tip_digest` at `tip_height` (the genesis digest
    /// at 0; see [`chain_tip`]). Blocks more than `window` (at least 1) above the tip are refused.
    pub fn new(tip_height: u64, tip_digest: Digest, window: u64) -> Follower {
        Follower {
            tip: (tip_height, tip_digest),
            window: window.max(1),
            held: BTreeMap::new(),
            stats: FollowerStats::default(),
        }
    }

    /// Offers a verified block.
    pub fn offer(&mut self, v: Verified) -> Offered {
        self.stats.offered += 1;
        let r = self.insert(v.block, Some(v.certificate), true);
        self.tally(r)
    }

    /// Offers the blocks of a checked range answer ([`crate::CertChecker::check_range`]):
    /// consecutive, linked, the last certified. Blocks outside the window are dropped, the rest
    /// are final. Returns how many were newly held. A list that is not linked, or whose last
    /// block has no certificate, is not anchored: its blocks wait for a certified descendant.
    pub fn offer_range(&mut self, blocks: Vec<Ready>) -> usize {
        let linked = blocks.last().is_some_and(|r| r.certificate.is_some())
            && blocks.windows(2).all(|w| {
                w[0].block.height_u64().checked_add(1) == Some(w[1].block.height_u64())
                    && w[1].block.parent_digest() == w[0].block.id()
            });
        let mut held = 0;
        for r in blocks {
            self.stats.offered += 1;
            let certified = r.certificate.is_some();
            let o = self.insert(r.block, r.certificate, linked || certified);
            if self.tally(o) == Offered::Buffered {
                held += 1;
            }
        }
        held
    }

    /// Offers a run that this node's own consensus engine finalized (a validator): consecutive
    /// blocks, each the parent of the next, the last finalized by the engine, which verified
    /// its certificate. Held like a checked range; returns how many were held.
    pub fn offer_finalized(&mut self, blocks: Vec<ChainBlock>) -> usize {
        let linked = blocks.windows(2).all(|w| {
            w[0].height_u64().checked_add(1) == Some(w[1].height_u64()) && w[1].parent_digest() == w[0].id()
        });
        if !linked {
            return 0;
        }
        let mut held = 0;
        for block in blocks {
            self.stats.offered += 1;
            let o = self.insert(block, None, true);
            if self.tally(o) == Offered::Buffered {
                held += 1;
            }
        }
        held
    }

    fn tally(&mut self, o: Offered) -> Offered {
        match o {
            Offered::Buffered => {}
            Offered::Duplicate => self.stats.duplicates += 1,
            Offered::TooFar => self.stats.too_far += 1,
            Offered::Conflict => self.stats.conflicts += 1,
        }
        o
    }

    fn insert(&mut self, block: ChainBlock, certificate: Option<Bytes>, anchored: bool) -> Offered {
        let h = block.height_u64();
        if h <= self.tip.0 {
            return Offered::Duplicate;
        }
        if h - self.tip.0 > self.window {
            return Offered::TooFar;
        }
        match self.held.get_mut(&h) {
            Some(held) if held.block.id() == block.id() => {
                // The same block again: keep what the new copy adds.
                held.anchored |= anchored;
                if held.certificate.is_none() && certificate.is_some() {
                    held.certificate = certificate;
                }
                Offered::Duplicate
            }
            Some(_) => Offered::Conflict,
            None => {
                self.held.insert(h, Held { block, certificate, anchored });
                Offered::Buffered
            }
        }
    }

    /// The block at `tip + 1` when it is final and its parent is the tip: advances the tip.
    /// A held block at `tip + 1` that does not link to the tip is dropped (counted as a
    /// conflict) so that a backfill can replace it.
    // Not an `Iterator`: `None` means "nothing deliverable yet", not the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Ready> {
        let want = self.tip.0.checked_add(1)?;
        let first = self.held.get(&want)?;
        if first.block.parent_digest() != self.tip.1 {
            self.held.remove(&want);
            self.stats.conflicts += 1;
            return None;
        }
        if !first.anchored {
            self.anchor_from(want);
            if !self.held.get(&want).is_some_and(|h| h.anchored) {
                // Not final yet: keep it.
                return None;
            }
        }
        let held = self.held.remove(&want)?;
        self.tip = (want, held.block.id());
        self.stats.delivered += 1;
        Some(Ready { block: held.block, certificate: held.certificate })
    }

    /// Marks the run of held blocks from `from` up to the first anchored one as anchored, when
    /// every step links by parent digest. Each block is marked once, so delivery stays linear.
    fn anchor_from(&mut self, from: u64) {
        let mut run = Vec::new();
        let mut h = from;
        loop {
            let Some(held) = self.held.get(&h) else { return };
            if let Some(&prev) = run.last()
                && self.held.get(&prev).map(|p: &Held| p.block.id()) != Some(held.block.parent_digest())
            {
                return;
            }
            if held.anchored {
                break;
            }
            run.push(h);
            h += 1;
        }
        for h in run {
            if let Some(held) = self.held.get_mut(&h) {
                held.anchored = true;
            }
        }
    }

    /// Heights to backfill: from `tip + 1` to just below the lowest held final block, when the
    /// next block is not deliverable; `None` when nothing final is held above a hole.
    pub fn gap(&self) -> Option<(u64, u64)> {
        let want = self.tip.0.checked_add(1)?;
        let lowest = self.held.iter().find(|(_, h)| h.anchored).map(|(k, _)| *k)?;
        if lowest > want { Some((want, lowest - 1)) } else { None }
    }

    /// The last delivered height and its digest.
    pub fn tip(&self) -> (u64, Digest) {
        self.tip
    }

    /// Blocks held above the tip.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The counters.
    pub fn stats(&self) -> FollowerStats {
        self.stats.clone()
    }
}

/// Executes a finalized block into `store`, as the validators' `execute_finalized` does: the
/// block must be at the store's next height and carry the store's state root as its parent root
/// (otherwise it is refused and nothing changes); the log entry keeps the parent digest as its
/// link and the transactions' keys and signatures as its witness. Not durable until
/// [`Store::commit`] (the caller batches commits).
pub fn execute(store: &mut Store, block: &ChainBlock) -> Result<BlockOutcome, String> {
    let height = store.state().height;
    if block.height_u64() != height.saturating_add(1) {
        return Err(format!(
            "block at height {} does not follow the store's height {height}",
            block.height_u64()
        ));
    }
    let root = store.state().state_root();
    if block.parent_state_root() != &root {
        return Err(format!(
            "block at height {} carries parent root {} but the store's root is {}: this node diverged \
             from the validators (or its store is damaged)",
            block.height_u64(),
            hex(block.parent_state_root()),
            hex(&root)
        ));
    }
    let mut link = [0u8; 32];
    link.copy_from_slice(block.parent_digest().as_ref());
    store
        .execute_witnessed(block.block(), &link, &block.witness())
        .map_err(|e| format!("executing block {} at height {}: {e}", block.id(), block.height_u64()))
}

/// The executed tip of a (re)opened store: its height and block digest, from the last log entry
/// (the entry holds the whole chain block: exchange block, parent digest, parent root and
/// witness), checked against the entry below it when the log holds one; the genesis digest at
/// height 0.
pub fn chain_tip(store: &Store, genesis: &Genesis, limits: &BlockLimits) -> Result<(u64, Digest), String> {
    let height = store.state().height;
    let genesis = genesis_block(genesis)?;
    if height == 0 {
        if genesis.parent_state_root() != &store.state().state_root() {
            return Err("store state at height 0 does not match the genesis".into());
        }
        return Ok((0, genesis.id()));
    }
    let read = |h: u64| -> Result<ChainBlock, String> {
        let bytes = store.log().read(h).map_err(|e| {
            format!("the store is at height {height} but its block log cannot give height {h}: {e}")
        })?;
        let (block, _) = logged_block(&bytes, limits)?;
        if block.height_u64() != h {
            return Err(format!("block log entry at height {h} holds block {}", block.height_u64()));
        }
        Ok(block)
    };
    let tip = read(height)?;
    if height == 1 && tip.parent_digest() != genesis.id() {
        return Err("block log entry at height 1 does not link to this genesis".into());
    }
    if height > 1
        && store.log().first_height().is_some_and(|f| f < height)
        && read(height - 1)?.id() != tip.parent_digest()
    {
        return Err(format!("block log entry at height {height} does not link to height {}", height - 1));
    }
    Ok((height, tip.id()))
}

/// The digest of the block at `height` from the store's log: the entry at `height` hashed, or
/// the parent digest the entry at `height + 1` carries (the log may start just above a
/// snapshot). `None` when the log holds neither.
pub fn logged_digest(store: &Store, limits: &BlockLimits, height: u64) -> Option<Digest> {
    if let Ok(bytes) = store.log().read(height)
        && let Ok((block, _)) = logged_block(&bytes, limits)
    {
        return Some(block.id());
    }
    let bytes = store.log().read(height.checked_add(1)?).ok()?;
    logged_block(&bytes, limits).ok().map(|(b, _)| b.parent_digest())
}
