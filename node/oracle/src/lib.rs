//! A validator's view of the market: price sources, combined into the observation it signs.
//!
//! # What this crate does, and what it does not
//!
//! It *observes*. Each validator runs an [`Oracle`] over its own venues and, every
//! `observe_every_ms`, asks it for a [`Reading`]: one price per underlying and one implied
//! volatility (at-the-money level and skew) per (underlying, expiry). The consensus side signs
//! that as a `bastion_types::Observation` and gossips it; the chain's index is the lower
//! stake-weighted median of the validators' signed observations with a 2/3 quorum, computed
//! deterministically by `bastion-exchange`. Nothing here is consensus-critical: two validators'
//! readings differ (different venues, noise, latency), and that is expected.
//!
//! What it guarantees:
//! - [`Oracle::observe`] never blocks (network I/O runs on one std thread per source, which
//!   publishes its latest ticks; `observe` copies them) and never panics.
//! - An underlying with fewer than `min_sources` fresh, agreeing venues is left out of the
//!   reading: never a guess, never a stale price.
//! - One venue cannot move the reading beyond the other venues' range unless it holds half of
//!   the venue weight: the combination is a lower weighted median, after dropping venues more
//!   than `outlier_ppm` from the others' median.
//! - Every source error is counted by source and kind ([`OracleStats`]) and logged once per
//!   episode.
//!
//! What it does not: it cannot tell a pump that every venue shows (the Mango case) from a real
//! move; the exchange's stable price and clamps bound that. It does not sign, send or verify.
//!
//! # Sources ([`PriceSource`])
//!
//! Each source is one *venue* with a weight. Kinds:
//! - **sim** ([`SimVenue`]): `venues` simulated venues quoting the shared seeded true path
//!   ([`bastion_exchange::scenario::PricePath`], calm or flash-crash, from the genesis time)
//!   as it was `latency` ms ago, off by seeded noise (validator seed, venue, time bucket),
//!   down in seeded or scripted outages (the last quote then grows stale), and scripted to
//!   `pump` or `freeze`. They also quote implied volatility for the listed expiries: 60% at the
//!   money in calm markets, rising with the drawdown from the calm path (a 30% drop doubles
//!   it), with a negative skew. Validator-level `bias_ppm` and `down` windows are for attack
//!   and liveness tests.
//! - **ws**: a WebSocket ticker stream (optionally subscribing after connect), reconnecting with
//!   exponential backoff; malformed messages are counted and skipped.
//! - **http**: a JSON endpoint polled every `poll_ms` with a timeout.
//! - **file**: a CSV (`ts_ms,symbol,price`) or JSON-lines tick file replayed in time from the
//!   genesis (or `start_ms`), to reproduce an incident.
//!
//! ws and http read tickers with dot-separated JSON paths (numeric segments index arrays): a
//! message or answer that is an array is a list of tickers, an object is one ticker, or
//! `list_path` points at the array. Prices are numbers or decimal strings in quote units
//! (converted exactly to micro-units); the time is optional (the receive time otherwise) and
//! never later than the receive time. `wss://` and `https://` need the crate's `tls` feature.
//!
//! # Combination ([`combine`])
//!
//! Per underlying: drop venues whose quote is older than `source_staleness_ms` (counted
//! `stale`); drop each venue more than `outlier_ppm` from the weighted median of the other
//! fresh venues (counted `outlier`); if fewer than `min_sources` remain, no price; otherwise the
//! lower weighted median; then `bias_ppm`, if any. Volatilities the same per (underlying,
//! expiry), with `vol_outlier_ppm` on the at-the-money level and the median of the skews of the
//! venues kept.
//!
//! # Configuration ([`OracleConfig`], the `[oracle]` table of `node.toml`)
//!
//! ```toml
//! [oracle]
//! min_sources = 3            # fresh, agreeing venues needed for a price
//! source_staleness_ms = 2000
//! outlier_ppm = 20000        # 2% from the others' median
//! vol_outlier_ppm = 250000
//! observe_every_ms = 200
//! episode_quiet_ms = 5000    # an error episode ends after this long without that error
//!
//! [oracle.sim]
//! venues = 5
//! scenario = "flash-crash"   # or "calm"
//! seed = 1                   # this validator's noise seed
//! path_seed = 7              # the shared true path's seed
//! crash_at_ms = 10000        # after genesis
//! bias_ppm = 0               # attack tests only: +500000 reports every price +50%
//! pumps = [{ venue = 0, at_ms = 10000, for_ms = 20000, factor_ppm = 10000000 }]
//! freezes = [{ venue = 1, at_ms = 30000, for_ms = 5000 }]
//! outages = [{ venue = 2, at_ms = 40000, for_ms = 3000 }]
//! down = [{ at_ms = 60000, for_ms = 10000 }]   # liveness tests: all sources silent
//!
//! [[oracle.sources]]
//! kind = "ws"
//! name = "binance"
//! weight = 2
//! url = "ws://127.0.0.1:9001/ws"
//! subscribe = '{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}'
//! symbol_path = "s"
//! price_path = "p"
//! time_path = "T"            # optional; time_unit = "ms" (s, us, ns)
//! symbols = { BTCUSDT = "BTC", ETHUSDT = "ETH" }
//!
//! [[oracle.sources]]
//! kind = "http"
//! name = "coinbase"
//! url = "http://127.0.0.1:8080/tickers"
//! poll_ms = 1000
//! timeout_ms = 2000
//! list_path = "data"         # optional: where the array of tickers is
//! symbol_path = "symbol"
//! price_path = "last"
//! symbols = { "BTC-USD" = "BTC" }
//!
//! [[oracle.sources]]
//! kind = "file"
//! name = "incident"
//! path = "ticks/2025-10-10.csv"   # ts_ms,symbol,price
//! start_ms = 1760000000000        # optional: default the genesis timestamp
//! symbols = { BTCUSDT = "BTC" }   # optional: default symbols are underlying names
//! ```
//!
//! [`OracleConfig::validate`] checks everything it can alone and [`Oracle::new`] the rest
//! (symbols against the genesis underlyings, the tick file); every error names its key, as in
//! `oracle.sources[1].symbols.BTCUSDT: "XBT" is not an underlying of the genesis (BTC, ETH)`.

pub mod combine;
pub mod config;
pub mod extract;
mod file;
mod net;
mod oracle;
mod sim;
mod source;
mod stats;

pub use config::{
    ConfigError, FileFormat, FileSource, Freeze, HttpSource, OracleConfig, Outage, Pump, SimConfig,
    SourceConfig, TimeUnit, Window, WsSource,
};
pub use file::{FileReplay, TICK_FILE_MAX_BYTES};
pub use net::{MESSAGE_MAX_BYTES, Threaded};
pub use oracle::{Oracle, Reading};
pub use sim::SimVenue;
pub use source::{PriceSource, Quotes, Tick, VolTick};
pub use stats::{EPISODE_QUIET_MS, ErrorKind, OracleStats, SourceStats, StatsSnapshot};
