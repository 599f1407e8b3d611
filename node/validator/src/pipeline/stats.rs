//! Per-tile counters: plain atomics, independent of any metrics library (the exporter reads
//! [`TileSnapshot`]s).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a frame or transaction was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The next ring was full (load shedding under back-pressure).
    Backpressure,
    /// Not a well-formed envelope.
    Malformed,
    /// The signature does not verify.
    BadSignature,
    /// Not verified: the verify stage ran out of its time budget.
    Shed,
    /// Nonce at or below the account's committed nonce.
    Replay,
    /// Seen already (same signature recently, or same signer and nonce in the mempool).
    Duplicate,
    /// The account exceeded its rate.
    RateLimited,
    /// The mempool has no free slot.
    MempoolFull,
    /// The body does not decode canonically.
    BadBody,
    /// Left the mempool unproposed: committed or finalized meanwhile, or out of nonce order.
    Stale,
    /// The signer has no account in the committed state (a block may not include it).
    UnknownAccount,
    /// The nonce is more than [`NONCE_AHEAD_MAX`](super::tiles::NONCE_AHEAD_MAX) above the signer's
    /// committed nonce (it could wait in the mempool for a long time).
    NonceAhead,
}

impl DropReason {
    /// How many reasons there are.
    pub const COUNT: usize = 12;

    /// Every reason, in index order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Backpressure,
        DropReason::Malformed,
        DropReason::BadSignature,
        DropReason::Shed,
        DropReason::Replay,
        DropReason::Duplicate,
        DropReason::RateLimited,
        DropReason::MempoolFull,
        DropReason::BadBody,
        DropReason::Stale,
        DropReason::UnknownAccount,
        DropReason::NonceAhead,
    ];

    /// The snake_case name (a metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Backpressure => "backpressure",
            DropReason::Malformed => "malformed",
            DropReason::BadSignature => "bad_signature",
            DropReason::Shed => "shed",
            DropReason::Replay => "replay",
            DropReason::Duplicate => "duplicate",
            DropReason::RateLimited => "rate_limited",
            DropReason::MempoolFull => "mempool_full",
            DropReason::BadBody => "bad_body",
            DropReason::Stale => "stale",
            DropReason::UnknownAccount => "unknown_account",
            DropReason::NonceAhead => "nonce_ahead",
        }
    }

    /// The position in [`DropReason::ALL`] and in the drop arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one tile, updated with relaxed atomics by the tile and read by anyone.
#[derive(Debug)]
pub struct TileStats {
    /// The tile's name (`net`, `verify`, `admission`).
    pub name: &'static str,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    dropped: [AtomicU64; DropReason::COUNT],
    overruns: AtomicU64,
    busy_ns: AtomicU64,
    loop_ns: AtomicU64,
}

impl TileStats {
    /// Zeroed counters for the tile `name`.
    pub fn new(name: &'static str) -> TileStats {
        TileStats {
            name,
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            dropped: std::array::from_fn(|_| AtomicU64::new(0)),
            overruns: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            loop_ns: AtomicU64::new(0),
        }
    }

    /// Counts `n` frames taken in.
    pub fn add_in(&self, n: u64) {
        self.frames_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` frames passed on.
    pub fn add_out(&self, n: u64) {
        self.frames_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` frames dropped for `reason`.
    pub fn add_drop(&self, reason: DropReason, n: u64) {
        self.dropped[reason.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one loop iteration (or verify call) that ran over its time budget.
    pub fn add_overrun(&self) {
        self.overruns.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds time spent working (`busy`) and in total (`total`, working and idle).
    pub fn add_time(&self, busy_ns: u64, total_ns: u64) {
        self.busy_ns.fetch_add(busy_ns, Ordering::Relaxed);
        self.loop_ns.fetch_add(total_ns, Ordering::Relaxed);
    }

    /// A plain copy of the counters now (each read separately).
    pub fn snapshot(&self) -> TileSnapshot {
        TileSnapshot {
            name: self.name,
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            dropped: std::array::from_fn(|i| self.dropped[i].load(Ordering::Relaxed)),
            overruns: self.overruns.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            loop_ns: self.loop_ns.load(Ordering::Relaxed),
        }
    }
}

/// A copy of a tile's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileSnapshot {
    /// The tile's name.
    pub name: &'static str,
    /// Frames taken in.
    pub frames_in: u64,
    /// Frames passed on (to the next ring, or into the mempool).
    pub frames_out: u64,
    /// Drops, indexed by [`DropReason::index`].
    pub dropped: [u64; DropReason::COUNT],
    /// Iterations (or verify calls) over their time budget.
    pub overruns: u64,
    /// Nanoseconds spent working.
    pub busy_ns: u64,
    /// Nanoseconds of the loop in total.
    pub loop_ns: u64,
}

impl TileSnapshot {
    /// Drops for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Drops for every reason together.
    #[cfg(test)]
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Fraction of loop time spent working since `prev` (0 when no time passed).
    pub fn busy_ratio_since(&self, prev: &TileSnapshot) -> f64 {
        let busy = self.busy_ns.saturating_sub(prev.busy_ns);
        let total = self.loop_ns.saturating_sub(prev.loop_ns);
        if total == 0 { 0.0 } else { (busy as f64 / total as f64).min(1.0) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn counts_snapshot_and_busy_ratio() {
        let s = TileStats::new("t");
        let before = s.snapshot();
        s.add_in(10);
        s.add_out(7);
        s.add_drop(DropReason::Malformed, 2);
        s.add_drop(DropReason::Stale, 1);
        s.add_overrun();
        s.add_time(250, 1000);
        let now = s.snapshot();
        assert_eq!((now.frames_in, now.frames_out, now.dropped_total(), now.overruns), (10, 7, 3, 1));
        assert_eq!(now.dropped(DropReason::Malformed), 2);
        assert_eq!(now.dropped(DropReason::Stale), 1);
        assert!((now.busy_ratio_since(&before) - 0.25).abs() < 1e-9);
        assert_eq!(now.busy_ratio_since(&now), 0.0);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(DropReason::BadSignature.as_str(), "bad_signature");
        assert_eq!(DropReason::MempoolFull.as_str(), "mempool_full");
        assert_eq!(DropReason::UnknownAccount.as_str(), "unknown_account");
        assert_eq!(DropReason::NonceAhead.as_str(), "nonce_ahead");
    }
}
