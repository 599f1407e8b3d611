//! Replaying recorded tick files (tests/data/incident.*) in time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_oracle::{ErrorKind, FileSource, Oracle, OracleConfig, SourceConfig};
use bastion_types::UnderlyingId;

const BTC: UnderlyingId = UnderlyingId(0);
const ETH: UnderlyingId = UnderlyingId(1);
const START: u64 = 1_900_000_000_000;

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn oracle(path: &str, start_ms: Option<u64>, t0_ms: u64) -> Oracle {
    let source = FileSource {
        name: "incident".into(),
        weight: 1,
        path: data(path),
        format: None,
        start_ms,
        symbols: [("BTCUSDT".to_string(), "BTC".to_string()), ("ETHUSDT".to_string(), "ETH".to_string())]
            .into_iter()
            .collect(),
    };
    let config =
        OracleConfig { min_sources: 1, sources: vec![SourceConfig::File(source)], ..OracleConfig::default() };
    let underlyings = [(BTC, "BTC".to_string()), (ETH, "ETH".to_string())];
    Oracle::new(config, &underlyings, &[], t0_ms).unwrap()
}

#[test]
fn a_csv_incident_replays_in_time() {
    let mut o = oracle("incident.csv", Some(START), 0);
    // Two lines are malformed (a non-numeric price, a missing field); SOL is not mapped.
    assert_eq!(o.stats().snapshot().get("incident", ErrorKind::Malformed), 2);
    let steps: &[(u64, &[(UnderlyingId, i64)])] = &[
        (0, &[(BTC, 121_500_100_000)]),
        (249, &[(BTC, 121_500_100_000)]),
        (250, &[(BTC, 121_500_100_000), (ETH, 4_350_550_000)]),
        (1_999, &[(BTC, 121_480_000_000), (ETH, 4_350_550_000)]),
        (2_000, &[(BTC, 118_900_500_000), (ETH, 4_350_550_000)]),
        (2_400, &[(BTC, 118_900_500_000), (ETH, 4_101_000_000)]),
        (3_000, &[(BTC, 112_000_000_000), (ETH, 4_101_000_000)]),
        // ETH's last tick (at 2_400) is stale 2_000 ms later.
        (4_401, &[(BTC, 112_000_000_000)]),
        (4_500, &[(BTC, 104_999_990_000)]),
        (6_500, &[(BTC, 104_999_990_000)]),
        // The file is over: its last tick goes stale, and there is no price at all.
        (6_501, &[]),
    ];
    assert!(o.observe(START - 1).prices.is_empty(), "nothing before the start");
    for (at, want) in steps {
        assert_eq!(o.observe(START + at).prices, *want, "at {at}");
    }
    let s = o.stats().snapshot();
    // Counted per combination: ETH at 4_401, 4_500, 6_500 and 6_501, BTC at 6_501.
    assert_eq!(s.get("incident", ErrorKind::Stale), 5);
    // Both before the start, ETH at 0 and 249, ETH at 4_401, 4_500 and 6_500, both at 6_501.
    assert_eq!(s.prices_missing, 2 + 2 + 3 + 2);
}

#[test]
fn a_json_lines_incident_replays_from_the_genesis_by_default() {
    let t0 = START + 123;
    let mut o = oracle("incident.jsonl", None, t0);
    assert_eq!(o.stats().snapshot().get("incident", ErrorKind::Malformed), 3);
    assert_eq!(o.observe(t0 + 1_000).prices, [(BTC, 121_480_000_000), (ETH, 4_350_550_000)]);
    assert_eq!(o.observe(t0 + 2_000).prices[0], (BTC, 118_900_500_000));
    assert_eq!(o.observe(t0 + 4_500).prices, [(BTC, 104_999_990_000)]);
}

#[test]
fn a_file_without_mapped_ticks_is_refused() {
    let source = FileSource {
        name: "f".into(),
        weight: 1,
        path: data("incident.csv"),
        format: None,
        start_ms: None,
        symbols: [("DOGE".to_string(), "BTC".to_string())].into_iter().collect(),
    };
    let config =
        OracleConfig { min_sources: 1, sources: vec![SourceConfig::File(source)], ..OracleConfig::default() };
    let e = Oracle::new(config, &[(BTC, "BTC".to_string())], &[], 0).unwrap_err();
    assert_eq!(e.key, "oracle.sources[0].path");
    assert!(e.reason.contains("no ticks"), "{e}");
}
