//! [`FileSource`] keeps the `DepositSource` contract over the ledger file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bastion_bridge::{DepositSource, FileSource, LedgerError, SourceError};
use bastion_types::AccountId;
use common::*;
use std::io::Write;

#[test]
fn a_missing_ledger_is_height_zero_until_the_chain_exists() {
    let dir = tempfile::tempdir().unwrap();
    let chain_dir = dir.path().join("chain");
    let mut source = FileSource::new(chain_dir.clone(), 1);
    for _ in 0..2 {
        let poll = source.poll().unwrap();
        assert_eq!(poll.height, 0);
        assert!(poll.confirmed.is_empty());
    }
    let mut chain = new_chain(&chain_dir);
    assert_eq!(source.poll().unwrap().height, 0, "an empty ledger: no block yet");
    let id = chain.deposit(ALICE, USD, 10).unwrap();
    chain.produce_block(1).unwrap();
    let poll = source.poll().unwrap();
    assert_eq!(poll.height, 1);
    assert_eq!(poll.confirmed.len(), 1, "one confirmation: reported with its own block");
    assert_eq!(poll.confirmed[0].deposit.source_id, id);
}

#[test]
fn deposits_are_reported_once_at_the_confirmation_depth_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    let mut source = FileSource::new(dir.path().to_path_buf(), 3);
    assert_eq!(
        source.describe(),
        format!("file {} (3 confirmations)", dir.path().join("ledger.jsonl").display())
    );
    let a = chain.deposit(ALICE, USD, 100).unwrap();
    let b = chain.deposit(AccountId(6), USD, 200).unwrap();
    chain.produce_block(1).unwrap();
    let c = chain.deposit(ALICE, USD, 300).unwrap();
    chain.produce_block(2).unwrap();
    // Tip 2: block 1's deposits need tip >= 1 + 3 - 1 = 3.
    let poll = source.poll().unwrap();
    assert_eq!(poll.height, 2);
    assert!(poll.confirmed.is_empty(), "{poll:?}");
    chain.produce_block(3).unwrap();
    let poll = source.poll().unwrap();
    assert_eq!(poll.height, 3);
    let ids: Vec<_> = poll.confirmed.iter().map(|d| d.deposit.source_id).collect();
    assert_eq!(ids, [a, b], "block 1's deposits, in block order");
    assert!(poll.confirmed.iter().all(|d| d.source_height == 1));
    assert_eq!(poll.confirmed[1].deposit.to, AccountId(6));
    assert_eq!(poll.confirmed[1].deposit.amount, 200);
    // Polling again without a new block reports nothing again.
    assert!(source.poll().unwrap().confirmed.is_empty());
    chain.produce_block(4).unwrap();
    let poll = source.poll().unwrap();
    assert_eq!(poll.confirmed.iter().map(|d| d.deposit.source_id).collect::<Vec<_>>(), [c]);
    chain.produce_block(5).unwrap();
    chain.produce_block(6).unwrap();
    let poll = source.poll().unwrap();
    assert_eq!(poll.height, 6);
    assert!(poll.confirmed.is_empty(), "each deposit once per instance");

    // A fresh instance (a validator restart) reports everything from the beginning again.
    let mut fresh = FileSource::new(dir.path().to_path_buf(), 3);
    let poll = fresh.poll().unwrap();
    assert_eq!(poll.height, 6);
    assert_eq!(poll.confirmed.iter().map(|d| d.deposit.source_id).collect::<Vec<_>>(), [a, b, c]);
    assert!(fresh.poll().unwrap().confirmed.is_empty());
}

#[test]
fn zero_confirmations_means_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    chain.deposit(ALICE, USD, 1).unwrap();
    let mut source = FileSource::new(dir.path().to_path_buf(), 0);
    assert_eq!(source.confirmations(), 1);
    assert!(source.poll().unwrap().confirmed.is_empty(), "queued is not on the chain");
    chain.produce_block(1).unwrap();
    assert_eq!(source.poll().unwrap().confirmed.len(), 1);
}

#[test]
fn only_complete_lines_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    let mut source = FileSource::new(dir.path().to_path_buf(), 1);
    chain.deposit(ALICE, USD, 1).unwrap();
    chain.produce_block(1).unwrap();
    let line = ledger_lines(dir.path())[0].clone();
    // Another writer's block 2, caught half written.
    let block2 = line.replace("\"height\":1", "\"height\":2");
    let (head, tail) = block2.split_at(block2.len() / 2);
    let path = dir.path().join("ledger.jsonl");
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(head.as_bytes()).unwrap();
    let poll = source.poll().unwrap();
    assert_eq!((poll.height, poll.confirmed.len()), (1, 1));
    file.write_all(tail.as_bytes()).unwrap();
    assert_eq!(source.poll().unwrap().height, 1, "still no newline");
    file.write_all(b"\n").unwrap();
    let poll = source.poll().unwrap();
    assert_eq!((poll.height, poll.confirmed.len()), (2, 1));
    assert_eq!(poll.confirmed[0].source_height, 2);
}

#[test]
fn a_malformed_line_is_an_error_that_reports_nothing_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    chain.deposit(ALICE, USD, 1).unwrap();
    chain.produce_block(1).unwrap();
    drop(chain);
    let path = dir.path().join("ledger.jsonl");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{good}not json\n")).unwrap();
    let mut source = FileSource::new(dir.path().to_path_buf(), 1);
    for _ in 0..2 {
        let err = source.poll().unwrap_err();
        assert!(matches!(&err, SourceError::Ledger(LedgerError::Malformed { line: 2, .. })), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("line 2") && message.contains(&path.display().to_string()), "{message}");
    }
    // The operator repairs the file: the deposit the failed polls held back is reported.
    std::fs::write(&path, &good).unwrap();
    let poll = source.poll().unwrap();
    assert_eq!((poll.height, poll.confirmed.len()), (1, 1));
}

#[test]
fn a_ledger_that_shrinks_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    chain.produce_block(1).unwrap();
    let mut source = FileSource::new(dir.path().to_path_buf(), 1);
    assert_eq!(source.poll().unwrap().height, 1);
    std::fs::write(dir.path().join("ledger.jsonl"), b"").unwrap();
    let err = source.poll().unwrap_err();
    assert!(matches!(err, SourceError::Ledger(LedgerError::Shrunk { .. })), "{err:?}");
}
