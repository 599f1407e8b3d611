//! Oracle index and mark price.
//!
//! The index of an underlying is the stake-weighted median of the validators' observations in
//! the block, accepted only with at least 2/3 of stake present (dYdX Slinky, Hyperliquid). A
//! move larger than `max_move_ppm` in one block is clamped; a median farther than
//! `halt_divergence_ppm` from the previous index halts the underlying's markets until the
//! median comes back. An index older than `staleness_ms` makes its markets reduce-only.
//!
//! The mark of a perpetual is the median of (index, index + EMA of the book's basis, median of
//! best bid, best ask and last trade), so a thin book alone cannot move it (Hyperliquid).

use crate::num::{R, add, div_ceil, div_floor, mul, mul_div_floor, sub};
use crate::state::{Market, State};
use bastion_types::{Block, Event, MarketKind, MarketStatus, PPM, PriceMicros, Side, UnderlyingId};

/// Stake-weighted median of `(price, stake)` observations: the smallest price at which the
/// cumulative stake reaches half of the total. `None` when empty.
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

fn median3(a: i128, b: i128, c: i128) -> i128 {
    a.max(b).min(a.min(b).max(c))
}

impl State {
    pub(crate) fn update_oracle(&mut self, block: &Block, events: &mut Vec<Event>) -> R<()> {
        let total_stake: u128 = self.validators.iter().map(|v| u128::from(v.stake)).sum();
        let params = self.oracle;
        for ui in 0..self.underlyings.len() {
            let uid = UnderlyingId(u16::try_from(ui).map_err(|_| bastion_types::Reject::Overflow)?);
            let mut obs: Vec<(PriceMicros, u64)> = Vec::new();
            let mut seen = vec![false; self.validators.len()];
            for signed in &block.oracle {
                let vote = &signed.observation;
                let vi = usize::from(vote.validator.0);
                let (Some(v), Some(seen_v)) = (self.validators.get(vi), seen.get_mut(vi)) else { continue };
                if *seen_v {
                    continue; // one vote per validator; later duplicates are ignored
                }
                if let Some((_, price)) = vote.prices.iter().find(|(u, p)| *u == uid && *p > 0) {
                    *seen_v = true;
                    obs.push((*price, v.stake));
                }
            }
            let present: u128 = obs.iter().map(|(_, s)| u128::from(*s)).sum();
            let stake_ppm = present
                .saturating_mul(1_000_000)
                .checked_div(total_stake)
                .map_or(0, |v| i64::try_from(v).unwrap_or(PPM));
            let Some(u) = self.underlyings.get_mut(ui) else { continue };
            if obs.is_empty() || present.saturating_mul(3) < total_stake.saturating_mul(2) {
                if !obs.is_empty() {
                    events.push(Event::OracleMissing { underlying: uid, stake_ppm });
                }
                continue;
            }
            let Some(median) = weighted_median(&mut obs) else { continue };
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
            u.updated_ms = block.timestamp_ms;
            if index != prev {
                u.index = index;
                events.push(Event::Index { underlying: uid, price: index, stake_ppm, clamped });
            }
            self.touch(crate::root::RecordKey::Underlying(uid.0));
        }
        Ok(())
    }

    /// Applies the circuit breakers' market states: halted while the underlying's oracle
    /// diverges, reduce-only while it is stale.
    pub(crate) fn update_breakers(&mut self, now_ms: u64, events: &mut Vec<Event>) {
        let staleness = self.oracle.staleness_ms;
        let mut changed = Vec::new();
        for (id, m) in self.markets.iter_mut() {
            if m.status == MarketStatus::Settled {
                continue;
            }
            let Some(u) = self.underlyings.get(usize::from(m.spec.underlying.0)) else { continue };
            let breaker = if u.diverged {
                MarketStatus::Halted
            } else if u.index <= 0 || now_ms.saturating_sub(u.updated_ms) > staleness {
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

    /// Recomputes every market's mark price and cached lot values.
    pub(crate) fn update_marks(&mut self, now_ms: u64) -> R<()> {
        let ids: Vec<_> = self.markets.keys().copied().collect();
        for id in ids {
            let Some(m) = self.markets.get(&id) else { continue };
            let index = self.underlyings.get(usize::from(m.spec.underlying.0)).map(|u| u.index).unwrap_or(0);
            if index <= 0 || m.status == MarketStatus::Settled {
                continue;
            }
            let mark = match &m.spec.kind {
                MarketKind::Perpetual => perp_mark(m, index)?,
                MarketKind::Option { kind, strike, expiry_ms } => crate::options::option_price(
                    *kind,
                    index,
                    *strike,
                    m.spec.risk.volatility_ppm,
                    expiry_ms.saturating_sub(now_ms),
                )?,
            };
            let lot = i128::from(m.spec.lot_size_nanos);
            let nanos = i128::from(bastion_types::NANOS_PER_UNIT);
            let floor = div_floor(mul(i128::from(mark), lot)?, nanos)?;
            let ceil = div_ceil(mul(i128::from(mark), lot)?, nanos)?;
            let mm_tiers = crate::margin::maintenance_tiers(&m.spec.risk.tiers)?;
            let im_tiers = crate::margin::initial_tiers(&m.spec.risk.tiers)?;
            if let Some(m) = self.markets.get_mut(&id) {
                m.mm_tiers = mm_tiers;
                m.im_tiers = im_tiers;
                let changed = m.mark != mark;
                m.mark = mark;
                m.index_cache = index;
                m.lot_value_floor = floor;
                m.lot_value_ceil = ceil;
                if changed {
                    self.touch_market(id);
                }
            }
        }
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
}
