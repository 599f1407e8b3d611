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
//!
//! Then the loopback part (`loopback` below): 4 validators as 4 `bastion run` processes on
//! 127.0.0.1 of this machine (build `bastion` first: `cargo build --release -p bastion`; or set
//! `BASTION_BIN`), finality of each validator's own proposals on the wall clock, merged, against
//! the goals p50 < 15 ms and p99 < 50 ms.

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
            Run::new(
                4,
                ctx.seed,
                Link { latency: one_way, jitter, success_rate: probability!(1.0) },
                heights,
            ),
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
        // Notarization (the 2-hop floor; what optimistic finality would wait for).
        let mut hn = harness::histogram();
        for per_validator in outcome.notarization_latencies() {
            for (_, d) in per_validator.range(WARMUP_HEIGHTS + 1..=heights) {
                hn.saturating_record((d.as_nanos() as u64).max(1));
            }
        }
        if !hn.is_empty() {
            let n = Percentiles::from_histogram(&hn);
            report.push(Measurement {
                name: format!("notarization-{ms}ms-links"),
                ops: hn.len(),
                elapsed_ns: span.as_nanos() as u64,
                ops_per_s: per_s,
                latency: Some(n.clone()),
                unit: "notarized block (simulated time)".into(),
                params: json!({
                    "validators": 4,
                    "one_way_ms": one_way.as_secs_f64() * 1e3,
                    "p50_one_way_multiple": hops(n.p50_ns),
                    "p99_one_way_multiple": hops(n.p99_ns),
                }),
            });
            report.note(format!(
                "{ms} ms links: notarization p50 {:.2} ms ({:.2}x one-way), p99 {:.2} ms ({:.2}x) over {} \
                 samples (floor 2 hops)",
                n.p50_ns as f64 / 1e6,
                hops(n.p50_ns),
                n.p99_ns as f64 / 1e6,
                hops(n.p99_ns),
                hn.len()
            ));
        }
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
    loopback::run(ctx, report)
}

/// The loopback part: 4 validators as 4 `bastion run` processes on 127.0.0.1 of this machine,
/// each with the production runtime, authenticated p2p, Simplex with BLS multisig, and the real
/// exchange and store; finality from the validators' own finality logs (wall clock).
mod loopback {
    use crate::harness::{self, Ctx, Measurement, Percentiles, Report};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::time::{Duration, Instant};

    const VALIDATORS: usize = 4;
    /// Heights finalized in the first seconds after the processes start are not counted: the
    /// peers are still dialing and handshaking. Measured on the 2-core VM: heights 1-3 finalize
    /// within ~1.5 s, then the chain stalls until ~3.5 s (one proposal of ~2 s, one of ~1 s,
    /// while the last links come up), and runs steadily from there; 5 s covers the stall.
    const WARMUP: Duration = Duration::from_secs(5);
    /// How often the suite reads the validators' status files.
    const POLL: Duration = Duration::from_millis(20);
    /// Grace past `--duration` for the processes to stop (the runtime waits up to 10 s).
    const EXIT_GRACE: Duration = Duration::from_secs(40);
    /// The goals for loopback finality.
    const GOAL_P50_MS: f64 = 15.0;
    const GOAL_P99_MS: f64 = 50.0;
    /// Issue 21's bar: no worse than the record before the execution and storage tiles
    /// (`perf/results/issue5-consensus-loopback-2core.json`: p50 12.98 ms, p99 19.33 ms).
    const RECORD_P50_MS: f64 = 13.0;
    const RECORD_P99_MS: f64 = 19.3;

    /// Kills and reaps every child still running when dropped (suite error or panic).
    struct Children(Vec<Child>);

    impl Drop for Children {
        fn drop(&mut self) {
            for c in &mut self.0 {
                if matches!(c.try_wait(), Ok(None)) {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
    }

    /// One validator's `status.json` (the fields the suite reads).
    #[derive(Clone, Debug, serde::Deserialize)]
    struct Status {
        height: u64,
        root: String,
        uptime_s: f64,
    }

    /// A base port whose `VALIDATORS` ports can be bound now, derived from the process id.
    fn base_port(attempt: u32) -> u16 {
        let pid = std::process::id();
        let mut base = 20_000 + (pid.wrapping_add(attempt.wrapping_mul(7_919)) % 20_000);
        for _ in 0..50 {
            let free = (0..VALIDATORS as u32)
                .all(|i| std::net::TcpListener::bind(("127.0.0.1", (base + i) as u16)).is_ok());
            if free {
                break;
            }
            base = 20_000 + ((base - 20_000 + 101) % 20_000);
        }
        base as u16
    }

    fn read_status(path: &Path) -> Option<Status> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// The last lines of a file, for error messages.
    fn tail(path: &Path, lines: usize) -> String {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// What one launch of the network produced.
    struct Outcome {
        base_port: u16,
        dirs: Vec<PathBuf>,
        /// Wall time from the last spawn to the last exit.
        wall: Duration,
        /// Highest height any status file showed at the end of the warm-up.
        warmup_height: u64,
        /// Each validator's status at the end of the warm-up.
        at_warmup: Vec<Option<Status>>,
        /// Each validator's last status.
        last: Vec<Option<Status>>,
        /// Every (height, root) each validator's status file showed.
        roots: Vec<BTreeMap<u64, String>>,
        exits: Vec<ExitStatus>,
        summaries: Vec<String>,
    }

    enum LaunchError {
        /// The ports could not be bound; worth one retry on others.
        Bind(String),
        Other(String),
    }

    /// Sets `[pipeline] consensus_tiles = false` in a node.toml `bastion init` wrote.
    fn tiles_off(path: &Path) -> Result<(), LaunchError> {
        let err = |e: std::io::Error| LaunchError::Other(format!("{}: {e}", path.display()));
        let toml = std::fs::read_to_string(path).map_err(err)?;
        let key = "consensus_tiles = false\n";
        let edited = match toml.find("\n[pipeline]") {
            // Right after the table's header line (and its comment, if any).
            Some(i) => {
                let at = toml[i + 1..].find('\n').map_or(toml.len(), |j| i + 1 + j + 1).min(toml.len());
                format!("{}{key}{}", &toml[..at], &toml[at..])
            }
            None => format!("{toml}\n[pipeline]\n{key}"),
        };
        std::fs::write(path, edited).map_err(err)
    }

    fn launch(
        bin: &Path,
        dir: &Path,
        seed: u64,
        base_port: u16,
        secs: u64,
        tiles: bool,
    ) -> Result<Outcome, LaunchError> {
        let init = Command::new(bin)
            .arg("init")
            .args(["--validators", &VALIDATORS.to_string()])
            .arg("--out")
            .arg(dir)
            .args(["--seed", &seed.to_string(), "--base-port", &base_port.to_string()])
            .output()
            .map_err(|e| LaunchError::Other(format!("cannot run {} init: {e}", bin.display())))?;
        if !init.status.success() {
            let err = String::from_utf8_lossy(&init.stderr).into_owned();
            return Err(LaunchError::Other(format!("bastion init exited with {}: {err}", init.status)));
        }
        let dirs: Vec<PathBuf> = (0..VALIDATORS).map(|i| dir.join(format!("v{i}"))).collect();
        if !tiles {
            for d in &dirs {
                tiles_off(&d.join("node.toml"))?;
            }
        }
        let mut children = Children(Vec::with_capacity(VALIDATORS));
        for d in &dirs {
            let open = |name: &str| {
                std::fs::File::create(d.join(name))
                    .map_err(|e| LaunchError::Other(format!("cannot create {}: {e}", d.join(name).display())))
            };
            let child = Command::new(bin)
                .arg("run")
                .arg("--config")
                .arg(d.join("node.toml"))
                .args(["--duration", &secs.to_string()])
                .arg("--finality-log")
                .arg(d.join("finality.log"))
                .stdin(Stdio::null())
                .stdout(open("stdout.txt")?)
                .stderr(open("stderr.txt")?)
                .spawn()
                .map_err(|e| LaunchError::Other(format!("cannot start {} run: {e}", bin.display())))?;
            children.0.push(child);
        }
        let start = Instant::now();
        let deadline = Duration::from_secs(secs) + EXIT_GRACE;
        let mut exits: Vec<Option<ExitStatus>> = vec![None; VALIDATORS];
        let mut last: Vec<Option<Status>> = vec![None; VALIDATORS];
        let mut roots: Vec<BTreeMap<u64, String>> = vec![BTreeMap::new(); VALIDATORS];
        let mut at_warmup: Option<Vec<Option<Status>>> = None;
        loop {
            for (i, d) in dirs.iter().enumerate() {
                if let Some(s) = read_status(&d.join("data").join("status.json")) {
                    if !s.root.is_empty() {
                        roots[i].insert(s.height, s.root.clone());
                    }
                    last[i] = Some(s);
                }
            }
            if at_warmup.is_none() && start.elapsed() >= WARMUP {
                at_warmup = Some(last.clone());
            }
            for (i, c) in children.0.iter_mut().enumerate() {
                if exits[i].is_none() {
                    exits[i] = c.try_wait().map_err(|e| LaunchError::Other(format!("v{i}: {e}")))?;
                }
            }
            // A validator that fails stops the run (the guard kills the others).
            if let Some(i) = exits.iter().position(|e| e.is_some_and(|s| !s.success())) {
                let err = tail(&dirs[i].join("stderr.txt"), 20);
                let status = exits[i].map(|s| s.to_string()).unwrap_or_default();
                let msg = format!("validator v{i} exited with {status}; its stderr ends:\n{err}");
                let lower = err.to_lowercase();
                return Err(if lower.contains("address already in use") || lower.contains("bind") {
                    LaunchError::Bind(msg)
                } else {
                    LaunchError::Other(msg)
                });
            }
            if exits.iter().all(Option::is_some) {
                break;
            }
            if start.elapsed() > deadline {
                let running: Vec<String> =
                    (0..VALIDATORS).filter(|&i| exits[i].is_none()).map(|i| format!("v{i}")).collect();
                return Err(LaunchError::Other(format!(
                    "{} still running {:.0} s after a {secs} s --duration; killed",
                    running.join(", "),
                    start.elapsed().as_secs_f64()
                )));
            }
            std::thread::sleep(POLL);
        }
        let wall = start.elapsed();
        let at_warmup = at_warmup.unwrap_or_else(|| vec![None; VALIDATORS]);
        let warmup_height = at_warmup.iter().flatten().map(|s| s.height).max().unwrap_or(0);
        let summaries = dirs.iter().map(|d| tail(&d.join("stdout.txt"), 1)).collect();
        Ok(Outcome {
            base_port,
            dirs,
            wall,
            warmup_height,
            at_warmup,
            last,
            roots,
            exits: exits.into_iter().flatten().collect(),
            summaries,
        })
    }

    /// `stopped at height H` from a `bastion run` summary line.
    fn summary_height(line: &str) -> Option<u64> {
        line.split("stopped at height ").nth(1)?.split_whitespace().next()?.parse().ok()
    }

    /// Launches the network, once more on other ports when the first ports fail to bind.
    fn launch_retrying(
        bin: &Path,
        tmp: &Path,
        seed: u64,
        secs: u64,
        tiles: bool,
        first_attempt: u32,
        report: &mut Report,
    ) -> Result<Outcome, String> {
        for attempt in first_attempt..first_attempt + 2 {
            let port = base_port(attempt);
            let dir = tmp.join(format!("attempt{attempt}"));
            match launch(bin, &dir, seed, port, secs, tiles) {
                Ok(o) => return Ok(o),
                Err(LaunchError::Bind(e)) if attempt == first_attempt => {
                    report.note(format!(
                        "loopback: ports {port}..{} failed ({e}); retrying on others",
                        port + 3
                    ));
                }
                Err(LaunchError::Bind(e) | LaunchError::Other(e)) => return Err(format!("loopback: {e}")),
            }
        }
        Err("loopback: no launch succeeded".into())
    }

    /// Finality of every validator's own proposals from their finality logs, warm-up heights
    /// left out.
    struct Finality {
        h: hdrhistogram::Histogram<u64>,
        samples: u64,
        warmup_samples: u64,
        warmup_max_us: u64,
        late_max_height: u64,
    }

    fn finality(o: &Outcome) -> Result<Finality, String> {
        let mut f = Finality {
            h: harness::histogram(),
            samples: 0,
            warmup_samples: 0,
            warmup_max_us: 0,
            late_max_height: 0,
        };
        for (i, d) in o.dirs.iter().enumerate() {
            let path = d.join("finality.log");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("loopback: v{i}: cannot read {}: {e}", path.display()))?;
            for line in text.lines() {
                let mut words = line.split_whitespace().map(str::parse::<u64>);
                let (Some(Ok(height)), Some(Ok(us))) = (words.next(), words.next()) else {
                    return Err(format!("loopback: {}: bad line {line:?}", path.display()));
                };
                if height <= o.warmup_height {
                    f.warmup_samples += 1;
                    f.warmup_max_us = f.warmup_max_us.max(us);
                } else {
                    f.h.saturating_record(us.saturating_mul(1000).max(1));
                    f.samples += 1;
                    f.late_max_height = f.late_max_height.max(height);
                }
            }
        }
        if f.samples == 0 {
            return Err(format!(
                "loopback: no finality after the warm-up (height {}); summaries: {:?}",
                o.warmup_height, o.summaries
            ));
        }
        Ok(f)
    }

    pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
        let bin = crate::suites::bastion_bin("the loopback part")?;
        // Quick keeps 5 s of steady state after the 5 s warm-up.
        let secs = ctx.size(30, 10);
        // `bastion init` derives validator i's keys from seed*1000+i, which must fit in a u64.
        let seed = ctx.seed % 1_000_000_000_000;
        let tmp = tempfile::Builder::new()
            .prefix("bastion-perf-loopback-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let o = launch_retrying(&bin, tmp.path(), seed, secs, true, 0, report)?;
        let Finality { h, samples, warmup_samples, warmup_max_us, late_max_height } = finality(&o)?;
        let lat = Percentiles::from_histogram(&h);
        let ms = |ns: u64| ns as f64 / 1e6;

        // Throughput: the validator with the highest final height, from its status at the end
        // of the warm-up to its last status (both on its own clock).
        let (top, end) = o
            .last
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .max_by_key(|(_, s)| s.height)
            .ok_or("loopback: no validator wrote a status file")?;
        let begin =
            o.at_warmup[top].clone().unwrap_or(Status { height: 0, root: String::new(), uptime_s: 0.0 });
        let blocks = end.height.saturating_sub(begin.height);
        let span_s = (end.uptime_s - begin.uptime_s).max(1e-9);
        let per_s = blocks as f64 / span_s;

        // State roots: every height at which two or more validators' status files were seen.
        let mut common = 0u64;
        let mut mismatches = Vec::new();
        let mut all_heights: BTreeMap<u64, Vec<(usize, &String)>> = BTreeMap::new();
        for (i, m) in o.roots.iter().enumerate() {
            for (height, root) in m {
                all_heights.entry(*height).or_default().push((i, root));
            }
        }
        for (height, seen) in &all_heights {
            if seen.len() >= 2 {
                common += 1;
                if seen.iter().any(|(_, r)| *r != seen[0].1) {
                    mismatches.push(format!("height {height}: {seen:?}"));
                }
            }
        }
        let full_common = all_heights.values().filter(|s| s.len() == VALIDATORS).count();
        let final_heights: Vec<Option<u64>> = o.last.iter().map(|s| s.as_ref().map(|s| s.height)).collect();
        let summary_heights: Vec<Option<u64>> = o.summaries.iter().map(|s| summary_height(s)).collect();
        let exits: Vec<String> = o.exits.iter().map(|s| s.to_string()).collect();

        report.push(Measurement {
            name: "finality-loopback-4-processes".into(),
            ops: blocks,
            elapsed_ns: (span_s * 1e9) as u64,
            ops_per_s: per_s,
            latency: Some(lat.clone()),
            unit: "finalized own proposal (wall clock, proposer's propose to its finalization)".into(),
            params: json!({
                "validators": VALIDATORS,
                "processes": VALIDATORS,
                "duration_s": secs,
                "warmup_s": WARMUP.as_secs_f64(),
                "warmup_height": o.warmup_height,
                "samples": samples,
                "warmup_samples_discarded": warmup_samples,
                "warmup_max_ms": warmup_max_us as f64 / 1e3,
                "highest_counted_height": late_max_height,
                "throughput_validator": format!("v{top}"),
                "throughput_heights": [begin.height, end.height],
                "final_heights_status": final_heights,
                "final_heights_summary": summary_heights,
                "exit_statuses": exits,
                "heights_seen_by_2_or_more": common,
                "heights_seen_by_all": full_common,
                "root_mismatches": mismatches.len(),
                "base_port": o.base_port,
                "seed": seed,
                "wall_s": o.wall.as_secs_f64(),
                "summaries": o.summaries,
            }),
        });
        report.note(format!(
            "loopback: {VALIDATORS} `bastion run` processes on 127.0.0.1 for {secs} s each \
             (production tokio runtime, authenticated p2p, Simplex with BLS multisig, real exchange \
             and store, keys from --seed {seed}); the {VALIDATORS} validators share this machine's \
             {} logical cores, so each has well under one core and every latency includes BLS \
             signing and verification and block execution; absolute times on this shared VM are noisy",
            report.machine.logical_cores
        ));
        report.note(format!(
            "loopback: warm-up = heights finalized in the first {} s after the processes started \
             (heights <= {}, read from the status files; {warmup_samples} samples, max {:.1} ms) not \
             counted: the first blocks wait for the peers to dial and handshake (heights 1-3 finalize \
             within ~1.5 s, then the chain stalls until ~3.5 s with proposals of 1-2 s)",
            WARMUP.as_secs(),
            o.warmup_height,
            warmup_max_us as f64 / 1e3
        ));
        report.note(format!(
            "loopback: finality of own proposals merged over the {VALIDATORS} validators' logs: p50 \
             {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, max {:.2} ms over {samples} samples; {per_s:.1} \
             finalized blocks/s (v{top}: heights {}..{} in {span_s:.2} s); every process exited 0",
            ms(lat.p50_ns),
            ms(lat.p99_ns),
            ms(lat.p999_ns),
            ms(lat.max_ns),
            begin.height,
            end.height,
        ));
        report.note(format!(
            "loopback: state roots compared wherever two or more validators' status files showed the \
             same height (the file holds only the latest height and root): {common} heights, {} of \
             them seen by all {VALIDATORS}, {} mismatches; final heights {:?}",
            full_common,
            mismatches.len(),
            final_heights
        ));
        let quick = if ctx.quick { " [quick: short run]" } else { "" };
        report.goal(
            "finality-p50-loopback",
            "p50 < 15 ms, 4 validator processes on loopback",
            format!("{:.2} ms{quick}", ms(lat.p50_ns)),
            ms(lat.p50_ns) < GOAL_P50_MS,
        );
        report.goal(
            "finality-p99-loopback",
            "p99 < 50 ms, 4 validator processes on loopback",
            format!("{:.2} ms{quick}", ms(lat.p99_ns)),
            ms(lat.p99_ns) < GOAL_P99_MS,
        );
        if !ctx.quick {
            report.goal(
                "loopback-no-worse-than-record",
                "p50 <= 13.0 ms and p99 <= 19.3 ms (issue 5's record, before the execution and storage tiles)",
                format!("p50 {:.2} ms, p99 {:.2} ms", ms(lat.p50_ns), ms(lat.p99_ns)),
                ms(lat.p50_ns) <= RECORD_P50_MS && ms(lat.p99_ns) <= RECORD_P99_MS,
            );
            // The same network with the store and block execution on the consensus actor (as
            // before issue 21), in the same run: what the tiles themselves change.
            let inline = launch_retrying(&bin, tmp.path(), seed, secs, false, 2, report)?;
            let f = finality(&inline)?;
            let il = Percentiles::from_histogram(&f.h);
            report.push(Measurement {
                name: "finality-loopback-4-processes-inline".into(),
                ops: f.samples,
                elapsed_ns: inline.wall.as_nanos() as u64,
                ops_per_s: f.samples as f64 / inline.wall.as_secs_f64().max(1e-9),
                latency: Some(il.clone()),
                unit: "finalized own proposal (wall clock), [pipeline] consensus_tiles = false".into(),
                params: json!({
                    "consensus_tiles": false,
                    "samples": f.samples,
                    "warmup_height": inline.warmup_height,
                    "base_port": inline.base_port,
                    "summaries": inline.summaries,
                }),
            });
            report.ratio_latency(
                "tiles-vs-inline",
                "finality-loopback-4-processes",
                "finality-loopback-4-processes-inline",
            );
            report.note(format!(
                "loopback, same run, `[pipeline] consensus_tiles = false` (store and execution on the \
                 consensus actor): p50 {:.2} ms, p99 {:.2} ms over {} samples, against {:.2} / {:.2} ms \
                 with the tiles",
                ms(il.p50_ns),
                ms(il.p99_ns),
                f.samples,
                ms(lat.p50_ns),
                ms(lat.p99_ns)
            ));
        }
        if !mismatches.is_empty() {
            return Err(format!(
                "loopback: state roots differ at a common height: {}",
                mismatches.join("; ")
            ));
        }
        Ok(())
    }
}
