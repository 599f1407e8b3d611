//! The measurement harness shared by every suite: warm-up, per-operation latency into an
//! hdrhistogram, throughput, peak memory, a machine description, and ratios against a baseline
//! measured in the same process (these machines are shared and noisy, so only ratios travel).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Options every suite receives.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// A short run for CI and smoke tests.
    pub quick: bool,
    /// Seed for every random stream in the suite.
    pub seed: u64,
    /// `--backend`, for the suites that measure several (none: the suite's default).
    pub backend: Option<String>,
    /// `--schedules` (chaos): how many fault schedules (none: the suite's default).
    pub schedules: Option<u64>,
    /// `--nodes` (chaos): how many validators (none: the suite's default).
    pub nodes: Option<usize>,
    /// `--full-nodes` (chaos): how many full nodes (none: the suite's default).
    pub full_nodes: Option<usize>,
}

impl Ctx {
    /// `full` in a normal run, `quick` with `--quick`.
    pub fn size(&self, full: u64, quick: u64) -> u64 {
        if self.quick { quick } else { full }
    }

    /// The `--backend` asked for, lower case, or `default`; an error names the choices when it
    /// is not one of `allowed`.
    pub fn backend(&self, default: &str, allowed: &[&str]) -> Result<String, String> {
        let b = self.backend.as_deref().unwrap_or(default).trim().to_ascii_lowercase();
        if allowed.contains(&b.as_str()) {
            Ok(b)
        } else {
            Err(format!("unknown --backend '{b}' for this suite; choose one of: {}", allowed.join(", ")))
        }
    }
}

/// Latency percentiles in nanoseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
}

impl Percentiles {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Self {
        Percentiles {
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            mean_ns: h.mean(),
        }
    }
}

/// One measured series.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// Unique within the suite, e.g. `bastion-book` or `f64-reference`.
    pub name: String,
    /// Operations timed (after warm-up).
    pub ops: u64,
    /// Wall time of the timed part.
    pub elapsed_ns: u64,
    /// Operations per second over the timed part.
    pub ops_per_s: f64,
    /// Per-operation (or per-batch, see `unit`) latency, when recorded.
    pub latency: Option<Percentiles>,
    /// What one latency sample is (`op`, `block`, `batch of 1M accounts`...).
    pub unit: String,
    /// Free-form parameters of the series (batch size, book depth...).
    pub params: serde_json::Value,
}

/// A headline figure: one measurement against its baseline from the same run.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub name: String,
    pub numerator: String,
    pub denominator: String,
    /// What is compared (`ops_per_s`, `p99_ns`...).
    pub metric: String,
    pub value: f64,
}

/// A goal from the issue, checked against what was measured.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// The machine the suite ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub logical_cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub cpu_flags_of_note: Vec<String>,
    pub build_profile: &'static str,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let flags: Vec<&str> = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.split_whitespace().collect())
            .unwrap_or_default();
        let cpu_flags_of_note = ["avx2", "avx512f", "avx512ifma", "bmi2", "adx", "sha_ni"]
            .iter()
            .filter(|f| flags.contains(f))
            .map(|f| f.to_string())
            .collect();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cpu_model,
            logical_cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            kernel,
            cpu_flags_of_note,
            build_profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        }
    }
}

/// Everything a suite produced; written as JSON with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub suite: String,
    pub quick: bool,
    pub seed: u64,
    pub started_unix_s: u64,
    pub machine: Machine,
    pub measurements: Vec<Measurement>,
    pub ratios: Vec<Ratio>,
    pub goals: Vec<Goal>,
    pub notes: Vec<String>,
    /// Peak resident memory of the whole process (VmHWM) when the suite ended.
    pub peak_rss_mib: f64,
    /// A suite's own top-level fields (the chaos suite's `schedules`, `faults`, `violations`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    pub fn new(suite: &str, ctx: &Ctx) -> Self {
        Report {
            suite: suite.to_string(),
            quick: ctx.quick,
            seed: ctx.seed,
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            machine: Machine::describe(),
            measurements: Vec::new(),
            ratios: Vec::new(),
            goals: Vec::new(),
            notes: Vec::new(),
            peak_rss_mib: 0.0,
            extra: serde_json::Map::new(),
        }
    }

    pub fn push(&mut self, m: Measurement) {
        eprintln!("  {}", m.line());
        self.measurements.push(m);
    }

    pub fn get(&self, name: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.name == name)
    }

    /// Records `numerator / denominator` of `ops_per_s` (higher is better for the numerator).
    pub fn ratio_throughput(&mut self, name: &str, numerator: &str, denominator: &str) -> Option<f64> {
        let n = self.get(numerator)?.ops_per_s;
        let d = self.get(denominator)?.ops_per_s;
        let value = if d > 0.0 { n / d } else { f64::NAN };
        eprintln!("  ratio {name}: {value:.3} ({numerator} / {denominator}, ops/s)");
        self.ratios.push(Ratio {
            name: name.into(),
            numerator: numerator.into(),
            denominator: denominator.into(),
            metric: "ops_per_s".into(),
            value,
        });
        Some(value)
    }

    /// Records `slower / faster` of the latency at p50 and p99 as ratios `NAME-p50_ns` and
    /// `NAME-p99_ns` (above 1: `faster` wins); nothing when either has no latency.
    pub fn ratio_latency(&mut self, name: &str, slower: &str, faster: &str) {
        let (Some(a), Some(b)) = (self.get(slower), self.get(faster)) else { return };
        let (Some(la), Some(lb)) = (a.latency.clone(), b.latency.clone()) else { return };
        for (metric, x, y) in [("p50_ns", la.p50_ns, lb.p50_ns), ("p99_ns", la.p99_ns, lb.p99_ns)] {
            let value = x as f64 / y.max(1) as f64;
            eprintln!("  ratio {name} {metric}: {value:.3} ({slower} / {faster})");
            self.ratios.push(Ratio {
                name: format!("{name}-{metric}"),
                numerator: slower.into(),
                denominator: faster.into(),
                metric: metric.into(),
                value,
            });
        }
    }

    pub fn goal(&mut self, name: &str, target: &str, measured: String, met: bool) {
        eprintln!(
            "  goal {name}: target {target}, measured {measured}: {}",
            if met { "MET" } else { "NOT MET" }
        );
        self.goals.push(Goal { name: name.into(), target: target.into(), measured, met });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("  note: {text}");
        self.notes.push(text);
    }

    pub fn finish(&mut self) {
        self.peak_rss_mib = peak_rss_kib() as f64 / 1024.0;
    }
}

impl Measurement {
    fn line(&self) -> String {
        let lat = self
            .latency
            .as_ref()
            .map(|p| {
                format!(
                    " p50 {} p99 {} p999 {} max {} (ns/{})",
                    p.p50_ns, p.p99_ns, p.p999_ns, p.max_ns, self.unit
                )
            })
            .unwrap_or_default();
        format!("{:<34} {:>14.0} ops/s over {:>10} ops{}", self.name, self.ops_per_s, self.ops, lat)
    }
}

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`); 0 where /proc is absent.
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident set size of this process in KiB (0 where /proc is absent).
pub fn peak_rss_kib() -> u64 {
    proc_status_kib("VmHWM")
}

/// Current resident set size of this process in KiB (0 where /proc is absent).
pub fn rss_kib() -> u64 {
    proc_status_kib("VmRSS")
}

/// CPU time consumed so far by the calling thread (user + system).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live timespec the call writes into; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

pub(crate) fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s at 3 significant digits; the bounds are constants so creation cannot fail.
    match Histogram::new_with_bounds(1, 100_000_000_000, 3) {
        Ok(h) => h,
        Err(e) => panic!("hdrhistogram bounds are constant and valid: {e}"),
    }
}

/// Times `op` once per call, `warmup` untimed calls first, then `ops` timed calls, each
/// recorded in a histogram. `op` receives the call index (warm-up indices come first).
pub fn latency(
    name: &str,
    warmup: u64,
    ops: u64,
    params: serde_json::Value,
    mut op: impl FnMut(u64),
) -> Measurement {
    for i in 0..warmup {
        op(i);
    }
    let mut h = histogram();
    let start = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        op(warmup + i);
        let ns = t.elapsed().as_nanos() as u64;
        h.saturating_record(ns.max(1));
    }
    let elapsed = start.elapsed();
    Measurement {
        name: name.into(),
        ops,
        elapsed_ns: elapsed.as_nanos() as u64,
        ops_per_s: per_second(ops, elapsed),
        latency: Some(Percentiles::from_histogram(&h)),
        unit: "op".into(),
        params,
    }
}

/// Times `rounds` calls of `batch`, each of which performs `ops_per_round` operations; the
/// histogram holds one sample per round (unit `unit`). Use where one operation is too short to
/// time alone or a round is the natural unit (a block, a sweep over all accounts).
pub fn rounds(
    name: &str,
    unit: &str,
    warmup: u64,
    rounds: u64,
    ops_per_round: u64,
    params: serde_json::Value,
    mut batch: impl FnMut(u64),
) -> Measurement {
    for i in 0..warmup {
        batch(i);
    }
    let mut h = histogram();
    let mut total = Duration::ZERO;
    for i in 0..rounds {
        let t = Instant::now();
        batch(warmup + i);
        let d = t.elapsed();
        total += d;
        h.saturating_record((d.as_nanos() as u64).max(1));
    }
    let ops = rounds.saturating_mul(ops_per_round);
    Measurement {
        name: name.into(),
        ops,
        elapsed_ns: total.as_nanos() as u64,
        ops_per_s: per_second(ops, total),
        latency: Some(Percentiles::from_histogram(&h)),
        unit: unit.into(),
        params,
    }
}

fn per_second(ops: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { ops as f64 / s } else { f64::INFINITY }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_records_every_op_and_ratio_divides() {
        let ctx = Ctx { quick: true, seed: 1, backend: None, schedules: None, nodes: None, full_nodes: None };
        let mut r = Report::new("t", &ctx);
        let mut calls = 0u64;
        r.push(latency("a", 10, 1000, serde_json::Value::Null, |_| {
            calls += 1;
            std::hint::black_box(calls);
        }));
        assert_eq!(calls, 1010);
        assert_eq!(r.get("a").map(|m| m.ops), Some(1000));
        r.push(rounds("b", "round", 1, 10, 100, serde_json::Value::Null, |_| {
            std::thread::sleep(Duration::from_micros(50));
        }));
        let b = r.get("b").map(|m| m.ops_per_s).unwrap_or(0.0);
        assert!(b > 0.0 && b < 100.0 / 50e-6, "100 ops per >=50us round: {b}");
        let ratio = r.ratio_throughput("a/b", "a", "b").unwrap();
        assert!(ratio > 0.0);
        r.finish();
        assert!(r.peak_rss_mib > 0.0);
    }
}
