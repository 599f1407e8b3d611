//! Options: marking by Black-Scholes-Merton in fixed point, cash settlement at expiry, and
//! portfolio margin by a scenario grid.
//!
//! Options are marked on the underlying's index with the validators' attested volatility for
//! their expiry and strike (clamped by the market's bounds; the market's `volatility_ppm`
//! before the first attested quorum; see `oracle`), with zero rate and dividend yield (crypto options settle on the index itself, as Deribit marks
//! them against the forward; a rate curve is a later parameter).
//!
//! Portfolio margin (Deribit, Lyra/Derive): for each underlying, every position of the account
//! on it (perpetuals and options) is revalued under spot moves of -16%..+16% in 4% steps times
//! volatility down / same / up, plus extended moves (-66%, -33%, +50%, +100%) with volatility up;
//! the initial requirement is the worst loss, the maintenance requirement a fraction of it.

use crate::margin::Overlay;
use crate::margin::position_value;
use crate::num::{R, add, div_floor, mul, mul_div_ceil, mul_div_floor, sub};
use crate::root::RecordKey;
use crate::state::{Account, State};
use bastion_types::{
    AccountId, DoneReason, Event, MarketId, MarketKind, MarketStatus, Micros, OptionKind, PPM, Ppm,
    PriceMicros, Reject, UnderlyingId,
};

/// Spot shocks of the standard grid.
pub const SPOT_SHOCKS_PPM: [Ppm; 9] =
    [-160_000, -120_000, -80_000, -40_000, 0, 40_000, 80_000, 120_000, 160_000];
/// Relative volatility shocks (down, same, up).
pub const VOL_SHOCKS_PPM: [Ppm; 3] = [-250_000, 0, 250_000];
/// Extended spot moves, evaluated with volatility up only.
pub const EXTENDED_SHOCKS_PPM: [Ppm; 4] = [-660_000, -330_000, 500_000, 1_000_000];

/// Price of one whole unit of an option, quote micro-units, rounded down.
pub fn option_price(
    kind: OptionKind,
    spot: PriceMicros,
    strike: PriceMicros,
    vol_ppm: Ppm,
    time_ms: u64,
) -> R<PriceMicros> {
    let v = bastion_math::option_price_micros(
        matches!(kind, OptionKind::Call),
        spot,
        strike,
        vol_ppm,
        time_ms,
        bastion_math::Rounding::Down,
    )
    .map_err(|_| Reject::Overflow)?;
    crate::num::to_i64(v.max(0))
}

fn intrinsic(kind: OptionKind, spot: PriceMicros, strike: PriceMicros) -> R<i128> {
    let (spot, strike) = (i128::from(spot), i128::from(strike));
    Ok(match kind {
        OptionKind::Call => sub(spot, strike)?.max(0),
        OptionKind::Put => sub(strike, spot)?.max(0),
    })
}

/// Number of scenarios in the portfolio grid: 9 spot moves times 3 volatility moves, plus the 4
/// extended moves.
pub const PORTFOLIO_SCENARIOS: usize = 31;

/// The grid's scenarios as `(spot shock, volatility shock)` in ppm, in grid order: every spot
/// shock of [`SPOT_SHOCKS_PPM`] with every volatility shock of [`VOL_SHOCKS_PPM`], then the
/// [`EXTENDED_SHOCKS_PPM`] with volatility up. The order does not change any result (the
/// requirement is a maximum over scenarios); it fixes the layout of [`crate::PortfolioGrid`].
pub fn portfolio_scenarios() -> [(Ppm, Ppm); PORTFOLIO_SCENARIOS] {
    let mut out = [(0, 0); PORTFOLIO_SCENARIOS];
    let grid = SPOT_SHOCKS_PPM
        .iter()
        .flat_map(|s| VOL_SHOCKS_PPM.iter().map(move |v| (*s, *v)))
        .chain(EXTENDED_SHOCKS_PPM.iter().map(|s| (*s, VOL_SHOCKS_PPM[2])));
    for (slot, sc) in out.iter_mut().zip(grid) {
        *slot = sc;
    }
    out
}

/// The underlying's spot moved by `ds` ppm, rounded down: the spot every option of the
/// underlying is repriced at in that scenario.
pub(crate) fn shocked_spot(spot: PriceMicros, ds: Ppm) -> R<PriceMicros> {
    crate::num::to_i64(mul_div_floor(
        i128::from(spot),
        add(i128::from(PPM), i128::from(ds))?,
        i128::from(PPM),
    )?)
}

/// A market's price in one scenario minus its mark: a perpetual moves its mark by `ds`; an
/// option is repriced at the shocked spot with its volatility moved by `dv`. Depends on the
/// market and the scenario only, never on the account, so a sweep over many accounts computes
/// it once per market (see [`crate::PortfolioGrid`]).
pub(crate) fn scenario_diff(
    m: &crate::state::Market,
    shocked: PriceMicros,
    (ds, dv): (Ppm, Ppm),
    now_ms: u64,
) -> R<i128> {
    let new_price = match &m.spec.kind {
        MarketKind::Perpetual => {
            mul_div_floor(i128::from(m.mark), add(i128::from(PPM), i128::from(ds))?, i128::from(PPM))?
        }
        MarketKind::Option { kind, strike, expiry_ms } => {
            let vol = mul_div_floor(
                i128::from(m.volatility_ppm),
                add(i128::from(PPM), i128::from(dv))?,
                i128::from(PPM),
            )?;
            i128::from(option_price(
                *kind,
                shocked,
                *strike,
                crate::num::to_i64(vol)?,
                expiry_ms.saturating_sub(now_ms),
            )?)
        }
    };
    sub(new_price, i128::from(m.mark))
}

/// One position's profit in a scenario: `floor(diff * size * lot / 1e9)`, the term the grid
/// sums (and the GPU kernel `bk_portfolio_risk` reproduces bit for bit).
pub(crate) fn scenario_pnl(diff: i128, size: i64, lot_size_nanos: i64) -> R<i128> {
    div_floor(
        mul(mul(diff, i128::from(size))?, i128::from(lot_size_nanos))?,
        i128::from(bastion_types::NANOS_PER_UNIT),
    )
}

/// The maintenance requirement from the grid's worst loss: `floor(worst * mm_ppm / PPM)`.
pub(crate) fn portfolio_maintenance(worst_total: Micros, mm_ppm: Ppm) -> R<Micros> {
    mul_div_floor(worst_total, i128::from(mm_ppm), i128::from(PPM))
}

/// Each market's 31 scenario diffs ([`scenario_diff`] at the underlying's shocked spots),
/// computed on first use and kept for one margin sweep: the sweep evaluates many portfolio
/// accounts at the same prices, and repricing an option (Black-Scholes in Q64.64) is the
/// expensive step, the same for every account. A row holds exactly what [`scenario_diff`]
/// returns for each scenario, or `None` when any scenario fails (every account with a non-zero
/// position there fails the same way when evaluated directly), so results do not depend on
/// whether the cache is used.
#[derive(Debug, Default)]
pub(crate) struct ScenarioCache {
    rows: Vec<std::cell::OnceCell<Option<[i128; PORTFOLIO_SCENARIOS]>>>,
}

impl Clone for ScenarioCache {
    /// A fresh, empty cache of the same size (rows are recomputed on demand).
    fn clone(&self) -> Self {
        ScenarioCache::new(self.rows.len())
    }
}

impl ScenarioCache {
    /// An empty cache for market ids below `markets`.
    pub(crate) fn new(markets: usize) -> ScenarioCache {
        ScenarioCache { rows: (0..markets).map(|_| std::cell::OnceCell::new()).collect() }
    }

    /// Market `id`'s row from the cache (computed for all 31 scenarios on first use); `None`
    /// for a market outside the cache (the caller computes directly).
    fn row<'a>(&'a self, state: &State, id: MarketId, m: &crate::state::Market) -> Option<&'a ScenarioRow> {
        let cell = self.rows.get(usize::try_from(id.0).ok()?)?;
        Some(cell.get_or_init(|| scenario_row(state, m)))
    }
}

/// A market's [`scenario_diff`] in every scenario, `None` where any scenario fails.
type ScenarioRow = Option<[i128; PORTFOLIO_SCENARIOS]>;

/// Market `m`'s [`scenario_diff`] in every scenario at its underlying's shocked spots, or `None`
/// when any scenario fails (no index, a shocked spot or a repricing out of range): exactly what
/// the direct evaluation computes for a position there, or where it fails. Taken from the
/// market's [`PriceMemo`] when that holds the row of the current inputs (see [`ScenarioKey`]).
pub(crate) fn scenario_row(state: &State, m: &crate::state::Market) -> ScenarioRow {
    match memo_row(state, m) {
        Some(row) => *row,
        None => compute_scenario_row(state, m),
    }
}

/// [`scenario_row`] computed, without the memo.
fn compute_scenario_row(state: &State, m: &crate::state::Market) -> ScenarioRow {
    let spot = state.underlyings.get(usize::from(m.spec.underlying.0)).map_or(0, |u| u.index);
    if spot <= 0 {
        return None;
    }
    let mut row = [0i128; PORTFOLIO_SCENARIOS];
    for (slot, sc) in row.iter_mut().zip(portfolio_scenarios()) {
        *slot = shocked_spot(spot, sc.0).and_then(|sh| scenario_diff(m, sh, sc, state.timestamp_ms)).ok()?;
    }
    Some(row)
}

/// What an option market's mark and stable-price mark are a pure function of: the arguments of
/// the two [`option_price`] calls in `update_marks`, nothing else. The volatility is the one
/// the market is marked with this block (attested smile or `volatility_ppm`, clamped by the
/// risk parameters: it carries every parameter the volatility reads), and time enters as the
/// time to expiry in whole milliseconds, the quantity the pricer consumes (it becomes a
/// Q64.64 year fraction in which every millisecond is a different value, so there is no
/// coarser time bucket to key on). The rate and dividend yield are constants (zero) of
/// [`bastion_math::option_price_micros`], as is the rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MarkKey {
    pub(crate) kind: OptionKind,
    pub(crate) strike: PriceMicros,
    pub(crate) volatility_ppm: Ppm,
    pub(crate) ttl_ms: u64,
    pub(crate) index: PriceMicros,
    pub(crate) stable: PriceMicros,
}

impl MarkKey {
    /// `(mark, stable-price mark)`: the option priced on the index and on the stable price,
    /// one evaluation when the two prices are equal (the same arguments give the same bits).
    pub(crate) fn price(&self) -> R<(PriceMicros, PriceMicros)> {
        let at = |spot| option_price(self.kind, spot, self.strike, self.volatility_ppm, self.ttl_ms);
        let mark = at(self.index)?;
        let stable = if self.stable == self.index { mark } else { at(self.stable)? };
        Ok((mark, stable))
    }
}

/// The inputs of [`scenario_row`] for one market: the underlying's index (the spot the
/// scenarios shock), the market's mark and volatility, and for an option its kind, strike and
/// time to expiry in milliseconds (see [`MarkKey`]). The shocks are constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScenarioKey {
    spot: PriceMicros,
    mark: PriceMicros,
    volatility_ppm: Ppm,
    option: Option<(OptionKind, PriceMicros, u64)>,
}

impl ScenarioKey {
    /// The current inputs of market `m`'s scenario row in `state`.
    fn of(state: &State, m: &crate::state::Market) -> ScenarioKey {
        let spot = state.underlyings.get(usize::from(m.spec.underlying.0)).map_or(0, |u| u.index);
        let option = match m.spec.kind {
            MarketKind::Option { kind, strike, expiry_ms } => {
                Some((kind, strike, expiry_ms.saturating_sub(state.timestamp_ms)))
            }
            MarketKind::Perpetual => None,
        };
        ScenarioKey { spot, mark: m.mark, volatility_ppm: m.volatility_ppm, option }
    }
}

/// A market's option prices kept with the inputs they were computed from, so that they are
/// recomputed only when an input changes: the mark and stable-price mark (`update_marks`), and
/// the portfolio grid's scenario row, which the liquidation sweeps, every initial-margin check
/// of a portfolio account and the portfolio grid read many times per block at the same prices.
///
/// Not state: never committed, imaged or compared. Each entry is exactly what the direct
/// computation returns for its key, and is used only when the key equals the current inputs,
/// so a state with an empty memo (a fresh listing, a state loaded from an image) or with the
/// memos switched off ([`State::set_price_memos`]) computes the same bits, only slower; a
/// clone (a speculative state) carries its memo, which stays right for the same reason.
/// Bounded: one mark pair and one row (31 values) per market.
#[derive(Clone, Debug, Default)]
pub(crate) struct PriceMemo {
    /// Switched off: nothing is kept, every use computes.
    off: bool,
    mark: Option<(MarkKey, PriceMicros, PriceMicros)>,
    scenario_key: Option<ScenarioKey>,
    /// [`compute_scenario_row`] at `scenario_key`, filled on first use (the sweeps read the
    /// state shared); reset whenever the key changes.
    scenario_row: std::sync::OnceLock<ScenarioRow>,
}

impl PriceMemo {
    /// The kept `(mark, stable-price mark)` when they were computed from `key`.
    pub(crate) fn marks(&self, key: &MarkKey) -> Option<(PriceMicros, PriceMicros)> {
        self.mark.filter(|(k, ..)| k == key).map(|(_, mark, stable)| (mark, stable))
    }

    /// Keeps `(mark, stable-price mark)` as computed from `key` (replacing the previous pair).
    pub(crate) fn keep_marks(&mut self, key: MarkKey, (mark, stable): (PriceMicros, PriceMicros)) {
        if !self.off {
            self.mark = Some((key, mark, stable));
        }
    }

    /// Keys the scenario row on `key`, keeping the row when the key is unchanged.
    fn rekey_scenarios(&mut self, key: ScenarioKey) {
        if !self.off && self.scenario_key != Some(key) {
            self.scenario_key = Some(key);
            self.scenario_row = std::sync::OnceLock::new();
        }
    }
}

/// Market `m`'s scenario row from its memo (computed there on first use) when the memo is
/// keyed on the current inputs; `None` when it is not (the caller computes directly).
fn memo_row<'a>(state: &State, m: &'a crate::state::Market) -> Option<&'a ScenarioRow> {
    let memo = &m.memo;
    (memo.scenario_key == Some(ScenarioKey::of(state, m)))
        .then(|| memo.scenario_row.get_or_init(|| compute_scenario_row(state, m)))
}

impl State {
    /// Keys every market's scenario row on its current inputs (after the marks are set, once
    /// per block); a row whose inputs did not change is kept.
    pub(crate) fn rekey_scenario_rows(&mut self) {
        let keys: Vec<(MarketId, ScenarioKey)> =
            self.markets.iter().map(|(id, m)| (*id, ScenarioKey::of(self, m))).collect();
        for (id, key) in keys {
            if let Some(m) = self.markets.get_mut(&id) {
                m.memo.rekey_scenarios(key);
            }
        }
    }

    /// Switches the listed markets' price memos on (the default) or off, emptying them. Changes
    /// no result: with them off every option price is computed at every use, as the direct
    /// computation; tests compare the two, and benchmarks measure what the memos save. (A
    /// market listed later starts with its memo on.)
    pub fn set_price_memos(&mut self, on: bool) {
        for m in self.markets.values_mut() {
            m.memo = PriceMemo { off: !on, ..PriceMemo::default() };
        }
    }
}

/// The account's cross positions with an optional hypothetical change: `(market, size, resting
/// buys, resting sells)` in position order, the change last when it opens a new market.
fn portfolio_sizes(acct: &Account, overlay: Option<&Overlay>) -> Vec<(MarketId, i64, i64, i64)> {
    let mut sizes: Vec<(MarketId, i64, i64, i64)> = Vec::new();
    for p in acct.positions.iter().filter(|p| !p.isolated) {
        let (s, ob, os, _) = crate::margin::overlaid(p, overlay);
        sizes.push((p.market, s, ob, os));
    }
    if let Some(o) = overlay.filter(|o| !acct.positions.iter().any(|p| p.market == o.market)) {
        sizes.push((o.market, o.dsize, o.dopen_buy, o.dopen_sell));
    }
    sizes
}

/// The scenario grid's worst loss over the account's cross positions, summed over underlyings,
/// and the maintenance requirement derived from it: `(worst loss, maintenance)`. This is the
/// engine's own evaluation, one account at a time; [`crate::PortfolioGrid`] lays the same
/// computation out for many accounts at once (the GPU screen) and must agree with it bit for
/// bit.
pub(crate) fn portfolio_loss(
    state: &State,
    sizes: &[(MarketId, i64, i64, i64)],
    cache: Option<&ScenarioCache>,
) -> R<(Micros, Micros)> {
    let mut underlyings: Vec<UnderlyingId> = Vec::new();
    for (mid, ..) in sizes {
        if let Some(m) = state.markets.get(mid)
            && !underlyings.contains(&m.spec.underlying)
        {
            underlyings.push(m.spec.underlying);
        }
    }
    underlyings.sort();
    let now = state.timestamp_ms;
    let mut worst_total: i128 = 0;
    for u in underlyings {
        let spot = state.underlyings.get(usize::from(u.0)).map(|x| x.index).unwrap_or(0);
        if spot <= 0 {
            return Err(Reject::NoMarkPrice);
        }
        // The positions on this underlying, in the account's order, each with its market's
        // scenario row when one is kept (the sweep's cache, else the market's memo); a row
        // that fails anywhere fails the account, as the direct evaluation does at that
        // scenario (every failure is `Overflow`).
        let held: Vec<(&crate::state::Market, i64, Option<&ScenarioRow>)> = sizes
            .iter()
            .filter_map(|(mid, size, ..)| {
                let m = state.markets.get(mid)?;
                (m.spec.underlying == u && *size != 0).then(|| {
                    let row = cache.and_then(|c| c.row(state, *mid, m)).or_else(|| memo_row(state, m));
                    (m, *size, row)
                })
            })
            .collect();
        let mut worst: i128 = 0;
        for (s, sc) in portfolio_scenarios().into_iter().enumerate() {
            let shocked = shocked_spot(spot, sc.0)?;
            let mut pnl: i128 = 0;
            for (m, size, row) in &held {
                let diff = match row {
                    Some(row) => row.as_ref().and_then(|r| r.get(s).copied()).ok_or(Reject::Overflow)?,
                    None => scenario_diff(m, shocked, sc, now)?,
                };
                pnl = add(pnl, scenario_pnl(diff, *size, m.spec.lot_size_nanos)?)?;
            }
            worst = worst.max(crate::num::neg(pnl)?);
        }
        worst_total = add(worst_total, worst)?;
    }
    Ok((worst_total, portfolio_maintenance(worst_total, state.liquidation.portfolio_mm_ppm)?))
}

/// Portfolio requirements `(initial, maintenance)` of the account's cross positions: the grid's
/// worst loss plus the standard margin on what resting orders add, and the maintenance fraction
/// of the worst loss.
pub(crate) fn portfolio_requirement(
    state: &State,
    acct: &Account,
    overlay: Option<&Overlay>,
    cache: Option<&ScenarioCache>,
) -> R<(Micros, Micros)> {
    let sizes = portfolio_sizes(acct, overlay);
    let (worst_total, mm) = portfolio_loss(state, &sizes, cache)?;
    let mut order_addon: i128 = 0;
    for (mid, size, ob, os) in &sizes {
        if *ob == 0 && *os == 0 {
            continue;
        }
        if let Some(m) = state.markets.get(mid) {
            // Resting orders are margined at the standard rate on the extra exposure they add.
            let (with_orders, _) = crate::margin::position_requirement(m, *size, *ob, *os)?;
            let (without, _) = crate::margin::position_requirement(m, *size, 0, 0)?;
            order_addon = add(order_addon, sub(with_orders, without)?.max(0))?;
        }
    }
    Ok((add(worst_total, order_addon)?, mm))
}

impl State {
    /// The portfolio grid's `(worst loss, maintenance)` of an account's cross positions, as
    /// the engine computes it for portfolio-margined accounts (whatever the account's own
    /// margin mode): `None` for an unknown account, an error when the grid cannot be
    /// evaluated (no index for an underlying, or an overflow).
    pub fn portfolio_loss(&self, id: AccountId) -> Option<R<(Micros, Micros)>> {
        let acct = self.accounts.get(&id)?;
        Some(portfolio_loss(self, &portfolio_sizes(acct, None), None))
    }
}

impl State {
    /// Cash-settles every option market whose expiry has passed, once the fresh observations
    /// made at or after its expiry cover 2/3 of stake, at their lower weighted median (see
    /// `oracle`); until then the market stays halted (the breaker). The price does not depend
    /// on the settling block's time.
    pub(crate) fn settle_expired_options(&mut self, now_ms: u64, events: &mut Vec<Event>) -> R<()> {
        let due: Vec<(MarketId, UnderlyingId, u64)> = self
            .markets
            .iter()
            .filter(|(_, m)| m.status != MarketStatus::Settled)
            .filter_map(|(id, m)| match m.spec.kind {
                MarketKind::Option { expiry_ms, .. } if expiry_ms <= now_ms => {
                    Some((*id, m.spec.underlying, expiry_ms))
                }
                _ => None,
            })
            .collect();
        // One price per (underlying, expiry): every market of the pair settles at it.
        let mut prices: Vec<((UnderlyingId, u64), Option<PriceMicros>)> = Vec::new();
        for (id, u, expiry) in due {
            let price = match prices.iter().find(|(k, _)| *k == (u, expiry)) {
                Some((_, p)) => *p,
                None => {
                    let p = self.settlement_price(u, expiry, now_ms);
                    prices.push(((u, expiry), p));
                    p
                }
            };
            let Some(price) = price else { continue };
            // One market's failure must not stop the others' settlement.
            if let Err(reason) = self.settle_option(id, price, events) {
                events.push(Event::Fault { step: format!("settlement of {id}"), reason });
            }
        }
        Ok(())
    }

    fn settle_option(&mut self, id: MarketId, index: PriceMicros, events: &mut Vec<Event>) -> R<()> {
        let Some(m) = self.markets.get(&id) else { return Ok(()) };
        if index <= 0 {
            return Ok(());
        }
        let MarketKind::Option { kind, strike, .. } = m.spec.kind else { return Ok(()) };
        let payoff = intrinsic(kind, index, strike)?;
        let mark = crate::num::to_i64(payoff)?;
        let lot = i128::from(m.spec.lot_size_nanos);
        // Compute every holder's cash first, so a failure changes nothing. Longs receive the
        // payoff rounded down; shorts pay it rounded up (floor of a negative).
        let mut cash: Vec<(AccountId, Micros)> = Vec::with_capacity(m.holders.len());
        for h in &m.holders {
            let Some(p) = self.accounts.get(h).and_then(|a| a.position(id)) else { continue };
            let c = div_floor(
                mul(mul(i128::from(p.size), payoff)?, lot)?,
                i128::from(bastion_types::NANOS_PER_UNIT),
            )?;
            cash.push((*h, c));
        }
        // A short that cannot pay in full (its collateral would go negative: the price moved
        // past its margin since the last mark) pays what it has; the insurance fund covers the
        // shortfall, and what the fund cannot cover is cut from the winners' payouts pro rata.
        let mut shortfalls: Vec<(AccountId, Micros)> = Vec::new();
        let mut total_shortfall: i128 = 0;
        let mut total_long: i128 = 0;
        for (h, c) in cash.iter_mut() {
            if *c > 0 {
                total_long = add(total_long, *c)?;
                continue;
            }
            let Some(acct) = self.accounts.get(h) else { continue };
            let size = acct.position(id).map_or(0, |p| p.size);
            let after = add(sub(self.cross_health(acct, None)?.collateral, position_value(m, size)?)?, *c)?;
            if after < 0 {
                let shortfall = crate::num::neg(after)?.min(crate::num::neg(*c)?);
                *c = add(*c, shortfall)?;
                total_shortfall = add(total_shortfall, shortfall)?;
                shortfalls.push((*h, shortfall));
            }
        }
        let fund = self.insurance_fund();
        let residual = sub(total_shortfall, total_shortfall.min(fund.max(0)))?;
        let mut cuts: Vec<(AccountId, Micros)> = Vec::new();
        if residual > 0 && total_long > 0 {
            for (h, c) in cash.iter_mut().filter(|(_, c)| *c > 0) {
                let cut = mul_div_ceil(residual, *c, total_long)?.min(*c);
                *c = sub(*c, cut)?;
                cuts.push((*h, cut));
            }
        }
        let mut paid: i128 = 0;
        let mut settlements: Vec<(AccountId, Micros)> = Vec::with_capacity(cash.len());
        for (h, c) in &cash {
            let balance = self.accounts.get(h).and_then(|a| a.balances.first().copied()).unwrap_or(0);
            settlements.push((*h, add(balance, *c)?));
            paid = add(paid, *c)?;
        }
        // The fund pays the net of all settlements: it receives the rounding and pays the
        // shortfalls it covers (never more than it holds: the rest was cut from winners).
        let insurance = sub(fund, paid)?;
        for (account, amount) in shortfalls {
            events.push(Event::InsuranceCovered { account, amount });
        }
        for (account, amount) in cuts {
            events.push(Event::Socialized { market: id, account, amount });
        }
        let Some(m) = self.markets.get_mut(&id) else { return Ok(()) };
        let orders: Vec<(bastion_types::OrderId, AccountId)> =
            m.book.orders().map(|o| (o.id, o.account)).collect();
        for (oid, acct) in &orders {
            m.book.remove(*oid);
            events.push(Event::Done { market: id, order: *oid, account: *acct, reason: DoneReason::Removed });
        }
        m.holders.clear();
        m.open_interest = 0;
        m.status = MarketStatus::Settled;
        m.mark = mark;
        for (oid, acct) in &orders {
            self.dirty.push(RecordKey::Order(id.0, oid.0));
            if let Some(a) = self.accounts.get_mut(acct) {
                if let Some(p) = a.position_mut(id) {
                    p.open_buy = 0;
                    p.open_sell = 0;
                }
                a.prune();
            }
            self.dirty.push(RecordKey::Account(acct.0));
        }
        for (h, balance) in settlements {
            if let Some(a) = self.accounts.get_mut(&h) {
                if let Some(p) = a.position_mut(id) {
                    p.size = 0;
                    p.cost = 0;
                }
                if let Some(b) = a.balances.first_mut() {
                    *b = balance;
                }
                a.prune();
            }
            self.dirty.push(RecordKey::Account(h.0));
        }
        if let Some(q) = self.assets.first_mut() {
            q.insurance = insurance;
        }
        self.touch(RecordKey::Asset(0));
        self.touch_market(id);
        events.push(Event::OptionSettled { market: id, settlement_price: index });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each input of a market's scenario row, changed alone, changes the row read through the
    /// memo: the memo is keyed on every one of them, so it never returns a row of old inputs.
    #[test]
    fn a_memoized_scenario_row_follows_each_of_its_inputs() {
        let s = crate::testkit::portfolio_state(4, 1, 0, false);
        let id = MarketId(4); // BTC-100000-C
        let m = &s.markets[&id];
        let before = scenario_row(&s, m);
        assert!(before.is_some());
        assert_eq!(before, compute_scenario_row(&s, m));
        assert!(m.memo.scenario_row.get().is_some(), "the row is kept after its first use");
        type Change = fn(&mut State, MarketId);
        let changes: [(&str, Change); 5] = [
            ("index", |s, _| s.underlyings[0].index += 1_000_000_000),
            ("time", |s, _| s.timestamp_ms += 60_000),
            ("mark", |s, id| s.markets.get_mut(&id).unwrap().mark += 1),
            ("volatility", |s, id| s.markets.get_mut(&id).unwrap().volatility_ppm += 10_000),
            ("strike", |s, id| {
                if let MarketKind::Option { strike, .. } = &mut s.markets.get_mut(&id).unwrap().spec.kind {
                    *strike += 1_000_000_000;
                }
            }),
        ];
        for (what, change) in changes {
            let mut c = s.clone();
            change(&mut c, id);
            let m = &c.markets[&id];
            let direct = compute_scenario_row(&c, m);
            assert_ne!(direct, before, "{what}: the change must matter");
            assert_eq!(scenario_row(&c, m), direct, "{what}");
            // Re-keyed (as each block does after the marks), the memo serves the new row.
            c.rekey_scenario_rows();
            let m = &c.markets[&id];
            assert_eq!(scenario_row(&c, m), direct, "{what}: re-keyed");
            assert_eq!(m.memo.scenario_row.get().copied(), Some(direct), "{what}: kept");
        }
    }

    /// The mark pair is one evaluation when the stable price equals the index, and the memo
    /// returns a pair only for the key it was computed from.
    #[test]
    fn the_mark_memo_answers_only_its_own_key() {
        let key = MarkKey {
            kind: OptionKind::Put,
            strike: 95_000_000_000,
            volatility_ppm: 550_000,
            ttl_ms: 86_400_000,
            index: 100_000_000_000,
            stable: 100_000_000_000,
        };
        let (mark, stable) = key.price().unwrap();
        assert_eq!(
            mark,
            option_price(key.kind, key.index, key.strike, key.volatility_ppm, key.ttl_ms).unwrap()
        );
        assert_eq!(stable, mark);
        let mut memo = PriceMemo::default();
        assert_eq!(memo.marks(&key), None);
        memo.keep_marks(key, (mark, stable));
        assert_eq!(memo.marks(&key), Some((mark, stable)));
        // Any one input changed: not the kept pair.
        let changed = [
            MarkKey { kind: OptionKind::Call, ..key },
            MarkKey { strike: key.strike + 1, ..key },
            MarkKey { volatility_ppm: key.volatility_ppm + 1, ..key },
            MarkKey { ttl_ms: key.ttl_ms - 1, ..key },
            MarkKey { index: key.index + 1, ..key },
            MarkKey { stable: key.stable + 1, ..key },
        ];
        for other in changed {
            assert_eq!(memo.marks(&other), None, "{other:?}");
        }
        let moved = MarkKey { stable: 99_000_000_000, ..key };
        let (m2, s2) = moved.price().unwrap();
        assert_eq!(
            (m2, s2),
            (mark, option_price(key.kind, 99_000_000_000, key.strike, 550_000, key.ttl_ms).unwrap())
        );
    }
}
