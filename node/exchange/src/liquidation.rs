//! Liquidation, the insurance fund and auto-deleveraging.
//!
//! Each block, every account (or isolated position) whose collateral is below maintenance is
//! liquidated: its resting orders are cancelled, then positions are closed, largest
//! maintenance requirement first, by IOC orders against the book at the fillable price
//! (dYdX v4) bounded by the bankruptcy price, in slices capped per block. The insurance fund
//! takes a fee from any surplus over the bankruptcy value and pays any shortfall. When the fund
//! cannot cover the worst case, the position is instead closed against opposite positions at
//! the bankruptcy price, ranked by profit and leverage (auto-deleveraging, as Hyperliquid
//! ranks). An account left with no positions and negative collateral is made whole by the fund,
//! so no negative account survives a block.

use crate::margin::Health;
use crate::num::{PPM_SQUARED, R, abs, add, div_ceil, div_floor, mul, mul_div_ceil, mul_div_floor, neg, sub};
use crate::root::RecordKey;
use crate::state::{Position, State};
use crate::trade::{Origin, liquidation_order};
use bastion_types::{
    AccountId, DoneReason, Event, Lots, MarketId, MarketStatus, Micros, OrderId, PPM, Ppm, Reject, Side,
};

/// Deleveraging rankings computed in this block, per (market, sign of the counterparties).
/// The value keeps a cursor: counterparties before it are exhausted for this block.
type AdlRanks = std::collections::BTreeMap<(MarketId, i64), (Vec<AccountId>, usize)>;

/// Which collateral pool is being liquidated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    Cross,
    Isolated(MarketId),
}

/// Drift's partial liquidation size: the base amount whose sale restores the margin shortage,
/// `shortage / (P * q * (MR - liq_fee) - P * q * if_fee)` with `q` the quote asset's price.
/// Returns base nano-units, rounded up (liquidate enough).
pub fn liquidation_base_nanos(
    shortage: Micros,
    price: i64,
    maintenance_ppm: Ppm,
    liquidator_fee_ppm: Ppm,
    insurance_fee_ppm: Ppm,
    quote_price_ppm: Ppm,
) -> R<i128> {
    let rate = sub(
        sub(i128::from(maintenance_ppm), i128::from(liquidator_fee_ppm))?,
        i128::from(insurance_fee_ppm),
    )?;
    // denominator in micro-quote per whole base unit, scaled by PPM twice (rate and quote price)
    let denom = mul(mul(i128::from(price), i128::from(quote_price_ppm))?, rate)?;
    if denom <= 0 || shortage <= 0 {
        return Ok(0);
    }
    let num = mul(mul(shortage, i128::from(bastion_types::NANOS_PER_UNIT))?, PPM_SQUARED)?;
    div_ceil(num, denom)
}

/// The fillable price per lot (dYdX v4): `FP = (PNNV - ABR * SMMR * PMMR) / PS` with the
/// adjusted bankruptcy rate `ABR = clamp(1 - TNC / TMMR, 0, 1)` (BA = 1). Per lot that is
/// `lot_value - side * ABR * SMMR * PMMR / |size|`. Rounded away from the account's favour.
pub fn fillable_lot_value(
    lot_value: Micros,
    size: Lots,
    position_mm: Micros,
    health: &Health,
    smmr_ppm: Ppm,
) -> R<Micros> {
    if size == 0 || health.maintenance <= 0 {
        return Ok(lot_value);
    }
    // ABR in ppm
    let abr = sub(i128::from(PPM), mul_div_floor(health.collateral, i128::from(PPM), health.maintenance)?)?
        .clamp(0, i128::from(PPM));
    let discount = mul_div_ceil(
        mul(abr, i128::from(smmr_ppm))?,
        position_mm,
        mul(PPM_SQUARED, i128::from(size).abs())?,
    )?;
    if size > 0 { sub(lot_value, discount) } else { add(lot_value, discount) }
}

/// The bankruptcy value per lot of closing `qty` lots of a position: the price at which the
/// closed part takes exactly its share (`position_mm / TMMR`) of the account's collateral.
/// `lot_value - side * TNC * share / qty`, rounded so the account never ends below zero.
pub fn bankruptcy_lot_value(
    lot_value: Micros,
    size: Lots,
    qty: Lots,
    position_mm: Micros,
    health: &Health,
) -> R<Micros> {
    if qty == 0 {
        return Ok(lot_value);
    }
    let share_num = if health.maintenance > 0 { position_mm.min(health.maintenance) } else { 1 };
    let share_den = if health.maintenance > 0 { health.maintenance } else { 1 };
    // The part of TNC attributed to the closed slice: TNC * share * (qty / |size|).
    let tnc_part_num = mul(mul(health.collateral, share_num)?, i128::from(qty))?;
    let den = mul(mul(share_den, i128::from(size).abs())?, i128::from(qty))?;
    if size > 0 {
        // long: sell at lot_value - tnc_part/qty, round up
        sub(lot_value, div_floor(tnc_part_num, den)?)
    } else {
        add(lot_value, div_floor(tnc_part_num, den)?)
    }
}

impl State {
    pub(crate) fn health(&self, account: AccountId, scope: Scope) -> R<Health> {
        let acct = self.accounts.get(&account).ok_or(Reject::UnknownAccount(account))?;
        match scope {
            Scope::Cross => self.cross_health(acct, None),
            Scope::Isolated(m) => {
                let p = acct.position(m).copied().unwrap_or_default();
                self.isolated_health(&p, None)
            }
        }
    }

    /// Liquidates every under-maintenance account and isolated position, in account order.
    pub(crate) fn liquidate_all(&mut self, events: &mut Vec<Event>) -> R<()> {
        self.refresh_risk_rows();
        let mut table = self.sweep_table();
        // Portfolio accounts' worst losses from the portfolio screen (the GPU) when one is
        // installed and there are enough of them; the same numbers the CPU computes.
        table.screened = self.screen_sweep();
        // Stream the arena's risk rows (fast); targets are ordered by account id afterwards.
        let mut targets: Vec<(AccountId, Scope)> = Vec::new();
        // Only accounts that hold a position or a negative balance can be liquidatable.
        for slot in self.accounts.watched() {
            self.collect_targets(&table, slot, &mut targets);
        }
        self.liquidate_targets(targets, events);
        Ok(())
    }

    /// Liquidates the accounts changed so far in this block that fell below maintenance.
    /// Prices do not move within a block after the oracle step, so only an account's own
    /// activity (a fill as maker at a stale price, funding) can have weakened it: re-checking
    /// those keeps "no negative account survives a block" without a second full sweep.
    pub(crate) fn liquidate_touched(&mut self, events: &mut Vec<Event>) -> R<()> {
        self.refresh_risk_rows();
        let table = self.sweep_table();
        let mut slots: Vec<usize> = self
            .dirty
            .iter()
            .filter_map(|k| match k {
                crate::root::RecordKey::Account(a) => self.accounts.slot_of(&AccountId(*a)),
                _ => None,
            })
            .collect();
        slots.sort_unstable();
        slots.dedup();
        let mut targets: Vec<(AccountId, Scope)> = Vec::new();
        for slot in slots {
            self.collect_targets(&table, slot, &mut targets);
        }
        self.liquidate_targets(targets, events);
        Ok(())
    }

    /// Appends the account in `slot` if its cross part or any isolated position needs
    /// liquidation.
    fn collect_targets(
        &self,
        table: &crate::margin::SweepTable,
        slot: usize,
        targets: &mut Vec<(AccountId, Scope)>,
    ) {
        let Some((id, acct, row)) = self.accounts.by_slot(slot) else { return };
        // A fast row answers from itself (the quote balance exactly, its cross sizes, whether
        // an isolated position exists) without touching the account record: most of the
        // sweep's cost is that record's cache misses.
        let (quote_negative, has_cross, isolated) = if row.slow {
            (
                acct.balances.first().is_some_and(|b| *b < 0),
                acct.positions.iter().any(|p| !p.isolated && p.size != 0),
                true,
            )
        } else {
            (row.quote < 0, row.sizes.iter().any(|s| *s != 0), row.isolated)
        };
        // Accounts with positions below maintenance, and (a safety net) any account whose
        // collateral went negative without a position (only a negative quote balance can do
        // that: other collateral is never negative).
        if (has_cross || quote_negative)
            && self
                .row_maintenance_screened(table, row, acct, table.screened.get(slot))
                .map(|(c, mm)| c < 0 || (has_cross && c < mm))
                .unwrap_or(false)
        {
            targets.push((*id, Scope::Cross));
        }
        if !isolated {
            return;
        }
        for p in acct.positions.iter().filter(|p| p.isolated && p.size != 0) {
            if self.isolated_health(p, None).map(|h| h.liquidatable()).unwrap_or(false) {
                targets.push((*id, Scope::Isolated(p.market)));
            }
        }
    }

    fn liquidate_targets(&mut self, mut targets: Vec<(AccountId, Scope)>, events: &mut Vec<Event>) {
        targets.sort_by_key(|(id, scope)| (*id, matches!(scope, Scope::Isolated(_)), scope_market(*scope)));
        let mut ranks = AdlRanks::new();
        for (id, scope) in targets {
            // One account's arithmetic failure must not stop the others' liquidation.
            if let Err(reason) = self.liquidate(id, scope, &mut ranks, events) {
                events.push(Event::Fault { step: format!("liquidation of {id}"), reason });
            }
        }
    }

    fn cancel_all_orders(&mut self, account: AccountId, scope: Scope, events: &mut Vec<Event>) -> R<()> {
        let Some(acct) = self.accounts.get(&account) else { return Ok(()) };
        let markets: Vec<MarketId> = acct
            .positions
            .iter()
            .filter(|p| (p.open_buy > 0 || p.open_sell > 0) && in_scope(p, scope))
            .map(|p| p.market)
            .collect();
        for market in markets {
            let Some(m) = self.markets.get_mut(&market) else { continue };
            let ids: Vec<OrderId> = m.book.orders().filter(|o| o.account == account).map(|o| o.id).collect();
            for id in ids {
                if m.book.remove(id).is_some() {
                    self.dirty.push(RecordKey::Order(market.0, id.0));
                    events.push(Event::Done { market, order: id, account, reason: DoneReason::Removed });
                }
            }
            if let Some(p) = self.accounts.get_mut(&account).and_then(|a| a.position_mut(market)) {
                p.open_buy = 0;
                p.open_sell = 0;
            }
        }
        if let Some(a) = self.accounts.get_mut(&account) {
            a.prune();
        }
        self.touch_account(account);
        Ok(())
    }

    fn liquidate(
        &mut self,
        account: AccountId,
        scope: Scope,
        ranks: &mut AdlRanks,
        events: &mut Vec<Event>,
    ) -> R<()> {
        self.cancel_all_orders(account, scope, events)?;
        let bankrupt_at_start = self.health(account, scope)?.collateral < 0;
        let params = self.liquidation;
        let mut budget = params.max_notional_per_block;
        let mut tried: Vec<MarketId> = Vec::new();
        loop {
            let h = self.health(account, scope)?;
            if !h.liquidatable() && h.collateral >= 0 {
                break;
            }
            // The open position with the largest maintenance requirement, not yet tried.
            let Some((market, size, pos_mm)) = self.pick_position(account, scope, &tried)? else { break };
            tried.push(market);
            let m = self.markets.get(&market).ok_or(Reject::UnknownMarket(market))?;
            if matches!(m.effective_status(), MarketStatus::Halted | MarketStatus::Settled) || m.mark <= 0 {
                continue;
            }
            let lot_value = m.lot_value_ceil.max(1);
            let bankrupt = h.collateral < 0;
            let qty = if bankrupt {
                size.saturating_abs()
            } else {
                let fraction = crate::num::to_i64(mul_div_ceil(
                    i128::from(size.saturating_abs()),
                    i128::from(params.max_fraction_ppm),
                    i128::from(PPM),
                )?)?;
                let min_lots = crate::num::to_i64(div_ceil(params.min_notional, lot_value)?)?;
                let shortage = sub(h.maintenance, h.collateral)?;
                let needed_nanos = liquidation_base_nanos(
                    shortage,
                    m.mark,
                    pos_mm_rate(pos_mm, size, lot_value)?,
                    0,
                    0,
                    PPM,
                )?;
                let needed = crate::num::to_i64(div_ceil(needed_nanos, i128::from(m.spec.lot_size_nanos))?)?;
                let budget_lots = crate::num::to_i64(div_floor(budget.max(0), lot_value)?)?;
                needed.min(fraction).max(min_lots).min(size.saturating_abs()).min(budget_lots.max(min_lots))
            };
            if qty <= 0 {
                break;
            }
            let bp = bankruptcy_lot_value(lot_value, size, qty, pos_mm, &h)?;
            let fp = fillable_lot_value(lot_value, size, pos_mm, &h, params.spread_to_maintenance_ppm)?;
            let side = if size > 0 { Side::Sell } else { Side::Buy };
            // Limit: no worse than the bankruptcy value while solvent; the fillable price when
            // bankrupt, if the fund can pay the worst case, else deleverage.
            let limit_value = if size > 0 { fp.max(bp) } else { fp.min(bp) };
            let limit_value = if bankrupt { fp } else { limit_value };
            let worst_loss = if bankrupt { mul(abs(sub(bp, limit_value)?)?, i128::from(qty))? } else { 0 };
            let fund = self.insurance_fund();
            if bankrupt && worst_loss > fund {
                self.deleverage(account, scope, market, ranks, events)?;
                continue;
            }
            let qptl = m.quote_per_tick_lot().max(1);
            let limit_ticks =
                if size > 0 { div_ceil(limit_value, qptl)? } else { div_floor(limit_value, qptl)? };
            let limit_ticks = crate::num::to_i64(limit_ticks.max(1))?;
            let id = OrderId(self.next_order);
            self.next_order = self.next_order.checked_add(1).ok_or(Reject::Overflow)?;
            let first_event = events.len();
            let summary = self.match_order(
                market,
                liquidation_order(id, account, side, limit_ticks, qty),
                Origin::Liquidation,
                events,
            )?;
            // Settle each fill's surplus or shortfall against the bankruptcy value with the fund.
            let mut insurance_delta: i128 = 0;
            let mut last_price = limit_ticks;
            let mut closed_value: i128 = 0;
            for e in events.get(first_event..).unwrap_or(&[]).iter() {
                if let Event::Fill { price, qty: fq, market: fm, taker, .. } = e {
                    if *fm != market || *taker != account {
                        continue;
                    }
                    last_price = *price;
                    let fill_value = mul(i128::from(*price), qptl)?;
                    let surplus =
                        mul(mul(i128::from(side.opposite().sign()), sub(fill_value, bp)?)?, i128::from(*fq))?;
                    let notional = mul(fill_value, i128::from(*fq))?;
                    closed_value = add(closed_value, notional)?;
                    let delta = if surplus > 0 {
                        surplus.min(mul_div_floor(
                            notional,
                            i128::from(params.max_insurance_fee_ppm),
                            i128::from(PPM),
                        )?)
                    } else {
                        surplus
                    };
                    insurance_delta = add(insurance_delta, delta)?;
                }
            }
            if insurance_delta != 0 {
                self.move_to_insurance(account, scope, market, insurance_delta)?;
            }
            budget = sub(budget, closed_value)?;
            if summary.filled > 0 {
                events.push(Event::Liquidated {
                    account,
                    market,
                    qty: summary.filled,
                    price: last_price,
                    insurance_delta,
                });
                tried.retain(|t| *t != market);
            } else if bankrupt {
                self.deleverage(account, scope, market, ranks, events)?;
            }
            if budget <= 0 && !bankrupt {
                break;
            }
        }
        self.resolve_negative(account, scope, bankrupt_at_start, events)
    }

    fn pick_position(
        &self,
        account: AccountId,
        scope: Scope,
        tried: &[MarketId],
    ) -> R<Option<(MarketId, Lots, Micros)>> {
        let acct = self.accounts.get(&account).ok_or(Reject::UnknownAccount(account))?;
        let mut best: Option<(MarketId, Lots, Micros)> = None;
        for p in
            acct.positions.iter().filter(|p| p.size != 0 && in_scope(p, scope) && !tried.contains(&p.market))
        {
            let Some(m) = self.markets.get(&p.market) else { continue };
            let (_, mm) = crate::margin::position_requirement(m, p.size, 0, 0)?;
            if best.is_none_or(|(_, _, b)| mm > b) {
                best = Some((p.market, p.size, mm));
            }
        }
        Ok(best)
    }

    /// Moves `amount` from the liquidated pool to the insurance fund (negative: the fund pays).
    fn move_to_insurance(
        &mut self,
        account: AccountId,
        scope: Scope,
        market: MarketId,
        amount: Micros,
    ) -> R<()> {
        let fund = self.assets.first_mut().ok_or(Reject::UnknownAsset(bastion_types::QUOTE_ASSET))?;
        fund.insurance = add(fund.insurance, amount)?;
        let acct = self.accounts.get_mut(&account).ok_or(Reject::UnknownAccount(account))?;
        match scope {
            Scope::Isolated(_) => {
                if let Some(p) = acct.positions.iter_mut().find(|p| p.market == market) {
                    p.isolated_balance = sub(p.isolated_balance, amount)?;
                }
            }
            Scope::Cross => {
                if let Some(b) = acct.balances.first_mut() {
                    *b = sub(*b, amount)?;
                }
            }
        }
        self.touch(RecordKey::Asset(0));
        self.touch_account(account);
        Ok(())
    }

    /// Closes a position against opposite positions at the bankruptcy price, most profitable
    /// and most leveraged counterparties first.
    fn deleverage(
        &mut self,
        account: AccountId,
        scope: Scope,
        market: MarketId,
        ranks: &mut AdlRanks,
        events: &mut Vec<Event>,
    ) -> R<()> {
        let h = self.health(account, scope)?;
        let acct = self.accounts.get(&account).ok_or(Reject::UnknownAccount(account))?;
        let size = acct.position(market).map(|p| p.size).unwrap_or(0);
        if size == 0 {
            return Ok(());
        }
        let m = self.markets.get(&market).ok_or(Reject::UnknownMarket(market))?;
        let (_, pos_mm) = crate::margin::position_requirement(m, size, 0, 0)?;
        let lot_value = m.lot_value_ceil;
        let bp = bankruptcy_lot_value(lot_value, size, size.saturating_abs(), pos_mm, &h)?;
        // signum is -1, 0 or 1: its negation is exact.
        let want = size.signum().saturating_neg();
        if let std::collections::btree_map::Entry::Vacant(e) = ranks.entry((market, want)) {
            e.insert((self.rank_counterparties(market, want)?, 0));
        }
        let (ranked, mut cursor) = ranks.remove(&(market, want)).unwrap_or_default();
        let mut remaining = size.saturating_abs();
        let side = if size > 0 { Side::Sell } else { Side::Buy };
        while let Some(&counterparty) = ranked.get(cursor) {
            if remaining == 0 {
                break;
            }
            // Positions change as the block goes on; use the size held now. An exhausted
            // counterparty is skipped for the rest of the block.
            let csize =
                self.accounts.get(&counterparty).and_then(|a| a.position(market)).map_or(0, |p| p.size);
            if counterparty == account || csize == 0 || csize.signum() != want {
                cursor = cursor.saturating_add(1);
                continue;
            }
            let q = remaining.min(csize.saturating_abs());
            let cash = mul(bp, i128::from(q))?;
            // The liquidated account sells (long) for cash, the counterparty buys back.
            let dq = side.sign().saturating_mul(q);
            let signed_cash = mul(i128::from(side.sign()), cash)?;
            // trade_position accrues both sides' funding time and keeps the holder set.
            let (a_old, a_new) = self.trade_position(account, market, dq, neg(signed_cash)?, 0, None)?;
            let (c_old, c_new) =
                self.trade_position(counterparty, market, dq.saturating_neg(), signed_cash, 0, None)?;
            let d_oi = crate::trade::oi_delta([(a_old, a_new), (c_old, c_new)]);
            let m = self.markets.get_mut(&market).ok_or(Reject::UnknownMarket(market))?;
            m.open_interest = m.open_interest.saturating_add(d_oi);
            self.touch_market(market);
            let price = crate::num::to_i64(mul_div_floor(
                bp,
                i128::from(bastion_types::NANOS_PER_UNIT),
                i128::from(self.markets.get(&market).map(|m| m.spec.lot_size_nanos).unwrap_or(1)),
            )?)?;
            events.push(Event::Deleveraged { account, counterparty, market, qty: q, price });
            remaining = remaining.saturating_sub(q);
        }
        ranks.insert((market, want), (ranked, cursor));
        Ok(())
    }

    /// Opposite-side holders of `market` with positions of sign `want`, ranked by profit ratio
    /// times leverage (highest first), ties by account id. Computed once per market and side
    /// per block: a block's deleveragings use the ranking of the state they first saw.
    fn rank_counterparties(&self, market: MarketId, want: i64) -> R<Vec<AccountId>> {
        let m = self.markets.get(&market).ok_or(Reject::UnknownMarket(market))?;
        let mut ranked: Vec<(i128, AccountId)> = Vec::new();
        for holder in m.holders.iter() {
            let Some(ha) = self.accounts.get(holder) else { continue };
            let Some(hp) = ha.position(market) else { continue };
            if hp.size == 0 || hp.size.signum() != want {
                continue;
            }
            let value = crate::margin::position_value(m, hp.size)?;
            let upnl = sub(value, hp.cost)?;
            let hh = if hp.isolated { self.isolated_health(hp, None)? } else { self.cross_health(ha, None)? };
            let pnl_ppm = mul_div_floor(upnl, i128::from(PPM), abs(hp.cost)?.max(1))?;
            let lev_ppm = mul_div_floor(abs(value)?, i128::from(PPM), hh.collateral.max(1))?;
            let score = mul_div_floor(pnl_ppm, lev_ppm, i128::from(PPM))?;
            ranked.push((score, *holder));
        }
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(ranked.into_iter().map(|(_, a)| a).collect())
    }

    /// An account (or isolated position) with no positions left and negative collateral is
    /// made whole by the insurance fund; non-quote collateral it still holds is seized first.
    /// A `bankrupt` account (negative when its liquidation began) is taken over even if the
    /// closing left it a rounding residue above zero: otherwise its remaining collateral
    /// would keep backing a quote debt that the next fall in the collateral's price turns
    /// into a loss nobody holds. The fund takes the collateral and the debt at today's prices.
    fn resolve_negative(
        &mut self,
        account: AccountId,
        scope: Scope,
        bankrupt: bool,
        events: &mut Vec<Event>,
    ) -> R<()> {
        let h = self.health(account, scope)?;
        if h.collateral >= 0 && !bankrupt {
            return Ok(());
        }
        let acct = self.accounts.get(&account).ok_or(Reject::UnknownAccount(account))?;
        let open = acct.positions.iter().any(|p| p.size != 0 && in_scope(p, scope));
        if open {
            // Positions remain (halted markets): resolved in a later block.
            return Ok(());
        }
        if scope == Scope::Cross {
            // Seize non-quote collateral into the fund's holdings of that asset.
            let balances = acct.balances;
            for (i, b) in balances.iter().enumerate().skip(1) {
                if *b > 0 {
                    if let Some(asset) = self.assets.get_mut(i) {
                        asset.insurance = add(asset.insurance, *b)?;
                    }
                    if let Some(bal) = self.accounts.get_mut(&account).and_then(|a| a.balances.get_mut(i)) {
                        *bal = 0;
                    }
                    self.touch(RecordKey::Asset(u16::try_from(i).map_err(|_| Reject::Overflow)?));
                }
            }
        }
        let market = match scope {
            Scope::Isolated(m) => m,
            Scope::Cross => MarketId(0),
        };
        // What is left in quote (a debt, or a rounding residue) moves to the fund.
        let residue = self.health(account, scope)?.collateral;
        if residue != 0 {
            self.move_to_insurance(account, scope, market, residue)?;
        }
        if residue < 0 {
            events.push(Event::InsuranceCovered { account, amount: neg(residue)? });
        }
        Ok(())
    }
}

fn scope_market(scope: Scope) -> u32 {
    match scope {
        Scope::Cross => 0,
        Scope::Isolated(m) => m.0,
    }
}

fn in_scope(p: &Position, scope: Scope) -> bool {
    match scope {
        Scope::Cross => !p.isolated,
        Scope::Isolated(m) => p.isolated && p.market == m,
    }
}

/// The position's effective maintenance rate (ppm of its notional), for sizing.
fn pos_mm_rate(pos_mm: Micros, size: Lots, lot_value: Micros) -> R<Ppm> {
    let notional = mul(i128::from(size).abs(), lot_value)?;
    if notional <= 0 {
        return Ok(PPM);
    }
    crate::num::to_i64(mul_div_ceil(pos_mm, i128::from(PPM), notional)?.clamp(1, i128::from(PPM)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USD: i128 = 1_000_000;

    #[test]
    fn drift_partial_liquidation_size() {
        // shortage $10, MR 10%, fees 0, price $100: 10 / (100 * 0.1) = 1.0 base.
        assert_eq!(liquidation_base_nanos(10 * USD, 100_000_000, 100_000, 0, 0, PPM).unwrap(), 1_000_000_000);
        // quote price 0.99: 10 / (100 * 0.99 * 0.1) = 1.0101010101 -> rounded up.
        assert_eq!(
            liquidation_base_nanos(10 * USD, 100_000_000, 100_000, 0, 0, 990_000).unwrap(),
            1_010_101_011
        );
        // quote price 1.01: 10 / (100 * 1.01 * 0.1) = 0.990099009900 -> rounded up.
        assert_eq!(
            liquidation_base_nanos(10 * USD, 100_000_000, 100_000, 0, 0, 1_010_000).unwrap(),
            990_099_010
        );
    }

    #[test]
    fn dydx_fillable_and_bankruptcy_price() {
        // 0.1 BTC long at $50,000 with a USDC balance of -$4,501, IMF 20%, MMF 10%:
        // TNC = 5,000 - 4,501 = $499 < MMR = 10% * 5,000 = $500.
        // One "lot" here is 0.1 BTC, worth $5,000 at the oracle price.
        let h = Health { collateral: 499 * USD, initial: 1_000 * USD, maintenance: 500 * USD };
        // ABR = 1 - 499/500 = 0.002; FP = (5,000 - 0.002 * 0.1 * 500) / 0.1 = $49,999 per BTC,
        // i.e. $4,999.90 per 0.1 BTC lot.
        let fp = fillable_lot_value(5_000 * USD, 1, 500 * USD, &h, 100_000).unwrap();
        assert_eq!(fp, 4_999_900_000);
        // Bankruptcy price for a full close: 50,000 - 499 / 0.1 = $45,010 per BTC, i.e. $4,501
        // per lot: selling at it leaves exactly zero.
        let bp = bankruptcy_lot_value(5_000 * USD, 1, 1, 500 * USD, &h).unwrap();
        assert_eq!(bp, 4_501 * USD);
    }
}
