#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The collateral bridge on the validator network, in the deterministic simulation: validators
//! watch scripted deposit feeds (one per validator, remade at each restart), attest what their
//! feed shows, gossip the attestations, and leaders credit what 2/3 of stake attested.
//!
//! Every block each validator executes is recorded by a [`Publisher`] (the deposits it
//! credited, its `BridgeCredited`, `Withdrew` and `VoucherSigned` events, the state after it),
//! so the checks read the chain as each validator executed it, not just its counters. A feed
//! shows a deposit once its validator has executed a given height, so what each test stages
//! happens at the same point of the chain whatever a seed's block times.
//!
//! The seed is printed; `BASTION_SEED=<n>` replays one run.

use bastion_consensus::{
    BridgeTotals, DepositFeed, FeedPoll, Lie, Published, Publisher,
    bridge::{CONFLICTING_ATTESTATION, verify_conflicting_attestation},
    sim::{
        Crash, FeedFactory, Outcome, PublisherFactory, Run, check, link, seeds, sim_genesis, simulate_outcome,
    },
};
use bastion_exchange::State;
use bastion_types::{AccountId, Approval, AssetId, BridgeDeposit, Event, SourceId};
use commonware_utils::probability;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// A deposit a feed shows once its validator has executed `after_height` (sources and chains
/// advance together, whatever a seed's block times), with its source height.
#[derive(Clone, Debug)]
struct Scheduled {
    after_height: u64,
    deposit: BridgeDeposit,
    source_height: u64,
}

/// A validator's scripted source: each scheduled deposit once its height has come, once per
/// feed instance (a restarted validator gets a new instance, which shows them all again, as a
/// node re-reading its source from the start does). The tip advances one source block per
/// 250 ms of simulated time.
struct ScriptedFeed {
    schedule: Vec<Scheduled>,
    shown: Vec<bool>,
    start_ms: u64,
    /// The record of executed blocks and this validator's index in it (for `after_height`).
    chain: (Record, usize),
}

/// The source height of the simulation's start.
const SOURCE_BASE: u64 = 5_000;

impl DepositFeed for ScriptedFeed {
    fn poll(&mut self, now_ms: u64) -> FeedPoll {
        let elapsed = Duration::from_millis(now_ms.saturating_sub(self.start_ms));
        let (record, i) = &self.chain;
        let height = record.lock().unwrap()[*i].deposits.keys().next_back().copied().unwrap_or(0);
        let mut deposits = Vec::new();
        for (s, shown) in self.schedule.iter().zip(&mut self.shown) {
            if !*shown && s.after_height <= height {
                deposits.push((s.deposit.clone(), s.source_height));
                *shown = true;
            }
        }
        FeedPoll { tip: Some(SOURCE_BASE + elapsed.as_millis() as u64 / 250), deposits }
    }
}

/// A feed factory: validator `i`'s feed shows `schedule(i)` as its chain (in `record`)
/// advances.
fn feeds(record: &Record, schedule: impl Fn(usize) -> Vec<Scheduled> + Send + Sync + 'static) -> FeedFactory {
    let record = record.clone();
    Arc::new(move |i| {
        let schedule = schedule(i);
        Box::new(ScriptedFeed {
            shown: vec![false; schedule.len()],
            schedule,
            start_ms: sim_genesis().timestamp_ms,
            chain: (record.clone(), i),
        }) as Box<dyn DepositFeed>
    })
}

/// What one validator executed, as its publisher saw it (over all its incarnations).
#[derive(Default)]
struct Executed {
    /// Per height, the deposits the block carried (credited).
    deposits: BTreeMap<u64, Vec<BridgeDeposit>>,
    /// Per height, the `BridgeCredited` events of its execution.
    credited_events: BTreeMap<u64, Vec<BridgeDeposit>>,
    /// Per height, the voucher signature sets the block carried (voucher ids).
    vouchers: BTreeMap<u64, Vec<u64>>,
    /// Per height, its `VoucherSigned` events (voucher ids).
    signed_events: BTreeMap<u64, Vec<u64>>,
    /// Per height, its `Withdrew` events: (voucher id, account, asset, amount).
    withdrawals: BTreeMap<u64, Vec<(u64, AccountId, AssetId, i128)>>,
    /// The state after the highest height executed.
    last: Option<(u64, State)>,
    /// The first height each incarnation executed.
    starts: Vec<u64>,
}

type Record = Arc<Mutex<Vec<Executed>>>;

struct Recorder {
    index: usize,
    record: Record,
    started: bool,
}

impl Publisher for Recorder {
    fn finalized(&mut self, p: &Published<'_>) {
        let height = p.block.height_u64();
        let deposits: Vec<BridgeDeposit> =
            p.block.block().deposits.iter().map(|d| d.deposit.clone()).collect();
        let events: Vec<BridgeDeposit> = p
            .events
            .iter()
            .filter_map(|e| match e {
                Event::BridgeCredited { source_id, account, asset, amount } => Some(BridgeDeposit {
                    source_id: *source_id,
                    to: *account,
                    asset: *asset,
                    amount: *amount,
                }),
                _ => None,
            })
            .collect();
        let vouchers: Vec<u64> = p.block.block().vouchers.iter().map(|v| v.id).collect();
        let signed: Vec<u64> = p
            .events
            .iter()
            .filter_map(|e| match e {
                Event::VoucherSigned { voucher } => Some(*voucher),
                _ => None,
            })
            .collect();
        let withdrawals: Vec<(u64, AccountId, AssetId, i128)> = p
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Withdrew { account, asset, amount, voucher } => {
                    Some((*voucher, *account, *asset, *amount))
                }
                _ => None,
            })
            .collect();
        let mut all = self.record.lock().unwrap();
        let e = &mut all[self.index];
        if !std::mem::replace(&mut self.started, true) {
            e.starts.push(height);
        }
        // A height executed again (after a restart, from the last commit) must execute the same.
        if let Some(before) = e.deposits.insert(height, deposits.clone()) {
            assert_eq!(
                before, deposits,
                "validator {} executed height {height} twice, differently",
                self.index
            );
        }
        e.credited_events.insert(height, events);
        e.vouchers.insert(height, vouchers);
        e.signed_events.insert(height, signed);
        e.withdrawals.insert(height, withdrawals);
        if e.last.as_ref().is_none_or(|(h, _)| *h <= height) {
            e.last = Some((height, p.state.clone()));
        }
    }
}

fn recorder(validators: usize) -> (Record, PublisherFactory) {
    let record: Record = Arc::new(Mutex::new((0..validators).map(|_| Executed::default()).collect()));
    let r = record.clone();
    let factory: PublisherFactory = Arc::new(move |index| {
        Some(Box::new(Recorder { index, record: r.clone(), started: false }) as Box<dyn Publisher>)
    });
    (record, factory)
}

/// Deposit `i`: a distinct source id and a fresh account of its own (no workload account is
/// this), `i + 1` USDC.
fn deposit(i: u64) -> BridgeDeposit {
    let mut id = [0xB5u8; 32];
    id[24..].copy_from_slice(&i.to_be_bytes());
    BridgeDeposit {
        source_id: SourceId(id),
        to: AccountId(0x0B1D_6E00_0000_0000 + i),
        asset: AssetId(0),
        amount: (i as i128 + 1) * 1_000_000,
    }
}

/// `count` deposits: deposit k shown after height `first + every * k`.
fn schedule(count: u64, first: u64, every: u64) -> Vec<Scheduled> {
    (0..count)
        .map(|k| Scheduled {
            after_height: first + every * k,
            deposit: deposit(k),
            source_height: SOURCE_BASE + k,
        })
        .collect()
}

/// The vouchers on validator `i`'s chain (the synthetic workload withdraws): each `Withdrew`
/// created the next voucher id, stored as withdrawn at its height; each voucher was signed at
/// most once, by a block carrying its signatures, with valid signatures of distinct validators
/// weighing 2/3 of stake; every voucher created more than `grace` heights before the end is
/// signed; the counters agree. Returns (vouchers created, vouchers signed).
fn check_vouchers(e: &Executed, i: usize, totals: &BridgeTotals, grace: u64) -> (u64, u64) {
    let (end, state) = e.last.as_ref().expect("a state was published");
    let mut next = 1;
    for (h, ws) in &e.withdrawals {
        for (id, account, asset, amount) in ws {
            assert_eq!(*id, next, "validator {i}: voucher ids in withdrawal order");
            next += 1;
            let v =
                &state.voucher(*id).unwrap_or_else(|| panic!("validator {i}: voucher {id} missing")).voucher;
            assert_eq!(
                (v.account, v.asset, v.amount, v.height),
                (*account, *asset, *amount, *h),
                "validator {i}: voucher {id} is not its withdrawal"
            );
        }
    }
    let created = next - 1;
    assert_eq!(state.last_voucher(), created, "validator {i}: vouchers in the state");
    let mut signed_at = BTreeMap::new();
    for (h, ids) in &e.signed_events {
        assert_eq!(Some(ids), e.vouchers.get(h), "validator {i}: height {h}'s VoucherSigned events");
        for id in ids {
            if let Some(first) = signed_at.insert(*id, *h) {
                panic!("validator {i}: voucher {id} signed twice, at {first} and {h}");
            }
        }
    }
    for entry in state.vouchers() {
        let id = entry.voucher.id;
        if !entry.signed() {
            assert!(!signed_at.contains_key(&id), "validator {i}: voucher {id} signed but not stored so");
            assert!(
                entry.voucher.height + grace > *end,
                "validator {i}: voucher {id} of height {} still unsigned at {end}",
                entry.voucher.height
            );
            continue;
        }
        let at =
            signed_at.get(&id).unwrap_or_else(|| panic!("validator {i}: voucher {id} signed with no event"));
        assert!(*at > entry.voucher.height, "validator {i}: voucher {id} signed at {at}, before it existed");
        let signers: BTreeSet<u16> = entry.approvals.iter().map(|a| a.validator.0).collect();
        assert_eq!(signers.len(), entry.approvals.len(), "validator {i}: voucher {id}: a signer twice");
        for a in &entry.approvals {
            assert!(state.voucher_signature_verifies(id, a), "validator {i}: voucher {id}: a bad signature");
        }
        let stake = signers.iter().map(|v| state.stake_of(*v)).sum();
        assert!(state.is_quorum(stake), "validator {i}: voucher {id} signed by {signers:?}, short of 2/3");
    }
    let signed = signed_at.len() as u64;
    assert_eq!(totals.withdrawals, created, "validator {i}: the withdrawals counter");
    assert_eq!(totals.vouchers_completed, signed, "validator {i}: the completed vouchers counter");
    (created, signed)
}

fn totals_line(o: &Outcome, i: usize) -> String {
    format!("validator {i}: {:?}", o.totals[i].bridge)
}

/// On validator `i`'s chain (as it executed it): every source id credited at most once, each
/// block's `BridgeCredited` events are its deposits, and the credited deposits by source id
/// with the height of each.
fn credited_on(e: &Executed, i: usize) -> BTreeMap<SourceId, (BridgeDeposit, u64)> {
    let heights: Vec<u64> = e.deposits.keys().copied().collect();
    assert_eq!(
        heights,
        (1..=heights.len() as u64).collect::<Vec<_>>(),
        "validator {i}: a height was not published"
    );
    let mut credited = BTreeMap::new();
    for (h, ds) in &e.deposits {
        assert_eq!(
            Some(ds),
            e.credited_events.get(h),
            "validator {i}: height {h}'s events are not its deposits"
        );
        for d in ds {
            if let Some((first, at)) = credited.insert(d.source_id, (d.clone(), *h)) {
                panic!(
                    "validator {i}: deposit {} credited twice: {first:?} at {at}, {d:?} at {h}",
                    d.source_id
                );
            }
        }
    }
    credited
}

/// Asserts the final state of validator `i` holds exactly `expected` as credited deposits,
/// each account with the deposit's balance.
fn check_final_state(e: &Executed, i: usize, expected: &[BridgeDeposit]) {
    let (h, state) = e.last.as_ref().expect("a state was published");
    assert_eq!(
        state.credited_count(),
        expected.len(),
        "validator {i} at {h}: credited deposits in the state"
    );
    for d in expected {
        let c = state
            .credited(&d.source_id)
            .unwrap_or_else(|| panic!("validator {i}: {} not credited", d.source_id));
        assert_eq!(&c.deposit, d, "validator {i}: credited content");
        let balance = state.accounts.get(&d.to).map(|a| a.balances[usize::from(d.asset.0)]);
        assert_eq!(
            balance,
            Some(d.amount),
            "validator {i}: the balance of {:?} is not the one deposit",
            d.to
        );
    }
}

#[test]
fn honest_validators_credit_each_deposit_exactly_once_across_a_restart() {
    let seed = seeds(1_000);
    let target = 50;
    let (crash_at, others_reach) = (10, 30);
    // Each validator's source shows deposit k (k < 10) once the validator has executed height
    // 3 + 3k (sources and chains advance together, whatever the seed's block times).
    // Validator 1 crashes once it has finalized height 10 (a few deposits credited) and comes
    // back when the others reach 30: the deposits shown meanwhile are attested and credited by
    // the other three alone, and its new feed shows every deposit again. Deposit 10 is shown
    // by validators 0 and 2 at height 12, and by 1 only after its restart (its source was
    // behind); 3's source never shows it: it waits for validator 1's attestation after the
    // restart, then is credited, once.
    let (record, publisher) = recorder(4);
    let at_height =
        |k: u64, h: u64| Scheduled { after_height: h, deposit: deposit(k), source_height: SOURCE_BASE + k };
    let plan: Vec<Scheduled> = (0..10).map(|k| at_height(k, 3 + 3 * k)).collect();
    let waiting = at_height(10, 12);
    let expected: Vec<BridgeDeposit> = plan.iter().chain([&waiting]).map(|s| s.deposit.clone()).collect();
    let count = expected.len() as u64;
    let starts_of_1 = Arc::new(AtomicUsize::new(0));
    let s1 = starts_of_1.clone();
    let feed = feeds(&record, move |i| {
        let mut plan = plan.clone();
        let restarted = i == 1 && s1.fetch_add(1, Ordering::SeqCst) > 0;
        if i == 0 || i == 2 || restarted {
            plan.push(waiting.clone());
        }
        plan
    });
    let o = simulate_outcome(Run {
        crash: Some(Crash { validator: 1, at: crash_at, others_reach }),
        bridge_feed: Some(feed),
        publisher: Some(publisher),
        ..Run::new(4, seed, link(20, 10, probability!(1.0)), target)
    });
    assert_eq!(starts_of_1.load(Ordering::SeqCst), 2, "validator 1 restarted once");
    check(&o.ledgers, target);
    let record = record.lock().unwrap();
    let scheduled: BTreeSet<SourceId> = expected.iter().map(|d| d.source_id).collect();
    let mut at_height = None;
    for i in 0..4 {
        println!("{}", totals_line(&o, i));
        let credited = credited_on(&record[i], i);
        let ids: BTreeSet<SourceId> = credited.keys().copied().collect();
        assert_eq!(ids, scheduled, "validator {i}: credited deposits are not the scheduled ones");
        for d in &expected {
            assert_eq!(&credited[&d.source_id].0, d, "validator {i}: credited content");
        }
        check_final_state(&record[i], i, &expected);
        let heights: Vec<u64> = expected.iter().map(|d| credited[&d.source_id].1).collect();
        assert_eq!(
            at_height.get_or_insert_with(|| heights.clone()),
            &heights,
            "validator {i}: other heights"
        );
        let b = &o.totals[i].bridge;
        assert_eq!(b.deposits_credited, count, "validator {i}: deposits_credited");
        assert_eq!(
            b.credited_amount,
            expected.iter().map(|d| d.amount).sum::<i128>(),
            "validator {i}: amount"
        );
        assert!(b.deposits_attested >= 1, "validator {i} attested nothing");
        assert_eq!(b.items_refused, 0, "validator {i} refused an honest peer's items");
        assert_eq!(b.conflicts, 0, "validator {i} saw conflicts among honest validators");
        assert_eq!(b.credit_lag_blocks, 0, "validator {i}: every deposit it saw is credited");
        assert!(o.evidence[i].is_empty(), "validator {i}: evidence {:?}", o.evidence[i]);
        let (created, signed) = check_vouchers(&record[i], i, b, 20);
        println!("validator {i}: {created} vouchers created, {signed} signed");
    }
    let heights = at_height.unwrap();
    let time = |h: u64| o.ledgers[0][&h].timestamp_ms - sim_genesis().timestamp_ms;
    let timeline: Vec<(u64, u64)> = heights.iter().map(|h| (*h, time(*h))).collect();
    println!("deposits credited at (height, ms): {timeline:?}");
    // The run was what it means to be: validator 1 was down (after the height it crashed at,
    // until the others reached `others_reach`) while deposits were credited without it, and
    // deposit 10 waited for it.
    let starts = &record[1].starts;
    assert_eq!(starts.len(), 2, "validator 1's incarnations: {starts:?}");
    let crashed = starts[1] - 1;
    println!("validator 1 crashed at height {crashed}");
    assert!(crashed >= crash_at);
    assert!(
        heights.iter().any(|h| (crashed + 1..=others_reach).contains(h)),
        "nothing credited while 1 was down"
    );
    assert!(heights[10] > others_reach, "deposit 10 was credited without validator 1 ({heights:?})");
}

/// Validator `liar`'s feed adds a deposit that never happened and a different version of real
/// deposit 0 (same source id, twice the amount); the others' feeds show only the real deposits.
fn fake(i: u64) -> BridgeDeposit {
    BridgeDeposit { amount: 77_000_000, ..deposit(1_000 + i) }
}

fn lying_schedule(liars: &'static [usize], count: u64) -> impl Fn(usize) -> Vec<Scheduled> + Send + Sync {
    move |i| {
        let mut plan = schedule(count, 2, 2);
        if liars.contains(&i) {
            plan[0].deposit.amount *= 2;
            plan.push(Scheduled { after_height: 3, deposit: fake(0), source_height: SOURCE_BASE + 50 });
        }
        plan
    }
}

#[test]
fn one_lying_validator_of_four_cannot_credit_a_deposit_the_source_does_not_hold() {
    let seed = seeds(2_000);
    let target = 40;
    let count = 6;
    let (record, publisher) = recorder(4);
    let o = simulate_outcome(Run {
        bridge_feed: Some(feeds(&record, lying_schedule(&[3], count))),
        publisher: Some(publisher),
        ..Run::new(4, seed, link(20, 10, probability!(1.0)), target)
    });
    check(&o.ledgers, target);
    let record = record.lock().unwrap();
    let expected: Vec<BridgeDeposit> = (0..count).map(deposit).collect();
    for i in 0..4 {
        println!("{}", totals_line(&o, i));
        let credited = credited_on(&record[i], i);
        assert!(
            !credited.contains_key(&fake(0).source_id),
            "validator {i}: the liar's fake deposit was credited"
        );
        assert_eq!(credited.len(), expected.len(), "validator {i}: credited {credited:?}");
        for d in &expected {
            assert_eq!(
                credited.get(&d.source_id).map(|c| &c.0),
                Some(d),
                "validator {i}: not the honest content"
            );
        }
        check_final_state(&record[i], i, &expected);
        check_vouchers(&record[i], i, &o.totals[i].bridge, 20);
        let state = &record[i].last.as_ref().unwrap().1;
        assert!(state.accounts.get(&fake(0).to).is_none(), "validator {i}: the fake's account exists");
        // The liar's attestations are validly signed: nobody is blocked for them.
        assert_eq!(o.totals[i].bridge.items_refused, 0, "validator {i}");
        assert_eq!(o.totals[i].peers_blocked.total(), 0, "validator {i}");
    }
}

#[test]
fn two_thirds_of_stake_lying_credit_a_deposit_that_never_happened() {
    // The documented trust assumption (`bastion_exchange::bridge`, "What stake can do"): the
    // bridge's funds are exactly as safe as 2/3 of stake is honest. With 3 of 4 equal stakes
    // attesting a deposit the source does not hold, nothing on Bastion can tell it from a real
    // one: it is credited. This test pins that the guarantee ends there (and that a quorum of
    // liars also overrides the honest version of a real deposit).
    let seed = seeds(3_000);
    let target = 40;
    let count = 4;
    let (record, publisher) = recorder(4);
    let o = simulate_outcome(Run {
        bridge_feed: Some(feeds(&record, lying_schedule(&[1, 2, 3], count))),
        publisher: Some(publisher),
        ..Run::new(4, seed, link(20, 10, probability!(1.0)), target)
    });
    check(&o.ledgers, target);
    let record = record.lock().unwrap();
    let mut expected: Vec<BridgeDeposit> = (0..count).map(deposit).collect();
    expected[0].amount *= 2;
    expected.push(fake(0));
    for i in 0..4 {
        println!("{}", totals_line(&o, i));
        let credited = credited_on(&record[i], i);
        assert_eq!(credited.len(), expected.len(), "validator {i}: credited {credited:?}");
        for d in &expected {
            assert_eq!(
                credited.get(&d.source_id).map(|c| &c.0),
                Some(d),
                "validator {i}: the liars' content"
            );
        }
        check_final_state(&record[i], i, &expected);
        check_vouchers(&record[i], i, &o.totals[i].bridge, 20);
    }
}

#[test]
fn attestations_of_less_than_two_thirds_of_stake_never_credit() {
    // Validators 0 and 1 see deposit 0 (and attest it); the sources of 2 and 3 are behind and
    // never show it: half the stake attests, the deposit waits, for the whole run.
    let seed = seeds(4_000);
    let target = 40;
    let (record, publisher) = recorder(4);
    let o = simulate_outcome(Run {
        bridge_feed: Some(feeds(&record, |i| if i < 2 { schedule(1, 2, 0) } else { Vec::new() })),
        publisher: Some(publisher),
        run_for: Some(Duration::from_secs(6)),
        ..Run::new(4, seed, link(20, 10, probability!(1.0)), target)
    });
    check(&o.ledgers, target);
    let record = record.lock().unwrap();
    for i in 0..4 {
        println!("{}", totals_line(&o, i));
        assert!(
            credited_on(&record[i], i).is_empty(),
            "validator {i} credited a deposit half the stake attested"
        );
        check_final_state(&record[i], i, &[]);
        check_vouchers(&record[i], i, &o.totals[i].bridge, 20);
        let b = &o.totals[i].bridge;
        assert_eq!(b.deposits_credited, 0, "validator {i}");
        if i < 2 {
            assert_eq!(b.deposits_attested, 1, "validator {i} attested deposit 0");
            // The source moved on while the deposit waited: the lag says so.
            assert!(b.credit_lag_blocks > 0, "validator {i}: no credit lag reported");
        } else {
            assert_eq!(b.deposits_attested, 0, "validator {i} attested what its source did not show");
        }
    }
}

/// The lines of the evidence file in data dir `dir`.
fn evidence_lines(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(bastion_consensus::application::EVIDENCE_FILE))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[test]
fn a_validator_that_attests_two_versions_of_a_deposit_is_caught_with_evidence() {
    // The bridge signs what a validator's source shows, once per source id per run: a
    // validator attests two versions of one deposit only across a restart whose source then
    // shows another. Validator 3 does so: before its crash its source shows deposit 0 at twice
    // its amount (and deposit 1000, which never happened); after its restart, the true
    // deposit 0. Validators 0 and 1 show deposit 0 as it is; 2's source never shows it (it is
    // behind), so deposit 0 is not credited before 3 contradicts itself. Every honest
    // validator keeps 3's first attestation (the lie, which never gathers 2/3 of stake),
    // records the conflict, and writes evidence whose proof verifies. The restarted liar's own
    // pool holds its second attestation (the truth) with 0's and 1's (resent every few
    // seconds): if it leads once it has them, it proposes deposit 0 with those three valid
    // signatures and the truth is credited (whether that happens within the run depends on the
    // seed); the lie never is. Deposit 1, shown by every honest validator, is credited as they
    // show it; 1000 never is.
    let seed = seeds(5_000);
    let target = 40;
    let liar = 3usize;
    let others_reach = 25;
    let (record, publisher) = recorder(4);
    let starts = Arc::new(AtomicUsize::new(0));
    let s = starts.clone();
    let feed = feeds(&record, move |i| {
        let real =
            |d: u64| Scheduled { after_height: 2, deposit: deposit(d), source_height: SOURCE_BASE + d };
        match i {
            0 | 1 => vec![real(0), real(1)],
            2 => vec![real(1)],
            _ => {
                if s.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut lie = real(0);
                    lie.deposit.amount *= 2;
                    vec![lie, Scheduled { after_height: 2, deposit: fake(0), source_height: SOURCE_BASE + 9 }]
                } else {
                    vec![real(0)]
                }
            }
        }
    });
    let dirs = tempfile::tempdir().unwrap();
    let o = simulate_outcome(Run {
        crash: Some(Crash { validator: liar, at: 10, others_reach }),
        byzantine_oracle: Some((liar, Lie::Withhold)),
        bridge_feed: Some(feed),
        publisher: Some(publisher),
        keep_dirs: Some(dirs.path().to_path_buf()),
        ..Run::new(4, seed, link(20, 10, probability!(1.0)), target)
    });
    check(&o.ledgers, target);
    assert_eq!(starts.load(Ordering::SeqCst), 2, "validator {liar} restarted once");
    let record = record.lock().unwrap();
    let state = State::from_genesis(&o.genesis).unwrap();
    let lie = BridgeDeposit { amount: deposit(0).amount * 2, ..deposit(0) };
    for i in 0..4 {
        println!("{}", totals_line(&o, i));
        let credited = credited_on(&record[i], i);
        println!(
            "validator {i}: credited {:?}",
            credited.values().map(|(d, h)| (d.amount, *h)).collect::<Vec<_>>()
        );
        assert!(!credited.contains_key(&fake(0).source_id), "validator {i}: the liar's fake was credited");
        assert_eq!(credited[&deposit(1).source_id].0, deposit(1), "validator {i}: deposit 1");
        // Deposit 0 is credited only as the truth, only once the liar is back (and leads).
        let mut expected = vec![deposit(1)];
        if let Some((zero, at)) = credited.get(&deposit(0).source_id) {
            assert_eq!(zero, &deposit(0), "validator {i}: deposit 0 credited as the lie");
            assert!(
                *at > others_reach,
                "validator {i}: deposit 0 credited at {at}, before the liar's restart"
            );
            expected.push(deposit(0));
        }
        check_final_state(&record[i], i, &expected);
        check_vouchers(&record[i], i, &o.totals[i].bridge, 20);
    }
    let what = format!("{CONFLICTING_ATTESTATION} for source {} by signer {liar}", deposit(0).source_id);
    for i in (0..4).filter(|i| *i != liar) {
        assert_eq!(o.totals[i].bridge.conflicts, 1, "validator {i}: {}", totals_line(&o, i));
        assert!(o.faults[i].contains(&what), "validator {i}: faults {:?}", o.faults[i]);
        let lines = evidence_lines(&dirs.path().join(format!("validator-{i}")));
        let ours: Vec<&String> = lines.iter().filter(|l| l.starts_with(CONFLICTING_ATTESTATION)).collect();
        assert_eq!(ours.len(), 1, "validator {i}: evidence {lines:?}");
        let line = ours[0];
        assert!(line.starts_with(&format!("{what}\tproof ")), "validator {i}: {line}");
        assert!(
            verify_conflicting_attestation(&state, line),
            "validator {i}: the proof does not verify: {line}"
        );
        // The proof is checked, not just decoded: another signer's name, or another chain's
        // validator set, refutes it.
        let renamed = line.replacen(&format!("by signer {liar}"), "by signer 0", 1);
        assert!(!verify_conflicting_attestation(&state, &renamed), "validator {i}: a renamed proof verifies");
        // It holds the two versions: the lie first, then the truth, each signed by the liar.
        let proof = bastion_consensus::spec::from_hex(line.split("\tproof ").nth(1).unwrap()).unwrap();
        let (first, fa, second, sa): (BridgeDeposit, Approval, BridgeDeposit, Approval) =
            postcard::from_bytes(&proof).unwrap();
        assert_eq!((first, second), (lie.clone(), deposit(0)), "validator {i}: the proof's versions");
        assert_eq!((fa.validator.0, sa.validator.0), (liar as u16, liar as u16));
        // The harness's reading of the file verifies it too (sim.rs `read_evidence`).
        assert!(o.evidence[i].iter().any(|(w, ok)| w == &what && *ok), "validator {i}: {:?}", o.evidence[i]);
    }
    assert_eq!(o.totals[liar].bridge.conflicts, 0, "the liar saw no conflict of others");
}
