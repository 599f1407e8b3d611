//! A deterministic workload generator: traders, order flow and oracle price paths driven by a
//! seed. Used by the property tests, the perf suites and (later) the devnet load generator, so
//! each exercises the engine with the same kind of flow. Nothing here runs inside consensus.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use crate::{DEVNET_VALIDATOR_SEEDS, Genesis, State, sign_observation};
use bastion_types::{
    AccountId, Action, AssetId, Block, MarketId, MarketKind, Observation, OrderRequest, SelfTradePrevention,
    Side, SignedObservation, TimeInForce, Tx, UnderlyingId, ValidatorIndex, VolQuote,
};

/// Validator `validator`'s observation of `prices` (no volatility) for a block at `height`,
/// made at `timestamp_ms`, signed for chain `chain_id` with its devnet seed
/// ([`DEVNET_VALIDATOR_SEEDS`]; validators beyond the four sign with `[validator as u8; 32]`,
/// see [`validator_seed`]).
pub fn signed(
    chain_id: &str,
    validator: u16,
    height: u64,
    timestamp_ms: u64,
    prices: Vec<(UnderlyingId, i64)>,
) -> SignedObservation {
    signed_with(chain_id, validator, height, timestamp_ms, prices, Vec::new())
}

/// As [`signed`], with volatility quotes.
pub fn signed_with(
    chain_id: &str,
    validator: u16,
    height: u64,
    timestamp_ms: u64,
    prices: Vec<(UnderlyingId, i64)>,
    vols: Vec<VolQuote>,
) -> SignedObservation {
    let observation =
        Observation { validator: ValidatorIndex(validator), height, timestamp_ms, prices, vols };
    sign_observation(validator_seed(validator), chain_id, observation)
}

/// The secret seed test validator `validator` signs with: [`DEVNET_VALIDATOR_SEEDS`] for the
/// first four, `[validator as u8 + 21; 32]` (wrapping) beyond, so a genesis built with
/// [`Genesis::with_validator_seeds`] of `(0..n).map(validator_seed)` matches.
pub fn validator_seed(validator: u16) -> [u8; 32] {
    match DEVNET_VALIDATOR_SEEDS.get(usize::from(validator)) {
        Some(s) => *s,
        None => [(validator as u8).wrapping_add(21); 32],
    }
}

/// The seeds of test validators `0..n` ([`validator_seed`]), for [`Genesis::with_validator_seeds`].
pub fn validator_seeds(n: u16) -> Vec<[u8; 32]> {
    (0..n).map(validator_seed).collect()
}

/// Every one of `validators` validators' observations of `prices` for a block at `height`,
/// made at `timestamp_ms`, signed ([`signed`]), ascending by validator: what a block carries
/// when every validator agrees.
pub fn observe_all(
    chain_id: &str,
    validators: u16,
    height: u64,
    timestamp_ms: u64,
    prices: &[(UnderlyingId, i64)],
) -> Vec<SignedObservation> {
    (0..validators).map(|v| signed(chain_id, v, height, timestamp_ms, prices.to_vec())).collect()
}

/// Every one of `validators` validators' signed observation of `path` at `t_ms`, for a block at
/// `height` (all alike; see [`observe_all`]).
pub fn path_observations(
    path: &crate::scenario::PricePath,
    chain_id: &str,
    height: u64,
    t_ms: u64,
    validators: u16,
) -> Vec<SignedObservation> {
    let prices: Vec<(UnderlyingId, i64)> = (0..path.start.len())
        .filter_map(|u| Some((UnderlyingId(u16::try_from(u).ok()?), path.price(u, t_ms)?)))
        .collect();
    observe_all(chain_id, validators, height, t_ms, &prices)
}

/// SplitMix64: tiny, fast, and identical on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = hi.abs_diff(lo).saturating_add(1);
        lo.saturating_add_unsigned(self.below(span))
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// One step of an index price path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Random walk with small steps.
    Calm,
    /// Random walk, then a 30% drop over `crash_blocks` blocks at `crash_at`, then recovery.
    FlashCrash { crash_at: u64, crash_blocks: u64 },
}

/// A seeded market simulation around the devnet genesis.
#[derive(Debug)]
pub struct Workload {
    /// Random source.
    pub rng: Rng,
    /// Trader accounts (1..=traders).
    pub traders: u64,
    /// Last nonce used per trader (index 0 is the authority): the next transaction of each
    /// takes the next one, so the workload's blocks carry strictly sequential nonces, as
    /// blocks must (see [`State::check_txs`]). Set it from the state when resuming.
    pub nonces: Vec<u64>,
    /// Current "true" price per underlying, in price micro-units.
    pub prices: Vec<i64>,
    /// Price path.
    pub path: PathKind,
    /// Block interval in ms.
    pub block_ms: u64,
    /// Next block height.
    pub height: u64,
    /// Next block timestamp.
    pub time_ms: u64,
    /// Start prices (for crash recovery).
    pub start_prices: Vec<i64>,
    /// Account ids: index 0 is the authority, index `t` is trader `t`. Defaults to
    /// `AccountId(i)`; see [`Workload::with_ids`].
    pub ids: Vec<AccountId>,
    /// The chain id observations are signed for (the genesis's).
    pub chain_id: String,
    /// How many validators observe in every block (the genesis's, at most 65535); each signs
    /// with [`validator_seed`], so the genesis must carry those keys (the devnet's do).
    pub validators: u16,
    /// The genesis's option expiries per underlying, ascending: each validator quotes a
    /// volatility (about 60% at the money, -10 points of skew per unit of moneyness) for each.
    pub vol_expiries: Vec<(UnderlyingId, u64)>,
}

impl Workload {
    /// A workload of `traders` accounts on the devnet genesis.
    pub fn new(seed: u64, traders: u64, path: PathKind, genesis: &Genesis) -> Self {
        Workload {
            rng: Rng::new(seed),
            traders,
            nonces: vec![0; usize::try_from(traders).unwrap_or(0).saturating_add(1)],
            prices: vec![100_000_000_000, 4_000_000_000],
            path,
            block_ms: 250,
            height: 1,
            time_ms: genesis.timestamp_ms.saturating_add(250),
            start_prices: vec![100_000_000_000, 4_000_000_000],
            ids: (0..=traders).map(AccountId).collect(),
            chain_id: genesis.chain_id.clone(),
            validators: u16::try_from(genesis.validator_stakes.len()).unwrap_or(u16::MAX),
            vol_expiries: genesis.option_expiries(),
        }
    }

    /// The same workload with the given account ids: `ids[0]` is the authority (it must be the
    /// genesis authority for the funding deposits to be accepted) and `ids[t]` is trader `t`.
    /// `ids` must hold exactly `traders + 1` entries; otherwise it is ignored and the default
    /// `AccountId(i)` ids are kept.
    pub fn with_ids(mut self, ids: Vec<AccountId>) -> Self {
        if u64::try_from(ids.len()).ok() == self.traders.checked_add(1) {
            self.ids = ids;
        }
        self
    }

    /// The account id of the authority (index 0) or trader `index`; `AccountId(index)` when the
    /// index is out of range.
    pub fn id(&self, index: u64) -> AccountId {
        usize::try_from(index).ok().and_then(|i| self.ids.get(i)).copied().unwrap_or(AccountId(index))
    }

    /// Which trader (`1..=traders`) owns account `id`, if any (the authority is not a trader).
    pub fn trader_of(&self, id: AccountId) -> Option<u64> {
        let i = self.ids.iter().skip(1).position(|a| *a == id)?;
        u64::try_from(i).ok().map(|i| i + 1)
    }

    fn nonce(&mut self, account: u64) -> u64 {
        let i = usize::try_from(account).unwrap_or(0);
        if let Some(n) = self.nonces.get_mut(i) {
            *n = n.saturating_add(1);
            *n
        } else {
            1
        }
    }

    fn oracle(&mut self) -> Vec<SignedObservation> {
        let h = self.height;
        for (i, p) in self.prices.iter_mut().enumerate() {
            let start = self.start_prices.get(i).copied().unwrap_or(*p);
            match self.path {
                PathKind::FlashCrash { crash_at, crash_blocks }
                    if h >= crash_at && h < crash_at + crash_blocks =>
                {
                    // 30% down spread over the crash blocks (compounded per block).
                    let target = start.saturating_mul(7) / 10;
                    let step = (start - target) / i64::try_from(crash_blocks.max(1)).unwrap_or(1);
                    *p = (*p - step).max(target);
                }
                PathKind::FlashCrash { crash_at, crash_blocks } if h >= crash_at + crash_blocks => {
                    // Recover towards the start over time.
                    *p += (start - *p) / 20;
                }
                _ => {
                    let bp = self.rng.range(-20, 20); // +-0.2% per block
                    *p = p.saturating_add(p.saturating_mul(bp) / 10_000).max(1_000_000);
                }
            }
        }
        let mut out = Vec::new();
        for v in 0..self.validators {
            let prices = self
                .prices
                .iter()
                .enumerate()
                .map(|(u, p)| {
                    let noise = self.rng.range(-5, 5); // +-0.05% between validators
                    (
                        UnderlyingId(u16::try_from(u).unwrap_or(0)),
                        p.saturating_add(p.saturating_mul(noise) / 10_000),
                    )
                })
                .collect();
            let vols = self
                .vol_expiries
                .iter()
                .map(|(underlying, expiry_ms)| VolQuote {
                    underlying: *underlying,
                    expiry_ms: *expiry_ms,
                    atm_ppm: 600_000 + self.rng.range(-20_000, 20_000),
                    skew_ppm: -100_000 + self.rng.range(-10_000, 10_000),
                })
                .collect();
            out.push(signed_with(&self.chain_id, v, self.height, self.time_ms, prices, vols));
        }
        out
    }

    /// Deposits for every trader (authority-signed), as one block's transactions.
    pub fn funding_txs(&mut self, usdc_each: i128) -> Vec<Tx> {
        let mut txs = Vec::new();
        for t in 1..=self.traders {
            let authority = self.id(0);
            let to = self.id(t);
            let nonce = self.nonce(0);
            let amount = usdc_each.saturating_mul(i128::from(self.rng.range(1, 10)));
            txs.push(Tx {
                signer: authority,
                nonce,
                action: Action::Deposit { to, asset: AssetId(0), amount },
            });
            if self.rng.chance(20) {
                let nonce = self.nonce(0);
                txs.push(Tx {
                    signer: authority,
                    nonce,
                    action: Action::Deposit { to, asset: AssetId(1), amount: 100_000 },
                });
            }
        }
        txs
    }

    /// A random order for `trader` near the state's mark on a random listed market.
    pub fn random_tx(&mut self, state: &State, trader: u64) -> Option<Tx> {
        let markets: Vec<MarketId> = state.markets.keys().copied().collect();
        let market = *markets.get(usize::try_from(self.rng.below(markets.len() as u64)).unwrap_or(0))?;
        let m = state.markets.get(&market)?;
        if m.mark <= 0 {
            return None;
        }
        let mark_ticks = m.mark / m.spec.tick_size.max(1);
        let is_option = matches!(m.spec.kind, MarketKind::Option { .. });
        let roll = self.rng.below(100);
        let signer = self.id(trader);
        let action = if roll < 8 {
            // cancel or replace one of the trader's orders
            let mine: Vec<_> = m.book.orders().filter(|o| o.account == signer).map(|o| o.id).collect();
            let order = *mine.get(usize::try_from(self.rng.below(mine.len() as u64)).unwrap_or(0))?;
            if self.rng.chance(50) {
                Action::Cancel { market, order }
            } else {
                let price = (mark_ticks + self.rng.range(-mark_ticks / 100, mark_ticks / 100)).max(1);
                Action::Replace { market, order, price, qty: self.rng.range(1, 50) }
            }
        } else if roll < 10 {
            Action::Withdraw { asset: AssetId(0), amount: i128::from(self.rng.range(1, 2_000)) * 1_000_000 }
        } else if roll < 11 {
            Action::SetMarginMode { portfolio: self.rng.chance(50) }
        } else if roll < 12 && !is_option {
            Action::SetIsolated { market, isolated: self.rng.chance(50) }
        } else if roll < 13 && !is_option {
            let amount = i128::from(self.rng.range(-5_000, 20_000)) * 1_000_000;
            Action::TransferIsolated { market, amount }
        } else {
            let side = if self.rng.chance(50) { Side::Buy } else { Side::Sell };
            let spread = if is_option { mark_ticks / 10 + 2 } else { mark_ticks / 200 + 2 };
            let price = (mark_ticks + side.sign() * -self.rng.range(-spread / 4, spread)).max(1);
            let tif = match self.rng.below(10) {
                0 => TimeInForce::Ioc,
                1 => TimeInForce::Fok,
                2 => TimeInForce::PostOnly,
                _ => TimeInForce::Gtc,
            };
            let pos =
                state.accounts.get(&signer).and_then(|a| a.position(market)).map(|p| p.size).unwrap_or(0);
            let reduce_only =
                pos != 0 && self.rng.chance(5) && matches!(tif, TimeInForce::Ioc | TimeInForce::Fok);
            let side = if reduce_only { if pos > 0 { Side::Sell } else { Side::Buy } } else { side };
            Action::Place(OrderRequest {
                market,
                side,
                price: if self.rng.chance(3) { None } else { Some(price) },
                qty: self.rng.range(1, if is_option { 20 } else { 200 }),
                tif,
                reduce_only,
                good_til_height: if self.rng.chance(20) {
                    Some(self.height + self.rng.below(20))
                } else {
                    None
                },
                stp: SelfTradePrevention::CancelResting,
            })
        };
        let nonce = self.nonce(trader);
        Some(Tx { signer, nonce, action })
    }

    /// The next block with up to `txs_per_block` random transactions against `state`, signed
    /// only by traders whose account exists in `state`.
    pub fn next_block(&mut self, state: &State, txs_per_block: usize) -> Block {
        let oracle = self.oracle();
        let mut txs = Vec::with_capacity(txs_per_block);
        for _ in 0..txs_per_block {
            let t = self.rng.range(1, i64::try_from(self.traders).unwrap_or(1));
            let t = u64::try_from(t).unwrap_or(1);
            // Only existing accounts may sign (a block with any other is refused whole).
            if !state.accounts.contains_key(&self.id(t)) {
                continue;
            }
            if let Some(tx) = self.random_tx(state, t) {
                txs.push(tx);
            }
        }
        self.block(oracle, txs)
    }

    /// A block with the given transactions and the next oracle observations.
    pub fn block_with(&mut self, txs: Vec<Tx>) -> Block {
        let oracle = self.oracle();
        self.block(oracle, txs)
    }

    fn block(&mut self, oracle: Vec<SignedObservation>, txs: Vec<Tx>) -> Block {
        let b = Block { height: self.height, timestamp_ms: self.time_ms, oracle, txs, ..Block::default() };
        self.height += 1;
        self.time_ms += self.block_ms;
        b
    }
}

/// Options and portfolio-margined accounts for the risk screen: the devnet's markets plus
/// `extra_strikes` more BTC strikes (a call and a put each, 30-day), indexed at BTC $100,000 and
/// ETH $4,000 and then moved 4% down in a second block, so marks are "after a price move".
/// Then `accounts` portfolio accounts (ids 1..=accounts) are written in directly, each with 1
/// to 8 cross positions on random markets: sizes of up to ±200 lots, some zero (resting
/// orders only), some isolated. With `extremes`, about one account in 50 gets a size near the
/// 64-bit limit, so the grid's overflow checks are exercised. Positions are written, not
/// traded: open interest and holders are not maintained, and the state serves margin
/// evaluation only.
pub fn portfolio_state(accounts: u64, seed: u64, extra_strikes: usize, extremes: bool) -> State {
    let mut g = Genesis::devnet();
    let template = g.markets.iter().find_map(|m| match m.kind {
        MarketKind::Option { expiry_ms, .. } => Some((m.clone(), expiry_ms)),
        MarketKind::Perpetual => None,
    });
    if let Some((t, expiry_ms)) = template {
        let mut next = g.markets.iter().map(|m| m.id.0).max().unwrap_or(0) + 1;
        for i in 0..extra_strikes {
            let strike = 60_000_000_000i64 + (i as i64) * 2_500_000_000; // $60k + $2.5k steps
            for kind in [bastion_types::OptionKind::Call, bastion_types::OptionKind::Put] {
                g.markets.push(bastion_types::MarketSpec {
                    id: MarketId(next),
                    name: format!("BTC-X{i}-{kind:?}"),
                    kind: MarketKind::Option { kind, strike, expiry_ms },
                    ..t.clone()
                });
                next += 1;
            }
        }
    }
    let mut state = match State::from_genesis(&g) {
        Ok(s) => s,
        Err(e) => panic!("portfolio_state genesis: {e:?}"),
    };
    for (h, (btc, eth)) in
        [(100_000_000_000, 4_000_000_000), (96_000_000_000, 3_840_000_000)].into_iter().enumerate()
    {
        let (height, t) = (h as u64 + 1, g.timestamp_ms + 250 * (h as u64 + 1));
        let n = u16::try_from(g.validator_stakes.len()).unwrap_or(u16::MAX);
        let block = Block {
            height,
            timestamp_ms: t,
            oracle: observe_all(&g.chain_id, n, height, t, &[(UnderlyingId(0), btc), (UnderlyingId(1), eth)]),
            txs: Vec::new(),
            ..Block::default()
        };
        if let Err(e) = state.apply_block(&block) {
            panic!("portfolio_state oracle block: {e:?}");
        }
    }
    let ids: Vec<MarketId> = state.markets.keys().copied().collect();
    let mut rng = Rng::new(seed);
    for a in 1..=accounts {
        let mut acct = crate::Account { portfolio: true, ..crate::Account::default() };
        acct.balances[0] = i128::from(rng.range(10_000, 1_000_000)) * 1_000_000;
        let n = rng.range(1, 8) as usize;
        let mut picked: Vec<MarketId> = (0..n).map(|_| ids[rng.below(ids.len() as u64) as usize]).collect();
        picked.sort();
        picked.dedup();
        for market in picked {
            let mut size = if rng.chance(10) { 0 } else { rng.range(-200, 200) };
            if extremes && rng.chance(2) {
                size = if rng.chance(50) {
                    i64::MAX - rng.range(0, 1_000)
                } else {
                    i64::MIN + rng.range(0, 1_000)
                };
            }
            acct.positions.push(crate::Position {
                market,
                size,
                open_buy: if size == 0 { rng.range(1, 20) } else { 0 },
                isolated: rng.chance(5),
                ..crate::Position::default()
            });
        }
        state.accounts.insert(AccountId(a), acct);
    }
    state.refresh_all_risk_rows();
    state
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use bastion_types::Event;

    #[test]
    fn default_ids_are_the_indices() {
        let g = Genesis::devnet();
        let w = Workload::new(1, 5, PathKind::Calm, &g);
        assert_eq!(w.ids, (0..=5).map(AccountId).collect::<Vec<_>>());
        assert_eq!(w.trader_of(AccountId(3)), Some(3));
        assert_eq!(w.trader_of(AccountId(0)), None, "the authority is not a trader");
        assert_eq!(w.trader_of(AccountId(6)), None);
        assert_eq!(w.id(9), AccountId(9), "out of range falls back to the index");
    }

    #[test]
    fn blocks_are_includable_and_unfunded_traders_sign_nothing() {
        let g = Genesis::devnet();
        let mut state = State::from_genesis(&g).unwrap();
        let mut w = Workload::new(11, 6, PathKind::Calm, &g);
        // No trader has an account yet: a block of their transactions would be refused whole.
        let block = w.next_block(&state, 30);
        assert!(block.txs.is_empty(), "{:?}", block.txs);
        state.apply_block(&block).unwrap();
        let txs = w.funding_txs(10_000_000_000);
        state.apply_block(&w.block_with(txs)).unwrap();
        for _ in 0..40 {
            let block = w.next_block(&state, 25);
            assert_eq!(state.check_txs(&block.txs), Ok(()));
            state.apply_block(&block).unwrap();
        }
        for t in 1..=6 {
            assert_eq!(state.accounts.get(&w.id(t)).unwrap().nonce, w.nonces[t as usize]);
        }
    }

    #[test]
    fn with_ids_of_the_wrong_length_keeps_the_defaults() {
        let g = Genesis::devnet();
        let w = Workload::new(1, 3, PathKind::Calm, &g).with_ids(vec![AccountId(7); 3]);
        assert_eq!(w.ids, (0..=3).map(AccountId).collect::<Vec<_>>());
    }

    #[test]
    fn custom_ids_sign_and_receive_everything() {
        let ids: Vec<AccountId> = (0..=4u64).map(|i| AccountId(0xF00D_0000 + i * 977)).collect();
        let g = Genesis::devnet().with_authority(ids[0]);
        let mut state = State::from_genesis(&g).unwrap();
        let mut w = Workload::new(3, 4, PathKind::Calm, &g).with_ids(ids.clone());
        assert_eq!(w.trader_of(ids[2]), Some(2));
        let txs = w.funding_txs(50_000_000_000);
        assert!(txs.iter().all(|tx| tx.signer == ids[0]));
        let block = w.block_with(txs);
        let out = state.apply_block(&block).unwrap();
        assert!(!out.events.iter().any(|e| matches!(e, Event::Rejected { .. })), "{:?}", out.events);
        for id in &ids[1..] {
            assert!(state.accounts.get(id).is_some_and(|a| a.balances[0] > 0), "{id} funded");
        }
        let mut fills = 0;
        for _ in 0..30 {
            let block = w.next_block(&state, 20);
            assert!(block.txs.iter().all(|tx| ids[1..].contains(&tx.signer)));
            let out = state.apply_block(&block).unwrap();
            fills += out.events.iter().filter(|e| matches!(e, Event::Fill { .. })).count();
            state.check_invariants().unwrap();
        }
        assert!(fills > 0, "the custom accounts trade");
        assert!(state.accounts.get(&AccountId(1)).is_none(), "no default id was used");
    }
}
