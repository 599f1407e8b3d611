//! Funding accrues only for the time a position was held (issue 15, finding 5).
//!
//! Block time is the leader's to choose within a window, and so is the block that settles a
//! funding interval. When every holder at the boundary paid or collected the whole interval, a
//! position opened in the settling block (or the block before) collected an interval's funding
//! for a few milliseconds of risk. Here every position pays `ceil(held x index_delta /
//! (FUNDING_INDEX_SCALE x interval length))`, `held` being the lots x milliseconds it held in
//! the interval: payers round up, receivers down, the dust goes to the insurance fund.

// Test helpers as well as #[test] functions may panic: a panic is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::{FUNDING_INDEX_SCALE, Genesis, State};
use bastion_types::*;

const USD: i128 = 1_000_000;
const BTC_PERP: MarketId = MarketId(0);
/// $100,000 in BTC-PERP ticks ($0.10).
const P100K: Ticks = 1_000_000;
const HOUR: u64 = 3_600_000;

struct Net {
    state: State,
    height: u64,
    nonces: std::collections::BTreeMap<u64, u64>,
    /// Oracle prices of BTC and ETH, micro-dollars.
    prices: [i64; 2],
}

impl Net {
    fn new() -> Net {
        // An empty insurance fund: these tests watch every micro-unit that reaches it.
        let state = State::from_genesis(&Genesis { insurance_fund: 0, ..Genesis::devnet() }).unwrap();
        Net { state, height: 0, nonces: Default::default(), prices: [100_000 * 1_000_000, 4_000 * 1_000_000] }
    }

    /// Applies a block at `time_ms` with the oracle at `prices` from every validator; checks
    /// every invariant after it.
    fn block_at(&mut self, time_ms: u64, actions: Vec<(u64, Action)>) -> Vec<Event> {
        self.height += 1;
        let txs = actions
            .into_iter()
            .map(|(signer, action)| {
                let n = self.nonces.entry(signer).or_insert(0);
                *n += 1;
                Tx { signer: AccountId(signer), nonce: *n, action }
            })
            .collect();
        let prices = [(UnderlyingId(0), self.prices[0]), (UnderlyingId(1), self.prices[1])];
        let oracle =
            bastion_exchange::testkit::observe_all(&self.state.chain_id, 4, self.height, time_ms, &prices);
        let block = Block { height: self.height, timestamp_ms: time_ms, oracle, txs, ..Default::default() };
        let out = self.state.apply_block(&block).unwrap();
        for e in &out.events {
            assert!(
                !matches!(e, Event::Rejected { .. } | Event::Fault { .. }),
                "height {}: {e:?}",
                self.height
            );
        }
        if let Err(v) = self.state.check_invariants() {
            panic!("invariant violated at height {}: {v}\nevents: {:#?}", self.height, out.events);
        }
        out.events
    }

    fn quote(&self, acct: u64) -> i128 {
        self.state.accounts.get(&AccountId(acct)).unwrap().balances[0]
    }

    fn size(&self, acct: u64) -> i64 {
        self.state.accounts.get(&AccountId(acct)).and_then(|a| a.position(BTC_PERP)).map_or(0, |p| p.size)
    }
}

fn deposit(to: u64) -> (u64, Action) {
    (0, Action::Deposit { to: AccountId(to), asset: AssetId(0), amount: 50_000 * USD })
}

/// `maker` rests a sell (or buy) of `qty` lots at $100,000 and `taker` takes it at once.
fn trade(maker: u64, taker: u64, taker_side: Side, qty: Lots) -> Vec<(u64, Action)> {
    let place = |side, tif| {
        Action::Place(OrderRequest {
            market: BTC_PERP,
            side,
            price: Some(P100K),
            qty,
            tif,
            reduce_only: false,
            good_til_height: None,
            stp: SelfTradePrevention::CancelResting,
        })
    };
    vec![
        (maker, place(taker_side.opposite(), TimeInForce::Gtc)),
        (taker, place(taker_side, TimeInForce::Ioc)),
    ]
}

/// Quote cash that the fills in `events` moved for `acct` (notional and fees).
fn fill_cash(state: &State, events: &[Event], acct: u64) -> i128 {
    let qptl = state.markets[&BTC_PERP].quote_per_tick_lot();
    let mut cash = 0;
    for e in events {
        if let Event::Fill { maker, taker, taker_side, price, qty, maker_fee, taker_fee, .. } = e {
            let notional = i128::from(*price) * i128::from(*qty) * qptl;
            let sign = i128::from(taker_side.sign());
            if taker.0 == acct {
                cash += -sign * notional - taker_fee;
            }
            if maker.0 == acct {
                cash += sign * notional - maker_fee;
            }
        }
    }
    cash
}

/// `ceil(a / b)` for b > 0.
fn div_ceil(a: i128, b: i128) -> i128 {
    a.div_euclid(b) + i128::from(a.rem_euclid(b) != 0)
}

/// One BTC-PERP funding interval `[t1, t1 + 1h]`, with positions held for all of it, half of it
/// (opened in the middle, or opened and closed again before the end), its last millisecond,
/// and none of it (opened in the block that settles it).
#[test]
fn funding_is_paid_for_the_time_held_and_nothing_for_a_position_opened_in_the_settling_block() {
    let mut n = Net::new();
    let t0 = n.state.timestamp_ms;
    assert_eq!(n.state.markets[&BTC_PERP].funding.last_settled_ms, t0);
    assert_eq!(n.state.liquidation.funding_interval_ms, HOUR);
    // Accounts: 1 long / 2 short all interval; 3 long / 4 short from its middle; 5 long / 6
    // short for its last millisecond; 7 long / 8 short for its middle half, flat at the end;
    // 9 the leader, short from the settling block on, against 10.
    n.block_at(t0 + 1_000, (1..=10).map(deposit).collect());
    n.block_at(t0 + 2_000, trade(2, 1, Side::Buy, 100));
    // The first interval settles; the one under test starts here.
    let t1 = t0 + HOUR;
    let ev = n.block_at(t1, vec![]);
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::Funding { market: BTC_PERP, .. })).count(), 1);
    assert_eq!(n.state.markets[&BTC_PERP].funding.last_settled_ms, t1);
    n.block_at(t1 + HOUR / 4, trade(8, 7, Side::Buy, 100));
    n.block_at(t1 + HOUR / 2, trade(4, 3, Side::Buy, 100));
    n.block_at(t1 + 3 * HOUR / 4, trade(7, 8, Side::Buy, 100));
    assert_eq!((n.size(7), n.size(8)), (0, 0));
    // The closed round trip still holds its accrued time, and so stays a holder.
    let p7 = *n.state.accounts.get(&AccountId(7)).unwrap().position(BTC_PERP).unwrap();
    assert_eq!(p7.funding_lot_ms, 100 * i128::from(HOUR / 2));
    assert!(n.state.markets[&BTC_PERP].holders.contains(&AccountId(7)));
    // A snapshot image carries the accruals, the closed one's included (its loader derives
    // the holders from them): the rest of the interval runs on the restored state.
    let restored = State::from_image_bytes(&n.state.to_image_bytes().unwrap()).unwrap();
    assert_eq!(restored.state_root(), n.state.state_root());
    assert_eq!(restored.markets[&BTC_PERP].holders, n.state.markets[&BTC_PERP].holders);
    assert!(n.state.accounts.iter().all(|(id, a)| restored.accounts.get(id) == Some(a)));
    n.state = restored;
    let t2 = t1 + HOUR;
    n.block_at(t2 - 1, trade(6, 5, Side::Buy, 100));

    // The settling block: the leader opens a short (the receiving side: the rate is positive).
    let before: Vec<i128> = (0..=10).map(|a| if a == 0 { 0 } else { n.quote(a) }).collect();
    let insurance = n.state.insurance_fund();
    let ev = n.block_at(t2, trade(10, 9, Side::Sell, 100));
    let (rate, per_lot, dust) = ev
        .iter()
        .find_map(|e| match e {
            Event::Funding { market: BTC_PERP, rate_ppm, index_delta, dust_to_insurance, .. } => {
                Some((*rate_ppm, *index_delta, *dust_to_insurance))
            }
            _ => None,
        })
        .expect("the interval settles in this block");
    // An empty book at every sample: premium 0, rate = 0.01% / 8h x 1h, 12 ppm (floor);
    // one 0.001 BTC lot at $100,000 owes $0.0012 per interval, scaled by 1e6.
    assert_eq!(rate, 12);
    assert_eq!(per_lot, 1_200_000_000);
    let funding = |a: u64| -(n.quote(a) - before[a as usize] - fill_cash(&n.state, &ev, a));
    let interval = i128::from(HOUR);
    let owed = |lots: i128, held_ms: i128| div_ceil(lots * held_ms * per_lot, FUNDING_INDEX_SCALE * interval);
    // Whole interval: $0.12 for $10,000 long, as before.
    assert_eq!(funding(1), owed(100, interval));
    assert_eq!(funding(1), 120_000);
    assert_eq!(funding(2), -120_000);
    // Half of it: half the funding, exact here.
    assert_eq!((funding(3), funding(4)), (60_000, -60_000));
    assert_eq!((funding(7), funding(8)), (60_000, -60_000));
    // The last millisecond: 100 x 1.2e9 x 1 / 3.6e12 = 0.033 micro-dollars; the long pays it
    // rounded up, the short receives it rounded down.
    assert_eq!((funding(5), funding(6)), (1, 0));
    assert_eq!((owed(100, 1), owed(-100, 1)), (1, 0));
    // Opened in the settling block: nothing either way. (Before the fix the leader collected
    // the whole interval, $0.12, for holding nothing.)
    assert_eq!((funding(9), funding(10)), (0, 0));
    assert_eq!((n.size(9), n.size(10)), (-100, 100));
    // The fund takes the rounding dust and nothing else: money is conserved exactly.
    let paid: i128 = (1..=10).map(funding).sum();
    assert_eq!(paid, 1);
    assert_eq!(dust, paid);
    assert_eq!(n.state.insurance_fund() - insurance, paid);
    // Every accrual restarts; the settled round trip is no longer a holder or a record.
    for a in 1..=10u64 {
        if let Some(p) = n.state.accounts.get(&AccountId(a)).unwrap().position(BTC_PERP) {
            assert_eq!((p.funding_lot_ms, p.funding_since_ms), (0, t2), "account {a}");
        }
    }
    let holders = &n.state.markets[&BTC_PERP].holders;
    assert!(!holders.contains(&AccountId(7)) && !holders.contains(&AccountId(8)));
    assert!(n.state.accounts.get(&AccountId(7)).unwrap().position(BTC_PERP).is_none());

    // The next interval: everyone held all of it, the leader included, and pays in full.
    let before: Vec<i128> = (0..=10).map(|a| if a == 0 { 0 } else { n.quote(a) }).collect();
    n.block_at(t2 + HOUR, vec![]);
    let funding = |a: u64| -(n.quote(a) - before[a as usize]);
    assert_eq!((funding(9), funding(10)), (-120_000, 120_000));
    assert_eq!((funding(3), funding(5), funding(7)), (120_000, 120_000, 0));
}

/// A leader that settles the interval a little late (its timestamp anywhere in its window)
/// changes nobody's funding for a size held all along, and a position opened just before the
/// boundary pays for its milliseconds only: the interval's length is the divisor.
#[test]
fn a_late_settling_block_divides_by_the_interval_it_actually_closed() {
    let mut n = Net::new();
    let t0 = n.state.timestamp_ms;
    n.block_at(t0 + 1_000, (1..=4).map(deposit).collect());
    n.block_at(t0 + 2_000, trade(2, 1, Side::Buy, 100));
    let t1 = t0 + HOUR;
    n.block_at(t1, vec![]);
    // Opened 1 s before the nominal boundary; the settling block comes 2 s after it.
    n.block_at(t1 + HOUR - 1_000, trade(4, 3, Side::Buy, 300));
    let before: Vec<i128> = (0..=4).map(|a| if a == 0 { 0 } else { n.quote(a) }).collect();
    let late = t1 + HOUR + 2_000;
    let ev = n.block_at(late, vec![]);
    let per_lot = ev
        .iter()
        .find_map(|e| match e {
            Event::Funding { market: BTC_PERP, index_delta, .. } => Some(*index_delta),
            _ => None,
        })
        .expect("settles");
    assert_eq!(per_lot, 1_200_000_000);
    let funding = |a: u64| -(n.quote(a) - before[a as usize]);
    assert_eq!((funding(1), funding(2)), (120_000, -120_000));
    // 300 lots for 3 s of the 3,602 s interval: 300 x 1.2e9 x 3,000 / (1e6 x 3,602,000)
    // = 299.83 micro-dollars: the long pays 300, the short receives 299.
    let elapsed = i128::from(HOUR + 2_000);
    assert_eq!(funding(3), div_ceil(300 * 3_000 * per_lot, FUNDING_INDEX_SCALE * elapsed));
    assert_eq!((funding(3), funding(4)), (300, -299));
    assert_eq!(n.state.markets[&BTC_PERP].funding.last_settled_ms, late);
}

/// The funding a position accrued is owed even once it is closed, so an account that closes
/// and withdraws everything before the boundary cannot pay it: it pays what it has and the
/// rest is cut from the receivers' payments pro rata; no account and not the fund is left
/// negative. An isolated position closed before the boundary pays from its isolated balance
/// first, then from its cross one.
#[test]
fn an_account_emptied_before_the_boundary_pays_what_it_has_and_the_receivers_bear_the_rest() {
    let mut n = Net::new();
    let t0 = n.state.timestamp_ms;
    // Accounts created by a deposit may sign from the next block on (the nonce rule).
    n.block_at(t0 + 1_000, (1..=5).map(deposit).collect());
    n.block_at(
        t0 + 2_000,
        vec![
            (3, Action::SetIsolated { market: BTC_PERP, isolated: true }),
            (3, Action::TransferIsolated { market: BTC_PERP, amount: 1_000 * USD }),
        ],
    );
    let t1 = t0 + HOUR;
    n.block_at(t1, vec![]);
    assert_eq!(n.state.insurance_fund(), 0, "the fund starts empty");
    // 1 (cross) and 3 (isolated) hold 100 long for half the interval, against 2 and 4.
    let mut open = trade(2, 1, Side::Buy, 100);
    open.extend(trade(4, 3, Side::Buy, 100));
    n.block_at(t1 + HOUR / 4, open);
    let mut close = trade(2, 1, Side::Sell, 100);
    close.extend(trade(4, 3, Side::Sell, 100));
    n.block_at(t1 + 3 * HOUR / 4, close);
    // 1 takes everything out; 3 leaves $0.05 in its isolated balance and $0.01 in cross.
    let all = n.quote(1);
    let iso = n.state.accounts.get(&AccountId(3)).unwrap().position(BTC_PERP).unwrap().isolated_balance;
    let cross3 = n.quote(3) + iso - 50_000 - 10_000;
    n.block_at(
        t1 + 3 * HOUR / 4 + 1_000,
        vec![
            (1, Action::Withdraw { asset: AssetId(0), amount: all }),
            (3, Action::TransferIsolated { market: BTC_PERP, amount: -(iso - 50_000) }),
            (3, Action::Withdraw { asset: AssetId(0), amount: cross3 }),
        ],
    );
    assert_eq!((n.quote(1), n.quote(3)), (0, 10_000));
    let before: Vec<i128> = (0..=5).map(|a| if a == 0 { 0 } else { n.quote(a) }).collect();
    let ev = n.block_at(t1 + HOUR, vec![]);
    let funding = |a: u64| -(n.quote(a) - before[a as usize]);
    // Each long owes $0.06 for half the interval. 1 has nothing and pays nothing; 3 pays
    // $0.05 from its isolated balance and $0.01 from its cross balance.
    assert_eq!(funding(1), 0);
    let p3 = n.state.accounts.get(&AccountId(3)).unwrap().position(BTC_PERP).copied().unwrap_or_default();
    assert_eq!((p3.isolated_balance, n.quote(3)), (0, 0));
    // The two receivers, owed $0.06 each, bear 1's $0.06.
    assert_eq!((funding(2), funding(4)), (-30_000, -30_000));
    for a in [2, 4] {
        assert!(ev.contains(&Event::Socialized { market: BTC_PERP, account: AccountId(a), amount: 30_000 }));
    }
    assert!(!ev.iter().any(|e| matches!(e, Event::InsuranceCovered { .. })));
    assert_eq!(n.state.insurance_fund(), 0);
}

/// As above with money in the insurance fund (from an ETH-PERP liquidation): the fund is kept
/// for liquidation losses and pays nothing of a defaulted funding payment; the receiver bears
/// it. (Paying it from the fund first let the accrued funding of accounts liquidated before
/// the boundary drain the fund in the seeded simulation.)
#[test]
fn an_emptied_accounts_funding_never_drains_the_insurance_fund() {
    let mut n = Net::new();
    let t0 = n.state.timestamp_ms;
    let eth = |side, price: Ticks, qty, tif| {
        Action::Place(OrderRequest {
            market: MarketId(1),
            side,
            price: Some(price),
            qty,
            tif,
            reduce_only: false,
            good_til_height: None,
            stp: SelfTradePrevention::CancelResting,
        })
    };
    let mut setup: Vec<(u64, Action)> = [1, 2, 11, 13].into_iter().map(deposit).collect();
    setup.push((0, Action::Deposit { to: AccountId(12), asset: AssetId(0), amount: 2_100 * USD }));
    n.block_at(t0 + 1_000, setup);
    // 12 buys 10 ETH ($40,000) on $2,100 (19x) from 11; 13 bids down from $3,995.
    let mut flow = vec![
        (11, eth(Side::Sell, 400_000, 100, TimeInForce::Gtc)),
        (12, eth(Side::Buy, 400_000, 100, TimeInForce::Ioc)),
    ];
    flow.extend((1..=30).map(|i| (13, eth(Side::Buy, 400_000 - i * 500, 20, TimeInForce::Gtc))));
    n.block_at(t0 + 2_000, flow);
    // ETH falls 4%: 12 is under maintenance and sold into 13's bids; the fund takes a fee.
    n.prices[1] = 3_840 * 1_000_000;
    for i in 0..5 {
        n.block_at(t0 + 3_000 + i * 1_000, vec![]);
    }
    let fund = n.state.insurance_fund();
    assert!(fund > 60_000, "the liquidation must leave the fund more than $0.06: {fund}");
    let t1 = t0 + HOUR;
    n.block_at(t1, vec![]);
    n.block_at(t1 + HOUR / 4, trade(2, 1, Side::Buy, 100));
    n.block_at(t1 + 3 * HOUR / 4, trade(2, 1, Side::Sell, 100));
    let all = n.quote(1);
    n.block_at(t1 + 3 * HOUR / 4 + 1_000, vec![(1, Action::Withdraw { asset: AssetId(0), amount: all })]);
    let (q2, fund) = (n.quote(2), n.state.insurance_fund());
    let ev = n.block_at(t1 + HOUR, vec![]);
    // 1 owed $0.06 and has nothing; 2, the only receiver, is cut by all of it.
    assert_eq!((n.quote(1), n.quote(2) - q2), (0, 0));
    assert!(ev.contains(&Event::Socialized { market: BTC_PERP, account: AccountId(2), amount: 60_000 }));
    assert!(!ev.iter().any(|e| matches!(e, Event::InsuranceCovered { .. })));
    // The fund takes ETH-PERP's rounding dust and nothing else.
    let dust = |market| {
        ev.iter()
            .find_map(|e| match e {
                Event::Funding { market: m, dust_to_insurance, .. } if *m == market => {
                    Some(*dust_to_insurance)
                }
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(dust(BTC_PERP), 0);
    assert!(dust(MarketId(1)) >= 0);
    assert_eq!(n.state.insurance_fund() - fund, dust(MarketId(1)));
}
