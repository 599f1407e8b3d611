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

use crate::func::tail_and_pdf;
use crate::fx::{Fx, MathError, Rounding};

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

const HALF: Fx = Fx::from_raw(1 << 63);

/// Black-Scholes-Merton prices and greeks. Spot, strike, volatility and years must be positive
/// (use [`mark_price_micros`] for the value at expiry).
pub fn black_scholes_merton(inp: &OptionInputs) -> Result<OptionGreeks, PricingError> {
    positive("spot", inp.spot)?;
    positive("strike", inp.strike)?;
    positive("volatility", inp.volatility)?;
    positive("years", inp.years)?;
    let sqrt_t = inp.years.sqrt()?;
    let v = inp.volatility.checked_mul(sqrt_t)?;
    let ln_sk = inp.spot.ln()?.checked_sub(inp.strike.ln()?)?;
    let carry = inp.rate.checked_sub(inp.dividend_yield)?.checked_mul(inp.years)?;
    let d1 = ln_sk.checked_add(carry)?.checked_div(v)?.checked_add(v.checked_mul(HALF)?)?;
    let d2 = d1.checked_sub(v)?;
    let df_q = inp.dividend_yield.checked_mul(inp.years)?.checked_neg()?.exp()?;
    let df_r = inp.rate.checked_mul(inp.years)?.checked_neg()?.exp()?;
    let s_q = inp.spot.checked_mul(df_q)?;
    let k_r = inp.strike.checked_mul(df_r)?;
    let (tail1, pdf1) = tail_and_pdf(d1.raw().unsigned_abs());
    let (tail2, _) = tail_and_pdf(d2.raw().unsigned_abs());
    // (N(d), N(-d)): the tail is the smaller of the two and is computed directly.
    let split = |d: Fx, tail: i128| {
        let (tail, rest) = (Fx::from_raw(tail), Fx::from_raw((1 << 64) - tail));
        if d.is_negative() { (tail, rest) } else { (rest, tail) }
    };
    let (n_d1, n_md1) = split(d1, tail1);
    let (n_d2, n_md2) = split(d2, tail2);
    let pdf1 = Fx::from_raw(pdf1);
    // Both prices are non-negative in exact arithmetic; the clamp only absorbs rounding when
    // the two terms cancel to nothing.
    let call = s_q.checked_mul(n_d1)?.checked_sub(k_r.checked_mul(n_d2)?)?.max(Fx::ZERO);
    let put = k_r.checked_mul(n_md2)?.checked_sub(s_q.checked_mul(n_md1)?)?.max(Fx::ZERO);
    let call_delta = df_q.checked_mul(n_d1)?;
    let put_delta = df_q.checked_mul(n_md1)?.checked_neg()?;
    let gamma = df_q.checked_mul(pdf1)?.checked_div(inp.spot.checked_mul(v)?)?;
    let vega = s_q.checked_mul(pdf1)?.checked_mul(sqrt_t)?;
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
