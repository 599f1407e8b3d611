//! The validator's oracle: its `[oracle]` sources (`bastion-oracle`) as the consensus
//! [`Observer`], and the devnet's oracle scenarios (which sources `bastion init` writes into
//! each validator's `node.toml`).
//!
//! Every validator observes the market from its own sources and signs what it saw; the chain's
//! index is the stake-weighted median of those signed observations (see `bastion-exchange`'s
//! `observe` and `oracle` modules). A devnet's validators use simulated venues (`sim`) that
//! quote one seeded "true" price path, each validator with its own noise.

use bastion_consensus::{Observed, Observer};
use bastion_exchange::scenario::{PricePath, Scenario};
use bastion_types::UnderlyingId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use tracing::{info, warn};

/// What a devnet's oracle does: the true path its simulated venues quote, and who lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DevnetScenario {
    /// A calm path (a wiggle within +-1%).
    Calm,
    /// A crash: the true price falls 30% over 2 s at `--crash-at-s`, holds, recovers.
    FlashCrash,
    /// The oracle under attack, on the calm path: the last validator (1 of 4, 25% of stake)
    /// reports every price +50%, and 10 s after genesis one venue of every honest validator
    /// pumps 10x for 20 s.
    OracleAttack,
}

/// How far the lying validator of [`DevnetScenario::OracleAttack`] moves its prices, ppm.
pub const ATTACK_BIAS_PPM: i64 = 500_000;
/// When the honest validators' pumped venue starts, ms after genesis.
pub const ATTACK_PUMP_AT_MS: u64 = 10_000;
/// How long it pumps, ms.
pub const ATTACK_PUMP_FOR_MS: u64 = 20_000;
/// By how much, ppm of the true price (10x).
pub const ATTACK_PUMP_FACTOR_PPM: i64 = 10_000_000;

impl DevnetScenario {
    /// Every scenario, in the order their names are listed.
    pub const ALL: [DevnetScenario; 3] =
        [DevnetScenario::Calm, DevnetScenario::FlashCrash, DevnetScenario::OracleAttack];

    /// The name, as parsed and displayed.
    pub const fn name(self) -> &'static str {
        match self {
            DevnetScenario::Calm => "calm",
            DevnetScenario::FlashCrash => "flash-crash",
            DevnetScenario::OracleAttack => "oracle-attack",
        }
    }

    /// The shape of the true price path.
    pub const fn path(self) -> Scenario {
        match self {
            DevnetScenario::FlashCrash => Scenario::FlashCrash,
            DevnetScenario::Calm | DevnetScenario::OracleAttack => Scenario::Calm,
        }
    }

    /// Whether validator `i` of `n` lies in this scenario (the last one, in an attack).
    pub fn lies(self, i: usize, n: usize) -> bool {
        self == DevnetScenario::OracleAttack && n > 1 && i + 1 == n
    }

    /// The share of stake (equal stakes) that lies, ppm.
    pub fn lying_stake_ppm(self, n: usize) -> i64 {
        let liars = (0..n).filter(|i| self.lies(*i, n)).count();
        (liars * 1_000_000).checked_div(n).and_then(|v| i64::try_from(v).ok()).unwrap_or(0)
    }
}

impl fmt::Display for DevnetScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DevnetScenario {
    type Err = String;

    fn from_str(s: &str) -> Result<DevnetScenario, String> {
        DevnetScenario::ALL.into_iter().find(|sc| sc.name() == s).ok_or_else(|| {
            let names: Vec<&str> = DevnetScenario::ALL.iter().map(|sc| sc.name()).collect();
            format!("unknown scenario {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// The true price path of a devnet: what its `sim` venues quote around and the load
/// generator trades near.
pub fn true_path(scenario: DevnetScenario, t0_ms: u64, path_seed: u64, crash_at_ms: u64) -> PricePath {
    let mut path = PricePath::devnet(scenario.path(), t0_ms, path_seed);
    path.crash_at_ms = crash_at_ms;
    path
}

/// The `[oracle]` table `bastion init` writes for validator `i` of `n` on a devnet: simulated
/// venues around the shared true path (`path_seed`), with this validator's own noise seed;
/// in [`DevnetScenario::OracleAttack`] the lies and pumps of the scenario.
pub fn sim_toml(scenario: DevnetScenario, i: usize, n: usize, path_seed: u64, crash_at_ms: u64) -> String {
    let bias = if scenario.lies(i, n) { ATTACK_BIAS_PPM } else { 0 };
    let pumps = if scenario == DevnetScenario::OracleAttack && !scenario.lies(i, n) {
        format!(
            "pumps = [{{ venue = 0, at_ms = {ATTACK_PUMP_AT_MS}, for_ms = {ATTACK_PUMP_FOR_MS}, factor_ppm = {ATTACK_PUMP_FACTOR_PPM} }}]\n"
        )
    } else {
        String::new()
    };
    format!(
        "\n[oracle]                         # this validator's price sources (see README: Oracle)\n\
         min_sources = 3                  # fresh venues needed for a price (fewer: no price)\n\
         source_staleness_ms = 2000       # a venue silent this long is stale\n\
         outlier_ppm = 20000              # a venue this far from the others' median is dropped\n\
         observe_every_ms = 200           # sign an observation at most this often\n\
         \n\
         [oracle.sim]                     # simulated venues (devnets and tests)\n\
         venues = 5\n\
         scenario = \"{path}\"\n\
         path_seed = {path_seed}                    # the true path every validator's venues quote\n\
         seed = {seed}                         # this validator's own venue noise\n\
         crash_at_ms = {crash_at_ms}\n\
         bias_ppm = {bias}{bias_note}\n\
         {pumps}",
        path = scenario.path().name(),
        seed = i + 1,
        bias_note = if bias != 0 {
            "              # LIES: the oracle-attack scenario's Byzantine validator"
        } else {
            ""
        },
    )
}

/// The `[oracle]` template `bastion init` writes on a chain that is not a devnet: commented
/// examples of each real source kind. Until an operator configures sources, the validator
/// signs no observations (it still verifies and executes everyone else's).
pub fn template_toml() -> String {
    "\n\
     # [oracle]                       # this validator's price sources (see README: Oracle)\n\
     # min_sources = 3                # fresh venues needed for a price (fewer: no price)\n\
     # source_staleness_ms = 2000     # a venue silent this long is stale\n\
     # outlier_ppm = 20000            # a venue this far from the others' median is dropped\n\
     # observe_every_ms = 200         # sign an observation at most this often\n\
     #\n\
     # [[oracle.sources]]             # a WebSocket ticker stream\n\
     # name = \"venue-a\"\n\
     # kind = \"ws\"\n\
     # url = \"wss://example.invalid/ws\"\n\
     # subscribe = '{\"op\":\"subscribe\",\"args\":[\"tickers\"]}'\n\
     # symbol_path = \"data.symbol\"\n\
     # price_path = \"data.last\"\n\
     # time_path = \"data.ts\"\n\
     # symbols = { \"BTC-USD\" = \"BTC\", \"ETH-USD\" = \"ETH\" }   # venue symbol = underlying\n\
     #\n\
     # [[oracle.sources]]             # a JSON endpoint, polled\n\
     # name = \"venue-b\"\n\
     # kind = \"http\"\n\
     # url = \"https://example.invalid/api/tickers\"\n\
     # poll_ms = 500\n\
     # timeout_ms = 1000\n\
     # symbol_path = \"symbol\"\n\
     # price_path = \"price\"\n\
     # symbols = { BTCUSD = \"BTC\", ETHUSD = \"ETH\" }\n\
     # (wss:// and https:// need bastion built with `--features tls`)\n"
        .to_string()
}

/// Opens this validator's price sources from its `[oracle]` table against the chain's genesis:
/// the consensus [`Observer`] that signs what they show, their error counters, and the signing
/// interval. Without a table the validator signs no observations (it still checks and executes
/// everyone else's). A wrong value is an error naming its key.
#[allow(clippy::type_complexity)]
pub fn open(
    config: Option<&bastion_oracle::OracleConfig>,
    genesis: &bastion_exchange::Genesis,
) -> Result<(Option<Box<dyn Observer>>, Option<Arc<bastion_oracle::OracleStats>>, u64), String> {
    let Some(config) = config else {
        warn!("no [oracle] sources in the config: this validator signs no price observations");
        return Ok((None, None, bastion_consensus::application::DEFAULT_OBSERVE_EVERY_MS));
    };
    let underlyings: Vec<(UnderlyingId, String)> = genesis
        .underlyings
        .iter()
        .enumerate()
        .map(|(i, n)| (UnderlyingId(u16::try_from(i).unwrap_or(u16::MAX)), n.clone()))
        .collect();
    let oracle = bastion_oracle::Oracle::new(
        config.clone(),
        &underlyings,
        &genesis.option_expiries(),
        genesis.timestamp_ms,
    )
    .map_err(|e| format!("node config: {e}"))?;
    let stats = oracle.stats();
    info!(venues = oracle.venue_names().len(), every_ms = config.observe_every_ms, "oracle sources open");
    Ok((Some(Box::new(Feed(oracle))), Some(stats), config.observe_every_ms))
}

/// A validator's sources as the consensus [`Observer`].
pub struct Feed(pub bastion_oracle::Oracle);

impl Observer for Feed {
    fn observe(&mut self, now_ms: u64) -> Observed {
        let r = self.0.observe(now_ms);
        Observed { prices: r.prices, vols: r.vols }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_and_name_the_liar() {
        for s in DevnetScenario::ALL {
            assert_eq!(s.name().parse::<DevnetScenario>(), Ok(s));
        }
        assert!("boom".parse::<DevnetScenario>().unwrap_err().contains("oracle-attack"));
        assert!(DevnetScenario::OracleAttack.lies(3, 4));
        assert!(!DevnetScenario::OracleAttack.lies(0, 4));
        assert!(!DevnetScenario::FlashCrash.lies(3, 4));
        assert_eq!(DevnetScenario::OracleAttack.lying_stake_ppm(4), 250_000);
        assert_eq!(DevnetScenario::Calm.lying_stake_ppm(4), 0);
    }
}
