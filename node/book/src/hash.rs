//! A fixed-seed hasher for maps keyed by exchange-assigned ids.
//!
//! `std`'s default `RandomState` is seeded per process, which is harmless for lookups but makes
//! any accidental iteration non-deterministic and costs a SipHash per lookup. This is the
//! multiply-rotate hash of `rustc-hash` 2: one multiply per `u64`, then a rotation so that the
//! well-mixed high bits land in the low bits that pick the bucket.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Odd constant from `rustc-hash` 2 (a multiplier with good bit dispersion).
const K: u64 = 0xf135_7aea_2e62_a9c5;

/// Multiply-rotate hasher; deterministic across processes and machines.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = self.0.wrapping_add(x).wrapping_mul(K);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

/// A `HashMap` with [`IdHasher`]. Never iterate one in consensus code.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
