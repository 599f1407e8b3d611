#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The portfolio grid and the risk kernel's reduction against the engine, bit for bit.
//!
//! The kernel's device code (`kernels/cuda/bk_risk.cuh`) is compiled for the host into
//! `bastion-kernels`; these tests run it on grids packed from random portfolio states and
//! compare every account with [`State::portfolio_loss`], the engine's own evaluation. Seeds are
//! printed; `BASTION_SEED=N` replays one.

use bastion_exchange::testkit::portfolio_state;
use bastion_exchange::{PORTFOLIO_SCENARIOS, PortfolioGrid, State};
use bastion_kernels::risk::{RiskInput, host_portfolio_risk};
use bastion_types::AccountId;

fn input(g: &PortfolioGrid) -> RiskInput<'_> {
    RiskInput {
        diffs: &g.diffs,
        lots: &g.lots,
        market_ok: &g.market_ok,
        acct_groups: &g.acct_groups,
        group_pos: &g.group_pos,
        pos_market: &g.pos_market,
        pos_size: &g.pos_size,
        acct_ok: &g.acct_ok,
        mm_ppm: g.mm_ppm,
    }
}

fn seed() -> u64 {
    let s = std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_secs())
    });
    println!("seed {s} (replay with BASTION_SEED={s})");
    s
}

/// Whether an account's grid rows contain something the layout hands to the CPU: a failed
/// underlying, or a non-zero position on a market whose scenario table did not fit.
fn layout_fallback(g: &PortfolioGrid, a: usize) -> bool {
    if g.acct_ok[a] == 0 {
        return true;
    }
    let groups = g.acct_groups[a] as usize..g.acct_groups[a + 1] as usize;
    let positions = g.group_pos[groups.start] as usize..g.group_pos[groups.end] as usize;
    positions.into_iter().any(|p| g.pos_size[p] != 0 && g.market_ok[g.pos_market[p] as usize] == 0)
}

/// Runs the kernel's host build on the grid of every account and checks each against the
/// engine: equal `(worst, maintenance)` where the kernel answers; where it hands the account to
/// the CPU, the engine must fail too unless the layout itself flagged it. Returns (answered,
/// handed to the CPU).
fn check(state: &State, label: &str) -> (usize, usize) {
    let ids: Vec<AccountId> = state.accounts.iter().map(|(id, _)| *id).collect();
    let g = state.portfolio_grid(ids.iter().copied()).unwrap();
    assert_eq!(g.len(), ids.len());
    assert_eq!(g.diffs.len(), g.markets.len() * PORTFOLIO_SCENARIOS);
    let out = host_portfolio_risk(&input(&g)).unwrap();
    let (mut answered, mut handed) = (0, 0);
    for (a, id) in g.accounts.iter().enumerate() {
        let engine = state.portfolio_loss(*id).unwrap();
        if out.status[a] == 0 {
            answered += 1;
            let (worst, mm) =
                engine.unwrap_or_else(|e| panic!("{label}: {id}: kernel answered, engine failed: {e:?}"));
            assert_eq!((out.worst[a], out.mm[a]), (worst, mm), "{label}: {id}");
        } else {
            handed += 1;
            assert!(
                engine.is_err() || layout_fallback(&g, a),
                "{label}: {id}: kernel handed to the CPU an account the engine evaluates: {engine:?}"
            );
        }
    }
    (answered, handed)
}

#[test]
fn kernel_equals_the_engine_on_random_portfolios() {
    let s = seed();
    for round in 0..4u64 {
        let state = portfolio_state(2_000, s.wrapping_add(round), round as usize * 4, false);
        let (answered, handed) = check(&state, &format!("seed {s} round {round}"));
        // Realistic sizes never leave the kernel's range; the authority (account 0) holds
        // nothing and answers 0.
        assert_eq!(handed, 0, "seed {s} round {round}");
        assert_eq!(answered, state.accounts.len());
    }
}

#[test]
fn extreme_sizes_stay_exact() {
    // Sizes near the 64-bit limit: every product still fits i128 (|diff · size · lot| < 2^127),
    // and the kernel's wide multiply path must agree with the engine on all of them.
    let s = seed();
    let state = portfolio_state(5_000, s, 6, true);
    let ids: Vec<AccountId> = state.accounts.iter().map(|(id, _)| *id).collect();
    let g = state.portfolio_grid(ids.iter().copied()).unwrap();
    let extreme = g.pos_size.iter().filter(|z| z.unsigned_abs() > 1 << 62).count();
    assert!(extreme > 0, "seed {s}: the workload has extreme sizes");
    let (answered, handed) = check(&state, &format!("seed {s} extremes"));
    assert_eq!((answered, handed), (state.accounts.len(), 0), "seed {s}");
}

#[test]
fn failures_go_to_the_cpu_exactly_when_the_engine_fails() {
    let s = seed();
    let mut state = portfolio_state(3_000, s, 4, false);
    // ETH loses its index (every account holding an ETH market fails in the engine: no mark
    // price), and one BTC option's volatility is set so high that its shocked volatility
    // overflows (the engine fails for every account with a non-zero position there).
    state.underlyings[1].index = 0;
    let option = state
        .markets
        .iter()
        .find(|(_, m)| matches!(m.spec.kind, bastion_types::MarketKind::Option { .. }))
        .map(|(id, _)| *id)
        .unwrap();
    state.markets.get_mut(&option).unwrap().volatility_ppm = i64::MAX;
    let (answered, handed) = check(&state, &format!("seed {s} failures"));
    assert!(handed > 100, "seed {s}: {handed} handed to the CPU");
    assert!(answered > 100, "seed {s}: {answered} answered");
    // And the engine fails for each of them: nothing was handed over that the CPU answers.
    let ids: Vec<AccountId> = state.accounts.iter().map(|(id, _)| *id).collect();
    let g = state.portfolio_grid(ids.iter().copied()).unwrap();
    assert_eq!(g.market_ok.iter().filter(|ok| **ok == 0).count(), 1 + count_eth_markets(&state));
    let out = host_portfolio_risk(&input(&g)).unwrap();
    for (a, id) in g.accounts.iter().enumerate() {
        assert_eq!(out.status[a] == 1, state.portfolio_loss(*id).unwrap().is_err(), "seed {s}: {id}");
    }
}

fn count_eth_markets(state: &State) -> usize {
    state.markets.values().filter(|m| m.spec.underlying == bastion_types::UnderlyingId(1)).count()
}

#[test]
fn grid_groups_follow_underlyings_and_losses_are_real() {
    let state = portfolio_state(300, 11, 2, false);
    let ids: Vec<AccountId> = state.accounts.iter().map(|(id, _)| *id).collect();
    let g = state.portfolio_grid(ids.iter().copied().chain([AccountId(u64::MAX)])).unwrap();
    assert_eq!(g.len(), state.accounts.len(), "an unknown account is skipped");
    assert_eq!(*g.acct_groups.last().unwrap() as usize + 1, g.group_pos.len());
    assert_eq!(*g.group_pos.last().unwrap() as usize, g.positions());
    // Two underlyings: an account's groups are at most two, BTC's first.
    for a in 0..g.len() {
        let groups = g.acct_groups[a + 1] - g.acct_groups[a];
        assert!(groups <= 2, "account {a}: {groups} groups");
    }
    assert!(g.market_ok.iter().all(|ok| *ok == 1));
    let out = host_portfolio_risk(&input(&g)).unwrap();
    // Someone carries risk, and the maintenance fraction is 80% of the loss, rounded down.
    assert!(out.worst.iter().any(|w| *w > 0));
    for a in 0..g.len() {
        assert_eq!(out.mm[a], out.worst[a] * 800_000 / 1_000_000);
    }
}

#[test]
fn the_sweep_s_scenario_cache_changes_nothing() {
    // The liquidation sweep reprices each market once per sweep (a cache) instead of once per
    // account; every account's (collateral, maintenance) must equal the direct evaluation,
    // including accounts whose evaluation fails (they fall back to standard margin either way).
    let s = seed();
    for extremes in [false, true] {
        let state = portfolio_state(3_000, s, 4, extremes);
        state.sweep_agrees_with_full_health().unwrap_or_else(|e| panic!("seed {s}: {e}"));
    }
    let mut broken = portfolio_state(3_000, s, 4, false);
    broken.underlyings[1].index = 0;
    let option = broken
        .markets
        .iter()
        .find(|(_, m)| matches!(m.spec.kind, bastion_types::MarketKind::Option { .. }))
        .map(|(id, _)| *id)
        .unwrap();
    broken.markets.get_mut(&option).unwrap().volatility_ppm = i64::MAX;
    broken.sweep_agrees_with_full_health().unwrap_or_else(|e| panic!("seed {s}: {e}"));
    assert!(broken.count_liquidatable() <= broken.accounts.len());
}
