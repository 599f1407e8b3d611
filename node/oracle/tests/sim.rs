//! The oracle over simulated venues: manipulation of one venue is absorbed, of all is not,
//! frozen and absent venues are left out, validators differ within noise, the crash raises
//! volatility.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::scenario::Scenario;
use bastion_oracle::{ErrorKind, Freeze, Oracle, OracleConfig, Outage, Pump, Reading, SimConfig, Window};
use bastion_types::UnderlyingId;
use proptest::prelude::*;

const T0: u64 = 1_800_000_000_000;
const BTC: UnderlyingId = UnderlyingId(0);
const ETH: UnderlyingId = UnderlyingId(1);
const DAY: u64 = 86_400_000;

fn underlyings() -> Vec<(UnderlyingId, String)> {
    vec![(BTC, "BTC".into()), (ETH, "ETH".into())]
}

fn expiries() -> Vec<(UnderlyingId, u64)> {
    vec![(ETH, T0 + 7 * DAY), (BTC, T0 + 7 * DAY), (BTC, T0 + DAY), (BTC, T0 + DAY)]
}

/// A validator's config: no seeded outages, so every test is about what it scripts; error
/// episodes end at the first success (the tests look at them in simulated time).
fn sim(seed: u64, f: impl FnOnce(&mut SimConfig)) -> OracleConfig {
    let mut s = SimConfig { seed, outage_ppm: 0, ..SimConfig::default() };
    f(&mut s);
    OracleConfig { sim: Some(s), episode_quiet_ms: 0, ..OracleConfig::default() }
}

fn oracle(config: OracleConfig) -> Oracle {
    Oracle::new(config, &underlyings(), &expiries(), T0).unwrap()
}

fn truth(config: &OracleConfig, u: UnderlyingId, t: u64) -> i64 {
    config.sim.as_ref().unwrap().path(T0).price(usize::from(u.0), t).unwrap()
}

fn price(r: &Reading, u: UnderlyingId) -> Option<i64> {
    r.prices.iter().find(|p| p.0 == u).map(|p| p.1)
}

/// |a - b| in ppm of b.
fn off_ppm(a: i64, b: i64) -> i64 {
    bastion_oracle::combine::deviation_ppm(a, b)
}

#[test]
fn calm_readings_follow_the_path_in_order() {
    let config = sim(1, |_| {});
    let mut o = oracle(config.clone());
    assert_eq!(o.venue_names(), ["sim-0", "sim-1", "sim-2", "sim-3", "sim-4"]);
    for t in (0..60_000).step_by(200) {
        let r = o.observe(T0 + t);
        assert_eq!(r.prices.iter().map(|p| p.0).collect::<Vec<_>>(), [BTC, ETH], "t {t}");
        for (u, p) in &r.prices {
            let d = off_ppm(*p, truth(&config, *u, T0 + t));
            assert!(d <= 4_000, "t {t} {u}: {d} ppm off the path");
        }
        // Vols: strictly ascending by (underlying, expiry), deduplicated, all listed expiries.
        let keys: Vec<(UnderlyingId, u64)> = r.vols.iter().map(|v| (v.underlying, v.expiry_ms)).collect();
        assert_eq!(keys, [(BTC, T0 + DAY), (BTC, T0 + 7 * DAY), (ETH, T0 + 7 * DAY)]);
        assert!(r.vols.iter().all(|v| v.atm_ppm > 0 && v.skew_ppm < 0));
    }
    let s = o.stats().snapshot();
    assert_eq!(s.observations, 300);
    assert_eq!((s.prices_missing, s.vols_missing), (0, 0));
    assert_eq!(s.total(ErrorKind::Outlier) + s.total(ErrorKind::Stale), 0);
    // Past an expiry, its volatility is no longer quoted.
    let r = o.observe(T0 + DAY + 1);
    assert_eq!(r.vols.len(), 2);
}

#[test]
fn one_venue_pumped_ten_times_is_absorbed_and_counted() {
    let config =
        sim(2, |s| s.pumps = vec![Pump { venue: 0, at_ms: 10_000, for_ms: 20_000, factor_ppm: 10_000_000 }]);
    let mut o = oracle(config.clone());
    // From 10_250 (the venue quotes the pumped market at most 100 ms late) to 29_750.
    for t in (10_250..30_000).step_by(250) {
        let r = o.observe(T0 + t);
        for u in [BTC, ETH] {
            let p = price(&r, u).unwrap();
            assert!(off_ppm(p, truth(&config, u, T0 + t)) <= 4_000, "t {t} {u}: {p}");
        }
    }
    let s = o.stats().snapshot();
    // Dropped as an outlier for both underlyings at every observation, and no other venue.
    assert_eq!(s.get("sim-0", ErrorKind::Outlier), 2 * 79);
    assert_eq!(s.total(ErrorKind::Outlier), 2 * 79);
    // After the pump, the venue is used again.
    o.observe(T0 + 30_100);
    assert_eq!(o.stats().snapshot().total(ErrorKind::Outlier), 2 * 79);
    assert!(!o.stats().sources()[0].failing(ErrorKind::Outlier), "the episode ended");
}

#[test]
fn every_venue_pumped_moves_the_reading() {
    let pumps =
        (0..5).map(|venue| Pump { venue, at_ms: 10_000, for_ms: 20_000, factor_ppm: 10_000_000 }).collect();
    let config = sim(3, |s| s.pumps = pumps);
    let mut o = oracle(config.clone());
    let t = T0 + 15_000;
    let r = o.observe(t);
    let p = price(&r, BTC).unwrap();
    assert!(off_ppm(p, truth(&config, BTC, t) * 10) <= 3_000, "the Mango case: {p}");
    assert_eq!(o.stats().snapshot().total(ErrorKind::Outlier), 0);
}

#[test]
fn a_frozen_venue_is_dropped_once_the_market_moves_away() {
    let config = sim(4, |s| {
        s.scenario = Scenario::FlashCrash;
        s.freezes = vec![Freeze { venue: 3, at_ms: 9_000, for_ms: None }];
    });
    let mut o = oracle(config.clone());
    for t in (9_000..40_000).step_by(100) {
        let r = o.observe(T0 + t);
        let p = price(&r, BTC).unwrap();
        assert!(off_ppm(p, truth(&config, BTC, T0 + t)) <= 25_000, "t {t}: {p}");
    }
    let s = o.stats().snapshot();
    assert!(s.get("sim-3", ErrorKind::Outlier) > 100, "{s:?}");
    assert_eq!(s.total(ErrorKind::Outlier), s.get("sim-3", ErrorKind::Outlier), "only the frozen venue");
}

#[test]
fn the_flash_crash_is_followed_without_outliers_or_gaps() {
    for seed in 0..8 {
        let config = sim(seed, |s| s.scenario = Scenario::FlashCrash);
        let mut o = oracle(config.clone());
        for t in (0..40_000).step_by(50) {
            let r = o.observe(T0 + t);
            for u in [BTC, ETH] {
                let p = price(&r, u).unwrap_or_else(|| panic!("seed {seed} t {t} {u}: no price"));
                // Within latency (<= 100 ms of the crash, ~1.8%) plus noise of the path.
                assert!(off_ppm(p, truth(&config, u, T0 + t)) <= 20_000, "seed {seed} t {t} {u}: {p}");
            }
        }
        let s = o.stats().snapshot();
        assert_eq!(s.total(ErrorKind::Outlier), 0, "seed {seed}: honest venues disagreed in the crash");
    }
}

#[test]
fn outages_leaving_too_few_venues_give_no_price_and_then_recover() {
    let outages = (0..3).map(|venue| Outage { venue, at_ms: 10_000, for_ms: 10_000 }).collect();
    let config = sim(5, |s| s.outages = outages);
    let mut o = oracle(config);
    assert!(price(&o.observe(T0 + 9_900), BTC).is_some());
    // Inside the staleness window, the down venues' last quotes still count.
    let r = o.observe(T0 + 11_000);
    assert_eq!(r.prices.len(), 2);
    // After it, two venues are left: fewer than min_sources = 3, so nothing, not a guess.
    let r = o.observe(T0 + 12_500);
    assert!(r.prices.is_empty() && r.vols.is_empty(), "{r:?}");
    let s = o.stats().snapshot();
    assert_eq!(s.get("sim-0", ErrorKind::Stale), 2 + 3, "one per underlying and per volatility series");
    assert_eq!(s.get("sim-4", ErrorKind::Stale), 0);
    assert_eq!(s.prices_missing, 2);
    assert_eq!(s.vols_missing, 3);
    // The venues come back.
    let r = o.observe(T0 + 20_200);
    assert_eq!(r.prices.len(), 2);
    assert!(!o.stats().sources()[0].failing(ErrorKind::Stale));
    // One venue down of five changes nothing.
    let config = sim(5, |s| s.outages = vec![Outage { venue: 2, at_ms: 0, for_ms: 60_000 }]);
    let mut o = oracle(config);
    assert_eq!(o.observe(T0 + 30_000).prices.len(), 2);
}

#[test]
fn two_validators_differ_within_noise() {
    let (ca, cb) = (sim(10, |_| {}), sim(11, |_| {}));
    let (mut a, mut b) = (oracle(ca), oracle(cb));
    let mut differ = 0;
    for t in (0..120_000).step_by(500) {
        let (ra, rb) = (a.observe(T0 + t), b.observe(T0 + t));
        for u in [BTC, ETH] {
            let (pa, pb) = (price(&ra, u).unwrap(), price(&rb, u).unwrap());
            assert!(off_ppm(pa, pb) <= 5_000, "t {t} {u}: {pa} vs {pb}");
            differ += usize::from(pa != pb);
        }
    }
    assert!(differ > 200, "validators' readings should differ as real ones do: {differ} of 480");
}

#[test]
fn the_flash_crash_raises_volatility() {
    let config = sim(6, |s| s.scenario = Scenario::FlashCrash);
    let mut o = oracle(config);
    let atm =
        |r: &Reading| r.vols.iter().find(|v| v.underlying == BTC && v.expiry_ms == T0 + DAY).unwrap().atm_ppm;
    let before = atm(&o.observe(T0 + 5_000));
    let bottom = atm(&o.observe(T0 + 13_500));
    let after = atm(&o.observe(T0 + 40_000));
    assert!((590_000..=610_000).contains(&before), "{before}");
    assert!(
        bottom > before * 19 / 10 && bottom < before * 21 / 10,
        "a 30% drop doubles it: {before} -> {bottom}"
    );
    assert!((590_000..=610_000).contains(&after), "back after the recovery: {after}");
}

#[test]
fn bias_moves_every_price_and_down_windows_silence_everything() {
    let config = sim(7, |s| {
        s.bias_ppm = 500_000;
        s.down = vec![Window { at_ms: 5_000, for_ms: 1_000 }];
    });
    let honest = sim(7, |_| {});
    let (mut o, mut h) = (oracle(config), oracle(honest));
    let (r, rh) = (o.observe(T0 + 1_000), h.observe(T0 + 1_000));
    for u in [BTC, ETH] {
        let (p, ph) = (price(&r, u).unwrap(), price(&rh, u).unwrap());
        assert_eq!(i128::from(p), i128::from(ph) * 3 / 2, "{u}");
    }
    assert_eq!(r.vols, rh.vols, "bias is on prices only");
    assert_eq!(o.observe(T0 + 5_000), Reading::default());
    assert_eq!(o.observe(T0 + 5_999), Reading::default());
    assert_eq!(o.observe(T0 + 6_000).prices.len(), 2);
}

#[test]
fn venue_weights_count() {
    // Venue 4 holds more than half of the weight and is pumped 1.5% (not an outlier): it is
    // the median.
    let config = sim(8, |s| {
        s.weights = vec![1, 1, 1, 1, 5];
        s.noise_ppm = 0;
        s.latency_ms = vec![0; 5];
        s.pumps = vec![Pump { venue: 4, at_ms: 0, for_ms: 60_000, factor_ppm: 1_015_000 }];
    });
    let mut o = oracle(config.clone());
    let p = price(&o.observe(T0 + 1_000), BTC).unwrap();
    assert_eq!(p, truth(&config, BTC, T0 + 1_000) * 1_015 / 1_000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Any noise seed, path seed, scenario and time: the reading is within noise and latency of
    /// the true path, and a single pumped venue never changes that. (proptest prints the failing
    /// inputs, which replay the case.)
    #[test]
    fn a_single_manipulated_venue_never_moves_the_reading(
        seed in any::<u64>(),
        path_seed in any::<u64>(),
        crash in any::<bool>(),
        venue in 0usize..5,
        factor_ppm in prop_oneof![Just(10_000_000i64), Just(100_000i64), 1i64..50_000_000],
        t in 0u64..60_000,
    ) {
        let config = sim(seed, |s| {
            s.path_seed = path_seed;
            s.scenario = if crash { Scenario::FlashCrash } else { Scenario::Calm };
            s.pumps = vec![Pump { venue, at_ms: 0, for_ms: 60_000, factor_ppm }];
        });
        let mut o = oracle(config.clone());
        let r = o.observe(T0 + t);
        for u in [BTC, ETH] {
            let p = price(&r, u).expect("four honest venues of five");
            let d = off_ppm(p, truth(&config, u, T0 + t));
            prop_assert!(d <= 20_000, "{u}: {p} is {d} ppm off");
        }
    }
}
