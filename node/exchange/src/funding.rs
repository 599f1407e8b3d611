//! Funding of perpetuals.
//!
//! Every block samples the premium of the impact bid and ask against the index (dYdX):
//! `P = (max(0, impact_bid - index) - max(0, index - impact_ask)) / index`. When the funding
//! interval has passed, the average premium becomes a rate with Hyperliquid's interest
//! adjustment, `F_8h = P + clamp(0.01% - P, -0.05%, +0.05%)`, scaled to the interval and
//! clamped to the market's cap. The rate moves the market's cumulative funding index, and every
//! holder settles against it at once (payers round up, receivers down; the difference, always
//! non-negative, goes to the insurance fund so money is conserved exactly).

use crate::num::{R, add, div_ceil, mul, mul_div_floor, sub};
use crate::root::RecordKey;
use crate::state::{FUNDING_INDEX_SCALE, State};
use bastion_types::{AccountId, Event, MarketKind, MarketStatus, PPM, Ppm, Side};

/// Interest component per 8 hours: 0.01%.
pub const INTEREST_8H_PPM: Ppm = 100;
/// Bound on the interest adjustment per 8 hours: 0.05%.
pub const INTEREST_CLAMP_8H_PPM: Ppm = 500;
const EIGHT_HOURS_MS: i128 = 8 * 3_600_000;

/// Hyperliquid's 8-hour funding rate from the average premium (both in ppm).
pub fn rate_8h(premium_ppm: Ppm) -> Ppm {
    let adj =
        (INTEREST_8H_PPM.saturating_sub(premium_ppm)).clamp(-INTEREST_CLAMP_8H_PPM, INTEREST_CLAMP_8H_PPM);
    premium_ppm.saturating_add(adj)
}

/// The premium sample (ppm) from impact prices and the index; a missing side counts as the
/// index.
pub fn premium_ppm(impact_bid: Option<i128>, impact_ask: Option<i128>, index: i128) -> R<Ppm> {
    if index <= 0 {
        return Ok(0);
    }
    let up = match impact_bid {
        Some(b) => sub(b, index)?.max(0),
        None => 0,
    };
    let down = match impact_ask {
        Some(a) => sub(index, a)?.max(0),
        None => 0,
    };
    crate::num::to_i64(mul_div_floor(sub(up, down)?, i128::from(PPM), index)?)
}

impl State {
    pub(crate) fn sample_premiums(&mut self) -> R<()> {
        let mut touched = Vec::new();
        for (id, m) in self.markets.iter_mut() {
            if !matches!(m.spec.kind, MarketKind::Perpetual)
                || m.index_cache <= 0
                || m.status == MarketStatus::Settled
            {
                continue;
            }
            let bid = crate::oracle::impact_price(m, Side::Sell, m.spec.risk.impact_notional)?;
            let ask = crate::oracle::impact_price(m, Side::Buy, m.spec.risk.impact_notional)?;
            let p = premium_ppm(bid, ask, i128::from(m.index_cache))?;
            m.funding.premium_sum = add(m.funding.premium_sum, i128::from(p))?;
            m.funding.samples = m.funding.samples.saturating_add(1);
            touched.push(*id);
        }
        for id in touched {
            self.touch_market(id);
        }
        Ok(())
    }

    /// Settles funding on every perpetual whose interval has passed.
    pub(crate) fn settle_funding(&mut self, now_ms: u64, events: &mut Vec<Event>) -> R<()> {
        let interval = self.liquidation.funding_interval_ms;
        if interval == 0 {
            return Ok(());
        }
        let due: Vec<_> = self
            .markets
            .iter()
            .filter(|(_, m)| {
                matches!(m.spec.kind, MarketKind::Perpetual)
                    && m.status != MarketStatus::Settled
                    && m.index_cache > 0
                    && now_ms.saturating_sub(m.funding.last_settled_ms) >= interval
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            // One market's failure must not stop the others' settlement.
            if let Err(reason) = self.settle_market_funding(*id, now_ms, interval, events) {
                events.push(Event::Fault { step: format!("funding of {id}"), reason });
            }
        }
        Ok(())
    }

    fn settle_market_funding(
        &mut self,
        id: bastion_types::MarketId,
        now_ms: u64,
        interval: u64,
        events: &mut Vec<Event>,
    ) -> R<()> {
        let Some(m) = self.markets.get_mut(&id) else { return Ok(()) };
        let avg = if m.funding.samples == 0 {
            0
        } else {
            crate::num::to_i64(crate::num::div_trunc(m.funding.premium_sum, i128::from(m.funding.samples))?)?
        };
        let r8 = i128::from(rate_8h(avg));
        let cap = i128::from(m.spec.risk.funding_cap_ppm.max(0));
        let rate = crate::num::to_i64(
            mul_div_floor(r8, i128::from(interval), EIGHT_HOURS_MS)?.clamp(crate::num::neg(cap)?, cap),
        )?;
        // Index delta per lot, scaled: rate * index * lot_size.
        let per_lot = mul_div_floor(
            mul(i128::from(m.index_cache), i128::from(m.spec.lot_size_nanos))?,
            mul(i128::from(rate), FUNDING_INDEX_SCALE)?,
            mul(i128::from(bastion_types::NANOS_PER_UNIT), i128::from(PPM))?,
        )?;
        m.funding.index = add(m.funding.index, per_lot)?;
        m.funding.premium_sum = 0;
        m.funding.samples = 0;
        m.funding.last_settled_ms = now_ms;
        let index = m.funding.index;
        let holders: Vec<AccountId> = m.holders.iter().copied().collect();
        let mut paid_total: i128 = 0;
        for h in holders {
            let Some(acct) = self.accounts.get_mut(&h) else { continue };
            let Some(p) = acct.positions.iter_mut().find(|p| p.market == id) else { continue };
            // Owed by the position, rounded up: payers pay a little more, receivers get a
            // little less.
            let owed =
                div_ceil(mul(i128::from(p.size), sub(index, p.funding_snapshot)?)?, FUNDING_INDEX_SCALE)?;
            p.funding_snapshot = index;
            if p.isolated {
                p.isolated_balance = sub(p.isolated_balance, owed)?;
            } else if let Some(b) = acct.balances.first_mut() {
                *b = sub(*b, owed)?;
            }
            paid_total = add(paid_total, owed)?;
            self.dirty.push(RecordKey::Account(h.0));
        }
        // paid_total >= 0: the rounding dust.
        if let Some(q) = self.assets.first_mut() {
            q.insurance = add(q.insurance, paid_total)?;
        }
        self.touch(RecordKey::Asset(0));
        self.touch_market(id);
        events.push(Event::Funding {
            market: id,
            rate_ppm: rate,
            index_delta: per_lot,
            paid: paid_total,
            dust_to_insurance: paid_total,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperliquid_interest_adjustment() {
        // Premium 1% (10,000 ppm): F = 1% + clamp(0.01% - 1%, -0.05%, 0.05%) = 0.95%.
        assert_eq!(rate_8h(10_000), 9_500);
        // Premium 0: the interest rate, 0.01%.
        assert_eq!(rate_8h(0), 100);
        // Premium -1%: -1% + 0.05% = -0.95%.
        assert_eq!(rate_8h(-10_000), -9_500);
        // Premium 0.03%: within the clamp, F = 0.01%.
        assert_eq!(rate_8h(300), 100);
    }

    #[test]
    fn dydx_premium_from_impact_prices() {
        // index 100, impact bid 101, impact ask 102: premium (1 - 0) / 100 = 1%.
        assert_eq!(premium_ppm(Some(101), Some(102), 100).unwrap(), 10_000);
        // index 100, impact bid 97, impact ask 98: premium (0 - 2) / 100 = -2%.
        assert_eq!(premium_ppm(Some(97), Some(98), 100).unwrap(), -20_000);
        // inside the spread: no premium.
        assert_eq!(premium_ppm(Some(99), Some(101), 100).unwrap(), 0);
    }
}
