//! The state commitment: a lattice hash (LtHash, as in Solana's SIMD-0215 accounts hash) over
//! every state record.
//!
//! Each record `(key, value)` is hashed with BLAKE3 and the digest expanded by BLAKE3's XOF to
//! 1024 16-bit lanes; the commitment is the lane-wise sum (mod 2^16) of all records' expansions.
//! Addition is commutative, so a block updates the commitment in time proportional to the
//! records it changed (subtract the old expansion, add the new), never to the state's size, and
//! the result does not depend on the order in which records changed. The state root is the
//! BLAKE3 hash of the lanes.

use std::collections::HashMap;

/// Number of 16-bit lanes in the lattice hash (2 KiB), as in SIMD-0215.
pub const LANES: usize = 1024;

/// A 32-byte state root.
pub type StateRoot = [u8; 32];

/// Identifies a record of the state. Its encoding is part of the commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    /// Height, time, insurance fund, fees, parameters.
    Global,
    /// A collateral asset's totals and haircut.
    Asset(u16),
    /// An underlying's index.
    Underlying(u16),
    /// A market's state (not its orders).
    Market(u32),
    /// An account: balances, positions, nonce, margin mode.
    Account(u64),
    /// A resting order.
    Order(u32, u64),
    /// A validator's latest included oracle observation.
    Observation(u16),
    /// A credited bridge deposit, by source id.
    Credited([u8; 32]),
    /// A withdrawal voucher and its signatures.
    Voucher(u64),
}

impl RecordKey {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            RecordKey::Global => out.push(0),
            RecordKey::Asset(a) => {
                out.push(1);
                out.extend_from_slice(&a.to_le_bytes());
            }
            RecordKey::Underlying(u) => {
                out.push(2);
                out.extend_from_slice(&u.to_le_bytes());
            }
            RecordKey::Market(m) => {
                out.push(3);
                out.extend_from_slice(&m.to_le_bytes());
            }
            RecordKey::Account(a) => {
                out.push(4);
                out.extend_from_slice(&a.to_le_bytes());
            }
            RecordKey::Order(m, o) => {
                out.push(5);
                out.extend_from_slice(&m.to_le_bytes());
                out.extend_from_slice(&o.to_le_bytes());
            }
            RecordKey::Observation(v) => {
                out.push(6);
                out.extend_from_slice(&v.to_le_bytes());
            }
            RecordKey::Credited(id) => {
                out.push(7);
                out.extend_from_slice(&id);
            }
            RecordKey::Voucher(id) => {
                out.push(8);
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
    }
}

/// The lattice hash accumulator and the digest of each record currently committed.
#[derive(Clone, Debug)]
pub struct Commitment {
    lanes: Box<[u16; LANES]>,
    /// Digest of each committed record (but the accounts given by slot, below), to subtract it
    /// when the record changes. Looked up by key only, never iterated, so its order cannot
    /// leak into consensus.
    digests: HashMap<RecordKey, [u8; 32]>,
    /// Digest of each account's record by the account's arena slot ([`Self::update_account`];
    /// the arena never removes an account, so a slot names one account for ever). A flat
    /// array rather than 1M entries of `digests`: a loaded image fills it on every core in
    /// slot order, where a hash map is filled one random insert at a time on one (most of a
    /// 1M-account image's load time), and it is a third of the map's size.
    accounts: Vec<Option<[u8; 32]>>,
}

impl Default for Commitment {
    fn default() -> Self {
        Commitment { lanes: Box::new([0; LANES]), digests: HashMap::new(), accounts: Vec::new() }
    }
}

fn subtract(lanes: &mut [u16; LANES], digest: &[u8; 32]) {
    for (l, e) in lanes.iter_mut().zip(expand(digest).iter()) {
        *l = l.wrapping_sub(*e);
    }
}

fn add(lanes: &mut [u16; LANES], digest: &[u8; 32]) {
    for (l, e) in lanes.iter_mut().zip(expand(digest).iter()) {
        *l = l.wrapping_add(*e);
    }
}

fn expand(digest: &[u8; 32]) -> [u16; LANES] {
    let mut bytes = [0u8; LANES * 2];
    blake3::Hasher::new().update(digest).finalize_xof().fill(&mut bytes);
    let mut lanes = [0u16; LANES];
    for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        *lane = u16::from_le_bytes([pair[0], pair[1]]);
    }
    lanes
}

impl Commitment {
    /// A commitment from its lanes and the digest of every record they sum: the accounts' by
    /// arena slot, the others' by key (a loaded image: the caller vouches that the lanes are
    /// the sum of the digests' expansions).
    pub(crate) fn from_parts(
        lanes: Box<[u16; LANES]>,
        digests: HashMap<RecordKey, [u8; 32]>,
        accounts: Vec<Option<[u8; 32]>>,
    ) -> Commitment {
        Commitment { lanes, digests, accounts }
    }

    /// The lanes (what an image stores; the digests are recomputed from the records).
    pub(crate) fn lanes(&self) -> &[u16; LANES] {
        &self.lanes
    }

    /// The digest a record contributes: BLAKE3 of the key's length, the key and the value.
    pub(crate) fn digest(key: RecordKey, value: &[u8]) -> [u8; 32] {
        let mut k = Vec::with_capacity(16);
        key.encode(&mut k);
        let mut h = blake3::Hasher::new();
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(&k);
        h.update(value);
        *h.finalize().as_bytes()
    }

    /// Keys whose committed digest differs from `current` (diagnostics for a root mismatch;
    /// sorted, so the report is deterministic). `slot_of` gives an account's arena slot.
    pub(crate) fn mismatches(
        &self,
        current: &[(RecordKey, Vec<u8>)],
        slot_of: impl Fn(u64) -> Option<usize>,
    ) -> Vec<RecordKey> {
        let committed = |k: &RecordKey| match *k {
            RecordKey::Account(id) => match slot_of(id) {
                Some(slot) => self.accounts.get(slot).copied().flatten(),
                None => self.digests.get(k).copied(),
            },
            _ => self.digests.get(k).copied(),
        };
        let mut out: Vec<RecordKey> = current
            .iter()
            .filter(|(k, v)| committed(k) != Some(Self::digest(*k, v)))
            .map(|(k, _)| *k)
            .collect();
        let present: std::collections::BTreeSet<RecordKey> = current.iter().map(|(k, _)| *k).collect();
        let mut stale: Vec<RecordKey> =
            self.digests.keys().filter(|k| !present.contains(k)).copied().collect();
        out.append(&mut stale);
        out.sort();
        out
    }

    /// Sets the record `key` to `value` (`None` removes it).
    pub fn update(&mut self, key: RecordKey, value: Option<&[u8]>) {
        if let Some(old) = self.digests.remove(&key) {
            subtract(&mut self.lanes, &old);
        }
        if let Some(value) = value {
            let digest = Self::digest(key, value);
            add(&mut self.lanes, &digest);
            self.digests.insert(key, digest);
        }
    }

    /// Sets the record `key` of the account in arena slot `slot` to `value` (`None` removes
    /// it). An account's record is always updated through its slot, never through
    /// [`Self::update`].
    pub(crate) fn update_account(&mut self, slot: usize, key: RecordKey, value: Option<&[u8]>) {
        if let Some(old) = self.accounts.get_mut(slot).and_then(Option::take) {
            subtract(&mut self.lanes, &old);
        }
        if let Some(value) = value {
            let digest = Self::digest(key, value);
            add(&mut self.lanes, &digest);
            if self.accounts.len() <= slot {
                self.accounts.resize(slot.saturating_add(1), None);
            }
            if let Some(d) = self.accounts.get_mut(slot) {
                *d = Some(digest);
            }
        }
    }

    /// The state root: BLAKE3 of the lanes.
    pub fn root(&self) -> StateRoot {
        root_of(&self.lanes)
    }
}

/// The lanes of a set of records, from nothing: the sum of each record's expansion. Lanes add
/// up (see [`add_lanes`]), so parts of a record set summed apart give the same total.
pub(crate) fn lanes_of(records: impl Iterator<Item = (RecordKey, Vec<u8>)>) -> Box<[u16; LANES]> {
    let mut lanes = Box::new([0u16; LANES]);
    for (key, value) in records {
        for (l, e) in lanes.iter_mut().zip(expand(&Commitment::digest(key, &value)).iter()) {
            *l = l.wrapping_add(*e);
        }
    }
    lanes
}

/// Adds `other` into `lanes` (mod 2^16, lane by lane).
pub(crate) fn add_lanes(lanes: &mut [u16; LANES], other: &[u16; LANES]) {
    for (l, o) in lanes.iter_mut().zip(other.iter()) {
        *l = l.wrapping_add(*o);
    }
}

/// The state root of a set of lanes: BLAKE3 of their little-endian bytes.
pub(crate) fn root_of(lanes: &[u16; LANES]) -> StateRoot {
    let mut bytes = [0u8; LANES * 2];
    for (pair, lane) in bytes.chunks_exact_mut(2).zip(lanes.iter()) {
        pair.copy_from_slice(&lane.to_le_bytes());
    }
    *blake3::hash(&bytes).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_removal_restores() {
        let mut a = Commitment::default();
        let mut b = Commitment::default();
        let empty = a.root();
        a.update(RecordKey::Account(1), Some(b"x"));
        a.update(RecordKey::Account(2), Some(b"y"));
        b.update(RecordKey::Account(2), Some(b"y"));
        b.update(RecordKey::Account(1), Some(b"x"));
        assert_eq!(a.root(), b.root());
        a.update(RecordKey::Account(1), Some(b"z"));
        assert_ne!(a.root(), b.root());
        a.update(RecordKey::Account(1), Some(b"x"));
        assert_eq!(a.root(), b.root());
        a.update(RecordKey::Account(1), None);
        a.update(RecordKey::Account(2), None);
        assert_eq!(a.root(), empty);
        // By slot, the same sums.
        let mut e = Commitment::default();
        e.update_account(1, RecordKey::Account(2), Some(b"y"));
        e.update_account(0, RecordKey::Account(1), Some(b"x"));
        assert_eq!(e.root(), b.root());
        e.update_account(0, RecordKey::Account(1), Some(b"z"));
        e.update_account(0, RecordKey::Account(1), Some(b"x"));
        assert_eq!(e.root(), b.root());
        e.update_account(0, RecordKey::Account(1), None);
        e.update_account(1, RecordKey::Account(2), None);
        assert_eq!(e.root(), empty);
        // The key is part of the hash: the same value under another key differs.
        let mut c = Commitment::default();
        c.update(RecordKey::Account(3), Some(b"x"));
        let mut d = Commitment::default();
        d.update(RecordKey::Market(3), Some(b"x"));
        assert_ne!(c.root(), d.root());
    }
}
