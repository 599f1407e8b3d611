//! The bridge on Bastion's side: deposits credited only by 2/3 of stake's attestations and
//! once per source id, vouchers for withdrawals signed by 2/3 of stake, the authority's powers
//! on devnets only, and the insurance fund seeded at genesis and topped up by deposits.

// Test helpers as well as #[test] functions may panic: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::{
    BlockError, BridgeError, DEVNET_VALIDATOR_SEEDS, Genesis, State, sign_deposit, sign_voucher,
};
use bastion_types::*;
use proptest::prelude::*;

const USD: i128 = 1_000_000;
const SEEDS: [[u8; 32]; 4] = DEVNET_VALIDATOR_SEEDS;

struct Net {
    state: State,
    height: u64,
    time_ms: u64,
    nonces: std::collections::BTreeMap<u64, u64>,
}

impl Net {
    /// A production chain: no authority, not a devnet.
    fn production() -> Net {
        Net::with(Genesis { devnet: false, authority: None, ..Genesis::devnet() })
    }

    fn with(g: Genesis) -> Net {
        let state = State::from_genesis(&g).unwrap();
        Net { time_ms: g.timestamp_ms, state, height: 0, nonces: Default::default() }
    }

    fn next(&mut self) -> Block {
        let oracle = (0..4)
            .map(|v| {
                bastion_exchange::testkit::signed(
                    &self.state.chain_id,
                    v,
                    self.height + 1,
                    self.time_ms + 250,
                    vec![(UnderlyingId(0), 100_000 * USD as i64), (UnderlyingId(1), 4_000 * USD as i64)],
                )
            })
            .collect();
        Block { height: self.height + 1, timestamp_ms: self.time_ms + 250, oracle, ..Default::default() }
    }

    /// Applies `block`; `Ok` its events (invariants checked), `Err` the refusal (the state
    /// unchanged, checked).
    fn apply(&mut self, block: Block) -> Result<Vec<Event>, BlockError> {
        let root = self.state.state_root();
        match self.state.apply_block(&block) {
            Ok(out) => {
                self.height += 1;
                self.time_ms += 250;
                if let Err(v) = self.state.check_invariants() {
                    panic!("invariant violated at height {}: {v}", self.height);
                }
                Ok(out.events)
            }
            Err(e) => {
                assert_eq!(self.state.state_root(), root, "a refused block changed the state");
                Err(e)
            }
        }
    }

    fn tx(&mut self, signer: u64, action: Action) -> Tx {
        let n = self.nonces.entry(signer).or_insert(0);
        *n += 1;
        Tx { signer: AccountId(signer), nonce: *n, action }
    }

    fn quote(&self, a: u64) -> i128 {
        self.state.accounts.get(&AccountId(a)).map_or(0, |a| a.balances[0])
    }
}

fn dep(id: u8, to: u64, usd: i128) -> BridgeDeposit {
    BridgeDeposit { source_id: SourceId([id; 32]), to: AccountId(to), asset: AssetId(0), amount: usd * USD }
}

fn attested(chain: &str, d: &BridgeDeposit, signers: &[u16]) -> AttestedDeposit {
    AttestedDeposit {
        deposit: d.clone(),
        attestations: signers.iter().map(|i| sign_deposit(SEEDS[*i as usize], *i, chain, d)).collect(),
    }
}

fn refusal(r: Result<Vec<Event>, BlockError>) -> BridgeError {
    match r {
        Err(BlockError::Bridge { reason, .. }) => *reason,
        other => panic!("expected a bridge refusal, got {other:?}"),
    }
}

#[test]
fn a_deposit_needs_two_thirds_of_stake_and_is_credited_once_for_ever() {
    let mut n = Net::production();
    let chain = n.state.chain_id.clone();
    let d = dep(1, 7, 1_000);
    // Half the stake: refused, whatever the leader wants.
    let mut b = n.next();
    b.deposits = vec![attested(&chain, &d, &[0, 1])];
    let e = refusal(n.apply(b));
    assert!(e.to_string().contains("at least 2/3"), "{e}");
    assert_eq!(n.quote(7), 0);
    // One signature forged (validator 2's index, validator 3's key): refused.
    let mut forged = attested(&chain, &d, &[0, 1]);
    forged
        .attestations
        .push(Approval { validator: ValidatorIndex(2), ..sign_deposit(SEEDS[3], 3, &chain, &d) });
    let mut b = n.next();
    b.deposits = vec![forged];
    assert!(refusal(n.apply(b)).to_string().contains("does not verify"));
    // Signed for another chain: refused.
    let mut b = n.next();
    b.deposits = vec![attested("another-chain", &d, &[0, 1, 2])];
    assert!(matches!(refusal(n.apply(b)), BridgeError::Signatures { .. }));
    // One validator twice does not make two: refused.
    let mut twice = attested(&chain, &d, &[0, 1]);
    twice.attestations.push(twice.attestations[1].clone());
    let mut b = n.next();
    b.deposits = vec![twice];
    assert!(refusal(n.apply(b)).to_string().contains("signs twice"));
    // Three of four (3/4 of stake): credited.
    let mut b = n.next();
    b.deposits = vec![attested(&chain, &d, &[0, 2, 3])];
    let ev = n.apply(b).unwrap();
    assert!(ev.contains(&Event::BridgeCredited {
        source_id: d.source_id,
        account: AccountId(7),
        asset: AssetId(0),
        amount: 1_000 * USD
    }));
    assert_eq!(n.quote(7), 1_000 * USD);
    assert_eq!(n.state.credited(&d.source_id).map(|c| c.height), Some(n.height));
    // Attested again, by others, in a later block: refused, never credited twice.
    let mut b = n.next();
    b.deposits = vec![attested(&chain, &d, &[0, 1, 2, 3])];
    assert!(matches!(refusal(n.apply(b)), BridgeError::AlreadyCredited { .. }));
    // Twice in one block: refused.
    let d2 = dep(2, 7, 5);
    let mut b = n.next();
    b.deposits = vec![attested(&chain, &d2, &[0, 1, 2]), attested(&chain, &d2, &[1, 2, 3])];
    assert!(matches!(refusal(n.apply(b)), BridgeError::Repeated(_)));
    // The leader's selection drops what a block may not carry.
    let candidates = vec![
        attested(&chain, &d, &[0, 1, 2]),
        attested(&chain, &d2, &[0, 1]),
        attested(&chain, &d2, &[1, 2, 3]),
        attested(&chain, &d2, &[0, 1, 2]),
    ];
    let chosen = n.state.admissible_deposits(&candidates);
    assert_eq!(chosen, vec![candidates[2].clone()]);
    assert_eq!(n.quote(7), 1_000 * USD);
}

#[test]
fn the_credited_set_survives_a_snapshot_so_a_resynced_node_credits_nothing_twice() {
    let mut n = Net::production();
    let chain = n.state.chain_id.clone();
    let d = dep(9, 11, 250);
    let mut b = n.next();
    b.deposits = vec![attested(&chain, &d, &[0, 1, 2])];
    n.apply(b).unwrap();
    let image = n.state.to_image_bytes().unwrap();
    let restored = State::from_image_bytes(&image).unwrap();
    assert_eq!(restored.state_root(), n.state.state_root());
    assert_eq!(restored.credited(&d.source_id), n.state.credited(&d.source_id));
    assert_eq!(restored.recompute_root(), n.state.state_root(), "the credited set is committed");
    n.state = restored;
    let mut b = n.next();
    b.deposits = vec![attested(&chain, &d, &[1, 2, 3])];
    assert!(matches!(refusal(n.apply(b)), BridgeError::AlreadyCredited { .. }));
    assert_eq!(n.quote(11), 250 * USD);
}

#[test]
fn a_withdrawal_creates_a_voucher_that_two_thirds_of_stake_sign_once() {
    let mut n = Net::production();
    let chain = n.state.chain_id.clone();
    let mut b = n.next();
    b.deposits = vec![attested(&chain, &dep(1, 5, 1_000), &[0, 1, 2])];
    n.apply(b).unwrap();
    let w = n.tx(5, Action::Withdraw { asset: AssetId(0), amount: 400 * USD });
    let mut b = n.next();
    b.txs = vec![w];
    let ev = n.apply(b).unwrap();
    assert!(ev.contains(&Event::Withdrew {
        account: AccountId(5),
        asset: AssetId(0),
        amount: 400 * USD,
        voucher: 1
    }));
    let v = n.state.voucher(1).unwrap().voucher.clone();
    assert_eq!((v.account, v.amount, v.height), (AccountId(5), 400 * USD, n.height));
    assert!(!n.state.voucher(1).unwrap().signed());
    assert_eq!(n.quote(5), 600 * USD);
    let sigs = |signers: &[u16]| VoucherSignatures {
        id: 1,
        approvals: signers.iter().map(|i| sign_voucher(SEEDS[*i as usize], *i, &chain, &v)).collect(),
    };
    let mut b = n.next();
    b.vouchers = vec![sigs(&[0, 1])];
    assert!(refusal(n.apply(b)).to_string().contains("at least 2/3"));
    let mut b = n.next();
    b.vouchers = vec![VoucherSignatures { id: 2, ..sigs(&[0, 1, 2]) }];
    assert!(matches!(refusal(n.apply(b)), BridgeError::UnknownVoucher(2)));
    let mut b = n.next();
    b.vouchers = vec![sigs(&[1, 2, 3])];
    let ev = n.apply(b).unwrap();
    assert!(ev.contains(&Event::VoucherSigned { voucher: 1 }));
    assert!(n.state.voucher(1).unwrap().signed());
    let mut b = n.next();
    b.vouchers = vec![sigs(&[0, 1, 2])];
    assert!(matches!(refusal(n.apply(b)), BridgeError::VoucherSigned(1)));
    // A withdrawal that would break initial margin is refused and creates no voucher.
    let w = n.tx(5, Action::Withdraw { asset: AssetId(0), amount: 601 * USD });
    let mut b = n.next();
    b.txs = vec![w];
    let ev = n.apply(b).unwrap();
    assert!(
        ev.iter().any(|e| matches!(e, Event::Rejected { reason: Reject::InsufficientBalance { .. }, .. })),
        "{ev:?}"
    );
    assert_eq!(n.state.last_voucher(), 1);
}

#[test]
fn a_production_genesis_with_an_authority_is_refused_and_without_one_no_key_mints() {
    let e = State::from_genesis(&Genesis { devnet: false, ..Genesis::devnet() }).unwrap_err();
    assert!(e.to_string().contains("no single key may mint"), "{e}");
    let mut n = Net::production();
    let chain = n.state.chain_id.clone();
    let mut b = n.next();
    b.deposits = vec![attested(&chain, &dep(1, 0, 10), &[0, 1, 2])];
    n.apply(b).unwrap();
    // Account 0 was the devnet authority; here it is an ordinary account.
    let txs = vec![
        n.tx(0, Action::Deposit { to: AccountId(0), asset: AssetId(0), amount: USD }),
        n.tx(0, Action::UpdateParams(ParamUpdate::Haircut { asset: AssetId(1), haircut_ppm: 1_000_000 })),
    ];
    let mut b = n.next();
    b.txs = txs;
    let ev = n.apply(b).unwrap();
    let rejected: Vec<&Reject> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Rejected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, vec![&Reject::Unauthorized, &Reject::Unauthorized]);
    assert_eq!(n.quote(0), 10 * USD);
    // On a devnet the authority still mints (the default `bastion devnet` keeps it for the
    // faucet), but a devnet chain spec says so.
    let mut d = Net::with(Genesis::devnet());
    let t = d.tx(0, Action::Deposit { to: AccountId(3), asset: AssetId(0), amount: USD });
    let mut b = d.next();
    b.txs = vec![t];
    d.apply(b).unwrap();
    assert_eq!(d.quote(3), USD);
}

#[test]
fn the_insurance_fund_is_seeded_at_genesis_and_topped_up_by_deposits() {
    let mut n = Net::production();
    let chain = n.state.chain_id.clone();
    let seed = bastion_exchange::DEVNET_INSURANCE_FUND;
    assert!(seed > 0);
    assert_eq!(n.state.insurance_fund(), seed);
    let d = BridgeDeposit { to: INSURANCE_FUND_ACCOUNT, ..dep(3, 0, 5_000) };
    let mut b = n.next();
    b.deposits = vec![attested(&chain, &d, &[0, 1, 3])];
    let ev = n.apply(b).unwrap();
    assert!(ev.contains(&Event::InsuranceToppedUp { amount: 5_000 * USD }));
    assert_eq!(n.state.insurance_fund(), seed + 5_000 * USD);
    assert!(!n.state.accounts.contains_key(&INSURANCE_FUND_ACCOUNT), "the fund is not an account");
    assert!(State::from_genesis(&Genesis { insurance_fund: -1, ..Genesis::devnet() }).is_err());
}

proptest! {
    /// Whatever subset of validators attests, a deposit is credited exactly when the subset
    /// weighs 2/3 of stake (unequal stakes), and never twice however often it is offered.
    #[test]
    fn credited_exactly_with_two_thirds_and_at_most_once(
        stakes in prop::collection::vec(1u64..1_000, 4),
        subsets in prop::collection::vec(prop::collection::btree_set(0u16..4, 0..=4), 1..6),
    ) {
        let g = Genesis { devnet: false, authority: None, validator_stakes: stakes.clone(), ..Genesis::devnet() };
        let mut n = Net::with(g);
        let chain = n.state.chain_id.clone();
        let d = dep(4, 8, 100);
        let total: u64 = stakes.iter().sum();
        let mut credited = false;
        for s in subsets {
            let signers: Vec<u16> = s.into_iter().collect();
            let weight: u64 = signers.iter().map(|i| stakes[*i as usize]).sum();
            let mut b = n.next();
            b.deposits = vec![attested(&chain, &d, &signers)];
            let r = n.apply(b);
            let quorum = weight > 0 && u128::from(weight) * 3 >= u128::from(total) * 2;
            prop_assert_eq!(r.is_ok(), quorum && !credited, "weight {} of {}", weight, total);
            credited |= r.is_ok();
            prop_assert_eq!(n.quote(8), if credited { 100 * USD } else { 0 });
        }
    }
}

#[test]
fn one_bad_signature_among_many_is_found_and_named_and_the_leader_leaves_it_out() {
    let mut n = Net::production();
    let chain = n.state.chain_id.clone();
    let good: Vec<AttestedDeposit> =
        (10..14).map(|i| attested(&chain, &dep(i, 20 + u64::from(i), 5), &[0, 1, 2])).collect();
    let mut bad = attested(&chain, &dep(20, 40, 5), &[1, 2, 3]);
    // Validator 2's slot signed by validator 3's key: well formed, invalid.
    bad.attestations[1].signature = sign_deposit(SEEDS[3], 3, &chain, &bad.deposit).signature;
    let mut all = good.clone();
    all.insert(2, bad.clone());
    let mut b = n.next();
    b.deposits = all.clone();
    match n.apply(b) {
        Err(BlockError::Bridge { index, reason }) => {
            assert_eq!(index, 2, "the forged item is named");
            assert!(reason.to_string().contains("validator 2's signature does not verify"), "{reason}");
        }
        other => panic!("a block with a forged attestation was not refused: {other:?}"),
    }
    // The leader's selection (one batch for all, then one by one) keeps the four good ones.
    let chosen = n.state.admissible_deposits(&all);
    assert_eq!(chosen, good);
    let mut b = n.next();
    b.deposits = chosen;
    n.apply(b).unwrap();
    assert_eq!(n.state.credited_count(), 4);
}

#[test]
fn gossip_checks_a_peers_attestations_in_one_batch_and_names_a_bad_one() {
    let n = Net::production();
    let chain = n.state.chain_id.clone();
    let deps: Vec<BridgeDeposit> = (30..40).map(|i| dep(i, 9, 1)).collect();
    let sigs: Vec<Approval> = deps.iter().map(|d| sign_deposit(SEEDS[1], 1, &chain, d)).collect();
    let items: Vec<(&BridgeDeposit, &Approval)> = deps.iter().zip(&sigs).collect();
    assert_eq!(n.state.attestations_verify(&items), Ok(()));
    assert_eq!(n.state.attestations_verify(&[]), Ok(()));
    let mut forged = sigs.clone();
    forged[6] = sign_deposit(SEEDS[1], 1, &chain, &deps[5]);
    let items: Vec<(&BridgeDeposit, &Approval)> = deps.iter().zip(&forged).collect();
    assert_eq!(n.state.attestations_verify(&items), Err(6));
    let unknown = Approval { validator: ValidatorIndex(9), ..sigs[0].clone() };
    assert_eq!(n.state.attestations_verify(&[(&deps[0], &unknown)]), Err(0));
}
