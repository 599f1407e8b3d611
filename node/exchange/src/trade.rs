//! Client transactions: deposits, withdrawals, orders, cancels, margin modes.
//!
//! Each handler validates everything it can before it changes anything, so a rejected
//! transaction leaves the state as it was (except the nonce, which the caller advances).
//! Perpetual and option fills move the full notional as quote cash (buyer pays, seller
//! receives); a position's value at the mark is then part of its collateral. This keeps every
//! fill exactly zero-sum in integers: no rounding enters on a trade.

use crate::margin::Overlay;
use crate::num::{R, add, mul, mul_div_ceil, sub};
use crate::root::RecordKey;
use crate::state::{ACCOUNTS_MAX, Account, State};
use bastion_book::{BookError, BookEvent, NewOrder, PlaceSummary};
use bastion_types::{
    AccountId, Action, AssetId, DoneReason, Event, Lots, MarketId, MarketKind, MarketStatus, Micros, OrderId,
    OrderRequest, PPM, QUOTE_ASSET, Reject, SelfTradePrevention, Side, Ticks, TimeInForce,
};

/// The exchange's rejection for a book error.
pub(crate) fn book_reject(e: BookError) -> Reject {
    {
        match e {
            BookError::DuplicateId(id) => Reject::UnknownOrder(id),
            BookError::BadPrice(p) => Reject::BadPrice(p),
            BookError::BadQuantity(q) => Reject::BadQuantity(q),
            BookError::BookFull(n) => Reject::BookFull(n),
            BookError::TooManyOrders(n) => Reject::TooManyOrders(n),
            BookError::PostOnlyWouldTake => Reject::PostOnlyWouldTake,
            BookError::FokUnfillable => Reject::FokUnfillable,
            BookError::UnknownOrder(id) => Reject::UnknownOrder(id),
            BookError::NotOwner(id) => Reject::NotOwner(id),
        }
    }
}

/// What an order's pre-trade check requires if the order filled completely.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Need {
    /// Initial margin holds (orders that may add risk).
    Initial,
    /// Collateral stays non-negative (reduce-only orders).
    Solvent,
}

/// Who placed an order: a client, or the liquidation engine acting for an account.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Origin {
    Client,
    Liquidation,
}

impl State {
    pub(crate) fn execute_action(
        &mut self,
        signer: AccountId,
        action: &Action,
        events: &mut Vec<Event>,
    ) -> R<()> {
        match action {
            Action::Deposit { to, asset, amount } => self.deposit(signer, *to, *asset, *amount, events),
            Action::Withdraw { asset, amount } => self.withdraw(signer, *asset, *amount, events),
            Action::Place(req) => self.place(signer, req, events).map(|_| ()),
            Action::Cancel { market, order } => self.cancel(signer, *market, *order, events),
            Action::Replace { market, order, price, qty } => {
                self.replace(signer, *market, *order, *price, *qty, events)
            }
            Action::SetMarginMode { portfolio } => self.set_margin_mode(signer, *portfolio),
            Action::SetIsolated { market, isolated } => self.set_isolated(signer, *market, *isolated),
            Action::TransferIsolated { market, amount } => self.transfer_isolated(signer, *market, *amount),
            Action::UpdateParams(update) => {
                if Some(signer) != self.authority {
                    return Err(Reject::Unauthorized);
                }
                // One key must not govern a real chain (issue 15): there, parameters change
                // only by proposals that 2/3 of stake signed.
                if !self.devnet {
                    return Err(Reject::DevnetOnly);
                }
                self.validate_update(update)?;
                self.pending.push(update.clone());
                Ok(())
            }
        }
    }

    fn account(&self, id: AccountId) -> R<&Account> {
        self.accounts.get(&id).ok_or(Reject::UnknownAccount(id))
    }

    /// The devnet authority's deposit (`Action::Deposit`). On any other chain collateral
    /// arrives only through deposits that 2/3 of stake attested (see `bridge`).
    fn deposit(
        &mut self,
        signer: AccountId,
        to: AccountId,
        asset: AssetId,
        amount: Micros,
        events: &mut Vec<Event>,
    ) -> R<()> {
        if Some(signer) != self.authority {
            return Err(Reject::Unauthorized);
        }
        if !self.devnet {
            return Err(Reject::DevnetOnly);
        }
        self.credit(to, asset, amount, events)
    }

    /// Credits `amount` of `asset` to `to` (created if new): a deposit, by the devnet authority
    /// or by validators' attestations.
    pub(crate) fn credit(
        &mut self,
        to: AccountId,
        asset: AssetId,
        amount: Micros,
        events: &mut Vec<Event>,
    ) -> R<()> {
        if amount <= 0 {
            return Err(Reject::NonPositiveAmount(amount));
        }
        let ai = self.asset_index(asset).ok_or(Reject::UnknownAsset(asset))?;
        if !self.accounts.contains_key(&to) && self.accounts.len() >= ACCOUNTS_MAX {
            return Err(Reject::TooManyAccounts(ACCOUNTS_MAX));
        }
        let a = self.assets.get(ai).ok_or(Reject::UnknownAsset(asset))?;
        let deposits = add(a.deposits, amount)?;
        let current = self.accounts.get(&to).and_then(|a| a.balances.get(ai).copied()).unwrap_or(0);
        let balance = add(current, amount)?;
        if let Some(b) = self.accounts.get_or_insert_default(to).and_then(|a| a.balances.get_mut(ai)) {
            *b = balance;
        }
        if let Some(a) = self.assets.get_mut(ai) {
            a.deposits = deposits;
        }
        self.touch(RecordKey::Asset(asset.0));
        self.touch_account(to);
        events.push(Event::Deposited { account: to, asset, amount });
        Ok(())
    }

    fn withdraw(
        &mut self,
        signer: AccountId,
        asset: AssetId,
        amount: Micros,
        events: &mut Vec<Event>,
    ) -> R<()> {
        if amount <= 0 {
            return Err(Reject::NonPositiveAmount(amount));
        }
        let ai = self.asset_index(asset).ok_or(Reject::UnknownAsset(asset))?;
        let acct = self.account(signer)?;
        let have = acct.balances.get(ai).copied().unwrap_or(0);
        // Collateral assets can only be withdrawn from what is held. The quote balance may go
        // (further) negative: it is borrowed against positions, exactly as a fill borrows
        // against the position it opens, and the initial margin check below bounds it.
        if ai != usize::from(QUOTE_ASSET.0) && have < amount {
            return Err(Reject::InsufficientBalance { have, need: amount });
        }
        if ai == usize::from(QUOTE_ASSET.0) && acct.positions.iter().all(|p| p.size == 0) && have < amount {
            return Err(Reject::InsufficientBalance { have, need: amount });
        }
        let mut after = acct.clone();
        if let Some(b) = after.balances.get_mut(ai) {
            *b = sub(have, amount)?;
        }
        let h = self.initial_health(&after, None)?;
        if !h.initial_ok() {
            return Err(Reject::InitialMargin { collateral: h.collateral, required: h.initial });
        }
        let withdrawals = add(self.assets.get(ai).map(|a| a.withdrawals).unwrap_or(0), amount)?;
        self.accounts.insert(signer, after);
        if let Some(a) = self.assets.get_mut(ai) {
            a.withdrawals = withdrawals;
        }
        self.touch(RecordKey::Asset(asset.0));
        self.touch_account(signer);
        let voucher = self.create_voucher(signer, asset, amount);
        events.push(Event::Withdrew { account: signer, asset, amount, voucher });
        Ok(())
    }

    /// Lowest and highest limit prices (ticks) the band around the mark allows.
    pub(crate) fn band(&self, market: MarketId) -> R<(Ticks, Ticks)> {
        let m = self.markets.get(&market).ok_or(Reject::UnknownMarket(market))?;
        if m.mark <= 0 {
            return Err(Reject::NoMarkPrice);
        }
        let mark = i128::from(m.mark);
        let band = crate::num::mul_div_floor(mark, i128::from(m.spec.risk.price_band_ppm), i128::from(PPM))?;
        let tick = i128::from(m.spec.tick_size);
        let low = crate::num::div_ceil(sub(mark, band)?, tick)?.max(1);
        let high = crate::num::div_floor(add(mark, band)?, tick)?;
        Ok((crate::num::to_i64(low)?, crate::num::to_i64(high)?))
    }

    pub(crate) fn place(
        &mut self,
        signer: AccountId,
        req: &OrderRequest,
        events: &mut Vec<Event>,
    ) -> R<PlaceSummary> {
        let acct = self.account(signer)?;
        let m = self.markets.get(&req.market).ok_or(Reject::UnknownMarket(req.market))?;
        let status = m.effective_status();
        if matches!(status, MarketStatus::Halted | MarketStatus::Settled) {
            return Err(Reject::MarketClosed(status));
        }
        if req.qty <= 0 {
            return Err(Reject::BadQuantity(req.qty));
        }
        if req.qty > m.spec.risk.open_interest_cap.max(1) {
            return Err(Reject::OpenInterestCap { cap: m.spec.risk.open_interest_cap });
        }
        if let Some(h) = req.good_til_height
            && h <= self.height
        {
            return Err(Reject::Expired(h));
        }
        let (low, high) = self.band(req.market)?;
        let (price, tif) = match req.price {
            Some(p) if p <= 0 => return Err(Reject::BadPrice(p)),
            Some(p) if p < low || p > high => return Err(Reject::PriceBand { price: p, low, high }),
            Some(p) => (p, req.tif),
            // A market order is an IOC (or FOK) at the edge of the price band.
            None => (
                if req.side == Side::Buy { high } else { low },
                if req.tif == TimeInForce::Fok { TimeInForce::Fok } else { TimeInForce::Ioc },
            ),
        };
        let pos = acct.position(req.market).copied().unwrap_or_default();
        if status == MarketStatus::ReduceOnly && !req.reduce_only {
            // A reduce-only market takes only orders that reduce and cannot rest: anything
            // else is told the market's state rather than a reduce-only rule it did not ask for.
            let reduces = pos.size != 0 && pos.size.signum() != req.side.sign();
            if !reduces || !matches!(tif, TimeInForce::Ioc | TimeInForce::Fok) {
                return Err(Reject::MarketClosed(status));
            }
        }
        let reduce_only = req.reduce_only || status == MarketStatus::ReduceOnly;
        let mut qty = req.qty;
        if reduce_only {
            if !matches!(tif, TimeInForce::Ioc | TimeInForce::Fok) {
                return Err(Reject::ReduceOnlyTif);
            }
            if pos.size == 0 || pos.size.signum() == req.side.sign() {
                return Err(Reject::ReduceOnly);
            }
            qty = qty.min(pos.size.saturating_abs());
        }
        let increases = (pos.size.saturating_add(req.side.sign().saturating_mul(qty))).saturating_abs()
            > pos.size.saturating_abs();
        if increases && m.open_interest.saturating_add(qty) > m.spec.risk.open_interest_cap {
            return Err(Reject::OpenInterestCap { cap: m.spec.risk.open_interest_cap });
        }
        // Orders that add risk must keep initial margin; reduce-only orders need not (they are
        // how an account under initial margin gets out), but must not bankrupt the account by
        // filling deep in a thin book.
        let need = if reduce_only { Need::Solvent } else { Need::Initial };
        self.check_order_margin(acct, req.market, req.side, price, qty, None, need)?;
        let id = OrderId(self.next_order);
        self.next_order = self.next_order.checked_add(1).ok_or(Reject::Overflow)?;
        let order = NewOrder {
            id,
            account: signer,
            side: req.side,
            price,
            qty,
            tif,
            stp: req.stp,
            good_til_height: req.good_til_height,
        };
        self.match_order(req.market, order, Origin::Client, events)
    }

    /// Initial margin must hold if the order filled completely: against the levels it would
    /// cross now, and the remainder at its limit price (where it would fill as a maker), with
    /// `replacing` (an order being replaced) taken out first.
    #[allow(clippy::too_many_arguments)]
    fn check_order_margin(
        &self,
        acct: &Account,
        market: MarketId,
        side: Side,
        price: Ticks,
        qty: Lots,
        replacing: Option<(Side, Lots)>,
        need: Need,
    ) -> R<()> {
        let m = self.markets.get(&market).ok_or(Reject::UnknownMarket(market))?;
        let mut remaining = qty;
        let mut ticks_lots: i128 = 0;
        for (level, size) in m.book.levels(side.opposite()) {
            let crosses = match side {
                Side::Buy => level <= price,
                Side::Sell => level >= price,
            };
            if !crosses || remaining == 0 {
                break;
            }
            let take = remaining.min(size);
            ticks_lots = add(ticks_lots, mul(i128::from(level), i128::from(take))?)?;
            remaining = remaining.saturating_sub(take);
        }
        ticks_lots = add(ticks_lots, mul(i128::from(price), i128::from(remaining))?)?;
        let notional = mul(ticks_lots, m.quote_per_tick_lot())?;
        let fee = mul_div_ceil(notional, i128::from(m.spec.risk.taker_fee_ppm.max(0)), i128::from(PPM))?;
        let mut overlay = Overlay {
            market,
            dsize: side.sign().saturating_mul(qty),
            dcash: sub(crate::num::neg(mul(i128::from(side.sign()), notional)?)?, fee)?,
            dopen_buy: 0,
            dopen_sell: 0,
        };
        if let Some((s, q)) = replacing {
            match s {
                Side::Buy => overlay.dopen_buy = crate::num::neg64(q)?,
                Side::Sell => overlay.dopen_sell = crate::num::neg64(q)?,
            }
        }
        let pos = acct.position(market);
        // Initial margin under the stable-price guard; solvency at the marks.
        let guard = matches!(need, Need::Initial);
        let h = if pos.is_some_and(|p| p.isolated) {
            let p = pos.copied().unwrap_or_default();
            if guard {
                self.isolated_initial_health(&p, Some(&overlay))?
            } else {
                self.isolated_health(&p, Some(&overlay))?
            }
        } else if guard {
            self.initial_health(acct, Some(&overlay))?
        } else {
            self.cross_health(acct, Some(&overlay))?
        };
        match need {
            Need::Initial if !h.initial_ok() => {
                Err(Reject::InitialMargin { collateral: h.collateral, required: h.initial })
            }
            Need::Solvent if h.collateral < 0 => Err(Reject::WouldBankrupt { collateral: h.collateral }),
            _ => Ok(()),
        }
    }

    fn cancel(
        &mut self,
        signer: AccountId,
        market: MarketId,
        order: OrderId,
        events: &mut Vec<Event>,
    ) -> R<()> {
        self.account(signer)?;
        let m = self.markets.get_mut(&market).ok_or(Reject::UnknownMarket(market))?;
        let o = m.book.cancel(order, signer).map_err(book_reject)?;
        self.touch(RecordKey::Order(market.0, order.0));
        self.release_open(signer, market, o.side, o.qty)?;
        events.push(Event::Done { market, order, account: signer, reason: DoneReason::Cancelled });
        Ok(())
    }

    fn replace(
        &mut self,
        signer: AccountId,
        market: MarketId,
        order: OrderId,
        price: Ticks,
        qty: Lots,
        events: &mut Vec<Event>,
    ) -> R<()> {
        let acct = self.account(signer)?;
        let m = self.markets.get(&market).ok_or(Reject::UnknownMarket(market))?;
        let status = m.effective_status();
        if status != MarketStatus::Active {
            return Err(Reject::MarketClosed(status));
        }
        let old = m.book.get(order).ok_or(Reject::UnknownOrder(order))?;
        if old.account != signer {
            return Err(Reject::NotOwner(order));
        }
        let (side, old_qty) = (old.side, old.qty);
        if qty <= 0 {
            return Err(Reject::BadQuantity(qty));
        }
        let (low, high) = self.band(market)?;
        if price < low || price > high {
            return Err(Reject::PriceBand { price, low, high });
        }
        let pos = acct.position(market).copied().unwrap_or_default();
        let increases = (pos.size.saturating_add(side.sign().saturating_mul(qty))).saturating_abs()
            > pos.size.saturating_abs();
        if increases && m.open_interest.saturating_add(qty) > m.spec.risk.open_interest_cap {
            return Err(Reject::OpenInterestCap { cap: m.spec.risk.open_interest_cap });
        }
        self.check_order_margin(acct, market, side, price, qty, Some((side, old_qty)), Need::Initial)?;
        // The old resting quantity is released; the book then reports the new one as rested
        // (or filled) through the ordinary event path.
        let mut book_events = Vec::new();
        let m = self.markets.get_mut(&market).ok_or(Reject::UnknownMarket(market))?;
        let summary = m.book.replace(order, signer, price, qty, &mut book_events).map_err(book_reject)?;
        // The replaced order's record changes (or disappears if it filled in full) whatever
        // events follow.
        self.touch(RecordKey::Order(market.0, order.0));
        self.release_open(signer, market, side, old_qty)?;
        self.apply_book_events(market, signer, order, side, &book_events, &summary, Origin::Client, events)?;
        Ok(())
    }

    /// Removes resting orders that the mark has left outside the price band on the
    /// aggressive side (bids above the band, asks below it). Such a stale order could only
    /// fill at a price far from the market and bankrupt its maker, which the maker's
    /// placement check (against the mark of its day) never allowed for.
    pub(crate) fn remove_out_of_band_orders(&mut self, events: &mut Vec<Event>) -> R<()> {
        let ids: Vec<MarketId> = self.markets.keys().copied().collect();
        for market in ids {
            let Some(m) = self.markets.get(&market) else { continue };
            if m.mark <= 0 || m.status == MarketStatus::Settled || m.book.is_empty() {
                continue;
            }
            let (low, high) = self.band(market)?;
            let stale: Vec<(OrderId, AccountId, Side)> = m
                .book
                .side_orders(Side::Buy)
                .take_while(|o| o.price > high)
                .chain(m.book.side_orders(Side::Sell).take_while(|o| o.price < low))
                .map(|o| (o.id, o.account, o.side))
                .collect();
            for (order, account, side) in stale {
                let Some(removed) = self.markets.get_mut(&market).and_then(|m| m.book.remove(order)) else {
                    continue;
                };
                self.touch(RecordKey::Order(market.0, order.0));
                self.release_open(account, market, side, removed.qty)?;
                events.push(Event::Done { market, order, account, reason: DoneReason::Removed });
            }
        }
        Ok(())
    }

    fn release_open(&mut self, account: AccountId, market: MarketId, side: Side, qty: Lots) -> R<()> {
        let acct = self.accounts.get_mut(&account).ok_or(Reject::UnknownAccount(account))?;
        if let Some(p) = acct.position_mut(market) {
            match side {
                Side::Buy => p.open_buy = p.open_buy.saturating_sub(qty).max(0),
                Side::Sell => p.open_sell = p.open_sell.saturating_sub(qty).max(0),
            }
        }
        acct.prune();
        self.touch_account(account);
        Ok(())
    }

    /// Sends an order to the book and applies what happened: fills to both accounts, resting
    /// exposure, order records and events.
    pub(crate) fn match_order(
        &mut self,
        market: MarketId,
        order: NewOrder,
        origin: Origin,
        events: &mut Vec<Event>,
    ) -> R<PlaceSummary> {
        let (id, account, side) = (order.id, order.account, order.side);
        let mut book_events = Vec::new();
        let m = self.markets.get_mut(&market).ok_or(Reject::UnknownMarket(market))?;
        let limits = m.book_limits();
        m.book.set_limits(limits);
        let summary = m.book.place(order, &mut book_events).map_err(book_reject)?;
        self.apply_book_events(market, account, id, side, &book_events, &summary, origin, events)?;
        Ok(summary)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_book_events(
        &mut self,
        market: MarketId,
        taker: AccountId,
        taker_order: OrderId,
        side: Side,
        book_events: &[BookEvent],
        summary: &PlaceSummary,
        origin: Origin,
        events: &mut Vec<Event>,
    ) -> R<()> {
        for e in book_events {
            match *e {
                BookEvent::Fill { maker, maker_account, price, qty, .. } => {
                    self.touch(RecordKey::Order(market.0, maker.0));
                    self.apply_fill(market, taker, side, maker, maker_account, price, qty, origin, events)?;
                }
                BookEvent::Done { order, account, side: order_side, reason, remaining } => {
                    self.touch(RecordKey::Order(market.0, order.0));
                    if order != taker_order {
                        self.release_open(account, market, order_side, remaining)?;
                    }
                    events.push(Event::Done { market, order, account, reason });
                }
                BookEvent::Rested { order, price, qty } => {
                    self.touch(RecordKey::Order(market.0, order.0));
                    let acct = self.accounts.get_mut(&taker).ok_or(Reject::UnknownAccount(taker))?;
                    let p = acct.position_mut(market).ok_or(Reject::TooManyOrders(
                        u32::try_from(crate::state::POSITIONS_PER_ACCOUNT_MAX).unwrap_or(u32::MAX),
                    ))?;
                    match side {
                        Side::Buy => p.open_buy = p.open_buy.saturating_add(qty),
                        Side::Sell => p.open_sell = p.open_sell.saturating_add(qty),
                    }
                    self.touch_account(taker);
                    events.push(Event::Rested { market, order, account: taker, side, price, qty });
                }
            }
        }
        if summary.cancelled > 0 {
            events.push(Event::Done {
                market,
                order: taker_order,
                account: taker,
                reason: DoneReason::Unfilled,
            });
        }
        Ok(())
    }

    /// Applies one trade to both accounts, the market's open interest and the fee pool.
    #[allow(clippy::too_many_arguments)]
    fn apply_fill(
        &mut self,
        market: MarketId,
        taker: AccountId,
        taker_side: Side,
        maker_order: OrderId,
        maker: AccountId,
        price: Ticks,
        qty: Lots,
        origin: Origin,
        events: &mut Vec<Event>,
    ) -> R<()> {
        let m = self.markets.get(&market).ok_or(Reject::UnknownMarket(market))?;
        let notional = mul(mul(i128::from(price), i128::from(qty))?, m.quote_per_tick_lot())?;
        let taker_fee = match origin {
            // Liquidations pay the insurance fee instead of the taker fee.
            Origin::Liquidation => 0,
            Origin::Client => {
                mul_div_ceil(notional, i128::from(m.spec.risk.taker_fee_ppm.max(0)), i128::from(PPM))?
            }
        };
        let maker_fee =
            mul_div_ceil(notional, i128::from(m.spec.risk.maker_fee_ppm.max(0)), i128::from(PPM))?;
        let signed = mul(i128::from(taker_side.sign()), notional)?;
        let dq = taker_side.sign().saturating_mul(qty);
        let (t_old, t_new) =
            self.trade_position(taker, market, dq, crate::num::neg(signed)?, taker_fee, None)?;
        let (m_old, m_new) = self.trade_position(
            maker,
            market,
            dq.saturating_neg(),
            signed,
            maker_fee,
            Some((taker_side.opposite(), qty)),
        )?;
        let d_oi = oi_delta([(t_old, t_new), (m_old, m_new)]);
        self.fees = add(self.fees, add(taker_fee, maker_fee)?)?;
        let m = self.markets.get_mut(&market).ok_or(Reject::UnknownMarket(market))?;
        m.open_interest = m.open_interest.saturating_add(d_oi);
        m.last_trade = Some(price);
        self.touch_market(market);
        self.touch(RecordKey::Global);
        events.push(Event::Fill {
            market,
            maker_order,
            maker,
            taker,
            taker_side,
            price,
            qty,
            maker_fee,
            taker_fee,
        });
        Ok(())
    }

    /// Changes one account's position by `dq` lots with cash flow `cash` and fee `fee`;
    /// returns the old and new size. `resting` releases a maker's resting exposure. Every
    /// change of a position's size goes through here: it accrues the funding time of the size
    /// held until now and keeps the market's holder set (see [`crate::state::Position::holds`]).
    pub(crate) fn trade_position(
        &mut self,
        account: AccountId,
        market: MarketId,
        dq: Lots,
        cash: Micros,
        fee: Micros,
        resting: Option<(Side, Lots)>,
    ) -> R<(Lots, Lots)> {
        let m = self.markets.get(&market).ok_or(Reject::UnknownMarket(market))?;
        let funding_index = m.funding.index;
        // Perpetuals accrue funding time from the market's last settlement.
        let funding_start = matches!(m.spec.kind, MarketKind::Perpetual).then_some(m.funding.last_settled_ms);
        let now = self.timestamp_ms;
        let acct = self.accounts.get_mut(&account).ok_or(Reject::UnknownAccount(account))?;
        let quote = usize::from(QUOTE_ASSET.0);
        let p = acct.position_mut(market).ok_or(Reject::TooManyOrders(
            u32::try_from(crate::state::POSITIONS_PER_ACCOUNT_MAX).unwrap_or(u32::MAX),
        ))?;
        let old = p.size;
        let new = old.checked_add(dq).ok_or(Reject::Overflow)?;
        let held = match funding_start {
            Some(start) => crate::funding::held_lot_ms(p, start, now)?,
            None => p.funding_lot_ms,
        };
        // Cost basis (informational): reduce proportionally on the closed part, add on the
        // opened part.
        let closing = if old != 0 && old.signum() != dq.signum() {
            dq.saturating_abs().min(old.saturating_abs())
        } else {
            0
        };
        let mut cost = p.cost;
        if closing > 0 {
            cost = sub(
                cost,
                crate::num::mul_div_floor(cost, i128::from(closing), i128::from(old.saturating_abs()))?,
            )?;
        }
        let opening = dq.saturating_abs().saturating_sub(closing);
        if opening > 0 {
            cost = add(
                cost,
                crate::num::mul_div_floor(
                    crate::num::neg(cash)?,
                    i128::from(opening),
                    i128::from(dq.saturating_abs()),
                )?,
            )?;
        }
        let delta = sub(cash, fee)?;
        if p.isolated {
            p.isolated_balance = add(p.isolated_balance, delta)?;
        } else if let Some(b) = acct.balances.get_mut(quote) {
            *b = add(*b, delta)?;
        }
        let p = acct.position_mut(market).ok_or(Reject::Overflow)?;
        p.size = new;
        p.cost = if new == 0 { 0 } else { cost };
        // Funding is settled for every holder at each interval (see `funding`), so a position
        // never carries an unsettled index delta into a trade; the snapshot restarts at the
        // index. What it carries is the time held so far in this interval, which the old
        // size accrues up to now and the new size from now on.
        p.funding_snapshot = funding_index;
        if funding_start.is_some() {
            p.funding_lot_ms = held;
            p.funding_since_ms = now;
        }
        if let Some((side, q)) = resting {
            match side {
                Side::Buy => p.open_buy = p.open_buy.saturating_sub(q).max(0),
                Side::Sell => p.open_sell = p.open_sell.saturating_sub(q).max(0),
            }
        }
        let holds = p.holds();
        acct.prune();
        self.touch_account(account);
        let m = self.markets.get_mut(&market).ok_or(Reject::UnknownMarket(market))?;
        if holds {
            m.holders.insert(account);
        } else {
            m.holders.remove(&account);
        }
        Ok((old, new))
    }

    fn set_margin_mode(&mut self, signer: AccountId, portfolio: bool) -> R<()> {
        let acct = self.account(signer)?;
        let mut after = acct.clone();
        after.portfolio = portfolio;
        let h = self.initial_health(&after, None)?;
        if !h.initial_ok() {
            return Err(Reject::InitialMargin { collateral: h.collateral, required: h.initial });
        }
        self.accounts.insert(signer, after);
        self.touch_account(signer);
        Ok(())
    }

    fn set_isolated(&mut self, signer: AccountId, market: MarketId, isolated: bool) -> R<()> {
        let m = self.markets.get(&market).ok_or(Reject::UnknownMarket(market))?;
        if isolated && !matches!(m.spec.kind, MarketKind::Perpetual) {
            return Err(Reject::OptionIsolated);
        }
        let acct = self.account(signer)?;
        let pos = acct.position(market).copied().unwrap_or_default();
        if pos.size != 0 || pos.open_buy != 0 || pos.open_sell != 0 {
            return Err(Reject::NotFlat);
        }
        let back = pos.isolated_balance;
        let quote_after = add(acct.balances.first().copied().unwrap_or(0), if isolated { 0 } else { back })?;
        let acct = self.accounts.get_mut(&signer).ok_or(Reject::UnknownAccount(signer))?;
        if !isolated {
            // Leaving isolation returns the isolated balance to the cross account.
            if let Some(b) = acct.balances.first_mut() {
                *b = quote_after;
            }
        }
        let p = acct.position_mut(market).ok_or(Reject::TooManyOrders(
            u32::try_from(crate::state::POSITIONS_PER_ACCOUNT_MAX).unwrap_or(u32::MAX),
        ))?;
        p.isolated = isolated;
        if !isolated {
            p.isolated_balance = 0;
        }
        acct.prune();
        self.touch_account(signer);
        Ok(())
    }

    fn transfer_isolated(&mut self, signer: AccountId, market: MarketId, amount: Micros) -> R<()> {
        if amount == 0 {
            return Err(Reject::NonPositiveAmount(amount));
        }
        let acct = self.account(signer)?;
        let pos = acct.position(market).copied().ok_or(Reject::NotIsolated)?;
        if !pos.isolated {
            return Err(Reject::NotIsolated);
        }
        let mut after = acct.clone();
        let quote = after.balances.first().copied().unwrap_or(0);
        if let Some(b) = after.balances.first_mut() {
            *b = sub(quote, amount)?;
        }
        if let Some(p) = after.positions.iter_mut().find(|p| p.market == market) {
            p.isolated_balance = add(p.isolated_balance, amount)?;
        }
        if amount > 0 {
            if quote < amount {
                return Err(Reject::InsufficientBalance { have: quote, need: amount });
            }
            let h = self.initial_health(&after, None)?;
            if !h.initial_ok() {
                return Err(Reject::InitialMargin { collateral: h.collateral, required: h.initial });
            }
        } else {
            let p = after.positions.iter().find(|p| p.market == market).copied().unwrap_or_default();
            let h = self.isolated_initial_health(&p, None)?;
            if !h.initial_ok() || p.isolated_balance < 0 {
                return Err(Reject::InitialMargin { collateral: h.collateral, required: h.initial });
            }
        }
        self.accounts.insert(signer, after);
        self.touch_account(signer);
        Ok(())
    }
}

/// The change in open interest (the long side) when two positions go from `old` to `new`
/// lots each. Each difference of two non-negative `i64`s is exact; their sum saturates only
/// past `i64::MAX` lots of open interest, which the open-interest cap rules out long before,
/// and it matches the saturating update of the counter it is added to.
pub(crate) fn oi_delta(changes: [(Lots, Lots); 2]) -> Lots {
    let [(a_old, a_new), (b_old, b_new)] = changes;
    let da = a_new.max(0).saturating_sub(a_old.max(0));
    let db = b_new.max(0).saturating_sub(b_old.max(0));
    da.saturating_add(db)
}

/// A liquidation order for `account`: IOC at `price`, cancelling resting orders of the same
/// account it would cross (they were cancelled already; this is belt and braces).
pub(crate) fn liquidation_order(
    id: OrderId,
    account: AccountId,
    side: Side,
    price: Ticks,
    qty: Lots,
) -> NewOrder {
    NewOrder {
        id,
        account,
        side,
        price,
        qty,
        tif: TimeInForce::Ioc,
        stp: SelfTradePrevention::CancelResting,
        good_til_height: None,
    }
}
