//! Option prices kept with their inputs: each option market's mark (and its mark on the stable
//! price) and the portfolio grid's scenario rows are recomputed only when an input changes
//! (index, stable price, volatility, time to expiry, the market's specification). Property: on
//! random paths (index moves within and beyond the clamp, volatility quorums and missing
//! quorums, blocks at the same millisecond and blocks one millisecond to hours apart, options
//! expiring and settling, governance changing an option's volatility parameters, portfolio
//! accounts trading, states reloaded from their image), a state with its price memos and a
//! clone with them off (every price computed at every use) execute every block to the same
//! events, state root, marks, lot values and portfolio figures, and every mark is the direct
//! pricing formula's.
//!
//! Seeded: a failing case prints its seed; `BASTION_SEED=<seed>` replays it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::testkit::{PathKind, Rng, Workload, signed_with};
use bastion_exchange::{DEVNET_VALIDATOR_SEEDS, Genesis, State, option_price, sign_approval};
use bastion_types::*;
use proptest::prelude::*;

const BTC: UnderlyingId = UnderlyingId(0);
const ETH: UnderlyingId = UnderlyingId(1);
const VALIDATORS: u16 = 4;
const TRADERS: u64 = 12;

/// The devnet genesis plus options that expire within the path: BTC at 20 s (a call and a put
/// of one strike, so a pair shares its inputs), BTC at 150 s, and ETH at 60 s and one hour.
fn genesis() -> Genesis {
    let mut g = Genesis::devnet();
    let t0 = g.timestamp_ms;
    let template = g.markets.iter().find(|m| matches!(m.kind, MarketKind::Option { .. })).cloned().unwrap();
    let extra = [
        (BTC, OptionKind::Call, 100_000, 20_000),
        (BTC, OptionKind::Put, 100_000, 20_000),
        (BTC, OptionKind::Call, 97_000, 150_000),
        (ETH, OptionKind::Put, 4_000, 60_000),
        (ETH, OptionKind::Call, 4_200, 3_600_000),
    ];
    for (i, (underlying, kind, strike_usd, expires_in_ms)) in extra.into_iter().enumerate() {
        g.markets.push(MarketSpec {
            id: MarketId(100 + i as u32),
            name: format!("X{i}"),
            underlying,
            kind: MarketKind::Option { kind, strike: strike_usd * 1_000_000, expiry_ms: t0 + expires_in_ms },
            ..template.clone()
        });
    }
    g
}

/// One random path through the exchange.
struct Path {
    rng: Rng,
    w: Workload,
    chain_id: String,
    height: u64,
    time_ms: u64,
    /// The time of the validators' last observations (each must be strictly newer).
    observed_ms: u64,
    prices: [i64; 2],
    /// (atm, skew) the validators quote for every option expiry.
    vol: (i64, i64),
    expiries: Vec<(UnderlyingId, u64)>,
}

impl Path {
    fn new(seed: u64, g: &Genesis) -> Path {
        let w = Workload::new(seed, TRADERS, PathKind::Calm, g);
        Path {
            rng: Rng::new(seed ^ 0x5eed),
            w,
            chain_id: g.chain_id.clone(),
            height: 0,
            time_ms: g.timestamp_ms,
            observed_ms: 0,
            prices: [100_000_000_000, 4_000_000_000],
            vol: (600_000, -100_000),
            expiries: g.option_expiries(),
        }
    }

    /// Every validator's (or, without a quorum, two validators') observation at `t`, with
    /// volatility quotes for every expiry unless `vols` is false.
    fn observations(&mut self, t: u64, quorum: bool, vols: bool) -> Vec<SignedObservation> {
        let validators = if quorum { VALIDATORS } else { 2 };
        (0..validators)
            .map(|v| {
                let noise = self.rng.range(-3, 3);
                let prices = vec![
                    (BTC, self.prices[0] + self.prices[0] / 10_000 * noise),
                    (ETH, self.prices[1] + self.prices[1] / 10_000 * noise),
                ];
                let quotes = if vols {
                    self.expiries
                        .iter()
                        .map(|(underlying, expiry_ms)| VolQuote {
                            underlying: *underlying,
                            expiry_ms: *expiry_ms,
                            atm_ppm: self.vol.0,
                            skew_ppm: self.vol.1,
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                signed_with(&self.chain_id, v, self.height, t, prices, quotes)
            })
            .collect()
    }

    /// A proposal, approved by three of the four validators, that changes option market
    /// `market`'s volatility parameters (the fallback level and the clamp of attested ones).
    fn vol_proposal(&mut self, s: &State, market: MarketId) -> Option<GovernanceProposal> {
        let mut risk = s.markets.get(&market)?.spec.risk.clone();
        risk.volatility_ppm = self.rng.range(50_000, 2_000_000);
        risk.volatility_min_ppm = self.rng.range(10_000, 700_000);
        risk.volatility_max_ppm = risk.volatility_min_ppm + self.rng.range(0, 1_500_000);
        let mut p = GovernanceProposal {
            update: ParamUpdate::Risk { market, risk },
            nonce: s.governance_nonce + 1,
            valid_from: self.height,
            valid_until: self.height,
            approvals: vec![],
        };
        p.approvals = (0..3u16)
            .map(|v| sign_approval(DEVNET_VALIDATOR_SEEDS[usize::from(v)], v, &self.chain_id, &p))
            .collect();
        Some(p)
    }

    /// The next block: time advances by nothing, a millisecond, seconds, minutes or hours;
    /// prices and volatilities move or not; some traders trade.
    fn next_block(&mut self, s: &State, trade: bool) -> Block {
        self.height += 1;
        let dt = match self.rng.below(10) {
            0..=2 => 0,
            3..=4 => self.rng.range(1, 3) as u64,
            5..=6 => self.rng.range(4, 2_000) as u64,
            7..=8 => self.rng.range(2_000, 40_000) as u64,
            _ => self.rng.range(40_000, 4_000_000) as u64,
        };
        self.time_ms += dt;
        let mut block = Block { height: self.height, timestamp_ms: self.time_ms, ..Block::default() };
        // Observations must be strictly newer than the last ones and at most 500 ms ahead of
        // the block: at the same millisecond a few more fit.
        let t_obs = self.observed_ms.max(self.time_ms.saturating_sub(1)) + 1;
        if self.rng.chance(70) && t_obs <= self.time_ms + 400 {
            for (i, p) in self.prices.iter_mut().enumerate() {
                let bp = match self.rng.below(4) {
                    0 => 0,
                    1 => self.rng.range(-3, 3),
                    2 => self.rng.range(-300, 300),
                    // Beyond the oracle's 5% move clamp.
                    _ => self.rng.range(-900, 900),
                };
                *p = (*p + *p / 10_000 * bp).max(if i == 0 { 10_000_000_000 } else { 400_000_000 });
            }
            if self.rng.chance(40) {
                self.vol = (self.rng.range(50_000, 3_500_000), self.rng.range(-400_000, 400_000));
            }
            let quorum = !self.rng.chance(15);
            let vols = !self.rng.chance(20);
            block.oracle = self.observations(t_obs, quorum, vols);
            self.observed_ms = t_obs;
        }
        if self.rng.chance(8) {
            let options: Vec<MarketId> = s
                .markets
                .iter()
                .filter(|(_, m)| matches!(m.spec.kind, MarketKind::Option { .. }))
                .map(|(id, _)| *id)
                .collect();
            let market = options[self.rng.below(options.len() as u64) as usize];
            block.proposals = self.vol_proposal(s, market).into_iter().collect();
        }
        self.w.height = self.height;
        for _ in 0..if trade { self.rng.below(12) } else { 0 } {
            let t = self.rng.range(1, TRADERS as i64) as u64;
            if let Some(tx) = self.w.random_tx(s, t) {
                block.txs.push(tx);
            }
        }
        block
    }
}

/// What must not depend on the memos: every market's mark, volatility and lot values.
fn marks(s: &State) -> Vec<(MarketId, i64, i64, i128, i128, i128, i128)> {
    s.markets
        .iter()
        .map(|(id, m)| {
            (
                *id,
                m.mark,
                m.volatility_ppm,
                m.lot_value_floor,
                m.lot_value_ceil,
                m.stable_lot_floor,
                m.stable_lot_ceil,
            )
        })
        .collect()
}

/// Every account's portfolio grid and cross health.
fn risk(s: &State) -> Vec<String> {
    s.accounts
        .iter()
        .map(|(id, _)| format!("{id}: {:?} {:?}", s.portfolio_loss(*id), s.account_health(*id)))
        .collect()
}

/// Every unsettled option's mark (and lot values on the stable price) is the pricing formula
/// at the current index, stable price, volatility and time to expiry.
fn check_direct(s: &State, seed: u64) {
    for (id, m) in &s.markets {
        let MarketKind::Option { kind, strike, expiry_ms } = m.spec.kind else { continue };
        let u = &s.underlyings[usize::from(m.spec.underlying.0)];
        if m.status == MarketStatus::Settled || u.index <= 0 {
            continue;
        }
        let ttl = expiry_ms.saturating_sub(s.timestamp_ms);
        let mark = option_price(kind, u.index, strike, m.volatility_ppm, ttl).unwrap();
        assert_eq!(
            m.mark, mark,
            "seed {seed} (replay: BASTION_SEED={seed}): market {id} at height {}",
            s.height
        );
        let stable = if u.stable > 0 { u.stable } else { u.index };
        let at_stable = option_price(kind, stable, strike, m.volatility_ppm, ttl).unwrap();
        let floor = (i128::from(at_stable) * i128::from(m.spec.lot_size_nanos)).div_euclid(1_000_000_000);
        assert_eq!(
            m.stable_lot_floor, floor,
            "seed {seed} (replay: BASTION_SEED={seed}): market {id} stable"
        );
    }
}

/// Figures of one path, to show what it exercised.
#[derive(Default, Debug)]
struct Seen {
    blocks: u64,
    same_ms: u64,
    settled: u64,
    applied_updates: u64,
    portfolio_accounts: usize,
}

fn run_path(seed: u64, steps: u64) -> Seen {
    let g = genesis();
    let mut s = State::from_genesis(&g).unwrap();
    let mut p = Path::new(seed, &g);
    let mut seen = Seen::default();
    // Fund the traders and put them on portfolio margin, with the first prices.
    let mut setup = p.next_block(&s, false);
    setup.proposals.clear();
    setup.txs = p.w.funding_txs(1_000_000 * 1_000_000);
    s.apply_block(&setup).unwrap();
    let portfolio: Vec<Tx> = (1..=TRADERS)
        .map(|t| {
            p.w.nonces[t as usize] += 1;
            Tx {
                signer: AccountId(t),
                nonce: p.w.nonces[t as usize],
                action: Action::SetMarginMode { portfolio: t % 3 != 0 },
            }
        })
        .collect();
    let mut b = p.next_block(&s, false);
    b.proposals.clear();
    b.txs = portfolio;
    s.apply_block(&b).unwrap();

    for _ in 0..steps {
        let block = p.next_block(&s, true);
        let mut off = s.clone();
        off.set_price_memos(false);
        let before = s.timestamp_ms;
        let on = s.apply_block(&block);
        let direct = off.apply_block(&block);
        let label = format!("seed {seed} (replay: BASTION_SEED={seed}): block {}", block.height);
        match (&on, &direct) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.events, b.events, "{label}: events");
                assert_eq!(a.root, b.root, "{label}: state root");
                for e in &a.events {
                    match e {
                        Event::Fault { step, reason } => panic!("{label}: fault in {step}: {reason}"),
                        Event::OptionSettled { .. } => seen.settled += 1,
                        Event::ParamsApplied { .. } => seen.applied_updates += 1,
                        _ => {}
                    }
                }
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{label}: refusals"),
            _ => panic!("{label}: with the memos {on:?}, without {direct:?}"),
        }
        if let Err(e) = &on {
            eprintln!("{label}: refused: {e}");
            p.height = s.height;
            // A refused block (a trader's nonce or a stale proposal): the path goes on.
            p.w.nonces =
                (0..=TRADERS).map(|t| s.accounts.get(&AccountId(t)).map_or(0, |a| a.nonce)).collect();
            continue;
        }
        seen.blocks += 1;
        seen.same_ms += u64::from(s.timestamp_ms == before);
        assert_eq!(marks(&s), marks(&off), "{label}: marks");
        // The portfolio figures from the memoized rows, against a copy that computes them.
        let mut direct = s.clone();
        direct.set_price_memos(false);
        assert_eq!(risk(&s), risk(&direct), "{label}: portfolio figures");
        check_direct(&s, seed);
        if p.rng.chance(3) {
            // A state loaded from its image has no memos and goes on identically.
            s = State::from_image_bytes(&s.to_image_bytes().unwrap()).unwrap();
        }
    }
    seen.portfolio_accounts = s.accounts.values().filter(|a| a.portfolio && !a.positions.is_empty()).count();
    seen
}

fn replay_seed() -> Option<u64> {
    std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The memoized marks, lot values, portfolio figures, events and state roots equal those of
    /// a state without memos at every block of a random path, and every mark is the direct
    /// formula's.
    #[test]
    fn memoized_option_prices_equal_the_direct_computation(seed in any::<u64>()) {
        let seed = replay_seed().unwrap_or(seed);
        let seen = run_path(seed, 80);
        println!("seed {seed}: {seen:?}");
        prop_assert!(seen.blocks > 0, "seed {} (replay: BASTION_SEED={}): no block applied", seed, seed);
    }
}

/// One fixed path long enough that the short options expire and settle, traders hold
/// portfolio positions, and blocks repeat a millisecond: the property above then covers those.
#[test]
fn a_fixed_path_expires_options_and_repeats_milliseconds() {
    let seed = replay_seed().unwrap_or(11);
    let seen = run_path(seed, 160);
    println!("seed {seed} (replay: BASTION_SEED={seed}): {seen:?}");
    assert!(seen.settled >= 3, "seed {seed}: {seen:?}");
    assert!(seen.same_ms >= 10, "seed {seed}: {seen:?}");
    assert!(seen.applied_updates >= 1, "seed {seed}: {seen:?}");
    assert!(seen.portfolio_accounts >= 1, "seed {seed}: {seen:?}");
}
