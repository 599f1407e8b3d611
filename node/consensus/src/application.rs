//! The application behind Simplex: proposes, verifies, relays and executes Bastion blocks.
//!
//! One actor owns the node's [`Store`] and every block it knows. Consensus talks to it through a
//! [`Mailbox`] (it is the engine's `Automaton` and `Relay`) and a [`Reporter`] (finalizations).
//! Blocks travel between validators on one p2p channel, as `tag | bytes`: tag 0 is a full
//! encoded block (the proposer sends it to everyone when consensus asks it to relay, and the
//! engine's forwarding sends it to silent voters), tag 1 is a request for a block by digest
//! (sent to all peers every 250 ms while a proposal, verification or finalized chain waits on
//! it; peers answer from the blocks they hold, the 64 most recent finalized heights and
//! everything unfinalized), tag 2 a range request (backfill: served by a separate task at a
//! per-peer rate, [`crate::backfill`]) and tag 3 its "pruned below" answer. Blocks nobody asked
//! for are held within per-peer bounds, and peers that send what no honest validator sends are
//! blocked ([`crate::relay`]). Evidence of equivocation is bounded and written by its own task
//! ([`crate::evidence`]). Validators' signed observations of the market travel on a second
//! channel ([`crate::observations`]: signing, gossip checks, the pool a leader selects from,
//! evidence of double observations).
//!
//! A proposal whose `parent_state_root` differs from the root this validator computed is
//! refused (verify answers false): one proposer must not be able to halt honest validators.
//! A *finalized* block that disagrees means a quorum computed another root: that halts.
//!
//! A block is executed once per validator, in two steps:
//! - *speculatively* on a copy of the parent's state when a block is proposed or verified: the
//!   block must execute without a header error, and the root it yields is what the child block
//!   must carry as `parent_state_root`;
//! - *durably* when the block is finalized: the speculative state and events are handed to
//!   [`Store::adopt`] (or, for a block finalized before this validator verified it, the block is
//!   executed by [`Store::execute_linked`]), then [`Store::commit`], in height order, exactly
//!   once per height. The finalized block's `parent_state_root` must equal the store's root
//!   before it; if not, this validator diverged from a quorum, so it halts loudly: it logs,
//!   stops executing,
//!   stops proposing and stops voting (its verify answers never come).

use crate::{
    backfill::{BACKFILL_QUEUE, Cache, LogRead, RangeRequest, Server},
    block::{BlockLimits, ChainBlock, StateRoot},
    byzantine::{Lie, Trick},
    evidence::{Admit, EvidenceSink, spawn_writer},
    governance::ProposalSource,
    observations::{Observations, OracleRecord, Received, Targets},
    observe::Observer,
    publish::{Published, Publisher},
    relay::{BlockReason, PeerBlocks, Unsolicited, held_bytes},
};
use bastion_accel::{SigItem, VerifiedCache, Verifier};
use bastion_client::Keypair;
use bastion_exchange::{
    BlockError, BlockOutcome, Genesis, State,
    testkit::{PathKind, Workload},
};
use bastion_storage::{Faults, RecordFile};
use bastion_store::{Store, hex};
use bastion_types::{AccountId, Action, Event, Tx, TxAuth, account_of};
use bytes::{Buf as _, Bytes};
use commonware_actor::Feedback;
use commonware_codec::{Decode as _, DecodeExt as _, Encode as _, EncodeSize as _};
use commonware_consensus::{
    Automaton, CertifiableAutomaton, Relay as RelayTrait, Reporter as ReporterTrait, Viewable as _,
    simplex::{
        Plan,
        types::{Activity, Attributable as _, Context},
    },
};
use commonware_cryptography::{PublicKey, certificate::Scheme, sha256::Digest};
use commonware_macros::select_loop;
use commonware_p2p::{Blocker, Receiver, Recipients, Sender};
use commonware_runtime::{Clock, ContextCell, Handle, IoBuf, Spawner, spawn_cell};
use commonware_utils::channel::{
    fallible::{FallibleExt as _, OneshotExt as _},
    mpsc, oneshot,
};
use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    marker::PhantomData,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tracing::{debug, error, info, warn};

/// How far ahead of this validator's clock a proposal's timestamp may be.
///
/// Block time is the proposer's clock (at least the parent's time + 1 ms). A verifier accepts
/// `parent < ts` and `now - MAX_PAST_MS <= ts <= now + MAX_FUTURE_MS` on its own clock, so a
/// leader's choice of time is confined to a window of `MAX_PAST_MS + MAX_FUTURE_MS` around the
/// honest clocks: it cannot push the chain's time (funding, option expiry, oracle staleness)
/// ahead by more than 500 ms, nor hold it back by more than 2 s. The trade-off is liveness: a
/// verifier whose clock is more than `MAX_FUTURE_MS` behind the proposer's, or receives the
/// proposal more than `MAX_PAST_MS` after it was built (network delay plus clock offset), votes
/// no; with more than 1/3 of stake in that state views time out until a leader with a
/// compatible clock proposes. Operators must run NTP (offsets of a few ms). After a stall the
/// next block's time is the proposer's `now` again (not the stale parent's), so a stall never
/// pushes honest proposals out of the window.
pub const MAX_FUTURE_MS: u64 = 500;

/// How far behind this validator's clock a proposal's timestamp may be (see [`MAX_FUTURE_MS`]).
/// It covers the time from the proposer's `propose` to this validator's `verify`: one network
/// delay, plus a wait for a missing parent block.
pub const MAX_PAST_MS: u64 = 2_000;

/// Whether a proposal's timestamp `ts` is acceptable after a parent at `parent_ts` to a verifier
/// whose clock reads `now` (all ms): `parent_ts < ts` and
/// `now - MAX_PAST_MS <= ts <= now + MAX_FUTURE_MS`.
pub fn timestamp_in_window(ts: u64, parent_ts: u64, now: u64) -> bool {
    ts > parent_ts && ts >= now.saturating_sub(MAX_PAST_MS) && ts <= now.saturating_add(MAX_FUTURE_MS)
}

/// How many finalized heights of blocks are kept in memory for forwarding to peers.
const KEEP_FINALIZED: u64 = 64;

/// Most finalization certificates held for blocks not executed yet (a publisher's only; each is
/// ~150 bytes, and they are pruned [`KEEP_FINALIZED`] heights after they arrived).
pub const MAX_CERTIFICATES: usize = 4_096;

/// Unsolicited blocks are kept only up to this many heights beyond the executed tip.
const MAX_AHEAD: u64 = 256;

/// How often missing blocks are requested again from peers.
const REQUEST_EVERY: Duration = Duration::from_millis(250);

/// Most block requests sent per round.
const REQUESTS_MAX: usize = 32;

/// Wire tag of a full block on the block channel.
pub(crate) const TAG_BLOCK: u8 = 0;
/// Wire tag of a request for a block by digest.
const TAG_REQUEST: u8 = 1;
/// Wire tag of a request for the finalized blocks at a range of heights (backfill).
pub(crate) const TAG_RANGE: u8 = 2;

/// Wire tag of a backfill answer "I no longer hold heights below this one" (a u64).
pub(crate) const TAG_PRUNED: u8 = 3;

/// Most blocks asked for (and served) by one range request.
pub(crate) const RANGE_MAX: u64 = 64;

/// How often a validator signs an observation at most, by default (ms).
pub const DEFAULT_OBSERVE_EVERY_MS: u64 = 200;

/// Name of the evidence file in the node's data dir.
pub const EVIDENCE_FILE: &str = "evidence.log";

/// Name of the file in the node's data dir that holds the blocks this validator proposed or
/// voted for and that are not finalized yet. After a restart of the whole network nobody would
/// hold a notarized block otherwise, and the chain could not extend it.
pub const PENDING_FILE: &str = "pending-blocks.rec";

/// The pending-blocks file is compacted once it grows past this.
const PENDING_COMPACT_BYTES: u64 = 4 << 20;

/// One finalized, durable block as this validator executed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finalized {
    /// The block's digest.
    pub digest: Digest,
    /// The durable state root after it.
    pub root: StateRoot,
    /// Transactions in the block.
    pub txs: usize,
    /// Of those, order-book actions (place, cancel, replace).
    pub orders: usize,
    /// Collateral credited: the devnet authority's deposit transactions and the bridge's
    /// attested deposits the block carries.
    pub deposits: usize,
    /// Transactions the exchange rejected.
    pub rejected: usize,
    /// Fills the block produced.
    pub fills: usize,
    /// Liquidations it executed.
    pub liquidations: usize,
    /// Auto-deleveraging events it executed.
    pub adl: usize,
    /// Governance proposals it carried (each with 2/3 of stake's valid signatures).
    pub proposals: usize,
    /// The insurance fund after it, quote micro-units.
    pub insurance_fund: i128,
    /// The block's timestamp (consensus time, ms).
    pub timestamp_ms: u64,
}

impl Finalized {
    /// What a block and its execution's events amount to.
    fn of(
        digest: Digest,
        block: &ChainBlock,
        out_root: StateRoot,
        events: &[Event],
        insurance_fund: i128,
    ) -> Self {
        let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
        let actions = |f: fn(&Action) -> bool| block.block().txs.iter().filter(|t| f(&t.action)).count();
        Finalized {
            digest,
            root: out_root,
            txs: block.block().txs.len(),
            orders: actions(|a| {
                matches!(a, Action::Place(_) | Action::Cancel { .. } | Action::Replace { .. })
            }),
            deposits: actions(|a| matches!(a, Action::Deposit { .. }))
                .saturating_add(block.block().deposits.len()),
            rejected: count(|e| matches!(e, Event::Rejected { .. })),
            fills: count(|e| matches!(e, Event::Fill { .. })),
            liquidations: count(|e| matches!(e, Event::Liquidated { .. })),
            adl: count(|e| matches!(e, Event::Deleveraged { .. })),
            proposals: block.block().proposals.len(),
            insurance_fund,
            timestamp_ms: block.block().timestamp_ms,
        }
    }
}

/// Running totals of what this validator finalized and where its application spent time,
/// since it started (not counting blocks recovered from its log).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Blocks executed durably.
    pub blocks: u64,
    /// Transactions in them.
    pub txs: u64,
    /// Order-book actions among them (place, cancel, replace).
    pub orders: u64,
    /// Deposits credited (authority deposit transactions and attested bridge deposits).
    pub deposits: u64,
    /// Transactions the exchange rejected.
    pub rejected: u64,
    /// Fills.
    pub fills: u64,
    /// Liquidations.
    pub liquidations: u64,
    /// Auto-deleveraging events.
    pub adl: u64,
    /// The insurance fund after the last block (quote micro-units).
    pub insurance_fund: i128,
    /// Transactions this validator put in its own proposals (the sequencer's output).
    pub proposed_txs: u64,
    /// Time spent building blocks from the transaction source (the sequencer), ns.
    pub sequencer_ns: u64,
    /// Time spent executing blocks (speculatively, and durably when not verified first), ns.
    pub execution_ns: u64,
    /// Time spent checking the signatures of peers' proposals, ns.
    pub signatures_ns: u64,
    /// Signatures in peers' proposals checked.
    pub signatures: u64,
    /// Of those, how many were verified here (the rest the ingress had verified already).
    pub signatures_verified: u64,
    /// Time spent logging and committing blocks (the store), ns.
    pub storage_ns: u64,
    /// Peers this validator blocked on the block channel, by reason.
    pub peers_blocked: PeerBlocks,
    /// Unsolicited blocks held now (not yet referred to by consensus), over all peers.
    pub unsolicited_blocks: u64,
    /// Their bytes ([`crate::relay::held_bytes`]).
    pub unsolicited_bytes: u64,
    /// The most unsolicited blocks held at once since start.
    pub unsolicited_blocks_peak: u64,
    /// The most unsolicited bytes held at once since start.
    pub unsolicited_bytes_peak: u64,
    /// Unsolicited blocks evicted because their sender's account was full.
    pub unsolicited_evicted: u64,
    /// Blocks served to peers' backfill (range) requests.
    pub backfill_served: u64,
    /// Range requests dropped: the queue was full or the peer over its rate.
    pub backfill_dropped: u64,
    /// Proposals refused because their timestamp was outside this validator's clock window.
    pub refused_timestamp: u64,
    /// Evidence reported by the engine (all of it; only the first pieces per signer are kept).
    pub evidence_seen: u64,
    /// Evidence lines dropped because the writer's queue was full.
    pub evidence_dropped: u64,
    /// Observations this validator signed (and sent).
    pub observations_signed: u64,
    /// Observations received from peers and pooled (valid, new).
    pub observations_received: u64,
    /// Observations received and dropped, every reason (by reason:
    /// [`Ledger::observations_rejected`]).
    pub observations_rejected: u64,
    /// Observations carried by finalized blocks.
    pub observations_included: u64,
    /// Finalized blocks × underlyings whose index lay more than
    /// [`crate::observations::DISAGREEMENT_PPM`] from this validator's own fresh observation.
    pub oracle_disagreements: u64,
    /// Double observations seen (two different signed observations of one validator for one
    /// height; only the first pieces per validator are kept).
    pub observation_evidence: u64,
    /// The bridge: deposits seen, attested, credited; vouchers signed, completed; the source.
    pub bridge: crate::bridge::BridgeTotals,
}

/// What one validator finalized, per height.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    inner: Arc<Mutex<LedgerInner>>,
}

#[derive(Debug, Default)]
struct LedgerInner {
    /// Keep only this many finalized heights (`None`: all, for simulations).
    keep: Option<u64>,
    totals: Totals,
    finalized: BTreeMap<u64, Finalized>,
    /// Height of each block in `finalized`, by digest.
    heights: HashMap<Digest, u64>,
    halted: Option<String>,
    /// The first pieces of evidence per (kind, signer) (see [`crate::evidence`]).
    faults: Vec<String>,
    /// When this validator's proposals were built (its clock), by digest.
    proposed_at: HashMap<Digest, SystemTime>,
    /// When this validator first learned of each finalization (its clock), by digest.
    finalization_at: HashMap<Digest, SystemTime>,
    /// When this validator first learned of each notarization (its clock), by digest; kept
    /// only when `keep` is `None` (simulations).
    notarization_at: HashMap<Digest, SystemTime>,
    /// Observations dropped, by reason label.
    observations_rejected: BTreeMap<&'static str, u64>,
    /// Each finalized block's oracle as executed; kept only when `keep` is `None`
    /// (simulations' checkers).
    oracle: BTreeMap<u64, OracleRecord>,
}

impl Ledger {
    /// A ledger that remembers only the last `keep` finalized heights and forgets finality
    /// times once [`Ledger::drain_finality`] reads them: the production node's, whose memory
    /// must not grow with the chain.
    pub fn bounded(keep: u64) -> Self {
        let ledger = Ledger::default();
        ledger.lock().keep = Some(keep.max(1));
        ledger
    }

    /// Finality latency (proposal built to finalization seen, both on this validator's clock)
    /// of each of this validator's own proposals finalized since the last call, with its
    /// height, in height order. Forgets what it returns, finalizations of other validators'
    /// proposals, and own proposals older than 60 s that were never finalized.
    pub fn drain_finality(&self) -> Vec<(u64, Duration)> {
        let mut g = self.lock();
        let g = &mut *g;
        let mut out = Vec::new();
        let seen = std::mem::take(&mut g.finalization_at);
        for (digest, at) in seen {
            match (g.proposed_at.remove(&digest), g.heights.get(&digest).copied()) {
                (Some(proposed), Some(h)) => out.push((h, at.duration_since(proposed).unwrap_or_default())),
                // Finalization seen before execution: look again next time.
                (Some(proposed), None) => {
                    g.proposed_at.insert(digest, proposed);
                    g.finalization_at.insert(digest, at);
                }
                (None, _) => {}
            }
        }
        if let Some(newest) = g.proposed_at.values().max().copied() {
            g.proposed_at
                .retain(|_, t| newest.duration_since(*t).unwrap_or_default() < Duration::from_secs(60));
        }
        out.sort_unstable();
        out
    }

    fn lock(&self) -> MutexGuard<'_, LedgerInner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Running totals since start.
    pub fn totals(&self) -> Totals {
        self.lock().totals
    }

    fn add_finalized(&self, f: &Finalized) {
        let t = &mut self.lock().totals;
        t.blocks = t.blocks.saturating_add(1);
        t.txs = t.txs.saturating_add(f.txs as u64);
        t.orders = t.orders.saturating_add(f.orders as u64);
        t.deposits = t.deposits.saturating_add(f.deposits as u64);
        t.rejected = t.rejected.saturating_add(f.rejected as u64);
        t.fills = t.fills.saturating_add(f.fills as u64);
        t.liquidations = t.liquidations.saturating_add(f.liquidations as u64);
        t.adl = t.adl.saturating_add(f.adl as u64);
        t.insurance_fund = f.insurance_fund;
    }

    fn add_proposed(&self, txs: u64) {
        let t = &mut self.lock().totals;
        t.proposed_txs = t.proposed_txs.saturating_add(txs);
    }

    fn add_signatures(&self, checked: u64, verified: u64) {
        let t = &mut self.lock().totals;
        t.signatures = t.signatures.saturating_add(checked);
        t.signatures_verified = t.signatures_verified.saturating_add(verified);
    }

    /// Adds the time since `since` to the execution's busy time.
    pub(crate) fn add_execution_time(&self, since: std::time::Instant) {
        self.add_time(|t| &mut t.execution_ns, since);
    }

    /// Adds the time since `since` to the storage tile's busy time.
    pub(crate) fn add_storage_time(&self, since: std::time::Instant) {
        self.add_time(|t| &mut t.storage_ns, since);
    }

    fn add_time(&self, which: fn(&mut Totals) -> &mut u64, since: std::time::Instant) {
        let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut g = self.lock();
        let slot = which(&mut g.totals);
        *slot = slot.saturating_add(ns);
    }

    /// Finalized heights with their digest and durable state root.
    pub fn finalized(&self) -> BTreeMap<u64, Finalized> {
        self.lock().finalized.clone()
    }

    /// The highest finalized height with what was recorded for it.
    pub fn last(&self) -> Option<(u64, Finalized)> {
        self.lock().finalized.last_key_value().map(|(h, f)| (*h, *f))
    }

    /// How many pieces of evidence the engine reported (recorded or, beyond the first pieces
    /// per signer, only counted).
    pub fn fault_count(&self) -> usize {
        usize::try_from(self.lock().totals.evidence_seen).unwrap_or(usize::MAX)
    }

    /// Highest finalized and durable height (0 before the first).
    pub fn height(&self) -> u64 {
        self.lock().finalized.keys().next_back().copied().unwrap_or(0)
    }

    /// The digest finalized at `height`, if any.
    pub fn digest_at(&self, height: u64) -> Option<Digest> {
        self.lock().finalized.get(&height).map(|e| e.digest)
    }

    /// Faults the engine reported (equivocation: conflicting notarize or finalize votes, or a
    /// nullify and a finalize in one view) and double observations
    /// ([`crate::observations`]): the first [`crate::evidence::EVIDENCE_PER_SIGNER`] per kind
    /// and signer (each also appended to the evidence file).
    pub fn faults(&self) -> Vec<String> {
        self.lock().faults.clone()
    }

    /// When this validator built each of its proposals (its clock at the end of propose).
    pub fn proposed_at(&self) -> HashMap<Digest, SystemTime> {
        self.lock().proposed_at.clone()
    }

    /// When this validator first received each finalization from the engine (its clock).
    pub fn finalization_at(&self) -> HashMap<Digest, SystemTime> {
        self.lock().finalization_at.clone()
    }

    /// When this validator first received each notarization from the engine (its clock).
    pub fn notarization_at(&self) -> HashMap<Digest, SystemTime> {
        self.lock().notarization_at.clone()
    }

    /// Whether notarization times are recorded (unbounded ledgers: simulations).
    fn records_notarizations(&self) -> bool {
        self.lock().keep.is_none()
    }

    fn notarization_seen(&self, digest: Digest, at: SystemTime) {
        self.lock().notarization_at.entry(digest).or_insert(at);
    }

    fn proposed(&self, digest: Digest, at: SystemTime) {
        self.lock().proposed_at.entry(digest).or_insert(at);
    }

    fn finalization_seen(&self, digest: Digest, at: SystemTime) {
        self.lock().finalization_at.entry(digest).or_insert(at);
    }

    fn fault(&self, what: Option<String>) {
        let mut g = self.lock();
        g.totals.evidence_seen = g.totals.evidence_seen.saturating_add(1);
        if let Some(what) = what {
            g.faults.push(what);
        }
    }

    pub(crate) fn evidence_dropped(&self) {
        let t = &mut self.lock().totals;
        t.evidence_dropped = t.evidence_dropped.saturating_add(1);
    }

    pub(crate) fn peer_blocked(&self, reason: BlockReason) {
        self.lock().totals.peers_blocked.add(reason);
    }

    pub(crate) fn backfill_dropped(&self, n: u64) {
        let t = &mut self.lock().totals;
        t.backfill_dropped = t.backfill_dropped.saturating_add(n);
    }

    pub(crate) fn backfill_served(&self, n: u64) {
        let t = &mut self.lock().totals;
        t.backfill_served = t.backfill_served.saturating_add(n);
    }

    fn unsolicited(&self, (blocks, bytes): (usize, usize), evicted: usize) {
        let t = &mut self.lock().totals;
        t.unsolicited_blocks = blocks as u64;
        t.unsolicited_bytes = bytes as u64;
        t.unsolicited_blocks_peak = t.unsolicited_blocks_peak.max(blocks as u64);
        t.unsolicited_bytes_peak = t.unsolicited_bytes_peak.max(bytes as u64);
        t.unsolicited_evicted = t.unsolicited_evicted.saturating_add(evicted as u64);
    }

    fn refused_timestamp(&self) {
        let t = &mut self.lock().totals;
        t.refused_timestamp = t.refused_timestamp.saturating_add(1);
    }

    /// Observations received and dropped, per reason label (the labels are
    /// [`crate::observations::REJECT_LABELS`]; absent ones are 0).
    pub fn observations_rejected(&self) -> BTreeMap<&'static str, u64> {
        self.lock().observations_rejected.clone()
    }

    /// Each finalized block's oracle as this validator executed it, by height (recorded only
    /// by unbounded ledgers: simulations).
    pub fn oracle_records(&self) -> BTreeMap<u64, OracleRecord> {
        self.lock().oracle.clone()
    }

    pub(crate) fn observation_signed(&self) {
        let t = &mut self.lock().totals;
        t.observations_signed = t.observations_signed.saturating_add(1);
    }

    pub(crate) fn observation_received(&self) {
        let t = &mut self.lock().totals;
        t.observations_received = t.observations_received.saturating_add(1);
    }

    pub(crate) fn observation_rejected(&self, label: &'static str) {
        let mut g = self.lock();
        g.totals.observations_rejected = g.totals.observations_rejected.saturating_add(1);
        let n = g.observations_rejected.entry(label).or_insert(0);
        *n = n.saturating_add(1);
    }

    pub(crate) fn observations_included(&self, n: u64) {
        let t = &mut self.lock().totals;
        t.observations_included = t.observations_included.saturating_add(n);
    }

    pub(crate) fn oracle_disagreement(&self) {
        let t = &mut self.lock().totals;
        t.oracle_disagreements = t.oracle_disagreements.saturating_add(1);
    }

    /// A double observation: counted, and (the first pieces per validator) listed with the
    /// engine's faults.
    pub(crate) fn observation_fault(&self, what: Option<String>) {
        let mut g = self.lock();
        g.totals.observation_evidence = g.totals.observation_evidence.saturating_add(1);
        if let Some(what) = what {
            g.faults.push(what);
        }
    }

    /// Updates the bridge's totals.
    pub(crate) fn bridge(&self, update: impl FnOnce(&mut crate::bridge::BridgeTotals)) {
        update(&mut self.lock().totals.bridge);
    }

    /// Conflicting bridge attestations: listed with the engine's faults (the first pieces per
    /// validator; the count is the bridge's).
    pub(crate) fn bridge_fault(&self, what: String) {
        self.lock().faults.push(what);
    }

    fn oracle_record(&self, height: u64, record: impl FnOnce() -> OracleRecord) {
        let mut g = self.lock();
        if g.keep.is_none() {
            g.oracle.insert(height, record());
        }
    }

    /// Why this validator halted, if it did.
    pub fn halted(&self) -> Option<String> {
        self.lock().halted.clone()
    }

    /// A height recovered from the block log: kept as recorded if this ledger already holds
    /// that block (executed before a restart in this process: the log entry lacks the insurance
    /// fund after it, which a restarted simulation would otherwise see as a divergence).
    fn record_recovered(&self, height: u64, entry: Finalized) {
        if self.lock().finalized.get(&height).is_some_and(|f| f.digest == entry.digest) {
            return;
        }
        self.record(height, entry);
    }

    fn record(&self, height: u64, entry: Finalized) {
        let mut g = self.lock();
        g.heights.insert(entry.digest, height);
        if let Some(old) = g.finalized.insert(height, entry)
            && old.digest != entry.digest
        {
            g.heights.remove(&old.digest);
        }
        if let Some(keep) = g.keep {
            while g.finalized.len() as u64 > keep {
                if let Some((_, old)) = g.finalized.pop_first() {
                    g.heights.remove(&old.digest);
                }
            }
        }
    }

    fn halt(&self, why: String) {
        let mut g = self.lock();
        if g.halted.is_none() {
            g.halted = Some(why);
        }
    }
}

/// Where a proposer's transactions come from.
#[derive(Debug)]
pub enum BlockSource {
    /// A synthetic, signed workload (simulations and consensus benchmarks).
    Synthetic(Synthetic),
    /// The validator's mempool, fed by the ingress pipeline.
    Pool {
        /// The mempool.
        source: Box<dyn TxSource>,
        /// Most transactions per block (also capped by the block limits).
        max_txs: usize,
    },
}

impl Default for BlockSource {
    fn default() -> Self {
        BlockSource::Synthetic(Synthetic::default())
    }
}

/// A source of verified, admitted transactions for proposals (the sequencer's mempool).
pub trait TxSource: Send + std::fmt::Debug {
    /// Up to `max` transactions for a block built on `state` (the parent's executed state),
    /// each with the key and signature that authorise it. They must be includable on `state`
    /// (`State::check_txs`: signers with an account, each signer's nonces consecutive from its
    /// nonce + 1), or the block is refused. Taking must not forget them: the proposal may not
    /// finalize.
    fn take(&mut self, state: &State, max: usize) -> Vec<(Tx, TxAuth)>;
    /// A block carrying `txs` was finalized (by any proposer), and `state` is the state after
    /// it: forget them.
    fn finalized(&mut self, state: &State, txs: &[Tx]);
}

/// A deterministic synthetic workload, seeded by the parent block, signed with the devnet keys
/// ([`bastion_client::devnet_authority`] and [`bastion_client::devnet_trader`]): the genesis
/// authority must be the devnet authority's account.
#[derive(Clone, Copy, Debug)]
pub struct Synthetic {
    /// Trader accounts the generator uses (funded by the first block).
    pub traders: u64,
    /// Random transactions per block after the first.
    pub txs_per_block: usize,
    /// Deposit size per trader in the funding block (quote micro-units, times 1..10).
    pub deposit_micros: i128,
}

impl Default for Synthetic {
    fn default() -> Self {
        Synthetic { traders: 8, txs_per_block: 16, deposit_micros: 100_000_000_000 }
    }
}

/// A fault injected into one validator (simulations only; `None` in production).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Durably execute the finalized block at this height with its transactions removed: the
    /// validator's state diverges from everyone else's, as a nondeterminism bug would make it.
    DivergeAt(u64),
    /// A Byzantine leader: each time it proposes it plays the next of these tricks, in turn
    /// (see [`crate::byzantine`]).
    ByzantineLeader(Vec<Trick>),
    /// A Byzantine oracle: it signs (or withholds, or doubles) observations that lie this way
    /// (see [`crate::byzantine::Lie`]); otherwise it runs Bastion honestly.
    ByzantineOracle(Lie),
}

/// Configuration of the application actor.
pub struct Config {
    /// The node's durable chain state. A non-empty store (restart) must still hold its whole
    /// block log: the chain's digests are recomputed from it.
    pub store: Store,
    /// The chain's genesis (the same one the store was opened with).
    pub genesis: Genesis,
    /// Decode limits for blocks from peers (also enforced on own proposals).
    pub limits: BlockLimits,
    /// Where proposals come from.
    pub source: BlockSource,
    /// The chain's identity in every client signature (the genesis file's digest).
    pub chain: [u8; 32],
    /// Verifies the signatures of peers' proposals (ZIP-215, any backend).
    pub verifier: Arc<dyn Verifier>,
    /// Triples the ingress already verified: a proposal's transactions found here are not
    /// verified again.
    pub verified: Option<Arc<VerifiedCache>>,
    /// What this validator's sources show (`bastion-oracle` in production, simulated venues in
    /// tests); `None`: it signs no observations (it still relays, pools and proposes others').
    pub observer: Option<Box<dyn Observer>>,
    /// This validator's index in the validator set and the 32-byte secret seed of its ed25519
    /// identity key (the key the genesis lists for it), which signs its observations; `None`:
    /// it signs none.
    pub observation_key: Option<(u16, [u8; 32])>,
    /// Signs at most one observation per this many ms (and per finalized height);
    /// [`DEFAULT_OBSERVE_EVERY_MS`] by default.
    pub observe_every_ms: u64,
    /// Observer of what this validator finalized (tests, metrics).
    pub ledger: Ledger,
    /// Fault injection for simulations; `None` in production.
    pub fault: Option<Fault>,
    /// Where this validator learns of source-chain deposits to attest (the node's watcher of
    /// its `[bridge]` source); `None`: it attests none (it still signs vouchers with
    /// `observation_key`, and relays, pools and proposes others' attestations).
    pub bridge_feed: Option<Box<dyn crate::bridge::DepositFeed>>,
    /// Where this validator's proposals' governance proposals come from (the validator's
    /// `<data_dir>/governance/`); `None`: its blocks carry none.
    pub governance: Option<Box<dyn ProposalSource>>,
    /// Told about every executed finalized block, with its certificate when it has one
    /// ([`crate::publish`]); `None`: nobody is told.
    pub publisher: Option<Box<dyn Publisher>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("store", &self.store)
            .field("limits", &self.limits)
            .field("source", &self.source)
            .field("verifier", &self.verifier.backend())
            .field("observer", &self.observer.is_some())
            .field("observation_key", &self.observation_key.map(|k| k.0))
            .field("observe_every_ms", &self.observe_every_ms)
            .field("fault", &self.fault)
            .field("publisher", &self.publisher.is_some())
            .finish()
    }
}

enum Message<P: PublicKey> {
    Propose {
        context: Context<Digest, P>,
        response: oneshot::Sender<Digest>,
    },
    Verify {
        context: Context<Digest, P>,
        payload: Digest,
        response: oneshot::Sender<bool>,
    },
    Broadcast {
        payload: Digest,
        plan: Plan<P>,
    },
    /// A finalization, with its encoded certificate (the whole `Finalization`).
    Finalized {
        payload: Digest,
        certificate: Bytes,
    },
    Notarized {
        payload: Digest,
    },
}

/// The engine's handle on the application: its `Automaton` and `Relay`.
#[derive(Clone, Debug)]
pub struct Mailbox<P: PublicKey> {
    sender: mpsc::UnboundedSender<Message<P>>,
}

impl<P: PublicKey> Automaton for Mailbox<P> {
    type Context = Context<Digest, P>;
    type Digest = Digest;

    async fn propose(&mut self, context: Self::Context) -> oneshot::Receiver<Digest> {
        let (response, receiver) = oneshot::channel();
        self.sender.send_lossy(Message::Propose { context, response });
        receiver
    }

    async fn verify(&mut self, context: Self::Context, payload: Digest) -> oneshot::Receiver<bool> {
        let (response, receiver) = oneshot::channel();
        self.sender.send_lossy(Message::Verify { context, payload, response });
        receiver
    }
}

// Certification is immediate: a block is executable once verified (the defaults).
impl<P: PublicKey> CertifiableAutomaton for Mailbox<P> {}

impl<P: PublicKey> RelayTrait for Mailbox<P> {
    type Digest = Digest;
    type PublicKey = P;
    type Plan = Plan<P>;

    fn broadcast(&mut self, payload: Digest, plan: Plan<P>) -> Feedback {
        if self.sender.send_lossy(Message::Broadcast { payload, plan }) {
            Feedback::Ok
        } else {
            Feedback::Closed
        }
    }
}

/// The engine's reporter: passes finalizations (and, in simulations, notarizations) to the
/// application, and records equivocation evidence, bounded and written by its own task
/// ([`crate::evidence`]); other activity is not used.
#[derive(Debug)]
pub struct Reporter<S, P: PublicKey> {
    sender: mpsc::UnboundedSender<Message<P>>,
    ledger: Ledger,
    /// Bounds evidence and hands it to the writer task (the node's data dir's evidence file).
    evidence: EvidenceSink,
    /// Whether notarizations are passed on (the ledger records them).
    notarizations: bool,
    _scheme: PhantomData<fn() -> S>,
}

impl<S, P: PublicKey> Clone for Reporter<S, P> {
    fn clone(&self) -> Self {
        Reporter {
            sender: self.sender.clone(),
            ledger: self.ledger.clone(),
            evidence: self.evidence.clone(),
            notarizations: self.notarizations,
            _scheme: PhantomData,
        }
    }
}

impl<S: Scheme, P: PublicKey> Reporter<S, P> {
    /// Records evidence of a fault the engine proved, naming the signer: the first
    /// [`crate::evidence::EVIDENCE_PER_SIGNER`] pieces per kind and signer in the ledger, and as
    /// one line each handed to the writer task, which appends (and syncs) it to the data dir's
    /// [`EVIDENCE_FILE`]: the kind, view, signer index and the hex of the encoded proof (both
    /// signed votes), which anyone holding the validator set can verify. Later pieces are only
    /// counted. Nothing here blocks: no file I/O in the engine's callback.
    fn evidence(
        &self,
        kind: &'static str,
        view: impl std::fmt::Display,
        signer: impl std::fmt::Display,
        proof: &impl commonware_codec::Encode,
    ) {
        if self.evidence.admit(kind, signer.to_string()) == Admit::Enough {
            self.ledger.fault(None);
            return;
        }
        warn!(%view, %signer, "{kind}");
        let what = format!("{kind} at view {view} by signer {signer}");
        let line = format!("{what}\tproof {}\n", hex(&proof.encode()));
        if !self.evidence.enqueue(line) {
            error!("evidence writer queue full: a piece of evidence is not persisted (kept in memory)");
            self.ledger.evidence_dropped();
        }
        self.ledger.fault(Some(what));
    }
}

impl<S: Scheme, P: PublicKey> ReporterTrait for Reporter<S, P> {
    type Activity = Activity<S, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match activity {
            Activity::Finalization(f) => {
                let certificate = f.encode();
                let sent =
                    self.sender.send_lossy(Message::Finalized { payload: f.proposal.payload, certificate });
                return if sent { Feedback::Ok } else { Feedback::Closed };
            }
            // Only where they are recorded: production sends nothing per notarization.
            Activity::Notarization(n) if self.notarizations => {
                self.sender.send_lossy(Message::Notarized { payload: n.proposal.payload });
            }
            Activity::ConflictingNotarize(c) => {
                self.evidence("conflicting notarize", c.view(), c.signer(), &c)
            }
            Activity::ConflictingFinalize(c) => {
                self.evidence("conflicting finalize", c.view(), c.signer(), &c)
            }
            Activity::NullifyFinalize(c) => self.evidence("nullify and finalize", c.view(), c.signer(), &c),
            _ => {}
        }
        Feedback::Ok
    }
}

/// Why a state could not be produced for a digest.
enum Lookup {
    /// A block on the way back to the executed tip is not here yet.
    Missing,
    /// The chain cannot be executed (conflicts with the finalized chain, or a header error).
    Invalid,
}

/// The application actor.
pub struct Application<
    E: Spawner + Clock,
    P: PublicKey,
    S: Sender<PublicKey = P>,
    R: Receiver<PublicKey = P>,
    B: Blocker<PublicKey = P>,
> {
    context: ContextCell<E>,
    /// The store: on this actor's thread until [`Self::with_storage_tile`] moves it onto the
    /// storage tile.
    storage: crate::storage_tile::Storage,
    /// The state after the executed (finalized) tip: this actor's own, since the store's may
    /// be on the storage tile.
    state: State,
    /// The highest height the store reported durable.
    durable: u64,
    /// The execution tile, once [`Self::with_execution_tile`] started it; `None`: blocks
    /// execute on this actor (the deterministic simulation).
    exec: Option<crate::execution_tile::ExecutionTile>,
    /// The tile's results (the sender is kept so the channel never closes).
    exec_results: (
        mpsc::UnboundedSender<Vec<crate::execution_tile::Executed>>,
        mpsc::UnboundedReceiver<Vec<crate::execution_tile::Executed>>,
    ),
    /// Blocks on the execution tile now.
    executing: HashSet<Digest>,
    /// Blocks the execution tile refused, with their heights (pruned below the tip).
    refused: HashMap<Digest, u64>,
    /// Peers' proposals whose checks before execution passed while their execution was on the
    /// tile (not checked again when the verification is retried; pruned with the blocks).
    prechecked: HashSet<Digest>,
    genesis: Genesis,
    limits: BlockLimits,
    source: BlockSource,
    chain: [u8; 32],
    verifier: Arc<dyn Verifier>,
    verified: Option<Arc<VerifiedCache>>,
    /// Signed observations: this validator's, and its peers' pool (see
    /// [`crate::observations`]).
    observations: Observations,
    /// The observation channel.
    obs_net: (S, R),
    /// Deposit attestations and voucher signatures (see [`crate::bridge`]).
    bridge: crate::bridge::Bridge,
    /// The bridge channel.
    bridge_net: (S, R),
    /// Devnet keys of the synthetic source (index 0: the authority) with their accounts, derived
    /// on first use, and the index of each account.
    keys: Vec<(Keypair, AccountId)>,
    key_of: HashMap<AccountId, usize>,
    ledger: Ledger,
    fault: Option<Fault>,
    governance: Option<Box<dyn ProposalSource>>,
    /// Told about every executed finalized block.
    publisher: Option<Box<dyn Publisher>>,
    /// Finalization certificates of blocks not executed yet, by digest, with the tip height
    /// when they arrived (bounded: [`MAX_CERTIFICATES`], pruned with the blocks).
    certificates: HashMap<Digest, (Bytes, u64)>,
    /// Orders finalized runs into exactly-once execution (the layer full nodes use).
    follower: crate::follower::Follower,
    mailbox: mpsc::UnboundedReceiver<Message<P>>,
    net: (S, R),
    /// Blocks peers that send what no honest validator sends (see [`crate::relay`]).
    blocker: B,
    /// Peers this actor blocked at least once (each counted once in the ledger).
    blocked: BTreeSet<P>,
    /// Per-peer accounts of the unsolicited blocks held.
    unsolicited: Unsolicited<P>,
    /// Range requests for the backfill server (bounded).
    backfill_requests: mpsc::Sender<RangeRequest<P>>,
    /// The backfill server's reads of the block log.
    log_reads: mpsc::Receiver<LogRead>,
    /// Keeps `log_reads` open whatever becomes of the server (a closed channel would end
    /// [`Self::run`]'s loop).
    _log_reads_open: mpsc::Sender<LogRead>,
    /// Encoded recent finalized blocks, shared with the backfill server.
    cache: Arc<Cache>,
    /// Started by [`Self::run`]: the backfill server, and the evidence writer (its file and
    /// queue).
    helpers: Option<(Server<S, B>, PathBuf, mpsc::Receiver<String>)>,
    /// Proposals built (the Byzantine fault's trick counter).
    led: usize,

    /// Every block known (own proposals and peers' relays), by digest.
    blocks: HashMap<Digest, ChainBlock>,
    /// Speculative state after each verified, not yet finalized block.
    states: HashMap<Digest, State>,
    /// What executing each of those blocks produced (handed to the store at finalization, so
    /// a block is executed once per validator, not twice).
    outcomes: HashMap<Digest, BlockOutcome>,
    /// The last executed (finalized) block: digest and height.
    tip: (Digest, u64),
    genesis_digest: Digest,
    halted: bool,
    /// Digests of recently executed blocks (the last [`KEEP_FINALIZED`] heights).
    executed: HashMap<Digest, u64>,
    /// Blocks something waits for (requested from peers every [`REQUEST_EVERY`]).
    wanted: BTreeSet<Digest>,
    /// The highest finalized height whose block is missing below a block we hold: backfilled
    /// by range requests, downwards from it.
    backfill: Option<u64>,
    /// Peers heard from, in order of first contact: range requests rotate among them.
    peers: Vec<P>,
    next_peer: usize,
    /// The durable record of the unfinalized blocks this validator proposed or voted for.
    pending: RecordFile,
    /// The blocks in it, with their heights.
    persisted: HashMap<Digest, u64>,
    /// Peers that told us they pruned what we need (warned once each).
    pruned_warned: BTreeSet<P>,

    pending_proposals: Vec<(Context<Digest, P>, oneshot::Sender<Digest>)>,
    pending_verifies: Vec<(Context<Digest, P>, Digest, oneshot::Sender<bool>)>,
    /// Finalized digests not yet executed, with the tip height when they arrived.
    pending_finals: Vec<(Digest, u64)>,
}

impl<
    E: Spawner + Clock,
    P: PublicKey,
    S: Sender<PublicKey = P>,
    R: Receiver<PublicKey = P>,
    B: Blocker<PublicKey = P>,
> std::fmt::Debug for Application<E, P, S, R, B>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("tip", &self.tip).field("halted", &self.halted).finish()
    }
}

/// The genesis block of a chain: the Simplex floor (`Floor::Genesis(genesis_block(..).id())`).
pub fn genesis_block(genesis: &Genesis) -> Result<ChainBlock, String> {
    let state = State::from_genesis(genesis).map_err(|e| format!("genesis: {e:?}"))?;
    Ok(ChainBlock::genesis(genesis.timestamp_ms, state.state_root()))
}

impl<
    E: Spawner + Clock,
    P: PublicKey,
    S: Sender<PublicKey = P>,
    R: Receiver<PublicKey = P>,
    B: Blocker<PublicKey = P>,
> Application<E, P, S, R, B>
{
    /// Builds the actor, its mailbox (Automaton + Relay) and its reporter. `net` is the block
    /// relay channel ([`crate::application`]'s tags); `observations_net` the observation
    /// channel ([`crate::observations::OBSERVATION_CHANNEL`]); `blocker` blocks peers on the
    /// validator network (the p2p oracle).
    #[allow(clippy::type_complexity)]
    pub fn new<Sch: Scheme>(
        context: E,
        cfg: Config,
        net: (S, R),
        observations_net: (S, R),
        bridge_net: (S, R),
        blocker: B,
    ) -> Result<(Self, Mailbox<P>, Reporter<Sch, P>), String> {
        let genesis = genesis_block(&cfg.genesis)?;
        let genesis_digest = genesis.id();
        let mut blocks = HashMap::new();
        blocks.insert(genesis_digest, genesis.clone());
        let cache = Arc::new(Cache::default());
        let tip = recover_chain(&cfg.store, &genesis, &cfg.limits, &cfg.ledger, &mut blocks, &cache)?;
        let executed =
            blocks.iter().filter(|(d, _)| **d != genesis_digest).map(|(d, b)| (*d, b.height_u64())).collect();
        if tip.1 == 0 && genesis.parent_state_root() != &cfg.store.state().state_root() {
            return Err("store state does not match the genesis".into());
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let cfg_ledger = cfg.ledger.clone();
        let evidence_path = cfg.store.path().join(EVIDENCE_FILE);
        let (evidence, evidence_rx) = EvidenceSink::new();
        let (backfill_requests, requests) = mpsc::channel(BACKFILL_QUEUE);
        let (log, log_reads) = mpsc::channel(1);
        let server = Server {
            requests,
            sender: net.0.clone(),
            blocker: blocker.clone(),
            cache: cache.clone(),
            log: log.clone(),
            limits: cfg.limits,
            ledger: cfg.ledger.clone(),
            range_max: RANGE_MAX,
        };
        let largest = held_bytes(cfg.limits.max_encoded_bytes(), cfg.limits.max_txs);
        let pending_path = cfg.store.path().join(PENDING_FILE);
        let (mut pending, records) = RecordFile::open(&pending_path, Faults::none())
            .map_err(|e| format!("cannot open {}: {e}", pending_path.display()))?;
        let mut persisted = HashMap::new();
        for bytes in &records {
            match ChainBlock::decode_cfg(bytes::Bytes::copy_from_slice(bytes), &cfg.limits) {
                Ok(block) if block.height_u64() > tip.1 => {
                    persisted.insert(block.id(), block.height_u64());
                    blocks.insert(block.id(), block);
                }
                Ok(_) => {}
                Err(e) => warn!(file = %pending_path.display(), %e, "skipping an undecodable pending block"),
            }
        }
        if !records.is_empty() {
            info!(
                kept = persisted.len(),
                read = records.len(),
                "recovered the unfinalized blocks this validator voted for"
            );
            compact_pending(&mut pending, &persisted, &blocks)
                .map_err(|e| format!("cannot compact {}: {e}", pending_path.display()))?;
        }
        let lie = match &cfg.fault {
            Some(Fault::ByzantineOracle(lie)) => Some(*lie),
            _ => None,
        };
        let bridge = crate::bridge::Bridge::new(
            cfg.observation_key,
            cfg.bridge_feed,
            evidence.clone(),
            cfg.ledger.clone(),
        );
        let observations = Observations::new(
            cfg.observer,
            cfg.observation_key,
            cfg.observe_every_ms,
            lie,
            tip.1,
            evidence.clone(),
            cfg.ledger.clone(),
        );
        let state = cfg.store.state().clone();
        let ledger_for_storage = cfg.ledger.clone();
        let app = Application {
            context: ContextCell::new(context),
            durable: cfg.store.durable_height(),
            state,
            storage: crate::storage_tile::Storage::inline(cfg.store, ledger_for_storage),
            exec: None,
            exec_results: mpsc::unbounded_channel(),
            executing: HashSet::new(),
            refused: HashMap::new(),
            prechecked: HashSet::new(),
            genesis: cfg.genesis,
            limits: cfg.limits,
            source: cfg.source,
            chain: cfg.chain,
            verifier: cfg.verifier,
            verified: cfg.verified,
            observations,
            obs_net: observations_net,
            bridge,
            bridge_net,
            keys: Vec::new(),
            key_of: HashMap::new(),
            ledger: cfg.ledger,
            fault: cfg.fault,
            governance: cfg.governance,
            publisher: cfg.publisher,
            certificates: HashMap::new(),
            follower: crate::follower::Follower::new(tip.1, tip.0, u64::MAX / 2),
            mailbox: receiver,
            net,
            blocker,
            blocked: BTreeSet::new(),
            unsolicited: Unsolicited::new(largest),
            backfill_requests,
            log_reads,
            _log_reads_open: log,
            cache,
            helpers: Some((server, evidence_path, evidence_rx)),
            led: 0,
            blocks,
            states: HashMap::new(),
            outcomes: HashMap::new(),
            tip,
            genesis_digest,
            halted: false,
            executed,
            wanted: BTreeSet::new(),
            backfill: None,
            peers: Vec::new(),
            next_peer: 0,
            pending,
            persisted,
            pruned_warned: BTreeSet::new(),
            pending_proposals: Vec::new(),
            pending_verifies: Vec::new(),
            pending_finals: Vec::new(),
        };
        Ok((
            app,
            Mailbox { sender: sender.clone() },
            Reporter {
                sender,
                notarizations: cfg_ledger.records_notarizations(),
                ledger: cfg_ledger,
                evidence,
                _scheme: PhantomData,
            },
        ))
    }

    /// The digest consensus starts from.
    pub fn genesis_digest(&self) -> Digest {
        self.genesis_digest
    }

    /// Moves the store onto the storage tile, its own thread (see [`crate::storage_tile`]);
    /// `on_start` runs first on that thread (the node pins it there). Without this call the
    /// store runs on the actor's thread (the deterministic simulation).
    pub fn with_storage_tile(mut self, on_start: Option<Box<dyn FnOnce() + Send>>) -> Result<Self, String> {
        let placeholder = crate::storage_tile::Storage::Threaded(crate::storage_tile::Threaded::closed());
        match std::mem::replace(&mut self.storage, placeholder) {
            crate::storage_tile::Storage::Inline { store, .. } => {
                self.storage = crate::storage_tile::Storage::threaded(*store, self.ledger.clone(), on_start)?;
                Ok(self)
            }
            threaded => {
                self.storage = threaded;
                Ok(self)
            }
        }
    }

    /// Starts the execution tile, its own thread (see [`crate::execution_tile`]); `on_start`
    /// runs first on that thread (the node pins it there). Without this call blocks execute on
    /// the actor (the deterministic simulation).
    pub fn with_execution_tile(mut self, on_start: Option<Box<dyn FnOnce() + Send>>) -> Result<Self, String> {
        if self.exec.is_none() {
            let tile = crate::execution_tile::ExecutionTile::start(
                self.exec_results.0.clone(),
                self.ledger.clone(),
                on_start,
            )?;
            self.exec = Some(tile);
        }
        Ok(self)
    }

    /// The execution tile's counters (for the metrics); `None` without the tile.
    pub fn execution_counters(&self) -> Option<Arc<crate::execution_tile::ExecutionCounters>> {
        self.exec.as_ref().map(crate::execution_tile::ExecutionTile::counters)
    }

    /// The storage tile's counters (for the metrics).
    pub fn storage_counters(&self) -> Arc<crate::storage_tile::StorageCounters> {
        self.storage.counters()
    }

    /// Runs the actor until the runtime stops.
    pub fn start(mut self) -> Handle<()> {
        spawn_cell!(self.context, self.run())
    }

    async fn run(mut self) {
        // The helpers are children of this task: they stop with it.
        if let Some((server, evidence_path, evidence_rx)) = self.helpers.take() {
            self.context.child("backfill").spawn(move |context| server.run(context));
            spawn_writer(self.context.child("evidence"), evidence_path, evidence_rx);
        }
        let mut next_request = self.context.current() + REQUEST_EVERY;
        let observe_every = Duration::from_millis(self.observations.every_ms());
        let mut next_observe = self.context.current() + observe_every;
        select_loop! {
            self.context,
            on_stopped => {
                debug!("application stopping");
            },
            Some(message) = self.mailbox.recv() else break => {
                self.handle(message);
            },
            Ok((from, bytes)) = self.net.1.recv() else break => {
                self.receive(from, bytes);
            },
            Ok((from, bytes)) = self.obs_net.1.recv() else break => {
                self.receive_observation(from, bytes);
            },
            Ok((from, bytes)) = self.bridge_net.1.recv() else break => {
                self.receive_bridge(from, bytes);
            },
            _ = self.context.sleep_until(next_observe) => {
                next_observe = self.context.current() + observe_every;
                self.observe();
                self.bridge_tick();
            },
            Some(read) = self.log_reads.recv() else break => {
                self.read_log(read);
            },
            Some(results) = self.exec_results.1.recv() else break => {
                self.take_executed(results);
            },
            _ = self.context.sleep_until(next_request) => {
                next_request = self.context.current() + REQUEST_EVERY;
                self.request_wanted();
            },
        }
    }

    /// A message on the block channel: a block, or a request for one. Cheap whatever it is:
    /// a block is decoded once (bounded by the limits) and held on its sender's account unless
    /// it was asked for; a range request is handed to the backfill server.
    fn receive(&mut self, from: P, mut rest: IoBuf) {
        if !self.peers.contains(&from) {
            self.peers.push(from.clone());
        }
        let tag = rest.as_ref().first().copied();
        if tag.is_some() {
            rest.advance(1);
        }
        match tag {
            Some(TAG_BLOCK) => {
                let encoded = rest.remaining();
                match ChainBlock::decode_cfg(rest, &self.limits) {
                    Ok(block) => self.receive_block(from, block, encoded),
                    Err(e) => self.block_peer(from, BlockReason::Undecodable, &e.to_string()),
                }
            }
            Some(TAG_REQUEST) => {
                let Ok(digest) = Digest::decode(rest) else {
                    return self.block_peer(from, BlockReason::MalformedRequest, "undecodable block request");
                };
                if let Some(block) = self.blocks.get(&digest) {
                    let bytes = wire_block(block);
                    let _ = self.net.0.send(Recipients::One(from), bytes, false);
                }
            }
            Some(TAG_RANGE) => {
                let (Ok(from_height), Ok(to_height)) = (rest.try_get_u64(), rest.try_get_u64()) else {
                    return self.block_peer(from, BlockReason::MalformedRequest, "undecodable range request");
                };
                if rest.has_remaining() {
                    return self.block_peer(
                        from,
                        BlockReason::MalformedRequest,
                        "range request with trailing bytes",
                    );
                }
                // Served by the backfill task, off this actor; a full queue drops the request.
                let request = RangeRequest { peer: from, from: from_height, to: to_height };
                if self.backfill_requests.try_send(request).is_err() {
                    self.ledger.backfill_dropped(1);
                }
            }
            Some(TAG_PRUNED) => {
                let Ok(first) = rest.try_get_u64() else {
                    return self.block_peer(from, BlockReason::MalformedRequest, "undecodable pruned answer");
                };
                if self.backfill.is_some_and(|m| m < first) && self.pruned_warned.insert(from.clone()) {
                    error!(
                        ?from,
                        first,
                        tip = self.tip.1,
                        "this validator is too far behind to catch up from this peer: the peer's block log \
                         starts at {first} and we need {}; catching up from a snapshot (state sync) is not \
                         built: restore this node's data dir from a recent peer's snapshot",
                        self.tip.1 + 1
                    );
                }
            }
            _ => {
                warn!(?from, ?tag, "unknown message on the block channel");
                if self.unsolicited.unknown_tag(&from) {
                    self.block_peer(from, BlockReason::UnknownTag, "repeated unknown messages");
                }
            }
        }
    }

    /// A decoded block from `from`: kept if asked for; otherwise held on the sender's account
    /// (bounded per peer), or dropped if far beyond the executed tip.
    fn receive_block(&mut self, from: P, block: ChainBlock, encoded: usize) {
        let digest = block.id();
        if self.blocks.contains_key(&digest) {
            return;
        }
        let backfilling = self.backfill.is_some_and(|m| block.height_u64() <= m);
        let solicited = self.wanted.contains(&digest) || backfilling;
        if !solicited {
            // Unsolicited blocks far beyond the executed tip are dropped (a catching-up
            // validator requests what it needs).
            if block.height_u64() > self.tip.1.saturating_add(MAX_AHEAD) {
                debug!(?from, height = block.height_u64(), "unsolicited block too far ahead");
                return;
            }
            if block.height_u64() <= self.tip.1 {
                // Below the executed tip and not asked for: of no use.
                return;
            }
            let bytes = held_bytes(encoded, block.block().txs.len());
            let admitted = self.unsolicited.admit(&from, digest, bytes, self.tip.1);
            for old in &admitted.evicted {
                self.blocks.remove(old);
            }
            self.ledger.unsolicited(self.unsolicited.totals(), admitted.evicted.len());
            if admitted.flooding {
                return self.block_peer(
                    from,
                    BlockReason::BlockFlood,
                    "unsolicited blocks beyond the per-peer bounds",
                );
            }
        }
        self.blocks.insert(digest, block);
        self.wanted.remove(&digest);
        self.progress();
    }

    /// Blocks `peer` on the validator network (once), drops what it made us hold, counts why.
    /// The network's block lasts its `block_duration` (lookup: 1 h local, 4 h recommended); a
    /// peer that misbehaves again afterwards is blocked again (counted once).
    fn block_peer(&mut self, peer: P, reason: BlockReason, why: &str) {
        if self.blocked.insert(peer.clone()) {
            warn!(?peer, ?reason, why, "blocking a peer");
            self.ledger.peer_blocked(reason);
        } else {
            debug!(?peer, ?reason, why, "blocking a peer again");
        }
        for d in self.unsolicited.drop_peer(&peer) {
            self.blocks.remove(&d);
        }
        self.ledger.unsolicited(self.unsolicited.totals(), 0);
        self.peers.retain(|p| p != &peer);
        let _ = self.blocker.block(peer);
    }

    /// A message on the observation channel (see [`crate::observations`]), checked against the
    /// executed tip's state: a sender of what no honest validator sends is blocked.
    fn receive_observation(&mut self, from: P, bytes: IoBuf) {
        let now = self.now_ms();
        if let Received::Block(label) =
            self.observations.receive(from.as_ref(), bytes.as_ref(), &self.state, now)
        {
            self.block_peer(from, BlockReason::InvalidObservation, label);
        }
    }

    /// A message on the bridge channel (see [`crate::bridge`]), checked against the executed
    /// tip's state: a sender of what no honest validator sends is blocked.
    fn receive_bridge(&mut self, from: P, bytes: IoBuf) {
        if let crate::bridge::Received::Block(label) =
            self.bridge.receive(from.as_ref(), bytes.as_ref(), &self.state)
        {
            self.block_peer(from, BlockReason::InvalidAttestation, label);
        }
    }

    /// Polls the deposit feed, attests and signs what is new, sends it (see [`crate::bridge`]).
    fn bridge_tick(&mut self) {
        if self.halted {
            return;
        }
        let now = self.now_ms();
        for bytes in self.bridge.tick(&self.state, now) {
            let _ = self.bridge_net.0.send(Recipients::All, bytes, false);
        }
    }

    /// Signs this validator's observation and sends it when it is time (see
    /// [`crate::observations`]).
    fn observe(&mut self) {
        if self.halted {
            return;
        }
        let now = self.now_ms();
        for (targets, bytes) in self.observations.sign(self.tip.1, &self.state, now) {
            let recipients = match targets {
                Targets::All => Recipients::All,
                Targets::Validators(vs) => {
                    let validators = &self.state.validators;
                    Recipients::Some(
                        vs.iter()
                            .filter_map(|v| {
                                let key = validators.get(usize::from(*v))?.key?;
                                P::decode(Bytes::copy_from_slice(&key)).ok()
                            })
                            .collect(),
                    )
                }
            };
            let _ = self.obs_net.0.send(recipients, bytes, false);
        }
    }

    /// The most recent observation a block on the chain ending at `digest` carried (among the
    /// blocks held, at most [`KEEP_FINALIZED`] back): what a Byzantine leader replays.
    fn replayable(&self, mut digest: Digest) -> Option<bastion_types::SignedObservation> {
        for _ in 0..KEEP_FINALIZED {
            let block = self.blocks.get(&digest)?;
            if let Some(o) = block.block().oracle.last() {
                return Some(o.clone());
            }
            digest = block.parent_digest();
        }
        None
    }

    /// The backfill server's read of raw block-log entries (file reads only; decoding and
    /// sending are the server's).
    /// (On the storage tile, after the appends queued before it.)
    fn read_log(&mut self, read: LogRead) {
        if let Err(e) = self.storage.read(read, self.tip.1) {
            self.halt(e);
        }
    }

    fn request_wanted(&mut self) {
        if self.halted {
            return;
        }
        let blocks = &self.blocks;
        self.wanted.retain(|d| !blocks.contains_key(d));
        for digest in self.wanted.iter().take(REQUESTS_MAX) {
            let mut bytes = Vec::with_capacity(33);
            bytes.push(TAG_REQUEST);
            bytes.extend_from_slice(digest.as_ref());
            let _ = self.net.0.send(Recipients::All, bytes, false);
        }
        if let Some(missing) = self.backfill
            && missing > self.tip.1
            && !self.peers.is_empty()
        {
            // Downwards from the highest missing height, one peer at a time (rotating, so a
            // peer that cannot serve is passed over at the next round).
            let from = missing.saturating_sub(RANGE_MAX - 1).max(self.tip.1 + 1);
            let peer = self.peers[self.next_peer % self.peers.len()].clone();
            self.next_peer = self.next_peer.wrapping_add(1);
            debug!(from, to = missing, ?peer, "backfill request");
            let mut bytes = Vec::with_capacity(17);
            bytes.push(TAG_RANGE);
            bytes.extend_from_slice(&from.to_be_bytes());
            bytes.extend_from_slice(&missing.to_be_bytes());
            let _ = self.net.0.send(Recipients::One(peer), bytes, false);
        }
    }

    fn handle(&mut self, message: Message<P>) {
        match message {
            Message::Propose { context, response } => {
                self.pending_proposals.push((context, response));
            }
            Message::Verify { context, payload, response } => {
                self.pending_verifies.push((context, payload, response));
            }
            Message::Broadcast { payload, plan } => {
                self.relay(payload, plan);
                return;
            }
            Message::Notarized { payload } => {
                self.ledger.notarization_seen(payload, self.context.current());
                return;
            }
            Message::Finalized { payload, certificate } => {
                self.ledger.finalization_seen(payload, self.context.current());
                if self.publisher.is_some()
                    && !self.executed.contains_key(&payload)
                    && self.certificates.len() < MAX_CERTIFICATES
                {
                    self.certificates.insert(payload, (certificate, self.tip.1));
                }
                self.pending_finals.push((payload, self.tip.1));
            }
        }
        self.progress();
    }

    fn relay(&mut self, payload: Digest, plan: Plan<P>) {
        self.unsolicited.claim(&payload);
        let Some(block) = self.blocks.get(&payload) else {
            debug!(?payload, "relay of an unknown block");
            return;
        };
        let recipients = match plan {
            Plan::Forward { recipients, .. } => recipients,
            Plan::Prepare { .. } | Plan::Propose { .. } => Recipients::All,
        };
        let bytes = wire_block(block);
        let _ = self.net.0.send(recipients, bytes, false);
    }

    /// Retries everything that waits on blocks or state.
    fn progress(&mut self) {
        // Recomputed below from whatever still waits.
        self.wanted.clear();
        self.backfill = None;
        if self.halted {
            // Stop voting and proposing: drop every response (the engine times the view out).
            self.pending_proposals.clear();
            self.pending_verifies.clear();
            self.pending_finals.clear();
            return;
        }
        self.execute_finalized();
        if self.halted {
            return self.progress();
        }
        for (context, response) in std::mem::take(&mut self.pending_proposals) {
            if response.is_closed() {
                continue;
            }
            match self.build(&context) {
                Ok(digest) => {
                    self.ledger.proposed(digest, self.context.current());
                    response.send_lossy(digest);
                }
                Err(Lookup::Missing) => self.pending_proposals.push((context, response)),
                Err(Lookup::Invalid) => warn!(round = ?context.round, "cannot build on parent"),
            }
        }
        for (context, payload, response) in std::mem::take(&mut self.pending_verifies) {
            if response.is_closed() {
                continue;
            }
            match self.verify(&context, payload) {
                Ok(valid) => {
                    response.send_lossy(valid);
                }
                Err(Lookup::Missing) => self.pending_verifies.push((context, payload, response)),
                Err(Lookup::Invalid) => {
                    response.send_lossy(false);
                }
            }
        }
    }

    /// The state after executing `digest`: the store's state at the tip, a cached speculative
    /// state, or one computed from the nearest known ancestor.
    fn state_after(&mut self, digest: Digest) -> Result<State, Lookup> {
        self.ensure_state(digest)?;
        self.state_ref(digest).cloned().ok_or(Lookup::Missing)
    }

    /// The state after `digest`, if it is the executed tip or a cached speculative state.
    fn state_ref(&self, digest: Digest) -> Option<&State> {
        if digest == self.tip.0 { Some(&self.state) } else { self.states.get(&digest) }
    }

    /// Makes the state after `digest` available to [`Self::state_ref`], executing (and caching)
    /// the blocks from the nearest known state. Clones a state only to start from it and to
    /// keep intermediate states, never the last one.
    fn ensure_state(&mut self, digest: Digest) -> Result<(), Lookup> {
        if self.state_ref(digest).is_some() {
            return Ok(());
        }
        // Walk back (iteratively: a lagging validator may hold a long unexecuted chain) to the
        // nearest block whose state is known, then execute forward, caching each state.
        let mut chain = Vec::new();
        let mut cursor = digest;
        let mut state = loop {
            if cursor == self.tip.0 {
                break self.state.clone();
            }
            if let Some(s) = self.states.get(&cursor) {
                break s.clone();
            }
            if self.refused.contains_key(&cursor) {
                return Err(Lookup::Invalid);
            }
            if self.executing.contains(&cursor) {
                // On the execution tile: retried when its result arrives.
                return Err(Lookup::Missing);
            }
            self.unsolicited.claim(&cursor);
            let Some(block) = self.blocks.get(&cursor) else {
                self.wanted.insert(cursor);
                return Err(Lookup::Missing);
            };
            if block.height_u64() <= self.tip.1 {
                // At or below the finalized tip but not on the finalized chain.
                return Err(Lookup::Invalid);
            }
            chain.push(cursor);
            cursor = block.parent_digest();
        };
        if self.exec.is_some() {
            // To the execution tile; the caller retries once the result is back.
            let mut blocks = Vec::with_capacity(chain.len());
            for d in chain.iter().rev() {
                let block = self.blocks.get(d).ok_or(Lookup::Missing)?;
                let parent_root = *block.parent_state_root();
                blocks.push(crate::execution_tile::JobBlock {
                    digest: *d,
                    parent_root,
                    block: self.as_executed(block).into_owned(),
                });
            }
            self.submit_execution(crate::execution_tile::Job { start: state, blocks })?;
            return Err(Lookup::Missing);
        }
        for d in chain.into_iter().rev() {
            let block = self.blocks.get(&d).ok_or(Lookup::Missing)?;
            if block.parent_state_root() != &state.state_root() {
                warn!(height = block.height_u64(), "block carries a parent state root we did not compute");
                return Err(Lookup::Invalid);
            }
            let started = std::time::Instant::now();
            let applied = state.apply_block(&self.as_executed(block));
            self.ledger.add_time(|t| &mut t.execution_ns, started);
            match applied {
                Ok(out) => {
                    self.outcomes.insert(d, out);
                }
                Err(e) => {
                    warn!(height = block.height_u64(), ?e, "block does not execute");
                    return Err(Lookup::Invalid);
                }
            }
            if d == digest {
                self.states.insert(d, state);
                return Ok(());
            }
            self.states.insert(d, state.clone());
        }
        Ok(())
    }

    /// Queues `job` on the execution tile and marks its blocks as executing.
    fn submit_execution(&mut self, job: crate::execution_tile::Job) -> Result<(), Lookup> {
        let digests: Vec<Digest> = job.blocks.iter().map(|b| b.digest).collect();
        let Some(tile) = self.exec.as_mut() else { return Err(Lookup::Invalid) };
        if let Err(e) = tile.submit(job) {
            self.halt(e);
            return Err(Lookup::Invalid);
        }
        self.executing.extend(digests);
        Ok(())
    }

    /// The execution tile's results: states and outcomes cached (above the tip), refusals
    /// remembered; then everything waiting is retried.
    fn take_executed(&mut self, results: Vec<crate::execution_tile::Executed>) {
        for (digest, result) in results {
            self.executing.remove(&digest);
            let Some(height) = self.blocks.get(&digest).map(ChainBlock::height_u64) else { continue };
            if height <= self.tip.1 {
                continue;
            }
            match result {
                Ok((state, out)) => {
                    self.states.insert(digest, state);
                    self.outcomes.insert(digest, out);
                }
                Err(why) => {
                    warn!(height, %why, "block does not execute");
                    self.refused.insert(digest, height);
                }
            }
        }
        self.progress();
    }

    /// This validator's clock, in ms since the Unix epoch (the runtime's: simulated in
    /// simulations).
    fn now_ms(&self) -> u64 {
        let now = self.context.current().duration_since(UNIX_EPOCH).unwrap_or_default();
        u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
    }

    /// Derives the synthetic source's devnet keys for `traders` traders (index 0: the
    /// authority), once.
    fn derive_synthetic_keys(&mut self, traders: u64) {
        let want = usize::try_from(traders).unwrap_or(0).saturating_add(1);
        if self.keys.len() < want {
            self.keys = std::iter::once(bastion_client::devnet_authority())
                .chain((1..=traders).map(bastion_client::devnet_trader))
                .map(|k| {
                    let id = k.account();
                    (k, id)
                })
                .collect();
            self.key_of = self.keys.iter().enumerate().map(|(i, (_, id))| (*id, i)).collect();
        }
    }

    /// The transactions of a block on `state` at `height`, signed.
    fn block_txs(&mut self, state: &State, seed: u64, height: u64, time_ms: u64) -> Vec<(Tx, TxAuth)> {
        match &mut self.source {
            BlockSource::Pool { source, max_txs } => source.take(state, (*max_txs).min(self.limits.max_txs)),
            BlockSource::Synthetic(s) => {
                let mut s = *s;
                // The proposer never builds more than the limits let verifiers decode.
                s.txs_per_block = s.txs_per_block.min(self.limits.max_txs);
                self.derive_synthetic_keys(s.traders);
                let ids = self.keys.iter().map(|(_, id)| *id).collect();
                let mut w = Workload::new(seed, s.traders, PathKind::Calm, &self.genesis).with_ids(ids);
                w.height = height;
                w.time_ms = time_ms;
                for (n, (_, id)) in w.nonces.iter_mut().zip(&self.keys) {
                    *n = state.accounts.get(id).map_or(0, |a| a.nonce);
                }
                let block = if height == 1 {
                    let txs = w.funding_txs(s.deposit_micros);
                    w.block_with(txs)
                } else {
                    w.next_block(state, s.txs_per_block)
                };
                block
                    .txs
                    .into_iter()
                    .filter_map(|tx| {
                        let (key, _) = self.keys.get(*self.key_of.get(&tx.signer)?)?;
                        let signed = key.sign(&self.chain, tx.nonce, tx.action);
                        Some((signed.tx, signed.auth))
                    })
                    .collect()
            }
        }
    }

    /// The trick this proposal plays: [`Trick::Honest`] but for a Byzantine-leader fault.
    fn next_trick(&mut self) -> Trick {
        let Some(Fault::ByzantineLeader(tricks)) = &self.fault else { return Trick::Honest };
        let trick = tricks.get(self.led % tricks.len().max(1)).copied().unwrap_or(Trick::Honest);
        self.led = self.led.wrapping_add(1);
        warn!(?trick, "fault injection: a Byzantine leader's trick");
        trick
    }

    fn build(&mut self, context: &Context<Digest, P>) -> Result<Digest, Lookup> {
        let parent = context.parent.1;
        let state = self.state_after(parent)?;
        let height = state.height.saturating_add(1);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&parent.as_ref()[..8]);
        let trick = self.next_trick();
        // Block time is this proposer's clock, strictly after the parent's.
        let timestamp_ms = trick.timestamp(self.now_ms(), state.timestamp_ms);
        let started = std::time::Instant::now();
        let (txs, mut auth): (Vec<Tx>, Vec<TxAuth>) =
            self.block_txs(&state, u64::from_le_bytes(seed), height, timestamp_ms).into_iter().unzip();
        self.ledger.add_time(|t| &mut t.sequencer_ns, started);
        let proposals = match &mut self.governance {
            Some(source) => source.take(&state, height),
            None => Vec::new(),
        };
        // Per validator the newest pooled observation that this block may carry.
        let oracle =
            state.admissible_observations(height, timestamp_ms, &self.observations.candidates(&state));
        // Deposits 2/3 of stake attested and vouchers 2/3 of stake signed.
        let (deposits, vouchers) = self.bridge.candidates(&state);
        let mut block =
            bastion_types::Block { height, timestamp_ms, oracle, txs, proposals, deposits, vouchers };
        trick.rewrite(&mut block, &mut auth, &state, &self.chain, &self.limits);
        let replay = if trick == Trick::ReplayObservation { self.replayable(parent) } else { None };
        trick.rewrite_oracle(&mut block, &state, replay, self.observations.own_key());
        self.ledger.add_proposed(block.txs.len() as u64);
        let root = state.state_root();
        let block = ChainBlock::new(parent, root, block, auth, &trick.limits(&self.limits)).map_err(|e| {
            error!(%e, "cannot build a block");
            Lookup::Invalid
        })?;
        let digest = block.id();
        if self.exec.is_some() && !trick.proposes_invalid() {
            // The digest does not depend on the execution: the proposal goes to the engine now
            // and executes on the tile meanwhile (its child's proposal waits for the state; a
            // proposal that does not execute is refused there and by every peer).
            let job = crate::execution_tile::Job {
                start: state,
                blocks: vec![crate::execution_tile::JobBlock {
                    digest,
                    parent_root: root,
                    block: self.as_executed(&block).into_owned(),
                }],
            };
            self.submit_execution(job)?;
            debug!(height, txs = block.block().txs.len(), view = %context.round.view(), "proposed");
            for extra in trick.extra_blocks(&block, &self.limits) {
                let _ = self.net.0.send(Recipients::All, wire_block(&extra), false);
            }
            for extra in trick.extra_messages() {
                let _ = self.net.0.send(Recipients::All, extra, false);
            }
            self.blocks.insert(digest, block);
            self.persist(digest)?;
            return Ok(digest);
        }
        let mut next = state;
        let started = std::time::Instant::now();
        let applied = next.apply_block(&self.as_executed(&block));
        self.ledger.add_time(|t| &mut t.execution_ns, started);
        match applied {
            Ok(out) => {
                self.outcomes.insert(digest, out);
            }
            Err(e) if trick.proposes_invalid() => {
                // A Byzantine leader proposes what it built anyway (simulations only).
                warn!(?e, height, ?trick, "fault injection: proposing a block that does not execute");
                self.blocks.insert(digest, block);
                self.persist(digest)?;
                return Ok(digest);
            }
            Err(e) => {
                error!(?e, height, "own proposal does not execute");
                return Err(Lookup::Invalid);
            }
        }
        debug!(height, txs = block.block().txs.len(), view = %context.round.view(), "proposed");
        for extra in trick.extra_blocks(&block, &self.limits) {
            let _ = self.net.0.send(Recipients::All, wire_block(&extra), false);
        }
        for extra in trick.extra_messages() {
            let _ = self.net.0.send(Recipients::All, extra, false);
        }
        self.blocks.insert(digest, block);
        self.states.insert(digest, next);
        self.persist(digest)?;
        Ok(digest)
    }

    fn verify(&mut self, context: &Context<Digest, P>, payload: Digest) -> Result<bool, Lookup> {
        // Consensus refers to it: no longer on its sender's account.
        self.unsolicited.claim(&payload);
        let Some(block) = self.blocks.get(&payload).cloned() else {
            self.wanted.insert(payload);
            return Err(Lookup::Missing);
        };
        if block.parent_digest() != context.parent.1 {
            warn!(round = ?context.round, "proposal's parent differs from the engine's");
            return Ok(false);
        }
        if self.prechecked.contains(&payload) {
            // Checked before its execution went to the tile; waiting for the result.
            return self.verified_execution(context, payload, &block);
        }
        self.ensure_state(context.parent.1)?;
        let Some(parent) = self.state_ref(context.parent.1) else { return Err(Lookup::Missing) };
        let (parent_height, parent_ts, parent_root) =
            (parent.height, parent.timestamp_ms, parent.state_root());
        // Far cheaper than the signatures, so before them: every transaction must be includable
        // on the parent state (a signer with an account, its next nonce).
        let includable = parent.check_txs(&block.block().txs);
        if block.height_u64() != parent_height.saturating_add(1) {
            // Whatever our state or clock: the leader proposed an invalid block.
            self.block_peer(
                context.leader.clone(),
                BlockReason::InvalidProposal,
                "proposal height is not parent + 1",
            );
            return Ok(false);
        }
        let ts = block.block().timestamp_ms;
        let now = self.now_ms();
        if !timestamp_in_window(ts, parent_ts, now) {
            // Our clock decides this: not a reason to block anyone.
            warn!(ts, parent = parent_ts, now, "proposal timestamp outside this validator's window");
            self.ledger.refused_timestamp();
            return Ok(false);
        }
        if block.parent_state_root() != &parent_root {
            error!(
                height = block.height_u64(),
                "proposal's parent state root differs from ours: refusing it (a finalized one would halt us)"
            );
            return Ok(false);
        }
        // Decided by the parent state, whose root the leader just confirmed it shares with us:
        // an honest leader never proposes such a block, so the leader is blocked.
        if let Err(e) = includable {
            warn!(height = block.height_u64(), %e, "proposal carries a transaction it may not include");
            self.block_peer(context.leader.clone(), BlockReason::InvalidProposal, &e.to_string());
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let checked = self.check_signatures(&block);
        self.ledger.add_time(|t| &mut t.signatures_ns, started);
        if let Err(why) = checked {
            // A signature is valid or not whatever our state: the leader proposed it.
            warn!(height = block.height_u64(), %why, "proposal carries a transaction it may not");
            self.block_peer(context.leader.clone(), BlockReason::InvalidProposal, &why);
            return Ok(false);
        }
        if self.exec.is_some() {
            self.prechecked.insert(payload);
        }
        self.verified_execution(context, payload, &block)
    }

    /// The last step of [`Self::verify`]: executes the proposal speculatively (here, or on the
    /// execution tile) and, once it executed, persists it before the vote.
    fn verified_execution(
        &mut self,
        context: &Context<Digest, P>,
        payload: Digest,
        block: &ChainBlock,
    ) -> Result<bool, Lookup> {
        // Executes speculatively and caches the result (or refuses a header error). Execution
        // checks the governance proposals (2/3 of stake's valid signatures at the next nonce,
        // inside the window) before anything else: once, on the honest path.
        match self.ensure_state(payload) {
            Ok(_) => {
                self.persist(payload)?;
                Ok(true)
            }
            Err(Lookup::Invalid) => {
                // Forged governance and observations the exchange refuses are, like an
                // unincludable transaction, decided by the shared parent state and the block
                // alone: name the leader that proposed them.
                let refused = self.state_ref(context.parent.1).and_then(|p| {
                    let proposals = p.check_proposals(block.block()).err().map(|e| e.to_string());
                    proposals
                        .or_else(|| {
                            p.check_observations(block.block()).err().map(|e: BlockError| e.to_string())
                        })
                        .or_else(|| p.check_bridge(block.block()).err().map(|e: BlockError| e.to_string()))
                });
                if let Some(e) = refused {
                    warn!(height = block.height_u64(), %e, "proposal carries a proposal or observation it may not");
                    self.block_peer(context.leader.clone(), BlockReason::InvalidProposal, &e);
                }
                Ok(false)
            }
            Err(Lookup::Missing) => Err(Lookup::Missing),
        }
    }

    /// Every transaction of a peer's proposal is signed by a key whose account is its signer,
    /// over the message the client signed (rebuilt from the transaction: its body encoding is
    /// canonical), under the one ZIP-215 rule of every backend.
    fn check_signatures(&self, block: &ChainBlock) -> Result<(), String> {
        let txs = &block.block().txs;
        let mut messages = Vec::with_capacity(txs.len());
        let mut body = Vec::new();
        for (i, (tx, auth)) in txs.iter().zip(block.auth()).enumerate() {
            if account_of(&auth.public_key) != tx.signer {
                return Err(format!("transaction {i}: the key does not belong to account {:?}", tx.signer));
            }
            let mut msg = Vec::new();
            bastion_client::signed_message(&self.chain, tx, &mut body, &mut msg);
            messages.push(msg);
        }
        let mut items: Vec<SigItem<'_>> = block
            .auth()
            .iter()
            .zip(&messages)
            .map(|(a, m)| SigItem { public_key: &a.public_key, signature: &a.signature, message: m })
            .collect();
        let total = items.len();
        // What this validator's ingress already verified is not verified again.
        let mut index: Vec<usize> = (0..total).collect();
        if let Some(cache) = &self.verified {
            let keys: Vec<_> = items.iter().map(VerifiedCache::key).collect();
            let mut known = Vec::new();
            cache.lookup(&keys, &mut known);
            let mut k = known.iter();
            items.retain(|_| !k.next().copied().unwrap_or(false));
            let mut k = known.iter();
            index.retain(|_| !k.next().copied().unwrap_or(false));
        }
        self.ledger.add_signatures(total as u64, items.len() as u64);
        let verdicts = self.verifier.verify(&items);
        match verdicts.iter().position(|ok| !ok) {
            Some(i) => Err(format!(
                "transaction {}: invalid signature ({} of {} invalid)",
                index.get(i).copied().unwrap_or(i),
                verdicts.iter().filter(|ok| !**ok).count(),
                total
            )),
            None => Ok(()),
        }
    }

    /// Makes a block durable before this validator votes for (or proposes) it. A failure halts
    /// the validator: it must not vote for a block it could lose.
    fn persist(&mut self, digest: Digest) -> Result<(), Lookup> {
        if self.persisted.contains_key(&digest) {
            return Ok(());
        }
        let Some(block) = self.blocks.get(&digest) else { return Err(Lookup::Missing) };
        let height = block.height_u64();
        if let Err(e) = self.pending.append(&block.encode()) {
            self.halt(format!("cannot persist block {digest} before voting for it: {e}"));
            return Err(Lookup::Invalid);
        }
        self.persisted.insert(digest, height);
        Ok(())
    }

    /// The exchange block as this validator executes it: the block itself, unless a fault is
    /// injected at its height.
    fn as_executed<'a>(&self, block: &'a ChainBlock) -> Cow<'a, bastion_types::Block> {
        if self.fault.as_ref() == Some(&Fault::DivergeAt(block.height_u64())) {
            warn!(height = block.height_u64(), "fault injection: executing a tampered block");
            Cow::Owned(bastion_types::Block { txs: Vec::new(), ..block.block().clone() })
        } else {
            Cow::Borrowed(block.block())
        }
    }

    fn halt(&mut self, why: String) {
        error!(%why, height = self.tip.1, "HALTING: this validator no longer votes, proposes or executes");
        self.ledger.halt(why);
        self.halted = true;
    }

    /// Executes finalized blocks durably, in height order, once each.
    fn execute_finalized(&mut self) {
        let finals = std::mem::take(&mut self.pending_finals);
        let mut keep = Vec::new();
        for (digest, queued_at) in finals {
            if self.halted {
                break;
            }
            if self.executed.contains_key(&digest) {
                continue;
            }
            // Walk back from the finalized block to the executed tip.
            let mut chain = Vec::new();
            let mut cursor = digest;
            let mut missing = false;
            while cursor != self.tip.0 {
                self.unsolicited.claim(&cursor);
                let Some(block) = self.blocks.get(&cursor) else {
                    self.wanted.insert(cursor);
                    if let Some(child) = chain.last().and_then(|d| self.blocks.get(d)) {
                        let h = child.height_u64().saturating_sub(1);
                        self.backfill = Some(self.backfill.map_or(h, |m| m.max(h)));
                    }
                    missing = true;
                    break;
                };
                if block.height_u64() <= self.tip.1 {
                    if chain.is_empty() {
                        // Already executed (a late or repeated finalization)...
                        if self.ledger.digest_at(block.height_u64()) != Some(cursor) {
                            // ...unless it is another block at an executed height.
                            self.halt(format!(
                                "finalization of {cursor} at height {} conflicts with the executed chain",
                                block.height_u64()
                            ));
                        }
                    } else {
                        self.halt(format!("finalized block {digest} does not descend from the executed tip"));
                    }
                    chain.clear();
                    break;
                }
                chain.push(cursor);
                cursor = block.parent_digest();
            }
            if missing {
                if self.tip.1 > queued_at.saturating_add(KEEP_FINALIZED) {
                    // The chain moved on by later finalizations, which cover this one; its blocks
                    // may no longer be held by anyone.
                    debug!(?digest, "dropping a stale finalization");
                    continue;
                }
                // Wait for the blocks (requested from peers).
                keep.push((digest, queued_at));
                continue;
            }
            if chain.is_empty() {
                continue;
            }
            // The one ordered, exactly-once layer full nodes use too: this validator's engine
            // finalized `digest` (its certificate checked by the engine), and `chain` links it
            // down to the executed tip.
            let run: Vec<ChainBlock> =
                chain.iter().rev().filter_map(|d| self.blocks.get(d).cloned()).collect();
            if run.len() != chain.len() {
                continue;
            }
            self.follower.offer_finalized(run);
            while let Some(ready) = self.follower.next() {
                let block = ready.block;
                let d = block.id();
                let before = self.state.state_root();
                if block.parent_state_root() != &before {
                    self.halt(format!(
                        "finalized block {d} at height {} carries parent root {} but ours is {}",
                        block.height_u64(),
                        hex(block.parent_state_root()),
                        hex(&before)
                    ));
                    break;
                }
                let link: [u8; 32] = block.parent_digest().as_ref().try_into().unwrap_or([0u8; 32]);
                // Executed once: the speculative result of verify (or propose) when there is
                // one, computed from this very parent state (states are keyed by digest, which
                // commits to the whole chain); otherwise (a block finalized before we verified
                // it, e.g. while catching up) executed now.
                let witness = block.witness();
                let (next, out) = match (self.states.remove(&d), self.outcomes.remove(&d)) {
                    (Some(next), Some(out)) => (next, out),
                    _ => {
                        let mut next = self.state.clone();
                        let started = std::time::Instant::now();
                        let applied = next.apply_block(&self.as_executed(&block));
                        self.ledger.add_time(|t| &mut t.execution_ns, started);
                        match applied {
                            Ok(out) => (next, out),
                            Err(e) => {
                                self.halt(format!("store cannot execute finalized block {d}: {e:?}"));
                                break;
                            }
                        }
                    }
                };
                // The log append goes to the storage tile with the state it leads to; this
                // actor keeps its own copy (sharing the state's structure) as the tip.
                self.state = next.clone();
                let adopt = crate::storage_tile::Adopt {
                    block: self.as_executed(&block).into_owned(),
                    link,
                    witness,
                    next,
                    out: out.clone(),
                };
                if let Err(e) = self.storage.adopt(adopt) {
                    self.halt(e);
                    break;
                }
                self.tip = (d, block.height_u64());
                self.executed.insert(d, block.height_u64());
                if let BlockSource::Pool { source, .. } = &mut self.source {
                    source.finalized(&self.state, &block.block().txs);
                }
                let wire = Bytes::from(wire_block(&block));
                self.cache.insert(block.height_u64(), wire.clone(), KEEP_FINALIZED);
                let certificate = self.certificates.remove(&d).map(|c| c.0);
                if let Some(publisher) = self.publisher.as_mut() {
                    publisher.finalized(&Published {
                        block: &block,
                        wire: &wire,
                        certificate: certificate.as_deref(),
                        events: &out.events,
                        root: out.root,
                        state: &self.state,
                    });
                }
                let fund = self.state.insurance_fund();
                let finalized = Finalized::of(d, &block, out.root, &out.events, fund);
                self.ledger.add_finalized(&finalized);
                self.ledger.record(block.height_u64(), finalized);
                self.observations.finalized(block.block(), &self.state);
                self.bridge.finalized(block.block(), &out.events);
                let state = &self.state;
                self.ledger.oracle_record(block.height_u64(), || {
                    OracleRecord::of(block.block(), state, &out.events)
                });
            }
            // One group commit for the blocks of this run (the storage tile syncs them after
            // the appends queued before; inline, now).
            if let Err(e) = self.storage.commit() {
                self.halt(e);
            }
        }
        self.pending_finals.extend(keep);
        self.prune();
    }

    /// Drops speculative states at or below the tip and blocks well below it.
    fn prune(&mut self) {
        let tip = self.tip.1;
        let blocks = &self.blocks;
        self.states.retain(|d, _| blocks.get(d).is_some_and(|b| b.height_u64() > tip));
        let states = &self.states;
        self.outcomes.retain(|d, _| states.contains_key(d));
        let floor = tip.saturating_sub(KEEP_FINALIZED);
        let genesis = self.genesis_digest;
        self.blocks.retain(|d, b| *d == genesis || b.height_u64() > floor);
        let blocks = &self.blocks;
        self.unsolicited.retain(|d| blocks.contains_key(d));
        self.ledger.unsolicited(self.unsolicited.totals(), 0);
        self.executed.retain(|_, h| *h > floor);
        self.certificates.retain(|_, (_, at)| at.saturating_add(KEEP_FINALIZED) >= tip);
        self.refused.retain(|_, h| *h > tip);
        let blocks = &self.blocks;
        self.prechecked.retain(|d| blocks.get(d).is_some_and(|b| b.height_u64() > tip));
        // A block leaves the pending file only once the log holds it durably (the storage
        // tile may still be syncing the blocks just finalized).
        match self.storage.poll() {
            Ok(durable) => self.durable = durable,
            Err(e) => self.halt(e),
        }
        let durable = self.durable;
        self.persisted.retain(|_, h| *h > durable.min(tip));
        if self.pending.len_bytes() > PENDING_COMPACT_BYTES
            && let Err(e) = compact_pending(&mut self.pending, &self.persisted, &self.blocks)
        {
            self.halt(format!("cannot compact {PENDING_FILE}: {e}"));
        }
    }
}

/// Rebuilds the executed chain from the store's block log after a restart. Each log entry holds
/// the exchange block, the state roots before and after it and, as its link, the parent block's
/// digest: with the canonical encoding that is exactly the [`ChainBlock`], so its digest follows.
/// Any suffix of the log will do (the log is pruned behind snapshots): consecutive entries must
/// chain (each link is the previous entry's digest) and the last must be the store's height.
/// Returns the executed tip; keeps the last [`KEEP_FINALIZED`] blocks for peers that catch up;
/// records those heights in the ledger.
fn recover_chain(
    store: &Store,
    genesis: &ChainBlock,
    limits: &BlockLimits,
    ledger: &Ledger,
    blocks: &mut HashMap<Digest, ChainBlock>,
    cache: &Cache,
) -> Result<(Digest, u64), String> {
    let height = store.state().height;
    if height == 0 {
        return Ok((genesis.id(), 0));
    }
    let first = store.log().first_height().unwrap_or(height).max(height.saturating_sub(KEEP_FINALIZED) + 1);
    let mut tip: Option<(Digest, u64)> = None;
    for item in store.log().iter_from(first) {
        let (h, bytes) = item.map_err(|e| format!("reading the block log: {e}"))?;
        if h > height {
            break;
        }
        let (block, finalized) = logged_block(&bytes, limits)?;
        if block.height_u64() != h {
            return Err(format!("block log entry at height {h} holds block {}", block.height_u64()));
        }
        if let Some((digest, at)) = tip
            && (h != at + 1 || block.parent_digest() != digest)
        {
            return Err(format!("block log entry at height {h} does not link to height {at}"));
        }
        if h == 1 && block.parent_digest() != genesis.id() {
            return Err("block log entry at height 1 does not link to this genesis".into());
        }
        ledger.record_recovered(h, finalized);
        tip = Some((block.id(), h));
        cache.insert(h, Bytes::from(wire_block(&block)), KEEP_FINALIZED);
        blocks.insert(block.id(), block);
    }
    match tip {
        Some((digest, h)) if h == height => {
            info!(height, "recovered the executed chain from the block log");
            Ok((digest, h))
        }
        _ => Err(format!(
            "the store is at height {height} but its block log ({:?}..={:?}) does not hold that height",
            store.log().first_height(),
            store.log().last_height()
        )),
    }
}

/// The chain block a log entry holds (see [`recover_chain`]), and what it recorded.
pub(crate) fn logged_block(bytes: &[u8], limits: &BlockLimits) -> Result<(ChainBlock, Finalized), String> {
    let entry = bastion_store::LogEntry::decode(bytes)?;
    let parent = Digest::from(entry.link);
    let block = ChainBlock::from_witness(parent, entry.parent_root, entry.block, &entry.witness, limits)
        .map_err(|e| e.to_string())?;
    // The fund after the block is not in the entry; recovery does not need it.
    let finalized = Finalized::of(block.id(), &block, entry.root, &entry.events, 0);
    Ok((block, finalized))
}

/// Rewrites the pending-blocks file with just the blocks still pending.
fn compact_pending(
    pending: &mut RecordFile,
    persisted: &HashMap<Digest, u64>,
    blocks: &HashMap<Digest, ChainBlock>,
) -> std::io::Result<()> {
    let live: Vec<Vec<u8>> =
        persisted.keys().filter_map(|d| blocks.get(d)).map(|b| b.encode().to_vec()).collect();
    pending.rewrite(live.iter().map(Vec::as_slice))
}

/// A block as the block channel carries it: its tag, then its encoding.
pub(crate) fn wire_block(block: &ChainBlock) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + block.encode_size());
    bytes.push(TAG_BLOCK);
    bytes.extend_from_slice(&block.encode());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_time_window_is_bounded_on_both_sides() {
        let (parent, now) = (1_000_000, 1_010_000);
        assert!(timestamp_in_window(now, parent, now));
        assert!(timestamp_in_window(now + MAX_FUTURE_MS, parent, now));
        assert!(!timestamp_in_window(now + MAX_FUTURE_MS + 1, parent, now), "too far ahead");
        assert!(timestamp_in_window(now - MAX_PAST_MS, parent, now));
        assert!(
            !timestamp_in_window(now - MAX_PAST_MS - 1, parent, now),
            "too far behind the verifier's clock"
        );
        assert!(!timestamp_in_window(parent, parent, now - MAX_PAST_MS + 1), "not after the parent");
        // The window is tight enough to matter: a leader moves the chain's time by at most
        // 2.5 s (it was unbounded behind, 2 s ahead).
        const { assert!(MAX_FUTURE_MS + MAX_PAST_MS <= 2_500) };
    }
}
