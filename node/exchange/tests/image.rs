//! State images: `from_image_bytes(to_image_bytes(s))` is `s` again (same roots, same events and
//! roots for every later block, byte-identical image), a view taken at height h images exactly
//! the state at h while execution goes on, and damaged bytes never panic the loader.
//!
//! Seeded: a failure prints the seed and `BASTION_SEED=<seed>` replays it. `BASTION_LONG=1`
//! runs more seeds and the 1M-account round trip (100k otherwise).

// Test helpers as well as #[test] functions may panic: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::testkit::{PathKind, Rng, Workload};
use bastion_exchange::{BLOCK_TXS_MAX, Genesis, State, StateRoot, sign_approval};
use bastion_types::{
    AssetId, Block, Event, GovernanceProposal, MarketId, MarketKind, MarketStatus, ParamUpdate,
};

/// Secret seeds of the four validators' identity keys (they sign governance approvals).
const VALIDATOR_SEEDS: [[u8; 32]; 4] = [[21; 32], [22; 32], [23; 32], [24; 32]];
use std::time::Instant;

fn long() -> bool {
    std::env::var("BASTION_LONG").is_ok()
}

fn seeds(n: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let n = if long() { n * 10 } else { n };
    (0..n).map(|i| 0x1A6E_0000 + i).collect()
}

/// Applies `block`, panicking on a refused block or an engine fault.
fn step(state: &mut State, block: &Block, seed: u64) -> (Vec<Event>, StateRoot) {
    let out = state.apply_block(block).unwrap_or_else(|e| panic!("seed {seed}: block refused: {e}"));
    for e in &out.events {
        if let Event::Fault { step, reason } = e {
            panic!("seed {seed}: engine fault in {step}: {reason}");
        }
    }
    (out.events, out.root)
}

/// A workload and the state after its deposits and `blocks` blocks of random flow. Seeds vary
/// the price path and the block interval (twelve-hour blocks expire and settle the options).
fn simulate(seed: u64, blocks: u64, traders: u64) -> (State, Workload) {
    simulate_every(seed, blocks, traders, if seed % 3 == 2 { 12 * 3_600_000 } else { 60_000 })
}

/// [`simulate`] with blocks `block_ms` apart.
fn simulate_every(seed: u64, blocks: u64, traders: u64, block_ms: u64) -> (State, Workload) {
    let genesis = Genesis::devnet().with_validator_seeds(&VALIDATOR_SEEDS);
    let mut state = State::from_genesis(&genesis).expect("devnet genesis is valid");
    let path = if seed.is_multiple_of(2) {
        PathKind::Calm
    } else {
        PathKind::FlashCrash { crash_at: 12, crash_blocks: 6 }
    };
    let mut w = Workload::new(seed, traders, path, &genesis);
    w.block_ms = block_ms;
    let deposits = w.funding_txs(20_000_000_000);
    let first = w.block_with(deposits);
    step(&mut state, &first, seed);
    for _ in 1..blocks {
        let block = w.next_block(&state, 40);
        step(&mut state, &block, seed);
    }
    (state, w)
}

fn image(state: &State) -> Vec<u8> {
    state.to_image_bytes().expect("a state encodes").to_vec()
}

fn restore(state: &State) -> State {
    let bytes = state.to_image_bytes().expect("a state encodes");
    State::from_image_bytes(&bytes).expect("its image loads")
}

/// Runs the same `n` blocks (generated against `a`) on both states: identical events and roots.
fn same_future(a: &mut State, b: &mut State, w: &mut Workload, n: u64, seed: u64) {
    for _ in 0..n {
        let block = w.next_block(a, 40);
        let (ea, ra) = step(a, &block, seed);
        let (eb, rb) = step(b, &block, seed);
        assert_eq!(ea, eb, "seed {seed}: events differ at height {}", block.height);
        assert_eq!(ra, rb, "seed {seed}: roots differ at height {}", block.height);
    }
}

#[test]
fn genesis_round_trips() {
    let state = State::from_genesis(&Genesis::devnet()).unwrap();
    let back = restore(&state);
    assert_eq!(back.state_root(), state.state_root());
    assert_eq!(back.recompute_root(), state.recompute_root());
    assert_eq!(image(&back), image(&state));
    back.check_invariants().unwrap();
}

#[test]
fn round_trip_then_the_same_blocks_give_the_same_events_and_roots() {
    for seed in seeds(6) {
        println!("image round trip seed {seed} (replay: BASTION_SEED={seed})");
        let (mut original, mut w) = simulate(seed, 60, 50);
        let bytes = original.to_image_bytes().unwrap();
        let mut restored = State::from_image_bytes(&bytes).unwrap();
        assert_eq!(restored.height, original.height);
        assert_eq!(restored.state_root(), original.state_root(), "seed {seed}");
        assert_eq!(restored.recompute_root(), original.recompute_root(), "seed {seed}");
        assert_eq!(image(&restored), bytes.to_vec(), "seed {seed}: the image is not a fixed point");
        restored.check_invariants().unwrap_or_else(|e| panic!("seed {seed}: restored state: {e}"));
        let orders: usize = original.markets.values().map(|m| m.book.len()).sum();
        let positions: usize = original.accounts.values().map(|a| a.positions.len()).sum();
        println!("seed {seed}: {} bytes, {orders} orders, {positions} positions", bytes.len());
        assert!(orders > 0 && positions > 0, "seed {seed}: the workload must leave orders and positions");
        // The oracle's state: each validator's latest observation, the stable prices, the
        // attested volatilities (while an option is unsettled) and the marks' volatilities.
        assert!(original.observations.iter().all(Option::is_some), "seed {seed}: every validator observed");
        assert_eq!(restored.observations, original.observations, "seed {seed}");
        assert_eq!(restored.underlyings, original.underlyings, "seed {seed}");
        assert!(original.underlyings.iter().all(|u| u.stable > 0), "seed {seed}: stable prices set");
        let live_options = original
            .markets
            .values()
            .any(|m| matches!(m.spec.kind, MarketKind::Option { .. }) && m.status != MarketStatus::Settled);
        assert_eq!(
            !original.underlyings[0].vols.is_empty(),
            live_options,
            "seed {seed}: attested volatility"
        );
        for (id, m) in &original.markets {
            let r = &restored.markets[id];
            assert_eq!(
                (r.volatility_ppm, r.stable_lot_floor, r.stable_lot_ceil),
                (m.volatility_ppm, m.stable_lot_floor, m.stable_lot_ceil),
                "seed {seed}: market {id}"
            );
        }

        same_future(&mut original, &mut restored, &mut w, 50, seed);
        restored.check_invariants().unwrap_or_else(|e| panic!("seed {seed}: restored state later: {e}"));
        assert_eq!(image(&restored), image(&original), "seed {seed}: images differ 50 blocks later");
    }
}

/// Funding accrues per position between settlements (lots x ms held, and since when): an image
/// taken in the middle of an interval carries every accrual, including those of positions
/// already closed, and the restored state settles the interval exactly as the original does.
#[test]
fn funding_accruals_round_trip_and_settle_alike() {
    for seed in seeds(3) {
        println!("funding accrual seed {seed} (replay: BASTION_SEED={seed})");
        // One-minute blocks: 30 blocks leave the first hourly interval half run.
        let (mut original, mut w) = simulate_every(seed, 30, 50, 60_000);
        let positions = || original.accounts.values().flat_map(|a| a.positions.iter());
        let accruing = positions().filter(|p| p.funding_lot_ms != 0).count();
        let closed = positions().filter(|p| p.size == 0 && p.funding_lot_ms != 0).count();
        let since = positions().filter(|p| p.funding_since_ms > Genesis::devnet().timestamp_ms).count();
        println!("seed {seed}: {accruing} positions accruing, {closed} of them closed, {since} with a start");
        assert!(accruing > 0 && since > 0, "seed {seed}: the workload must leave funding accruals");
        let mut restored = restore(&original);
        for (id, a) in original.accounts.iter() {
            assert_eq!(restored.accounts.get(id), Some(a), "seed {seed}: account {id}");
        }
        for (id, m) in &original.markets {
            assert_eq!(restored.markets[id].holders, m.holders, "seed {seed}: holders of {id}");
        }
        assert_eq!(restored.state_root(), original.state_root(), "seed {seed}");
        assert_eq!(image(&restored), image(&original), "seed {seed}: the image is not a fixed point");
        // Past the interval's end (the 60th block): the same funding, to the micro-unit.
        let mut settled = 0;
        for _ in 0..40 {
            let block = w.next_block(&original, 40);
            let (ea, ra) = step(&mut original, &block, seed);
            let (eb, rb) = step(&mut restored, &block, seed);
            assert_eq!(ea, eb, "seed {seed}: events differ at height {}", block.height);
            assert_eq!(ra, rb, "seed {seed}: roots differ at height {}", block.height);
            settled += ea.iter().filter(|e| matches!(e, Event::Funding { .. })).count();
        }
        assert!(settled > 0, "seed {seed}: the interval must settle");
        restored.check_invariants().unwrap_or_else(|e| panic!("seed {seed}: restored state later: {e}"));
    }
}

#[test]
fn a_view_images_the_state_at_its_height_while_execution_goes_on() {
    for seed in seeds(3) {
        println!("view seed {seed} (replay: BASTION_SEED={seed})");
        let (mut live, mut w) = simulate(seed, 30, 40);
        let at = live.clone();
        let (height, root) = (live.height, live.state_root());
        let view = live.view();
        assert_eq!((view.height(), view.root()), (height, root));
        // The image is written on another thread while the live state executes more blocks;
        // a second state without any view runs the same blocks for comparison.
        let writer = std::thread::spawn(move || view.to_image_bytes().map(|b| b.to_vec()));
        let mut witness = at.clone();
        same_future(&mut live, &mut witness, &mut w, 30, seed);
        live.check_invariants().unwrap_or_else(|e| panic!("seed {seed}: live state after the view: {e}"));
        let bytes = writer.join().unwrap().unwrap();
        let restored = State::from_image_bytes(&bytes).unwrap();
        assert_eq!(restored.height, height);
        assert_eq!(restored.state_root(), root, "seed {seed}");
        assert_eq!(restored.recompute_root(), root, "seed {seed}");
        assert_eq!(bytes, image(&at), "seed {seed}: the view's image is not the state at its height");
        assert_ne!(live.state_root(), root);
    }
}

#[test]
fn pending_parameter_updates_round_trip() {
    for seed in seeds(2) {
        println!("pending updates seed {seed} (replay: BASTION_SEED={seed})");
        let (mut original, mut w) = simulate(seed, 20, 30);
        let (&first, m0) = original.markets.iter().next().unwrap();
        let mut risk = m0.spec.risk.clone();
        risk.max_orders_per_account = 3;
        risk.price_band_ppm += 10_000;
        let mut spec = m0.spec.clone();
        spec.id = MarketId(900);
        spec.name = "NEW-PERP".into();
        let updates = [
            ParamUpdate::Risk { market: first, risk },
            ParamUpdate::Haircut { asset: AssetId(1), haircut_ppm: 200_000 },
            ParamUpdate::List(spec),
        ];
        let mut block = w.next_block(&original, 40);
        block.proposals = updates
            .into_iter()
            .enumerate()
            .map(|(i, update)| {
                let mut p = GovernanceProposal {
                    update,
                    nonce: original.governance_nonce + 1 + i as u64,
                    valid_from: block.height,
                    valid_until: block.height,
                    approvals: vec![],
                };
                p.approvals = (0..3u16)
                    .map(|v| sign_approval(VALIDATOR_SEEDS[v as usize], v, &original.chain_id, &p))
                    .collect();
                p
            })
            .collect();
        step(&mut original, &block, seed);
        assert_eq!(original.pending.len(), 3, "seed {seed}: the proposals must be queued");
        let mut restored = restore(&original);
        assert_eq!(restored.pending, original.pending);
        same_future(&mut original, &mut restored, &mut w, 20, seed);
        assert!(restored.markets.contains_key(&MarketId(900)));
        assert_eq!(image(&restored), image(&original));
    }
}

#[test]
fn damaged_images_are_refused_or_load_but_never_panic() {
    let seed = seeds(1)[0];
    println!("damage seed {seed} (replay: BASTION_SEED={seed})");
    let (state, _) = simulate(seed, 25, 30);
    let good = state.to_image_bytes().unwrap();
    let root = state.state_root();
    let mut rng = Rng::new(seed);
    let (mut refused, mut loaded) = (0u32, 0u32);
    let mut tally = |r: Result<State, bastion_exchange::ImageError>| match r {
        Ok(s) => {
            // Whatever loaded must at least answer questions without panicking.
            let _ = s.state_root();
            loaded += 1;
        }
        Err(_) => refused += 1,
    };
    let rounds = if long() { 3_000 } else { 300 };
    for _ in 0..rounds {
        let mut bytes = good.clone();
        for _ in 0..rng.range(1, 4) {
            let i = rng.below(bytes.len() as u64) as usize;
            bytes[i] ^= 1 << rng.below(8);
        }
        tally(State::from_image_bytes(&bytes));
    }
    for _ in 0..rounds / 3 {
        let keep = rng.below(good.len() as u64) as usize;
        tally(State::from_image_bytes(&good[..keep]));
        // A truncated front: the archive's root is at the end, so this probes offsets.
        let skip = (rng.below(good.len() as u64 / 16) * 16) as usize;
        tally(State::from_image_bytes(&good[skip..]));
    }
    println!("damaged images: {refused} refused, {loaded} loaded");
    assert!(refused > 0);

    // Garbage is refused.
    for len in [0usize, 1, 15, 16, 64, 4096, 100_000] {
        let mut bytes = rkyv::util::AlignedVec::<16>::with_capacity(len);
        for _ in 0..len {
            bytes.push(rng.next_u64() as u8);
        }
        assert!(State::from_image_bytes(&bytes).is_err(), "{len} random bytes loaded");
        let zeros = vec![0u8; len];
        let _ = State::from_image_bytes(&zeros);
        let ones = vec![0xFFu8; len];
        assert!(State::from_image_bytes(&ones).is_err(), "{len} 0xFF bytes loaded");
    }

    // An intact image at an odd address loads all the same (it is copied to alignment).
    let mut shifted = vec![0u8; good.len() + 1];
    shifted[1..].copy_from_slice(&good);
    assert_eq!(State::from_image_bytes(&shifted[1..]).unwrap().state_root(), root);
}

/// A state with `n` funded accounts (deposits through real blocks, so the commitment covers
/// them) and some trading among the first thousand.
fn big_state(n: u64) -> State {
    let genesis = Genesis::devnet();
    let mut state = State::from_genesis(&genesis).unwrap();
    let mut w = Workload::new(7, n, PathKind::Calm, &genesis);
    let deposits = w.funding_txs(20_000_000_000);
    for txs in deposits.chunks(BLOCK_TXS_MAX) {
        let block = w.block_with(txs.to_vec());
        step(&mut state, &block, 7);
    }
    w.traders = n.min(1_000);
    for _ in 0..10 {
        let block = w.next_block(&state, 200);
        step(&mut state, &block, 7);
    }
    state
}

#[test]
fn many_accounts_round_trip() {
    let n: u64 = if long() { 1_000_000 } else { 100_000 };
    let t = Instant::now();
    let mut state = big_state(n);
    let positions: usize = state.accounts.values().map(|a| a.positions.len()).sum();
    println!("built {} accounts ({positions} positions) in {:.2?}", state.accounts.len(), t.elapsed());
    assert!(state.accounts.len() as u64 > n && positions > 0);

    let t = Instant::now();
    let view = state.view();
    let took = t.elapsed();
    println!("view of {} accounts: {took:.2?}", view.accounts());
    assert!(took.as_millis() < 50, "a view must be cheap; took {took:?}");

    let t = Instant::now();
    let bytes = view.to_image_bytes().unwrap();
    println!("image: {:.1} MB in {:.2?}", bytes.len() as f64 / 1e6, t.elapsed());
    drop(view);

    let t = Instant::now();
    let mut restored = State::from_image_bytes(&bytes).unwrap();
    println!("loaded (digests rebuilt) in {:.2?}", t.elapsed());
    assert_eq!(restored.state_root(), state.state_root());
    assert_eq!(restored.accounts.len(), state.accounts.len());
    let t = Instant::now();
    assert_eq!(restored.recompute_root(), state.state_root());
    println!("full root recomputation: {:.2?}", t.elapsed());
    assert_eq!(image(&restored), bytes.to_vec());

    // Both execute the next blocks identically.
    let mut w = Workload::new(8, 1_000, PathKind::Calm, &Genesis::devnet());
    w.height = state.height + 1;
    w.time_ms = state.timestamp_ms + 250;
    w.nonces = (0..=1_000u64)
        .map(|i| state.accounts.get(&bastion_types::AccountId(i)).map_or(0, |a| a.nonce))
        .collect();
    same_future(&mut state, &mut restored, &mut w, 3, 8);
}

/// The whole-state root is a sum over records: cut into parts on any number of threads it is
/// the incremental one.
#[test]
fn the_root_recomputed_on_several_threads_is_the_incremental_one() {
    for seed in seeds(3) {
        let (state, _) = simulate(seed, 20, 60);
        let root = state.state_root();
        for threads in 1..=5 {
            assert_eq!(state.recompute_root_on(threads), root, "seed {seed}, {threads} threads");
        }
        assert_eq!(state.recompute_root(), root, "seed {seed}");
    }
}
