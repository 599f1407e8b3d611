//! `bastion status`: a node's health at a glance, read from its Prometheus metrics endpoint.

use crate::metrics::{self, FetchError, Sample};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `bastion status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Metrics address of the node (HOST:PORT), e.g. 127.0.0.1:9100
    #[arg(long, conflicts_with = "config")]
    pub metrics: Option<String>,
    /// Read the metrics address from this node.toml (key `[metrics] listen`)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print one JSON object instead of the table
    #[arg(long)]
    pub json: bool,
    /// Refresh this often until interrupted (`2s`, `500ms`; a bare number is seconds; 0 = print once)
    #[arg(long, default_value = "0", value_parser = crate::duration::seconds)]
    pub watch: f64,
}

/// Tiles in pipeline order; others follow alphabetically.
const TILE_ORDER: [&str; 8] =
    ["net", "verify", "admission", "sequencer", "consensus", "execution", "storage", "metrics"];

/// Prints the node's status once, or every `--watch` seconds until interrupted. In watch mode a
/// failed scrape is printed and retried rather than ending the command.
pub fn run(args: &StatusArgs) -> Result<(), String> {
    let addr = metrics_addr(args)?;
    if !(args.watch.is_finite() && args.watch >= 0.0) {
        return Err(format!("--watch {}: must be a number of seconds, 0 or more", args.watch));
    }
    if args.watch == 0.0 {
        println!("{}", scrape_and_render(&addr, args.json)?);
        return Ok(());
    }
    let interval = Duration::from_secs_f64(args.watch);
    let clear = !args.json && std::io::stdout().is_terminal();
    loop {
        let shown = scrape_and_render(&addr, args.json);
        if clear {
            print!("\x1b[2J\x1b[H");
        }
        match shown {
            Ok(text) => println!("{text}"),
            Err(msg) => println!("error: {msg}"),
        }
        std::thread::sleep(interval);
    }
}

/// Fetches `/metrics` from `addr` and renders it as the table or as one line of JSON.
fn scrape_and_render(addr: &str, json: bool) -> Result<String, String> {
    let text = metrics::fetch_http(addr, "/metrics").map_err(|e| match e {
        FetchError::Connect { source, .. } => format!(
            "cannot reach metrics at {addr}: {source}; is the node running with [metrics] listen = {addr}?"
        ),
        other => other.to_string(),
    })?;
    let samples = metrics::parse(&text);
    Ok(if json { to_json(&samples).to_string() } else { render_table(&samples) })
}

/// The metrics address from `--metrics`, or from `[metrics] listen` in `--config`.
fn metrics_addr(args: &StatusArgs) -> Result<String, String> {
    match (&args.metrics, &args.config) {
        (Some(addr), _) => Ok(addr.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            listen_from_toml(path, &text)
        }
        (None, None) => Err("give --metrics HOST:PORT or --config node.toml".to_string()),
    }
}

/// Reads `[metrics] listen` from a node config's text. A wildcard listen address (`0.0.0.0`,
/// `[::]`) is answered with the loopback address of the same family, which reaches it locally.
fn listen_from_toml(path: &Path, text: &str) -> Result<String, String> {
    let file = path.display();
    let missing =
        || format!("{file}: [metrics] listen is missing; add `listen = \"127.0.0.1:9100\"` under [metrics]");
    let doc: toml::Value = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    let metrics = doc.get("metrics").ok_or_else(missing)?;
    let table =
        metrics.as_table().ok_or_else(|| format!("{file}: [metrics] must be a table with `listen = ...`"))?;
    let listen = table.get("listen").ok_or_else(missing)?;
    let listen = listen
        .as_str()
        .ok_or_else(|| format!("{file}: [metrics] listen must be a string such as \"127.0.0.1:9100\""))?;
    Ok(match listen.parse::<SocketAddr>() {
        Ok(mut sa) if sa.ip().is_unspecified() => {
            sa.set_ip(match sa.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
            sa.to_string()
        }
        _ => listen.to_string(),
    })
}

/// The per-tile metric families (label `tile`).
const TILE_FAMILIES: [&str; 5] = [
    "bastion_tile_busy_ratio",
    "bastion_tile_in_total",
    "bastion_tile_out_total",
    "bastion_tile_dropped_total",
    "bastion_tile_overruns_total",
];

/// One row of the tile table.
#[derive(Debug, Default)]
struct TileRow {
    busy: Option<f64>,
    inbound: Option<f64>,
    outbound: Option<f64>,
    dropped: Option<f64>,
    dropped_by_reason: BTreeMap<String, f64>,
    overruns: Option<f64>,
}

/// Adds `v` to an optional total.
fn accumulate(total: &mut Option<f64>, v: f64) {
    *total = Some(total.unwrap_or(0.0) + v);
}

/// The tiles found in the `bastion_tile_*` families, in display order. Counters with extra
/// labels are summed per tile; dropped messages are also summed per `reason` label (samples
/// without one count in the total only).
fn tiles(samples: &[Sample]) -> Vec<(String, TileRow)> {
    let mut rows: BTreeMap<String, TileRow> = BTreeMap::new();
    for s in samples {
        let Some(tile) = s.label("tile") else { continue };
        if !TILE_FAMILIES.contains(&s.name.as_str()) {
            continue;
        }
        let row = rows.entry(tile.to_string()).or_default();
        match s.name.as_str() {
            "bastion_tile_busy_ratio" => row.busy = Some(s.value),
            "bastion_tile_in_total" => accumulate(&mut row.inbound, s.value),
            "bastion_tile_out_total" => accumulate(&mut row.outbound, s.value),
            "bastion_tile_overruns_total" => accumulate(&mut row.overruns, s.value),
            _ => {
                accumulate(&mut row.dropped, s.value);
                if let Some(reason) = s.label("reason") {
                    *row.dropped_by_reason.entry(reason.to_string()).or_default() += s.value;
                }
            }
        }
    }
    let mut rows: Vec<(String, TileRow)> = rows.into_iter().collect();
    rows.sort_by_key(|(name, _)| TILE_ORDER.iter().position(|t| t == name).unwrap_or(TILE_ORDER.len()));
    rows
}

/// The value of the first sample named `name`, preferring one without labels.
fn value(samples: &[Sample], name: &str) -> Option<f64> {
    let mut matching = samples.iter().filter(|s| s.name == name);
    let first = matching.clone().next()?;
    Some(matching.find(|s| s.labels.is_empty()).unwrap_or(first).value)
}

/// Datagrams dropped as malformed on any backend: frames the kernel-bypass backends refuse
/// (bad IPv4 or UDP header or checksum, `bastion_ingress_malformed`) plus envelopes the net
/// tile refuses on every backend (`bastion_tile_dropped_total{tile="net",reason="malformed"}`).
/// Returns (total, frames, envelopes); `None` parts are missing metrics.
fn malformed(samples: &[Sample]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let frames = value(samples, "bastion_ingress_malformed");
    let envelopes = samples
        .iter()
        .find(|s| {
            s.name == "bastion_tile_dropped_total"
                && s.label("tile") == Some("net")
                && s.label("reason") == Some("malformed")
        })
        .map(|s| s.value);
    let total = match (frames, envelopes) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    (total, frames, envelopes)
}

/// The state sync's phase: the `phase` label of the `bastion_statesync_phase` sample at 1;
/// `None` when the node reports no state sync.
fn sync_phase(samples: &[Sample]) -> Option<String> {
    samples
        .iter()
        .filter(|s| s.name == "bastion_statesync_phase" && s.value == 1.0)
        .find_map(|s| s.labels.iter().find(|(k, _)| k == "phase").map(|(_, v)| v.clone()))
}

/// One line on the state sync (`state sync downloading height 1200 chunks 3/9 ...`), or
/// `None` when the node has not synced.
fn sync_line(samples: &[Sample]) -> Option<String> {
    let phase = sync_phase(samples)?;
    let get = |name| value(samples, name);
    let mib = |v: Option<f64>| v.map_or("-".to_string(), |b| format!("{:.1}", b / f64::from(1u32 << 20)));
    let eta = match get("bastion_statesync_eta_seconds") {
        Some(s) if phase == "downloading" && s > 0.0 => format!("  ETA {s:.0} s"),
        _ => String::new(),
    };
    Some(format!(
        "state sync {phase}  height {}  chunks {}/{}  MiB {}/{} ({} downloaded)  peers {} ({} refused){eta}",
        fmt_count(get("bastion_statesync_target_height")),
        fmt_count(get("bastion_statesync_chunks_done")),
        fmt_count(get("bastion_statesync_chunks_total")),
        mib(get("bastion_statesync_bytes_done")),
        mib(get("bastion_statesync_bytes_total")),
        mib(get("bastion_statesync_bytes_downloaded_total")),
        fmt_count(get("bastion_statesync_peers")),
        fmt_count(get("bastion_statesync_peers_refused")),
    ))
}

/// One line on the bridge (`bridge source height 812 lag 2  deposits seen 40 attested 40
/// credited 39  vouchers signed 3 completed 3`), or `None` when the node serves no bridge
/// metrics (an older node, or a full node).
fn bridge_line(samples: &[Sample]) -> Option<String> {
    let get = |name| value(samples, name);
    get("bastion_bridge_deposits_credited_total")?;
    Some(format!(
        "bridge source height {} lag {}  deposits seen {} attested {} credited {}  withdrawals {}  vouchers signed {} completed {}",
        fmt_count(get("bastion_bridge_source_height")),
        fmt_count(get("bastion_bridge_credit_lag_blocks")),
        fmt_count(get("bastion_bridge_deposits_seen_total")),
        fmt_count(get("bastion_bridge_deposits_attested_total")),
        fmt_count(get("bastion_bridge_deposits_credited_total")),
        fmt_count(get("bastion_bridge_withdrawals_total")),
        fmt_count(get("bastion_bridge_vouchers_signed_total")),
        fmt_count(get("bastion_bridge_vouchers_completed_total")),
    ))
}

/// The rings between tiles (`bastion_ring_depth` / `bastion_ring_high_water`, label `ring`),
/// in the order exported: name, frames or jobs waiting now, most ever waiting.
fn rings(samples: &[Sample]) -> Vec<(String, Option<f64>, Option<f64>)> {
    let mut rows: Vec<(String, Option<f64>, Option<f64>)> = Vec::new();
    for s in samples {
        let slot = match s.name.as_str() {
            "bastion_ring_depth" => 1,
            "bastion_ring_high_water" => 2,
            _ => continue,
        };
        let Some(ring) = s.label("ring") else { continue };
        let i = match rows.iter().position(|r| r.0 == ring) {
            Some(i) => i,
            None => {
                rows.push((ring.to_string(), None, None));
                rows.len() - 1
            }
        };
        if let Some(row) = rows.get_mut(i) {
            if slot == 1 {
                row.1 = Some(s.value);
            } else {
                row.2 = Some(s.value);
            }
        }
    }
    rows
}

/// `rings  NAME DEPTH (high H) ...  durable height D`: what waits between the tiles (the
/// ingress rings, the execution and storage tiles' queues) and how far the store has synced.
fn rings_line(samples: &[Sample]) -> Option<String> {
    let rings = rings(samples);
    if rings.is_empty() {
        return None;
    }
    let mut line = String::from("rings");
    for (name, depth, high) in &rings {
        let _ = write!(line, "  {name} {} (high {})", fmt_count(*depth), fmt_count(*high));
    }
    if let Some(d) = value(samples, "bastion_durable_height") {
        let _ = write!(line, "  durable height {}", fmt_count(Some(d)));
    }
    Some(line)
}

/// A count as an integer when it is one, else as a short decimal; `-` when missing.
fn fmt_count(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 => format!("{}", v as i64),
        Some(v) if v.is_finite() => format!("{v:.2}"),
        Some(v) => format!("{v}"),
        None => "-".to_string(),
    }
}

/// A gauge in seconds (Prometheus's base unit) as milliseconds, to the microsecond.
fn seconds_as_ms(samples: &[Sample], name: &str) -> Option<f64> {
    value(samples, name).map(|s| (s * 1e6).round() / 1e3)
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.1} ms"),
        Some(v) => format!("{v} ms"),
        None => "-".to_string(),
    }
}

fn fmt_percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

/// A JSON number: an integer when the value is a whole non-negative number, else a float; null
/// when missing (or not finite, which JSON cannot hold).
fn json_number(v: Option<f64>) -> Value {
    match v {
        Some(v) if v.is_finite() && v.fract() == 0.0 && (0.0..9.0e15).contains(&v) => json!(v as u64),
        Some(v) => serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        None => Value::Null,
    }
}

/// The ingress backend that opened (`bastion_ingress_backend{backend} 1`), if exported.
fn ingress_backend(samples: &[Sample]) -> Option<String> {
    samples
        .iter()
        .find(|s| s.name == "bastion_ingress_backend" && s.value == 1.0)
        .and_then(|s| s.label("backend"))
        .map(str::to_owned)
}

/// The status as text: one header line, the ingress line when exported, then a table of tiles.
fn render_table(samples: &[Sample]) -> String {
    let get = |name| value(samples, name);
    let mut out = format!(
        "height {}  view {}  finality p50 {} p99 {}  mempool {}  orders finalized {}  deposits {}  liquidations {}\n",
        fmt_count(get("bastion_finalized_height")),
        fmt_count(get("bastion_view")),
        fmt_ms(seconds_as_ms(samples, "bastion_finality_p50_seconds")),
        fmt_ms(seconds_as_ms(samples, "bastion_finality_p99_seconds")),
        fmt_count(get("bastion_mempool_size")),
        fmt_count(get("bastion_orders_finalized_total")),
        fmt_count(get("bastion_deposits_finalized_total")),
        fmt_count(get("bastion_liquidations_total")),
    );
    if let Some(backend) = ingress_backend(samples) {
        let _ = writeln!(
            out,
            "ingress {backend}  datagrams {}  oversized {}  malformed {}  fragments {}  foreign {}  errors {}",
            fmt_count(get("bastion_ingress_datagrams")),
            fmt_count(get("bastion_ingress_oversized")),
            fmt_count(malformed(samples).0),
            fmt_count(get("bastion_ingress_fragments")),
            fmt_count(get("bastion_ingress_foreign")),
            fmt_count(get("bastion_ingress_errors")),
        );
    }
    if let Some(line) = sync_line(samples) {
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(line) = bridge_line(samples) {
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(line) = rings_line(samples) {
        out.push_str(&line);
        out.push('\n');
    }
    let tiles = tiles(samples);
    if tiles.is_empty() {
        out.push_str("no tile metrics (bastion_tile_*)\n");
        return out;
    }
    let header = ["tile", "busy", "in", "out", "dropped", "overruns"].map(String::from);
    let mut table = vec![header];
    for (name, row) in &tiles {
        table.push([
            name.clone(),
            fmt_percent(row.busy),
            fmt_count(row.inbound),
            fmt_count(row.outbound),
            fmt_count(row.dropped),
            fmt_count(row.overruns),
        ]);
    }
    let mut widths = [0usize; 6];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in &table {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
            if i == 0 {
                let _ = write!(text, "{cell:<w$}");
            } else {
                let _ = write!(text, "  {cell:>w$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// The status as one JSON object; missing metrics are null.
fn to_json(samples: &[Sample]) -> Value {
    let get = |name| json_number(value(samples, name));
    let tiles: Vec<Value> = tiles(samples)
        .into_iter()
        .map(|(name, row)| {
            let by_reason: Map<String, Value> =
                row.dropped_by_reason.into_iter().map(|(k, v)| (k, json_number(Some(v)))).collect();
            json!({
                "tile": name,
                "busy": json_number(row.busy),
                "in": json_number(row.inbound),
                "out": json_number(row.outbound),
                "dropped": json_number(row.dropped),
                "dropped_by_reason": by_reason,
                "overruns": json_number(row.overruns),
            })
        })
        .collect();
    let (malformed_total, malformed_frames, malformed_envelopes) = malformed(samples);
    let rings: Map<String, Value> = rings(samples)
        .into_iter()
        .map(|(name, depth, high)| {
            (name, json!({ "depth": json_number(depth), "high_water": json_number(high) }))
        })
        .collect();
    json!({
        "height": get("bastion_finalized_height"),
        "durable_height": get("bastion_durable_height"),
        "rings": rings,
        "view": get("bastion_view"),
        "finality_p50_ms": json_number(seconds_as_ms(samples, "bastion_finality_p50_seconds")),
        "finality_p99_ms": json_number(seconds_as_ms(samples, "bastion_finality_p99_seconds")),
        "mempool": get("bastion_mempool_size"),
        "txs_finalized": get("bastion_txs_finalized_total"),
        "orders_finalized": get("bastion_orders_finalized_total"),
        "deposits_finalized": get("bastion_deposits_finalized_total"),
        "liquidations": get("bastion_liquidations_total"),
        "ingress": json!({
            "backend": ingress_backend(samples),
            "datagrams": get("bastion_ingress_datagrams"),
            "oversized": get("bastion_ingress_oversized"),
            "malformed": json_number(malformed_total),
            "malformed_frames": json_number(malformed_frames),
            "malformed_envelopes": json_number(malformed_envelopes),
            "fragments": get("bastion_ingress_fragments"),
            "foreign": get("bastion_ingress_foreign"),
            "errors": get("bastion_ingress_errors"),
        }),
        "state_sync": sync_phase(samples).map(|phase| json!({
            "phase": phase,
            "target_height": get("bastion_statesync_target_height"),
            "chunks_done": get("bastion_statesync_chunks_done"),
            "chunks_total": get("bastion_statesync_chunks_total"),
            "bytes_done": get("bastion_statesync_bytes_done"),
            "bytes_total": get("bastion_statesync_bytes_total"),
            "bytes_downloaded": get("bastion_statesync_bytes_downloaded_total"),
            "peers": get("bastion_statesync_peers"),
            "peers_refused": get("bastion_statesync_peers_refused"),
            "eta_s": get("bastion_statesync_eta_seconds"),
        })),
        "bridge": value(samples, "bastion_bridge_deposits_credited_total").map(|_| json!({
            "source_height": get("bastion_bridge_source_height"),
            "credit_lag_blocks": get("bastion_bridge_credit_lag_blocks"),
            "deposits_seen": get("bastion_bridge_deposits_seen_total"),
            "deposits_attested": get("bastion_bridge_deposits_attested_total"),
            "deposits_credited": get("bastion_bridge_deposits_credited_total"),
            "credited_micros": get("bastion_bridge_credited_micros"),
            "withdrawals": get("bastion_bridge_withdrawals_total"),
            "vouchers_signed": get("bastion_bridge_vouchers_signed_total"),
            "vouchers_completed": get("bastion_bridge_vouchers_completed_total"),
        })),
        "tiles": tiles,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const TEXT: &str = "\
# HELP bastion_finalized_height Last finalized height.
# TYPE bastion_finalized_height gauge
bastion_finalized_height 1234
bastion_view 1240
bastion_finality_p50_seconds 0.0132
bastion_finality_p99_seconds 0.01964
bastion_mempool_size 52
bastion_orders_finalized_total 100000
bastion_deposits_finalized_total 20
# bastion_liquidations_total is absent on purpose
bastion_tile_busy_ratio{tile=\"verify\"} 0.875
bastion_tile_busy_ratio{tile=\"net\"} 0.123
bastion_tile_busy_ratio{tile=\"aux\"} 0.5
bastion_tile_in_total{tile=\"net\"} 10000
bastion_tile_in_total{tile=\"verify\"} 9990
bastion_tile_out_total{tile=\"net\"} 9990
bastion_tile_out_total{tile=\"verify\"} 9900
bastion_tile_dropped_total{tile=\"net\",reason=\"malformed\"} 4
bastion_tile_dropped_total{tile=\"net\",reason=\"full\"} 6
bastion_tile_dropped_total{tile=\"verify\",reason=\"bad_signature\"} 90
bastion_tile_overruns_total{tile=\"verify\"} 3
bastion_tile_in_total{tile=\"zeta\"} 1
bastion_tile_in_total{tile=\"storage\"} 7
";

    #[test]
    fn table_from_sample_text() {
        let expected = "\
height 1234  view 1240  finality p50 13.2 ms p99 19.6 ms  mempool 52  orders finalized 100000  deposits 20  liquidations -
tile      busy     in   out  dropped  overruns
net      12.3%  10000  9990       10         -
verify   87.5%   9990  9900       90         3
storage      -      7     -        -         -
aux      50.0%      -     -        -         -
zeta         -      1     -        -         -
";
        assert_eq!(render_table(&metrics::parse(TEXT)), expected);
    }

    #[test]
    fn ingress_line_names_the_backend_that_opened() {
        let text = format!(
            "{TEXT}bastion_ingress_backend{{backend=\"af_xdp\"}} 1\nbastion_ingress_datagrams 900\nbastion_ingress_malformed 7\n"
        );
        let samples = crate::metrics::parse(&text);
        let table = render_table(&samples);
        let line = table.lines().nth(1).unwrap();
        // 7 frames the kernel-bypass backend refused and 4 envelopes the net tile refused.
        assert!(line.starts_with("ingress af_xdp  datagrams 900  oversized -  malformed 11"), "{table}");
        let v = to_json(&samples);
        assert_eq!(v["ingress"]["backend"], json!("af_xdp"));
        assert_eq!(v["ingress"]["malformed"], json!(11));
        assert_eq!(v["ingress"]["malformed_frames"], json!(7));
        // On the sockets backend the net tile's malformed envelopes count too (issue 22).
        let sockets = "bastion_ingress_backend{backend=\"sockets\"} 1\nbastion_ingress_malformed 0\n\
                       bastion_tile_dropped_total{tile=\"net\",reason=\"malformed\"} 5\n";
        let samples = crate::metrics::parse(sockets);
        assert!(render_table(&samples).contains("malformed 5  "), "{}", render_table(&samples));
        let v = to_json(&samples);
        assert_eq!(
            (v["ingress"]["malformed"].clone(), v["ingress"]["malformed_envelopes"].clone()),
            (json!(5), json!(5))
        );
        assert_eq!(v["ingress"]["malformed_frames"], json!(0));
        // Without the metric there is no ingress line.
        let plain = render_table(&crate::metrics::parse(TEXT));
        assert!(!plain.contains("ingress "), "{plain}");
    }

    #[test]
    fn bridge_line_and_json() {
        let text = "\
bastion_finalized_height 90
bastion_bridge_source_height 812
bastion_bridge_credit_lag_blocks 2
bastion_bridge_deposits_seen_total 40
bastion_bridge_deposits_attested_total 40
bastion_bridge_deposits_credited_total 39
bastion_bridge_credited_micros 39000000
bastion_bridge_withdrawals_total 4
bastion_bridge_vouchers_signed_total 4
bastion_bridge_vouchers_completed_total 3
";
        let samples = crate::metrics::parse(text);
        let table = render_table(&samples);
        assert!(
            table.contains(
                "bridge source height 812 lag 2  deposits seen 40 attested 40 credited 39  withdrawals 4  vouchers signed 4 completed 3"
            ),
            "{table}"
        );
        let v = to_json(&samples);
        assert_eq!(v["bridge"]["deposits_credited"], 39, "{v}");
        assert_eq!(v["bridge"]["credit_lag_blocks"], 2, "{v}");
        let plain = crate::metrics::parse("bastion_finalized_height 5\n");
        assert!(!render_table(&plain).contains("bridge"));
        assert!(to_json(&plain)["bridge"].is_null());
    }

    #[test]
    fn sync_progress_line_and_json() {
        let text = "\
bastion_finalized_height 0
bastion_statesync_phase{phase=\"discovering\"} 0
bastion_statesync_phase{phase=\"downloading\"} 1
bastion_statesync_phase{phase=\"done\"} 0
bastion_statesync_target_height 1200
bastion_statesync_chunks_done 3
bastion_statesync_chunks_total 9
bastion_statesync_bytes_done 3145728
bastion_statesync_bytes_total 9437184
bastion_statesync_bytes_downloaded_total 4194304
bastion_statesync_peers 4
bastion_statesync_peers_refused 1
bastion_statesync_eta_seconds 12.4
";
        let samples = crate::metrics::parse(text);
        let table = render_table(&samples);
        assert!(
            table.contains(
                "state sync downloading  height 1200  chunks 3/9  MiB 3.0/9.0 (4.0 downloaded)  peers 4 (1 refused)  ETA 12 s"
            ),
            "{table}"
        );
        let v = to_json(&samples);
        assert_eq!(v["state_sync"]["phase"], "downloading", "{v}");
        assert_eq!(v["state_sync"]["chunks_total"], 9, "{v}");
        // A node that never synced shows no line and a null.
        let plain = crate::metrics::parse("bastion_finalized_height 5\n");
        assert!(!render_table(&plain).contains("state sync"));
        assert!(to_json(&plain)["state_sync"].is_null());
    }

    #[test]
    fn rings_line_and_json() {
        let text = "\
bastion_finalized_height 90
bastion_durable_height 89
bastion_ring_depth{ring=\"net_to_verify\"} 3
bastion_ring_high_water{ring=\"net_to_verify\"} 131
bastion_ring_depth{ring=\"execution\"} 0
bastion_ring_high_water{ring=\"execution\"} 2
bastion_ring_high_water{ring=\"storage\"} 4
";
        let samples = crate::metrics::parse(text);
        let table = render_table(&samples);
        assert!(
            table.contains(
                "rings  net_to_verify 3 (high 131)  execution 0 (high 2)  storage - (high 4)  durable height 89"
            ),
            "{table}"
        );
        let v = to_json(&samples);
        assert_eq!(v["rings"]["net_to_verify"]["high_water"], 131, "{v}");
        assert_eq!(v["rings"]["execution"]["depth"], 0, "{v}");
        assert!(v["rings"]["storage"]["depth"].is_null(), "{v}");
        assert_eq!(v["durable_height"], 89, "{v}");
        let plain = crate::metrics::parse("bastion_finalized_height 5\n");
        assert!(!render_table(&plain).contains("rings"));
    }

    #[test]
    fn table_without_metrics() {
        assert_eq!(
            render_table(&[]),
            "height -  view -  finality p50 - p99 -  mempool -  orders finalized -  deposits -  liquidations -\n\
             no tile metrics (bastion_tile_*)\n"
        );
    }

    #[test]
    fn json_from_sample_text() {
        let v = to_json(&metrics::parse(TEXT));
        assert_eq!(v["height"], json!(1234));
        assert_eq!(v["view"], json!(1240));
        assert_eq!(v["finality_p50_ms"], json!(13.2));
        assert_eq!(v["finality_p99_ms"], json!(19.64));
        assert_eq!(v["mempool"], json!(52));
        assert_eq!(v["orders_finalized"], json!(100000));
        assert_eq!(v["liquidations"], Value::Null);
        let tiles = v["tiles"].as_array().unwrap();
        let names: Vec<&str> = tiles.iter().map(|t| t["tile"].as_str().unwrap()).collect();
        assert_eq!(names, ["net", "verify", "storage", "aux", "zeta"]);
        assert_eq!(
            tiles[0],
            json!({
                "tile": "net", "busy": 0.123, "in": 10000, "out": 9990, "dropped": 10,
                "dropped_by_reason": {"full": 6, "malformed": 4}, "overruns": null,
            })
        );
        assert_eq!(tiles[1]["dropped_by_reason"], json!({"bad_signature": 90}));
        assert_eq!(tiles[1]["overruns"], json!(3));
        assert_eq!(tiles[2]["dropped_by_reason"], json!({}));
        assert_eq!(tiles[2]["busy"], Value::Null);
    }

    #[test]
    fn json_without_metrics() {
        let v = to_json(&[]);
        for key in [
            "height",
            "view",
            "finality_p50_ms",
            "mempool",
            "orders_finalized",
            "deposits_finalized",
            "liquidations",
        ] {
            assert_eq!(v[key], Value::Null, "{key}");
        }
        assert_eq!(v["tiles"], json!([]));
    }

    #[test]
    fn listen_address_from_config() {
        let p = Path::new("node.toml");
        assert_eq!(
            listen_from_toml(p, "[metrics]\nlisten = \"127.0.0.1:9100\"\n").unwrap(),
            "127.0.0.1:9100"
        );
        assert_eq!(listen_from_toml(p, "[metrics]\nlisten = \"0.0.0.0:9100\"\n").unwrap(), "127.0.0.1:9100");
        assert_eq!(listen_from_toml(p, "[metrics]\nlisten = \"[::]:9100\"\n").unwrap(), "[::1]:9100");
        assert_eq!(listen_from_toml(p, "[metrics]\nlisten = \"node1:9100\"\n").unwrap(), "node1:9100");
        let missing = listen_from_toml(p, "[net]\nport = 1\n").unwrap_err();
        assert_eq!(
            missing,
            "node.toml: [metrics] listen is missing; add `listen = \"127.0.0.1:9100\"` under [metrics]"
        );
        assert_eq!(listen_from_toml(p, "[metrics]\n").unwrap_err(), missing);
        let wrong = listen_from_toml(p, "[metrics]\nlisten = 9100\n").unwrap_err();
        assert!(wrong.starts_with("node.toml: [metrics] listen must be a string"), "{wrong}");
        let bad = listen_from_toml(p, "[metrics\n").unwrap_err();
        assert!(bad.starts_with("node.toml: "), "{bad}");
    }

    #[test]
    fn address_flags() {
        let args = |metrics: Option<&str>, config: Option<PathBuf>| StatusArgs {
            metrics: metrics.map(String::from),
            config,
            json: false,
            watch: 0.0,
        };
        assert_eq!(
            metrics_addr(&args(None, None)).unwrap_err(),
            "give --metrics HOST:PORT or --config node.toml"
        );
        assert_eq!(metrics_addr(&args(Some("127.0.0.1:1"), None)).unwrap(), "127.0.0.1:1");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let err = metrics_addr(&args(None, Some(path.clone()))).unwrap_err();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        std::fs::write(&path, "[metrics]\nlisten = \"127.0.0.1:9\"\n").unwrap();
        assert_eq!(metrics_addr(&args(None, Some(path))).unwrap(), "127.0.0.1:9");
    }

    #[test]
    fn unreachable_node_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let err = scrape_and_render(&addr, false).unwrap_err();
        assert!(err.starts_with(&format!("cannot reach metrics at {addr}: ")), "{err}");
        assert!(err.ends_with(&format!("; is the node running with [metrics] listen = {addr}?")), "{err}");
    }

    #[test]
    fn scrape_from_a_served_registry() {
        let registry = metrics::Registry::new();
        registry.gauge("bastion_finalized_height", "h", &[]).set(5.0);
        registry.counter("bastion_tile_in_total", "h", &[("tile", "net")]).add(3);
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, handle) = metrics::serve(registry, "127.0.0.1:0".parse().unwrap(), stop.clone()).unwrap();
        let table = scrape_and_render(&addr.to_string(), false).unwrap();
        assert!(table.starts_with("height 5  view -"), "{table}");
        assert!(table.contains("\nnet   "), "{table}");
        let json: Value = serde_json::from_str(&scrape_and_render(&addr.to_string(), true).unwrap()).unwrap();
        assert_eq!(json["height"], json!(5));
        assert_eq!(json["tiles"][0]["in"], json!(3));
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }
}
