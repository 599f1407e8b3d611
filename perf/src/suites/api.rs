//! Suite `api`: the public edge of a node (issue 17, "Speed (suite api)").
//!
//! - `ws-fanout`: one `bastion-api` in this process (connection and rate limits raised), N
//!   WebSocket subscribers (1,000; quick: 50), each subscribed to `l2Book` and `trades` of
//!   market 0, held by two reader threads on `mio` (edge-triggered, non-blocking tungstenite).
//!   Real blocks (the exchange's seeded workload, signed, applied to a real `State`, plus a
//!   crossing pair on market 0 so that every block trades there) are fed at a steady rate. For
//!   each message, latency = its receive time at the client - the time `Feeder::push` was called
//!   for its height (one process clock). Every subscriber must see every trading height and a
//!   gapless `seq` on both channels, and all the same `l2Book` heights; otherwise the suite fails.
//! - `rest-book` / `rest-account`: `GET /v1/book/0?depth=20` and `GET /v1/accounts/{id}` from a
//!   few client threads, each on one keep-alive connection (a `ureq` 3 agent).
//! - `gossip-submit`: four `bastion-gossip` nodes on loopback in a full mesh (each dials every
//!   node started before it), each validating transactions as a validator does (envelope decode,
//!   body decode, ed25519 `verify_one` over `signing_message`). Signed transactions are
//!   published once each on node 0 at a steady rate; latency = arrival on another node's
//!   `txs()` - publish time, per delivery and to the last of the three (`gossip-submit-last`).
//!   Every node must get every transaction exactly once.
//! - `catch-up` (full runs only): `bastion devnet --full-nodes 1` for 20 s; the live rate is its
//!   finalized height / duration. Then the full node's store and certificate log are read back
//!   into range answers of 256 blocks (`serve_range`), and a fresh store catches up from them as a
//!   full node does (`CertChecker::check_range`, `Follower::offer_range`, `execute`, commit per
//!   range). Goal: at least 5x the live rate.
//!
//! Goals: WebSocket p99 at most 10 ms on loopback; catch-up at least 5x the live block rate.

use crate::harness::{self, Ctx, Measurement, Percentiles, Report};
use bastion_api::{Api, ApiConfig, ChainInfo, Submit, SubmitError, Update};
use bastion_client::{Keypair, devnet_authority, devnet_trader};
use bastion_exchange::testkit::{PathKind, Workload};
use bastion_exchange::{Genesis, State};
use bastion_gossip::{Gossip, GossipConfig, Handler, Verdict};
use bastion_types::{
    AccountId, Action, Block, Event, MarketId, OrderRequest, SelfTradePrevention, Side, TimeInForce, Tx,
    TxAuth,
};
use hdrhistogram::Histogram;
use serde_json::json;
use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The genesis digest clients sign for in the in-process parts (any fixed value: the API and
/// the gossip handlers are given the same one).
const DIGEST: [u8; 32] = [0xB5; 32];
/// The market every subscriber follows (BTC-PERP on the devnet genesis).
const MARKET: MarketId = MarketId(0);
/// Threads reading the WebSocket subscribers.
const WS_READERS: usize = 2;

/// A real chain: the devnet genesis, real keys, the exchange's seeded workload, every
/// transaction signed, every block applied to a real `State` (as node/api's tests build it).
#[derive(Debug)]
struct Chain {
    state: State,
    w: Workload,
    keys: HashMap<AccountId, Keypair>,
    traders: Vec<AccountId>,
}

impl Chain {
    fn new(seed: u64, traders: u64) -> Result<Chain, String> {
        let authority = devnet_authority();
        let mut keys = HashMap::new();
        let mut ids = vec![authority.account()];
        keys.insert(authority.account(), authority);
        for i in 1..=traders {
            let k = devnet_trader(i);
            ids.push(k.account());
            keys.insert(k.account(), k);
        }
        let g = Genesis::devnet().with_authority(ids[0]);
        let state = State::from_genesis(&g).map_err(|e| format!("devnet genesis: {e}"))?;
        let w = Workload::new(seed, traders, PathKind::Calm, &g).with_ids(ids.clone());
        Ok(Chain { state, w, keys, traders: ids[1..].to_vec() })
    }

    /// Signs every transaction, applies the block, wraps it as the node pushes it.
    fn update(&mut self, block: Block) -> Result<Update, String> {
        let mut auths: Vec<TxAuth> = Vec::with_capacity(block.txs.len());
        for tx in &block.txs {
            let key =
                self.keys.get(&tx.signer).ok_or_else(|| format!("no key for signer {:?}", tx.signer))?;
            auths.push(key.sign(&DIGEST, tx.nonce, tx.action.clone()).auth);
        }
        let out = self.state.apply_block(&block).map_err(|e| format!("block {}: {e}", block.height))?;
        Ok(Update {
            height: block.height,
            timestamp_ms: block.timestamp_ms,
            digest: *blake3::hash(&block.height.to_le_bytes()).as_bytes(),
            root: out.root,
            block: Arc::new(block),
            auths: Arc::new(auths),
            events: Arc::new(out.events),
            state: Arc::new(self.state.clone()),
        })
    }

    /// The funding block: every trader gets collateral.
    fn fund(&mut self) -> Result<Update, String> {
        let txs = self.w.funding_txs(50_000_000_000);
        let b = self.w.block_with(txs);
        self.update(b)
    }

    /// A block of `txs` random transactions, plus a resting sell and a crossing IOC buy of one
    /// lot at the mark on market 0 by two traders, so that market 0 trades in it.
    fn trade(&mut self, txs: usize) -> Result<Update, String> {
        let mut b = self.w.next_block(&self.state, txs);
        let m = self.state.markets.get(&MARKET).ok_or("the devnet genesis has no market 0")?;
        let mark_ticks = (m.mark / m.spec.tick_size.max(1)).max(1);
        let n = self.w.traders.max(2);
        let (seller, buyer) = (1 + b.height % n, 1 + (b.height + 1) % n);
        for (trader, side, tif) in
            [(seller, Side::Sell, TimeInForce::Gtc), (buyer, Side::Buy, TimeInForce::Ioc)]
        {
            let signer = self.w.id(trader);
            let slot = usize::try_from(trader).ok().and_then(|i| self.w.nonces.get_mut(i));
            let Some(slot) = slot else { return Err(format!("trader {trader} has no nonce slot")) };
            *slot += 1;
            b.txs.push(Tx {
                signer,
                nonce: *slot,
                action: Action::Place(OrderRequest {
                    market: MARKET,
                    side,
                    price: Some(mark_ticks),
                    qty: 1,
                    tif,
                    reduce_only: false,
                    good_til_height: None,
                    stp: SelfTradePrevention::CancelResting,
                }),
            });
        }
        self.update(b)
    }
}

/// The API's `Submit`: these parts never submit; refuse politely.
#[derive(Debug)]
struct NoSubmit;

impl Submit for NoSubmit {
    fn submit(&self, _packet: Vec<u8>) -> Result<(), SubmitError> {
        Err(SubmitError {
            code: "not_here",
            message: "the perf suite's API does not take transactions".into(),
            status: 503,
        })
    }
}

fn chain_info() -> ChainInfo {
    ChainInfo {
        chain_id: "bastion-devnet".into(),
        genesis_digest: DIGEST,
        devnet: false,
        role: "full".into(),
        node: "bastion-perf".into(),
    }
}

fn wait_height(api: &Api, height: u64) -> Result<(), String> {
    let t = Instant::now();
    while api.stats().height < height {
        if t.elapsed() > Duration::from_secs(30) {
            return Err(format!("the API did not index height {height} in 30 s: {:?}", api.stats()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn percentiles_of(h: &Histogram<u64>) -> Option<Percentiles> {
    if h.is_empty() { None } else { Some(Percentiles::from_histogram(h)) }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Nanoseconds since `base`, plus one (0 means "not yet").
fn since(base: Instant) -> u64 {
    (base.elapsed().as_nanos() as u64).saturating_add(1)
}

// ---------------------------------------------------------------------------------------------
// ws-fanout

/// The value of `"key":` in a server frame (`frame()` in node/api writes channel, height and seq
/// first, unescaped), without parsing the whole message.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let start = text.find(&pat)? + pat.len();
    let rest = &text[start..];
    if let Some(q) = rest.strip_prefix('"') {
        return q.find('"').map(|end| &q[..end]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// One WebSocket subscriber.
#[derive(Debug)]
struct Subscriber {
    ws: tungstenite::WebSocket<TcpStream>,
    /// Next expected `seq` of `l2Book` and `trades`.
    seq: [u64; 2],
    /// Heights of the updates received, per channel.
    heights: [Vec<u64>; 2],
    /// What went wrong, if anything (the subscriber stops counting then).
    error: Option<String>,
}

impl Subscriber {
    /// Connects, subscribes to `l2Book` (depth 20) and `trades` of market 0, and reads both
    /// answers and snapshots; returns the snapshots' height.
    fn connect(addr: std::net::SocketAddr) -> Result<(Subscriber, u64), String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let url = format!("ws://{addr}/v1/ws");
        let (mut ws, _) = tungstenite::client::client(url.as_str(), stream)
            .map_err(|e| format!("WebSocket handshake with {url}: {e}"))?;
        let mut snapshot = None;
        for sub in [
            json!({"type": "l2Book", "market": MARKET.0, "depth": 20}),
            json!({"type": "trades", "market": MARKET.0}),
        ] {
            let msg = json!({"method": "subscribe", "subscription": sub}).to_string();
            ws.send(tungstenite::Message::Text(msg.into())).map_err(|e| format!("subscribe: {e}"))?;
            let mut seen = 0;
            while seen < 2 {
                let m = ws.read().map_err(|e| format!("reading the subscription answer: {e}"))?;
                let tungstenite::Message::Text(t) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
                match v["channel"].as_str() {
                    Some("subscriptionResponse") => seen += 1,
                    Some(c) if c == sub["type"] && v["snapshot"] == true => {
                        let h = v["height"].as_u64().ok_or("a snapshot without a height")?;
                        if snapshot.is_some_and(|s| s != h) {
                            return Err(format!("snapshots at two heights: {snapshot:?} and {h}"));
                        }
                        snapshot = Some(h);
                        seen += 1;
                    }
                    _ => return Err(format!("unexpected answer to a subscription: {v}")),
                }
            }
        }
        ws.get_ref().set_read_timeout(None).map_err(|e| e.to_string())?;
        ws.get_ref().set_nonblocking(true).map_err(|e| e.to_string())?;
        let snapshot = snapshot.ok_or("no snapshot")?;
        Ok((Subscriber { ws, seq: [1, 1], heights: [Vec::new(), Vec::new()], error: None }, snapshot))
    }

    /// Reads every message available now; records each one's latency against the push time of
    /// its height.
    fn drain(&mut self, base: Instant, first: u64, pushed: &[AtomicU64], hist: &mut Histogram<u64>) {
        while self.error.is_none() {
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let now = since(base);
                    if let Err(e) = self.on_message(t.as_str(), now, first, pushed, hist) {
                        self.error = Some(e);
                    }
                }
                Ok(tungstenite::Message::Close(f)) => {
                    self.error = Some(format!("closed by the server: {f:?}"));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => self.error = Some(format!("read: {e}")),
            }
        }
    }

    fn on_message(
        &mut self,
        text: &str,
        now: u64,
        first: u64,
        pushed: &[AtomicU64],
        hist: &mut Histogram<u64>,
    ) -> Result<(), String> {
        let bad = || format!("unexpected message: {}", &text[..text.len().min(200)]);
        let ch = match field(text, "channel").ok_or_else(bad)? {
            "l2Book" => 0,
            "trades" => 1,
            _ => return Err(bad()),
        };
        let height: u64 = field(text, "height").and_then(|h| h.parse().ok()).ok_or_else(bad)?;
        let seq: u64 = field(text, "seq").and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        if seq != self.seq[ch] {
            return Err(format!("seq gap: got {seq}, expected {} ({})", self.seq[ch], bad()));
        }
        self.seq[ch] += 1;
        let at = height
            .checked_sub(first)
            .and_then(|i| pushed.get(usize::try_from(i).ok()?))
            .map(|a| a.load(Ordering::Acquire))
            .unwrap_or(0);
        if at == 0 {
            return Err(format!("a message for height {height}, which was not pushed"));
        }
        hist.saturating_record(now.saturating_sub(at).max(1));
        self.heights[ch].push(height);
        Ok(())
    }
}

/// One reader thread: polls its subscribers until each has the last trading height (or failed),
/// or the deadline passes.
fn read_subscribers(
    mut subs: Vec<Subscriber>,
    base: Instant,
    first: u64,
    last_trade: u64,
    pushed: Arc<Vec<AtomicU64>>,
    deadline: Arc<AtomicU64>,
) -> Result<(Vec<Subscriber>, Histogram<u64>, u64), String> {
    let mut poll = mio::Poll::new().map_err(|e| format!("mio poll: {e}"))?;
    for (i, s) in subs.iter().enumerate() {
        let fd = s.ws.get_ref().as_raw_fd();
        poll.registry()
            .register(&mut mio::unix::SourceFd(&fd), mio::Token(i), mio::Interest::READABLE)
            .map_err(|e| format!("mio register: {e}"))?;
    }
    let mut hist = harness::histogram();
    let mut events = mio::Events::with_capacity(1024);
    let mut last_rx = 0u64;
    // Data that arrived before registration: edge-triggered polling would not report it.
    for s in subs.iter_mut() {
        s.drain(base, first, &pushed, &mut hist);
    }
    loop {
        let done = subs.iter().all(|s| s.error.is_some() || s.heights[1].last() == Some(&last_trade));
        if done || since(base) > deadline.load(Ordering::Acquire) {
            break;
        }
        match poll.poll(&mut events, Some(Duration::from_millis(20))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("mio poll: {e}")),
        }
        for ev in events.iter() {
            if let Some(s) = subs.get_mut(ev.token().0) {
                let before = hist.len();
                s.drain(base, first, &pushed, &mut hist);
                if hist.len() > before {
                    last_rx = since(base);
                }
            }
        }
    }
    Ok((subs, hist, last_rx))
}

fn ws_fanout(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let n_subs = ctx.size(1_000, 50) as usize;
    let n_blocks = ctx.size(100, 40) as usize;
    let rate = 20.0; // blocks per second
    let txs_per_block = 40;
    eprintln!("  ws-fanout: building {n_blocks} blocks of real trading");
    let mut chain = Chain::new(ctx.seed, 64)?;
    let mut warm = vec![chain.fund()?];
    for _ in 0..10 {
        warm.push(chain.trade(txs_per_block)?);
    }
    let mut blocks = Vec::with_capacity(n_blocks);
    for _ in 0..n_blocks {
        blocks.push(chain.trade(txs_per_block)?);
    }
    let trade_heights: Vec<u64> = blocks
        .iter()
        .filter(|u| u.events.iter().any(|e| matches!(e, Event::Fill { market, .. } if *market == MARKET)))
        .map(|u| u.height)
        .collect();
    let first = blocks.first().map(|u| u.height).ok_or("no blocks")?;
    let last_trade = *trade_heights.last().ok_or("the workload made no trade on market 0")?;

    let mut cfg = ApiConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.max_connections_per_ip = n_subs + 16;
    cfg.rate_per_ip = 1_000_000;
    let api = Api::start(cfg, chain_info(), Arc::new(NoSubmit))?;
    let feeder = api.feeder();
    let head = warm.last().map(|u| u.height).unwrap_or(0);
    for u in warm {
        feeder.push(u);
    }
    wait_height(&api, head)?;

    eprintln!("  ws-fanout: connecting {n_subs} subscribers");
    let t = Instant::now();
    // Connected from 32 threads at once: each subscription's answer and snapshot can wait on a
    // delayed ACK (see the note below), which one thread would pay 1,000 times in a row.
    let addr = api.local_addr();
    let chunks: Vec<Vec<usize>> = (0..32).map(|k| (k..n_subs).step_by(32).collect()).collect();
    let connected: Vec<Result<Vec<Subscriber>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(chunk.len());
                    for &i in chunk {
                        let (s, snap) =
                            Subscriber::connect(addr).map_err(|e| format!("subscriber {i}: {e}"))?;
                        if snap != head {
                            return Err(format!(
                                "subscriber {i}: snapshot at height {snap}, the API is at {head}"
                            ));
                        }
                        out.push(s);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a connecting thread panicked".into())))
            .collect()
    });
    let mut subs = Vec::with_capacity(n_subs);
    for c in connected {
        subs.extend(c?);
    }
    let connect_s = t.elapsed().as_secs_f64();
    let ws_connections = api.stats().ws_connections;
    if ws_connections != n_subs as u64 {
        return Err(format!("{n_subs} subscribers connected but the API counts {ws_connections}"));
    }

    let base = Instant::now();
    let pushed: Arc<Vec<AtomicU64>> = Arc::new((0..n_blocks).map(|_| AtomicU64::new(0)).collect());
    let deadline = Arc::new(AtomicU64::new(u64::MAX));
    let per = n_subs.div_ceil(WS_READERS);
    let mut readers = Vec::new();
    while !subs.is_empty() {
        let part: Vec<Subscriber> = subs.drain(..per.min(subs.len())).collect();
        let (pushed, deadline) = (pushed.clone(), deadline.clone());
        readers.push(
            std::thread::Builder::new()
                .name("ws-reader".into())
                .spawn(move || read_subscribers(part, base, first, last_trade, pushed, deadline))
                .map_err(|e| format!("cannot spawn a reader thread: {e}"))?,
        );
    }
    eprintln!("  ws-fanout: feeding {n_blocks} blocks at {rate} blocks/s");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut first_push = 0;
    for (k, u) in blocks.into_iter().enumerate() {
        let due = start + interval * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now = since(base);
        if k == 0 {
            first_push = now;
        }
        pushed[k].store(now, Ordering::Release);
        feeder.push(u);
    }
    deadline.store(since(base) + 15_000_000_000, Ordering::Release);
    let mut hist = harness::histogram();
    let mut all = Vec::with_capacity(n_subs);
    let mut last_rx = 0;
    for r in readers {
        let (subs, h, l) = r.join().map_err(|_| "a reader thread panicked".to_string())??;
        hist.add(&h).map_err(|e| format!("histogram: {e}"))?;
        last_rx = last_rx.max(l);
        all.extend(subs);
    }
    let stats = api.stats();
    api.stop();

    // Every subscriber: no error, every trading height after its snapshot, the same book heights.
    let mut failures = Vec::new();
    let book0 = all.first().map(|s| s.heights[0].clone()).unwrap_or_default();
    for (i, s) in all.iter().enumerate() {
        if let Some(e) = &s.error {
            failures.push(format!("subscriber {i}: {e}"));
        } else if s.heights[1] != trade_heights {
            let missing: Vec<&u64> = trade_heights.iter().filter(|h| !s.heights[1].contains(h)).collect();
            failures.push(format!(
                "subscriber {i}: trades at {} heights of {}; missing {:?}",
                s.heights[1].len(),
                trade_heights.len(),
                &missing[..missing.len().min(8)]
            ));
        } else if s.heights[0] != book0 {
            failures.push(format!("subscriber {i}: l2Book heights differ from subscriber 0's"));
        }
    }
    let messages = hist.len();
    let elapsed_ns = last_rx.saturating_sub(first_push).max(1);
    let lat = percentiles_of(&hist);
    report.push(Measurement {
        name: "ws-fanout".into(),
        ops: messages,
        elapsed_ns,
        ops_per_s: messages as f64 / (elapsed_ns as f64 / 1e9),
        latency: lat.clone(),
        unit: "message (client receive - Feeder::push)".into(),
        params: json!({
            "subscribers": n_subs,
            "channels": ["l2Book depth 20", "trades"],
            "blocks": n_blocks,
            "blocks_per_s": rate,
            "txs_per_block": txs_per_block + 2,
            "trade_heights": trade_heights.len(),
            "book_heights": book0.len(),
            "reader_threads": WS_READERS,
            "connect_s": connect_s,
            "api_ws_messages": stats.ws_messages,
            "api_closed_slow": stats.ws_closed_slow,
            "api_updates_dropped": stats.updates_dropped,
        }),
    });
    report.note(format!(
        "ws-fanout: {n_subs} subscribers connected in {connect_s:.2} s; {messages} messages ({} trades heights and \
         {} l2Book heights each), {:.0} messages/s delivered; {} subscribers with a gap or error",
        trade_heights.len(),
        book0.len(),
        messages as f64 / (elapsed_ns as f64 / 1e9),
        failures.len()
    ));
    let per_connect_ms = connect_s * 1e3 / (n_subs as f64 / 32.0).max(1.0);
    if per_connect_ms > 20.0 {
        report.note(format!(
            "ws-fanout: subscribing took {per_connect_ms:.0} ms per subscriber and thread: the answer and the snapshot \
             are two writes, and the second waits for the client's delayed ACK when the server's sockets lack \
             TCP_NODELAY (Nagle); the same stall hits two messages of one block to one subscriber"
        ));
    }
    let p99 = lat.as_ref().map_or(u64::MAX, |p| p.p99_ns);
    report.goal(
        "ws-fanout-p99",
        "at most 10 ms from Feeder::push to the subscriber at p99, 1,000 subscribers on loopback",
        format!(
            "p50 {:.2} ms p99 {:.2} ms max {:.2} ms over {n_subs} subscribers",
            ms(lat.as_ref().map_or(0, |p| p.p50_ns)),
            ms(p99),
            ms(lat.as_ref().map_or(0, |p| p.max_ns))
        ),
        p99 <= 10_000_000,
    );
    if !failures.is_empty() || stats.ws_closed_slow > 0 || stats.updates_dropped > 0 {
        return Err(format!(
            "ws-fanout: not every subscriber got every height ({} failed; closed slow {}, updates dropped {}): {}",
            failures.len(),
            stats.ws_closed_slow,
            stats.updates_dropped,
            failures.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// rest-reads

/// `threads` clients, each on its own keep-alive agent, GET `path` `per_thread` times; every
/// answer must be 200 with a JSON body.
fn rest_series(
    name: &str,
    addr: std::net::SocketAddr,
    path: &str,
    threads: usize,
    per_thread: u64,
) -> Result<Measurement, String> {
    let url = format!("http://{addr}{path}");
    let barrier = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (url, barrier) = (url.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || -> Result<(Histogram<u64>, u64), String> {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let get = |h: Option<&mut Histogram<u64>>| -> Result<usize, String> {
                let t = Instant::now();
                let mut r = agent.get(&url).call().map_err(|e| format!("GET {url}: {e}"))?;
                let status = r.status().as_u16();
                let body = r.body_mut().read_to_string().map_err(|e| format!("GET {url}: body: {e}"))?;
                if let Some(h) = h {
                    h.saturating_record((t.elapsed().as_nanos() as u64).max(1));
                }
                if status != 200 || !body.starts_with('{') {
                    return Err(format!("GET {url}: {status} {}", &body[..body.len().min(200)]));
                }
                Ok(body.len())
            };
            // Warm-up: the connection and the first answers.
            let mut bytes = 0;
            for _ in 0..10 {
                bytes = get(None)?;
            }
            barrier.wait();
            let mut h = harness::histogram();
            for _ in 0..per_thread {
                get(Some(&mut h))?;
            }
            Ok((h, bytes as u64))
        }));
    }
    barrier.wait();
    let t = Instant::now();
    let mut hist = harness::histogram();
    let mut bytes = 0;
    let mut err = None;
    for h in handles {
        match h.join() {
            Ok(Ok((h, b))) => {
                hist.add(&h).map_err(|e| format!("histogram: {e}"))?;
                bytes = b;
            }
            Ok(Err(e)) => err = Some(e),
            Err(_) => err = Some("a client thread panicked".into()),
        }
    }
    let elapsed = t.elapsed();
    if let Some(e) = err {
        return Err(format!("{name}: {e}"));
    }
    let ops = hist.len();
    Ok(Measurement {
        name: name.into(),
        ops,
        elapsed_ns: elapsed.as_nanos() as u64,
        ops_per_s: ops as f64 / elapsed.as_secs_f64().max(1e-9),
        latency: percentiles_of(&hist),
        unit: "request".into(),
        params: json!({"path": path, "client_threads": threads, "keep_alive": true, "response_bytes": bytes}),
    })
}

fn rest_reads(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let mut chain = Chain::new(ctx.seed ^ 0x5E57, 64)?;
    let mut cfg = ApiConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    // The default is 100 requests/s per IP; every client here is 127.0.0.1.
    cfg.rate_per_ip = 10_000_000;
    let api = Api::start(cfg, chain_info(), Arc::new(NoSubmit))?;
    let feeder = api.feeder();
    let mut head = 0;
    feeder.push(chain.fund()?);
    for _ in 0..30 {
        let u = chain.trade(40)?;
        head = u.height;
        feeder.push(u);
    }
    wait_height(&api, head)?;
    // The account with the most positions makes the heaviest answer.
    let state = chain.state.clone();
    let account = chain
        .traders
        .iter()
        .max_by_key(|id| state.accounts.get(id).map_or(0, |a| a.positions.len()))
        .copied()
        .ok_or("no traders")?;
    let threads = if ctx.quick { 2 } else { 4 };
    let per = ctx.size(5_000, 200);
    let book =
        rest_series("rest-book", api.local_addr(), &format!("/v1/book/{}?depth=20", MARKET.0), threads, per)?;
    report.push(book);
    let acct =
        rest_series("rest-account", api.local_addr(), &format!("/v1/accounts/{}", account.0), threads, per)?;
    report.push(acct);
    let s = api.stats();
    report.note(format!(
        "rest-reads: {threads} client threads on keep-alive connections; the API answered {} requests, {} 4xx, {} 5xx",
        s.requests.total(),
        s.requests.client_error,
        s.requests.server_error
    ));
    api.stop();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// gossip-submit

/// A validator's check of a gossiped transaction (what `GossipCheck` does before the nonce
/// check): envelope decode, body decode, ed25519 verification of the signing message.
#[derive(Debug, Default)]
struct TxCheck {
    accepted: AtomicU64,
    rejected: AtomicU64,
}

impl TxCheck {
    fn check(packet: &[u8]) -> Result<Tx, &'static str> {
        let p = bastion_net::packet::decode(packet).map_err(|_| "malformed")?;
        let tx = bastion_types::tx::tx_of(p.public_key, p.body).map_err(|_| "bad_body")?;
        let mut msg = Vec::with_capacity(p.body.len() + 64);
        bastion_net::packet::signing_message(&DIGEST, p.body, &mut msg);
        let item = bastion_accel::SigItem { public_key: p.public_key, message: &msg, signature: p.signature };
        if !bastion_accel::verify_one(&item) {
            return Err("bad_signature");
        }
        Ok(tx)
    }
}

impl Handler for TxCheck {
    fn validate_tx(&self, packet: &[u8]) -> Verdict {
        if TxCheck::check(packet).is_ok() {
            self.accepted.fetch_add(1, Ordering::Relaxed);
            Verdict::Accept
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            Verdict::Reject
        }
    }

    fn validate_block(&self, _message: &[u8]) -> Verdict {
        Verdict::Ignore
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn gossip_submit(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    const NODES: usize = 4;
    let n = ctx.size(2_000, 200) as usize;
    let rate = if ctx.quick { 400.0 } else { 1_000.0 };
    let mut nodes: Vec<(Gossip, Arc<TxCheck>)> = Vec::new();
    for i in 0..NODES {
        // Every node dials every node started before it: a full mesh, as validators' bootstrap
        // lists name each other.
        let mut cfg = GossipConfig::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            *blake3::hash(&[0xA9, i as u8]).as_bytes(),
            "bastion-perf",
        );
        cfg.bootstrap = nodes.iter().flat_map(|(g, _)| g.listen_addrs()).collect();
        let h = Arc::new(TxCheck::default());
        nodes.push((Gossip::start(cfg, h.clone()).map_err(|e| format!("gossip node {i}: {e}"))?, h));
    }
    for (i, (g, _)) in nodes.iter().enumerate() {
        if !wait_until(Duration::from_secs(15), || g.stats().peers == (NODES - 1) as u64) {
            return Err(format!("gossip node {i} has {} peers, want {}", g.stats().peers, NODES - 1));
        }
    }
    // Two gossipsub heartbeats so that the meshes are formed.
    std::thread::sleep(Duration::from_millis(2_500));

    let key = devnet_trader(1);
    let mut packets = Vec::with_capacity(n);
    for i in 0..n {
        let action = Action::Place(OrderRequest {
            market: MARKET,
            side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
            price: Some(1_000_000 + i as i64),
            qty: 1,
            tif: TimeInForce::Gtc,
            reduce_only: false,
            good_til_height: None,
            stp: SelfTradePrevention::CancelResting,
        });
        packets.push(key.sign(&DIGEST, i as u64 + 1, action).packet().map_err(|e| format!("packet: {e}"))?);
    }
    let base = Instant::now();
    let published: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let deadline = Arc::new(AtomicU64::new(u64::MAX));
    let nodes = Arc::new(nodes);
    let mut receivers = Vec::new();
    for j in 1..NODES {
        let (nodes, deadline) = (nodes.clone(), deadline.clone());
        receivers.push(std::thread::spawn(move || -> Vec<(u64, u64)> {
            // (nonce, arrival) per delivery
            let mut got = Vec::with_capacity(n);
            let rx = nodes[j].0.txs();
            while got.len() < n && since(base) < deadline.load(Ordering::Acquire) {
                if let Ok(p) = rx.recv_timeout(Duration::from_millis(20)) {
                    let at = since(base);
                    if let Ok(tx) = TxCheck::check(&p) {
                        got.push((tx.nonce, at));
                    }
                }
            }
            got
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    for (i, p) in packets.into_iter().enumerate() {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        published[i].store(since(base), Ordering::Release);
        nodes[0].0.publish_tx(p).map_err(|e| format!("publish on node 0: {e}"))?;
    }
    let publish_end = Instant::now();
    // The receivers have until 10 s after the last publish.
    deadline.store(since(base) + 10_000_000_000, Ordering::Release);
    let mut per_node = Vec::new();
    for r in receivers {
        per_node.push(r.join().map_err(|_| "a receiver thread panicked".to_string())?);
    }
    let first_publish = published.first().map_or(0, |a| a.load(Ordering::Acquire));
    let mut each = harness::histogram();
    let mut last_arrival = vec![0u64; n];
    let mut failures = Vec::new();
    let mut last_rx = 0;
    for (j, got) in per_node.iter().enumerate() {
        let mut seen = vec![0u32; n];
        for &(nonce, at) in got {
            let Some(i) = usize::try_from(nonce).ok().and_then(|x| x.checked_sub(1)).filter(|&i| i < n)
            else {
                failures.push(format!("node {}: unknown nonce {nonce}", j + 1));
                continue;
            };
            seen[i] += 1;
            let lat = at.saturating_sub(published[i].load(Ordering::Acquire));
            each.saturating_record(lat.max(1));
            last_arrival[i] = last_arrival[i].max(lat);
            last_rx = last_rx.max(at);
        }
        let missing = seen.iter().filter(|&&c| c == 0).count();
        let dups = seen.iter().filter(|&&c| c > 1).count();
        if missing > 0 || dups > 0 {
            failures.push(format!("node {}: {missing} transactions missing, {dups} delivered twice", j + 1));
        }
    }
    let mut last = harness::histogram();
    for &l in last_arrival.iter().filter(|&&l| l > 0) {
        last.saturating_record(l.max(1));
    }
    let elapsed_ns = last_rx.saturating_sub(first_publish).max(1);
    let publish_s = publish_end.duration_since(start).as_secs_f64();
    let params = json!({"nodes": NODES, "topology": "full mesh", "transactions": n, "publish_rate_per_s": rate,
        "check": "decode + tx_of + ed25519 verify_one (each node)"});
    report.push(Measurement {
        name: "gossip-submit".into(),
        ops: n as u64,
        elapsed_ns,
        ops_per_s: n as f64 / (elapsed_ns as f64 / 1e9),
        latency: percentiles_of(&each),
        unit: "delivery to one node (arrival on txs() - publish)".into(),
        params: params.clone(),
    });
    report.push(Measurement {
        name: "gossip-submit-last".into(),
        ops: n as u64,
        elapsed_ns,
        ops_per_s: n as f64 / (elapsed_ns as f64 / 1e9),
        latency: percentiles_of(&last),
        unit: "transaction (arrival on the last of 3 nodes - publish)".into(),
        params,
    });
    let accepted: Vec<u64> = nodes.iter().map(|(_, h)| h.accepted.load(Ordering::Relaxed)).collect();
    let rejected: u64 = nodes.iter().map(|(_, h)| h.rejected.load(Ordering::Relaxed)).sum();
    report.note(format!(
        "gossip-submit: {n} transactions published on node 0 over {publish_s:.2} s; handlers accepted {accepted:?} \
         (node 0 publishes, it does not validate its own), rejected {rejected}"
    ));
    match Arc::try_unwrap(nodes) {
        Ok(nodes) => {
            for (g, _) in nodes {
                g.stop();
            }
        }
        Err(_) => return Err("gossip nodes still shared after the receivers ended".into()),
    }
    if !failures.is_empty() {
        return Err(format!("gossip-submit: {}", failures.join("; ")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// catch-up

/// Blocks asked per range request, as a full node asks (node/validator full.rs RANGE_BLOCKS).
const RANGE_BLOCKS: u64 = 256;

/// Runs `bastion devnet --full-nodes 1` (data kept in DIR/net); its JSON summary.
fn devnet(bin: &Path, dir: &Path, secs: u64) -> Result<serde_json::Value, String> {
    let data = dir.join("net");
    let data = data.to_str().ok_or("the temporary directory's path is not UTF-8")?;
    crate::suites::run_devnet(bin, dir, "devnet", &["--full-nodes", "1", "--data-dir", data], secs)
}

/// The full node's chain as range answers.
#[derive(Debug)]
struct Served {
    spec: bastion_consensus::ChainSpec,
    /// `(from, blocks, answer)`, consecutive from height 1.
    answers: Vec<(u64, usize, Vec<u8>)>,
    /// The last height the answers reach.
    height: u64,
    /// The full node's state root, when the answers reach its tip.
    root: Option<[u8; 32]>,
}

/// Range answers of the full node's chain from height 1, as it serves them to peers.
fn range_answers(net: &Path) -> Result<Served, String> {
    use bastion_consensus::{CertChecker, CertLog, ChainSpec, serve_range};
    let spec = ChainSpec::load(&net.join("genesis.json")).map_err(|e| format!("genesis.json: {e}"))?;
    let limits = spec.block_limits();
    let data = net.join("f0").join("data");
    let (store, _) = bastion_store::Store::open(&data, &spec.exchange, bastion_store::StoreConfig::default())
        .map_err(|e| format!("full node store {}: {e}", data.display()))?;
    let certs = CertLog::open(&data)?;
    let first = store.log().first_height();
    if first != Some(1) {
        return Err(format!(
            "the full node's block log starts at {first:?}, not 1 (pruned after a snapshot): a fresh store \
             cannot catch up from it"
        ));
    }
    let top = store.state().height;
    let checker = CertChecker::new(&spec).map_err(|e| e.to_string())?;
    let max_bytes =
        limits.max_body_bytes.saturating_add(limits.max_txs.saturating_mul(96)).saturating_add(64 << 10);
    let mut out = Vec::new();
    let mut from = 1;
    while from <= top {
        let Some(answer) = serve_range(&store, &certs, &limits, from, from + RANGE_BLOCKS - 1, max_bytes)
        else {
            break;
        };
        // Untimed: how many blocks the answer holds.
        let n = checker.check_range(&answer, from).map_err(|e| format!("range from {from}: {e:?}"))?.len();
        if n == 0 {
            break;
        }
        out.push((from, n, answer));
        from += n as u64;
    }
    let height = from - 1;
    let root = (height == top).then(|| store.state().state_root());
    Ok(Served { spec, answers: out, height, root })
}

fn catch_up(report: &mut Report) -> Result<(), String> {
    use bastion_consensus::{CertChecker, Follower, chain_tip, execute};
    let bin = super::bastion_bin("the api suite's catch-up measurement")?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let secs = 20;
    let summary = match devnet(&bin, tmp.path(), secs) {
        Ok(s) => s,
        Err(e) => {
            report.note(format!(
                "catch-up SKIPPED: the devnet with a full node did not run ({e}); it needs a working full node \
                 (validator v0's block log has no certificates, so it cannot stand in)"
            ));
            return Ok(());
        }
    };
    let height = summary["finalized_height"].as_f64().unwrap_or(0.0);
    let duration = summary["duration_s"].as_f64().unwrap_or(secs as f64);
    let live = height / duration.max(1e-9);
    let net = tmp.path().join("net");
    let Served { spec, answers, height: served, root: want_root } = match range_answers(&net) {
        Ok(a) => a,
        Err(e) => {
            report.note(format!("catch-up SKIPPED: cannot read the full node's chain back: {e}"));
            return Ok(());
        }
    };
    if answers.is_empty() {
        report.note("catch-up SKIPPED: the full node's store served no range (no certified height)");
        return Ok(());
    }
    let limits = spec.block_limits();
    let checker = CertChecker::new(&spec).map_err(|e| e.to_string())?;
    let fresh = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (mut store, _) =
        bastion_store::Store::open(fresh.path(), &spec.exchange, bastion_store::StoreConfig::default())
            .map_err(|e| format!("fresh store: {e}"))?;
    let (tip_h, tip_d) = chain_tip(&store, &spec.exchange, &limits)?;
    let mut follower = Follower::new(tip_h, tip_d, 4 * RANGE_BLOCKS);
    let mut hist = harness::histogram();
    let mut total = Duration::ZERO;
    let mut blocks = 0u64;
    let mut txs = 0u64;
    for (from, _, answer) in &answers {
        let t = Instant::now();
        let ready =
            checker.check_range(answer, *from).map_err(|e| format!("check_range from {from}: {e:?}"))?;
        follower.offer_range(ready);
        while let Some(r) = follower.next() {
            txs += r.block.block().txs.len() as u64;
            execute(&mut store, &r.block)?;
            blocks += 1;
        }
        store.commit().map_err(|e| format!("commit: {e}"))?;
        let d = t.elapsed();
        total += d;
        hist.saturating_record((d.as_nanos() as u64).max(1));
    }
    if blocks != served {
        return Err(format!("catch-up executed {blocks} blocks of the {served} served"));
    }
    let root_ok = want_root.is_none_or(|r| store.state().state_root() == r);
    let rate = blocks as f64 / total.as_secs_f64().max(1e-9);
    report.push(Measurement {
        name: "catch-up".into(),
        ops: blocks,
        elapsed_ns: total.as_nanos() as u64,
        ops_per_s: rate,
        latency: percentiles_of(&hist),
        unit: "range answer (check_range + offer_range + execute + commit)".into(),
        params: json!({"ranges": answers.len(), "range_blocks": RANGE_BLOCKS, "txs": txs,
            "live_blocks_per_s": live, "devnet_finalized_height": height, "devnet_duration_s": duration,
            "root_matches_full_node": root_ok}),
    });
    if !root_ok {
        return Err("catch-up: the fresh store's root differs from the full node's at the same height".into());
    }
    report.goal(
        "catch-up-vs-live",
        "a full node catches up at least 5x the validators' live block rate",
        format!("{rate:.0} blocks/s vs {live:.1} live ({:.1}x)", rate / live.max(1e-9)),
        rate >= 5.0 * live,
    );
    Ok(())
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    ws_fanout(ctx, report)?;
    rest_reads(ctx, report)?;
    gossip_submit(ctx, report)?;
    if ctx.quick {
        report.note("quick run: catch-up (a 20 s devnet with a full node) is skipped");
        return Ok(());
    }
    catch_up(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn frame_fields_are_read_from_the_servers_prefix() {
        let f = r#"{"channel":"l2Book","height":815,"seq":7,"snapshot":false,"data":{"bids":[[1,2]]}}"#;
        assert_eq!(field(f, "channel"), Some("l2Book"));
        assert_eq!(field(f, "height"), Some("815"));
        assert_eq!(field(f, "seq"), Some("7"));
        assert_eq!(field(f, "nope"), None);
    }

    #[test]
    fn the_gossip_check_accepts_a_signed_packet_and_rejects_a_tampered_one() {
        let key = devnet_trader(3);
        let action = Action::Cancel { market: MARKET, order: bastion_types::OrderId(9) };
        let packet = key.sign(&DIGEST, 5, action).packet().unwrap();
        let h = TxCheck::default();
        assert_eq!(h.validate_tx(&packet), Verdict::Accept);
        assert_eq!(TxCheck::check(&packet).unwrap().nonce, 5);
        let mut bad = packet.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(h.validate_tx(&bad), Verdict::Reject);
        // Signed for another chain.
        let other =
            key.sign(&[7; 32], 5, Action::Cancel { market: MARKET, order: bastion_types::OrderId(9) });
        assert_eq!(h.validate_tx(&other.packet().unwrap()), Verdict::Reject);
        assert_eq!((h.accepted.load(Ordering::Relaxed), h.rejected.load(Ordering::Relaxed)), (1, 2));
    }

    #[test]
    fn every_fed_block_trades_on_market_0() {
        let mut c = Chain::new(1, 64).unwrap();
        c.fund().unwrap();
        for _ in 0..15 {
            let u = c.trade(40).unwrap();
            assert!(
                u.events.iter().any(|e| matches!(e, Event::Fill { market, .. } if *market == MARKET)),
                "block {} has no trade on market 0",
                u.height
            );
        }
    }
}
