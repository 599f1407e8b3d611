//! REST routes, JSON errors, the per-IP rate limit and request counting.

use crate::index::TxStatus;
use crate::views::{self, hex, unhex};
use crate::{Shared, lock, read, write};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bastion_exchange::State as ExState;
use bastion_types::{AccountId, MarketId, SourceId, account_of};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Every route the API serves, as `(method, path)` with axum's `{param}` syntax; the
/// OpenAPI document lists exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/status"),
    ("GET", "/v1/markets"),
    ("GET", "/v1/book/{market}"),
    ("GET", "/v1/trades/{market}"),
    ("GET", "/v1/accounts/{account}"),
    ("GET", "/v1/accounts/{account}/orders"),
    ("GET", "/v1/accounts/{account}/fills"),
    ("GET", "/v1/accounts/{account}/vouchers"),
    ("GET", "/v1/vouchers/{id}"),
    ("GET", "/v1/deposits/{source_id}"),
    ("GET", "/v1/blocks/{height}"),
    ("POST", "/v1/tx"),
    ("GET", "/v1/tx/{hash}"),
    ("POST", "/v1/faucet"),
    ("GET", "/v1/ws"),
];

/// Largest request body (a hex packet of one datagram fits many times over).
pub(crate) const BODY_MAX: usize = 8 * 1024;
/// Deepest book a REST request may ask for.
pub(crate) const BOOK_DEPTH_MAX: usize = 1_000;
/// Most fills or trades one request returns.
pub(crate) const LIST_MAX: usize = 1_000;
/// IPs the rate limiter remembers before it forgets idle ones.
const LIMITER_IPS_MAX: usize = 65_536;

/// An error answer: `{"code": ..., "message": ...}` with a status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &str, message: &str) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.to_string(),
            message: message.to_string(),
        }
    }

    pub(crate) fn bad(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(400, code, &message.into())
    }

    pub(crate) fn no_state() -> Self {
        ApiError::new(503, "no_state", "the node has not indexed a block yet; retry shortly")
    }

    pub(crate) fn from_submit(e: &crate::SubmitError) -> Self {
        ApiError::new(e.status, e.code, &e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({"code": self.code, "message": self.message}))).into_response()
    }
}

type Res = Result<axum::Json<Value>, ApiError>;

/// Per-IP token buckets: `burst` tokens, refilled at `burst` per `period_s` seconds.
#[derive(Debug)]
pub(crate) struct Limiter {
    burst: f64,
    per_s: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Limiter {
    pub(crate) fn new(burst: f64, period_s: f64) -> Self {
        Limiter { burst, per_s: burst / period_s, buckets: HashMap::new() }
    }

    /// Takes a token for `ip`; false when its bucket is empty.
    pub(crate) fn allow(&mut self, ip: IpAddr) -> bool {
        let now = Instant::now();
        if self.buckets.len() >= LIMITER_IPS_MAX {
            let full_after = self.burst / self.per_s;
            self.buckets.retain(|_, (_, t)| now.duration_since(*t).as_secs_f64() < full_after);
        }
        let (burst, per_s) = (self.burst, self.per_s);
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_s).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn guard(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let resp = if lock(&s.limiter).allow(peer.ip()) {
        next.run(req).await
    } else {
        ApiError::new(
            429,
            "rate_limited",
            &format!("more than {} requests per second from {}; slow down", s.cfg.rate_per_ip, peer.ip()),
        )
        .into_response()
    };
    let class = usize::from(resp.status().as_u16() / 100).clamp(1, 5) - 1;
    if let Some(c) = s.counters.req.get(class) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    resp
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/markets", get(markets))
        .route("/v1/book/{market}", get(book))
        .route("/v1/trades/{market}", get(trades))
        .route("/v1/accounts/{account}", get(account))
        .route("/v1/accounts/{account}/orders", get(orders))
        .route("/v1/accounts/{account}/fills", get(fills))
        .route("/v1/accounts/{account}/vouchers", get(account_vouchers))
        .route("/v1/vouchers/{id}", get(voucher))
        .route("/v1/deposits/{source_id}", get(deposit))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/tx", post(submit_tx))
        .route("/v1/tx/{hash}", get(tx_status))
        .route("/v1/faucet", post(faucet))
        .route("/v1/ws", get(ws))
        .fallback(|| async { ApiError::new(404, "no_route", "no such route; see openapi.yaml") })
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// A market by numeric id or symbol (case-insensitive).
pub(crate) fn find_market(state: &ExState, s: &str) -> Option<MarketId> {
    if let Ok(id) = s.parse::<u32>() {
        return state.markets.contains_key(&MarketId(id)).then_some(MarketId(id));
    }
    state.markets.values().find(|m| m.spec.name.eq_ignore_ascii_case(s)).map(|m| m.spec.id)
}

/// An account from a decimal id or the `0x` hex of its 32-byte public key.
pub(crate) fn parse_account(s: &str) -> Result<AccountId, String> {
    if let Some(h) = s.strip_prefix("0x") {
        let key: [u8; 32] = unhex(h)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{s:?} is not 0x and 64 hex digits of a public key"))?;
        return Ok(account_of(&key));
    }
    s.parse::<u64>()
        .map(AccountId)
        .map_err(|_| format!("{s:?} is neither a decimal account id nor 0x and a public key"))
}

fn head_state(s: &Shared) -> Result<Arc<ExState>, ApiError> {
    read(&s.index).head.as_ref().map(|h| h.state.clone()).ok_or_else(ApiError::no_state)
}

fn market_of(state: &ExState, s: &str) -> Result<MarketId, ApiError> {
    find_market(state, s).ok_or_else(|| {
        ApiError::new(
            404,
            "unknown_market",
            &format!("market: no market {s:?} (an id or a symbol from /v1/markets)"),
        )
    })
}

fn account_of_path(state: &ExState, s: &str) -> Result<AccountId, ApiError> {
    let id = parse_account(s).map_err(|e| ApiError::bad("bad_account", format!("account: {e}")))?;
    if state.accounts.get(&id).is_none() {
        return Err(ApiError::new(
            404,
            "unknown_account",
            &format!("account: {} has no account on chain", id.0),
        ));
    }
    Ok(id)
}

fn query_usize(
    q: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad("bad_query", format!("{name}: an integer in 1..={max}, got {v:?}"))),
        },
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Res {
    let ix = read(&s.index);
    let head = ix.head.as_ref();
    Ok(axum::Json(json!({
        "chain_id": s.chain.chain_id,
        "genesis_digest": hex(&s.chain.genesis_digest),
        "devnet": s.chain.devnet,
        "role": s.chain.role,
        "node": s.chain.node,
        "height": head.map(|h| h.height),
        "root": head.map(|h| hex(&h.root)),
        "digest": head.map(|h| hex(&h.digest)),
        "timestamp_ms": head.map(|h| h.timestamp_ms),
        "behind": s.behind(),
        "updates_dropped": s.counters.updates_dropped.load(Ordering::Relaxed),
        "history_blocks": ix.history(),
        "oldest_height": ix.oldest_height(),
        "insurance_fund": head.map(|h| views::insurance_json(&h.state)),
        "bridge": head.map(|h| views::bridge_json(&h.state)),
    })))
}

async fn markets(State(s): State<Arc<Shared>>) -> Res {
    let st = head_state(&s)?;
    let list: Vec<Value> = st.markets.values().map(|m| views::market_json(&st, m)).collect();
    Ok(axum::Json(json!({"height": st.height, "markets": list})))
}

async fn book(
    State(s): State<Arc<Shared>>,
    Path(market): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let st = head_state(&s)?;
    let id = market_of(&st, &market)?;
    let depth = query_usize(&q, "depth", 20, BOOK_DEPTH_MAX)?;
    let m = st.markets.get(&id).ok_or_else(|| ApiError::new(404, "unknown_market", "market: gone"))?;
    let mut v = views::book_json(m, depth);
    v["height"] = json!(st.height);
    Ok(axum::Json(v))
}

async fn trades(
    State(s): State<Arc<Shared>>,
    Path(market): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let st = head_state(&s)?;
    let id = market_of(&st, &market)?;
    let limit = query_usize(&q, "limit", 100, LIST_MAX)?;
    let list: Vec<Value> = read(&s.index).trades_of(id, limit).iter().map(|f| views::trade_json(f)).collect();
    Ok(axum::Json(json!({"market": id.0, "height": st.height, "trades": list})))
}

async fn account(State(s): State<Arc<Shared>>, Path(account): Path<String>) -> Res {
    let st = head_state(&s)?;
    let id = account_of_path(&st, &account)?;
    let mut v =
        views::account_json(&st, id).ok_or_else(|| ApiError::new(404, "unknown_account", "account: gone"))?;
    v["height"] = json!(st.height);
    Ok(axum::Json(v))
}

async fn orders(State(s): State<Arc<Shared>>, Path(account): Path<String>) -> Res {
    let st = head_state(&s)?;
    let id = account_of_path(&st, &account)?;
    let list = views::open_orders_json(&st, id).unwrap_or_default();
    Ok(axum::Json(json!({"account": id.0, "height": st.height, "orders": list})))
}

async fn fills(
    State(s): State<Arc<Shared>>,
    Path(account): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let st = head_state(&s)?;
    let id = account_of_path(&st, &account)?;
    let limit = query_usize(&q, "limit", 100, LIST_MAX)?;
    let list: Vec<Value> =
        read(&s.index).fills_of(id, limit).iter().map(|f| views::fill_json(f, id)).collect();
    Ok(axum::Json(json!({"account": id.0, "height": st.height, "fills": list})))
}

async fn account_vouchers(
    State(s): State<Arc<Shared>>,
    Path(account): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res {
    let limit = query_usize(&q, "limit", 100, LIST_MAX)?;
    // The ids and the state they index come from one read of the index.
    let (st, id, ids) = {
        let ix = read(&s.index);
        let st = ix.head.as_ref().map(|h| h.state.clone()).ok_or_else(ApiError::no_state)?;
        let id = account_of_path(&st, &account)?;
        let ids = ix.vouchers_of(id, limit);
        (st, id, ids)
    };
    let list: Vec<Value> =
        ids.iter().filter_map(|v| st.voucher(*v)).map(|e| views::voucher_json(&st, e)).collect();
    Ok(axum::Json(json!({"account": id.0, "height": st.height, "vouchers": list})))
}

async fn voucher(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Res {
    let n: u64 = id
        .parse()
        .map_err(|_| ApiError::bad("bad_voucher", format!("id: {id:?} is not a voucher id (an integer)")))?;
    let st = head_state(&s)?;
    let e = st.voucher(n).ok_or_else(|| {
        ApiError::new(
            404,
            "unknown_voucher",
            &format!("id: no voucher {n} (vouchers are numbered from 1; the last is {})", st.last_voucher()),
        )
    })?;
    Ok(axum::Json(views::voucher_json(&st, e)))
}

async fn deposit(State(s): State<Arc<Shared>>, Path(source_id): Path<String>) -> Res {
    let sid = SourceId::from_hex(source_id.strip_prefix("0x").unwrap_or(&source_id)).ok_or_else(|| {
        ApiError::bad("bad_source_id", format!("source_id: {source_id:?} is not 64 hex digits"))
    })?;
    let st = head_state(&s)?;
    match st.credited(&sid) {
        Some(c) => Ok(axum::Json(views::credited_json(c))),
        None => Err(ApiError::new(
            404,
            "not_credited",
            &format!(
                "source_id: deposit {sid} is not credited (yet) as of height {}; it is credited once a block carries 2/3 of stake's attestations",
                st.height
            ),
        )),
    }
}

async fn block(State(s): State<Arc<Shared>>, Path(height): Path<String>) -> Res {
    let h: u64 = height
        .parse()
        .map_err(|_| ApiError::bad("bad_height", format!("height: {height:?} is not a block height")))?;
    let ix = read(&s.index);
    match ix.block(h) {
        Some(b) => Ok(axum::Json(views::block_json(b))),
        None => Err(ApiError::new(
            404,
            "unknown_block",
            &format!(
                "height: block {h} is not in this API's history (heights {:?}..={:?}, the last {} blocks)",
                ix.oldest_height(),
                ix.head.as_ref().map(|h| h.height),
                ix.history()
            ),
        )),
    }
}

/// Reads a JSON object body of at most [`BODY_MAX`] bytes.
async fn json_body(body: Body) -> Result<serde_json::Map<String, Value>, ApiError> {
    let bytes = axum::body::to_bytes(body, BODY_MAX)
        .await
        .map_err(|_| ApiError::new(413, "too_large", &format!("body: larger than {BODY_MAX} bytes")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad("bad_body", "body: a JSON object expected")),
        Err(e) => Err(ApiError::bad("bad_json", format!("body: not JSON: {e}"))),
    }
}

async fn submit_tx(State(s): State<Arc<Shared>>, body: Body) -> Res {
    let m = json_body(body).await?;
    let p = m
        .get("packet")
        .ok_or_else(|| ApiError::bad("missing_field", "packet: required, the hex of the UDP packet"))?;
    let p = p.as_str().ok_or_else(|| ApiError::bad("bad_packet", "packet: a hex string"))?;
    if p.len() > 2 * bastion_net::MAX_DATAGRAM + 2 {
        return Err(ApiError::new(
            413,
            "too_large",
            &format!("packet: longer than one datagram ({} bytes)", bastion_net::MAX_DATAGRAM),
        ));
    }
    let packet = unhex(p)
        .ok_or_else(|| ApiError::bad("bad_packet", "packet: not hex (even number of 0-9a-f digits)"))?;
    let env = bastion_net::packet::decode(&packet).map_err(|e| match e {
        bastion_net::packet::PacketError::TooLong(_) => {
            ApiError::new(413, "too_large", &format!("packet: {e}"))
        }
        _ => ApiError::bad("bad_packet", format!("packet: {e}")),
    })?;
    bastion_types::tx::decode_body(env.body)
        .map_err(|e| ApiError::bad("bad_body", format!("packet.body: {e}")))?;
    let mut msg = Vec::new();
    bastion_net::packet::signing_message(&s.chain.genesis_digest, env.body, &mut msg);
    let ok = ed25519_zebra::VerificationKey::try_from(*env.public_key)
        .and_then(|k| k.verify(&ed25519_zebra::Signature::from(*env.signature), &msg))
        .is_ok();
    if !ok {
        return Err(ApiError::bad(
            "bad_signature",
            "packet.signature: does not verify for this chain (sign DOMAIN | genesis_digest from /v1/status | body)",
        ));
    }
    let hash = bastion_client::tx_hash(env.public_key, env.body);
    if read(&s.index).is_included(&hash) {
        return Ok(axum::Json(json!({"hash": hex(&hash)})));
    }
    match s.submit.submit(packet) {
        Ok(()) => {
            write(&s.index).add_pending(hash);
            Ok(axum::Json(json!({"hash": hex(&hash)})))
        }
        Err(e) => {
            write(&s.index).add_refused(hash, e.code, &e.message);
            Err(ApiError::from_submit(&e))
        }
    }
}

async fn tx_status(State(s): State<Arc<Shared>>, Path(hash): Path<String>) -> Res {
    let h: [u8; 32] = unhex(&hash)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad("bad_hash", format!("hash: {hash:?} is not 64 hex digits")))?;
    let ix = read(&s.index);
    let now = ix.resolve(h);
    let base = |status: &str| json!({"hash": hex(&now), "requested": hex(&h), "status": status});
    match ix.status(&now) {
        Some(TxStatus::Included { height, index, outcome, voucher }) => {
            let mut v = base("included");
            v["height"] = json!(height);
            v["index"] = json!(index);
            if let Some(id) = voucher {
                v["voucher"] = json!(id);
            }
            match outcome {
                None => v["outcome"] = json!("ok"),
                Some(r) => {
                    v["outcome"] = json!("rejected");
                    v["message"] = json!(r.to_string());
                    v["reason"] = views::val(&r);
                }
            }
            Ok(axum::Json(v))
        }
        Some(TxStatus::Pending) => Ok(axum::Json(base("pending"))),
        Some(TxStatus::Refused { code, message }) => {
            let mut v = base("rejected");
            v["code"] = json!(code);
            v["message"] = json!(message);
            Ok(axum::Json(v))
        }
        None => Err(ApiError::new(
            404,
            "unknown_tx",
            &format!(
                "hash: {} was not submitted here and is not in the last {} blocks",
                hex(&h),
                ix.history()
            ),
        )),
    }
}

async fn faucet(State(s): State<Arc<Shared>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, body: Body) -> Res {
    if s.faucet.is_none() || !s.chain.devnet {
        return Err(ApiError::new(403, "not_devnet", "the faucet exists only on a devnet"));
    }
    let m = json_body(body).await?;
    let a = match m.get("account") {
        Some(Value::String(a)) => a.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(ApiError::bad("bad_account", "account: a decimal id string or 0x public key")),
        None => return Err(ApiError::bad("missing_field", "account: required")),
    };
    let to = parse_account(&a).map_err(|e| ApiError::bad("bad_account", format!("account: {e}")))?;
    if !lock(&s.faucet_limiter).allow(peer.ip()) {
        return Err(ApiError::new(
            429,
            "rate_limited",
            &format!("faucet: at most {} requests a minute per IP", s.cfg.faucet_per_ip_per_minute),
        ));
    }
    crate::faucet::request(&s, to).map(axum::Json)
}

async fn ws(
    State(s): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(slot) = crate::ws::take_slot(&s, peer.ip()) else {
        return ApiError::new(
            429,
            "too_many_connections",
            &format!("at most {} WebSocket connections per IP", s.cfg.max_connections_per_ip),
        )
        .into_response();
    };
    upgrade
        .max_message_size(crate::ws::CLIENT_MESSAGE_MAX)
        .on_upgrade(move |socket| crate::ws::serve(s, socket, slot))
}
