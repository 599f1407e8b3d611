//! The portfolio screen: an evaluator outside the engine (the GPU risk kernel, which the
//! validator opens through `bastion-accel`) that the liquidation sweep hands its portfolio
//! accounts to, all at once, instead of reducing their scenario grids one account at a time.
//!
//! What a screen computes is exactly the part of portfolio margin that [`PortfolioGrid`] lays
//! out for many accounts: per account the worst scenario loss summed over underlyings and the
//! maintenance fraction of it, `(worst, maintenance)`, which [`State::portfolio_loss`] computes
//! on the CPU. Its contract is bit-identity with that function (the risk kernel's, see
//! `kernels/`): an account it answers gets the CPU's value, and an account it cannot evaluate
//! exactly (the grid flags it, or its `i128` arithmetic would overflow) comes back "not
//! evaluated" and is evaluated by the CPU. Everything else the sweep compares (collateral, the
//! standard requirements, the add-on of resting orders, the fallback to standard margin when
//! the grid fails) stays on the CPU path, unchanged. A screen that fails (an `Err`, or an
//! answer of the wrong length) sends every account of that sweep to the CPU. So `apply` stays
//! a pure function of (state, block): the events and the root do not depend on whether a
//! screen is installed, answered, flagged or failed; only the time does.
//!
//! A screen is installed on a [`State`] as a [`ScreenHandle`]: not part of the state (not
//! committed, imaged or encoded), kept by `clone()`, so every speculative state descended from
//! the store's state uses it too. The sweep ([`State::liquidate_all`]) gathers its portfolio
//! accounts into one grid per block and calls the screen only when there are at least
//! [`ScreenHandle::min_accounts`] of them ([`DEFAULT_MIN_ACCOUNTS`] unless configured): below
//! that, packing the grid and a device round trip cost more than the CPU's reduction. What
//! happened is counted in [`ScreenStats`], shared with whoever installed the screen.

use crate::grid::PortfolioGrid;
use crate::margin::position_requirement;
use crate::num::{R, add, sub};
use crate::state::{Account, State};
use bastion_types::{MarketKind, Micros};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Portfolio accounts a sweep must have before it calls the screen. The CPU sweep spends about
/// 3.6 µs per portfolio account on the 2-core box (`perf/results/issue7-risk-2core.json`,
/// `engine-sweep@1`), packing the grid about 0.3 µs; a GPU call's fixed cost (device
/// allocations, eleven copies, a launch and a synchronization) is estimated at 0.5 to 1 ms, so
/// the screen pays from a few hundred accounts on. 1,024 leaves a margin; the validator's
/// `[risk] min_accounts` changes it.
pub const DEFAULT_MIN_ACCOUNTS: usize = 1_024;

/// `status` of an account the screen evaluated (anything else: the CPU decides).
pub const SCREEN_OK: u8 = 0;

/// A screen's answer for a [`PortfolioGrid`], one entry per grid account in grid order (the
/// risk kernel's `RiskOutput`, so an adapter moves its vectors without copying).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScreenOutput {
    /// The worst scenario loss summed over underlyings (ignored where `status` is not OK).
    pub worst: Vec<Micros>,
    /// `floor(worst * portfolio_mm_ppm / 1e6)` (ignored where `status` is not OK).
    pub maintenance: Vec<Micros>,
    /// [`SCREEN_OK`] where `(worst, maintenance)` is the account's answer; any other value
    /// sends the account to the CPU.
    pub status: Vec<u8>,
}

/// Why a screen could not answer: its accounts go to the CPU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScreenError(pub String);

/// An evaluator of many accounts' portfolio grids, bit-identical to [`State::portfolio_loss`]
/// on every account it answers (see the module documentation).
pub trait PortfolioScreen: Send + Sync {
    /// What evaluates (for logs and `Debug`): `gpu 0 (NVIDIA H100)`, `host kernel`, ...
    fn name(&self) -> String;

    /// Evaluates every account of `grid`: `(worst, maintenance)` where it can, "not evaluated"
    /// elsewhere. An `Err` sends the whole grid to the CPU.
    fn screen(&self, grid: &PortfolioGrid) -> Result<ScreenOutput, ScreenError>;
}

/// What the sweeps did with the screen, counted since it was installed (all states that share
/// the [`ScreenHandle`] count here, speculative executions included).
#[derive(Debug, Default)]
pub struct ScreenStats {
    sweeps: AtomicU64,
    below_threshold: AtomicU64,
    failed: AtomicU64,
    answered: AtomicU64,
    flagged: AtomicU64,
    error_accounts: AtomicU64,
}

/// A reading of [`ScreenStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScreenCounts {
    /// Sweeps that handed a grid to the screen (answered or failed).
    pub sweeps: u64,
    /// Sweeps with portfolio accounts, but fewer than the threshold: all on the CPU.
    pub below_threshold: u64,
    /// Sweeps whose screen call failed (an error, a grid that could not be built, or an answer
    /// of the wrong length): all of their accounts on the CPU.
    pub failed: u64,
    /// Accounts whose `(worst, maintenance)` came from the screen.
    pub answered: u64,
    /// Accounts the screen returned as not evaluated: on the CPU.
    pub flagged: u64,
    /// Accounts on the CPU because their sweep's screen call failed.
    pub error_accounts: u64,
}

fn bump(c: &AtomicU64, n: usize) {
    c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl ScreenStats {
    /// The counters now.
    pub fn counts(&self) -> ScreenCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ScreenCounts {
            sweeps: get(&self.sweeps),
            below_threshold: get(&self.below_threshold),
            failed: get(&self.failed),
            answered: get(&self.answered),
            flagged: get(&self.flagged),
            error_accounts: get(&self.error_accounts),
        }
    }
}

/// A screen as installed on a [`State`]: the evaluator, the sweep's threshold and the counters.
/// Cloning shares all three.
#[derive(Clone)]
pub struct ScreenHandle {
    screen: Arc<dyn PortfolioScreen>,
    min_accounts: usize,
    stats: Arc<ScreenStats>,
}

impl fmt::Debug for ScreenHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScreenHandle")
            .field("screen", &self.screen.name())
            .field("min_accounts", &self.min_accounts)
            .field("stats", &self.stats.counts())
            .finish()
    }
}

impl ScreenHandle {
    /// `screen`, called by sweeps with at least `min_accounts` portfolio accounts (at least 1).
    pub fn new(screen: Arc<dyn PortfolioScreen>, min_accounts: usize) -> ScreenHandle {
        ScreenHandle { screen, min_accounts: min_accounts.max(1), stats: Arc::default() }
    }

    /// The evaluator's name.
    pub fn name(&self) -> String {
        self.screen.name()
    }

    /// The threshold: portfolio accounts a sweep needs before it calls the screen.
    pub fn min_accounts(&self) -> usize {
        self.min_accounts
    }

    /// The counters (shared by every clone of this handle).
    pub fn stats(&self) -> &Arc<ScreenStats> {
        &self.stats
    }
}

/// A screen's answers for one sweep: `(arena slot, worst, maintenance)` of every account it
/// evaluated, ascending by slot (the sweep's order).
#[derive(Clone, Debug, Default)]
pub(crate) struct Screened {
    rows: Vec<(usize, Micros, Micros)>,
}

impl Screened {
    /// The screen's `(worst, maintenance)` of the account in `slot`, if it evaluated it.
    pub(crate) fn get(&self, slot: usize) -> Option<(Micros, Micros)> {
        let i = self.rows.binary_search_by_key(&slot, |r| r.0).ok()?;
        self.rows.get(i).map(|r| (r.1, r.2))
    }
}

impl State {
    /// Installs a portfolio screen (or removes it with `None`). Not part of the state: it
    /// changes no result, only who computes the sweep's worst losses; clones keep it.
    pub fn set_portfolio_screen(&mut self, screen: Option<ScreenHandle>) {
        self.screen = screen;
    }

    /// The installed portfolio screen.
    pub fn portfolio_screen(&self) -> Option<&ScreenHandle> {
        self.screen.as_ref()
    }

    /// Whether the sweep's evaluation of `acct` (a slow row) reaches portfolio margin: what
    /// `collect_targets` evaluates (a cross position or a negative quote balance) in
    /// `cross_health_cached`'s portfolio branch (portfolio mode and an option among the cross
    /// positions).
    fn sweep_reaches_portfolio(&self, acct: &Account) -> bool {
        if !acct.portfolio {
            return false;
        }
        let cross = || acct.positions.iter().filter(|p| !p.isolated);
        let evaluated = acct.balances.first().is_some_and(|b| *b < 0) || cross().any(|p| p.size != 0);
        evaluated
            && cross().any(|p| {
                self.markets.get(&p.market).is_some_and(|m| matches!(m.spec.kind, MarketKind::Option { .. }))
            })
    }

    /// The screen's answers for this sweep: the watched portfolio accounts the sweep will
    /// evaluate by portfolio margin, in one grid, when there are at least the threshold's;
    /// nothing without a screen, below the threshold, or when the call fails (counted).
    pub(crate) fn screen_sweep(&self) -> Screened {
        let Some(handle) = &self.screen else { return Screened::default() };
        let slots: Vec<usize> = self
            .accounts
            .watched()
            .filter(|slot| {
                self.accounts
                    .by_slot(*slot)
                    .is_some_and(|(_, a, row)| row.slow && self.sweep_reaches_portfolio(a))
            })
            .collect();
        let stats = &handle.stats;
        if slots.is_empty() {
            return Screened::default();
        }
        if slots.len() < handle.min_accounts {
            bump(&stats.below_threshold, 1);
            return Screened::default();
        }
        let accounts = slots.iter().filter_map(|s| self.accounts.by_slot(*s).map(|(id, a, _)| (*id, a)));
        let answer = self
            .portfolio_grid_of(accounts)
            .map_err(|e| ScreenError(e.to_string()))
            .and_then(|grid| handle.screen.screen(&grid));
        bump(&stats.sweeps, 1);
        let out = match answer {
            Ok(out)
                if out.status.len() == slots.len()
                    && out.worst.len() == slots.len()
                    && out.maintenance.len() == slots.len() =>
            {
                out
            }
            _ => {
                bump(&stats.failed, 1);
                bump(&stats.error_accounts, slots.len());
                return Screened::default();
            }
        };
        let mut rows = Vec::with_capacity(slots.len());
        for (((slot, status), worst), mm) in
            slots.iter().zip(&out.status).zip(&out.worst).zip(&out.maintenance)
        {
            if *status == SCREEN_OK {
                rows.push((*slot, *worst, *mm));
            }
        }
        bump(&stats.answered, rows.len());
        bump(&stats.flagged, slots.len().saturating_sub(rows.len()));
        Screened { rows }
    }
}

/// Portfolio requirements `(initial, maintenance)` of `acct`'s cross positions from its grid's
/// `(worst, maintenance)` as a screen evaluated it: `options::portfolio_requirement` without a
/// hypothetical change, with the worst loss given instead of computed. The add-on of resting
/// orders is the same loop as there (and fails where it fails, so the caller falls back to
/// standard margin exactly where the direct evaluation does); `screen_requirement_is_the_
/// engine_s` checks the two agree on every account.
pub(crate) fn requirement_from_loss(
    state: &State,
    acct: &Account,
    (worst_total, mm): (Micros, Micros),
) -> R<(Micros, Micros)> {
    let mut order_addon: i128 = 0;
    for p in acct.positions.iter().filter(|p| !p.isolated) {
        let (size, ob, os, _) = crate::margin::overlaid(p, None);
        if ob == 0 && os == 0 {
            continue;
        }
        if let Some(m) = state.markets.get(&p.market) {
            // Resting orders are margined at the standard rate on the extra exposure they add.
            let (with_orders, _) = position_requirement(m, size, ob, os)?;
            let (without, _) = position_requirement(m, size, 0, 0)?;
            order_addon = add(order_addon, sub(with_orders, without)?.max(0))?;
        }
    }
    Ok((add(worst_total, order_addon)?, mm))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::testkit::portfolio_state;

    #[test]
    fn screen_requirement_is_the_engine_s() {
        // Every account of a random portfolio state, with resting orders (zero sizes carry
        // open buys) and extreme sizes: the requirement from the engine's own worst loss must
        // equal the direct evaluation, errors included.
        for (seed, extremes) in [(3, false), (4, true)] {
            let state = portfolio_state(2_000, seed, 4, extremes);
            let mut checked = 0;
            for (id, acct) in state.accounts.arena() {
                let sizes_loss = state.portfolio_loss(*id).unwrap();
                let direct = crate::options::portfolio_requirement(&state, acct, None, None);
                match sizes_loss {
                    Ok(loss) => {
                        assert_eq!(requirement_from_loss(&state, acct, loss), direct, "{id}");
                        checked += 1;
                    }
                    Err(_) => assert!(direct.is_err(), "{id}"),
                }
            }
            assert!(checked > 1_000, "seed {seed}: {checked}");
        }
    }

    #[test]
    fn screened_answers_are_found_by_slot() {
        let s = Screened { rows: vec![(2, 10, 8), (5, 20, 16), (9, 0, 0)] };
        assert_eq!(s.get(5), Some((20, 16)));
        assert_eq!(s.get(9), Some((0, 0)));
        assert_eq!(s.get(3), None);
        assert_eq!(Screened::default().get(0), None);
    }

    #[test]
    fn the_handle_keeps_a_threshold_of_at_least_one_and_shares_its_counters() {
        struct Never;
        impl PortfolioScreen for Never {
            fn name(&self) -> String {
                "never".into()
            }
            fn screen(&self, _: &PortfolioGrid) -> Result<ScreenOutput, ScreenError> {
                Err(ScreenError("never".into()))
            }
        }
        let h = ScreenHandle::new(Arc::new(Never), 0);
        assert_eq!(h.min_accounts(), 1);
        let clone = h.clone();
        bump(&clone.stats().failed, 2);
        assert_eq!(h.stats().counts().failed, 2);
        assert!(format!("{h:?}").contains("never"));
    }
}
