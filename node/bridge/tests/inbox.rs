//! Submissions through the inbox directory: applied in the next block, exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bastion_bridge::{SimChain, Submission, submit_to_inbox};
use bastion_types::AccountId;
use common::*;
use std::path::Path;

fn inbox_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("inbox"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

#[test]
fn a_deposit_and_a_voucher_submitted_as_files_are_in_the_next_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    let deposit =
        submit_to_inbox(dir.path(), &Submission::Deposit { to: ALICE, asset: USD, amount: 500 }).unwrap();
    assert!(deposit.exists());
    let block = chain.produce_block(1).unwrap();
    assert_eq!(block.deposits.len(), 1);
    assert_eq!((block.deposits[0].to, block.deposits[0].asset, block.deposits[0].amount), (ALICE, USD, 500));
    assert_eq!(block.inbox, [file_name(&deposit)], "the submitter finds its file in the block");
    assert!(!deposit.exists(), "applied files are deleted");
    assert_eq!(chain.bridge_balance(USD), 500);

    let v = voucher(1, 200);
    let sub = submit_to_inbox(
        dir.path(),
        &Submission::Voucher { voucher: v.clone(), approvals: approvals(&v, &[0, 1, 3]) },
    )
    .unwrap();
    let block = chain.produce_block(2).unwrap();
    assert_eq!(block.payouts.len(), 1);
    assert_eq!(block.payouts[0].voucher, v);
    assert!(block.refused.is_empty());
    assert!(!sub.exists());
    assert!(chain.paid(1));
    assert_eq!(chain.payee_balance(ALICE, USD), 200);
    assert_eq!(chain.bridge_balance(USD), 300);
    assert!(inbox_files(dir.path()).is_empty());
}

#[test]
fn refused_vouchers_are_recorded_and_duplicates_in_one_block_pay_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    chain.deposit(ALICE, USD, 1_000).unwrap();
    chain.produce_block(1).unwrap();
    let v = voucher(4, 600);
    let good = Submission::Voucher { voucher: v.clone(), approvals: approvals(&v, &[0, 1, 2]) };
    submit_to_inbox(dir.path(), &good).unwrap();
    submit_to_inbox(dir.path(), &good).unwrap();
    let weak = voucher(5, 1);
    submit_to_inbox(
        dir.path(),
        &Submission::Voucher { voucher: weak.clone(), approvals: approvals(&weak, &[2]) },
    )
    .unwrap();
    let block = chain.produce_block(2).unwrap();
    assert_eq!(block.payouts.len(), 1, "{block:?}");
    assert_eq!(block.refused.len(), 2, "{block:?}");
    assert_eq!(block.refused[0].voucher_id, 4);
    assert!(block.refused[0].reason.contains("already paid"), "{}", block.refused[0].reason);
    assert_eq!(block.refused[1].voucher_id, 5);
    assert!(block.refused[1].reason.contains("2/3"), "{}", block.refused[1].reason);
    assert_eq!(block.inbox.len(), 3);
    assert_eq!(chain.payee_balance(ALICE, USD), 600);
    assert_eq!(chain.bridge_balance(USD), 400);
    assert!(inbox_files(dir.path()).is_empty());
    // The ledger says the same.
    let line: serde_json::Value = serde_json::from_str(&ledger_lines(dir.path())[1]).unwrap();
    assert_eq!(line["refused"][0]["voucher_id"], 4);
}

#[test]
fn a_garbage_file_is_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    std::fs::write(dir.path().join("inbox/0-garbage.json"), b"{\"deposit\":{\"to\":\"me\"}}").unwrap();
    std::fs::write(
        dir.path().join("inbox/1-negative.json"),
        b"{\"deposit\":{\"to\":5,\"asset\":0,\"amount\":\"-3\"}}",
    )
    .unwrap();
    // Half-written submissions and other names are not read.
    std::fs::write(dir.path().join("inbox/2-pending.json.tmp"), b"{").unwrap();
    submit_to_inbox(dir.path(), &Submission::Deposit { to: AccountId(9), asset: USD, amount: 7 }).unwrap();
    let block = chain.produce_block(1).unwrap();
    assert_eq!(block.deposits.len(), 1, "the valid submission still goes in");
    assert_eq!(block.deposits[0].to, AccountId(9));
    let rejected = dir.path().join("inbox/rejected");
    assert!(rejected.join("0-garbage.json").exists());
    let why = std::fs::read_to_string(rejected.join("0-garbage.json.why")).unwrap();
    assert!(why.contains("not a submission"), "{why}");
    let why = std::fs::read_to_string(rejected.join("1-negative.json.why")).unwrap();
    assert!(why.contains("positive"), "{why}");
    assert_eq!(inbox_files(dir.path()), ["2-pending.json.tmp"]);
    assert_eq!(chain.bridge_balance(USD), 7);
}

#[test]
fn a_file_left_behind_by_a_crash_after_its_block_is_not_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    let path =
        submit_to_inbox(dir.path(), &Submission::Deposit { to: ALICE, asset: USD, amount: 50 }).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    chain.produce_block(1).unwrap();
    drop(chain);
    // As if the process died after the block's fsync and before deleting the file.
    std::fs::write(&path, &bytes).unwrap();
    let mut chain = SimChain::open(dir.path()).unwrap();
    assert!(!path.exists(), "open deletes files the ledger names");
    // Also if the file reappears while the chain runs (its deletion failed).
    std::fs::write(&path, &bytes).unwrap();
    let block = chain.produce_block(2).unwrap();
    assert!(block.deposits.is_empty());
    assert_eq!(chain.bridge_balance(USD), 50);
    assert_eq!(chain.totals().deposits, 1);
}

#[test]
fn files_are_applied_in_submission_order_and_wait_for_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    let paths: Vec<_> = (1..=5)
        .map(|i| {
            submit_to_inbox(dir.path(), &Submission::Deposit { to: AccountId(i), asset: USD, amount: 1 })
                .unwrap()
        })
        .collect();
    assert_eq!(inbox_files(dir.path()).len(), 5);
    assert_eq!(chain.height(), 0);
    let block = chain.produce_block(1).unwrap();
    assert_eq!(block.deposits.iter().map(|d| d.to.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(block.inbox, paths.iter().map(|p| file_name(p)).collect::<Vec<_>>());
}

#[test]
fn submissions_are_json_with_hex_signatures_and_string_amounts() {
    let v = voucher(1, 200);
    let sub = Submission::Voucher { voucher: v.clone(), approvals: approvals(&v, &[0]) };
    let json: serde_json::Value = serde_json::to_value(&sub).unwrap();
    let sig = json["voucher"]["approvals"][0]["signature"].as_str().unwrap();
    assert_eq!(sig.len(), 128);
    assert_eq!(json["voucher"]["approvals"][0]["validator"], 0);
    assert_eq!(json["voucher"]["voucher"]["amount"], "200");
    assert_eq!(serde_json::from_value::<Submission>(json).unwrap(), sub);
    let dep: Submission = serde_json::from_str(r#"{"deposit":{"to":5,"asset":0,"amount":1000000}}"#).unwrap();
    assert_eq!(dep, Submission::Deposit { to: ALICE, asset: USD, amount: 1_000_000 });
}
