//! Bastion's public API (issue 17): REST and WebSocket over the finalized chain.
//!
//! The node (full node or validator) executes finalized blocks and pushes one [`Update`] per
//! block through a [`Feeder`]. The API never touches consensus or storage: it indexes these
//! updates in memory and serves them over HTTP (`axum`) on its own thread and tokio runtime.
//!
//! * REST under `/v1/...` (see `openapi.yaml` in this crate), JSON errors
//!   `{"code": "...", "message": "..."}`.
//! * WebSocket at `/v1/ws` (see `WEBSOCKET.md`): subscriptions with a snapshot first, then one
//!   message per finalized block, `seq` gapless per subscription.
//!
//! History (fills, trades, blocks and transaction outcomes) is kept **in memory for the last
//! [`ApiConfig::history_blocks`] blocks** (and at most a fixed number of entries per account
//! and market). Why memory and not an on-disk index: everything here is derivable again from
//! the node's block log, the API restarts with the node, and traders need the recent past
//! (their own fills since they connected, the last trades); an unbounded archive is a separate
//! indexer's job. Every map is bounded by the window or by a named limit.
//!
//! The bridge is read from the state, not the window: a credited deposit by its source id and
//! a withdrawal voucher by its id, with its validators' signatures and the exact message they
//! signed, at any age. Only the list of an account's vouchers needs an index (its newest
//! 1,000 ids, rebuilt from the state when the API starts).

mod faucet;
mod index;
mod rest;
mod views;
mod ws;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use rest::ROUTES;

/// What the node hands the API after executing one finalized block.
#[derive(Clone, Debug)]
pub struct Update {
    /// The block's height.
    pub height: u64,
    /// The block's consensus timestamp.
    pub timestamp_ms: u64,
    /// The block's digest.
    pub digest: [u8; 32],
    /// The state root after it.
    pub root: [u8; 32],
    /// The block.
    pub block: Arc<bastion_types::Block>,
    /// One per `block.txs` entry: the signer's public key and signature.
    pub auths: Arc<Vec<bastion_types::TxAuth>>,
    /// What executing the block produced, in order.
    pub events: Arc<Vec<bastion_types::Event>>,
    /// The state after the block.
    pub state: Arc<bastion_exchange::State>,
}

/// What the API says about the chain and the node serving it (`GET /v1/status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainInfo {
    /// The genesis chain id.
    pub chain_id: String,
    /// The genesis digest: what clients sign transactions for (served as hex).
    pub genesis_digest: [u8; 32],
    /// Whether the chain is a devnet (the faucet also checks `state.devnet`).
    pub devnet: bool,
    /// `"full"` or `"validator"`.
    pub role: String,
    /// A name of the node (operator's choice).
    pub node: String,
}

/// Why [`Submit::submit`] refused a packet; the API answers it as `status` with
/// `{"code": code, "message": message}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitError {
    /// Machine-readable reason, e.g. `"mempool_full"`, `"bad_signature"`.
    pub code: &'static str,
    /// What happened and what to do about it.
    pub message: String,
    /// HTTP status to answer (4xx for the client's fault, 5xx for the node's).
    pub status: u16,
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

/// Where the API hands clients' transactions (the node's gossip and/or mempool).
pub trait Submit: Send + Sync + 'static {
    /// Hands a client's UDP-format packet to the network (gossip and/or own mempool).
    /// `Err`: why it was refused (answered as 4xx/5xx).
    fn submit(&self, packet: Vec<u8>) -> Result<(), SubmitError>;
}

/// The devnet faucet: signs authority deposits.
#[derive(Clone, Debug)]
pub struct FaucetConfig {
    /// The chain's bridge authority key (the devnet's is public: `devnet_authority()`).
    pub authority: bastion_client::Keypair,
    /// Amount credited per request, in the asset's micro-units.
    pub amount: i128,
    /// The credited asset.
    pub asset: bastion_types::AssetId,
}

/// How the API serves. [`ApiConfig::new`] gives defaults fit for a devnet or a public node.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Address to bind (`0` port: any free port; see [`Api::local_addr`]).
    pub listen: SocketAddr,
    /// Fills, orders, trades, blocks and transaction outcomes are kept for the last this many
    /// blocks, in memory (see the crate documentation for why).
    pub history_blocks: u64,
    /// Per-connection outbound queue bound, in messages; a connection whose queue is full is
    /// closed with the reason `"slow consumer"`.
    pub ws_buffer: usize,
    /// WebSocket connections one IP address may hold at once (more: 429).
    pub max_connections_per_ip: usize,
    /// Subscriptions one WebSocket connection may hold at once.
    pub max_subscriptions_per_connection: usize,
    /// REST requests per second per IP (token bucket with a burst of the same size); over it:
    /// 429.
    pub rate_per_ip: u32,
    /// Faucet requests per minute per IP (token bucket, burst of the same size).
    pub faucet_per_ip_per_minute: u32,
    /// Bound of the queue between the node and the API, in blocks; when full, an update is
    /// dropped, counted, and the API reports `behind` (WebSocket clients are closed so that no
    /// subscription silently skips a block).
    pub feed_queue: usize,
    /// `Some` only where the chain is a devnet (also checked against `state.devnet` per request).
    pub faucet: Option<FaucetConfig>,
}

impl ApiConfig {
    /// Defaults: 1,000 blocks of history, 1,024-message WebSocket queues, 16 connections and
    /// 64 subscriptions per connection per IP, 100 requests/s per IP, 6 faucet calls a minute
    /// per IP, 4,096 queued blocks, no faucet.
    pub fn new(listen: SocketAddr) -> Self {
        ApiConfig {
            listen,
            history_blocks: 1_000,
            ws_buffer: 1_024,
            max_connections_per_ip: 16,
            max_subscriptions_per_connection: 64,
            rate_per_ip: 100,
            faucet_per_ip_per_minute: 6,
            feed_queue: 4_096,
            faucet: None,
        }
    }
}

/// REST responses counted by status class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestStats {
    /// 1xx (WebSocket upgrades answer 101).
    pub informational: u64,
    /// 2xx.
    pub success: u64,
    /// 3xx.
    pub redirect: u64,
    /// 4xx.
    pub client_error: u64,
    /// 5xx.
    pub server_error: u64,
}

impl RequestStats {
    /// All responses.
    pub fn total(&self) -> u64 {
        self.informational + self.success + self.redirect + self.client_error + self.server_error
    }
}

/// Counters of a running API.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApiStats {
    /// Responses by status class.
    pub requests: RequestStats,
    /// WebSocket connections open now.
    pub ws_connections: u64,
    /// WebSocket data and response messages queued to clients since start.
    pub ws_messages: u64,
    /// Connections closed because their queue was full ("slow consumer").
    pub ws_closed_slow: u64,
    /// Bytes queued to WebSocket clients and not yet written to their sockets.
    pub ws_queued_bytes: u64,
    /// Updates indexed.
    pub updates_applied: u64,
    /// Updates dropped because the feed queue was full.
    pub updates_dropped: u64,
    /// Height of the last indexed update.
    pub height: u64,
    /// Whether the API fell behind the node (a dropped update, or the queue 3/4 full).
    pub behind: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) req: [AtomicU64; 5],
    pub(crate) ws_connections: AtomicU64,
    pub(crate) ws_messages: AtomicU64,
    pub(crate) ws_closed_slow: AtomicU64,
    pub(crate) ws_queued_bytes: AtomicU64,
    pub(crate) updates_applied: AtomicU64,
    pub(crate) updates_dropped: AtomicU64,
    pub(crate) height: AtomicU64,
    pub(crate) dropped_ever: AtomicBool,
}

/// Everything the tasks share.
pub(crate) struct Shared {
    pub(crate) chain: ChainInfo,
    pub(crate) cfg: ApiConfig,
    pub(crate) index: RwLock<index::Index>,
    pub(crate) hub: Mutex<ws::Hub>,
    pub(crate) counters: Counters,
    pub(crate) submit: Arc<dyn Submit>,
    pub(crate) faucet: Option<Mutex<faucet::Faucet>>,
    pub(crate) limiter: Mutex<rest::Limiter>,
    pub(crate) faucet_limiter: Mutex<rest::Limiter>,
    pub(crate) ws_per_ip: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    pub(crate) feed_len: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("chain", &self.chain).finish_non_exhaustive()
    }
}

/// Locks a mutex; a poisoned one (a panicked holder) is still used: every structure behind
/// these locks stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn behind(&self) -> bool {
        let cap = self.cfg.feed_queue.max(1) as u64;
        self.counters.dropped_ever.load(Ordering::Relaxed)
            || self.feed_len.load(Ordering::Relaxed).saturating_mul(4) >= cap.saturating_mul(3)
    }

    pub(crate) fn stats(&self) -> ApiStats {
        let c = &self.counters;
        let r = |i: usize| c.req[i].load(Ordering::Relaxed);
        ApiStats {
            requests: RequestStats {
                informational: r(0),
                success: r(1),
                redirect: r(2),
                client_error: r(3),
                server_error: r(4),
            },
            ws_connections: c.ws_connections.load(Ordering::Relaxed),
            ws_messages: c.ws_messages.load(Ordering::Relaxed),
            ws_closed_slow: c.ws_closed_slow.load(Ordering::Relaxed),
            ws_queued_bytes: c.ws_queued_bytes.load(Ordering::Relaxed),
            updates_applied: c.updates_applied.load(Ordering::Relaxed),
            updates_dropped: c.updates_dropped.load(Ordering::Relaxed),
            height: c.height.load(Ordering::Relaxed),
            behind: self.behind(),
        }
    }
}

/// Hands the API one [`Update`] per executed block. Cheap to clone; never blocks.
#[derive(Clone, Debug)]
pub struct Feeder {
    tx: tokio::sync::mpsc::Sender<Update>,
    shared: Arc<Shared>,
}

impl Feeder {
    /// Queues `update` for indexing without blocking. If the queue is full the update is
    /// dropped, counted (`updates_dropped`), and the API marks itself `behind`; WebSocket
    /// clients are then closed at the gap rather than silently skip a block.
    pub fn push(&self, update: Update) {
        // Counted before the send: the applier may take the update (and count it off) before
        // `try_send` even returns. Counting after, as this once did, let the length wrap
        // below zero for a moment, and `behind` overflowed on it (a debug build's panic, found
        // by the chaos campaign under delay and loss).
        self.shared.feed_len.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(update) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                self.shared.feed_len.fetch_sub(1, Ordering::Relaxed);
                self.shared.counters.updates_dropped.fetch_add(1, Ordering::Relaxed);
                self.shared.counters.dropped_ever.store(true, Ordering::Relaxed);
            }
            // The API stopped: nothing to index into.
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                self.shared.feed_len.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// A running API server: its own thread with a tokio runtime.
#[derive(Debug)]
pub struct Api {
    addr: SocketAddr,
    shared: Arc<Shared>,
    feed: tokio::sync::mpsc::Sender<Update>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Api {
    /// Binds `cfg.listen` and serves on a thread of its own. Errors name what failed (the
    /// address in use, a runtime that could not start).
    pub fn start(cfg: ApiConfig, chain: ChainInfo, submit: Arc<dyn Submit>) -> Result<Api, String> {
        if cfg.ws_buffer == 0 || cfg.feed_queue == 0 {
            return Err("api: ws_buffer and feed_queue must be at least 1".into());
        }
        let listener = std::net::TcpListener::bind(cfg.listen)
            .map_err(|e| format!("api: cannot bind {} ([api] listen): {e}", cfg.listen))?;
        listener.set_nonblocking(true).map_err(|e| format!("api: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("api: {e}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bastion-api")
            .enable_all()
            .build()
            .map_err(|e| format!("api: cannot start its tokio runtime: {e}"))?;
        let (feed, feed_rx) = tokio::sync::mpsc::channel(cfg.feed_queue);
        let faucet = cfg.faucet.clone().map(|f| Mutex::new(faucet::Faucet::new(f)));
        let shared = Arc::new(Shared {
            index: RwLock::new(index::Index::new(cfg.history_blocks)),
            hub: Mutex::new(ws::Hub::default()),
            counters: Counters::default(),
            submit,
            faucet,
            limiter: Mutex::new(rest::Limiter::new(f64::from(cfg.rate_per_ip.max(1)), 1.0)),
            faucet_limiter: Mutex::new(rest::Limiter::new(
                f64::from(cfg.faucet_per_ip_per_minute.max(1)),
                60.0,
            )),
            ws_per_ip: Mutex::new(Default::default()),
            feed_len: AtomicU64::new(0),
            chain,
            cfg,
        });
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("bastion-api".into())
            .spawn(move || {
                rt.block_on(serve(s, listener, feed_rx, shutdown_rx));
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
            })
            .map_err(|e| format!("api: cannot spawn its thread: {e}"))?;
        Ok(Api { addr, shared, feed, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle for the node to push updates with.
    pub fn feeder(&self) -> Feeder {
        Feeder { tx: self.feed.clone(), shared: self.shared.clone() }
    }

    /// Current counters.
    pub fn stats(&self) -> ApiStats {
        self.shared.stats()
    }

    /// Stops serving, closes every connection and joins the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.halt();
    }
}

/// How long a stopping API waits for its connections (WebSocket close frames included).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

async fn serve(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    mut feed: tokio::sync::mpsc::Receiver<Update>,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("api: cannot serve: {e}");
            return;
        }
    };
    let s = shared.clone();
    let applier = tokio::spawn(async move {
        while let Some(u) = feed.recv().await {
            s.feed_len.fetch_sub(1, Ordering::Relaxed);
            index::apply(&s, u);
        }
    });
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = rest::router(shared.clone());
    let (graceful, graceful_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            let _ = graceful_rx.await;
        });
    let mut server = tokio::spawn(server.into_future());
    tokio::select! {
        r = &mut server => {
            if let Ok(Err(e)) = r {
                eprintln!("api: server stopped: {e}");
            }
        }
        _ = shutdown => {
            let _ = graceful.send(());
            // WebSocket subscribers learn of the shutdown from a close frame with the reason,
            // not a reset: close them now and give their tasks time to send it (each releases
            // its connection count when done) before the runtime drops every task.
            lock(&shared.hub).close_all("server shutting down");
            let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
            while shared.counters.ws_connections.load(Ordering::Relaxed) > 0
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            // Idle keep-alive connections close at once; anything slower is cut off.
            if tokio::time::timeout_at(deadline, &mut server).await.is_err() {
                server.abort();
            }
        }
    }
    lock(&shared.hub).close_all("server shutting down");
    applier.abort();
}
