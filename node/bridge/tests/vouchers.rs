//! The source chain pays a voucher only with 2/3 of stake's valid signatures, only once, and
//! only out of what the bridge holds; balances move by exactly the voucher's amount.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bastion_bridge::{SimChain, Totals, VoucherError};
use bastion_types::{AccountId, ValidatorIndex, Voucher};
use common::*;

/// A chain with 1_000_000 USD deposited for ALICE, in one produced block.
fn funded(dir: &std::path::Path) -> SimChain {
    let mut chain = new_chain(dir);
    chain.deposit(ALICE, USD, 1_000_000).unwrap();
    chain.produce_block(1).unwrap();
    assert_eq!(chain.bridge_balance(USD), 1_000_000);
    chain
}

#[test]
fn three_of_four_signatures_pay_and_balances_move_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = funded(dir.path());
    let v = voucher(1, 250_000);
    chain.submit_voucher(&v, &approvals(&v, &[0, 2, 3])).unwrap();
    assert!(!chain.paid(1), "queued, not paid before the block");
    assert_eq!(chain.payee_balance(ALICE, USD), 0);
    let block = chain.produce_block(2).unwrap();
    assert_eq!(block.payouts.len(), 1);
    assert_eq!(block.payouts[0].voucher, v);
    assert_eq!(block.payouts[0].signers, 3);
    assert!(block.refused.is_empty());
    assert!(chain.paid(1));
    assert_eq!(chain.payee_balance(ALICE, USD), 250_000);
    assert_eq!(chain.payee_balance(AccountId(6), USD), 0);
    assert_eq!(chain.bridge_balance(USD), 750_000);
    assert_eq!(chain.totals(), Totals { deposits: 1, deposited: 1_000_000, payouts: 1, paid: 250_000 });
}

#[test]
fn two_of_four_signatures_are_too_few() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = funded(dir.path());
    let v = voucher(1, 250_000);
    let err = chain.submit_voucher(&v, &approvals(&v, &[1, 3])).unwrap_err();
    assert_eq!(err, VoucherError::TooFewSignatures { signed: 2, total: 4 });
    assert!(err.to_string().contains("2 of 4 stake"), "{err}");
    let block = chain.produce_block(2).unwrap();
    assert!(block.payouts.is_empty());
    assert!(!chain.paid(1));
    assert_eq!(chain.bridge_balance(USD), 1_000_000);
    // The refusal consumed nothing: with a third signature it pays.
    chain.submit_voucher(&v, &approvals(&v, &[1, 3, 0])).unwrap();
    chain.produce_block(3).unwrap();
    assert!(chain.paid(1));
}

#[test]
fn quorum_is_two_thirds_of_stake_not_of_signers() {
    let dir = tempfile::tempdir().unwrap();
    // Total stake 6: 4 is exactly 2/3 (pays), 3 is half (refused).
    let mut chain = SimChain::create(dir.path(), config_with_stakes([1, 1, 1, 3], 1)).unwrap();
    chain.deposit(ALICE, USD, 100).unwrap();
    chain.produce_block(1).unwrap();
    let v = voucher(1, 10);
    assert_eq!(
        chain.submit_voucher(&v, &approvals(&v, &[3])),
        Err(VoucherError::TooFewSignatures { signed: 3, total: 6 })
    );
    assert_eq!(
        chain.submit_voucher(&v, &approvals(&v, &[0, 1, 2])),
        Err(VoucherError::TooFewSignatures { signed: 3, total: 6 })
    );
    chain.submit_voucher(&v, &approvals(&v, &[3, 0])).unwrap();
    chain.produce_block(2).unwrap();
    assert!(chain.paid(1));
}

#[test]
fn forged_signatures_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = funded(dir.path());
    let v = voucher(1, 250_000);
    // Validator 2's slot signed with a key that is not validator 2's.
    let mut wrong_key = approvals(&v, &[0, 1]);
    wrong_key.push(sign_with([99; 32], 2, CHAIN, &v));
    assert_eq!(chain.submit_voucher(&v, &wrong_key), Err(VoucherError::BadSignature { validator: 2 }));
    // Validator 3's real signature, but over another voucher (a larger amount).
    let other = Voucher { amount: 999_999, ..v.clone() };
    let mut other_voucher = approvals(&v, &[0, 1]);
    other_voucher.extend(approvals(&other, &[3]));
    assert_eq!(chain.submit_voucher(&v, &other_voucher), Err(VoucherError::BadSignature { validator: 3 }));
    // The same signatures presented for the other voucher: the honest ones fail now.
    assert_eq!(
        chain.submit_voucher(&other, &approvals(&v, &[0, 1, 2])),
        Err(VoucherError::BadSignature { validator: 0 })
    );
    // A signature bit flipped.
    let mut flipped = approvals(&v, &[0, 1, 2]);
    flipped[1].signature[10] ^= 1;
    assert_eq!(chain.submit_voucher(&v, &flipped), Err(VoucherError::BadSignature { validator: 1 }));
    chain.produce_block(2).unwrap();
    assert!(!chain.paid(1));
    assert_eq!(chain.bridge_balance(USD), 1_000_000);
    assert_eq!(chain.payee_balance(ALICE, USD), 0);
}

#[test]
fn signatures_for_another_chain_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = funded(dir.path());
    let v = voucher(1, 250_000);
    let foreign: Vec<_> =
        (0..3u16).map(|i| sign_with(SEEDS[usize::from(i)], i, "bastion-other", &v)).collect();
    assert_eq!(chain.submit_voucher(&v, &foreign), Err(VoucherError::BadSignature { validator: 0 }));
    chain.produce_block(2).unwrap();
    assert!(!chain.paid(1));
}

#[test]
fn unknown_and_duplicate_signers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = funded(dir.path());
    let v = voucher(1, 250_000);
    let mut unknown = approvals(&v, &[0, 1]);
    unknown.push(sign_with([25; 32], 4, CHAIN, &v));
    assert_eq!(chain.submit_voucher(&v, &unknown), Err(VoucherError::UnknownValidator(4)));
    // One validator's signature three times does not weigh three.
    let mut dup = approvals(&v, &[0, 0]);
    dup.extend(approvals(&v, &[0]));
    assert_eq!(chain.submit_voucher(&v, &dup), Err(VoucherError::DuplicateSigner(0)));
    let mut dup_index = approvals(&v, &[0, 1]);
    dup_index
        .push(bastion_types::Approval { validator: ValidatorIndex(1), ..approvals(&v, &[2])[0].clone() });
    assert_eq!(chain.submit_voucher(&v, &dup_index), Err(VoucherError::DuplicateSigner(1)));
    assert_eq!(chain.submit_voucher(&v, &[]), Err(VoucherError::TooFewSignatures { signed: 0, total: 4 }));
}

#[test]
fn a_voucher_is_paid_once_even_submitted_twice_before_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = funded(dir.path());
    let v = voucher(7, 100_000);
    chain.submit_voucher(&v, &approvals(&v, &[0, 1, 2])).unwrap();
    // Before the block, with other (equally valid) signers: still the same voucher id.
    assert_eq!(chain.submit_voucher(&v, &approvals(&v, &[1, 2, 3])), Err(VoucherError::AlreadyPaid(7)));
    let block = chain.produce_block(2).unwrap();
    assert_eq!(block.payouts.len(), 1);
    // After the block.
    assert_eq!(chain.submit_voucher(&v, &approvals(&v, &[0, 1, 2])), Err(VoucherError::AlreadyPaid(7)));
    // A different voucher reusing the id is refused too: ids are paid once, whatever they say.
    let reuse = Voucher { amount: 5, ..v.clone() };
    assert_eq!(
        chain.submit_voucher(&reuse, &approvals(&reuse, &[0, 1, 2])),
        Err(VoucherError::AlreadyPaid(7))
    );
    chain.produce_block(3).unwrap();
    assert_eq!(chain.payee_balance(ALICE, USD), 100_000);
    assert_eq!(chain.bridge_balance(USD), 900_000);
    assert_eq!(chain.totals().payouts, 1);
}

#[test]
fn paid_vouchers_stay_paid_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut chain = funded(dir.path());
        let v = voucher(3, 400_000);
        chain.submit_voucher(&v, &approvals(&v, &[0, 1, 3])).unwrap();
        chain.produce_block(2).unwrap();
    }
    let mut chain = SimChain::open(dir.path()).unwrap();
    assert!(chain.paid(3));
    assert_eq!(chain.height(), 2);
    assert_eq!(chain.bridge_balance(USD), 600_000);
    assert_eq!(chain.payee_balance(ALICE, USD), 400_000);
    let v = voucher(3, 400_000);
    assert_eq!(chain.submit_voucher(&v, &approvals(&v, &[0, 1, 2, 3])), Err(VoucherError::AlreadyPaid(3)));
    let block = chain.produce_block(3).unwrap();
    assert!(block.payouts.is_empty());
    assert_eq!(chain.bridge_balance(USD), 600_000);
}

#[test]
fn vouchers_beyond_the_bridge_balance_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = funded(dir.path());
    let big = voucher(1, 1_000_001);
    assert_eq!(
        chain.submit_voucher(&big, &approvals(&big, &[0, 1, 2])),
        Err(VoucherError::InsufficientBridgeBalance { have: 1_000_000, need: 1_000_001 })
    );
    // Another asset the bridge never held.
    let other_asset = Voucher { asset: bastion_types::AssetId(3), ..voucher(2, 1) };
    assert_eq!(
        chain.submit_voucher(&other_asset, &approvals(&other_asset, &[0, 1, 2])),
        Err(VoucherError::InsufficientBridgeBalance { have: 0, need: 1 })
    );
    // Two vouchers that each fit but not together: the queued one counts.
    let a = voucher(3, 600_000);
    let b = voucher(4, 600_000);
    chain.submit_voucher(&a, &approvals(&a, &[0, 1, 2])).unwrap();
    assert_eq!(
        chain.submit_voucher(&b, &approvals(&b, &[0, 1, 2])),
        Err(VoucherError::InsufficientBridgeBalance { have: 400_000, need: 600_000 })
    );
    // Exactly the whole balance is payable.
    let rest = voucher(5, 400_000);
    chain.submit_voucher(&rest, &approvals(&rest, &[0, 1, 2])).unwrap();
    chain.produce_block(2).unwrap();
    assert_eq!(chain.bridge_balance(USD), 0);
    assert_eq!(chain.payee_balance(ALICE, USD), 1_000_000);
    assert!(chain.paid(3) && chain.paid(5) && !chain.paid(4));
}

#[test]
fn non_positive_vouchers_and_deposits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = funded(dir.path());
    for amount in [0, -5] {
        let v = voucher(1, amount);
        assert_eq!(chain.submit_voucher(&v, &approvals(&v, &[0, 1, 2])), Err(VoucherError::NonPositive));
        let err = chain.deposit(ALICE, USD, amount).unwrap_err();
        assert!(matches!(err, bastion_bridge::ChainError::NonPositiveDeposit(a) if a == amount), "{err}");
    }
    let block = chain.produce_block(2).unwrap();
    assert!(block.deposits.is_empty() && block.payouts.is_empty());
}
