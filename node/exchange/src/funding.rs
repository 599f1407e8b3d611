//! Funding of perpetuals.
//!
//! Every block samples the premium of the impact bid and ask against the index (dYdX):
//! `P = (max(0, impact_bid - index) - max(0, index - impact_ask)) / index`. When the funding
//! interval has passed, the average premium becomes a rate with Hyperliquid's interest
//! adjustment, `F_8h = P + clamp(0.01% - P, -0.05%, +0.05%)`, scaled to the interval and
//! clamped to the market's cap. The rate moves the market's cumulative funding index by what
//! one lot held for the whole interval owes, and every holder settles at once for the time it
//! actually held: each position accrues lots x milliseconds (`Position::funding_lot_ms`) on
//! every size change, and pays `ceil(held x per_lot / (scale x interval length))` at the
//! boundary. A position opened in the block that settles pays and collects nothing for that
//! interval, one that closed before it still pays for the time it was open (the accrual stays
//! on the flat position, which stays a holder, until the boundary). Payers round up, receivers
//! down; the difference, always non-negative because the sizes held sum to zero at every
//! instant, goes to the insurance fund so money is conserved exactly. A flat payer whose
//! account can no longer pay pays what it has, and the shortfall is cut from the receivers.

use crate::num::{R, add, div_ceil, mul, mul_div_floor, sub};
use crate::root::RecordKey;
use crate::state::{FUNDING_INDEX_SCALE, Position, State};
use bastion_types::{AccountId, Event, MarketKind, MarketStatus, Micros, PPM, Ppm, Side};

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
        let Some(m) = self.markets.get(&id) else { return Ok(()) };
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
        // Index delta per lot held for the whole interval, scaled: rate * index * lot_size.
        let per_lot = mul_div_floor(
            mul(i128::from(m.index_cache), i128::from(m.spec.lot_size_nanos))?,
            mul(i128::from(rate), FUNDING_INDEX_SCALE)?,
            mul(i128::from(bastion_types::NANOS_PER_UNIT), i128::from(PPM))?,
        )?;
        let start = m.funding.last_settled_ms;
        // The interval that ends now: at least `interval` (> 0) long, as the caller checked.
        let elapsed = now_ms.saturating_sub(start).max(1);
        let den = mul(FUNDING_INDEX_SCALE, i128::from(elapsed))?;
        let index = add(m.funding.index, per_lot)?;
        let holders: Vec<AccountId> = m.holders.iter().copied().collect();
        let period = Period { market: id, start, now: now_ms, per_lot, den, index };
        // First what every holder owes for the time it held, and what it can pay; nothing
        // changes yet. One holder's failure must not stop the others' settlement: its funding
        // for this interval is void (and its accrual restarts), the others' stands.
        let mut dues: Vec<Due> = Vec::with_capacity(holders.len());
        let mut failed: Vec<AccountId> = Vec::new();
        for h in holders {
            match self.funding_due(h, &period) {
                Ok(Some(due)) => dues.push(due),
                Ok(None) => {}
                Err(reason) => {
                    events.push(Event::Fault { step: format!("funding of {id} for {h}"), reason });
                    failed.push(h);
                }
            }
        }
        // A payer that cannot pay in full (a flat position whose account was emptied, or
        // liquidated, before the boundary) pays what it has, and the shortfall is cut from the
        // receivers' payments pro rata: funding moves money between the two sides, and the
        // side a defaulter owed bears its default. The insurance fund is kept for liquidation
        // losses and gets only the rounding, so funding can never drain it.
        let mut shortfall: i128 = 0;
        let mut receipts: i128 = 0;
        for d in &dues {
            shortfall = add(shortfall, sub(d.owed, d.pays)?)?;
            if d.owed < 0 {
                receipts = sub(receipts, d.owed)?;
            }
        }
        // Nothing has changed so far; from here on every failure is one holder's.
        let Some(m) = self.markets.get_mut(&id) else { return Ok(()) };
        m.funding.index = index;
        m.funding.premium_sum = 0;
        m.funding.samples = 0;
        m.funding.last_settled_ms = now_ms;
        let mut paid_total: i128 = 0;
        let mut gone = Vec::new();
        for d in dues {
            let holds = match self.settle_due(&d, &period, shortfall, receipts, paid_total) {
                Ok((holds, cut, total)) => {
                    paid_total = total;
                    if cut > 0 {
                        events.push(Event::Socialized { market: id, account: d.account, amount: cut });
                    }
                    holds
                }
                Err(reason) => {
                    events.push(Event::Fault { step: format!("funding of {id} for {}", d.account), reason });
                    self.reset_holder(d.account, &period)
                }
            };
            if !holds {
                gone.push(d.account);
            }
        }
        for h in failed {
            if !self.reset_holder(h, &period) {
                gone.push(h);
            }
        }
        if let Some(m) = self.markets.get_mut(&id) {
            for h in &gone {
                m.holders.remove(h);
            }
        }
        // paid_total >= 0 (barring a holder's fault): the sizes held sum to zero at every
        // instant, so the exact amounts do over the interval, and each is rounded up; a
        // shortfall is cut from the receivers rounded up, never beyond what they were owed.
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

    /// What holder `h` owes for `period` (negative: is owed), and what it pays of it.
    ///
    /// It owes `ceil(held x per_lot / (FUNDING_INDEX_SCALE x elapsed))`, `held` being the
    /// lots x ms it held during the interval, rounded up: payers pay a little more, receivers
    /// get a little less. One who held its size throughout owes what a whole interval costs,
    /// one who opened in the settling block nothing. An open position pays in full (if that
    /// leaves its margin short, liquidation follows as for any loss). A flat one has nothing
    /// left to liquidate: unless open cross positions stand behind it, it pays at most what
    /// its margin holds, its isolated balance (when isolated) and its cross collateral.
    fn funding_due(&self, h: AccountId, period: &Period) -> R<Option<Due>> {
        let Some(acct) = self.accounts.get(&h) else { return Ok(None) };
        let Some(p) = acct.position(period.market) else { return Ok(None) };
        let held = held_lot_ms(p, period.start, period.now)?;
        let owed = div_ceil(mul(held, period.per_lot)?, period.den)?;
        let mut pays = owed;
        if owed > 0 && p.size == 0 && !acct.positions.iter().any(|q| !q.isolated && q.size != 0) {
            let isolated = if p.isolated { p.isolated_balance.max(0) } else { 0 };
            let cross = self.cross_health(acct, None)?.collateral.max(0);
            pays = owed.min(add(isolated, cross)?);
        }
        Ok(Some(Due { account: h, owed, pays }))
    }

    /// Settles one holder's `due`: its receipt (if it receives) cut by its share of the
    /// `shortfall` of all `receipts`, paid, added to `paid_total`. Returns whether it still
    /// holds, its cut and the new total; changes nothing when it fails.
    fn settle_due(
        &mut self,
        d: &Due,
        period: &Period,
        shortfall: Micros,
        receipts: Micros,
        paid_total: Micros,
    ) -> R<(bool, Micros, Micros)> {
        let cut = if d.owed < 0 && shortfall > 0 && receipts > 0 {
            let receipt = crate::num::neg(d.owed)?;
            crate::num::mul_div_ceil(shortfall, receipt, receipts)?.min(receipt)
        } else {
            0
        };
        let amount = add(d.pays, cut)?;
        let total = add(paid_total, amount)?;
        // The fund takes the total at the end: that addition must not fail after payments.
        add(self.insurance_fund(), total)?;
        let holds = self.pay_funding(d.account, period, amount)?;
        Ok((holds, cut, total))
    }

    /// Holder `h` pays `amount` (negative: receives) for `period` and its accrual restarts.
    /// Returns whether it still holds (a flat position is done with funding once settled).
    /// Changes nothing when it fails.
    fn pay_funding(&mut self, h: AccountId, period: &Period, amount: Micros) -> R<bool> {
        let Some(acct) = self.accounts.get_mut(&h) else { return Ok(false) };
        let Some(p) = acct.position(period.market).copied() else { return Ok(false) };
        let quote = acct.balances.first().copied().unwrap_or(0);
        // Funding is paid from (or to) the balance that margins the position. A flat isolated
        // position has no exposure left to margin: it pays from its isolated balance what that
        // holds and the rest from the cross balance, so that an emptied isolated balance never
        // leaves a debt that no liquidation would look at.
        let (isolated_balance, quote) = if !p.isolated {
            (p.isolated_balance, sub(quote, amount)?)
        } else if p.size != 0 || amount <= 0 {
            (sub(p.isolated_balance, amount)?, quote)
        } else {
            let from_isolated = amount.min(p.isolated_balance.max(0));
            (sub(p.isolated_balance, from_isolated)?, sub(quote, sub(amount, from_isolated)?)?)
        };
        if let Some(b) = acct.balances.first_mut() {
            *b = quote;
        }
        let Some(p) = acct.position_mut(period.market) else { return Ok(false) };
        p.isolated_balance = isolated_balance;
        restart(p, period);
        let holds = p.holds();
        acct.prune();
        self.touch_account(h);
        Ok(holds)
    }

    /// Restarts a holder's accrual without payment (its settlement failed); returns whether it
    /// still holds.
    fn reset_holder(&mut self, h: AccountId, period: &Period) -> bool {
        let Some(acct) = self.accounts.get_mut(&h) else { return false };
        let Some(p) = acct.positions.iter_mut().find(|p| p.market == period.market) else { return false };
        restart(p, period);
        let holds = p.holds();
        acct.prune();
        self.touch_account(h);
        holds
    }
}

/// One holder's funding for an interval: `owed` for the time it held (negative: it is owed),
/// of which it `pays` (less only for a payer that cannot pay in full).
struct Due {
    account: AccountId,
    owed: Micros,
    pays: Micros,
}

/// One market's funding interval being settled.
struct Period {
    market: bastion_types::MarketId,
    /// The interval's start (the previous settlement) and end (this block's time).
    start: u64,
    now: u64,
    /// The index delta of one lot held for the whole interval, scaled.
    per_lot: i128,
    /// `FUNDING_INDEX_SCALE x (now - start)`.
    den: i128,
    /// The market's cumulative index after this settlement.
    index: i128,
}

fn restart(p: &mut Position, period: &Period) {
    p.funding_snapshot = period.index;
    p.funding_lot_ms = 0;
    p.funding_since_ms = period.now;
}

/// Lots x ms that `p` has held from `start` (the market's last funding settlement) until
/// `now`: what it accrued before its last size change plus its current size since then.
pub(crate) fn held_lot_ms(p: &Position, start: u64, now: u64) -> R<i128> {
    let dt = now.saturating_sub(p.funding_since_ms.max(start));
    add(p.funding_lot_ms, mul(i128::from(p.size), i128::from(dt))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A holder whose funding overflows gets a fault of its own; the others settle, and its
    /// accrual restarts.
    #[test]
    fn one_holders_overflow_is_its_own_fault() {
        use bastion_types::{Block, MarketId, UnderlyingId};
        let g = crate::Genesis::devnet();
        let mut s = State::from_genesis(&g).unwrap();
        let t = g.timestamp_ms + 1;
        let prices = [(UnderlyingId(0), 100_000_000_000), (UnderlyingId(1), 4_000_000_000)];
        let oracle = crate::testkit::observe_all(&g.chain_id, 4, 1, t, &prices);
        let block =
            Block { height: 1, timestamp_ms: g.timestamp_ms + 1, oracle, txs: vec![], ..Default::default() };
        s.apply_block(&block).unwrap();
        let market = MarketId(0);
        let start = s.markets[&market].funding.last_settled_ms;
        let hold = |size, lot_ms| crate::state::Account {
            positions: vec![Position {
                market,
                size,
                funding_lot_ms: lot_ms,
                funding_since_ms: start,
                ..Position::default()
            }],
            ..crate::state::Account::default()
        };
        s.accounts.insert(AccountId(1), hold(10, 0));
        s.accounts.insert(AccountId(2), hold(-10, 0));
        s.accounts.insert(AccountId(3), hold(0, i128::MAX / 2));
        s.markets.get_mut(&market).unwrap().holders.extend([AccountId(1), AccountId(2), AccountId(3)]);
        let interval = s.liquidation.funding_interval_ms;
        let mut events = Vec::new();
        s.settle_market_funding(market, start + interval, interval, &mut events).unwrap();
        let faults: Vec<_> = events.iter().filter(|e| matches!(e, Event::Fault { .. })).collect();
        assert_eq!(faults.len(), 1, "{events:?}");
        assert!(
            matches!(faults[0], Event::Fault { step, .. } if step.ends_with(&format!("for {}", AccountId(3)))),
            "{faults:?}"
        );
        // 10 lots of 0.001 BTC at $100,000 ($1,000), 12 ppm: $0.012 each way.
        assert_eq!(s.accounts.get(&AccountId(1)).unwrap().balances[0], -12_000);
        assert_eq!(s.accounts.get(&AccountId(2)).unwrap().balances[0], 12_000);
        assert!(s.accounts.get(&AccountId(3)).unwrap().positions.is_empty());
        assert!(!s.markets[&market].holders.contains(&AccountId(3)));
        assert!(events.contains(&Event::Funding {
            market,
            rate_ppm: 12,
            index_delta: 1_200_000_000,
            paid: 0,
            dust_to_insurance: 0
        }));
    }

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
