//! The series each plot is drawn from, extracted from small reports built here (not copies
//! of perf/results), and the page's escaping and skips.

use super::extract::{self, Bar, Entry, PlotData, PlotKind, Series};
use super::{html, natural_cmp, plots};
use serde_json::{Value, json};

fn meas(name: &str, ops_per_s: f64, unit: &str, latency: Value, params: Value) -> Value {
    json!({"name": name, "ops": 100, "elapsed_ns": 1_000_000, "ops_per_s": ops_per_s,
           "latency": latency, "unit": unit, "params": params})
}

fn lat(p50: u64, p90: u64, p99: u64, p999: u64, max: u64) -> Value {
    json!({"p50_ns": p50, "p90_ns": p90, "p99_ns": p99, "p999_ns": p999, "max_ns": max, "mean_ns": 1.0})
}

fn report(suite: &str, measurements: Vec<Value>) -> Value {
    json!({
        "suite": suite, "quick": false, "seed": 1, "started_unix_s": 1_780_000_000u64,
        "machine": {"cpu_model": "Test CPU", "logical_cores": 2, "memory_gib": 23.5,
                    "kernel": "6.1", "cpu_flags_of_note": [], "build_profile": "release"},
        "measurements": measurements, "ratios": [],
        "goals": [{"name": "g1", "target": "t", "measured": "m", "met": true},
                  {"name": "g2", "target": "t", "measured": "m", "met": false}],
        "notes": [], "peak_rss_mib": 1.0
    })
}

fn view(doc: &Value) -> extract::ReportView {
    match extract::entries("fixture.json", doc).remove(0) {
        Entry::Report(r) => *r,
        Entry::Skipped { reason, .. } => panic!("skipped: {reason}"),
    }
}

fn of_kind(r: &extract::ReportView, kind: PlotKind) -> Vec<&extract::Plot> {
    r.plots.iter().filter(|p| p.kind == kind).collect()
}

fn lines(p: &extract::Plot) -> (&[Series], &[Series]) {
    match &p.data {
        PlotData::Lines { series, reference, .. } => (series, reference),
        other => panic!("not lines: {other:?}"),
    }
}

#[test]
fn latency_cdf_per_unit_through_the_percentiles() {
    let doc = report(
        "matching",
        vec![
            meas("book", 1e6, "op", lat(100, 150, 200, 400, 9000), json!({})),
            meas("lobster", 5e5, "op", lat(300, 0, 900, 1500, 20000), json!({})),
            meas(
                "book-batched",
                1e4,
                "batch of 1000 ops",
                lat(50_000, 60_000, 70_000, 80_000, 90_000),
                json!({}),
            ),
            meas("no-latency", 1e4, "op", Value::Null, json!({})),
        ],
    );
    let r = view(&doc);
    let cdfs = of_kind(&r, PlotKind::LatencyCdf);
    assert_eq!(cdfs.len(), 2, "one CDF per unit: {cdfs:#?}");
    let PlotData::Cdf { series } = &cdfs[0].data else { panic!("not a CDF") };
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].name, "book");
    assert_eq!(
        series[0].points,
        vec![(100.0, 0.5), (150.0, 0.9), (200.0, 0.99), (400.0, 0.999), (9000.0, 1.0)]
    );
    // A zero percentile (not recorded) is left out rather than drawn at 0 on a log axis.
    assert_eq!(series[1].points, vec![(300.0, 0.5), (900.0, 0.99), (1500.0, 0.999), (20000.0, 1.0)]);
    assert!(cdfs[0].title.contains("per op"), "{}", cdfs[0].title);
    let PlotData::Cdf { series } = &cdfs[1].data else { panic!("not a CDF") };
    assert_eq!(series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["book-batched"]);
}

#[test]
fn latency_cdf_splits_many_measurements_and_reads_e2e_finality() {
    let many: Vec<Value> =
        (0..10).map(|i| meas(&format!("m{i}"), 1.0, "op", lat(1, 2, 3, 4, 5), json!({}))).collect();
    let r = view(&report("x", many));
    let cdfs = of_kind(&r, PlotKind::LatencyCdf);
    let sizes: Vec<usize> = cdfs
        .iter()
        .map(|p| match &p.data {
            PlotData::Cdf { series } => series.len(),
            _ => 0,
        })
        .collect();
    assert_eq!(sizes, [8, 2]);
    assert!(cdfs[1].title.ends_with("(2/2)"), "{}", cdfs[1].title);

    let doc = report(
        "e2e",
        vec![meas(
            "devnet-calm@1000",
            1000.0,
            "finalized order",
            Value::Null,
            json!({"offered_rate": 1000, "finality_ms": {"p50": 14.0, "p99": 20.0, "p999": 21.5}}),
        )],
    );
    let r = view(&doc);
    let cdfs = of_kind(&r, PlotKind::LatencyCdf);
    assert_eq!(cdfs.len(), 1);
    let PlotData::Cdf { series } = &cdfs[0].data else { panic!("not a CDF") };
    assert_eq!(series[0].points, vec![(14e6, 0.5), (20e6, 0.99), (21.5e6, 0.999)]);
}

#[test]
fn sigverify_throughput_by_batch_per_backend() {
    let doc = report(
        "sigverify",
        vec![
            meas("dalek-single", 27_000.0, "batch", Value::Null, json!({"backend": "dalek", "batch": 1024})),
            meas("batch@64", 55_000.0, "batch", Value::Null, json!({"backend": "batch", "batch": 64})),
            meas("batch@1", 27_500.0, "batch", Value::Null, json!({"backend": "batch", "batch": 1})),
            meas("parallel@64", 89_000.0, "batch", Value::Null, json!({"backend": "parallel", "batch": 64})),
            meas("parallel@1", 27_000.0, "batch", Value::Null, json!({"backend": "parallel", "batch": 1})),
            meas("odd@7", 1.0, "batch", Value::Null, json!({"backend": "odd"})),
        ],
    );
    let r = view(&doc);
    let p = of_kind(&r, PlotKind::SigverifyBatch);
    assert_eq!(p.len(), 1);
    let (series, reference) = lines(p[0]);
    assert_eq!(
        series,
        [
            Series { name: "batch".into(), points: vec![(1.0, 27_500.0), (64.0, 55_000.0)] },
            Series { name: "parallel".into(), points: vec![(1.0, 27_000.0), (64.0, 89_000.0)] },
        ]
    );
    assert_eq!(
        reference,
        [Series { name: "dalek-single (baseline)".into(), points: vec![(1.0, 27_000.0), (64.0, 27_000.0)] }]
    );
    // Another suite's `backend@batch` measurements (e2e's sigverify passes) are not this plot.
    let doc = report("e2e", vec![meas("batch@64", 1.0, "batch", Value::Null, json!({"batch": 64}))]);
    assert!(of_kind(&view(&doc), PlotKind::SigverifyBatch).is_empty());
}

#[test]
fn sigverify_gpu_report_of_issue_7() {
    let doc = json!({
        "suite": "gpu ed25519 kernel",
        "device": "Some GPU",
        "kernel_a": [{"batch": 1024, "kernel_ms": 4.0, "kernel_verifies_per_s": 200_000, "round_trip_verifies_per_s": 190_000},
                     {"batch": 64, "kernel_verifies_per_s": 20_000}],
        "cpu_same_machine_sigverify": {"machine": {"logical_cores": 16},
                                       "ops_per_s": {"batch@1": 16_000.0, "batch@16": 38_000.0}},
        "goals": {"5M verifies/s": "4.4M/s: NOT MET", "10x": "12x: MET", "other": "n/a"}
    });
    let r = view(&doc);
    assert_eq!(r.machine, "Some GPU");
    let p = of_kind(&r, PlotKind::SigverifyBatch);
    assert_eq!(p.len(), 1);
    let (series, _) = lines(p[0]);
    let by_name = |n: &str| series.iter().find(|s| s.name == n).map(|s| s.points.clone());
    assert_eq!(by_name("kernel_a (kernel)"), Some(vec![(64.0, 20_000.0), (1024.0, 200_000.0)]));
    assert_eq!(by_name("kernel_a (round trip)"), Some(vec![(1024.0, 190_000.0)]));
    assert_eq!(by_name("cpu batch, 16-core host"), Some(vec![(1.0, 16_000.0), (16.0, 38_000.0)]));
    let met: Vec<(String, Option<bool>)> = r.goals.iter().map(|g| (g.name.clone(), g.met)).collect();
    assert_eq!(
        met,
        [("10x".into(), Some(true)), ("5M verifies/s".into(), Some(false)), ("other".into(), None)]
    );
}

#[test]
fn e2e_finalized_against_offered() {
    let doc = report(
        "e2e",
        vec![
            meas("parallel@256", 117_000.0, "batch of 256 signatures", Value::Null, json!({"batch": 256})),
            meas(
                "devnet-calm@2000",
                2013.0,
                "finalized order",
                Value::Null,
                json!({"offered_rate": 2000, "steady_finalized_per_s": 2010.0}),
            ),
            meas("devnet-calm@1000", 1004.0, "finalized order", Value::Null, json!({"offered_rate": 1000})),
            meas(
                "devnet-flash-crash@2000",
                1978.0,
                "finalized order",
                Value::Null,
                json!({"offered_rate": 2000, "steady_finalized_per_s": 1978.0}),
            ),
            meas("sig-ceiling-per-validator", 29_270.0, "order/s", Value::Null, json!({})),
        ],
    );
    let r = view(&doc);
    let p = of_kind(&r, PlotKind::E2eLoad);
    assert_eq!(p.len(), 1);
    let (series, reference) = lines(p[0]);
    assert_eq!(
        series,
        [
            // steady_finalized_per_s where present, else ops_per_s; sorted by offered rate.
            Series { name: "devnet-calm".into(), points: vec![(1000.0, 1004.0), (2000.0, 2010.0)] },
            Series { name: "devnet-flash-crash".into(), points: vec![(2000.0, 1978.0)] },
        ]
    );
    assert_eq!(reference[0].points, vec![(0.0, 0.0), (2000.0, 2000.0)]);
    assert_eq!(reference[1].name, "signature ceiling per validator");
    assert_eq!(reference[1].points, vec![(0.0, 29_270.0), (2000.0, 29_270.0)]);
}

#[test]
fn ingress_sweep_and_backends() {
    let doc = report(
        "ingress",
        vec![
            meas("recv_from-loop", 950_000.0, "datagram", Value::Null, json!({"recv_batch": 1})),
            meas(
                "recv_from-loop/receiver-cpu",
                1_070_000.0,
                "datagram per receiver-thread CPU-second",
                Value::Null,
                json!({}),
            ),
            meas(
                "xdp@veth/split@700000",
                699_999.0,
                "datagram",
                Value::Null,
                json!({"offered_pps": 700_000}),
            ),
            meas(
                "xdp@veth/split@400000",
                399_999.0,
                "datagram",
                Value::Null,
                json!({"offered_pps": 400_000}),
            ),
            meas(
                "mmsg@veth/split@400000",
                390_000.0,
                "datagram",
                Value::Null,
                json!({"offered_pps": 400_000}),
            ),
            meas("xdp@veth/split/peak", 700_000.0, "datagram/s delivered", Value::Null, json!({})),
        ],
    );
    let r = view(&doc);
    let sweep = of_kind(&r, PlotKind::IngressSweep);
    assert_eq!(sweep.len(), 1);
    let (series, reference) = lines(sweep[0]);
    assert_eq!(
        series,
        [
            Series {
                name: "xdp@veth/split".into(),
                points: vec![(400_000.0, 399_999.0), (700_000.0, 699_999.0)]
            },
            Series { name: "mmsg@veth/split".into(), points: vec![(400_000.0, 390_000.0)] },
        ]
    );
    assert_eq!(reference[0].points, vec![(0.0, 0.0), (700_000.0, 700_000.0)]);
    let backends = of_kind(&r, PlotKind::IngressBackends);
    let PlotData::Bars { bars, .. } = &backends[0].data else { panic!("not bars") };
    assert_eq!(
        bars,
        &[Bar { label: "recv_from-loop".into(), parts: vec![("delivered datagrams/s".into(), 950_000.0)] }]
    );
    // Without sweep points (issue 6), the backends only.
    let doc = report("ingress", vec![meas("recv_from-loop", 9.0, "datagram", Value::Null, json!({}))]);
    let r = view(&doc);
    assert!(of_kind(&r, PlotKind::IngressSweep).is_empty());
    assert_eq!(of_kind(&r, PlotKind::IngressBackends).len(), 1);
}

#[test]
fn recovery_split_into_scan_load_replay() {
    let m = |name: &str, elapsed_ms: f64, params: Value| {
        json!({"name": name, "ops": 1, "elapsed_ns": elapsed_ms * 1e6, "ops_per_s": 1.0,
               "latency": null, "unit": "recovery", "params": params})
    };
    let doc = report(
        "storage",
        vec![
            m("recovery-worst-total", 528.0, json!({"replayed_blocks": 855, "accounts": 1_000_000})),
            m("recovery-worst-snapshot-load", 177.0, json!({})),
            m("recovery-worst-replay", 341.0, json!({})),
            m("recovery-worst-replay-in-full", 1689.0, json!({})),
            m("recovery-1000-total", 588.0, json!({"logged_blocks": 1000})),
            m("recovery-1000-replay", 386.0, json!({})),
            m("snapshot-write-sync", 100.0, json!({})),
        ],
    );
    let r = view(&doc);
    let p = of_kind(&r, PlotKind::Recovery);
    assert_eq!(p.len(), 1);
    let PlotData::Bars { bars, unit } = &p[0].data else { panic!("not bars") };
    assert_eq!(unit, " ms");
    assert_eq!(bars.len(), 2);
    assert_eq!(bars[0].label, "recovery-worst (855 blocks replayed, 1,000,000 accounts)");
    let parts: Vec<(&str, i64)> = bars[0].parts.iter().map(|(n, v)| (n.as_str(), v.round() as i64)).collect();
    assert_eq!(parts, [("log scan", 10), ("snapshot load", 177), ("replay", 341)]);
    assert_eq!(bars[1].label, "recovery-1000 (1,000 blocks logged)");
    let parts: Vec<(&str, i64)> = bars[1].parts.iter().map(|(n, v)| (n.as_str(), v.round() as i64)).collect();
    assert_eq!(parts, [("log scan + snapshot load", 202), ("replay", 386)]);
}

#[test]
fn goals_machine_and_date() {
    let r = view(&report("x", vec![]));
    assert_eq!(r.machine, "Test CPU, 2 logical cores, 23.5 GiB, kernel 6.1, release build");
    assert_eq!(r.goals.iter().map(|g| g.met).collect::<Vec<_>>(), [Some(true), Some(false)]);
    assert_eq!(r.date.as_deref(), Some("2026-05-28"));
    assert_eq!(extract::utc_date(0), "1970-01-01");
    assert_eq!(extract::utc_date(951_782_400), "2000-02-29");
}

#[test]
fn unknown_shapes_are_skipped_with_a_reason() {
    let doc = json!([
        {"finalized_height": 3, "orders_submitted": 10},
        17,
        {"suite": "devnet", "machine": {"logical_cores": 2, "note": "shared VM"}, "runs": [],
         "goals": "all good"},
        {"suite": "odd", "measurements": {"not": "an array"}}
    ]);
    let es = extract::entries("mixed.json", &doc);
    assert_eq!(es.len(), 4);
    let Entry::Skipped { source, reason } = &es[0] else { panic!("{:?}", es[0]) };
    assert_eq!(source, "mixed.json [0]");
    assert!(reason.contains("no \"suite\"") && reason.contains("finalized_height"), "{reason}");
    let Entry::Skipped { reason, .. } = &es[1] else { panic!("{:?}", es[1]) };
    assert!(reason.contains("number"), "{reason}");
    let Entry::Report(r) = &es[2] else { panic!("{:?}", es[2]) };
    assert_eq!(r.machine, "2 logical cores, shared VM");
    assert!(r.plots.is_empty());
    assert!(r.notes.iter().any(|n| n.contains("\"goals\" is a string")), "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.contains("no \"measurements\"")), "{:?}", r.notes);
    let Entry::Report(r) = &es[3] else { panic!("{:?}", es[3]) };
    assert!(r.notes.iter().any(|n| n.contains("not an array")), "{:?}", r.notes);
    assert!(matches!(&extract::entries("e.json", &json!([]))[0], Entry::Skipped { .. }));
}

#[test]
fn page_escapes_report_text_and_draws_each_kind() {
    let evil = "<script>alert('x')</script>&";
    let mut doc = report(
        "sigverify",
        vec![
            meas(&format!("{evil}@1"), 1.0, "op", lat(1, 2, 3, 4, 5), json!({"backend": evil, "batch": 1})),
            meas("b@16", 2.0, "op", Value::Null, json!({"backend": "b", "batch": 16})),
        ],
    );
    doc["goals"] = json!([{"name": evil, "target": evil, "measured": evil, "met": true}]);
    doc["machine"]["cpu_model"] = json!(evil);
    let mut entries = extract::entries("x.json", &doc);
    entries.extend(extract::entries(evil, &json!(3)));
    let page = html::page(&entries, 2);
    assert!(!page.contains("<script"), "unescaped text on the page");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"));
    assert_eq!(page.matches("data-plot-kind=\"sigverify-batch\"").count(), 2, "figure and svg");
    assert_eq!(page.matches("<svg ").count(), 2);
    assert!(page.contains("Skipped: not a report"));
    assert_eq!(html::escape("a\"b'c<d>e&f"), "a&quot;b&#39;c&lt;d&gt;e&amp;f");
}

#[test]
fn every_kind_renders_drawn_svg() {
    let s = |name: &str, pts: &[(f64, f64)]| Series { name: name.into(), points: pts.to_vec() };
    let cases = [
        (
            PlotKind::LatencyCdf,
            PlotData::Cdf { series: vec![s("a", &[(100.0, 0.5), (200.0, 0.99), (900.0, 1.0)])] },
        ),
        (
            PlotKind::SigverifyBatch,
            PlotData::Lines {
                series: vec![s("a", &[(1.0, 10.0), (64.0, 50.0)])],
                reference: vec![s("base", &[(1.0, 9.0), (64.0, 9.0)])],
                x_log: true,
                y_log: false,
            },
        ),
        (
            PlotKind::E2eLoad,
            PlotData::Lines {
                series: vec![s("a", &[(1.0, 1.0), (2.0, 1.5)])],
                reference: vec![],
                x_log: false,
                y_log: true,
            },
        ),
        (
            PlotKind::Recovery,
            PlotData::Bars {
                bars: vec![Bar {
                    label: "w".into(),
                    parts: vec![("scan".into(), 10.0), ("load".into(), 177.0)],
                }],
                unit: " ms".into(),
            },
        ),
    ];
    for (kind, data) in cases {
        let plot = extract::Plot {
            kind,
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            data,
            caption: String::new(),
        };
        let svg = plots::render(&plot).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert!(svg.starts_with(&format!("<svg data-plot-kind=\"{}\"", kind.id())), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let drawn =
            svg.matches("<polyline").count() + svg.matches("<path").count() + svg.matches("<rect").count();
        assert!(drawn >= 3, "{kind:?}: {drawn} drawn elements");
    }
    let empty = extract::Plot {
        kind: PlotKind::E2eLoad,
        title: "t".into(),
        x_label: String::new(),
        y_label: String::new(),
        data: PlotData::Lines { series: vec![], reference: vec![], x_log: false, y_log: false },
        caption: String::new(),
    };
    assert!(plots::render(&empty).is_err(), "no points is an error, not a panic");
}

#[test]
fn axis_numbers_and_nines() {
    assert_eq!(plots::si(1_250_000.0), "1.25M");
    assert_eq!(plots::si(45_600.0), "45.6k");
    assert_eq!(plots::si(789.0), "789");
    assert_eq!(plots::si(0.5), "0.5");
    assert_eq!(extract::count(1_000_000.0), "1,000,000");
    assert_eq!(extract::count(855.0), "855");
    assert_eq!(plots::duration_ns(17_800_000.0), "17.8 ms");
    assert_eq!(plots::duration_ns(850.0), "850 ns");
    assert!((plots::nines(0.99) - 2.0).abs() < 1e-9);
    assert!((plots::nines(0.5) - std::f64::consts::LOG10_2).abs() < 1e-9);
    assert_eq!(plots::nines(1.0), 4.0);
    let mut names = vec!["issue21-a.json", "issue3-b.json", "issue2-c.json", "issue10-d.json"];
    names.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(names, ["issue2-c.json", "issue3-b.json", "issue10-d.json", "issue21-a.json"]);
}

#[test]
fn chaos_faults_by_kind_and_recovery_distributions() {
    let mut doc = report("chaos", vec![meas("schedule", 1.0, "schedule", lat(1, 2, 3, 4, 5), json!({}))]);
    doc["schedules"] = json!(3);
    doc["faults"] = json!({"kill": 2, "loss": 5, "pause": 2});
    doc["per_schedule"] = json!([
        {"seed": 1, "resume_ms": 300, "catch_up_ms": 900},
        {"seed": 2, "resume_ms": 100, "catch_up_ms": 100},
        {"seed": 3, "resume_ms": 200}
    ]);
    let r = view(&doc);
    let p = of_kind(&r, PlotKind::Chaos);
    assert_eq!(p.len(), 2, "{p:?}");
    let PlotData::Bars { bars, .. } = &p[0].data else { panic!("not bars") };
    let got: Vec<(&str, f64)> = bars.iter().map(|b| (b.label.as_str(), b.parts[0].1)).collect();
    assert_eq!(got, [("loss", 5.0), ("kill", 2.0), ("pause", 2.0)], "most first, then by name");
    assert!(p[0].title.contains("over 3 schedule(s)"));
    let PlotData::Cdf { series } = &p[1].data else { panic!("not a CDF") };
    assert_eq!(series[0].points, [(100e6, 1.0 / 3.0), (200e6, 2.0 / 3.0), (300e6, 1.0)]);
    // A schedule without a catch-up figure is left out of that line only.
    assert_eq!(series[1].points, [(100e6, 0.5), (900e6, 1.0)]);
    // Not a chaos report: no chaos plots.
    assert!(of_kind(&view(&report("storage", vec![])), PlotKind::Chaos).is_empty());
}
