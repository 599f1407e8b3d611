//! The nonce rule, as a block-validity rule: a block may include a transaction only if its
//! signer's account exists at the start of the block and its nonce is exactly the signer's
//! last nonce + 1 (counting the signer's earlier transactions in the same block). One that is
//! not refuses the whole block and leaves the state untouched; every included transaction
//! consumes its nonce, whatever its outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::{BlockError, Genesis, State, TxError};
use bastion_types::*;

const USD: i128 = 1_000_000;

struct Net {
    state: State,
    height: u64,
    time_ms: u64,
}

impl Net {
    /// The devnet genesis (authority: account 0) with accounts 1 and 2 funded.
    fn new() -> Net {
        let g = Genesis::devnet();
        let mut n = Net { state: State::from_genesis(&g).unwrap(), height: 0, time_ms: g.timestamp_ms };
        n.apply(vec![deposit(1, 1, 1_000), deposit(2, 2, 1_000)]).unwrap();
        n
    }

    fn block(&self, txs: Vec<Tx>) -> Block {
        let prices = [(UnderlyingId(0), 100_000 * 1_000_000), (UnderlyingId(1), 4_000 * 1_000_000)];
        let (height, t) = (self.height + 1, self.time_ms + 250);
        let oracle = bastion_exchange::testkit::observe_all(&self.state.chain_id, 4, height, t, &prices);
        Block { height: self.height + 1, timestamp_ms: self.time_ms + 250, oracle, txs, ..Default::default() }
    }

    fn apply(&mut self, txs: Vec<Tx>) -> Result<Vec<Event>, BlockError> {
        let block = self.block(txs);
        let out = self.state.apply_block(&block)?;
        self.height += 1;
        self.time_ms += 250;
        self.state.check_invariants().unwrap();
        Ok(out.events)
    }

    fn nonce(&self, account: u64) -> u64 {
        self.state.accounts.get(&AccountId(account)).unwrap().nonce
    }

    /// Applies `txs`, expects the block refused with `want`, and checks nothing changed.
    fn refused(&mut self, txs: Vec<Tx>, want: BlockError) {
        let (root, height, time, accounts) =
            (self.state.state_root(), self.state.height, self.state.timestamp_ms, self.state.accounts.len());
        let nonces: Vec<u64> = [0, 1, 2].iter().map(|a| self.nonce(*a)).collect();
        let recomputed = self.state.recompute_root();
        let got = self.apply(txs);
        assert_eq!(got, Err(want));
        assert_eq!(self.state.state_root(), root, "state root unchanged");
        assert_eq!(self.state.recompute_root(), recomputed, "no record changed behind the commitment");
        assert_eq!((self.state.height, self.state.timestamp_ms), (height, time));
        assert_eq!(self.state.accounts.len(), accounts);
        assert_eq!([0, 1, 2].iter().map(|a| self.nonce(*a)).collect::<Vec<_>>(), nonces);
    }
}

fn tx(signer: u64, nonce: u64, action: Action) -> Tx {
    Tx { signer: AccountId(signer), nonce, action }
}

fn deposit(nonce: u64, to: u64, usd: i128) -> Tx {
    tx(0, nonce, Action::Deposit { to: AccountId(to), asset: AssetId(0), amount: usd * USD })
}

fn margin_mode(signer: u64, nonce: u64) -> Tx {
    tx(signer, nonce, Action::SetMarginMode { portfolio: false })
}

fn rejections(ev: &[Event]) -> Vec<(u32, Reject)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Rejected { tx, reason } => Some((*tx, reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_block_with_an_unknown_signer_is_refused_whole() {
    let mut n = Net::new();
    // A valid transaction first: it must not execute either.
    n.refused(
        vec![margin_mode(1, 1), margin_mode(99, 1)],
        BlockError::Tx { index: 1, reason: TxError::UnknownSigner(AccountId(99)) },
    );
    // The same block without the unknown signer applies.
    n.apply(vec![margin_mode(1, 1)]).unwrap();
    assert_eq!(n.nonce(1), 1);
}

#[test]
fn a_block_with_a_nonce_gap_is_refused_whole() {
    let mut n = Net::new();
    n.refused(
        vec![margin_mode(2, 1), margin_mode(1, 2)],
        BlockError::Tx { index: 1, reason: TxError::NonceGap { expected: 1, got: 2 } },
    );
    // A gap inside one signer's run in the block.
    n.refused(
        vec![margin_mode(1, 1), margin_mode(1, 3)],
        BlockError::Tx { index: 1, reason: TxError::NonceGap { expected: 2, got: 3 } },
    );
    // A consecutive run of one signer in one block applies, interleaved with another's.
    let ev =
        n.apply(vec![margin_mode(1, 1), margin_mode(2, 1), margin_mode(1, 2), margin_mode(1, 3)]).unwrap();
    assert_eq!(rejections(&ev), vec![]);
    assert_eq!((n.nonce(1), n.nonce(2)), (3, 1));
}

#[test]
fn a_block_repeating_a_nonce_is_refused_whole() {
    let mut n = Net::new();
    // Twice in the same block (different actions: a different signature, the same nonce).
    n.refused(
        vec![margin_mode(1, 1), tx(1, 1, Action::SetMarginMode { portfolio: true })],
        BlockError::Tx { index: 1, reason: TxError::NonceUsed { expected: 2, got: 1 } },
    );
    n.apply(vec![margin_mode(1, 1)]).unwrap();
    // Again in a later block.
    n.refused(
        vec![margin_mode(1, 1)],
        BlockError::Tx { index: 0, reason: TxError::NonceUsed { expected: 2, got: 1 } },
    );
    // Nonce 0 is never valid.
    n.refused(
        vec![margin_mode(2, 0)],
        BlockError::Tx { index: 0, reason: TxError::NonceUsed { expected: 1, got: 0 } },
    );
}

#[test]
fn a_rejected_transaction_consumes_its_nonce_and_cannot_be_included_again() {
    let mut n = Net::new();
    let withdraw = tx(1, 1, Action::Withdraw { asset: AssetId(0), amount: 5_000 * USD });
    let ev = n.apply(vec![withdraw.clone()]).unwrap();
    assert!(matches!(rejections(&ev)[..], [(0, Reject::InsufficientBalance { .. })]), "{ev:?}");
    assert_eq!(n.nonce(1), 1, "the rejection consumed the nonce");
    let balance = n.state.accounts.get(&AccountId(1)).unwrap().balances[0];
    assert_eq!(balance, 1_000 * USD, "and changed nothing else");
    // Including it again (a leader replaying it) refuses the block.
    n.refused(
        vec![withdraw],
        BlockError::Tx { index: 0, reason: TxError::NonceUsed { expected: 2, got: 1 } },
    );
    // A rejection by an unauthorised signer (a non-authority deposit) consumes its nonce too.
    let ev = n
        .apply(vec![tx(2, 1, Action::Deposit { to: AccountId(2), asset: AssetId(0), amount: USD })])
        .unwrap();
    assert!(matches!(rejections(&ev)[..], [(0, Reject::Unauthorized)]), "{ev:?}");
    assert_eq!(n.nonce(2), 1);
}

#[test]
fn a_fresh_account_may_sign_only_from_the_block_after_its_deposit() {
    let mut n = Net::new();
    // The authority credits a fresh account; a transaction from it in the same block is not
    // includable (the account does not exist at the start of the block).
    n.refused(
        vec![deposit(3, 7, 100), margin_mode(7, 1)],
        BlockError::Tx { index: 1, reason: TxError::UnknownSigner(AccountId(7)) },
    );
    assert!(n.state.accounts.get(&AccountId(7)).is_none());
    n.apply(vec![deposit(3, 7, 100)]).unwrap();
    assert_eq!(n.nonce(7), 0);
    let ev = n.apply(vec![margin_mode(7, 1)]).unwrap();
    assert_eq!(rejections(&ev), vec![]);
    assert_eq!(n.nonce(7), 1);
}

#[test]
fn the_last_nonce_is_usable_and_then_the_account_signs_no_more() {
    let mut n = Net::new();
    n.state.accounts.get_mut(&AccountId(1)).unwrap().nonce = u64::MAX - 2;
    n.refused(
        vec![margin_mode(1, u64::MAX - 1), margin_mode(1, u64::MAX), margin_mode(1, 0)],
        BlockError::Tx { index: 2, reason: TxError::NoncesExhausted(AccountId(1)) },
    );
    n.apply(vec![margin_mode(1, u64::MAX - 1), margin_mode(1, u64::MAX)]).unwrap();
    assert_eq!(n.nonce(1), u64::MAX);
    n.refused(
        vec![margin_mode(1, 1)],
        BlockError::Tx { index: 0, reason: TxError::NoncesExhausted(AccountId(1)) },
    );
}

#[test]
fn check_txs_agrees_with_apply_block_and_changes_nothing() {
    let n = Net::new();
    let root = n.state.state_root();
    assert_eq!(n.state.check_txs(&[margin_mode(1, 1), margin_mode(1, 2), margin_mode(2, 1)]), Ok(()));
    assert_eq!(
        n.state.check_txs(&[margin_mode(1, 1), margin_mode(1, 1)]),
        Err(BlockError::Tx { index: 1, reason: TxError::NonceUsed { expected: 2, got: 1 } })
    );
    assert_eq!(n.state.state_root(), root);
    // Accounts created since a slot, in creation order: the authority, then 1 and 2.
    let ids: Vec<AccountId> = n.state.accounts_from(1).map(|(id, _)| id).collect();
    assert_eq!(ids, vec![AccountId(1), AccountId(2)]);
    assert_eq!(n.state.accounts_from(3).count(), 0);
}
