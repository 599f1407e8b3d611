//! European option prices and greeks: Black-Scholes-Merton (continuous rate and dividend yield)
//! and Black-76 (options on a forward), in [`Fx`] arithmetic.
//!
//! Formulas (v = σ√T):
//!   d1 = (ln(S/K) + (r - q)T) / v + v/2,  d2 = d1 - v
//!   call = S e^{-qT} N(d1) - K e^{-rT} N(d2),  put = K e^{-rT} N(-d2) - S e^{-qT} N(-d1)
//!   call Δ = e^{-qT} N(d1),  put Δ = -e^{-qT} N(-d1),  Γ = e^{-qT} φ(d1) / (S v),
//!   vega = S e^{-qT} φ(d1) √T (per unit of volatility).
//! N(d) and N(-d) come from the same tail value, so the small side of each is computed directly
//! (no cancellation in `1 - N`), and `ln(S/K)` is `ln S - ln K` (no division).

use crate::fl::Fl;
use crate::func::{gauss, mills_g};
use crate::fx::{Fx, MathError, Rounding};
use crate::tables::INV_SQRT_2PI;

/// Milliseconds in the act/365 year used to turn times into year fractions.
pub const MS_PER_YEAR: i64 = 31_536_000_000;
/// Parts per million, the scale of volatilities and rates in [`MarkInputs`].
pub const PPM: i128 = 1_000_000;

/// Errors of the option pricers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// An input that must be strictly positive was not.
    #[error("{field} must be positive, got {value}")]
    NotPositive { field: &'static str, value: Fx },
    /// A time to expiry below zero.
    #[error("time to expiry must not be negative, got {time_ms} ms")]
    NegativeTime { time_ms: i64 },
    /// The arithmetic left the representable range (absurd inputs, e.g. e^{-rT} overflowing).
    #[error(transparent)]
    Math(#[from] MathError),
}

/// Inputs of a Black-Scholes-Merton valuation; rates, yield and volatility are annual decimals
/// (0.05 for 5%), time in years.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionInputs {
    pub spot: Fx,
    pub strike: Fx,
    pub rate: Fx,
    pub dividend_yield: Fx,
    pub volatility: Fx,
    pub years: Fx,
}

/// Prices and greeks of the call and the put with the same terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionGreeks {
    pub call: Fx,
    pub put: Fx,
    pub call_delta: Fx,
    pub put_delta: Fx,
    /// Same for call and put.
    pub gamma: Fx,
    /// Per unit of volatility (divide by 100 for "per vol point"); same for call and put.
    pub vega: Fx,
    pub d1: Fx,
    pub d2: Fx,
}

/// Call or put.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptionKind {
    Call,
    Put,
}

fn positive(field: &'static str, value: Fx) -> Result<(), PricingError> {
    if value.is_positive() { Ok(()) } else { Err(PricingError::NotPositive { field, value }) }
}

/// 1/sqrt(2 pi) as an [`Fl`].
const INV_SQRT_2PI_FL: Fl = Fl::from_raw(INV_SQRT_2PI as u128);

/// Black-Scholes-Merton prices and greeks. Spot, strike, volatility and years must be positive
/// (use [`mark_price_micros`] for the value at expiry).
///
/// The evaluation uses no division and one exponential fewer than the textbook formulas:
/// - one reciprocal square root gives `1/(S v)` from `S^2 σ^2 T`, and from it `1/v`, `v` and
///   `√T = σT/v` (64-bit mantissa products, `fl.rs`, relative error a few 2^-63 each);
/// - `d1 = (ln S - ln K + (r - q)T) * (1/v) + v/2`;
/// - `P = S e^{-qT} exp(-d1^2/2) = K e^{-rT} exp(-d2^2/2)` (the two are equal for exact d1, d2)
///   is computed from whichever of d1, d2 is smaller in magnitude, so the larger Gaussian
///   factor is the one rounded; then `S e^{-qT} (1 - N(|d1|)) = P G(|d1|)` and
///   `K e^{-rT} (1 - N(|d2|)) = P G(|d2|)` with G the scaled Mills ratio (`func::mills_g`);
/// - `Δ` uses `e^{-qT}(1 - N(|d1|)) = P G(|d1|) / S`, `Γ = P / (sqrt(2π) S^2 v)` and
///   `vega = P √T / sqrt(2π)`, the divisions by S and v being products with `1/(S v)`.
///
/// Fails with `Overflow` where a result or `1/v` leaves the Q64.64 range (v below about 1e-19).
pub fn black_scholes_merton(inp: &OptionInputs) -> Result<OptionGreeks, PricingError> {
    positive("spot", inp.spot)?;
    positive("strike", inp.strike)?;
    positive("volatility", inp.volatility)?;
    positive("years", inp.years)?;
    let overflow = PricingError::Math(MathError::Overflow);
    let spot = Fl::from_raw(inp.spot.raw() as u128);
    let sigma = Fl::from_raw(inp.volatility.raw() as u128);
    let sigma_t = sigma.mul(Fl::from_raw(inp.years.raw() as u128)); // σT
    let var = sigma_t.mul(sigma); // v^2 = σ^2 T
    let inv_sv = var.mul(spot).mul(spot).rsqrt(); // 1/(S v)
    let inv_v_fl = inv_sv.mul(spot);
    let v_fl = var.mul(inv_v_fl);
    let inv_s = inv_sv.mul(v_fl); // 1/S
    let v = Fx::from_raw(v_fl.to_raw().ok_or(overflow)?);
    let inv_v = Fx::from_raw(inv_v_fl.to_raw().ok_or(overflow)?);
    // ln S - ln K rather than the logarithm of a ratio: the two kernels' errors cancel when
    // S = K (d1 = v/2 exactly), where 1/v would amplify any error in a rounded ratio.
    let ln_sk = inp.spot.ln()?.checked_sub(inp.strike.ln()?)?;
    let carry = inp.rate.checked_sub(inp.dividend_yield)?.checked_mul(inp.years)?;
    let d1 = ln_sk.checked_add(carry)?.checked_mul(inv_v)?.checked_add(Fx::from_raw(v.raw() >> 1))?;
    let d2 = d1.checked_sub(v)?;
    let df_q = inp.dividend_yield.checked_mul(inp.years)?.checked_neg()?.exp()?;
    let df_r = inp.rate.checked_mul(inp.years)?.checked_neg()?.exp()?;
    let s_q = inp.spot.checked_mul(df_q)?;
    let k_r = inp.strike.checked_mul(df_r)?;
    let (a1, a2) = (d1.raw().unsigned_abs(), d2.raw().unsigned_abs());
    let p = if a1 <= a2 {
        s_q.checked_mul(Fx::from_raw(gauss(a1)))?
    } else {
        k_r.checked_mul(Fx::from_raw(gauss(a2)))?
    };
    // S e^{-qT} (1 - N(|d1|)) and K e^{-rT} (1 - N(|d2|)): the small sides, computed directly.
    let tail1 = p.checked_mul(Fx::from_raw(mills_g(a1)))?;
    let tail2 = p.checked_mul(Fx::from_raw(mills_g(a2)))?;
    // (S e^{-qT} N(d1), S e^{-qT} N(-d1)) and the same for K e^{-rT} and d2.
    let (sn1, sn_m1) =
        if d1.is_negative() { (tail1, s_q.checked_sub(tail1)?) } else { (s_q.checked_sub(tail1)?, tail1) };
    let (kn2, kn_m2) =
        if d2.is_negative() { (tail2, k_r.checked_sub(tail2)?) } else { (k_r.checked_sub(tail2)?, tail2) };
    // Both prices are non-negative in exact arithmetic; the clamp only absorbs rounding when
    // the two terms cancel to nothing.
    let call = sn1.checked_sub(kn2)?.max(Fx::ZERO);
    let put = kn_m2.checked_sub(sn_m1)?.max(Fx::ZERO);
    // e^{-qT} (1 - N(|d1|)) = tail1 / S.
    let q_tail1 = Fx::from_raw(Fl::from_raw(tail1.raw() as u128).mul(inv_s).to_raw().ok_or(overflow)?);
    let (call_delta, put_delta) = if d1.is_negative() {
        (q_tail1, q_tail1.checked_sub(df_q)?)
    } else {
        (df_q.checked_sub(q_tail1)?, q_tail1.checked_neg()?)
    };
    let p_c = Fl::from_raw(p.raw() as u128).mul(INV_SQRT_2PI_FL); // S e^{-qT} phi(d1)
    let gamma = Fx::from_raw(p_c.mul(inv_sv).mul(inv_s).to_raw().ok_or(overflow)?);
    let vega = Fx::from_raw(p_c.mul(sigma_t).mul(inv_v_fl).to_raw().ok_or(overflow)?);
    Ok(OptionGreeks { call, put, call_delta, put_delta, gamma, vega, d1, d2 })
}

/// Black-76 prices and greeks of options on a forward (or future) `forward`, discounted at
/// `rate`. Deltas, gamma and vega are with respect to the forward. This is BSM with the
/// dividend yield equal to the rate, which makes `S e^{-qT}` equal to `F e^{-rT}`.
pub fn black76(
    forward: Fx,
    strike: Fx,
    rate: Fx,
    volatility: Fx,
    years: Fx,
) -> Result<OptionGreeks, PricingError> {
    black_scholes_merton(&OptionInputs {
        spot: forward,
        strike,
        rate,
        dividend_yield: rate,
        volatility,
        years,
    })
    .map_err(|e| match e {
        PricingError::NotPositive { field: "spot", value } => {
            PricingError::NotPositive { field: "forward", value }
        }
        other => other,
    })
}

/// Integer inputs of the exchange's marking and scenario-grid valuation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkInputs {
    pub kind: OptionKind,
    /// Spot price, micro-units of quote per whole base unit.
    pub spot_micros: i64,
    /// Strike price, micro-units of quote per whole base unit.
    pub strike_micros: i64,
    /// Annual volatility in parts per million (500_000 = 50%).
    pub volatility_ppm: i64,
    /// Annual continuous rate in parts per million (may be negative).
    pub rate_ppm: i64,
    /// Annual continuous dividend (or borrow) yield in parts per million (may be negative).
    pub dividend_yield_ppm: i64,
    /// Time to expiry in milliseconds; years = ms / 31_536_000_000 (act/365).
    pub time_ms: i64,
}

/// The option's value in micro-units, rounded in the caller's direction (e.g. `Up` when
/// valuing a short position for margin, `Down` for a long one). At `time_ms == 0` the value is
/// the intrinsic value, exactly.
pub fn mark_price_micros(m: &MarkInputs, rounding: Rounding) -> Result<i64, PricingError> {
    if m.spot_micros <= 0 {
        return Err(PricingError::NotPositive {
            field: "spot",
            value: Fx::from_micros(m.spot_micros as i128)?,
        });
    }
    if m.strike_micros <= 0 {
        let value = Fx::from_micros(m.strike_micros as i128)?;
        return Err(PricingError::NotPositive { field: "strike", value });
    }
    if m.time_ms < 0 {
        return Err(PricingError::NegativeTime { time_ms: m.time_ms });
    }
    if m.time_ms == 0 {
        // Both are positive i64, so the differences cannot overflow.
        let intrinsic = match m.kind {
            OptionKind::Call => m.spot_micros - m.strike_micros,
            OptionKind::Put => m.strike_micros - m.spot_micros,
        };
        return Ok(intrinsic.max(0));
    }
    let ppm = |x: i64| Fx::from_ratio(x as i128, PPM, Rounding::Nearest);
    let greeks = black_scholes_merton(&OptionInputs {
        spot: Fx::from_micros(m.spot_micros as i128)?,
        strike: Fx::from_micros(m.strike_micros as i128)?,
        rate: ppm(m.rate_ppm)?,
        dividend_yield: ppm(m.dividend_yield_ppm)?,
        volatility: ppm(m.volatility_ppm)?,
        years: Fx::from_ratio(m.time_ms as i128, MS_PER_YEAR as i128, Rounding::Nearest)?,
    })?;
    let price = match m.kind {
        OptionKind::Call => greeks.call,
        OptionKind::Put => greeks.put,
    };
    let micros = price.to_micros(rounding)?;
    i64::try_from(micros).map_err(|_| PricingError::Math(MathError::Overflow))
}

/// The exchange's marking and scenario-grid convenience: a call (`is_call`) or put with zero
/// rate and dividend yield, from spot and strike in micro-units, volatility in ppm and time to
/// expiry in milliseconds; the value in micro-units rounded as asked, the intrinsic value at
/// `time_ms == 0`.
pub fn option_price_micros(
    is_call: bool,
    spot_micros: i64,
    strike_micros: i64,
    volatility_ppm: i64,
    time_ms: u64,
    rounding: Rounding,
) -> Result<i128, PricingError> {
    let time_ms = i64::try_from(time_ms).map_err(|_| PricingError::Math(MathError::Overflow))?;
    let kind = if is_call { OptionKind::Call } else { OptionKind::Put };
    let m = MarkInputs {
        kind,
        spot_micros,
        strike_micros,
        volatility_ppm,
        rate_ppm: 0,
        dividend_yield_ppm: 0,
        time_ms,
    };
    mark_price_micros(&m, rounding).map(i128::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(s: &str) -> Fx {
        Fx::from_decimal_str(s).unwrap_or(Fx::MIN)
    }

    #[test]
    fn hull_black76_case() {
        // Hull: F = K = 19, r = 10%, σ = 28%, T = 0.75: call = put = 1.7011.
        let g = black76(fx("19"), fx("19"), fx("0.1"), fx("0.28"), fx("0.75"));
        let g = match g {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(g.call, g.put, "at the money forward: parity makes call = put");
        assert!((g.call.to_f64() - 1.7011).abs() < 5e-5, "{}", g.call);
        // mpmath at 40 digits: 1.701050725236267139130943462727906433048.
        let want = fx("1.701050725236267139130943462727906433048");
        assert!(g.call.raw().abs_diff(want.raw()) < 100, "{}", g.call);
    }

    #[test]
    fn extreme_inputs_match_references() {
        // mpmath at 40 digits, outside the exchange's ranges: |d| beyond the tail cut-off on
        // one or both sides (the Gaussian factor taken from d2), tiny prices, a tiny v.
        let cases: [([&str; 6], [&str; 8]); 4] = [
            (
                ["100", "50", "0.01", "0.02", "10", "4"],
                [
                    "92.31163463866357829107497",
                    "48.03947195761616047195952",
                    "0.9231163463866357829107548",
                    "0",
                    "0",
                    "0",
                    "10.03265735902799726547086",
                    "-9.967342640972002734529138",
                ],
            ),
            (
                ["0.001", "0.0005", "0", "0", "3", "0.5"],
                [
                    "0.0008015907656402231233221582",
                    "0.0003015907656402231233221582",
                    "0.9173420510877063578498084",
                    "-0.08265794891229364215019164",
                    "71.83133409729609634007837",
                    "0.0001077470011459441445101176",
                    "1.387412886269337017172567",
                    "-0.733907457290305556029966",
                ],
            ),
            (
                ["1000000", "2500000", "0.3", "-0.1", "0.01", "0.001"],
                [
                    "0",
                    "1499150.107488584172865961",
                    "0",
                    "-1.000100005000166670833417",
                    "0",
                    "0",
                    "-2896.300642447024555203693",
                    "-2896.300958674790572041626",
                ],
            ),
            (
                ["7", "7", "0", "0", "0.0001", "0.0001"],
                [
                    "0.000002792595962809912387414505",
                    "0.000002792595962809912387414505",
                    "0.5000001994711402007080277",
                    "-0.4999998005288597992919723",
                    "56991.75434305468716498513",
                    "0.02792595962809679671084271",
                    "0.0000005",
                    "-0.0000005",
                ],
            ),
        ];
        for (inp, want) in cases {
            let g = black_scholes_merton(&OptionInputs {
                spot: fx(inp[0]),
                strike: fx(inp[1]),
                rate: fx(inp[2]),
                dividend_yield: fx(inp[3]),
                volatility: fx(inp[4]),
                years: fx(inp[5]),
            });
            let g = match g {
                Ok(g) => g,
                Err(e) => panic!("{inp:?}: {e}"),
            };
            let got = [g.call, g.put, g.call_delta, g.put_delta, g.gamma, g.vega, g.d1, g.d2];
            for (k, (got, want)) in got.iter().zip(want).enumerate() {
                // 1e-15 relative, or 1e-15 absolute below 1.
                let want = fx(want);
                let tol = (want.raw().unsigned_abs() >> 50).max(1 << 14);
                assert!(got.raw().abs_diff(want.raw()) <= tol, "{inp:?} output {k}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn invalid_inputs_are_typed_errors() {
        let base = OptionInputs {
            spot: fx("42"),
            strike: fx("40"),
            rate: fx("0.1"),
            dividend_yield: Fx::ZERO,
            volatility: fx("0.2"),
            years: fx("0.5"),
        };
        let e = black_scholes_merton(&OptionInputs { volatility: Fx::ZERO, ..base });
        assert_eq!(e, Err(PricingError::NotPositive { field: "volatility", value: Fx::ZERO }));
        assert_eq!(
            e.map(|_| ()).map_err(|e| e.to_string()),
            Err("volatility must be positive, got 0".to_string())
        );
        assert!(black_scholes_merton(&OptionInputs { spot: fx("-1"), ..base }).is_err());
        assert!(black_scholes_merton(&OptionInputs { years: Fx::ZERO, ..base }).is_err());
        assert!(black_scholes_merton(&OptionInputs { strike: Fx::ZERO, ..base }).is_err());
        assert!(matches!(
            black76(Fx::ZERO, fx("1"), Fx::ZERO, fx("0.2"), fx("1")),
            Err(PricingError::NotPositive { field: "forward", .. })
        ));
        assert!(black_scholes_merton(&OptionInputs { rate: fx("-1000"), ..base }).is_err());
    }

    #[test]
    fn mark_price_micros_rounds_and_handles_expiry() {
        let m = MarkInputs {
            kind: OptionKind::Call,
            spot_micros: 42_000_000,
            strike_micros: 40_000_000,
            volatility_ppm: 200_000,
            rate_ppm: 100_000,
            dividend_yield_ppm: 0,
            time_ms: MS_PER_YEAR / 2,
        };
        // 4.7594223928715... and 0.80859937290009...
        assert_eq!(mark_price_micros(&m, Rounding::Down), Ok(4_759_422));
        assert_eq!(mark_price_micros(&m, Rounding::Up), Ok(4_759_423));
        let put = MarkInputs { kind: OptionKind::Put, ..m };
        assert_eq!(mark_price_micros(&put, Rounding::Nearest), Ok(808_599));
        assert_eq!(mark_price_micros(&MarkInputs { time_ms: 0, ..m }, Rounding::Up), Ok(2_000_000));
        assert_eq!(mark_price_micros(&MarkInputs { time_ms: 0, ..put }, Rounding::Up), Ok(0));
        assert_eq!(
            mark_price_micros(&MarkInputs { time_ms: -1, ..m }, Rounding::Up),
            Err(PricingError::NegativeTime { time_ms: -1 })
        );
        assert!(mark_price_micros(&MarkInputs { volatility_ppm: 0, ..m }, Rounding::Up).is_err());
        assert!(mark_price_micros(&MarkInputs { spot_micros: 0, ..m }, Rounding::Up).is_err());
        let zero_rate = MarkInputs { rate_ppm: 0, ..m };
        assert_eq!(
            option_price_micros(
                true,
                42_000_000,
                40_000_000,
                200_000,
                (MS_PER_YEAR / 2) as u64,
                Rounding::Down
            ),
            mark_price_micros(&zero_rate, Rounding::Down).map(i128::from)
        );
        assert_eq!(option_price_micros(false, 42_000_000, 40_000_000, 200_000, 0, Rounding::Down), Ok(0));
        assert!(option_price_micros(true, 1, 1, 1, u64::MAX, Rounding::Down).is_err());
    }
}
