//! Property tests. proptest prints the failing input and persists its seed for replay.

use bastion_math::{Fx, OptionGreeks, OptionInputs, Rounding, black_scholes_merton};
use proptest::prelude::*;

fn ratio(num: i64, den: i64) -> Fx {
    Fx::from_ratio(num as i128, den as i128, Rounding::Nearest).unwrap_or(Fx::ZERO)
}

/// Inputs over the exchange's ranges (as in the shared vectors), built from integers so that
/// shrinking stays meaningful.
fn inputs() -> impl Strategy<Value = OptionInputs> {
    (1_000i64..100_000, 500i64..1_500, 0i64..1_200, 0i64..800, 500i64..25_000, 1i64..1_095).prop_map(
        |(spot, strike_permille, rate_bp, q_bp, vol_bp, days)| OptionInputs {
            spot: Fx::from_int(spot),
            strike: ratio(spot * strike_permille, 1_000),
            rate: ratio(rate_bp, 10_000),
            dividend_yield: ratio(q_bp, 10_000),
            volatility: ratio(vol_bp, 10_000),
            years: ratio(days, 365),
        },
    )
}

fn price(inp: &OptionInputs) -> OptionGreeks {
    match black_scholes_merton(inp) {
        Ok(g) => g,
        Err(e) => panic!("{inp:?}: {e}"),
    }
}

fn f(x: Fx) -> f64 {
    x.to_f64()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn put_call_parity(inp in inputs()) {
        let g = price(&inp);
        let fwd_s = inp.spot.checked_mul(inp.dividend_yield.checked_mul(inp.years)?.checked_neg()?.exp()?)?;
        let fwd_k = inp.strike.checked_mul(inp.rate.checked_mul(inp.years)?.checked_neg()?.exp()?)?;
        let lhs = g.call.checked_sub(g.put)?;
        let rhs = fwd_s.checked_sub(fwd_k)?;
        // The only differences are roundings of products of size ~S: well under 1e-15 * S.
        let tol = f(inp.spot.max(inp.strike)) * 1e-15;
        prop_assert!((f(lhs) - f(rhs)).abs() <= tol, "{lhs} vs {rhs}");
        prop_assert!(!g.call.is_negative() && !g.put.is_negative());
        prop_assert!(g.call_delta.checked_sub(g.put_delta)? <= Fx::ONE);
    }

    #[test]
    fn monotone_in_spot_and_volatility(inp in inputs(), bump in 1i64..1_000) {
        let g = price(&inp);
        let up_spot = price(&OptionInputs { spot: inp.spot.checked_add(ratio(bump, 100))?, ..inp });
        let up_vol = price(&OptionInputs { volatility: inp.volatility.checked_add(ratio(bump, 100_000))?, ..inp });
        // Allow rounding noise of a few ulps of the spot scale where the change is below it.
        let slack = Fx::from_raw(inp.spot.raw() >> 50);
        prop_assert!(up_spot.call.checked_add(slack)? >= g.call, "call falls with spot");
        prop_assert!(up_spot.put <= g.put.checked_add(slack)?, "put rises with spot");
        prop_assert!(up_vol.call.checked_add(slack)? >= g.call, "call falls with vol");
        prop_assert!(up_vol.put.checked_add(slack)? >= g.put, "put falls with vol");
    }

    #[test]
    fn exp_of_ln_round_trips(raw in (1i128 << 44)..(1i128 << 104)) {
        let x = Fx::from_raw(raw);
        let y = x.ln()?.exp()?;
        // ln has ~1e-19 absolute error; exp turns it into the same relative error.
        // Measured on the raw integers: f64 itself could not resolve the difference.
        let rel = y.raw().abs_diff(x.raw()) as f64 / x.raw() as f64;
        prop_assert!(rel < 1e-17, "{x} -> {y} ({rel:e})");
    }

    #[test]
    fn sqrt_is_the_exact_floor(raw in 0i128..i128::MAX) {
        let x = Fx::from_raw(raw);
        let s = x.sqrt()?;
        let next = Fx::from_raw(s.raw() + 1);
        // s^2 <= x < (s + ulp)^2, both sides compared exactly through upward rounding.
        prop_assert!(s.mul_rounded(s, Rounding::Up)? <= x);
        prop_assert!(next.mul_rounded(next, Rounding::Up).map(|v| v > x).unwrap_or(true));
    }

    #[test]
    fn sqrt_of_a_square_is_exact(raw in 0i128..(1i128 << 95)) {
        // Squares of values with at most 32 fractional bits are exact in Q64.64.
        let y = Fx::from_raw(raw & !((1i128 << 32) - 1));
        prop_assert_eq!(y.checked_mul(y)?.sqrt()?, y);
    }

    #[test]
    fn cdf_is_symmetric_and_monotone(raw in -(12i128 << 64)..(12i128 << 64), step in 1i128..(1i128 << 60)) {
        let x = Fx::from_raw(raw);
        prop_assert_eq!(x.norm_cdf().raw() + x.checked_neg()?.norm_cdf().raw(), 1i128 << 64);
        prop_assert!(Fx::from_raw(raw + step).norm_cdf() >= x.norm_cdf());
        prop_assert!(x.norm_pdf() >= Fx::ZERO && x.norm_pdf() == x.checked_neg()?.norm_pdf());
    }

    #[test]
    fn deterministic_bits(inp in inputs()) {
        let a = price(&inp);
        let b = std::thread::spawn(move || price(&inp)).join().map_err(|_| TestCaseError::fail("thread panicked"))?;
        prop_assert_eq!(a, b);
    }
}
