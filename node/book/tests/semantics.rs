//! Hand-written cases for each rule of the book: priority, every time-in-force, self-trade
//! prevention, replace, expiry, limits, and "nothing changes on error".

use bastion_book::{Book, BookError, BookEvent, BookLimits, NewOrder, PlaceSummary, RestingOrder};
use bastion_types::{AccountId, DoneReason, Lots, OrderId, SelfTradePrevention, Side, Ticks, TimeInForce};

const ROOMY: BookLimits = BookLimits { max_orders: 1_000, max_orders_per_account: 100 };

fn order(id: u64, account: u64, side: Side, price: Ticks, qty: Lots, tif: TimeInForce) -> NewOrder {
    NewOrder {
        id: OrderId(id),
        account: AccountId(account),
        side,
        price,
        qty,
        tif,
        stp: SelfTradePrevention::CancelResting,
        good_til_height: None,
    }
}

fn gtc(id: u64, account: u64, side: Side, price: Ticks, qty: Lots) -> NewOrder {
    order(id, account, side, price, qty, TimeInForce::Gtc)
}

/// Places and returns the summary and the events; checks the invariants afterwards.
fn place(book: &mut Book, o: NewOrder) -> (Result<PlaceSummary, BookError>, Vec<BookEvent>) {
    let mut out = Vec::new();
    let r = book.place(o, &mut out);
    if let Err(e) = book.check_invariants() {
        panic!("invariants after {o:?}: {e}");
    }
    (r, out)
}

fn rest(book: &mut Book, o: NewOrder) {
    let (r, _) = place(book, o);
    assert_eq!(r.map(|s| s.rested), Ok(o.qty), "{o:?} should rest in full");
}

fn fill(maker: u64, account: u64, price: Ticks, qty: Lots, left: Lots) -> BookEvent {
    BookEvent::Fill {
        maker: OrderId(maker),
        maker_account: AccountId(account),
        price,
        qty,
        maker_remaining: left,
    }
}

fn done(order: u64, account: u64, side: Side, reason: DoneReason, remaining: Lots) -> BookEvent {
    BookEvent::Done { order: OrderId(order), account: AccountId(account), side, reason, remaining }
}

fn ids(book: &Book) -> Vec<u64> {
    book.orders().map(|o| o.id.0).collect()
}

fn snapshot(book: &Book) -> Vec<RestingOrder> {
    book.orders().copied().collect()
}

#[test]
fn price_then_time_priority_and_maker_price() {
    let mut book = Book::new(ROOMY);
    rest(&mut book, gtc(1, 1, Side::Sell, 101, 5));
    rest(&mut book, gtc(2, 2, Side::Sell, 100, 5));
    rest(&mut book, gtc(3, 3, Side::Sell, 100, 5));
    rest(&mut book, gtc(4, 4, Side::Sell, 102, 5));
    assert_eq!(book.best_ask(), Some((100, 10)));
    assert_eq!(book.levels(Side::Sell).collect::<Vec<_>>(), vec![(100, 10), (101, 5), (102, 5)]);
    let (r, ev) = place(&mut book, gtc(9, 9, Side::Buy, 101, 12));
    assert_eq!(r, Ok(PlaceSummary { filled: 12, rested: 0, cancelled: 0 }));
    assert_eq!(
        ev,
        vec![
            fill(2, 2, 100, 5, 0),
            done(2, 2, Side::Sell, DoneReason::Filled, 0),
            fill(3, 3, 100, 5, 0),
            done(3, 3, Side::Sell, DoneReason::Filled, 0),
            fill(1, 1, 101, 2, 3),
        ]
    );
    assert_eq!(ids(&book), vec![1, 4]);
    assert_eq!(book.get(OrderId(1)).map(|o| (o.qty, o.original_qty)), Some((3, 5)));
}

#[test]
fn gtc_rests_remainder_and_orders_iterate_bids_then_asks() {
    let mut book = Book::new(ROOMY);
    rest(&mut book, gtc(1, 1, Side::Sell, 100, 5));
    let (r, ev) = place(&mut book, gtc(2, 2, Side::Buy, 100, 8));
    assert_eq!(r, Ok(PlaceSummary { filled: 5, rested: 3, cancelled: 0 }));
    assert_eq!(
        ev,
        vec![
            fill(1, 1, 100, 5, 0),
            done(1, 1, Side::Sell, DoneReason::Filled, 0),
            BookEvent::Rested { order: OrderId(2), price: 100, qty: 3 }
        ]
    );
    rest(&mut book, gtc(3, 3, Side::Buy, 99, 1));
    rest(&mut book, gtc(4, 3, Side::Buy, 100, 1));
    rest(&mut book, gtc(5, 4, Side::Sell, 102, 1));
    rest(&mut book, gtc(6, 4, Side::Sell, 101, 1));
    assert_eq!(ids(&book), vec![2, 4, 3, 6, 5]);
    assert_eq!(book.best_bid(), Some((100, 4)));
    assert_eq!(book.orders_of(AccountId(3)), 2);
    assert_eq!(book.len(), 5);
}

#[test]
fn ioc_cancels_remainder() {
    let mut book = Book::new(ROOMY);
    rest(&mut book, gtc(1, 1, Side::Buy, 100, 5));
    let (r, ev) = place(&mut book, order(2, 2, Side::Sell, 99, 7, TimeInForce::Ioc));
    assert_eq!(r, Ok(PlaceSummary { filled: 5, rested: 0, cancelled: 2 }));
    assert_eq!(ev, vec![fill(1, 1, 100, 5, 0), done(1, 1, Side::Buy, DoneReason::Filled, 0)]);
    assert!(book.is_empty());
    // An IOC that crosses nothing does nothing.
    let (r, ev) = place(&mut book, order(3, 2, Side::Sell, 99, 7, TimeInForce::Ioc));
    assert_eq!(r, Ok(PlaceSummary { filled: 0, rested: 0, cancelled: 7 }));
    assert!(ev.is_empty());
}

#[test]
fn fok_fills_in_full_or_changes_nothing() {
    let mut book = Book::new(ROOMY);
    rest(&mut book, gtc(1, 1, Side::Sell, 100, 5));
    rest(&mut book, gtc(2, 2, Side::Sell, 101, 5));
    let before = snapshot(&book);
    let (r, ev) = place(&mut book, order(3, 3, Side::Buy, 101, 11, TimeInForce::Fok));
    assert_eq!(r, Err(BookError::FokUnfillable));
    assert!(ev.is_empty());
    assert_eq!(snapshot(&book), before);
    let (r, _) = place(&mut book, order(3, 3, Side::Buy, 100, 6, TimeInForce::Fok));
    assert_eq!(r, Err(BookError::FokUnfillable), "price limit excludes the second level");
    let (r, _) = place(&mut book, order(3, 3, Side::Buy, 101, 10, TimeInForce::Fok));
    assert_eq!(r, Ok(PlaceSummary { filled: 10, rested: 0, cancelled: 0 }));
    assert!(book.is_empty());
}

#[test]
fn fok_counts_self_trade_conservatively() {
    let mut book = Book::new(ROOMY);
    rest(&mut book, gtc(1, 7, Side::Sell, 100, 5));
    rest(&mut book, gtc(2, 2, Side::Sell, 100, 5));
    let before = snapshot(&book);
    // Enough quantity in total, but 5 of it is the taker's own and would be cancelled.
    for stp in [
        SelfTradePrevention::CancelResting,
        SelfTradePrevention::CancelTaker,
        SelfTradePrevention::CancelBoth,
    ] {
        let o = NewOrder { stp, ..order(3, 7, Side::Buy, 100, 10, TimeInForce::Fok) };
        assert_eq!(place(&mut book, o).0, Err(BookError::FokUnfillable), "{stp:?}");
        assert_eq!(snapshot(&book), before);
    }
    // With CancelResting the own order is skipped and the rest suffices.
    let o = order(3, 7, Side::Buy, 100, 5, TimeInForce::Fok);
    let (r, ev) = place(&mut book, o);
    assert_eq!(r, Ok(PlaceSummary { filled: 5, rested: 0, cancelled: 0 }));
    assert_eq!(
        ev,
        vec![
            done(1, 7, Side::Sell, DoneReason::SelfTrade, 5),
            fill(2, 2, 100, 5, 0),
            done(2, 2, Side::Sell, DoneReason::Filled, 0)
        ]
    );
}

#[test]
fn post_only_rejects_when_crossing() {
    let mut book = Book::new(ROOMY);
    rest(&mut book, gtc(1, 1, Side::Sell, 100, 5));
    let before = snapshot(&book);
    let (r, ev) = place(&mut book, order(2, 2, Side::Buy, 100, 1, TimeInForce::PostOnly));
    assert_eq!(r, Err(BookError::PostOnlyWouldTake));
    assert!(ev.is_empty());
    assert_eq!(snapshot(&book), before);
    // Crossing an own order is still taking.
    let (r, _) = place(&mut book, order(2, 1, Side::Buy, 101, 1, TimeInForce::PostOnly));
    assert_eq!(r, Err(BookError::PostOnlyWouldTake));
    let (r, _) = place(&mut book, order(2, 2, Side::Buy, 99, 1, TimeInForce::PostOnly));
    assert_eq!(r, Ok(PlaceSummary { filled: 0, rested: 1, cancelled: 0 }));
}

#[test]
fn self_trade_prevention_modes() {
    let setup = || {
        let mut book = Book::new(ROOMY);
        rest(&mut book, gtc(1, 2, Side::Sell, 100, 3));
        rest(&mut book, gtc(2, 1, Side::Sell, 100, 3));
        rest(&mut book, gtc(3, 2, Side::Sell, 100, 3));
        book
    };
    let taker = |stp| NewOrder { stp, ..gtc(9, 1, Side::Buy, 100, 5) };

    let mut book = setup();
    let (r, ev) = place(&mut book, taker(SelfTradePrevention::CancelResting));
    assert_eq!(r, Ok(PlaceSummary { filled: 5, rested: 0, cancelled: 0 }));
    assert_eq!(
        ev,
        vec![
            fill(1, 2, 100, 3, 0),
            done(1, 2, Side::Sell, DoneReason::Filled, 0),
            done(2, 1, Side::Sell, DoneReason::SelfTrade, 3),
            fill(3, 2, 100, 2, 1)
        ]
    );
    assert_eq!(ids(&book), vec![3]);

    let mut book = setup();
    let (r, ev) = place(&mut book, taker(SelfTradePrevention::CancelTaker));
    assert_eq!(r, Ok(PlaceSummary { filled: 3, rested: 0, cancelled: 2 }));
    assert_eq!(ev, vec![fill(1, 2, 100, 3, 0), done(1, 2, Side::Sell, DoneReason::Filled, 0)]);
    assert_eq!(ids(&book), vec![2, 3]);

    let mut book = setup();
    let (r, ev) = place(&mut book, taker(SelfTradePrevention::CancelBoth));
    assert_eq!(r, Ok(PlaceSummary { filled: 3, rested: 0, cancelled: 2 }));
    assert_eq!(
        ev,
        vec![
            fill(1, 2, 100, 3, 0),
            done(1, 2, Side::Sell, DoneReason::Filled, 0),
            done(2, 1, Side::Sell, DoneReason::SelfTrade, 3)
        ]
    );
    assert_eq!(ids(&book), vec![3]);
    assert_eq!(book.orders_of(AccountId(1)), 0);
}

#[test]
fn replace_loses_priority_keeps_identity_and_may_match() {
    let mut book = Book::new(ROOMY);
    let o = NewOrder {
        good_til_height: Some(50),
        stp: SelfTradePrevention::CancelBoth,
        ..gtc(1, 1, Side::Buy, 100, 5)
    };
    rest(&mut book, o);
    rest(&mut book, gtc(2, 2, Side::Buy, 100, 5));
    let mut out = Vec::new();
    let r = book.replace(OrderId(1), AccountId(1), 100, 4, &mut out);
    assert_eq!(r, Ok(PlaceSummary { filled: 0, rested: 4, cancelled: 0 }));
    assert_eq!(out, vec![BookEvent::Rested { order: OrderId(1), price: 100, qty: 4 }]);
    assert_eq!(ids(&book), vec![2, 1], "the replaced order goes to the back of the queue");
    let r1 = *book.get(OrderId(1)).unwrap();
    assert_eq!((r1.qty, r1.original_qty, r1.good_til_height), (4, 4, Some(50)));
    assert_eq!(r1.stp, SelfTradePrevention::CancelBoth);
    assert!(r1.seq > book.get(OrderId(2)).unwrap().seq);
    assert_eq!(book.orders_of(AccountId(1)), 1);

    // Moving across the spread trades like an incoming GTC order.
    rest(&mut book, gtc(3, 3, Side::Sell, 105, 2));
    out.clear();
    let r = book.replace(OrderId(1), AccountId(1), 106, 4, &mut out);
    assert_eq!(r, Ok(PlaceSummary { filled: 2, rested: 2, cancelled: 0 }));
    assert_eq!(
        out,
        vec![
            fill(3, 3, 105, 2, 0),
            done(3, 3, Side::Sell, DoneReason::Filled, 0),
            BookEvent::Rested { order: OrderId(1), price: 106, qty: 2 }
        ]
    );
    // Filled in full by a move: the order is gone.
    rest(&mut book, gtc(4, 4, Side::Buy, 90, 1));
    out.clear();
    let r = book.replace(OrderId(4), AccountId(4), 110, 1, &mut out);
    assert_eq!(r, Ok(PlaceSummary { filled: 0, rested: 1, cancelled: 0 }), "a bid at 110 rests above 106");
    rest(&mut book, gtc(5, 5, Side::Sell, 200, 1));
    out.clear();
    let r = book.replace(OrderId(5), AccountId(5), 100, 1, &mut out);
    assert_eq!(r, Ok(PlaceSummary { filled: 1, rested: 0, cancelled: 0 }));
    assert_eq!(book.get(OrderId(5)), None);
    assert_eq!(book.orders_of(AccountId(5)), 0);
    book.check_invariants().unwrap();

    // Errors change nothing.
    let before = snapshot(&book);
    out.clear();
    assert_eq!(
        book.replace(OrderId(77), AccountId(1), 100, 1, &mut out),
        Err(BookError::UnknownOrder(OrderId(77)))
    );
    assert_eq!(
        book.replace(OrderId(1), AccountId(2), 100, 1, &mut out),
        Err(BookError::NotOwner(OrderId(1)))
    );
    assert_eq!(book.replace(OrderId(1), AccountId(1), 0, 1, &mut out), Err(BookError::BadPrice(0)));
    assert_eq!(book.replace(OrderId(1), AccountId(1), 100, -1, &mut out), Err(BookError::BadQuantity(-1)));
    assert!(out.is_empty());
    assert_eq!(snapshot(&book), before);
}

#[test]
fn cancel_and_remove() {
    let mut book = Book::new(ROOMY);
    rest(&mut book, gtc(1, 1, Side::Buy, 100, 5));
    rest(&mut book, gtc(2, 1, Side::Buy, 100, 5));
    assert_eq!(book.cancel(OrderId(1), AccountId(2)), Err(BookError::NotOwner(OrderId(1))));
    assert_eq!(book.cancel(OrderId(3), AccountId(1)), Err(BookError::UnknownOrder(OrderId(3))));
    assert_eq!(book.cancel(OrderId(1), AccountId(1)).map(|o| o.id), Ok(OrderId(1)));
    assert_eq!(book.best_bid(), Some((100, 5)));
    assert_eq!(book.remove(OrderId(2)).map(|o| o.id), Some(OrderId(2)));
    assert_eq!(book.remove(OrderId(2)), None);
    assert!(book.is_empty());
    assert_eq!(book.best_bid(), None);
    assert_eq!(book.orders_of(AccountId(1)), 0);
    book.check_invariants().unwrap();
}

#[test]
fn expire_removes_past_heights_in_order() {
    let mut book = Book::new(ROOMY);
    let with = |id, h| NewOrder { good_til_height: h, ..gtc(id, id, Side::Buy, 90 + id as i64, 1) };
    rest(&mut book, with(1, Some(10)));
    rest(&mut book, with(2, Some(5)));
    rest(&mut book, with(3, None));
    rest(&mut book, with(4, Some(5)));
    let mut out = Vec::new();
    assert_eq!(book.expire(5, &mut out), 0, "good through its own height");
    assert!(out.is_empty());
    assert_eq!(book.expire(6, &mut out), 2);
    assert_eq!(
        out,
        vec![done(2, 2, Side::Buy, DoneReason::Expired, 1), done(4, 4, Side::Buy, DoneReason::Expired, 1)]
    );
    out.clear();
    assert_eq!(book.expire(1_000, &mut out), 1);
    assert_eq!(out, vec![done(1, 1, Side::Buy, DoneReason::Expired, 1)]);
    assert_eq!(ids(&book), vec![3]);
    book.check_invariants().unwrap();
}

#[test]
fn limits_are_checked_before_anything_changes() {
    let mut book = Book::new(BookLimits { max_orders: 3, max_orders_per_account: 2 });
    rest(&mut book, gtc(1, 1, Side::Buy, 100, 5));
    rest(&mut book, gtc(2, 1, Side::Buy, 99, 5));
    let before = snapshot(&book);
    assert_eq!(place(&mut book, gtc(3, 1, Side::Buy, 98, 5)).0, Err(BookError::TooManyOrders(2)));
    rest(&mut book, gtc(3, 2, Side::Sell, 110, 5));
    assert_eq!(place(&mut book, gtc(4, 3, Side::Buy, 98, 5)).0, Err(BookError::BookFull(3)));
    assert_eq!(snapshot(&book)[..2], before[..]);
    // An order that frees a slot by filling a maker in full may rest...
    let (r, _) = place(&mut book, gtc(4, 3, Side::Sell, 100, 6));
    assert_eq!(r, Ok(PlaceSummary { filled: 5, rested: 1, cancelled: 0 }));
    assert_eq!(book.len(), 3);
    // ... and one that will not rest is not limited.
    let (r, _) = place(&mut book, gtc(5, 4, Side::Buy, 100, 1));
    assert_eq!(r, Ok(PlaceSummary { filled: 1, rested: 0, cancelled: 0 }));
    assert_eq!(book.len(), 2);
    // IOC never rests, so limits do not apply.
    let (r, _) = place(&mut book, order(6, 9, Side::Buy, 50, 1, TimeInForce::Ioc));
    assert_eq!(r, Ok(PlaceSummary { filled: 0, rested: 0, cancelled: 1 }));
    // Lowering limits keeps resting orders; replace of one of them still works.
    book.set_limits(BookLimits { max_orders: 1, max_orders_per_account: 1 });
    let mut out = Vec::new();
    assert_eq!(book.replace(OrderId(3), AccountId(2), 111, 5, &mut out), Err(BookError::BookFull(1)));
    book.set_limits(BookLimits { max_orders: 3, max_orders_per_account: 1 });
    assert_eq!(book.replace(OrderId(3), AccountId(2), 111, 5, &mut out).map(|s| s.rested), Ok(5));
    book.check_invariants().unwrap();
}

#[test]
fn bad_input_is_rejected() {
    let mut book = Book::new(ROOMY);
    rest(&mut book, gtc(1, 1, Side::Buy, 100, 5));
    let before = snapshot(&book);
    assert_eq!(place(&mut book, gtc(2, 1, Side::Buy, 0, 5)).0, Err(BookError::BadPrice(0)));
    assert_eq!(place(&mut book, gtc(2, 1, Side::Buy, i64::MIN, 5)).0, Err(BookError::BadPrice(i64::MIN)));
    assert_eq!(place(&mut book, gtc(2, 1, Side::Buy, 100, 0)).0, Err(BookError::BadQuantity(0)));
    assert_eq!(
        place(&mut book, gtc(2, 1, Side::Buy, 100, i64::MIN)).0,
        Err(BookError::BadQuantity(i64::MIN))
    );
    assert_eq!(place(&mut book, gtc(1, 2, Side::Sell, 200, 5)).0, Err(BookError::DuplicateId(OrderId(1))));
    // A level total must fit in i64.
    assert_eq!(
        place(&mut book, gtc(2, 2, Side::Buy, 100, i64::MAX)).0,
        Err(BookError::BadQuantity(i64::MAX))
    );
    assert_eq!(snapshot(&book), before);
    // Extreme but valid values work.
    let mut book = Book::new(ROOMY);
    rest(&mut book, gtc(10, 2, Side::Buy, 1, i64::MAX));
    rest(&mut book, gtc(11, 2, Side::Sell, i64::MAX, i64::MAX));
    assert_eq!(place(&mut book, gtc(12, 3, Side::Buy, 1, 1)).0, Err(BookError::BadQuantity(1)));
    assert_eq!(book.fillable(Side::Sell, 1, i64::MAX), i64::MAX);
    assert_eq!(book.fillable(Side::Buy, i64::MAX, i64::MAX), i64::MAX);
    assert_eq!(book.fillable(Side::Buy, 1, 0), 0);
    let (r, _) = place(&mut book, order(12, 3, Side::Buy, i64::MAX, i64::MAX, TimeInForce::Ioc));
    assert_eq!(r, Ok(PlaceSummary { filled: i64::MAX, rested: 0, cancelled: 0 }));
    assert_eq!(ids(&book), vec![10]);
}

#[test]
fn fillable_matches_a_real_ioc_on_a_clone() {
    let mut book = Book::new(ROOMY);
    for (i, p) in [101, 102, 102, 105, 110].into_iter().enumerate() {
        rest(&mut book, gtc(i as u64 + 1, 1, Side::Sell, p, 3));
    }
    for (price, qty) in [(100, 5), (101, 5), (102, 5), (105, 8), (200, 100), (102, 9)] {
        let f = book.fillable(Side::Buy, price, qty);
        let mut probe = book.clone();
        let (r, _) = place(&mut probe, order(99, 2, Side::Buy, price, qty, TimeInForce::Ioc));
        assert_eq!(r.map(|s| s.filled), Ok(f), "{qty}@{price}");
    }
    assert_eq!(book.len(), 5, "fillable and the clone left the book alone");
}
