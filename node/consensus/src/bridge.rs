//! The collateral bridge on the validator network: attesting source-chain deposits, signing
//! withdrawal vouchers, the gossip of both, the pool a leader builds a block's bridge items
//! from, and evidence of conflicting attestations.
//!
//! **Watching.** A validator with a [`DepositFeed`] (the node's watcher of its configured
//! source, `bastion-bridge`) learns each deposit once it has the source's confirmation depth.
//! One it has not seen credited on the executed tip it signs (over
//! `bastion_types::deposit_message`) and sends to every validator. It signs only what its own
//! source shows: an attestation is this validator's word that the deposit happened.
//!
//! **Vouchers.** After each executed block it signs every voucher created since it last looked
//! (over `bastion_types::voucher_message`) and sends the signature. A voucher's contents are the
//! chain's (a withdrawal executed them), so every honest validator signs every voucher.
//!
//! **Gossip.** Channel [`BRIDGE_CHANNEL`] carries postcard `(chain_id, Vec<Item>)`, at most
//! [`ITEMS_PER_MESSAGE`] items and [`WIRE_MAX_BYTES`]. Each item must be signed by the sender's
//! own validator (its identity key is the p2p key) and verify; a peer that sends anything else
//! (undecodable, oversize, a foreign chain, someone else's or a bad signature) is blocked
//! ([`crate::BlockReason::InvalidAttestation`]). Attestations of deposits already credited and
//! signatures of vouchers already signed or not yet known are dropped without blame (an honest
//! peer can be ahead or behind). Own unfinished items are sent again every [`RESEND_MS`], so
//! a validator that restarted or was cut off still gets them.
//!
//! **Pool.** Per source id, per validator, the first attestation seen (at most
//! [`POOLED_PER_VALIDATOR`] per validator: a lying validator fills only its own share); per
//! voucher, per validator, its signature. A leader offers, per source id, the deposit contents
//! whose attestations weigh 2/3 of stake, and per voucher the signatures once they do, to
//! `State::admissible_deposits` / `admissible_vouchers`. Executed blocks prune what they
//! credited or signed.
//!
//! **Evidence.** Two attestations by one validator for one source id with different contents
//! are written to the evidence file as `conflicting deposit attestation for source S by signer
//! V\tproof HEX`, HEX the postcard of `(BridgeDeposit, Approval, BridgeDeposit, Approval)`;
//! each (validator, source id) once.

use crate::{
    Ledger,
    evidence::{Admit, EvidenceSink},
};
use bastion_exchange::{State, sign_deposit, sign_voucher};
use bastion_store::hex;
use bastion_types::{Approval, AttestedDeposit, Block, BridgeDeposit, Event, SourceId, VoucherSignatures};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{debug, warn};

/// The p2p channel bridge attestations and voucher signatures travel on (4: observations).
pub const BRIDGE_CHANNEL: u64 = 5;

/// Messages per second per peer the channel's quota should allow (each carries up to
/// [`ITEMS_PER_MESSAGE`] items: 12,800 items a second).
pub const BRIDGE_QUOTA_PER_S: u32 = 100;

/// Items in one message at most.
pub const ITEMS_PER_MESSAGE: usize = 128;

/// Largest message: [`ITEMS_PER_MESSAGE`] items of at most ~160 bytes each, plus the chain id.
pub const WIRE_MAX_BYTES: usize = 24 << 10;

/// Attestations pooled per validator at most (a validator that attests deposits that never
/// credit fills only its own share).
pub const POOLED_PER_VALIDATOR: usize = 16_384;

/// How often a validator sends its unfinished attestations and signatures again (ms).
pub const RESEND_MS: u64 = 3_000;

/// Kind of evidence line for conflicting attestations.
pub const CONFLICTING_ATTESTATION: &str = "conflicting deposit attestation";

/// (validator, source id) pairs remembered as reported (the oldest forgotten beyond this).
const REPORTED_MAX: usize = 4_096;

/// What a validator's source showed since the last poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedPoll {
    /// The source's tip height, if known.
    pub tip: Option<u64>,
    /// Deposits that reached the confirmation depth, each with its source height.
    pub deposits: Vec<(BridgeDeposit, u64)>,
}

/// Where a validator learns of source-chain deposits: the node's watcher of its configured
/// source, or a scripted source in simulations. Polled on the actor's tick, so it must not
/// block (the node's watcher reads the source on its own thread).
pub trait DepositFeed: Send {
    /// What is new at `now_ms` (the runtime clock).
    fn poll(&mut self, now_ms: u64) -> FeedPoll;
}

/// One item of a bridge message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Item {
    /// A validator's attestation of a deposit.
    Deposit(BridgeDeposit, Approval),
    /// A validator's signature of stored voucher `id`.
    Voucher(u64, Approval),
}

/// The wire form of `items` for chain `chain_id`.
pub fn encode_wire(chain_id: &str, items: &[Item]) -> Vec<u8> {
    // Serializing plain data into memory cannot fail; an empty message would be refused.
    postcard::to_allocvec(&(chain_id, items)).unwrap_or_default()
}

/// A received message: at most [`WIRE_MAX_BYTES`] and [`ITEMS_PER_MESSAGE`] items, decoded
/// with nothing left over. `Err` is the rejection label.
pub fn decode_wire(bytes: &[u8]) -> Result<(String, Vec<Item>), &'static str> {
    if bytes.len() > WIRE_MAX_BYTES {
        return Err("oversize");
    }
    match postcard::take_from_bytes::<(String, Vec<Item>)>(bytes) {
        Ok(((_, items), [])) if items.len() > ITEMS_PER_MESSAGE => Err("oversize"),
        Ok((decoded, [])) => Ok(decoded),
        _ => Err("undecodable"),
    }
}

/// Running counts of this validator's bridge work, for metrics and `bastion status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BridgeTotals {
    /// Deposits its source showed confirmed (each source id once per run).
    pub deposits_seen: u64,
    /// Deposits it attested.
    pub deposits_attested: u64,
    /// Deposits credited by executed blocks.
    pub deposits_credited: u64,
    /// Amount credited by executed blocks (micro-units, all assets together).
    pub credited_amount: i128,
    /// Withdrawals executed (vouchers created).
    pub withdrawals: u64,
    /// Vouchers it signed.
    pub vouchers_signed: u64,
    /// Vouchers whose 2/3-of-stake signatures an executed block carried.
    pub vouchers_completed: u64,
    /// Attestations and signatures received from peers and pooled.
    pub items_received: u64,
    /// Items dropped without blame (already credited or signed, unknown voucher, pool full).
    pub items_dropped: u64,
    /// Items refused (the sender was blocked).
    pub items_refused: u64,
    /// Conflicting attestations seen (evidence).
    pub conflicts: u64,
    /// The source's tip height, as its watcher last reported it.
    pub source_height: u64,
    /// Source blocks between the source's tip and the oldest deposit this validator saw that
    /// is not credited yet (0 when none waits): how far crediting lags the source.
    pub credit_lag_blocks: u64,
}

/// Whether a received message's sender should be blocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Kept or dropped without blame.
    Fine,
    /// No honest validator sends this (the reason's label).
    Block(&'static str),
}

/// The bridge side of a validator.
pub(crate) struct Bridge {
    key: Option<(u16, [u8; 32])>,
    feed: Option<Box<dyn DepositFeed>>,
    /// Deposits its source showed, not yet credited: content and source height.
    seen: BTreeMap<SourceId, (BridgeDeposit, u64)>,
    /// Per source id, per validator, the first attestation seen.
    deposits: BTreeMap<SourceId, BTreeMap<u16, (BridgeDeposit, Approval)>>,
    /// Attestations pooled per validator.
    per_validator: BTreeMap<u16, usize>,
    /// Per unsigned voucher, per validator, its signature.
    vouchers: BTreeMap<u64, BTreeMap<u16, Approval>>,
    /// The highest voucher id this validator looked at for signing.
    vouchers_seen: u64,
    /// Items not yet sent.
    outbox: Vec<Item>,
    last_resend_ms: u64,
    reported: BTreeSet<(u16, SourceId)>,
    evidence: EvidenceSink,
    ledger: Ledger,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("key", &self.key.map(|k| k.0))
            .field("feed", &self.feed.is_some())
            .field("seen", &self.seen.len())
            .field("deposits", &self.deposits.len())
            .field("vouchers", &self.vouchers.len())
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// The bridge side of a validator that signs with `key` (none: it relays and proposes
    /// others' items only) and watches `feed`.
    pub(crate) fn new(
        key: Option<(u16, [u8; 32])>,
        feed: Option<Box<dyn DepositFeed>>,
        evidence: EvidenceSink,
        ledger: Ledger,
    ) -> Self {
        Bridge {
            key,
            feed,
            seen: BTreeMap::new(),
            deposits: BTreeMap::new(),
            per_validator: BTreeMap::new(),
            vouchers: BTreeMap::new(),
            vouchers_seen: 0,
            outbox: Vec::new(),
            last_resend_ms: 0,
            reported: BTreeSet::new(),
            evidence,
            ledger,
        }
    }

    /// The actor's tick on the executed tip's `state` at `now_ms`: polls the feed, attests
    /// what is new, signs new vouchers, and returns the messages to send to every validator.
    pub(crate) fn tick(&mut self, state: &State, now_ms: u64) -> Vec<Vec<u8>> {
        if let Some(feed) = self.feed.as_mut() {
            let poll = feed.poll(now_ms);
            let mut seen = 0u64;
            for (d, source_height) in poll.deposits {
                if state.credited(&d.source_id).is_some() {
                    continue;
                }
                if let std::collections::btree_map::Entry::Vacant(e) = self.seen.entry(d.source_id) {
                    e.insert((d.clone(), source_height));
                    seen = seen.saturating_add(1);
                    self.attest(state, d);
                }
            }
            let lag = self.lag(poll.tip);
            self.ledger.bridge(|b| {
                b.deposits_seen = b.deposits_seen.saturating_add(seen);
                if let Some(tip) = poll.tip {
                    b.source_height = tip;
                }
                b.credit_lag_blocks = lag;
            });
        }
        self.sign_vouchers(state);
        if now_ms.saturating_sub(self.last_resend_ms) >= RESEND_MS {
            self.last_resend_ms = now_ms;
            self.resend_own(state);
        }
        let items = std::mem::take(&mut self.outbox);
        items.chunks(ITEMS_PER_MESSAGE).map(|c| encode_wire(&state.chain_id, c)).collect()
    }

    /// Source blocks between `tip` and the oldest seen, uncredited deposit.
    fn lag(&self, tip: Option<u64>) -> u64 {
        let oldest = self.seen.values().map(|(_, h)| *h).min();
        match (tip, oldest) {
            (Some(t), Some(o)) => t.saturating_sub(o),
            _ => 0,
        }
    }

    /// Signs `d` (if this validator signs), pools it and queues it.
    fn attest(&mut self, state: &State, d: BridgeDeposit) {
        let Some((v, seed)) = self.key else { return };
        let a = sign_deposit(seed, v, &state.chain_id, &d);
        self.pool_deposit(v, &d, &a);
        self.outbox.push(Item::Deposit(d, a));
        self.ledger.bridge(|b| b.deposits_attested = b.deposits_attested.saturating_add(1));
    }

    /// Signs every voucher created since the last look.
    fn sign_vouchers(&mut self, state: &State) {
        let Some((v, seed)) = self.key else {
            self.vouchers_seen = state.last_voucher();
            return;
        };
        while self.vouchers_seen < state.last_voucher() {
            self.vouchers_seen = self.vouchers_seen.saturating_add(1);
            let Some(entry) = state.voucher(self.vouchers_seen) else { continue };
            if entry.signed() {
                continue;
            }
            let a = sign_voucher(seed, v, &state.chain_id, &entry.voucher);
            self.vouchers.entry(entry.voucher.id).or_default().insert(v, a.clone());
            self.outbox.push(Item::Voucher(entry.voucher.id, a));
            self.ledger.bridge(|b| b.vouchers_signed = b.vouchers_signed.saturating_add(1));
        }
    }

    /// Queues this validator's attestations of uncredited deposits and signatures of unsigned
    /// vouchers again (bounded by the outbox's messages: the oldest first).
    fn resend_own(&mut self, state: &State) {
        let Some((v, _)) = self.key else { return };
        let limit = ITEMS_PER_MESSAGE.saturating_mul(8);
        let mut items = Vec::new();
        for by in self.deposits.values() {
            if let Some((d, a)) = by.get(&v)
                && state.credited(&d.source_id).is_none()
            {
                items.push(Item::Deposit(d.clone(), a.clone()));
            }
            if items.len() >= limit {
                break;
            }
        }
        for (id, by) in &self.vouchers {
            if items.len() >= limit.saturating_mul(2) {
                break;
            }
            if let Some(a) = by.get(&v)
                && state.voucher(*id).is_some_and(|e| !e.signed())
            {
                items.push(Item::Voucher(*id, a.clone()));
            }
        }
        self.outbox.extend(items);
    }

    /// Pools validator `v`'s attestation `a` of `d`; `false` when its share is full or it
    /// attested this source id already (a conflict is recorded).
    fn pool_deposit(&mut self, v: u16, d: &BridgeDeposit, a: &Approval) -> bool {
        let count = self.per_validator.get(&v).copied().unwrap_or(0);
        let by = self.deposits.entry(d.source_id).or_default();
        if let Some((first, fa)) = by.get(&v) {
            if first != d {
                let (first, fa) = (first.clone(), fa.clone());
                self.conflict(v, &first, &fa, d, a);
            }
            return false;
        }
        if count >= POOLED_PER_VALIDATOR {
            if by.is_empty() {
                self.deposits.remove(&d.source_id);
            }
            return false;
        }
        by.insert(v, (d.clone(), a.clone()));
        self.per_validator.insert(v, count.saturating_add(1));
        true
    }

    /// A message on the bridge channel from the peer whose identity key is `sender`, checked
    /// against the executed tip's `state`.
    pub(crate) fn receive(&mut self, sender: &[u8], bytes: &[u8], state: &State) -> Received {
        let refuse = |ledger: &Ledger, label: &'static str| {
            ledger.bridge(|b| b.items_refused = b.items_refused.saturating_add(1));
            Received::Block(label)
        };
        let (chain_id, items) = match decode_wire(bytes) {
            Ok(d) => d,
            Err(label) => return refuse(&self.ledger, label),
        };
        if chain_id != state.chain_id {
            return refuse(&self.ledger, "foreign_chain");
        }
        let (mut kept, mut dropped) = (0u64, 0u64);
        for item in &items {
            let a = match item {
                Item::Deposit(_, a) | Item::Voucher(_, a) => a,
            };
            match state.validators.get(usize::from(a.validator.0)).and_then(|x| x.key) {
                Some(key) if key.as_slice() == sender => {}
                _ => return refuse(&self.ledger, "wrong_sender"),
            }
        }
        // The attestations of uncredited deposits, verified in one batch (one sender, one key:
        // 5x faster than one by one).
        let fresh: Vec<(&BridgeDeposit, &Approval)> = items
            .iter()
            .filter_map(|i| match i {
                Item::Deposit(d, a) if state.credited(&d.source_id).is_none() => Some((d, a)),
                _ => None,
            })
            .collect();
        if state.attestations_verify(&fresh).is_err() {
            return refuse(&self.ledger, "bad_signature");
        }
        for item in items {
            let a = match &item {
                Item::Deposit(_, a) | Item::Voucher(_, a) => a,
            };
            let v = a.validator.0;
            match item {
                Item::Deposit(d, a) => {
                    if state.credited(&d.source_id).is_some() {
                        dropped = dropped.saturating_add(1);
                        continue;
                    }
                    if self.pool_deposit(v, &d, &a) {
                        kept = kept.saturating_add(1);
                    } else {
                        dropped = dropped.saturating_add(1);
                    }
                }
                Item::Voucher(id, a) => {
                    let Some(entry) = state.voucher(id) else {
                        dropped = dropped.saturating_add(1);
                        continue;
                    };
                    if entry.signed() {
                        dropped = dropped.saturating_add(1);
                        continue;
                    }
                    if !state.voucher_signature_verifies(id, &a) {
                        return refuse(&self.ledger, "bad_signature");
                    }
                    match self.vouchers.entry(id).or_default().entry(v) {
                        std::collections::btree_map::Entry::Occupied(_) => {
                            dropped = dropped.saturating_add(1)
                        }
                        std::collections::btree_map::Entry::Vacant(e) => {
                            e.insert(a);
                            kept = kept.saturating_add(1);
                        }
                    }
                }
            }
        }
        self.ledger.bridge(|b| {
            b.items_received = b.items_received.saturating_add(kept);
            b.items_dropped = b.items_dropped.saturating_add(dropped);
        });
        Received::Fine
    }

    /// The leader's candidates on `state` (its parent state): per source id the deposit
    /// contents attested by 2/3 of stake, per voucher the signatures once they weigh 2/3.
    pub(crate) fn candidates(&self, state: &State) -> (Vec<AttestedDeposit>, Vec<VoucherSignatures>) {
        let mut deposits = Vec::new();
        for (id, by) in &self.deposits {
            if state.credited(id).is_some() {
                continue;
            }
            let mut contents: BTreeMap<&BridgeDeposit, (u128, Vec<Approval>)> = BTreeMap::new();
            for (v, (d, a)) in by {
                let e = contents.entry(d).or_default();
                e.0 = e.0.saturating_add(state.stake_of(*v));
                e.1.push(a.clone());
            }
            if let Some((d, (_, attestations))) = contents.into_iter().find(|(_, (s, _))| state.is_quorum(*s))
            {
                deposits.push(AttestedDeposit { deposit: d.clone(), attestations });
            }
            if deposits.len() >= bastion_types::DEPOSITS_PER_BLOCK_MAX {
                break;
            }
        }
        let mut vouchers = Vec::new();
        for (id, by) in &self.vouchers {
            let stake = by.keys().map(|v| state.stake_of(*v)).fold(0u128, u128::saturating_add);
            if state.is_quorum(stake) && state.voucher(*id).is_some_and(|e| !e.signed()) {
                vouchers.push(VoucherSignatures { id: *id, approvals: by.values().cloned().collect() });
            }
            if vouchers.len() >= bastion_types::VOUCHERS_PER_BLOCK_MAX {
                break;
            }
        }
        (state.admissible_deposits(&deposits), state.admissible_vouchers(&vouchers))
    }

    /// A finalized block was executed (`events` its events): what it credited and signed
    /// leaves the pool, and is counted.
    pub(crate) fn finalized(&mut self, block: &Block, events: &[Event]) {
        let mut amount: i128 = 0;
        for d in &block.deposits {
            let id = d.deposit.source_id;
            if let Some(by) = self.deposits.remove(&id) {
                for v in by.keys() {
                    if let Some(n) = self.per_validator.get_mut(v) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
            self.seen.remove(&id);
            amount = amount.saturating_add(d.deposit.amount);
        }
        for v in &block.vouchers {
            self.vouchers.remove(&v.id);
        }
        let withdrawals = events.iter().filter(|e| matches!(e, Event::Withdrew { .. })).count() as u64;
        let (credited, completed) = (block.deposits.len() as u64, block.vouchers.len() as u64);
        self.ledger.bridge(|b| {
            b.deposits_credited = b.deposits_credited.saturating_add(credited);
            b.credited_amount = b.credited_amount.saturating_add(amount);
            b.vouchers_completed = b.vouchers_completed.saturating_add(completed);
            b.withdrawals = b.withdrawals.saturating_add(withdrawals);
        });
    }

    /// Records validator `v`'s two attestations of one source id with different contents.
    fn conflict(
        &mut self,
        v: u16,
        first: &BridgeDeposit,
        fa: &Approval,
        second: &BridgeDeposit,
        sa: &Approval,
    ) {
        let id = first.source_id;
        if !self.reported.insert((v, id)) {
            return;
        }
        if self.reported.len() > REPORTED_MAX {
            self.reported.pop_first();
        }
        self.ledger.bridge(|b| b.conflicts = b.conflicts.saturating_add(1));
        if self.evidence.admit(CONFLICTING_ATTESTATION, v.to_string()) == Admit::Enough {
            return;
        }
        let what = format!("{CONFLICTING_ATTESTATION} for source {id} by signer {v}");
        warn!(validator = v, source = %id, "two different attestations of one deposit");
        let proof = postcard::to_allocvec(&(first, fa, second, sa)).unwrap_or_default();
        if !self.evidence.enqueue(format!("{what}\tproof {}\n", hex(&proof))) {
            self.ledger.evidence_dropped();
        }
        self.ledger.bridge_fault(what);
        debug!(validator = v, "conflicting attestation recorded");
    }
}

/// Decodes an evidence line's proof and checks it: two attestations of the named source id
/// with different contents, both validly signed by the named validator for `state`'s chain.
pub fn verify_conflicting_attestation(state: &State, line: &str) -> bool {
    let Some((what, proof)) = line.split_once("\tproof ") else { return false };
    let Some(bytes) = crate::spec::from_hex(proof.trim()) else { return false };
    let Ok((d1, a1, d2, a2)) =
        postcard::from_bytes::<(BridgeDeposit, Approval, BridgeDeposit, Approval)>(&bytes)
    else {
        return false;
    };
    let named = format!("{CONFLICTING_ATTESTATION} for source {} by signer {}", d1.source_id, a1.validator.0);
    what == named
        && d1.source_id == d2.source_id
        && d1 != d2
        && a1.validator == a2.validator
        && state.attestation_verifies(&d1, &a1)
        && state.attestation_verifies(&d2, &a2)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bastion_exchange::{DEVNET_VALIDATOR_SEEDS, Genesis};
    use bastion_types::{AccountId, AssetId, ValidatorIndex};
    use commonware_utils::channel::mpsc;

    fn state() -> State {
        State::from_genesis(&Genesis { devnet: false, authority: None, ..Genesis::devnet() }).unwrap()
    }

    fn public(v: u16) -> [u8; 32] {
        let seed = DEVNET_VALIDATOR_SEEDS[usize::from(v)];
        ed25519_zebra::VerificationKey::from(&ed25519_zebra::SigningKey::from(seed)).into()
    }

    fn dep(id: u8, amount: i128) -> BridgeDeposit {
        BridgeDeposit { source_id: SourceId([id; 32]), to: AccountId(9), asset: AssetId(0), amount }
    }

    fn desk(v: Option<u16>, feed: Option<Box<dyn DepositFeed>>) -> (Bridge, Ledger, mpsc::Receiver<String>) {
        let ledger = Ledger::default();
        let (sink, rx) = EvidenceSink::new();
        let key = v.map(|v| (v, DEVNET_VALIDATOR_SEEDS[usize::from(v)]));
        (Bridge::new(key, feed, sink, ledger.clone()), ledger, rx)
    }

    /// Reports its deposits once.
    struct Once(Vec<BridgeDeposit>);
    impl DepositFeed for Once {
        fn poll(&mut self, _now_ms: u64) -> FeedPoll {
            FeedPoll {
                tip: Some(10),
                deposits: std::mem::take(&mut self.0).into_iter().map(|d| (d, 7)).collect(),
            }
        }
    }

    fn attestation(s: &State, v: u16, d: &BridgeDeposit) -> Vec<u8> {
        let a = sign_deposit(DEVNET_VALIDATOR_SEEDS[usize::from(v)], v, &s.chain_id, d);
        encode_wire(&s.chain_id, &[Item::Deposit(d.clone(), a)])
    }

    #[test]
    fn the_largest_message_fits_the_wire_bound_and_more_items_are_refused() {
        let d = BridgeDeposit {
            source_id: SourceId([0xff; 32]),
            to: AccountId(u64::MAX),
            asset: AssetId(u16::MAX),
            amount: i128::MIN,
        };
        let a = Approval { validator: ValidatorIndex(u16::MAX), signature: [0xff; 64] };
        let chain = "c".repeat(bastion_exchange::CHAIN_ID_MAX);
        let full = vec![Item::Deposit(d.clone(), a.clone()); ITEMS_PER_MESSAGE];
        let bytes = encode_wire(&chain, &full);
        assert!(bytes.len() <= WIRE_MAX_BYTES, "{} bytes", bytes.len());
        assert_eq!(decode_wire(&bytes).unwrap().1.len(), ITEMS_PER_MESSAGE);
        let more = vec![Item::Voucher(u64::MAX, a); ITEMS_PER_MESSAGE + 1];
        assert_eq!(decode_wire(&encode_wire(&chain, &more)), Err("oversize"));
        assert_eq!(decode_wire(&[0xff; 3]), Err("undecodable"));
        let mut trailing = encode_wire(&chain, &full[..1]);
        trailing.push(0);
        assert_eq!(decode_wire(&trailing), Err("undecodable"));
    }

    #[test]
    fn a_leader_proposes_a_deposit_only_once_two_thirds_attested_it() {
        let s = state();
        let d = dep(1, 500);
        let (mut me, ledger, _rx) = desk(Some(0), Some(Box::new(Once(vec![d.clone()]))));
        let out = me.tick(&s, 1_000);
        assert_eq!(out.len(), 1, "its own attestation goes out");
        let t = ledger.totals().bridge;
        assert_eq!(
            (t.deposits_seen, t.deposits_attested, t.source_height, t.credit_lag_blocks),
            (1, 1, 10, 3)
        );
        assert!(me.candidates(&s).0.is_empty(), "1 of 4");
        assert_eq!(me.receive(&public(1), &attestation(&s, 1, &d), &s), Received::Fine);
        assert!(me.candidates(&s).0.is_empty(), "2 of 4");
        assert_eq!(me.receive(&public(2), &attestation(&s, 2, &d), &s), Received::Fine);
        let (deposits, _) = me.candidates(&s);
        assert_eq!(deposits.len(), 1);
        assert_eq!(deposits[0].attestations.len(), 3);
        // The block the leader builds from them executes.
        let mut next = s.clone();
        let block = Block {
            height: 1,
            timestamp_ms: s.timestamp_ms + 1,
            deposits: deposits.clone(),
            ..Block::default()
        };
        let out = next.apply_block(&block).unwrap();
        me.finalized(&block, &out.events);
        assert!(me.candidates(&next).0.is_empty(), "credited: pruned");
        let t = ledger.totals().bridge;
        assert_eq!((t.deposits_credited, t.credited_amount, t.credit_lag_blocks), (1, 500, 3));
        // A late attestation of the credited deposit is dropped without blame.
        assert_eq!(me.receive(&public(3), &attestation(&s, 3, &d), &next), Received::Fine);
        assert_eq!(ledger.totals().bridge.items_dropped, 1);
    }

    #[test]
    fn a_sender_is_blocked_for_someone_elses_or_a_bad_signature_and_a_conflict_is_evidence() {
        let s = state();
        let d = dep(2, 100);
        let (mut me, ledger, mut rx) = desk(Some(0), None);
        // Validator 1's attestation sent by validator 2.
        assert_eq!(me.receive(&public(2), &attestation(&s, 1, &d), &s), Received::Block("wrong_sender"));
        // A signature over another deposit.
        let a = sign_deposit(DEVNET_VALIDATOR_SEEDS[1], 1, &s.chain_id, &dep(3, 100));
        let forged = encode_wire(&s.chain_id, &[Item::Deposit(d.clone(), a)]);
        assert_eq!(me.receive(&public(1), &forged, &s), Received::Block("bad_signature"));
        let foreign = encode_wire("other", &[]);
        assert_eq!(me.receive(&public(1), &foreign, &s), Received::Block("foreign_chain"));
        assert_eq!(ledger.totals().bridge.items_refused, 3);
        // Validator 1 attests source id 2 with two amounts: the second is evidence, not pooled.
        assert_eq!(me.receive(&public(1), &attestation(&s, 1, &d), &s), Received::Fine);
        assert_eq!(me.receive(&public(1), &attestation(&s, 1, &dep(2, 999)), &s), Received::Fine);
        assert_eq!(ledger.totals().bridge.conflicts, 1);
        let line = rx.try_recv().expect("an evidence line");
        assert!(line.starts_with(CONFLICTING_ATTESTATION), "{line}");
        assert!(verify_conflicting_attestation(&s, line.trim_end()));
        let renamed = line.replacen("by signer 1", "by signer 2", 1);
        assert!(!verify_conflicting_attestation(&s, renamed.trim_end()));
        // Its first content still counts; the second never does.
        for v in [2, 3] {
            assert_eq!(me.receive(&public(v), &attestation(&s, v, &dep(2, 999)), &s), Received::Fine);
        }
        let (deposits, _) = me.candidates(&s);
        assert!(deposits.is_empty(), "999 has validators 2 and 3 only: {deposits:?}");
    }

    #[test]
    fn a_liar_fills_only_its_own_share_of_the_pool() {
        let s = state();
        let (mut me, ledger, _rx) = desk(None, None);
        let mut kept = 0;
        for i in 0..(POOLED_PER_VALIDATOR + 10) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let d = BridgeDeposit { source_id: SourceId(id), ..dep(0, 1) };
            if me.pool_deposit(1, &d, &sign_deposit(DEVNET_VALIDATOR_SEEDS[1], 1, &s.chain_id, &d)) {
                kept += 1;
            }
        }
        assert_eq!(kept, POOLED_PER_VALIDATOR);
        // Another validator's attestations still get in.
        let d = dep(7, 5);
        assert_eq!(me.receive(&public(2), &attestation(&s, 2, &d), &s), Received::Fine);
        assert_eq!(ledger.totals().bridge.items_received, 1);
    }

    #[test]
    fn every_validator_signs_each_new_voucher_once_and_the_leader_proposes_two_thirds() {
        let mut s = state();
        // Fund an account, withdraw: voucher 1.
        let d = BridgeDeposit { to: bastion_types::account_of(&public(0)), ..dep(1, 1_000_000) };
        let attested = AttestedDeposit {
            deposit: d.clone(),
            attestations: (0..3)
                .map(|v| sign_deposit(DEVNET_VALIDATOR_SEEDS[v], v as u16, &s.chain_id, &d))
                .collect(),
        };
        let b1 = Block {
            height: 1,
            timestamp_ms: s.timestamp_ms + 1,
            deposits: vec![attested],
            ..Block::default()
        };
        s.apply_block(&b1).unwrap();
        let w = bastion_types::Tx {
            signer: d.to,
            nonce: 1,
            action: bastion_types::Action::Withdraw { asset: AssetId(0), amount: 1_000 },
        };
        let b2 = Block { height: 2, timestamp_ms: s.timestamp_ms + 1, txs: vec![w], ..Block::default() };
        s.apply_block(&b2).unwrap();
        assert_eq!(s.last_voucher(), 1);
        let mut desks: Vec<(Bridge, Ledger, mpsc::Receiver<String>)> =
            (0..4).map(|v| desk(Some(v), None)).collect();
        let sent: Vec<Vec<Vec<u8>>> = desks.iter_mut().map(|(b, _, _)| b.tick(&s, 0)).collect();
        assert!(sent.iter().all(|m| m.len() == 1), "one message each");
        assert!(desks[0].0.tick(&s, 1).is_empty(), "signed once");
        let leader = &mut desks[0].0;
        assert!(leader.candidates(&s).1.is_empty(), "its own signature alone");
        for v in 1..3u16 {
            assert_eq!(leader.receive(&public(v), &sent[usize::from(v)][0], &s), Received::Fine);
        }
        let (_, vouchers) = leader.candidates(&s);
        assert_eq!(vouchers.len(), 1);
        let b3 = Block { height: 3, timestamp_ms: s.timestamp_ms + 1, vouchers, ..Block::default() };
        s.apply_block(&b3).unwrap();
        assert!(s.voucher(1).unwrap().signed());
        assert_eq!(desks[0].1.totals().bridge.vouchers_signed, 1);
    }
}
