//! Suite `risk`: the portfolio-margin screen over every account after a price move.
//!
//! The state holds `n` portfolio-margined accounts (1M in a full run) with options and
//! perpetuals on BTC and ETH, after BTC and ETH fell 4% (`testkit::portfolio_state`). Measured
//! in the same run:
//! - `engine`: the exchange engine's own evaluation, [`State::portfolio_loss`] per account (it
//!   reprices every option position in all 31 scenarios for each account), on all cores, over
//!   a sample of the accounts (it is the slow baseline);
//! - `engine-sweep@1`: the engine's block sweep (`State::count_liquidatable`) over every account
//!   on one core, which reprices each market once per sweep and reuses it for every account;
//! - `grid-pack`: building the [`bastion_exchange::PortfolioGrid`], i.e. the per-market scenario
//!   table (31 repricings per market, once) and the packed positions of every account;
//! - `kernel-host@1` and `kernel-host@all`: the risk kernel's device code compiled for the host
//!   (`bastion-kernels`), on one core and on all cores;
//! - `engine-sweep-screen-host@1`: the block sweep with a portfolio screen installed
//!   (`bastion_exchange::PortfolioScreen`) that is the host kernel on one core: the grid is
//!   packed and reduced by the kernel's code, the rest of each account (collateral, standard
//!   requirements, resting orders' add-on) stays on the CPU;
//! - with `--backend gpu`: the kernel on the GPU (`bastion-accel::GpuRisk`): kernel time and
//!   the round trip with copies, and `engine-sweep-screen-gpu`, the block sweep with the GPU
//!   as its portfolio screen (what a validator with `[risk] backend = "gpu"` runs).
//!
//! Every path's answers are checked against each other before anything is timed: the host
//! kernel against the engine on the engine's sample, bit for bit, and the GPU against the host
//! kernel on every account.

use crate::harness::{self, Ctx, Report};
use bastion_exchange::testkit::portfolio_state;
use bastion_exchange::{PortfolioGrid, PortfolioScreen, ScreenError, ScreenHandle, ScreenOutput, State};
use bastion_kernels::risk::{RiskInput, RiskOutput, host_portfolio_risk, host_portfolio_risk_range};
use bastion_types::AccountId;
use rayon::prelude::*;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

/// The sweep's portfolio screen over the risk kernel: its host build on the calling core, or
/// the GPU.
enum KernelScreen {
    Host,
    Gpu(Arc<bastion_accel::GpuRisk>),
}

impl PortfolioScreen for KernelScreen {
    fn name(&self) -> String {
        match self {
            KernelScreen::Host => "host kernel".into(),
            KernelScreen::Gpu(g) => g.info().to_string(),
        }
    }

    fn screen(&self, grid: &PortfolioGrid) -> Result<ScreenOutput, ScreenError> {
        let out = match self {
            KernelScreen::Host => {
                host_portfolio_risk(&input(grid)).map_err(|e| ScreenError(e.to_string()))?
            }
            KernelScreen::Gpu(g) => g.run(&input(grid)).map_err(|e| ScreenError(e.to_string()))?.0,
        };
        Ok(ScreenOutput { worst: out.worst, maintenance: out.mm, status: out.status })
    }
}

/// `state` with `screen` installed (threshold 1), and its handle (for the counters).
fn screened(state: &State, screen: KernelScreen) -> (State, ScreenHandle) {
    let mut s = state.clone();
    let handle = ScreenHandle::new(Arc::new(screen), 1);
    s.set_portfolio_screen(Some(handle.clone()));
    (s, handle)
}

/// Extra BTC strikes (a call and a put each) beyond the devnet's six options.
const EXTRA_STRIKES: usize = 20;

pub(crate) fn input(g: &PortfolioGrid) -> RiskInput<'_> {
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

/// The host kernel over all accounts, split into one contiguous range per core.
fn host_parallel(input: &RiskInput<'_>, n: usize, out: &mut RiskOutput) -> Result<(), String> {
    let threads = rayon::current_num_threads().max(1);
    let chunk = n.div_ceil(threads).max(1);
    out.worst.resize(n, 0);
    out.mm.resize(n, 0);
    out.status.resize(n, 0);
    out.worst
        .par_chunks_mut(chunk)
        .zip(out.mm.par_chunks_mut(chunk))
        .zip(out.status.par_chunks_mut(chunk))
        .enumerate()
        .try_for_each(|(i, ((w, m), s))| {
            let begin = i * chunk;
            host_portfolio_risk_range(input, begin, begin + w.len(), w, m, s).map_err(|e| e.to_string())
        })
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    // The GPU first: without one, `--backend gpu` fails before minutes of CPU work.
    let gpu_risk = match ctx.backend("cpu", &["cpu", "gpu"])?.as_str() {
        "gpu" => Some(Arc::new(bastion_accel::GpuRisk::open(0).map_err(|e| e.to_string())?)),
        _ => None,
    };
    let n = ctx.size(1_000_000, 20_000);
    let t = Instant::now();
    let state = portfolio_state(n, ctx.seed, EXTRA_STRIKES, false);
    let ids: Vec<AccountId> = state.accounts.iter().map(|(id, _)| *id).collect();
    report.note(format!(
        "built {} portfolio accounts over {} markets in {:.1} s (after a 4% move of BTC and ETH)",
        ids.len(),
        state.markets.len(),
        t.elapsed().as_secs_f64()
    ));
    let threads = rayon::current_num_threads();
    let accounts = ids.len() as u64;

    // Packing: the scenario table and the positions of every account.
    let mut grid = PortfolioGrid::default();
    report.push(harness::rounds(
        "grid-pack",
        "grid",
        1,
        ctx.size(3, 1),
        accounts,
        serde_json::json!({"accounts": accounts, "markets": state.markets.len(), "cores": 1}),
        |_| match state.portfolio_grid(ids.iter().copied()) {
            Ok(g) => grid = g,
            Err(e) => eprintln!("grid: {e}"),
        },
    ));
    if grid.len() != ids.len() {
        return Err(format!("the grid holds {} of {} accounts", grid.len(), ids.len()));
    }
    report.note(format!(
        "{} positions packed, {:.2} per account",
        grid.positions(),
        grid.positions() as f64 / grid.len().max(1) as f64
    ));
    let input = input(&grid);

    // Correctness before speed: the host kernel against the engine on a sample.
    let sample = ctx.size(20_000, 2_000).min(accounts) as usize;
    let reference = host_portfolio_risk(&input).map_err(|e| e.to_string())?;
    let engine: Vec<(usize, Option<(i128, i128)>)> = (0..sample)
        .into_par_iter()
        .map(|a| (a, state.portfolio_loss(grid.accounts[a]).and_then(Result::ok)))
        .collect();
    for (a, e) in &engine {
        let k = (reference.status[*a] == 0).then(|| (reference.worst[*a], reference.mm[*a]));
        if k != *e {
            return Err(format!("account {}: kernel {k:?}, engine {e:?}", grid.accounts[*a]));
        }
    }
    report.note(format!("host kernel equals the engine bit for bit on {sample} accounts"));

    report.push(harness::rounds(
        "engine@all",
        "sample",
        1,
        ctx.size(3, 1),
        sample as u64,
        serde_json::json!({"accounts": sample, "cores": threads, "what": "State::portfolio_loss per account"}),
        |_| {
            let worst: i128 = (0..sample)
                .into_par_iter()
                .filter_map(|a| engine_loss(&state, grid.accounts[a]))
                .map(|(w, _)| w)
                .sum();
            black_box(worst);
        },
    ));
    // The engine's own liquidation sweep over every account, one core: since this issue it
    // reprices each market once per sweep (a cache) and reduces per account, as the grid does.
    let mut liquidatable = 0;
    report.push(harness::rounds(
        "engine-sweep@1",
        "sweep",
        1,
        ctx.size(3, 1),
        accounts,
        serde_json::json!({"accounts": accounts, "cores": 1, "what": "State::count_liquidatable (the block's margin sweep)"}),
        |_| liquidatable = black_box(state.count_liquidatable()),
    ));
    report.note(format!("{liquidatable} of {accounts} accounts below maintenance after the move"));
    // The same sweep with the host kernel as its portfolio screen, checked first.
    let (with_host, handle) = screened(&state, KernelScreen::Host);
    if with_host.count_liquidatable() != liquidatable {
        return Err("the sweep with the host kernel as its screen counts differently".into());
    }
    let c = handle.stats().counts();
    report.note(format!(
        "the sweep's screen (host kernel) answered {} accounts and flagged {} for the CPU",
        c.answered, c.flagged
    ));
    report.push(harness::rounds(
        "engine-sweep-screen-host@1",
        "sweep",
        1,
        ctx.size(3, 1),
        accounts,
        serde_json::json!({"accounts": accounts, "cores": 1, "what": "State::count_liquidatable with the host kernel as its portfolio screen"}),
        |_| {
            black_box(with_host.count_liquidatable());
        },
    ));
    drop(with_host);
    report.ratio_throughput(
        "engine-sweep-screen-host@1_vs_engine-sweep@1",
        "engine-sweep-screen-host@1",
        "engine-sweep@1",
    );
    let mut out = RiskOutput::default();
    report.push(harness::rounds(
        "kernel-host@1",
        "sweep",
        1,
        ctx.size(5, 2),
        accounts,
        serde_json::json!({"accounts": accounts, "cores": 1}),
        |_| {
            if let Ok(o) = host_portfolio_risk(&input) {
                out = o;
            }
            black_box(&out);
        },
    ));
    report.push(harness::rounds(
        "kernel-host@all",
        "sweep",
        1,
        ctx.size(10, 3),
        accounts,
        serde_json::json!({"accounts": accounts, "cores": threads}),
        |_| {
            if let Err(e) = host_parallel(&input, grid.len(), &mut out) {
                eprintln!("host kernel: {e}");
            }
            black_box(&out);
        },
    ));
    if out != reference {
        return Err("the parallel host kernel differs from the single-threaded one".into());
    }
    report.ratio_throughput("kernel-host@all_vs_engine@all", "kernel-host@all", "engine@all");
    report.ratio_throughput("kernel-host@all_vs_kernel-host@1", "kernel-host@all", "kernel-host@1");
    report.ratio_throughput("engine-sweep@1_vs_engine@all", "engine-sweep@1", "engine@all");
    report.ratio_throughput("kernel-host@1_vs_engine-sweep@1", "kernel-host@1", "engine-sweep@1");
    if let Some(m) = report.get("kernel-host@all") {
        let ms = m.elapsed_ns as f64 / m.ops.max(1) as f64 * accounts as f64 / 1e6;
        report.note(format!("host kernel: {ms:.1} ms per sweep of {accounts} accounts on {threads} cores"));
    }
    if let Some(risk) = &gpu_risk {
        gpu(ctx, report, risk, &input, &reference, accounts)?;
        // The block sweep with the GPU as its portfolio screen.
        let (with_gpu, handle) = screened(&state, KernelScreen::Gpu(risk.clone()));
        if with_gpu.count_liquidatable() != liquidatable {
            return Err("the sweep with the GPU as its screen counts differently".into());
        }
        report.push(harness::rounds(
            "engine-sweep-screen-gpu",
            "sweep",
            1,
            ctx.size(5, 2),
            accounts,
            serde_json::json!({"accounts": accounts, "cores": 1, "what": "State::count_liquidatable with the GPU as its portfolio screen"}),
            |_| {
                black_box(with_gpu.count_liquidatable());
            },
        ));
        let c = handle.stats().counts();
        report.note(format!(
            "the sweep's GPU screen: {} sweeps, {} accounts answered, {} flagged, {} failed calls",
            c.sweeps, c.answered, c.flagged, c.failed
        ));
        report.ratio_throughput(
            "engine-sweep-screen-gpu_vs_engine-sweep@1",
            "engine-sweep-screen-gpu",
            "engine-sweep@1",
        );
    }
    Ok(())
}

fn engine_loss(state: &State, id: AccountId) -> Option<(i128, i128)> {
    state.portfolio_loss(id).and_then(Result::ok)
}

/// `--backend gpu`: the same sweep on the GPU, checked against the host kernel on every
/// account, timed as the kernel alone and as the round trip with copies.
fn gpu(
    ctx: &Ctx,
    report: &mut Report,
    risk: &bastion_accel::GpuRisk,
    input: &RiskInput<'_>,
    reference: &RiskOutput,
    accounts: u64,
) -> Result<(), String> {
    report.note(format!("GPU: {}", risk.info()));
    let (first, _) = risk.run(input).map_err(|e| e.to_string())?;
    if first != *reference {
        let at = (0..reference.status.len())
            .find(|&a| first.get(a) != reference.get(a) || first.status.get(a) != reference.status.get(a));
        return Err(format!("the GPU kernel differs from the host kernel (first at account {at:?})"));
    }
    report.note(format!("GPU output equals the host kernel on all {accounts} accounts"));
    let reps = ctx.size(20, 3);
    let mut kernel_ns: Vec<u64> = Vec::new();
    report.push(harness::rounds(
        "gpu-round-trip",
        "sweep",
        1,
        reps,
        accounts,
        serde_json::json!({"accounts": accounts, "what": "copy in, kernel, copy out"}),
        |_| match risk.run(input) {
            Ok((o, t)) => {
                kernel_ns.push(u64::try_from(t.kernel.as_nanos()).unwrap_or(u64::MAX));
                black_box(o);
            }
            Err(e) => eprintln!("gpu: {e}"),
        },
    ));
    kernel_ns.sort_unstable();
    if let Some(median) = kernel_ns.get(kernel_ns.len() / 2) {
        report.note(format!(
            "GPU kernel alone: median {:.3} ms for {accounts} accounts ({:.0} accounts/s)",
            *median as f64 / 1e6,
            accounts as f64 / (*median as f64 / 1e9)
        ));
    }
    report.ratio_throughput("gpu-round-trip_vs_kernel-host@all", "gpu-round-trip", "kernel-host@all");
    report.ratio_throughput("gpu-round-trip_vs_engine@all", "gpu-round-trip", "engine@all");
    Ok(())
}
