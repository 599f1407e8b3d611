//! Oracle: index, volatility, settlement and stable prices from validators' observations,
//! and the mark price.
//!
//! # Index
//! Each validator's latest included observation is kept in the state (see `observe`). Each
//! block, per underlying, the observations that are *fresh* (block time minus observation
//! time at most `oracle.observation_max_age_ms`) and carry a price for it are weighed by their
//! validators' stake. If they cover at least 2/3 of all stake, the target is their lower
//! stake-weighted median ([`weighted_median`]: the first price, ascending, at which the
//! cumulative stake reaches half of the reporting stake); a move larger than `max_move_ppm` of
//! the previous index is clamped, and a target farther than `halt_divergence_ppm` halts the
//! underlying's markets until it comes back (dYdX Slinky, Hyperliquid). Without a quorum the
//! index does not move: after `staleness_ms` its markets become reduce-only, after
//! `staleness_halt_ms` halted, until a quorum returns.
//!
//! What this guarantees: while validators holding less than 1/3 of stake lie (any prices,
//! replays, withholding) and a leader picks any quorum-covering subset of fresh observations,
//! an index that moved without clamping lies within the range of the honest validators' fresh
//! observations. The reporting stake R is at least 2/3 of the total T and the liars' stake L
//! is below T/3 <= R/2, so the lower median, the first price where the cumulative stake reaches
//! R/2, can be neither below the lowest nor above the highest honest price. At 1/3 of stake or
//! more it cannot be guaranteed (the property tests find the counterexample). What it does not
//! guarantee: that the honest validators' sources are right, or that a leader includes every
//! honest observation (it may leave some out; the stored ones count until they age out).
//! Execution never refuses a block because its own view of the market differs: judging that
//! is consensus's (and each observer's sources' consistency is `bastion-oracle`'s).
//!
//! # Volatility
//! Per underlying and option expiry (of a listed, unsettled option market), the fresh
//! observations quoting that expiry, with the same 2/3 quorum, give the lower weighted medians
//! of the at-the-money volatility and of the skew, separately. An option of strike `K` on
//! index `S` is marked with `atm + skew * (K - S) / S`, clamped to its market's
//! `volatility_min_ppm..=volatility_max_ppm`; before the first quorum for its expiry, with
//! `volatility_ppm`. Entries of expiries without an unsettled market are dropped.
//!
//! # Settlement
//! An option expiring at `T` settles at the lower weighted median of the fresh stored
//! observations made at or after `T`, in the first block where those cover 2/3 of stake;
//! until then it is halted. The settling block's time, which its leader picks, does not
//! choose the price: any block that sees the same observations settles at the same price.
//!
//! # Stable price
//! Mango v4's guard against a pumped oracle: per underlying a stable price that moves toward
//! the index by at most `stable_move_ppm_per_s` of itself per elapsed second (compounded per
//! block, rounded down). Initial margin and withdrawals value positions at the less
//! favourable of the index-based and the stable-based value (see `margin`), so a profit that
//! a sudden index move shows cannot be withdrawn or borrowed against until the stable price
//! has followed; maintenance margin and liquidation use the index, so losses count at once.
//! The default rate is 500 ppm/s (0.05%/s): a 20 s pump of 10x moves the stable price by at
//! most about 1% (Mango v4's stable_growth_limit is 0.0003/s, 0.03%/s, with a delay buffer);
//! a genuine move of 10% is followed in about 190 s, short enough not to lock honest profits
//! for long, and 1.7x faster than Mango's since our blocks are final at once.
//!
//! # Mark
//! The mark of a perpetual is the median of (index, index + EMA of the book's basis, median of
//! best bid, best ask and last trade), so a thin book alone cannot move it (Hyperliquid).

use crate::num::{R, add, div_ceil, div_floor, mul, mul_div_floor, sub};
use crate::state::{AttestedVol, Market, State};
use bastion_types::{
    Event, MarketKind, MarketStatus, Observation, PPM, Ppm, PriceMicros, Side, UnderlyingId,
};

/// Lower stake-weighted median of `(price, stake)` observations: the smallest price at which
/// the cumulative stake reaches half of the total. `None` when empty.
pub fn weighted_median(obs: &mut [(PriceMicros, u64)]) -> Option<PriceMicros> {
    obs.sort_unstable();
    let total: u128 = obs.iter().map(|(_, s)| u128::from(*s)).sum();
    let mut acc: u128 = 0;
    for (p, s) in obs.iter() {
        acc = acc.saturating_add(u128::from(*s));
        if acc.saturating_mul(2) >= total {
            return Some(*p);
        }
    }
    None
}

/// Whether `reporting` stake is at least 2/3 of `total` (and positive).
pub(crate) fn quorum(reporting: u128, total: u128) -> bool {
    reporting > 0 && reporting.saturating_mul(3) >= total.saturating_mul(2)
}

/// `reporting` as ppm of `total`.
fn stake_ppm(reporting: u128, total: u128) -> Ppm {
    reporting.saturating_mul(1_000_000).checked_div(total).map_or(0, |v| i64::try_from(v).unwrap_or(PPM))
}

/// Volatility of an option of strike `strike` on index `spot` from an attested quote:
/// `atm + skew * (strike - spot) / spot` (rounded down), clamped to `min..=max`.
pub(crate) fn smile_vol(
    v: &AttestedVol,
    spot: PriceMicros,
    strike: PriceMicros,
    min: Ppm,
    max: Ppm,
) -> R<Ppm> {
    if spot <= 0 {
        return Ok(v.atm_ppm.clamp(min, max.max(min)));
    }
    let tilt =
        mul_div_floor(i128::from(v.skew_ppm), sub(i128::from(strike), i128::from(spot))?, i128::from(spot))?;
    let vol = add(i128::from(v.atm_ppm), tilt)?.clamp(i128::from(min), i128::from(max.max(min)));
    crate::num::to_i64(vol)
}

/// The price `o` gives for underlying `u` (prices are ascending by underlying).
fn price_of(o: &Observation, u: UnderlyingId) -> Option<PriceMicros> {
    let i = o.prices.binary_search_by(|(x, _)| x.cmp(&u)).ok()?;
    o.prices.get(i).map(|(_, p)| *p).filter(|p| *p > 0)
}

/// The stable price after moving from `stable` (set at `stable_ms`) toward `index` at `now_ms`:
/// by at most `rate_ppm_per_s` of itself per elapsed second, rounded down; `index` itself when
/// there is no stable price yet.
pub(crate) fn next_stable(
    stable: PriceMicros,
    stable_ms: u64,
    index: PriceMicros,
    now_ms: u64,
    rate_ppm_per_s: Ppm,
) -> R<PriceMicros> {
    if stable <= 0 {
        return Ok(index);
    }
    let dt = i128::from(now_ms.saturating_sub(stable_ms));
    let step = mul_div_floor(mul(i128::from(stable), i128::from(rate_ppm_per_s.max(0)))?, dt, 1_000_000_000)?;
    let lo = sub(i128::from(stable), step)?;
    let hi = add(i128::from(stable), step)?;
    crate::num::to_i64(i128::from(index).clamp(lo, hi))
}

fn median3(a: i128, b: i128, c: i128) -> i128 {
    a.max(b).min(a.min(b).max(c))
}

impl State {
    /// The stored observations fresh at `now_ms`, with their validators' stakes.
    fn fresh_observations(&self, now_ms: u64) -> Vec<(&Observation, u64)> {
        let max_age = self.oracle.observation_max_age_ms;
        self.observations
            .iter()
            .zip(&self.validators)
            .filter_map(|(o, v)| o.as_ref().map(|o| (o, v.stake)))
            .filter(|(o, _)| now_ms.saturating_sub(o.timestamp_ms) <= max_age)
            .collect()
    }

    /// The settlement price of options on `u` expiring at `expiry_ms`, if the fresh stored
    /// observations made at or after the expiry cover 2/3 of stake at `now_ms`: their lower
    /// weighted median.
    pub(crate) fn settlement_price(
        &self,
        u: UnderlyingId,
        expiry_ms: u64,
        now_ms: u64,
    ) -> Option<PriceMicros> {
        let mut obs: Vec<(PriceMicros, u64)> = self
            .fresh_observations(now_ms)
            .into_iter()
            .filter(|(o, _)| o.timestamp_ms >= expiry_ms)
            .filter_map(|(o, stake)| price_of(o, u).map(|p| (p, stake)))
            .collect();
        let reporting: u128 = obs.iter().map(|(_, s)| u128::from(*s)).sum();
        if !quorum(reporting, self.total_stake()) {
            return None;
        }
        weighted_median(&mut obs)
    }

    /// Updates every underlying's index, attested volatilities and stable price from the
    /// fresh stored observations at `now_ms` (see the module documentation).
    pub(crate) fn update_oracle(&mut self, now_ms: u64, events: &mut Vec<Event>) -> R<()> {
        let total_stake = self.total_stake();
        let params = self.oracle;
        // Expiries of unsettled option markets per underlying: the volatilities worth keeping.
        let mut expiries: Vec<Vec<u64>> = vec![Vec::new(); self.underlyings.len()];
        for m in self.markets.values() {
            if let MarketKind::Option { expiry_ms, .. } = m.spec.kind
                && m.status != MarketStatus::Settled
                && let Some(e) = expiries.get_mut(usize::from(m.spec.underlying.0))
            {
                e.push(expiry_ms);
            }
        }
        let mut updates: Vec<(usize, Option<PriceMicros>, Ppm, Vec<AttestedVol>)> = Vec::new();
        {
            let fresh = self.fresh_observations(now_ms);
            for (ui, exp) in expiries.iter_mut().enumerate() {
                let uid = UnderlyingId(u16::try_from(ui).map_err(|_| bastion_types::Reject::Overflow)?);
                let mut obs: Vec<(PriceMicros, u64)> =
                    fresh.iter().filter_map(|(o, stake)| price_of(o, uid).map(|p| (p, *stake))).collect();
                let present: u128 = obs.iter().map(|(_, s)| u128::from(*s)).sum();
                let median = if quorum(present, total_stake) { weighted_median(&mut obs) } else { None };
                if median.is_none() && present > 0 {
                    events.push(Event::OracleMissing {
                        underlying: uid,
                        stake_ppm: stake_ppm(present, total_stake),
                    });
                }
                exp.sort_unstable();
                exp.dedup();
                let Some(u) = self.underlyings.get(ui) else { continue };
                let mut vols: Vec<AttestedVol> = Vec::with_capacity(exp.len());
                for expiry in exp.iter().copied() {
                    let quotes: Vec<(Ppm, Ppm, u64)> = fresh
                        .iter()
                        .filter_map(|(o, stake)| {
                            let i = o
                                .vols
                                .binary_search_by(|q| (q.underlying, q.expiry_ms).cmp(&(uid, expiry)))
                                .ok()?;
                            o.vols.get(i).map(|q| (q.atm_ppm, q.skew_ppm, *stake))
                        })
                        .collect();
                    let reporting: u128 = quotes.iter().map(|(_, _, s)| u128::from(*s)).sum();
                    let previous = u.vols.iter().find(|v| v.expiry_ms == expiry).copied();
                    if quorum(reporting, total_stake) {
                        let mut atm: Vec<(Ppm, u64)> = quotes.iter().map(|(a, _, s)| (*a, *s)).collect();
                        let mut skew: Vec<(Ppm, u64)> = quotes.iter().map(|(_, k, s)| (*k, *s)).collect();
                        if let (Some(atm_ppm), Some(skew_ppm)) =
                            (weighted_median(&mut atm), weighted_median(&mut skew))
                        {
                            vols.push(AttestedVol {
                                expiry_ms: expiry,
                                atm_ppm,
                                skew_ppm,
                                updated_ms: now_ms,
                            });
                            continue;
                        }
                    }
                    vols.extend(previous);
                }
                updates.push((ui, median, stake_ppm(present, total_stake), vols));
            }
        }
        for (ui, median, stake_ppm, vols) in updates {
            let uid = UnderlyingId(u16::try_from(ui).map_err(|_| bastion_types::Reject::Overflow)?);
            let Some(u) = self.underlyings.get_mut(ui) else { continue };
            let mut changed = u.vols != vols;
            u.vols = vols;
            if let Some(median) = median {
                let prev = u.index;
                let (index, clamped, diverged) = if prev <= 0 {
                    (median, false, false)
                } else {
                    let prev128 = i128::from(prev);
                    let dev = sub(i128::from(median), prev128)?.abs();
                    let diverged =
                        mul(dev, i128::from(PPM))? > mul(prev128, i128::from(params.halt_divergence_ppm))?;
                    let max_move = mul_div_floor(prev128, i128::from(params.max_move_ppm), i128::from(PPM))?;
                    let lo = sub(prev128, max_move)?;
                    let hi = add(prev128, max_move)?;
                    let v = i128::from(median).clamp(lo, hi);
                    (
                        i64::try_from(v).map_err(|_| bastion_types::Reject::Overflow)?,
                        v != i128::from(median),
                        diverged,
                    )
                };
                u.diverged = diverged;
                u.updated_ms = now_ms;
                changed = true;
                if index != prev {
                    u.index = index;
                    events.push(Event::Index { underlying: uid, price: index, stake_ppm, clamped });
                }
            }
            if u.index > 0 {
                let stable =
                    next_stable(u.stable, u.stable_ms, u.index, now_ms, params.stable_move_ppm_per_s)?;
                changed |= stable != u.stable || u.stable_ms != now_ms;
                u.stable = stable;
                u.stable_ms = now_ms;
            }
            if changed {
                self.touch(crate::root::RecordKey::Underlying(uid.0));
            }
        }
        Ok(())
    }

    /// Applies the circuit breakers' market states: halted while the underlying's oracle
    /// diverges, while its index is older than `staleness_halt_ms`, and while an expired
    /// option awaits its settlement quorum; reduce-only while the index is older than
    /// `staleness_ms` (or there is none yet).
    pub(crate) fn update_breakers(&mut self, now_ms: u64, events: &mut Vec<Event>) {
        let staleness = self.oracle.staleness_ms;
        let halt = self.oracle.staleness_halt_ms;
        let mut changed = Vec::new();
        for (id, m) in self.markets.iter_mut() {
            if m.status == MarketStatus::Settled {
                continue;
            }
            let Some(u) = self.underlyings.get(usize::from(m.spec.underlying.0)) else { continue };
            let age = now_ms.saturating_sub(u.updated_ms);
            let expired = matches!(m.spec.kind, MarketKind::Option { expiry_ms, .. } if expiry_ms <= now_ms);
            let breaker = if u.diverged || expired || (u.index > 0 && age > halt) {
                MarketStatus::Halted
            } else if u.index <= 0 || age > staleness {
                MarketStatus::ReduceOnly
            } else {
                MarketStatus::Active
            };
            if breaker != m.breaker {
                let before = m.effective_status();
                m.breaker = breaker;
                changed.push(*id);
                if m.effective_status() != before {
                    events.push(Event::Status { market: *id, status: m.effective_status() });
                }
            }
        }
        for id in changed {
            self.touch_market(id);
        }
    }

    /// Recomputes every market's mark price and cached lot values. An option is repriced only
    /// when an input of its price changed (its [`crate::options::MarkKey`]: index, stable
    /// price, volatility, time to expiry, kind, strike); the kept prices are the same bits.
    pub(crate) fn update_marks(&mut self, now_ms: u64) -> R<()> {
        let ids: Vec<_> = self.markets.keys().copied().collect();
        for id in ids {
            let Some(m) = self.markets.get(&id) else { continue };
            let Some(u) = self.underlyings.get(usize::from(m.spec.underlying.0)) else { continue };
            let index = u.index;
            if index <= 0 || m.status == MarketStatus::Settled {
                continue;
            }
            let stable = if u.stable > 0 { u.stable } else { index };
            // An option's price inputs and prices, kept in its memo below.
            let mut priced = None;
            let (mark, stable_mark, vol) = match &m.spec.kind {
                MarketKind::Perpetual => (perp_mark(m, index)?, stable, 0),
                MarketKind::Option { kind, strike, expiry_ms } => {
                    let r = &m.spec.risk;
                    let vol = match u.vols.iter().find(|v| v.expiry_ms == *expiry_ms) {
                        Some(v) => smile_vol(v, index, *strike, r.volatility_min_ppm, r.volatility_max_ppm)?,
                        None => r.volatility_ppm,
                    };
                    let key = crate::options::MarkKey {
                        kind: *kind,
                        strike: *strike,
                        volatility_ppm: vol,
                        ttl_ms: expiry_ms.saturating_sub(now_ms),
                        index,
                        stable,
                    };
                    let prices = match m.memo.marks(&key) {
                        Some(kept) => kept,
                        None => key.price()?,
                    };
                    priced = Some((key, prices));
                    (prices.0, prices.1, vol)
                }
            };
            let lot = i128::from(m.spec.lot_size_nanos);
            let nanos = i128::from(bastion_types::NANOS_PER_UNIT);
            let floor = div_floor(mul(i128::from(mark), lot)?, nanos)?;
            let ceil = div_ceil(mul(i128::from(mark), lot)?, nanos)?;
            let stable_floor = div_floor(mul(i128::from(stable_mark), lot)?, nanos)?;
            let stable_ceil = div_ceil(mul(i128::from(stable_mark), lot)?, nanos)?;
            let mm_tiers = crate::margin::maintenance_tiers(&m.spec.risk.tiers)?;
            let im_tiers = crate::margin::initial_tiers(&m.spec.risk.tiers)?;
            if let Some(m) = self.markets.get_mut(&id) {
                m.mm_tiers = mm_tiers;
                m.im_tiers = im_tiers;
                let changed = m.mark != mark || m.volatility_ppm != vol;
                m.mark = mark;
                m.volatility_ppm = vol;
                m.index_cache = index;
                m.lot_value_floor = floor;
                m.lot_value_ceil = ceil;
                m.stable_lot_floor = stable_floor;
                m.stable_lot_ceil = stable_ceil;
                if let Some((key, prices)) = priced {
                    m.memo.keep_marks(key, prices);
                }
                if changed {
                    self.touch_market(id);
                }
            }
        }
        self.rekey_scenario_rows();
        Ok(())
    }

    /// Folds this block's book price into each perpetual's basis EMA.
    pub(crate) fn update_basis(&mut self) -> R<()> {
        let w = i128::from(self.oracle.basis_ema_ppm.clamp(0, PPM));
        let mut touched = Vec::new();
        for (id, m) in self.markets.iter_mut() {
            if !matches!(m.spec.kind, MarketKind::Perpetual) || m.index_cache <= 0 {
                continue;
            }
            let Some(book) = book_price(m)? else { continue };
            let index = i128::from(m.index_cache);
            let band =
                crate::num::mul_div_floor(index, i128::from(m.spec.risk.price_band_ppm), i128::from(PPM))?;
            let sample = sub(book, index)?.clamp(crate::num::neg(band)?, band);
            let ema = i128::from(m.basis_ema);
            let next = add(ema, crate::num::div_floor(mul(sub(sample, ema)?, w)?, i128::from(PPM))?)?;
            let next = i64::try_from(next).map_err(|_| bastion_types::Reject::Overflow)?;
            if next != m.basis_ema {
                m.basis_ema = next;
                touched.push(*id);
            }
        }
        for id in touched {
            self.touch_market(id);
        }
        Ok(())
    }
}

/// Median of best bid, best ask and last trade, in price micro-units; `None` without both sides.
fn book_price(m: &Market) -> R<Option<i128>> {
    let tick = i128::from(m.spec.tick_size);
    let (Some((bid, _)), Some((ask, _))) = (m.book.best_bid(), m.book.best_ask()) else { return Ok(None) };
    let bid = mul(i128::from(bid), tick)?;
    let ask = mul(i128::from(ask), tick)?;
    let last = match m.last_trade {
        Some(t) => mul(i128::from(t), tick)?,
        None => div_floor(add(bid, ask)?, 2)?,
    };
    Ok(Some(median3(bid, ask, last)))
}

fn perp_mark(m: &Market, index: PriceMicros) -> R<PriceMicros> {
    let index = i128::from(index);
    let with_basis = add(index, i128::from(m.basis_ema))?;
    let book = book_price(m)?.unwrap_or(index);
    i64::try_from(median3(index, with_basis, book)).map_err(|_| bastion_types::Reject::Overflow)
}

/// Average fill price (price micro-units) of an order of `side` for `notional` against the
/// book; `None` when the book is too thin.
pub(crate) fn impact_price(m: &Market, side: Side, notional: i128) -> R<Option<i128>> {
    let qptl = m.quote_per_tick_lot();
    if qptl <= 0 || notional <= 0 {
        return Ok(None);
    }
    let mut remaining = notional;
    let mut lots: i128 = 0;
    for (price, qty) in m.book.levels(side.opposite()) {
        let level_notional = mul(mul(i128::from(price), i128::from(qty))?, qptl)?;
        let per_lot = mul(i128::from(price), qptl)?;
        if level_notional >= remaining {
            lots = add(lots, div_ceil(remaining, per_lot)?)?;
            remaining = 0;
            break;
        }
        lots = add(lots, i128::from(qty))?;
        remaining = sub(remaining, level_notional)?;
    }
    if remaining > 0 || lots == 0 {
        return Ok(None);
    }
    // average price per whole base unit = notional / (lots * lot size)
    let base_nanos = mul(lots, i128::from(m.spec.lot_size_nanos))?;
    Ok(Some(crate::num::mul_div_floor(notional, i128::from(bastion_types::NANOS_PER_UNIT), base_nanos)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_median_respects_stake() {
        let mut obs = vec![(100, 1), (200, 1), (300, 10)];
        assert_eq!(weighted_median(&mut obs), Some(300));
        let mut obs = vec![(300, 1), (100, 1), (200, 1)];
        assert_eq!(weighted_median(&mut obs), Some(200));
        let mut obs = vec![(100, 5), (200, 5)];
        assert_eq!(weighted_median(&mut obs), Some(100), "lower weighted median on a tie");
        assert_eq!(weighted_median(&mut []), None);
        assert_eq!(median3(3, 1, 2), 2);
        assert_eq!(median3(1, 2, 3), 2);
        assert_eq!(median3(2, 3, 1), 2);
    }

    #[test]
    fn weighted_median_vectors_and_quorum() {
        // Stakes 10/20/30 on 100/200/300: half of 60 is reached at 200 (10 + 20 = 30).
        assert_eq!(weighted_median(&mut [(300, 30), (100, 10), (200, 20)]), Some(200));
        // 50/50 on 100/200: the lower weighted median.
        assert_eq!(weighted_median(&mut [(200, 50), (100, 50)]), Some(100));
        // A reporting set of 68% of stake meets the 2/3 quorum, 50% and 66% do not.
        assert!(quorum(68, 100));
        assert!(quorum(2, 3), "exactly 2/3");
        assert!(!quorum(50, 100));
        assert!(!quorum(66, 100));
        assert!(!quorum(0, 0), "no stake reports nothing");
    }

    #[test]
    fn stable_price_moves_at_most_its_rate() {
        // First index: taken as is.
        assert_eq!(next_stable(0, 0, 100_000_000, 5, 500).unwrap(), 100_000_000);
        // 500 ppm/s for 2 s toward a 10x index: +0.1%.
        assert_eq!(next_stable(100_000_000, 1_000, 1_000_000_000, 3_000, 500).unwrap(), 100_100_000);
        // Downward likewise, and an index within reach is reached exactly.
        assert_eq!(next_stable(100_000_000, 0, 1, 1_000, 500).unwrap(), 99_950_000);
        assert_eq!(next_stable(100_000_000, 0, 100_010_000, 1_000, 500).unwrap(), 100_010_000);
        // No time, no move.
        assert_eq!(next_stable(100_000_000, 7, 1, 7, 500).unwrap(), 100_000_000);
    }

    #[test]
    fn the_smile_is_atm_plus_skew_times_moneyness_clamped() {
        let v = AttestedVol { expiry_ms: 1, atm_ppm: 600_000, skew_ppm: -200_000, updated_ms: 0 };
        let s = 100_000_000_000;
        assert_eq!(smile_vol(&v, s, s, 50_000, 5_000_000).unwrap(), 600_000);
        // 10% below the index: 2 points more; 10% above: 2 points less.
        assert_eq!(smile_vol(&v, s, 90_000_000_000, 50_000, 5_000_000).unwrap(), 620_000);
        assert_eq!(smile_vol(&v, s, 110_000_000_000, 50_000, 5_000_000).unwrap(), 580_000);
        // Clamped by the market's bounds.
        assert_eq!(smile_vol(&v, s, s, 700_000, 5_000_000).unwrap(), 700_000);
        assert_eq!(smile_vol(&v, s, s, 50_000, 400_000).unwrap(), 400_000);
    }
}
