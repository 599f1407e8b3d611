//! The `[oracle]` table of `node.toml`: which sources a validator watches and how it combines
//! them. Every field has a default except the sources themselves; [`OracleConfig::validate`]
//! checks what can be checked without the genesis, and [`crate::Oracle::new`] the rest (symbol
//! maps against the genesis underlyings, tick files). Every error names its key, e.g.
//! `oracle.sources[2].price_path: empty path`.

use bastion_exchange::scenario::{PricePath, Scenario};
use bastion_types::PPM;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use crate::extract::JsonPath;

/// Most simulated venues per validator.
pub const SIM_VENUES_MAX: usize = 64;
/// Most `[[oracle.sources]]` entries.
pub const SOURCES_MAX: usize = 64;

/// A configuration error: the key (`oracle.sim.venues`, `oracle.sources[1].url`) and what is
/// wrong with its value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// The offending key, dotted from `oracle`.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl fmt::Display, reason: impl fmt::Display) -> ConfigError {
        ConfigError { key: key.to_string(), reason: reason.to_string() }
    }
}

/// The `[oracle]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OracleConfig {
    /// Fewest fresh, agreeing venues for a price (or a volatility) of an underlying; with fewer
    /// the observation leaves it out. Default 3.
    pub min_sources: usize,
    /// A venue's latest quote older than this (ms) is stale and not used. Default 2_000.
    pub source_staleness_ms: u64,
    /// A venue's price farther than this (ppm) from the other venues' weighted median is
    /// dropped as an outlier. Default 20_000 (2%).
    pub outlier_ppm: i64,
    /// The same for at-the-money volatilities (ppm of the others' median). Default 250_000.
    pub vol_outlier_ppm: i64,
    /// Least time between two signed observations (the consensus side's rate limit). Default 200.
    pub observe_every_ms: u64,
    /// A source's error episode (one log line when it starts, one when it ends) ends at the
    /// first success this long after the last error of its kind; 0: at the first success.
    /// Default 5_000.
    pub episode_quiet_ms: u64,
    /// Simulated venues (`[oracle.sim]`), if any.
    pub sim: Option<SimConfig>,
    /// Network and file sources (`[[oracle.sources]]`), each one venue.
    pub sources: Vec<SourceConfig>,
}

impl Default for OracleConfig {
    fn default() -> OracleConfig {
        OracleConfig {
            min_sources: 3,
            source_staleness_ms: 2_000,
            outlier_ppm: 20_000,
            vol_outlier_ppm: 250_000,
            observe_every_ms: 200,
            episode_quiet_ms: crate::stats::EPISODE_QUIET_MS,
            sim: None,
            sources: Vec::new(),
        }
    }
}

/// `[oracle.sim]`: M simulated venues quoting one seeded true price path with their own noise,
/// latency and outages, plus scripted manipulation. All times in scripts are ms after the
/// chain's genesis timestamp (`t0_ms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Number of venues, named `sim-0`, `sim-1`, ... Default 5.
    pub venues: usize,
    /// The true path's shape. Default `calm`.
    pub scenario: Scenario,
    /// This validator's noise seed: different validators should have different seeds.
    pub seed: u64,
    /// The true path's seed: the same on every validator. Default 7.
    pub path_seed: u64,
    /// Flash crash: when the drop starts, ms after genesis (default the devnet path's 10_000).
    pub crash_at_ms: Option<u64>,
    /// Flash crash: the drop, ppm (default the devnet path's 300_000).
    pub drop_ppm: Option<i64>,
    /// Weight of each venue (empty: all 1; otherwise one per venue, positive).
    pub weights: Vec<u64>,
    /// Latency of each venue, ms (empty: seeded per venue in `0..=max_latency_ms`).
    pub latency_ms: Vec<u64>,
    /// Largest seeded latency. Default 100: in the flash crash's steepest second the path
    /// moves about 1.8% in 100 ms, so venues 100 ms apart still agree within `outlier_ppm`.
    pub max_latency_ms: u64,
    /// Each venue's price is off the true price by a seeded amount in `-noise_ppm..=noise_ppm`,
    /// drawn again every `noise_every_ms`. Default 1_000 (0.1%).
    pub noise_ppm: i64,
    /// See `noise_ppm`. Default 1_000.
    pub noise_every_ms: u64,
    /// Chance (ppm) that a venue is down for a whole `outage_every_ms` slot. Default 5_000.
    pub outage_ppm: i64,
    /// Length of an outage slot, ms. Default 5_000.
    pub outage_every_ms: u64,
    /// At-the-money implied volatility in calm markets, ppm. Default 600_000 (60%).
    pub atm_vol_ppm: i64,
    /// Skew slope in calm markets, ppm per unit of moneyness (negative: puts dearer).
    /// Default -200_000.
    pub skew_ppm: i64,
    /// How much the volatility rises per ppm of drawdown of the path from its calm twin: the
    /// level is multiplied by `1 + drawdown * vol_crash_mult_ppm / 1e6 / 1e6`. Default
    /// 3_333_333: a 30% drop doubles it.
    pub vol_crash_mult_ppm: i64,
    /// Relative noise of each venue's volatility, ppm of the level. Default 5_000 (0.5%).
    pub vol_noise_ppm: i64,
    /// Testing and attack scenarios only: every price this validator reports (whatever the
    /// source) is multiplied by `1 + bias_ppm / 1e6`. Default 0.
    pub bias_ppm: i64,
    /// Scripted pumps: a venue's prices multiplied by a factor for a while.
    pub pumps: Vec<Pump>,
    /// Scripted freezes: a venue keeps quoting (with fresh timestamps) the price it had.
    pub freezes: Vec<Freeze>,
    /// Scripted outages: a venue quotes nothing for a while.
    pub outages: Vec<Outage>,
    /// Testing only: windows in which all of this validator's sources are silent (whatever the
    /// source), so it observes nothing.
    pub down: Vec<Window>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            venues: 5,
            scenario: Scenario::Calm,
            seed: 0,
            path_seed: 7,
            crash_at_ms: None,
            drop_ppm: None,
            weights: Vec::new(),
            latency_ms: Vec::new(),
            max_latency_ms: 100,
            noise_ppm: 1_000,
            noise_every_ms: 1_000,
            outage_ppm: 5_000,
            outage_every_ms: 5_000,
            atm_vol_ppm: 600_000,
            skew_ppm: -200_000,
            vol_crash_mult_ppm: 3_333_333,
            vol_noise_ppm: 5_000,
            bias_ppm: 0,
            pumps: Vec::new(),
            freezes: Vec::new(),
            outages: Vec::new(),
            down: Vec::new(),
        }
    }
}

impl SimConfig {
    /// The true price path the venues quote around, starting at `t0_ms` (the genesis
    /// timestamp): the devnet path of `scenario` and `path_seed`, with `crash_at_ms` and
    /// `drop_ppm` if set. Every validator with the same `path_seed` gets the same path.
    pub fn path(&self, t0_ms: u64) -> PricePath {
        let mut path = PricePath::devnet(self.scenario, t0_ms, self.path_seed);
        if let Some(at) = self.crash_at_ms {
            path.crash_at_ms = at;
        }
        if let Some(drop) = self.drop_ppm {
            path.drop_ppm = drop;
        }
        path
    }

    /// The name of venue `v`.
    pub fn venue_name(v: usize) -> String {
        format!("sim-{v}")
    }
}

/// A scripted pump of one venue: from `at_ms` (after genesis) for `for_ms`, its prices are
/// multiplied by `factor_ppm / 1e6` (10_000_000 = 10x).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pump {
    /// The venue, `0..venues`.
    pub venue: usize,
    /// Start, ms after genesis.
    pub at_ms: u64,
    /// Duration, ms.
    pub for_ms: u64,
    /// Multiplier, ppm (positive).
    pub factor_ppm: i64,
}

/// A scripted freeze: from `at_ms` (for `for_ms`, or for ever) the venue keeps quoting the
/// price and volatility it had at `at_ms`, with fresh timestamps (a stuck feed that looks alive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    /// The venue, `0..venues`.
    pub venue: usize,
    /// Start, ms after genesis.
    pub at_ms: u64,
    /// Duration, ms; absent: until the end.
    #[serde(default)]
    pub for_ms: Option<u64>,
}

/// A scripted outage of one venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// The venue, `0..venues`.
    pub venue: usize,
    /// Start, ms after genesis.
    pub at_ms: u64,
    /// Duration, ms.
    pub for_ms: u64,
}

/// A window of time, ms after genesis: `at_ms..at_ms + for_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Start, ms after genesis.
    pub at_ms: u64,
    /// Duration, ms.
    pub for_ms: u64,
}

impl Window {
    /// Whether `elapsed` (ms after genesis) is inside the window.
    pub fn contains(&self, elapsed: u64) -> bool {
        elapsed >= self.at_ms && elapsed - self.at_ms < self.for_ms
    }
}

/// How tick times are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Seconds since the Unix epoch (decimals allowed).
    S,
    /// Milliseconds since the Unix epoch.
    #[default]
    Ms,
    /// Microseconds since the Unix epoch.
    Us,
    /// Nanoseconds since the Unix epoch.
    Ns,
}

impl TimeUnit {
    /// The power of ten that turns a value in this unit into milliseconds.
    pub(crate) const fn to_ms_exp10(self) -> i32 {
        match self {
            TimeUnit::S => 3,
            TimeUnit::Ms => 0,
            TimeUnit::Us => -3,
            TimeUnit::Ns => -6,
        }
    }
}

/// One `[[oracle.sources]]` entry: a single venue, chosen by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// `kind = "ws"`: a WebSocket ticker stream.
    Ws(WsSource),
    /// `kind = "http"`: a polled JSON endpoint.
    Http(HttpSource),
    /// `kind = "file"`: a recorded tick file replayed in time.
    File(FileSource),
}

impl SourceConfig {
    /// The venue's name (metric label, log field).
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Ws(s) => &s.name,
            SourceConfig::Http(s) => &s.name,
            SourceConfig::File(s) => &s.name,
        }
    }

    /// The venue's weight in the median.
    pub fn weight(&self) -> u64 {
        match self {
            SourceConfig::Ws(s) => s.weight,
            SourceConfig::Http(s) => s.weight,
            SourceConfig::File(s) => s.weight,
        }
    }

    /// The symbol -> underlying-name map (a file source's may be empty: symbols are names).
    pub fn symbols(&self) -> &BTreeMap<String, String> {
        match self {
            SourceConfig::Ws(s) => &s.symbols,
            SourceConfig::Http(s) => &s.symbols,
            SourceConfig::File(s) => &s.symbols,
        }
    }
}

fn one() -> u64 {
    1
}

/// How to read tickers out of JSON messages (WebSocket) or answers (HTTP). Paths are
/// dot-separated keys, with numeric segments indexing arrays (`data.0.p`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsSource {
    /// The venue's name.
    pub name: String,
    /// Its weight in the median. Default 1.
    #[serde(default = "one")]
    pub weight: u64,
    /// `ws://host:port/path` (`wss://` with the crate's `tls` feature).
    pub url: String,
    /// A text message sent after each connect (a subscription), if any.
    #[serde(default)]
    pub subscribe: Option<String>,
    /// Path of the array of tickers in a message, if a message carries several; otherwise a
    /// message that is an array is a list of tickers and an object is one ticker.
    #[serde(default)]
    pub list_path: Option<String>,
    /// Path of the symbol in a ticker.
    pub symbol_path: String,
    /// Path of the price (a number, or a decimal string) in quote units per base unit.
    pub price_path: String,
    /// Path of the tick time, if any (otherwise the receive time). Times after the receive
    /// time are taken as the receive time.
    #[serde(default)]
    pub time_path: Option<String>,
    /// Unit of the tick time. Default `ms`.
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// Venue symbol -> underlying name (as in the genesis). Other symbols are ignored.
    pub symbols: BTreeMap<String, String>,
    /// Connect and handshake timeout, ms. Default 5_000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// A connection without a message for this long is dropped and reopened. Default 10_000.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// First reconnect delay, doubled after each failure. Default 250.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Largest reconnect delay. Default 10_000.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_idle_timeout_ms() -> u64 {
    10_000
}
fn default_reconnect_min_ms() -> u64 {
    250
}
fn default_reconnect_max_ms() -> u64 {
    10_000
}
fn default_poll_ms() -> u64 {
    1_000
}
fn default_timeout_ms() -> u64 {
    2_000
}

/// A polled JSON endpoint (same ticker paths as [`WsSource`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    /// The venue's name.
    pub name: String,
    /// Its weight in the median. Default 1.
    #[serde(default = "one")]
    pub weight: u64,
    /// `http://host:port/path` (`https://` with the crate's `tls` feature).
    pub url: String,
    /// Time between the starts of two polls, ms. Default 1_000.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Whole-request timeout, ms. Default 2_000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// See [`WsSource::list_path`].
    #[serde(default)]
    pub list_path: Option<String>,
    /// See [`WsSource::symbol_path`].
    pub symbol_path: String,
    /// See [`WsSource::price_path`].
    pub price_path: String,
    /// See [`WsSource::time_path`].
    #[serde(default)]
    pub time_path: Option<String>,
    /// See [`WsSource::time_unit`].
    #[serde(default)]
    pub time_unit: TimeUnit,
    /// See [`WsSource::symbols`].
    pub symbols: BTreeMap<String, String>,
}

/// Format of a tick file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// `ts_ms,symbol,price` lines (a header line starting with `ts_ms` is skipped).
    Csv,
    /// One JSON object per line: `{"ts_ms": .., "symbol": "..", "price": ..}`.
    Jsonl,
}

/// A recorded tick file replayed in time: the first tick is quoted at `start_ms`, every later
/// one as many ms after it as it was after the first in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// The venue's name.
    pub name: String,
    /// Its weight in the median. Default 1.
    #[serde(default = "one")]
    pub weight: u64,
    /// The file (relative paths from the node's working directory).
    pub path: String,
    /// Its format; default from the extension (`.csv`, otherwise JSON lines).
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// When the replay starts, ms since the Unix epoch; default the genesis timestamp.
    #[serde(default)]
    pub start_ms: Option<u64>,
    /// Symbol -> underlying name; empty: the file's symbols are underlying names.
    #[serde(default)]
    pub symbols: BTreeMap<String, String>,
}

impl OracleConfig {
    /// A devnet validator's configuration: the defaults with `[oracle.sim]` of `scenario`,
    /// noise seed `seed` and the shared path seed `path_seed`.
    pub fn devnet(scenario: Scenario, seed: u64, path_seed: u64) -> OracleConfig {
        OracleConfig {
            sim: Some(SimConfig { scenario, seed, path_seed, ..SimConfig::default() }),
            ..OracleConfig::default()
        }
    }

    /// Number of venues configured: simulated ones plus `sources`.
    pub fn venue_count(&self) -> usize {
        self.sim.as_ref().map_or(0, |s| s.venues).saturating_add(self.sources.len())
    }

    /// Checks everything that does not need the genesis. The error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_sources == 0 {
            return Err(ConfigError::new("oracle.min_sources", "must be at least 1"));
        }
        positive("oracle.source_staleness_ms", self.source_staleness_ms)?;
        positive("oracle.observe_every_ms", self.observe_every_ms)?;
        ppm_range("oracle.outlier_ppm", self.outlier_ppm, 1, i64::MAX)?;
        ppm_range("oracle.vol_outlier_ppm", self.vol_outlier_ppm, 1, i64::MAX)?;
        if let Some(sim) = &self.sim {
            sim.validate()?;
        }
        if self.sources.len() > SOURCES_MAX {
            return Err(ConfigError::new("oracle.sources", format!("at most {SOURCES_MAX} entries")));
        }
        let mut names: Vec<String> = match &self.sim {
            Some(sim) => (0..sim.venues).map(SimConfig::venue_name).collect(),
            None => Vec::new(),
        };
        for (i, source) in self.sources.iter().enumerate() {
            let key = format!("oracle.sources[{i}]");
            source.validate(&key)?;
            if names.iter().any(|n| n == source.name()) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("{:?} is already the name of another venue", source.name()),
                ));
            }
            names.push(source.name().to_string());
        }
        let venues = self.venue_count();
        if venues == 0 {
            return Err(ConfigError::new(
                "oracle",
                "no venues: configure [oracle.sim] or [[oracle.sources]]",
            ));
        }
        if self.min_sources > venues {
            return Err(ConfigError::new(
                "oracle.min_sources",
                format!(
                    "{} exceeds the {venues} configured venues: no price could ever be observed",
                    self.min_sources
                ),
            ));
        }
        Ok(())
    }
}

fn positive(key: &str, v: u64) -> Result<(), ConfigError> {
    if v == 0 { Err(ConfigError::new(key, "must be positive")) } else { Ok(()) }
}

fn ppm_range(key: &str, v: i64, lo: i64, hi: i64) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        Err(ConfigError::new(key, format!("must be in {lo}..={hi}, got {v}")))
    } else {
        Ok(())
    }
}

fn venue_in(key: &str, venue: usize, venues: usize) -> Result<(), ConfigError> {
    if venue >= venues {
        Err(ConfigError::new(key, format!("venue {venue} does not exist (venues = {venues})")))
    } else {
        Ok(())
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.venues == 0 || self.venues > SIM_VENUES_MAX {
            return Err(ConfigError::new("oracle.sim.venues", format!("must be in 1..={SIM_VENUES_MAX}")));
        }
        if !self.weights.is_empty() && self.weights.len() != self.venues {
            return Err(ConfigError::new(
                "oracle.sim.weights",
                format!("{} weights for {} venues", self.weights.len(), self.venues),
            ));
        }
        if let Some(i) = self.weights.iter().position(|w| *w == 0) {
            return Err(ConfigError::new(format!("oracle.sim.weights[{i}]"), "must be positive"));
        }
        if !self.latency_ms.is_empty() && self.latency_ms.len() != self.venues {
            return Err(ConfigError::new(
                "oracle.sim.latency_ms",
                format!("{} latencies for {} venues", self.latency_ms.len(), self.venues),
            ));
        }
        ppm_range("oracle.sim.noise_ppm", self.noise_ppm, 0, 100_000)?;
        positive("oracle.sim.noise_every_ms", self.noise_every_ms)?;
        ppm_range("oracle.sim.outage_ppm", self.outage_ppm, 0, PPM)?;
        positive("oracle.sim.outage_every_ms", self.outage_every_ms)?;
        ppm_range("oracle.sim.atm_vol_ppm", self.atm_vol_ppm, 1, 10 * PPM)?;
        ppm_range("oracle.sim.skew_ppm", self.skew_ppm, -10 * PPM, 10 * PPM)?;
        ppm_range("oracle.sim.vol_crash_mult_ppm", self.vol_crash_mult_ppm, 0, 100 * PPM)?;
        ppm_range("oracle.sim.vol_noise_ppm", self.vol_noise_ppm, 0, 100_000)?;
        ppm_range("oracle.sim.bias_ppm", self.bias_ppm, 1 - PPM, 100 * PPM)?;
        if let Some(drop) = self.drop_ppm {
            ppm_range("oracle.sim.drop_ppm", drop, 0, PPM - 1)?;
        }
        if let Err(e) = self.path(0).validate() {
            return Err(ConfigError::new("oracle.sim", format!("price path: {e}")));
        }
        for (i, p) in self.pumps.iter().enumerate() {
            venue_in(&format!("oracle.sim.pumps[{i}].venue"), p.venue, self.venues)?;
            positive(&format!("oracle.sim.pumps[{i}].for_ms"), p.for_ms)?;
            ppm_range(&format!("oracle.sim.pumps[{i}].factor_ppm"), p.factor_ppm, 1, 1_000 * PPM)?;
        }
        for (i, f) in self.freezes.iter().enumerate() {
            venue_in(&format!("oracle.sim.freezes[{i}].venue"), f.venue, self.venues)?;
            if let Some(d) = f.for_ms {
                positive(&format!("oracle.sim.freezes[{i}].for_ms"), d)?;
            }
        }
        for (i, o) in self.outages.iter().enumerate() {
            venue_in(&format!("oracle.sim.outages[{i}].venue"), o.venue, self.venues)?;
            positive(&format!("oracle.sim.outages[{i}].for_ms"), o.for_ms)?;
        }
        for (i, w) in self.down.iter().enumerate() {
            positive(&format!("oracle.sim.down[{i}].for_ms"), w.for_ms)?;
        }
        Ok(())
    }
}

/// Checks a URL's scheme against the plain and TLS schemes of its kind.
fn check_url(key: &str, url: &str, plain: &str, tls: &str) -> Result<(), ConfigError> {
    let uri: tungstenite::http::Uri =
        url.parse().map_err(|e| ConfigError::new(key, format!("not a URL ({e}): {url:?}")))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::new(key, format!("no host in {url:?}")));
    }
    match uri.scheme_str() {
        Some(s) if s == plain => Ok(()),
        Some(s) if s == tls => {
            if cfg!(feature = "tls") {
                Ok(())
            } else {
                Err(ConfigError::new(
                    key,
                    format!("{tls}:// needs bastion-oracle's `tls` feature (this build has only {plain}://)"),
                ))
            }
        }
        other => Err(ConfigError::new(
            key,
            format!("scheme must be {plain} or {tls}, got {:?}", other.unwrap_or("")),
        )),
    }
}

fn check_path(key: &str, path: &str) -> Result<(), ConfigError> {
    JsonPath::parse(path).map(|_| ()).map_err(|e| ConfigError::new(key, e))
}

fn check_common(key: &str, name: &str, weight: u64) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ConfigError::new(
            format!("{key}.name"),
            format!("{name:?}: 1 to 64 characters of letters, digits, '-', '_' or '.'"),
        ));
    }
    positive(&format!("{key}.weight"), weight)
}

#[allow(clippy::too_many_arguments)]
fn check_tickers(
    key: &str,
    list_path: Option<&str>,
    symbol_path: &str,
    price_path: &str,
    time_path: Option<&str>,
    symbols: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    if let Some(p) = list_path {
        check_path(&format!("{key}.list_path"), p)?;
    }
    check_path(&format!("{key}.symbol_path"), symbol_path)?;
    check_path(&format!("{key}.price_path"), price_path)?;
    if let Some(p) = time_path {
        check_path(&format!("{key}.time_path"), p)?;
    }
    if symbols.is_empty() {
        return Err(ConfigError::new(format!("{key}.symbols"), "map at least one symbol to an underlying"));
    }
    Ok(())
}

impl SourceConfig {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        check_common(key, self.name(), self.weight())?;
        match self {
            SourceConfig::Ws(s) => {
                check_url(&format!("{key}.url"), &s.url, "ws", "wss")?;
                check_tickers(
                    key,
                    s.list_path.as_deref(),
                    &s.symbol_path,
                    &s.price_path,
                    s.time_path.as_deref(),
                    &s.symbols,
                )?;
                positive(&format!("{key}.connect_timeout_ms"), s.connect_timeout_ms)?;
                positive(&format!("{key}.idle_timeout_ms"), s.idle_timeout_ms)?;
                positive(&format!("{key}.reconnect_min_ms"), s.reconnect_min_ms)?;
                if s.reconnect_max_ms < s.reconnect_min_ms {
                    return Err(ConfigError::new(
                        format!("{key}.reconnect_max_ms"),
                        format!("{} is below reconnect_min_ms = {}", s.reconnect_max_ms, s.reconnect_min_ms),
                    ));
                }
            }
            SourceConfig::Http(s) => {
                check_url(&format!("{key}.url"), &s.url, "http", "https")?;
                check_tickers(
                    key,
                    s.list_path.as_deref(),
                    &s.symbol_path,
                    &s.price_path,
                    s.time_path.as_deref(),
                    &s.symbols,
                )?;
                positive(&format!("{key}.poll_ms"), s.poll_ms)?;
                positive(&format!("{key}.timeout_ms"), s.timeout_ms)?;
            }
            SourceConfig::File(s) => {
                if s.path.is_empty() {
                    return Err(ConfigError::new(format!("{key}.path"), "empty"));
                }
            }
        }
        Ok(())
    }
}
