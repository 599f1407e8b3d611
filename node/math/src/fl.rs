//! A small non-negative binary floating-point value built from integers, for the option pricer's
//! scale-free intermediate products (σ²T, 1/(S σ√T), gamma...), and its reciprocal square root.
//!
//! [`Fl`] is `m * 2^e` with a 64-bit mantissa `m` that is either 0 or normalised (top bit set).
//! Every operation truncates its result to 64 significant bits, so each one has a relative
//! error below 2^-63 and none loses precision to the Q64.64 grid on small values. Only
//! integer operations are used, in a fixed number of steps (ready for the CUDA port).

/// `m * 2^e`; `m == 0` (zero) or `m >= 2^63`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fl {
    m: u64,
    e: i32,
}

/// Size of the reciprocal-square-root seed table: one entry per 1/128 of the mantissa range
/// [1, 4) (x in Q2.62 indexed by its top 9 bits, values 128..512).
const RSQRT_SEEDS: usize = 384;

/// `RSQRT_SEED[i - 128] = floor(2^32 / sqrt((i + 1/2) / 128))` for i = 128..512: 1/sqrt(x) at the
/// midpoint of each cell, to 32 bits (relative error below 2^-9 + 2^-31 over the cell). Exact
/// integer arithmetic at compile time: 2^64 / ((2i + 1) / 256) = 2^72 / (2i + 1).
const RSQRT_SEED: [u32; RSQRT_SEEDS] = {
    let mut t = [0u32; RSQRT_SEEDS];
    let mut i = 0;
    while i < RSQRT_SEEDS {
        let cell = (2 * (i + 128) + 1) as u128;
        t[i] = ((1u128 << 72) / cell).isqrt() as u32;
        i += 1;
    }
    t
};

impl Fl {
    /// A Q64.64 raw value (non-negative), truncated to 64 significant bits.
    #[inline]
    pub(crate) const fn from_raw(raw: u128) -> Fl {
        if raw == 0 {
            return Fl { m: 0, e: 0 };
        }
        let lz = raw.leading_zeros();
        // raw * 2^-64 = (raw << lz) * 2^(-lz - 64) and the top 64 bits keep 2^64 of that.
        Fl { m: ((raw << lz) >> 64) as u64, e: -(lz as i32) }
    }

    /// `self * rhs`, truncated to 64 significant bits.
    #[inline]
    pub(crate) fn mul(self, rhs: Fl) -> Fl {
        let p = self.m as u128 * rhs.m as u128;
        // For normalised factors p is in [2^126, 2^128): one of two shifts renormalises it.
        let top = (p >> 127) as u32;
        Fl { m: (p >> (63 + top)) as u64, e: self.e + rhs.e + 63 + top as i32 }
    }

    /// The nearest Q64.64 raw value (ties rounded up), or `None` if it is 2^127 or more.
    #[inline]
    pub(crate) fn to_raw(self) -> Option<i128> {
        if self.m == 0 {
            return Some(0);
        }
        let sh = self.e + 64;
        if sh >= 0 {
            // m >= 2^63, so m << sh stays below 2^127 only for sh <= 63.
            if sh > 63 { None } else { Some(((self.m as u128) << sh) as i128) }
        } else if sh < -65 {
            // m < 2^64 <= 2^(-sh - 2): below a quarter of an ulp.
            Some(0)
        } else {
            let s = (-sh) as u32;
            Some((((self.m as u128) + (1u128 << (s - 1))) >> s) as i128)
        }
    }

    /// `1 / sqrt(self)` for a non-zero value (zero gives zero), relative error below 2^-61.
    ///
    /// 1. `self = x * 2^(2k)` with x in [1, 4) held in Q2.62 (one bit may be dropped: 2^-63).
    /// 2. A seed from [`RSQRT_SEED`] (relative error below 2^-8.9), then three Newton steps
    ///    `y += y (1 - x y^2) / 2` in Q0.64. Each step squares the relative error and multiplies
    ///    it by at most 1.5: 2^-8.9 -> 2^-17.2 -> 2^-33.9 -> 2^-67.2, plus the truncations of the
    ///    three products (a few 2^-64) — under 2^-61 in all.
    /// 3. `1/sqrt(self) = y * 2^-k`.
    pub(crate) fn rsqrt(self) -> Fl {
        if self.m == 0 {
            return self;
        }
        // value = (m / 2^63) * 2^(e + 63): make the exponent even by moving one bit into x.
        let exp = self.e + 63;
        let odd = exp & 1;
        let x = self.m >> (1 - odd); // Q2.62, x in [1, 4)
        let k = (exp - odd) / 2; // exact: exp - odd is even
        // x >> 55 is in [128, 512): the top 9 bits of x in [1, 4).
        let seed = RSQRT_SEED[(x >> 55) as usize - 128];
        // y in Q0.64; 1/sqrt(x) is in (1/2, 1], and the seed is below 2^32.
        let mut y = (seed as u64) << 32;
        for _ in 0..3 {
            let y2 = ((y as u128 * y as u128) >> 64) as u64; // Q0.64, y^2 < 1
            let xy2 = (x as u128 * y2 as u128) >> 62; // Q?.64, about 2^64
            let err = (1i128 << 64) - xy2 as i128; // (1 - x y^2) in Q.64, |err| < 2^56
            let corr = (y as i128 * err) >> 65; // y (1 - x y^2) / 2
            y = (y as i128 + corr).clamp(1 << 63, u64::MAX as i128) as u64;
        }
        // y is normalised (>= 2^63): value y * 2^-64 * 2^-k.
        Fl { m: y, e: -64 - k }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn seed_table_covers_the_cells() {
        // Every seed is within 2^-8.9 of 1/sqrt over its whole cell: check the cell ends.
        for (i, &s) in RSQRT_SEED.iter().enumerate() {
            for end in [(i + 128) as f64 / 128.0, (i + 129) as f64 / 128.0] {
                let exact = 1.0 / end.sqrt();
                let rel = (s as f64 / 4294967296.0 - exact).abs() / exact;
                assert!(rel < 2f64.powf(-8.9), "cell {i}: {rel:e}");
            }
        }
    }

    #[test]
    fn rsqrt_against_exact_integer_roots() {
        // For a Q64.64 raw value r, 1/sqrt(r / 2^64) = 2^32 / sqrt(r); the reference is
        // 2^(32 + 64) / isqrt(r * 2^64) ~ computed exactly enough with 128-bit integers on
        // values that fit. f64 only measures the error of the integer result.
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0002);
        let mut worst = 0f64;
        for _ in 0..200_000 {
            let raw: u128 = rng.random::<u128>() >> rng.random_range(1..127u32);
            if raw == 0 {
                continue;
            }
            let y = Fl::from_raw(raw).rsqrt();
            // y * sqrt(x) should be 1; evaluate y^2 * x in Fl (three more truncations).
            let one = y.mul(y).mul(Fl::from_raw(raw));
            let v = one.m as f64 * 2f64.powi(one.e);
            let err = (v - 1.0).abs();
            worst = worst.max(err);
            assert!(err < 2f64.powi(-59), "raw {raw:#x}: y^2 x = {v} ({err:e})");
        }
        assert!(worst < 2f64.powi(-59), "{worst:e}");
        // A power of four: 1/sqrt(4) = 1/2 (y saturates one unit below 1, so within an ulp).
        let half = Fl::from_raw(4 << 64).rsqrt().mul(Fl::from_raw(1 << 65)).to_raw();
        assert!(half.is_some_and(|h| h.abs_diff(1 << 64) <= 1), "{half:?}");
        assert_eq!(Fl::from_raw(0).rsqrt().to_raw(), Some(0));
    }

    #[test]
    fn from_raw_mul_and_to_raw() {
        let three = Fl::from_raw(3 << 64);
        let half = Fl::from_raw(1 << 63);
        assert_eq!(three.mul(half).to_raw(), Some(3 << 63));
        assert_eq!(Fl::from_raw(1).to_raw(), Some(1));
        assert_eq!(Fl::from_raw(1).mul(half).to_raw(), Some(1)); // half an ulp rounds up
        assert_eq!(Fl::from_raw(1).mul(Fl::from_raw(1 << 62)).to_raw(), Some(0));
        assert_eq!(Fl::from_raw(i128::MAX as u128).to_raw().map(|r| r >> 64), Some(i64::MAX as i128));
        assert_eq!(Fl::from_raw(1 << 126).mul(Fl::from_raw(2 << 64)).to_raw(), None);
        assert_eq!(Fl::from_raw(0).mul(three).to_raw(), Some(0));
    }
}
