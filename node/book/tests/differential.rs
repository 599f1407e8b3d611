//! Seeded differential test: the book against a naive reference (a `Vec` of orders scanned for
//! the best maker on every step) over random operations, comparing results, event streams and
//! full book contents after every operation.
//!
//! Replay a failure with `BASTION_SEED=<seed> cargo test -p bastion-book --test differential`;
//! `BASTION_LONG=1` runs many more seeds and operations.

use bastion_book::{Book, BookError, BookEvent, BookLimits, NewOrder, PlaceSummary, RestingOrder, SLOTS_MAX};
use bastion_types::{AccountId, DoneReason, Lots, OrderId, SelfTradePrevention, Side, Ticks, TimeInForce};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The obviously-correct book: every step scans all orders.
#[derive(Clone, Debug)]
struct Naive {
    limits: BookLimits,
    orders: Vec<RestingOrder>,
    next_seq: u64,
}

fn crosses(taker: Side, limit: Ticks, maker_price: Ticks) -> bool {
    match taker {
        Side::Buy => maker_price <= limit,
        Side::Sell => maker_price >= limit,
    }
}

impl Naive {
    fn new(limits: BookLimits) -> Self {
        Naive { limits, orders: Vec::new(), next_seq: 0 }
    }

    /// Index of the best crossing maker for a taker: best price, then earliest seq.
    fn best_maker(&self, taker: Side, limit: Ticks) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, m) in self.orders.iter().enumerate() {
            if m.side == taker || !crosses(taker, limit, m.price) {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let bm = &self.orders[b];
                    let better = match taker {
                        Side::Buy => m.price < bm.price,
                        Side::Sell => m.price > bm.price,
                    } || (m.price == bm.price && m.seq < bm.seq);
                    if better { Some(i) } else { Some(b) }
                }
            };
        }
        best
    }

    fn run(&mut self, o: &NewOrder, out: &mut Vec<BookEvent>) -> (Lots, bool) {
        let mut rem = o.qty;
        while rem > 0 {
            let Some(i) = self.best_maker(o.side, o.price) else { break };
            let m = self.orders[i];
            if m.account == o.account {
                match o.stp {
                    SelfTradePrevention::CancelResting => {
                        self.orders.remove(i);
                        out.push(BookEvent::Done {
                            order: m.id,
                            account: m.account,
                            side: m.side,
                            reason: DoneReason::SelfTrade,
                            remaining: m.qty,
                        });
                        continue;
                    }
                    SelfTradePrevention::CancelTaker => return (rem, true),
                    SelfTradePrevention::CancelBoth => {
                        self.orders.remove(i);
                        out.push(BookEvent::Done {
                            order: m.id,
                            account: m.account,
                            side: m.side,
                            reason: DoneReason::SelfTrade,
                            remaining: m.qty,
                        });
                        return (rem, true);
                    }
                }
            }
            let q = rem.min(m.qty);
            rem -= q;
            self.orders[i].qty -= q;
            let left = self.orders[i].qty;
            out.push(BookEvent::Fill {
                maker: m.id,
                maker_account: m.account,
                price: m.price,
                qty: q,
                maker_remaining: left,
            });
            if left == 0 {
                self.orders.remove(i);
                out.push(BookEvent::Done {
                    order: m.id,
                    account: m.account,
                    side: m.side,
                    reason: DoneReason::Filled,
                    remaining: 0,
                });
            }
        }
        (rem, false)
    }

    fn count_of(&self, a: AccountId) -> u32 {
        self.orders.iter().filter(|o| o.account == a).count() as u32
    }

    fn place(&mut self, o: NewOrder, out: &mut Vec<BookEvent>) -> Result<PlaceSummary, BookError> {
        if o.price <= 0 {
            return Err(BookError::BadPrice(o.price));
        }
        if o.qty <= 0 {
            return Err(BookError::BadQuantity(o.qty));
        }
        if self.orders.iter().any(|r| r.id == o.id) {
            return Err(BookError::DuplicateId(o.id));
        }
        let mut trial = self.clone();
        let s = trial.place_checked(o, out)?;
        *self = trial;
        Ok(s)
    }

    /// Admission and execution on `self` (which the caller discards on error).
    fn place_checked(&mut self, o: NewOrder, out: &mut Vec<BookEvent>) -> Result<PlaceSummary, BookError> {
        let rests = matches!(o.tif, TimeInForce::Gtc | TimeInForce::PostOnly);
        if o.tif == TimeInForce::PostOnly && self.best_maker(o.side, o.price).is_some() {
            return Err(BookError::PostOnlyWouldTake);
        }
        if rests {
            let level: i128 = self
                .orders
                .iter()
                .filter(|r| r.side == o.side && r.price == o.price)
                .map(|r| i128::from(r.qty))
                .sum();
            if level > 0 && level + i128::from(o.qty) > i128::from(i64::MAX) {
                return Err(BookError::BadQuantity(o.qty));
            }
        }
        let mut events = Vec::new();
        let (rem, stopped) = self.run(&o, &mut events);
        if o.tif == TimeInForce::Fok && rem > 0 {
            return Err(BookError::FokUnfillable);
        }
        let filled = o.qty - rem;
        let summary = if rem == 0 {
            PlaceSummary { filled, rested: 0, cancelled: 0 }
        } else if stopped || !rests {
            PlaceSummary { filled, rested: 0, cancelled: rem }
        } else {
            if self.orders.len() as u64 >= u64::from(self.limits.max_orders.min(SLOTS_MAX)) {
                return Err(BookError::BookFull(self.limits.max_orders));
            }
            if self.count_of(o.account) >= self.limits.max_orders_per_account {
                return Err(BookError::TooManyOrders(self.limits.max_orders_per_account));
            }
            self.orders.push(RestingOrder {
                id: o.id,
                account: o.account,
                side: o.side,
                price: o.price,
                qty: rem,
                original_qty: o.qty,
                good_til_height: o.good_til_height,
                stp: o.stp,
                seq: self.next_seq,
            });
            self.next_seq += 1;
            events.push(BookEvent::Rested { order: o.id, price: o.price, qty: rem });
            PlaceSummary { filled, rested: rem, cancelled: 0 }
        };
        out.extend(events);
        Ok(summary)
    }

    fn find(&self, id: OrderId) -> Option<usize> {
        self.orders.iter().position(|r| r.id == id)
    }

    fn cancel(&mut self, id: OrderId, a: AccountId) -> Result<RestingOrder, BookError> {
        let i = self.find(id).ok_or(BookError::UnknownOrder(id))?;
        if self.orders[i].account != a {
            return Err(BookError::NotOwner(id));
        }
        Ok(self.orders.remove(i))
    }

    fn remove(&mut self, id: OrderId) -> Option<RestingOrder> {
        let i = self.find(id)?;
        Some(self.orders.remove(i))
    }

    fn replace(
        &mut self,
        id: OrderId,
        a: AccountId,
        price: Ticks,
        qty: Lots,
        out: &mut Vec<BookEvent>,
    ) -> Result<PlaceSummary, BookError> {
        let i = self.find(id).ok_or(BookError::UnknownOrder(id))?;
        let old = self.orders[i];
        if old.account != a {
            return Err(BookError::NotOwner(id));
        }
        if price <= 0 {
            return Err(BookError::BadPrice(price));
        }
        if qty <= 0 {
            return Err(BookError::BadQuantity(qty));
        }
        let mut trial = self.clone();
        trial.orders.remove(i);
        let o = NewOrder {
            id,
            account: a,
            side: old.side,
            price,
            qty,
            tif: TimeInForce::Gtc,
            stp: old.stp,
            good_til_height: old.good_til_height,
        };
        let s = trial.place_checked(o, out)?;
        *self = trial;
        Ok(s)
    }

    fn expire(&mut self, height: u64, out: &mut Vec<BookEvent>) -> usize {
        let mut gone: Vec<RestingOrder> =
            self.orders.iter().filter(|r| r.good_til_height.is_some_and(|h| h < height)).copied().collect();
        gone.sort_by_key(|r| (r.good_til_height, r.seq));
        for r in &gone {
            self.orders.retain(|x| x.id != r.id);
            out.push(BookEvent::Done {
                order: r.id,
                account: r.account,
                side: r.side,
                reason: DoneReason::Expired,
                remaining: r.qty,
            });
        }
        gone.len()
    }

    /// Bids best-first then asks best-first, time priority within a price.
    fn sorted(&self) -> Vec<RestingOrder> {
        let mut bids: Vec<RestingOrder> =
            self.orders.iter().filter(|r| r.side == Side::Buy).copied().collect();
        bids.sort_by_key(|r| (-r.price, r.seq));
        let mut asks: Vec<RestingOrder> =
            self.orders.iter().filter(|r| r.side == Side::Sell).copied().collect();
        asks.sort_by_key(|r| (r.price, r.seq));
        bids.extend(asks);
        bids
    }

    fn levels(&self, side: Side) -> Vec<(Ticks, Lots)> {
        let mut out: Vec<(Ticks, Lots)> = Vec::new();
        for r in self.sorted().into_iter().filter(|r| r.side == side) {
            match out.last_mut() {
                Some(l) if l.0 == r.price => l.1 += r.qty,
                _ => out.push((r.price, r.qty)),
            }
        }
        out
    }

    fn fillable(&self, side: Side, price: Ticks, qty: Lots) -> Lots {
        let avail: Lots = self
            .orders
            .iter()
            .filter(|r| r.side != side && crosses(side, price, r.price))
            .map(|r| r.qty)
            .sum();
        avail.min(qty).max(0)
    }
}

struct Gen {
    rng: ChaCha8Rng,
    /// Price band: narrow (many orders per level) or wide (mostly one order per level).
    lo: Ticks,
    hi: Ticks,
    next_id: u64,
    height: u64,
}

const ACCOUNTS: u64 = 4;

impl Gen {
    /// Mostly valid prices in a narrow band, bids low and asks high so that depth builds up
    /// while a fair share still crosses; sometimes invalid ones.
    fn price(&mut self, side: Side) -> Ticks {
        if self.rng.random_ratio(1, 50) {
            return self.rng.random_range(-2..=0);
        }
        let mid = (self.lo + self.hi) / 2;
        let overlap = (self.hi - self.lo) / 10;
        match side {
            Side::Buy => self.rng.random_range(self.lo..=mid + overlap),
            Side::Sell => self.rng.random_range(mid - overlap..=self.hi),
        }
    }

    fn qty(&mut self) -> Lots {
        if self.rng.random_ratio(1, 50) {
            self.rng.random_range(-2..=0)
        } else {
            self.rng.random_range(1..=10)
        }
    }

    fn account(&mut self) -> AccountId {
        AccountId(self.rng.random_range(1..=ACCOUNTS))
    }

    fn side(&mut self) -> Side {
        if self.rng.random() { Side::Buy } else { Side::Sell }
    }

    fn existing_or_random(&mut self, naive: &Naive) -> OrderId {
        if !naive.orders.is_empty() && self.rng.random_ratio(9, 10) {
            let i = self.rng.random_range(0..naive.orders.len());
            naive.orders[i].id
        } else {
            OrderId(self.rng.random_range(0..self.next_id.max(1) + 3))
        }
    }
}

fn check_same(book: &Book, naive: &Naive, ctx: &str) {
    if let Err(e) = book.check_invariants() {
        panic!("{ctx}: invariant broken: {e}");
    }
    let got: Vec<RestingOrder> = book.orders().copied().collect();
    assert_eq!(got, naive.sorted(), "{ctx}: book contents differ");
    assert_eq!(book.len(), naive.orders.len(), "{ctx}: len");
    assert_eq!(book.is_empty(), naive.orders.is_empty(), "{ctx}: is_empty");
    for side in [Side::Buy, Side::Sell] {
        let levels: Vec<(Ticks, Lots)> = book.levels(side).collect();
        assert_eq!(levels, naive.levels(side), "{ctx}: {side:?} levels");
    }
    assert_eq!(book.best_bid(), naive.levels(Side::Buy).first().copied(), "{ctx}: best bid");
    assert_eq!(book.best_ask(), naive.levels(Side::Sell).first().copied(), "{ctx}: best ask");
    for a in 0..=ACCOUNTS + 1 {
        assert_eq!(book.orders_of(AccountId(a)), naive.count_of(AccountId(a)), "{ctx}: orders_of({a})");
    }
    for r in &naive.orders {
        assert_eq!(book.get(r.id), Some(r), "{ctx}: get({})", r.id);
    }
}

fn variant(e: BookError) -> String {
    let s = format!("{e:?}");
    s.split('(').next().unwrap_or_default().to_string()
}

fn run_seed(seed: u64, ops: usize) {
    let (lo, hi) = if seed.is_multiple_of(2) { (1_000, 1_400) } else { (90, 110) };
    let mut g = Gen { rng: ChaCha8Rng::seed_from_u64(seed), lo, hi, next_id: 1, height: 1 };
    let mut limits = BookLimits { max_orders: 80, max_orders_per_account: 30 };
    let mut book = Book::new(limits);
    let mut naive = Naive::new(limits);
    let mut out_book = Vec::new();
    let mut out_naive = Vec::new();
    // Coverage counters, printed so a generator that stopped exercising a path is noticed.
    let mut fills = 0usize;
    let mut self_trades = 0usize;
    let mut expired = 0usize;
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    let mut max_len = 0usize;
    for step in 0..ops {
        let ctx = format!("seed {seed} step {step}");
        out_book.clear();
        out_naive.clear();
        let kind = g.rng.random_range(0..100u32);
        let desc;
        let mut last_error: Option<String> = None;
        match kind {
            0..=49 => {
                let id = if g.rng.random_ratio(1, 30) {
                    g.existing_or_random(&naive)
                } else {
                    g.next_id += 1;
                    OrderId(g.next_id)
                };
                let tif = match g.rng.random_range(0..10u32) {
                    0..=4 => TimeInForce::Gtc,
                    5..=6 => TimeInForce::Ioc,
                    7..=8 => TimeInForce::Fok,
                    _ => TimeInForce::PostOnly,
                };
                let stp = match g.rng.random_range(0..3u32) {
                    0 => SelfTradePrevention::CancelResting,
                    1 => SelfTradePrevention::CancelTaker,
                    _ => SelfTradePrevention::CancelBoth,
                };
                let good_til_height =
                    if g.rng.random_ratio(1, 3) { Some(g.height + g.rng.random_range(0..20)) } else { None };
                let side = g.side();
                let o = NewOrder {
                    id,
                    account: g.account(),
                    side,
                    price: g.price(side),
                    qty: g.qty(),
                    tif,
                    stp,
                    good_til_height,
                };
                desc = format!("{o:?}");
                // fillable() must agree with what an IOC from a fresh account actually fills.
                if o.price > 0 && o.qty > 0 {
                    let f = book.fillable(o.side, o.price, o.qty);
                    assert_eq!(f, naive.fillable(o.side, o.price, o.qty), "{ctx}: fillable");
                    let mut probe = book.clone();
                    let ioc = NewOrder {
                        id: OrderId(u64::MAX),
                        account: AccountId(u64::MAX),
                        tif: TimeInForce::Ioc,
                        ..o
                    };
                    let mut scratch = Vec::new();
                    let s = probe.place(ioc, &mut scratch);
                    assert_eq!(s.map(|s| s.filled), Ok(f), "{ctx}: fillable vs IOC on a clone");
                }
                let before: Vec<RestingOrder> = book.orders().copied().collect();
                let a = book.place(o, &mut out_book);
                let b = naive.place(o, &mut out_naive);
                assert_eq!(a, b, "{ctx}: place {desc}");
                last_error = a.err().map(variant);
                if let Ok(s) = a {
                    assert_eq!(s.filled + s.rested + s.cancelled, o.qty, "{ctx}: summary adds up");
                } else {
                    assert!(out_book.is_empty(), "{ctx}: events on error");
                    let after: Vec<RestingOrder> = book.orders().copied().collect();
                    assert_eq!(before, after, "{ctx}: state changed on error");
                }
            }
            50..=74 => {
                let id = g.existing_or_random(&naive);
                let (account, side) = match naive.find(id) {
                    Some(i) if g.rng.random_ratio(9, 10) => (naive.orders[i].account, naive.orders[i].side),
                    _ => (g.account(), g.side()),
                };
                let (price, qty) = (g.price(side), g.qty());
                desc = format!("replace {id} by {account} to {qty}@{price}");
                let a = book.replace(id, account, price, qty, &mut out_book);
                let b = naive.replace(id, account, price, qty, &mut out_naive);
                assert_eq!(a, b, "{ctx}: {desc}");
                last_error = a.err().map(variant);
            }
            75..=86 => {
                let id = g.existing_or_random(&naive);
                let account = match naive.find(id) {
                    Some(i) if g.rng.random_ratio(9, 10) => naive.orders[i].account,
                    _ => g.account(),
                };
                desc = format!("cancel {id} by {account}");
                assert_eq!(book.cancel(id, account), naive.cancel(id, account), "{ctx}: {desc}");
            }
            87..=89 => {
                let id = g.existing_or_random(&naive);
                desc = format!("remove {id}");
                assert_eq!(book.remove(id), naive.remove(id), "{ctx}: {desc}");
            }
            90..=98 => {
                g.height += g.rng.random_range(0..4);
                desc = format!("expire {}", g.height);
                let a = book.expire(g.height, &mut out_book);
                let b = naive.expire(g.height, &mut out_naive);
                assert_eq!(a, b, "{ctx}: {desc}");
            }
            _ => {
                // Mostly roomy limits, sometimes tight ones (including below the current size).
                limits = if g.rng.random_ratio(2, 3) {
                    BookLimits { max_orders: 80, max_orders_per_account: 30 }
                } else {
                    BookLimits {
                        max_orders: g.rng.random_range(0..80),
                        max_orders_per_account: g.rng.random_range(0..30),
                    }
                };
                desc = format!("{limits:?}");
                book.set_limits(limits);
                naive.limits = limits;
            }
        }
        assert_eq!(out_book, out_naive, "{ctx}: events of {desc}");
        check_same(&book, &naive, &ctx);
        for e in &out_book {
            match e {
                BookEvent::Fill { .. } => fills += 1,
                BookEvent::Done { reason: DoneReason::SelfTrade, .. } => self_trades += 1,
                BookEvent::Done { reason: DoneReason::Expired, .. } => expired += 1,
                _ => {}
            }
        }
        if let Some(e) = last_error.take() {
            *errors.entry(e).or_default() += 1;
        }
        max_len = max_len.max(book.len());
    }
    eprintln!(
        "  seed {seed}: {fills} fills, {self_trades} self-trade cancels, {expired} expired, max {max_len} orders, errors {errors:?}"
    );
}

#[test]
fn book_matches_naive_reference() {
    let long = std::env::var("BASTION_LONG").is_ok_and(|v| v == "1");
    let (seeds, ops): (Vec<u64>, usize) =
        match std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()) {
            Some(seed) => (vec![seed], if long { 100_000 } else { 3_000 }),
            None if long => {
                // Long runs explore new seeds each time; the seed is printed for replay.
                let base = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                ((base..base + 300).collect(), 20_000)
            }
            None => ((1..=12).collect(), 3_000),
        };
    for seed in seeds {
        eprintln!("differential: seed {seed} ({ops} ops); replay with BASTION_SEED={seed}");
        run_seed(seed, ops);
    }
}
