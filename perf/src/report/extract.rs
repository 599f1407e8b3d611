//! What the report page shows, pulled out of the JSON reports: per report its machine, its
//! goals and the series of each plot. Everything is read from `serde_json::Value`s, so a
//! report of an older era (or not from the harness at all) yields fewer plots or a skip with
//! its reason, never a panic.

use serde_json::Value;

/// The kinds of plot the page draws; `id` is the `data-plot-kind` of each plot's `<svg>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlotKind {
    /// Latency percentiles of each measurement as a CDF (hdrhistogram percentiles).
    LatencyCdf,
    /// Signatures verified per second against batch size, one line per backend.
    SigverifyBatch,
    /// `e2e`: finalized orders/s against the offered load.
    E2eLoad,
    /// `ingress`: datagrams/s delivered against the rate offered, one line per backend.
    IngressSweep,
    /// `ingress`: datagrams/s delivered by each backend at the sender's full rate.
    IngressBackends,
    /// `storage`: recovery time split into log scan, snapshot load and replay.
    Recovery,
    /// `chaos`: faults applied by kind, and the recovery times after each schedule's heal.
    Chaos,
}

impl PlotKind {
    pub fn id(self) -> &'static str {
        match self {
            PlotKind::LatencyCdf => "latency-cdf",
            PlotKind::SigverifyBatch => "sigverify-batch",
            PlotKind::E2eLoad => "e2e-load",
            PlotKind::IngressSweep => "ingress-sweep",
            PlotKind::IngressBackends => "ingress-backends",
            PlotKind::Recovery => "recovery",
            PlotKind::Chaos => "chaos",
        }
    }
}

/// One line of a plot: `(x, y)` points in the order drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One horizontal bar, made of named parts laid end to end.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub parts: Vec<(String, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PlotData {
    /// Lines with a marker per point; `reference` lines (identity, baselines) are dashed.
    Lines { series: Vec<Series>, reference: Vec<Series>, x_log: bool, y_log: bool },
    /// Each series is `(latency in ns, quantile)`, quantile 1.0 being the maximum.
    Cdf { series: Vec<Series> },
    /// Horizontal bars of stacked parts (a value each, in the plot's x unit); `unit` follows
    /// the values written by the bars (` ms`).
    Bars { bars: Vec<Bar>, unit: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plot {
    pub kind: PlotKind,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub data: PlotData,
    /// What the plot shows, in a sentence under it (the machine is added by the page).
    pub caption: String,
}

/// A goal of the issue and whether the report says it was met (`None`: it does not say).
#[derive(Clone, Debug, PartialEq)]
pub struct GoalRow {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

/// One report as the page shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportView {
    /// The file (and index, for a file holding an array of reports).
    pub source: String,
    pub suite: String,
    /// The machine the report names, in one line.
    pub machine: String,
    /// `started_unix_s` as a UTC date, where present.
    pub date: Option<String>,
    pub quick: bool,
    pub goals: Vec<GoalRow>,
    pub plots: Vec<Plot>,
    /// What the page could not show of this report, and why.
    pub notes: Vec<String>,
}

/// What one JSON document holds: reports, or a skip with its reason.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Report(Box<ReportView>),
    Skipped { source: String, reason: String },
}

/// Most lines in one CDF plot; more measurements of the same unit go to further plots.
const CDF_SERIES_PER_PLOT: usize = 8;

/// The entries of one JSON document named `source`: a report, an array of reports (`bastion-perf
/// all --json`), or a skip saying what the shape was.
pub fn entries(source: &str, doc: &Value) -> Vec<Entry> {
    match doc {
        Value::Array(items) if items.is_empty() => {
            vec![Entry::Skipped { source: source.into(), reason: "an empty array: no report in it".into() }]
        }
        Value::Array(items) => {
            items.iter().enumerate().map(|(i, item)| one_entry(&format!("{source} [{i}]"), item)).collect()
        }
        other => vec![one_entry(source, other)],
    }
}

fn one_entry(source: &str, v: &Value) -> Entry {
    let Some(obj) = v.as_object() else {
        return Entry::Skipped {
            source: source.into(),
            reason: format!("not a report: a JSON {} rather than an object", kind_of(v)),
        };
    };
    let Some(suite) = obj.get("suite").and_then(Value::as_str) else {
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).take(8).collect();
        if obj.len() > keys.len() {
            keys.push("…");
        }
        return Entry::Skipped {
            source: source.into(),
            reason: format!(
                "unknown shape: no \"suite\" field, so not a bastion-perf report (top-level fields: {})",
                keys.join(", ")
            ),
        };
    };
    Entry::Report(Box::new(view(source, suite, v)))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn view(source: &str, suite: &str, v: &Value) -> ReportView {
    let mut notes = Vec::new();
    let (goals, goal_note) = goals(v);
    notes.extend(goal_note);
    let mut plots = Vec::new();
    match v.get("measurements") {
        Some(Value::Array(_)) => {
            let ms = measurements(v);
            plots.extend(sigverify_batches(suite, &ms));
            plots.extend(e2e_load(suite, &ms));
            plots.extend(ingress_sweep(suite, &ms));
            plots.extend(ingress_backends(suite, &ms));
            plots.extend(recovery(suite, &ms));
            plots.extend(chaos(suite, v));
            plots.extend(latency_cdfs(suite, &ms));
        }
        Some(_) => notes.push("\"measurements\" is not an array: no plots from it".into()),
        None => {
            plots.extend(gpu_batches(suite, v));
            if plots.is_empty() {
                notes.push(
                    "not the harness's report shape (no \"measurements\"): machine and goals only, no plots"
                        .into(),
                );
            }
        }
    }
    if plots.is_empty() && v.get("measurements").is_some() {
        notes.push("no latency percentiles or series of the plotted kinds in this report".into());
    }
    ReportView {
        source: source.into(),
        suite: suite.into(),
        machine: machine(v),
        date: v.get("started_unix_s").and_then(Value::as_u64).map(utc_date),
        quick: v.get("quick").and_then(Value::as_bool).unwrap_or(false),
        goals,
        plots,
        notes,
    }
}

/// The machine the report names, in one line (`not named` when it names none).
pub fn machine(v: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = v.get("machine").and_then(Value::as_object) {
        if let Some(s) = m.get("cpu_model").and_then(Value::as_str) {
            parts.push(s.into());
        }
        if let Some(n) = m.get("logical_cores").and_then(Value::as_u64) {
            parts.push(format!("{n} logical cores"));
        }
        if let Some(g) = m.get("memory_gib").and_then(Value::as_f64) {
            parts.push(format!("{g:.1} GiB"));
        }
        if let Some(k) = m.get("kernel").and_then(Value::as_str) {
            parts.push(format!("kernel {k}"));
        }
        if let Some(p) = m.get("build_profile").and_then(Value::as_str) {
            parts.push(format!("{p} build"));
        }
        if let Some(n) = m.get("note").and_then(Value::as_str) {
            parts.push(n.into());
        }
    } else if let Some(s) = v.get("machine").and_then(Value::as_str) {
        parts.push(s.into());
    }
    if let Some(d) = v.get("device").and_then(Value::as_str) {
        parts.push(d.into());
    }
    if parts.is_empty() { "not named in the report".into() } else { parts.join(", ") }
}

/// The report's goals: the harness's array of `{name, target, measured, met}`, or an older
/// object of `name: "measured: MET|NOT MET"`; a note when `goals` has another shape.
pub fn goals(v: &Value) -> (Vec<GoalRow>, Option<String>) {
    let text = |x: Option<&Value>| match x {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    match v.get("goals") {
        None | Some(Value::Null) => (Vec::new(), None),
        Some(Value::Array(items)) => {
            let rows = items
                .iter()
                .map(|g| GoalRow {
                    name: text(g.get("name")),
                    target: text(g.get("target")),
                    measured: text(g.get("measured")),
                    met: g.get("met").and_then(Value::as_bool),
                })
                .collect();
            (rows, None)
        }
        Some(Value::Object(map)) => {
            let rows = map
                .iter()
                .map(|(name, val)| {
                    let measured = text(Some(val));
                    let upper = measured.to_ascii_uppercase();
                    let met = if upper.contains("NOT MET") {
                        Some(false)
                    } else if upper.contains("MET") {
                        Some(true)
                    } else {
                        None
                    };
                    GoalRow { name: name.clone(), target: String::new(), measured, met }
                })
                .collect();
            (rows, None)
        }
        Some(other) => (Vec::new(), Some(format!("\"goals\" is a {}: not shown", kind_of(other)))),
    }
}

/// A harness measurement, read loosely (absent fields are `None`).
#[derive(Clone, Debug)]
pub struct Meas<'a> {
    pub name: &'a str,
    pub ops_per_s: Option<f64>,
    pub elapsed_ns: Option<f64>,
    pub unit: &'a str,
    pub latency: Option<&'a Value>,
    pub params: &'a Value,
}

impl Meas<'_> {
    fn param(&self, key: &str) -> Option<f64> {
        self.params.get(key).and_then(Value::as_f64)
    }
}

static NULL: Value = Value::Null;

/// The report's measurements that have a name.
pub fn measurements(v: &Value) -> Vec<Meas<'_>> {
    let Some(items) = v.get("measurements").and_then(Value::as_array) else { return Vec::new() };
    items
        .iter()
        .filter_map(|m| {
            Some(Meas {
                name: m.get("name")?.as_str()?,
                ops_per_s: m.get("ops_per_s").and_then(Value::as_f64).filter(|x| x.is_finite()),
                elapsed_ns: m.get("elapsed_ns").and_then(Value::as_f64).filter(|x| x.is_finite()),
                unit: m.get("unit").and_then(Value::as_str).unwrap_or(""),
                latency: m.get("latency").filter(|l| l.is_object()),
                params: m.get("params").unwrap_or(&NULL),
            })
        })
        .collect()
}

/// The hdrhistogram percentiles the harness writes, with their quantile (1.0: the maximum).
const PERCENTILES: [(&str, f64); 5] =
    [("p50_ns", 0.5), ("p90_ns", 0.9), ("p99_ns", 0.99), ("p999_ns", 0.999), ("max_ns", 1.0)];

/// The devnet's finality percentiles in ms (`e2e` measurements' `params.finality_ms`).
const FINALITY_PERCENTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

/// Latency CDFs: per unit of latency sample (`op`, `block`, `batch`...), one line per
/// measurement through its percentiles; the `e2e` devnets' finality in a plot of its own.
pub fn latency_cdfs(suite: &str, ms: &[Meas]) -> Vec<Plot> {
    let mut groups: Vec<(String, Vec<Series>)> = Vec::new();
    let mut add = |unit: String, s: Series| match groups.iter_mut().find(|(u, _)| *u == unit) {
        Some((_, v)) => v.push(s),
        None => groups.push((unit, vec![s])),
    };
    for m in ms {
        if let Some(lat) = m.latency {
            let points = percentile_points(lat, &PERCENTILES, 1.0);
            if points.len() >= 2 {
                let unit = if m.unit.is_empty() { "sample".to_string() } else { m.unit.to_string() };
                add(unit, Series { name: m.name.into(), points });
            }
        }
        if let Some(fin) = m.params.get("finality_ms") {
            let points = percentile_points(fin, &FINALITY_PERCENTILES, 1e6);
            if points.len() >= 2 {
                add("finalized order (finality)".into(), Series { name: m.name.into(), points });
            }
        }
    }
    let mut plots = Vec::new();
    for (unit, series) in groups {
        let chunks: Vec<&[Series]> = series.chunks(CDF_SERIES_PER_PLOT).collect();
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let part = if n > 1 { format!(" ({}/{n})", i + 1) } else { String::new() };
            plots.push(Plot {
                kind: PlotKind::LatencyCdf,
                title: format!("{suite}: latency CDF per {unit}{part}"),
                x_label: format!("latency per {unit}"),
                y_label: "percentile".into(),
                caption: format!(
                    "Latency per {unit} at p50, p90, p99, p99.9 and the maximum (as recorded), one line per measurement; the y axis is in nines (each step a tenfold rarer latency)."
                ),
                data: PlotData::Cdf { series: chunk.to_vec() },
            });
        }
    }
    plots
}

/// `(value * scale, quantile)` for each of `keys` present as a positive number.
fn percentile_points(obj: &Value, keys: &[(&str, f64)], scale: f64) -> Vec<(f64, f64)> {
    keys.iter()
        .filter_map(|(k, q)| {
            let v = obj.get(*k)?.as_f64()? * scale;
            (v.is_finite() && v > 0.0).then_some((v, *q))
        })
        .collect()
}

/// `sigverify`: signatures/s against batch size, a line per backend (measurements named
/// `backend@batch` with `params.batch`); single-verify baselines as flat dashed lines.
pub fn sigverify_batches(suite: &str, ms: &[Meas]) -> Vec<Plot> {
    if suite != "sigverify" {
        return Vec::new();
    }
    let mut series: Vec<Series> = Vec::new();
    for m in ms {
        let (Some(rate), Some(batch)) = (m.ops_per_s, m.param("batch")) else { continue };
        let Some((backend, _)) = m.name.rsplit_once('@') else { continue };
        let backend = m.params.get("backend").and_then(Value::as_str).unwrap_or(backend);
        push_point(&mut series, backend, (batch, rate));
    }
    sort_points(&mut series);
    let Some((lo, hi)) = x_span(&series) else { return Vec::new() };
    let reference = ms
        .iter()
        .filter(|m| !m.name.contains('@'))
        .filter_map(|m| {
            let rate = m.ops_per_s?;
            Some(Series { name: format!("{} (baseline)", m.name), points: vec![(lo, rate), (hi, rate)] })
        })
        .collect();
    vec![Plot {
        kind: PlotKind::SigverifyBatch,
        title: "sigverify: signatures verified per second by batch size".into(),
        x_label: "batch size (signatures)".into(),
        y_label: "signatures/s".into(),
        caption: "Throughput of each signature backend against the batch it is given; dashed: the one-by-one baseline measured in the same run.".into(),
        data: PlotData::Lines { series, reference, x_log: true, y_log: false },
    }]
}

/// The GPU report of issue 7 (no `measurements`): arrays of `{batch, *_verifies_per_s}` per
/// kernel build, and the same machine's CPU `sigverify` figures (`backend@batch: ops/s`).
pub fn gpu_batches(suite: &str, v: &Value) -> Vec<Plot> {
    let Some(obj) = v.as_object() else { return Vec::new() };
    let mut series: Vec<Series> = Vec::new();
    for (key, val) in obj {
        let Some(rows) = val.as_array() else { continue };
        for row in rows {
            let Some(batch) = row.get("batch").and_then(Value::as_f64) else { continue };
            let Some(fields) = row.as_object() else { continue };
            for (field, rate) in fields {
                let (Some(what), Some(rate)) = (field.strip_suffix("_verifies_per_s"), rate.as_f64()) else {
                    continue;
                };
                push_point(&mut series, &format!("{key} ({})", what.replace('_', " ")), (batch, rate));
            }
        }
    }
    let cpu = v.get("cpu_same_machine_sigverify");
    if let Some(rates) = cpu.and_then(|c| c.get("ops_per_s")).and_then(Value::as_object) {
        let cores = cpu.and_then(|c| c.pointer("/machine/logical_cores")).and_then(Value::as_u64);
        let host = cores.map(|n| format!(", {n}-core host")).unwrap_or_default();
        for (name, rate) in rates {
            let Some((backend, batch)) = name.rsplit_once('@') else { continue };
            let (Ok(batch), Some(rate)) = (batch.parse::<f64>(), rate.as_f64()) else { continue };
            push_point(&mut series, &format!("cpu {backend}{host}"), (batch, rate));
        }
    }
    sort_points(&mut series);
    if series.is_empty() {
        return Vec::new();
    }
    vec![Plot {
        kind: PlotKind::SigverifyBatch,
        title: format!(
            "{}: signatures verified per second by batch size",
            suite.split(" (").next().unwrap_or(suite)
        ),
        x_label: "batch size (signatures)".into(),
        y_label: "signatures/s".into(),
        caption: "GPU kernel throughput (kernel alone and host round trip) against the batch size, with the same machine's CPU backends.".into(),
        data: PlotData::Lines { series, reference: Vec::new(), x_log: true, y_log: true },
    }]
}

/// `e2e`: finalized orders/s (steady state) against the offered rate, a line per devnet
/// scenario (measurements with `params.offered_rate`); dashed: offered = finalized, and the
/// signature-verification ceiling per validator where the report derived one.
pub fn e2e_load(suite: &str, ms: &[Meas]) -> Vec<Plot> {
    if suite != "e2e" {
        return Vec::new();
    }
    let mut series: Vec<Series> = Vec::new();
    for m in ms {
        let Some(offered) = m.param("offered_rate") else { continue };
        let Some(finalized) = m.param("steady_finalized_per_s").or(m.ops_per_s) else { continue };
        let scenario = m.name.rsplit_once('@').map_or(m.name, |(s, _)| s);
        push_point(&mut series, scenario, (offered, finalized));
    }
    sort_points(&mut series);
    let Some((_, hi)) = x_span(&series) else { return Vec::new() };
    let mut reference =
        vec![Series { name: "offered = finalized".into(), points: vec![(0.0, 0.0), (hi, hi)] }];
    if let Some(ceiling) = ms.iter().find(|m| m.name == "sig-ceiling-per-validator").and_then(|m| m.ops_per_s)
    {
        reference.push(Series {
            name: "signature ceiling per validator".into(),
            points: vec![(0.0, ceiling), (hi, ceiling)],
        });
    }
    vec![Plot {
        kind: PlotKind::E2eLoad,
        title: "e2e: finalized against offered load (4-validator devnet)".into(),
        x_label: "offered orders/s".into(),
        y_label: "finalized orders/s (steady state)".into(),
        caption: "Orders finalized per second in the devnet's steady state at each offered rate, a line per scenario; dashed: where finalized would equal offered, and the signature-verification ceiling per validator derived in the same run.".into(),
        data: PlotData::Lines { series, reference, x_log: false, y_log: false },
    }]
}

/// `ingress`: datagrams/s delivered against the rate offered by the paced sender
/// (measurements with `params.offered_pps`, named `backend@offered`), a line per backend.
pub fn ingress_sweep(suite: &str, ms: &[Meas]) -> Vec<Plot> {
    if suite != "ingress" {
        return Vec::new();
    }
    let mut series: Vec<Series> = Vec::new();
    for m in ms {
        let (Some(offered), Some(delivered)) = (m.param("offered_pps"), m.ops_per_s) else { continue };
        let backend = m.name.rsplit_once('@').map_or(m.name, |(b, _)| b);
        push_point(&mut series, backend, (offered, delivered));
    }
    sort_points(&mut series);
    let Some((_, hi)) = x_span(&series) else { return Vec::new() };
    vec![Plot {
        kind: PlotKind::IngressSweep,
        title: "ingress: delivered against offered datagrams/s".into(),
        x_label: "offered datagrams/s".into(),
        y_label: "delivered datagrams/s".into(),
        caption: "Datagrams each receive backend delivered at each rate the paced sender offered; dashed: delivered = offered.".into(),
        data: PlotData::Lines {
            series,
            reference: vec![Series { name: "delivered = offered".into(), points: vec![(0.0, 0.0), (hi, hi)] }],
            x_log: false,
            y_log: false,
        },
    }]
}

/// `ingress`: datagrams/s each backend delivered with the sender unpaced (unit `datagram`,
/// no `offered_pps`), a bar each.
pub fn ingress_backends(suite: &str, ms: &[Meas]) -> Vec<Plot> {
    if suite != "ingress" {
        return Vec::new();
    }
    let bars: Vec<Bar> = ms
        .iter()
        .filter(|m| m.unit == "datagram" && m.param("offered_pps").is_none())
        .filter_map(|m| {
            Some(Bar { label: m.name.into(), parts: vec![("delivered datagrams/s".into(), m.ops_per_s?)] })
        })
        .collect();
    if bars.is_empty() {
        return Vec::new();
    }
    vec![Plot {
        kind: PlotKind::IngressBackends,
        title: "ingress: datagrams/s per receive backend (unpaced sender)".into(),
        x_label: "delivered datagrams/s".into(),
        y_label: String::new(),
        caption: "Datagrams delivered per second by each receive backend and setup, one receiving thread, the sender as fast as it goes.".into(),
        data: PlotData::Bars { bars, unit: String::new() },
    }]
}

/// `storage`: each recovery (`recovery[-CASE]-total`) split into its parts: the log scan (what
/// the total leaves after the others), the snapshot load (`-snapshot-load`) and the replay of
/// the logged blocks (`-replay`), in ms. Without a snapshot-load figure, scan and load are one.
pub fn recovery(suite: &str, ms: &[Meas]) -> Vec<Plot> {
    if suite != "storage" {
        return Vec::new();
    }
    let ms_of = |name: &str| -> Option<f64> {
        ms.iter().find(|m| m.name == name).and_then(|m| m.elapsed_ns).map(|ns| ns / 1e6)
    };
    let mut bars = Vec::new();
    for m in ms {
        let Some(prefix) = m.name.strip_suffix("-total").filter(|p| p.starts_with("recovery")) else {
            continue;
        };
        let Some(total) = m.elapsed_ns.map(|ns| ns / 1e6) else { continue };
        let load = ms_of(&format!("{prefix}-snapshot-load"));
        let replay = ms_of(&format!("{prefix}-replay"));
        let mut parts = Vec::new();
        match (load, replay) {
            (Some(load), Some(replay)) => {
                parts.push(("log scan".to_string(), (total - load - replay).max(0.0)));
                parts.push(("snapshot load".into(), load));
                parts.push(("replay".into(), replay));
            }
            (None, Some(replay)) => {
                parts.push(("log scan + snapshot load".into(), (total - replay).max(0.0)));
                parts.push(("replay".into(), replay));
            }
            (Some(load), None) => {
                parts.push(("log scan + replay".into(), (total - load).max(0.0)));
                parts.push(("snapshot load".into(), load));
            }
            (None, None) => parts.push(("total".into(), total)),
        }
        let blocks = m
            .param("replayed_blocks")
            .map(|b| format!("{} blocks replayed", count(b)))
            .or_else(|| m.param("logged_blocks").map(|b| format!("{} blocks logged", count(b))));
        let accounts = m.param("accounts").map(|a| format!("{} accounts", count(a)));
        let detail: Vec<String> = blocks.into_iter().chain(accounts).collect();
        let mut label = prefix.to_string();
        if !detail.is_empty() {
            label = format!("{label} ({})", detail.join(", "));
        }
        bars.push(Bar { label, parts });
    }
    if bars.is_empty() {
        return Vec::new();
    }
    vec![Plot {
        kind: PlotKind::Recovery,
        title: "storage: recovery time by part".into(),
        x_label: "ms".into(),
        y_label: String::new(),
        caption: "Time to recover the state after a crash, split into the scan of the block log (what the total leaves after the other parts), the load of the latest durable snapshot and the replay of the blocks logged after it.".into(),
        data: PlotData::Bars { bars, unit: " ms".into() },
    }]
}

/// `chaos`: the faults the campaign applied, by kind (`faults`), and across its schedules
/// (`per_schedule`) the time from the last heal until finalization resumed (`resume_ms`) and
/// until every node was back at the chain's height (`catch_up_ms`), as distributions.
pub fn chaos(suite: &str, v: &Value) -> Vec<Plot> {
    if suite != "chaos" {
        return Vec::new();
    }
    let mut plots = Vec::new();
    let schedules = v.get("schedules").and_then(Value::as_u64).unwrap_or(0);
    if let Some(faults) = v.get("faults").and_then(Value::as_object) {
        let mut bars: Vec<Bar> = faults
            .iter()
            .filter_map(|(k, n)| Some(Bar { label: k.clone(), parts: vec![("faults".into(), n.as_f64()?)] }))
            .collect();
        bars.sort_by(|a, b| b.parts[0].1.total_cmp(&a.parts[0].1).then_with(|| a.label.cmp(&b.label)));
        if !bars.is_empty() {
            plots.push(Plot {
                kind: PlotKind::Chaos,
                title: format!("chaos: faults applied by kind over {} schedule(s)", count(schedules as f64)),
                x_label: "faults".into(),
                y_label: String::new(),
                caption: "How many faults of each kind the seeded schedules applied to the real validator and full-node processes (partitions by shape, loss, NFQUEUE delay, tbf bandwidth, SIGKILL, SIGSTOP, full disks).".into(),
                data: PlotData::Bars { bars, unit: String::new() },
            });
        }
    }
    let times = |key: &str| -> Vec<f64> {
        let mut t: Vec<f64> = v
            .get("per_schedule")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.get(key).and_then(Value::as_f64)).collect())
            .unwrap_or_default();
        t.sort_by(f64::total_cmp);
        t
    };
    let cdf = |name: &str, t: &[f64]| Series {
        name: name.into(),
        // The i-th smallest of n at quantile (i+1)/n: the last is the maximum.
        points: t.iter().enumerate().map(|(i, ms)| (ms * 1e6, (i + 1) as f64 / t.len() as f64)).collect(),
    };
    let series: Vec<Series> = [
        ("finalization resumed after the last heal", times("resume_ms")),
        ("every node back at the chain's height", times("catch_up_ms")),
    ]
    .iter()
    .filter(|(_, t)| !t.is_empty())
    .map(|(name, t)| cdf(name, t))
    .collect();
    if !series.is_empty() {
        plots.push(Plot {
            kind: PlotKind::Chaos,
            title: "chaos: recovery after the heal, across schedules".into(),
            x_label: "time after the last heal".into(),
            y_label: "share of schedules".into(),
            caption: "Per schedule, the time from healing its last fault until the validators finalized again, and until every node (restarted ones included) reached the chain's height; as a distribution over the campaign's schedules.".into(),
            data: PlotData::Cdf { series },
        });
    }
    plots
}

/// `1,000,000`: a count with thousands separators (fractions rounded).
pub fn count(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

fn push_point(series: &mut Vec<Series>, name: &str, p: (f64, f64)) {
    if !(p.0.is_finite() && p.1.is_finite()) {
        return;
    }
    match series.iter_mut().find(|s| s.name == name) {
        Some(s) => s.points.push(p),
        None => series.push(Series { name: name.into(), points: vec![p] }),
    }
}

fn sort_points(series: &mut [Series]) {
    for s in series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
}

fn x_span(series: &[Series]) -> Option<(f64, f64)> {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    (lo <= hi).then_some((lo, hi))
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub fn utc_date(unix_s: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = (unix_s / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
