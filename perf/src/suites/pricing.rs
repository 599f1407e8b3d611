//! Suite `pricing`: Black-Scholes-Merton prices and greeks (call, put, both deltas, gamma,
//! vega) in bastion-math's Q64.64 fixed point against a plain f64 implementation of the same
//! formulas, on the same random inputs. Goal: fixed point at most 3x slower than f64.
//!
//! Then the exchange's per-block repricing: the same blocks of the devnet workload (option
//! markets, portfolio-margined traders) executed with the markets' price memos and with the
//! memos off (every option price computed at every use, as before the memos), alternating
//! block by block in the same run.

use crate::harness::{self, Ctx, Measurement, Percentiles, Report};
use bastion_exchange::testkit::{PathKind, Workload};
use bastion_exchange::{Genesis, State};
use bastion_math::option::MS_PER_YEAR;
use bastion_math::{
    Fx, MarkInputs, OptionInputs, OptionKind, Rounding, black_scholes_merton, mark_price_micros,
};
use bastion_types::{Action, Block, Tx};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

/// One generated option, as exchange integers and as the two pricers' inputs.
struct Case {
    mark: MarkInputs,
    fx: OptionInputs,
    f: [f64; 6],
}

fn generate(n: u64, seed: u64) -> Result<Vec<Case>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cases = Vec::with_capacity(n as usize);
    for _ in 0..n {
        // Ranges of the shared vectors: spot 1e3..1e5, strike within ±50%, vol 5%..250%,
        // 1 day..3 years, r 0..12%, q 0..8%.
        let spot_micros: i64 = rng.random_range(1_000_000_000..100_000_000_000);
        let strike_micros = spot_micros / 1_000 * rng.random_range(500..1_500);
        let volatility_ppm: i64 = rng.random_range(50_000..2_500_000);
        let rate_ppm: i64 = rng.random_range(0..120_000);
        let dividend_yield_ppm: i64 = rng.random_range(0..80_000);
        let time_ms: i64 = rng.random_range(86_400_000..3 * MS_PER_YEAR);
        let mark = MarkInputs {
            kind: OptionKind::Call,
            spot_micros,
            strike_micros,
            volatility_ppm,
            rate_ppm,
            dividend_yield_ppm,
            time_ms,
        };
        let e = |r: Result<Fx, bastion_math::MathError>| r.map_err(|e| e.to_string());
        let ppm = |x: i64| e(Fx::from_ratio(x as i128, 1_000_000, Rounding::Nearest));
        let fx = OptionInputs {
            spot: e(Fx::from_micros(spot_micros as i128))?,
            strike: e(Fx::from_micros(strike_micros as i128))?,
            rate: ppm(rate_ppm)?,
            dividend_yield: ppm(dividend_yield_ppm)?,
            volatility: ppm(volatility_ppm)?,
            years: e(Fx::from_ratio(time_ms as i128, MS_PER_YEAR as i128, Rounding::Nearest))?,
        };
        let f = [
            spot_micros as f64 / 1e6,
            strike_micros as f64 / 1e6,
            rate_ppm as f64 / 1e6,
            dividend_yield_ppm as f64 / 1e6,
            volatility_ppm as f64 / 1e6,
            time_ms as f64 / MS_PER_YEAR as f64,
        ];
        cases.push(Case { mark, fx, f });
    }
    Ok(cases)
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let n = ctx.size(100_000, 4_000);
    let rounds = ctx.size(20, 3);
    let cases = generate(n, ctx.seed)?;
    let params = serde_json::json!({ "options": n, "outputs": "call, put, call_delta, put_delta, gamma, vega, d1, d2" });

    // Accuracy first: the largest difference between the two pricers over the batch, relative
    // (absolute where the value is below 1e-3, as in the vector tests).
    let mut worst = (0.0f64, String::new());
    let mut failures = 0u64;
    for (i, c) in cases.iter().enumerate() {
        let Ok(g) = black_scholes_merton(&c.fx) else {
            failures += 1;
            continue;
        };
        let fx = [g.call, g.put, g.call_delta, g.put_delta, g.gamma, g.vega, g.d1, g.d2];
        let fl = bsm_f64(c.f);
        for (k, (a, b)) in fx.iter().zip(fl).enumerate() {
            let a = a.to_f64();
            let d = (a - b).abs() / if b.abs() < 1e-3 { 1.0 } else { b.abs() };
            if d > worst.0 {
                worst = (d, format!("case {i} output {k}: fixed {a:e} f64 {b:e}"));
            }
        }
    }
    if failures > 0 {
        return Err(format!("{failures} generated cases failed to price in fixed point"));
    }

    report.push(harness::rounds("bastion-math-fx", "batch", 1, rounds, n, params.clone(), |_| {
        let mut acc = 0i128;
        for c in &cases {
            if let Ok(g) = black_scholes_merton(black_box(&c.fx)) {
                acc = acc.wrapping_add(g.call.raw() ^ g.put.raw() ^ g.gamma.raw() ^ g.vega.raw());
            }
        }
        black_box(acc);
    }));
    report.push(harness::rounds("f64-reference", "batch", 1, rounds, n, params.clone(), |_| {
        let mut acc = 0.0f64;
        for c in &cases {
            let g = bsm_f64(black_box(c.f));
            acc += g[0] + g[1] + g[4] + g[5];
        }
        black_box(acc);
    }));
    let m = cases.len() as u64;
    report.push(harness::latency("bastion-math-fx per option", 1_000, n, params.clone(), |i| {
        black_box(black_scholes_merton(black_box(&cases[(i % m) as usize].fx)).ok());
    }));
    report.push(harness::rounds("mark_price_micros (from integers)", "batch", 1, rounds, n, params, |_| {
        let mut acc = 0i64;
        for c in &cases {
            acc = acc.wrapping_add(mark_price_micros(black_box(&c.mark), Rounding::Up).unwrap_or(0));
        }
        black_box(acc);
    }));

    let ratio = report.ratio_throughput("fixed_vs_f64", "bastion-math-fx", "f64-reference").unwrap_or(0.0);
    let slowdown = if ratio > 0.0 { 1.0 / ratio } else { f64::INFINITY };
    report.goal(
        "pricing at most 3x slower than f64",
        "fixed-point ops/s >= f64 ops/s / 3",
        format!("{slowdown:.2}x slower (ratio {ratio:.3})"),
        slowdown <= 3.0,
    );
    report.note(format!(
        "max difference fixed vs f64 over {n} options (relative; absolute below 1e-3): {:e} ({})",
        worst.0, worst.1
    ));
    report.note("one op = call, put, both deltas, gamma, vega, d1, d2 of one option (one BSM evaluation)");
    block_repricing(ctx, report)
}

/// The devnet state after `warmup` workload blocks (8 traders, as the consensus loopback's
/// synthetic blocks, all on portfolio margin so that their option positions are margined by
/// the scenario grid) and the next `blocks` blocks, 12 ms apart, 16 transactions each.
fn workload_blocks(seed: u64, warmup: u64, blocks: u64) -> Result<(State, Vec<Block>), String> {
    const TRADERS: u64 = 8;
    let g = Genesis::devnet();
    let mut s = State::from_genesis(&g).map_err(|e| format!("{e:?}"))?;
    let mut w = Workload::new(seed, TRADERS, PathKind::Calm, &g);
    w.block_ms = 12;
    let apply = |s: &mut State, b: &Block| s.apply_block(b).map(|_| ()).map_err(|e| e.to_string());
    let funding = w.funding_txs(100_000_000_000);
    apply(&mut s, &w.block_with(funding))?;
    let mut portfolio = Vec::new();
    for t in 1..=TRADERS {
        let signer = w.id(t);
        let nonce = s.accounts.get(&signer).map_or(0, |a| a.nonce) + 1;
        w.nonces[t as usize] = nonce;
        portfolio.push(Tx { signer, nonce, action: Action::SetMarginMode { portfolio: true } });
    }
    apply(&mut s, &w.block_with(portfolio))?;
    for _ in 0..warmup {
        let b = w.next_block(&s, 16);
        apply(&mut s, &b)?;
    }
    let start = s.clone();
    let mut out = Vec::with_capacity(blocks as usize);
    for _ in 0..blocks {
        let b = w.next_block(&s, 16);
        apply(&mut s, &b)?;
        out.push(b);
    }
    Ok((start, out))
}

/// Per-block execution time of the same blocks with and without the price memos.
fn block_repricing(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let (warmup, blocks, rounds) = (ctx.size(300, 100), ctx.size(400, 100), ctx.size(10, 3));
    let (start, blocks) = workload_blocks(ctx.seed, warmup, blocks)?;
    let options =
        start.markets.values().filter(|m| matches!(m.spec.kind, bastion_types::MarketKind::Option { .. }));
    let params = serde_json::json!({
        "blocks": blocks.len(),
        "rounds": rounds,
        "option_markets": options.count(),
        "portfolio_accounts_with_positions":
            start.accounts.values().filter(|a| a.portfolio && !a.positions.is_empty()).count(),
        "txs_per_block": 16,
        "block_ms": 12,
    });
    let (mut on, mut off_h) = (harness::histogram(), harness::histogram());
    let (mut on_ns, mut off_ns) = (0u64, 0u64);
    for round in 0..rounds {
        // Alternate which variant runs first, block by block, so drift on a shared machine
        // falls on both.
        let (mut a, mut b) = (start.clone(), start.clone());
        b.set_price_memos(false);
        for (i, block) in blocks.iter().enumerate() {
            for off in if (round as usize + i).is_multiple_of(2) { [false, true] } else { [true, false] } {
                let s = if off { &mut b } else { &mut a };
                let t = std::time::Instant::now();
                s.apply_block(block).map_err(|e| e.to_string())?;
                let ns = (t.elapsed().as_nanos() as u64).max(1);
                let (h, total) = if off { (&mut off_h, &mut off_ns) } else { (&mut on, &mut on_ns) };
                h.saturating_record(ns);
                *total += ns;
            }
        }
        if a.state_root() != b.state_root() {
            return Err(format!("round {round}: the states with the memos on and off have different roots"));
        }
    }
    let ops = rounds * blocks.len() as u64;
    let measurement = |name: &str, h: &hdrhistogram::Histogram<u64>, ns: u64| Measurement {
        name: name.into(),
        ops,
        elapsed_ns: ns,
        ops_per_s: ops as f64 / (ns as f64 / 1e9),
        latency: Some(Percentiles::from_histogram(h)),
        unit: "block".into(),
        params: params.clone(),
    };
    report.push(measurement("apply_block with price memos", &on, on_ns));
    report.push(measurement("apply_block, memos off", &off_h, off_ns));
    report.ratio_throughput("block_memo_vs_off", "apply_block with price memos", "apply_block, memos off");
    report.note(
        "block time advances every block (12 ms), so every option's time to expiry changes: marks and \
         scenario rows are recomputed once per block either way; the memo removes the repeats within a block \
         (second sweep, initial-margin checks of portfolio orders) and the second pricing when stable = index",
    );
    Ok(())
}

/// The f64 baseline: the same closed forms with `f64::ln/exp/sqrt` and Cody's erfc.
#[inline]
fn bsm_f64([s, k, r, q, vol, t]: [f64; 6]) -> [f64; 8] {
    let sqrt_t = t.sqrt();
    let v = vol * sqrt_t;
    let d1 = ((s / k).ln() + (r - q) * t) / v + 0.5 * v;
    let d2 = d1 - v;
    let df_q = (-q * t).exp();
    let df_r = (-r * t).exp();
    let (n_d1, n_md1) = (ncdf(d1), ncdf(-d1));
    let (n_d2, n_md2) = (ncdf(d2), ncdf(-d2));
    let pdf1 = (-0.5 * d1 * d1).exp() * 0.398_942_280_401_432_7;
    let call = s * df_q * n_d1 - k * df_r * n_d2;
    let put = k * df_r * n_md2 - s * df_q * n_md1;
    [call, put, df_q * n_d1, -df_q * n_md1, df_q * pdf1 / (s * v), s * df_q * pdf1 * sqrt_t, d1, d2]
}

#[inline]
fn ncdf(x: f64) -> f64 {
    0.5 * erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
}

/// erfc(x) after W. J. Cody, "Rational Chebyshev approximations for the error function"
/// (Math. Comp. 1969) and his public-domain SPECFUN CALERF: three rational approximations,
/// relative error near 1e-16 in double precision.
// The coefficients are quoted digit for digit as Cody published them.
#[allow(clippy::excessive_precision, clippy::needless_range_loop)]
fn erfc(x: f64) -> f64 {
    const A: [f64; 5] = [
        3.1611237438705656,
        113.864154151050156,
        377.485237685302021,
        3209.37758913846947,
        0.185777706184603153,
    ];
    const B: [f64; 4] = [23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062];
    const C: [f64; 9] = [
        0.564188496988670089,
        8.88314979438837594,
        66.1191906371416295,
        298.635138197400131,
        881.95222124176909,
        1712.04761263407058,
        2051.07837782607147,
        1230.33935479799725,
        2.15311535474403846e-8,
    ];
    const D: [f64; 8] = [
        15.7449261107098347,
        117.693950891312499,
        537.181101862009858,
        1621.38957456669019,
        3290.79923573345963,
        4362.61909014324716,
        3439.36767414372164,
        1230.33935480374942,
    ];
    const P: [f64; 6] = [
        0.305326634961232344,
        0.360344899949804439,
        0.125781726111229246,
        0.0160837851487422766,
        6.58749161529837803e-4,
        0.0163153871373020978,
    ];
    const Q: [f64; 5] = [
        2.56852019228982242,
        1.87295284992346047,
        0.527905102951428412,
        0.0605183413124413191,
        0.00233520497626869185,
    ];
    const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;
    let y = x.abs();
    if y <= 0.46875 {
        // erf by a rational function of x^2, then 1 - erf.
        let ysq = if y > 1.11e-16 { y * y } else { 0.0 };
        let mut num = A[4] * ysq;
        let mut den = ysq;
        for i in 0..3 {
            num = (num + A[i]) * ysq;
            den = (den + B[i]) * ysq;
        }
        return 1.0 - x * (num + A[3]) / (den + B[3]);
    }
    let r = if y <= 4.0 {
        let mut num = C[8] * y;
        let mut den = y;
        for i in 0..7 {
            num = (num + C[i]) * y;
            den = (den + D[i]) * y;
        }
        let r = (num + C[7]) / (den + D[7]);
        // exp(-y^2) split as exp(-ysq^2) exp(-del) to keep the tail's relative accuracy.
        let ysq = (y * 16.0).trunc() / 16.0;
        let del = (y - ysq) * (y + ysq);
        (-ysq * ysq).exp() * (-del).exp() * r
    } else if y >= 26.543 {
        0.0
    } else {
        let ysq = 1.0 / (y * y);
        let mut num = P[5] * ysq;
        let mut den = ysq;
        for i in 0..4 {
            num = (num + P[i]) * ysq;
            den = (den + Q[i]) * ysq;
        }
        let r = (FRAC_1_SQRT_PI - ysq * (num + P[4]) / (den + Q[4])) / y;
        let ysq = (y * 16.0).trunc() / 16.0;
        let del = (y - ysq) * (y + ysq);
        (-ysq * ysq).exp() * (-del).exp() * r
    };
    if x < 0.0 { 2.0 - r } else { r }
}
