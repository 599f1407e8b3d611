//! Deterministic whole-node simulation tests (the harness is `bastion_consensus::sim`).
//!
//! The seed is printed; `BASTION_SEED=<n>` replays one run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_consensus::{
    genesis_block,
    sim::{
        Byzantine, Crash, Partition, Run, check, link, seeds, simulate, simulate_outcome, simulate_with_halts,
    },
};
use bastion_exchange::Genesis;
use commonware_utils::probability;
use std::time::Duration;

#[test]
fn four_validators_with_latency_and_jitter() {
    let target = 20;
    let ledgers = simulate(Run {
        validators: 4,
        seed: seeds(1),
        link: link(50, 20, probability!(1.0)),
        target_height: target,
        crash: None,
        diverge: None,
        partition: None,
        byzantine: None,
    });
    check(&ledgers, target);
}

#[test]
fn four_validators_many_seeds() {
    // Without BASTION_SEED: a handful of seeds (CI); the long mode loops over more.
    let count: u64 = std::env::var("BASTION_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let first = seeds(100);
    for seed in first..first + count {
        let ledgers = simulate(Run {
            validators: 4,
            seed,
            link: link(10, 5, probability!(1.0)),
            target_height: 20,
            crash: None,
            diverge: None,
            partition: None,
            byzantine: None,
        });
        check(&ledgers, 20);
    }
}

#[test]
fn seven_validators() {
    let target = 20;
    let ledgers = simulate(Run {
        validators: 7,
        seed: seeds(7),
        link: link(50, 20, probability!(1.0)),
        target_height: target,
        crash: None,
        diverge: None,
        partition: None,
        byzantine: None,
    });
    check(&ledgers, target);
}

#[test]
fn genesis_block_is_stable() {
    let g = Genesis::devnet();
    assert_eq!(genesis_block(&g).unwrap().id(), genesis_block(&g).unwrap().id());
}

#[test]
fn same_seed_same_chain() {
    let run = || {
        simulate(Run {
            validators: 4,
            seed: seeds(42),
            link: link(20, 10, probability!(1.0)),
            target_height: 10,
            crash: None,
            diverge: None,
            partition: None,
            byzantine: None,
        })
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b, "a replay of one seed must finalize the same chain");
}

#[test]
fn four_validators_thirty_percent_loss() {
    let target = 20;
    let ledgers = simulate(Run {
        validators: 4,
        seed: seeds(30),
        link: link(50, 20, probability!(0.7)),
        target_height: target,
        crash: None,
        diverge: None,
        partition: None,
        byzantine: None,
    });
    check(&ledgers, target);
}

#[test]
fn one_validator_crash_and_restart() {
    let target = 40;
    let ledgers = simulate(Run {
        validators: 4,
        seed: seeds(5),
        link: link(20, 10, probability!(1.0)),
        target_height: target,
        diverge: None,
        crash: Some(Crash { validator: 3, at: 8, others_reach: 25 }),
        partition: None,
        byzantine: None,
    });
    check(&ledgers, target);
}

#[test]
fn seven_validators_thirty_percent_loss_and_a_crash() {
    let target = 30;
    let ledgers = simulate(Run {
        validators: 7,
        seed: seeds(77),
        link: link(50, 20, probability!(0.7)),
        target_height: target,
        diverge: None,
        crash: Some(Crash { validator: 2, at: 5, others_reach: 15 }),
        partition: None,
        byzantine: None,
    });
    check(&ledgers, target);
}

#[test]
fn diverging_validator_halts_and_the_rest_go_on() {
    let target = 25;
    let (faulty, at) = (1usize, 10u64);
    let (ledgers, halts) = simulate_with_halts(Run {
        validators: 4,
        seed: seeds(9),
        link: link(20, 10, probability!(1.0)),
        target_height: target,
        crash: None,
        diverge: Some((faulty, at)),
        partition: None,
        byzantine: None,
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
        validators: 4,
        seed: seeds(11),
        link: link(20, 10, probability!(1.0)),
        target_height: target,
        crash: None,
        diverge: None,
        partition: Some(Partition {
            side: vec![3],
            at: 5,
            duration: Duration::from_secs(8),
            min_progress: 5,
            heal_within: Duration::from_secs(20),
        }),
        byzantine: None,
    });
    check(&ledgers, target);
}

#[test]
fn two_two_split_halts_then_resumes() {
    let target = 25;
    let ledgers = simulate(Run {
        validators: 4,
        seed: seeds(22),
        link: link(20, 10, probability!(1.0)),
        target_height: target,
        crash: None,
        diverge: None,
        partition: Some(Partition {
            side: vec![0, 1],
            at: 5,
            duration: Duration::from_secs(15),
            min_progress: 0,
            heal_within: Duration::from_secs(15),
        }),
        byzantine: None,
    });
    check(&ledgers, target);
}

/// Runs 4 validators, one Byzantine; checks the honest three and returns the faults they saw.
fn byzantine_run(kind: Byzantine, seed: u64) -> Vec<Vec<String>> {
    let (target, bad) = (20, 2usize);
    let o = simulate_outcome(Run {
        validators: 4,
        seed: seeds(seed),
        link: link(20, 10, probability!(1.0)),
        target_height: target,
        crash: None,
        diverge: None,
        partition: None,
        byzantine: Some((bad, kind)),
    });
    assert!(o.ledgers[bad].is_empty(), "the Byzantine validator runs no application");
    let honest: Vec<_> = (0..4).filter(|&i| i != bad).collect();
    check(&honest.iter().map(|&i| o.ledgers[i].clone()).collect::<Vec<_>>(), target);
    let faults: Vec<Vec<String>> = honest.iter().map(|&i| o.faults[i].clone()).collect();
    for (i, f) in honest.iter().zip(&faults) {
        println!("validator {i} recorded {} faults, e.g. {:?}", f.len(), f.first());
        assert!(f.iter().all(|f| f.ends_with(&format!(" by signer {bad}"))));
    }
    faults
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
