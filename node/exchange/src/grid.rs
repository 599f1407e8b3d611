//! The portfolio grid laid out for many accounts at once: the input of the GPU risk screen
//! (`bk_portfolio_risk` in `kernels/`) and of its CPU twin.
//!
//! The engine evaluates portfolio margin one account at a time ([`State::portfolio_loss`]):
//! for each underlying, each of the 31 scenarios reprices every position, and the worst loss is
//! the requirement. The repricing (`new price - mark` of a market in a scenario, an option
//! priced by Black-Scholes in Q64.64) depends on the market and the scenario, never on the
//! account. [`PortfolioGrid`] therefore computes it once per market, here on the CPU with the
//! engine's own code, and leaves per account only the integer reduction
//! `worst = max_s -Σ floor(diff[m][s] · size · lot / 1e9)`, summed over underlyings, with every
//! step overflow-checked in `i128`. That reduction is what the kernel runs, one thread per
//! account; the packing keeps the engine's summation order (underlyings ascending, positions in
//! account order), so the kernel's result equals [`State::portfolio_loss`] bit for bit, and a
//! case the layout cannot carry is flagged for the CPU instead of approximated.
//!
//! The arrays follow the kernel's ABI exactly (see `kernels/cuda/portfolio_risk.cu`), so they
//! are handed to it as slices without conversion.

use crate::options::{PORTFOLIO_SCENARIOS, portfolio_scenarios, scenario_row, shocked_spot};
use crate::state::{Account, State};
use bastion_types::{AccountId, MarketId, Ppm, UnderlyingId};

/// Why a grid could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    /// The layout indexes with 32-bit offsets.
    #[error("the grid has more than u32::MAX {0}")]
    TooLarge(&'static str),
}

/// The portfolio grid of a set of accounts in the risk kernel's layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortfolioGrid {
    /// Dense market index → market id (every market of the state, in id order).
    pub markets: Vec<MarketId>,
    /// `markets.len() * 31`, row-major: `diffs[m * 31 + s]` is market `m`'s price in scenario
    /// `s` minus its mark, quote micro-units (0 where `market_ok[m]` is 0).
    pub diffs: Vec<i64>,
    /// Per market: the lot size in nanos of a unit.
    pub lots: Vec<i64>,
    /// Per market: 1 when every scenario priced and fits 64 bits, 0 otherwise (accounts with a
    /// non-zero position there go to the CPU).
    pub market_ok: Vec<u8>,
    /// The accounts, in the order given.
    pub accounts: Vec<AccountId>,
    /// `accounts.len() + 1` offsets into `group_pos`: account `a`'s underlying groups.
    pub acct_groups: Vec<u32>,
    /// `groups + 1` offsets into the position arrays: one group per underlying the account
    /// holds, ascending by underlying id.
    pub group_pos: Vec<u32>,
    /// Per position: its dense market index.
    pub pos_market: Vec<u32>,
    /// Per position: its signed size in lots.
    pub pos_size: Vec<i64>,
    /// Per account: 0 when the engine's evaluation fails before any position is summed (an
    /// underlying without an index, or a shocked spot out of range); the CPU then decides.
    pub acct_ok: Vec<u8>,
    /// The maintenance fraction of the worst loss, ppm.
    pub mm_ppm: Ppm,
}

fn offset(n: usize, what: &'static str) -> Result<u32, GridError> {
    u32::try_from(n).map_err(|_| GridError::TooLarge(what))
}

impl PortfolioGrid {
    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether the grid has no account.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Number of positions over all accounts.
    pub fn positions(&self) -> usize {
        self.pos_size.len()
    }
}

impl State {
    /// The portfolio grid of `accounts` (unknown ids are skipped) at the current index
    /// prices and marks: the per-market scenario table computed once, and every account's cross
    /// positions packed in the engine's summation order. Evaluated by the risk kernel, it gives
    /// each account's [`State::portfolio_loss`].
    pub fn portfolio_grid(
        &self,
        accounts: impl IntoIterator<Item = AccountId>,
    ) -> Result<PortfolioGrid, GridError> {
        self.portfolio_grid_of(
            accounts.into_iter().filter_map(|id| self.accounts.get(&id).map(|acct| (id, acct))),
        )
    }

    /// [`State::portfolio_grid`] of accounts already looked up (the liquidation sweep hands
    /// over arena slots, so the id index is not walked once per account).
    pub(crate) fn portfolio_grid_of<'a>(
        &self,
        accounts: impl IntoIterator<Item = (AccountId, &'a Account)>,
    ) -> Result<PortfolioGrid, GridError> {
        let scenarios = portfolio_scenarios();
        let mut g = PortfolioGrid { mm_ppm: self.liquidation.portfolio_mm_ppm, ..PortfolioGrid::default() };
        // Per underlying: whether every scenario's shocked spot exists (the engine fails the
        // whole account otherwise, whatever its sizes).
        let underlying_ok: Vec<bool> = self
            .underlyings
            .iter()
            .map(|u| u.index > 0 && scenarios.iter().all(|sc| shocked_spot(u.index, sc.0).is_ok()))
            .collect();
        let mut dense: std::collections::BTreeMap<MarketId, (u32, UnderlyingId)> = Default::default();
        for (id, m) in &self.markets {
            let index = offset(g.markets.len(), "markets")?;
            dense.insert(*id, (index, m.spec.underlying));
            g.markets.push(*id);
            g.lots.push(m.spec.lot_size_nanos);
            // The engine's row narrowed to 64 bits; a row that fails or does not fit stays 0 and
            // is flagged, so accounts with a position there go to the CPU.
            let mut row = [0i64; PORTFOLIO_SCENARIOS];
            let ok = scenario_row(self, m).is_some_and(|wide| {
                row.iter_mut().zip(wide).all(|(slot, d)| i64::try_from(d).map(|d| *slot = d).is_ok())
            });
            if !ok {
                row = [0; PORTFOLIO_SCENARIOS];
            }
            g.diffs.extend_from_slice(&row);
            g.market_ok.push(u8::from(ok));
        }
        g.acct_groups.push(0);
        g.group_pos.push(0);
        // Reused per account: (underlying, dense market, size) of each cross position.
        let mut held: Vec<(UnderlyingId, u32, i64)> = Vec::new();
        for (id, acct) in accounts {
            held.clear();
            for p in acct.positions.iter().filter(|p| !p.isolated) {
                // A position on a market the state does not know is skipped, as the engine does.
                if let Some((index, u)) = dense.get(&p.market) {
                    held.push((*u, *index, p.size));
                }
            }
            // Stable: positions keep the account's order within an underlying.
            held.sort_by_key(|(u, ..)| *u);
            let ok = held.iter().all(|(u, ..)| underlying_ok.get(usize::from(u.0)).copied().unwrap_or(false));
            let mut last: Option<UnderlyingId> = None;
            for (u, market, size) in &held {
                if last.is_some_and(|l| l != *u) {
                    g.group_pos.push(offset(g.pos_size.len(), "positions")?);
                }
                last = Some(*u);
                g.pos_market.push(*market);
                g.pos_size.push(*size);
            }
            if last.is_some() {
                g.group_pos.push(offset(g.pos_size.len(), "positions")?);
            }
            g.acct_groups.push(offset(g.group_pos.len().saturating_sub(1), "groups")?);
            g.acct_ok.push(u8::from(ok));
            g.accounts.push(id);
        }
        Ok(g)
    }
}
