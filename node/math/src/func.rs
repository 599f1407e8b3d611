//! Elementary functions on [`Fx`]: exp, ln, sqrt and the standard normal CDF and PDF.
//!
//! Each kernel is range reduction against a generated table (`tables.rs`) followed by a short
//! polynomial evaluated in 64-bit or 128-bit integers. Step counts are fixed, so the work and the
//! bits are the same on every machine.

use crate::fx::{Fx, MathError, mul_q64, mul_small};
use crate::tables::{
    EXP2_32, INV_LN2_32_Q57, INV_SQRT_2PI, LN_NEG_LN_RECIP, LN_RECIP, LN2_32_HI, LN2_32_LO, LN2_HI, LN2_LO,
    MILLS_G,
};
use crate::wide::{div_u256_by_u128, mul_u128};

/// `round(2^64 / n)` for n >= 2, evaluated at compile time.
const fn recip_q64(n: u128) -> u64 {
    (((1u128 << 64) + n / 2) / n) as u64
}

/// `round(2^64 / (n + 2)!)` for n = 0..7: the Taylor coefficients of `(e^r - 1 - r) / r^2`.
const EXP_POLY: [u64; 7] = {
    let mut c = [0u64; 7];
    let mut f: u128 = 2;
    let mut n = 0;
    while n < 7 {
        c[n] = recip_q64(f);
        f *= (n as u128) + 3;
        n += 1;
    }
    c
};

/// `round(2^64 / (n + 2))` for n = 0..8: the coefficients of `(t - ln(1 + t)) / t^2`, whose
/// signs alternate (applied in the loop).
const LN_POLY: [u64; 8] = {
    let mut c = [0u64; 8];
    let mut n = 0;
    while n < 8 {
        c[n] = recip_q64(n as u128 + 2);
        n += 1;
    }
    c
};

/// Taylor terms of the Mills ratio about a grid point: with a grid step of 1/32 the term of
/// order 10 is below 3e-22 everywhere on [0, 9.5], so orders 0..=9 suffice.
const MILLS_TERMS: usize = 9;
/// Beyond this the upper tail `1 - N(x)` is below 1.1e-21, under half an ulp: it is 0.
const TAIL_ZERO_RAW: u128 = 19 << 63; // 9.5
/// exp(x) for x below -46 is below 1.1e-20, under half an ulp: it is 0.
const EXP_ZERO_RAW: i128 = -(46 << 64);
/// Largest exp argument handled (the result overflows a little above 43.668).
const EXP_MAX_RAW: i128 = 44 << 64;

/// `k * c` for c = (hi + lo / 2^64) / 2^64 given as a 128-bit fraction, rounded to Q64.64.
#[inline]
fn mul_split_const(k: i128, hi: u64, lo: u64) -> i128 {
    k * hi as i128 + ((k * lo as i128 + (1 << 63)) >> 64)
}

/// `round(a * b / 2^64)` for signed 64-bit operands (half-up).
#[inline]
fn mul64(a: i64, b: i64) -> i64 {
    ((a as i128 * b as i128 + (1 << 63)) >> 64) as i64
}

/// `round(a * b / 2^64)` for unsigned 64-bit operands.
#[inline]
fn mulhi_u64(a: u64, b: u64) -> u64 {
    ((a as u128 * b as u128 + (1u128 << 63)) >> 64) as u64
}

/// e^x on the raw Q64.64 argument, or `None` on overflow.
///
/// 1. `x = N * (ln 2)/32 + r` with `0 <= r < (ln 2)/32` (N estimated with a multiply, then
///    corrected by one step either way so that `r` lands in range exactly).
/// 2. `e^r = 1 + r + r^2 * P(r)`, P the Taylor polynomial of degree 6 (error < 3e-21), in
///    unsigned Q0.64.
/// 3. `e^x = 2^(N >> 5) * 2^((N & 31)/32) * e^r`, the middle factor from the table.
#[inline]
pub(crate) fn exp_raw(x: i128) -> Option<i128> {
    let e = exp_kernel(x);
    if e < 0 { None } else { Some(e) }
}

/// [`exp_raw`] with -1 standing for overflow (an `i128` comes back in registers).
fn exp_kernel(x: i128) -> i128 {
    if x < EXP_ZERO_RAW {
        return 0;
    }
    if x > EXP_MAX_RAW {
        return -1;
    }
    // |x| < 2^70, so x >> 13 < 2^57 and its product with the 2^62.6 constant fits an i128.
    let mut n = ((x >> 13) * INV_LN2_32_Q57 as i128) >> 108;
    let step = mul_split_const(1, LN2_32_HI, LN2_32_LO);
    let mut r = x - mul_split_const(n, LN2_32_HI, LN2_32_LO);
    for _ in 0..2 {
        if r < 0 {
            n -= 1;
        } else if r >= step {
            n += 1;
        } else {
            break;
        }
        r = x - mul_split_const(n, LN2_32_HI, LN2_32_LO);
    }
    let r = r.clamp(0, step) as u64;
    let mut p = EXP_POLY[6];
    for c in EXP_POLY[..6].iter().rev() {
        p = c + mulhi_u64(p, r);
    }
    let em1 = r as u128 + mulhi_u64(mulhi_u64(r, r), p) as u128;
    let t = EXP2_32[(n & 31) as usize];
    // t < 2^65 and em1 < 2^59: the product fits.
    let m = t + ((t * em1 + (1u128 << 63)) >> 64);
    let k = n >> 5;
    if k >= 0 {
        // m < 2^66; the result must stay below 2^127.
        if k > 60 || m.leading_zeros() <= k as u32 + 1 {
            return -1;
        }
        (m << k) as i128
    } else {
        let s = (-k) as u32;
        ((m + (1u128 << (s - 1))) >> s) as i128
    }
}

/// ln(x) for raw x > 0.
///
/// 1. `x = 2^e * m`, m in [1, 2) kept with 127 fractional bits (exact).
/// 2. With j the next 6 bits of m, `t = m * R_j - 1` where R_j ≈ 1/(1 + (j + 1/2)/64) is stored
///    exactly, so |t| <= 1/128 + 2^-64 and `ln m = -ln R_j + ln(1 + t)`.
/// 3. `ln(1 + t) = t - t^2 * (1/2 - t/3 + ... - t^7/9)` (error < 1e-22).
fn ln_raw(x: i128) -> i128 {
    let u = x as u128;
    let lz = u.leading_zeros();
    let e = 63 - lz as i128; // x = 2^e * m
    let m = u << lz;
    let j = ((m >> 121) & 63) as usize;
    let recip = LN_RECIP[j] as u128;
    let prod = (m >> 64) * recip + (((m as u64 as u128) * recip) >> 64);
    let t127 = prod.wrapping_sub(1u128 << 127) as i128;
    let t = (t127 + (1 << 62)) >> 63;
    // ln(1 + t) = t - t^2/2 - t^2 * P1(t), P1(t) = -t/3 + t^2/4 - ... - t^7/9. Every value here
    // is below 2^58 in magnitude, so each step is one 64x64-bit product.
    let t = t as i64;
    let mut acc = -(LN_POLY[7] as i64);
    for (i, c) in LN_POLY[1..7].iter().enumerate().rev() {
        // LN_POLY[i + 1] = 1/(i + 3) multiplies t^(i+1), with sign (-1)^(i+1).
        let c = if i % 2 == 0 { -(*c as i64) } else { *c as i64 };
        acc = c + mul64(acc, t);
    }
    let p1 = mul64(acc, t);
    let t2 = mul64(t, t) as i128;
    let ln1p = t as i128 - ((t2 + 1) >> 1) - mul64(t2 as i64, p1) as i128;
    mul_split_const(e, LN2_HI, LN2_LO) + LN_NEG_LN_RECIP[j] as i128 + ln1p
}

/// `(1 - N(x), phi(x))` for a raw `x >= 0` (as an unsigned magnitude), both in Q64.64:
/// `1 - N(x) = exp(-x^2/2) * G(x)` (see [`mills_g`]) and `phi(x) = exp(-x^2/2) / sqrt(2 pi)`.
pub(crate) fn tail_and_pdf(x: u128) -> (i128, i128) {
    if x >= TAIL_ZERO_RAW {
        // phi(9.5) ≈ 2e-20 still rounds to a nonzero value; phi beyond 10 is 0.
        let pdf = if x < 10u128 << 64 { pdf_raw(x) } else { 0 };
        return (0, pdf);
    }
    let g = mills_g(x);
    let gauss = gauss_raw(x);
    // gauss <= 2^64 and 0 <= g <= 2^63: the unsigned product fits.
    let tail = ((gauss as u128 * g as u128 + (1u128 << 63)) >> 64) as i128;
    let pdf = mul_small(gauss, INV_SQRT_2PI as i128);
    (tail, pdf)
}

/// Grid points of [`MILLS_G`] (k/32 for k = 0..=304).
const MILLS_GRID: usize = 305;

/// Taylor coefficients t1..t9 of G about every grid point c = k/32, in Q0.64 (all below 0.4 in
/// magnitude), derived at compile time from `t0 = MILLS_G[k]` by the recurrence that follows
/// from the Mills ratio's differential equation `R' = x R - 1`:
///   t1 = c t0 - 1/sqrt(2 pi),  t(n+1) = (c tn + t(n-1)) / (n + 1).
/// The recurrence runs in Q?.110 (products k * t below 2^119) and each result is rounded to
/// Q0.64 once, so the coefficients carry the error of `t0` and `1/sqrt(2 pi)` (half an ulp each,
/// amplified by at most c^n / n! * 2^-6n < 0.15^n / n! once multiplied by s^n) plus half an ulp.
static MILLS_COEF: [[i64; MILLS_TERMS]; MILLS_GRID] = {
    let mut table = [[0i64; MILLS_TERMS]; MILLS_GRID];
    let mut k = 0;
    while k < MILLS_GRID {
        let kk = k as i128;
        let t0 = (MILLS_G[k] as i128) << 46;
        let mut prev = t0;
        let mut cur = ((kk * t0) >> 5) - ((INV_SQRT_2PI as i128) << 46);
        let mut n = 1;
        while n <= MILLS_TERMS {
            table[k][n - 1] = ((cur + (1 << 45)) >> 46) as i64;
            let next = (((kk * cur) >> 5) + prev) / (n as i128 + 1);
            prev = cur;
            cur = next;
            n += 1;
        }
        k += 1;
    }
    table
};

/// `G(x) = (1 - N(x)) / exp(-x^2/2)` for a raw `x >= 0`, in Q64.64 (at most 1/2); 0 from 9.5 on,
/// where the tail itself is below half an ulp.
///
/// `G = R / sqrt(2 pi)` with R the Mills ratio. G is expanded in a Taylor series about the
/// nearest grid point c = k/32, `G(c + s) = t0 + t1 s + ... + t9 s^9` with |s| <= 1/64 (the
/// coefficients from [`MILLS_G`] and [`MILLS_COEF`]). The polynomial is evaluated by pairs,
/// `(t0 + t1 s) + s^2 ((t2 + t3 s) + s^2 (...))`, in 64-bit products rounded half-up: each
/// rounding is at most half an ulp and is then multiplied by a power of s, so G keeps ~1e-19
/// absolute accuracy and the tail is accurate relative to its own size.
pub(crate) fn mills_g(x: u128) -> i128 {
    if x >= TAIL_ZERO_RAW {
        return 0;
    }
    let k = ((x + (1 << 58)) >> 59) as usize;
    let s = (x as i128 - ((k as i128) << 59)) as i64; // |s| <= 2^58
    let t = &MILLS_COEF[k];
    let s2 = mul64(s, s);
    // Pairs (t1 + t2 s), (t3 + t4 s), ..., (t7 + t8 s), then t9, summed by Horner in s^2.
    let mut acc = t[8];
    for j in (0..4).rev() {
        acc = t[2 * j] + mul64(t[2 * j + 1], s) + mul64(acc, s2);
    }
    // G = t0 + s * (t1 + t2 s + ... + t9 s^8).
    (MILLS_G[k] as i128 + mul_small(acc as i128, s as i128)).max(0)
}

/// `exp(-x^2/2)` for a raw `x >= 0`, in Q64.64; 0 from x = 10 on (it is 0 from about 9.6).
#[inline]
pub(crate) fn gauss(x: u128) -> i128 {
    if x < 10u128 << 64 { gauss_raw(x) } else { 0 }
}

/// exp(-x^2/2) for 0 <= x < 10 (raw).
#[inline]
fn gauss_raw(x: u128) -> i128 {
    let x = x as i128;
    let half_sq = (mul_q64(x, x) + 1) >> 1;
    exp_raw(-half_sq).unwrap_or(0)
}

#[inline]
fn pdf_raw(x: u128) -> i128 {
    mul_small(gauss_raw(x), INV_SQRT_2PI as i128)
}

impl Fx {
    /// e^self. Fails with `Overflow` above about 43.67; below -46 the result is 0.
    #[inline]
    pub fn exp(self) -> Result<Fx, MathError> {
        exp_raw(self.raw()).map(Fx::from_raw).ok_or(MathError::Overflow)
    }

    /// Natural logarithm; `Domain` for non-positive arguments.
    #[inline]
    pub fn ln(self) -> Result<Fx, MathError> {
        if self.raw() <= 0 {
            return Err(MathError::Domain);
        }
        Ok(Fx::from_raw(ln_raw(self.raw())))
    }

    /// Square root rounded down to the Q64.64 grid: `floor(sqrt(raw * 2^64))` exactly.
    /// `Domain` for negative arguments.
    pub fn sqrt(self) -> Result<Fx, MathError> {
        let raw = self.raw();
        if raw < 0 {
            return Err(MathError::Domain);
        }
        let u = raw as u128;
        if u >> 64 == 0 {
            return Ok(Fx::from_raw((u << 64).isqrt() as i128));
        }
        // The radicand X = u * 2^64 has up to 191 bits. Start from the square root of its top
        // bits (a lower bound within 2^32 of the root), then one Newton step from below lands
        // on floor(sqrt X) or one above it; the final comparison settles which.
        let shift = u.leading_zeros() & !1;
        let s0 = (u << shift).isqrt() << ((64 - shift) / 2);
        let (xh, xl) = (u >> 64, u << 64);
        let (q, _) = div_u256_by_u128(xh, xl, s0).ok_or(MathError::Overflow)?;
        let mut s = (s0 + q) >> 1;
        for _ in 0..2 {
            if mul_u128(s, s) <= (xh, xl) {
                break;
            }
            s -= 1;
        }
        Ok(Fx::from_raw(s as i128))
    }

    /// The standard normal CDF N(x). `N(x) + N(-x) = 1` holds exactly.
    pub fn norm_cdf(self) -> Fx {
        let (tail, _) = tail_and_pdf(self.raw().unsigned_abs());
        if self.raw() >= 0 { Fx::from_raw((1 << 64) - tail) } else { Fx::from_raw(tail) }
    }

    /// The standard normal density phi(x) = exp(-x^2/2) / sqrt(2 pi); 0 for |x| >= 10.
    pub fn norm_pdf(self) -> Fx {
        let x = self.raw().unsigned_abs();
        Fx::from_raw(if x < 10u128 << 64 { pdf_raw(x) } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fx::Rounding;

    fn fx(s: &str) -> Fx {
        Fx::from_decimal_str(s).unwrap_or(Fx::MIN)
    }

    /// |got - want| in ulps.
    fn ulps(got: Fx, want: &str) -> u128 {
        got.raw().abs_diff(fx(want).raw())
    }

    #[test]
    fn exp2_table_entries_compose_to_two() {
        // 2^(j/32) * 2^((32-j)/32) = 2 for every pair, to within the two roundings.
        for j in 1..32 {
            let p = Fx::from_raw(EXP2_32[j] as i128).checked_mul(Fx::from_raw(EXP2_32[32 - j] as i128));
            let err = p.map(|p| p.raw().abs_diff(2 << 64)).unwrap_or(u128::MAX);
            assert!(err <= 3, "entry {j}: {err} ulps");
        }
    }

    #[test]
    fn ln_table_matches_exp() {
        // exp(-ln R_j) * R_j = 1.
        for j in 0..64 {
            let e = Fx::from_raw(LN_NEG_LN_RECIP[j] as i128).exp().unwrap_or(Fx::ZERO);
            let p = e.checked_mul(Fx::from_raw(LN_RECIP[j] as i128)).unwrap_or(Fx::ZERO);
            assert!(p.raw().abs_diff(1 << 64) <= 4, "entry {j}");
        }
    }

    #[test]
    fn mills_table_satisfies_its_differential_equation() {
        // Expanding about grid point k and evaluating at k + 1 (through the same recurrence, at
        // s = +1/64 from the midpoint) must agree with the kernel expanding about k + 1 at s =
        // -1/64: both are evaluations of 1 - N at the same x, from independent table entries.
        for k in 0..304u128 {
            let mid = (2 * k + 1) << 58;
            let from_left = {
                // Force rounding to the left grid point by evaluating just below the midpoint.
                tail_and_pdf(mid - 1).0
            };
            let from_right = tail_and_pdf(mid).0;
            let diff = from_left.abs_diff(from_right);
            assert!(diff <= 8, "grid {k}: left {from_left} right {from_right}");
        }
    }

    #[test]
    fn exp_and_ln_reference_values() {
        // 40-digit references (mpmath).
        assert!(ulps(Fx::ONE.exp().unwrap_or(Fx::ZERO), "2.718281828459045235360287471352662497757") <= 4);
        assert!(ulps(fx("-1").exp().unwrap_or(Fx::ZERO), "0.3678794411714423215955237701614608674458") <= 2);
        assert!(ulps(fx("0.1").exp().unwrap_or(Fx::ZERO), "1.105170918075647624811707826490246668225") <= 2);
        assert!(
            ulps(fx("40").exp().unwrap_or(Fx::ZERO), "235385266837019985.4078999107490348045089") < 4 << 57
        );
        assert!(ulps(fx("-20").exp().unwrap_or(Fx::ONE), "0.000000002061153622438557827965940380155") <= 1);
        assert_eq!(fx("-46.5").exp(), Ok(Fx::ZERO));
        assert_eq!(fx("44").exp(), Err(MathError::Overflow));
        assert_eq!(Fx::MAX.exp(), Err(MathError::Overflow));
        assert_eq!(Fx::MIN.exp(), Ok(Fx::ZERO));
        assert_eq!(Fx::ZERO.exp(), Ok(Fx::ONE));
        assert!(ulps(fx("2").ln().unwrap_or(Fx::ZERO), "0.6931471805599453094172321214581765680755") <= 2);
        assert!(ulps(fx("10").ln().unwrap_or(Fx::ZERO), "2.302585092994045684017991454684364207601") <= 3);
        assert!(
            ulps(fx("0.125").ln().unwrap_or(Fx::ZERO), "-2.079441541679835928251696364374529704227") <= 3
        );
        assert!(
            ulps(fx("1.05").ln().unwrap_or(Fx::ZERO), "0.04879016416943200306537440422316465860796") <= 2
        );
        assert_eq!(Fx::ONE.ln(), Ok(Fx::ZERO));
        assert_eq!(Fx::ZERO.ln(), Err(MathError::Domain));
        assert_eq!(fx("-1").ln(), Err(MathError::Domain));
        assert!(Fx::MAX.ln().is_ok() && Fx::EPSILON.ln().is_ok());
    }

    #[test]
    fn sqrt_is_floor_exact() {
        assert_eq!(fx("4").sqrt(), Ok(fx("2")));
        assert_eq!(fx("0.25").sqrt(), Ok(fx("0.5")));
        assert_eq!(fx("1e10").sqrt(), Ok(fx("1e5")));
        assert_eq!(Fx::ZERO.sqrt(), Ok(Fx::ZERO));
        assert_eq!(fx("-1").sqrt(), Err(MathError::Domain));
        assert!(ulps(fx("2").sqrt().unwrap_or(Fx::ZERO), "1.414213562373095048801688724209698078570") <= 1);
        let max = Fx::MAX.sqrt().unwrap_or(Fx::ZERO);
        assert!(max.raw() > 0);
    }

    #[test]
    fn normal_reference_values() {
        // mpmath, 40 digits.
        let cases = [
            ("0", "0.5"),
            ("1", "0.8413447460685429485852325456320379224779"),
            ("-1.96", "0.0249978951482204341365842690408371900225"),
            ("-5", "0.0000002866515718791939116737523328746453538544"),
            ("-8.3", "0.00000000000000005205569744890285157995881978045409783415"),
            ("3.7643506641410837694", "0.9999165087885780970277452919656158487473"),
        ];
        for (x, want) in cases {
            let got = fx(x).norm_cdf();
            assert!(ulps(got, want) <= 64, "N({x}) = {got}, want {want}");
        }
        assert_eq!(fx("10").norm_cdf(), Fx::ONE);
        assert_eq!(fx("-10").norm_cdf(), Fx::ZERO);
        assert_eq!(Fx::MIN.norm_cdf(), Fx::ZERO);
        assert_eq!(Fx::MAX.norm_cdf(), Fx::ONE);
        assert!(ulps(Fx::ZERO.norm_pdf(), "0.3989422804014326779399460599343818684759") <= 1);
        assert!(ulps(fx("-2").norm_pdf(), "0.05399096651318805195056420041071358173981") <= 1);
        assert_eq!(fx("12").norm_pdf(), Fx::ZERO);
        let _ = Rounding::Nearest;
    }
}
