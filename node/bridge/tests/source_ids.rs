//! Source ids are unique across many deposits and the same for the same ledger; `run` drives
//! the chain on its clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bastion_bridge::{BridgeConfig, ChainError, SimChain, read_ledger};
use bastion_types::{AccountId, AssetId, SourceId};
use common::*;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const DEPOSITS: u64 = 10_000;
const PER_BLOCK: u64 = 2_500;

/// 10k deposits in four blocks, many of them identical in every field; returns their ids.
fn many_deposits(dir: &Path, config: BridgeConfig) -> Vec<SourceId> {
    let mut chain = SimChain::create(dir, config).unwrap();
    let mut ids = Vec::new();
    for i in 0..DEPOSITS {
        // Only 7 accounts and 3 amounts: the fields alone would collide.
        ids.push(chain.deposit(AccountId(i % 7), AssetId(0), 1 + i128::from(i % 3)).unwrap());
        if (i + 1) % PER_BLOCK == 0 {
            chain.produce_block(i).unwrap();
        }
    }
    ids
}

#[test]
fn ten_thousand_deposits_have_unique_ids_that_the_ledger_records() {
    let dir = tempfile::tempdir().unwrap();
    let ids = many_deposits(dir.path(), config());
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    let blocks = read_ledger(&dir.path().join("ledger.jsonl")).unwrap();
    assert_eq!(blocks.len(), 4);
    let recorded: Vec<_> = blocks.iter().flat_map(|b| b.deposits.iter().map(|d| d.source_id)).collect();
    assert_eq!(recorded, ids, "the id `deposit` returned is the one in the ledger");
}

#[test]
fn ids_are_deterministic_for_the_same_ledger_and_differ_across_chains() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = many_deposits(a.path(), config());
    let second = many_deposits(b.path(), config());
    assert_eq!(first, second);
    assert_eq!(
        std::fs::read(a.path().join("ledger.jsonl")).unwrap(),
        std::fs::read(b.path().join("ledger.jsonl")).unwrap()
    );
    let c = tempfile::tempdir().unwrap();
    let mut other = config();
    other.chain_id = "bastion-other".to_string();
    let third = many_deposits(c.path(), other);
    assert!(first.iter().zip(&third).all(|(x, y)| x != y), "the chain id is in the id");
}

#[test]
fn a_full_block_refuses_more_deposits_until_it_is_produced() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    for _ in 0..bastion_bridge::ledger::SOURCE_BLOCK_DEPOSITS_MAX {
        chain.deposit(ALICE, USD, 1).unwrap();
    }
    let err = chain.deposit(ALICE, USD, 1).unwrap_err();
    assert!(matches!(err, ChainError::BlockFull { .. }), "{err}");
    chain.produce_block(1).unwrap();
    chain.deposit(ALICE, USD, 1).unwrap();
}

#[test]
fn run_produces_a_block_per_block_ms_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.block_ms = 1;
    SimChain::create(dir.path(), config).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut now = 1_000;
    let clock = {
        let stop = stop.clone();
        // Each call is one ms later; at 1_020 the test stops the chain.
        move || {
            now += 1;
            if now >= 1_020 {
                stop.store(true, Ordering::Relaxed);
            }
            now
        }
    };
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || bastion_bridge::run(path, stop, clock)).join().unwrap().unwrap();
    let blocks = read_ledger(&dir.path().join("ledger.jsonl")).unwrap();
    assert_eq!(blocks.iter().map(|b| b.time_ms).collect::<Vec<_>>(), (1_002..=1_020).collect::<Vec<_>>());
    // A directory without a chain is an error, not a silent loop.
    let empty = tempfile::tempdir().unwrap();
    let err =
        bastion_bridge::run(empty.path().to_path_buf(), Arc::new(AtomicBool::new(false)), || 0).unwrap_err();
    assert!(err.to_string().contains("bridge.json"), "{err}");
}
