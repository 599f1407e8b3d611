//! Validators' signed observations of the market on the validator network: signing, gossip,
//! the bounded pool a leader selects from, evidence of double observations, and disagreement.
//!
//! **Signing.** A validator with an [`Observer`] and an identity key signs at most one
//! observation per height: `height` = its finalized height + 1, and only when its finalized
//! height advanced since its last signature and at least `observe_every_ms` passed (the runtime
//! clock, so simulations are deterministic). After a restart it signs only once its finalized
//! height advanced past what it recovered: the height it signed last is at most its recovered
//! height + 1 (it signs after the synced commit of the height it builds on), so it never signs
//! two observations for one height. An observation with neither prices nor volatilities is not
//! sent. The observation goes into its own pool and to every validator.
//!
//! **Gossip.** Channel [`OBSERVATION_CHANNEL`] carries postcard `(chain_id, SignedObservation)`,
//! at most [`WIRE_MAX_BYTES`]. Each message is checked in this order, every rejection counted
//! by reason in the [`Ledger`] ([`crate::Ledger::observations_rejected`]) and dropped:
//! size (`oversize`), decoding with no trailing bytes (`undecodable`), the chain id
//! (`foreign_chain`), the p2p sender is the observation's validator (its identity key is the
//! validator's key in the state: `wrong_sender`), `State::observation_verdict` on the executed
//! tip (the exchange's labels: `unknown_validator`, `no_key`, `malformed`, `oversize`,
//! `bad_signature`, `stale`), time at most [`FUTURE_MS`] ahead of this validator's clock
//! (`future`), and a repeat of a pooled one (`duplicate`). A peer that sends what no honest
//! validator sends (everything but `stale`, `future` and `duplicate`) is blocked
//! ([`crate::BlockReason::InvalidObservation`]).
//!
//! **Pool.** Per validator, the first valid observation seen for each of its
//! [`POOL_PER_VALIDATOR`] highest heights: at most `validators × POOL_PER_VALIDATOR`
//! observations, whatever peers send (a peer can only fill its own validator's slots). A leader
//! offers the pooled observations newer than the stored ones to
//! `State::admissible_observations`, which picks per validator the newest that passes.
//!
//! **Evidence.** Two different validly signed observations from one validator for one height
//! (one pooled or included in a finalized block, the other received or included) are written
//! to the evidence file as `conflicting observation at height H by signer V\tproof HEX` where
//! HEX is the postcard of the pair `(SignedObservation, SignedObservation)`; each
//! (validator, height) once, and at most [`crate::evidence::EVIDENCE_PER_SIGNER`] lines per
//! validator (the rest counted).
//!
//! **Disagreement.** After finalized blocks execute, each underlying's index is compared with
//! this validator's own latest observation (while that is fresh): beyond
//! [`DISAGREEMENT_PPM`] counts a disagreement (one per underlying per block) and logs once per
//! episode. A block is never refused for it.

use crate::{
    Ledger, Observer,
    byzantine::Lie,
    evidence::{Admit, EvidenceSink},
};
use bastion_exchange::{ObservationError, State, sign_observation, testkit::Rng};
use bastion_store::hex;
use bastion_types::{
    Block, Event, MarketId, MarketStatus, Observation, PriceMicros, SignedObservation, UnderlyingId,
    ValidatorIndex,
};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{debug, warn};

/// The p2p channel observations travel on (0-3: votes, certificates, resolver, blocks).
pub const OBSERVATION_CHANNEL: u64 = 4;

/// Messages per second per peer the channel's quota should allow: an honest validator sends at
/// most one observation per `observe_every_ms` (default 200 ms, 5 a second).
pub const OBSERVATION_QUOTA_PER_S: u32 = 100;

/// Largest observation message: the postcard of the largest well-formed observation
/// (`OBSERVATION_PRICES_MAX` prices, `OBSERVATION_VOLS_MAX` volatility quotes, every varint at
/// its widest) is under 9.5 KiB, plus the chain id (at most `CHAIN_ID_MAX` bytes).
pub const WIRE_MAX_BYTES: usize = 12 << 10;

/// Observations kept per validator (its highest heights).
pub const POOL_PER_VALIDATOR: usize = 8;

/// How far ahead of this validator's clock a received observation's time may be (ms).
pub const FUTURE_MS: u64 = 500;

/// An index this far (ppm) from this validator's own fresh observation is a disagreement.
pub const DISAGREEMENT_PPM: i64 = 20_000;

/// (validator, height) pairs remembered as reported (the oldest forgotten beyond this).
const REPORTED_MAX: usize = 4_096;

/// Kind of evidence line for a double observation.
pub const DOUBLE_OBSERVATION: &str = "conflicting observation";

/// The labels of every rejection reason gossip counts, in a fixed order (the metrics' label
/// values): the channel's own and the exchange's `ObservationError::label`s that
/// `State::observation_verdict` can return.
pub const REJECT_LABELS: [&str; 11] = [
    "oversize",
    "undecodable",
    "foreign_chain",
    "wrong_sender",
    "unknown_validator",
    "no_key",
    "malformed",
    "bad_signature",
    "stale",
    "future",
    "duplicate",
];

/// The wire form of `o` for chain `chain_id`.
pub fn encode_wire(chain_id: &str, o: &SignedObservation) -> Vec<u8> {
    // Serializing plain data into memory cannot fail; an empty message would be refused.
    postcard::to_allocvec(&(chain_id, o)).unwrap_or_default()
}

/// A received message: at most [`WIRE_MAX_BYTES`], then decoded with nothing left over.
/// `Err` is the rejection label (`oversize`, `undecodable`).
pub fn decode_wire(bytes: &[u8]) -> Result<(String, SignedObservation), &'static str> {
    if bytes.len() > WIRE_MAX_BYTES {
        return Err("oversize");
    }
    match postcard::take_from_bytes::<(String, SignedObservation)>(bytes) {
        Ok((decoded, [])) => Ok(decoded),
        _ => Err("undecodable"),
    }
}

/// What adding an observation to the pool found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pooled {
    /// Kept.
    New,
    /// The same observation is pooled already.
    Known,
    /// Another observation of this validator for this height is pooled: evidence.
    Conflict(Box<SignedObservation>),
    /// Lower than every height kept for this validator, which has its fill: dropped.
    Old,
}

/// Per validator, the first valid observation seen for each of its highest heights.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pool {
    by_validator: BTreeMap<u16, BTreeMap<u64, SignedObservation>>,
}

impl Pool {
    /// Adds a verified observation (see [`Pooled`]).
    pub(crate) fn add(&mut self, o: &SignedObservation) -> Pooled {
        let slots = self.by_validator.entry(o.observation.validator.0).or_default();
        let height = o.observation.height;
        match slots.get(&height) {
            Some(p) if p.observation == o.observation => return Pooled::Known,
            Some(p) => return Pooled::Conflict(Box::new(p.clone())),
            None => {}
        }
        if slots.len() >= POOL_PER_VALIDATOR {
            if slots.first_key_value().is_some_and(|(lowest, _)| *lowest > height) {
                return Pooled::Old;
            }
            slots.pop_first();
        }
        slots.insert(height, o.clone());
        Pooled::New
    }

    /// The pooled observation of `validator` for `height`, if any.
    pub(crate) fn get(&self, validator: u16, height: u64) -> Option<&SignedObservation> {
        self.by_validator.get(&validator)?.get(&height)
    }

    /// Pooled observations newer than their validator's stored one on `state`: a leader's
    /// candidates.
    pub(crate) fn candidates(&self, state: &State) -> Vec<SignedObservation> {
        let mut out = Vec::new();
        for (v, slots) in &self.by_validator {
            let stored = state.latest_observation(ValidatorIndex(*v)).map_or(0, |o| o.timestamp_ms);
            out.extend(slots.values().filter(|o| o.observation.timestamp_ms > stored).cloned());
        }
        out
    }

    /// Observations held, over all validators.
    pub(crate) fn len(&self) -> usize {
        self.by_validator.values().map(BTreeMap::len).sum()
    }
}

/// Who a signed observation goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Targets {
    /// Every peer.
    All,
    /// These validators (indices in the validator set).
    Validators(Vec<u16>),
}

/// What a received message amounts to for its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Kept (or dropped for a reason an honest peer can cause).
    Fine,
    /// No honest validator sends this: block the sender (the reason's label).
    Block(&'static str),
}

/// One finalized block's oracle as executed (recorded by simulations' ledgers for their
/// checkers: the index bound and the staleness guards).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OracleRecord {
    /// The block's time.
    pub timestamp_ms: u64,
    /// Observations the block carried.
    pub included: usize,
    /// The index moves the block made: (underlying, new index, clamped by the max-move guard).
    pub moves: Vec<(UnderlyingId, PriceMicros, bool)>,
    /// Each underlying's index after the block.
    pub index: Vec<PriceMicros>,
    /// Each validator's stored observation after the block.
    pub latest: Vec<Option<Observation>>,
    /// The effective status of each market after the block.
    pub statuses: Vec<(MarketId, MarketStatus)>,
    /// `oracle.observation_max_age_ms` after the block.
    pub max_age_ms: u64,
}

impl OracleRecord {
    /// What `block` did to the oracle, from the state after it and its events.
    pub(crate) fn of(block: &Block, after: &State, events: &[Event]) -> Self {
        OracleRecord {
            timestamp_ms: block.timestamp_ms,
            included: block.oracle.len(),
            moves: events
                .iter()
                .filter_map(|e| match e {
                    Event::Index { underlying, price, clamped, .. } => Some((*underlying, *price, *clamped)),
                    _ => None,
                })
                .collect(),
            index: after.underlyings.iter().map(|u| u.index).collect(),
            latest: (0..after.validators.len())
                .map(|v| {
                    after.latest_observation(ValidatorIndex(u16::try_from(v).unwrap_or(u16::MAX))).cloned()
                })
                .collect(),
            statuses: after.markets.iter().map(|(id, m)| (*id, m.effective_status())).collect(),
            max_age_ms: after.oracle.observation_max_age_ms,
        }
    }

    /// The honest validators' (those `honest` accepts) stored observations that are fresh at
    /// this block and price `underlying`: their lowest and highest price.
    pub fn honest_range(&self, underlying: UnderlyingId, honest: impl Fn(u16) -> bool) -> Option<(i64, i64)> {
        let prices = self.latest.iter().flatten().filter(|o| {
            honest(o.validator.0) && self.timestamp_ms.saturating_sub(o.timestamp_ms) <= self.max_age_ms
        });
        let prices: Vec<i64> =
            prices.filter_map(|o| o.prices.iter().find(|(u, _)| *u == underlying).map(|(_, p)| *p)).collect();
        Some((*prices.iter().min()?, *prices.iter().max()?))
    }
}

/// This validator's side of the oracle: its observer and key, the pool, evidence and
/// disagreement tracking. Owned by the application actor.
pub(crate) struct Observations {
    observer: Option<Box<dyn Observer>>,
    key: Option<(u16, [u8; 32])>,
    every_ms: u64,
    /// A Byzantine oracle's lie (simulations only).
    lie: Option<Lie>,
    lie_rng: Rng,
    /// The finalized height this validator last signed at (or recovered).
    signed_tip: u64,
    /// When it last signed (its clock, ms).
    signed_at_ms: Option<u64>,
    /// Its latest own observation.
    own: Option<Observation>,
    pool: Pool,
    reported: BTreeSet<(u16, u64)>,
    /// Underlyings whose index currently disagrees with this validator's own observation.
    disagreeing: BTreeSet<UnderlyingId>,
    evidence: EvidenceSink,
    ledger: Ledger,
}

impl std::fmt::Debug for Observations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observations")
            .field("observer", &self.observer.is_some())
            .field("validator", &self.key.map(|k| k.0))
            .field("lie", &self.lie)
            .field("signed_tip", &self.signed_tip)
            .field("pooled", &self.pool.len())
            .finish_non_exhaustive()
    }
}

impl Observations {
    /// The oracle side of a validator whose executed (recovered) tip is `tip`.
    pub(crate) fn new(
        observer: Option<Box<dyn Observer>>,
        key: Option<(u16, [u8; 32])>,
        every_ms: u64,
        lie: Option<Lie>,
        tip: u64,
        evidence: EvidenceSink,
        ledger: Ledger,
    ) -> Self {
        Observations {
            observer,
            key,
            every_ms,
            lie,
            lie_rng: Rng::new(u64::from(key.map_or(0, |k| k.0)) ^ 0x6f62_7365_7276_6572),
            signed_tip: tip,
            signed_at_ms: None,
            own: None,
            pool: Pool::default(),
            reported: BTreeSet::new(),
            disagreeing: BTreeSet::new(),
            evidence,
            ledger,
        }
    }

    /// How often the actor should look at whether to sign (ms, at least 1).
    pub(crate) fn every_ms(&self) -> u64 {
        self.every_ms.max(1)
    }

    /// Signs an observation if it is time (see the module documentation): the executed tip is
    /// `tip`, `state` its state, the clock `now_ms`. Returns the messages to send.
    pub(crate) fn sign(&mut self, tip: u64, state: &State, now_ms: u64) -> Vec<(Targets, Vec<u8>)> {
        let (Some(observer), Some((validator, seed))) = (self.observer.as_mut(), self.key) else {
            return Vec::new();
        };
        if tip <= self.signed_tip
            || self.signed_at_ms.is_some_and(|t| now_ms < t.saturating_add(self.every_ms))
        {
            return Vec::new();
        }
        if self.lie == Some(Lie::Withhold) {
            return Vec::new();
        }
        let mut seen = observer.observe(now_ms);
        if let Some(lie) = self.lie {
            lie.distort(&mut seen, &mut self.lie_rng);
        }
        if seen.prices.is_empty() && seen.vols.is_empty() {
            return Vec::new();
        }
        let observation = Observation {
            validator: ValidatorIndex(validator),
            height: tip.saturating_add(1),
            timestamp_ms: now_ms,
            prices: seen.prices,
            vols: seen.vols,
        };
        let mut out = Vec::new();
        if self.lie == Some(Lie::Equivocate) {
            // A second observation for the same height to the upper half of the others.
            let mut other = observation.clone();
            Lie::Offset(10_000).distort_observation(&mut other);
            let others: Vec<u16> = (0..u16::try_from(state.validators.len()).unwrap_or(u16::MAX))
                .filter(|v| *v != validator)
                .collect();
            let (low, high) = others.split_at(others.len() / 2);
            let b = sign_observation(seed, &state.chain_id, other);
            out.push((Targets::Validators(high.to_vec()), encode_wire(&state.chain_id, &b)));
            let a = sign_observation(seed, &state.chain_id, observation.clone());
            out.push((Targets::Validators(low.to_vec()), encode_wire(&state.chain_id, &a)));
            self.pool.add(&a);
        } else {
            let signed = sign_observation(seed, &state.chain_id, observation.clone());
            self.pool.add(&signed);
            out.push((Targets::All, encode_wire(&state.chain_id, &signed)));
        }
        debug!(height = observation.height, prices = observation.prices.len(), "signed an observation");
        self.signed_tip = tip;
        self.signed_at_ms = Some(now_ms);
        self.own = Some(observation);
        self.ledger.observation_signed();
        out
    }

    /// A message on the observation channel from the peer whose identity key is `sender`,
    /// checked against the executed tip's `state` at `now_ms` (see the module documentation).
    pub(crate) fn receive(&mut self, sender: &[u8], bytes: &[u8], state: &State, now_ms: u64) -> Received {
        let reject = |ledger: &Ledger, label: &'static str| {
            ledger.observation_rejected(label);
            label
        };
        let (chain_id, o) = match decode_wire(bytes) {
            Ok(d) => d,
            Err(label) => return Received::Block(reject(&self.ledger, label)),
        };
        if chain_id != state.chain_id {
            return Received::Block(reject(&self.ledger, "foreign_chain"));
        }
        let v = o.observation.validator.0;
        if let Some(key) = state.validators.get(usize::from(v)).and_then(|x| x.key)
            && key.as_slice() != sender
        {
            return Received::Block(reject(&self.ledger, "wrong_sender"));
        }
        match state.observation_verdict(&o) {
            Ok(()) => {}
            Err(e @ ObservationError::Stale { .. }) => {
                // An honest peer's observation can be overtaken by a block: not its fault. It
                // may still prove a double observation (once its signature verifies).
                if self.pool.get(v, o.observation.height).is_some_and(|p| p.observation != o.observation)
                    && state.observation_signature_verifies(&o)
                    && let Some(p) = self.pool.get(v, o.observation.height).cloned()
                {
                    self.double(&p, &o);
                }
                reject(&self.ledger, e.label());
                return Received::Fine;
            }
            Err(e) => {
                debug!(%e, "refusing an observation");
                return Received::Block(reject(&self.ledger, e.label()));
            }
        }
        if o.observation.timestamp_ms > now_ms.saturating_add(FUTURE_MS) {
            reject(&self.ledger, "future");
            return Received::Fine;
        }
        match self.pool.add(&o) {
            Pooled::New => self.ledger.observation_received(),
            Pooled::Known | Pooled::Old => {
                reject(&self.ledger, "duplicate");
            }
            Pooled::Conflict(first) => self.double(&first, &o),
        }
        Received::Fine
    }

    /// The leader's candidates on `state` (its parent state).
    pub(crate) fn candidates(&self, state: &State) -> Vec<SignedObservation> {
        self.pool.candidates(state)
    }

    /// This validator's index and identity seed, if it signs (a Byzantine leader's tricks
    /// sign with them).
    pub(crate) fn own_key(&self) -> Option<(u16, [u8; 32])> {
        self.key
    }

    /// A finalized block was executed: its observations are checked against the pool for
    /// double observations (and pooled, so a later conflicting one is caught), counted as
    /// included, and the index after it (`after`) is compared with this validator's own
    /// observation.
    pub(crate) fn finalized(&mut self, block: &Block, after: &State) {
        for o in &block.oracle {
            // Verified by execution (which refused the block otherwise).
            match self.pool.add(o) {
                Pooled::Conflict(first) => self.double(&first, o),
                Pooled::New | Pooled::Known | Pooled::Old => {}
            }
        }
        self.ledger.observations_included(block.oracle.len() as u64);
        let Some(own) = &self.own else { return };
        let fresh =
            block.timestamp_ms.saturating_sub(own.timestamp_ms) <= after.oracle.observation_max_age_ms;
        for (u, mine) in &own.prices {
            let Some(index) = after.underlyings.get(usize::from(u.0)).map(|x| x.index) else { continue };
            let off = fresh && index > 0 && *mine > 0 && deviates(index, *mine);
            if off {
                self.ledger.oracle_disagreement();
                if self.disagreeing.insert(*u) {
                    warn!(
                        underlying = u.0,
                        index,
                        ours = *mine,
                        limit_ppm = DISAGREEMENT_PPM,
                        "the chain's index disagrees with this validator's own observation (check its sources)"
                    );
                }
            } else if self.disagreeing.remove(u) {
                warn!(underlying = u.0, index, ours = *mine, "the chain's index agrees with ours again");
            }
        }
    }

    /// Records two different observations of one validator for one height as evidence (each
    /// (validator, height) once; the sink bounds lines per validator).
    fn double(&mut self, first: &SignedObservation, second: &SignedObservation) {
        let (v, h) = (first.observation.validator.0, first.observation.height);
        if !self.reported.insert((v, h)) {
            return;
        }
        if self.reported.len() > REPORTED_MAX {
            self.reported.pop_first();
        }
        if self.evidence.admit(DOUBLE_OBSERVATION, v.to_string()) == Admit::Enough {
            self.ledger.observation_fault(None);
            return;
        }
        let what = format!("{DOUBLE_OBSERVATION} at height {h} by signer {v}");
        warn!(validator = v, height = h, "two different signed observations for one height");
        let proof = postcard::to_allocvec(&(first, second)).unwrap_or_default();
        if !self.evidence.enqueue(format!("{what}\tproof {}\n", hex(&proof))) {
            self.ledger.evidence_dropped();
        }
        self.ledger.observation_fault(Some(what));
    }
}

/// Whether `index` lies more than [`DISAGREEMENT_PPM`] from `mine` (both positive).
fn deviates(index: i64, mine: i64) -> bool {
    let diff = i128::from(index).abs_diff(i128::from(mine));
    diff.saturating_mul(1_000_000) > u128::from(mine.unsigned_abs()).saturating_mul(DISAGREEMENT_PPM as u128)
}

/// Decodes an evidence line's proof and checks it: two different observations of the named
/// validator for the named height, each validly signed for `state`'s chain and validator set.
pub fn verify_double_observation(state: &State, line: &str) -> bool {
    let Some((what, proof)) = line.split_once("\tproof ") else { return false };
    let Some(bytes) = crate::spec::from_hex(proof.trim()) else { return false };
    let Ok((a, b)) = postcard::from_bytes::<(SignedObservation, SignedObservation)>(&bytes) else {
        return false;
    };
    let named = format!(
        "{DOUBLE_OBSERVATION} at height {} by signer {}",
        a.observation.height, a.observation.validator.0
    );
    what == named
        && a.observation.validator == b.observation.validator
        && a.observation.height == b.observation.height
        && a.observation != b.observation
        && state.observation_signature_verifies(&a)
        && state.observation_signature_verifies(&b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::Observed;
    use bastion_exchange::{
        Genesis,
        testkit::{signed, validator_seed},
    };
    use bastion_types::{OBSERVATION_PRICES_MAX, OBSERVATION_VOLS_MAX, VolQuote};
    use commonware_utils::channel::mpsc;

    const T0: u64 = 1_767_225_600_000;

    fn state() -> State {
        State::from_genesis(&Genesis::devnet()).unwrap()
    }

    fn public(v: u16) -> [u8; 32] {
        ed25519_zebra::VerificationKey::from(&ed25519_zebra::SigningKey::from(validator_seed(v))).into()
    }

    fn obs(s: &State, v: u16, height: u64, ts: u64, btc: i64) -> SignedObservation {
        signed(&s.chain_id, v, height, ts, vec![(UnderlyingId(0), btc)])
    }

    fn desk(
        key: Option<(u16, [u8; 32])>,
        lie: Option<Lie>,
    ) -> (Observations, Ledger, mpsc::Receiver<String>) {
        let ledger = Ledger::default();
        let (sink, rx) = EvidenceSink::new();
        let d = Observations::new(None, key, 200, lie, 0, sink, ledger.clone());
        (d, ledger, rx)
    }

    /// Always sees BTC at 100k and one volatility quote.
    struct Fixed;
    impl Observer for Fixed {
        fn observe(&mut self, _now_ms: u64) -> Observed {
            Observed {
                prices: vec![(UnderlyingId(0), 100_000_000_000)],
                vols: vec![VolQuote {
                    underlying: UnderlyingId(0),
                    expiry_ms: T0 + 1,
                    atm_ppm: 600_000,
                    skew_ppm: 0,
                }],
            }
        }
    }

    #[test]
    fn the_largest_observation_fits_the_wire_bound_and_anything_larger_is_refused() {
        let s = state();
        let widest = Observation {
            validator: ValidatorIndex(u16::MAX),
            height: u64::MAX,
            timestamp_ms: u64::MAX,
            prices: (0..OBSERVATION_PRICES_MAX)
                .map(|u| (UnderlyingId(u16::MAX - u as u16), i64::MIN))
                .collect(),
            vols: (0..OBSERVATION_VOLS_MAX)
                .map(|_| VolQuote {
                    underlying: UnderlyingId(u16::MAX),
                    expiry_ms: u64::MAX,
                    atm_ppm: i64::MIN,
                    skew_ppm: i64::MIN,
                })
                .collect(),
        };
        let o = SignedObservation { observation: widest, signature: [0xff; 64] };
        let chain = "c".repeat(bastion_exchange::CHAIN_ID_MAX);
        let bytes = encode_wire(&chain, &o);
        assert!(bytes.len() <= WIRE_MAX_BYTES, "{} bytes", bytes.len());
        assert_eq!(decode_wire(&bytes), Ok((chain.clone(), o.clone())));
        // Trailing bytes, truncation and garbage do not decode; more than the bound is not read.
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(decode_wire(&trailing), Err("undecodable"));
        assert_eq!(decode_wire(&bytes[..bytes.len() - 1]), Err("undecodable"));
        assert_eq!(decode_wire(&[0xff; 40]), Err("undecodable"));
        assert_eq!(decode_wire(&vec![0; WIRE_MAX_BYTES + 1]), Err("oversize"));
        let small = obs(&s, 0, 1, T0, 1);
        assert_eq!(decode_wire(&encode_wire(&s.chain_id, &small)), Ok((s.chain_id.clone(), small)));
    }

    #[test]
    fn the_pool_keeps_the_highest_heights_per_validator_and_finds_conflicts() {
        let s = state();
        let mut p = Pool::default();
        for h in 1..=20u64 {
            assert_eq!(p.add(&obs(&s, 1, h, T0 + h, 5)), Pooled::New);
            assert!(p.len() <= POOL_PER_VALIDATOR);
        }
        assert_eq!(p.len(), POOL_PER_VALIDATOR);
        assert_eq!(p.add(&obs(&s, 1, 2, T0 + 2, 5)), Pooled::Old, "below the kept heights");
        assert_eq!(p.add(&obs(&s, 1, 20, T0 + 20, 5)), Pooled::Known);
        assert_eq!(
            p.add(&obs(&s, 1, 20, T0 + 20, 6)),
            Pooled::Conflict(Box::new(obs(&s, 1, 20, T0 + 20, 5)))
        );
        // Another validator has its own slots.
        assert_eq!(p.add(&obs(&s, 2, 20, T0 + 20, 6)), Pooled::New);
        assert_eq!(p.len(), POOL_PER_VALIDATOR + 1);
        // Candidates: the pooled ones newer than the stored ones (none stored yet).
        assert_eq!(p.candidates(&s).len(), POOL_PER_VALIDATOR + 1);
    }

    #[test]
    fn gossip_counts_every_rejection_by_reason_and_blocks_only_what_no_honest_peer_sends() {
        let s = state();
        let now = T0 + 10_000;
        let (mut d, ledger, _rx) = desk(None, None);
        let good = obs(&s, 1, 1, now, 100_000_000_000);
        let wire = |o: &SignedObservation| encode_wire(&s.chain_id, o);
        // Valid: pooled and counted.
        assert_eq!(d.receive(&public(1), &wire(&good), &s, now), Received::Fine);
        assert_eq!(ledger.totals().observations_received, 1);
        assert_eq!(d.candidates(&s), vec![good.clone()]);
        // The same again: a duplicate, not a reason to block.
        assert_eq!(d.receive(&public(1), &wire(&good), &s, now), Received::Fine);
        // Not decodable, too large, another chain, relayed by someone else: blocked.
        assert_eq!(d.receive(&public(1), &[1, 2, 3], &s, now), Received::Block("undecodable"));
        assert_eq!(d.receive(&public(1), &vec![0; WIRE_MAX_BYTES + 1], &s, now), Received::Block("oversize"));
        assert_eq!(
            d.receive(&public(1), &encode_wire("another-chain", &good), &s, now),
            Received::Block("foreign_chain")
        );
        assert_eq!(d.receive(&public(2), &wire(&good), &s, now), Received::Block("wrong_sender"));
        // A bad signature, an unknown validator, a malformed one: blocked.
        let mut forged = obs(&s, 1, 2, now + 1, 100_000_000_000);
        forged.signature[3] ^= 1;
        assert_eq!(d.receive(&public(1), &wire(&forged), &s, now), Received::Block("bad_signature"));
        let unknown = obs(&s, 9, 2, now, 1);
        assert_eq!(d.receive(&public(1), &wire(&unknown), &s, now), Received::Block("unknown_validator"));
        let malformed = signed(&s.chain_id, 1, 2, now, vec![(UnderlyingId(0), -5)]);
        assert_eq!(d.receive(&public(1), &wire(&malformed), &s, now), Received::Block("malformed"));
        // Too far ahead of our clock: dropped, not blocked (clocks differ).
        let ahead = obs(&s, 1, 2, now + FUTURE_MS + 1, 100_000_000_000);
        assert_eq!(d.receive(&public(1), &wire(&ahead), &s, now), Received::Fine);
        let counts = ledger.observations_rejected();
        for label in [
            "undecodable",
            "oversize",
            "foreign_chain",
            "wrong_sender",
            "bad_signature",
            "unknown_validator",
            "malformed",
            "future",
            "duplicate",
        ] {
            assert_eq!(counts.get(label), Some(&1), "{label}: {counts:?}");
            assert!(REJECT_LABELS.contains(&label), "{label} is exported");
        }
        assert_eq!(ledger.totals().observations_rejected, 9);
        assert_eq!(ledger.totals().observations_received, 1, "nothing else was pooled");
        assert_eq!(d.candidates(&s).len(), 1);
    }

    #[test]
    fn a_stale_observation_is_dropped_without_blocking_and_still_proves_a_double_observation() {
        let mut s = state();
        let now = T0 + 10_000;
        let (mut d, ledger, mut rx) = desk(None, None);
        let first = obs(&s, 2, 5, now, 100_000_000_000);
        assert_eq!(d.receive(&public(2), &encode_wire(&s.chain_id, &first), &s, now), Received::Fine);
        // A block stores a later observation of validator 2: an older one is now stale.
        s.observations[2] = Some(obs(&s, 2, 6, now + 100, 1).observation);
        let other = obs(&s, 2, 5, now, 100_500_000_000);
        assert_eq!(d.receive(&public(2), &encode_wire(&s.chain_id, &other), &s, now), Received::Fine);
        assert_eq!(ledger.observations_rejected().get("stale"), Some(&1));
        assert_eq!(ledger.totals().observation_evidence, 1);
        let line = rx.try_recv().unwrap();
        assert!(line.starts_with("conflicting observation at height 5 by signer 2\tproof "), "{line}");
        assert!(verify_double_observation(&s, line.trim_end()));
        // A stale forgery proves nothing.
        let mut forged = obs(&s, 2, 5, now, 101_000_000_000);
        forged.signature[0] ^= 1;
        assert_eq!(d.receive(&public(2), &encode_wire(&s.chain_id, &forged), &s, now), Received::Fine);
        assert_eq!(ledger.totals().observation_evidence, 1);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn double_observations_are_evidence_once_per_validator_and_height() {
        let s = state();
        let now = T0 + 10_000;
        let (mut d, ledger, mut rx) = desk(None, None);
        let a = obs(&s, 3, 7, now, 100_000_000_000);
        let b = obs(&s, 3, 7, now + 1, 100_000_000_001);
        let c = obs(&s, 3, 7, now + 2, 100_000_000_002);
        for o in [&a, &b, &c] {
            assert_eq!(d.receive(&public(3), &encode_wire(&s.chain_id, o), &s, now), Received::Fine);
        }
        assert_eq!(ledger.totals().observation_evidence, 1, "one (validator, height): one piece");
        assert_eq!(ledger.faults(), vec!["conflicting observation at height 7 by signer 3".to_string()]);
        let line = rx.try_recv().unwrap();
        assert!(verify_double_observation(&s, line.trim_end()));
        assert!(rx.try_recv().is_err());
        // A finalized block carrying another one for a new height of the pool's: caught too.
        let pooled = obs(&s, 3, 8, now + 10, 100_000_000_000);
        d.receive(&public(3), &encode_wire(&s.chain_id, &pooled), &s, now + 10);
        let included = obs(&s, 3, 8, now + 11, 99_000_000_000);
        let block = Block { height: 9, timestamp_ms: now + 20, oracle: vec![included], ..Block::default() };
        d.finalized(&block, &s);
        assert_eq!(ledger.totals().observation_evidence, 2);
        assert_eq!(ledger.totals().observations_included, 1);
        // Tampered proofs do not verify.
        let line = rx.try_recv().unwrap();
        assert!(verify_double_observation(&s, line.trim_end()));
        let renamed = line.replace("by signer 3", "by signer 1");
        assert!(!verify_double_observation(&s, renamed.trim_end()));
        let (what, _) = line.split_once("\tproof ").unwrap();
        let same = hex(&postcard::to_allocvec(&(&pooled, &pooled)).unwrap());
        assert!(!verify_double_observation(&s, &format!("{what}\tproof {same}")), "one observation twice");
    }

    #[test]
    fn signs_once_per_finalized_height_and_interval_and_never_for_a_recovered_height() {
        let s = state();
        let ledger = Ledger::default();
        let (sink, _rx) = EvidenceSink::new();
        // Recovered at height 5: nothing until height 6 is finalized.
        let mut d = Observations::new(
            Some(Box::new(Fixed)),
            Some((1, validator_seed(1))),
            200,
            None,
            5,
            sink,
            ledger.clone(),
        );
        assert!(d.sign(5, &s, T0).is_empty(), "the recovered height may have been signed before");
        let sent = d.sign(6, &s, T0);
        assert_eq!(sent.len(), 1);
        let (targets, bytes) = &sent[0];
        assert_eq!(*targets, Targets::All);
        let (chain, o) = decode_wire(bytes).unwrap();
        assert_eq!(chain, s.chain_id);
        assert_eq!((o.observation.validator.0, o.observation.height, o.observation.timestamp_ms), (1, 7, T0));
        assert_eq!(s.observation_verdict(&o), Ok(()));
        assert_eq!(d.candidates(&s), vec![o], "its own observation is pooled");
        // Not again before the interval, nor without a new finalized height.
        assert!(d.sign(7, &s, T0 + 199).is_empty());
        assert!(d.sign(6, &s, T0 + 1_000).is_empty());
        assert_eq!(d.sign(7, &s, T0 + 200).len(), 1);
        assert_eq!(ledger.totals().observations_signed, 2);
        // Without a key or observer it signs nothing.
        let (mut none, _, _) = desk(None, None);
        assert!(none.sign(100, &s, T0).is_empty());
    }

    #[test]
    fn a_withholding_oracle_sends_nothing_and_an_equivocating_one_splits_the_others() {
        let s = state();
        let (sink, _rx) = EvidenceSink::new();
        let mut w = Observations::new(
            Some(Box::new(Fixed)),
            Some((0, validator_seed(0))),
            200,
            Some(Lie::Withhold),
            0,
            sink.clone(),
            Ledger::default(),
        );
        assert!(w.sign(1, &s, T0).is_empty());
        let mut e = Observations::new(
            Some(Box::new(Fixed)),
            Some((0, validator_seed(0))),
            200,
            Some(Lie::Equivocate),
            0,
            sink,
            Ledger::default(),
        );
        let sent = e.sign(1, &s, T0);
        let targets: Vec<&Targets> = sent.iter().map(|(t, _)| t).collect();
        assert_eq!(targets, vec![&Targets::Validators(vec![2, 3]), &Targets::Validators(vec![1])]);
        let (_, b) = decode_wire(&sent[0].1).unwrap();
        let (_, a) = decode_wire(&sent[1].1).unwrap();
        assert_eq!(a.observation.height, b.observation.height);
        assert_ne!(a.observation, b.observation);
        assert_eq!((s.observation_verdict(&a), s.observation_verdict(&b)), (Ok(()), Ok(())));
        // An honest validator that receives both has evidence.
        let (mut d, ledger, _rx) = desk(None, None);
        for o in [&a, &b] {
            d.receive(&public(0), &encode_wire(&s.chain_id, o), &s, T0);
        }
        assert_eq!(ledger.totals().observation_evidence, 1);
    }

    #[test]
    fn an_index_far_from_the_own_fresh_observation_is_a_disagreement() {
        let mut s = state();
        let ledger = Ledger::default();
        let (sink, _rx) = EvidenceSink::new();
        let mut d = Observations::new(
            Some(Box::new(Fixed)),
            Some((1, validator_seed(1))),
            200,
            None,
            0,
            sink,
            ledger.clone(),
        );
        d.sign(1, &s, T0);
        let block = |ts: u64| Block { height: 2, timestamp_ms: ts, ..Block::default() };
        s.underlyings[0].index = 101_900_000_000; // 1.9%: agrees
        d.finalized(&block(T0 + 100), &s);
        assert_eq!(ledger.totals().oracle_disagreements, 0);
        s.underlyings[0].index = 97_900_000_000; // 2.1%
        d.finalized(&block(T0 + 100), &s);
        d.finalized(&block(T0 + 200), &s);
        assert_eq!(ledger.totals().oracle_disagreements, 2);
        // Once its own observation is no longer fresh, it is not compared.
        d.finalized(&block(T0 + s.oracle.observation_max_age_ms + 1), &s);
        assert_eq!(ledger.totals().oracle_disagreements, 2);
        assert!(
            deviates(100, 103)
                && !deviates(100, 101)
                && deviates(i64::MAX, 1)
                && !deviates(i64::MAX, i64::MAX)
        );
    }
}
