//! Deterministic whole-node simulation tests (the harness is `bastion_consensus::sim`).
//!
//! The seed is printed; `BASTION_SEED=<n>` replays one run.
//!
//! The `campaign_*` tests run many seeds each, every seed deriving its scenario (validators,
//! link latency, jitter and loss, target height, which validator crashes or is partitioned or
//! Byzantine, and when) from the seed alone. By default (CI) they run a few hundred seeds in
//! all; `BASTION_SEEDS=<count>` sets the count per campaign, `BASTION_LONG=1` runs ten times the
//! default (thousands in all), and `BASTION_SEED=<n>` runs just seed `n`. Every seed prints its
//! scenario before it runs; a failing one names its seed and the command that replays it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_consensus::{
    Lie, MAX_FUTURE_MS, OracleRecord, Trick,
    backfill::{REQUESTS_BURST, REQUESTS_PER_S},
    evidence::EVIDENCE_PER_SIGNER,
    genesis_block,
    relay::{UNSOLICITED_BLOCKS_PER_PEER, UNSOLICITED_BYTES_PER_PEER},
    sim::{
        Byzantine, Crash, Outage, Partition, Run, check, link, seeds, sim_genesis, simulate,
        simulate_outcome, simulate_with_halts,
    },
    twins::{Split, Twins, TwinsOutcome, simulate_twins},
};
use bastion_exchange::Genesis;
use bastion_types::{MarketId, MarketStatus, OracleParams};
use commonware_utils::{Probability, probability};
use std::collections::BTreeMap;
use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    time::Duration,
};

#[test]
fn four_validators_with_latency_and_jitter() {
    let target = 20;
    let ledgers = simulate(Run::new(4, seeds(1), link(50, 20, probability!(1.0)), target));
    check(&ledgers, target);
}

#[test]
fn seven_validators() {
    let target = 20;
    let ledgers = simulate(Run::new(7, seeds(7), link(50, 20, probability!(1.0)), target));
    check(&ledgers, target);
}

#[test]
fn genesis_block_is_stable() {
    let g = Genesis::devnet();
    assert_eq!(genesis_block(&g).unwrap().id(), genesis_block(&g).unwrap().id());
}

#[test]
fn same_seed_same_chain() {
    let run = || simulate(Run::new(4, seeds(42), link(20, 10, probability!(1.0)), 10));
    let (a, b) = (run(), run());
    assert_eq!(a, b, "a replay of one seed must finalize the same chain");
}

#[test]
fn four_validators_thirty_percent_loss() {
    let target = 20;
    let ledgers = simulate(Run::new(4, seeds(30), link(50, 20, probability!(0.7)), target));
    check(&ledgers, target);
}

#[test]
fn one_validator_crash_and_restart() {
    let target = 40;
    let ledgers = simulate(Run {
        crash: Some(Crash { validator: 3, at: 8, others_reach: 25 }),
        ..Run::new(4, seeds(5), link(20, 10, probability!(1.0)), target)
    });
    check(&ledgers, target);
}

#[test]
fn seven_validators_thirty_percent_loss_and_a_crash() {
    let target = 30;
    let ledgers = simulate(Run {
        crash: Some(Crash { validator: 2, at: 5, others_reach: 15 }),
        ..Run::new(7, seeds(77), link(50, 20, probability!(0.7)), target)
    });
    check(&ledgers, target);
}

#[test]
fn diverging_validator_halts_and_the_rest_go_on() {
    let target = 25;
    let (faulty, at) = (1usize, 10u64);
    let (ledgers, halts) = simulate_with_halts(Run {
        diverge: Some((faulty, at)),
        ..Run::new(4, seeds(9), link(20, 10, probability!(1.0)), target)
    });
    let why = halts[faulty].clone().expect("the diverging validator must halt");
    println!("validator {faulty} halted: {why}");
    assert!(halts.iter().enumerate().all(|(i, h)| i == faulty || h.is_none()));
    // It agreed up to the divergence, executed the diverging height with another root, and
    // refused to execute anything on top of it.
    assert_eq!(ledgers[faulty].keys().next_back().copied(), Some(at), "it must stop right after diverging");
    for (h, f) in &ledgers[faulty] {
        if *h < at {
            assert_eq!(ledgers[0][h], *f, "before diverging it agreed at height {h}");
        } else {
            assert_eq!(ledgers[0][h].digest, f.digest);
            assert_ne!(ledgers[0][h].root, f.root, "the injected fault must change the root");
        }
    }
    let honest: Vec<_> =
        ledgers.iter().enumerate().filter(|(i, _)| *i != faulty).map(|(_, l)| l.clone()).collect();
    check(&honest, target);
}

#[test]
fn minority_partition_then_heal() {
    let target = 45;
    let ledgers = simulate(Run {
        partition: Some(Partition {
            side: vec![3],
            at: 5,
            duration: Duration::from_secs(8),
            min_progress: 5,
            heal_within: Duration::from_secs(20),
        }),
        ..Run::new(4, seeds(11), link(20, 10, probability!(1.0)), target)
    });
    check(&ledgers, target);
}

#[test]
fn two_two_split_halts_then_resumes() {
    let target = 25;
    let ledgers = simulate(Run {
        partition: Some(Partition {
            side: vec![0, 1],
            at: 5,
            duration: Duration::from_secs(15),
            min_progress: 0,
            heal_within: Duration::from_secs(15),
        }),
        ..Run::new(4, seeds(22), link(20, 10, probability!(1.0)), target)
    });
    check(&ledgers, target);
}

/// Runs 4 validators, one Byzantine; checks the honest three and returns the faults they saw.
fn byzantine_run(kind: Byzantine, seed: u64) -> Vec<Vec<String>> {
    let (target, bad) = (20, 2usize);
    let o = simulate_outcome(Run {
        byzantine: Some((bad, kind)),
        ..Run::new(4, seeds(seed), link(20, 10, probability!(1.0)), target)
    });
    assert!(o.ledgers[bad].is_empty(), "the Byzantine validator runs no application");
    let honest: Vec<_> = (0..4).filter(|&i| i != bad).collect();
    check(&honest.iter().map(|&i| o.ledgers[i].clone()).collect::<Vec<_>>(), target);
    let faults: Vec<Vec<String>> = honest.iter().map(|&i| o.faults[i].clone()).collect();
    for (i, f) in honest.iter().zip(&faults) {
        println!("validator {i} recorded {} faults, e.g. {:?}", f.len(), f.first());
        assert!(f.iter().all(|f| f.ends_with(&format!(" by signer {bad}"))));
        // Every fault is on disk with a proof that verifies against the validator set.
        let on_disk: Vec<&String> = o.evidence[*i].iter().map(|(what, _)| what).collect();
        assert_eq!(
            on_disk,
            f.iter().collect::<Vec<_>>(),
            "validator {i}: evidence file differs from the faults seen"
        );
        assert!(
            o.evidence[*i].iter().all(|(_, ok)| *ok),
            "validator {i}: a proof does not verify: {:?}",
            o.evidence[*i]
        );
        // Bounded: only the first pieces per (kind, signer) are kept, in memory and on disk;
        // the rest are counted.
        for kind in ["conflicting notarize", "conflicting finalize", "nullify and finalize"] {
            let kept = f.iter().filter(|f| f.starts_with(kind)).count();
            assert!(
                kept <= EVIDENCE_PER_SIGNER as usize,
                "validator {i} kept {kept} pieces of {kind} evidence against one signer (bound {EVIDENCE_PER_SIGNER})"
            );
        }
        let seen = o.totals[*i].evidence_seen;
        assert!(seen >= f.len() as u64, "validator {i}: {seen} pieces seen, {} kept", f.len());
        println!("validator {i}: {seen} pieces of evidence reported, {} kept", f.len());
    }
    faults
}

/// Runs 4 validators, validator 3 a Byzantine leader playing `tricks` in turn each time it
/// leads; checks safety, agreement and liveness of the honest three, and that each of them
/// blocked it (and nobody else) for `reason`.
fn byzantine_leader_run(
    tricks: Vec<Trick>,
    seed: u64,
    reason: fn(&bastion_consensus::PeerBlocks) -> u64,
) -> bastion_consensus::sim::Outcome {
    let (target, bad) = (30, 3usize);
    let o = simulate_outcome(Run {
        byzantine_leader: Some((bad, tricks)),
        ..Run::new(4, seeds(seed), link(20, 10, probability!(1.0)), target)
    });
    let honest: Vec<_> = (0..4).filter(|&i| i != bad).collect();
    check(&honest.iter().map(|&i| o.ledgers[i].clone()).collect::<Vec<_>>(), target);
    for &i in &honest {
        let t = &o.totals[i];
        println!(
            "validator {i}: blocked {:?}; unsolicited peak {} blocks {} bytes, evicted {}; refused timestamps {}",
            t.peers_blocked,
            t.unsolicited_blocks_peak,
            t.unsolicited_bytes_peak,
            t.unsolicited_evicted,
            t.refused_timestamp
        );
        assert_eq!(
            reason(&t.peers_blocked),
            1,
            "validator {i} must block the Byzantine leader: {:?}",
            t.peers_blocked
        );
        assert_eq!(t.peers_blocked.total(), 1, "validator {i} blocked an honest peer: {:?}", t.peers_blocked);
        // Memory bound on unsolicited blocks: per peer at most the count and the bytes bounds.
        let peers = 3u64;
        assert!(t.unsolicited_blocks_peak <= peers * UNSOLICITED_BLOCKS_PER_PEER as u64);
        assert!(t.unsolicited_bytes_peak <= peers * UNSOLICITED_BYTES_PER_PEER as u64);
        // No finalized block has more transactions than a proposer may build, or a time
        // further ahead of its proposal than the window allows.
        for f in o.ledgers[i].values() {
            assert!(f.txs <= bastion_consensus::block::DEFAULT_BLOCK_TXS);
        }
    }
    for f in o.ledgers[honest[0]].values() {
        if let Some(at) = o.proposed_at.get(&f.digest) {
            let at = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
            assert!(
                f.timestamp_ms <= at + MAX_FUTURE_MS,
                "a block {} ms ahead of its proposal was finalized",
                f.timestamp_ms - at
            );
        }
    }
    o
}

#[test]
fn byzantine_leader_with_skewed_times_and_an_oversized_block_is_refused_and_blocked() {
    // Its first proposal is inside the window (accepted: the chain stays live), its second
    // is outside (refused by every honest verifier, which blocks no one for it: a clock is not
    // proof), its third has one transaction more than the limit (undecodable: blocked).
    let inside = MAX_FUTURE_MS / 2;
    let outside = MAX_FUTURE_MS + 1_000;
    let o = byzantine_leader_run(
        vec![Trick::SkewAhead(inside), Trick::SkewAhead(outside), Trick::Oversized],
        17,
        |b| b.undecodable,
    );
    for i in 0..3 {
        assert!(o.totals[i].refused_timestamp >= 1, "validator {i} accepted a block {outside} ms ahead");
    }
    // The proposal inside the window was finalized.
    let ahead = o.ledgers[0].values().filter_map(|f| {
        let at = o.proposed_at.get(&f.digest)?.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
        (f.timestamp_ms >= at + inside).then_some(f.timestamp_ms - at)
    });
    assert!(ahead.count() >= 1, "the Byzantine leader's block inside the window is finalized");
}

#[test]
fn byzantine_leader_forging_approvals_replaying_and_reordering_gains_nothing() {
    // One run per trick: the first invalid proposal gets the leader blocked by every honest
    // validator, so later tricks of the same run would never reach them.
    for (i, trick) in [Trick::ForgedApprovals, Trick::ReplayTx, Trick::ReorderNonces, Trick::FreshKey]
        .into_iter()
        .enumerate()
    {
        println!("trick {trick:?}");
        let o = byzantine_leader_run(vec![trick], 20 + i as u64, |b| b.invalid_proposal);
        for v in 0..3 {
            // Parameters never changed without 2/3 of stake's signatures: no finalized block
            // carried a proposal.
            assert!(
                o.ledgers[v].values().all(|f| f.proposals == 0),
                "{trick:?}: validator {v} finalized a governance proposal"
            );
            // Nothing it tried was executed: no block of the honest chain was refused by the
            // exchange (it would have halted the validator), and none carried a rejection from
            // a replayed or reordered transaction (the synthetic workload's are all valid).
            assert!(o.halts[v].is_none(), "{trick:?}: validator {v} halted: {:?}", o.halts[v]);
        }
    }
}

#[test]
fn byzantine_leader_with_bad_observations_is_refused_and_blocked() {
    // One run per trick, as above: a replayed, a forged (bad signature), a doubled and a stale
    // observation each get the block refused by the exchange and the leader blocked.
    for (i, trick) in [
        Trick::ReplayObservation,
        Trick::ForgedObservation,
        Trick::DoubleObservation,
        Trick::StaleObservation,
    ]
    .into_iter()
    .enumerate()
    {
        println!("trick {trick:?}");
        let o = byzantine_leader_run(vec![trick], 40 + i as u64, |b| b.invalid_proposal);
        for v in 0..3 {
            assert!(o.halts[v].is_none(), "{trick:?}: validator {v} halted: {:?}", o.halts[v]);
            // Every finalized block's observations are at most one per validator (the honest
            // leaders' selections); the index still moved.
            assert!(moves(&o.oracle[v]) > 0, "{trick:?}: validator {v}: the index never moved");
        }
    }
}

#[test]
fn byzantine_leader_flooding_unsolicited_blocks_is_bounded_and_blocked() {
    let o = byzantine_leader_run(vec![Trick::Flood(200)], 18, |b| b.block_flood);
    for i in 0..3 {
        assert!(o.totals[i].unsolicited_evicted >= 1, "validator {i} evicted nothing");
        assert!(
            o.totals[i].unsolicited_blocks_peak <= UNSOLICITED_BLOCKS_PER_PEER as u64 + 8,
            "validator {i} held {} unsolicited blocks",
            o.totals[i].unsolicited_blocks_peak
        );
    }
}

#[test]
fn byzantine_leader_flooding_range_requests_is_rate_limited_and_blocked() {
    let o = byzantine_leader_run(vec![Trick::RangeFlood(2_000)], 19, |b| b.backfill_flood);
    let secs = (o.elapsed - Duration::from_millis(sim_genesis().timestamp_ms)).as_secs() + 1;
    for i in 0..3 {
        let t = &o.totals[i];
        println!(
            "validator {i}: backfill served {} blocks, dropped {} requests",
            t.backfill_served, t.backfill_dropped
        );
        assert!(
            t.backfill_dropped >= 256,
            "validator {i} dropped only {} range requests",
            t.backfill_dropped
        );
        // At most the burst and what the rate refilled over the run, 64 blocks each.
        let most = (REQUESTS_BURST + REQUESTS_PER_S * secs) * 64;
        assert!(
            t.backfill_served <= most,
            "validator {i} served {} blocks (bound {most})",
            t.backfill_served
        );
    }
}

#[test]
fn evidence_is_bounded_per_signer_and_written_off_the_reporter() {
    let pieces = 200;
    let (kept, on_disk, totals) = bastion_consensus::sim::evidence_flood(pieces);
    assert_eq!(totals.evidence_seen, pieces, "every piece is counted");
    assert_eq!(
        kept.len(),
        EVIDENCE_PER_SIGNER as usize,
        "only the first pieces per signer are kept: {kept:?}"
    );
    assert_eq!(
        on_disk.iter().map(|(what, _)| what).collect::<Vec<_>>(),
        kept.iter().collect::<Vec<_>>(),
        "the evidence file holds exactly what the ledger kept"
    );
    assert!(on_disk.iter().all(|(_, ok)| *ok), "a proof on disk does not verify: {on_disk:?}");
    assert_eq!(totals.evidence_dropped, 0);
}

#[test]
fn byzantine_conflicter_is_caught_and_the_rest_go_on() {
    let faults = byzantine_run(Byzantine::Conflicter, 13);
    assert!(
        faults.iter().flatten().any(|f| f.starts_with("conflicting notarize")),
        "conflicting notarize votes must be recorded as evidence"
    );
}

#[test]
fn byzantine_nuller_is_caught_and_the_rest_go_on() {
    let faults = byzantine_run(Byzantine::Nuller, 14);
    assert!(
        faults.iter().flatten().any(|f| f.starts_with("nullify and finalize")),
        "a nullify and a finalize in one view must be recorded as evidence"
    );
}

#[test]
fn byzantine_outdated_votes_are_harmless() {
    let faults = byzantine_run(Byzantine::Outdated, 15);
    assert!(faults.iter().all(Vec::is_empty), "replayed old votes are not equivocation: {faults:?}");
}

#[test]
fn byzantine_equivocating_leader_cannot_split_or_stall_the_chain() {
    // Safety, agreement and liveness of the honest three are checked by byzantine_run; any
    // evidence recorded must name the equivocator.
    let faults = byzantine_run(Byzantine::Equivocator, 16);
    println!("evidence recorded: {}", faults.iter().map(Vec::len).sum::<usize>());
}

// ---------------------------------------------------------------------------------------------
// Twins: a Byzantine validator run as two real Bastion nodes sharing its keys
// (`bastion_consensus::twins`).

/// `BASTION_SEED=<n>` runs just seed `n`; otherwise `defaults`.
fn seed_list(defaults: &[u64]) -> Vec<u64> {
    match std::env::var("BASTION_SEED") {
        Ok(_) => vec![seeds(0)],
        Err(_) => defaults.to_vec(),
    }
}

/// Runs `validators` validators, validator `twins.twin` as twins on the schedule `twins`, and
/// checks the honest ones: safety and agreement (one block and one state root per height),
/// every height from 1 to the one reached after the heal (the harness checked that they
/// finalized past the highest height anywhere within the bound), no halt; the twins' own
/// chains agree with theirs; evidence only against the twins' key, and every proof on disk
/// verifies; nobody blocked an honest validator. Returns the outcome and, per honest
/// validator, the conflicting-vote evidence it recorded (consensus equivocation, not double
/// observations).
fn twins_run(
    validators: u32,
    seed: u64,
    link: commonware_p2p::simulated::Link,
    target: u64,
    twins: &Twins,
) -> (TwinsOutcome, Vec<Vec<String>>) {
    let o = simulate_twins(validators, seed, link, target, twins);
    let t = o.twin;
    let honest: Vec<usize> = (0..validators as usize).filter(|&i| i != t).collect();
    let ledgers: Vec<_> = honest.iter().map(|&i| o.outcome.ledgers[i].clone()).collect();
    check(&ledgers, o.reached);
    for (half, chain) in [("primary", &o.outcome.ledgers[t]), ("secondary", &o.secondary)] {
        for (h, f) in chain {
            if let Some(g) = ledgers[0].get(h) {
                assert_eq!(g, f, "safety: the {half} twin finalized another block at height {h}");
            }
        }
        println!("the {half} twin finalized {} heights", chain.len());
    }
    assert!(o.secondary_halt.is_none(), "the secondary twin halted: {:?}", o.secondary_halt);
    let signer = format!(" by signer {t}");
    let mut votes = Vec::new();
    for &i in &honest {
        let (faults, on_disk) = (&o.outcome.faults[i], &o.outcome.evidence[i]);
        assert!(o.outcome.halts[i].is_none(), "validator {i} halted: {:?}", o.outcome.halts[i]);
        assert!(
            faults.iter().all(|f| f.ends_with(&signer)),
            "validator {i} recorded evidence against an honest validator: {faults:?}"
        );
        assert!(
            on_disk.iter().all(|(what, ok)| *ok && what.ends_with(&signer) && faults.contains(what)),
            "validator {i}: evidence on disk that does not verify, names an honest validator or was not \
             seen: {on_disk:?} (seen {faults:?})"
        );
        let consensus = ["conflicting notarize", "conflicting finalize", "nullify and finalize"];
        let v: Vec<String> =
            faults.iter().filter(|f| consensus.iter().any(|k| f.starts_with(k))).cloned().collect();
        let kinds = [consensus[0], consensus[1], consensus[2], "conflicting observation"]
            .map(|k| (k, faults.iter().filter(|f| f.starts_with(k)).count()));
        println!(
            "validator {i}: evidence seen {}, kept {} ({} on disk, verified): {kinds:?}",
            o.outcome.totals[i].evidence_seen,
            faults.len(),
            on_disk.len(),
        );
        votes.push(v);
    }
    println!(
        "blocked (by, whom): {:?}; by reason: {:?}",
        o.blocked,
        honest.iter().map(|&i| o.outcome.totals[i].peers_blocked).collect::<Vec<_>>()
    );
    for (by, who) in &o.blocked {
        assert_eq!(*who, t, "validator {by} blocked honest validator {who}");
    }
    (o, votes)
}

/// The schedule of the 4-validator tests, validator 3 as twins: first the primary twin with
/// honest {0, 1} (a quorum with it) and the secondary with {2}, then the other way round
/// ({2} | {0, 1}: the secondary's side finalizes, with its votes), then healed.
fn four_way_schedule(first_after: Duration, disconnect_on_block: bool) -> Twins {
    Twins {
        twin: 3,
        splits: vec![
            Split {
                after: first_after,
                duration: Duration::from_secs(3),
                primary: vec![0, 1],
                secondary: vec![2],
            },
            Split {
                after: Duration::from_secs(1),
                duration: Duration::from_secs(2),
                primary: vec![2],
                secondary: vec![0, 1],
            },
        ],
        heal_within: Duration::from_secs(20),
        after_heal: 8,
        disconnect_on_block,
    }
}

/// The twins keep talking after they are caught (blocking does not disconnect them): both
/// propose a valid block each time the key leads, split or healed; once healed both reach
/// every honest validator, which records their conflicting votes. Each side with a quorum
/// (counting its twin) finalizes during its split.
#[test]
fn twins_four_validators_split_then_heal() {
    for seed in seed_list(&[900, 901, 902]) {
        let (o, votes) = twins_run(
            4,
            seed,
            link(20, 10, probability!(1.0)),
            20,
            &four_way_schedule(Duration::from_secs(1), false),
        );
        assert!(
            votes.iter().any(|v| !v.is_empty()),
            "seed {seed}: no honest validator caught the twins' conflicting votes"
        );
        for (k, (side, (before, after))) in [[0usize, 1], [0, 1]].iter().zip(&o.split_heights).enumerate() {
            assert!(
                side.iter().all(|&i| after[i] > before[i]),
                "seed {seed}: the quorum side {side:?} stalled during split {k}: {before:?} -> {after:?}"
            );
        }
    }
}

/// As in production, an honest validator that catches the key's conflicting votes blocks it
/// (and is disconnected from it). The split starts at once, so the twins equivocate hidden
/// behind it (the primary helps {0, 1} finalize); at the heal they are caught and silenced,
/// and the honest three (a quorum without them) go on.
#[test]
fn twins_four_validators_hidden_behind_a_split_then_caught() {
    for seed in seed_list(&[920, 921]) {
        let (o, votes) =
            twins_run(4, seed, link(20, 10, probability!(1.0)), 20, &four_way_schedule(Duration::ZERO, true));
        assert!(
            votes.iter().any(|v| !v.is_empty()),
            "seed {seed}: no honest validator caught the twins' conflicting votes"
        );
        let (before, after) = &o.split_heights[0];
        assert!(
            after[0] > before[0] && after[1] > before[1],
            "seed {seed}: {{0, 1}} stalled with the primary twin"
        );
        assert!(o.blocked.iter().any(|(_, who)| *who == 3), "seed {seed}: nobody blocked the twins");
    }
}

/// Validator 6 of 7 as twins: the primary with {0, 1, 2, 3} (a quorum with it) and the
/// secondary with {4, 5}; then {0, 1, 2} | {3, 4, 5} (no quorum on either side: 4 of the 5
/// needed, the twin counted on both); then healed. (Seven validators take about 2.5 s of
/// simulated time to finalize their first height, twins or not: the first split comes after.)
#[test]
fn twins_seven_validators_split_then_heal() {
    let twins = Twins {
        twin: 6,
        splits: vec![
            Split {
                after: Duration::from_secs(3),
                duration: Duration::from_secs(3),
                primary: vec![0, 1, 2, 3],
                secondary: vec![4, 5],
            },
            Split {
                after: Duration::from_secs(1),
                duration: Duration::from_secs(3),
                primary: vec![0, 1, 2],
                secondary: vec![3, 4, 5],
            },
        ],
        heal_within: Duration::from_secs(20),
        after_heal: 14,
        disconnect_on_block: false,
    };
    for seed in seed_list(&[910, 911]) {
        let (o, votes) = twins_run(7, seed, link(20, 10, probability!(1.0)), 20, &twins);
        assert!(
            votes.iter().any(|v| !v.is_empty()),
            "seed {seed}: no honest validator caught the twins' conflicting votes"
        );
        let (before, after) = &o.split_heights[0];
        assert!(
            (0..4).all(|i| after[i] > before[i]),
            "seed {seed}: {{0, 1, 2, 3}} stalled with the primary twin"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Seeded campaigns.

/// SplitMix64: a tiny deterministic generator for deriving a scenario from its seed.
struct Mix(u64);

impl Mix {
    fn new(seed: u64) -> Self {
        // Decorrelate from the runtime, which is seeded with the same number.
        Mix(seed ^ 0x5bd1_e995_9e37_79b9)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }

    /// 7 validators with probability `pct` percent, else 4.
    fn validators(&mut self, pct: u64) -> u32 {
        if self.chance(pct) { 7 } else { 4 }
    }

    /// Latency 1-50 ms, jitter up to the latency.
    fn latency(&mut self) -> (u64, u64) {
        let latency = self.range(1, 50);
        (latency, self.range(0, latency))
    }
}

/// One seed's scenario, derived from the seed alone.
#[derive(Clone, Debug)]
struct Scenario {
    validators: u32,
    latency_ms: u64,
    jitter_ms: u64,
    loss_pct: u64,
    target: u64,
    crash: Option<Crash>,
    partition: Option<Partition>,
    byzantine: Option<(usize, Byzantine)>,
    byzantine_leader: Option<(usize, Vec<Trick>)>,
    byzantine_oracle: Option<(usize, Lie)>,
    twins: Option<Twins>,
}

impl Scenario {
    fn base(m: &mut Mix, seven_pct: u64, max_loss_pct: u64) -> Self {
        let validators = m.validators(seven_pct);
        let (latency_ms, jitter_ms) = m.latency();
        let loss_pct = if max_loss_pct == 0 { 0 } else { m.range(0, max_loss_pct) };
        Scenario {
            validators,
            latency_ms,
            jitter_ms,
            loss_pct,
            target: m.range(6, 12),
            crash: None,
            partition: None,
            byzantine: None,
            byzantine_leader: None,
            byzantine_oracle: None,
            twins: None,
        }
    }

    /// Runs it and checks the honest validators' ledgers (and, with a Byzantine validator, that
    /// only it was blamed).
    fn run(&self, seed: u64) {
        let link = link(self.latency_ms, self.jitter_ms, Probability::new(100 - self.loss_pct, 100).unwrap());
        if let Some(twins) = &self.twins {
            twins_run(self.validators, seed, link, self.target, twins);
            return;
        }
        let o = simulate_outcome(Run {
            crash: self.crash,
            partition: self.partition.clone(),
            byzantine: self.byzantine,
            byzantine_leader: self.byzantine_leader.clone(),
            byzantine_oracle: self.byzantine_oracle,
            ..Run::new(self.validators, seed, link, self.target)
        });
        let bad = self.byzantine.map(|b| b.0).or(self.byzantine_leader.as_ref().map(|b| b.0));
        let honest: Vec<usize> = (0..self.validators as usize).filter(|&i| Some(i) != bad).collect();
        if let Some((bad, kind)) = self.byzantine {
            assert!(o.ledgers[bad].is_empty(), "the Byzantine validator runs no application");
            for &i in &honest {
                let faults = &o.faults[i];
                assert!(
                    faults.iter().all(|f| f.ends_with(&format!(" by signer {bad}"))),
                    "validator {i} blamed an honest validator: {faults:?}"
                );
                if matches!(kind, Byzantine::Outdated) {
                    assert!(faults.is_empty(), "replayed old votes are not equivocation: {faults:?}");
                }
            }
        }
        if self.byzantine_leader.is_some() {
            let peers = u64::from(self.validators) - 1;
            for &i in &honest {
                let t = &o.totals[i];
                // Only one peer misbehaves (campaigns without one assert nobody is blocked).
                assert!(t.peers_blocked.total() <= 1, "validator {i} blocked more than the leader: {t:?}");
                assert!(t.unsolicited_blocks_peak <= peers * UNSOLICITED_BLOCKS_PER_PEER as u64, "{t:?}");
                assert!(t.unsolicited_bytes_peak <= peers * UNSOLICITED_BYTES_PER_PEER as u64, "{t:?}");
                assert!(o.halts[i].is_none(), "validator {i} halted: {:?}", o.halts[i]);
                // Parameters never change without 2/3 of stake's signatures.
                assert!(
                    o.ledgers[i].values().all(|f| f.proposals == 0),
                    "validator {i} finalized a proposal"
                );
            }
        }
        if let Some((liar, lie)) = self.byzantine_oracle {
            // The liar runs Bastion otherwise honestly: everyone is checked; the harness checked
            // the index bound after every block against the honest observations.
            for i in 0..self.validators as usize {
                let t = &o.totals[i];
                assert_eq!(t.peers_blocked.total(), 0, "validator {i} blocked a peer: {t:?}");
                assert!(
                    o.faults[i].iter().all(|f| f.ends_with(&format!(" by signer {liar}"))),
                    "validator {i} blamed an honest validator: {:?}",
                    o.faults[i]
                );
                assert!(
                    o.evidence[i].iter().all(|(_, ok)| *ok),
                    "evidence does not verify: {:?}",
                    o.evidence[i]
                );
                if lie != Lie::Equivocate {
                    assert_eq!(
                        t.observation_evidence, 0,
                        "validator {i}: evidence without a double observation"
                    );
                }
            }
            let moved = moves(&o.oracle[0]);
            println!(
                "{lie:?} by validator {liar}: the index moved {moved} times within the honest observations"
            );
            assert!(moved > 0, "the index never moved");
            check(&o.ledgers, self.target);
        }
        check(&honest.iter().map(|&i| o.ledgers[i].clone()).collect::<Vec<_>>(), self.target);
    }
}

/// Calm network: only latency and jitter.
fn calm(m: &mut Mix) -> Scenario {
    Scenario::base(m, 25, 0)
}

/// Message loss up to 30%.
fn lossy(m: &mut Mix) -> Scenario {
    let mut s = Scenario::base(m, 15, 30);
    s.loss_pct = s.loss_pct.max(1);
    s
}

/// One validator crashes once it has finalized `at` and restarts once the others reach
/// `others_reach`; loss up to 15% half the time.
fn crash(m: &mut Mix) -> Scenario {
    let lossy = m.chance(50);
    let mut s = Scenario::base(m, 20, if lossy { 15 } else { 0 });
    let validator = m.range(0, u64::from(s.validators) - 1) as usize;
    let at = m.range(1, 5);
    let others_reach = at + m.range(1, 5);
    s.target = s.target.max(others_reach + m.range(1, 4));
    s.crash = Some(Crash { validator, at, others_reach });
    s
}

/// The network splits once everyone has finalized `at`, for 2-6 s (after the 3 s the harness
/// lets in-flight certificates land), then heals: a minority cut off (the rest keep a quorum)
/// or a split with no quorum on either side; loss up to 10% half the time.
fn partition(m: &mut Mix) -> Scenario {
    let lossy = m.chance(50);
    let mut s = Scenario::base(m, 25, if lossy { 10 } else { 0 });
    let n = s.validators as usize;
    let f = (n - 1) / 3;
    // Minority: 1..=f validators; no quorum anywhere: 4 -> 2/2, 7 -> 3/4.
    let size = if m.chance(60) { m.range(1, f as u64) as usize } else { n / 2 };
    // A random subset of that size (partial Fisher-Yates).
    let mut all: Vec<usize> = (0..n).collect();
    for k in 0..size {
        let j = m.range(k as u64, n as u64 - 1) as usize;
        all.swap(k, j);
    }
    let mut side = all[..size].to_vec();
    side.sort_unstable();
    let at = m.range(2, 5);
    let secs = m.range(2, 6);
    let quorum_side = n - size >= n - f;
    s.partition = Some(Partition {
        side,
        at,
        duration: Duration::from_secs(secs),
        // Every n-th view has a cut-off leader and times out (1 s): still over a height a few
        // seconds on the quorum side.
        min_progress: if quorum_side { secs / 4 } else { 0 },
        heal_within: Duration::from_secs(30),
    });
    s.target = s.target.max(at + 2);
    s
}

/// One Byzantine validator (a simplex mock) instead of an honest one; loss up to 10% half the
/// time.
fn byzantine(m: &mut Mix) -> Scenario {
    let lossy = m.chance(50);
    let mut s = Scenario::base(m, 25, if lossy { 10 } else { 0 });
    let bad = m.range(0, u64::from(s.validators) - 1) as usize;
    let kind = match m.range(0, 3) {
        0 => Byzantine::Conflicter,
        1 => Byzantine::Nuller,
        2 => Byzantine::Equivocator,
        _ => Byzantine::Outdated,
    };
    s.byzantine = Some((bad, kind));
    s
}

/// A Byzantine leader (real Bastion) playing 1-4 tricks drawn from every kind, in turn, each time
/// it leads; loss up to 10% half the time.
fn byzantine_leader(m: &mut Mix) -> Scenario {
    let lossy = m.chance(50);
    let mut s = Scenario::base(m, 25, if lossy { 10 } else { 0 });
    let bad = m.range(0, u64::from(s.validators) - 1) as usize;
    let tricks = (0..m.range(1, 4))
        .map(|_| match m.range(0, 13) {
            0 => Trick::Honest,
            1 => Trick::Oversized,
            2 => Trick::Flood(m.range(1, 64) as u32),
            3 => Trick::SkewAhead(m.range(0, 2 * MAX_FUTURE_MS)),
            4 => Trick::SkewBehind(m.range(0, 3_000)),
            5 => Trick::RangeFlood(m.range(1, 500) as u32),
            6 => Trick::ForgedApprovals,
            7 => Trick::ReplayTx,
            8 => Trick::ReorderNonces,
            9 => Trick::ReplayObservation,
            10 => Trick::ForgedObservation,
            11 => Trick::DoubleObservation,
            12 => Trick::StaleObservation,
            _ => Trick::FreshKey,
        })
        .collect();
    s.byzantine_leader = Some((bad, tricks));
    s
}

/// Runs `name`'s seeds: `base..base + count` (see the module docs for the environment), each
/// with the scenario `derive` makes from it. Every seed runs even after one fails; the test
/// then fails listing every failing seed with its replay command.
fn campaign(name: &str, base: u64, default_count: u64, derive: fn(&mut Mix) -> Scenario) {
    let env = |k: &str| std::env::var(k).ok();
    // `BASTION_TRACE=debug` (any tracing filter) prints the validators' logs of a replay.
    if let Some(filter) = env("BASTION_TRACE") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let (first, count) = if env("BASTION_SEED").is_some() {
        (seeds(base), 1)
    } else if let Some(n) = env("BASTION_SEEDS") {
        (base, n.parse().expect("BASTION_SEEDS must be a u64"))
    } else if env("BASTION_LONG").is_some_and(|v| !v.is_empty() && v != "0") {
        (base, default_count * 10)
    } else {
        (base, default_count)
    };
    println!("{name}: {count} seeds from {first}");
    let mut failures = Vec::new();
    for seed in first..first + count {
        let scenario = derive(&mut Mix::new(seed));
        println!("{name} seed={seed}: {scenario:?}");
        let started = std::time::Instant::now();
        match catch_unwind(AssertUnwindSafe(|| scenario.run(seed))) {
            Ok(()) => println!("{name} seed={seed}: ok in {:?}", started.elapsed()),
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "(non-string panic)".to_string());
                let msg = format!(
                    "{name} failed at seed {seed}: {why}\n  scenario: {scenario:?}\n  replay with \
                     BASTION_SEED={seed} cargo test -p bastion-consensus --test simulation {name}"
                );
                println!("{msg}");
                failures.push(msg);
            }
        }
    }
    assert!(failures.is_empty(), "{} of {count} seeds failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn campaign_calm() {
    campaign("campaign_calm", 1_000_000, 60, calm);
}

#[test]
fn campaign_lossy() {
    campaign("campaign_lossy", 2_000_000, 80, lossy);
}

#[test]
fn campaign_crash() {
    campaign("campaign_crash", 3_000_000, 40, crash);
}

#[test]
fn campaign_partition() {
    campaign("campaign_partition", 4_000_000, 30, partition);
}

#[test]
fn campaign_byzantine() {
    campaign("campaign_byzantine", 5_000_000, 60, byzantine);
}

#[test]
fn campaign_byzantine_leader() {
    campaign("campaign_byzantine_leader", 6_000_000, 30, byzantine_leader);
}

/// Twins (`bastion_consensus::twins`): a validator run as two real nodes sharing its keys, on
/// a schedule of 1-3 splits of the honest validators derived from the seed
/// ([`Twins::seeded`]), then healed; loss up to 5% half the time.
fn twins(m: &mut Mix) -> Scenario {
    let lossy = m.chance(50);
    let mut s = Scenario::base(m, 30, if lossy { 5 } else { 0 });
    s.twins = Some(Twins::seeded(s.validators, m.next(), Duration::from_millis(s.latency_ms)));
    s
}

#[test]
fn campaign_twins() {
    campaign("campaign_twins", 8_000_000, 6, twins);
}

#[test]
fn every_validator_loses_power_at_once_and_the_chain_resumes() {
    for seed in seeds(600)..seeds(600) + 3 {
        let o = bastion_consensus::sim::simulate_power_loss(4, seed, link(10, 5, probability!(1.0)), 12, 30);
        check(&o.ledgers, 30);
        assert!(o.halts.iter().all(Option::is_none), "{:?}", o.halts);
        assert!(
            o.faults.iter().all(Vec::is_empty),
            "a validator equivocated across the power loss: {:?}",
            o.faults
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle: signed observations, lying validators, sources down.

/// Index moves over a validator's finalized blocks.
fn moves(records: &BTreeMap<u64, OracleRecord>) -> usize {
    records.values().map(|r| r.moves.len()).sum()
}

/// Runs 4 validators, validator `bad` a Byzantine oracle lying `lie`, under `link`; checks
/// safety, agreement, liveness and (the harness, after every block) the index bound for the
/// honest three; the index moved; nobody was blocked (lies are validly signed); any evidence
/// names the liar and verifies.
fn byzantine_oracle_run(
    lie: Lie,
    seed: u64,
    link: commonware_p2p::simulated::Link,
    target: u64,
) -> bastion_consensus::sim::Outcome {
    let bad = 3usize;
    let o = simulate_outcome(Run { byzantine_oracle: Some((bad, lie)), ..Run::new(4, seed, link, target) });
    check(&o.ledgers, target);
    for i in 0..4 {
        let t = &o.totals[i];
        assert_eq!(t.peers_blocked.total(), 0, "validator {i} blocked a peer: {:?}", t.peers_blocked);
        assert!(o.halts[i].is_none(), "validator {i} halted: {:?}", o.halts[i]);
        assert!(moves(&o.oracle[i]) > 0, "{lie:?}: validator {i}: the index never moved");
        assert!(o.faults[i].iter().all(|f| f.ends_with(&format!(" by signer {bad}"))), "{:?}", o.faults[i]);
        assert!(
            o.evidence[i].iter().all(|(_, ok)| *ok),
            "validator {i}: evidence does not verify: {:?}",
            o.evidence[i]
        );
    }
    o
}

#[test]
fn a_lying_oracle_cannot_move_the_index_outside_the_honest_observations() {
    for (k, lie) in [Lie::Offset(500_000), Lie::Offset(-500_000), Lie::Extremes, Lie::Random, Lie::Withhold]
        .into_iter()
        .enumerate()
    {
        println!("lie {lie:?}");
        let o = byzantine_oracle_run(lie, seeds(70 + k as u64), link(20, 10, probability!(1.0)), 30);
        if lie == Lie::Withhold {
            assert_eq!(o.totals[3].observations_signed, 0, "a withholding oracle signs nothing");
            for r in o.oracle[0].values() {
                assert!(r.latest[3].is_none(), "nothing of the withholding oracle was included");
            }
        } else {
            // Its lies were included (they are validly signed), and did not matter.
            let liar_included = o.oracle[0].values().any(|r| r.latest[3].is_some());
            assert!(liar_included, "{lie:?}: the liar's observations were never included");
        }
    }
}

#[test]
fn an_equivocating_oracle_is_caught_with_evidence() {
    let o = byzantine_oracle_run(Lie::Equivocate, seeds(75), link(20, 10, probability!(1.0)), 40);
    let evidence: u64 = (0..3).map(|i| o.totals[i].observation_evidence).sum();
    println!("double-observation evidence seen by the honest validators: {evidence}");
    assert!(evidence >= 1, "nobody caught the double observations");
    let on_disk: Vec<&String> = (0..3).flat_map(|i| o.evidence[i].iter().map(|(w, _)| w)).collect();
    assert!(
        !on_disk.is_empty()
            && on_disk
                .iter()
                .all(|w| w.starts_with("conflicting observation") && w.ends_with(" by signer 3"))
    );
}

#[test]
fn the_index_bound_checker_catches_an_index_outside_the_honest_observations() {
    use bastion_types::{Observation, UnderlyingId, ValidatorIndex};
    let t = sim_genesis().timestamp_ms + 10_000;
    let seen = |v: u16, ts: u64, p: i64| {
        Some(Observation {
            validator: ValidatorIndex(v),
            height: 1,
            timestamp_ms: ts,
            prices: vec![(UnderlyingId(0), p)],
            vols: Vec::new(),
        })
    };
    let record = |price: i64, clamped: bool| OracleRecord {
        timestamp_ms: t,
        included: 4,
        moves: vec![(UnderlyingId(0), price, clamped)],
        index: vec![price],
        // Validator 3 lies high; validator 2's observation is too old to count.
        latest: vec![seen(0, t, 100), seen(1, t - 500, 102), seen(2, t - 5_000, 90), seen(3, t, 1_000)],
        statuses: Vec::new(),
        max_age_ms: 3_000,
    };
    let run = |price: i64, clamped: bool, liar: Option<usize>| {
        catch_unwind(|| {
            bastion_consensus::sim::check_index_bound(&BTreeMap::from([(1, record(price, clamped))]), liar)
        })
    };
    assert_eq!(run(101, false, Some(3)).ok(), Some(1));
    assert!(run(103, false, Some(3)).is_err(), "above the honest observations");
    assert!(run(95, false, Some(3)).is_err(), "below the fresh honest observations (the stale one is out)");
    assert_eq!(run(500, false, None).ok(), Some(1), "with no liar named, its observation counts");
    assert_eq!(run(103, true, Some(3)).ok(), Some(0), "a clamped move is not bounded by the observations");
}

/// The devnet oracle with short staleness guards: observations count for 1 s, markets are
/// reduce-only 1.5 s after the last index update and halted after 3 s.
fn short_guards() -> OracleParams {
    OracleParams {
        staleness_ms: 1_500,
        staleness_halt_ms: 3_000,
        observation_max_age_ms: 1_000,
        ..sim_genesis().oracle
    }
}

/// The time (ms since genesis) of each finalized block, with its record.
fn timeline(records: &BTreeMap<u64, OracleRecord>) -> Vec<(u64, &OracleRecord)> {
    let t0 = sim_genesis().timestamp_ms;
    records.values().map(|r| (r.timestamp_ms - t0, r)).collect()
}

fn perp_status(r: &OracleRecord) -> MarketStatus {
    r.statuses.iter().find(|(m, _)| *m == MarketId(0)).map(|(_, s)| *s).unwrap()
}

#[test]
fn one_of_four_sources_down_and_the_index_keeps_updating() {
    let (from, until) = (Duration::from_secs(2), Duration::from_secs(7));
    let o = simulate_outcome(Run {
        outages: vec![Outage { validator: 2, from, until }],
        oracle: Some(short_guards()),
        run_for: Some(Duration::from_secs(8)),
        ..Run::new(4, seeds(80), link(20, 10, probability!(1.0)), 10)
    });
    check(&o.ledgers, 10);
    let line = timeline(&o.oracle[0]);
    let first = line.iter().find(|(_, r)| !r.moves.is_empty()).map(|(t, _)| *t).expect("the index moved");
    let mut last_move = first;
    for (t, r) in &line {
        if !r.moves.is_empty() {
            last_move = *t;
        }
        let quiet = t.saturating_sub(last_move);
        assert!(quiet <= 1_000, "no index update for {quiet} ms at {t} ms");
        if *t > first + 100 {
            assert_eq!(perp_status(r), MarketStatus::Active, "at {t} ms: {r:?}");
        }
    }
    let during = line.iter().filter(|(t, r)| (2_000..7_000).contains(t) && !r.moves.is_empty()).count();
    println!("{during} blocks moved the index while one source was down");
    assert!(during >= 10);
}

#[test]
fn two_of_four_sources_down_stops_the_index_then_reduce_only_then_halted_and_it_resumes() {
    let (from, until) = (Duration::from_secs(2), Duration::from_secs(7));
    let guards = short_guards();
    let o = simulate_outcome(Run {
        outages: vec![Outage { validator: 2, from, until }, Outage { validator: 3, from, until }],
        oracle: Some(guards),
        run_for: Some(Duration::from_secs(10)),
        ..Run::new(4, seeds(81), link(20, 10, probability!(1.0)), 10)
    });
    check(&o.ledgers, 10);
    let line = timeline(&o.oracle[0]);
    // Once the silent validators' last observations are no longer fresh (plus what was in
    // flight), no quorum: the index does not move until they are back.
    let quiet_from = 2_000 + guards.observation_max_age_ms + 500;
    for (t, r) in &line {
        if (quiet_from..7_000).contains(t) {
            assert!(r.moves.is_empty(), "the index moved at {t} ms without a quorum: {r:?}");
        }
    }
    let status_at = |lo: u64, hi: u64| -> Vec<MarketStatus> {
        line.iter().filter(|(t, _)| (lo..hi).contains(t)).map(|(_, r)| perp_status(r)).collect()
    };
    // Reduce-only once stale, then halted, before the sources come back.
    let outage = status_at(2_000, 7_000);
    let reduce = outage.iter().position(|s| *s == MarketStatus::ReduceOnly).expect("reduce-only while stale");
    let halted = outage.iter().position(|s| *s == MarketStatus::Halted).expect("halted while stale for long");
    assert!(reduce < halted, "{outage:?}");
    // Back: the index moves again and the markets trade.
    let after: Vec<&(u64, &OracleRecord)> = line.iter().filter(|(t, _)| *t >= 7_000).collect();
    assert!(after.iter().any(|(_, r)| !r.moves.is_empty()), "the index never resumed");
    let end = after.last().unwrap();
    assert_eq!(perp_status(end.1), MarketStatus::Active, "markets at the end: {:?}", end.1.statuses);
}

/// One Byzantine oracle (each lie in turn) among 4 validators with latency, jitter and up to
/// 10% loss half the time.
fn byzantine_oracle(m: &mut Mix) -> Scenario {
    let lossy = m.chance(50);
    let mut s = Scenario::base(m, 0, if lossy { 10 } else { 0 });
    let bad = m.range(0, u64::from(s.validators) - 1) as usize;
    let lie = match m.range(0, 5) {
        0 => Lie::Offset(m.range(1, 900_000) as i64),
        1 => Lie::Offset(-(m.range(1, 900_000) as i64)),
        2 => Lie::Extremes,
        3 => Lie::Random,
        4 => Lie::Withhold,
        _ => Lie::Equivocate,
    };
    s.target = m.range(15, 30);
    s.byzantine_oracle = Some((bad, lie));
    s
}

#[test]
fn campaign_byzantine_oracle() {
    campaign("campaign_byzantine_oracle", 7_000_000, 24, byzantine_oracle);
}
