//! The deterministic derivatives exchange: `apply(state, block) -> (state', events, state_root)`.
//!
//! Bastion's application is a derivatives exchange (perpetual futures and European options)
//! that every validator executes identically. This crate is that state machine: a pure
//! function of the previous state and a block. It does no I/O, reads no clock (time is the
//! block's), uses no floating point, iterates only ordered collections, and uses checked integer
//! arithmetic with an explicit rounding direction, always towards the protocol's safety.
//!
//! A block runs in this order (see [`State::apply_block`]):
//! 0. the block's signed oracle observations are checked ([`State::check_observations`]) and
//!    each replaces its validator's stored latest observation;
//! 1. parameter updates queued by the previous block take effect;
//! 2. validators' governance proposals are checked and queued for the next block;
//! 3. good-til-block orders past their height expire;
//! 4. the oracle index, attested volatilities and stable price of each underlying are updated
//!    from the validators' fresh stored observations (stake-weighted medians with a 2/3
//!    quorum, guards), circuit breakers applied, expired options cash-settled at their first
//!    post-expiry quorum, marks recomputed, and resting orders
//!    the new mark left outside the price band on their aggressive side removed;
//! 5. accounts under maintenance margin are liquidated (insurance fund, deleveraging);
//! 6. client transactions execute in order; each rejection is a typed event and changes nothing
//!    but the nonce (every included transaction consumes its nonce, whatever its outcome);
//! 7. funding premiums are sampled and, at each interval, settled; accounts changed in this
//!    block (by fills or funding) are checked again and liquidated if needed;
//! 8. the basis EMA is updated and the state commitment advanced.
//!
//! Before any of this, the block's transactions are checked against the state at the start of
//! the block ([`State::check_txs`]): every signer must be an existing account and every nonce
//! must be exactly the signer's last nonce + 1 (counting the signer's earlier transactions in
//! the same block). One transaction that is not includable refuses the whole block
//! ([`BlockError::Tx`]) and the state is untouched. So a transaction is included at most once
//! whatever its outcome, and no includer can skip, reorder or void a client's nonces.

// Consensus code: no unchecked arithmetic and no lossy casts (STYLE.md, Lighthouse). Unit tests
// are exempt, and so is the `testkit` workload generator (its own `#![allow]`).
#![cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]
#![cfg_attr(
    not(test),
    deny(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)
)]

mod bridge;
mod encode;
mod funding;
mod genesis;
mod governance;
mod grid;
mod image;
mod invariants;
mod liquidation;
mod margin;
mod num;
mod observe;
mod options;
mod oracle;
mod params;
mod root;
pub mod scenario;
mod screen;
mod state;
pub mod testkit;
mod trade;

pub use bridge::{BridgeError, BridgeState, Credited, VoucherEntry, sign_deposit, sign_voucher};
pub use funding::{premium_ppm, rate_8h};
pub use genesis::{CHAIN_ID_MAX, DEVNET_INSURANCE_FUND, DEVNET_VALIDATOR_SEEDS, Genesis};
pub use governance::{public_key_hex, sign_approval};
pub use grid::{GridError, PortfolioGrid};
pub use image::{IMAGE_LAYOUT, ImageError, ImageScratch, StateImage, StateView};
pub use liquidation::{bankruptcy_lot_value, fillable_lot_value, liquidation_base_nanos};
pub use margin::{Health, oi_scaled_initial, tiered_requirement};
pub use observe::{OBSERVATION_FUTURE_MS, ObservationError, sign_observation};
pub use options::{
    EXTENDED_SHOCKS_PPM, PORTFOLIO_SCENARIOS, SPOT_SHOCKS_PPM, VOL_SHOCKS_PPM, option_price,
    portfolio_scenarios,
};
pub use oracle::weighted_median;
pub use params::{
    FUNDING_CAP_MAX_PPM, FUNDING_INTERVAL_MS, OBSERVATION_MAX_AGE_MS, STALENESS_MS, validate_risk,
    validate_spec,
};
pub use root::{LANES, StateRoot};
pub use screen::{
    DEFAULT_MIN_ACCOUNTS, PortfolioScreen, SCREEN_OK, ScreenCounts, ScreenError, ScreenHandle, ScreenOutput,
    ScreenStats,
};
pub use state::*;

use bastion_types::{AccountId, Block, Event, Reject};

/// Records per thread below which [`State::recompute_root`] uses fewer threads (spawning one
/// costs more than summing a few thousand records).
pub const RECOMPUTE_PART: usize = 16_384;

/// Why a whole block was refused. The state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block height {got} does not follow {last}")]
    Height { last: u64, got: u64 },
    #[error("block time {got} ms is before the previous block's {last} ms")]
    Time { last: u64, got: u64 },
    #[error("block has {got} transactions, limit {limit}")]
    TooManyTxs { got: usize, limit: usize },
    /// An oracle observation the block may not carry (see [`State::check_observations`]).
    #[error("oracle observation {index}: {reason}")]
    Observation { index: usize, reason: ObservationError },
    /// A governance proposal the block may not carry (see `State::check_proposals`).
    #[error("governance proposal {index}: {reason}")]
    Governance { index: usize, reason: String },
    /// A bridge deposit or voucher signature set the block may not carry (see
    /// [`State::check_bridge`]; vouchers are indexed after the deposits).
    #[error("bridge item {index}: {reason}")]
    Bridge { index: usize, reason: Box<BridgeError> },
    /// A transaction the block may not include (see [`State::check_txs`]).
    #[error("transaction {index} is not includable: {reason}")]
    Tx { index: usize, reason: TxError },
}

/// Why a transaction may not be included in a block on the current state. Any one refuses the
/// whole block ([`BlockError::Tx`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The signer has no account at the start of the block (an account created by a deposit
    /// earlier in the same block does not count: it may sign from the next block on).
    #[error("signer {0} has no account")]
    UnknownSigner(AccountId),
    /// The nonce skips ahead of the signer's next one.
    #[error("nonce {got} skips ahead: the signer's next nonce is {expected}")]
    NonceGap { expected: u64, got: u64 },
    /// The nonce was used already (on chain, or earlier in the same block).
    #[error("nonce {got} is used: the signer's next nonce is {expected}")]
    NonceUsed { expected: u64, got: u64 },
    /// The signer's nonce is `u64::MAX`: it can sign nothing more.
    #[error("signer {0} has used every nonce")]
    NoncesExhausted(AccountId),
}

/// What executing a block produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutcome {
    /// Everything that happened, in order.
    pub events: Vec<Event>,
    /// The state root after the block.
    pub root: StateRoot,
}

/// `(state', events, state_root)`: what [`apply`] returns for an executed block.
pub type Applied = (State, Vec<Event>, StateRoot);

/// The pure form: consumes the state and returns the next one with the block's events and
/// state root. On a refused block the unchanged state is handed back with the error.
pub fn apply(mut state: State, block: &Block) -> Result<Applied, (Box<State>, BlockError)> {
    match state.apply_block(block) {
        Ok(out) => Ok((state, out.events, out.root)),
        Err(e) => Err((Box::new(state), e)),
    }
}

/// How [`State::apply_block`] and [`State::replay_block`] run a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// Every check and step.
    Live,
    /// From a log: no check that can only refuse, and the sweep only when `sweep`.
    Replay { sweep: bool },
}

/// Whether a block whose execution produced `events` may have liquidated something in its
/// margin sweep (step 5): conservatively, whether `events` hold anything a liquidation emits
/// (a liquidation or deleveraging, an insurance payment or socialized loss, a fault, an
/// order removed by the exchange) or an unfilled order of an account that signed no
/// transaction in `block` (a liquidation order that found no liquidity). `false` means the
/// sweep found no account to liquidate, as far as the events can tell: a liquidation that
/// left no trace in them changed nothing, or changed the state root
/// ([`State::replay_block`]'s caller compares it).
pub fn sweep_may_have_acted(block: &Block, events: &[Event]) -> bool {
    events.iter().any(|e| match e {
        Event::Liquidated { .. }
        | Event::Deleveraged { .. }
        | Event::InsuranceCovered { .. }
        | Event::Socialized { .. }
        | Event::Fault { .. }
        | Event::Done { reason: bastion_types::DoneReason::Removed, .. } => true,
        Event::Done { reason: bastion_types::DoneReason::Unfilled, account, .. } => {
            !block.txs.iter().any(|tx| tx.signer == *account)
        }
        _ => false,
    })
}

fn fault(events: &mut Vec<Event>, step: &str, r: Result<(), Reject>) {
    if let Err(reason) = r {
        events.push(Event::Fault { step: step.into(), reason });
    }
}

impl State {
    /// Executes `block` in place. See the crate documentation for the order of steps.
    pub fn apply_block(&mut self, block: &Block) -> Result<BlockOutcome, BlockError> {
        self.execute_block(block, Run::Live)
    }

    /// Executes `block` again, as recovery replays it from a block log: `logged` are the
    /// events its first execution produced, on a state with the root this one has. Two
    /// things whose answer that execution already gave are not done again:
    /// - the checks that can only refuse a block (observations, proposals, bridge messages,
    ///   nonces: [`State::check_observations`] and the others, with every signature they
    ///   verify), which the block passed on this same state;
    /// - the margin sweep of step 5 (most of a block's cost on a large state), unless
    ///   `logged` shows it may have acted ([`sweep_may_have_acted`]); otherwise it found no
    ///   account to liquidate.
    ///
    /// Everything that changes the state runs as in [`State::apply_block`]. The shortcuts
    /// rest on `block` and `logged` being what the first execution took and produced: the
    /// caller must compare the returned root with the logged one and, if they differ, discard
    /// this state and replay with [`State::apply_block`]. A root equal to the logged one is
    /// the whole state equal to the one the first execution left.
    pub fn replay_block(&mut self, block: &Block, logged: &[Event]) -> Result<BlockOutcome, BlockError> {
        self.execute_block(block, Run::Replay { sweep: sweep_may_have_acted(block, logged) })
    }

    fn execute_block(&mut self, block: &Block, run: Run) -> Result<BlockOutcome, BlockError> {
        if Some(block.height) != self.height.checked_add(1) {
            return Err(BlockError::Height { last: self.height, got: block.height });
        }
        if block.timestamp_ms < self.timestamp_ms {
            return Err(BlockError::Time { last: self.timestamp_ms, got: block.timestamp_ms });
        }
        if block.txs.len() > BLOCK_TXS_MAX {
            return Err(BlockError::TooManyTxs { got: block.txs.len(), limit: BLOCK_TXS_MAX });
        }
        if run == Run::Live {
            self.check_observations(block)?;
            self.check_proposals(block)?;
            self.check_bridge(block)?;
            self.check_txs(&block.txs)?;
        }
        let mut events = Vec::new();
        self.height = block.height;
        self.timestamp_ms = block.timestamp_ms;
        self.touch(root::RecordKey::Global);
        let now = block.timestamp_ms;

        self.store_observations(block);
        self.apply_pending(&mut events);
        self.accept_proposals(&block.proposals, &mut events);
        self.apply_bridge(block, &mut events);
        self.expire_orders(block.height, &mut events);
        let r = self.update_oracle(now, &mut events);
        fault(&mut events, "oracle", r);
        self.update_breakers(now, &mut events);
        let r = self.settle_expired_options(now, &mut events);
        fault(&mut events, "option settlement", r);
        let r = self.update_marks(now);
        fault(&mut events, "marks", r);
        let r = self.remove_out_of_band_orders(&mut events);
        fault(&mut events, "stale orders", r);
        if run != (Run::Replay { sweep: false }) {
            let r = self.liquidate_all(&mut events);
            fault(&mut events, "liquidation", r);
        } else {
            // What the sweep would have done before looking: the transactions read fresh rows.
            self.refresh_risk_rows();
        }

        for (i, tx) in block.txs.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            if let Err(reason) = self.execute_tx(tx.signer, tx.nonce, &tx.action, &mut events) {
                events.push(Event::Rejected { tx: index, reason });
            }
        }

        let r = self.sample_premiums();
        fault(&mut events, "funding premium", r);
        if let Err(reason) = self.settle_funding(now, &mut events) {
            events.push(Event::Fault { step: "funding".into(), reason });
        }
        let r = self.liquidate_touched(&mut events);
        fault(&mut events, "liquidation of changed accounts", r);
        let r = self.update_basis();
        fault(&mut events, "basis", r);
        self.commit();
        Ok(BlockOutcome { events, root: self.commitment.root() })
    }

    /// Checks that every transaction of a block is includable on this state (the state at the
    /// start of the block), without changing anything: its signer is an existing account, and
    /// its nonce is exactly the signer's last nonce + 1, counting the signer's earlier
    /// transactions in `txs`. The first one that is not is named by its index.
    ///
    /// [`State::apply_block`] runs this before it changes anything; consensus may run it
    /// before checking a proposal's signatures, since it is far cheaper.
    pub fn check_txs(&self, txs: &[bastion_types::Tx]) -> Result<(), BlockError> {
        // Next nonce of each signer seen so far in this block (a block holds at most
        // BLOCK_TXS_MAX transactions, so this map is bounded by that). Looked up, never
        // iterated: a fixed-seed hash map (3.6x cheaper than a BTreeMap on a full block,
        // `bastion-perf defence`).
        let mut next: bastion_book::hash::IdMap<AccountId, Option<u64>> =
            bastion_book::hash::IdMap::with_capacity_and_hasher(txs.len(), Default::default());
        for (index, tx) in txs.iter().enumerate() {
            let refuse = |reason| BlockError::Tx { index, reason };
            let expected = match next.get(&tx.signer) {
                Some(n) => *n,
                None => {
                    let acct = self
                        .accounts
                        .get(&tx.signer)
                        .ok_or_else(|| refuse(TxError::UnknownSigner(tx.signer)))?;
                    acct.nonce.checked_add(1)
                }
            };
            // None: the signer's last nonce is u64::MAX.
            let expected = expected.ok_or_else(|| refuse(TxError::NoncesExhausted(tx.signer)))?;
            if tx.nonce > expected {
                return Err(refuse(TxError::NonceGap { expected, got: tx.nonce }));
            }
            if tx.nonce < expected {
                return Err(refuse(TxError::NonceUsed { expected, got: tx.nonce }));
            }
            next.insert(tx.signer, expected.checked_add(1));
        }
        Ok(())
    }

    /// Executes one transaction that [`State::check_txs`] admitted: its nonce is consumed
    /// whatever the action's outcome, so it can never be included again.
    fn execute_tx(
        &mut self,
        signer: AccountId,
        nonce: u64,
        action: &bastion_types::Action,
        events: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        // Checked for the whole block before execution began; kept as a guard, unreachable.
        let acct = self.accounts.get(&signer).ok_or(Reject::UnknownAccount(signer))?;
        if acct.nonce.checked_add(1) != Some(nonce) {
            return Err(Reject::Nonce { last: acct.nonce, got: nonce });
        }
        let result = self.execute_action(signer, action, events);
        if let Some(a) = self.accounts.get_mut(&signer) {
            a.nonce = nonce;
        }
        self.touch_account(signer);
        result
    }

    /// The accounts in the arena from slot `from` on, with their ids, in creation order (the
    /// arena never removes an account, so `from = n` lists exactly the accounts created since
    /// the state held `n`). The validator's admission tile learns new accounts this way.
    pub fn accounts_from(&self, from: usize) -> impl Iterator<Item = (AccountId, &Account)> + '_ {
        (from..self.accounts.len()).filter_map(|slot| self.accounts.by_slot(slot).map(|(id, a, _)| (*id, a)))
    }

    fn expire_orders(&mut self, height: u64, events: &mut Vec<Event>) {
        let ids: Vec<_> = self.markets.keys().copied().collect();
        for id in ids {
            let mut book_events = Vec::new();
            let Some(m) = self.markets.get_mut(&id) else { continue };
            if m.book.expire(height, &mut book_events) == 0 {
                continue;
            }
            for e in book_events {
                if let bastion_book::BookEvent::Done { order, account, side, reason, remaining } = e {
                    self.dirty.push(root::RecordKey::Order(id.0, order.0));
                    self.dirty.push(root::RecordKey::Account(account.0));
                    if let Some(a) = self.accounts.get_mut(&account) {
                        if let Some(p) = a.position_mut(id) {
                            match side {
                                bastion_types::Side::Buy => {
                                    p.open_buy = p.open_buy.saturating_sub(remaining).max(0)
                                }
                                bastion_types::Side::Sell => {
                                    p.open_sell = p.open_sell.saturating_sub(remaining).max(0)
                                }
                            }
                        }
                        a.prune();
                    }
                    events.push(Event::Done { market: id, order, account, reason });
                }
            }
        }
    }

    /// Folds every record changed in this block into the commitment.
    pub(crate) fn commit(&mut self) {
        self.refresh_risk_rows();
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for key in dirty {
            // An account's digest is kept by its arena slot (see `root::Commitment`).
            let slot = match key {
                root::RecordKey::Account(id) => self.accounts.slot_of(&AccountId(id)),
                _ => None,
            };
            match slot {
                Some(slot) => {
                    let value = self.accounts.by_slot(slot).map(|(_, a, _)| encode::account(a));
                    self.commitment.update_account(slot, key, value.as_deref());
                }
                None => self.commitment.update(key, encode::record(self, key).as_deref()),
            }
        }
    }

    /// The state root after the last applied block.
    pub fn state_root(&self) -> StateRoot {
        self.commitment.root()
    }

    /// The state root recomputed from every record, ignoring the incremental commitment.
    /// Equal to [`State::state_root`] unless a change escaped the dirty tracking. Large states
    /// are summed on every available core (a state sync recomputes a whole joined state).
    pub fn recompute_root(&self) -> StateRoot {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.recompute_root_with(cores, RECOMPUTE_PART)
    }

    /// [`State::recompute_root`] on exactly `threads` threads (fewer when there are fewer
    /// records): the keys are cut into parts whose lanes are summed apart and added, a sum, so
    /// the root does not depend on the cut.
    pub fn recompute_root_on(&self, threads: usize) -> StateRoot {
        self.recompute_root_with(threads, 1)
    }

    /// On at most `threads` threads, each with at least `min_part` records.
    fn recompute_root_with(&self, threads: usize, min_part: usize) -> StateRoot {
        let keys = encode::all_keys(self);
        let sum = |part: &[root::RecordKey]| {
            root::lanes_of(part.iter().filter_map(|k| encode::record(self, *k).map(|v| (*k, v))))
        };
        let threads = threads.clamp(1, keys.len().checked_div(min_part).unwrap_or(1).max(1));
        let per = keys.len().div_ceil(threads).max(1);
        let mut parts = keys.chunks(per);
        let first = parts.next().unwrap_or(&[]);
        let lanes = std::thread::scope(|scope| {
            let workers: Vec<_> = parts
                .map(|part| (part, std::thread::Builder::new().spawn_scoped(scope, move || sum(part))))
                .collect();
            let mut lanes = sum(first);
            for (part, worker) in workers {
                let other = match worker {
                    Ok(w) => w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    // No thread to be had: this part here.
                    Err(_) => sum(part),
                };
                root::add_lanes(&mut lanes, &other);
            }
            lanes
        });
        root::root_of(&lanes)
    }

    /// Health of an account's cross-margined part.
    pub fn account_health(&self, id: AccountId) -> Option<Health> {
        self.accounts.get(&id).and_then(|a| self.cross_health(a, None).ok())
    }

    /// Re-evaluates every account's cross margin at the current marks and returns how many are
    /// below maintenance (the margin sweep liquidation runs each block), with the installed
    /// portfolio screen as the block's sweep uses it.
    pub fn count_liquidatable(&self) -> usize {
        let mut table = self.sweep_table();
        table.screened = self.screen_sweep();
        (0..self.accounts.len())
            .filter(|slot| {
                self.accounts.by_slot(*slot).is_some_and(|(_, a, row)| {
                    self.row_maintenance_screened(&table, row, a, table.screened.get(*slot))
                        .is_ok_and(|(c, mm)| c < mm)
                })
            })
            .count()
    }

    /// Every account's `(collateral, maintenance)` by the fast sweep and by the full health
    /// computation; the two must agree (tests call this).
    pub fn sweep_agrees_with_full_health(&self) -> Result<(), String> {
        let table = self.sweep_table();
        for slot in 0..self.accounts.len() {
            let Some((id, a, row)) = self.accounts.by_slot(slot) else { continue };
            let rowed = self.row_maintenance(&table, row, a).map_err(|e| format!("{id}: {e}"))?;
            let fast = self.cross_maintenance(&table, a).map_err(|e| format!("{id}: {e}"))?;
            let full = self.cross_health(a, None).map_err(|e| format!("{id}: {e}"))?;
            if !self.accounts.is_watched(slot) && margin::needs_sweep(&self.risk_row(a)) {
                return Err(format!("{id}: skipped by the sweep but holds a position or a debt"));
            }
            if fast != (full.collateral, full.maintenance) || rowed != fast {
                return Err(format!("{id}: risk row {rowed:?}, sweep {fast:?}, full {full:?}"));
            }
        }
        Ok(())
    }
}
