//! The liquidation sweep's portfolio screen on the GPU (`[risk]` in node.toml).
//!
//! With `backend = "gpu"` (or `"auto"` where a GPU opens) the node opens
//! [`bastion_accel::GpuRisk`] and installs a [`GpuScreen`] on the store's state
//! ([`bastion_store::Store::set_portfolio_screen`]), so every block's sweep, speculative
//! executions included, hands its portfolio accounts to the risk kernel in one grid when there
//! are at least `min_accounts` of them. The kernel is bit-identical to the exchange's CPU
//! evaluation, so the GPU changes no event and no root; a GPU error sends that sweep's accounts
//! to the CPU (counted by the exchange's `ScreenStats`), and after [`DISABLE_AFTER`] failed
//! calls in a row the GPU is no longer asked for the rest of the process (a sticky CUDA error
//! would fail every call). [`RiskTelemetry`] turns the counters into `bastion_risk_screen_*`
//! metrics.

use crate::metrics::{Counter, Gauge, Registry};
use bastion_exchange::{
    DEFAULT_MIN_ACCOUNTS, PortfolioGrid, PortfolioScreen, ScreenCounts, ScreenError, ScreenHandle,
    ScreenOutput,
};
use bastion_kernels::risk::RiskInput;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// Failed GPU calls in a row after which the GPU is not asked again (every sweep then runs on
/// the CPU, as it would without a GPU).
pub const DISABLE_AFTER: u64 = 8;

/// The largest `min_accounts` accepted.
const MIN_ACCOUNTS_MAX: usize = 1 << 24;

const BACKENDS: [&str; 3] = ["cpu", "gpu", "auto"];

/// The `[risk]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskSection {
    /// Who evaluates the sweep's portfolio grids: `cpu` (the default), `gpu` (the risk kernel
    /// on GPU `gpu`; the node does not start if it does not open) or `auto` (the GPU where one
    /// opens, the CPU otherwise).
    pub backend: String,
    /// The GPU's ordinal.
    pub gpu: usize,
    /// Portfolio accounts a sweep needs before it hands them to the GPU (below: the CPU).
    pub min_accounts: usize,
}

impl Default for RiskSection {
    fn default() -> Self {
        RiskSection { backend: "cpu".into(), gpu: 0, min_accounts: DEFAULT_MIN_ACCOUNTS }
    }
}

impl RiskSection {
    /// Checks the table; errors name the file and the key.
    pub fn check(&self, file: &Path) -> Result<(), String> {
        let file = file.display();
        if !BACKENDS.contains(&self.backend.as_str()) {
            return Err(format!(
                "{file}: key `risk.backend` is {:?}; allowed: {}",
                self.backend,
                BACKENDS.join(", ")
            ));
        }
        if !(1..=MIN_ACCOUNTS_MAX).contains(&self.min_accounts) {
            return Err(format!(
                "{file}: key `risk.min_accounts` is {}; allowed: 1 to {MIN_ACCOUNTS_MAX}",
                self.min_accounts
            ));
        }
        Ok(())
    }
}

fn input(g: &PortfolioGrid) -> RiskInput<'_> {
    RiskInput {
        diffs: &g.diffs,
        lots: &g.lots,
        market_ok: &g.market_ok,
        acct_groups: &g.acct_groups,
        group_pos: &g.group_pos,
        pos_market: &g.pos_market,
        pos_size: &g.pos_size,
        acct_ok: &g.acct_ok,
        mm_ppm: g.mm_ppm,
    }
}

/// What the GPU did, beside the exchange's own counts.
#[derive(Debug, Default)]
pub struct GpuScreenStats {
    calls: AtomicU64,
    errors: AtomicU64,
    in_a_row: AtomicU64,
    kernel_us: AtomicU64,
    call_us: AtomicU64,
    disabled: AtomicBool,
}

/// A reading of [`GpuScreenStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuCounts {
    /// Calls that reached the GPU.
    pub calls: u64,
    /// Calls that failed (and calls refused once disabled).
    pub errors: u64,
    /// Kernel time, µs (CUDA events).
    pub kernel_us: u64,
    /// Whole calls (copies, launch, synchronization), µs, wall clock.
    pub call_us: u64,
    /// Whether the GPU is still asked.
    pub enabled: bool,
}

/// Something that evaluates a grid as the risk kernel does: [`bastion_accel::GpuRisk`], or a
/// stand-in in tests. `Ok` carries the output and `(kernel µs, call µs)`.
pub trait RiskDevice: Send + Sync {
    /// The device, in words.
    fn describe(&self) -> String;
    /// Runs the kernel on `input`.
    fn run(&self, input: &RiskInput<'_>) -> Result<(ScreenOutput, (u64, u64)), String>;
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl RiskDevice for bastion_accel::GpuRisk {
    fn describe(&self) -> String {
        self.info().to_string()
    }

    fn run(&self, input: &RiskInput<'_>) -> Result<(ScreenOutput, (u64, u64)), String> {
        let (out, timing) = bastion_accel::GpuRisk::run(self, input).map_err(|e| e.to_string())?;
        let output = ScreenOutput { worst: out.worst, maintenance: out.mm, status: out.status };
        Ok((output, (micros(timing.kernel), micros(timing.total))))
    }
}

/// The exchange's [`PortfolioScreen`] over a [`RiskDevice`].
pub struct GpuScreen {
    device: Box<dyn RiskDevice>,
    stats: GpuScreenStats,
    /// The last error, logged when it changes.
    last_error: Mutex<String>,
}

impl std::fmt::Debug for GpuScreen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuScreen")
            .field("device", &self.device.describe())
            .field("stats", &self.stats)
            .finish()
    }
}

impl GpuScreen {
    /// A screen over `device`.
    pub fn new(device: Box<dyn RiskDevice>) -> GpuScreen {
        GpuScreen { device, stats: GpuScreenStats::default(), last_error: Mutex::new(String::new()) }
    }

    /// The GPU's counters now.
    pub fn counts(&self) -> GpuCounts {
        let s = &self.stats;
        GpuCounts {
            calls: s.calls.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            kernel_us: s.kernel_us.load(Ordering::Relaxed),
            call_us: s.call_us.load(Ordering::Relaxed),
            enabled: !s.disabled.load(Ordering::Relaxed),
        }
    }

    fn failed(&self, why: String) -> ScreenError {
        let s = &self.stats;
        s.errors.fetch_add(1, Ordering::Relaxed);
        let in_a_row = s.in_a_row.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if *last != why {
            warn!(error = %why, "risk: the GPU portfolio screen failed; this sweep runs on the CPU");
            last.clone_from(&why);
        }
        if in_a_row >= DISABLE_AFTER && !s.disabled.swap(true, Ordering::Relaxed) {
            warn!(
                failures = in_a_row,
                error = %why,
                "risk: the GPU portfolio screen failed {in_a_row} times in a row; the sweep stays on the CPU \
                 until the node restarts"
            );
        }
        ScreenError(why)
    }
}

impl PortfolioScreen for GpuScreen {
    fn name(&self) -> String {
        format!("gpu ({})", self.device.describe())
    }

    fn screen(&self, grid: &PortfolioGrid) -> Result<ScreenOutput, ScreenError> {
        let s = &self.stats;
        if s.disabled.load(Ordering::Relaxed) {
            s.errors.fetch_add(1, Ordering::Relaxed);
            return Err(ScreenError(format!(
                "the GPU screen is disabled after {DISABLE_AFTER} failures in a row"
            )));
        }
        s.calls.fetch_add(1, Ordering::Relaxed);
        match self.device.run(&input(grid)) {
            Ok((out, (kernel_us, call_us))) => {
                s.in_a_row.store(0, Ordering::Relaxed);
                s.kernel_us.fetch_add(kernel_us, Ordering::Relaxed);
                s.call_us.fetch_add(call_us, Ordering::Relaxed);
                Ok(out)
            }
            Err(e) => Err(self.failed(e)),
        }
    }
}

/// The installed screen: the handle the store's state carries and the GPU's own counters.
#[derive(Clone, Debug)]
pub struct RiskScreen {
    handle: ScreenHandle,
    gpu: Arc<GpuScreen>,
}

impl RiskScreen {
    /// `screen` behind a handle with threshold `min_accounts`.
    pub fn new(screen: GpuScreen, min_accounts: usize) -> RiskScreen {
        let gpu = Arc::new(screen);
        RiskScreen { handle: ScreenHandle::new(gpu.clone(), min_accounts), gpu }
    }

    /// What to install on the state.
    pub fn handle(&self) -> ScreenHandle {
        self.handle.clone()
    }

    /// The exchange's counts (what the sweeps did) and the GPU's.
    pub fn counts(&self) -> (ScreenCounts, GpuCounts) {
        (self.handle.stats().counts(), self.gpu.counts())
    }
}

/// Opens the screen `[risk]` asks for: `None` for `cpu`, and for `auto` where no GPU opens.
pub fn open(cfg: &RiskSection) -> Result<Option<RiskScreen>, String> {
    let gpu = match cfg.backend.as_str() {
        "cpu" => return Ok(None),
        "gpu" => bastion_accel::GpuRisk::open(cfg.gpu).map_err(|e| {
            format!(
                "[risk] backend = \"gpu\": GPU {} does not open: {e}; set `risk.backend` to \"cpu\" or \"auto\" \
                 in node.toml to run the sweep on the CPU",
                cfg.gpu
            )
        })?,
        _ => match bastion_accel::GpuRisk::open(cfg.gpu) {
            Ok(g) => g,
            Err(e) => {
                info!(error = %e, "risk: no GPU for the portfolio screen ([risk] backend = \"auto\"); the sweep runs on the CPU");
                return Ok(None);
            }
        },
    };
    let screen = RiskScreen::new(GpuScreen::new(Box::new(gpu)), cfg.min_accounts);
    info!(
        screen = %screen.handle.name(),
        min_accounts = screen.handle.min_accounts(),
        "risk: the liquidation sweep hands portfolio accounts to the GPU"
    );
    Ok(Some(screen))
}

/// The screen's counters as Prometheus metrics (`bastion_risk_screen_*`), brought up to date on
/// every status tick. Without a screen only `bastion_risk_screen_enabled` (0) is registered.
#[derive(Debug)]
pub struct RiskTelemetry {
    screen: Option<RiskScreen>,
    enabled: Arc<Gauge>,
    counters: Vec<Arc<Counter>>,
    prev: Vec<u64>,
}

impl RiskTelemetry {
    /// Metrics in `reg` for `screen`.
    pub fn new(reg: &Registry, screen: Option<&RiskScreen>) -> RiskTelemetry {
        let enabled = reg.gauge(
            "bastion_risk_screen_enabled",
            "1 while the liquidation sweep hands portfolio accounts to the GPU ([risk] backend)",
            &[],
        );
        enabled.set(if screen.is_some() { 1.0 } else { 0.0 });
        let mut counters = Vec::new();
        if screen.is_some() {
            const SWEEPS: &str = "Liquidation sweeps with portfolio accounts, by what evaluated them";
            const ACCOUNTS: &str = "Portfolio accounts of sweeps handed to the GPU, by who evaluated them";
            for (name, help, labels) in [
                ("bastion_risk_screen_sweeps_total", SWEEPS, [("outcome", "gpu")]),
                ("bastion_risk_screen_sweeps_total", SWEEPS, [("outcome", "gpu_failed")]),
                ("bastion_risk_screen_sweeps_total", SWEEPS, [("outcome", "below_threshold")]),
                ("bastion_risk_screen_accounts_total", ACCOUNTS, [("path", "gpu")]),
                ("bastion_risk_screen_accounts_total", ACCOUNTS, [("path", "cpu_flagged")]),
                ("bastion_risk_screen_accounts_total", ACCOUNTS, [("path", "cpu_error")]),
                ("bastion_risk_screen_kernel_us_total", "Risk kernel time on the GPU, µs", [("", "")]),
                (
                    "bastion_risk_screen_call_us_total",
                    "GPU calls of the sweep, whole (copies, launch, sync), µs",
                    [("", "")],
                ),
            ] {
                let labels: &[(&str, &str)] = if labels[0].0.is_empty() { &[] } else { &labels };
                counters.push(reg.counter(name, help, labels));
            }
        }
        let prev = vec![0; counters.len()];
        RiskTelemetry { screen: screen.cloned(), enabled, counters, prev }
    }

    /// Adds what grew since the last update.
    pub fn update(&mut self) {
        let Some(screen) = &self.screen else { return };
        let (c, g) = screen.counts();
        self.enabled.set(if g.enabled { 1.0 } else { 0.0 });
        let totals = [
            c.sweeps.saturating_sub(c.failed),
            c.failed,
            c.below_threshold,
            c.answered,
            c.flagged,
            c.error_accounts,
            g.kernel_us,
            g.call_us,
        ];
        for ((counter, prev), total) in self.counters.iter().zip(self.prev.iter_mut()).zip(totals) {
            counter.add(total.saturating_sub(*prev));
            *prev = total.max(*prev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bastion_exchange::testkit::{observe_all, portfolio_state};
    use bastion_types::{Block, UnderlyingId};

    /// The risk kernel's host build, failing on the calls `fail` says.
    struct HostDevice {
        calls: AtomicU64,
        fail: fn(u64) -> bool,
    }

    impl RiskDevice for HostDevice {
        fn describe(&self) -> String {
            "host kernel".into()
        }

        fn run(&self, input: &RiskInput<'_>) -> Result<(ScreenOutput, (u64, u64)), String> {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            if (self.fail)(n) {
                return Err("CUDA_ERROR_ILLEGAL_ADDRESS (test)".into());
            }
            let out = bastion_kernels::risk::host_portfolio_risk(input).map_err(|e| e.to_string())?;
            Ok((ScreenOutput { worst: out.worst, maintenance: out.mm, status: out.status }, (3, 5)))
        }
    }

    fn blocks(state: &bastion_exchange::State, n: u64) -> Vec<Block> {
        let v = state.validators.len() as u16;
        (1..=n)
            .map(|i| {
                let (height, t) = (state.height + i, state.timestamp_ms + 250 * i);
                let btc = 96_000_000_000 - 1_500_000_000 * i as i64;
                Block {
                    height,
                    timestamp_ms: t,
                    oracle: observe_all(
                        &state.chain_id,
                        v,
                        height,
                        t,
                        &[(UnderlyingId(0), btc), (UnderlyingId(1), 3_800_000_000)],
                    ),
                    ..Block::default()
                }
            })
            .collect()
    }

    #[test]
    fn the_adapter_changes_no_root_falls_back_on_errors_and_stops_asking_after_a_run_of_them() {
        let state = portfolio_state(1_500, 17, 2, false);
        // Calls 0 and 1 answer, 2 fails, then every call fails: disabled after DISABLE_AFTER.
        let device = HostDevice { calls: AtomicU64::new(0), fail: |n| n >= 2 && n != 3 };
        let screen = RiskScreen::new(GpuScreen::new(Box::new(device)), 1);
        let mut with = state.clone();
        with.set_portfolio_screen(Some(screen.handle()));
        let mut without = state.clone();
        let reg = Registry::new();
        let mut telemetry = RiskTelemetry::new(&reg, Some(&screen));
        for b in blocks(&state, 14) {
            let a = with.apply_block(&b).unwrap();
            let c = without.apply_block(&b).unwrap();
            assert_eq!((a.events, a.root), (c.events, c.root), "height {}", b.height);
        }
        telemetry.update();
        let (c, g) = screen.counts();
        assert_eq!(c.sweeps, 14);
        // Three answered (calls 0, 1 and 3), call 2 failed, calls 4 to 11 failed in a row: then
        // the last two sweeps were not handed to the GPU at all.
        assert_eq!(g.calls, 3 + 1 + DISABLE_AFTER, "{g:?}");
        assert!(!g.enabled);
        assert_eq!(c.failed, 14 - 3, "{c:?}");
        assert_eq!(g.errors, c.failed);
        assert!(c.answered > 3_000 && c.error_accounts > 10_000, "{c:?}");
        assert_eq!(g.kernel_us, 3 * 3);
        let text = reg.render();
        assert!(text.contains("bastion_risk_screen_enabled 0"), "{text}");
        assert!(text.contains("bastion_risk_screen_sweeps_total{outcome=\"gpu_failed\"} 11"), "{text}");
        assert!(text.contains(&format!("bastion_risk_screen_accounts_total{{path=\"gpu\"}} {}", c.answered)));
        assert!(text.contains("bastion_risk_screen_kernel_us_total 9"), "{text}");
    }

    #[test]
    fn without_a_screen_only_enabled_0_is_registered() {
        let reg = Registry::new();
        let mut t = RiskTelemetry::new(&reg, None);
        t.update();
        let text = reg.render();
        assert!(text.contains("bastion_risk_screen_enabled 0"), "{text}");
        assert!(!text.contains("bastion_risk_screen_sweeps_total"), "{text}");
    }

    fn load(text: &str) -> Result<crate::node::NodeConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let minimal = "genesis = \"genesis.json\"\nkeys = \"keys.json\"\ndata_dir = \"data\"\n";
        std::fs::write(&path, format!("{minimal}{text}")).unwrap();
        crate::node::NodeConfig::load(&path)
    }

    #[test]
    fn risk_section_parses_and_every_error_names_the_key() {
        assert_eq!(load("").unwrap().risk, RiskSection::default());
        assert_eq!(RiskSection::default().backend, "cpu");
        let c = load("[risk]\nbackend = \"gpu\"\ngpu = 1\nmin_accounts = 4096\n").unwrap();
        assert_eq!(c.risk, RiskSection { backend: "gpu".into(), gpu: 1, min_accounts: 4096 });
        assert_eq!(load("[risk]\nbackend = \"auto\"\n").unwrap().risk.backend, "auto");
        let e = load("[risk]\nbackend = \"fast\"\n").unwrap_err();
        assert!(e.contains("node.toml") && e.contains("risk.backend") && e.contains("cpu, gpu, auto"), "{e}");
        let e = load("[risk]\nmin_accounts = 0\n").unwrap_err();
        assert!(e.contains("risk.min_accounts") && e.contains("1 to 16777216"), "{e}");
        let e = load("[risk]\nthreshold = 5\n").unwrap_err();
        assert!(e.contains("threshold"), "{e}");
    }

    #[test]
    fn the_cpu_backend_opens_nothing_and_auto_falls_back_without_a_gpu() {
        assert!(open(&RiskSection::default()).unwrap().is_none());
        if bastion_accel::GpuRisk::open(0).is_err() {
            let auto = RiskSection { backend: "auto".into(), ..RiskSection::default() };
            assert!(open(&auto).unwrap().is_none());
            let gpu = RiskSection { backend: "gpu".into(), ..RiskSection::default() };
            let e = open(&gpu).unwrap_err();
            assert!(e.contains("risk.backend") && e.contains("does not open"), "{e}");
        }
    }
}
