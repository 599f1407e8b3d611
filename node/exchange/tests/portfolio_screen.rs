#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The liquidation sweep with a portfolio screen installed gives exactly the events and roots
//! of the sweep without one, whatever the screen does: answers (the risk kernel's host build,
//! the very code the GPU runs), flags accounts for the CPU, or fails. The fallbacks are counted.
//! Seeds are printed; `BASTION_SEED=N` replays one.

use bastion_exchange::testkit::{PathKind, Rng, Workload, observe_all, portfolio_state};
use bastion_exchange::{
    Genesis, PortfolioGrid, PortfolioScreen, SCREEN_OK, ScreenCounts, ScreenError, ScreenHandle,
    ScreenOutput, State,
};
use bastion_kernels::risk::{RiskInput, host_portfolio_risk};
use bastion_types::{Action, Block, Event, Tx, UnderlyingId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn seed() -> u64 {
    let s = std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_secs())
    });
    println!("seed {s} (replay with BASTION_SEED={s})");
    s
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

/// The risk kernel's host build: what `GpuRisk` computes on the device, bit for bit.
#[derive(Default)]
struct HostScreen {
    calls: AtomicU64,
    accounts: AtomicU64,
}

impl PortfolioScreen for HostScreen {
    fn name(&self) -> String {
        "host kernel".into()
    }

    fn screen(&self, grid: &PortfolioGrid) -> Result<ScreenOutput, ScreenError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.accounts.fetch_add(grid.len() as u64, Ordering::Relaxed);
        let out = host_portfolio_risk(&input(grid)).map_err(|e| ScreenError(e.to_string()))?;
        Ok(ScreenOutput { worst: out.worst, maintenance: out.mm, status: out.status })
    }
}

/// A device that always fails (a lost GPU, a CUDA error on every call).
struct FailingScreen;

impl PortfolioScreen for FailingScreen {
    fn name(&self) -> String {
        "failing".into()
    }

    fn screen(&self, _: &PortfolioGrid) -> Result<ScreenOutput, ScreenError> {
        Err(ScreenError("CUDA_ERROR_LAUNCH_FAILED (test)".into()))
    }
}

/// The host kernel, but on a seeded schedule: some calls fail, some answers come back short
/// (malformed), and of the rest a random part of the accounts is flagged for the CPU.
struct FlakyScreen {
    rng: Mutex<Rng>,
}

impl PortfolioScreen for FlakyScreen {
    fn name(&self) -> String {
        "flaky".into()
    }

    fn screen(&self, grid: &PortfolioGrid) -> Result<ScreenOutput, ScreenError> {
        let mut rng = self.rng.lock().unwrap();
        match rng.below(10) {
            0 => return Err(ScreenError("flaky: failed".into())),
            1 => return Ok(ScreenOutput::default()),
            _ => {}
        }
        let out = host_portfolio_risk(&input(grid)).map_err(|e| ScreenError(e.to_string()))?;
        let mut status = out.status;
        for s in &mut status {
            if rng.chance(30) {
                *s = 1;
            }
        }
        Ok(ScreenOutput { worst: out.worst, maintenance: out.mm, status })
    }
}

/// Answers every account with the same `(worst, maintenance)`: wrong on purpose, to show the
/// sweep uses what a screen answers (so the equalities above are not vacuous).
struct LyingScreen(i128);

impl PortfolioScreen for LyingScreen {
    fn name(&self) -> String {
        "lying".into()
    }

    fn screen(&self, grid: &PortfolioGrid) -> Result<ScreenOutput, ScreenError> {
        let n = grid.len();
        Ok(ScreenOutput { worst: vec![self.0; n], maintenance: vec![self.0; n], status: vec![SCREEN_OK; n] })
    }
}

fn installed(state: &State, screen: Arc<dyn PortfolioScreen>, min_accounts: usize) -> (State, ScreenHandle) {
    let mut s = state.clone();
    let handle = ScreenHandle::new(screen, min_accounts);
    s.set_portfolio_screen(Some(handle.clone()));
    (s, handle)
}

/// A seeded devnet workload in which most traders switch to portfolio margin right after being
/// funded, over a flash crash: portfolio accounts with options are swept, and some liquidated.
fn workload_blocks(seed: u64, traders: u64, blocks: u64) -> (State, Vec<Block>) {
    let genesis = Genesis::devnet();
    let mut state = State::from_genesis(&genesis).unwrap();
    let mut w =
        Workload::new(seed, traders, PathKind::FlashCrash { crash_at: 12, crash_blocks: 6 }, &genesis);
    w.block_ms = 60_000;
    let mut out = Vec::new();
    let deposits = w.funding_txs(5_000_000_000);
    let funding = w.block_with(deposits);
    state.apply_block(&funding).unwrap();
    out.push(funding);
    let mut modes = Vec::new();
    for t in 1..=traders {
        if w.rng.chance(80) {
            let i = t as usize;
            w.nonces[i] += 1;
            modes.push(Tx {
                signer: w.id(t),
                nonce: w.nonces[i],
                action: Action::SetMarginMode { portfolio: true },
            });
        }
    }
    let modes = w.block_with(modes);
    state.apply_block(&modes).unwrap();
    out.push(modes);
    for _ in 0..blocks {
        let b = w.next_block(&state, 60);
        state.apply_block(&b).unwrap();
        out.push(b);
    }
    (State::from_genesis(&genesis).unwrap(), out)
}

/// Applies `blocks` to `cpu` (no screen) and to `screened` in lockstep and asserts equal events
/// and roots at every height; returns the portfolio accounts' liquidations seen.
fn lockstep(label: &str, mut cpu: State, mut screened: State, blocks: &[Block]) -> usize {
    let mut liquidated = 0;
    for b in blocks {
        let portfolio: Vec<_> =
            cpu.accounts.arena().filter(|(_, a)| a.portfolio).map(|(id, _)| *id).collect::<Vec<_>>();
        let want = cpu.apply_block(b).unwrap_or_else(|e| panic!("{label}: block {} refused: {e}", b.height));
        let got =
            screened.apply_block(b).unwrap_or_else(|e| panic!("{label}: block {} refused: {e}", b.height));
        assert_eq!(got.events, want.events, "{label}: block {}", b.height);
        assert_eq!(got.root, want.root, "{label}: block {}", b.height);
        liquidated += want
            .events
            .iter()
            .filter(|e| matches!(e, Event::Liquidated { account, .. } if portfolio.contains(account)))
            .count();
    }
    liquidated
}

#[test]
fn the_host_kernel_screen_changes_no_event_and_no_root() {
    let s = seed();
    let mut answered = 0;
    let mut liquidated = 0;
    for round in 0..3u64 {
        let (genesis_state, blocks) = workload_blocks(s.wrapping_add(round), 120, 40);
        let host = Arc::new(HostScreen::default());
        let (screened, handle) = installed(&genesis_state, host.clone(), 1);
        liquidated += lockstep(&format!("seed {s} round {round}"), genesis_state, screened, &blocks);
        let c = handle.stats().counts();
        println!("seed {s} round {round}: {c:?}");
        assert_eq!(c.sweeps, host.calls.load(Ordering::Relaxed), "seed {s}: every call counted");
        assert_eq!(c.answered + c.flagged, host.accounts.load(Ordering::Relaxed), "seed {s}");
        assert_eq!((c.failed, c.error_accounts, c.below_threshold), (0, 0, 0), "seed {s}");
        answered += c.answered;
    }
    assert!(answered > 1_000, "seed {s}: the screen answered {answered} accounts");
    println!("seed {s}: {answered} accounts answered by the screen, {liquidated} portfolio liquidations");
}

/// A state of many portfolio accounts written in directly, then a crash block: the sweep
/// liquidates some of them (and takes over what it cannot place), with and without the screen.
fn crash(state: &State, label: &str, screen: Arc<dyn PortfolioScreen>, min_accounts: usize) -> ScreenCounts {
    let (screened, handle) = installed(state, screen, min_accounts);
    let block = crash_block(state);
    lockstep(label, state.clone(), screened, &[block]);
    handle.stats().counts()
}

#[test]
fn a_crash_over_random_portfolio_states_sweeps_alike_with_every_screen() {
    let s = seed();
    for round in 0..3u64 {
        let state = portfolio_state(3_000, s.wrapping_add(round), 4, round == 2);
        let label = format!("seed {s} round {round}");
        let c = crash(&state, &label, Arc::new(HostScreen::default()), 1);
        assert_eq!(c.sweeps, 1, "{label}: one grid per sweep: {c:?}");
        assert!(c.answered > 2_000, "{label}: {c:?}");
        let c = crash(&state, &label, Arc::new(FailingScreen), 1);
        assert_eq!((c.sweeps, c.failed, c.answered), (1, 1, 0), "{label}: {c:?}");
        assert!(c.error_accounts > 2_000, "{label}: {c:?}");
        let c = crash(&state, &label, Arc::new(HostScreen::default()), usize::MAX);
        assert_eq!((c.sweeps, c.below_threshold, c.answered), (0, 1, 0), "{label}: {c:?}");
    }
}

#[test]
fn count_liquidatable_is_the_same_with_a_screen() {
    let s = seed();
    let state = portfolio_state(2_000, s, 4, true);
    let want = state.count_liquidatable();
    assert!(want > 0, "seed {s}");
    for screen in [
        Arc::new(HostScreen::default()) as Arc<dyn PortfolioScreen>,
        Arc::new(FailingScreen),
        Arc::new(FlakyScreen { rng: Mutex::new(Rng::new(s)) }),
    ] {
        let (screened, handle) = installed(&state, screen, 1);
        for _ in 0..3 {
            assert_eq!(screened.count_liquidatable(), want, "seed {s}: {:?}", handle);
        }
        assert_eq!(handle.stats().counts().sweeps, 3, "seed {s}");
    }
}

#[test]
fn a_failing_screen_falls_back_to_the_cpu_and_is_counted() {
    let s = seed();
    let (genesis_state, blocks) = workload_blocks(s, 100, 30);
    let (screened, handle) = installed(&genesis_state, Arc::new(FailingScreen), 1);
    lockstep(&format!("seed {s} failing"), genesis_state, screened, &blocks);
    let c = handle.stats().counts();
    println!("seed {s}: {c:?}");
    assert!(c.sweeps > 10, "seed {s}: {c:?}");
    assert_eq!(c.failed, c.sweeps, "seed {s}: every call failed and was counted");
    assert_eq!((c.answered, c.flagged), (0, 0), "seed {s}");
    assert!(c.error_accounts >= c.sweeps, "seed {s}: {c:?}");
}

#[test]
fn a_flaky_screen_changes_nothing_either() {
    let s = seed();
    let (genesis_state, blocks) = workload_blocks(s, 100, 30);
    let flaky = Arc::new(FlakyScreen { rng: Mutex::new(Rng::new(s)) });
    let (screened, handle) = installed(&genesis_state, flaky, 1);
    lockstep(&format!("seed {s} flaky"), genesis_state, screened, &blocks);
    let c = handle.stats().counts();
    println!("seed {s}: {c:?}");
    assert!(c.answered > 0 && c.flagged > 0, "seed {s}: {c:?}");
    assert_eq!(c.error_accounts > 0, c.failed > 0, "seed {s}: {c:?}");
}

#[test]
fn the_sweep_uses_what_the_screen_answers() {
    // A screen that lies is believed: the contract (bit-identity) is the screen's to keep, and
    // this is what makes the equalities above a test of the screened path rather than of its
    // absence. In a crash over written-in portfolio accounts (no book to close them on) the
    // sweep's targets have their resting orders cancelled and positions pruned: a screen that
    // says "no loss" spares accounts the CPU targets, one that says "huge loss" targets healthy
    // ones, and either changes the root.
    let s = seed();
    let state = portfolio_state(2_000, s, 2, false);
    let honest = crash_outcome(&state, None);
    let blind = crash_outcome(&state, Some(Arc::new(LyingScreen(0))));
    let alarmed = crash_outcome(&state, Some(Arc::new(LyingScreen(1 << 80))));
    assert_eq!(crash_outcome(&state, Some(Arc::new(HostScreen::default()))), honest, "seed {s}");
    assert_ne!(blind.root, honest.root, "seed {s}");
    assert_ne!(alarmed.root, honest.root, "seed {s}");
}

fn crash_block(state: &State) -> Block {
    let n = state.validators.len() as u16;
    let (height, t) = (state.height + 1, state.timestamp_ms + 250);
    Block {
        height,
        timestamp_ms: t,
        oracle: observe_all(
            &state.chain_id,
            n,
            height,
            t,
            &[(UnderlyingId(0), 89_000_000_000), (UnderlyingId(1), 3_500_000_000)],
        ),
        ..Block::default()
    }
}

fn crash_outcome(state: &State, screen: Option<Arc<dyn PortfolioScreen>>) -> bastion_exchange::BlockOutcome {
    let mut s = state.clone();
    s.set_portfolio_screen(screen.map(|x| ScreenHandle::new(x, 1)));
    s.apply_block(&crash_block(state)).unwrap()
}

#[test]
fn the_screen_is_not_state() {
    let state = portfolio_state(200, 9, 2, false);
    let (screened, handle) = installed(&state, Arc::new(HostScreen::default()), 1);
    assert_eq!(screened.state_root(), state.state_root());
    // Clones (speculative states) keep it and share its counters.
    let clone = screened.clone();
    assert!(Arc::ptr_eq(clone.portfolio_screen().unwrap().stats(), handle.stats()));
    // An image does not carry it.
    let image = screened.view().to_image_bytes().unwrap();
    let loaded = State::from_image_bytes(&image).unwrap();
    assert!(loaded.portfolio_screen().is_none());
    assert_eq!(loaded.state_root(), state.state_root());
    assert!(format!("{screened:?}").contains("host kernel"));
}
