//! Signatures already verified, so a validator verifies each client signature once.
//!
//! The ingress verify tile checks every transaction when it arrives; the same transaction is
//! checked again when a peer's proposal carries it. [`VerifiedCache`] remembers the triples the
//! ingress found valid, keyed by BLAKE3 of `public key | signature | message`, and the proposal
//! check skips those. Skipping is sound: only triples a backend verified are ever inserted, and a
//! different message, key or signature is a different key (a collision would need a BLAKE3
//! collision). Bounded: the oldest entries are forgotten first.

use crate::SigItem;
use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// The cache key of one verified triple.
pub type CacheKey = [u8; 32];

/// A bounded set of verified `(public key, signature, message)` triples. Thread-safe.
#[derive(Debug)]
pub struct VerifiedCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    set: HashSet<CacheKey>,
    order: VecDeque<CacheKey>,
    hits: u64,
    misses: u64,
}

impl VerifiedCache {
    /// A cache of at most `capacity` triples (at least 1).
    pub fn new(capacity: usize) -> VerifiedCache {
        VerifiedCache { capacity: capacity.max(1), inner: Mutex::new(Inner::default()) }
    }

    /// The key of an item.
    pub fn key(item: &SigItem<'_>) -> CacheKey {
        let mut h = blake3::Hasher::new();
        h.update(item.public_key);
        h.update(item.signature);
        h.update(item.message);
        *h.finalize().as_bytes()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Remembers triples a backend found valid (callers must insert nothing else).
    pub fn insert_verified(&self, keys: &[CacheKey]) {
        let mut g = self.lock();
        for k in keys {
            if g.set.insert(*k) {
                g.order.push_back(*k);
            }
        }
        while g.order.len() > self.capacity {
            if let Some(old) = g.order.pop_front() {
                g.set.remove(&old);
            }
        }
    }

    /// For each key, whether it was verified; counts hits and misses.
    pub fn lookup(&self, keys: &[CacheKey], out: &mut Vec<bool>) {
        out.clear();
        let mut g = self.lock();
        for k in keys {
            out.push(g.set.contains(k));
        }
        let hits = out.iter().filter(|h| **h).count() as u64;
        g.hits = g.hits.saturating_add(hits);
        g.misses = g.misses.saturating_add(keys.len() as u64 - hits);
    }

    /// Lookups that found a verified triple, and lookups that did not, since start.
    pub fn hits_misses(&self) -> (u64, u64) {
        let g = self.lock();
        (g.hits, g.misses)
    }

    /// Triples remembered.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn item<'a>(pk: &'a [u8; 32], sig: &'a [u8; 64], msg: &'a [u8]) -> SigItem<'a> {
        SigItem { public_key: pk, signature: sig, message: msg }
    }

    #[test]
    fn remembers_exact_triples_only_and_forgets_the_oldest() {
        let (pk, sig) = ([1u8; 32], [2u8; 64]);
        let c = VerifiedCache::new(2);
        let a = VerifiedCache::key(&item(&pk, &sig, b"a"));
        let b = VerifiedCache::key(&item(&pk, &sig, b"b"));
        let other_sig = VerifiedCache::key(&item(&pk, &[3u8; 64], b"a"));
        c.insert_verified(&[a]);
        let mut out = Vec::new();
        c.lookup(&[a, b, other_sig], &mut out);
        assert_eq!(out, vec![true, false, false], "another message or signature is not the same triple");
        c.insert_verified(&[b, a]);
        assert_eq!(c.len(), 2, "a repeat is not stored twice");
        let third = VerifiedCache::key(&item(&pk, &sig, b"c"));
        c.insert_verified(&[third]);
        c.lookup(&[a, b, third], &mut out);
        assert_eq!(out, vec![false, true, true], "the oldest is forgotten first");
        assert_eq!(c.hits_misses(), (3, 3));
        assert!(!c.is_empty());
    }
}
