//! Property tests of the exchange's pure risk functions over random inputs. proptest prints
//! the failing case and its seed, and replays it from `proptest-regressions/` on the next run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::{
    Health, bankruptcy_lot_value, fillable_lot_value, oi_scaled_initial, tiered_requirement, validate_risk,
    weighted_median,
};
use bastion_types::{MarginTier, RiskParams};
use proptest::prelude::*;

const USD: i128 = 1_000_000;

/// Random valid tiers: increasing floors, non-decreasing rates, 0 < mm < im <= 100%.
fn tiers() -> impl Strategy<Value = Vec<MarginTier>> {
    prop::collection::vec((1i128..50_000_000, 1i64..20_000, 1i64..20_000), 1..5).prop_map(|steps| {
        let mut floor = 0i128;
        let mut mm = 5_000i64;
        let mut im = 5_001i64;
        let mut out = Vec::new();
        for (i, (df, dmm, dim)) in steps.into_iter().enumerate() {
            if i > 0 {
                floor += df * USD;
                mm += dmm;
            }
            im = (im + dim).max(mm + 1);
            out.push(MarginTier { notional_floor: floor, imr_ppm: im, mmr_ppm: mm });
        }
        out
    })
}

fn risk(tiers: Vec<MarginTier>, lower: i128, span: i128) -> RiskParams {
    RiskParams {
        tiers,
        oi_imf_lower: lower,
        oi_imf_upper: lower + span,
        price_band_ppm: 50_000,
        open_interest_cap: 1,
        max_orders_per_account: 1,
        taker_fee_ppm: 0,
        maker_fee_ppm: 0,
        impact_notional: 0,
        funding_cap_ppm: 0,
        volatility_ppm: 0,
        volatility_min_ppm: 50_000,
        volatility_max_ppm: 5_000_000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Requirements are continuous at every tier boundary (within one micro-unit of rounding)
    /// and never decrease with notional.
    #[test]
    fn tiered_margin_is_continuous_and_monotone(t in tiers(), a in 0i128..200_000_000, b in 0i128..200_000_000) {
        prop_assert!(validate_risk(&risk(t.clone(), 0, 1)).is_ok());
        for tier in t.iter().skip(1) {
            let (im_at, mm_at) = tiered_requirement(&t, tier.notional_floor).unwrap();
            let (im_below, mm_below) = tiered_requirement(&t, tier.notional_floor - 1).unwrap();
            prop_assert!((0..=2).contains(&(mm_at - mm_below)), "mm jumps at {}: {mm_below} -> {mm_at}", tier.notional_floor);
            prop_assert!((0..=2).contains(&(im_at - im_below)), "im jumps at {}: {im_below} -> {im_at}", tier.notional_floor);
        }
        let (lo, hi) = (a.min(b) * USD, a.max(b) * USD);
        let (im_lo, mm_lo) = tiered_requirement(&t, lo).unwrap();
        let (im_hi, mm_hi) = tiered_requirement(&t, hi).unwrap();
        prop_assert!(mm_lo <= mm_hi && im_lo <= im_hi);
        prop_assert!(mm_hi <= im_hi, "maintenance above initial: {mm_hi} > {im_hi}");
    }

    /// Open-interest scaling only ever raises initial margin, monotonically in open interest,
    /// and never above the notional.
    #[test]
    fn oi_scaling_raises_initial_margin_monotonically(
        im_rate in 1i128..1_000_000, notional in 1i128..1_000_000_000, lower in 0i128..100_000_000,
        span in 1i128..100_000_000, oi_a in 0i128..300_000_000, oi_b in 0i128..300_000_000,
    ) {
        let r = risk(vec![MarginTier { notional_floor: 0, imr_ppm: 100_000, mmr_ppm: 50_000 }], lower * USD, span * USD);
        let n = notional * USD;
        let im = n * im_rate / 1_000_000;
        let a = oi_scaled_initial(&r, im, n, oi_a.min(oi_b) * USD).unwrap();
        let b = oi_scaled_initial(&r, im, n, oi_a.max(oi_b) * USD).unwrap();
        prop_assert!(im <= a && a <= b && b <= n.max(im), "im {im} a {a} b {b} n {n}");
    }

    /// Closing a whole position (holding all of the account's maintenance) at the bankruptcy
    /// value leaves the account at zero, up to less than one micro-unit per lot and never
    /// below; bankruptcy and fillable values lie on the account's losing side of the mark,
    /// so the liquidation limit (the fillable value bounded by the bankruptcy value) does too.
    #[test]
    fn bankruptcy_and_fillable_prices(
        lot_value in 1_000i128..1_000_000_000, size in 1i64..100_000, long in any::<bool>(),
        tnc_frac in 0i128..1_000, mm_bp in 1i128..2_000, smmr in 0i64..1_000_000,
    ) {
        let size = if long { size } else { -size };
        let notional = lot_value * i128::from(size.abs());
        let mm = (notional * mm_bp / 10_000).max(1);
        let tnc = mm * tnc_frac / 1_000; // solvent, below maintenance
        let h = Health { collateral: tnc, initial: mm * 2, maintenance: mm };
        let bp = bankruptcy_lot_value(lot_value, size, size.abs(), mm, &h).unwrap();
        // Selling a long at bp (or buying back a short) changes collateral by
        // size * (bp - lot_value).
        let after = tnc + i128::from(size) * (bp - lot_value);
        prop_assert!(after >= 0 && after < i128::from(size.abs()), "residue {after} for size {size}");
        let fp = fillable_lot_value(lot_value, size, mm, &h, smmr).unwrap();
        if long {
            let limit = fp.max(bp);
            prop_assert!(bp <= lot_value && fp <= lot_value && limit <= lot_value, "long: bp {bp} fp {fp} mark {lot_value}");
        } else {
            let limit = fp.min(bp);
            prop_assert!(bp >= lot_value && fp >= lot_value && limit >= lot_value, "short: bp {bp} fp {fp} mark {lot_value}");
        }
    }

    /// The stake-weighted median is one of the observations, with at most half of the stake
    /// strictly below it and at least half at or below it.
    #[test]
    fn weighted_median_splits_the_stake(obs in prop::collection::vec((1i64..1_000_000, 1u64..1_000), 1..20)) {
        let mut v = obs.clone();
        let m = weighted_median(&mut v).unwrap();
        prop_assert!(obs.iter().any(|(p, _)| *p == m));
        let total: u64 = obs.iter().map(|(_, s)| s).sum();
        let below: u64 = obs.iter().filter(|(p, _)| *p < m).map(|(_, s)| s).sum();
        let at_or_below: u64 = obs.iter().filter(|(p, _)| *p <= m).map(|(_, s)| s).sum();
        prop_assert!(below * 2 < total + 1 && at_or_below * 2 >= total, "median {m}: below {below}, <= {at_or_below}, total {total}");
    }
}
