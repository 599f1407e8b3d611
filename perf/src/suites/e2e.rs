//! Suite `e2e`: end to end on this machine, finalized orders/s of a 4-validator devnet against
//! the signature-verification ceiling measured in the same run.
//!
//! 1. **Ceiling.** Raw ed25519 verifies/s of this machine: `bastion-accel`'s `parallel` backend
//!    (every core) on batches of 256 distinct valid signatures over 100-byte messages, for about
//!    2 s (quick: 0.3 s), before the devnet runs and again after them (the higher counts: the
//!    machine is shared); single-core `batch` on the same batches alongside. Every validator
//!    verifies every order and the 4 validators share the machine, so the ceiling on finalized
//!    orders/s is the raw figure divided by 4. (A validator also checks the signatures of a
//!    peer's proposal; with the verify tile's cache of what it already verified, that check is
//!    mostly cache hits, so the ceiling counts one verification per validator per order, as the
//!    issue defines it; the figure for two full verifications is recorded alongside.)
//! 2. **Devnet runs.** `bastion devnet --scenario calm --full-nodes 0 --submit direct` (4 `bastion
//!    run` processes on loopback plus the load generator, all on this machine; each order sent
//!    to every validator's ingress, the pipeline the ceiling is about) at increasing offered
//!    rates, stopping once
//!    finalized/submitted drops below 0.9, finality p99 exceeds 1 s, or the generator cannot send
//!    the offered rate. The load generator first funds every trader (two deposit passes at
//!    5,000/s, a 1 s pause between them and 0.5 s after), then sends orders, batched with
//!    `sendmmsg`; it reports the CPU its thread used while trading, and the headline also gives
//!    the fraction of the ceiling with that share of the machine taken out. Steady-state rates
//!    come from the devnet's progress lines (every 0.5 s: orders sent, transactions finalized):
//!    from 1 s after the first order to 0.5 s before the end. The whole-run averages from the devnet's JSON
//!    summary are recorded too.
//! 3. **Headline.** The best sustained (not saturated) steady-state finalized orders/s over the
//!    ceiling (the ratio `finalized_vs_ceiling`), goal at least 0.70 (issue 21), with that
//!    run's finality p50/p99; a run at half of the ceiling, goal finality p99 at most 100 ms
//!    after the chain's first 2 s (the devnet's `finality_after_warmup_ms`); the largest
//!    validator's peak RSS (VmHWM) of every run. As context: the default devnet (every order
//!    gossiped over the public network, one full node) at 2000 orders/s against the pipeline
//!    run at that rate, and a `flash-crash` run at 2000 orders/s (liquidations,
//!    auto-deleveraging, insurance fund).
//!
//! Needs the `bastion` binary: `$BASTION_BIN`, else next to this executable (`cargo build
//! --release -p bastion`).

use crate::harness::{self, Ctx, Measurement, Percentiles, Report};
use bastion_accel::{Backend, OwnedSigItem, SigItem};
use serde_json::json;
use std::hint::black_box;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Validators of the devnet, each verifying every order.
const VALIDATORS: u64 = 4;
/// Signatures per verification call in the ceiling measurement.
const BATCH: usize = 256;
/// Length of each signed message (about an order's signed bytes).
const MESSAGE_LEN: usize = 100;
/// The goal (issue 21; 0.60 in issue 6): finalized orders/s at least this fraction of the
/// ceiling.
const GOAL_FRACTION: f64 = 0.70;
/// The goal's latency bound: finality p99 (after warm-up) at half of the ceiling, ms.
const HALF_CEILING_P99_MS: f64 = 100.0;
/// A run is saturated below this finalized/submitted fraction (steady state).
const SATURATED_BELOW: f64 = 0.9;
/// ... or above this finality p99.
const P99_LIMIT_MS: f64 = 1000.0;
/// Steady state starts this long after the first order was sent (pipeline fill).
const STEADY_LAG_S: f64 = 1.0;
/// ... and ends this long before the validators' `--duration` is up.
const STEADY_TAIL_S: f64 = 0.5;
/// Grace past `--duration` for the devnet to stop, replay and summarize.
const EXIT_GRACE: Duration = Duration::from_secs(90);
/// Rate of the flash-crash context run.
const FLASH_RATE: u64 = 2000;
const CEILING: &str = "sig-ceiling-per-validator";

/// Kills and reaps the child still running when dropped (suite error or panic).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Verifies `items` with `backend` over and over for `budget` (after one untimed call).
fn verify_rate(backend: Backend, items: &[SigItem<'_>], budget: Duration) -> Result<Measurement, String> {
    let v = bastion_accel::verifier(backend).map_err(|e| format!("{}: {e}", backend.name()))?;
    let mut out: Vec<bool> = Vec::with_capacity(items.len());
    v.verify_into(items, &mut out);
    if let Some(i) = out.iter().position(|ok| !ok) {
        return Err(format!("backend {} rejects generated signature {i}", backend.name()));
    }
    let mut h = harness::histogram();
    let mut rounds = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget || rounds < 2 {
        let t = Instant::now();
        v.verify_into(black_box(items), &mut out);
        black_box(&out);
        h.saturating_record((t.elapsed().as_nanos() as u64).max(1));
        rounds += 1;
    }
    let elapsed = start.elapsed();
    let ops = rounds * items.len() as u64;
    Ok(Measurement {
        name: format!("{}@{}", backend.name(), items.len()),
        ops,
        elapsed_ns: elapsed.as_nanos() as u64,
        ops_per_s: ops as f64 / elapsed.as_secs_f64().max(1e-9),
        latency: Some(Percentiles::from_histogram(&h)),
        unit: format!("batch of {} signatures", items.len()),
        params: json!({
            "backend": backend.name(),
            "batch": items.len(),
            "rounds": rounds,
            "message_len": MESSAGE_LEN,
            "distinct_keys": true,
            "cores": cores(),
            "curve_backend": bastion_accel::curve_backend(),
        }),
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// One progress line of `bastion devnet`: seconds since start, orders sent, transactions
/// finalized (the most any validator reports; deposits included), highest height.
#[derive(Clone, Copy, Debug)]
struct Progress {
    t: f64,
    sent: u64,
    finalized: u64,
    height: u64,
}

/// The progress records in the devnet's stdout (carriage-return separated).
fn parse_progress(text: &str) -> Vec<Progress> {
    let mut out = Vec::new();
    for rec in text.split(['\r', '\n']) {
        let Some(rest) = rec.trim_start().strip_prefix("t=") else { continue };
        let Some(t) = rest.trim_start().split('s').next().and_then(|v| v.trim().parse::<f64>().ok()) else {
            continue;
        };
        let toks: Vec<&str> = rest.split_whitespace().collect();
        let after = |key: &str| {
            toks.iter().position(|w| *w == key).and_then(|i| toks.get(i + 1)).and_then(|v| v.parse().ok())
        };
        if let (Some(sent), Some(finalized), Some(height)) =
            (after("sent"), after("finalized"), after("height"))
        {
            out.push(Progress { t, sent, finalized, height });
        }
    }
    out
}

/// The steady-state window: from `STEADY_LAG_S` after the first order to `STEADY_TAIL_S`
/// before the end of `duration` (which the devnet counts from its first finalized block),
/// starting no earlier than the record where `deposits` transactions (the funding) had
/// finalized, so that the window counts orders only.
fn steady_window(p: &[Progress], duration: f64, deposits: u64) -> Option<(Progress, Progress)> {
    let first_sent = p.iter().find(|r| r.sent > 0)?.t;
    let first_block = p.iter().find(|r| r.height > 0)?.t;
    let begin = *p.iter().find(|r| r.t >= first_sent + STEADY_LAG_S && r.finalized >= deposits)?;
    let end = *p.iter().rev().find(|r| r.t <= first_block + duration - STEADY_TAIL_S)?;
    (end.t - begin.t >= 1.0).then_some((begin, end))
}

/// The last lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.split(['\r', '\n']).filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What one devnet run gave.
#[derive(Debug)]
struct RunResult {
    name: String,
    offered: u64,
    steady_submitted_per_s: f64,
    steady_finalized_per_s: f64,
    steady_fraction: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Finality p50 and p99 without the first `WARMUP_S` of the chain (the devnet's
    /// `finality_after_warmup_ms`).
    steady_p50_ms: f64,
    steady_p99_ms: f64,
    /// Peak resident memory of the largest validator process, MiB.
    peak_rss_mib: f64,
    /// Cores the load generator's thread kept busy while trading (its CPU-s over wall-s).
    loadgen_cores: f64,
}

impl RunResult {
    /// The load generator sent less than 95% of the offered rate.
    fn generator_limited(&self) -> bool {
        self.steady_submitted_per_s < 0.95 * self.offered as f64
    }

    fn saturated(&self) -> bool {
        self.steady_fraction < SATURATED_BELOW || self.p99_ms > P99_LIMIT_MS
    }
}

/// Which devnet a run starts: the validator pipeline the ceiling is about, or the default
/// devnet with the public network carrying every order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// `--full-nodes 0 --submit direct`: the load generator sends each order to every
    /// validator's ingress, as the ceiling assumes (each validator verifies every order once,
    /// from its own ingress); the validators are on the public network (blocks published),
    /// with no transaction gossip and no full node.
    Pipeline,
    /// The default devnet: each order sent once, to one validator, and gossiped over libp2p to
    /// the others and to one full node, which verifies it too.
    Public,
}

impl Setup {
    fn args(self) -> &'static [&'static str] {
        match self {
            Setup::Pipeline => &["--full-nodes", "0", "--submit", "direct"],
            Setup::Public => &[],
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Setup::Pipeline => "",
            Setup::Public => "-public",
        }
    }
}

/// Runs `bastion devnet` once and records it.
#[allow(clippy::too_many_arguments)]
fn devnet(
    bin: &Path,
    dir: &Path,
    setup: Setup,
    scenario: &str,
    rate: u64,
    secs: u64,
    traders: u64,
    report: &mut Report,
) -> Result<(RunResult, serde_json::Value), String> {
    let name = format!("devnet-{scenario}{}@{rate}", setup.suffix());
    let json_path = dir.join(format!("{name}.json"));
    let stdout_path = dir.join(format!("{name}.stdout"));
    let stderr_path = dir.join(format!("{name}.stderr"));
    let open = |p: &Path| std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()));
    let mut cmd = Command::new(bin);
    cmd.arg("devnet")
        .args(["--duration", &secs.to_string(), "--rate", &rate.to_string()])
        .args(["--traders", &traders.to_string(), "--scenario", scenario])
        .args(setup.args())
        .arg("--json")
        .arg(&json_path)
        .stdin(Stdio::null())
        .stdout(open(&stdout_path)?)
        .stderr(open(&stderr_path)?);
    eprintln!(
        "  running {} devnet --duration {secs} --rate {rate} --traders {traders} --scenario {scenario} {}",
        bin.display(),
        setup.args().join(" ")
    );
    let started = Instant::now();
    let mut child = Guard(cmd.spawn().map_err(|e| format!("cannot start {} devnet: {e}", bin.display()))?);
    let deadline = Duration::from_secs(secs) + EXIT_GRACE;
    let status = loop {
        if let Some(s) = child.0.try_wait().map_err(|e| format!("{name}: {e}"))? {
            break s;
        }
        if started.elapsed() > deadline {
            return Err(format!(
                "{name}: `bastion devnet` still running {:.0} s after a {secs} s --duration; killed. stdout \
                 ends:\n{}",
                started.elapsed().as_secs_f64(),
                tail(&stdout_path, 3)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall = started.elapsed();
    if !status.success() {
        return Err(format!(
            "{name}: `bastion devnet` exited with {status}; stderr ends:\n{}\nstdout ends:\n{}",
            tail(&stderr_path, 10),
            tail(&stdout_path, 3)
        ));
    }
    let summary: serde_json::Value = std::fs::read(&json_path)
        .map_err(|e| format!("{name}: cannot read {}: {e}", json_path.display()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("{name}: bad summary JSON: {e}")))?;
    let progress = parse_progress(&std::fs::read_to_string(&stdout_path).unwrap_or_default());
    let u = |k: &str| summary[k].as_u64().unwrap_or(0);
    let f = |k: &str| summary[k].as_f64().unwrap_or(f64::NAN);
    let p50_ms = summary["finality_ms"]["p50"].as_f64().unwrap_or(f64::NAN);
    let p99_ms = summary["finality_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
    let p999_ms = summary["finality_ms"]["p999"].as_f64().unwrap_or(f64::NAN);
    let steady_p50_ms = summary["finality_after_warmup_ms"]["p50"].as_f64().unwrap_or(f64::NAN);
    let steady_p99_ms = summary["finality_after_warmup_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
    let rss: Vec<f64> = summary["peak_rss_mib"]["validators"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default();
    let peak_rss_mib = rss.iter().copied().fold(0.0, f64::max);
    if summary["state_roots_agree"].as_bool() != Some(true) {
        return Err(format!("{name}: the validators' state roots disagree: {summary}"));
    }
    let first_sent = progress.iter().find(|r| r.sent > 0).map_or(f64::NAN, |r| r.t);
    let duration_s = f("duration_s");
    let orders_finalized = u("orders_finalized");
    let orders_submitted = u("orders_submitted");
    let whole_run_per_s = orders_finalized as f64 / duration_s;
    let trading_s = (duration_s - first_sent).max(1e-3);
    let trading_per_s = orders_finalized as f64 / trading_s;
    let whole_fraction =
        if orders_submitted > 0 { orders_finalized as f64 / orders_submitted as f64 } else { 0.0 };
    // Steady state from the progress lines; without a window (a run too short or too slow for
    // one: CI's debug smoke run), the whole-run figures after the first order stand in.
    let window = steady_window(&progress, secs as f64, u("deposits_finalized"));
    let (span, d_fin, d_sent, d_height) = match window {
        Some((begin, end)) => (
            end.t - begin.t,
            end.finalized.saturating_sub(begin.finalized),
            end.sent.saturating_sub(begin.sent),
            end.height.saturating_sub(begin.height),
        ),
        None => {
            report.note(format!(
                "{name}: no steady-state window in the devnet's progress ({} records, first order at \
                 {first_sent:.1} s, deposits finalized {}); whole-run figures after the first order \
                 used instead. stdout ends: {}",
                progress.len(),
                u("deposits_finalized"),
                tail(&stdout_path, 1).trim()
            ));
            let span = (duration_s - first_sent).max(1e-3);
            (span, orders_finalized, orders_submitted, u("finalized_height"))
        }
    };
    let steady_fin = d_fin as f64 / span;
    let steady_sent = d_sent as f64 / span;
    let steady_fraction = if d_sent > 0 { d_fin as f64 / d_sent as f64 } else { 0.0 };
    let blocks_per_s = d_height as f64 / span;
    let window_text = window
        .map_or("no steady window, whole run after the first order".to_string(), |(b, e)| {
            format!("steady state {:.1}..{:.1} s", b.t, e.t)
        });
    report.push(Measurement {
        name: name.clone(),
        ops: d_fin,
        elapsed_ns: (span * 1e9) as u64,
        ops_per_s: steady_fin,
        latency: None,
        unit: "finalized order (steady state, from the devnet's progress)".into(),
        params: json!({
            "scenario": scenario,
            "offered_rate": rate,
            "duration_arg_s": secs,
            "traders": traders,
            "validators": VALIDATORS,
            "first_order_at_s": first_sent,
            "steady_window_s": window.map(|(b, e)| [b.t, e.t]),
            "steady_submitted_per_s": steady_sent,
            "steady_finalized_per_s": steady_fin,
            "steady_finalized_over_submitted": steady_fraction,
            "steady_blocks_per_s": blocks_per_s,
            "whole_run_finalized_per_s_over_duration": whole_run_per_s,
            "whole_run_finalized_per_s_over_trading_time": trading_per_s,
            "whole_run_finalized_over_submitted": whole_fraction,
            "finality_ms": { "p50": p50_ms, "p99": p99_ms, "p999": p999_ms },
            "finality_after_warmup_ms": { "p50": steady_p50_ms, "p99": steady_p99_ms },
            "peak_rss_mib_per_validator": rss,
            "wall_s": wall.as_secs_f64(),
            "summary": summary,
        }),
    });
    report.note(format!(
        "{name}: offered {rate}/s; {window_text}: submitted {steady_sent:.0}/s, finalized \
         {steady_fin:.0}/s ({:.1}% of submitted), {blocks_per_s:.1} blocks/s; whole run: {orders_submitted} \
         submitted, {orders_finalized} finalized ({whole_run_per_s:.0}/s over the {duration_s:.1} s run, \
         {trading_per_s:.0}/s over its {trading_s:.1} s from the first order), {} rejected by the \
         exchange (counted as finalized), {} send errors; finality p50 {p50_ms:.1} ms, p99 {p99_ms:.1} ms, \
         p999 {p999_ms:.1} ms (after warm-up p50 {steady_p50_ms:.1} ms, p99 {steady_p99_ms:.1} ms); \
         peak RSS per validator {} MiB; liquidations {}, ADL {}, insurance fund {:.2} -> {:.2} USDC",
        steady_fraction * 100.0,
        u("orders_rejected"),
        u("send_errors"),
        rss.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join("/"),
        u("liquidations"),
        u("adl_events"),
        f("insurance_fund_start"),
        f("insurance_fund_end"),
    ));
    Ok((
        RunResult {
            name,
            offered: rate,
            steady_submitted_per_s: steady_sent,
            steady_finalized_per_s: steady_fin,
            steady_fraction,
            p50_ms,
            p99_ms,
            steady_p50_ms,
            steady_p99_ms,
            peak_rss_mib,
            loadgen_cores: f("loadgen_trading_cpu_s") / f("loadgen_trading_s").max(1e-9),
        },
        summary,
    ))
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let bin = super::bastion_bin("the e2e suite (it runs `bastion devnet`)")?;

    // 1. The ceiling: measured before the devnet runs and again after them (this machine is
    // shared; a compile job or a stall in one pass would understate it), the higher one counts.
    let owned = super::sigverify::generate(BATCH, MESSAGE_LEN, ctx.seed);
    let items: Vec<SigItem<'_>> = owned.iter().map(OwnedSigItem::as_item).collect();
    let budget = Duration::from_millis(ctx.size(2_000, 300));
    let mut ceiling_passes: Vec<(String, f64, f64)> = Vec::new();
    let mut measure_ceiling = |report: &mut Report, suffix: &str| -> Result<f64, String> {
        let mut parallel = verify_rate(Backend::Parallel, &items, budget)?;
        let mut batch = verify_rate(Backend::Batch, &items, budget)?;
        parallel.name.push_str(suffix);
        batch.name.push_str(suffix);
        let (pn, bn) = (parallel.name.clone(), batch.name.clone());
        let raw = parallel.ops_per_s;
        ceiling_passes.push((pn.clone(), raw, batch.ops_per_s));
        report.push(parallel);
        report.push(batch);
        report.ratio_throughput(&format!("parallel_vs_batch@{BATCH}{suffix}"), &pn, &bn);
        Ok(raw)
    };
    let raw_before = measure_ceiling(report, "")?;

    // 2. Devnet runs at increasing offered rates.
    let secs = ctx.size(20, 8);
    let traders = ctx.size(2000, 500);
    let rates: &[u64] =
        if ctx.quick { &[1000] } else { &[1000, 2000, 4000, 8000, 12000, 16000, 20000, 24000] };
    let tmp = tempfile::Builder::new()
        .prefix("bastion-perf-e2e-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    report.note(format!(
        "devnet: `{} devnet --scenario calm --duration {secs} --traders {traders} --rate R {}` at R = \
         {rates:?} (stopping once steady finalized/submitted < {SATURATED_BELOW} or finality p99 > \
         {P99_LIMIT_MS} ms, or once the load generator sends under 95% of the offered rate); 4 validator \
         processes, the load generator (which signs every order and sends it to each validator's \
         ingress: the pipeline the ceiling is about; the default devnet's gossip is measured apart) and this suite \
         share the machine's {} cores; funding takes the first ~{:.1} s \
         (two deposit passes at 800/s, 1.5 s of pauses), so steady state = {STEADY_LAG_S} s after the \
         first order to {STEADY_TAIL_S} s before the end, from the devnet's progress lines (0.5 s \
         apart; its finalized count includes the deposits, which land before the window); finality = \
         proposal built to finalized, every block of the run, all validators",
        bin.display(),
        Setup::Pipeline.args().join(" "),
        cores(),
        2.0 * traders as f64 / 800.0 + 1.5
    ));
    let mut runs: Vec<RunResult> = Vec::new();
    for &rate in rates {
        let (r, _) = devnet(&bin, tmp.path(), Setup::Pipeline, "calm", rate, secs, traders, report)?;
        // Stop once saturated, or once the load generator cannot send the offered rate
        // (higher offers would only measure the generator).
        let stop = r.saturated() || r.generator_limited();
        runs.push(r);
        if stop {
            break;
        }
    }
    // The latency goal's run: half of the ceiling measured before the sweep (rounded to 100/s).
    let half = ((raw_before / VALIDATORS as f64 / 2.0 / 100.0).round() as u64) * 100;
    let half_run = if ctx.quick || half == 0 {
        None
    } else {
        let (r, _) = devnet(&bin, tmp.path(), Setup::Pipeline, "calm", half, secs, traders, report)?;
        Some(r)
    };
    measure_ceiling(report, "-after")?;
    let (parallel_name, raw, batch_rate) =
        ceiling_passes.iter().max_by(|a, b| a.1.total_cmp(&b.1)).cloned().ok_or("no ceiling measured")?;
    let ceiling = raw / VALIDATORS as f64;
    let (ops, elapsed_ns) = report.get(&parallel_name).map_or((0, 0), |m| (m.ops, m.elapsed_ns));
    let passes: Vec<String> =
        ceiling_passes.iter().map(|(n, p, b)| format!("{n}: parallel {p:.0}/s, batch {b:.0}/s")).collect();
    report.push(Measurement {
        name: CEILING.into(),
        ops,
        elapsed_ns,
        ops_per_s: ceiling,
        latency: None,
        unit: "order/s (derived: parallel verifies/s / validators)".into(),
        params: json!({
            "derived_from": parallel_name,
            "validators": VALIDATORS,
            "raw_verifies_per_s": raw,
            "single_core_batch_verifies_per_s": batch_rate,
            "passes": passes,
            "ceiling_with_two_checks_per_validator": raw / (2 * VALIDATORS) as f64,
        }),
    });
    report.note(format!(
        "ceiling: {raw:.0} verifies/s on all {} cores ({parallel_name}: parallel backend, batches of \
         {BATCH} distinct keys, {MESSAGE_LEN}-byte messages, {:.1} s; the higher of the passes before \
         and after the devnet runs: {}), {batch_rate:.0}/s on one core (batch, same pass); ceiling = \
         {raw:.0} / {VALIDATORS} validators = {ceiling:.0} orders/s (each validator verifies every \
         order once; were the check of a peer's proposal a second full verification rather than a \
         hit in the verify tile's cache, the ceiling would be {:.0}/s)",
        cores(),
        budget.as_secs_f64(),
        passes.join("; "),
        raw / (2 * VALIDATORS) as f64
    ));
    for r in &runs {
        report.ratio_throughput(&format!("e2e_vs_ceiling@{}", r.offered), &r.name, CEILING);
        if r.generator_limited() {
            report.note(format!(
                "{}: the load generator sent only {:.0} of the offered {}/s (it signs every order on \
                 one thread and sends it to each validator, on the same cores): the run is limited by \
                 the generator, not by the validators",
                r.name, r.steady_submitted_per_s, r.offered
            ));
        }
    }

    // 3. Headline: the best sustained run.
    let sustained = runs
        .iter()
        .filter(|r| !r.saturated())
        .max_by(|a, b| a.steady_finalized_per_s.total_cmp(&b.steady_finalized_per_s));
    let best = sustained
        .or_else(|| runs.iter().max_by(|a, b| a.steady_finalized_per_s.total_cmp(&b.steady_finalized_per_s)));
    let quick = if ctx.quick { " [quick: one short run]" } else { "" };
    match best {
        Some(b) => {
            let fraction = b.steady_finalized_per_s / ceiling;
            let qualifier = match (sustained.is_some(), b.generator_limited()) {
                (false, _) => " (every run saturated; best of them)",
                (true, true) => {
                    " (not saturated: the load generator could send no more on this machine, so \
                     this is a lower bound on the validators' capacity)"
                }
                (true, false) => "",
            };
            report.ratios.push(harness::Ratio {
                name: "finalized_vs_ceiling".into(),
                numerator: b.name.clone(),
                denominator: CEILING.into(),
                metric: "ops_per_s".into(),
                value: fraction,
            });
            report.note(format!(
                "headline: {} finalized {:.0} orders/s in steady state = {:.1}% of the {ceiling:.0}/s \
                 ceiling{qualifier}; finality p50 {:.1} ms, p99 {:.1} ms",
                b.name,
                b.steady_finalized_per_s,
                fraction * 100.0,
                b.p50_ms,
                b.p99_ms
            ));
            // The load generator is a client on the same cores: with its share of the machine
            // taken out of the ceiling, the validators' own efficiency.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let client = if b.loadgen_cores.is_finite() { b.loadgen_cores.clamp(0.0, cores) } else { 0.0 };
            let adjusted = ceiling * (cores - client) / cores;
            let adjusted_fraction = b.steady_finalized_per_s / adjusted.max(1e-9);
            report.note(format!(
                "{}: the load generator kept {:.2} of the {cores} cores busy signing and sending; with \
                 that share taken out, the ceiling is {adjusted:.0}/s and the validators reached {:.1}% \
                 of it",
                b.name,
                client,
                adjusted_fraction * 100.0
            ));
            report.ratios.push(harness::Ratio {
                name: "e2e_best_sustained_vs_ceiling_without_loadgen_share".into(),
                numerator: b.name.clone(),
                denominator: CEILING.into(),
                metric: "ops_per_s".into(),
                value: adjusted_fraction,
            });
            report.goal(
                "finalized_vs_ceiling",
                "best sustained finalized orders/s >= 70% of (raw verifies/s / 4 validators), same run",
                format!(
                    "{:.1}% ({:.0} of {ceiling:.0}/s at offered {}; finality p50 {:.1} ms p99 {:.1} \
                     ms; {:.1}% with the load generator's {:.2} cores taken out){qualifier}{quick}",
                    fraction * 100.0,
                    b.steady_finalized_per_s,
                    b.name.rsplit('@').next().unwrap_or("?"),
                    b.p50_ms,
                    b.p99_ms,
                    adjusted_fraction * 100.0,
                    client
                ),
                fraction >= GOAL_FRACTION,
            );
        }
        None => return Err("no devnet run completed".into()),
    }
    if let Some(h) = &half_run {
        report.goal(
            "p99-at-half-ceiling",
            "finality p99 (after the first 2 s of the chain) <= 100 ms at half of the ceiling",
            format!(
                "{:.1} ms at offered {}/s ({:.0}% of the {ceiling:.0}/s ceiling; finalized {:.0}/s; whole-run p99 \
                 {:.1} ms)",
                h.steady_p99_ms,
                h.offered,
                h.offered as f64 / ceiling * 100.0,
                h.steady_finalized_per_s,
                h.p99_ms
            ),
            h.steady_p99_ms <= HALF_CEILING_P99_MS,
        );
    }
    if let Some(m) = runs.iter().chain(&half_run).map(|r| r.peak_rss_mib).reduce(f64::max) {
        report.note(format!(
            "memory: the largest validator process peaked at {m:.0} MiB resident (VmHWM, from its status \
             file) over these runs"
        ));
    }

    // Context: the default devnet at its default rate, the public network carrying every order
    // (gossip to the other validators and a full node that verifies each too), against the
    // pipeline run at the same rate.
    if !ctx.quick {
        let (public, _) = devnet(&bin, tmp.path(), Setup::Public, "calm", FLASH_RATE, secs, traders, report)?;
        if let Some(direct) = runs.iter().find(|r| r.offered == FLASH_RATE) {
            report.note(format!(
                "public network at {FLASH_RATE}/s (default devnet: each order gossiped, one full node): \
                 finalized {:.0}/s, finality after warm-up p50 {:.1} ms, p99 {:.1} ms; the pipeline run at \
                 the same rate: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms. On 2 cores the libp2p gossip of every \
                 order and the full node's verification take the CPU the validators' consensus waits for",
                public.steady_finalized_per_s,
                public.steady_p50_ms,
                public.steady_p99_ms,
                direct.steady_finalized_per_s,
                direct.steady_p50_ms,
                direct.steady_p99_ms,
            ));
        }
    }

    // Context: the flash crash (not in quick runs: the crash starts at t = 10 s).
    if !ctx.quick {
        let (_, s) =
            devnet(&bin, tmp.path(), Setup::Pipeline, "flash-crash", FLASH_RATE, secs, traders, report)?;
        report.note(format!(
            "flash-crash@{FLASH_RATE}: {} liquidations, {} auto-deleveraging events, insurance fund {:.2} \
             USDC at genesis, {:.2} lowest, {:.2} at the end",
            s["liquidations"].as_u64().unwrap_or(0),
            s["adl_events"].as_u64().unwrap_or(0),
            s["insurance_fund_start"].as_f64().unwrap_or(f64::NAN),
            s["insurance_fund_min"].as_f64().unwrap_or(f64::NAN),
            s["insurance_fund_end"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn progress_lines_parse_and_window() {
        let text = "devnet: ...\n\r  t=  0.5s  height      0 (slowest      0)    0.0 blocks/s  sent       0  \
                    finalized       0 (     0/s)  mempool 1\r  t=  7.0s  height    407 (slowest    395)   \
                    71.9 blocks/s  sent     858  finalized    2695 (  1388/s)  mempool 3\r  t=  8.0s  height \
                    473 (slowest    461)   62.0 blocks/s  sent    2860  finalized    4730 (  2057/s)\r  t=  \
                    9.5s  height    566 (slowest    556)   56.0 blocks/s  sent    5861  finalized    7712 \
                    (  2019/s)\r  t=100.0s  height 9 (slowest 9) 1.0 blocks/s  sent 9  finalized 9 (1/s)\n";
        let p = parse_progress(text);
        assert_eq!(p.len(), 5);
        assert_eq!((p[1].t, p[1].sent, p[1].finalized, p[1].height), (7.0, 858, 2695, 407));
        assert_eq!(p[4].t, 100.0);
        let (b, e) = steady_window(&p, 10.0, 2000).unwrap();
        assert_eq!((b.t, e.t), (8.0, 9.5));
        assert!(steady_window(&p[..3], 10.0, 2000).is_none());
        assert!(steady_window(&p, 10.0, 4800).is_none(), "the window waits for the deposits");
        assert_eq!(steady_window(&p, 10.0, 4000).map(|(b, _)| b.t), Some(8.0));
    }
}
