//! Validators' signed observations: what a block may carry, and the latest one per validator.
//!
//! A block carries at most one [`SignedObservation`] per validator, in ascending validator
//! order. Before the block changes anything, [`State::check_observations`] checks each one:
//! its validator is in the set and has an identity key; it is well formed (prices strictly
//! ascending by underlying, known underlyings, positive prices; volatility quotes strictly
//! ascending by `(underlying, expiry)`, known underlyings, positive at-the-money level) and
//! within [`OBSERVATION_PRICES_MAX`] and [`OBSERVATION_VOLS_MAX`]; it is strictly newer
//! (observation time) than the validator's stored one; it was made for a height no later than
//! the block's, at most [`OBSERVATION_FUTURE_MS`] after the block's time and at most
//! `oracle.observation_max_age_ms` before it; and its signature is a valid ed25519 signature
//! (ZIP-215, as `ed25519-zebra` verifies it, the rule governance approvals and client
//! transactions follow) by the validator's identity key over
//! [`bastion_types::observation_message`] for this chain. One violation refuses the whole
//! block ([`BlockError::Observation`]); the same check runs when a finalized block is
//! replayed, so no log or peer can slip an observation past it.
//!
//! An included observation replaces its validator's stored one ([`State::latest_observation`],
//! committed in the state root and kept in the image). The index, volatility and settlement
//! prices are computed from the stored observations that are still fresh (see `oracle`), not
//! from the block's alone: a leader that leaves an honest validator's new observation out
//! cannot make its older one disappear before it ages out, and it cannot invent one.
//!
//! What this does not check: whether an observation is *true*. A verifier never refuses a
//! block because its own sources disagree with an observation in it; the aggregation bounds
//! what a lying minority can do (the index stays within the honest observations while less
//! than 1/3 of stake lies), and judging a leader's selection against one's own view of the
//! market is consensus's business, not execution's.

use crate::BlockError;
use crate::state::State;
use bastion_types::{
    Block, OBSERVATION_PRICES_MAX, OBSERVATION_VOLS_MAX, Observation, SignedObservation, ValidatorIndex,
    observation_message,
};

/// How far (ms) an observation's time may lie after its block's time: validators' clocks
/// differ a little, and a leader's block time is its own clock.
pub const OBSERVATION_FUTURE_MS: u64 = 500;

/// Why an observation may not be included (or gossiped). Any one in a block refuses the whole
/// block ([`BlockError::Observation`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ObservationError {
    /// The block carries more observations than there are validators.
    #[error("{got} observations for {validators} validators")]
    TooMany {
        /// Observations in the block.
        got: usize,
        /// Validators in the set.
        validators: usize,
    },
    /// The observing validator is not in the validator set.
    #[error("validator {0} is not in the validator set")]
    UnknownValidator(u16),
    /// The validator has no identity key in the genesis: nothing it signs can count.
    #[error("validator {0} has no identity key in the genesis")]
    NoKey(u16),
    /// The observation is not well formed.
    #[error("malformed observation: {0}")]
    Malformed(String),
    /// More prices or volatility quotes than an observation may carry.
    #[error(
        "{prices} prices and {vols} volatility quotes; at most {OBSERVATION_PRICES_MAX} and {OBSERVATION_VOLS_MAX}"
    )]
    Oversize {
        /// Prices carried.
        prices: usize,
        /// Volatility quotes carried.
        vols: usize,
    },
    /// The signature is not the validator's over this chain's observation message.
    #[error("validator {0}'s observation signature does not verify")]
    BadSignature(u16),
    /// A second observation by the same validator in one block.
    #[error("validator {0} has a second observation in the block")]
    Duplicate(u16),
    /// Observations must ascend by validator.
    #[error("validator {validator}'s observation follows validator {previous}'s: they must ascend")]
    Unordered {
        /// The validator of the observation before it.
        previous: u16,
        /// This observation's validator.
        validator: u16,
    },
    /// Not strictly newer than the validator's stored observation (a replay or a step back).
    #[error("observed at {got_ms} ms, not after the validator's stored observation of {stored_ms} ms")]
    Stale {
        /// Time of the stored observation.
        stored_ms: u64,
        /// Time of this one.
        got_ms: u64,
    },
    /// Older than `oracle.observation_max_age_ms` at the block's time.
    #[error("observed {age_ms} ms before the block; at most {max_ms} ms")]
    TooOld {
        /// Block time minus observation time.
        age_ms: u64,
        /// The limit.
        max_ms: u64,
    },
    /// Later than the block's time plus [`OBSERVATION_FUTURE_MS`].
    #[error("observed at {timestamp_ms} ms, after the block's {block_ms} ms + {OBSERVATION_FUTURE_MS} ms")]
    Future {
        /// Observation time.
        timestamp_ms: u64,
        /// Block time.
        block_ms: u64,
    },
    /// Made for a height after the block's.
    #[error("made for height {height}, after the block's {block_height}")]
    HeightAhead {
        /// The observation's height.
        height: u64,
        /// The block's height.
        block_height: u64,
    },
}

impl ObservationError {
    /// A snake_case name of the kind of error, for metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            ObservationError::TooMany { .. } => "too_many",
            ObservationError::UnknownValidator(_) => "unknown_validator",
            ObservationError::NoKey(_) => "no_key",
            ObservationError::Malformed(_) => "malformed",
            ObservationError::Oversize { .. } => "oversize",
            ObservationError::BadSignature(_) => "bad_signature",
            ObservationError::Duplicate(_) => "duplicate",
            ObservationError::Unordered { .. } => "unordered",
            ObservationError::Stale { .. } => "stale",
            ObservationError::TooOld { .. } => "too_old",
            ObservationError::Future { .. } => "future",
            ObservationError::HeightAhead { .. } => "height_ahead",
        }
    }
}

/// Validator `validator`'s signed `observation` on chain `chain_id`: the ed25519 signature by
/// the identity key with secret seed `seed` (RFC 8032) over [`observation_message`]. The one
/// definition of what a validator signs; the node's observer and the tests use it.
pub fn sign_observation(seed: [u8; 32], chain_id: &str, observation: Observation) -> SignedObservation {
    let signing = ed25519_zebra::SigningKey::from(seed);
    let signature = signing.sign(&observation_message(chain_id, &observation));
    SignedObservation { observation, signature: signature.into() }
}

impl State {
    /// The latest observation of validator `v` that a block included, if any.
    pub fn latest_observation(&self, v: ValidatorIndex) -> Option<&Observation> {
        self.observations.get(usize::from(v.0)).and_then(Option::as_ref)
    }

    /// Checks the observations of `block` (see the module documentation); changes nothing.
    /// [`State::apply_block`] runs it before anything else; consensus runs it when it verifies
    /// a proposal.
    pub fn check_observations(&self, block: &Block) -> Result<(), BlockError> {
        if block.oracle.len() > self.validators.len() {
            return Err(BlockError::Observation {
                index: self.validators.len(),
                reason: ObservationError::TooMany {
                    got: block.oracle.len(),
                    validators: self.validators.len(),
                },
            });
        }
        let mut previous: Option<u16> = None;
        for (index, o) in block.oracle.iter().enumerate() {
            let fail = |reason| BlockError::Observation { index, reason };
            let v = o.observation.validator.0;
            match previous {
                Some(p) if p == v => return Err(fail(ObservationError::Duplicate(v))),
                Some(p) if p > v => {
                    return Err(fail(ObservationError::Unordered { previous: p, validator: v }));
                }
                _ => {}
            }
            previous = Some(v);
            self.check_observation(block.height, block.timestamp_ms, o).map_err(fail)?;
        }
        Ok(())
    }

    /// Of `candidates` (in any order, several per validator allowed), the observations a block
    /// at `height` and `timestamp_ms` on this state may carry: per validator the newest
    /// candidate that passes every check of [`Self::check_observations`], ascending by
    /// validator. The leader's selection; never refuses.
    pub fn admissible_observations(
        &self,
        height: u64,
        timestamp_ms: u64,
        candidates: &[SignedObservation],
    ) -> Vec<SignedObservation> {
        let mut order: Vec<&SignedObservation> = candidates.iter().collect();
        // Ascending validator, newest first within a validator.
        order.sort_by(|a, b| {
            (a.observation.validator.0, std::cmp::Reverse(a.observation.timestamp_ms))
                .cmp(&(b.observation.validator.0, std::cmp::Reverse(b.observation.timestamp_ms)))
        });
        let mut out: Vec<SignedObservation> = Vec::new();
        let mut done: Option<u16> = None;
        for o in order {
            let v = o.observation.validator.0;
            if done == Some(v) || out.len() >= self.validators.len() {
                continue;
            }
            if self.check_observation(height, timestamp_ms, o).is_ok() {
                out.push(o.clone());
                done = Some(v);
            }
        }
        out
    }

    /// What can be checked of `o` without a block (gossip's check): a known validator with a
    /// key, well formed, within the size limits, validly signed for this chain, and strictly
    /// newer than the validator's stored observation.
    pub fn observation_verdict(&self, o: &SignedObservation) -> Result<(), ObservationError> {
        let key = self.observation_fields(o)?;
        verify(key, &self.chain_id, o)
    }

    /// Whether `o`'s signature is its validator's over this chain's observation message,
    /// whatever its freshness or form (evidence of a double observation may hold a stale one).
    pub fn observation_signature_verifies(&self, o: &SignedObservation) -> bool {
        let key = self.validators.get(usize::from(o.observation.validator.0)).and_then(|v| v.key);
        key.is_some_and(|key| verify(key, &self.chain_id, o).is_ok())
    }

    /// Every check of one observation for a block at `height` and `timestamp_ms`; the
    /// signature last, since it is by far the costliest.
    fn check_observation(
        &self,
        height: u64,
        timestamp_ms: u64,
        o: &SignedObservation,
    ) -> Result<(), ObservationError> {
        let key = self.observation_fields(o)?;
        let obs = &o.observation;
        if obs.height > height {
            return Err(ObservationError::HeightAhead { height: obs.height, block_height: height });
        }
        if obs.timestamp_ms > timestamp_ms.saturating_add(OBSERVATION_FUTURE_MS) {
            return Err(ObservationError::Future { timestamp_ms: obs.timestamp_ms, block_ms: timestamp_ms });
        }
        let age_ms = timestamp_ms.saturating_sub(obs.timestamp_ms);
        if age_ms > self.oracle.observation_max_age_ms {
            return Err(ObservationError::TooOld { age_ms, max_ms: self.oracle.observation_max_age_ms });
        }
        verify(key, &self.chain_id, o)
    }

    /// The checks that need neither a block nor the signature: validator, key, sizes, form and
    /// newness. `Ok` is the validator's key.
    fn observation_fields(&self, o: &SignedObservation) -> Result<[u8; 32], ObservationError> {
        let obs = &o.observation;
        let v = obs.validator.0;
        let validator = self.validators.get(usize::from(v)).ok_or(ObservationError::UnknownValidator(v))?;
        let key = validator.key.ok_or(ObservationError::NoKey(v))?;
        if obs.prices.len() > OBSERVATION_PRICES_MAX || obs.vols.len() > OBSERVATION_VOLS_MAX {
            return Err(ObservationError::Oversize { prices: obs.prices.len(), vols: obs.vols.len() });
        }
        self.well_formed(obs)?;
        if let Some(stored) = self.latest_observation(obs.validator)
            && obs.timestamp_ms <= stored.timestamp_ms
        {
            return Err(ObservationError::Stale { stored_ms: stored.timestamp_ms, got_ms: obs.timestamp_ms });
        }
        Ok(key)
    }

    fn well_formed(&self, obs: &Observation) -> Result<(), ObservationError> {
        let known = |u: bastion_types::UnderlyingId| usize::from(u.0) < self.underlyings.len();
        let mut last = None;
        for (u, p) in &obs.prices {
            if last.is_some_and(|l| l >= *u) {
                return Err(ObservationError::Malformed(format!("price of underlying {} out of order", u.0)));
            }
            last = Some(*u);
            if !known(*u) {
                return Err(ObservationError::Malformed(format!("unknown underlying {}", u.0)));
            }
            if *p <= 0 {
                return Err(ObservationError::Malformed(format!(
                    "price {p} of underlying {} is not positive",
                    u.0
                )));
            }
        }
        let mut last = None;
        for q in &obs.vols {
            let k = (q.underlying, q.expiry_ms);
            if last.is_some_and(|l| l >= k) {
                return Err(ObservationError::Malformed(format!(
                    "volatility of underlying {} expiry {} out of order",
                    q.underlying.0, q.expiry_ms
                )));
            }
            last = Some(k);
            if !known(q.underlying) {
                return Err(ObservationError::Malformed(format!("unknown underlying {}", q.underlying.0)));
            }
            if q.atm_ppm <= 0 {
                return Err(ObservationError::Malformed(format!(
                    "at-the-money volatility {} of underlying {} is not positive",
                    q.atm_ppm, q.underlying.0
                )));
            }
        }
        Ok(())
    }

    /// Stores the block's observations (already checked) as their validators' latest.
    pub(crate) fn store_observations(&mut self, block: &Block) {
        for o in &block.oracle {
            let v = o.observation.validator.0;
            if let Some(slot) = self.observations.get_mut(usize::from(v)) {
                *slot = Some(o.observation.clone());
                self.dirty.push(crate::root::RecordKey::Observation(v));
            }
        }
    }
}

/// Whether `o`'s signature is `key`'s over this chain's observation message.
fn verify(key: [u8; 32], chain_id: &str, o: &SignedObservation) -> Result<(), ObservationError> {
    let message = observation_message(chain_id, &o.observation);
    ed25519_zebra::VerificationKey::try_from(key)
        .and_then(|k| k.verify(&ed25519_zebra::Signature::from(o.signature), &message))
        .map_err(|_| ObservationError::BadSignature(o.observation.validator.0))
}
