//! The live dashboard (issue 22): a self-contained HTML page served by the metrics endpoint
//! ([`crate::metrics::serve_with`]) at `GET /dashboard`, and the two small JSON documents its
//! script polls besides `/metrics`.
//!
//! - `GET /dashboard`: the page (`dashboard.html`, no external resources: inline CSS, inline
//!   script, charts drawn as inline SVG). The node's name, role and chain id are written into
//!   it, HTML-escaped; the script writes everything else with `textContent`.
//! - `GET /dashboard/history.json[?since=MS]`: the last [`HISTORY`] one-second samples (five
//!   minutes) of height, orders, liquidations, ADL events, insurance fund, mempool and the
//!   finality histogram's sum and count, taken from the registry by the metrics thread
//!   ([`Dashboard::tick`]), so a page opened late draws its charts at once and rates are
//!   measured on the node's clock; `since` returns only newer samples.
//! - `GET /dashboard/book.json[?market=ID]`: the top [`DEPTH`] levels of each side of one
//!   market's book, the first market by default. The node publishes the first
//!   [`MAX_MARKETS`] markets (by id) from its actor after a finalized block is executed, at
//!   most every [`BOOK_EVERY`] ([`BookTap`]): a copy of at most `2 * DEPTH` levels per market,
//!   nothing else. A market that is not published answers 404 naming the ones that are; a
//!   node without a book (before its first executed block, or one started without a dashboard) answers 503.
//!
//! What the page shows is at most one second old (its poll), and the book at most
//! [`BOOK_EVERY`] and one block behind the node's finalized state.

use crate::metrics::Registry;
use bastion_consensus::publish::{Published, Publisher};
use bastion_exchange::State;
use bastion_types::Side;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Levels per side in a published book.
pub const DEPTH: usize = 10;
/// Markets published (the lowest ids).
pub const MAX_MARKETS: usize = 16;
/// Least time between two book snapshots.
pub const BOOK_EVERY: Duration = Duration::from_millis(250);
/// Time between two history samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// History samples kept (five minutes at one a second).
pub const HISTORY: usize = 300;

/// The page, with `{{NODE}}`, `{{ROLE}}` and `{{CHAIN}}` to fill in.
const PAGE: &str = include_str!("dashboard.html");

/// One market's top levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarketBook {
    /// The market id.
    pub id: u32,
    /// Its name, e.g. `BTC-PERP`.
    pub name: String,
    /// Trading status in force (`Active`, `ReduceOnly`, `Halted`, `Settled`).
    pub status: String,
    /// Price of one tick per whole base unit, micro-units.
    pub tick_size_micros: i64,
    /// Size of one lot, nano base units.
    pub lot_size_nanos: i64,
    /// Mark price per whole base unit, micro-units (0 before the first index).
    pub mark_micros: i64,
    /// Price of the last trade, ticks.
    pub last_trade_ticks: Option<i64>,
    /// Bids best first (descending price), `[price_ticks, lots]`, at most [`DEPTH`].
    pub bids: Vec<[i64; 2]>,
    /// Asks best first (ascending price), `[price_ticks, lots]`, at most [`DEPTH`].
    pub asks: Vec<[i64; 2]>,
}

/// The published books after one executed block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookSnapshot {
    /// Height of the block they follow.
    pub height: u64,
    /// That block's timestamp (ms since the Unix epoch).
    pub block_timestamp_ms: u64,
    /// When the node copied them (ms since the Unix epoch, the node's clock).
    pub taken_ms: u64,
    /// The first [`MAX_MARKETS`] markets by id.
    pub markets: Vec<MarketBook>,
}

impl BookSnapshot {
    /// The top `depth` levels of each side of the first `max_markets` markets of `state`.
    pub fn of(state: &State, depth: usize, max_markets: usize) -> BookSnapshot {
        let levels = |m: &bastion_exchange::Market, side: Side| -> Vec<[i64; 2]> {
            m.book.levels(side).take(depth).map(|(p, q)| [p, q]).collect()
        };
        let markets = state
            .markets
            .iter()
            .take(max_markets)
            .map(|(id, m)| MarketBook {
                id: id.0,
                name: m.spec.name.clone(),
                status: format!("{:?}", m.effective_status()),
                tick_size_micros: m.spec.tick_size,
                lot_size_nanos: m.spec.lot_size_nanos,
                mark_micros: m.mark,
                last_trade_ticks: m.last_trade,
                bids: levels(m, Side::Buy),
                asks: levels(m, Side::Sell),
            })
            .collect();
        BookSnapshot {
            height: state.height,
            block_timestamp_ms: state.timestamp_ms,
            taken_ms: now_ms(),
            markets,
        }
    }
}

/// One history sample: the registry's values at `t` (`None`: not registered on this node).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HistorySample {
    /// When (ms since the Unix epoch, the node's clock).
    pub t: u64,
    /// `bastion_finalized_height`.
    pub height: Option<f64>,
    /// `bastion_orders_finalized_total`.
    pub orders: Option<f64>,
    /// `bastion_liquidations_total`.
    pub liquidations: Option<f64>,
    /// `bastion_adl_total`.
    pub adl: Option<f64>,
    /// `bastion_insurance_fund_micros`.
    pub fund: Option<f64>,
    /// `bastion_mempool_size`.
    pub mempool: Option<f64>,
    /// `bastion_finality_seconds_sum`.
    pub finality_sum: Option<f64>,
    /// `bastion_finality_seconds_count`.
    pub finality_count: Option<f64>,
}

impl HistorySample {
    /// The registry's values now.
    pub fn of(registry: &Registry, t: u64) -> HistorySample {
        let v = |name: &str| registry.value(name, &[]);
        let finality = registry.histogram_totals("bastion_finality_seconds", &[]);
        let height = v("bastion_finalized_height");
        HistorySample {
            t,
            height,
            orders: v("bastion_orders_finalized_total"),
            liquidations: v("bastion_liquidations_total"),
            adl: v("bastion_adl_total"),
            // The fund's gauge reads 0 until the first block is executed: not a value yet.
            fund: v("bastion_insurance_fund_micros").filter(|_| height.is_some_and(|h| h > 0.0)),
            mempool: v("bastion_mempool_size"),
            finality_sum: finality.map(|(sum, _)| sum),
            finality_count: finality.map(|(_, count)| count as f64),
        }
    }
}

/// What the dashboard serves: the node's identity, its latest book snapshot, its history.
#[derive(Debug)]
pub struct Dashboard {
    node: String,
    role: String,
    chain_id: String,
    book: Mutex<Option<Arc<BookSnapshot>>>,
    history: Mutex<VecDeque<HistorySample>>,
    last_sample: Mutex<Option<Instant>>,
    last_book: Mutex<Option<Instant>>,
}

impl Dashboard {
    /// A dashboard for node `node` (e.g. `v0`) of role `role` (`validator`, `full`) on
    /// `chain_id`; empty strings are shown as unknown.
    pub fn new(node: &str, role: &str, chain_id: &str) -> Dashboard {
        Dashboard {
            node: node.to_string(),
            role: role.to_string(),
            chain_id: chain_id.to_string(),
            book: Mutex::new(None),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            last_sample: Mutex::new(None),
            last_book: Mutex::new(None),
        }
    }

    /// Replaces the published books.
    pub fn publish(&self, snapshot: BookSnapshot) {
        *lock(&self.book) = Some(Arc::new(snapshot));
    }

    /// Publishes `state`'s books if [`BOOK_EVERY`] has passed since the last time: what a node
    /// calls after each executed finalized block.
    pub fn publish_every(&self, state: &State) {
        let now = Instant::now();
        {
            let mut last = lock(&self.last_book);
            if last.is_some_and(|l| now.duration_since(l) < BOOK_EVERY) {
                return;
            }
            *last = Some(now);
        }
        self.publish(BookSnapshot::of(state, DEPTH, MAX_MARKETS));
    }

    /// The published books, if any.
    pub fn book(&self) -> Option<Arc<BookSnapshot>> {
        lock(&self.book).clone()
    }

    /// Takes a history sample from `registry` when [`SAMPLE_EVERY`] has passed since the last
    /// (the metrics thread calls this every time round its accept loop).
    pub fn tick(&self, registry: &Registry) {
        let now = Instant::now();
        {
            let mut last = lock(&self.last_sample);
            if last.is_some_and(|l| now.duration_since(l) < SAMPLE_EVERY) {
                return;
            }
            *last = Some(now);
        }
        self.record(HistorySample::of(registry, now_ms()));
    }

    /// Appends a sample, forgetting the oldest beyond [`HISTORY`].
    pub fn record(&self, sample: HistorySample) {
        let mut history = lock(&self.history);
        while history.len() >= HISTORY {
            history.pop_front();
        }
        history.push_back(sample);
    }

    /// The page, with this node's name, role and chain id HTML-escaped into it.
    pub fn page(&self) -> String {
        let or_unknown = |s: &str| if s.is_empty() { "unknown".to_string() } else { html_escape(s) };
        PAGE.replace("{{NODE}}", &or_unknown(&self.node))
            .replace("{{ROLE}}", &or_unknown(&self.role))
            .replace("{{CHAIN}}", &or_unknown(&self.chain_id))
    }

    /// `/dashboard/history.json`: samples newer than `since` (ms; all when `None`).
    pub fn history_json(&self, since: Option<u64>) -> String {
        let samples: Vec<HistorySample> =
            lock(&self.history).iter().filter(|s| since.is_none_or(|t| s.t > t)).copied().collect();
        serde_json::json!({
            "node": self.node,
            "role": self.role,
            "chain_id": self.chain_id,
            "now_ms": now_ms(),
            "every_ms": SAMPLE_EVERY.as_millis() as u64,
            "samples": samples,
        })
        .to_string()
    }

    /// `/dashboard/book.json`: one market's levels (`market`: its id; `None`: the first
    /// published), or the status and message of why not.
    pub fn book_json(&self, market: Option<u32>) -> Result<String, (&'static str, String)> {
        let Some(snapshot) = self.book() else {
            let why = if self.role.is_empty() {
                "this node publishes no order book; the metrics are live"
            } else {
                "no book yet: this node has not executed a finalized block since it started"
            };
            return Err(("503 Service Unavailable", why.to_string()));
        };
        let chosen = match market {
            None => snapshot.markets.first(),
            Some(id) => snapshot.markets.iter().find(|m| m.id == id),
        };
        let Some(chosen) = chosen else {
            let published: Vec<String> =
                snapshot.markets.iter().map(|m| format!("{} ({})", m.id, m.name)).collect();
            let why = match market {
                Some(id) => format!(
                    "market {id} is not published on this dashboard; published: {}",
                    if published.is_empty() { "none".to_string() } else { published.join(", ") }
                ),
                None => "the chain has no markets".to_string(),
            };
            return Err(("404 Not Found", why));
        };
        let markets: Vec<serde_json::Value> = snapshot
            .markets
            .iter()
            .map(|m| serde_json::json!({"id": m.id, "name": m.name, "status": m.status}))
            .collect();
        Ok(serde_json::json!({
            "node": self.node,
            "role": self.role,
            "chain_id": self.chain_id,
            "height": snapshot.height,
            "block_timestamp_ms": snapshot.block_timestamp_ms,
            "taken_ms": snapshot.taken_ms,
            "now_ms": now_ms(),
            "depth": DEPTH,
            "markets": markets,
            "market": chosen,
        })
        .to_string())
    }
}

/// An HTTP answer of the dashboard's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status line after the version, e.g. `200 OK`.
    pub status: &'static str,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

const JSON: &str = "application/json; charset=utf-8";

/// Answers `GET path?query` when `path` is one of the dashboard's; `None` otherwise.
pub fn route(dashboard: &Dashboard, path: &str, query: &str) -> Option<Response> {
    let ok = |content_type, body| Response { status: "200 OK", content_type, body };
    let error = |status, message: String| Response {
        status,
        content_type: JSON,
        body: serde_json::json!({ "error": message }).to_string(),
    };
    match path {
        "/dashboard" | "/dashboard/" => Some(ok("text/html; charset=utf-8", dashboard.page())),
        "/dashboard/history.json" => Some(match param(query, "since") {
            None => ok(JSON, dashboard.history_json(None)),
            Some(s) => match s.parse::<u64>() {
                Ok(since) => ok(JSON, dashboard.history_json(Some(since))),
                Err(_) => {
                    error("400 Bad Request", format!("since={s:?}: expected milliseconds since the epoch"))
                }
            },
        }),
        "/dashboard/book.json" => {
            let market = match param(query, "market") {
                None | Some("") => None,
                Some(s) => match s.parse::<u32>() {
                    Ok(id) => Some(id),
                    Err(_) => {
                        return Some(error(
                            "400 Bad Request",
                            format!("market={s:?}: expected a market id (a number, e.g. market=0)"),
                        ));
                    }
                },
            };
            Some(match dashboard.book_json(market) {
                Ok(body) => ok(JSON, body),
                Err((status, message)) => error(status, message),
            })
        }
        _ => None,
    }
}

/// The raw value of `name` in a query string (`a=1&b=2`), if present.
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|kv| match kv.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        None if kv == name => Some(""),
        _ => None,
    })
}

/// The validator application's publisher with the dashboard's book tap in front: after each
/// executed finalized block, at most every [`BOOK_EVERY`], copies the top levels of the first
/// markets into the dashboard, then hands the block on. Runs on the consensus actor: it copies
/// at most `MAX_MARKETS * 2 * DEPTH` levels and never blocks on anything but a short mutex.
pub struct BookTap {
    inner: Option<Box<dyn Publisher>>,
    dashboard: Arc<Dashboard>,
}

impl std::fmt::Debug for BookTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BookTap").field("inner", &self.inner.is_some()).finish_non_exhaustive()
    }
}

impl BookTap {
    /// Taps the books in front of `inner` (if any).
    pub fn new(inner: Option<Box<dyn Publisher>>, dashboard: Arc<Dashboard>) -> BookTap {
        BookTap { inner, dashboard }
    }
}

impl Publisher for BookTap {
    fn finalized(&mut self, p: &Published<'_>) {
        self.dashboard.publish_every(p.state);
        if let Some(inner) = self.inner.as_mut() {
            inner.finalized(p);
        }
    }
}

/// `s` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe in text and in quoted
/// attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use bastion_exchange::Genesis;
    use bastion_exchange::testkit::{PathKind, Workload};
    use bastion_types::{Action, MarketId, OrderRequest, SelfTradePrevention, TimeInForce, Tx};

    /// The element ids the page's script fills in (the integration test reads them back).
    const IDS: [&str; 16] = [
        "node",
        "role",
        "conn",
        "updated",
        "height",
        "finality",
        "orders-rate",
        "liquidations",
        "adl",
        "insurance",
        "book-market",
        "book-asks",
        "book-bids",
        "tiles",
        "rings",
        "chart-height",
    ];

    /// The devnet genesis after a funding block and a block in which trader 1 rests `bids`
    /// post-only bids and trader 2 `asks` asks on market 0, each at its own price.
    fn state_with_book(bids: usize, asks: usize) -> State {
        let g = Genesis::devnet();
        let mut w = Workload::new(7, 2, PathKind::Calm, &g);
        let mut state = State::from_genesis(&g).unwrap();
        let funding = w.funding_txs(10_000_000_000_000);
        state.apply_block(&w.block_with(funding)).unwrap();
        let market = MarketId(0);
        let m = &state.markets[&market];
        assert!(m.mark > 0, "the first block's observations set the mark");
        let mark = m.mark / m.spec.tick_size;
        let mut txs = Vec::new();
        for (trader, side, n) in [(1u64, Side::Buy, bids), (2, Side::Sell, asks)] {
            for i in 0..n as i64 {
                w.nonces[trader as usize] += 1;
                txs.push(Tx {
                    signer: w.id(trader),
                    nonce: w.nonces[trader as usize],
                    action: Action::Place(OrderRequest {
                        market,
                        side,
                        price: Some(mark - side.sign() * (10 + 3 * i)),
                        qty: 1 + i,
                        tif: TimeInForce::PostOnly,
                        reduce_only: false,
                        good_til_height: None,
                        stp: SelfTradePrevention::CancelResting,
                    }),
                });
            }
        }
        state.apply_block(&w.block_with(txs)).unwrap();
        let book = &state.markets[&market].book;
        assert_eq!((book.level_count(Side::Buy), book.level_count(Side::Sell)), (bids, asks), "all rested");
        state
    }

    #[test]
    fn the_snapshot_holds_the_top_levels_sorted_and_bounded() {
        let state = state_with_book(15, 12);
        let snap = BookSnapshot::of(&state, DEPTH, MAX_MARKETS);
        assert_eq!(snap.height, state.height);
        assert_eq!(snap.block_timestamp_ms, state.timestamp_ms);
        let ids: Vec<u32> = snap.markets.iter().map(|m| m.id).collect();
        let want: Vec<u32> = state.markets.keys().take(MAX_MARKETS).map(|id| id.0).collect();
        assert_eq!(ids, want, "the first markets by id, in order");
        let m = &snap.markets[0];
        assert_eq!(m.name, "BTC-PERP");
        assert_eq!((m.bids.len(), m.asks.len()), (DEPTH, DEPTH), "bounded to the depth");
        assert!(m.bids.windows(2).all(|w| w[0][0] > w[1][0]), "bids best (highest) first: {:?}", m.bids);
        assert!(m.asks.windows(2).all(|w| w[0][0] < w[1][0]), "asks best (lowest) first: {:?}", m.asks);
        assert!(m.bids[0][0] < m.asks[0][0], "not crossed");
        let book = &state.markets[&MarketId(0)].book;
        assert_eq!(Some((m.bids[0][0], m.bids[0][1])), book.best_bid());
        assert_eq!(Some((m.asks[0][0], m.asks[0][1])), book.best_ask());
        // The best bid is the first placed (nearest the mark, 1 lot); the tenth has 10 lots.
        assert_eq!((m.bids[0][1], m.bids[9][1]), (1, 10));
        assert!(snap.markets[1..].iter().all(|m| m.bids.is_empty() && m.asks.is_empty()));

        // Smaller bounds are honoured too.
        let small = BookSnapshot::of(&state, 3, 2);
        assert_eq!(small.markets.len(), 2);
        assert_eq!((small.markets[0].bids.len(), small.markets[0].asks.len()), (3, 3));
        assert_eq!(small.markets[0].bids[..], m.bids[..3]);
    }

    #[test]
    fn book_json_serves_the_chosen_market_and_refuses_others() {
        let d = Dashboard::new("v0", "validator", "bastion-devnet");
        let (status, why) = d.book_json(None).unwrap_err();
        assert_eq!(status, "503 Service Unavailable");
        assert!(why.contains("not executed a finalized block"), "{why}");

        d.publish(BookSnapshot::of(&state_with_book(15, 4), DEPTH, MAX_MARKETS));
        let v: serde_json::Value = serde_json::from_str(&d.book_json(None).unwrap()).unwrap();
        assert_eq!(v["node"], "v0");
        assert_eq!(v["role"], "validator");
        assert_eq!(v["market"]["id"], 0, "the first market by default");
        assert_eq!(v["market"]["bids"].as_array().unwrap().len(), DEPTH);
        assert_eq!(v["market"]["asks"].as_array().unwrap().len(), 4);
        assert_eq!(v["markets"].as_array().unwrap().len(), 8);
        assert_eq!(v["markets"][1]["name"], "ETH-PERP");
        let eth: serde_json::Value = serde_json::from_str(&d.book_json(Some(1)).unwrap()).unwrap();
        assert_eq!(eth["market"]["name"], "ETH-PERP");
        assert_eq!(eth["market"]["bids"], serde_json::json!([]));

        let (status, why) = d.book_json(Some(99)).unwrap_err();
        assert_eq!(status, "404 Not Found");
        assert!(why.starts_with("market 99 is not published") && why.contains("0 (BTC-PERP)"), "{why}");

        // A node that publishes no book says so.
        let (status, why) = Dashboard::new("", "", "").book_json(None).unwrap_err();
        assert_eq!(status, "503 Service Unavailable");
        assert!(why.contains("publishes no order book"), "{why}");
    }

    #[test]
    fn routes_answer_html_json_and_clear_errors() {
        let d = Dashboard::new("v0", "validator", "bastion-devnet");
        d.publish(BookSnapshot::of(&state_with_book(2, 2), DEPTH, MAX_MARKETS));
        for path in ["/dashboard", "/dashboard/"] {
            let r = route(&d, path, "").unwrap();
            assert_eq!((r.status, r.content_type), ("200 OK", "text/html; charset=utf-8"));
            for id in IDS {
                assert!(r.body.contains(&format!("id=\"{id}\"")), "no element {id}");
            }
            assert!(!r.body.contains("{{"), "every placeholder filled");
            assert!(r.body.contains("<span id=\"node\">v0</span>"));
        }
        // Self-contained: nothing loaded from elsewhere.
        let page = d.page();
        for external in ["http://", "https://", "src=\"", "<link"] {
            let hits: Vec<&str> = page.matches(external).collect();
            let allowed =
                external == "http://" && page.matches("http://www.w3.org/2000/svg").count() == hits.len();
            assert!(hits.is_empty() || allowed, "external reference {external:?} in the page");
        }

        let r = route(&d, "/dashboard/book.json", "market=1").unwrap();
        assert_eq!((r.status, r.content_type), ("200 OK", JSON));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["market"]["id"], 1);
        let r = route(&d, "/dashboard/book.json", "x=1&market=").unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["market"]["id"], 0);

        let r = route(&d, "/dashboard/book.json", "market=99").unwrap();
        assert_eq!((r.status, r.content_type), ("404 Not Found", JSON));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["error"].as_str().unwrap().starts_with("market 99 is not published"), "{v}");
        let r = route(&d, "/dashboard/book.json", "market=BTC").unwrap();
        assert_eq!(r.status, "400 Bad Request");
        assert!(r.body.contains("expected a market id"), "{}", r.body);

        let r = route(&d, "/dashboard/history.json", "since=x").unwrap();
        assert_eq!(r.status, "400 Bad Request");
        assert!(route(&d, "/dashboard/nope", "").is_none());
        assert!(route(&d, "/dashboardx", "").is_none());
    }

    #[test]
    fn the_page_escapes_the_node_identity() {
        let d = Dashboard::new("<v0 & \"x\" 'y'>", "<script>", "");
        let page = d.page();
        assert!(page.contains("&lt;v0 &amp; &quot;x&quot; &#39;y&#39;&gt;"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("<v0") && !page.contains("<script>alert") && !page.contains("\"x\""));
        assert!(page.contains("<span id=\"chain\">unknown</span>"), "empty is shown as unknown");
        // The script writes what the node answers as text, never as markup.
        assert!(
            !page.contains("innerHTML") && !page.contains("insertAdjacentHTML") && !page.contains("eval(")
        );
        assert_eq!(html_escape("a<b>&'\""), "a&lt;b&gt;&amp;&#39;&quot;");
    }

    #[test]
    fn history_is_bounded_and_filtered_by_time() {
        let d = Dashboard::new("v0", "validator", "c");
        let reg = Registry::new();
        reg.counter("bastion_orders_finalized_total", "h", &[]).add(42);
        reg.gauge("bastion_finalized_height", "h", &[]).set(7.0);
        reg.gauge("bastion_insurance_fund_micros", "h", &[]).set(5e6);
        reg.histogram("bastion_finality_seconds", "h", &[], &[0.1]).observe(0.02);
        let s = HistorySample::of(&reg, 1);
        assert_eq!((s.orders, s.height, s.fund), (Some(42.0), Some(7.0), Some(5e6)));
        assert_eq!((s.finality_sum, s.finality_count), (Some(0.02), Some(1.0)));
        assert_eq!((s.liquidations, s.adl), (None, None), "not registered: null, not 0");
        // Before the first block the fund's gauge is not a value yet.
        reg.gauge("bastion_finalized_height", "h", &[]).set(0.0);
        assert_eq!(HistorySample::of(&reg, 2).fund, None);

        for t in 1..=(HISTORY as u64 + 20) {
            d.record(HistorySample { t, ..s });
        }
        let all: serde_json::Value = serde_json::from_str(&d.history_json(None)).unwrap();
        let samples = all["samples"].as_array().unwrap();
        assert_eq!(samples.len(), HISTORY, "bounded");
        assert_eq!(samples[0]["t"], 21, "the oldest forgotten first");
        assert_eq!(samples[0]["orders"], 42.0);
        let newer: serde_json::Value =
            serde_json::from_str(&d.history_json(Some(HISTORY as u64 + 17))).unwrap();
        let t: Vec<u64> =
            newer["samples"].as_array().unwrap().iter().map(|s| s["t"].as_u64().unwrap()).collect();
        assert_eq!(t, [HISTORY as u64 + 18, HISTORY as u64 + 19, HISTORY as u64 + 20]);

        // `tick` samples at most once a second.
        let d = Dashboard::new("v0", "validator", "c");
        d.tick(&reg);
        d.tick(&reg);
        let v: serde_json::Value = serde_json::from_str(&d.history_json(None)).unwrap();
        assert_eq!(v["samples"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn query_parameters() {
        assert_eq!(param("market=3", "market"), Some("3"));
        assert_eq!(param("a=1&market=4&b", "market"), Some("4"));
        assert_eq!(param("market", "market"), Some(""));
        assert_eq!(param("markets=1", "market"), None);
        assert_eq!(param("", "market"), None);
    }
}
