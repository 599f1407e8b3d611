//! Where a validator's observations of the market come from.
//!
//! The application asks its [`Observer`] for what this validator sees now (its own sources,
//! combined: `bastion-oracle` in production, simulated venues in tests), signs it as an
//! [`bastion_types::Observation`] and sends it to the other validators.

use bastion_exchange::{scenario::PricePath, testkit::Rng};
use bastion_types::{PriceMicros, UnderlyingId, VolQuote};

/// What a validator's sources show at one moment: an index price per underlying (only those
/// with enough fresh sources) and implied volatilities per underlying and expiry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Ascending by underlying, at most one each.
    pub prices: Vec<(UnderlyingId, PriceMicros)>,
    /// Ascending by (underlying, expiry).
    pub vols: Vec<VolQuote>,
}

/// A validator's view of the market. Must never block for long or panic: a source that
/// fails yields fewer prices (or none), never a guess.
pub trait Observer: Send {
    /// What the sources show at `now_ms` (ms since the Unix epoch, the node's clock; the
    /// simulation's clock in tests).
    fn observe(&mut self, now_ms: u64) -> Observed;
}

/// An observer whose sources are a deterministic price path ([`PricePath`]: the "true price"
/// simulated venues quote around), each reading off by a seeded noise of at most `noise_ppm`
/// (simulations and local devnets; production uses `bastion-oracle`). It can quote implied
/// volatility for given expiries (at the money 60%, skew -10%, with the same relative noise),
/// and its sources can be down (it returns nothing) during given intervals of its clock.
#[derive(Clone, Debug)]
pub struct PathObserver {
    path: PricePath,
    rng: Rng,
    noise_ppm: i64,
    expiries: Vec<(UnderlyingId, u64)>,
    down: Vec<(u64, u64)>,
}

/// At-the-money volatility a [`PathObserver`] quotes (ppm, before noise).
pub const PATH_ATM_PPM: i64 = 600_000;

/// Skew a [`PathObserver`] quotes (ppm per unit of moneyness, before noise).
pub const PATH_SKEW_PPM: i64 = -100_000;

impl PathObserver {
    /// Reads `path` with noise of at most `noise_ppm` (1_000 = 0.1%) drawn from `seed`.
    pub fn new(path: PricePath, seed: u64, noise_ppm: i64) -> Self {
        PathObserver {
            path,
            rng: Rng::new(seed),
            noise_ppm: noise_ppm.max(0),
            expiries: Vec::new(),
            down: Vec::new(),
        }
    }

    /// Also quotes volatility for these (underlying, expiry) pairs (sorted and deduplicated).
    pub fn with_vols(mut self, mut expiries: Vec<(UnderlyingId, u64)>) -> Self {
        expiries.sort_unstable();
        expiries.dedup();
        self.expiries = expiries;
        self
    }

    /// Its sources are down (it observes nothing) from `from_ms` until before `until_ms`.
    pub fn down_between(mut self, from_ms: u64, until_ms: u64) -> Self {
        self.down.push((from_ms, until_ms));
        self
    }

    fn noisy(&mut self, v: i64) -> i64 {
        let noise = self.rng.range(-self.noise_ppm, self.noise_ppm);
        let moved = i128::from(v) + i128::from(v) * i128::from(noise) / 1_000_000;
        i64::try_from(moved.max(1)).unwrap_or(i64::MAX)
    }
}

impl Observer for PathObserver {
    fn observe(&mut self, now_ms: u64) -> Observed {
        if self.down.iter().any(|(from, until)| (*from..*until).contains(&now_ms)) {
            return Observed::default();
        }
        let mut prices = Vec::new();
        for u in 0..self.path.start.len() {
            let (Ok(id), Some(p)) = (u16::try_from(u), self.path.price(u, now_ms)) else { continue };
            let p = self.noisy(p);
            prices.push((UnderlyingId(id), p));
        }
        let mut vols = Vec::new();
        for (underlying, expiry_ms) in self.expiries.clone() {
            let (atm_ppm, skew_ppm) = (self.noisy(PATH_ATM_PPM), -self.noisy(-PATH_SKEW_PPM));
            vols.push(VolQuote { underlying, expiry_ms, atm_ppm, skew_ppm });
        }
        Observed { prices, vols }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bastion_exchange::scenario::Scenario;

    #[test]
    fn path_observer_reads_the_path_within_its_noise_and_goes_quiet_when_down() {
        let path = PricePath::devnet(Scenario::Calm, 1_000, 7);
        let mut o = PathObserver::new(path.clone(), 3, 1_000)
            .with_vols(vec![(UnderlyingId(0), 9)])
            .down_between(5_000, 6_000);
        for t in (1_000..10_000).step_by(250) {
            let seen = o.observe(t);
            if (5_000..6_000).contains(&t) {
                assert_eq!(seen, Observed::default(), "down at {t}");
                continue;
            }
            assert_eq!(seen.prices.len(), path.start.len());
            for (u, p) in &seen.prices {
                let truth = path.price(usize::from(u.0), t).unwrap_or(0);
                assert!((p - truth).abs() <= truth / 1_000 + 1, "{p} vs {truth} at {t}");
            }
            assert_eq!(seen.vols.len(), 1);
            assert!((seen.vols[0].atm_ppm - PATH_ATM_PPM).abs() <= PATH_ATM_PPM / 1_000 + 1);
        }
        // Deterministic: the same seed reads the same.
        let again = |seed| PathObserver::new(path.clone(), seed, 1_000).observe(2_000);
        assert_eq!(again(3), again(3));
        assert_ne!(again(3), again(4));
    }
}
