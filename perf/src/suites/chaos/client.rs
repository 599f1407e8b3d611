//! The client that trades through it all: a few traders, funded by the devnet authority, each
//! sending signed orders over UDP to every validator's ingress (as clients broadcast to the
//! validator set) and following each by its hash on the validators' REST API
//! (`GET /v1/tx/{hash}`), asking another validator when one does not answer. A transaction the
//! chain reports `included` at a height is *acknowledged*: recorded with its signer, nonce and
//! height, for the checker to find in every node's log. A pending one is sent again every
//! [`RESEND`]; each trader has one transaction in flight, so its nonces never run ahead of the
//! chain.

use bastion_client::{Keypair, devnet_authority};
use bastion_types::{
    AccountId, Action, AssetId, MarketId, OrderRequest, SelfTradePrevention, Side, TimeInForce,
};
use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A pending transaction is sent again this often.
const RESEND: Duration = Duration::from_secs(2);
/// A status poll this often while pending.
const POLL: Duration = Duration::from_millis(150);
/// What each trader is given: plenty for small orders.
const FUNDS_USD: i128 = 1_000_000;

/// A transaction the chain acknowledged as finalized.
#[derive(Clone, Debug, Serialize)]
pub struct Ack {
    pub account: u64,
    pub nonce: u64,
    pub height: u64,
    pub hash: String,
    /// Milliseconds since the client started.
    pub at_ms: u64,
}

#[derive(Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub resent: AtomicU64,
    pub api_errors: AtomicU64,
    pub refused: AtomicU64,
}

pub struct Client {
    stop: Arc<AtomicBool>,
    pub acks: Arc<Mutex<Vec<Ack>>>,
    pub stats: Arc<Stats>,
    threads: Vec<JoinHandle<Result<(), String>>>,
}

/// What the traders need to know about the chain.
#[derive(Clone)]
pub struct Target {
    pub chain: [u8; 32],
    pub ingress: Vec<SocketAddr>,
    pub apis: Vec<String>,
}

impl Client {
    /// Funds `traders` traders (authority deposits, nonces 1..=traders) and starts them.
    pub fn start(target: Target, traders: u64, seed: u64) -> Result<Client, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(Stats::default());
        let started = Instant::now();
        let mut threads = Vec::new();
        // The authority's deposits are transactions like any other: one at a time, nonce by
        // nonce, each acknowledged.
        let funder = Trader {
            key: devnet_authority(),
            nonce: 1,
            target: target.clone(),
            stop: stop.clone(),
            acks: acks.clone(),
            stats: stats.clone(),
            started,
            rng: seed,
        };
        let keys: Vec<Keypair> =
            (0..traders).map(|i| Keypair::derive("chaos-trader", seed.wrapping_add(i))).collect();
        let accounts: Vec<AccountId> = keys.iter().map(Keypair::account).collect();
        let funded = Arc::new(AtomicU64::new(0));
        let f = funded.clone();
        threads.push(
            std::thread::Builder::new()
                .name("chaos-funder".into())
                .spawn(move || {
                    let mut t = funder;
                    for to in accounts {
                        let action = Action::Deposit { to, asset: AssetId(0), amount: FUNDS_USD * 1_000_000 };
                        if !t.submit(action)? {
                            return Ok(());
                        }
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string())?,
        );
        for (i, key) in keys.into_iter().enumerate() {
            let mut t = Trader {
                key,
                nonce: 1,
                target: target.clone(),
                stop: stop.clone(),
                acks: acks.clone(),
                stats: stats.clone(),
                started,
                rng: seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            };
            let funded = funded.clone();
            let maker = i % 2 == 0;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("chaos-trader-{i}"))
                    .spawn(move || {
                        while funded.load(Ordering::Relaxed) <= i as u64 {
                            if t.stop.load(Ordering::Relaxed) {
                                return Ok(());
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        t.trade(maker)
                    })
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(Client { stop, acks, stats, threads })
    }

    /// Stops the traders; a trader's own error (not a fault of the network) is returned.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut first = Ok(());
        for t in self.threads.drain(..) {
            let r = t.join().map_err(|_| "a client thread panicked".to_string()).and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Trader {
    key: Keypair,
    nonce: u64,
    target: Target,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    stats: Arc<Stats>,
    started: Instant,
    rng: u64,
}

impl Trader {
    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn trade(&mut self, maker: bool) -> Result<(), String> {
        let agent = agent();
        // The first perpetual's index price, from whichever validator answers.
        let (mut fair_ticks, mut lots) = (0i64, 1i64);
        while fair_ticks <= 0 {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            for api in &self.target.apis {
                if let Some(v) = get_json(&agent, &format!("{api}/v1/markets")) {
                    let m = &v["markets"][0];
                    let index = m["index_price_micros"].as_i64().unwrap_or(0);
                    let tick = m["spec"]["tick_size"].as_i64().unwrap_or(1).max(1);
                    let lot_nanos = m["spec"]["lot_size_nanos"].as_i64().unwrap_or(1).max(1);
                    if index > 0 {
                        fair_ticks = index / tick;
                        // About 2,000 USD an order.
                        let lot_value = (i128::from(index) * i128::from(lot_nanos) / 1_000_000_000).max(1);
                        lots = i64::try_from((2_000 * 1_000_000 / lot_value).max(1)).unwrap_or(1);
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        loop {
            let side = if self.next().is_multiple_of(2) { Side::Buy } else { Side::Sell };
            let sign = if side == Side::Buy { 1 } else { -1 };
            let order = if maker {
                // Resting a little off the index, for the takers to lift.
                let away = (fair_ticks / 500).max(1) * i64::try_from(1 + self.next() % 3).unwrap_or(1);
                OrderRequest {
                    market: MarketId(0),
                    side,
                    price: Some((fair_ticks - sign * away).max(1)),
                    qty: lots,
                    tif: TimeInForce::PostOnly,
                    reduce_only: false,
                    good_til_height: None,
                    stp: SelfTradePrevention::CancelResting,
                }
            } else {
                OrderRequest {
                    market: MarketId(0),
                    side,
                    price: Some((fair_ticks + sign * (fair_ticks / 100).max(1)).max(1)),
                    qty: lots,
                    tif: TimeInForce::Ioc,
                    reduce_only: false,
                    good_til_height: None,
                    stp: SelfTradePrevention::CancelResting,
                }
            };
            if !self.submit(Action::Place(order))? {
                return Ok(());
            }
        }
    }

    /// Sends the next transaction until the chain reports it included; `Ok(false)` when
    /// stopped first.
    fn submit(&mut self, action: Action) -> Result<bool, String> {
        let signed = self.key.sign(&self.target.chain, self.nonce, action);
        let packet = signed.packet().map_err(|e| format!("cannot encode a transaction: {e:?}"))?;
        let hash = bastion_store::hex(&signed.hash());
        let socket = UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| format!("client socket: {e}"))?;
        let agent = agent();
        let mut sent_at: Option<Instant> = None;
        let mut api = (self.next() % self.target.apis.len() as u64) as usize;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            if sent_at.is_none_or(|t| t.elapsed() >= RESEND) {
                for to in &self.target.ingress {
                    // A validator that is down or cut off: the others get it.
                    let _ = socket.send_to(&packet, to);
                }
                if sent_at.is_some() {
                    self.stats.resent.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                }
                sent_at = Some(Instant::now());
            }
            std::thread::sleep(POLL);
            let url = format!("{}/v1/tx/{hash}", self.target.apis[api]);
            match get_json(&agent, &url) {
                Some(v) if v["status"] == "included" => {
                    let height = v["height"]
                        .as_u64()
                        .ok_or_else(|| format!("{url}: included without a height: {v}"))?;
                    let ack = Ack {
                        account: self.key.account().0,
                        nonce: self.nonce,
                        height,
                        hash,
                        at_ms: self.started.elapsed().as_millis() as u64,
                    };
                    self.acks.lock().map_err(|_| "acks lock poisoned")?.push(ack);
                    self.nonce += 1;
                    return Ok(true);
                }
                Some(v) if v["status"] == "rejected" => {
                    // Refused by that node before inclusion (its mempool full, say): the
                    // next send may go through.
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    api = (api + 1) % self.target.apis.len();
                }
                Some(_) => {}
                None => {
                    // Down, cut off, or not knowing the hash (it was sent there by UDP, and a
                    // node learns of a transaction through its own ingress or a block).
                    self.stats.api_errors.fetch_add(1, Ordering::Relaxed);
                    api = (api + 1) % self.target.apis.len();
                }
            }
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(800)))
        .build()
        .into()
}

/// GET `url` as JSON; `None` on any failure or a non-200 answer.
pub fn get_json(agent: &ureq::Agent, url: &str) -> Option<serde_json::Value> {
    let mut r = agent.get(url).call().ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    let body = r.body_mut().read_to_string().ok()?;
    serde_json::from_str(&body).ok()
}
