//! The Q64.64 fixed-point number `Fx`, its rounding modes, exact conversions and checked
//! arithmetic.

use crate::wide::{div_u256_by_u128, mul_u128};
use core::cmp::Ordering;
use core::fmt;
use core::str::FromStr;

/// Fractional bits of [`Fx`].
pub const FRAC_BITS: u32 = 64;
/// Micro-units per whole unit (the exchange's money and price scale).
pub const MICROS_PER_UNIT: i128 = 1_000_000;
/// Longest mantissa (in digits) the decimal parser accepts; bounds its work.
pub const DECIMAL_DIGITS_MAX: usize = 1_000;
/// Largest exponent magnitude the decimal parser accepts.
pub const DECIMAL_EXPONENT_MAX: i64 = 100_000;

/// Errors of the fixed-point arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MathError {
    /// The exact result is outside the representable range (about ±9.2e18).
    #[error("fixed-point overflow")]
    Overflow,
    /// Division (or a ratio) with a zero denominator.
    #[error("division by zero")]
    DivideByZero,
    /// The argument is outside the function's domain (ln of a non-positive number...).
    #[error("argument outside the domain of the function")]
    Domain,
    /// A decimal string that is not a number in the accepted syntax.
    #[error("invalid decimal: {0}")]
    InvalidDecimal(&'static str),
}

/// How an inexact result is rounded to the representable grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// Towards negative infinity (floor).
    Down,
    /// Towards positive infinity (ceiling).
    Up,
    /// To the nearest representable value; an exact tie goes away from zero.
    Nearest,
}

/// A signed Q64.64 fixed-point number: the value is `raw / 2^64`, held in an `i128`.
///
/// Range about ±9.22e18, resolution 2^-64 (about 5.4e-20). Ordering, equality and hashing are
/// those of the raw integer, so every validator compares the same bits.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fx(i128);

/// Applies a rounding mode to a truncated magnitude.
///
/// `half` is how the discarded part compares with one half of the last kept unit, `inexact`
/// whether anything was discarded at all. The sign is applied afterwards, so `Down`/`Up` round
/// the magnitude up for negative/positive values respectively.
#[inline]
fn round_magnitude(
    mag: u128,
    half: Ordering,
    inexact: bool,
    negative: bool,
    mode: Rounding,
) -> Result<u128, MathError> {
    let bump = match mode {
        Rounding::Down => negative && inexact,
        Rounding::Up => !negative && inexact,
        Rounding::Nearest => half != Ordering::Less,
    };
    if bump { mag.checked_add(1).ok_or(MathError::Overflow) } else { Ok(mag) }
}

/// Re-applies the sign to a magnitude, checking the i128 range (|i128::MIN| is allowed).
#[inline]
fn signed(mag: u128, negative: bool) -> Result<i128, MathError> {
    if negative {
        if mag > 1u128 << 127 { Err(MathError::Overflow) } else { Ok((mag as i128).wrapping_neg()) }
    } else if mag > i128::MAX as u128 {
        Err(MathError::Overflow)
    } else {
        Ok(mag as i128)
    }
}

/// `floor(a * b / 2^64 + 1/2)` for operands whose rounded product fits in an i128. Used inside
/// the function kernels where the operand bounds are proven in the comments at each call site;
/// wrapping arithmetic keeps it panic-free, and within those bounds nothing wraps.
#[inline]
pub(crate) fn mul_q64(a: i128, b: i128) -> i128 {
    let (ah, al) = ((a >> 64) as i64 as i128, a as u64 as u128);
    let (bh, bl) = ((b >> 64) as i64 as i128, b as u64 as u128);
    // a*b = ah*bh*2^128 + (ah*bl + al*bh)*2^64 + al*bl; adding 2^63 to the last term before
    // its shift rounds the whole product half-up, since the other terms are whole multiples.
    let low = ((al * bl + (1u128 << 63)) >> 64) as i128;
    (ah.wrapping_mul(bh) << 64)
        .wrapping_add(ah.wrapping_mul(bl as i128))
        .wrapping_add((al as i128).wrapping_mul(bh))
        .wrapping_add(low)
}

/// `a * b / 2^64` rounded to nearest (ties away from zero) and range-checked: exactly
/// `Fx::checked_mul` on raw values, always inlined so that hot callers keep the result in
/// registers.
#[inline(always)]
pub(crate) fn mul_nearest(a: i128, b: i128) -> Result<i128, MathError> {
    let negative = (a < 0) != (b < 0);
    let (hi, lo) = mul_u128(a.unsigned_abs(), b.unsigned_abs());
    if hi >> 64 != 0 {
        return Err(MathError::Overflow);
    }
    // Bit 63 of the discarded part is set exactly when it is at least one half.
    let mag = ((hi << 64) | (lo >> 64)).checked_add((lo >> 63) & 1).ok_or(MathError::Overflow)?;
    signed(mag, negative)
}

/// `floor(a * b / 2^64 + 1/2)` with a native i128 product; requires |a * b| < 2^126.
#[inline]
pub(crate) fn mul_small(a: i128, b: i128) -> i128 {
    (a.wrapping_mul(b).wrapping_add(1 << 63)) >> 64
}

impl Fx {
    /// Zero.
    pub const ZERO: Fx = Fx(0);
    /// One.
    pub const ONE: Fx = Fx(1 << 64);
    /// The smallest positive value, 2^-64.
    pub const EPSILON: Fx = Fx(1);
    /// The largest value, just below 2^63.
    pub const MAX: Fx = Fx(i128::MAX);
    /// The most negative value, -2^63.
    pub const MIN: Fx = Fx(i128::MIN);

    /// The value `raw / 2^64`.
    pub const fn from_raw(raw: i128) -> Fx {
        Fx(raw)
    }

    /// The raw Q64.64 integer.
    pub const fn raw(self) -> i128 {
        self.0
    }

    /// An integer; every i64 is representable.
    pub const fn from_int(n: i64) -> Fx {
        Fx((n as i128) << 64)
    }

    /// An integer from an i128, if it is in range.
    pub fn checked_from_int(n: i128) -> Result<Fx, MathError> {
        if n >= i64::MIN as i128 && n <= i64::MAX as i128 {
            Ok(Fx(n << 64))
        } else {
            Err(MathError::Overflow)
        }
    }

    /// `num / den`, rounded as asked.
    pub fn from_ratio(num: i128, den: i128, mode: Rounding) -> Result<Fx, MathError> {
        Fx::from_int_ratio_shifted(num, den, mode)
    }

    /// A quantity in micro-units (1e-6), rounded to nearest (1e6 is not a power of two, so
    /// most micro-unit values are not exactly representable).
    pub fn from_micros(micros: i128) -> Result<Fx, MathError> {
        Fx::from_micros_rounded(micros, Rounding::Nearest)
    }

    /// A quantity in micro-units (1e-6), rounded as asked.
    pub fn from_micros_rounded(micros: i128, mode: Rounding) -> Result<Fx, MathError> {
        Fx::from_int_ratio_shifted(micros, MICROS_PER_UNIT, mode)
    }

    /// This value in micro-units, rounded as asked (e.g. `Down` for what an account is owed,
    /// `Up` for what it owes).
    pub fn to_micros(self, mode: Rounding) -> Result<i128, MathError> {
        let negative = self.0 < 0;
        let (hi, lo) = mul_u128(self.0.unsigned_abs(), MICROS_PER_UNIT as u128);
        shift_out_64(hi, lo, negative, mode)
    }

    /// `num * 2^64 / den` rounded: the shared core of ratios and micro-unit conversion.
    fn from_int_ratio_shifted(num: i128, den: i128, mode: Rounding) -> Result<Fx, MathError> {
        if den == 0 {
            return Err(MathError::DivideByZero);
        }
        let negative = (num < 0) != (den < 0);
        let n = num.unsigned_abs();
        divide_shifted(n >> 64, n << 64, den.unsigned_abs(), negative, mode).map(Fx)
    }

    /// `self + rhs`.
    pub fn checked_add(self, rhs: Fx) -> Result<Fx, MathError> {
        self.0.checked_add(rhs.0).map(Fx).ok_or(MathError::Overflow)
    }

    /// `self - rhs`.
    pub fn checked_sub(self, rhs: Fx) -> Result<Fx, MathError> {
        self.0.checked_sub(rhs.0).map(Fx).ok_or(MathError::Overflow)
    }

    /// `-self` (fails only for [`Fx::MIN`]).
    pub fn checked_neg(self) -> Result<Fx, MathError> {
        self.0.checked_neg().map(Fx).ok_or(MathError::Overflow)
    }

    /// `|self|` (fails only for [`Fx::MIN`]).
    pub fn checked_abs(self) -> Result<Fx, MathError> {
        self.0.checked_abs().map(Fx).ok_or(MathError::Overflow)
    }

    /// `self * rhs` rounded to nearest.
    #[inline]
    pub fn checked_mul(self, rhs: Fx) -> Result<Fx, MathError> {
        mul_nearest(self.0, rhs.0).map(Fx)
    }

    /// `self * rhs` rounded as asked: the exact 256-bit product, shifted right by 64.
    #[inline]
    pub fn mul_rounded(self, rhs: Fx, mode: Rounding) -> Result<Fx, MathError> {
        let negative = (self.0 < 0) != (rhs.0 < 0);
        let (hi, lo) = mul_u128(self.0.unsigned_abs(), rhs.0.unsigned_abs());
        shift_out_64(hi, lo, negative, mode).map(Fx)
    }

    /// `self / rhs` rounded to nearest.
    #[inline]
    pub fn checked_div(self, rhs: Fx) -> Result<Fx, MathError> {
        self.div_rounded(rhs, Rounding::Nearest)
    }

    /// `self / rhs` rounded as asked: `(self * 2^64) / rhs` by exact 256/128 long division.
    pub fn div_rounded(self, rhs: Fx, mode: Rounding) -> Result<Fx, MathError> {
        if rhs.0 == 0 {
            return Err(MathError::DivideByZero);
        }
        let negative = (self.0 < 0) != (rhs.0 < 0);
        let n = self.0.unsigned_abs();
        divide_shifted(n >> 64, n << 64, rhs.0.unsigned_abs(), negative, mode).map(Fx)
    }

    /// Multiplies by an integer exactly.
    pub fn checked_mul_int(self, n: i64) -> Result<Fx, MathError> {
        self.0.checked_mul(n as i128).map(Fx).ok_or(MathError::Overflow)
    }

    /// True for values below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// True for values above zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// The larger of two values.
    pub fn max(self, other: Fx) -> Fx {
        if self >= other { self } else { other }
    }

    /// The smaller of two values.
    pub fn min(self, other: Fx) -> Fx {
        if self <= other { self } else { other }
    }

    /// The integer part, rounded as asked.
    pub fn to_int(self, mode: Rounding) -> i128 {
        let floor = self.0 >> 64;
        let frac = self.0 as u64;
        match mode {
            Rounding::Down => floor,
            Rounding::Up => floor + (frac != 0) as i128,
            Rounding::Nearest => {
                // Ties away from zero: a negative value's tie (frac = 1/2) stays at the floor.
                let half = 1u64 << 63;
                if frac > half || (frac == half && self.0 >= 0) { floor + 1 } else { floor }
            }
        }
    }

    /// DISPLAY ONLY: the nearest f64. Never feed the result back into consensus arithmetic.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 18_446_744_073_709_551_616.0
    }

    /// Parses a decimal such as `-12.5`, `0.000001` or `1.0041538e-40` exactly, rounding the
    /// exact value once as asked.
    pub fn from_decimal_str_rounded(s: &str, mode: Rounding) -> Result<Fx, MathError> {
        parse_decimal(s, mode)
    }

    /// [`Fx::from_decimal_str_rounded`] with [`Rounding::Nearest`].
    pub fn from_decimal_str(s: &str) -> Result<Fx, MathError> {
        parse_decimal(s, Rounding::Nearest)
    }

    /// The exact decimal expansion (every Q64.64 value has a finite one, of at most 64
    /// fractional digits); trailing zeros are dropped.
    pub fn to_decimal_string(self) -> String {
        self.to_string()
    }
}

/// `(hi * 2^128 + lo) >> 64` rounded, with the sign re-applied.
#[inline]
fn shift_out_64(hi: u128, lo: u128, negative: bool, mode: Rounding) -> Result<i128, MathError> {
    if hi >> 64 != 0 {
        return Err(MathError::Overflow);
    }
    let mag = (hi << 64) | (lo >> 64);
    let rem = lo as u64;
    let mag = round_magnitude(mag, rem.cmp(&(1u64 << 63)), rem != 0, negative, mode)?;
    signed(mag, negative)
}

/// `(hi * 2^128 + lo) / d` rounded, with the sign re-applied.
fn divide_shifted(hi: u128, lo: u128, d: u128, negative: bool, mode: Rounding) -> Result<i128, MathError> {
    let (q, r) = div_u256_by_u128(hi, lo, d).ok_or(MathError::Overflow)?;
    // r < d, so comparing r with d - r avoids overflowing 2r.
    let mag = round_magnitude(q, r.cmp(&(d - r)), r != 0, negative, mode)?;
    signed(mag, negative)
}

/// The decimal parser: `[+-]digits[.digits][(e|E)[+-]digits]`, exact, one rounding at the end.
fn parse_decimal(s: &str, mode: Rounding) -> Result<Fx, MathError> {
    let s = s.trim();
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(MathError::InvalidDecimal("malformed exponent"));
            }
            let e: i64 = e.parse().map_err(|_| MathError::InvalidDecimal("malformed exponent"))?;
            if e.abs() > DECIMAL_EXPONENT_MAX {
                return Err(MathError::InvalidDecimal("exponent out of range"));
            }
            e
        }
    };
    let (int_str, frac_str) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if int_str.is_empty() && frac_str.is_empty() {
        return Err(MathError::InvalidDecimal("no digits"));
    }
    if !int_str.bytes().chain(frac_str.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(MathError::InvalidDecimal("unexpected character"));
    }
    if int_str.len() + frac_str.len() > DECIMAL_DIGITS_MAX {
        return Err(MathError::InvalidDecimal("too many digits"));
    }
    // All digits, and the position of the decimal point within them after the exponent.
    let mut digits: Vec<u8> = int_str.bytes().chain(frac_str.bytes()).map(|b| b - b'0').collect();
    let mut point = int_str.len() as i64 + exponent;
    let lead = digits.iter().take_while(|&&d| d == 0).count();
    digits.drain(..lead);
    point -= lead as i64;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        return Ok(Fx::ZERO);
    }
    // 20 integer digits are at least 1e19 > 2^63: out of range whatever follows.
    if point > 19 {
        return Err(MathError::Overflow);
    }
    // Below 1e-40 (< 2^-132) a non-zero value is far under half a unit: only directed
    // rounding away from zero moves it.
    if point < -40 {
        let mag = round_magnitude(0, Ordering::Less, true, negative, mode)?;
        return signed(mag, negative).map(Fx);
    }
    let mut int_part: u128 = 0;
    let mut frac: Vec<u8> = Vec::new();
    if point < 0 {
        frac.resize(point.unsigned_abs() as usize, 0);
        frac.extend_from_slice(&digits);
    } else {
        let p = point as usize;
        for i in 0..p {
            int_part = int_part * 10 + *digits.get(i).unwrap_or(&0) as u128;
        }
        if p < digits.len() {
            frac.extend_from_slice(&digits[p..]);
        }
    }
    // Binary digits of the fraction by repeated doubling of the decimal digit string: each
    // doubling carries the next bit out of the first decimal place. Exact for any length.
    let mut next_bit = || -> u8 {
        let mut carry = 0u8;
        for d in frac.iter_mut().rev() {
            let v = *d * 2 + carry;
            *d = v % 10;
            carry = v / 10;
        }
        carry
    };
    let mut frac_bits: u64 = 0;
    for _ in 0..64 {
        frac_bits = (frac_bits << 1) | next_bit() as u64;
    }
    let half_bit = next_bit();
    let sticky = frac.iter().any(|&d| d != 0);
    let half = match (half_bit, sticky) {
        (0, _) => Ordering::Less,
        (_, false) => Ordering::Equal,
        _ => Ordering::Greater,
    };
    let mag = (int_part << 64) | frac_bits as u128;
    let mag = round_magnitude(mag, half, half_bit != 0 || sticky, negative, mode)?;
    signed(mag, negative).map(Fx)
}

impl FromStr for Fx {
    type Err = MathError;

    fn from_str(s: &str) -> Result<Fx, MathError> {
        parse_decimal(s, Rounding::Nearest)
    }
}

impl fmt::Display for Fx {
    /// The exact decimal expansion; with a precision (`{:.6}`) rounded to nearest, ties away
    /// from zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.0 < 0;
        let mag = self.0.unsigned_abs();
        let mut int_part = mag >> 64;
        let mut frac = mag as u64;
        let mut digits: Vec<u8> = Vec::with_capacity(64);
        while frac != 0 {
            let v = frac as u128 * 10;
            digits.push((v >> 64) as u8);
            frac = v as u64;
        }
        if let Some(p) = f.precision() {
            if digits.len() > p {
                let round_up = digits[p] >= 5;
                digits.truncate(p);
                if round_up {
                    // Propagate the carry leftwards, into the integer part if need be.
                    let mut carry = true;
                    for d in digits.iter_mut().rev() {
                        if *d == 9 {
                            *d = 0;
                        } else {
                            *d += 1;
                            carry = false;
                            break;
                        }
                    }
                    if carry {
                        int_part += 1;
                    }
                }
            } else {
                digits.resize(p, 0);
            }
        } else {
            while digits.last() == Some(&0) {
                digits.pop();
            }
        }
        let is_zero = int_part == 0 && digits.iter().all(|&d| d == 0);
        let mut out = String::with_capacity(digits.len() + 42);
        if negative && !is_zero {
            out.push('-');
        }
        out.push_str(&int_part.to_string());
        if !digits.is_empty() {
            out.push('.');
            out.extend(digits.iter().map(|&d| char::from(b'0' + d)));
        }
        f.pad_integral(true, "", &out)
    }
}

impl fmt::Debug for Fx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fx({self} = {:#x}/2^64)", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(s: &str) -> Fx {
        match Fx::from_decimal_str(s) {
            Ok(v) => v,
            Err(e) => panic!("parse {s}: {e}"),
        }
    }

    #[test]
    fn parse_and_print_exact_values() {
        for (s, raw) in [
            ("0", 0i128),
            ("1", 1 << 64),
            ("-1", -(1 << 64)),
            ("0.5", 1 << 63),
            ("2.25", (9i128) << 62),
            ("-0.75", -(3i128 << 62)),
            ("25e-2", 1 << 62),
            ("0.0625E+1", 5i128 << 61),
            ("+3", 3 << 64),
        ] {
            assert_eq!(fx(s).raw(), raw, "{s}");
        }
        assert_eq!(fx("42").to_string(), "42");
        assert_eq!(fx("-2.25").to_string(), "-2.25");
        assert_eq!(
            Fx::EPSILON.to_string(),
            "0.0000000000000000000542101086242752217003726400434970855712890625"
        );
        assert_eq!(format!("{:.3}", fx("1.9996")), "2.000");
        assert_eq!(format!("{:.2}", fx("-0.004")), "0.00");
        assert_eq!(format!("{:.4}", fx("4.75942239")), "4.7594");
    }

    #[test]
    fn parse_rounds_once_in_the_asked_direction() {
        let tenth_down = Fx::from_decimal_str_rounded("0.1", Rounding::Down).map(Fx::raw);
        let tenth_up = Fx::from_decimal_str_rounded("0.1", Rounding::Up).map(Fx::raw);
        assert_eq!(tenth_down, Ok(0x1999_9999_9999_9999));
        assert_eq!(tenth_up, Ok(0x1999_9999_9999_999a));
        assert_eq!(fx("0.1").raw(), 0x1999_9999_9999_999a);
        assert_eq!(fx("-0.1").raw(), -0x1999_9999_9999_999a);
        assert_eq!(
            Fx::from_decimal_str_rounded("-0.1", Rounding::Down).map(Fx::raw),
            Ok(-0x1999_9999_9999_999a)
        );
        // A tie at exactly half an ulp rounds away from zero.
        let half_ulp = "0.00000000000000000002710505431213761085018632002174854278564453125";
        assert_eq!(fx(half_ulp).raw(), 1);
        assert_eq!(fx(&format!("-{half_ulp}")).raw(), -1);
        assert_eq!(fx("1.0041538e-400").raw(), 0);
        assert_eq!(Fx::from_decimal_str_rounded("1e-400", Rounding::Up).map(Fx::raw), Ok(1));
        assert_eq!(
            fx("0.38461538461538461538461538461538461538461538461538"),
            Fx::from_ratio(5, 13, Rounding::Nearest).unwrap_or(Fx::ZERO)
        );
    }

    #[test]
    fn parse_rejects_malformed_and_out_of_range() {
        for s in ["", "-", ".", "1..2", "1e", "1e+", "abc", "1.2.3", "0x10", "1e5000000", "1 2", "--1"] {
            assert!(matches!(Fx::from_decimal_str(s), Err(MathError::InvalidDecimal(_))), "{s}");
        }
        assert_eq!(Fx::from_decimal_str("1e19"), Err(MathError::Overflow));
        assert_eq!(Fx::from_decimal_str("9223372036854775808"), Err(MathError::Overflow));
        assert_eq!(Fx::from_decimal_str("-9223372036854775808").map(Fx::raw), Ok(i128::MIN));
        assert_eq!(fx("9223372036854775807").raw(), (i64::MAX as i128) << 64);
    }

    #[test]
    fn micros_round_trip_and_direction() {
        for m in [0i128, 1, -1, 999_999, 1_000_000, 42_123_456, -7_000_001, 1 << 70] {
            let v = Fx::from_micros(m).unwrap_or(Fx::MAX);
            assert_eq!(v.to_micros(Rounding::Nearest), Ok(m), "{m}");
        }
        let third = Fx::from_ratio(1, 3, Rounding::Nearest).unwrap_or(Fx::ZERO);
        assert_eq!(third.to_micros(Rounding::Down), Ok(333_333));
        assert_eq!(third.to_micros(Rounding::Up), Ok(333_334));
        assert_eq!(Fx::ZERO.checked_sub(third).and_then(|v| v.to_micros(Rounding::Down)), Ok(-333_334));
        assert_eq!(Fx::ZERO.checked_sub(third).and_then(|v| v.to_micros(Rounding::Up)), Ok(-333_333));
    }

    #[test]
    fn mul_div_rounding_and_errors() {
        let a = fx("1.5");
        let b = fx("-2.25");
        assert_eq!(a.checked_mul(b), Ok(fx("-3.375")));
        assert_eq!(b.checked_div(a), Ok(fx("-1.5")));
        assert_eq!(a.checked_div(Fx::ZERO), Err(MathError::DivideByZero));
        assert_eq!(Fx::MAX.checked_mul(fx("2")), Err(MathError::Overflow));
        assert_eq!(Fx::MAX.checked_div(fx("0.5")), Err(MathError::Overflow));
        let e = Fx::EPSILON;
        assert_eq!(e.mul_rounded(fx("0.5"), Rounding::Down), Ok(Fx::ZERO));
        assert_eq!(e.mul_rounded(fx("0.5"), Rounding::Up), Ok(e));
        assert_eq!(e.mul_rounded(fx("0.5"), Rounding::Nearest), Ok(e));
        assert_eq!(e.mul_rounded(fx("-0.5"), Rounding::Down), Ok(Fx::from_raw(-1)));
        assert_eq!(Fx::ONE.div_rounded(fx("3"), Rounding::Down).map(Fx::raw), Ok(0x5555_5555_5555_5555));
        assert_eq!(Fx::ONE.div_rounded(fx("3"), Rounding::Up).map(Fx::raw), Ok(0x5555_5555_5555_5556));
        assert_eq!(Fx::from_ratio(7, 0, Rounding::Nearest), Err(MathError::DivideByZero));
        assert_eq!(Fx::from_ratio(-7, 2, Rounding::Nearest), Ok(fx("-3.5")));
        assert_eq!(fx("-3.5").to_int(Rounding::Nearest), -4);
        assert_eq!(fx("-3.5").to_int(Rounding::Down), -4);
        assert_eq!(fx("-3.5").to_int(Rounding::Up), -3);
        assert_eq!(fx("2.5").to_int(Rounding::Nearest), 3);
        assert_eq!(mul_q64(fx("-1.5").raw(), fx("2.5").raw()), fx("-3.75").raw());
        assert_eq!(mul_q64(fx("-1e9").raw(), fx("-3e9").raw()), fx("3e18").raw());
    }
}
