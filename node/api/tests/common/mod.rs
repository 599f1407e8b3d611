//! A real chain for the API's tests: the devnet genesis with real keys, the exchange's seeded
//! workload, every transaction signed, blocks applied to a real `State`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use bastion_api::{Api, ApiConfig, ChainInfo, Submit, SubmitError, Update};
use bastion_client::{Keypair, devnet_authority, devnet_trader};
use bastion_exchange::testkit::{PathKind, Workload};
use bastion_exchange::{Genesis, State};
use bastion_types::{AccountId, Block, Event, Tx, TxAuth};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DIGEST: [u8; 32] = [0xB5; 32];

pub struct Chain {
    pub state: State,
    pub w: Workload,
    pub keys: HashMap<AccountId, Keypair>,
    pub traders: Vec<AccountId>,
}

impl Chain {
    pub fn new(seed: u64, traders: u64) -> Chain {
        Chain::with_genesis(seed, traders, |authority| Genesis::devnet().with_authority(authority))
    }

    /// A chain on the genesis `genesis(authority account)` (the devnet authority's key is kept
    /// at index 0 whether or not the genesis names it).
    pub fn with_genesis(seed: u64, traders: u64, genesis: impl FnOnce(AccountId) -> Genesis) -> Chain {
        let authority = devnet_authority();
        let mut keys = HashMap::new();
        let mut ids = vec![authority.account()];
        keys.insert(authority.account(), authority);
        for i in 1..=traders {
            let k = devnet_trader(i);
            ids.push(k.account());
            keys.insert(k.account(), k);
        }
        let g = genesis(ids[0]);
        let state = State::from_genesis(&g).unwrap();
        let w = Workload::new(seed, traders, PathKind::Calm, &g).with_ids(ids.clone());
        Chain { state, w, keys, traders: ids[1..].to_vec() }
    }

    pub fn authority(&self) -> AccountId {
        self.w.id(0)
    }

    /// Signs, applies and wraps `block` as the node would push it.
    pub fn update(&mut self, block: Block) -> Update {
        let auths: Vec<TxAuth> = block
            .txs
            .iter()
            .map(|tx| self.keys[&tx.signer].sign(&DIGEST, tx.nonce, tx.action.clone()).auth)
            .collect();
        self.update_with(block, auths)
    }

    pub fn update_with(&mut self, block: Block, auths: Vec<TxAuth>) -> Update {
        let out = self.state.apply_block(&block).unwrap();
        Update {
            height: block.height,
            timestamp_ms: block.timestamp_ms,
            digest: *blake3::hash(&block.height.to_le_bytes()).as_bytes(),
            root: out.root,
            block: Arc::new(block),
            auths: Arc::new(auths),
            events: Arc::new(out.events),
            state: Arc::new(self.state.clone()),
        }
    }

    /// The funding block (every trader gets collateral).
    pub fn fund(&mut self) -> Update {
        let txs = self.w.funding_txs(50_000_000_000);
        let b = self.w.block_with(txs);
        self.update(b)
    }

    /// A block of random trading.
    pub fn trade(&mut self, txs: usize) -> Update {
        let b = self.w.next_block(&self.state, txs);
        self.update(b)
    }

    /// A block with these transactions (nonces must be right).
    pub fn with_txs(&mut self, txs: Vec<Tx>) -> Update {
        let b = self.w.block_with(txs);
        self.update(b)
    }
}

/// Fills of `account` in `events`, as (price, qty, maker order).
pub fn fills_of(events: &[Event], account: AccountId) -> Vec<(i64, i64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Fill { maker, taker, price, qty, maker_order, .. }
                if *maker == account || *taker == account =>
            {
                Some((*price, *qty, maker_order.0))
            }
            _ => None,
        })
        .collect()
}

/// A `Submit` that records packets, or refuses them while `refuse` is set.
#[derive(Default)]
pub struct Recorder {
    pub packets: Mutex<Vec<Vec<u8>>>,
    pub refuse: Mutex<Option<SubmitError>>,
}

impl Submit for Recorder {
    fn submit(&self, packet: Vec<u8>) -> Result<(), SubmitError> {
        if let Some(e) = self.refuse.lock().unwrap().clone() {
            return Err(e);
        }
        self.packets.lock().unwrap().push(packet);
        Ok(())
    }
}

pub fn chain_info(devnet: bool) -> ChainInfo {
    ChainInfo {
        chain_id: "bastion-devnet".into(),
        genesis_digest: DIGEST,
        devnet,
        role: "full".into(),
        node: "test-node".into(),
    }
}

pub fn start(cfg: ApiConfig, devnet: bool) -> (Api, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let api = Api::start(cfg, chain_info(devnet), rec.clone()).unwrap();
    (api, rec)
}

pub fn config() -> ApiConfig {
    ApiConfig::new("127.0.0.1:0".parse().unwrap())
}

/// Waits until the API indexed `height`.
pub fn wait_height(api: &Api, height: u64) {
    let t = Instant::now();
    while api.stats().height < height {
        assert!(t.elapsed() < Duration::from_secs(20), "API stuck at {:?}, want {height}", api.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// GET: status and JSON body.
pub fn get(api: &Api, path: &str) -> (u16, serde_json::Value) {
    let url = format!("http://{}{path}", api.local_addr());
    let mut r = agent().get(&url).call().unwrap();
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

/// POST a raw body.
pub fn post(api: &Api, path: &str, body: &str) -> (u16, serde_json::Value) {
    let url = format!("http://{}{path}", api.local_addr());
    let mut r = agent().post(&url).header("content-type", "application/json").send(body).unwrap();
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// A WebSocket client with a read timeout.
pub type Ws = tungstenite::WebSocket<std::net::TcpStream>;

pub fn ws_connect(api: &Api) -> Result<Ws, tungstenite::Error> {
    let stream = std::net::TcpStream::connect(api.local_addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = format!("ws://{}/v1/ws", api.local_addr());
    match tungstenite::client::client(url.as_str(), stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => panic!("handshake interrupted"),
    }
}

pub fn ws_send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(tungstenite::Message::Text(v.to_string().into())).unwrap();
}

/// Next JSON text message.
pub fn ws_next(ws: &mut Ws) -> serde_json::Value {
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}
