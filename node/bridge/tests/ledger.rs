//! The ledger file: its format, torn last lines, malformed lines, and reopening.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bastion_bridge::{ChainError, LedgerError, LedgerState, SimChain, StateError, read_ledger};
use bastion_types::{AccountId, AssetId, INSURANCE_FUND_ACCOUNT};
use common::*;
use proptest::prelude::*;
use std::io::Write;
use std::path::Path;

/// Three blocks: deposits of two assets, a payout, an empty block.
fn history(dir: &Path) -> SimChain {
    let mut chain = new_chain(dir);
    chain.deposit(ALICE, USD, 1_000_000).unwrap();
    chain.deposit(INSURANCE_FUND_ACCOUNT, AssetId(2), 77).unwrap();
    chain.produce_block(100).unwrap();
    let v = voucher(1, 300_000);
    chain.submit_voucher(&v, &approvals(&v, &[0, 1, 2])).unwrap();
    chain.deposit(AccountId(6), USD, 5).unwrap();
    chain.produce_block(200).unwrap();
    chain.produce_block(300).unwrap();
    chain
}

fn append(dir: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("ledger.jsonl")).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn lines_are_json_objects_with_string_amounts_and_hex_ids() {
    let dir = tempfile::tempdir().unwrap();
    let chain = history(dir.path());
    let lines = ledger_lines(dir.path());
    assert_eq!(lines.len(), 3);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["height"], 1);
    assert_eq!(first["time_ms"], 100);
    assert_eq!(first["deposits"][0]["to"], 5);
    assert_eq!(first["deposits"][0]["asset"], 0);
    assert_eq!(first["deposits"][0]["amount"], "1000000");
    assert_eq!(first["deposits"][1]["to"], serde_json::json!(u64::MAX));
    let id = first["deposits"][0]["source_id"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(first["payouts"], serde_json::json!([]));
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        second["payouts"][0],
        serde_json::json!({"voucher": {"id": 1, "account": 5, "asset": 0, "amount": "300000", "height": 41}, "signers": 3})
    );
    // What the readers see is what was written.
    let blocks = read_ledger(&dir.path().join("ledger.jsonl")).unwrap();
    assert_eq!(blocks.iter().map(|b| b.height).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(LedgerState::replay(&blocks).unwrap(), *chain.state());
}

#[test]
fn a_torn_last_line_is_ignored_by_readers_and_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let state = history(dir.path()).state().clone();
    let path = dir.path().join("ledger.jsonl");
    let good_len = std::fs::metadata(&path).unwrap().len();
    append(dir.path(), br#"{"height":4,"time_ms":400,"deposits":[{"source_id":"ab"#);
    let blocks = read_ledger(&path).unwrap();
    assert_eq!(blocks.len(), 3, "the torn line is not a block");
    let mut chain = SimChain::open(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len, "open truncates the torn line");
    assert_eq!(*chain.state(), state);
    // The chain goes on from there, and the file stays readable.
    chain.deposit(ALICE, USD, 9).unwrap();
    let block = chain.produce_block(400).unwrap();
    assert_eq!(block.height, 4);
    let blocks = read_ledger(&path).unwrap();
    assert_eq!(blocks.len(), 4);
    assert_eq!(blocks[3], block);
}

#[test]
fn reopening_reproduces_balances_and_the_paid_set() {
    let dir = tempfile::tempdir().unwrap();
    let before = history(dir.path());
    let chain = SimChain::open(dir.path()).unwrap();
    assert_eq!(chain.state(), before.state());
    assert_eq!(chain.height(), 3);
    assert_eq!(chain.bridge_balance(USD), 700_005);
    assert_eq!(chain.bridge_balance(AssetId(2)), 77);
    assert_eq!(chain.payee_balance(ALICE, USD), 300_000);
    assert!(chain.paid(1) && !chain.paid(2));
    let totals = chain.totals();
    assert_eq!((totals.deposits, totals.deposited, totals.payouts, totals.paid), (3, 1_000_082, 1, 300_000));
    assert_eq!(chain.state().time_ms(), 300);
}

#[test]
fn create_refuses_an_existing_ledger_and_open_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path());
    let err = SimChain::create(dir.path(), config()).unwrap_err();
    assert!(matches!(err, ChainError::AlreadyExists(_)), "{err}");
    assert_eq!(read_ledger(&dir.path().join("ledger.jsonl")).unwrap().len(), 3, "left alone");
    let empty = tempfile::tempdir().unwrap();
    assert!(SimChain::open(empty.path()).is_err());
    let mut bad = config();
    bad.validators.clear();
    let err = SimChain::create(empty.path(), bad).unwrap_err();
    assert!(err.to_string().contains("validators"), "{err}");
}

#[test]
fn a_malformed_middle_line_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path());
    let path = dir.path().join("ledger.jsonl");
    let mut lines = ledger_lines(dir.path());
    lines[1] = r#"{"height":2,"time_ms":"soon"}"#.to_string();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = read_ledger(&path).unwrap_err();
    assert!(matches!(err, LedgerError::Malformed { line: 2, .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("line 2") && message.contains(&path.display().to_string()), "{message}");
    let err = SimChain::open(dir.path()).unwrap_err();
    assert!(matches!(err, ChainError::Ledger(LedgerError::Malformed { line: 2, .. })), "{err:?}");
    // Garbage that is not JSON at all, and a non-positive amount, are malformed too.
    lines[1] = "garbage".to_string();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    assert!(matches!(read_ledger(&path), Err(LedgerError::Malformed { line: 2, .. })));
    lines[1] =
        ledger_lines(dir.path())[0].replace("\"height\":1", "\"height\":2").replace("\"1000000\"", "\"0\"");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = read_ledger(&path).unwrap_err();
    assert!(err.to_string().contains("non-positive"), "{err}");
}

#[test]
fn a_height_gap_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path());
    let path = dir.path().join("ledger.jsonl");
    append(dir.path(), b"{\"height\":5,\"time_ms\":500,\"deposits\":[],\"payouts\":[]}\n");
    let err = read_ledger(&path).unwrap_err();
    assert!(matches!(err, LedgerError::HeightGap { line: 4, expected: 4, found: 5, .. }), "{err:?}");
    assert!(err.to_string().contains("line 4"), "{err}");
}

#[test]
fn a_ledger_that_pays_a_voucher_twice_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path());
    let lines = ledger_lines(dir.path());
    // Block 4 repeats block 2's payout.
    append(dir.path(), format!("{}\n", lines[1].replace("\"height\":2", "\"height\":4")).as_bytes());
    let err = SimChain::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::Inconsistent { source: StateError::PaidTwice { height: 4, voucher_id: 1 }, .. }
        ),
        "{err:?}"
    );
    // The same from the reader's side, for conservation checks.
    let blocks = read_ledger(&dir.path().join("ledger.jsonl")).unwrap();
    assert!(LedgerState::replay(&blocks).is_err());
}

#[test]
fn a_ledger_that_overdraws_does_not_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    chain.deposit(ALICE, USD, 10).unwrap();
    chain.produce_block(1).unwrap();
    drop(chain);
    append(
        dir.path(),
        b"{\"height\":2,\"time_ms\":2,\"deposits\":[],\"payouts\":[{\"voucher\":{\"id\":1,\"account\":5,\"asset\":0,\"amount\":\"11\",\"height\":1},\"signers\":3}]}\n",
    );
    let blocks = read_ledger(&dir.path().join("ledger.jsonl")).unwrap();
    assert_eq!(
        LedgerState::replay(&blocks),
        Err(StateError::Overdrawn { height: 2, voucher_id: 1, asset: USD, have: 10, need: 11 })
    );
}

#[test]
fn block_times_never_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = new_chain(dir.path());
    assert_eq!(chain.produce_block(500).unwrap().time_ms, 500);
    assert_eq!(chain.produce_block(400).unwrap().time_ms, 500);
    assert_eq!(chain.produce_block(600).unwrap().time_ms, 600);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever sequence of deposits, vouchers and blocks, a reopened chain and a replay of the
    /// ledger file add up to the running chain's state, and conservation holds:
    /// bridge balance = deposited - paid per asset, and payees got exactly what was paid.
    #[test]
    fn reopen_and_replay_match_the_running_chain(
        ops in proptest::collection::vec((0u8..3, 1i128..1_000_000, 0u16..2, 0u64..3), 1..60),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut chain = new_chain(dir.path());
        let mut next_voucher = 1;
        let mut time = 0;
        for (kind, amount, asset, account) in ops {
            match kind {
                0 => { chain.deposit(AccountId(account), AssetId(asset), amount).unwrap(); }
                1 => {
                    let v = bastion_types::Voucher {
                        id: next_voucher, account: AccountId(account), asset: AssetId(asset), amount, height: 1,
                    };
                    next_voucher += 1;
                    // Refused ones (beyond the balance) leave nothing behind.
                    let _ = chain.submit_voucher(&v, &approvals(&v, &[0, 1, 2]));
                }
                _ => { time += 1; chain.produce_block(time).unwrap(); }
            }
        }
        chain.produce_block(time + 1).unwrap();
        let reopened = SimChain::open(dir.path()).unwrap();
        prop_assert_eq!(reopened.state(), chain.state());
        let replayed = LedgerState::replay(&read_ledger(&dir.path().join("ledger.jsonl")).unwrap()).unwrap();
        prop_assert_eq!(&replayed, chain.state());
        let totals = chain.totals();
        let held: i128 = replayed.bridge_balances().map(|(_, m)| m).sum();
        prop_assert_eq!(held, totals.deposited - totals.paid);
        let payees: i128 = (0..3u64)
            .flat_map(|a| (0..2u16).map(move |s| (a, s)))
            .map(|(a, s)| replayed.payee_balance(AccountId(a), AssetId(s)))
            .sum();
        prop_assert_eq!(payees, totals.paid);
        prop_assert!(replayed.bridge_balances().all(|(_, m)| m >= 0));
    }
}
