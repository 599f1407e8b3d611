//! The [`PriceSource`] interface, and the latest-tick board that network sources' threads
//! write and the oracle reads without waiting.

use bastion_types::{Ppm, PriceMicros, UnderlyingId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use crate::stats::SourceStats;

/// One price quote of one venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The underlying.
    pub underlying: UnderlyingId,
    /// The price, micro-units of quote per whole base unit (positive).
    pub price: PriceMicros,
    /// When the venue quoted it, ms since the Unix epoch.
    pub ts_ms: u64,
}

/// One implied-volatility quote of one venue for one expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolTick {
    /// The underlying.
    pub underlying: UnderlyingId,
    /// The options' expiry, ms since the Unix epoch.
    pub expiry_ms: u64,
    /// At-the-money volatility, annualised, ppm (positive).
    pub atm_ppm: Ppm,
    /// Skew slope, ppm per unit of moneyness.
    pub skew_ppm: Ppm,
    /// When the venue quoted it.
    pub ts_ms: u64,
}

/// A venue's latest quotes at one moment: at most one [`Tick`] per underlying and one
/// [`VolTick`] per (underlying, expiry).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quotes {
    /// Latest price per underlying.
    pub prices: Vec<Tick>,
    /// Latest volatility per (underlying, expiry).
    pub vols: Vec<VolTick>,
}

/// A venue: something that knows the latest quotes of some underlyings.
///
/// Implementations must never block the caller for more than a lock held for a copy, and
/// never panic: a network source does its I/O on its own thread and publishes ticks that
/// [`PriceSource::quotes`] only copies.
pub trait PriceSource: Send + std::fmt::Debug {
    /// The venue's name (unique among this validator's venues).
    fn name(&self) -> &str;

    /// The venue's error counters (shared with its thread, if it has one).
    fn stats(&self) -> &Arc<SourceStats>;

    /// Writes into `out` (cleared first) the venue's latest quotes as of `now_ms` (ms since the
    /// Unix epoch). `expiries` lists the option expiries `(underlying, expiry_ms)` the chain
    /// trades, for venues that quote volatility. Stale quotes are returned with their old
    /// timestamps; the oracle decides what is stale.
    fn quotes(&mut self, now_ms: u64, expiries: &[(UnderlyingId, u64)], out: &mut Quotes);
}

/// The latest tick per underlying of a threaded source: written by its thread, read by
/// [`PriceSource::quotes`] with `try_lock` (falling back to the previous copy when the thread
/// holds the lock at that instant), so the reader never waits.
#[derive(Debug)]
pub(crate) struct Board {
    latest: Arc<Mutex<BTreeMap<UnderlyingId, Tick>>>,
    cache: BTreeMap<UnderlyingId, Tick>,
    stop: Arc<AtomicBool>,
}

/// The writer's side of a [`Board`], held by the source's thread.
#[derive(Clone, Debug)]
pub(crate) struct BoardWriter {
    latest: Arc<Mutex<BTreeMap<UnderlyingId, Tick>>>,
    stop: Arc<AtomicBool>,
}

impl Board {
    /// An empty board and its writer.
    pub fn new() -> (Board, BoardWriter) {
        let latest = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = BoardWriter { latest: latest.clone(), stop: stop.clone() };
        (Board { latest, cache: BTreeMap::new(), stop }, writer)
    }

    /// Copies the latest ticks into `out.prices`, ascending by underlying.
    pub fn read(&mut self, out: &mut Quotes) {
        match self.latest.try_lock() {
            Ok(m) => self.cache.clone_from(&m),
            Err(TryLockError::Poisoned(p)) => self.cache.clone_from(&p.into_inner()),
            Err(TryLockError::WouldBlock) => {}
        }
        out.prices.clear();
        out.vols.clear();
        out.prices.extend(self.cache.values().copied());
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // The thread sees this within one read timeout or poll step and exits.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl BoardWriter {
    /// Publishes ticks: each replaces the underlying's tick unless that one is newer.
    pub fn publish(&self, ticks: &[Tick]) {
        if ticks.is_empty() {
            return;
        }
        let mut m = match self.latest.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        for t in ticks {
            match m.get(&t.underlying) {
                Some(old) if old.ts_ms > t.ts_ms => {}
                _ => {
                    m.insert(t.underlying, *t);
                }
            }
        }
    }

    /// Whether the source was dropped and the thread should exit.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `d`, in steps, returning early (`false`) when the source is dropped.
    pub fn sleep(&self, d: Duration) -> bool {
        let step = Duration::from_millis(50);
        let mut left = d;
        while !left.is_zero() {
            if self.stopped() {
                return false;
            }
            let s = left.min(step);
            std::thread::sleep(s);
            left = left.saturating_sub(s);
        }
        !self.stopped()
    }
}

/// The Unix time in ms (0 if the clock is before 1970).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_board_keeps_the_newest_tick_and_stops_on_drop() {
        let (mut board, writer) = Board::new();
        let t = |u: u16, price: i64, ts_ms: u64| Tick { underlying: UnderlyingId(u), price, ts_ms };
        writer.publish(&[t(1, 10, 5), t(0, 20, 5)]);
        writer.publish(&[t(1, 11, 4), t(0, 21, 6)]);
        let mut q = Quotes::default();
        board.read(&mut q);
        assert_eq!(q.prices, vec![t(0, 21, 6), t(1, 10, 5)]);
        // While the writer holds the lock, the reader gets its previous copy at once.
        let guard = writer.latest.lock().unwrap();
        board.read(&mut q);
        assert_eq!(q.prices.len(), 2);
        drop(guard);
        assert!(!writer.stopped());
        drop(board);
        assert!(writer.stopped());
        assert!(!writer.sleep(Duration::from_secs(60)), "returns at once once stopped");
    }
}
