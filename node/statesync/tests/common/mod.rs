//! The test harness of the state-sync integration tests: a real certified chain (blocks with
//! signed deposits and orders, executed by the real exchange, certified by a BLS multisig
//! quorum), source nodes (store, certificate log, snapshots), and an in-memory
//! [`Transport`]: the seam the crate defines between the syncer and the network, with peers
//! that answer through a [`Server`] (honest) or alter its answers (Byzantine).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use bastion_client::{Keypair, devnet_authority, devnet_trader};
use bastion_consensus::{
    BlockLimits, CertChecker, CertLog, ChainBlock, Multisig, execute, genesis_block, serve_range,
    sim::{SIM_CHAIN, sim_genesis, sim_store_config},
};
use bastion_exchange::{
    IMAGE_LAYOUT, State,
    testkit::{PathKind, Workload},
};
use bastion_statesync::{
    Answer, Manifest, Request, ServeConfig, Server, Transport,
    wire::{MAX_ANCHOR_BYTES, MIN_CHUNK_BYTES},
};
use bastion_store::{Store, StoreConfig};
use bastion_types::{AccountId, Block, Tx, TxAuth};
use commonware_codec::Encode as _;
use commonware_consensus::{
    simplex::{
        scheme::bls12381_multisig,
        types::{Finalization, Finalize, Proposal},
    },
    types::{Epoch, Round, View},
};
use commonware_cryptography::{
    bls12381::primitives::variant::MinSig, certificate::mocks::Fixture, sha256::Digest,
};
use commonware_parallel::Sequential;
use commonware_utils::{TestRng, non_empty};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The validators' namespace.
pub const NS: &[u8] = b"bastion:statesync-test";
/// Blocks in the test chain.
pub const CHAIN_LEN: u64 = 120;
/// Every this many heights a block carries its own finalization certificate (and the last).
pub const CERT_EVERY: u64 = 4;
/// Traders in the workload.
pub const TRADERS: u64 = 6;
/// Random transactions per block after the funding block.
pub const TXS_PER_BLOCK: usize = 12;
/// The chunk size the test servers cut snapshots into (the smallest allowed).
pub const CHUNK: u32 = MIN_CHUNK_BYTES;
/// The syncing node's name on the in-memory network.
pub const ME: &str = "syncer";

pub fn limits() -> BlockLimits {
    BlockLimits { max_body_bytes: 1 << 20, ..BlockLimits::default() }
}

/// The genesis validator set's schemes (same seed: same keys).
pub fn fixture() -> Fixture<Multisig> {
    bls12381_multisig::fixture::<MinSig, _>(&mut TestRng::new(7), NS, 4)
}

/// A finalization of `digest` at view `view` signed by a quorum (3 of 4) of `f`.
pub fn certify(f: &Fixture<Multisig>, view: u64, digest: Digest) -> Vec<u8> {
    let proposal = Proposal::new(Round::new(Epoch::new(0), View::new(view)), View::new(view - 1), digest);
    let votes: Vec<_> =
        f.schemes.iter().take(3).map(|s| Finalize::sign(s, proposal.clone()).unwrap()).collect();
    Finalization::from_finalizes(&f.schemes[0], non_empty![@&votes], &Sequential).unwrap().encode().to_vec()
}

/// The checker of the genesis validator set (what a syncing node trusts).
pub fn checker() -> CertChecker {
    let genesis = genesis_block(&sim_genesis()).unwrap().id();
    CertChecker::with_verifier(fixture().verifier.clone(), limits(), genesis)
}

/// A checker of another validator set (a node of another chain).
pub fn foreign_checker() -> CertChecker {
    let f = bls12381_multisig::fixture::<MinSig, _>(&mut TestRng::new(8), NS, 4);
    let genesis = genesis_block(&sim_genesis()).unwrap().id();
    CertChecker::with_verifier(f.verifier.clone(), limits(), genesis)
}

/// The certified chain: blocks `1..=CHAIN_LEN`, each block's own certificate (if any), and the
/// state root after every height (`roots[0]`: the genesis root).
#[derive(Debug)]
pub struct Chain {
    pub blocks: Vec<ChainBlock>,
    pub certs: Vec<Option<Vec<u8>>>,
    pub roots: Vec<[u8; 32]>,
}

impl Chain {
    pub fn block(&self, h: u64) -> &ChainBlock {
        &self.blocks[(h - 1) as usize]
    }

    /// The digest of block `h` (what an operator passes as the trust hash).
    pub fn digest(&self, h: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.block(h).id().as_ref());
        out
    }
}

/// The chain, built once per test binary: the devnet authority funds the traders in block 1,
/// then each block carries signed random orders, cancels, withdrawals... and the validators'
/// oracle observations.
pub fn chain() -> &'static Chain {
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let g = sim_genesis();
        let f = fixture();
        let mut state = State::from_genesis(&g).unwrap();
        let keys: Vec<Keypair> =
            std::iter::once(devnet_authority()).chain((1..=TRADERS).map(devnet_trader)).collect();
        let ids: Vec<AccountId> = keys.iter().map(Keypair::account).collect();
        let mut w = Workload::new(42, TRADERS, PathKind::Calm, &g).with_ids(ids.clone());
        let mut parent = genesis_block(&g).unwrap().id();
        let mut chain = Chain { blocks: Vec::new(), certs: Vec::new(), roots: vec![state.state_root()] };
        for h in 1..=CHAIN_LEN {
            for (n, id) in w.nonces.iter_mut().zip(&ids) {
                *n = state.accounts.get(id).map_or(0, |a| a.nonce);
            }
            let block = if h == 1 {
                let txs = w.funding_txs(100_000_000_000);
                w.block_with(txs)
            } else {
                w.next_block(&state, TXS_PER_BLOCK)
            };
            assert_eq!(block.height, h);
            let (txs, auth): (Vec<Tx>, Vec<TxAuth>) = block
                .txs
                .into_iter()
                .map(|tx| {
                    let key = &keys[ids.iter().position(|i| *i == tx.signer).unwrap()];
                    let s = key.sign(&SIM_CHAIN, tx.nonce, tx.action);
                    (s.tx, s.auth)
                })
                .unzip();
            let block = Block { txs, ..block };
            let b = ChainBlock::new(parent, state.state_root(), block, auth, &limits()).unwrap();
            state.apply_block(b.block()).unwrap();
            let cert = (h % CERT_EVERY == 0 || h == CHAIN_LEN).then(|| certify(&f, h, b.id()));
            parent = b.id();
            chain.roots.push(state.state_root());
            chain.certs.push(cert);
            chain.blocks.push(b);
        }
        assert!(state.accounts.len() as u64 > TRADERS, "the workload created accounts");
        chain
    })
}

/// The store configuration of every test store: the simulations', without automatic snapshots
/// (the tests take them where they want them).
pub fn store_config() -> StoreConfig {
    StoreConfig { snapshot_every: 0, ..sim_store_config() }
}

/// Opens (or reopens) the store in `dir`.
pub fn open_store(dir: &Path) -> Store {
    Store::open(dir, &sim_genesis(), store_config()).unwrap().0
}

/// A serving node: the chain executed up to `upto` into a store with its certificate log (in
/// one data dir, as a full node keeps them), snapshots taken at `snapshots`.
#[derive(Debug)]
pub struct Source {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub certs: CertLog,
}

impl Source {
    pub fn new(upto: u64, snapshots: &[u64]) -> Source {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_store(dir.path());
        let mut certs = CertLog::open(dir.path()).unwrap();
        let c = chain();
        for h in 1..=upto {
            execute(&mut store, c.block(h)).unwrap();
            certs.append(h, c.certs[(h - 1) as usize].as_deref()).unwrap();
            if snapshots.contains(&h) {
                store.commit().unwrap();
                certs.commit().unwrap();
                let meta = store.snapshot_now().unwrap().unwrap();
                assert_eq!((meta.height, meta.root), (h, c.roots[h as usize]));
            }
        }
        store.commit().unwrap();
        certs.commit().unwrap();
        assert_eq!(store.state().state_root(), c.roots[upto as usize]);
        Source { dir, store, certs }
    }

    /// The certified range answer from `from` (what the node's server offers as an anchor).
    pub fn anchor(&self, from: u64) -> Option<Vec<u8>> {
        serve_range(&self.store, &self.certs, &limits(), from, from, MAX_ANCHOR_BYTES)
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.store.snapshot_dir()
    }

    pub fn snapshot_path(&self, height: u64) -> PathBuf {
        bastion_storage::snapshot::list_in(&self.snapshot_dir())
            .unwrap()
            .into_iter()
            .find(|(h, _)| *h == height)
            .unwrap()
            .1
    }

    /// The image of the snapshot at `height` (its payload, as the server reads it).
    pub fn image(&self, height: u64) -> Vec<u8> {
        bastion_storage::Snapshot::open(&self.snapshot_path(height), IMAGE_LAYOUT).unwrap().payload().to_vec()
    }
}

/// The test servers' configuration: 1 KiB chunks, no rate limit to speak of.
pub fn serve_config() -> ServeConfig {
    ServeConfig { chunk_bytes: CHUNK, ..ServeConfig::default() }
}

/// A peer: the answer to a request's bytes, `None` when it gives none (the network's
/// "unavailable").
pub type Responder<'a> = Box<dyn FnMut(&[u8]) -> Option<Vec<u8>> + 'a>;

/// An honest peer serving `source`'s snapshots.
pub fn honest(source: &Source) -> Responder<'_> {
    honest_with(source, |_| true)
}

/// An honest peer serving `source`'s snapshots whose anchor starts at a height `offer` accepts
/// (its logs lack the others: it cannot offer those snapshots).
pub fn honest_with<'a>(source: &'a Source, offer: impl Fn(u64) -> bool + 'a) -> Responder<'a> {
    serving(&source.snapshot_dir(), serve_config(), move |h| if offer(h) { source.anchor(h) } else { None })
}

/// An honest peer serving the snapshots in `snapshot_dir` cut as `cfg` says, with the certified
/// range answers `anchor(h)` (starting at height `h`) as their anchors.
pub fn serving<'a>(
    snapshot_dir: &Path,
    cfg: ServeConfig,
    anchor: impl Fn(u64) -> Option<Vec<u8>> + 'a,
) -> Responder<'a> {
    let server = Server::new(snapshot_dir, cfg);
    Box::new(move |req| server.answer(ME, req, &anchor))
}

/// An honest peer answering through `server` (kept by the caller, for its counters).
pub fn honest_on<'a>(server: &'a Server, source: &'a Source) -> Responder<'a> {
    Box::new(move |req| server.answer(ME, req, &|h| source.anchor(h)))
}

/// Wraps a peer's answers with `alter`.
pub fn altered<'a>(mut inner: Responder<'a>, mut alter: impl FnMut(Answer) -> Answer + 'a) -> Responder<'a> {
    Box::new(move |req| {
        let bytes = inner(req)?;
        Some(alter(Answer::decode(&bytes).unwrap()).encode())
    })
}

/// A peer whose chunks have one byte flipped.
pub fn corrupt_chunks(inner: Responder<'_>) -> Responder<'_> {
    altered(inner, |a| match a {
        Answer::Chunk { height, index, mut bytes } => {
            let i = bytes.len() / 2;
            bytes[i] ^= 0x40;
            Answer::Chunk { height, index, bytes }
        }
        other => other,
    })
}

/// A peer whose manifest names another root than the one its anchor certifies.
pub fn wrong_root(inner: Responder<'_>) -> Responder<'_> {
    altered(inner, |a| match a {
        Answer::Manifest { mut manifest, anchor } => {
            manifest.root[0] ^= 1;
            Answer::Manifest { manifest, anchor }
        }
        other => other,
    })
}

/// An image of the state at the snapshot `image` holds, with one record changed behind the
/// commitment's back: it decodes, its header and lanes still carry the certified root, only the
/// root recomputed from its records differs.
pub fn lying_image(image: &[u8]) -> Vec<u8> {
    let mut state = State::from_image_bytes(image).unwrap();
    let root = state.state_root();
    state.fees += 1_000_000;
    let lie = state.to_image_bytes().unwrap().to_vec();
    let decoded = State::from_image_bytes(&lie).expect("the lie decodes");
    assert_eq!(decoded.state_root(), root, "the lie carries the certified root in its lanes");
    assert_ne!(decoded.recompute_root(), root, "the lie's records build another root");
    lie
}

/// A peer that serves the manifest of `lie` (chunk hashes consistent with it) under the true
/// root and the true anchor of `height`, and `lie`'s chunks: its offer verifies, every chunk
/// matches, only the rebuilt state betrays it.
pub fn liar(inner: Responder<'_>, height: u64, lie: Vec<u8>) -> Responder<'_> {
    let mut inner = inner;
    Box::new(move |req| match Request::decode(req).ok()? {
        Request::Manifest { .. } => {
            let bytes = inner(req)?;
            match Answer::decode(&bytes).unwrap() {
                Answer::Manifest { manifest, anchor } if manifest.height == height => {
                    let m = Manifest::of(height, manifest.root, manifest.layout, &lie, CHUNK);
                    Some(Answer::Manifest { manifest: m, anchor }.encode())
                }
                other => Some(other.encode()),
            }
        }
        Request::Chunk { height: h, index } if h == height => {
            let m = Manifest::of(height, [0; 32], IMAGE_LAYOUT, &lie, CHUNK);
            let answer = match m.range(index) {
                Some(r) => Answer::Chunk { height, index, bytes: lie[r].to_vec() },
                None => Answer::NoSnapshot { newest: Some(height) },
            };
            Some(answer.encode())
        }
        Request::Chunk { .. } => inner(req),
    })
}

/// What the syncer did on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Sent { peer: String, request: Request },
    Penalized { peer: String, why: String },
}

/// What a [`Loss`] did to the messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LossStats {
    /// Requests dropped on the way to the peer (it never saw them).
    pub requests_dropped: u64,
    /// Replies dropped on the way back.
    pub replies_dropped: u64,
    /// Replies delivered after `Loss::late_ms` (past the syncer's request timeout).
    pub replies_late: u64,
    /// Replies delivered twice.
    pub replies_duplicated: u64,
    /// Replies delivered in time.
    pub replies_on_time: u64,
    /// Round trips delivered because the peer's path had lost `max_lost_in_a_row` in a row.
    pub forced: u64,
}

/// How a lossy [`Net`] treats each request's round trip, drawn from a ChaCha RNG seeded by the
/// test: dropped on the way there or back, delivered late, or delivered after a random delay
/// (so replies overtake each other), sometimes twice. The same seed draws the same fate for the
/// n-th request; which request is the n-th depends on the syncer's wall-clock timing.
#[derive(Clone, Debug)]
pub struct Loss {
    rng: ChaCha8Rng,
    /// Percent of requests dropped.
    pub drop_request_pct: u32,
    /// Percent of replies dropped.
    pub drop_reply_pct: u32,
    /// Percent of replies delivered late, after a delay drawn from `late_ms`.
    pub late_pct: u32,
    /// The delay of a late reply, ms (a range; meant to exceed the syncer's request timeout).
    pub late_ms: (u64, u64),
    /// The delay of any other reply, ms (a range).
    pub delay_ms: (u64, u64),
    /// Percent of replies delivered a second time, up to `delay_ms.1` later.
    pub duplicate_pct: u32,
    /// Most round trips lost (dropped or late) in a row on one peer's path: the next one is
    /// delivered in time (fair loss, so that a retried request gets through).
    pub max_lost_in_a_row: u32,
    lost_in_a_row: BTreeMap<String, u32>,
    /// What it did.
    pub stats: LossStats,
}

/// The fate of one round trip: `None` lost, else the reply's delays (a second one: duplicated).
type Fate = Option<(Duration, Option<Duration>)>;

/// A reply on its way: (request id, peer, bytes or why none).
type Reply = (u64, String, Result<Vec<u8>, String>);

impl Loss {
    /// 8% of requests and 8% of replies dropped, 4% late (150-300 ms), the rest after 1-30 ms,
    /// 5% duplicated, at most one round trip in a row lost per peer.
    pub fn new(seed: u64) -> Loss {
        Loss {
            rng: ChaCha8Rng::seed_from_u64(seed),
            drop_request_pct: 8,
            drop_reply_pct: 8,
            late_pct: 4,
            late_ms: (150, 300),
            delay_ms: (1, 30),
            duplicate_pct: 5,
            max_lost_in_a_row: 1,
            lost_in_a_row: BTreeMap::new(),
            stats: LossStats::default(),
        }
    }

    fn ms(&mut self, (lo, hi): (u64, u64)) -> Duration {
        Duration::from_millis(self.rng.random_range(lo..=hi.max(lo)))
    }

    /// Draws the fate of a request to `peer` (every draw made whatever the outcome, so one
    /// request's fate does not shift the next one's draws). `reply` is whether the peer
    /// answers at all (it is asked only when the request arrives).
    fn fate(&mut self, peer: &str) -> (bool, Fate) {
        let pct = |rng: &mut ChaCha8Rng| rng.random_range(0..100u32);
        let (req, rep, late, dup) =
            (pct(&mut self.rng), pct(&mut self.rng), pct(&mut self.rng), pct(&mut self.rng));
        let (delay, late_delay, dup_delay) =
            (self.ms(self.delay_ms), self.ms(self.late_ms), self.ms(self.delay_ms));
        let lost = self.lost_in_a_row.entry(peer.to_string()).or_default();
        let forced = *lost >= self.max_lost_in_a_row;
        let on_time = Some((delay, (dup < self.duplicate_pct).then_some(delay + dup_delay)));
        let (arrives, fate) = if forced {
            self.stats.forced += 1;
            (true, on_time)
        } else if req < self.drop_request_pct {
            self.stats.requests_dropped += 1;
            (false, None)
        } else if rep < self.drop_reply_pct {
            self.stats.replies_dropped += 1;
            (true, None)
        } else if late < self.late_pct {
            self.stats.replies_late += 1;
            (true, Some((late_delay, None)))
        } else {
            (true, on_time)
        };
        let in_time = fate.is_some_and(|(d, _)| d < Duration::from_millis(self.late_ms.0));
        if in_time {
            self.stats.replies_on_time += 1;
            self.stats.replies_duplicated += u64::from(fate.is_some_and(|(_, dup)| dup.is_some()));
            *lost = 0;
        } else {
            *lost += 1;
        }
        (arrives, fate)
    }
}

/// The in-memory network: peers' responders, replies queued in order (or, with a [`Loss`],
/// by their delivery time).
pub struct Net<'a> {
    responders: BTreeMap<String, Responder<'a>>,
    /// The peers `peers()` returns now.
    pub active: Vec<String>,
    /// Replies by (delivery time, sequence).
    queue: BTreeMap<(Instant, u64), Reply>,
    sequence: u64,
    next_id: u64,
    /// Drops, delays, reorders and duplicates replies (`None`: each at once, in order).
    pub loss: Option<Loss>,
    pub events: Vec<Event>,
    /// When the key is penalized, the values join the network.
    pub join_on_penalty: BTreeMap<String, Vec<String>>,
    /// Sets the flag once this many chunk answers were delivered.
    pub stop_after_chunks: Option<(u32, &'a AtomicBool)>,
    /// Sets the flag once this many answers (of any kind) were delivered.
    pub stop_after_answers: Option<(u32, &'a AtomicBool)>,
    pub chunks_delivered: u32,
    pub answers_delivered: u32,
    /// A sync still running then is a failure (a hang), not a slow test.
    pub deadline: Instant,
}

impl std::fmt::Debug for Net<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("active", &self.active).field("events", &self.events.len()).finish()
    }
}

impl<'a> Net<'a> {
    pub fn new() -> Net<'a> {
        Net {
            responders: BTreeMap::new(),
            active: Vec::new(),
            queue: BTreeMap::new(),
            sequence: 0,
            next_id: 1,
            loss: None,
            events: Vec::new(),
            join_on_penalty: BTreeMap::new(),
            stop_after_chunks: None,
            stop_after_answers: None,
            chunks_delivered: 0,
            answers_delivered: 0,
            deadline: Instant::now() + Duration::from_secs(60),
        }
    }

    /// Adds a peer, connected now.
    pub fn peer(mut self, name: &str, r: Responder<'a>) -> Net<'a> {
        self.responders.insert(name.to_string(), r);
        self.active.push(name.to_string());
        self
    }

    /// Loses, delays, reorders and duplicates messages as `loss` draws.
    pub fn lossy(mut self, loss: Loss) -> Net<'a> {
        self.loss = Some(loss);
        self
    }

    fn enqueue(&mut self, at: Instant, reply: Reply) {
        self.sequence += 1;
        self.queue.insert((at, self.sequence), reply);
    }

    /// Adds a peer that is not connected yet.
    pub fn later(mut self, name: &str, r: Responder<'a>) -> Net<'a> {
        self.responders.insert(name.to_string(), r);
        self
    }

    pub fn penalized(&self) -> BTreeMap<String, String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Penalized { peer, why } => Some((peer.clone(), why.clone())),
                Event::Sent { .. } => None,
            })
            .collect()
    }

    /// The chunk requests sent to `peer`, in order, and the position of each in the event log.
    pub fn chunk_requests(&self, peer: &str) -> Vec<(usize, u32)> {
        self.events
            .iter()
            .enumerate()
            .filter_map(|(at, e)| match e {
                Event::Sent { peer: p, request: Request::Chunk { index, .. } } if p == peer => {
                    Some((at, *index))
                }
                _ => None,
            })
            .collect()
    }

    /// Where `peer` was penalized in the event log.
    pub fn penalized_at(&self, peer: &str) -> Option<usize> {
        self.events.iter().position(|e| matches!(e, Event::Penalized { peer: p, .. } if p == peer))
    }
}

impl Transport for Net<'_> {
    fn peers(&mut self) -> Vec<String> {
        self.active.clone()
    }

    fn send(&mut self, peer: &str, request: Vec<u8>) -> Result<u64, String> {
        if !self.active.iter().any(|p| p == peer) {
            return Err(format!("{peer} is not connected"));
        }
        let r = self.responders.get_mut(peer).ok_or("no such peer")?;
        self.events.push(Event::Sent { peer: peer.to_string(), request: Request::decode(&request).unwrap() });
        let id = self.next_id;
        self.next_id += 1;
        let (arrives, fate) = match &mut self.loss {
            Some(loss) => loss.fate(peer),
            None => (true, Some((Duration::ZERO, None))),
        };
        if !arrives {
            return Ok(id);
        }
        let reply = r(&request).ok_or_else(|| "unavailable".to_string());
        let now = Instant::now();
        if let Some((delay, again)) = fate {
            if let Some(again) = again {
                self.enqueue(now + again, (id, peer.to_string(), reply.clone()));
            }
            self.enqueue(now + delay, (id, peer.to_string(), reply));
        }
        Ok(id)
    }

    fn recv(&mut self, timeout: Duration) -> Option<(u64, String, Result<Vec<u8>, String>)> {
        assert!(
            Instant::now() < self.deadline,
            "the sync is still running at its deadline: {:?}",
            self.events.last()
        );
        let now = Instant::now();
        let Some(&(at, _)) = self.queue.keys().next() else {
            std::thread::sleep(timeout.min(Duration::from_millis(2)));
            return None;
        };
        if at > now {
            // The next reply is still on its way.
            std::thread::sleep(timeout.min(at - now));
            if Instant::now() < at {
                return None;
            }
        }
        let (_, reply) = self.queue.pop_first()?;
        self.answers_delivered += 1;
        if let Ok(bytes) = &reply.2
            && matches!(Answer::decode(bytes), Ok(Answer::Chunk { .. }))
        {
            self.chunks_delivered += 1;
        }
        if let Some((n, stop)) = self.stop_after_chunks
            && self.chunks_delivered >= n
        {
            stop.store(true, Ordering::SeqCst);
        }
        if let Some((n, stop)) = self.stop_after_answers
            && self.answers_delivered >= n
        {
            stop.store(true, Ordering::SeqCst);
        }
        Some(reply)
    }

    fn penalize(&mut self, peer: &str, why: &str) {
        self.events.push(Event::Penalized { peer: peer.to_string(), why: why.to_string() });
        for p in self.join_on_penalty.remove(peer).unwrap_or_default() {
            if !self.active.contains(&p) {
                self.active.push(p);
            }
        }
    }
}

/// Splitmix64: the campaigns' deterministic randomness.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// The chunk files of the target being fetched in `data_dir` (`<data_dir>/statesync/*/chunk-*`).
pub fn chunk_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(targets) = std::fs::read_dir(data_dir.join(bastion_statesync::chunks::SYNC_DIR)) else {
        return out;
    };
    for t in targets.flatten() {
        let Ok(files) = std::fs::read_dir(t.path()) else { continue };
        for f in files.flatten() {
            if f.file_name().to_str().is_some_and(|n| n.starts_with("chunk-") && !n.ends_with(".tmp")) {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}
