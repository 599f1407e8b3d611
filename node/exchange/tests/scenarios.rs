//! Hand-built scenarios with known outcomes: matching and margin, rejections, liquidation with
//! the insurance fund, auto-deleveraging, option expiry, oracle guards, governance.

// Test helpers as well as #[test] functions may panic: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::{Genesis, State};
use bastion_types::*;

const USD: i128 = 1_000_000;
const BTC_PERP: MarketId = MarketId(0);
/// BTC-100000-C in the devnet genesis.
const BTC_100K_CALL: MarketId = MarketId(4);
/// BTC-110000-C in the devnet genesis.
const BTC_110K_CALL: MarketId = MarketId(6);

struct Net {
    state: State,
    height: u64,
    time_ms: u64,
    nonces: std::collections::BTreeMap<u64, u64>,
    prices: Vec<i64>,
    voters: Vec<u16>,
}

impl Net {
    fn new() -> Net {
        Net::with_genesis(Genesis::devnet())
    }

    fn with_genesis(g: Genesis) -> Net {
        let state = State::from_genesis(&g).unwrap();
        Net {
            state,
            height: 0,
            time_ms: g.timestamp_ms,
            nonces: Default::default(),
            prices: vec![100_000 * 1_000_000, 4_000 * 1_000_000],
            voters: vec![0, 1, 2, 3],
        }
    }

    fn tx(&mut self, signer: u64, action: Action) -> Tx {
        let n = self.nonces.entry(signer).or_insert(0);
        *n += 1;
        Tx { signer: AccountId(signer), nonce: *n, action }
    }

    fn block_raw(&mut self, txs: Vec<Tx>, proposals: Vec<GovernanceProposal>, dt_ms: u64) -> Vec<Event> {
        self.height += 1;
        self.time_ms += dt_ms;
        let prices: Vec<(UnderlyingId, i64)> =
            self.prices.iter().enumerate().map(|(u, p)| (UnderlyingId(u as u16), *p)).collect();
        let oracle = self
            .voters
            .iter()
            .map(|v| {
                bastion_exchange::testkit::signed(
                    &self.state.chain_id,
                    *v,
                    self.height,
                    self.time_ms,
                    prices.clone(),
                )
            })
            .collect();
        let block = Block {
            height: self.height,
            timestamp_ms: self.time_ms,
            oracle,
            txs,
            proposals,
            ..Default::default()
        };
        let out = self.state.apply_block(&block).unwrap();
        if let Err(v) = self.state.check_invariants() {
            panic!("invariant violated at height {}: {v}\nevents: {:#?}", self.height, out.events);
        }
        out.events
    }

    fn block(&mut self, actions: Vec<(u64, Action)>) -> Vec<Event> {
        let txs = actions.into_iter().map(|(s, a)| self.tx(s, a)).collect();
        self.block_raw(txs, Vec::new(), 250)
    }

    fn deposit(&mut self, to: u64, usd: i128) {
        let ev = self
            .block(vec![(0, Action::Deposit { to: AccountId(to), asset: AssetId(0), amount: usd * USD })]);
        assert!(rejections(&ev).is_empty(), "{ev:?}");
    }

    fn size(&self, acct: u64, market: MarketId) -> i64 {
        self.state
            .accounts
            .get(&AccountId(acct))
            .and_then(|a| a.position(market))
            .map(|p| p.size)
            .unwrap_or(0)
    }

    fn quote(&self, acct: u64) -> i128 {
        self.state.accounts.get(&AccountId(acct)).unwrap().balances[0]
    }
}

fn order(market: MarketId, side: Side, price: Option<Ticks>, qty: Lots, tif: TimeInForce) -> Action {
    Action::Place(OrderRequest {
        market,
        side,
        price,
        qty,
        tif,
        reduce_only: false,
        good_til_height: None,
        stp: SelfTradePrevention::CancelResting,
    })
}

fn rejections(ev: &[Event]) -> Vec<Reject> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn count(ev: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    ev.iter().filter(|e| f(e)).count()
}

/// $100,000 in BTC-PERP ticks ($0.10).
const P100K: Ticks = 1_000_000;

#[test]
fn a_trade_moves_cash_and_positions_exactly() {
    let mut n = Net::new();
    n.deposit(1, 10_000);
    n.deposit(2, 10_000);
    // 1 sells 0.1 BTC (100 lots) at $100,000; 2 buys it at market.
    let ev = n.block(vec![
        (1, order(BTC_PERP, Side::Sell, Some(P100K), 100, TimeInForce::Gtc)),
        (2, order(BTC_PERP, Side::Buy, None, 100, TimeInForce::Ioc)),
    ]);
    assert_eq!(rejections(&ev), vec![]);
    assert_eq!(count(&ev, |e| matches!(e, Event::Fill { qty: 100, price: P100K, .. })), 1);
    assert_eq!(n.size(1, BTC_PERP), -100);
    assert_eq!(n.size(2, BTC_PERP), 100);
    assert_eq!(n.state.markets[&BTC_PERP].open_interest, 100);
    // Notional $10,000: the buyer pays it plus 3.5 bp taker fee ($3.50); the seller receives
    // it less the 1 bp maker fee ($1.00).
    assert_eq!(n.quote(2), 10_000 * USD - 10_000 * USD - 3_500_000);
    assert_eq!(n.quote(1), 10_000 * USD + 10_000 * USD - 1_000_000);
    assert_eq!(n.state.fees, 4_500_000);
}

#[test]
fn rejected_transactions_change_nothing_but_the_nonce() {
    let mut n = Net::new();
    n.deposit(1, 1_000);
    n.deposit(2, 1_000);
    n.block(vec![(2, order(BTC_PERP, Side::Sell, Some(P100K + 10), 5, TimeInForce::Gtc))]);
    let before = n.state.accounts.get(&AccountId(1)).unwrap().clone();
    let book_before: Vec<_> = n.state.markets[&BTC_PERP].book.orders().cloned().collect();
    let ev = n.block(vec![
        (1, order(MarketId(999), Side::Buy, Some(P100K), 1, TimeInForce::Gtc)),
        (1, order(BTC_PERP, Side::Buy, Some(P100K), 0, TimeInForce::Gtc)),
        (1, order(BTC_PERP, Side::Buy, Some(P100K * 2), 1, TimeInForce::Gtc)),
        (1, order(BTC_PERP, Side::Buy, Some(P100K + 10), 1, TimeInForce::PostOnly)),
        (1, order(BTC_PERP, Side::Buy, Some(P100K + 10), 50, TimeInForce::Fok)),
        (1, order(BTC_PERP, Side::Buy, Some(P100K), 1_000, TimeInForce::Gtc)),
        (
            1,
            Action::Place(OrderRequest {
                market: BTC_PERP,
                side: Side::Sell,
                price: None,
                qty: 1,
                tif: TimeInForce::Ioc,
                reduce_only: true,
                good_til_height: None,
                stp: SelfTradePrevention::CancelResting,
            }),
        ),
        (1, Action::Withdraw { asset: AssetId(0), amount: 2_000 * USD }),
        (1, Action::Deposit { to: AccountId(1), asset: AssetId(0), amount: USD }),
        (1, Action::Cancel { market: BTC_PERP, order: OrderId(1) }),
    ]);
    let r = rejections(&ev);
    assert_eq!(r.len(), 10, "{r:?}");
    assert!(matches!(r[0], Reject::UnknownMarket(_)));
    assert!(matches!(r[1], Reject::BadQuantity(0)));
    assert!(matches!(r[2], Reject::PriceBand { .. }));
    assert!(matches!(r[3], Reject::PostOnlyWouldTake));
    assert!(matches!(r[4], Reject::FokUnfillable));
    assert!(matches!(r[5], Reject::InitialMargin { .. }), "1,000 lots = $100k on $1k collateral: {:?}", r[5]);
    assert!(matches!(r[6], Reject::ReduceOnly));
    assert!(matches!(r[7], Reject::InsufficientBalance { .. }));
    assert!(matches!(r[8], Reject::Unauthorized));
    assert!(matches!(r[9], Reject::NotOwner(_) | Reject::UnknownOrder(_)));
    let after = &n.state.accounts.get(&AccountId(1)).unwrap();
    assert_eq!(after.balances, before.balances);
    assert_eq!(after.positions, before.positions);
    assert_eq!(after.nonce, before.nonce + 10);
    let book_after: Vec<_> = n.state.markets[&BTC_PERP].book.orders().cloned().collect();
    assert_eq!(book_after.len(), book_before.len());
    // A replayed nonce is not includable: the whole block is refused (tests/nonces.rs).
    let replay = Block {
        height: n.height + 1,
        timestamp_ms: n.time_ms + 250,
        oracle: Vec::new(),
        txs: vec![Tx { signer: AccountId(1), nonce: 3, action: Action::SetMarginMode { portfolio: true } }],
        ..Default::default()
    };
    assert!(matches!(
        n.state.apply_block(&replay),
        Err(bastion_exchange::BlockError::Tx {
            index: 0,
            reason: bastion_exchange::TxError::NonceUsed { .. }
        })
    ));
}

#[test]
fn withdrawals_only_while_initial_margin_holds() {
    let mut n = Net::new();
    n.deposit(1, 10_000);
    n.deposit(2, 10_000);
    n.block(vec![
        (1, order(BTC_PERP, Side::Sell, Some(P100K), 500, TimeInForce::Gtc)),
        (2, order(BTC_PERP, Side::Buy, None, 500, TimeInForce::Ioc)),
    ]);
    // 2 is long $50,000 with ~$10,000 equity; IM 2.5% = $1,250. Withdrawing $9,000 leaves
    // ~$982 < IM: rejected. $8,000 leaves ~$1,982: accepted.
    let ev = n.block(vec![(2, Action::Withdraw { asset: AssetId(0), amount: 9_000 * USD })]);
    assert!(matches!(rejections(&ev)[..], [Reject::InitialMargin { .. }]), "{ev:?}");
    assert_eq!(n.state.last_voucher(), 0, "a refused withdrawal creates no voucher");
    let ev = n.block(vec![(2, Action::Withdraw { asset: AssetId(0), amount: 8_000 * USD })]);
    assert_eq!(rejections(&ev), vec![]);
    // The accepted one is a voucher for the source chain, not yet signed.
    let v = n.state.voucher(1).expect("voucher 1");
    assert_eq!((v.voucher.account, v.voucher.amount, v.signed()), (AccountId(2), 8_000 * USD, false));
    let h = n.state.account_health(AccountId(2)).unwrap();
    assert!(h.initial_ok(), "{h:?}");
}

#[test]
fn a_crash_liquidates_against_the_book_and_the_fund_takes_its_fee() {
    let mut n = Net::new();
    n.deposit(1, 1_000_000); // market maker
    n.deposit(2, 3_000); // leveraged long
    n.deposit(3, 1_000_000); // short counterparty
    n.block(vec![
        (3, order(BTC_PERP, Side::Sell, Some(P100K), 1_000, TimeInForce::Gtc)),
        (2, order(BTC_PERP, Side::Buy, None, 1_000, TimeInForce::Ioc)),
    ]);
    assert_eq!(n.size(2, BTC_PERP), 1_000); // 1 BTC long on $3,000: 33x
    // The market maker bids all the way down.
    let bids: Vec<_> = (1..=40)
        .map(|i| (1, order(BTC_PERP, Side::Buy, Some(P100K - i * 2_500), 200, TimeInForce::Gtc)))
        .collect();
    n.block(bids);
    // Index falls 2% (TNC ~ $1,000 < MM $1,225 at 1.25%).
    n.prices[0] = 98_000 * 1_000_000;
    let ev = n.block(vec![]);
    let liq: Vec<_> = ev.iter().filter(|e| matches!(e, Event::Liquidated { .. })).collect();
    assert!(!liq.is_empty(), "expected a liquidation: {ev:?}");
    assert!(n.size(2, BTC_PERP) < 1_000, "partially closed");
    assert!(n.state.insurance_fund() > 0, "the fund takes a fee from the surplus");
    // The account ends healthier or flat; never negative.
    let h = n.state.account_health(AccountId(2)).unwrap();
    assert!(h.collateral >= 0);
}

#[test]
fn without_liquidity_or_fund_a_bankrupt_position_is_deleveraged_at_the_bankruptcy_price() {
    let mut n = Net::with_genesis(Genesis { insurance_fund: 0, ..Genesis::devnet() });
    n.deposit(2, 3_000);
    n.deposit(3, 1_000_000);
    n.deposit(4, 1_000_000);
    n.block(vec![
        (3, order(BTC_PERP, Side::Sell, Some(P100K), 600, TimeInForce::Gtc)),
        (4, order(BTC_PERP, Side::Sell, Some(P100K + 1), 400, TimeInForce::Gtc)),
        (2, order(BTC_PERP, Side::Buy, None, 1_000, TimeInForce::Ioc)),
    ]);
    assert_eq!(n.size(2, BTC_PERP), 1_000);
    assert_eq!(n.state.insurance_fund(), 0);
    // Index falls 10% in two steps of 5% (the max move): the long is bankrupt, the book is
    // empty on the bid side, and the fund is empty: deleverage the shorts.
    n.prices[0] = 95_000 * 1_000_000;
    n.block(vec![]);
    n.prices[0] = 90_000 * 1_000_000;
    let ev = n.block(vec![]);
    let adl: Vec<_> = n_events(&ev, |e| matches!(e, Event::Deleveraged { .. }));
    let earlier = adl.len();
    assert!(earlier > 0 || n.size(2, BTC_PERP) == 0, "deleveraging expected: {ev:?}");
    assert_eq!(n.size(2, BTC_PERP), 0);
    // Both shorts were reduced; open interest is what they still hold.
    assert_eq!(n.size(3, BTC_PERP) + n.size(4, BTC_PERP), -n.state.markets[&BTC_PERP].open_interest);
    let h = n.state.account_health(AccountId(2)).unwrap();
    assert!(h.collateral >= 0, "no negative account survives: {h:?}");
}

fn n_events(ev: &[Event], f: impl Fn(&Event) -> bool) -> Vec<Event> {
    ev.iter().filter(|e| f(e)).cloned().collect()
}

#[test]
fn options_cash_settle_at_expiry_against_the_index() {
    let mut n = Net::new();
    n.deposit(1, 100_000);
    n.deposit(2, 100_000);
    let mark = n.state.markets[&BTC_100K_CALL].mark;
    assert!(mark > 0, "the call is marked by the model");
    let tick = n.state.markets[&BTC_100K_CALL].spec.tick_size;
    let px = mark / tick;
    // 2 buys 10 lots (0.1 BTC) of the 100k call from 1.
    let ev = n.block(vec![
        (1, order(BTC_100K_CALL, Side::Sell, Some(px), 10, TimeInForce::Gtc)),
        (2, order(BTC_100K_CALL, Side::Buy, Some(px), 10, TimeInForce::Ioc)),
    ]);
    assert_eq!(rejections(&ev), vec![]);
    assert_eq!(n.size(2, BTC_100K_CALL), 10);
    let q1 = n.quote(1);
    let q2 = n.quote(2);
    // Move time past expiry (30 days) with the index at $110,000, in 5% steps.
    for p in [104_000, 108_000, 110_000] {
        n.prices[0] = p * 1_000_000;
        n.block(vec![]);
    }
    let ev = n.block_raw(vec![], vec![], 31 * 24 * 3_600_000);
    assert!(ev.iter().any(|e| matches!(e, Event::OptionSettled { market, settlement_price } if *market == BTC_100K_CALL && *settlement_price == 110_000 * 1_000_000)), "{ev:?}");
    assert_eq!(n.size(2, BTC_100K_CALL), 0);
    // Intrinsic $10,000 per BTC on 0.1 BTC = $1,000, from the seller to the buyer.
    assert_eq!(n.quote(2) - q2, 1_000 * USD);
    assert_eq!(q1 - n.quote(1), 1_000 * USD);
    assert_eq!(n.state.markets[&BTC_100K_CALL].status, MarketStatus::Settled);
}

#[test]
fn oracle_needs_two_thirds_of_stake_and_guards_moves() {
    let mut n = Net::new();
    n.block(vec![]);
    let idx = |n: &Net| n.state.underlyings[0].index;
    assert_eq!(idx(&n), 100_000 * 1_000_000);
    // Only half the stake reports: while the others' stored observations are fresh they
    // still count (at the old price: the lower median of 100k, 100k, 101k, 101k is 100k) ...
    n.voters = vec![0, 1];
    n.prices[0] = 101_000 * 1_000_000;
    let ev = n.block(vec![]);
    assert!(!ev.iter().any(|e| matches!(e, Event::OracleMissing { .. })), "{ev:?}");
    assert_eq!(idx(&n), 100_000 * 1_000_000);
    // ... and once they are older than observation_max_age_ms, half the stake is no quorum:
    // the index keeps its value.
    let ev = n.block_raw(vec![], vec![], 3_500);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::OracleMissing { underlying: UnderlyingId(0), stake_ppm: 500_000 }))
    );
    assert_eq!(idx(&n), 100_000 * 1_000_000);
    // Three of four: accepted.
    n.voters = vec![0, 1, 2];
    n.block(vec![]);
    assert_eq!(idx(&n), 101_000 * 1_000_000);
    // A 40% jump is clamped to 5% and halts the market (divergence beyond 25%).
    n.prices[0] = 141_400 * 1_000_000;
    let ev = n.block(vec![]);
    assert_eq!(idx(&n), 101_000 * 1_000_000 + 5_050 * 1_000_000);
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::Status { market, status: MarketStatus::Halted } if *market == BTC_PERP)
        )
    );
    // Orders are refused while halted.
    n.deposit(1, 1_000);
    let ev = n.block(vec![(1, order(BTC_PERP, Side::Buy, Some(P100K), 1, TimeInForce::Gtc))]);
    assert!(matches!(rejections(&ev)[..], [Reject::MarketClosed(MarketStatus::Halted)]), "{ev:?}");
    // Prices come back within range: the breaker lifts.
    n.prices[0] = 106_000 * 1_000_000;
    let ev = n.block(vec![]);
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::Status { market, status: MarketStatus::Active } if *market == BTC_PERP)
        ),
        "{ev:?}"
    );
    // No votes for longer than the staleness bound: reduce-only.
    n.voters = vec![];
    let ev = n.block_raw(vec![], vec![], 11_000);
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::Status { market, status: MarketStatus::ReduceOnly } if *market == BTC_PERP)
        ),
        "{ev:?}"
    );
}

/// Secret seeds of the four test validators' identity keys: the devnet's, which the oracle
/// observations of every test block are signed with.
const VALIDATOR_SEEDS: [[u8; 32]; 4] = bastion_exchange::DEVNET_VALIDATOR_SEEDS;

/// A proposal with the next governance nonce, valid around the next height, approved by
/// `signers` (their real signatures).
fn proposal(n: &Net, update: ParamUpdate, signers: &[u16]) -> GovernanceProposal {
    let mut p = GovernanceProposal {
        update,
        nonce: n.state.governance_nonce + 1,
        valid_from: n.height + 1,
        valid_until: n.height + 10,
        approvals: vec![],
    };
    p.approvals = signers
        .iter()
        .map(|i| bastion_exchange::sign_approval(VALIDATOR_SEEDS[*i as usize], *i, &n.state.chain_id, &p))
        .collect();
    p
}

/// Applies a block carrying `proposals` and expects it refused whole, with the state unchanged.
fn refused(n: &mut Net, proposals: Vec<GovernanceProposal>, why: &str) {
    let root = n.state.state_root();
    let block = Block {
        height: n.height + 1,
        timestamp_ms: n.time_ms + 250,
        oracle: vec![],
        txs: vec![],
        proposals,
        ..Default::default()
    };
    match n.state.apply_block(&block) {
        Err(bastion_exchange::BlockError::Governance { reason, .. }) => {
            assert!(reason.contains(why), "refused for {reason:?}, expected {why:?}")
        }
        other => panic!("a block with a bad proposal ({why}) was not refused: {other:?}"),
    }
    assert_eq!(n.state.state_root(), root, "a refused block changed the state");
}

#[test]
fn governance_needs_two_thirds_of_signed_stake_and_applies_at_the_next_block() {
    let mut n = Net::with_genesis(Genesis::devnet().with_validator_seeds(&VALIDATOR_SEEDS));
    n.deposit(1, 10_000);
    let halt = ParamUpdate::Status { market: BTC_PERP, status: MarketStatus::Halted };

    // A Byzantine leader's tricks, each refusing the whole block: bare indices with forged
    // (zero) signatures, signatures of too little stake, a signer counted twice, a signature
    // for another chain, for another change, or outside the window.
    let mut forged = proposal(&n, halt.clone(), &[]);
    forged.approvals =
        (0..4).map(|i| Approval { validator: ValidatorIndex(i), signature: [0; 64] }).collect();
    refused(&mut n, vec![forged], "does not verify");
    let weak = proposal(&n, halt.clone(), &[0, 1]);
    refused(&mut n, vec![weak], "at least 2/3");
    let mut twice = proposal(&n, halt.clone(), &[0, 1]);
    twice.approvals.push(twice.approvals[1].clone());
    refused(&mut n, vec![twice], "signs twice");
    let mut other_chain = proposal(&n, halt.clone(), &[]);
    other_chain.approvals = (0..3u16)
        .map(|i| {
            bastion_exchange::sign_approval(VALIDATOR_SEEDS[i as usize], i, "another-chain", &other_chain)
        })
        .collect();
    refused(&mut n, vec![other_chain], "does not verify");
    let mut swapped = proposal(&n, halt.clone(), &[0, 1, 2]);
    swapped.update = ParamUpdate::Haircut { asset: AssetId(1), haircut_ppm: 1_000_000 };
    refused(&mut n, vec![swapped], "does not verify");
    let mut late = proposal(&n, halt.clone(), &[]);
    (late.valid_from, late.valid_until) = (1, n.height);
    late.approvals = (0..3u16)
        .map(|i| bastion_exchange::sign_approval(VALIDATOR_SEEDS[i as usize], i, &n.state.chain_id, &late))
        .collect();
    refused(&mut n, vec![late], "outside the proposal's window");
    let mut skipped = proposal(&n, halt.clone(), &[]);
    skipped.nonce += 1;
    skipped.approvals = (0..3u16)
        .map(|i| bastion_exchange::sign_approval(VALIDATOR_SEEDS[i as usize], i, &n.state.chain_id, &skipped))
        .collect();
    refused(&mut n, vec![skipped], "nonce");
    assert_eq!(n.state.markets[&BTC_PERP].status, MarketStatus::Active);

    // Three of four equal stakes sign: accepted, effective from the next block.
    let strong = proposal(&n, halt, &[0, 2, 3]);
    let tx = n.tx(1, order(BTC_PERP, Side::Buy, Some(P100K - 100), 1, TimeInForce::Gtc));
    let ev = n.block_raw(vec![tx], vec![strong.clone()], 250);
    // Same block: still active, the order rests.
    assert_eq!(rejections(&ev), vec![]);
    assert_eq!(n.state.governance_nonce, 1);
    let ev = n.block(vec![(1, order(BTC_PERP, Side::Buy, Some(P100K - 100), 1, TimeInForce::Gtc))]);
    assert!(ev.iter().any(|e| matches!(e, Event::ParamsApplied { .. })));
    assert!(matches!(rejections(&ev)[..], [Reject::MarketClosed(MarketStatus::Halted)]));
    // The same signed proposal cannot be replayed: its nonce is used.
    refused(&mut n, vec![strong], "nonce");

    // The authority tightens collateral on this devnet: BTC haircut to 50%, effective next block.
    let ev = n.block(vec![(
        0,
        Action::UpdateParams(ParamUpdate::Haircut { asset: AssetId(1), haircut_ppm: 500_000 }),
    )]);
    assert_eq!(rejections(&ev), vec![]);
    n.block(vec![]);
    assert_eq!(n.state.assets[1].spec.haircut_ppm, 500_000);
    // Others may not.
    let ev =
        n.block(vec![(1, Action::UpdateParams(ParamUpdate::Haircut { asset: AssetId(1), haircut_ppm: 0 }))]);
    assert!(matches!(rejections(&ev)[..], [Reject::Unauthorized]));
}

#[test]
fn without_validator_keys_no_approval_counts() {
    // A genesis that lists no validator keys: governance cannot pass (and no observation
    // could count either, so the test blocks carry none).
    let mut g = Genesis::devnet();
    g.validator_keys.clear();
    let mut n = Net::with_genesis(g);
    n.voters.clear();
    let halt = ParamUpdate::Status { market: BTC_PERP, status: MarketStatus::Halted };
    let p = proposal(&n, halt, &[0, 1, 2, 3]);
    refused(&mut n, vec![p], "no identity key");
}

#[test]
fn parameter_updates_out_of_bounds_are_refused() {
    let mut n = Net::new();
    let s = &n.state;
    let mut liq = s.liquidation;
    liq.funding_interval_ms = 0;
    let mut liq_long = s.liquidation;
    liq_long.funding_interval_ms = 365 * 86_400_000;
    let mut stale = s.oracle;
    stale.staleness_ms = 0;
    let mut stale_long = s.oracle;
    stale_long.staleness_ms = u64::MAX;
    let mut risk = s.markets[&BTC_PERP].spec.risk.clone();
    risk.funding_cap_ppm = 1_000_000_000;
    let mut expired = s.markets[&BTC_100K_CALL].spec.clone();
    expired.id = MarketId(99);
    if let MarketKind::Option { expiry_ms, .. } = &mut expired.kind {
        *expiry_ms = s.timestamp_ms;
    }
    for (update, why) in [
        (ParamUpdate::Liquidation(liq), "funding_interval_ms"),
        (ParamUpdate::Liquidation(liq_long), "funding_interval_ms"),
        (ParamUpdate::Oracle(stale), "staleness_ms"),
        (ParamUpdate::Oracle(stale_long), "staleness_ms"),
        (ParamUpdate::Risk { market: BTC_PERP, risk }, "funding_cap_ppm"),
        (ParamUpdate::List(expired), "expiry"),
    ] {
        let ev = n.block(vec![(0, Action::UpdateParams(update))]);
        assert!(
            matches!(&rejections(&ev)[..], [Reject::InvalidParams(m)] if m.contains(why)),
            "{why}: {ev:?}"
        );
    }
}

#[test]
fn good_til_block_orders_expire_and_release_their_margin() {
    let mut n = Net::new();
    n.deposit(1, 10_000);
    let h = n.height + 2;
    let ev = n.block(vec![(
        1,
        Action::Place(OrderRequest {
            market: BTC_PERP,
            side: Side::Buy,
            price: Some(P100K - 1_000),
            qty: 10,
            tif: TimeInForce::Gtc,
            reduce_only: false,
            good_til_height: Some(h),
            stp: SelfTradePrevention::CancelResting,
        }),
    )]);
    assert_eq!(rejections(&ev), vec![]);
    assert_eq!(n.state.markets[&BTC_PERP].book.len(), 1);
    n.block(vec![]);
    assert_eq!(n.state.markets[&BTC_PERP].book.len(), 1);
    let ev = n.block(vec![]);
    assert!(ev.iter().any(|e| matches!(e, Event::Done { reason: DoneReason::Expired, .. })), "{ev:?}");
    assert_eq!(n.state.markets[&BTC_PERP].book.len(), 0);
    assert!(n.state.accounts.get(&AccountId(1)).unwrap().positions.is_empty());
}

#[test]
fn self_trade_prevention_cancels_the_resting_order() {
    let mut n = Net::new();
    n.deposit(1, 100_000);
    let ev = n.block(vec![
        (1, order(BTC_PERP, Side::Sell, Some(P100K), 10, TimeInForce::Gtc)),
        (1, order(BTC_PERP, Side::Buy, Some(P100K), 10, TimeInForce::Gtc)),
    ]);
    assert!(ev.iter().any(|e| matches!(e, Event::Done { reason: DoneReason::SelfTrade, .. })), "{ev:?}");
    assert_eq!(count(&ev, |e| matches!(e, Event::Fill { .. })), 0);
    assert_eq!(n.size(1, BTC_PERP), 0);
}

#[test]
fn isolated_positions_are_liquidated_alone() {
    let mut n = Net::new();
    n.deposit(1, 1_000_000);
    n.deposit(2, 50_000);
    n.deposit(3, 1_000_000);
    let ev = n.block(vec![
        (2, Action::SetIsolated { market: BTC_PERP, isolated: true }),
        (2, Action::TransferIsolated { market: BTC_PERP, amount: 3_000 * USD }),
    ]);
    assert_eq!(rejections(&ev), vec![]);
    n.block(vec![
        (3, order(BTC_PERP, Side::Sell, Some(P100K), 1_000, TimeInForce::Gtc)),
        (2, order(BTC_PERP, Side::Buy, None, 1_000, TimeInForce::Ioc)),
    ]);
    assert_eq!(n.size(2, BTC_PERP), 1_000);
    let bids: Vec<_> = (1..=40)
        .map(|i| (1, order(BTC_PERP, Side::Buy, Some(P100K - i * 2_500), 200, TimeInForce::Gtc)))
        .collect();
    n.block(bids);
    let cross_before = n.quote(2);
    n.prices[0] = 98_000 * 1_000_000;
    let ev = n.block(vec![]);
    assert!(
        ev.iter().any(|e| matches!(e, Event::Liquidated { account, .. } if *account == AccountId(2))),
        "{ev:?}"
    );
    assert_eq!(n.quote(2), cross_before, "the cross balance is untouched");
}

fn mark_ticks(n: &Net, m: MarketId) -> Ticks {
    let m = &n.state.markets[&m];
    m.mark / m.spec.tick_size
}

#[test]
fn long_options_are_paid_in_full_under_standard_margin() {
    let mut n = Net::new();
    n.deposit(1, 100_000);
    n.deposit(2, 10);
    let px = mark_ticks(&n, BTC_100K_CALL);
    // 10 lots (0.1 BTC) of the 100k call cost 0.1 x mark, far more than $10.
    let ev = n.block(vec![
        (1, order(BTC_100K_CALL, Side::Sell, Some(px), 10, TimeInForce::Gtc)),
        (2, order(BTC_100K_CALL, Side::Buy, Some(px), 10, TimeInForce::Ioc)),
    ]);
    assert!(matches!(rejections(&ev)[..], [Reject::InitialMargin { .. }]), "{ev:?}");
    assert_eq!(n.size(2, BTC_100K_CALL), 0);
}

#[test]
fn portfolio_margin_recognises_a_call_spread_hedge() {
    let mut n = Net::new();
    n.deposit(1, 1_000_000);
    n.deposit(2, 50_000);
    let long_px = mark_ticks(&n, BTC_100K_CALL);
    let short_px = mark_ticks(&n, BTC_110K_CALL);
    // 2 buys the 100k call and sells the 110k call, 10 lots (0.1 BTC) each: a bull call
    // spread whose loss can never exceed what it is worth now.
    let ev = n.block(vec![
        (1, order(BTC_100K_CALL, Side::Sell, Some(long_px), 10, TimeInForce::Gtc)),
        (2, order(BTC_100K_CALL, Side::Buy, Some(long_px), 10, TimeInForce::Ioc)),
        (1, order(BTC_110K_CALL, Side::Buy, Some(short_px), 10, TimeInForce::Gtc)),
        (2, order(BTC_110K_CALL, Side::Sell, Some(short_px), 10, TimeInForce::Ioc)),
    ]);
    assert_eq!(rejections(&ev), vec![]);
    assert_eq!((n.size(2, BTC_100K_CALL), n.size(2, BTC_110K_CALL)), (10, -10));
    let standard = n.state.account_health(AccountId(2)).unwrap();
    let ev = n.block(vec![(2, Action::SetMarginMode { portfolio: true })]);
    assert_eq!(rejections(&ev), vec![]);
    let portfolio = n.state.account_health(AccountId(2)).unwrap();
    // The mode changes requirements only (the options' marks decay by a few micro-units a block).
    assert!((portfolio.collateral - standard.collateral).abs() < USD, "{portfolio:?} vs {standard:?}");
    // Standard margin charges the long's value plus 10% of spot on the short (0.1 BTC of
    // $100k: $1,000); the grid sees the hedge.
    let m_long = &n.state.markets[&BTC_100K_CALL];
    let m_short = &n.state.markets[&BTC_110K_CALL];
    let spread_value = 10 * (m_long.lot_value_ceil - m_short.lot_value_floor);
    assert!(standard.initial >= 1_000 * USD + 10 * m_long.lot_value_floor, "{standard:?}");
    assert!(portfolio.initial < standard.initial, "portfolio {portfolio:?} vs standard {standard:?}");
    assert!(
        portfolio.initial > 0 && portfolio.initial <= spread_value + 10,
        "{portfolio:?}, spread {spread_value}"
    );
    assert!(portfolio.maintenance < portfolio.initial);
}

#[test]
fn a_reduce_only_market_takes_only_reducing_orders() {
    let mut n = Net::new();
    n.deposit(1, 100_000);
    n.deposit(2, 100_000);
    n.block(vec![
        (1, order(BTC_PERP, Side::Sell, Some(P100K), 10, TimeInForce::Gtc)),
        (2, order(BTC_PERP, Side::Buy, None, 10, TimeInForce::Ioc)),
        (1, order(BTC_PERP, Side::Buy, Some(P100K - 50), 100, TimeInForce::Gtc)),
        (0, Action::UpdateParams(ParamUpdate::Status { market: BTC_PERP, status: MarketStatus::ReduceOnly })),
    ]);
    // The status applies from this block on.
    let ev = n.block(vec![
        (2, order(BTC_PERP, Side::Buy, Some(P100K), 1, TimeInForce::Gtc)),
        (2, order(BTC_PERP, Side::Sell, Some(P100K - 50), 5, TimeInForce::Gtc)),
        (2, order(BTC_PERP, Side::Sell, Some(P100K - 50), 50, TimeInForce::Ioc)),
    ]);
    let r = rejections(&ev);
    assert!(
        matches!(
            r[..],
            [Reject::MarketClosed(MarketStatus::ReduceOnly), Reject::MarketClosed(MarketStatus::ReduceOnly)]
        ),
        "{r:?}"
    );
    // The IOC sell reduced the long, clamped to its size.
    assert_eq!(n.size(2, BTC_PERP), 0);
}

#[test]
fn a_reduce_only_order_may_not_bankrupt_the_account() {
    let mut n = Net::new();
    n.deposit(1, 1_000_000);
    n.deposit(2, 3_000);
    n.deposit(3, 1_000_000);
    n.block(vec![
        (3, order(BTC_PERP, Side::Sell, Some(P100K), 1_000, TimeInForce::Gtc)),
        (2, order(BTC_PERP, Side::Buy, None, 1_000, TimeInForce::Ioc)),
        // The only bid is 4.5% below the mark: closing 1 BTC into it loses $4,500 on $3,000.
        (1, order(BTC_PERP, Side::Buy, Some(P100K - 45_000), 1_000, TimeInForce::Gtc)),
    ]);
    let close = Action::Place(OrderRequest {
        market: BTC_PERP,
        side: Side::Sell,
        price: None,
        qty: 1_000,
        tif: TimeInForce::Ioc,
        reduce_only: true,
        good_til_height: None,
        stp: SelfTradePrevention::CancelResting,
    });
    let ev = n.block(vec![(2, close)]);
    assert!(matches!(rejections(&ev)[..], [Reject::WouldBankrupt { .. }]), "{ev:?}");
    assert_eq!(n.size(2, BTC_PERP), 1_000);
}

#[test]
fn bids_the_mark_leaves_above_the_band_are_removed() {
    let mut n = Net::new();
    n.deposit(1, 100_000);
    let ev = n.block(vec![(1, order(BTC_PERP, Side::Buy, Some(P100K - 100), 10, TimeInForce::Gtc))]);
    assert_eq!(rejections(&ev), vec![]);
    // Down 4%: the band is mark +- 5%, the bid ($99,990) is still inside it.
    n.prices[0] = 96_000 * 1_000_000;
    let ev = n.block(vec![]);
    assert!(!ev.iter().any(|e| matches!(e, Event::Done { .. })), "{ev:?}");
    // Down another 5%: the bid is 9.6% above the mark, beyond the band: removed, its margin
    // released.
    n.prices[0] = 91_200 * 1_000_000;
    let ev = n.block(vec![]);
    assert!(ev.iter().any(|e| matches!(e, Event::Done { reason: DoneReason::Removed, .. })), "{ev:?}");
    assert!(n.state.markets[&BTC_PERP].book.is_empty());
    assert!(n.state.accounts.get(&AccountId(1)).unwrap().positions.is_empty());
}
