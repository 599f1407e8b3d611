//! Suite `consensus`: finality latency of Simplex with the Bastion application, in the
//! deterministic whole-node simulation (`bastion_consensus::sim`).
//!
//! 4 validators over commonware's simulated network, every link with the same one-way latency
//! (1 ms without jitter, 50 ms with 5 ms of jitter). The simulated network samples each
//! message's delay from a normal distribution and truncates it to whole milliseconds, so a jitter
//! at 1 ms would make most messages take 0 ms, and at 50 ms the mean delay is about 49.5 ms. Latency is measured per validator per height as
//! the time its reporter received the finalization minus the time the leader's propose
//! completed, both on the simulated clock: these are figures of the protocol and the
//! application's message flow, not of this machine (execution costs no simulated time).
//! Reported in simulated time and as a multiple of the one-way delay: the floor is 2 hops for a
//! notarization and 3 for a finalization. Throughput is finalized blocks per simulated second.

use crate::harness::{self, Ctx, Measurement, Percentiles, Report};
use bastion_consensus::sim::{Run, check, simulate_with_cycle};
use commonware_p2p::simulated::Link;
use commonware_utils::probability;
use serde_json::json;
use std::time::Duration;

/// Simulated time the deterministic executor advances per event-loop iteration. Its default
/// (1 ms) adds about 1 ms per round of message handling, which is not network delay.
const CYCLE: Duration = Duration::from_micros(10);

/// Heights at the start not counted (validators start one after another).
const WARMUP_HEIGHTS: u64 = 2;

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let heights = ctx.size(200, 12);
    report.note(format!(
        "deterministic simulation, 4 validators, {heights} heights per link setting (the first \
         {WARMUP_HEIGHTS} not counted); latency = finalization received at each validator minus \
         the leader's proposal built, simulated clock; floor 3 one-way hops for finalization (2 for \
         notarization); executor cycle {CYCLE:?} per event-loop iteration (the runtime's 1 ms \
         default adds ~20 ms of executor time per block: 172 ms p50 at 50 ms links)"
    ));
    let mut p50_at_50 = None;
    for (one_way, jitter) in
        [(Duration::from_millis(1), Duration::ZERO), (Duration::from_millis(50), Duration::from_millis(5))]
    {
        let ms = one_way.as_millis();
        let outcome = simulate_with_cycle(
            Run {
                validators: 4,
                seed: ctx.seed,
                link: Link { latency: one_way, jitter, success_rate: probability!(1.0) },
                target_height: heights,
                crash: None,
                diverge: None,
                partition: None,
                byzantine: None,
            },
            CYCLE,
        );
        check(&outcome.ledgers, heights);
        let mut h = harness::histogram();
        let mut samples = 0u64;
        for per_validator in outcome.finality_latencies() {
            for (_, d) in per_validator.range(WARMUP_HEIGHTS + 1..=heights) {
                h.saturating_record((d.as_nanos() as u64).max(1));
                samples += 1;
            }
        }
        if samples == 0 {
            return Err(format!("no finality latency recorded at {ms} ms"));
        }
        // Throughput: counted heights over the simulated span from the first counted proposal
        // to the last counted finalization at validator 0.
        let v0 = &outcome.ledgers[0];
        let first = v0.get(&(WARMUP_HEIGHTS + 1)).and_then(|f| outcome.proposed_at.get(&f.digest));
        let last = v0.get(&heights).and_then(|f| outcome.finalization_at[0].get(&f.digest));
        let (Some(first), Some(last)) = (first, last) else {
            return Err(format!("missing proposal or finalization times at {ms} ms"));
        };
        let span = last.duration_since(*first).map_err(|e| e.to_string())?;
        let blocks = heights - WARMUP_HEIGHTS;
        let lat = Percentiles::from_histogram(&h);
        let hops = |ns: u64| ns as f64 / one_way.as_nanos() as f64;
        let per_s = blocks as f64 / span.as_secs_f64();
        report.push(Measurement {
            name: format!("finality-{ms}ms-links"),
            ops: blocks,
            elapsed_ns: span.as_nanos() as u64,
            ops_per_s: per_s,
            latency: Some(lat.clone()),
            unit: "finalized block (simulated time)".into(),
            params: json!({
                "validators": 4,
                "one_way_ms": one_way.as_secs_f64() * 1e3,
                "jitter_ms": jitter.as_secs_f64() * 1e3,
                "heights": heights,
                "executor_cycle_us": CYCLE.as_micros() as u64,
                "samples": samples,
                "p50_one_way_multiple": hops(lat.p50_ns),
                "p99_one_way_multiple": hops(lat.p99_ns),
                "p999_one_way_multiple": hops(lat.p999_ns),
                "simulated_run_s": outcome.elapsed.as_secs_f64(),
            }),
        });
        report.note(format!(
            "{ms} ms links: finality p50 {:.2} ms ({:.2}x one-way), p99 {:.2} ms ({:.2}x), p999 \
             {:.2} ms ({:.2}x) over {samples} samples; {per_s:.1} finalized blocks per simulated \
             second",
            lat.p50_ns as f64 / 1e6,
            hops(lat.p50_ns),
            lat.p99_ns as f64 / 1e6,
            hops(lat.p99_ns),
            lat.p999_ns as f64 / 1e6,
            hops(lat.p999_ns),
        ));
        if ms == 50 {
            p50_at_50 = Some(lat.p50_ns);
        }
    }
    if let Some(p50) = p50_at_50 {
        let multiple = p50 as f64 / 50e6;
        report.goal(
            "finality-p50-50ms-links",
            "p50 <= 4x one-way delay (200 ms) at 50 ms links, simulated",
            format!(
                "{:.1} ms ({multiple:.2}x){}",
                p50 as f64 / 1e6,
                if ctx.quick { " [quick: few heights]" } else { "" }
            ),
            multiple <= 4.0,
        );
    }
    report.note(
        "not measured: loopback multi-process finality (goal p50 < 15 ms, p99 < 50 ms) needs the \
         production tokio runtime and authenticated p2p, which are not built yet",
    );
    Ok(())
}
