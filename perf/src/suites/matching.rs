//! Suite `matching`: the order book on exchange-core's benchmark mix (9% GTC, 3% IOC, 6% cancel,
//! 82% move, about 1,000 resting orders over about 750 price levels), against `lobster` 0.7, a
//! crates.io order book, replaying the same command stream in the same process.
//!
//! The command stream is generated up front (untimed) by driving a `bastion-book` instance, so
//! the generator knows which orders are alive, as exchange-core's generator does. Its feedback
//! keeps the book near its target size: GTC orders go to the thinner side, and when the book
//! is above target, IOC orders get larger and moves cross the spread more often.
//!
//! Two series per engine: per-operation latency (each op timed alone; the timer adds about
//! 20-40 ns per op to the throughput of that series) and throughput timed over batches of
//! 1,000 ops, which is the figure the 5M ops/s goal and the ratio use.

use crate::harness::{self, Ctx, Report};
use bastion_book::{Book, BookEvent, BookLimits, NewOrder};
use bastion_types::{AccountId, OrderId, SelfTradePrevention, Side, Ticks, TimeInForce};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// Resting orders the generator aims for (exchange-core's "small" benchmark size).
const TARGET_ORDERS: usize = 1_000;
/// Fixed centre of the generated prices.
const MID: Ticks = 1_000_000;
/// Spread of resting prices on each side, in ticks (tuned for ~750 levels at 1,000 orders).
const DEPTH_TICKS: f64 = 1_150.0;
/// Operations per timed batch in the throughput series.
const BATCH_OPS: u64 = 1_000;

#[derive(Clone, Copy, Debug)]
enum Cmd {
    Place(NewOrder),
    Cancel(OrderId, AccountId),
    Move(OrderId, AccountId, Ticks, i64),
}

#[derive(Default, Debug)]
struct MixCounts {
    gtc: u64,
    ioc: u64,
    cancel: u64,
    mv: u64,
    fills: u64,
}

/// Live orders with O(1) random pick and removal (generation only; never timed).
#[derive(Default)]
struct Live {
    ids: Vec<(OrderId, Side)>,
    pos: HashMap<OrderId, usize>,
}

impl Live {
    fn add(&mut self, id: OrderId, side: Side) {
        if !self.pos.contains_key(&id) {
            self.pos.insert(id, self.ids.len());
            self.ids.push((id, side));
        }
    }
    fn remove(&mut self, id: OrderId) {
        if let Some(i) = self.pos.remove(&id) {
            self.ids.swap_remove(i);
            if let Some(&(moved, _)) = self.ids.get(i) {
                self.pos.insert(moved, i);
            }
        }
    }
}

struct Gen {
    rng: ChaCha8Rng,
    book: Book,
    live: Live,
    next_id: u64,
    out: Vec<BookEvent>,
}

impl Gen {
    /// A resting price for `side`: most orders near the touch, a tail deeper in the book.
    fn passive_price(&mut self, side: Side) -> Ticks {
        let u: f64 = self.rng.random();
        let offset = 1 + (u * u * DEPTH_TICKS) as i64;
        MID - side.sign() * offset
    }

    /// A price crossing the opposite best by up to `depth` ticks (or a passive one if empty).
    fn aggressive_price(&mut self, side: Side, depth: i64) -> Ticks {
        let opposite = match side {
            Side::Buy => self.book.best_ask(),
            Side::Sell => self.book.best_bid(),
        };
        match opposite {
            Some((p, _)) => p + side.sign() * self.rng.random_range(0..=depth),
            None => self.passive_price(side),
        }
    }

    fn side_count(&self, side: Side) -> usize {
        self.book.side_orders(side).count()
    }

    fn apply(&mut self, cmd: Cmd, counts: &mut MixCounts) -> Result<(), String> {
        self.out.clear();
        match cmd {
            Cmd::Place(o) => {
                let s = self.book.place(o, &mut self.out).map_err(|e| format!("generator place: {e}"))?;
                if s.rested > 0 {
                    self.live.add(o.id, o.side);
                }
            }
            Cmd::Cancel(id, account) => {
                self.book.cancel(id, account).map_err(|e| format!("generator cancel: {e}"))?;
                self.live.remove(id);
            }
            Cmd::Move(id, account, price, qty) => {
                let s = self
                    .book
                    .replace(id, account, price, qty, &mut self.out)
                    .map_err(|e| format!("generator move: {e}"))?;
                if s.rested == 0 {
                    self.live.remove(id);
                }
            }
        }
        for e in &self.out {
            match *e {
                BookEvent::Done { order, .. } => self.live.remove(order),
                BookEvent::Fill { .. } => counts.fills += 1,
                BookEvent::Rested { .. } => {}
            }
        }
        Ok(())
    }

    fn new_order(&mut self, side: Side, price: Ticks, qty: i64, tif: TimeInForce) -> NewOrder {
        self.next_id += 1;
        NewOrder {
            id: OrderId(self.next_id),
            // One account per order: no self-trades, so the peer (which has no self-trade
            // prevention) sees exactly the same matches.
            account: AccountId(self.next_id),
            side,
            price,
            qty,
            tif,
            stp: SelfTradePrevention::CancelResting,
            good_til_height: None,
        }
    }

    /// Pre-fill commands: passive GTC orders up to the target size.
    fn prefill(&mut self, counts: &mut MixCounts) -> Result<Vec<Cmd>, String> {
        let mut cmds = Vec::new();
        while self.live.ids.len() < TARGET_ORDERS {
            let side = if self.side_count(Side::Buy) <= self.side_count(Side::Sell) {
                Side::Buy
            } else {
                Side::Sell
            };
            let price = self.passive_price(side);
            let qty = self.rng.random_range(1..=100);
            let cmd = Cmd::Place(self.new_order(side, price, qty, TimeInForce::Gtc));
            self.apply(cmd, counts)?;
            cmds.push(cmd);
        }
        Ok(cmds)
    }

    /// One command of the mix.
    fn next(&mut self, counts: &mut MixCounts) -> Result<Cmd, String> {
        let n = self.live.ids.len();
        // Above target: IOCs grow and moves cross more often; below: both shrink.
        let excess = (n as f64 - TARGET_ORDERS as f64) / TARGET_ORDERS as f64;
        let cross_p = (0.01 + excess * 2.0).clamp(0.0, 0.3);
        let r = self.rng.random_range(0..100u32);
        let cmd = if r < 9 || n == 0 {
            counts.gtc += 1;
            let thin = if self.side_count(Side::Buy) <= self.side_count(Side::Sell) {
                Side::Buy
            } else {
                Side::Sell
            };
            let side = if self.rng.random_ratio(3, 5) { thin } else { thin.opposite() };
            let price = if self.rng.random_bool(cross_p) {
                self.aggressive_price(side, 3)
            } else {
                self.passive_price(side)
            };
            let qty = self.rng.random_range(1..=100);
            Cmd::Place(self.new_order(side, price, qty, TimeInForce::Gtc))
        } else if r < 12 {
            counts.ioc += 1;
            let side = if self.rng.random() { Side::Buy } else { Side::Sell };
            let price = self.aggressive_price(side, 5);
            let scale = if excess > 0.0 { 300 } else { 60 };
            let qty = self.rng.random_range(1..=scale);
            Cmd::Place(self.new_order(side, price, qty, TimeInForce::Ioc))
        } else if r < 18 {
            counts.cancel += 1;
            let (id, _) = self.live.ids[self.rng.random_range(0..n)];
            let account = self.book.get(id).map(|o| o.account).ok_or("live order missing")?;
            Cmd::Cancel(id, account)
        } else {
            counts.mv += 1;
            let (id, side) = self.live.ids[self.rng.random_range(0..n)];
            let o = *self.book.get(id).ok_or("live order missing")?;
            let price = if self.rng.random_bool(cross_p) {
                self.aggressive_price(side, 2)
            } else {
                self.passive_price(side)
            };
            // exchange-core's move keeps the size; so does this (the remaining size).
            Cmd::Move(id, o.account, price, o.qty)
        };
        self.apply(cmd, counts)?;
        Ok(cmd)
    }
}

fn limits() -> BookLimits {
    BookLimits { max_orders: 1_000_000, max_orders_per_account: 1_000 }
}

/// Runs one command on the book under test. Errors cannot happen on a generated stream (the
/// generator ran the same book); they are counted so a divergence would show.
#[inline]
fn run_bastion(book: &mut Book, out: &mut Vec<BookEvent>, cmd: &Cmd) -> bool {
    out.clear();
    match *cmd {
        Cmd::Place(o) => book.place(o, out).is_ok(),
        Cmd::Cancel(id, account) => book.cancel(id, account).is_ok(),
        Cmd::Move(id, account, price, qty) => book.replace(id, account, price, qty, out).is_ok(),
    }
}

fn lob_side(side: Side) -> lobster::Side {
    match side {
        Side::Buy => lobster::Side::Bid,
        Side::Sell => lobster::Side::Ask,
    }
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let ops = ctx.size(3_000_000, 100_000);
    let warmup = ctx.size(200_000, 10_000);
    let total = ops + warmup;

    // ----- generation (untimed) -----
    let mut counts = MixCounts::default();
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(ctx.seed),
        book: Book::new(limits()),
        live: Live::default(),
        next_id: 0,
        out: Vec::with_capacity(64),
    };
    let prefill = g.prefill(&mut counts)?;
    let levels_after_prefill = g.book.level_count(Side::Buy) + g.book.level_count(Side::Sell);
    counts = MixCounts::default();
    let mut cmds = Vec::with_capacity(total as usize);
    let mut min_orders = usize::MAX;
    let mut max_orders = 0usize;
    for _ in 0..total {
        cmds.push(g.next(&mut counts)?);
        min_orders = min_orders.min(g.book.len());
        max_orders = max_orders.max(g.book.len());
    }
    let end_orders = g.book.len();
    let end_levels = g.book.level_count(Side::Buy) + g.book.level_count(Side::Sell);
    // Sides of moved orders, for the peer's cancel-and-re-place (lobster needs the side).
    let mut side_of: HashMap<OrderId, Side> = HashMap::new();
    for c in prefill.iter().chain(cmds.iter()) {
        if let Cmd::Place(o) = c {
            side_of.insert(o.id, o.side);
        }
    }
    let peer_cmds: Vec<PeerCmd> = cmds.iter().map(|c| PeerCmd::from_cmd(c, &side_of)).collect();
    let peer_prefill: Vec<PeerCmd> = prefill.iter().map(|c| PeerCmd::from_cmd(c, &side_of)).collect();
    drop(side_of);
    drop(g);

    let params = serde_json::json!({
        "target_orders": TARGET_ORDERS,
        "mix": "9% GTC, 3% IOC, 6% cancel, 82% move",
        "ops": ops,
        "warmup": warmup,
    });

    // ----- bastion-book -----
    let mut out: Vec<BookEvent> = Vec::with_capacity(64);
    let mut book = Book::new(limits());
    for c in &prefill {
        run_bastion(&mut book, &mut out, c);
    }
    let mut failures = 0u64;
    report.push(harness::latency("bastion-book", warmup, ops, params.clone(), |i| {
        if !run_bastion(&mut book, &mut out, &cmds[i as usize]) {
            failures += 1;
        }
    }));
    if failures > 0 {
        return Err(format!("{failures} generated commands failed on replay"));
    }
    let bastion_final = (book.best_bid().map(|b| b.0), book.best_ask().map(|a| a.0), book.len());

    let mut book = Book::new(limits());
    for c in &prefill {
        run_bastion(&mut book, &mut out, c);
    }
    let rounds = ops / BATCH_OPS;
    let warm_rounds = warmup / BATCH_OPS;
    report.push(harness::rounds(
        "bastion-book-batched",
        "batch of 1000 ops",
        warm_rounds,
        rounds,
        BATCH_OPS,
        params.clone(),
        |r| {
            let start = (r * BATCH_OPS) as usize;
            for c in &cmds[start..start + BATCH_OPS as usize] {
                std::hint::black_box(run_bastion(&mut book, &mut out, c));
            }
        },
    ));

    // ----- lobster -----
    let mut lob = lobster::OrderBook::new(4 * TARGET_ORDERS, 16, false);
    for c in &peer_prefill {
        c.run(&mut lob);
    }
    report.push(harness::latency("lobster", warmup, ops, params.clone(), |i| {
        peer_cmds[i as usize].run(&mut lob);
    }));
    let lobster_final = (lob.max_bid(), lob.min_ask());

    let mut lob = lobster::OrderBook::new(4 * TARGET_ORDERS, 16, false);
    for c in &peer_prefill {
        c.run(&mut lob);
    }
    report.push(harness::rounds(
        "lobster-batched",
        "batch of 1000 ops",
        warm_rounds,
        rounds,
        BATCH_OPS,
        params,
        |r| {
            let start = (r * BATCH_OPS) as usize;
            for c in &peer_cmds[start..start + BATCH_OPS as usize] {
                c.run(&mut lob);
            }
        },
    ));

    // ----- figures -----
    report.ratio_throughput("bastion_vs_lobster", "bastion-book-batched", "lobster-batched");
    report.ratio_throughput("bastion_vs_lobster_per_op_timed", "bastion-book", "lobster");
    let batched = report.get("bastion-book-batched").map(|m| m.ops_per_s).unwrap_or(0.0);
    report.goal(">= 5M ops/s", "5,000,000 ops/s", format!("{batched:.0} ops/s"), batched >= 5e6);
    let p99 =
        report.get("bastion-book").and_then(|m| m.latency.as_ref()).map(|l| l.p99_ns).unwrap_or(u64::MAX);
    report.goal("p99 < 2 µs", "p99 < 2000 ns", format!("{p99} ns"), p99 < 2_000);
    report.note(format!(
        "mix generated ({total} ops incl. warm-up): GTC {} ({:.1}%), IOC {} ({:.1}%), cancel {} ({:.1}%), \
         move {} ({:.1}%); {} fills",
        counts.gtc,
        pct(counts.gtc, total),
        counts.ioc,
        pct(counts.ioc, total),
        counts.cancel,
        pct(counts.cancel, total),
        counts.mv,
        pct(counts.mv, total),
        counts.fills
    ));
    report.note(format!(
        "book: {} orders over {} levels after pre-fill; during the run {}..{} orders; at the end {} \
         orders over {} levels",
        prefill.len(),
        levels_after_prefill,
        min_orders,
        max_orders,
        end_orders,
        end_levels
    ));
    report.note(format!(
        "final top of book: bastion bid/ask {:?}/{:?} ({} orders), lobster {:?}/{:?}{}",
        bastion_final.0,
        bastion_final.1,
        bastion_final.2,
        lobster_final.0,
        lobster_final.1,
        if bastion_final.0.map(|p| p as u64) == lobster_final.0
            && bastion_final.1.map(|p| p as u64) == lobster_final.1
        {
            " (same)"
        } else {
            " (DIFFERENT)"
        }
    ));
    report.note(
        "lobster 0.7 has no IOC and no modify: an IOC is a limit order plus a cancel of any rest, a move is \
         a cancel plus a new limit order (same id); it allocates a Vec of fills per order and keeps empty \
         levels in its BTreeMap",
    );
    Ok(())
}

fn pct(n: u64, total: u64) -> f64 {
    if total == 0 { 0.0 } else { n as f64 * 100.0 / total as f64 }
}

/// A command in lobster's terms, converted before timing.
#[derive(Clone, Copy, Debug)]
enum PeerCmd {
    Limit { id: u128, side: lobster::Side, qty: u64, price: u64, ioc: bool },
    Cancel { id: u128 },
    Move { id: u128, side: lobster::Side, qty: u64, price: u64 },
}

impl PeerCmd {
    fn from_cmd(c: &Cmd, side_of: &HashMap<OrderId, Side>) -> PeerCmd {
        match *c {
            Cmd::Place(o) => PeerCmd::Limit {
                id: u128::from(o.id.0),
                side: lob_side(o.side),
                qty: o.qty as u64,
                price: o.price as u64,
                ioc: o.tif == TimeInForce::Ioc,
            },
            Cmd::Cancel(id, _) => PeerCmd::Cancel { id: u128::from(id.0) },
            Cmd::Move(id, _, price, qty) => PeerCmd::Move {
                id: u128::from(id.0),
                side: lob_side(side_of.get(&id).copied().unwrap_or(Side::Buy)),
                qty: qty as u64,
                price: price as u64,
            },
        }
    }

    #[inline]
    fn run(&self, book: &mut lobster::OrderBook) {
        match *self {
            PeerCmd::Limit { id, side, qty, price, ioc } => {
                let ev = book.execute(lobster::OrderType::Limit { id, side, qty, price });
                let rested = matches!(
                    ev,
                    lobster::OrderEvent::Placed { .. } | lobster::OrderEvent::PartiallyFilled { .. }
                );
                if ioc && rested {
                    book.execute(lobster::OrderType::Cancel { id });
                }
            }
            PeerCmd::Cancel { id } => {
                book.execute(lobster::OrderType::Cancel { id });
            }
            PeerCmd::Move { id, side, qty, price } => {
                book.execute(lobster::OrderType::Cancel { id });
                book.execute(lobster::OrderType::Limit { id, side, qty, price });
            }
        }
    }
}
