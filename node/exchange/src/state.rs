//! The exchange state: accounts, markets with their books, oracle indices, the insurance fund.
//!
//! Everything that takes part in consensus lives here and is iterated only in key order
//! (`BTreeMap`, sorted `Vec`). Limits are named constants, checked where state grows.

use crate::root::{Commitment, RecordKey};
use bastion_book::{Book, BookLimits};
use bastion_types::{
    AccountId, AssetId, CollateralSpec, LiquidationParams, Lots, MarketId, MarketSpec, MarketStatus, Micros,
    OracleParams, Ppm, PriceMicros, Ticks, UnderlyingId,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validator {
    /// Voting power.
    pub stake: u64,
    /// Its ed25519 identity key, which signs governance approvals; `None` (a genesis without
    /// validator keys, as the exchange-only test genesis) means its approvals never count.
    pub key: Option<[u8; 32]>,
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
    /// Lots x milliseconds held since the market's last funding settlement, accrued up to
    /// `funding_since_ms` (perpetuals only; see `funding`). Funding is paid for the time a
    /// size was held, so this survives the position going flat until the next settlement.
    pub funding_lot_ms: i128,
    /// Consensus time from which the current `size` has been held (its last change, or the
    /// last funding settlement).
    pub funding_since_ms: u64,
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
            && self.funding_lot_ms == 0
            && self.open_buy == 0
            && self.open_sell == 0
            && !self.isolated
            && self.isolated_balance == 0
    }

    /// Whether the account is one of the market's `holders`: it holds a size, or held one
    /// since the last funding settlement and owes or is owed funding for that time.
    pub(crate) fn holds(&self) -> bool {
        self.size != 0 || self.funding_lot_ms != 0
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

/// Accounts per arena chunk (see [`Accounts`]).
pub(crate) const CHUNK: usize = 1 << CHUNK_BITS;
// 256 accounts: small enough that the first write to a chunk after a snapshot view (a copy of
// its accounts) costs tens of microseconds, large enough that a view of 1M accounts is 4096
// reference counts.
const CHUNK_BITS: u32 = 8;

/// One chunk of the arena: up to [`CHUNK`] accounts and their ids, in slot order. The ids are
/// a separate array so that sweeps reading only the accounts stream no ids.
#[derive(Clone, Debug, Default)]
pub(crate) struct Chunk {
    pub(crate) ids: Vec<AccountId>,
    pub(crate) accounts: Vec<Account>,
}

/// Chunk and offset of a slot.
#[inline]
fn split(slot: usize) -> (usize, usize) {
    (slot.wrapping_shr(CHUNK_BITS), slot & (CHUNK - 1))
}

/// Accounts in a dense arena (slot order = order of creation) with an ordered index by id.
///
/// Every per-block sweep over all accounts (margin, liquidation candidates) streams the arena
/// sequentially, which is what makes it memory-bandwidth-bound rather than latency-bound;
/// anything whose order matters iterates by id through the index. Accounts are never removed.
///
/// The arena is a list of chunks of 4096 accounts (all full but the last), each behind an
/// `Arc` and written through `Arc::make_mut`: cloning the arena (a [`crate::StateView`] for a
/// snapshot) costs one reference count per chunk, and a write after such a clone copies only
/// the chunk it touches.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    chunks: Vec<Arc<Chunk>>,
    len: usize,
    index: BTreeMap<AccountId, u32>,
    /// A compact copy of what the margin sweep reads, per slot (see [`RiskRow`]).
    pub(crate) risk: Vec<RiskRow>,
    /// One bit per slot: set unless the account is trivially safe (no position, no negative
    /// balance, a row that represents it exactly), which no price move can make liquidatable.
    /// The sweep visits set bits only; maintained wherever a row is written.
    watch: Vec<u64>,
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
    /// The account has an isolated position (the sweep then reads the full record for it).
    pub isolated: bool,
}

const _: () = assert!(std::mem::size_of::<RiskRow>() == 40, "a risk row is 40 bytes");

impl RiskRow {
    pub(crate) const SLOW: RiskRow = RiskRow {
        quote: 0,
        other: 0,
        sizes: [0; 2],
        markets: [0; 2],
        other_asset: 0,
        slow: true,
        isolated: false,
    };
}

impl Accounts {
    #[inline]
    fn slot(&self, slot: usize) -> Option<&Account> {
        let (c, i) = split(slot);
        self.chunks.get(c)?.accounts.get(i)
    }

    #[inline]
    fn slot_mut(&mut self, slot: usize) -> Option<&mut Account> {
        let (c, i) = split(slot);
        Arc::make_mut(self.chunks.get_mut(c)?).accounts.get_mut(i)
    }

    /// The account `id`.
    pub fn get(&self, id: &AccountId) -> Option<&Account> {
        self.index.get(id).and_then(|s| self.slot(*s as usize))
    }

    /// The account `id`, mutably (copies its chunk first if a view shares it).
    pub fn get_mut(&mut self, id: &AccountId) -> Option<&mut Account> {
        let slot = *self.index.get(id)? as usize;
        self.slot_mut(slot)
    }

    /// Whether `id` exists.
    pub fn contains_key(&self, id: &AccountId) -> bool {
        self.index.contains_key(id)
    }

    /// Inserts or replaces the account `id`.
    pub fn insert(&mut self, id: AccountId, account: Account) {
        if let Some(&slot) = self.index.get(&id) {
            self.set_risk(slot as usize, RiskRow::SLOW, true);
            if let Some(a) = self.slot_mut(slot as usize) {
                *a = account;
            }
            return;
        }
        let slot = u32::try_from(self.len).unwrap_or(u32::MAX);
        self.push(id, account);
        self.risk.push(RiskRow::SLOW);
        self.set_watch(slot as usize, true);
        self.index.insert(id, slot);
    }

    /// Sets `slot`'s risk row and whether the sweep must visit it.
    pub(crate) fn set_risk(&mut self, slot: usize, row: RiskRow, watch: bool) {
        if let Some(r) = self.risk.get_mut(slot) {
            *r = row;
        }
        self.set_watch(slot, watch);
    }

    fn set_watch(&mut self, slot: usize, on: bool) {
        let (word, bit) = (slot / 64, slot % 64);
        if self.watch.len() <= word {
            self.watch.resize(word.saturating_add(1), 0);
        }
        if let Some(w) = self.watch.get_mut(word) {
            let mask = 1u64.wrapping_shl(u32::try_from(bit).unwrap_or(0));
            if on {
                *w |= mask;
            } else {
                *w &= !mask;
            }
        }
    }

    /// Whether the sweep visits `slot`.
    pub(crate) fn is_watched(&self, slot: usize) -> bool {
        let mask = 1u64.wrapping_shl(u32::try_from(slot % 64).unwrap_or(0));
        self.watch.get(slot / 64).is_some_and(|w| w & mask != 0)
    }

    /// The slots the sweep visits, ascending.
    pub(crate) fn watched(&self) -> impl Iterator<Item = usize> + '_ {
        self.watch.iter().enumerate().flat_map(|(i, &word)| {
            let base = i.saturating_mul(64);
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest.wrapping_sub(1);
                Some(base.saturating_add(usize::try_from(bit).unwrap_or(0)))
            })
        })
    }

    /// Appends to the arena (a new chunk when the last one is full).
    fn push(&mut self, id: AccountId, account: Account) {
        match self.chunks.last_mut() {
            Some(last) if last.ids.len() < CHUNK => {
                let last = Arc::make_mut(last);
                last.ids.push(id);
                last.accounts.push(account);
            }
            _ => {
                // Grows by doubling up to CHUNK, so a small state stays small.
                self.chunks.push(Arc::new(Chunk { ids: vec![id], accounts: vec![account] }));
            }
        }
        self.len = self.len.saturating_add(1);
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
        self.len
    }

    /// True when there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Accounts in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&AccountId, &Account)> + '_ {
        self.index.iter().filter_map(|(id, s)| self.slot(*s as usize).map(|a| (id, a)))
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

    #[inline]
    pub(crate) fn by_slot(&self, slot: usize) -> Option<(&AccountId, &Account, &RiskRow)> {
        let (c, i) = split(slot);
        let chunk = self.chunks.get(c)?;
        Some((chunk.ids.get(i)?, chunk.accounts.get(i)?, self.risk.get(slot)?))
    }

    /// Accounts in arena order (creation order), for sweeps whose result does not depend on
    /// order (counts, or candidate lists that are sorted afterwards).
    pub fn arena(&self) -> impl Iterator<Item = (&AccountId, &Account)> + '_ {
        self.chunks.iter().flat_map(|c| c.ids.iter().zip(c.accounts.iter()))
    }

    /// The arena's chunks, shared (what a view holds).
    pub(crate) fn chunks(&self) -> Vec<Arc<Chunk>> {
        self.chunks.clone()
    }

    /// Rebuilds the accounts from an arena in slot order (an image's): chunks, the id index
    /// and risk rows marked slow (the caller refreshes them). `expected`: how many accounts
    /// the arena holds (for allocation only). `Err` names a duplicate id.
    pub(crate) fn from_arena(
        arena: impl IntoIterator<Item = (AccountId, Account)>,
        expected: usize,
    ) -> Result<Accounts, AccountId> {
        let mut accounts = Accounts::default();
        let mut ids: Vec<(AccountId, u32)> = Vec::with_capacity(expected);
        let mut chunk = Chunk::default();
        for (id, account) in arena {
            let slot = u32::try_from(accounts.len).map_err(|_| id)?;
            ids.push((id, slot));
            if chunk.ids.capacity() == 0 {
                let size = expected.saturating_sub(accounts.len).clamp(1, CHUNK);
                chunk = Chunk { ids: Vec::with_capacity(size), accounts: Vec::with_capacity(size) };
            }
            chunk.ids.push(id);
            chunk.accounts.push(account);
            if chunk.ids.len() >= CHUNK {
                accounts.chunks.push(Arc::new(std::mem::take(&mut chunk)));
            }
            accounts.len = accounts.len.saturating_add(1);
        }
        if !chunk.ids.is_empty() {
            accounts.chunks.push(Arc::new(chunk));
        }
        // Sorted first, so the duplicate check is one pass and the map is built in bulk.
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w.first().map(|x| x.0) == w.get(1).map(|x| x.0)) {
            return Err(w.first().map_or(AccountId(0), |x| x.0));
        }
        accounts.index = ids.into_iter().collect();
        accounts.risk = vec![RiskRow::SLOW; accounts.len];
        accounts.watch = vec![u64::MAX; accounts.len.div_ceil(64)];
        Ok(accounts)
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
    /// Stable price (Mango v4): follows the index by at most
    /// `oracle.stable_move_ppm_per_s` of itself per second; 0 until the first index.
    /// Initial margin and withdrawals value positions at the less favourable of it and the
    /// index (see `margin`).
    pub stable: PriceMicros,
    /// Consensus time of the stable price's last update.
    pub stable_ms: u64,
    /// Attested implied volatility per option expiry, ascending by expiry: only expiries of
    /// listed, unsettled option markets on this underlying.
    pub vols: Vec<AttestedVol>,
}

/// The validators' attested volatility of one underlying's options of one expiry: the lower
/// stake-weighted medians of the fresh observations' at-the-money levels and skews, taken when
/// they covered at least 2/3 of stake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttestedVol {
    /// The options' expiry.
    pub expiry_ms: u64,
    /// At-the-money volatility, annualised ppm.
    pub atm_ppm: Ppm,
    /// Skew: volatility change per unit of relative moneyness `(K - S) / S`, ppm.
    pub skew_ppm: Ppm,
    /// Consensus time of the quorum that set it.
    pub updated_ms: u64,
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
    /// Accounts with a non-zero position, or a flat one with funding accrued since the last
    /// settlement ([`Position::holds`]), for funding, settlement and deleveraging.
    pub holders: BTreeSet<AccountId>,
    /// Value of one lot at the mark, rounded down and up (cached per block for margin sweeps).
    pub lot_value_floor: Micros,
    /// See `lot_value_floor`.
    pub lot_value_ceil: Micros,
    /// The underlying's index when the mark was last computed.
    pub index_cache: PriceMicros,
    /// Volatility (annualised ppm) the option was last marked with: the attested one for its
    /// expiry and strike, clamped by the risk parameters, or `spec.risk.volatility_ppm` before
    /// the first quorum; 0 for perpetuals. The portfolio grid shocks it.
    pub volatility_ppm: Ppm,
    /// Value of one lot at the stable price (a perpetual) or at the option's price on the
    /// stable price (an option), rounded down and up: initial margin values a position at the
    /// less favourable of this and `lot_value_floor`/`lot_value_ceil` (cached per block).
    pub stable_lot_floor: Micros,
    /// See `stable_lot_floor`.
    pub stable_lot_ceil: Micros,
    /// Maintenance tiers as `(notional_floor, mmr_ppm, deduction)`, derived from the risk
    /// parameters each block for the margin sweep (not part of the state commitment).
    pub mm_tiers: Vec<(Micros, i64, Micros)>,
    /// Initial tiers likewise, `(notional_floor, imr_ppm, deduction)`.
    pub im_tiers: Vec<(Micros, i64, Micros)>,
    /// Option prices kept with the inputs they were computed from (see `options`); not state.
    pub(crate) memo: crate::options::PriceMemo,
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
    /// On a devnet only, the key that may credit deposits (`Action::Deposit`) and change
    /// parameters; `None` on every other chain (the genesis refuses one there).
    pub authority: Option<AccountId>,
    /// The chain id governance signatures are bound to.
    pub chain_id: String,
    /// A test network: its authority may change parameters (`Action::UpdateParams`).
    pub devnet: bool,
    /// Governance proposals accepted so far: the next must carry this + 1.
    pub governance_nonce: u64,
    /// The validator set.
    pub validators: Vec<Validator>,
    /// Each validator's latest observation that a block included, by validator index (one
    /// entry per validator; `None` until its first). The oracle aggregates the fresh ones.
    pub observations: Vec<Option<bastion_types::Observation>>,
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
    /// Credited source deposits and withdrawal vouchers (see `bridge`).
    pub(crate) bridge: crate::bridge::BridgeState,
    /// Incremental state commitment.
    pub(crate) commitment: Commitment,
    /// Records changed in the current block.
    pub(crate) dirty: Vec<RecordKey>,
    /// The portfolio screen the liquidation sweep consults (`screen`): not state (never
    /// committed, imaged or compared, and no result depends on it); clones share it.
    pub(crate) screen: Option<crate::screen::ScreenHandle>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_chunks_are_copied_on_write_only() {
        let mut a = Accounts::default();
        let n = 3 * CHUNK + 5;
        for i in 0..n as u64 {
            a.insert(AccountId(i * 7 % n as u64 + 1_000), Account { nonce: i, ..Account::default() });
        }
        assert_eq!(a.len(), n);
        assert_eq!(a.chunks.len(), 4);
        assert!(a.chunks[..3].iter().all(|c| c.ids.len() == CHUNK && c.accounts.len() == CHUNK));
        let shared = a.chunks();
        let before = a.clone();
        // A write through the index copies the one chunk it lands in.
        let id = *a.chunks[1].ids.first().unwrap();
        a.get_mut(&id).unwrap().nonce = u64::MAX;
        let same: Vec<bool> = a.chunks.iter().zip(&shared).map(|(x, y)| Arc::ptr_eq(x, y)).collect();
        assert_eq!(same, [true, false, true, true]);
        assert_eq!(a.get(&id).unwrap().nonce, u64::MAX);
        assert_eq!(before.get(&id).unwrap().nonce, CHUNK as u64);
        assert_eq!(shared[1].accounts[0].nonce, CHUNK as u64);
        // Appending copies only the last chunk; replacing goes through the index as before.
        a.insert(AccountId(1), Account::default());
        assert!(!Arc::ptr_eq(&a.chunks[3], &shared[3]) && shared[3].ids.len() == 5);
        a.insert(id, Account { nonce: 9, ..Account::default() });
        assert_eq!(a.get(&id).unwrap().nonce, 9);
        // Order of iteration is unchanged: arena order and id order.
        assert!(a.arena().map(|(i, _)| *i).take(n).eq(before.arena().map(|(i, _)| *i)));
        assert!(a.keys().zip(a.keys().skip(1)).all(|(x, y)| x < y));
        for slot in 0..a.len() {
            let (id, acct, _) = a.by_slot(slot).unwrap();
            assert_eq!(a.slot_of(id), Some(slot));
            assert_eq!(a.get(id), Some(acct));
        }
        // Rebuilding from the arena gives the same accounts in the same slots.
        let rebuilt = Accounts::from_arena(a.arena().map(|(i, x)| (*i, x.clone())), a.len()).unwrap();
        assert!(rebuilt.arena().eq(a.arena()));
        assert!(rebuilt.iter().eq(a.iter()));
        assert_eq!(rebuilt.chunks.len(), a.chunks.len());
        let dup =
            Accounts::from_arena([(AccountId(5), Account::default()), (AccountId(5), Account::default())], 2);
        assert_eq!(dup.err(), Some(AccountId(5)));
    }
}
