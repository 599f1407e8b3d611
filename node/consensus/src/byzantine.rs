//! A Byzantine leader's tricks, played by the real application when it proposes (simulations
//! only: production passes no [`crate::Fault`]).
//!
//! The validator otherwise runs Bastion as everyone else does (it votes, verifies and executes
//! honestly); each time it leads, it plays the next [`Trick`] of its list, in turn. The tricks
//! attack what the block channel and `verify` must bound; to add one, add a variant here and
//! its effect in [`Trick::timestamp`] (block time), [`Trick::limits`] (what the leader builds
//! under), [`Trick::rewrite`] (what the block holds: padding over the limit, forged governance
//! approvals, a replayed transaction, reordered nonces, a transaction from an account that does
//! not exist), [`Trick::extra_blocks`] or [`Trick::extra_messages`] (what else is sent).
//! A leader playing a trick proposes its block even when its own execution refuses it, as a
//! Byzantine leader would.

use crate::{
    application::{RANGE_MAX, TAG_RANGE},
    block::{BlockLimits, ChainBlock},
};
use bastion_exchange::State;
use bastion_types::{
    Approval, Block, GovernanceProposal, MarketId, MarketStatus, ParamUpdate, TxAuth, ValidatorIndex,
};

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
        )
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
