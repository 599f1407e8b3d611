//! The exchange state: accounts, markets with their books, oracle indices, the insurance fund.
//!
//! Everything that takes part in consensus lives here and is iterated only in key order
//! (`BTreeMap`, sorted `Vec`). Limits are named constants, checked where state grows.

use crate::root::{Commitment, RecordKey};
use bastion_book::{Book, BookLimits};
use bastion_types::{
    AccountId, AssetId, CollateralSpec, LiquidationParams, Lots, MarketId, MarketSpec, MarketStatus, Micros,
    OracleParams, PriceMicros, Ticks, UnderlyingId,
};
use std::collections::{BTreeMap, BTreeSet};

/// Most collateral assets the exchange supports (balances are a fixed array).
pub const ASSETS_MAX: usize = 4;
/// Most positions (including markets with only open orders) one account may hold.
pub const POSITIONS_PER_ACCOUNT_MAX: usize = 32;
/// Most accounts the state holds.
pub const ACCOUNTS_MAX: usize = 16_000_000;
/// Most markets.
pub const MARKETS_MAX: usize = 1024;
/// Most underlyings.
pub const UNDERLYINGS_MAX: usize = 64;
/// Most resting orders per book.
pub const BOOK_ORDERS_MAX: u32 = 1_000_000;
/// Most transactions one block may carry.
pub const BLOCK_TXS_MAX: usize = 100_000;

/// A validator as the exchange sees it: its stake weighs its oracle votes and approvals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    /// Voting power.
    pub stake: u64,
}

/// A position, or a market where the account has resting orders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Market.
    pub market: MarketId,
    /// Signed size in lots.
    pub size: Lots,
    /// Signed cost basis in quote micro-units (informational: PnL ranking and display; money
    /// moves as cash flows on each fill, see `trade`).
    pub cost: Micros,
    /// The market's cumulative funding index when funding was last settled for this position.
    pub funding_snapshot: i128,
    /// Total size of the account's resting buy orders in this market.
    pub open_buy: Lots,
    /// Total size of the account's resting sell orders in this market.
    pub open_sell: Lots,
    /// Whether this position is margined in isolation.
    pub isolated: bool,
    /// Quote balance of the isolated position (fill cash flows and transferred margin).
    pub isolated_balance: Micros,
}

impl Position {
    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
            && self.open_buy == 0
            && self.open_sell == 0
            && !self.isolated
            && self.isolated_balance == 0
    }
}

/// A trader's account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Cross-margin balances per collateral asset (index = asset id). The quote balance may be
    /// negative: perpetual fills move the full notional as cash, so a leveraged long holds a
    /// negative quote balance against its position (the dYdX v4 model).
    pub balances: [Micros; ASSETS_MAX],
    /// Positions sorted by market.
    pub positions: Vec<Position>,
    /// Last accepted nonce.
    pub nonce: u64,
    /// Portfolio (scenario-grid) margin instead of standard margin.
    pub portfolio: bool,
}

impl Account {
    /// The position (or resting-order record) in `market`.
    pub fn position(&self, market: MarketId) -> Option<&Position> {
        self.positions.binary_search_by_key(&market, |p| p.market).ok().and_then(|i| self.positions.get(i))
    }

    /// The position in `market`, created empty if absent (bounded by
    /// [`POSITIONS_PER_ACCOUNT_MAX`]).
    pub(crate) fn position_mut(&mut self, market: MarketId) -> Option<&mut Position> {
        match self.positions.binary_search_by_key(&market, |p| p.market) {
            Ok(i) => self.positions.get_mut(i),
            Err(i) => {
                if self.positions.len() >= POSITIONS_PER_ACCOUNT_MAX {
                    return None;
                }
                self.positions.insert(i, Position { market, ..Position::default() });
                self.positions.get_mut(i)
            }
        }
    }

    pub(crate) fn prune(&mut self) {
        self.positions.retain(|p| !p.is_empty());
    }
}

/// Accounts in a dense arena (slot order = order of creation) with an ordered index by id.
///
/// Every per-block sweep over all accounts (margin, liquidation candidates) streams the arena
/// sequentially, which is what makes it memory-bandwidth-bound rather than latency-bound;
/// anything whose order matters iterates by id through the index. Accounts are never removed.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    slots: Vec<Account>,
    ids: Vec<AccountId>,
    index: BTreeMap<AccountId, u32>,
    /// A compact copy of what the margin sweep reads, per slot (see [`RiskRow`]).
    pub(crate) risk: Vec<RiskRow>,
}

/// What the margin sweep needs of one account in 40 bytes: the quote balance, one other
/// collateral balance, and up to two cross perpetual positions. Derived data, refreshed from
/// the account record for every account changed in a block; a row that cannot represent its
/// account exactly is marked `slow` and the sweep reads the full record instead. Never part of
/// the commitment. The sweep streams these rows and is bound by memory bandwidth, so their
/// size is the sweep's cost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RiskRow {
    pub quote: i64,
    /// Balance of the non-quote asset `other_asset` (0 when none).
    pub other: i64,
    pub sizes: [i64; 2],
    pub markets: [u16; 2],
    pub other_asset: u8,
    pub slow: bool,
}

const _: () = assert!(std::mem::size_of::<RiskRow>() == 40, "a risk row is 40 bytes");

impl RiskRow {
    pub(crate) const SLOW: RiskRow =
        RiskRow { quote: 0, other: 0, sizes: [0; 2], markets: [0; 2], other_asset: 0, slow: true };
}

impl Accounts {
    /// The account `id`.
    pub fn get(&self, id: &AccountId) -> Option<&Account> {
        self.index.get(id).and_then(|s| self.slots.get(*s as usize))
    }

    /// The account `id`, mutably.
    pub fn get_mut(&mut self, id: &AccountId) -> Option<&mut Account> {
        self.index.get(id).and_then(|s| self.slots.get_mut(*s as usize))
    }

    /// Whether `id` exists.
    pub fn contains_key(&self, id: &AccountId) -> bool {
        self.index.contains_key(id)
    }

    /// Inserts or replaces the account `id`.
    pub fn insert(&mut self, id: AccountId, account: Account) {
        if let Some(row) = self.index.get(&id).and_then(|s| self.risk.get_mut(*s as usize)) {
            *row = RiskRow::SLOW;
        }
        match self.index.get(&id).and_then(|s| self.slots.get_mut(*s as usize)) {
            Some(slot) => *slot = account,
            None => {
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(account);
                self.ids.push(id);
                self.risk.push(RiskRow::SLOW);
                self.index.insert(id, slot);
            }
        }
    }

    /// The account `id`, created empty if absent.
    pub fn get_or_insert_default(&mut self, id: AccountId) -> Option<&mut Account> {
        if !self.index.contains_key(&id) {
            self.insert(id, Account::default());
        }
        self.get_mut(&id)
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Accounts in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&AccountId, &Account)> + '_ {
        self.index.iter().filter_map(|(id, s)| self.slots.get(*s as usize).map(|a| (id, a)))
    }

    /// Account ids in order.
    pub fn keys(&self) -> impl Iterator<Item = &AccountId> + '_ {
        self.index.keys()
    }

    /// Accounts in id order.
    pub fn values(&self) -> impl Iterator<Item = &Account> + '_ {
        self.iter().map(|(_, a)| a)
    }

    pub(crate) fn slot_of(&self, id: &AccountId) -> Option<usize> {
        self.index.get(id).map(|s| *s as usize)
    }

    pub(crate) fn by_slot(&self, slot: usize) -> Option<(&AccountId, &Account, &RiskRow)> {
        Some((self.ids.get(slot)?, self.slots.get(slot)?, self.risk.get(slot)?))
    }

    /// Accounts in arena order (creation order), for sweeps whose result does not depend on
    /// order (counts, or candidate lists that are sorted afterwards).
    pub fn arena(&self) -> impl Iterator<Item = (&AccountId, &Account)> + '_ {
        self.ids.iter().zip(self.slots.iter())
    }
}

impl<'a> IntoIterator for &'a Accounts {
    type Item = (&'a AccountId, &'a Account);
    type IntoIter = Box<dyn Iterator<Item = (&'a AccountId, &'a Account)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// An underlying's oracle state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Underlying {
    /// Identifier.
    pub id: UnderlyingId,
    /// Name (`BTC`).
    pub name: String,
    /// Index price; 0 until the first oracle update.
    pub index: PriceMicros,
    /// Consensus time of the last index update.
    pub updated_ms: u64,
    /// The last median diverged beyond the halt threshold.
    pub diverged: bool,
}

/// Funding state of a perpetual.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Funding {
    /// Cumulative funding paid by one lot of long since listing, in quote micro-units
    /// scaled by [`FUNDING_INDEX_SCALE`].
    pub index: i128,
    /// Sum of premium samples (ppm) since the last settlement.
    pub premium_sum: i128,
    /// Number of samples since the last settlement.
    pub samples: u64,
    /// Consensus time of the last settlement.
    pub last_settled_ms: u64,
}

/// Extra precision of the funding index (per lot), so small rates on small lots accrue.
pub const FUNDING_INDEX_SCALE: i128 = 1_000_000;

/// A market and its book.
#[derive(Clone, Debug)]
pub struct Market {
    /// Specification and risk parameters.
    pub spec: MarketSpec,
    /// Status set by the authority.
    pub status: MarketStatus,
    /// Status forced by circuit breakers (oracle stale or diverged); the stricter one rules.
    pub breaker: MarketStatus,
    /// The order book.
    pub book: Book,
    /// Mark price per whole base unit; 0 until the first index.
    pub mark: PriceMicros,
    /// EMA of (book price - index), for the mark.
    pub basis_ema: i64,
    /// Price of the last trade.
    pub last_trade: Option<Ticks>,
    /// Long open interest (equals short open interest).
    pub open_interest: Lots,
    /// Funding state (perpetuals).
    pub funding: Funding,
    /// Accounts with a non-zero position, for funding, settlement and deleveraging.
    pub holders: BTreeSet<AccountId>,
    /// Value of one lot at the mark, rounded down and up (cached per block for margin sweeps).
    pub lot_value_floor: Micros,
    /// See `lot_value_floor`.
    pub lot_value_ceil: Micros,
    /// The underlying's index when the mark was last computed.
    pub index_cache: PriceMicros,
    /// Maintenance tiers as `(notional_floor, mmr_ppm, deduction)`, derived from the risk
    /// parameters each block for the margin sweep (not part of the state commitment).
    pub mm_tiers: Vec<(Micros, i64, Micros)>,
    /// Initial tiers likewise, `(notional_floor, imr_ppm, deduction)`.
    pub im_tiers: Vec<(Micros, i64, Micros)>,
}

impl Market {
    /// The status that applies: the stricter of the authority's and the breaker's.
    pub fn effective_status(&self) -> MarketStatus {
        self.status.max(self.breaker)
    }

    /// Quote micro-units for one lot at one tick. Exact by construction (checked at listing).
    pub fn quote_per_tick_lot(&self) -> Micros {
        // NANOS_PER_UNIT is a positive constant: the division cannot fail, so the fallback
        // is never taken.
        crate::num::wide_mul(self.spec.tick_size, self.spec.lot_size_nanos)
            .checked_div(i128::from(bastion_types::NANOS_PER_UNIT))
            .unwrap_or(0)
    }

    pub(crate) fn book_limits(&self) -> BookLimits {
        BookLimits {
            max_orders: BOOK_ORDERS_MAX,
            max_orders_per_account: self.spec.risk.max_orders_per_account,
        }
    }
}

/// Totals of one collateral asset, for the conservation invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    /// Specification.
    pub spec: CollateralSpec,
    /// Deposited since genesis.
    pub deposits: Micros,
    /// Withdrawn since genesis.
    pub withdrawals: Micros,
    /// Insurance fund holdings of this asset (seized from bankrupt accounts; the quote asset's
    /// entry is the fund proper).
    pub insurance: Micros,
}

/// The whole exchange state.
#[derive(Clone, Debug)]
pub struct State {
    /// Height of the last applied block.
    pub height: u64,
    /// Timestamp of the last applied block.
    pub timestamp_ms: u64,
    /// Signs deposits (the bridge) and, on devnets, parameter updates.
    pub authority: AccountId,
    /// The validator set.
    pub validators: Vec<Validator>,
    /// Oracle guards.
    pub oracle: OracleParams,
    /// Liquidation and funding parameters.
    pub liquidation: LiquidationParams,
    /// Collateral assets, indexed by asset id.
    pub assets: Vec<Asset>,
    /// Underlyings, indexed by id.
    pub underlyings: Vec<Underlying>,
    /// Markets by id.
    pub markets: BTreeMap<MarketId, Market>,
    /// Accounts by id.
    pub accounts: Accounts,
    /// Trading fees collected (quote).
    pub fees: Micros,
    /// Parameter updates waiting for the next block boundary.
    pub pending: Vec<bastion_types::ParamUpdate>,
    /// Next order id to assign (one sequence across markets).
    pub next_order: u64,
    /// Incremental state commitment.
    pub(crate) commitment: Commitment,
    /// Records changed in the current block.
    pub(crate) dirty: Vec<RecordKey>,
}

impl State {
    /// Quote insurance fund balance.
    pub fn insurance_fund(&self) -> Micros {
        self.assets.first().map(|a| a.insurance).unwrap_or(0)
    }

    pub(crate) fn touch(&mut self, key: RecordKey) {
        self.dirty.push(key);
    }

    pub(crate) fn touch_account(&mut self, id: AccountId) {
        self.dirty.push(RecordKey::Account(id.0));
    }

    pub(crate) fn touch_market(&mut self, id: MarketId) {
        self.dirty.push(RecordKey::Market(id.0));
    }

    pub(crate) fn asset_index(&self, asset: AssetId) -> Option<usize> {
        let i = usize::from(asset.0);
        (i < self.assets.len() && i < ASSETS_MAX).then_some(i)
    }
}
