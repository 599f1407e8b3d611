//! The book itself: slabs, per-side sorted level vectors, matching.

use crate::hash::IdMap;
use crate::{
    BookError, BookEvent, BookLimits, NewOrder, PlaceSummary, RestingOrder, RestoreError, SLOTS_MAX,
};
use bastion_types::{AccountId, DoneReason, Lots, OrderId, SelfTradePrevention, Side, Ticks, TimeInForce};
use std::collections::BTreeMap;

/// "No slot" in the intrusive lists.
const NIL: u32 = u32::MAX;
const _: () = assert!(SLOTS_MAX < NIL);

/// Index of a side in `Book::sides`.
const fn side_ix(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

/// Sort key within a side: ascending key is ascending attractiveness, so the best level is last.
/// Prices are positive, so negation cannot overflow.
const fn key(side: Side, price: Ticks) -> i64 {
    match side {
        Side::Buy => price,
        Side::Sell => -price,
    }
}

/// Whether this time-in-force leaves a remainder resting.
const fn rests(tif: TimeInForce) -> bool {
    matches!(tif, TimeInForce::Gtc | TimeInForce::PostOnly)
}

#[derive(Clone, Debug)]
struct Node {
    order: RestingOrder,
    prev: u32,
    next: u32,
    level: u32,
}

#[derive(Clone, Debug)]
struct Level {
    price: Ticks,
    /// Sum of the remaining quantities of the orders in the queue.
    total: Lots,
    head: u32,
    tail: u32,
}

/// What matching an incoming order would do, computed without changing anything.
#[derive(Clone, Copy, Debug, Default)]
struct Simulation {
    filled: Lots,
    /// Quantity that would rest (0 unless the tif rests and STP did not stop the taker).
    rest: Lots,
    /// Makers that would leave the book (filled or STP-cancelled).
    removed: u32,
    /// Of those, makers of the incoming order's own account.
    own_removed: u32,
}

/// A central limit order book for one market. See the crate documentation for the layout.
#[derive(Clone, Debug)]
pub struct Book {
    limits: BookLimits,
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    levels: Vec<Level>,
    free_levels: Vec<u32>,
    /// `[bids, asks]`: `(key, level slot)` ascending by key, best level last.
    sides: [Vec<(i64, u32)>; 2],
    /// Sum of resting quantity per side; lets placement skip the level-overflow check whenever
    /// the whole side plus the new order fits in `i64`.
    side_qty: [i128; 2],
    index: IdMap<OrderId, u32>,
    accounts: IdMap<AccountId, u32>,
    expiries: BTreeMap<(u64, u64), OrderId>,
    next_seq: u64,
}

impl Book {
    /// An empty book.
    pub fn new(limits: BookLimits) -> Book {
        Book {
            limits,
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            levels: Vec::new(),
            free_levels: Vec::new(),
            sides: [Vec::new(), Vec::new()],
            side_qty: [0, 0],
            index: IdMap::default(),
            accounts: IdMap::default(),
            expiries: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Rebuilds a book from its resting orders in priority order, as [`Book::orders`] lists them
    /// (each side best level first, time priority within a level; the two sides may come in
    /// either order or interleaved), and the sequence counter [`Book::next_seq`] had. Nothing
    /// matches: each order joins the tail of its level, so `restore(b.limits(), b.next_seq(),
    /// b.orders().copied())` behaves exactly like `b` in every later operation. Orders beyond
    /// the limits are kept (as after [`Book::set_limits`] lowered them). Costs O(orders).
    ///
    /// Refuses anything a book could not hold: a duplicate id, a non-positive price or size, a
    /// size above the original size, a sequence number not below `next_seq` or not increasing
    /// within a level, a worse level before a better one, a level total beyond `i64`, two
    /// expiring orders with the same `(good_til_height, seq)`, more than [`SLOTS_MAX`] orders,
    /// or a crossed book.
    pub fn restore(
        limits: BookLimits,
        next_seq: u64,
        orders: impl IntoIterator<Item = RestingOrder>,
    ) -> Result<Book, RestoreError> {
        let mut book = Book::new(limits);
        book.next_seq = next_seq;
        // Per side: the previous order's (key, seq), and the levels best first.
        let mut last: [Option<(i64, u64)>; 2] = [None, None];
        let mut best_first: [Vec<(i64, u32)>; 2] = [Vec::new(), Vec::new()];
        for order in orders {
            let id = order.id;
            if order.price <= 0 || order.qty <= 0 || order.qty > order.original_qty {
                return Err(RestoreError::BadOrder(id));
            }
            if order.seq >= next_seq {
                return Err(RestoreError::SeqAhead { order: id, seq: order.seq, next_seq });
            }
            if book.index.contains_key(&id) {
                return Err(RestoreError::DuplicateId(id));
            }
            if book.nodes.len() >= SLOTS_MAX as usize {
                return Err(RestoreError::TooMany);
            }
            let s = side_ix(order.side);
            let k = key(order.side, order.price);
            let new_level = match last[s] {
                None => true,
                Some((lk, lseq)) => {
                    if k > lk || (k == lk && order.seq <= lseq) {
                        return Err(RestoreError::OutOfOrder(id));
                    }
                    k < lk
                }
            };
            if new_level {
                // Levels never outnumber orders, which are capped below NIL.
                let l = book.levels.len() as u32;
                book.levels.push(Level { price: order.price, total: 0, head: NIL, tail: NIL });
                best_first[s].push((k, l));
            }
            let Some(&(_, l)) = best_first[s].last() else { return Err(RestoreError::OutOfOrder(id)) };
            let level = &mut book.levels[l as usize];
            level.total = level.total.checked_add(order.qty).ok_or(RestoreError::LevelOverflow(id))?;
            if let Some(h) = order.good_til_height
                && book.expiries.insert((h, order.seq), id).is_some()
            {
                return Err(RestoreError::DuplicateExpiry(id));
            }
            last[s] = Some((k, order.seq));
            // Checked against SLOTS_MAX above, so the length fits below NIL.
            let slot = book.nodes.len() as u32;
            book.nodes.push(Node { order, prev: level.tail, next: NIL, level: l });
            if level.tail == NIL {
                level.head = slot;
            } else {
                book.nodes[level.tail as usize].next = slot;
            }
            level.tail = slot;
            book.side_qty[s] += i128::from(order.qty);
            book.index.insert(id, slot);
            let count = book.accounts.entry(order.account).or_insert(0);
            *count = count.saturating_add(1);
        }
        for (side, mut levels) in book.sides.iter_mut().zip(best_first) {
            levels.reverse();
            *side = levels;
        }
        if let (Some((bid, _)), Some((ask, _))) = (book.best_bid(), book.best_ask())
            && bid >= ask
        {
            return Err(RestoreError::Crossed { bid, ask });
        }
        Ok(book)
    }

    /// The sequence number the next resting order will get (see [`RestingOrder::seq`]).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Current limits.
    pub fn limits(&self) -> BookLimits {
        self.limits
    }

    /// Changes the limits. Orders already resting stay even if they now exceed them; only new
    /// resting orders are refused until the book is back under the limits.
    pub fn set_limits(&mut self, limits: BookLimits) {
        self.limits = limits;
    }

    /// Matches an incoming limit order, then rests the remainder if its tif is `Gtc` or
    /// `PostOnly`. Events are appended to `out` in order. On `Err` nothing changed.
    pub fn place(&mut self, o: NewOrder, out: &mut Vec<BookEvent>) -> Result<PlaceSummary, BookError> {
        if o.price <= 0 {
            return Err(BookError::BadPrice(o.price));
        }
        if o.qty <= 0 {
            return Err(BookError::BadQuantity(o.qty));
        }
        if self.index.contains_key(&o.id) {
            return Err(BookError::DuplicateId(o.id));
        }
        self.admit(&o, None)?;
        Ok(self.execute(o, out, false))
    }

    /// Removes a resting order owned by `account`.
    pub fn cancel(&mut self, id: OrderId, account: AccountId) -> Result<RestingOrder, BookError> {
        let slot = *self.index.get(&id).ok_or(BookError::UnknownOrder(id))?;
        if self.nodes[slot as usize].order.account != account {
            return Err(BookError::NotOwner(id));
        }
        Ok(self.unlink(slot))
    }

    /// Removes any resting order by id (liquidation, settlement, expiry). Emits no event: the
    /// caller knows why it removed the order.
    pub fn remove(&mut self, id: OrderId) -> Option<RestingOrder> {
        let slot = *self.index.get(&id)?;
        Some(self.unlink(slot))
    }

    /// Cancel-replace (exchange-core's "move"): the order gets a new price and size, loses its
    /// time priority and may match like an incoming `Gtc` order. It keeps its id, account, side,
    /// self-trade prevention and expiry. The old version leaves without a `Done` event (the id
    /// lives on); if the new version does not rest (filled in full or stopped by STP) no
    /// `Rested` follows and [`Book::get`] no longer finds it. On `Err` nothing changed.
    pub fn replace(
        &mut self,
        id: OrderId,
        account: AccountId,
        price: Ticks,
        qty: Lots,
        out: &mut Vec<BookEvent>,
    ) -> Result<PlaceSummary, BookError> {
        let slot = *self.index.get(&id).ok_or(BookError::UnknownOrder(id))?;
        let old = self.nodes[slot as usize].order;
        if old.account != account {
            return Err(BookError::NotOwner(id));
        }
        if price <= 0 {
            return Err(BookError::BadPrice(price));
        }
        if qty <= 0 {
            return Err(BookError::BadQuantity(qty));
        }
        let o = NewOrder {
            id,
            account,
            side: old.side,
            price,
            qty,
            tif: TimeInForce::Gtc,
            stp: old.stp,
            good_til_height: old.good_til_height,
        };
        self.admit(&o, Some(&old))?;
        // The id and account entries stay: the order usually rests again at once, and then
        // only the index's slot changes (saving a map removal and insertion per move).
        self.unlink_keep_identity(slot);
        Ok(self.execute(o, out, true))
    }

    /// Removes every resting order whose `good_til_height < height`, oldest expiry first (ties
    /// in time priority), appending `Done { Expired }` for each; returns how many. Costs one
    /// map lookup when nothing expires.
    pub fn expire(&mut self, height: u64, out: &mut Vec<BookEvent>) -> usize {
        let mut expired = 0usize;
        // Each pass removes one entry, so this runs at most `len()` times.
        while let Some((&(h, _), &id)) = self.expiries.first_key_value() {
            if h >= height {
                break;
            }
            match self.index.get(&id) {
                Some(&slot) => {
                    let order = self.unlink(slot);
                    out.push(BookEvent::Done {
                        order: id,
                        account: order.account,
                        side: order.side,
                        reason: DoneReason::Expired,
                        remaining: order.qty,
                    });
                    expired = expired.saturating_add(1);
                }
                // Unreachable while the invariants hold; drop the stale entry rather than spin.
                None => {
                    self.expiries.pop_first();
                }
            }
        }
        expired
    }

    /// The resting order with this id.
    pub fn get(&self, id: OrderId) -> Option<&RestingOrder> {
        self.index.get(&id).map(|&slot| &self.nodes[slot as usize].order)
    }

    /// Best bid: price and total quantity at that level.
    pub fn best_bid(&self) -> Option<(Ticks, Lots)> {
        self.best(Side::Buy)
    }

    /// Best ask: price and total quantity at that level.
    pub fn best_ask(&self) -> Option<(Ticks, Lots)> {
        self.best(Side::Sell)
    }

    /// Best level of one side.
    pub fn best(&self, side: Side) -> Option<(Ticks, Lots)> {
        self.sides[side_ix(side)].last().map(|&(_, l)| {
            let level = &self.levels[l as usize];
            (level.price, level.total)
        })
    }

    /// Levels best-first for one side (bids: descending price; asks: ascending), as
    /// `(price, total quantity)`.
    pub fn levels(&self, side: Side) -> impl DoubleEndedIterator<Item = (Ticks, Lots)> + '_ {
        self.sides[side_ix(side)].iter().rev().map(|&(_, l)| {
            let level = &self.levels[l as usize];
            (level.price, level.total)
        })
    }

    /// Number of price levels on one side.
    pub fn level_count(&self, side: Side) -> usize {
        self.sides[side_ix(side)].len()
    }

    /// How much of `qty` an incoming order of `side` with limit `price` would fill now, ignoring
    /// self-trade prevention. Changes nothing; costs one step per level crossed.
    pub fn fillable(&self, side: Side, price: Ticks, qty: Lots) -> Lots {
        if qty <= 0 {
            return 0;
        }
        let threshold = key(side.opposite(), price);
        let mut sum: Lots = 0;
        for &(k, l) in self.sides[side_ix(side.opposite())].iter().rev() {
            if k < threshold || sum >= qty {
                break;
            }
            sum = sum.saturating_add(self.levels[l as usize].total);
        }
        sum.min(qty)
    }

    /// Every resting order: bids best-first, then asks best-first, time priority within a
    /// level. Deterministic; used for state commitments and snapshots.
    pub fn orders(&self) -> impl Iterator<Item = &RestingOrder> + '_ {
        self.side_orders(Side::Buy).chain(self.side_orders(Side::Sell))
    }

    /// Resting orders of one side, best level first, time priority within a level.
    pub fn side_orders(&self, side: Side) -> impl Iterator<Item = &RestingOrder> + '_ {
        self.sides[side_ix(side)]
            .iter()
            .rev()
            .flat_map(move |&(_, l)| LevelOrders { book: self, cur: self.levels[l as usize].head })
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no order rests.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Number of resting orders of `account`.
    pub fn orders_of(&self, account: AccountId) -> u32 {
        self.accounts.get(&account).copied().unwrap_or(0)
    }

    /// Checks every structural invariant; for tests and debugging (costs O(orders)).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = 0usize;
        let mut per_account: BTreeMap<AccountId, u32> = BTreeMap::new();
        let mut side_sums = [0i128; 2];
        for side in [Side::Buy, Side::Sell] {
            let s = side_ix(side);
            let v = &self.sides[s];
            if v.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(format!("{side:?} levels not strictly sorted"));
            }
            for &(k, l) in v {
                let level = self.levels.get(l as usize).ok_or("level slot out of range")?;
                if key(side, level.price) != k {
                    return Err(format!("level key {k} does not match price {}", level.price));
                }
                let mut total: Lots = 0;
                let mut count = 0usize;
                let mut prev = NIL;
                let mut cur = level.head;
                while cur != NIL {
                    let n = self.nodes.get(cur as usize).ok_or("node slot out of range")?;
                    if n.prev != prev || n.level != l {
                        return Err(format!("broken links at order {}", n.order.id));
                    }
                    if n.order.price != level.price || n.order.side != side || n.order.qty <= 0 {
                        return Err(format!("order {} does not belong in its level", n.order.id));
                    }
                    if self.index.get(&n.order.id) != Some(&cur) {
                        return Err(format!("index does not point at order {}", n.order.id));
                    }
                    if let Some(h) = n.order.good_til_height
                        && self.expiries.get(&(h, n.order.seq)) != Some(&n.order.id)
                    {
                        return Err(format!("order {} missing from the expiry index", n.order.id));
                    }
                    total = total.checked_add(n.order.qty).ok_or("level total overflows")?;
                    *per_account.entry(n.order.account).or_default() += 1;
                    count += 1;
                    prev = cur;
                    cur = n.next;
                    if count > self.nodes.len() {
                        return Err("cycle in a level queue".into());
                    }
                }
                if prev != level.tail || count == 0 {
                    return Err(format!("level {} empty or tail wrong", level.price));
                }
                if total != level.total {
                    return Err(format!("level {} total {} != sum {total}", level.price, level.total));
                }
                side_sums[s] += i128::from(total);
                seen += count;
            }
            if side_sums[s] != self.side_qty[s] {
                return Err(format!("{side:?} quantity {} != sum {}", self.side_qty[s], side_sums[s]));
            }
        }
        if seen != self.index.len() {
            return Err(format!("index has {} orders, levels {seen}", self.index.len()));
        }
        if let (Some((b, _)), Some((a, _))) = (self.best_bid(), self.best_ask())
            && b >= a
        {
            return Err(format!("crossed book: bid {b} >= ask {a}"));
        }
        if per_account.len() != self.accounts.len()
            || per_account.iter().any(|(a, &c)| self.accounts.get(a) != Some(&c))
        {
            return Err("per-account counts do not match".into());
        }
        let with_expiry = self.orders().filter(|o| o.good_til_height.is_some()).count();
        if with_expiry != self.expiries.len() {
            return Err("expiry index has stale entries".into());
        }
        let live_levels = self.sides[0].len() + self.sides[1].len();
        if live_levels + self.free_levels.len() != self.levels.len() {
            return Err("level slab leaks".into());
        }
        if seen + self.free_nodes.len() != self.nodes.len() {
            return Err("order slab leaks".into());
        }
        Ok(())
    }

    // ----- admission -----

    /// Every check that can refuse `o` (already known to have a positive price and size and a
    /// fresh id), done before anything changes. `replacing` is the order `o` replaces: it will
    /// have left the book before `o` matches.
    fn admit(&self, o: &NewOrder, replacing: Option<&RestingOrder>) -> Result<(), BookError> {
        match o.tif {
            TimeInForce::PostOnly => {
                if self.crosses(o.side, o.price) {
                    return Err(BookError::PostOnlyWouldTake);
                }
            }
            TimeInForce::Fok => {
                // The level totals answer most cases without walking orders; the walk is
                // needed because self-trade prevention may skip or stop on own orders.
                if self.fillable(o.side, o.price, o.qty) < o.qty || self.simulate(o).filled < o.qty {
                    return Err(BookError::FokUnfillable);
                }
            }
            TimeInForce::Gtc | TimeInForce::Ioc => {}
        }
        if !rests(o.tif) {
            return Ok(());
        }
        let s = side_ix(o.side);
        let freed_qty = replacing.map_or(0, |r| r.qty);
        // Matching never touches the own side, so the level `o` would join keeps its total.
        if self.side_qty[s] - i128::from(freed_qty) + i128::from(o.qty) > i128::from(Lots::MAX)
            && let Some(pos) = self.find_level(o.side, o.price)
        {
            let l = self.sides[s][pos].1;
            let mut total = self.levels[l as usize].total;
            if replacing.is_some_and(|r| r.price == o.price) {
                total -= freed_qty;
            }
            if total.checked_add(o.qty).is_none() {
                return Err(BookError::BadQuantity(o.qty));
            }
        }
        let freed = u32::from(replacing.is_some());
        let len = u32::try_from(self.len()).unwrap_or(u32::MAX).saturating_sub(freed);
        let own = self.orders_of(o.account).saturating_sub(freed);
        let cap = self.limits.max_orders.min(SLOTS_MAX);
        if len < cap && own < self.limits.max_orders_per_account {
            // Matching only removes orders, so the remainder fits whatever happens.
            return Ok(());
        }
        let sim = if o.tif == TimeInForce::PostOnly {
            Simulation { rest: o.qty, ..Simulation::default() }
        } else {
            self.simulate(o)
        };
        if sim.rest == 0 {
            return Ok(());
        }
        if len.saturating_sub(sim.removed) >= cap {
            return Err(BookError::BookFull(self.limits.max_orders));
        }
        if own.saturating_sub(sim.own_removed) >= self.limits.max_orders_per_account {
            return Err(BookError::TooManyOrders(self.limits.max_orders_per_account));
        }
        Ok(())
    }

    /// Whether an order of `side` at `price` would trade with the opposite best level.
    fn crosses(&self, side: Side, price: Ticks) -> bool {
        self.sides[side_ix(side.opposite())].last().is_some_and(|&(k, _)| k >= key(side.opposite(), price))
    }

    /// Runs the matching loop of [`Book::match_incoming`] without changing anything.
    fn simulate(&self, o: &NewOrder) -> Simulation {
        let mut sim = Simulation::default();
        let mut remaining = o.qty;
        let mut stopped = false;
        let threshold = key(o.side.opposite(), o.price);
        'levels: for &(k, l) in self.sides[side_ix(o.side.opposite())].iter().rev() {
            if k < threshold || remaining == 0 {
                break;
            }
            let mut cur = self.levels[l as usize].head;
            while cur != NIL && remaining > 0 {
                let n = &self.nodes[cur as usize];
                cur = n.next;
                if n.order.account == o.account {
                    if o.stp != SelfTradePrevention::CancelTaker {
                        sim.removed += 1;
                        sim.own_removed += 1;
                    }
                    if o.stp == SelfTradePrevention::CancelResting {
                        continue;
                    }
                    stopped = true;
                    break 'levels;
                }
                let q = remaining.min(n.order.qty);
                remaining -= q;
                sim.filled += q;
                if q == n.order.qty {
                    sim.removed += 1;
                }
            }
        }
        if rests(o.tif) && !stopped {
            sim.rest = remaining;
        }
        sim
    }

    // ----- mutation -----

    /// Matches `o` (already admitted) and rests or cancels the remainder. `replacing`: `o`
    /// replaces an order unlinked by [`Book::unlink_keep_identity`], whose id and account
    /// entries are still counted.
    fn execute(&mut self, o: NewOrder, out: &mut Vec<BookEvent>, replacing: bool) -> PlaceSummary {
        let (remaining, stopped) = self.match_incoming(&o, out);
        let filled = o.qty - remaining;
        if remaining == 0 || stopped || !rests(o.tif) {
            if replacing {
                self.forget(o.id, o.account);
            }
            return PlaceSummary { filled, rested: 0, cancelled: remaining };
        }
        let seq = self.next_seq;
        // 2^64 rests cannot happen; saturating keeps this panic-free all the same.
        self.next_seq = self.next_seq.saturating_add(1);
        self.link(
            RestingOrder {
                id: o.id,
                account: o.account,
                side: o.side,
                price: o.price,
                qty: remaining,
                original_qty: o.qty,
                good_til_height: o.good_til_height,
                stp: o.stp,
                seq,
            },
            replacing,
        );
        out.push(BookEvent::Rested { order: o.id, price: o.price, qty: remaining });
        PlaceSummary { filled, rested: remaining, cancelled: 0 }
    }

    /// The matching loop: trades `o` against the opposite side best-first, FIFO within a level,
    /// at the makers' prices. Returns the unfilled remainder and whether self-trade prevention
    /// stopped the taker.
    fn match_incoming(&mut self, o: &NewOrder, out: &mut Vec<BookEvent>) -> (Lots, bool) {
        let opp = side_ix(o.side.opposite());
        let threshold = key(o.side.opposite(), o.price);
        let mut remaining = o.qty;
        // Each iteration of either loop removes a maker or exhausts the taker, so both are
        // bounded by the number of resting orders.
        while remaining > 0 {
            let Some(&(k, l)) = self.sides[opp].last() else { break };
            if k < threshold {
                break;
            }
            let level = &self.levels[l as usize];
            let price = level.price;
            let mut cur = level.head;
            while cur != NIL && remaining > 0 {
                let n = &mut self.nodes[cur as usize];
                let next = n.next;
                if n.order.account == o.account {
                    if o.stp == SelfTradePrevention::CancelTaker {
                        return (remaining, true);
                    }
                    // CancelResting and CancelBoth both remove the resting order.
                    let maker = self.unlink(cur);
                    out.push(BookEvent::Done {
                        order: maker.id,
                        account: maker.account,
                        side: maker.side,
                        reason: DoneReason::SelfTrade,
                        remaining: maker.qty,
                    });
                    if o.stp == SelfTradePrevention::CancelBoth {
                        return (remaining, true);
                    }
                    cur = next;
                    continue;
                }
                let q = remaining.min(n.order.qty);
                n.order.qty -= q;
                remaining -= q;
                let maker_remaining = n.order.qty;
                let (maker, maker_account, maker_side) = (n.order.id, n.order.account, n.order.side);
                self.levels[l as usize].total -= q;
                self.side_qty[opp] -= i128::from(q);
                out.push(BookEvent::Fill { maker, maker_account, price, qty: q, maker_remaining });
                if maker_remaining == 0 {
                    self.unlink(cur);
                    out.push(BookEvent::Done {
                        order: maker,
                        account: maker_account,
                        side: maker_side,
                        reason: DoneReason::Filled,
                        remaining: 0,
                    });
                }
                cur = next;
            }
        }
        (remaining, false)
    }

    /// Position in its side's vector of the level at `price`, if one exists.
    #[inline]
    fn find_level(&self, side: Side, price: Ticks) -> Option<usize> {
        let k = key(side, price);
        self.sides[side_ix(side)].binary_search_by(|&(x, _)| x.cmp(&k)).ok()
    }

    /// Rests `order` at the tail of its level (creating the level if needed) and indexes it
    /// (or, when `replacing`, points its existing index entry at the new slot). Admission has
    /// checked every limit.
    fn link(&mut self, order: RestingOrder, replacing: bool) {
        let s = side_ix(order.side);
        let k = key(order.side, order.price);
        let v = &mut self.sides[s];
        let l = match v.binary_search_by(|&(x, _)| x.cmp(&k)) {
            Ok(pos) => v[pos].1,
            Err(pos) => {
                let level = Level { price: order.price, total: 0, head: NIL, tail: NIL };
                let l = match self.free_levels.pop() {
                    Some(l) => {
                        self.levels[l as usize] = level;
                        l
                    }
                    None => {
                        // Levels never outnumber orders, and orders are capped below NIL.
                        let l = self.levels.len() as u32;
                        self.levels.push(level);
                        l
                    }
                };
                v.insert(pos, (k, l));
                l
            }
        };
        let level = &mut self.levels[l as usize];
        let node = Node { order, prev: level.tail, next: NIL, level: l };
        let slot = match self.free_nodes.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = node;
                slot
            }
            None => {
                // Admission caps the book at SLOTS_MAX orders, so the length fits below NIL.
                let slot = self.nodes.len() as u32;
                self.nodes.push(node);
                slot
            }
        };
        if level.tail == NIL {
            level.head = slot;
        } else {
            self.nodes[level.tail as usize].next = slot;
        }
        level.tail = slot;
        level.total += order.qty;
        self.side_qty[s] += i128::from(order.qty);
        if replacing && let Some(s) = self.index.get_mut(&order.id) {
            *s = slot;
        } else {
            self.index.insert(order.id, slot);
            *self.accounts.entry(order.account).or_insert(0) += 1;
        }
        if let Some(h) = order.good_til_height {
            self.expiries.insert((h, order.seq), order.id);
        }
    }

    /// Removes the order in `slot` from its level, the indexes and the slab.
    fn unlink(&mut self, slot: u32) -> RestingOrder {
        let order = self.unlink_keep_identity(slot);
        self.forget(order.id, order.account);
        order
    }

    /// Drops the id's index entry and one order from the account's count.
    fn forget(&mut self, id: OrderId, account: AccountId) {
        self.index.remove(&id);
        if let Some(c) = self.accounts.get_mut(&account) {
            *c -= 1;
            if *c == 0 {
                self.accounts.remove(&account);
            }
        }
    }

    /// Removes the order in `slot` from its level, the expiry index and the slab, leaving its
    /// id entry (pointing at a free slot) and its account count for the caller to settle.
    fn unlink_keep_identity(&mut self, slot: u32) -> RestingOrder {
        let Node { order, prev, next, level: l } = self.nodes[slot as usize].clone();
        if prev == NIL {
            self.levels[l as usize].head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.levels[l as usize].tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        let s = side_ix(order.side);
        let level = &mut self.levels[l as usize];
        level.total -= order.qty;
        self.side_qty[s] -= i128::from(order.qty);
        if level.head == NIL {
            let v = &mut self.sides[s];
            // The matching loop empties the best level, which is last: pop without searching.
            if v.last().is_some_and(|&(_, x)| x == l) {
                v.pop();
            } else if let Ok(pos) = v.binary_search_by(|&(x, _)| x.cmp(&key(order.side, order.price))) {
                v.remove(pos);
            }
            self.free_levels.push(l);
        }
        self.free_nodes.push(slot);
        if let Some(h) = order.good_til_height {
            self.expiries.remove(&(h, order.seq));
        }
        order
    }
}

/// The orders of one level in time priority.
#[derive(Clone, Debug)]
pub struct LevelOrders<'a> {
    book: &'a Book,
    cur: u32,
}

impl<'a> Iterator for LevelOrders<'a> {
    type Item = &'a RestingOrder;

    fn next(&mut self) -> Option<&'a RestingOrder> {
        let n = self.book.nodes.get(self.cur as usize)?;
        self.cur = n.next;
        Some(&n.order)
    }
}

#[cfg(test)]
mod restore_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const LIMITS: BookLimits = BookLimits { max_orders: 400, max_orders_per_account: 40 };

    /// Applies one random operation to `book`, returning what it reported (for comparison).
    fn random_op(book: &mut Book, rng: &mut ChaCha8Rng, next_id: &mut u64, height: u64) -> String {
        let mut out = Vec::new();
        let account = AccountId(rng.random_range(1..12));
        let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        // Prices around 1000, each side biased away from the other so levels build up.
        let price = match side {
            Side::Buy => rng.random_range(985..1003),
            Side::Sell => rng.random_range(998..1016),
        };
        match rng.random_range(0..10) {
            0..=5 => {
                *next_id += 1;
                let o = NewOrder {
                    id: OrderId(*next_id),
                    account,
                    side,
                    price,
                    qty: rng.random_range(1..30),
                    tif: match rng.random_range(0..6) {
                        0 => TimeInForce::Ioc,
                        1 => TimeInForce::Fok,
                        2 => TimeInForce::PostOnly,
                        _ => TimeInForce::Gtc,
                    },
                    stp: match rng.random_range(0..3) {
                        0 => SelfTradePrevention::CancelResting,
                        1 => SelfTradePrevention::CancelTaker,
                        _ => SelfTradePrevention::CancelBoth,
                    },
                    good_til_height: rng.random_bool(0.3).then(|| height + rng.random_range(0..5)),
                };
                format!("{:?} {out:?}", book.place(o, &mut out))
            }
            6 | 7 => {
                let ids: Vec<_> = book.orders().map(|o| (o.id, o.account)).collect();
                if ids.is_empty() {
                    return String::new();
                }
                let (id, acct) = ids[rng.random_range(0..ids.len())];
                if rng.random_bool(0.5) {
                    format!("{:?}", book.cancel(id, acct))
                } else {
                    let r = book.replace(id, acct, price, rng.random_range(1..30), &mut out);
                    format!("{r:?} {out:?}")
                }
            }
            _ => format!("{} {out:?}", book.expire(height, &mut out)),
        }
    }

    fn restored(book: &Book) -> Book {
        Book::restore(book.limits(), book.next_seq(), book.orders().copied()).expect("a live book restores")
    }

    #[test]
    fn restored_book_behaves_identically() {
        let mut restored_orders = 0;
        for seed in 0..20u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut live = Book::new(LIMITS);
            let mut next_id = 0;
            for step in 0..3_000u64 {
                random_op(&mut live, &mut rng, &mut next_id, step / 20);
                if step % 500 == 499 {
                    let mut copy = restored(&live);
                    copy.check_invariants().unwrap();
                    restored_orders += copy.len();
                    assert!(live.orders().eq(copy.orders()), "seed {seed}: orders differ after restore");
                    // The same operations from here on: identical reports and contents.
                    let mut rng_a = rng.clone();
                    let mut rng_b = rng.clone();
                    let (mut id_a, mut id_b) = (next_id, next_id);
                    let mut a = live.clone();
                    for k in 0..400u64 {
                        let h = (step + k) / 20;
                        let ra = random_op(&mut a, &mut rng_a, &mut id_a, h);
                        let rb = random_op(&mut copy, &mut rng_b, &mut id_b, h);
                        assert_eq!(ra, rb, "seed {seed} step {step}+{k}");
                        assert!(a.orders().eq(copy.orders()), "seed {seed} step {step}+{k}");
                        assert_eq!(a.next_seq(), copy.next_seq());
                    }
                    copy.check_invariants().unwrap();
                }
            }
        }
        assert!(restored_orders > 1_000, "the books restored must hold orders ({restored_orders})");
    }

    fn order(id: u64, side: Side, price: Ticks, seq: u64) -> RestingOrder {
        RestingOrder {
            id: OrderId(id),
            account: AccountId(1),
            side,
            price,
            qty: 5,
            original_qty: 5,
            good_til_height: None,
            stp: SelfTradePrevention::CancelResting,
            seq,
        }
    }

    #[test]
    fn restore_refuses_what_a_book_cannot_hold() {
        let ok = [
            order(1, Side::Buy, 100, 3),
            order(2, Side::Buy, 100, 5),
            order(3, Side::Buy, 99, 1),
            order(4, Side::Sell, 101, 0),
            order(5, Side::Sell, 102, 2),
        ];
        let b = Book::restore(LIMITS, 6, ok).unwrap();
        b.check_invariants().unwrap();
        assert!(b.orders().copied().eq(ok));
        assert_eq!(b.orders_of(AccountId(1)), 5);
        assert_eq!(b.best_bid(), Some((100, 10)));
        // Sides may interleave.
        let interleaved = [ok[3], ok[0], ok[4], ok[1], ok[2]];
        assert!(Book::restore(LIMITS, 6, interleaved).unwrap().orders().copied().eq(ok));

        let e = |orders: Vec<RestingOrder>, next: u64| Book::restore(LIMITS, next, orders).err();
        assert_eq!(e(vec![ok[0], ok[0]], 6), Some(RestoreError::DuplicateId(OrderId(1))));
        assert_eq!(e(vec![ok[1], ok[0]], 6), Some(RestoreError::OutOfOrder(OrderId(1))));
        assert_eq!(e(vec![ok[2], ok[0]], 6), Some(RestoreError::OutOfOrder(OrderId(1))));
        assert_eq!(e(vec![ok[4], ok[3]], 6), Some(RestoreError::OutOfOrder(OrderId(4))));
        assert_eq!(
            e(vec![ok[1]], 5),
            Some(RestoreError::SeqAhead { order: OrderId(2), seq: 5, next_seq: 5 })
        );
        assert_eq!(
            e(vec![order(1, Side::Buy, 101, 0), ok[3]], 6),
            Some(RestoreError::Crossed { bid: 101, ask: 101 })
        );
        assert_eq!(e(vec![order(1, Side::Buy, 0, 0)], 6), Some(RestoreError::BadOrder(OrderId(1))));
        let mut big = order(1, Side::Buy, 100, 0);
        big.qty = Lots::MAX;
        big.original_qty = Lots::MAX;
        assert_eq!(e(vec![big, ok[1]], 6), Some(RestoreError::LevelOverflow(OrderId(2))));
        let mut x = ok[0];
        x.good_til_height = Some(7);
        let mut y = order(9, Side::Sell, 105, 3);
        y.good_til_height = Some(7);
        assert_eq!(e(vec![x, y], 6), Some(RestoreError::DuplicateExpiry(OrderId(9))));
        // An empty book restores to an empty book with the counter kept.
        let empty = Book::restore(LIMITS, 42, []).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.next_seq(), 42);
    }
}
