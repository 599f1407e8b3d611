//! WebSocket `/v1/ws`: subscriptions, snapshots, per-block fan-out with gapless `seq`, and
//! bounded per-connection queues (a full queue closes the connection: "slow consumer").

use crate::index::Derived;
use crate::views;
use crate::{Shared, lock, read};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bastion_exchange::State;
use bastion_types::{AccountId, MarketId};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};

/// Deepest `l2Book` a subscription may ask for (and the default).
pub(crate) const L2_DEPTH_MAX: usize = 100;
/// Default depth of an `l2Book` subscription.
pub(crate) const L2_DEPTH_DEFAULT: usize = 20;
/// Fills and trades in a snapshot.
const SNAPSHOT_ITEMS: usize = 100;
/// Largest client message.
pub(crate) const CLIENT_MESSAGE_MAX: usize = 4_096;
/// How long the close frame may take to go out.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a subscription follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    L2Book { market: MarketId, depth: usize },
    Bbo { market: MarketId },
    Trades { market: MarketId },
    UserFills { account: AccountId },
    OrderUpdates { account: AccountId },
    Account { account: AccountId },
    Vouchers { account: AccountId },
    Liquidations,
    Blocks,
}

impl Topic {
    fn channel(&self) -> &'static str {
        match self {
            Topic::L2Book { .. } => "l2Book",
            Topic::Bbo { .. } => "bbo",
            Topic::Trades { .. } => "trades",
            Topic::UserFills { .. } => "userFills",
            Topic::OrderUpdates { .. } => "orderUpdates",
            Topic::Account { .. } => "account",
            Topic::Vouchers { .. } => "vouchers",
            Topic::Liquidations => "liquidations",
            Topic::Blocks => "blocks",
        }
    }

    fn to_json(self) -> Value {
        match self {
            Topic::L2Book { market, depth } => json!({"type": "l2Book", "market": market.0, "depth": depth}),
            Topic::Bbo { market } | Topic::Trades { market } => {
                json!({"type": self.channel(), "market": market.0})
            }
            Topic::UserFills { account }
            | Topic::OrderUpdates { account }
            | Topic::Account { account }
            | Topic::Vouchers { account } => {
                json!({"type": self.channel(), "account": account.0.to_string()})
            }
            Topic::Liquidations | Topic::Blocks => json!({"type": self.channel()}),
        }
    }

    /// Whether the topic's data is a full picture each time (deduplicated by content).
    fn is_state(&self) -> bool {
        matches!(self, Topic::L2Book { .. } | Topic::Bbo { .. } | Topic::Account { .. })
    }
}

#[derive(Debug)]
struct Sub {
    topic: Topic,
    seq: u64,
    /// Height of the snapshot: updates for later heights only.
    from_height: u64,
    /// Hash of the last state-topic data sent (to send only changes).
    last: u64,
}

pub(crate) enum Out {
    Text(String),
}

#[derive(Debug)]
struct Conn {
    tx: mpsc::Sender<Out>,
    kill: Option<oneshot::Sender<String>>,
    subs: Vec<Sub>,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Out::Text(s) => write!(f, "Text({} bytes)", s.len()),
        }
    }
}

/// All live connections.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    conns: HashMap<u64, Conn>,
    next: u64,
}

/// Messages written to one connection before a flush.
const WRITE_BATCH: usize = 64;

fn hash_str(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn frame(channel: &str, height: u64, seq: u64, snapshot: bool, data: &str) -> String {
    format!(r#"{{"channel":"{channel}","height":{height},"seq":{seq},"snapshot":{snapshot},"data":{data}}}"#)
}

/// Queues `msg`; false when the queue is full (or closed).
fn enqueue(shared: &Shared, c: &Conn, msg: String) -> bool {
    let len = msg.len() as u64;
    match c.tx.try_send(Out::Text(msg)) {
        Ok(()) => {
            shared.counters.ws_queued_bytes.fetch_add(len, Ordering::Relaxed);
            shared.counters.ws_messages.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(_) => false,
    }
}

/// The data of a topic now, from the state and the index.
fn snapshot_data(state: &State, ix: &crate::index::Index, topic: Topic) -> Value {
    match topic {
        Topic::L2Book { market, depth } => {
            state.markets.get(&market).map(|m| views::book_json(m, depth)).unwrap_or(Value::Null)
        }
        Topic::Bbo { market } => state.markets.get(&market).map(views::bbo_json).unwrap_or(Value::Null),
        Topic::Trades { market } => {
            Value::Array(ix.trades_of(market, SNAPSHOT_ITEMS).iter().map(|f| views::trade_json(f)).collect())
        }
        Topic::UserFills { account } => Value::Array(
            ix.fills_of(account, SNAPSHOT_ITEMS).iter().map(|f| views::fill_json(f, account)).collect(),
        ),
        Topic::OrderUpdates { account } => {
            let open = views::open_orders_json(state, account).unwrap_or_default();
            json!({"open_orders": open})
        }
        Topic::Account { account } => views::account_json(state, account).unwrap_or(Value::Null),
        Topic::Vouchers { account } => Value::Array(
            ix.vouchers_of(account, SNAPSHOT_ITEMS)
                .iter()
                .filter_map(|id| state.voucher(*id))
                .map(|e| views::voucher_json(state, e))
                .collect(),
        ),
        Topic::Liquidations => Value::Array(ix.liquidations.iter().map(|(_, v)| v.clone()).collect()),
        Topic::Blocks => {
            ix.head.as_ref().and_then(|h| ix.block(h.height)).map(views::block_header).unwrap_or(Value::Null)
        }
    }
}

impl Hub {
    fn kill(&mut self, shared: &Shared, id: u64, reason: &str, slow: bool) {
        if let Some(mut c) = self.conns.remove(&id) {
            if slow {
                shared.counters.ws_closed_slow.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(k) = c.kill.take() {
                let _ = k.send(reason.to_string());
            }
        }
    }

    /// Closes every connection with `reason`.
    pub(crate) fn close_all(&mut self, reason: &str) {
        for (_, mut c) in self.conns.drain() {
            if let Some(k) = c.kill.take() {
                let _ = k.send(reason.to_string());
            }
        }
    }

    /// Sends each subscription its update for the block in `d`.
    pub(crate) fn fan_out(&mut self, shared: &Shared, state: &State, d: &Derived) {
        // Each topic's data (and, for state topics, its hash) is computed once per block, not
        // once per subscriber.
        let mut cache: HashMap<Topic, Option<(Arc<String>, u64)>> = HashMap::new();
        let mut slow = Vec::new();
        for (id, c) in self.conns.iter_mut() {
            for s in c.subs.iter_mut() {
                if d.height <= s.from_height {
                    continue;
                }
                let entry = cache.entry(s.topic).or_insert_with(|| {
                    update_data(state, d, s.topic).map(|data| {
                        let h = if s.topic.is_state() { hash_str(&data) } else { 0 };
                        (data, h)
                    })
                });
                let Some((data, h)) = entry.clone() else { continue };
                if s.topic.is_state() {
                    if h == s.last {
                        continue;
                    }
                    s.last = h;
                }
                let msg = frame(s.topic.channel(), d.height, s.seq, false, &data);
                let len = msg.len() as u64;
                if c.tx.try_send(Out::Text(msg)).is_err() {
                    slow.push(*id);
                    break;
                }
                shared.counters.ws_queued_bytes.fetch_add(len, Ordering::Relaxed);
                shared.counters.ws_messages.fetch_add(1, Ordering::Relaxed);
                s.seq += 1;
            }
        }
        for id in slow {
            self.kill(shared, id, "slow consumer", true);
        }
    }
}

/// The update a topic gets for block `d`; `None`: nothing for it in this block.
fn update_data(state: &State, d: &Derived, topic: Topic) -> Option<Arc<String>> {
    let v = match topic {
        Topic::L2Book { market, depth } => {
            if !d.books.contains(&market) {
                return None;
            }
            views::book_json(state.markets.get(&market)?, depth)
        }
        Topic::Bbo { market } => {
            if !d.books.contains(&market) {
                return None;
            }
            views::bbo_json(state.markets.get(&market)?)
        }
        Topic::Trades { market } => {
            let t: Vec<Value> =
                d.fills.iter().filter(|f| f.market == market).map(|f| views::trade_json(f)).collect();
            if t.is_empty() {
                return None;
            }
            Value::Array(t)
        }
        Topic::UserFills { account } => {
            let t: Vec<Value> = d
                .fills
                .iter()
                .filter(|f| f.maker == account || f.taker == account)
                .map(|f| views::fill_json(f, account))
                .collect();
            if t.is_empty() {
                return None;
            }
            Value::Array(t)
        }
        Topic::OrderUpdates { account } => Value::Array(d.order_updates.get(&account)?.clone()),
        Topic::Account { account } => views::account_json(state, account)?,
        Topic::Vouchers { account } => Value::Array(
            d.vouchers
                .get(&account)?
                .iter()
                .filter_map(|id| state.voucher(*id))
                .map(|e| views::voucher_json(state, e))
                .collect(),
        ),
        Topic::Liquidations => {
            if d.liquidations.is_empty() {
                return None;
            }
            Value::Array(d.liquidations.clone())
        }
        Topic::Blocks => d.header.clone(),
    };
    Some(Arc::new(v.to_string()))
}

fn error_msg(code: &str, message: &str) -> String {
    json!({"channel": "error", "data": {"code": code, "message": message}}).to_string()
}

fn parse_market(state: &State, v: Option<&Value>) -> Result<MarketId, String> {
    let s = match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return Err("subscription.market: required, a market id or symbol".into()),
    };
    crate::rest::find_market(state, &s).ok_or_else(|| format!("subscription.market: unknown market {s}"))
}

fn parse_account(v: Option<&Value>) -> Result<AccountId, String> {
    let s = match v {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return Err("subscription.account: required, a decimal account id or 0x public key".into()),
    };
    crate::rest::parse_account(&s).map_err(|e| format!("subscription.account: {e}"))
}

fn parse_topic(state: &State, sub: &Value) -> Result<Topic, String> {
    let ty = sub.get("type").and_then(Value::as_str).ok_or("subscription.type: required")?;
    Ok(match ty {
        "l2Book" => {
            let depth = match sub.get("depth") {
                None | Some(Value::Null) => L2_DEPTH_DEFAULT,
                Some(v) => match v.as_u64() {
                    Some(d) if (1..=L2_DEPTH_MAX as u64).contains(&d) => d as usize,
                    _ => return Err(format!("subscription.depth: an integer in 1..={L2_DEPTH_MAX}")),
                },
            };
            Topic::L2Book { market: parse_market(state, sub.get("market"))?, depth }
        }
        "bbo" => Topic::Bbo { market: parse_market(state, sub.get("market"))? },
        "trades" => Topic::Trades { market: parse_market(state, sub.get("market"))? },
        "userFills" => Topic::UserFills { account: parse_account(sub.get("account"))? },
        "orderUpdates" => Topic::OrderUpdates { account: parse_account(sub.get("account"))? },
        "account" => Topic::Account { account: parse_account(sub.get("account"))? },
        "vouchers" => Topic::Vouchers { account: parse_account(sub.get("account"))? },
        "liquidations" => Topic::Liquidations,
        "blocks" => Topic::Blocks,
        other => {
            return Err(format!(
                "subscription.type: unknown {other:?}; one of l2Book, bbo, trades, userFills, orderUpdates, account, vouchers, liquidations, blocks"
            ));
        }
    })
}

/// Handles one client message under the hub lock (so a snapshot and the updates that follow
/// it are consistent: no block is sent twice or skipped).
fn handle_client(shared: &Shared, id: u64, text: &str) {
    let mut hub = lock(&shared.hub);
    let Some(conn) = hub.conns.get_mut(&id) else { return };
    let reply = |conn: &Conn, msg: String| enqueue(shared, conn, msg);
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let ok = reply(conn, error_msg("bad_json", &format!("message is not JSON: {e}")));
            if !ok {
                hub.kill(shared, id, "slow consumer", true);
            }
            return;
        }
    };
    let method = v.get("method").and_then(Value::as_str).unwrap_or("");
    let ix = read(&shared.index);
    let Some(head) = ix.head.clone() else {
        let ok = reply(conn, error_msg("no_state", "the node has not indexed a block yet; retry shortly"));
        drop(ix);
        if !ok {
            hub.kill(shared, id, "slow consumer", true);
        }
        return;
    };
    let sub_v = v.get("subscription").cloned().unwrap_or(Value::Null);
    let topic = match (method, parse_topic(&head.state, &sub_v)) {
        ("subscribe" | "unsubscribe", Ok(t)) => Ok(t),
        ("subscribe" | "unsubscribe", Err(e)) => Err(("bad_subscription", e)),
        _ => Err(("bad_method", "method: \"subscribe\" or \"unsubscribe\"".to_string())),
    };
    let ok = match topic {
        Err((code, msg)) => reply(conn, error_msg(code, &msg)),
        Ok(topic) if method == "subscribe" => {
            if conn.subs.iter().any(|s| s.topic == topic) {
                reply(conn, error_msg("already_subscribed", "this connection already has that subscription"))
            } else if conn.subs.len() >= shared.cfg.max_subscriptions_per_connection {
                reply(
                    conn,
                    error_msg(
                        "too_many_subscriptions",
                        &format!(
                            "at most {} subscriptions per connection; unsubscribe first",
                            shared.cfg.max_subscriptions_per_connection
                        ),
                    ),
                )
            } else {
                let resp = json!({"channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": topic.to_json()}});
                let data = snapshot_data(&head.state, &ix, topic).to_string();
                let last = if topic.is_state() { hash_str(&data) } else { 0 };
                let ok = reply(conn, resp.to_string())
                    && reply(conn, frame(topic.channel(), head.height, 0, true, &data));
                conn.subs.push(Sub { topic, seq: 1, from_height: head.height, last });
                ok
            }
        }
        Ok(topic) => {
            let before = conn.subs.len();
            conn.subs.retain(|s| s.topic != topic);
            if conn.subs.len() == before {
                reply(conn, error_msg("not_subscribed", "no such subscription on this connection"))
            } else {
                reply(
                    conn,
                    json!({"channel": "subscriptionResponse", "data": {"method": "unsubscribe", "subscription": topic.to_json()}}).to_string(),
                )
            }
        }
    };
    drop(ix);
    if !ok {
        hub.kill(shared, id, "slow consumer", true);
    }
}

/// Releases the per-IP connection slot when the connection ends.
struct IpSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = lock(&self.shared.ws_per_ip);
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
        self.shared.counters.ws_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes a connection slot for `ip`; `None` when it holds the maximum.
pub(crate) fn take_slot(shared: &Arc<Shared>, ip: IpAddr) -> Option<impl Send + 'static> {
    let mut m = lock(&shared.ws_per_ip);
    let n = m.entry(ip).or_insert(0);
    if *n >= shared.cfg.max_connections_per_ip {
        return None;
    }
    *n += 1;
    shared.counters.ws_connections.fetch_add(1, Ordering::Relaxed);
    Some(IpSlot { shared: shared.clone(), ip })
}

/// Serves one upgraded connection until either side closes it.
pub(crate) async fn serve(shared: Arc<Shared>, socket: WebSocket, slot: impl Send + 'static) {
    let (tx, mut rx) = mpsc::channel::<Out>(shared.cfg.ws_buffer);
    let (kill, mut killed) = oneshot::channel::<String>();
    let id = {
        let mut hub = lock(&shared.hub);
        hub.next += 1;
        let id = hub.next;
        hub.conns.insert(id, Conn { tx, kill: Some(kill), subs: Vec::new() });
        id
    };
    let (mut sink, mut stream) = socket.split();
    let reader_shared = shared.clone();
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Text(t) => handle_client(&reader_shared, id, t.as_str()),
                Message::Binary(_) => {
                    let mut hub = lock(&reader_shared.hub);
                    if let Some(c) = hub.conns.get(&id)
                        && !enqueue(&reader_shared, c, error_msg("bad_json", "send text frames with JSON"))
                    {
                        hub.kill(&reader_shared, id, "slow consumer", true);
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    // Writer: queued messages out, until the hub kills the connection or the client leaves.
    let reason: Option<String> = loop {
        tokio::select! {
            biased;
            r = &mut killed => break r.ok(),
            m = rx.recv() => {
                let Some(Out::Text(m)) = m else { break None };
                shared.counters.ws_queued_bytes.fetch_sub(m.len() as u64, Ordering::Relaxed);
                // Everything already queued goes out with one flush (one write for the messages
                // of a block, not one per message).
                let mut batch = vec![Message::Text(Utf8Bytes::from(m))];
                while batch.len() < WRITE_BATCH
                    && let Ok(Out::Text(m)) = rx.try_recv()
                {
                    shared.counters.ws_queued_bytes.fetch_sub(m.len() as u64, Ordering::Relaxed);
                    batch.push(Message::Text(Utf8Bytes::from(m)));
                }
                let send = async {
                    for m in batch {
                        sink.feed(m).await?;
                    }
                    sink.flush().await
                };
                tokio::pin!(send);
                let stop = tokio::select! {
                    r = &mut send => if r.is_err() { Some(None) } else { None },
                    r = &mut killed => Some(r.ok()),
                };
                if let Some(stop) = stop {
                    break stop;
                }
            }
            _ = &mut reader => break None,
        }
    };
    lock(&shared.hub).conns.remove(&id);
    // Whatever is still queued is dropped: release its bytes from the count.
    rx.close();
    while let Ok(Out::Text(m)) = rx.try_recv() {
        shared.counters.ws_queued_bytes.fetch_sub(m.len() as u64, Ordering::Relaxed);
    }
    if let Some(reason) = reason {
        let frame =
            CloseFrame { code: axum::extract::ws::close_code::POLICY, reason: Utf8Bytes::from(reason) };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
    reader.abort();
    drop(slot);
}
