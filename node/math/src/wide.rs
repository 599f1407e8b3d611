//! 256-bit helpers built from 64-bit limbs: the full 128x128 product and the 256/128 division.
//!
//! These are written limb by limb (rather than with a big-integer crate) so that the CUDA port
//! can follow them line for line with `__umul64hi` and 64-bit adds.

use core::cmp::Ordering;

/// The full product `a * b` as `(hi, lo)`, i.e. `a * b = hi * 2^128 + lo`.
#[inline]
pub(crate) const fn mul_u128(a: u128, b: u128) -> (u128, u128) {
    let (a1, a0) = (a >> 64, a as u64 as u128);
    let (b1, b0) = (b >> 64, b as u64 as u128);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // The middle column can exceed 128 bits; its carries belong at 2^192.
    let (mid, c1) = p01.overflowing_add(p10);
    let (mid, c2) = mid.overflowing_add(p00 >> 64);
    let lo = (mid << 64) | (p00 as u64 as u128);
    let hi = p11 + (mid >> 64) + (((c1 as u128) + (c2 as u128)) << 64);
    (hi, lo)
}

/// `(hi * 2^128 + lo) / d` and the remainder, when the quotient fits in 128 bits
/// (`hi < d`); `None` otherwise or when `d == 0`.
///
/// Knuth's algorithm D with 64-bit digits and a two-digit normalised divisor: each quotient digit
/// is estimated from a 128/64 division and corrected at most twice.
pub(crate) fn div_u256_by_u128(hi: u128, lo: u128, d: u128) -> Option<(u128, u128)> {
    if d == 0 || hi >= d {
        return None;
    }
    let s = d.leading_zeros();
    let dn = d << s;
    let (nh, nl) = if s == 0 { (hi, lo) } else { ((hi << s) | (lo >> (128 - s)), lo << s) };
    let (q1, r) = div_3by2((nh >> 64) as u64, nh as u64, (nl >> 64) as u64, dn);
    let (q0, r) = div_3by2((r >> 64) as u64, r as u64, nl as u64, dn);
    Some((((q1 as u128) << 64) | q0 as u128, r >> s))
}

/// One digit of algorithm D: `(u2:u1:u0) / d` for a normalised `d` (top bit set) with
/// `(u2:u1) < d`, so that the quotient is a single 64-bit digit. Returns (digit, remainder).
#[inline]
fn div_3by2(u2: u64, u1: u64, u0: u64, d: u128) -> (u64, u128) {
    let d1 = (d >> 64) as u64;
    let top = ((u2 as u128) << 64) | u1 as u128;
    // u2 <= d1 because (u2:u1) < d; when equal the estimate saturates at 2^64 - 1.
    let mut q = if u2 >= d1 { u64::MAX } else { (top / d1 as u128) as u64 };
    let u_lo = ((u1 as u128) << 64) | u0 as u128;
    // p = q * d as a 192-bit (p_hi: 64 bits, p_lo: 128 bits) number.
    let qd0 = (q as u128) * (d as u64 as u128);
    let qd1 = (q as u128) * (d1 as u128);
    let p_lo = (qd1 << 64).wrapping_add(qd0);
    let carry = (p_lo < qd0) as u64;
    let mut p_hi = ((qd1 >> 64) as u64).wrapping_add(carry);
    let mut p_lo = p_lo;
    // With a normalised divisor the estimate exceeds the true digit by at most 2 (Knuth, TAOCP
    // 4.3.1 Theorem B), so two corrections always suffice.
    for _ in 0..2 {
        if (p_hi, p_lo).cmp(&(u2, u_lo)) != Ordering::Greater {
            break;
        }
        q -= 1;
        let (nl, borrow) = p_lo.overflowing_sub(d);
        p_lo = nl;
        p_hi = p_hi.wrapping_sub(borrow as u64);
    }
    // The remainder is below d, so the low 128 bits of the difference are all of it.
    (q, u_lo.wrapping_sub(p_lo))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Schoolbook shift-subtract division, slow but obviously right.
    fn div_slow(hi: u128, lo: u128, d: u128) -> (u128, u128) {
        let mut r: u128 = 0;
        let mut q: u128 = 0;
        for i in (0..256).rev() {
            let bit = if i >= 128 { (hi >> (i - 128)) & 1 } else { (lo >> i) & 1 };
            let top = r >> 127;
            r = (r << 1) | bit;
            q <<= 1;
            if top == 1 || r >= d {
                r = r.wrapping_sub(d);
                q |= 1;
            }
        }
        (q, r)
    }

    #[test]
    fn mul_and_div_agree_with_slow_reference() {
        let seed = 0x5eed_0001u64;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for i in 0..20_000 {
            let shift_d = rng.random_range(0..128u32);
            let d: u128 = (rng.random::<u128>() >> shift_d).max(1);
            let q: u128 = rng.random::<u128>() >> rng.random_range(0..128u32);
            let r: u128 = rng.random::<u128>() % d;
            let (ph, pl) = mul_u128(q, d);
            let (pl, c) = pl.overflowing_add(r);
            let ph = ph + c as u128;
            let got = div_u256_by_u128(ph, pl, d);
            assert_eq!(got, Some((q, r)), "seed {seed} case {i}: d={d:#x} q={q:#x} r={r:#x}");
            assert_eq!(div_slow(ph, pl, d), (q, r), "slow reference, case {i}");
        }
        assert_eq!(div_u256_by_u128(5, 0, 5), None);
        assert_eq!(div_u256_by_u128(0, 5, 0), None);
        assert_eq!(mul_u128(u128::MAX, u128::MAX), (u128::MAX - 1, 1));
    }
}
