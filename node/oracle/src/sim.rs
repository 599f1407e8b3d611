//! Simulated venues: each quotes the shared true [`PricePath`] as it was `latency` ms ago,
//! off by its own seeded noise, and sometimes not at all (outages); scripts pump or freeze it.
//! Deterministic: a venue's quotes are a function of (config, venue, time).

use bastion_exchange::scenario::{PricePath, Scenario};
use bastion_types::{PPM, UnderlyingId};
use std::sync::Arc;

use crate::config::{SimConfig, Window};
use crate::source::{PriceSource, Quotes, Tick, VolTick};
use crate::stats::SourceStats;

/// Salts separating the seeded draws.
const SALT_NOISE: u64 = 0x006e_6f69_7365;
const SALT_VOL: u64 = 0x0076_6f6c;
const SALT_SKEW: u64 = 0x736b_6577;
const SALT_OUTAGE: u64 = 0x6f75_7461_6765;
const SALT_LATENCY: u64 = 0x006c_6174_656e_6379;

/// SplitMix64's step.
fn splitmix64(x: u64) -> u64 {
    let z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of several words.
fn hash(words: &[u64]) -> u64 {
    words.iter().fold(0x5bd1_e995, |h, w| splitmix64(h ^ *w))
}

/// A seeded draw in `-bound..=bound` (0 when `bound <= 0`).
fn symmetric(h: u64, bound: i64) -> i64 {
    if bound <= 0 {
        return 0;
    }
    let span = bound.unsigned_abs().saturating_mul(2).saturating_add(1);
    i64::try_from(h % span).unwrap_or(0).saturating_sub(bound)
}

/// `x * (PPM + ppm) / PPM` in i128, floored at 1 for positive `x`; `None` if it does not fit.
fn scale_ppm(x: i64, ppm: i64) -> Option<i64> {
    let v = i128::from(x).checked_mul(i128::from(PPM).checked_add(i128::from(ppm))?)? / i128::from(PPM);
    let v = i64::try_from(v).ok()?;
    Some(if x > 0 { v.max(1) } else { v })
}

/// One simulated venue.
#[derive(Debug)]
pub struct SimVenue {
    name: String,
    venue: usize,
    config: Arc<SimConfig>,
    path: PricePath,
    /// The same path without the crash: the volatility rises with the drawdown from it.
    calm: PricePath,
    latency_ms: u64,
    stats: Arc<SourceStats>,
    /// The quotes of the last moment the venue was up: what it shows (growing stale) while
    /// it is down.
    last: Quotes,
}

impl SimVenue {
    /// Venue `venue` of `config`, on the path starting at `t0_ms` (the genesis timestamp).
    pub fn new(config: Arc<SimConfig>, venue: usize, t0_ms: u64) -> SimVenue {
        let path = config.path(t0_ms);
        let calm = PricePath { scenario: Scenario::Calm, ..path.clone() };
        let latency_ms = match config.latency_ms.get(venue) {
            Some(l) => *l,
            None => {
                let h = hash(&[config.seed, venue as u64, SALT_LATENCY]);
                h % config.max_latency_ms.saturating_add(1).max(1)
            }
        };
        let name = SimConfig::venue_name(venue);
        let stats = Arc::new(SourceStats::new(&name));
        SimVenue { name, venue, config, path, calm, latency_ms, stats, last: Quotes::default() }
    }

    /// The venue's latency, ms.
    pub fn latency_ms(&self) -> u64 {
        self.latency_ms
    }

    /// The true path the venue quotes around.
    pub fn path(&self) -> &PricePath {
        &self.path
    }

    fn elapsed(&self, t_ms: u64) -> u64 {
        t_ms.saturating_sub(self.path.t0_ms)
    }

    /// Whether the venue is down at `now_ms` (scripted or seeded outage).
    pub fn is_down(&self, now_ms: u64) -> bool {
        let e = self.elapsed(now_ms);
        let scripted = self
            .config
            .outages
            .iter()
            .any(|o| o.venue == self.venue && Window { at_ms: o.at_ms, for_ms: o.for_ms }.contains(e));
        let slot = e / self.config.outage_every_ms.max(1);
        let draw = hash(&[self.config.seed, self.venue as u64, slot, SALT_OUTAGE]) % PPM.unsigned_abs();
        scripted || draw < self.config.outage_ppm.unsigned_abs()
    }

    /// The venue's quotes of the market at time `t_ms` (the path, noise and pumps as of then),
    /// timestamped `ts_ms`.
    fn quote_at(&self, t_ms: u64, ts_ms: u64, expiries: &[(UnderlyingId, u64)], out: &mut Quotes) {
        let cfg = &self.config;
        let e = self.elapsed(t_ms);
        let bucket = e / cfg.noise_every_ms.max(1);
        let pump: i128 = cfg
            .pumps
            .iter()
            .filter(|p| p.venue == self.venue && Window { at_ms: p.at_ms, for_ms: p.for_ms }.contains(e))
            .fold(i128::from(PPM), |f, p| f.saturating_mul(i128::from(p.factor_ppm)) / i128::from(PPM));
        for u in 0..self.path.start.len() {
            let Ok(id) = u16::try_from(u) else { break };
            let Some(truth) = self.path.price(u, t_ms) else { continue };
            let noise =
                symmetric(hash(&[cfg.seed, self.venue as u64, u as u64, bucket, SALT_NOISE]), cfg.noise_ppm);
            let Some(noisy) = scale_ppm(truth, noise) else { continue };
            let pumped = i128::from(noisy).saturating_mul(pump) / i128::from(PPM);
            let Ok(price) = i64::try_from(pumped.max(1)) else { continue };
            out.prices.push(Tick { underlying: UnderlyingId(id), price, ts_ms });
            // Volatility rises with the drawdown from the calm twin of the path.
            let Some(calm) = self.calm.price(u, t_ms) else { continue };
            let drawdown =
                (i128::from(calm) - i128::from(truth)).max(0) * i128::from(PPM) / i128::from(calm.max(1));
            let mult = i128::from(PPM) + drawdown * i128::from(cfg.vol_crash_mult_ppm) / i128::from(PPM);
            for &(eu, expiry_ms) in expiries {
                if eu != UnderlyingId(id) || expiry_ms <= t_ms {
                    continue;
                }
                let vh = hash(&[cfg.seed, self.venue as u64, u as u64, expiry_ms, bucket, SALT_VOL]);
                let sh = hash(&[cfg.seed, self.venue as u64, u as u64, expiry_ms, bucket, SALT_SKEW]);
                let level = |base: i64, h: u64| -> Option<i64> {
                    let v = i128::from(base).checked_mul(mult)? / i128::from(PPM);
                    scale_ppm(i64::try_from(v).ok()?, symmetric(h, cfg.vol_noise_ppm))
                };
                let (Some(atm), Some(skew)) = (level(cfg.atm_vol_ppm, vh), level(cfg.skew_ppm, sh)) else {
                    continue;
                };
                out.vols.push(VolTick {
                    underlying: UnderlyingId(id),
                    expiry_ms,
                    atm_ppm: atm.max(1),
                    skew_ppm: skew,
                    ts_ms,
                });
            }
        }
    }
}

impl PriceSource for SimVenue {
    fn name(&self) -> &str {
        &self.name
    }

    fn stats(&self) -> &Arc<SourceStats> {
        &self.stats
    }

    fn quotes(&mut self, now_ms: u64, expiries: &[(UnderlyingId, u64)], out: &mut Quotes) {
        out.prices.clear();
        out.vols.clear();
        if self.is_down(now_ms) {
            out.clone_from(&self.last);
            return;
        }
        let t = now_ms.saturating_sub(self.latency_ms);
        let e = self.elapsed(t);
        let frozen = self
            .config
            .freezes
            .iter()
            .find(|f| f.venue == self.venue && e >= f.at_ms && f.for_ms.is_none_or(|d| e - f.at_ms < d));
        match frozen {
            Some(f) => self.quote_at(self.path.t0_ms.saturating_add(f.at_ms), t, expiries, out),
            None => self.quote_at(t, t, expiries, out),
        }
        self.last.clone_from(out);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::config::{Freeze, Outage, Pump};

    const T0: u64 = 1_800_000_000_000;

    fn venue(cfg: SimConfig, v: usize) -> SimVenue {
        SimVenue::new(Arc::new(cfg), v, T0)
    }

    fn quiet() -> SimConfig {
        SimConfig { outage_ppm: 0, ..SimConfig::default() }
    }

    fn price(v: &mut SimVenue, now: u64) -> Option<i64> {
        let mut q = Quotes::default();
        v.quotes(now, &[], &mut q);
        q.prices.first().map(|t| t.price)
    }

    #[test]
    fn noise_stays_within_bounds_and_differs_by_seed_and_venue() {
        let mut a = venue(SimConfig { latency_ms: vec![0; 5], ..quiet() }, 0);
        let mut b = venue(SimConfig { latency_ms: vec![0; 5], ..quiet() }, 1);
        let mut c = venue(SimConfig { latency_ms: vec![0; 5], seed: 9, ..quiet() }, 0);
        let (mut ab, mut ac) = (0, 0);
        for t in (0..60_000).step_by(500) {
            let truth = a.path().price(0, T0 + t).unwrap();
            let (pa, pb, pc) = (
                price(&mut a, T0 + t).unwrap(),
                price(&mut b, T0 + t).unwrap(),
                price(&mut c, T0 + t).unwrap(),
            );
            for p in [pa, pb, pc] {
                assert!((p - truth).abs() <= truth / 1_000 + 1, "t {t}: {p} vs {truth}");
            }
            ab += usize::from(pa != pb);
            ac += usize::from(pa != pc);
        }
        assert!(ab > 100 && ac > 100, "venues and seeds differ: {ab} {ac}");
        // Deterministic.
        let mut a2 = venue(SimConfig { latency_ms: vec![0; 5], ..quiet() }, 0);
        assert_eq!(price(&mut a2, T0 + 12_345), price(&mut a, T0 + 12_345));
    }

    #[test]
    fn latency_quotes_the_past() {
        let mut v = venue(SimConfig { latency_ms: vec![700; 5], noise_ppm: 0, ..quiet() }, 3);
        assert_eq!(v.latency_ms(), 700);
        let mut q = Quotes::default();
        v.quotes(T0 + 5_000, &[], &mut q);
        assert_eq!(q.prices[0].ts_ms, T0 + 4_300);
        assert_eq!(q.prices[0].price, v.path().price(0, T0 + 4_300).unwrap());
        // Seeded latencies stay within the bound.
        for i in 0..20 {
            assert!(venue(SimConfig { seed: i, ..quiet() }, 0).latency_ms() <= 100);
        }
    }

    #[test]
    fn pumps_multiply_and_end() {
        let cfg = SimConfig {
            latency_ms: vec![0; 5],
            noise_ppm: 0,
            pumps: vec![Pump { venue: 2, at_ms: 1_000, for_ms: 2_000, factor_ppm: 10_000_000 }],
            ..quiet()
        };
        let mut v = venue(cfg.clone(), 2);
        let truth = |t| v.path().price(0, T0 + t).unwrap();
        let (t999, t1000, t2999, t3000) = (truth(999), truth(1_000), truth(2_999), truth(3_000));
        assert_eq!(price(&mut v, T0 + 999), Some(t999));
        assert_eq!(price(&mut v, T0 + 1_000), Some(t1000 * 10));
        assert_eq!(price(&mut v, T0 + 2_999), Some(t2999 * 10));
        assert_eq!(price(&mut v, T0 + 3_000), Some(t3000));
        // Other venues are not pumped.
        let mut other = venue(cfg, 1);
        assert_eq!(price(&mut other, T0 + 1_500), Some(other.path().price(0, T0 + 1_500).unwrap()));
    }

    #[test]
    fn a_frozen_venue_repeats_its_price_with_fresh_times() {
        let cfg = SimConfig {
            scenario: Scenario::FlashCrash,
            latency_ms: vec![0; 5],
            freezes: vec![Freeze { venue: 0, at_ms: 9_000, for_ms: Some(10_000) }],
            ..quiet()
        };
        let mut v = venue(cfg, 0);
        let at_freeze = price(&mut v, T0 + 9_000).unwrap();
        let mut q = Quotes::default();
        v.quotes(T0 + 13_000, &[], &mut q);
        assert_eq!((q.prices[0].price, q.prices[0].ts_ms), (at_freeze, T0 + 13_000));
        let crashed = v.path().price(0, T0 + 13_000).unwrap();
        assert!(crashed < at_freeze * 8 / 10, "the path moved on: {crashed} vs {at_freeze}");
        // After the freeze, the venue follows the path again.
        let after = price(&mut v, T0 + 19_000).unwrap();
        assert!((after - v.path().price(0, T0 + 19_000).unwrap()).abs() <= after / 1_000 + 1);
    }

    #[test]
    fn an_outage_leaves_the_last_quotes_growing_stale() {
        let cfg = SimConfig {
            latency_ms: vec![0; 5],
            outages: vec![Outage { venue: 1, at_ms: 2_000, for_ms: 3_000 }],
            ..quiet()
        };
        let mut v = venue(cfg, 1);
        let mut q = Quotes::default();
        v.quotes(T0 + 1_900, &[], &mut q);
        assert!(
            !v.is_down(T0 + 1_999)
                && v.is_down(T0 + 2_000)
                && v.is_down(T0 + 4_999)
                && !v.is_down(T0 + 5_000)
        );
        v.quotes(T0 + 4_000, &[], &mut q);
        assert_eq!(q.prices[0].ts_ms, T0 + 1_900, "the last quote before the outage");
        v.quotes(T0 + 5_000, &[], &mut q);
        assert_eq!(q.prices[0].ts_ms, T0 + 5_000);
        // Seeded outages happen at roughly the configured rate.
        let v = venue(SimConfig { outage_ppm: 100_000, outage_every_ms: 1_000, ..SimConfig::default() }, 0);
        let down = (0..10_000u64).filter(|s| v.is_down(T0 + s * 1_000)).count();
        assert!((700..1_300).contains(&down), "{down} of 10000 slots down at 10%");
    }

    #[test]
    fn the_crash_raises_volatility_and_skew_stays_negative() {
        let cfg = SimConfig { scenario: Scenario::FlashCrash, latency_ms: vec![0; 5], ..quiet() };
        let mut v = venue(cfg, 4);
        let expiries = [
            (UnderlyingId(0), T0 + 86_400_000),
            (UnderlyingId(1), T0 + 1_000),
            (UnderlyingId(1), T0 + 86_400_000),
        ];
        let mut q = Quotes::default();
        v.quotes(T0 + 5_000, &expiries, &mut q);
        assert_eq!(q.vols.len(), 2, "the expired series is not quoted: {:?}", q.vols);
        let calm = q.vols[0];
        assert!((590_000..=610_000).contains(&calm.atm_ppm), "{calm:?}");
        assert!(calm.skew_ppm < 0);
        // At the bottom (30% down), the level roughly doubles.
        v.quotes(T0 + 13_000, &expiries, &mut q);
        let bottom = q.vols[0];
        assert!((1_150_000..=1_250_000).contains(&bottom.atm_ppm), "{bottom:?}");
        assert!(bottom.skew_ppm < calm.skew_ppm);
    }

    #[test]
    fn helpers_do_not_overflow() {
        assert_eq!(scale_ppm(100, -1_000_000), Some(1));
        assert_eq!(scale_ppm(i64::MAX, 1_000_000), None);
        assert_eq!(symmetric(u64::MAX, 0), 0);
        for h in [0, 1, u64::MAX] {
            assert!(symmetric(h, 5).abs() <= 5);
        }
    }
}
