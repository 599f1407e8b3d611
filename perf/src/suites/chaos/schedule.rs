//! A schedule: faults drawn from one seed, each with a start and a duration inside the fault
//! window, overlapping as they fall. The same seed (and node count and window) gives the same
//! schedule, which is how `BASTION_SEED` replays one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::fmt;

/// One fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// Random loss of `percent`% of each listed node's packets, each direction.
    Loss { nodes: Vec<usize>, percent: u32 },
    /// Two sides that cannot reach each other (both directions). `shape` names it: one node
    /// isolated, a minority cut off, or no side with a quorum.
    Partition { shape: Shape, a: Vec<usize>, b: Vec<usize> },
    /// Packets from `from` to `to` are dropped; the other way they pass.
    OneWay { from: Vec<usize>, to: Vec<usize> },
    /// Every packet the listed nodes send is held `mean_ms ± jitter_ms`.
    Delay { nodes: Vec<usize>, mean_ms: u32, jitter_ms: u32 },
    /// A token bucket on one node's outgoing link.
    Bandwidth { node: usize, kbit: u32 },
    /// SIGKILL, restart at the end.
    Kill { node: usize },
    /// SIGSTOP, SIGCONT at the end.
    Pause { node: usize },
    /// The node's data file system filled to the last byte; freed (and the node restarted if
    /// it exited) at the end.
    DiskFull { node: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    Isolated,
    Minority,
    NoQuorum,
}

impl Fault {
    /// The name faults are counted under.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Loss { .. } => "loss",
            Fault::Partition { shape: Shape::Isolated, .. } => "partition-isolated",
            Fault::Partition { shape: Shape::Minority, .. } => "partition-minority",
            Fault::Partition { shape: Shape::NoQuorum, .. } => "partition-no-quorum",
            Fault::OneWay { .. } => "partition-one-way",
            Fault::Delay { .. } => "delay",
            Fault::Bandwidth { .. } => "bandwidth",
            Fault::Kill { .. } => "kill",
            Fault::Pause { .. } => "pause",
            Fault::DiskFull { .. } => "disk-full",
        }
    }

    /// Nodes whose process this fault holds (kill, pause, disk full): one such fault per node
    /// at a time.
    pub fn process(&self) -> Option<usize> {
        match self {
            Fault::Kill { node } | Fault::Pause { node } | Fault::DiskFull { node } => Some(*node),
            _ => None,
        }
    }

    /// Nodes whose delayer or qdisc this fault sets: one such fault per node at a time.
    fn link(&self) -> Vec<usize> {
        match self {
            Fault::Delay { nodes, .. } => nodes.clone(),
            Fault::Bandwidth { node, .. } => vec![*node],
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Loss { nodes, percent } => write!(f, "loss {percent}% on {nodes:?}"),
            Fault::Partition { shape, a, b } => write!(f, "partition ({shape:?}) {a:?} | {b:?}"),
            Fault::OneWay { from, to } => write!(f, "one-way drop {from:?} -> {to:?}"),
            Fault::Delay { nodes, mean_ms, jitter_ms } => {
                write!(f, "delay {mean_ms}±{jitter_ms} ms on {nodes:?}")
            }
            Fault::Bandwidth { node, kbit } => write!(f, "bandwidth {kbit} kbit/s on {node}"),
            Fault::Kill { node } => write!(f, "SIGKILL {node}, restart"),
            Fault::Pause { node } => write!(f, "SIGSTOP {node}, SIGCONT"),
            Fault::DiskFull { node } => write!(f, "disk full on {node}"),
        }
    }
}

/// A fault at its place in time (milliseconds since the fault window opened).
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub start_ms: u64,
    pub duration_ms: u64,
    pub fault: Fault,
}

impl Step {
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.duration_ms
    }
}

/// A whole schedule.
#[derive(Clone, Debug, Serialize)]
pub struct Schedule {
    pub seed: u64,
    /// Validators `0..validators`, then full nodes up to `nodes`.
    pub validators: usize,
    pub nodes: usize,
    pub window_ms: u64,
    pub steps: Vec<Step>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "schedule seed {} ({} validators, {} full nodes, {} ms window):",
            self.seed,
            self.validators,
            self.nodes - self.validators,
            self.window_ms
        )?;
        for s in &self.steps {
            writeln!(f, "  {:>6} ms .. {:>6} ms  {}", s.start_ms, s.end_ms(), s.fault)?;
        }
        Ok(())
    }
}

/// Every kind a schedule draws from, in draw order.
pub const KINDS: &[&str] = &[
    "loss",
    "partition-isolated",
    "partition-minority",
    "partition-no-quorum",
    "partition-one-way",
    "delay",
    "bandwidth",
    "kill",
    "pause",
    "disk-full",
];

/// The longest a validator waits for a leader before voting to skip it (consensus
/// `leader_timeout_ms`, default): a pause is longer than twice this.
const LEADER_TIMEOUT_MS: u64 = 1_000;

impl Schedule {
    /// `faults` faults over `window_ms` among `validators` validators and `full` full nodes,
    /// from `seed`.
    pub fn generate(seed: u64, validators: usize, full: usize, window_ms: u64, faults: usize) -> Schedule {
        let nodes = validators + full;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut steps: Vec<Step> = Vec::new();
        let mut tries = 0;
        while steps.len() < faults && tries < 1_000 {
            tries += 1;
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            let fault = draw(kind, validators, nodes, &mut rng);
            let min = if matches!(fault, Fault::Pause { .. }) { 3 * LEADER_TIMEOUT_MS } else { 1_500 };
            let max = (window_ms * 2 / 3).max(min + 1);
            let duration_ms = rng.random_range(min..max);
            let start_ms = rng.random_range(0..window_ms.saturating_sub(duration_ms).max(1));
            let step = Step { start_ms, duration_ms, fault };
            let overlaps = |o: &Step| o.start_ms < step.end_ms() && step.start_ms < o.end_ms();
            // One process fault per node at a time, and one link setting per node at a time.
            let clash = steps.iter().filter(|o| overlaps(o)).any(|o| {
                (step.fault.process().is_some() && step.fault.process() == o.fault.process())
                    || step.fault.link().iter().any(|n| o.fault.link().contains(n))
            });
            if !clash {
                steps.push(step);
            }
        }
        steps.sort_by_key(|s| s.start_ms);
        Schedule { seed, validators, nodes, window_ms, steps }
    }
}

/// `k` distinct nodes of `n`, in order.
fn pick(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        let j = rng.random_range(i..n);
        all.swap(i, j);
    }
    let mut out = all[..k.min(n)].to_vec();
    out.sort_unstable();
    out
}

fn rest(n: usize, of: &[usize]) -> Vec<usize> {
    (0..n).filter(|k| !of.contains(k)).collect()
}

/// A fault of `kind` among `v` validators and `n - v` full nodes. Partitions take their shape
/// from the validators (a quorum is theirs); each full node then falls on one side or the other.
/// Every other fault may hit any node.
fn draw(kind: &str, v: usize, n: usize, rng: &mut ChaCha8Rng) -> Fault {
    // Byzantine tolerance f: a quorum is v - f.
    let f = (v - 1) / 3;
    let sides = |a: Vec<usize>, rng: &mut ChaCha8Rng| {
        let mut b = rest(v, &a);
        let mut a = a;
        for full in v..n {
            if rng.random_bool(0.5) { a.push(full) } else { b.push(full) }
        }
        (a, b)
    };
    match kind {
        "loss" => {
            let k = rng.random_range(1..=n);
            Fault::Loss { nodes: pick(n, k, rng), percent: rng.random_range(5..=40) }
        }
        "partition-isolated" => {
            let one = pick(v, 1, rng);
            // The isolated one is alone: the full nodes stay with the rest.
            let a = one.clone();
            let b = rest(n, &one);
            Fault::Partition { shape: Shape::Isolated, a, b }
        }
        "partition-minority" => {
            let (a, b) = sides(pick(v, rng.random_range(1..=f.max(1)), rng), rng);
            Fault::Partition { shape: Shape::Minority, a, b }
        }
        "partition-no-quorum" => {
            // Both sides smaller than a quorum: f + 1 or more validators on each.
            let (a, b) = sides(pick(v, v / 2, rng), rng);
            Fault::Partition { shape: Shape::NoQuorum, a, b }
        }
        "partition-one-way" => {
            let from = pick(v, rng.random_range(1..=f.max(1)), rng);
            Fault::OneWay { to: rest(n, &from), from }
        }
        "delay" => {
            let k = rng.random_range(1..=n);
            let mean_ms = rng.random_range(10..=200);
            Fault::Delay { nodes: pick(n, k, rng), mean_ms, jitter_ms: rng.random_range(0..=mean_ms / 2) }
        }
        "bandwidth" => Fault::Bandwidth { node: rng.random_range(0..n), kbit: rng.random_range(200..=4_000) },
        "kill" => Fault::Kill { node: rng.random_range(0..n) },
        "pause" => Fault::Pause { node: rng.random_range(0..n) },
        _ => Fault::DiskFull { node: rng.random_range(0..n) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule_and_no_clashes() {
        for seed in 0..200 {
            let a = Schedule::generate(seed, 4, 1, 20_000, 4);
            let b = Schedule::generate(seed, 4, 1, 20_000, 4);
            assert_eq!(format!("{a}"), format!("{b}"), "seed {seed}");
            assert_eq!(a.steps.len(), 4, "seed {seed}: {a}");
            for (i, s) in a.steps.iter().enumerate() {
                assert!(s.end_ms() <= 20_000, "seed {seed}: {a}");
                if matches!(s.fault, Fault::Pause { .. }) {
                    assert!(s.duration_ms >= 3 * LEADER_TIMEOUT_MS, "seed {seed}: {a}");
                }
                for o in &a.steps[i + 1..] {
                    let overlap = o.start_ms < s.end_ms() && s.start_ms < o.end_ms();
                    if overlap && s.fault.process().is_some() {
                        assert_ne!(s.fault.process(), o.fault.process(), "seed {seed}: {a}");
                    }
                }
            }
        }
        let kinds: std::collections::BTreeSet<&str> = (0..200)
            .flat_map(|s| Schedule::generate(s, 4, 1, 20_000, 4).steps)
            .map(|s| s.fault.kind())
            .collect();
        assert_eq!(kinds.len(), KINDS.len(), "every kind is drawn: {kinds:?}");
    }

    #[test]
    fn partitions_have_the_shape_they_claim() {
        for seed in 0..300 {
            for (v, full) in [(4usize, 0usize), (4, 1), (7, 2)] {
                let quorum = v - (v - 1) / 3;
                let validators = |side: &[usize]| side.iter().filter(|k| **k < v).count();
                for s in Schedule::generate(seed, v, full, 20_000, 4).steps {
                    if let Fault::Partition { shape, a, b } = s.fault {
                        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
                        all.sort_unstable();
                        assert_eq!(all, (0..v + full).collect::<Vec<_>>(), "{a:?} {b:?}");
                        let (va, vb) = (validators(&a), validators(&b));
                        match shape {
                            Shape::Isolated => assert!(a.len() == 1 && va == 1, "{a:?}"),
                            Shape::Minority => assert!(vb >= quorum && va < quorum, "{a:?} {b:?}"),
                            Shape::NoQuorum => assert!(va < quorum && vb < quorum, "{a:?} {b:?}"),
                        }
                    }
                }
            }
        }
    }
}
