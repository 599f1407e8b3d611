//! The `[oracle]` table: the documented example parses and validates, defaults are as
//! documented, and every wrong value is refused with its key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::scenario::Scenario;
use bastion_oracle::{ConfigError, Oracle, OracleConfig, SimConfig, SourceConfig, TimeUnit};
use bastion_types::UnderlyingId;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeToml {
    oracle: OracleConfig,
}

fn parse(toml_text: &str) -> Result<OracleConfig, String> {
    toml::from_str::<NodeToml>(toml_text).map(|n| n.oracle).map_err(|e| e.to_string())
}

/// The TOML example of the crate documentation, taken from `src/lib.rs`.
fn doc_example() -> String {
    let lib = include_str!("../src/lib.rs");
    let start = lib.find("//! ```toml").unwrap();
    let end = start + lib[start..].find("//! ```\n").unwrap();
    lib[start..end]
        .lines()
        .skip(1)
        .map(|l| l.strip_prefix("//! ").unwrap_or(l.strip_prefix("//!").unwrap_or(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_documented_example_parses_and_validates() {
    let c = parse(&doc_example()).unwrap();
    c.validate().unwrap();
    let sim = c.sim.as_ref().unwrap();
    assert_eq!((sim.venues, sim.scenario, sim.seed, sim.path_seed), (5, Scenario::FlashCrash, 1, 7));
    assert_eq!(sim.pumps[0].factor_ppm, 10_000_000);
    assert_eq!(c.sources.len(), 3);
    assert_eq!(c.venue_count(), 8);
    match &c.sources[0] {
        SourceConfig::Ws(ws) => {
            assert_eq!((ws.name.as_str(), ws.weight, ws.time_unit), ("binance", 2, TimeUnit::Ms));
            assert_eq!(ws.symbols["ETHUSDT"], "ETH");
            assert!(ws.subscribe.as_deref().unwrap().contains("SUBSCRIBE"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&c.sources[1], SourceConfig::Http(h) if h.list_path.as_deref() == Some("data") && h.weight == 1)
    );
    assert!(matches!(&c.sources[2], SourceConfig::File(f) if f.start_ms == Some(1_760_000_000_000)));
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = parse("[oracle.sim]\n").unwrap();
    assert_eq!(
        (c.min_sources, c.source_staleness_ms, c.outlier_ppm, c.observe_every_ms),
        (3, 2_000, 20_000, 200)
    );
    let s = c.sim.as_ref().unwrap();
    assert_eq!((s.venues, s.scenario, s.bias_ppm), (5, Scenario::Calm, 0));
    assert_eq!(c, OracleConfig::devnet(Scenario::Calm, 0, 7));
    c.validate().unwrap();
    let path = s.path(1_000);
    assert_eq!((path.t0_ms, path.crash_at_ms, path.drop_ppm), (1_000, 10_000, 300_000));
    let s = SimConfig { crash_at_ms: Some(5), drop_ppm: Some(1), ..SimConfig::default() };
    assert_eq!((s.path(0).crash_at_ms, s.path(0).drop_ppm), (5, 1));
}

#[test]
fn unknown_keys_and_kinds_are_refused() {
    for (text, needle) in [
        ("[oracle]\nmin_source = 3\n", "min_source"),
        ("[oracle.sim]\nvenue = 5\n", "venue"),
        ("[oracle.sim]\npumps = [{ venue = 0, at_ms = 1, for_ms = 1, factor = 2 }]\n", "factor"),
        ("[[oracle.sources]]\nkind = \"ftp\"\nname = \"x\"\n", "ftp"),
        (
            "[[oracle.sources]]\nkind = \"http\"\nname = \"x\"\nurl = \"http://a\"\nsymbol_path = \"s\"\nprice_path = \"p\"\nsymbols = {}\npoll = 5\n",
            "poll",
        ),
        ("[oracle.sim]\nscenario = \"crash\"\n", "crash"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.contains(needle), "{text}: {e}");
    }
}

fn ws(extra: &str) -> String {
    format!(
        "[oracle]\nmin_sources = 1\n[[oracle.sources]]\nkind = \"ws\"\nname = \"w\"\nurl = \"ws://127.0.0.1:1/x\"\n\
         symbol_path = \"s\"\nprice_path = \"p\"\nsymbols = {{ BTCUSDT = \"BTC\" }}\n{extra}"
    )
}

/// The error of a config that parses but does not validate.
fn invalid(text: &str) -> ConfigError {
    let c = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    c.validate().expect_err(text)
}

#[test]
fn every_error_names_its_key() {
    let cases: &[(&str, &str)] = &[
        ("[oracle]\n", "oracle"),
        ("[oracle]\nmin_sources = 0\n[oracle.sim]\n", "oracle.min_sources"),
        ("[oracle]\nmin_sources = 6\n[oracle.sim]\n", "oracle.min_sources"),
        ("[oracle]\nsource_staleness_ms = 0\n[oracle.sim]\n", "oracle.source_staleness_ms"),
        ("[oracle]\noutlier_ppm = 0\n[oracle.sim]\n", "oracle.outlier_ppm"),
        ("[oracle]\nvol_outlier_ppm = -1\n[oracle.sim]\n", "oracle.vol_outlier_ppm"),
        ("[oracle]\nobserve_every_ms = 0\n[oracle.sim]\n", "oracle.observe_every_ms"),
        ("[oracle.sim]\nvenues = 0\n", "oracle.sim.venues"),
        ("[oracle.sim]\nvenues = 65\n", "oracle.sim.venues"),
        ("[oracle.sim]\nweights = [1, 2]\n", "oracle.sim.weights"),
        ("[oracle.sim]\nweights = [1, 1, 0, 1, 1]\n", "oracle.sim.weights[2]"),
        ("[oracle.sim]\nlatency_ms = [1]\n", "oracle.sim.latency_ms"),
        ("[oracle.sim]\nnoise_ppm = -1\n", "oracle.sim.noise_ppm"),
        ("[oracle.sim]\nnoise_every_ms = 0\n", "oracle.sim.noise_every_ms"),
        ("[oracle.sim]\noutage_ppm = 1000001\n", "oracle.sim.outage_ppm"),
        ("[oracle.sim]\noutage_every_ms = 0\n", "oracle.sim.outage_every_ms"),
        ("[oracle.sim]\natm_vol_ppm = 0\n", "oracle.sim.atm_vol_ppm"),
        ("[oracle.sim]\nvol_noise_ppm = 200000\n", "oracle.sim.vol_noise_ppm"),
        ("[oracle.sim]\nbias_ppm = -1000000\n", "oracle.sim.bias_ppm"),
        ("[oracle.sim]\ndrop_ppm = 1000000\n", "oracle.sim.drop_ppm"),
        (
            "[oracle.sim]\npumps = [{ venue = 5, at_ms = 0, for_ms = 1, factor_ppm = 2 }]\n",
            "oracle.sim.pumps[0].venue",
        ),
        (
            "[oracle.sim]\npumps = [{ venue = 0, at_ms = 0, for_ms = 1, factor_ppm = 2 }, { venue = 1, at_ms = 0, for_ms = 0, factor_ppm = 2 }]\n",
            "oracle.sim.pumps[1].for_ms",
        ),
        (
            "[oracle.sim]\npumps = [{ venue = 0, at_ms = 0, for_ms = 1, factor_ppm = 0 }]\n",
            "oracle.sim.pumps[0].factor_ppm",
        ),
        ("[oracle.sim]\nfreezes = [{ venue = 9, at_ms = 0 }]\n", "oracle.sim.freezes[0].venue"),
        ("[oracle.sim]\nfreezes = [{ venue = 0, at_ms = 0, for_ms = 0 }]\n", "oracle.sim.freezes[0].for_ms"),
        ("[oracle.sim]\noutages = [{ venue = 7, at_ms = 0, for_ms = 1 }]\n", "oracle.sim.outages[0].venue"),
        ("[oracle.sim]\ndown = [{ at_ms = 0, for_ms = 0 }]\n", "oracle.sim.down[0].for_ms"),
    ];
    for (text, key) in cases {
        let e = invalid(text);
        assert_eq!(e.key, *key, "{text}: {e}");
        assert!(e.to_string().starts_with(&format!("{key}: ")), "{e}");
    }
    let source_cases: &[(&str, &str)] = &[
        ("weight = 0\n", "oracle.sources[0].weight"),
        ("name = \"\"\n", "oracle.sources[0].name"),
        ("name = \"has space\"\n", "oracle.sources[0].name"),
        ("url = \"http://127.0.0.1/x\"\n", "oracle.sources[0].url"),
        ("url = \"not a url\"\n", "oracle.sources[0].url"),
        ("url = \"ws:///nohost\"\n", "oracle.sources[0].url"),
        ("symbol_path = \"\"\n", "oracle.sources[0].symbol_path"),
        ("price_path = \"a..b\"\n", "oracle.sources[0].price_path"),
        ("time_path = \"t.\"\n", "oracle.sources[0].time_path"),
        ("list_path = \"\"\n", "oracle.sources[0].list_path"),
        ("symbols = {}\n", "oracle.sources[0].symbols"),
        ("connect_timeout_ms = 0\n", "oracle.sources[0].connect_timeout_ms"),
        ("idle_timeout_ms = 0\n", "oracle.sources[0].idle_timeout_ms"),
        ("reconnect_min_ms = 0\n", "oracle.sources[0].reconnect_min_ms"),
        ("reconnect_min_ms = 500\nreconnect_max_ms = 100\n", "oracle.sources[0].reconnect_max_ms"),
    ];
    for (extra, key) in source_cases {
        // Later keys override: TOML refuses duplicates, so replace the default line instead.
        let mut text = ws("");
        let k = extra.split(' ').next().unwrap();
        if let Some(line) = text.lines().find(|l| l.starts_with(&format!("{k} ="))).map(str::to_string) {
            text = text.replace(&format!("{line}\n"), "");
        }
        text.push_str(extra);
        let e = invalid(&text);
        assert_eq!(e.key, *key, "{extra}: {e}");
    }
    if !cfg!(feature = "tls") {
        let mut text = ws("").replace("ws://127.0.0.1:1/x", "wss://example.com/x");
        text.push('\n');
        let e = invalid(&text);
        assert_eq!(e.key, "oracle.sources[0].url");
        assert!(e.reason.contains("tls"), "{e}");
    }
    // A duplicate name, also against the sim venues.
    let twice = format!("{}{}", ws(""), ws("").replace("[oracle]\nmin_sources = 1\n", ""));
    assert_eq!(invalid(&twice).key, "oracle.sources[1].name");
    let clash = format!("{}[oracle.sim]\n", ws("").replace("name = \"w\"", "name = \"sim-2\""));
    assert_eq!(invalid(&clash).key, "oracle.sources[0].name");
    // http and file keys.
    let http = "[oracle]\nmin_sources = 1\n[[oracle.sources]]\nkind = \"http\"\nname = \"h\"\nurl = \"http://127.0.0.1:1/\"\n\
                symbol_path = \"s\"\nprice_path = \"p\"\nsymbols = { X = \"BTC\" }\n";
    parse(http).unwrap().validate().unwrap();
    assert_eq!(invalid(&format!("{http}poll_ms = 0\n")).key, "oracle.sources[0].poll_ms");
    assert_eq!(invalid(&format!("{http}timeout_ms = 0\n")).key, "oracle.sources[0].timeout_ms");
    assert_eq!(invalid(&http.replace("http://", "ws://")).key, "oracle.sources[0].url");
    let file = "[oracle]\nmin_sources = 1\n[[oracle.sources]]\nkind = \"file\"\nname = \"f\"\npath = \"\"\n";
    assert_eq!(invalid(file).key, "oracle.sources[0].path");
}

#[test]
fn genesis_checks_name_their_keys() {
    let underlyings = vec![(UnderlyingId(0), "BTC".to_string()), (UnderlyingId(1), "ETH".to_string())];
    let c = parse(&ws("").replace("BTCUSDT = \"BTC\"", "XBTUSD = \"XBT\"")).unwrap();
    let e = Oracle::new(c, &underlyings, &[], 0).unwrap_err();
    assert_eq!(e.key, "oracle.sources[0].symbols.XBTUSD");
    assert!(e.reason.contains("XBT") && e.reason.contains("BTC, ETH"), "{e}");
    let file = "[oracle]\nmin_sources = 1\n[[oracle.sources]]\nkind = \"file\"\nname = \"f\"\npath = \"/nonexistent/ticks.csv\"\n";
    let e = Oracle::new(parse(file).unwrap(), &underlyings, &[], 0).unwrap_err();
    assert_eq!(e.key, "oracle.sources[0].path");
    assert!(e.reason.contains("/nonexistent/ticks.csv"), "{e}");
    // Validation runs in `new` too.
    let e = Oracle::new(OracleConfig::default(), &underlyings, &[], 0).unwrap_err();
    assert_eq!(e.key, "oracle");
}
