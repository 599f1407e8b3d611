//! Seeded simulations of random order flow, price paths and liquidations. Every block is
//! followed by the engine's invariant check; a failure prints the seed, and
//! `BASTION_SEED=<seed> cargo test -p bastion-exchange --test simulation` replays it.
//! `BASTION_LONG=1` runs many more seeds and blocks.

// Test helpers as well as #[test] functions may panic: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::testkit::{PathKind, Workload};
use bastion_exchange::{Genesis, State, StateRoot, apply};
use bastion_types::{Block, Event};

struct Run {
    roots: Vec<StateRoot>,
    blocks: Vec<Block>,
    liquidations: usize,
    deleverages: usize,
    fills: usize,
    rejections: usize,
    insurance_covered: usize,
    funding: usize,
    settlements: usize,
}

fn run(seed: u64, blocks: u64, traders: u64, path: PathKind) -> Run {
    run_with(seed, blocks, traders, path, 60_000)
}

/// `block_ms` sets the time between blocks: a minute settles funding within a run; twelve hours
/// also crosses the options' 30-day expiry.
fn run_with(seed: u64, blocks: u64, traders: u64, path: PathKind, block_ms: u64) -> Run {
    let genesis = Genesis::devnet();
    let mut state = State::from_genesis(&genesis).expect("devnet genesis is valid");
    let mut w = Workload::new(seed, traders, path, &genesis);
    w.block_ms = block_ms;
    let mut out = Run {
        roots: Vec::new(),
        blocks: Vec::new(),
        liquidations: 0,
        deleverages: 0,
        fills: 0,
        rejections: 0,
        insurance_covered: 0,
        funding: 0,
        settlements: 0,
    };
    let deposits = w.funding_txs(20_000_000_000);
    let first = w.block_with(deposits);
    for h in 0..blocks {
        let block = if h == 0 { first.clone() } else { w.next_block(&state, 40) };
        let (next, events, root) = match apply(state, &block) {
            Ok(r) => r,
            Err((_, e)) => panic!("seed {seed}: block {} refused: {e}", block.height),
        };
        state = next;
        for e in &events {
            match e {
                Event::Liquidated { .. } => out.liquidations += 1,
                Event::Deleveraged { .. } => out.deleverages += 1,
                Event::Fill { .. } => out.fills += 1,
                Event::Rejected { .. } => out.rejections += 1,
                Event::InsuranceCovered { .. } => out.insurance_covered += 1,
                Event::Funding { .. } => out.funding += 1,
                Event::OptionSettled { .. } => out.settlements += 1,
                Event::Fault { step, reason } => panic!("seed {seed}: engine fault in {step}: {reason}"),
                _ => {}
            }
        }
        if let Err(violation) = state.check_invariants() {
            // The risk events of the failing block, to start the diagnosis from.
            let risk: Vec<&Event> = events
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        Event::Liquidated { .. }
                            | Event::Deleveraged { .. }
                            | Event::InsuranceCovered { .. }
                            | Event::Socialized { .. }
                            | Event::OptionSettled { .. }
                            | Event::Funding { .. }
                    )
                })
                .collect();
            panic!(
                "seed {seed}: invariant violated after block {}: {violation}\nrisk events of the block: {risk:#?}",
                block.height
            );
        }
        out.roots.push(root);
        out.blocks.push(block);
    }
    out
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let n = if std::env::var("BASTION_LONG").is_ok() { 200 } else { 6 };
    (0..n).map(|i| 0x5EED_0000 + i).collect()
}

#[test]
fn invariants_hold_under_random_flow_and_same_blocks_give_same_roots() {
    let long = std::env::var("BASTION_LONG").is_ok();
    for seed in seeds() {
        println!("simulation seed {seed} (replay: BASTION_SEED={seed})");
        let path = if seed % 2 == 0 {
            PathKind::Calm
        } else {
            PathKind::FlashCrash { crash_at: 20, crash_blocks: 8 }
        };
        // Every third seed runs with twelve-hour blocks, so options expire and settle mid-run.
        let block_ms = if seed % 3 == 2 { 12 * 3_600_000 } else { 60_000 };
        let a = run_with(seed, if long { 400 } else { 90 }, 60, path, block_ms);
        assert!(a.fills > 0, "seed {seed}: the workload must trade");
        // Funding settles within every run (hourly, and the invariants check after each block
        // that the funding time held sums to zero over each market's holders).
        assert!(a.funding > 0, "seed {seed}: funding must settle");
        // Replay the same blocks on a fresh state: identical roots at every height.
        let genesis = Genesis::devnet();
        let mut state = State::from_genesis(&genesis).expect("genesis");
        assert!(
            a.settlements > 0 || block_ms < 12 * 3_600_000,
            "seed {seed}: options must expire in a 12h-block run"
        );
        for (i, block) in a.blocks.iter().enumerate() {
            let (next, _, root) = apply(state, block).expect("replay applies");
            state = next;
            assert_eq!(root, a.roots[i], "seed {seed}: root diverged on replay at height {}", block.height);
        }
        println!(
            "seed {seed}: fills {} liquidations {} deleverages {} insurance-covered {} funding {} option settlements {} rejections {}",
            a.fills,
            a.liquidations,
            a.deleverages,
            a.insurance_covered,
            a.funding,
            a.settlements,
            a.rejections
        );
    }
}

#[test]
fn flash_crash_liquidates_and_keeps_every_invariant() {
    let mut liquidations = 0;
    let mut deleverages = 0;
    for seed in seeds().into_iter().take(3) {
        println!("flash crash seed {seed} (replay: BASTION_SEED={seed})");
        let r = run(seed, 60, 80, PathKind::FlashCrash { crash_at: 15, crash_blocks: 6 });
        liquidations += r.liquidations;
        deleverages += r.deleverages;
    }
    println!("liquidations {liquidations}, deleverages {deleverages}");
    assert!(liquidations + deleverages > 0, "a 30% crash must liquidate someone");
}
