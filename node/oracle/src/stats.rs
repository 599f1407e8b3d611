//! Counters of the oracle: every source error by source and kind, observations made and
//! underlyings missing. Atomics only, so network threads and the observer share them without
//! locks; the node exports a [`OracleStats::snapshot`] to Prometheus.
//!
//! Each error is also logged, but once per episode: a `warn` on the first error of a kind after
//! the source last worked, an `info` when it works again, never one line per message. An
//! episode ends at the first success at least `quiet_ms` (default [`EPISODE_QUIET_MS`]) after
//! the last error of its kind, so a source that fails every other message logs two lines per
//! `quiet_ms` at most, not two per message.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Default least time without an error of a kind before a success ends its episode, ms.
pub const EPISODE_QUIET_MS: u64 = 5_000;

/// Milliseconds on a process-wide monotonic clock.
fn mono_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    u64::try_from(BASE.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What went wrong with a source. The label is the metric's `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// A connection could not be opened (refused, DNS, handshake).
    Connect,
    /// An open connection closed or failed.
    Disconnect,
    /// No answer (or no message) within the configured time.
    Timeout,
    /// A message or tick that could not be read: bad JSON, a missing field, a non-numeric or
    /// non-positive price, a bad line in a tick file.
    Malformed,
    /// An HTTP answer with a status other than 2xx.
    HttpStatus,
    /// A venue's latest quote was older than `source_staleness_ms` when the oracle combined
    /// (counted once per underlying or volatility series per observation).
    Stale,
    /// A venue's quote was more than `outlier_ppm` from the other venues' median and dropped
    /// (counted once per underlying or volatility series per observation).
    Outlier,
}

impl ErrorKind {
    /// Every kind, in label order of the snapshot.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Disconnect,
        ErrorKind::Timeout,
        ErrorKind::Malformed,
        ErrorKind::HttpStatus,
        ErrorKind::Stale,
        ErrorKind::Outlier,
    ];

    /// The snake_case metric label.
    pub const fn label(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Disconnect => "disconnect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Malformed => "malformed",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::Stale => "stale",
            ErrorKind::Outlier => "outlier",
        }
    }

    /// Position in [`ErrorKind::ALL`].
    const fn slot(self) -> usize {
        match self {
            ErrorKind::Connect => 0,
            ErrorKind::Disconnect => 1,
            ErrorKind::Timeout => 2,
            ErrorKind::Malformed => 3,
            ErrorKind::HttpStatus => 4,
            ErrorKind::Stale => 5,
            ErrorKind::Outlier => 6,
        }
    }
}

/// Number of [`ErrorKind`]s.
const KINDS: usize = ErrorKind::ALL.len();

/// The counters of one source (one venue), shared with its thread.
#[derive(Debug)]
pub struct SourceStats {
    name: String,
    counts: [AtomicU64; KINDS],
    /// Per kind: an episode of this error is in progress (its first error was logged).
    failing: [AtomicBool; KINDS],
    /// Per kind: when the last error happened ([`mono_ms`]).
    last_error_ms: [AtomicU64; KINDS],
    /// See [`SourceStats::set_quiet_ms`].
    quiet_ms: AtomicU64,
}

impl SourceStats {
    /// Counters for the source called `name`, all zero.
    pub fn new(name: &str) -> SourceStats {
        SourceStats {
            name: name.to_string(),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            failing: std::array::from_fn(|_| AtomicBool::new(false)),
            last_error_ms: std::array::from_fn(|_| AtomicU64::new(0)),
            quiet_ms: AtomicU64::new(EPISODE_QUIET_MS),
        }
    }

    /// Sets how long after the last error of a kind a success ends its episode (0: the first
    /// success does).
    pub fn set_quiet_ms(&self, ms: u64) {
        self.quiet_ms.store(ms, Ordering::Relaxed);
    }

    /// The source's name (the metric's `source` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts one error of `kind`; logs `detail` if it starts an episode of that kind.
    pub fn error(&self, kind: ErrorKind, detail: &dyn std::fmt::Display) {
        self.errors(kind, 1, detail);
    }

    /// Counts `n` errors of `kind`; logs `detail` if they start an episode of that kind.
    pub fn errors(&self, kind: ErrorKind, n: u64, detail: &dyn std::fmt::Display) {
        if n == 0 {
            return;
        }
        let slot = kind.slot();
        self.counts[slot].fetch_add(n, Ordering::Relaxed);
        self.last_error_ms[slot].store(mono_ms(), Ordering::Relaxed);
        if !self.failing[slot].swap(true, Ordering::Relaxed) {
            tracing::warn!(source = %self.name, kind = kind.label(), "oracle source error: {detail}");
        }
    }

    /// Records that the source worked for `kinds` (a connection opened, a message read, a
    /// fresh quote used): ends the episode of each of them that has had no error for
    /// `quiet_ms`, logging the recovery once.
    pub fn ok(&self, kinds: &[ErrorKind]) {
        let quiet = self.quiet_ms.load(Ordering::Relaxed);
        for kind in kinds {
            let slot = kind.slot();
            if !self.failing[slot].load(Ordering::Relaxed) {
                continue;
            }
            let since = mono_ms().saturating_sub(self.last_error_ms[slot].load(Ordering::Relaxed));
            if since >= quiet && self.failing[slot].swap(false, Ordering::Relaxed) {
                tracing::info!(source = %self.name, kind = kind.label(), "oracle source recovered");
            }
        }
    }

    /// The count of errors of `kind` so far.
    pub fn count(&self, kind: ErrorKind) -> u64 {
        self.counts[kind.slot()].load(Ordering::Relaxed)
    }

    /// Whether an episode of `kind` is in progress (its error was logged, no recovery yet).
    pub fn failing(&self, kind: ErrorKind) -> bool {
        self.failing[kind.slot()].load(Ordering::Relaxed)
    }
}

/// The transport kinds: what a working connection or a good answer ends.
pub(crate) const TRANSPORT: [ErrorKind; 4] =
    [ErrorKind::Connect, ErrorKind::Disconnect, ErrorKind::Timeout, ErrorKind::HttpStatus];

/// All the oracle's counters. Cheap to share (`Arc`) and to read at any time.
#[derive(Debug, Default)]
pub struct OracleStats {
    sources: Vec<Arc<SourceStats>>,
    observations: AtomicU64,
    prices_missing: AtomicU64,
    vols_missing: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// `(source, kind, count)` for every source and every kind (zeros included, so a metric
    /// exists from the start), in source order then [`ErrorKind::ALL`] order.
    pub errors: Vec<(String, &'static str, u64)>,
    /// Observations made (calls of [`crate::Oracle::observe`]).
    pub observations: u64,
    /// Underlyings left out of an observation for lack of fresh, agreeing sources, summed over
    /// observations.
    pub prices_missing: u64,
    /// (underlying, expiry) pairs left out of an observation's volatilities, summed.
    pub vols_missing: u64,
}

impl StatsSnapshot {
    /// The count for `(source, kind)`, 0 if there is no such source.
    pub fn get(&self, source: &str, kind: ErrorKind) -> u64 {
        self.errors.iter().find(|(s, k, _)| s == source && *k == kind.label()).map_or(0, |e| e.2)
    }

    /// The count of `kind` summed over all sources.
    pub fn total(&self, kind: ErrorKind) -> u64 {
        self.errors.iter().filter(|e| e.1 == kind.label()).map(|e| e.2).sum()
    }
}

impl OracleStats {
    /// Counters for these sources.
    pub(crate) fn new(sources: Vec<Arc<SourceStats>>) -> OracleStats {
        OracleStats { sources, ..OracleStats::default() }
    }

    /// The counters of each source, in configuration order.
    pub fn sources(&self) -> &[Arc<SourceStats>] {
        &self.sources
    }

    pub(crate) fn observed(&self, prices_missing: u64, vols_missing: u64) {
        self.observations.fetch_add(1, Ordering::Relaxed);
        self.prices_missing.fetch_add(prices_missing, Ordering::Relaxed);
        self.vols_missing.fetch_add(vols_missing, Ordering::Relaxed);
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut errors = Vec::with_capacity(self.sources.len().saturating_mul(KINDS));
        for s in &self.sources {
            for kind in ErrorKind::ALL {
                errors.push((s.name.clone(), kind.label(), s.count(kind)));
            }
        }
        StatsSnapshot {
            errors,
            observations: self.observations.load(Ordering::Relaxed),
            prices_missing: self.prices_missing.load(Ordering::Relaxed),
            vols_missing: self.vols_missing.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn errors_count_every_time_and_episodes_open_and_close() {
        let s = Arc::new(SourceStats::new("ws-a"));
        s.set_quiet_ms(0);
        let stats = OracleStats::new(vec![s.clone()]);
        for _ in 0..3 {
            s.error(ErrorKind::Malformed, &"bad json");
        }
        assert!(s.failing(ErrorKind::Malformed));
        assert!(!s.failing(ErrorKind::Timeout));
        s.ok(&[ErrorKind::Malformed]);
        assert!(!s.failing(ErrorKind::Malformed));
        s.error(ErrorKind::Timeout, &"slow");
        stats.observed(2, 1);
        let snap = stats.snapshot();
        assert_eq!(snap.get("ws-a", ErrorKind::Malformed), 3);
        assert_eq!(snap.get("ws-a", ErrorKind::Timeout), 1);
        assert_eq!(snap.get("ws-a", ErrorKind::Outlier), 0);
        assert_eq!(snap.get("nope", ErrorKind::Timeout), 0);
        assert_eq!(snap.errors.len(), ErrorKind::ALL.len());
        assert_eq!((snap.observations, snap.prices_missing, snap.vols_missing), (1, 2, 1));
        let labels: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(
            labels,
            ["connect", "disconnect", "timeout", "malformed", "http_status", "stale", "outlier"]
        );
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.slot(), i);
        }
    }

    #[test]
    fn an_episode_ends_only_after_a_quiet_period() {
        let s = SourceStats::new("flappy");
        s.set_quiet_ms(150);
        s.error(ErrorKind::Malformed, &"bad");
        s.ok(&[ErrorKind::Malformed]);
        assert!(s.failing(ErrorKind::Malformed), "a success right after an error does not end it");
        std::thread::sleep(std::time::Duration::from_millis(200));
        s.ok(&[ErrorKind::Malformed]);
        assert!(!s.failing(ErrorKind::Malformed));
        assert_eq!(s.count(ErrorKind::Malformed), 1);
    }
}
