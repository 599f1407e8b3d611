//! A Byzantine leader's tricks, played by the real application when it proposes (simulations
//! only: production passes no [`crate::Fault`]).
//!
//! The validator otherwise runs Bastion as everyone else does (it votes, verifies and executes
//! honestly); each time it leads, it plays the next [`Trick`] of its list, in turn. The tricks
//! attack what the block channel and `verify` must bound; to add one, add a variant here and
//! its effect in [`Trick::timestamp`] (block time), [`Trick::limits`] (what the leader builds
//! under), [`Trick::rewrite`] (what the block holds: padding over the limit, forged governance
//! approvals, a replayed transaction, reordered nonces, a transaction from an account that does
//! not exist, a twin's valid variant of the honest block), [`Trick::extra_blocks`] or
//! [`Trick::extra_messages`] (what else is sent).
//! A leader playing a trick proposes its block even when its own execution refuses it, as a
//! Byzantine leader would. The oracle tricks ([`Trick::ReplayObservation`],
//! [`Trick::ForgedObservation`], [`Trick::DoubleObservation`], [`Trick::StaleObservation`])
//! rewrite the block's observations in `Trick::rewrite_oracle`.
//!
//! A Byzantine *oracle* ([`crate::Fault::ByzantineOracle`]) runs Bastion honestly but lies in
//! what it observes: each [`Lie`] distorts what its observer saw before it signs (or withholds
//! it, or signs two different observations for one height and sends one to each half of the
//! other validators).

use crate::Observed;
use crate::{
    application::{RANGE_MAX, TAG_RANGE},
    block::{BlockLimits, ChainBlock},
};
use bastion_exchange::{State, sign_observation, testkit::Rng};
use bastion_types::{
    Approval, Block, GovernanceProposal, MarketId, MarketStatus, Observation, ParamUpdate, SignedObservation,
    TxAuth, UnderlyingId, ValidatorIndex,
};

/// How a Byzantine oracle lies (simulations only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// Every price and at-the-money volatility moved by this many ppm of itself (+500_000:
    /// 50% too high), at least 1.
    Offset(i64),
    /// Prices and at-the-money volatilities alternately 1 and `i64::MAX / 2`, one extreme per
    /// observation.
    Extremes,
    /// Prices uniform in 1..=2× the truth, volatilities likewise (seeded).
    Random,
    /// Never sends an observation.
    Withhold,
    /// Two different observations for each height (the second 1% higher), one sent to each
    /// half of the other validators: evidence against it once anyone sees both.
    Equivocate,
}

impl Lie {
    /// What the liar signs instead of what it saw (`Withhold` and `Equivocate` do not distort:
    /// they are about what is sent).
    pub(crate) fn distort(self, seen: &mut Observed, rng: &mut Rng) {
        match self {
            Lie::Offset(ppm) => {
                for (_, p) in &mut seen.prices {
                    *p = offset(*p, ppm);
                }
                for q in &mut seen.vols {
                    q.atm_ppm = offset(q.atm_ppm, ppm);
                }
            }
            Lie::Extremes => {
                let v = if rng.chance(50) { 1 } else { i64::MAX / 2 };
                for (_, p) in &mut seen.prices {
                    *p = v;
                }
                for q in &mut seen.vols {
                    q.atm_ppm = v;
                }
            }
            Lie::Random => {
                for (_, p) in &mut seen.prices {
                    *p = rng.range(1, p.saturating_mul(2).max(1));
                }
                for q in &mut seen.vols {
                    q.atm_ppm = rng.range(1, q.atm_ppm.saturating_mul(2).max(1));
                }
            }
            Lie::Withhold | Lie::Equivocate => {}
        }
    }

    /// [`Lie::Offset`] applied to a whole observation (its prices and volatilities).
    pub(crate) fn distort_observation(self, o: &mut Observation) {
        let mut seen = Observed { prices: std::mem::take(&mut o.prices), vols: std::mem::take(&mut o.vols) };
        self.distort(&mut seen, &mut Rng::new(o.timestamp_ms));
        o.prices = seen.prices;
        o.vols = seen.vols;
    }
}

/// `p` moved by `ppm` of itself, at least 1.
fn offset(p: i64, ppm: i64) -> i64 {
    let moved = i128::from(p) + i128::from(p) * i128::from(ppm) / 1_000_000;
    i64::try_from(moved.max(1)).unwrap_or(i64::MAX)
}

/// One thing a Byzantine leader does when it leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trick {
    /// Proposes honestly.
    Honest,
    /// A proposal with one more transaction than the block limits allow (its transactions
    /// repeated): no honest validator decodes it, and each blocks the sender.
    Oversized,
    /// Proposes honestly, and sends every peer this many distinct, decodable blocks at the
    /// proposal's height that nobody asked for (the proposal with its timestamp moved by 1, 2,
    /// ... ms): honest validators hold at most their per-peer bound, evict the rest, and block
    /// the sender.
    Flood(u32),
    /// A proposal whose timestamp is this many ms ahead of the leader's clock.
    SkewAhead(u64),
    /// A proposal whose timestamp is this many ms behind the leader's clock (but after the
    /// parent's).
    SkewBehind(u64),
    /// Proposes honestly, and sends every peer this many range requests (backfill of heights
    /// 1 to 64): honest validators serve a few at their per-peer rate, drop the rest, and block
    /// the sender; their consensus actor does none of the serving.
    RangeFlood(u32),
    /// The block carries a governance proposal halting market 0 "approved" by every validator
    /// with forged signatures (the old bare-index approvals, now zero bytes), at the chain's
    /// next governance nonce and inside its window.
    ForgedApprovals,
    /// The block carries its first transaction twice (a replay of a used nonce).
    ReplayTx,
    /// The block carries one signer's two transactions in reverse nonce order (voiding the
    /// lower one, under the old rule).
    ReorderNonces,
    /// The block carries a validly signed transaction from a fresh key whose account does not
    /// exist (free block space, under the old rule).
    FreshKey,
    /// The block carries an observation an ancestor block already carried (a replay: not newer
    /// than its validator's stored one), in place of that validator's fresh one.
    ReplayObservation,
    /// The block carries an observation of the leader's own with a signature that does not
    /// verify.
    ForgedObservation,
    /// The block carries two validly signed observations of the leader's own.
    DoubleObservation,
    /// The block carries a validly signed observation of the leader's own made longer ago than
    /// `oracle.observation_max_age_ms`.
    StaleObservation,
    /// A valid block that differs from the honest one: the honest block without its last
    /// transaction (the rest are a prefix of the honest sequence, so every nonce still follows
    /// its predecessor). The second instance of a twin plays it, so that when the key leads,
    /// its two instances propose two different valid blocks for one view (see
    /// [`crate::twins`]).
    Twin,
}

impl Trick {
    /// The block time a leader playing this trick writes, its clock reading `now`.
    pub(crate) fn timestamp(self, now: u64, parent_ts: u64) -> u64 {
        let ts = match self {
            Trick::SkewAhead(ms) => now.saturating_add(ms),
            Trick::SkewBehind(ms) => now.saturating_sub(ms),
            _ => now,
        };
        ts.max(parent_ts.saturating_add(1))
    }

    /// The limits the leader builds its block under.
    pub(crate) fn limits(self, limits: &BlockLimits) -> BlockLimits {
        match self {
            Trick::Oversized => BlockLimits { max_txs: limits.max_txs.saturating_add(1), ..*limits },
            _ => *limits,
        }
    }

    /// Other messages to send every peer besides the proposal (block-channel wire form).
    pub(crate) fn extra_messages(self) -> Vec<Vec<u8>> {
        let Trick::RangeFlood(count) = self else { return Vec::new() };
        let mut range = vec![TAG_RANGE];
        range.extend_from_slice(&1u64.to_be_bytes());
        range.extend_from_slice(&RANGE_MAX.to_be_bytes());
        vec![range; count as usize]
    }

    /// Blocks to send every peer besides the proposal.
    pub(crate) fn extra_blocks(self, proposal: &ChainBlock, limits: &BlockLimits) -> Vec<ChainBlock> {
        let Trick::Flood(count) = self else { return Vec::new() };
        (1..=u64::from(count))
            .filter_map(|i| {
                let mut block = proposal.block().clone();
                block.timestamp_ms = block.timestamp_ms.saturating_add(i);
                let auth: Vec<TxAuth> = proposal.auth().to_vec();
                ChainBlock::new(proposal.parent_digest(), *proposal.parent_state_root(), block, auth, limits)
                    .ok()
            })
            .collect()
    }

    /// Whether the leader proposes its block even though its own execution refuses it.
    pub(crate) fn proposes_invalid(self) -> bool {
        matches!(
            self,
            Trick::Oversized
                | Trick::ForgedApprovals
                | Trick::ReplayTx
                | Trick::ReorderNonces
                | Trick::FreshKey
                | Trick::ReplayObservation
                | Trick::ForgedObservation
                | Trick::DoubleObservation
                | Trick::StaleObservation
        )
    }

    /// Rewrites the block's observations for the oracle tricks: `state` is the parent's state,
    /// `replay` an observation an ancestor carried (if any), `key` the leader's validator index
    /// and identity seed (without one, the oracle tricks do nothing).
    pub(crate) fn rewrite_oracle(
        self,
        block: &mut Block,
        state: &State,
        replay: Option<SignedObservation>,
        key: Option<(u16, [u8; 32])>,
    ) {
        let Some((me, seed)) = key else { return };
        // The leader's own observation at `timestamp_ms`: the current index (or a placeholder
        // before the first), well formed.
        let own = |timestamp_ms: u64| {
            let prices = state
                .underlyings
                .iter()
                .enumerate()
                .filter_map(|(u, x)| Some((UnderlyingId(u16::try_from(u).ok()?), x.index.max(1_000_000))))
                .collect();
            let o = Observation {
                validator: ValidatorIndex(me),
                height: block.height,
                timestamp_ms,
                prices,
                vols: Vec::new(),
            };
            sign_observation(seed, &state.chain_id, o)
        };
        let ts = block.timestamp_ms;
        match self {
            Trick::ReplayObservation => match replay {
                Some(old) => put(block, old),
                // Nothing to replay yet: an observation older than the limit will do.
                None => put(block, own(ts.saturating_sub(state.oracle.observation_max_age_ms + 1_000))),
            },
            Trick::ForgedObservation => {
                let mut forged = own(ts);
                forged.signature[0] ^= 1;
                put(block, forged);
            }
            Trick::DoubleObservation => {
                let (a, b) = (own(ts), own(ts.saturating_sub(1)));
                put(block, a);
                if let Some(i) = block.oracle.iter().position(|o| o.observation.validator.0 == me) {
                    block.oracle.insert(i + 1, b);
                }
            }
            Trick::StaleObservation => {
                put(block, own(ts.saturating_sub(state.oracle.observation_max_age_ms + 1_000)))
            }
            _ => {}
        }
    }

    /// Rewrites the block's contents (transactions with their authorisations, proposals) for
    /// the tricks that do; `state` is the parent's state, `chain` the client signatures' chain
    /// identity, `limits` what honest validators decode.
    pub(crate) fn rewrite(
        self,
        block: &mut Block,
        auth: &mut Vec<TxAuth>,
        state: &State,
        chain: &[u8; 32],
        limits: &BlockLimits,
    ) {
        match self {
            Trick::Oversized if !block.txs.is_empty() => {
                // One transaction over the limit: the source's transactions, repeated.
                let want = limits.max_txs.saturating_add(1);
                let (txs, auths) = (block.txs.clone(), auth.clone());
                block.txs = txs.into_iter().cycle().take(want).collect();
                *auth = auths.into_iter().cycle().take(want).collect();
            }
            Trick::ForgedApprovals => {
                let validators = u16::try_from(state.validators.len()).unwrap_or(u16::MAX);
                block.proposals.push(GovernanceProposal {
                    update: ParamUpdate::Status { market: MarketId(0), status: MarketStatus::Halted },
                    nonce: state.governance_nonce.saturating_add(1),
                    valid_from: block.height,
                    valid_until: block.height,
                    approvals: (0..validators)
                        .map(|v| Approval { validator: ValidatorIndex(v), signature: [0; 64] })
                        .collect(),
                });
            }
            Trick::ReplayTx => {
                if let (Some(tx), Some(a)) = (block.txs.first().cloned(), auth.first().cloned()) {
                    block.txs.push(tx);
                    auth.push(a);
                }
            }
            Trick::ReorderNonces => {
                let pair = block.txs.iter().enumerate().find_map(|(i, t)| {
                    let j = block.txs.iter().skip(i + 1).position(|u| u.signer == t.signer)?;
                    Some((i, i + 1 + j))
                });
                if let Some((i, j)) = pair {
                    block.txs.swap(i, j);
                    auth.swap(i, j);
                }
            }
            Trick::Twin => {
                block.txs.pop();
                auth.pop();
            }
            Trick::FreshKey => {
                let key = bastion_client::Keypair::derive("byzantine-fresh-key", block.height);
                let signed = key.sign(chain, 1, bastion_types::Action::SetMarginMode { portfolio: false });
                block.txs.push(signed.tx);
                auth.push(signed.auth);
            }
            _ => {}
        }
    }
}

/// Puts `o` in the block's observations in its validator's place (replacing any other of
/// that validator's), ascending by validator.
fn put(block: &mut Block, o: SignedObservation) {
    let v = o.observation.validator.0;
    block.oracle.retain(|x| x.observation.validator.0 != v);
    let at = block.oracle.iter().position(|x| x.observation.validator.0 > v).unwrap_or(block.oracle.len());
    block.oracle.insert(at, o);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bastion_types::VolQuote;

    #[test]
    fn lies_distort_what_was_seen_and_stay_well_formed() {
        let seen = Observed {
            prices: vec![(UnderlyingId(0), 100_000_000_000), (UnderlyingId(1), 4_000_000_000)],
            vols: vec![VolQuote { underlying: UnderlyingId(0), expiry_ms: 9, atm_ppm: 600_000, skew_ppm: 0 }],
        };
        let mut rng = Rng::new(1);
        let mut up = seen.clone();
        Lie::Offset(500_000).distort(&mut up, &mut rng);
        assert_eq!(up.prices, vec![(UnderlyingId(0), 150_000_000_000), (UnderlyingId(1), 6_000_000_000)]);
        assert_eq!(up.vols[0].atm_ppm, 900_000);
        let mut down = seen.clone();
        Lie::Offset(-2_000_000).distort(&mut down, &mut rng);
        assert!(down.prices.iter().all(|(_, p)| *p == 1), "never below 1: {down:?}");
        for _ in 0..20 {
            let mut x = seen.clone();
            Lie::Extremes.distort(&mut x, &mut rng);
            assert!(x.prices.iter().all(|(_, p)| *p == 1 || *p == i64::MAX / 2));
            let mut r = seen.clone();
            Lie::Random.distort(&mut r, &mut rng);
            for ((_, lie), (_, truth)) in r.prices.iter().zip(&seen.prices) {
                assert!((1..=2 * truth).contains(lie));
            }
        }
        for honest_looking in [Lie::Withhold, Lie::Equivocate] {
            let mut same = seen.clone();
            honest_looking.distort(&mut same, &mut rng);
            assert_eq!(same, seen);
        }
    }

    #[test]
    fn put_keeps_observations_ascending_and_one_per_validator() {
        let o = |v: u16, ts: u64| SignedObservation {
            observation: Observation {
                validator: ValidatorIndex(v),
                timestamp_ms: ts,
                ..Observation::default()
            },
            signature: [0; 64],
        };
        let mut b = Block { oracle: vec![o(0, 1), o(2, 1), o(3, 1)], ..Block::default() };
        put(&mut b, o(1, 5));
        put(&mut b, o(3, 7));
        let order: Vec<(u16, u64)> =
            b.oracle.iter().map(|x| (x.observation.validator.0, x.observation.timestamp_ms)).collect();
        assert_eq!(order, vec![(0, 1), (1, 5), (2, 1), (3, 7)]);
    }
}
