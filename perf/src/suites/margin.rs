//! Suite `margin`: re-evaluate every cross-margin account after a price move (the sweep the
//! liquidation engine runs each block). Baseline: the same collateral and tiered maintenance
//! formulas in plain f64 over struct-of-arrays copies of the same accounts, in the same run.

use crate::harness::{Ctx, Report, rounds};
use bastion_exchange::testkit::Rng;
use bastion_exchange::{Account, Genesis, Position, State};
use bastion_types::{AccountId, Block, MarketId, UnderlyingId};
use std::time::Instant;

const BTC: i64 = 100_000_000_000; // $100,000 in price micro-units
const ETH: i64 = 4_000_000_000;

/// A block at `height` and `t` whose only content is every devnet validator's signed
/// observation of BTC at `btc` and ETH at `eth`, made at `t`.
fn oracle_block(chain_id: &str, height: u64, t: u64, btc: i64, eth: i64) -> Block {
    let prices = [(UnderlyingId(0), btc), (UnderlyingId(1), eth)];
    Block {
        height,
        timestamp_ms: t,
        oracle: bastion_exchange::testkit::observe_all(chain_id, 4, height, t, &prices),
        txs: Vec::new(),
        ..Default::default()
    }
}

/// Builds a state with `n` accounts holding balanced long/short perpetual positions at 1-30x.
fn build(n: u64, seed: u64) -> Result<(State, u64), String> {
    let g = Genesis::devnet();
    let mut s = State::from_genesis(&g).map_err(|e| e.to_string())?;
    let t0 = g.timestamp_ms;
    s.apply_block(&oracle_block(&g.chain_id, 1, t0 + 250, BTC, ETH)).map_err(|e| e.to_string())?;
    let mut rng = Rng::new(seed);
    let markets = [MarketId(0), MarketId(1)];
    // Accounts come in pairs with opposite positions, so open interest balances.
    let mut i = 1u64;
    while i < n {
        let collateral = i128::from(rng.range(1_000, 100_000)) * 1_000_000;
        let leverage = rng.range(1, 30);
        let mut pos_a = Vec::new();
        let mut pos_b = Vec::new();
        for (k, mid) in markets.iter().enumerate() {
            if k == 1 && rng.chance(50) {
                continue;
            }
            let m = &s.markets[mid];
            let lot_value = m.lot_value_ceil.max(1);
            let lots = i64::try_from(collateral * i128::from(leverage) / lot_value / 2).unwrap_or(1).max(1);
            let cost = i128::from(lots) * lot_value;
            pos_a.push(Position {
                market: *mid,
                size: lots,
                cost,
                funding_snapshot: m.funding.index,
                ..Position::default()
            });
            pos_b.push(Position {
                market: *mid,
                size: -lots,
                cost: -cost,
                funding_snapshot: m.funding.index,
                ..Position::default()
            });
        }
        // Cash-flow accounting: the long paid the notional, the short received it.
        let notional: i128 = pos_a.iter().map(|p| p.cost).sum();
        let mut a = Account { positions: pos_a, ..Account::default() };
        a.balances[0] = collateral - notional;
        let mut b = Account { positions: pos_b, ..Account::default() };
        b.balances[0] = collateral + notional;
        if rng.chance(20) {
            b.balances[1] = 100_000; // 0.1 BTC of collateral
        }
        for (id, acct) in [(AccountId(i), a), (AccountId(i + 1), b)] {
            for p in &acct.positions {
                if let Some(m) = s.markets.get_mut(&p.market) {
                    if p.size > 0 {
                        m.open_interest += p.size;
                    }
                    m.holders.insert(id);
                }
            }
            s.accounts.insert(id, acct);
        }
        i += 2;
    }
    s.refresh_all_risk_rows();
    Ok((s, t0 + 250))
}

/// The f64 baseline: the same formulas over flat arrays.
struct Flat {
    quote: Vec<f64>,
    btc_collateral: Vec<f64>,
    /// (market index, size in lots) per position, and where each account's positions start.
    positions: Vec<(usize, f64)>,
    starts: Vec<usize>,
}

fn flatten(s: &State) -> Flat {
    let mut f =
        Flat { quote: Vec::new(), btc_collateral: Vec::new(), positions: Vec::new(), starts: Vec::new() };
    for a in s.accounts.values() {
        f.starts.push(f.positions.len());
        f.quote.push(a.balances[0] as f64);
        f.btc_collateral.push(a.balances[1] as f64);
        for p in &a.positions {
            f.positions.push((p.market.0 as usize, p.size as f64));
        }
    }
    f.starts.push(f.positions.len());
    f
}

/// Per market: the value of one lot, and maintenance tiers as (floor, rate, deduction).
type FlatMarket = (f64, Vec<(f64, f64, f64)>);

fn f64_sweep(f: &Flat, s: &State) -> usize {
    // Per-market lot value and (floor, rate, deduction) tiers, as the engine derives them.
    let markets: Vec<FlatMarket> = s
        .markets
        .values()
        .map(|m| {
            let lot_value = m.mark as f64 * m.spec.lot_size_nanos as f64 / 1e9;
            let mut ded = 0.0;
            let mut prev: Option<f64> = None;
            let tiers = m
                .spec
                .risk
                .tiers
                .iter()
                .map(|t| {
                    let rate = t.mmr_ppm as f64 / 1e6;
                    if let Some(p) = prev {
                        ded += t.notional_floor as f64 * (rate - p);
                    }
                    prev = Some(rate);
                    (t.notional_floor as f64, rate, ded)
                })
                .collect();
            (lot_value, tiers)
        })
        .collect();
    let btc = s.underlyings[0].index as f64 / 1e6 * 0.9; // haircut 10%
    let mut liquidatable = 0;
    for i in 0..f.quote.len() {
        let mut collateral = f.quote[i] + f.btc_collateral[i] * btc;
        let mut mm = 0.0;
        for &(mi, size) in &f.positions[f.starts[i]..f.starts[i + 1]] {
            let (lot_value, tiers) = &markets[mi];
            collateral += size * lot_value;
            let notional = size.abs() * lot_value;
            let (_, rate, ded) =
                tiers.iter().rev().find(|t| notional >= t.0).copied().unwrap_or((0.0, 0.0, 0.0));
            mm += (notional * rate - ded).max(0.0);
        }
        if collateral < mm {
            liquidatable += 1;
        }
    }
    liquidatable
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let n = ctx.size(1_000_000, 50_000);
    let t = Instant::now();
    let (mut state, t1) = build(n, ctx.seed)?;
    report.note(format!("built {} accounts in {:.1} s", state.accounts.len(), t.elapsed().as_secs_f64()));
    // The price move: BTC and ETH down 4% in one block (within the 5% max move). The block
    // runs the real liquidation sweep and liquidates whoever fell below maintenance.
    let moved = oracle_block(&state.chain_id, 2, t1 + 250, BTC / 100 * 96, ETH / 100 * 96);
    let t = Instant::now();
    let out = state.apply_block(&moved).map_err(|e| e.to_string())?;
    let block_ms = t.elapsed().as_secs_f64() * 1e3;
    let liquidations =
        out.events.iter().filter(|e| matches!(e, bastion_types::Event::Liquidated { .. })).count();
    let adl = out.events.iter().filter(|e| matches!(e, bastion_types::Event::Deleveraged { .. })).count();
    report.note(format!(
        "price-move block (oracle, marks, sweep, {liquidations} liquidation fills, {adl} deleveragings): {block_ms:.1} ms"
    ));
    let accounts = state.accounts.len() as u64;
    let reps = ctx.size(15, 3);
    let mut found = 0;
    report.push(rounds(
        "bastion-sweep",
        "sweep of all accounts",
        1,
        reps,
        accounts,
        serde_json::json!({"accounts": accounts}),
        |_| {
            found = std::hint::black_box(state.count_liquidatable());
        },
    ));
    let flat = flatten(&state);
    let mut found_f64 = 0;
    report.push(rounds(
        "f64-sweep",
        "sweep of all accounts",
        1,
        reps,
        accounts,
        serde_json::json!({"accounts": accounts}),
        |_| {
            found_f64 = std::hint::black_box(f64_sweep(&flat, &state));
        },
    ));
    report.note(format!(
        "after the move: {found} accounts below maintenance (f64 baseline counts {found_f64})"
    ));
    report.ratio_throughput("fixed_vs_f64", "bastion-sweep", "f64-sweep");
    if let Some(m) = report.get("bastion-sweep").and_then(|m| m.latency.clone()) {
        let ms = m.p50_ns as f64 / 1e6 * (1_000_000.0 / accounts as f64);
        report.goal(
            "re-evaluate 1M cross-margin accounts",
            "< 20 ms on one core",
            format!("{ms:.2} ms per 1M accounts (p50 of {reps} sweeps over {accounts})"),
            ms < 20.0,
        );
    }
    Ok(())
}
