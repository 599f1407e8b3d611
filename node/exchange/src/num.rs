//! Checked integer arithmetic with an explicit rounding direction. Every operation that can
//! overflow returns [`Reject::Overflow`]; nothing here panics.

use bastion_types::Reject;

pub(crate) type R<T> = Result<T, Reject>;

/// `PPM²`, for formulas with two ppm factors (evaluated at compile time).
pub(crate) const PPM_SQUARED: i128 = (bastion_types::PPM as i128) * (bastion_types::PPM as i128);

#[inline]
pub(crate) fn add(a: i128, b: i128) -> R<i128> {
    a.checked_add(b).ok_or(Reject::Overflow)
}

#[inline]
pub(crate) fn sub(a: i128, b: i128) -> R<i128> {
    a.checked_sub(b).ok_or(Reject::Overflow)
}

#[inline]
pub(crate) fn mul(a: i128, b: i128) -> R<i128> {
    a.checked_mul(b).ok_or(Reject::Overflow)
}

#[inline]
pub(crate) fn neg(a: i128) -> R<i128> {
    a.checked_neg().ok_or(Reject::Overflow)
}

/// `a / b` rounded towards negative infinity.
#[inline]
pub(crate) fn div_floor(a: i128, b: i128) -> R<i128> {
    let q = a.checked_div(b).ok_or(Reject::Overflow)?;
    let r = a.checked_rem(b).ok_or(Reject::Overflow)?;
    if r != 0 && ((r < 0) != (b < 0)) { sub(q, 1) } else { Ok(q) }
}

/// `a / b` rounded towards positive infinity.
#[inline]
pub(crate) fn div_ceil(a: i128, b: i128) -> R<i128> {
    let q = a.checked_div(b).ok_or(Reject::Overflow)?;
    let r = a.checked_rem(b).ok_or(Reject::Overflow)?;
    if r != 0 && ((r < 0) == (b < 0)) { add(q, 1) } else { Ok(q) }
}

/// `a * b / d` rounded down.
#[inline]
pub(crate) fn mul_div_floor(a: i128, b: i128, d: i128) -> R<i128> {
    div_floor(mul(a, b)?, d)
}

/// `a * b / d` rounded up.
#[inline]
pub(crate) fn mul_div_ceil(a: i128, b: i128, d: i128) -> R<i128> {
    div_ceil(mul(a, b)?, d)
}

#[inline]
pub(crate) fn to_i64(a: i128) -> R<i64> {
    i64::try_from(a).map_err(|_| Reject::Overflow)
}

/// `|a|`, which overflows only for `i128::MIN`.
#[inline]
pub(crate) fn abs(a: i128) -> R<i128> {
    a.checked_abs().ok_or(Reject::Overflow)
}

/// `a / b` truncated towards zero (Rust's `/`), checked for a zero divisor and `MIN / -1`.
#[inline]
pub(crate) fn div_trunc(a: i128, b: i128) -> R<i128> {
    a.checked_div(b).ok_or(Reject::Overflow)
}

/// The exact product of two 64-bit integers as an `i128`; infallible.
#[inline]
// Cannot overflow: |a * b| <= 2^63 * 2^63 = 2^126 < i128::MAX. A checked or saturating form
// would only add a dead overflow test to the margin sweep's inner loop.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn wide_mul(a: i64, b: i64) -> i128 {
    i128::from(a) * i128::from(b)
}

/// `lots * value` (a lot count times a per-lot amount), checked. Takes the single-multiply
/// path of [`wide_mul`] when `value` fits in 64 bits, which it does for any realistic price.
#[inline]
pub(crate) fn mul_lots(lots: i64, value: i128) -> R<i128> {
    match i64::try_from(value) {
        Ok(v) => Ok(wide_mul(lots, v)),
        Err(_) => mul(i128::from(lots), value),
    }
}

/// `|lots| * value`, checked, with the same fast path as [`mul_lots`].
#[inline]
pub(crate) fn mul_abs_lots(lots: i64, value: i128) -> R<i128> {
    match (lots.checked_abs(), i64::try_from(value)) {
        (Some(l), Ok(v)) => Ok(wide_mul(l, v)),
        _ => mul(i128::from(lots).abs(), value),
    }
}

/// `a + b` for 64-bit quantities (lots, ppm), checked.
#[inline]
pub(crate) fn add64(a: i64, b: i64) -> R<i64> {
    a.checked_add(b).ok_or(Reject::Overflow)
}

/// `a - b` for 64-bit quantities (lots, ppm), checked.
#[inline]
pub(crate) fn sub64(a: i64, b: i64) -> R<i64> {
    a.checked_sub(b).ok_or(Reject::Overflow)
}

/// `-a` for 64-bit quantities, checked.
#[inline]
pub(crate) fn neg64(a: i64) -> R<i64> {
    a.checked_neg().ok_or(Reject::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_directions() {
        assert_eq!(div_floor(7, 2), Ok(3));
        assert_eq!(div_floor(-7, 2), Ok(-4));
        assert_eq!(div_ceil(7, 2), Ok(4));
        assert_eq!(div_ceil(-7, 2), Ok(-3));
        assert_eq!(div_floor(-6, 2), Ok(-3));
        assert_eq!(div_ceil(6, -4), Ok(-1));
        assert_eq!(div_floor(1, 0), Err(Reject::Overflow));
        assert_eq!(mul(i128::MAX, 2), Err(Reject::Overflow));
        assert_eq!(div_floor(i128::MIN, -1), Err(Reject::Overflow));
        assert_eq!(div_trunc(-7, 2), Ok(-3));
        assert_eq!(div_trunc(i128::MIN, -1), Err(Reject::Overflow));
        assert_eq!(abs(i128::MIN), Err(Reject::Overflow));
        assert_eq!(wide_mul(i64::MIN, i64::MIN), 1i128 << 126);
        assert_eq!(wide_mul(i64::MIN, i64::MAX), -((1i128 << 126) - (1i128 << 63)));
        assert_eq!(mul_lots(-3, 7), Ok(-21));
        assert_eq!(mul_lots(-3, i128::from(i64::MAX) + 1), Ok(-3 * (i128::from(i64::MAX) + 1)));
        assert_eq!(mul_lots(i64::MIN, i128::MIN), Err(Reject::Overflow));
        assert_eq!(mul_abs_lots(-3, 7), Ok(21));
        assert_eq!(mul_abs_lots(i64::MIN, 2), Ok(1i128 << 64));
    }
}
