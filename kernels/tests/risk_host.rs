#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The portfolio-risk kernel's math (`cuda/bk_risk.cuh`, compiled for the host) against a plain
//! Rust reference of the exchange's `portfolio_requirement` scenario reduction (`i128::checked_*`
//! and the exchange's `div_floor`): hand-written cases with known numbers, overflow edges, the
//! fallback conditions, the i128 helpers one by one, a seeded random campaign (also split into
//! ranges on threads), and `validate` on malformed input.
//!
//! The campaign's seed is printed; `BASTION_SEED=<seed>` replays it.

use bastion_kernels::risk::{
    self, PPM, RiskError, RiskInput, RiskOutput, SCENARIOS, STATUS_FALLBACK, STATUS_OK, host_portfolio_risk,
    host_portfolio_risk_range,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const NANOS_PER_UNIT: i128 = 1_000_000_000;

// ---- The reference -----------------------------------------------------------------------------

/// The exchange's `div_floor` (node/exchange/src/num.rs), verbatim in behaviour.
fn div_floor(a: i128, b: i128) -> Option<i128> {
    let q = a.checked_div(b)?;
    let r = a.checked_rem(b)?;
    if r != 0 && ((r < 0) != (b < 0)) { q.checked_sub(1) } else { Some(q) }
}

#[derive(Clone, Debug)]
struct Market {
    underlying: u32,
    lot: i64,
    ok: bool,
    diffs: [i64; SCENARIOS],
}

#[derive(Clone, Debug, Default)]
struct Account {
    ok: bool,
    /// (market index, size in lots), in the account's order.
    positions: Vec<(u32, i64)>,
}

/// `portfolio_requirement`'s scenario reduction, structured as the exchange writes it:
/// underlyings sorted, scenarios outer, the account's positions inner.
fn reference(markets: &[Market], acct: &Account, mm_ppm: i64) -> Option<(i128, i128)> {
    if !acct.ok {
        return None;
    }
    if acct.positions.iter().any(|&(m, size)| size != 0 && !markets[m as usize].ok) {
        return None;
    }
    let mut underlyings: Vec<u32> = Vec::new();
    for &(m, _) in &acct.positions {
        let u = markets[m as usize].underlying;
        if !underlyings.contains(&u) {
            underlyings.push(u);
        }
    }
    underlyings.sort_unstable();
    let mut worst_total: i128 = 0;
    for u in underlyings {
        let mut worst: i128 = 0;
        for s in 0..SCENARIOS {
            let mut pnl: i128 = 0;
            for &(m, size) in &acct.positions {
                let mk = &markets[m as usize];
                if mk.underlying != u || size == 0 {
                    continue;
                }
                let diff = i128::from(mk.diffs[s]);
                let term = div_floor(
                    diff.checked_mul(i128::from(size))?.checked_mul(i128::from(mk.lot))?,
                    NANOS_PER_UNIT,
                )?;
                pnl = pnl.checked_add(term)?;
            }
            worst = worst.max(pnl.checked_neg()?);
        }
        worst_total = worst_total.checked_add(worst)?;
    }
    let mm = div_floor(worst_total.checked_mul(i128::from(mm_ppm))?, i128::from(PPM))?;
    Some((worst_total, mm))
}

/// The same semantics read straight off the packed layout (for inputs with no model, e.g.
/// mutated ones that still validate).
fn reference_packed(input: &RiskInput, a: usize) -> Option<(i128, i128)> {
    if input.acct_ok[a] == 0 {
        return None;
    }
    let groups = input.acct_groups[a] as usize..input.acct_groups[a + 1] as usize;
    let all = input.group_pos[groups.start] as usize..input.group_pos[groups.end] as usize;
    if all.clone().any(|p| input.pos_size[p] != 0 && input.market_ok[input.pos_market[p] as usize] == 0) {
        return None;
    }
    let mut worst_total: i128 = 0;
    for g in groups {
        let mut worst: i128 = 0;
        for s in 0..SCENARIOS {
            let mut pnl: i128 = 0;
            for p in input.group_pos[g] as usize..input.group_pos[g + 1] as usize {
                let size = input.pos_size[p];
                if size == 0 {
                    continue;
                }
                let m = input.pos_market[p] as usize;
                let diff = i128::from(input.diffs[m * SCENARIOS + s]);
                let prod = diff.checked_mul(i128::from(size))?.checked_mul(i128::from(input.lots[m]))?;
                pnl = pnl.checked_add(div_floor(prod, NANOS_PER_UNIT)?)?;
            }
            worst = worst.max(pnl.checked_neg()?);
        }
        worst_total = worst_total.checked_add(worst)?;
    }
    let mm = div_floor(worst_total.checked_mul(i128::from(input.mm_ppm))?, i128::from(PPM))?;
    Some((worst_total, mm))
}

// ---- Packing -----------------------------------------------------------------------------------

/// The kernel's layout, owned.
#[derive(Clone, Debug, Default)]
struct Packed {
    diffs: Vec<i64>,
    lots: Vec<i64>,
    market_ok: Vec<u8>,
    acct_groups: Vec<u32>,
    group_pos: Vec<u32>,
    pos_market: Vec<u32>,
    pos_size: Vec<i64>,
    acct_ok: Vec<u8>,
    mm_ppm: i64,
}

impl Packed {
    /// Packs as the host does: one group per underlying in increasing id order, positions in
    /// the account's order within it.
    fn new(markets: &[Market], accounts: &[Account], mm_ppm: i64) -> Packed {
        let mut p = Packed { mm_ppm, ..Packed::default() };
        for m in markets {
            p.diffs.extend_from_slice(&m.diffs);
            p.lots.push(m.lot);
            p.market_ok.push(u8::from(m.ok));
        }
        p.acct_groups.push(0);
        p.group_pos.push(0);
        for a in accounts {
            let mut underlyings: Vec<u32> =
                a.positions.iter().map(|&(m, _)| markets[m as usize].underlying).collect();
            underlyings.sort_unstable();
            underlyings.dedup();
            for u in underlyings {
                for &(m, size) in &a.positions {
                    if markets[m as usize].underlying == u {
                        p.pos_market.push(m);
                        p.pos_size.push(size);
                    }
                }
                p.group_pos.push(u32::try_from(p.pos_market.len()).unwrap());
            }
            p.acct_groups.push(u32::try_from(p.group_pos.len() - 1).unwrap());
            p.acct_ok.push(u8::from(a.ok));
        }
        p
    }

    fn input(&self) -> RiskInput<'_> {
        RiskInput {
            diffs: &self.diffs,
            lots: &self.lots,
            market_ok: &self.market_ok,
            acct_groups: &self.acct_groups,
            group_pos: &self.group_pos,
            pos_market: &self.pos_market,
            pos_size: &self.pos_size,
            acct_ok: &self.acct_ok,
            mm_ppm: self.mm_ppm,
        }
    }
}

/// Runs the host kernel and compares every account with both references, bit for bit.
fn check(markets: &[Market], accounts: &[Account], mm_ppm: i64) -> RiskOutput {
    let packed = Packed::new(markets, accounts, mm_ppm);
    let input = packed.input();
    let shape = input.validate().unwrap();
    assert_eq!(shape.n_accounts, accounts.len());
    let out = host_portfolio_risk(&input).unwrap();
    assert_eq!(out.len(), accounts.len());
    let mut bad = Vec::new();
    for (i, acct) in accounts.iter().enumerate() {
        let want = reference(markets, acct, mm_ppm);
        assert_eq!(want, reference_packed(&input, i), "the two references disagree on account {i}");
        let got = out.get(i);
        let status_ok = match want {
            Some(_) => out.status[i] == STATUS_OK,
            None => out.status[i] == STATUS_FALLBACK && out.worst[i] == 0 && out.mm[i] == 0,
        };
        if got != want || !status_ok {
            bad.push(format!(
                "account {i}: host status {} worst {} mm {}, reference {want:?}; {acct:?}",
                out.status[i], out.worst[i], out.mm[i]
            ));
        }
    }
    assert!(bad.is_empty(), "{} mismatches, first ones:\n{}", bad.len(), bad[..bad.len().min(5)].join("\n"));
    out
}

fn market(underlying: u32, lot: i64, diffs: impl Fn(usize) -> i64) -> Market {
    Market { underlying, lot, ok: true, diffs: std::array::from_fn(diffs) }
}

fn account(positions: &[(u32, i64)]) -> Account {
    Account { ok: true, positions: positions.to_vec() }
}

// ---- Hand-written cases ------------------------------------------------------------------------

/// A perpetual on underlying 0: scenario s moves the price by (s - 15) dollars.
fn perp() -> Market {
    market(0, 100_000_000, |s| (s as i64 - 15) * 1_000_000)
}

/// An option on underlying 1 whose value rises with s: 7 + s micros (tiny, so rounding shows).
fn option() -> Market {
    market(1, 333_333_333, |s| 7 + s as i64 * 1_000_001)
}

#[test]
fn long_perp_known_numbers() {
    // 3 lots of 0.1 unit: pnl_s = floor(diff_s * 3 * 1e8 / 1e9) = 0.3 diff_s; worst at s = 0,
    // diff -15e6: pnl -4.5e6, worst 4_500_000; mm at 5% = 225_000.
    let out = check(&[perp()], &[account(&[(0, 3)])], 50_000);
    assert_eq!(out.get(0), Some((4_500_000, 225_000)));
    // Short the same: worst at s = 30 (diff +15e6): also 4.5e6.
    let out = check(&[perp()], &[account(&[(0, -3)])], 50_000);
    assert_eq!(out.get(0), Some((4_500_000, 225_000)));
}

#[test]
fn short_option_rounds_down() {
    // size -2, lot 333_333_333: s = 0, diff 7: floor(7 * -2 * 333333333 / 1e9) = floor(-4.67) = -5.
    // s = 30, diff 30_000_037: 30000037 * -666666666 / 1e9 = -20000024.6 -> -20000025: worst.
    let out = check(&[option()], &[account(&[(0, -2)])], 1_000_000);
    assert_eq!(out.get(0), Some((20_000_025, 20_000_025)));
    // The long side never loses: pnl >= 0 in every scenario, worst = max(0, ..) = 0.
    let out = check(&[option()], &[account(&[(0, 2)])], 1_000_000);
    assert_eq!(out.get(0), Some((0, 0)));
    // mm floors too: 20_000_025 * 333_333 / 1e6 = 6666668.33... -> 6_666_668.
    let out = check(&[option()], &[account(&[(0, -2)])], 333_333);
    assert_eq!(out.get(0), Some((20_000_025, 6_666_668)));
}

#[test]
fn two_underlyings_add_their_worsts() {
    // Option (underlying 1) listed first: groups still go by underlying id, and the worsts add.
    let markets = [perp(), option()];
    let out = check(&markets, &[account(&[(1, -2), (0, 3)])], 100_000);
    assert_eq!(out.get(0), Some((4_500_000 + 20_000_025, 2_450_002)));
    // A perfect hedge within one underlying: pnl 0 everywhere.
    let hedged = [perp(), market(0, 300_000_000, |s| (15 - s as i64) * 1_000_000)];
    let out = check(&hedged, &[account(&[(0, 3), (1, 1)])], 100_000);
    assert_eq!(out.get(0), Some((0, 0)));
    // No positions at all, and only zero-size positions: worst 0.
    let out = check(&markets, &[account(&[]), account(&[(0, 0), (1, 0)])], 100_000);
    assert_eq!(out.get(0), Some((0, 0)));
    assert_eq!(out.get(1), Some((0, 0)));
}

#[test]
fn fallback_conditions() {
    let mut unpriced = option();
    unpriced.ok = false;
    let markets = [perp(), unpriced];
    let accounts = [
        // A zero-size position on an unpriced market is skipped: still OK.
        account(&[(0, 3), (1, 0)]),
        // A nonzero one is a fallback.
        account(&[(0, 3), (1, -1)]),
        // The host already flagged the account.
        Account { ok: false, positions: vec![(0, 3)] },
        Account { ok: false, positions: vec![] },
    ];
    let out = check(&markets, &accounts, 50_000);
    assert_eq!(out.get(0), Some((4_500_000, 225_000)));
    assert_eq!(out.status, [STATUS_OK, STATUS_FALLBACK, STATUS_FALLBACK, STATUS_FALLBACK]);
    assert_eq!(&out.worst[1..], [0, 0, 0]);
    assert_eq!(&out.mm[1..], [0, 0, 0]);
}

#[test]
fn rounding_at_multiples_of_a_unit() {
    // Products one below, at and one above multiples of 1e9, both signs; scenario s gets one.
    // lot 1, size 1: the 64-bit division path. Each scenario is its own group's pnl, so the worst
    // is the largest -floor(diff / 1e9): floor(-1e9 - 1) / 1e9 = -2 -> worst 2.
    let edge =
        [-1_000_000_001, -1_000_000_000, -999_999_999, -1, 0, 1, 999_999_999, 1_000_000_000, 1_000_000_001];
    let small = market(0, 1, |s| edge[s % edge.len()]);
    let out = check(&[small], &[account(&[(0, 1)]), account(&[(0, -1)])], 1_000_000);
    assert_eq!(out.get(0), Some((2, 2)));
    assert_eq!(out.get(1), Some((2, 2))); // -1 * 1_000_000_001 -> floor(-1.000000001) = -2
    // lot i64::MAX: |products| above 2^63, the 128-bit division path. 103597057 * (2^63 - 1) is
    // 1 below a multiple of 1e9, 896402943 * (2^63 - 1) is 1 above.
    let big = i64::MAX;
    let diffs = [103_597_057i64, 896_402_943, -103_597_057, -896_402_943];
    for &d in &diffs {
        let prod = i128::from(d) * i128::from(big);
        assert!(
            prod.unsigned_abs() > 1 << 63
                && [1, NANOS_PER_UNIT - 1].contains(&prod.rem_euclid(NANOS_PER_UNIT))
        );
        let m = market(0, big, |s| if s == 0 { d } else { 0 });
        let out = check(&[m], &[account(&[(0, 1)]), account(&[(0, -1)])], 1_000_000);
        let loss = |p: i128| (-div_floor(p, NANOS_PER_UNIT).unwrap()).max(0);
        assert_eq!(out.get(0).unwrap().0, loss(prod), "{d}");
        assert_eq!(out.get(1).unwrap().0, loss(-prod), "{d}");
    }
}

#[test]
fn product_overflow_edges() {
    let min = i64::MIN;
    let max = i64::MAX;
    let cases: &[(i64, i64, i64, bool)] = &[
        // diff, size, lot, fits: the exact product must lie in i128.
        (min, min, -2, true),                 // -2^127 = i128::MIN exactly
        (min, min, 2, false),                 // 2^127
        (min, max, -2, true),                 // 2^127 - 2^64
        (max, max, 2, true),                  // 2^127 - 2^65 + 2
        (max, max, 3, false),                 // ~1.5 * 2^127
        (min, min, 1, true),                  // 2^126
        (min, 1, min, true),                  // 2^126 via size * lot
        (min, min, min, false),               // -2^189
        (max, -1, max, true),                 // -(2^63 - 1)^2
        (1 << 62, 1 << 40, 1 << 25, false),   // 2^127
        (1 << 62, 1 << 40, -(1 << 25), true), // -2^127
        (-(1 << 62), 1 << 40, 1 << 25, true), // -2^127
        (3, 5, 7, true),
        (0, min, min, true),
    ];
    for &(diff, size, lot, fits) in cases {
        let exact_fits = i128::from(diff)
            .checked_mul(i128::from(size))
            .and_then(|x| x.checked_mul(i128::from(lot)))
            .is_some();
        assert_eq!(exact_fits, fits, "case table is wrong for {diff} {size} {lot}");
        // Scenario 0 carries the edge; the other scenarios are harmless.
        let markets = [market(0, lot, |s| if s == 0 { diff } else { 1 })];
        let out = check(&markets, &[account(&[(0, size)])], 1_000_000);
        assert_eq!(out.status[0] == STATUS_OK, fits, "{diff} x {size} x {lot}");
    }
    // The kernel's fast path (size * lot fits i64) and slow path agree at the boundary.
    for (size, lot) in [(1i64 << 31, 1i64 << 31), (1 << 32, 1 << 31), (-(1 << 32), 1 << 31), (3, max / 3 + 1)]
    {
        let markets = [market(0, lot, |s| [min, max, -1, 1, 999_999_999, -1_000_000_001][s % 6])];
        check(&markets, &[account(&[(0, size)]), account(&[(0, -size)])], 1);
    }
}

#[test]
fn mm_multiply_overflow_end_to_end() {
    // Each position contributes floor(-2^127 / 1e9) = -170141183460469231731687303716 in
    // scenario 0, so worst = n * 170141183460469231731687303716; worst * 1e6 overflows from
    // n = 1000 on (1000 * 1.7014e29 * 1e6 > 2^127 - 1), not at 999.
    let markets = [market(0, -2, |s| if s == 0 { i64::MIN } else { 0 })];
    let per = 170_141_183_460_469_231_731_687_303_716_i128;
    for (n, ok) in [(999usize, true), (1000, false)] {
        let acct = account(&vec![(0, i64::MIN); n]);
        let out = check(&markets, &[acct], 1_000_000);
        assert_eq!(out.status[0] == STATUS_OK, ok, "n = {n}");
        if ok {
            assert_eq!(out.get(0), Some((per * n as i128, per * n as i128)));
        }
    }
    // The same worst with a smaller fraction fits.
    let out = check(&markets, &[account(&vec![(0, i64::MIN); 1000])], 999_999);
    assert_eq!(out.status[0], STATUS_OK);
    // Split across two underlyings: worst_total adds them, same overflow point.
    let two = [markets[0].clone(), Market { underlying: 7, ..markets[0].clone() }];
    let mut positions = vec![(0, i64::MIN); 500];
    positions.extend(vec![(1, i64::MIN); 500]);
    let out = check(&two, &[account(&positions)], 1_000_000);
    assert_eq!(out.status[0], STATUS_FALLBACK);
    positions.pop();
    let out = check(&two, &[account(&positions)], 1_000_000);
    assert_eq!(out.get(0), Some((per * 999, per * 999)));
}

// ---- The i128 helpers --------------------------------------------------------------------------

fn edge_values() -> Vec<i128> {
    let mut v = vec![0, 1, 2, 3, 7, 999_999, 1_000_000, 1_000_001, 999_999_999, 1_000_000_000, 1_000_000_001];
    for k in [31u32, 32, 62, 63, 64, 65, 96, 97, 125, 126] {
        let p = 1i128 << k;
        v.extend([p - 1, p, p + 1, p / 3, p / 2 * 3]);
    }
    v.extend([i128::MAX, i128::MAX - 1, i128::MAX / 2, i128::MAX / 1_000_000, i128::MAX / 1_000_000_000 + 1]);
    v.extend([
        i128::from(i64::MAX),
        i128::from(i64::MAX) + 1,
        i128::from(u64::MAX),
        i128::from(u64::MAX) + 1,
    ]);
    let negs: Vec<i128> = v.iter().map(|x| -x).collect();
    v.extend(negs);
    v.extend([i128::MIN, i128::MIN + 1, i128::MIN / 2, i128::from(i64::MIN), i128::from(i64::MIN) - 1]);
    v.sort_unstable();
    v.dedup();
    v
}

fn check_helpers(a: i128, b: i128) {
    assert_eq!(risk::kernel_checked_add(a, b), a.checked_add(b), "{a} + {b}");
    assert_eq!(risk::kernel_checked_mul(a, b), a.checked_mul(b), "{a} * {b}");
    assert_eq!(risk::kernel_checked_neg(a), a.checked_neg(), "-{a}");
    assert_eq!(risk::kernel_div_floor_nanos(a), div_floor(a, NANOS_PER_UNIT).unwrap(), "{a} / 1e9");
    assert_eq!(risk::kernel_div_floor_ppm(a), div_floor(a, i128::from(PPM)).unwrap(), "{a} / 1e6");
}

#[test]
fn helpers_match_rust_on_edges() {
    let v = edge_values();
    for &a in &v {
        for &b in &v {
            check_helpers(a, b);
        }
    }
    // The overflows the account path cannot reach with testable sizes.
    assert_eq!(risk::kernel_checked_add(i128::MAX, 1), None);
    assert_eq!(risk::kernel_checked_add(i128::MIN, -1), None);
    assert_eq!(risk::kernel_checked_neg(i128::MIN), None);
    assert_eq!(risk::kernel_checked_mul(i128::MIN, -1), None);
    assert_eq!(risk::kernel_checked_mul(i128::MIN, 1), Some(i128::MIN));
}

#[test]
fn helpers_match_rust_random() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_4e1b);
    // A value of random bit length, either sign (wrapping_neg of i128::MIN stays MIN).
    let value = |rng: &mut StdRng| {
        let bits = rng.random_range(0..128u32);
        let x = (rng.random::<u128>() >> (127 - bits)) as i128;
        if rng.random_bool(0.5) { x.wrapping_neg() } else { x }
    };
    for _ in 0..200_000 {
        let (a, b) = (value(&mut rng), value(&mut rng));
        check_helpers(a, b);
    }
}

// ---- Random campaign ---------------------------------------------------------------------------

fn seed() -> u64 {
    std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_260_702_u64)
}

fn extreme_i64(rng: &mut StdRng) -> i64 {
    let picks =
        [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1, 0, 1, -1, 1 << 62, -(1 << 62), 1 << 32, -(1 << 31)];
    if rng.random_bool(0.3) { rng.random() } else { picks[rng.random_range(0..picks.len())] }
}

fn random_market(rng: &mut StdRng, n_underlyings: u32) -> Market {
    let underlying = rng.random_range(0..n_underlyings);
    let regime = rng.random_range(0..20);
    let lot = match regime {
        0..17 => [1_000_000_000, 100_000_000, 1_000_000, 1, 333_333_333, rng.random_range(1..10_000_000_000)]
            [rng.random_range(0..6)],
        17..19 => {
            let bits = rng.random_range(1..63);
            rng.random_range(1..(1i64 << bits))
        }
        _ => extreme_i64(rng),
    };
    let diffs = std::array::from_fn(|_| match regime {
        0..17 => {
            if rng.random_bool(0.1) {
                0
            } else {
                rng.random_range(-10_000_000_000..10_000_000_000)
            }
        }
        17..19 => {
            let bits = rng.random_range(1..63);
            rng.random_range(-(1i64 << bits)..(1i64 << 40))
        }
        _ => extreme_i64(rng),
    });
    Market { underlying, lot, ok: rng.random_bool(0.97), diffs }
}

fn random_account(rng: &mut StdRng, by_underlying: &[Vec<u32>]) -> Account {
    let live: Vec<usize> = (0..by_underlying.len()).filter(|&u| !by_underlying[u].is_empty()).collect();
    let n_under = rng.random_range(1..=4usize).min(live.len());
    let chosen: Vec<usize> = (0..n_under).map(|_| live[rng.random_range(0..live.len())]).collect();
    let n_pos = rng.random_range(0..=12usize);
    let positions = (0..n_pos)
        .map(|_| {
            let u = chosen[rng.random_range(0..chosen.len())];
            let m = by_underlying[u][rng.random_range(0..by_underlying[u].len())];
            let size = match rng.random_range(0..20) {
                0..2 => 0,
                2..16 => rng.random_range(-1_000_000..=1_000_000),
                16..19 => rng.random_range(-(1i64 << 40)..=(1 << 40)),
                _ => extreme_i64(rng),
            };
            (m, size)
        })
        .collect();
    Account { ok: rng.random_bool(0.98), positions }
}

#[test]
fn random_campaign_matches_reference() {
    let seed = seed();
    let batches = [1i64, 50_000, 333_333, 1_000_000];
    let per_batch = 5_000;
    eprintln!(
        "risk_host: seed {seed}, {} accounts; replay with BASTION_SEED={seed}",
        per_batch * batches.len()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    // The mix must exercise both outcomes (checked at the end, loosely: any seed passes).
    let (mut ok, mut fallback, mut nonzero) = (0usize, 0usize, 0usize);
    for (b, &mm_ppm) in batches.iter().enumerate() {
        let n_underlyings = rng.random_range(1..=8u32);
        let n_markets = rng.random_range(1..=64usize);
        let markets: Vec<Market> = (0..n_markets).map(|_| random_market(&mut rng, n_underlyings)).collect();
        let mut by_underlying = vec![Vec::new(); n_underlyings as usize];
        for (i, m) in markets.iter().enumerate() {
            by_underlying[m.underlying as usize].push(u32::try_from(i).unwrap());
        }
        let accounts: Vec<Account> =
            (0..per_batch).map(|_| random_account(&mut rng, &by_underlying)).collect();
        let out = check(&markets, &accounts, mm_ppm);
        ok += out.status.iter().filter(|&&s| s == STATUS_OK).count();
        fallback += out.status.iter().filter(|&&s| s == STATUS_FALLBACK).count();
        nonzero += out.worst.iter().filter(|&&w| w != 0).count();

        // Ranges of random sizes on threads give the same result as the single call.
        let packed = Packed::new(&markets, &accounts, mm_ppm);
        let input = packed.input();
        let mut cuts = vec![0, per_batch];
        for _ in 0..rng.random_range(0..8) {
            cuts.push(rng.random_range(0..=per_batch));
        }
        cuts.sort_unstable();
        let mut split =
            RiskOutput { worst: vec![-1; per_batch], mm: vec![-1; per_batch], status: vec![9; per_batch] };
        std::thread::scope(|scope| {
            let (mut w, mut m, mut s) = (&mut split.worst[..], &mut split.mm[..], &mut split.status[..]);
            for pair in cuts.windows(2) {
                let (begin, end) = (pair[0], pair[1]);
                let (w0, w1) = std::mem::take(&mut w).split_at_mut(end - begin);
                let (m0, m1) = std::mem::take(&mut m).split_at_mut(end - begin);
                let (s0, s1) = std::mem::take(&mut s).split_at_mut(end - begin);
                (w, m, s) = (w1, m1, s1);
                let input = &input;
                scope.spawn(move || host_portfolio_risk_range(input, begin, end, w0, m0, s0).unwrap());
            }
        });
        assert_eq!(split, out, "batch {b}: ranges {cuts:?} differ from the single call");
    }
    eprintln!("risk_host: {ok} ok ({nonzero} with a nonzero worst), {fallback} fallbacks");
    let total = per_batch * batches.len();
    assert_eq!(ok + fallback, total);
    assert!(
        ok > total / 4 && nonzero > total / 5 && fallback > total / 50,
        "poor mix: {ok} ok, {nonzero} nonzero, {fallback} fallback"
    );
}

// ---- Validation --------------------------------------------------------------------------------

fn small() -> Packed {
    let markets = [perp(), option(), market(2, 1_000_000_000, |s| s as i64)];
    let accounts = [account(&[(0, 3), (1, -2)]), account(&[]), account(&[(2, 5), (0, -1), (1, 1)])];
    let p = Packed::new(&markets, &accounts, 50_000);
    assert_eq!(p.acct_groups, [0, 2, 2, 5]);
    assert_eq!(p.group_pos, [0, 1, 2, 3, 4, 5]);
    p
}

fn expect_err(p: &Packed, want: &RiskError) {
    let input = p.input();
    assert_eq!(input.validate().as_ref(), Err(want));
    assert_eq!(host_portfolio_risk(&input).as_ref(), Err(want));
    let n = p.acct_ok.len();
    let (mut w, mut m, mut s) = (vec![0; n], vec![0; n], vec![0; n]);
    let got = host_portfolio_risk_range(&input, 0, n, &mut w, &mut m, &mut s);
    assert!(got.is_err(), "range call accepted {want:?}");
    let msg = want.to_string();
    assert!(!msg.is_empty());
    eprintln!("rejected: {msg}");
}

#[test]
fn validate_accepts_the_packed_layout() {
    let p = small();
    let shape = p.input().validate().unwrap();
    assert_eq!(shape, risk::RiskShape { n_accounts: 3, n_markets: 3, n_groups: 5, n_positions: 5 });
    let out = host_portfolio_risk(&p.input()).unwrap();
    assert_eq!(out.status, [STATUS_OK; 3]);
    // Empty everything is valid: no accounts.
    let empty = Packed { acct_groups: vec![0], group_pos: vec![0], mm_ppm: 1, ..Packed::default() };
    assert_eq!(host_portfolio_risk(&empty.input()).unwrap(), RiskOutput::default());
}

#[test]
fn validate_rejects_malformed_input() {
    use RiskError::*;
    let base = small();
    let mut p = base.clone();
    p.acct_groups.clear();
    expect_err(&p, &EmptyOffsets { what: "acct_groups" });
    let mut p = base.clone();
    p.group_pos.clear();
    expect_err(&p, &EmptyOffsets { what: "group_pos" });

    let mut p = base.clone();
    p.diffs.pop();
    expect_err(&p, &Length { what: "diffs", expected: 93, actual: 92 });
    let mut p = base.clone();
    p.market_ok.push(1);
    expect_err(&p, &Length { what: "market_ok", expected: 3, actual: 4 });
    let mut p = base.clone();
    p.lots.push(1); // one more market than diffs and market_ok describe
    expect_err(&p, &Length { what: "diffs", expected: 124, actual: 93 });
    let mut p = base.clone();
    p.pos_size.pop();
    expect_err(&p, &Length { what: "pos_size", expected: 5, actual: 4 });
    let mut p = base.clone();
    p.pos_market.pop(); // fewer positions than group_pos ends at
    expect_err(&p, &Length { what: "pos_size", expected: 4, actual: 5 });
    let mut p = base.clone();
    p.acct_ok.pop();
    expect_err(&p, &Length { what: "acct_ok", expected: 3, actual: 2 });

    let mut p = base.clone();
    p.acct_groups[0] = 1;
    expect_err(&p, &OffsetStart { what: "acct_groups", value: 1 });
    let mut p = base.clone();
    p.group_pos[0] = 1;
    expect_err(&p, &OffsetStart { what: "group_pos", value: 1 });
    let mut p = base.clone();
    *p.acct_groups.last_mut().unwrap() = 4;
    expect_err(&p, &OffsetEnd { what: "acct_groups", value: 4, expected: 5 });
    let mut p = base.clone();
    p.group_pos.push(5); // one more (empty) group than acct_groups covers
    expect_err(&p, &OffsetEnd { what: "acct_groups", value: 5, expected: 6 });
    let mut p = base.clone();
    *p.group_pos.last_mut().unwrap() = 4;
    expect_err(&p, &OffsetEnd { what: "group_pos", value: 4, expected: 5 });

    // Out of order, and in order locally but past the end.
    let mut p = base.clone();
    p.acct_groups[1] = 3;
    p.acct_groups[2] = 1;
    expect_err(&p, &BadOffset { what: "acct_groups", index: 2, value: 1, previous: 3, limit: 5 });
    let mut p = base.clone();
    p.acct_groups[1] = 9;
    expect_err(&p, &BadOffset { what: "acct_groups", index: 1, value: 9, previous: 0, limit: 5 });
    let mut p = base.clone();
    p.group_pos[3] = 1;
    expect_err(&p, &BadOffset { what: "group_pos", index: 3, value: 1, previous: 2, limit: 5 });
    let mut p = base.clone();
    p.group_pos[2] = u32::MAX;
    expect_err(&p, &BadOffset { what: "group_pos", index: 2, value: u32::MAX, previous: 1, limit: 5 });

    // A market index past the end, on a zero-size position too (the kernel would not read it,
    // but the layout is still wrong).
    let mut p = base.clone();
    p.pos_market[4] = 3;
    expect_err(&p, &MarketOutOfRange { position: 4, market: 3, n_markets: 3 });
    let mut p = base.clone();
    p.pos_market[0] = u32::MAX;
    p.pos_size[0] = 0;
    expect_err(&p, &MarketOutOfRange { position: 0, market: u32::MAX, n_markets: 3 });

    for bad in [0, -1, PPM + 1, i64::MIN, i64::MAX] {
        let mut p = base.clone();
        p.mm_ppm = bad;
        expect_err(&p, &MmPpm(bad));
    }
}

#[test]
fn range_rejects_bad_ranges_and_outputs() {
    let p = small();
    let input = p.input();
    let (mut w, mut m, mut s) = (vec![0i128; 3], vec![0i128; 3], vec![0u8; 3]);
    assert_eq!(
        host_portfolio_risk_range(&input, 2, 1, &mut w[..0], &mut m[..0], &mut s[..0]),
        Err(RiskError::Range { begin: 2, end: 1, n_accounts: 3 })
    );
    assert_eq!(
        host_portfolio_risk_range(&input, 1, 4, &mut w, &mut m, &mut s),
        Err(RiskError::Range { begin: 1, end: 4, n_accounts: 3 })
    );
    assert_eq!(
        host_portfolio_risk_range(&input, 0, 2, &mut w, &mut m[..2], &mut s[..2]),
        Err(RiskError::Length { what: "out_worst", expected: 2, actual: 3 })
    );
    assert_eq!(
        host_portfolio_risk_range(&input, 0, 3, &mut w, &mut m, &mut s[..2]),
        Err(RiskError::Length { what: "out_status", expected: 3, actual: 2 })
    );
    // An empty range writes nothing; a one-account range writes its slot at index 0.
    host_portfolio_risk_range(&input, 3, 3, &mut [], &mut [], &mut []).unwrap();
    host_portfolio_risk_range(&input, 2, 3, &mut w[..1], &mut m[..1], &mut s[..1]).unwrap();
    let full = host_portfolio_risk(&input).unwrap();
    assert_eq!((w[0], m[0], s[0]), (full.worst[2], full.mm[2], full.status[2]));
    assert_eq!(full.get(3), None);
}

/// Random corruption of valid layouts: never a crash; whatever still validates matches the
/// packed reference.
#[test]
fn mutated_layouts_never_crash() {
    let mut rng = StdRng::seed_from_u64(seed() ^ 0xbad_1a70);
    let base = small();
    let (mut accepted, mut rejected) = (0usize, 0usize);
    for _ in 0..20_000 {
        let mut p = base.clone();
        for _ in 0..rng.random_range(1..=3) {
            match rng.random_range(0..6) {
                0 => {
                    let i = rng.random_range(0..p.acct_groups.len());
                    p.acct_groups[i] = rng.random_range(0..8);
                }
                1 => {
                    let i = rng.random_range(0..p.group_pos.len());
                    p.group_pos[i] = rng.random_range(0..8);
                }
                2 => {
                    let i = rng.random_range(0..p.pos_market.len());
                    p.pos_market[i] = rng.random_range(0..5);
                }
                3 => {
                    p.pos_size[rng.random_range(0..5)] = extreme_i64(&mut rng);
                }
                4 => {
                    p.lots[rng.random_range(0..3)] = extreme_i64(&mut rng);
                }
                _ => {
                    p.acct_ok[rng.random_range(0..3)] = rng.random_range(0..2);
                    p.market_ok[rng.random_range(0..3)] = rng.random_range(0..2);
                }
            }
        }
        let input = p.input();
        match host_portfolio_risk(&input) {
            Err(_) => rejected += 1,
            Ok(out) => {
                accepted += 1;
                for a in 0..out.len() {
                    assert_eq!(out.get(a), reference_packed(&input, a), "account {a} of {p:?}");
                }
            }
        }
    }
    eprintln!("mutations: {accepted} accepted, {rejected} rejected");
    assert!(accepted > 1000 && rejected > 1000);
}
