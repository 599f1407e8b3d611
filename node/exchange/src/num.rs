//! Checked integer arithmetic with an explicit rounding direction. Every operation that can
//! overflow returns [`Reject::Overflow`]; nothing here panics.

use bastion_types::Reject;

pub(crate) type R<T> = Result<T, Reject>;

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
    }
}
