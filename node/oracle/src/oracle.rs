//! The per-validator oracle: its venues, combined per underlying into one observation.

use bastion_types::{OBSERVATION_PRICES_MAX, OBSERVATION_VOLS_MAX, PriceMicros, UnderlyingId, VolQuote};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::combine::{CombineRules, VenueQuote, combine, weighted_median};
use crate::config::{ConfigError, OracleConfig, SourceConfig, Window};
use crate::extract::{Extractor, JsonPath};
use crate::file::FileReplay;
use crate::net::{start_http, start_ws};
use crate::sim::SimVenue;
use crate::source::{PriceSource, Quotes};
use crate::stats::{ErrorKind, OracleStats};

/// What a validator's venues show at one moment, combined: the content of the observation it
/// signs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// One price per underlying that has at least `min_sources` fresh, agreeing venues,
    /// strictly ascending by underlying (at most [`OBSERVATION_PRICES_MAX`]).
    pub prices: Vec<(UnderlyingId, PriceMicros)>,
    /// One volatility per (underlying, expiry) that has enough venues, for expiries after the
    /// observation time, strictly ascending by (underlying, expiry) (at most
    /// [`OBSERVATION_VOLS_MAX`]: the first ones in that order).
    pub vols: Vec<VolQuote>,
}

/// One venue and its weight.
#[derive(Debug)]
struct Venue {
    source: Box<dyn PriceSource>,
    weight: u64,
    /// Its quotes at the current observation.
    quotes: Quotes,
}

/// A validator's oracle: owns its venues (network ones run their own threads) and combines
/// them on demand. [`Oracle::observe`] never blocks and never panics.
#[derive(Debug)]
pub struct Oracle {
    config: OracleConfig,
    t0_ms: u64,
    underlyings: Vec<UnderlyingId>,
    expiries: Vec<(UnderlyingId, u64)>,
    venues: Vec<Venue>,
    stats: Arc<OracleStats>,
    bias_ppm: i64,
    down: Vec<Window>,
}

impl Oracle {
    /// Builds the oracle of `config` (validated here) for the genesis `underlyings`
    /// (id, name), the listed option `expiries` (underlying, expiry ms) and the genesis
    /// timestamp `t0_ms` (start of the sim path, of scripts and, by default, of file replays).
    /// Starts the network sources' threads. Errors name the key: an unknown underlying in a
    /// symbol map, an unreadable tick file.
    pub fn new(
        config: OracleConfig,
        underlyings: &[(UnderlyingId, String)],
        expiries: &[(UnderlyingId, u64)],
        t0_ms: u64,
    ) -> Result<Oracle, ConfigError> {
        config.validate()?;
        let by_name: BTreeMap<&str, UnderlyingId> =
            underlyings.iter().map(|(id, n)| (n.as_str(), *id)).collect();
        let mut venues: Vec<(Box<dyn PriceSource>, u64)> = Vec::new();
        if let Some(sim) = &config.sim {
            let shared = Arc::new(sim.clone());
            for v in 0..sim.venues {
                let weight = sim.weights.get(v).copied().unwrap_or(1);
                venues.push((Box::new(SimVenue::new(shared.clone(), v, t0_ms)), weight));
            }
        }
        for (i, source) in config.sources.iter().enumerate() {
            let key = format!("oracle.sources[{i}]");
            let mut symbols: BTreeMap<String, UnderlyingId> = BTreeMap::new();
            for (symbol, name) in source.symbols() {
                let Some(id) = by_name.get(name.as_str()) else {
                    return Err(ConfigError::new(
                        format!("{key}.symbols.{symbol}"),
                        format!("{name:?} is not an underlying of the genesis ({})", names(underlyings)),
                    ));
                };
                symbols.insert(symbol.clone(), *id);
            }
            let spawn_err =
                |e: std::io::Error| ConfigError::new(&key, format!("cannot start its thread: {e}"));
            let venue: Box<dyn PriceSource> = match source {
                SourceConfig::Ws(s) => {
                    let x = extractor(
                        &key,
                        &s.list_path,
                        &s.symbol_path,
                        &s.price_path,
                        &s.time_path,
                        s.time_unit,
                        symbols,
                    )?;
                    Box::new(start_ws(s.clone(), x).map_err(spawn_err)?)
                }
                SourceConfig::Http(s) => {
                    let x = extractor(
                        &key,
                        &s.list_path,
                        &s.symbol_path,
                        &s.price_path,
                        &s.time_path,
                        s.time_unit,
                        symbols,
                    )?;
                    Box::new(start_http(s.clone(), x).map_err(spawn_err)?)
                }
                SourceConfig::File(s) => {
                    let symbols = if s.symbols.is_empty() {
                        by_name.iter().map(|(n, id)| (n.to_string(), *id)).collect()
                    } else {
                        symbols
                    };
                    Box::new(FileReplay::open(s, &key, &symbols, t0_ms)?)
                }
            };
            venues.push((venue, source.weight()));
        }
        Ok(Oracle::with_sources(config, underlyings.iter().map(|u| u.0).collect(), expiries, t0_ms, venues))
    }

    /// An oracle over venues built by the caller (`(source, weight)`), with the combination
    /// rules, bias and down windows of `config` (its `sim` and `sources` are not built again).
    pub fn with_sources(
        config: OracleConfig,
        mut underlyings: Vec<UnderlyingId>,
        expiries: &[(UnderlyingId, u64)],
        t0_ms: u64,
        sources: Vec<(Box<dyn PriceSource>, u64)>,
    ) -> Oracle {
        underlyings.sort_unstable();
        underlyings.dedup();
        for (s, _) in &sources {
            s.stats().set_quiet_ms(config.episode_quiet_ms);
        }
        let stats = Arc::new(OracleStats::new(sources.iter().map(|(s, _)| s.stats().clone()).collect()));
        let venues = sources
            .into_iter()
            .map(|(source, weight)| Venue { source, weight, quotes: Quotes::default() })
            .collect();
        let (bias_ppm, down) = config.sim.as_ref().map_or((0, Vec::new()), |s| (s.bias_ppm, s.down.clone()));
        let mut oracle =
            Oracle { config, t0_ms, underlyings, expiries: Vec::new(), venues, stats, bias_ppm, down };
        oracle.set_expiries(expiries);
        oracle
    }

    /// Replaces the option expiries the oracle quotes volatility for (after a listing).
    pub fn set_expiries(&mut self, expiries: &[(UnderlyingId, u64)]) {
        self.expiries = expiries.to_vec();
        self.expiries.sort_unstable();
        self.expiries.dedup();
    }

    /// The counters, shared (the node exports them).
    pub fn stats(&self) -> Arc<OracleStats> {
        self.stats.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &OracleConfig {
        &self.config
    }

    /// The venues' names, in configuration order (sim venues first).
    pub fn venue_names(&self) -> Vec<&str> {
        self.venues.iter().map(|v| v.source.name()).collect()
    }

    fn rules(&self, outlier_ppm: i64) -> CombineRules {
        CombineRules {
            min_sources: self.config.min_sources,
            staleness_ms: self.config.source_staleness_ms,
            outlier_ppm,
        }
    }

    /// What the venues show at `now_ms` (the node's clock, ms since the Unix epoch), combined
    /// per underlying and per (underlying, expiry). Counts stale and outlier venues, and
    /// underlyings left out. Never blocks, never panics.
    pub fn observe(&mut self, now_ms: u64) -> Reading {
        let mut reading = Reading::default();
        let elapsed = now_ms.saturating_sub(self.t0_ms);
        let down = self.down.iter().any(|w| w.contains(elapsed));
        for v in &mut self.venues {
            if down {
                v.quotes = Quotes::default();
            } else {
                v.source.quotes(now_ms, &self.expiries, &mut v.quotes);
            }
        }
        let mut tally = Tally::new(self.venues.len());
        let price_rules = self.rules(self.config.outlier_ppm);
        let mut prices_missing: u64 = 0;
        for &u in &self.underlyings {
            let mut quotes = Vec::with_capacity(self.venues.len());
            let mut from = Vec::with_capacity(self.venues.len());
            for (i, v) in self.venues.iter().enumerate() {
                if let Some(t) = v.quotes.prices.iter().find(|t| t.underlying == u) {
                    quotes.push(VenueQuote { weight: v.weight, value: t.price, ts_ms: t.ts_ms });
                    from.push(i);
                }
            }
            let c = combine(&quotes, now_ms, &price_rules);
            tally.add(&from, &c.stale, &c.outliers, &c.used);
            match c.value.and_then(|p| biased(p, self.bias_ppm)) {
                Some(p) if reading.prices.len() < OBSERVATION_PRICES_MAX => reading.prices.push((u, p)),
                _ => prices_missing = prices_missing.saturating_add(1),
            }
        }
        let vol_rules = self.rules(self.config.vol_outlier_ppm);
        let mut vols_missing: u64 = 0;
        for &(u, expiry_ms) in &self.expiries {
            if expiry_ms <= now_ms || !self.underlyings.contains(&u) {
                continue;
            }
            let mut quotes = Vec::new();
            let mut skews = Vec::new();
            let mut from = Vec::new();
            for (i, v) in self.venues.iter().enumerate() {
                if let Some(t) = v.quotes.vols.iter().find(|t| t.underlying == u && t.expiry_ms == expiry_ms)
                {
                    quotes.push(VenueQuote { weight: v.weight, value: t.atm_ppm, ts_ms: t.ts_ms });
                    skews.push((t.skew_ppm, v.weight));
                    from.push(i);
                }
            }
            let c = combine(&quotes, now_ms, &vol_rules);
            tally.add(&from, &c.stale, &c.outliers, &c.used);
            let skew =
                weighted_median(&c.used.iter().filter_map(|&i| skews.get(i).copied()).collect::<Vec<_>>());
            match (c.value, skew) {
                (Some(atm_ppm), Some(skew_ppm)) if reading.vols.len() < OBSERVATION_VOLS_MAX => {
                    reading.vols.push(VolQuote { underlying: u, expiry_ms, atm_ppm, skew_ppm });
                }
                _ => vols_missing = vols_missing.saturating_add(1),
            }
        }
        for (v, venue) in self.venues.iter().enumerate() {
            let stats = venue.source.stats();
            let (stale, outliers, used) = tally.of(v);
            stats.errors(
                ErrorKind::Stale,
                stale,
                &format!("{stale} quotes older than {} ms", self.config.source_staleness_ms),
            );
            stats.errors(
                ErrorKind::Outlier,
                outliers,
                &format!("{outliers} quotes more than the outlier bound from the other venues' median"),
            );
            if used {
                let ended: &[ErrorKind] = match (stale, outliers) {
                    (0, 0) => &[ErrorKind::Stale, ErrorKind::Outlier],
                    (0, _) => &[ErrorKind::Stale],
                    (_, 0) => &[ErrorKind::Outlier],
                    _ => &[],
                };
                stats.ok(ended);
            }
        }
        self.stats.observed(prices_missing, vols_missing);
        reading
    }
}

/// Per venue, over one observation: stale and outlier quotes, and whether any quote was used.
struct Tally {
    stale: Vec<u64>,
    outliers: Vec<u64>,
    used: Vec<bool>,
}

impl Tally {
    fn new(venues: usize) -> Tally {
        Tally { stale: vec![0; venues], outliers: vec![0; venues], used: vec![false; venues] }
    }

    /// Adds one combination's verdicts; indexes are into `from` (the venue of each quote).
    fn add(&mut self, from: &[usize], stale: &[usize], outliers: &[usize], used: &[usize]) {
        for v in stale.iter().filter_map(|&i| from.get(i)) {
            if let Some(n) = self.stale.get_mut(*v) {
                *n = n.saturating_add(1);
            }
        }
        for v in outliers.iter().filter_map(|&i| from.get(i)) {
            if let Some(n) = self.outliers.get_mut(*v) {
                *n = n.saturating_add(1);
            }
        }
        for v in used.iter().filter_map(|&i| from.get(i)) {
            if let Some(u) = self.used.get_mut(*v) {
                *u = true;
            }
        }
    }

    fn of(&self, v: usize) -> (u64, u64, bool) {
        (
            self.stale.get(v).copied().unwrap_or(0),
            self.outliers.get(v).copied().unwrap_or(0),
            self.used.get(v).copied().unwrap_or(false),
        )
    }
}

/// `price * (1 + bias_ppm / 1e6)`, at least 1.
fn biased(price: PriceMicros, bias_ppm: i64) -> Option<PriceMicros> {
    if bias_ppm == 0 {
        return Some(price);
    }
    let v = i128::from(price).checked_mul(1_000_000i128.checked_add(i128::from(bias_ppm))?)? / 1_000_000;
    PriceMicros::try_from(v.max(1)).ok()
}

fn names(underlyings: &[(UnderlyingId, String)]) -> String {
    let v: Vec<&str> = underlyings.iter().map(|(_, n)| n.as_str()).collect();
    v.join(", ")
}

#[allow(clippy::too_many_arguments)]
fn extractor(
    key: &str,
    list: &Option<String>,
    symbol: &str,
    price: &str,
    time: &Option<String>,
    time_unit: crate::config::TimeUnit,
    symbols: BTreeMap<String, UnderlyingId>,
) -> Result<Extractor, ConfigError> {
    let path =
        |field: &str, p: &str| JsonPath::parse(p).map_err(|e| ConfigError::new(format!("{key}.{field}"), e));
    Ok(Extractor {
        list: list.as_deref().map(|p| path("list_path", p)).transpose()?,
        symbol: path("symbol_path", symbol)?,
        price: path("price_path", price)?,
        time: time.as_deref().map(|p| path("time_path", p)).transpose()?,
        time_unit,
        symbols,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn bias_scales_and_floors() {
        assert_eq!(biased(100, 0), Some(100));
        assert_eq!(biased(100, 500_000), Some(150));
        assert_eq!(biased(100, -999_999), Some(1));
        assert_eq!(biased(i64::MAX, 1_000_000), None);
    }
}
