//! The three tiles (net, verify, admission), their configuration, and the running
//! [`Pipeline`].

use super::{DropReason, Mempool, Ring, TileStats, TxFrame, pin_current_thread};
use bastion_accel::{Outcome, SigItem, StageConfig, VerifyStage};
use bastion_net::packet::{decode, signing_message};
use bastion_net::{Frame, Ingress, IngressConfig, IngressStats};
use bastion_types::{AccountId, Tx, TxAuth};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Start-up calibration budget of `verifier = auto` (as `bastion sig` uses).
pub const CALIBRATION_BUDGET: Duration = Duration::from_millis(150);
/// Datagrams the net tile asks the ingress for per call.
const NET_BATCH: usize = 64;
/// How long the net tile waits for a datagram before checking for shutdown.
const NET_TIMEOUT: Duration = Duration::from_millis(10);
/// Frames the admission tile takes per iteration.
const ADMISSION_BATCH: usize = 256;
/// Time budget of one net or admission iteration's work; longer ones count as overruns.
const LOOP_BUDGET: Duration = Duration::from_millis(1);
/// Accounts the rate limiter remembers; the oldest is forgotten beyond this. Only accounts of
/// the committed state reach the limiter (a signer without one is refused first).
pub const RATE_ACCOUNTS_MAX: usize = 1 << 20;
/// How far above the signer's committed nonce admission accepts a nonce. A block may include
/// only the signer's next nonce, so a later one waits in the mempool for the ones before it;
/// this bounds what one account can park there.
pub const NONCE_AHEAD_MAX: u64 = 4096;

/// Which core each tile is pinned to (`None`: not pinned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinConfig {
    /// Core of the net tile.
    pub net: Option<usize>,
    /// Core of the verify tile.
    pub verify: Option<usize>,
    /// Core of the admission tile.
    pub admission: Option<usize>,
}

/// Configuration of the ingress pipeline.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The UDP ingress (bind address and receive backend).
    pub ingress: IngressConfig,
    /// The backend to open instead when `ingress.backend` cannot be opened (a kernel-bypass
    /// backend without its privileges, packages or NIC support); none: fail.
    pub ingress_fallback: Option<bastion_net::Backend>,
    /// The chain's genesis digest (part of every signed message).
    pub chain: [u8; 32],
    /// Frames each ring holds (default 16384).
    pub ring_frames: usize,
    /// Signatures verified per call of the verify stage (default 256).
    pub verify_batch: usize,
    /// Time budget of one verify call (default 5 ms).
    pub verify_budget: Duration,
    /// Signature verification: a backend, or `auto` (calibrated at start-up: the CPU backends
    /// and, where one opens, the GPU, each from the batch size where it wins). Default parallel.
    pub verifier: bastion_accel::Selection,
    /// Mempool slots (default 262144); the caller creates the [`Mempool`] with it.
    pub mempool_max: usize,
    /// Transactions per second per account; 0 is unlimited (default 1000).
    pub rate_per_account: u32,
    /// Token-bucket depth per account (default 2000).
    pub burst_per_account: u32,
    /// Recent signatures remembered to refuse duplicates (default 2^20).
    pub dedup_window: usize,
    /// Core pinning of the tiles.
    pub pin: PinConfig,
    /// Where the verify tile records what it found valid (so proposals carrying these
    /// transactions are not verified a second time).
    pub verified: Option<Arc<bastion_accel::VerifiedCache>>,
    /// Where the admission tile puts each admitted transaction that arrived over UDP or the
    /// API, for the public network to publish (bounded; a full ring drops the copy, counted in
    /// [`Outbound::dropped`]; the transaction itself stays in the mempool). `None`: no public
    /// network.
    pub outbound: Option<Arc<Outbound>>,
}

/// Admitted transactions on their way to the public network's `txs` topic.
#[derive(Debug)]
pub struct Outbound {
    /// The frames, oldest first.
    pub ring: Ring,
    /// Copies dropped because the ring was full.
    pub dropped: std::sync::atomic::AtomicU64,
}

impl Outbound {
    /// An outbound ring of `capacity` frames.
    pub fn new(capacity: usize) -> Outbound {
        Outbound { ring: Ring::new(capacity), dropped: std::sync::atomic::AtomicU64::new(0) }
    }
}

/// Puts transactions from the public network or the API into the pipeline's first ring, so
/// they pass the same signature check, admission rules and duplicate filter as UDP packets.
#[derive(Clone, Debug)]
pub struct Injector {
    ring: Arc<Ring>,
    stats: Arc<TileStats>,
}

impl Injector {
    /// Injects one packet: `publish` if the admission tile should hand it to the public network
    /// (the API's), not if it came from there. False when the envelope is malformed (counted as
    /// a net-tile drop) or the ring is full (counted as back-pressure).
    pub fn inject(&self, packet: &[u8], publish: bool) -> bool {
        self.stats.add_in(1);
        let Some(frame) = decode(packet).ok().and_then(|_| TxFrame::from_slice(packet)) else {
            self.stats.add_drop(DropReason::Malformed, 1);
            return false;
        };
        let frame = if publish { frame } else { frame.delivered_by_network() };
        match self.ring.push(frame) {
            Ok(()) => {
                self.stats.add_out(1);
                true
            }
            Err(_) => {
                self.stats.add_drop(DropReason::Backpressure, 1);
                false
            }
        }
    }
}

impl PipelineConfig {
    /// The defaults for `ingress` on chain `chain`.
    pub fn new(ingress: IngressConfig, chain: [u8; 32]) -> PipelineConfig {
        PipelineConfig {
            ingress,
            ingress_fallback: None,
            chain,
            ring_frames: 16384,
            verify_batch: 256,
            verify_budget: Duration::from_millis(5),
            verifier: bastion_accel::Selection::Fixed(bastion_accel::Backend::Parallel),
            mempool_max: 262_144,
            rate_per_account: 1000,
            burst_per_account: 2000,
            dedup_window: 1 << 20,
            pin: PinConfig::default(),
            verified: None,
            outbound: None,
        }
    }
}

/// The committed state's view of an account: its last nonce, or `None` when the account does
/// not exist (a block may not include its transactions).
pub type CommittedNonce = Arc<dyn Fn(AccountId) -> Option<u64> + Send + Sync>;

/// The running pipeline: three threads and the rings between them. Dropping it stops them.
pub struct Pipeline {
    /// The address the ingress is bound to.
    pub local_addr: SocketAddr,
    /// The receive backend that opened (the configured one, or its fallback).
    pub backend: bastion_net::Backend,
    stats: Vec<Arc<TileStats>>,
    rings: [(&'static str, Arc<Ring>); 2],
    ingress_stats: Arc<Mutex<IngressStats>>,
    stop: Arc<AtomicBool>,
    threads: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("local_addr", &self.local_addr)
            .field("rings", &self.rings)
            .field("threads", &self.threads.iter().map(|(n, _)| *n).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A handle that injects transactions from the public network or the API into ring A
    /// (counted by the net tile's counters, like datagrams).
    pub fn injector(&self) -> Injector {
        Injector { ring: self.rings[0].1.clone(), stats: self.stats[0].clone() }
    }

    /// Counters of the tiles, in pipeline order (net, verify, admission).
    pub fn stats(&self) -> &[Arc<TileStats>] {
        &self.stats
    }

    /// Each ring's name, length, capacity and high-water mark, in pipeline order.
    pub fn ring_depths(&self) -> [(&'static str, usize, usize, usize); 2] {
        self.rings.each_ref().map(|(name, r)| (*name, r.len(), r.capacity(), r.high_water()))
    }

    /// The ingress's counters, as of the net tile's last non-empty receive.
    pub fn ingress_stats(&self) -> IngressStats {
        *self.ingress_stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tiles whose thread has exited although the pipeline was not stopped (a panic or an
    /// error; [`stop`](Pipeline::stop) reports which).
    pub fn exited(&self) -> Vec<&'static str> {
        self.threads.iter().filter(|(_, h)| h.is_finished()).map(|(n, _)| *n).collect()
    }

    /// Stops every tile and waits for it; reports each tile that panicked or failed.
    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        for (name, handle) in self.threads.drain(..) {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("tile {name}: {e}")),
                Err(panic) => errors.push(format!("tile {name} panicked: {}", panic_message(&*panic))),
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("ingress pipeline: {e}");
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Opens the ingress and starts the net, verify and admission tiles (pinned where configured),
/// admitting into `mempool`; `committed` gives each account's committed nonce (transactions of
/// signers without an account, replays at or below the nonce and nonces more than
/// [`NONCE_AHEAD_MAX`] above it are refused). Fails if the ingress, the verifier or a pin cannot be set up.
///
/// With `verifier = auto` the start-up calibration runs here, within [`CALIBRATION_BUDGET`] for
/// the CPU backends (a GPU adds as much again, and its kernel's first NVRTC compilation, about a
/// minute, cached per architecture afterwards).
pub fn start(
    cfg: PipelineConfig,
    mempool: Arc<Mutex<Mempool>>,
    committed: CommittedNonce,
) -> Result<Pipeline, String> {
    if cfg.ring_frames == 0 || cfg.verify_batch == 0 || cfg.dedup_window == 0 {
        return Err("ring_frames, verify_batch and dedup_window must be at least 1".into());
    }
    let ingress = match (bastion_net::open(&cfg.ingress), cfg.ingress_fallback) {
        (Ok(i), _) => i,
        (Err(e), Some(fallback)) if fallback != cfg.ingress.backend => {
            tracing::warn!(
                backend = %cfg.ingress.backend,
                %fallback,
                "ingress backend unavailable ({e}); falling back, as ingress.fallback allows"
            );
            let mut alt = cfg.ingress.clone();
            alt.backend = fallback;
            bastion_net::open(&alt).map_err(|e2| format!("ingress: {e}; fallback {fallback}: {e2}"))?
        }
        (Err(e), _) => return Err(format!("ingress: {e}")),
    };
    let local_addr = ingress.local_addr().map_err(|e| format!("ingress local address: {e}"))?;
    let backend = ingress.backend();
    let verifier: Box<dyn bastion_accel::Verifier> = match cfg.verifier {
        bastion_accel::Selection::Auto => {
            let c = bastion_accel::calibrate(CALIBRATION_BUDGET);
            let never = |n: usize| if n == usize::MAX { "never".to_owned() } else { n.to_string() };
            tracing::info!(
                batch_from = %never(c.batch_from),
                parallel_from = %never(c.parallel_from),
                gpu_from = %never(c.gpu_from),
                gpu = %c.gpu_info().map_or_else(|| c.gpu_unavailable.clone().unwrap_or_default(), ToString::to_string),
                "verifier auto: calibrated"
            );
            Box::new(bastion_accel::Auto::new(&c))
        }
        bastion_accel::Selection::Fixed(b) => {
            bastion_accel::verifier(b).map_err(|e| format!("verifier: {e}"))?
        }
    };
    let stage = VerifyStage::new(
        verifier,
        StageConfig { batch_size_max: cfg.verify_batch, budget: cfg.verify_budget },
    )
    .map_err(|e| format!("verify stage: {e}"))?;

    let ring_a = Arc::new(Ring::new(cfg.ring_frames));
    let ring_b = Arc::new(Ring::new(cfg.ring_frames));
    let net_stats = Arc::new(TileStats::new("net"));
    let verify_stats = Arc::new(TileStats::new("verify"));
    let admission_stats = Arc::new(TileStats::new("admission"));
    let ingress_stats = Arc::new(Mutex::new(IngressStats::default()));
    let stop = Arc::new(AtomicBool::new(false));

    let mut pipeline = Pipeline {
        local_addr,
        backend,
        stats: vec![net_stats.clone(), verify_stats.clone(), admission_stats.clone()],
        rings: [("net_to_verify", ring_a.clone()), ("verify_to_admission", ring_b.clone())],
        ingress_stats: ingress_stats.clone(),
        stop: stop.clone(),
        threads: Vec::new(),
    };

    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let net = NetTile { ingress, out: ring_a.clone(), stats: net_stats, shared: ingress_stats };
    spawn(&mut pipeline, "net", cfg.pin.net, &ready_tx, move |stop| net.run(stop))?;
    let verify = VerifyTile {
        stage,
        chain: cfg.chain,
        batch: cfg.verify_batch,
        input: ring_a,
        out: ring_b.clone(),
        stats: verify_stats,
        verified: cfg.verified.clone(),
    };
    spawn(&mut pipeline, "verify", cfg.pin.verify, &ready_tx, move |stop| verify.run(stop))?;
    let admission = AdmissionTile {
        input: ring_b,
        stats: admission_stats,
        mempool,
        committed,
        dedup: Dedup::new(cfg.dedup_window),
        limiter: RateLimiter::new(cfg.rate_per_account, cfg.burst_per_account, RATE_ACCOUNTS_MAX),
        outbound: cfg.outbound.clone(),
    };
    spawn(&mut pipeline, "admission", cfg.pin.admission, &ready_tx, move |stop| admission.run(stop))?;
    drop(ready_tx);

    // Each tile reports once it is pinned (or failed to be); a failure stops the others.
    for _ in 0..3 {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = pipeline.shutdown();
                return Err(e);
            }
            Err(_) => {
                let e = pipeline.shutdown().err().unwrap_or_else(|| "a tile exited before starting".into());
                return Err(e);
            }
        }
    }
    Ok(pipeline)
}

/// Spawns a named tile thread that pins itself, reports on `ready`, then runs `body`.
fn spawn(
    pipeline: &mut Pipeline,
    name: &'static str,
    core: Option<usize>,
    ready: &mpsc::Sender<Result<(), String>>,
    body: impl FnOnce(&AtomicBool) -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    let stop = pipeline.stop.clone();
    let ready = ready.clone();
    let spawned = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        if let Some(core) = core
            && let Err(e) = pin_current_thread(core)
        {
            let e = format!("tile {name}: {e}");
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
        let _ = ready.send(Ok(()));
        drop(ready);
        body(&stop)
    });
    match spawned {
        Ok(handle) => {
            pipeline.threads.push((name, handle));
            Ok(())
        }
        Err(e) => {
            let _ = pipeline.shutdown();
            Err(format!("spawn tile {name}: {e}"))
        }
    }
}

/// Backs off when a tile finds no work: a few yields, then short sleeps.
struct Idle {
    empty: u32,
}

impl Idle {
    fn wait(&mut self) {
        self.empty = self.empty.saturating_add(1);
        if self.empty < 16 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn reset(&mut self) {
        self.empty = 0;
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Receives datagrams, checks the envelope's shape, pushes frames into ring A.
struct NetTile {
    ingress: Box<dyn Ingress>,
    out: Arc<Ring>,
    stats: Arc<TileStats>,
    shared: Arc<Mutex<IngressStats>>,
}

impl NetTile {
    fn run(mut self, stop: &AtomicBool) -> Result<(), String> {
        let mut frames = vec![Frame::empty(); NET_BATCH];
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let n = match self.ingress.recv(&mut frames, NET_TIMEOUT) {
                Ok(n) => n,
                Err(e) => {
                    // Counted by the ingress; back off so a persistent error does not spin.
                    tracing::warn!("ingress receive: {e}");
                    std::thread::sleep(NET_TIMEOUT);
                    0
                }
            };
            if n == 0 {
                self.stats.add_time(0, nanos(start.elapsed()));
                continue;
            }
            let work = Instant::now();
            self.stats.add_in(n as u64);
            for frame in frames.iter().take(n) {
                let payload = frame.payload();
                let Some(tx_frame) = decode(payload).ok().and_then(|_| TxFrame::from_slice(payload)) else {
                    self.stats.add_drop(DropReason::Malformed, 1);
                    continue;
                };
                match self.out.push(tx_frame) {
                    Ok(()) => self.stats.add_out(1),
                    Err(_) => self.stats.add_drop(DropReason::Backpressure, 1),
                }
            }
            *self.shared.lock().unwrap_or_else(PoisonError::into_inner) = self.ingress.stats();
            let busy = work.elapsed();
            if busy > LOOP_BUDGET {
                self.stats.add_overrun();
            }
            self.stats.add_time(nanos(busy), nanos(start.elapsed()));
        }
        Ok(())
    }
}

/// Verifies signatures of frames from ring A in bounded batches; valid ones go to ring B.
struct VerifyTile {
    stage: VerifyStage,
    chain: [u8; 32],
    batch: usize,
    input: Arc<Ring>,
    out: Arc<Ring>,
    stats: Arc<TileStats>,
    verified: Option<Arc<bastion_accel::VerifiedCache>>,
}

impl VerifyTile {
    fn run(mut self, stop: &AtomicBool) -> Result<(), String> {
        let mut batch: Vec<TxFrame> = Vec::with_capacity(self.batch);
        let mut messages: Vec<Vec<u8>> = (0..self.batch).map(|_| Vec::with_capacity(2048)).collect();
        let mut index: Vec<usize> = Vec::with_capacity(self.batch);
        let mut outcomes = Vec::with_capacity(self.batch);
        let mut keys: Vec<bastion_accel::CacheKey> = Vec::with_capacity(self.batch);
        let mut known: Vec<bool> = Vec::with_capacity(self.batch);
        let mut idle = Idle { empty: 0 };
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            batch.clear();
            while batch.len() < self.batch {
                match self.input.pop() {
                    Some(f) => batch.push(f),
                    None => break,
                }
            }
            if batch.is_empty() {
                idle.wait();
                self.stats.add_time(0, nanos(start.elapsed()));
                continue;
            }
            idle.reset();
            self.stats.add_in(batch.len() as u64);
            index.clear();
            let over_before = self.stage.counters().over_budget;
            {
                let mut items: Vec<SigItem<'_>> = Vec::with_capacity(batch.len());
                for ((i, frame), message) in batch.iter().enumerate().zip(messages.iter_mut()) {
                    let Ok(p) = decode(frame.payload()) else {
                        self.stats.add_drop(DropReason::Malformed, 1);
                        continue;
                    };
                    signing_message(&self.chain, p.body, message);
                    items.push(SigItem { public_key: p.public_key, signature: p.signature, message });
                    index.push(i);
                }
                // Signatures already verified (a gossiped transaction, checked by the public
                // network's handler before it was forwarded) are not verified again.
                known.clear();
                if let Some(cache) = &self.verified {
                    keys.clear();
                    keys.extend(items.iter().map(bastion_accel::VerifiedCache::key));
                    cache.lookup(&keys, &mut known);
                }
                if known.iter().any(|k| *k) {
                    let todo: Vec<SigItem<'_>> =
                        items.iter().zip(&known).filter(|(_, k)| !**k).map(|(item, _)| *item).collect();
                    let mut found = Vec::with_capacity(todo.len());
                    self.stage.process(&todo, &mut found);
                    let mut found = found.into_iter();
                    outcomes.clear();
                    outcomes.extend(
                        known
                            .iter()
                            .map(|k| if *k { Outcome::Valid } else { found.next().unwrap_or(Outcome::Shed) }),
                    );
                } else {
                    self.stage.process(&items, &mut outcomes);
                }
                if let Some(cache) = &self.verified {
                    let fresh: Vec<bastion_accel::CacheKey> = keys
                        .iter()
                        .zip(&outcomes)
                        .zip(known.iter().copied().chain(std::iter::repeat(false)))
                        .filter(|((_, o), k)| **o == Outcome::Valid && !*k)
                        .map(|((key, _), _)| *key)
                        .collect();
                    cache.insert_verified(&fresh);
                }
            }
            if self.stage.counters().over_budget > over_before {
                self.stats.add_overrun();
            }
            for (&i, outcome) in index.iter().zip(&outcomes) {
                match outcome {
                    Outcome::Valid => match self.out.push(batch[i]) {
                        Ok(()) => self.stats.add_out(1),
                        Err(_) => self.stats.add_drop(DropReason::Backpressure, 1),
                    },
                    Outcome::Invalid => self.stats.add_drop(DropReason::BadSignature, 1),
                    Outcome::Shed => self.stats.add_drop(DropReason::Shed, 1),
                }
            }
            let busy = nanos(start.elapsed());
            self.stats.add_time(busy, busy);
        }
        Ok(())
    }
}

/// Recently admitted signatures (16-byte BLAKE3 digests), forgetting the oldest beyond the
/// window.
struct Dedup {
    set: HashSet<u128>,
    order: VecDeque<u128>,
    window: usize,
}

impl Dedup {
    fn new(window: usize) -> Dedup {
        Dedup { set: HashSet::new(), order: VecDeque::new(), window: window.max(1) }
    }

    fn key(signature: &[u8; 64]) -> u128 {
        let h = blake3::hash(signature);
        let mut k = [0u8; 16];
        k.copy_from_slice(&h.as_bytes()[..16]);
        u128::from_le_bytes(k)
    }

    fn contains(&self, key: u128) -> bool {
        self.set.contains(&key)
    }

    fn insert(&mut self, key: u128) {
        if !self.set.insert(key) {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.window {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// A token bucket per account, remembering at most `accounts_max` accounts
/// ([`RATE_ACCOUNTS_MAX`] in the pipeline; the oldest is forgotten, which refills its bucket).
struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<AccountId, (f64, Instant)>,
    order: VecDeque<AccountId>,
    accounts_max: usize,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32, accounts_max: usize) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
            order: VecDeque::new(),
            accounts_max: accounts_max.max(1),
        }
    }

    /// Takes one token from `account`'s bucket; false when it is empty.
    fn allow(&mut self, account: AccountId, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = match self.buckets.get_mut(&account) {
            Some(b) => b,
            None => {
                if self.buckets.len() >= self.accounts_max
                    && let Some(old) = self.order.pop_front()
                {
                    self.buckets.remove(&old);
                }
                self.order.push_back(account);
                self.buckets.entry(account).or_insert((burst, now))
            }
        };
        let elapsed = now.saturating_duration_since(bucket.1).as_secs_f64();
        bucket.0 = (bucket.0 + elapsed * rate).min(burst);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Decodes bodies and applies the admission rules, then inserts into the mempool.
struct AdmissionTile {
    input: Arc<Ring>,
    stats: Arc<TileStats>,
    mempool: Arc<Mutex<Mempool>>,
    committed: CommittedNonce,
    dedup: Dedup,
    limiter: RateLimiter,
    outbound: Option<Arc<Outbound>>,
}

impl AdmissionTile {
    fn run(mut self, stop: &AtomicBool) -> Result<(), String> {
        let mut admitted: Vec<(Tx, TxAuth, u128, Option<TxFrame>)> = Vec::with_capacity(ADMISSION_BATCH);
        let mut idle = Idle { empty: 0 };
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let mut taken = 0usize;
            admitted.clear();
            while taken < ADMISSION_BATCH {
                let Some(frame) = self.input.pop() else { break };
                taken += 1;
                self.stats.add_in(1);
                match self.admit(&frame, start) {
                    Ok((tx, auth, key)) => {
                        let publish = (frame.publish() && self.outbound.is_some()).then_some(frame);
                        admitted.push((tx, auth, key, publish));
                    }
                    Err(reason) => self.stats.add_drop(reason, 1),
                }
            }
            if taken == 0 {
                idle.wait();
                self.stats.add_time(0, nanos(start.elapsed()));
                continue;
            }
            idle.reset();
            if !admitted.is_empty() {
                let mut pool = self.mempool.lock().unwrap_or_else(PoisonError::into_inner);
                for (tx, auth, key, publish) in admitted.drain(..) {
                    match pool.insert(tx, auth) {
                        Ok(()) => {
                            self.dedup.insert(key);
                            self.stats.add_out(1);
                            if let (Some(frame), Some(out)) = (publish, &self.outbound)
                                && out.ring.push(frame).is_err()
                            {
                                out.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(reason) => self.stats.add_drop(reason, 1),
                    }
                }
            }
            let busy = start.elapsed();
            if busy > LOOP_BUDGET {
                self.stats.add_overrun();
            }
            self.stats.add_time(nanos(busy), nanos(busy));
        }
        Ok(())
    }

    /// The checks before the mempool: body, duplicate signature, account, nonce, rate. The
    /// account check comes before the rate limiter, so keys without an account never take a
    /// bucket (they cannot evict the buckets of real accounts).
    fn admit(&mut self, frame: &TxFrame, now: Instant) -> Result<(Tx, TxAuth, u128), DropReason> {
        let p = decode(frame.payload()).map_err(|_| DropReason::Malformed)?;
        let tx = bastion_types::tx::tx_of(p.public_key, p.body).map_err(|_| DropReason::BadBody)?;
        let key = Dedup::key(p.signature);
        if self.dedup.contains(key) {
            return Err(DropReason::Duplicate);
        }
        let last = (self.committed)(tx.signer).ok_or(DropReason::UnknownAccount)?;
        if tx.nonce <= last {
            return Err(DropReason::Replay);
        }
        if tx.nonce - last > NONCE_AHEAD_MAX {
            return Err(DropReason::NonceAhead);
        }
        if !self.limiter.allow(tx.signer, now) {
            return Err(DropReason::RateLimited);
        }
        Ok((tx, TxAuth { public_key: *p.public_key, signature: *p.signature }, key))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::pipeline::{PinConfig, Pipeline, PipelineConfig, TileSnapshot, start};
    use bastion_client::Keypair;
    use bastion_net::Backend as NetBackend;
    use bastion_net::packet;
    use bastion_types::Action;
    use std::net::UdpSocket;

    const CHAIN: [u8; 32] = [7; 32];

    fn config(backend: NetBackend) -> PipelineConfig {
        let mut ingress = IngressConfig::new("127.0.0.1:0".parse().unwrap(), backend);
        ingress.recv_buffer_bytes = Some(4 << 20);
        PipelineConfig::new(ingress, CHAIN)
    }

    fn action(i: u64) -> Action {
        Action::SetMarginMode { portfolio: i.is_multiple_of(2) }
    }

    fn snaps(p: &Pipeline) -> [TileSnapshot; 3] {
        [p.stats()[0].snapshot(), p.stats()[1].snapshot(), p.stats()[2].snapshot()]
    }

    /// Every frame the net tile took in has left the last tile (passed on or dropped).
    fn drained(p: &Pipeline) -> bool {
        let [n, v, a] = snaps(p);
        p.ring_depths().iter().all(|d| d.1 == 0)
            && n.frames_in == n.frames_out + n.dropped_total()
            && v.frames_in == n.frames_out
            && v.frames_in == v.frames_out + v.dropped_total()
            && a.frames_in == v.frames_out
            && a.frames_in == a.frames_out + a.dropped_total()
    }

    fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        f()
    }

    /// Sends `datagrams` in chunks, waiting for the net tile to take each chunk in, so the
    /// kernel's receive buffer never overflows and every count is exact.
    fn send_paced(p: &Pipeline, datagrams: &[Vec<u8>], socket: &UdpSocket) {
        let base = p.stats()[0].snapshot().frames_in;
        let mut sent = 0u64;
        for chunk in datagrams.chunks(64) {
            for d in chunk {
                socket.send_to(d, p.local_addr).unwrap();
            }
            sent += chunk.len() as u64;
            let got = wait_until(Duration::from_secs(5), || p.stats()[0].snapshot().frames_in >= base + sent);
            assert!(got, "net tile took in {} of {sent}", p.stats()[0].snapshot().frames_in - base);
        }
    }

    fn non_canonical(k: &Keypair, nonce: u64) -> Vec<u8> {
        let canonical = bastion_types::tx::encode_body(nonce, &action(nonce));
        assert!(nonce < 128 && canonical[0] == nonce as u8);
        // The nonce as a padded two-byte varint: decodes to the same value, re-encodes shorter.
        let mut body = vec![0x80 | nonce as u8, 0x00];
        body.extend_from_slice(&canonical[1..]);
        assert_eq!(bastion_types::tx::decode_body(&body), Err(bastion_types::tx::BodyError::NotCanonical));
        let mut msg = Vec::new();
        packet::signing_message(&CHAIN, &body, &mut msg);
        let signature: [u8; 64] = ed25519_zebra::SigningKey::from(k.seed()).sign(&msg).into();
        let mut out = Vec::new();
        packet::encode(k.public(), &signature, &body, &mut out).unwrap();
        out
    }

    fn end_to_end(backend: NetBackend) {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        end_to_end_with(config(backend), &sender, start);
    }

    /// The end-to-end check for any backend: `open` starts the pipeline (inside a network
    /// namespace for the kernel-bypass backends), `sender` is the client's socket.
    fn end_to_end_with(
        mut cfg: PipelineConfig,
        sender: &UdpSocket,
        open: impl FnOnce(PipelineConfig, Arc<Mutex<Mempool>>, CommittedNonce) -> Result<Pipeline, String>,
    ) {
        let backend = cfg.ingress.backend;
        let traders: Vec<Keypair> = (0..300).map(|i| Keypair::derive("pipeline-e2e", i)).collect();
        let replayed = traders[0].account();
        let mempool = Arc::new(Mutex::new(Mempool::new(262_144)));
        // Trader 0 has committed nonce 3: its nonces 1..=3 are replays.
        let committed: CommittedNonce = Arc::new(move |a| Some(if a == replayed { 3 } else { 0 }));
        let cache = Arc::new(bastion_accel::VerifiedCache::new(1 << 16));
        cfg.verified = Some(cache.clone());
        let p = match open(cfg, mempool.clone(), committed) {
            Ok(p) => p,
            Err(e) if backend == NetBackend::IoUring && e.contains("io_uring") => {
                println!("skipping the io_uring end-to-end test: {e}");
                return;
            }
            Err(e) => panic!("start: {e}"),
        };
        let mut valid = Vec::new();
        for j in 0..2000u64 {
            let k = &traders[(j % 300) as usize];
            valid.push(k.sign(&CHAIN, j / 300 + 1, action(j)).packet().unwrap());
        }
        let malformed: Vec<Vec<u8>> =
            vec![vec![2, 0, 0], vec![1; 50], vec![1], vec![1; 97], vec![0xff; 300], vec![1; 96], vec![3; 10]];
        let bad_sig: Vec<Vec<u8>> = (0..20u64)
            .map(|i| {
                let mut d = traders[i as usize].sign(&CHAIN, 1000 + i, action(i)).packet().unwrap();
                d[1 + 32 + 10] ^= 0x01;
                d
            })
            .collect();
        let bad_body = vec![non_canonical(&traders[5], 100)];
        // Exact copies of admitted packets (none of trader 0, whose early nonces are replays).
        let dups: Vec<Vec<u8>> = valid.iter().skip(1).step_by(40).cloned().collect();
        assert_eq!(dups.len(), 50);

        send_paced(&p, &valid, sender);
        send_paced(&p, &malformed, sender);
        send_paced(&p, &bad_sig, sender);
        send_paced(&p, &bad_body, sender);
        send_paced(&p, &dups, sender);
        let total = (2000 + 7 + 20 + 1 + 50) as u64;
        assert!(wait_until(Duration::from_secs(5), || drained(&p)), "did not settle: {:?}", snaps(&p));

        let [n, v, a] = snaps(&p);
        assert_eq!(n.frames_in, total);
        assert_eq!(p.ingress_stats().received, total);
        assert_eq!(n.dropped(DropReason::Malformed), 7);
        assert_eq!(n.dropped_total(), 7, "{n:?}");
        assert_eq!(v.dropped(DropReason::BadSignature), 20);
        assert_eq!(v.dropped_total(), 20, "{v:?}");
        assert_eq!(a.dropped(DropReason::BadBody), 1);
        assert_eq!(a.dropped(DropReason::Duplicate), 50);
        assert_eq!(a.dropped(DropReason::Replay), 3);
        assert_eq!(a.dropped_total(), 54, "{a:?}");
        assert_eq!(a.frames_out, 1997);

        let mut pool = mempool.lock().unwrap();
        assert_eq!(pool.len(), 1997);
        let taken = pool.take(|a| Some(if a == replayed { 3 } else { 0 }), |_| None, usize::MAX);
        assert_eq!(taken.len(), 1997);
        assert_eq!(pool.stale_dropped(), 0);
        let mut expected: HashSet<(AccountId, u64)> = HashSet::new();
        for j in 0..2000u64 {
            let k = &traders[(j % 300) as usize];
            let nonce = j / 300 + 1;
            if !(k.account() == replayed && nonce <= 3) {
                expected.insert((k.account(), nonce));
            }
        }
        let got: HashSet<(AccountId, u64)> = taken.iter().map(|(t, _)| (t.signer, t.nonce)).collect();
        assert_eq!(got, expected);
        // The verify tile remembered exactly the valid signatures (the duplicates and the three
        // replays verified too: admission refused them later), so a proposal carrying these
        // transactions is not verified again; the bad ones are not in the cache.
        assert_eq!(cache.len(), 2000 + 1, "every distinct valid triple, the non-canonical body's included");
        let (mut body, mut msg, mut hit) = (Vec::new(), Vec::new(), Vec::new());
        for (tx, auth) in &taken {
            assert_eq!(bastion_types::account_of(&auth.public_key), tx.signer);
            bastion_client::signed_message(&CHAIN, tx, &mut body, &mut msg);
            let item = SigItem { public_key: &auth.public_key, signature: &auth.signature, message: &msg };
            cache.lookup(&[bastion_accel::VerifiedCache::key(&item)], &mut hit);
            assert_eq!(hit, vec![true], "a proposal's re-check finds what the ingress verified");
        }
        for d in &bad_sig {
            let pk: [u8; 32] = d[1..33].try_into().unwrap();
            let sig: [u8; 64] = d[33..97].try_into().unwrap();
            signing_message(&CHAIN, &d[97..], &mut msg);
            let item = SigItem { public_key: &pk, signature: &sig, message: &msg };
            cache.lookup(&[bastion_accel::VerifiedCache::key(&item)], &mut hit);
            assert_eq!(hit, vec![false], "an invalid signature is never remembered");
        }
        drop(pool);
        p.stop().unwrap();
    }

    /// A transaction the public network's check verified (its triple in the cache, as
    /// `GossipCheck` leaves it) and then injected is found in the cache by the verify tile,
    /// not verified again, and admitted; a fresh one is verified and remembered. Injected
    /// frames from the network are not put on the outbound ring; the API's are.
    #[test]
    fn injected_transactions_skip_what_the_network_verified_and_only_local_ones_go_out() {
        let k = Keypair::derive("inject", 1);
        let mempool = Arc::new(Mutex::new(Mempool::new(1024)));
        let committed: CommittedNonce = Arc::new(|_| Some(0));
        let cache = Arc::new(bastion_accel::VerifiedCache::new(1024));
        let outbound = Arc::new(Outbound::new(64));
        let mut cfg = config(NetBackend::Sockets);
        cfg.verified = Some(cache.clone());
        cfg.outbound = Some(outbound.clone());
        let p = start(cfg, mempool.clone(), committed).unwrap();
        let gossiped = k.sign(&CHAIN, 1, action(1)).packet().unwrap();
        let mut msg = Vec::new();
        signing_message(&CHAIN, &gossiped[97..], &mut msg);
        let pk: [u8; 32] = gossiped[1..33].try_into().unwrap();
        let sig: [u8; 64] = gossiped[33..97].try_into().unwrap();
        cache.insert_verified(&[bastion_accel::VerifiedCache::key(&SigItem {
            public_key: &pk,
            signature: &sig,
            message: &msg,
        })]);
        let injector = p.injector();
        assert!(injector.inject(&gossiped, false));
        let local = k.sign(&CHAIN, 2, action(2)).packet().unwrap();
        assert!(injector.inject(&local, true));
        assert!(!injector.inject(&[1, 2, 3], true), "a malformed envelope is refused at once");
        assert!(wait_until(Duration::from_secs(5), || mempool.lock().unwrap().len() == 2), "{:?}", snaps(&p));
        let (hits, _) = cache.hits_misses();
        assert_eq!(hits, 1, "the gossiped signature was found, not verified again");
        assert_eq!(cache.len(), 2, "the local one was verified and remembered");
        assert_eq!(outbound.ring.len(), 1, "only the local transaction goes out to the public network");
        assert_eq!(outbound.ring.pop().unwrap().payload(), &local[..]);
        let [n, _, a] = snaps(&p);
        assert_eq!((n.frames_in, n.dropped(DropReason::Malformed)), (3, 1));
        assert_eq!(a.frames_out, 2);
        p.stop().unwrap();
    }

    #[test]
    fn end_to_end_sockets() {
        end_to_end(NetBackend::Sockets);
    }

    #[test]
    fn end_to_end_io_uring() {
        end_to_end(NetBackend::IoUring);
    }

    /// DPDK with `net_af_packet` on the validator's end of a veth between two network
    /// namespaces: the same packets and counts as over sockets. Needs root; skipped with a
    /// notice otherwise (a failure under `CI`).
    #[cfg(feature = "dpdk")]
    #[test]
    fn end_to_end_dpdk() {
        end_to_end_on_veth(NetBackend::Dpdk);
    }

    /// AF_XDP in generic mode on a veth between two network namespaces: the same 2,078 packets
    /// (valid, malformed, bad signatures, a non-canonical body, duplicates, replays) sent from
    /// the other namespace reach the verify and admission tiles with exactly the same counts as
    /// over sockets. Needs root; skipped with a notice otherwise (a failure under `CI`).
    #[cfg(feature = "af_xdp")]
    #[test]
    fn end_to_end_af_xdp() {
        end_to_end_on_veth(NetBackend::AfXdp);
    }

    /// [`end_to_end_with`] for a kernel-bypass backend on the validator's end of `pair`, the
    /// client in the other namespace.
    #[cfg(any(feature = "af_xdp", feature = "dpdk"))]
    /// Skipped with a notice when the veth pair cannot be made (not root), except under `CI`.
    fn end_to_end_on_veth(backend: NetBackend) {
        let pair = match bastion_net::veth::VethPair::create() {
            Ok(p) => p,
            Err(e) if std::env::var_os("CI").is_none() => {
                println!("skipping the {backend:?} end-to-end test: {e}");
                return;
            }
            Err(e) => panic!("network namespaces are needed in CI: {e}"),
        };
        let mut cfg = config(backend);
        cfg.ingress.bind = SocketAddr::from((pair.ip_rx, 8400));
        cfg.ingress.bypass.iface = Some(pair.if_rx.clone());
        cfg.ingress.bypass.xdp_mode = bastion_net::XdpMode::Skb;
        // The client's socket is created inside the sender's namespace and stays there.
        let ip_tx = pair.ip_tx;
        let sender = pair.spawn_tx(move || UdpSocket::bind((ip_tx, 0))).join().unwrap().unwrap().unwrap();
        let ns_rx = pair.ns_rx.clone();
        end_to_end_with(cfg, &sender, move |cfg, mempool, committed| {
            // The pipeline (the AF_XDP socket it binds, DPDK's af_packet socket) is opened from
            // inside the validator's namespace; its tile threads inherit it.
            std::thread::spawn(move || {
                bastion_net::veth::enter_netns(&ns_rx).map_err(|e| format!("enter {ns_rx}: {e}"))?;
                start(cfg, mempool, committed)
            })
            .join()
            .map_err(|_| "the pipeline start thread panicked".to_owned())?
        });
    }

    #[test]
    fn sheds_under_back_pressure_with_exact_accounting() {
        let mut cfg = config(NetBackend::Sockets);
        cfg.ring_frames = 256;
        cfg.verifier = bastion_accel::Selection::Fixed(bastion_accel::Backend::Scalar);
        cfg.mempool_max = 1000;
        let mempool = Arc::new(Mutex::new(Mempool::new(cfg.mempool_max)));
        let p = start(cfg, mempool.clone(), Arc::new(|_| Some(0))).unwrap();
        let traders: Vec<Keypair> = (0..300).map(|i| Keypair::derive("pipeline-bp", i)).collect();
        let packets: Vec<Vec<u8>> = (0..30_000u64)
            .map(|j| traders[(j % 300) as usize].sign(&CHAIN, j / 300 + 1, action(j)).packet().unwrap())
            .collect();
        let to = p.local_addr;
        let sender = std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut sent = 0u64;
            for d in &packets {
                if socket.send_to(d, to).is_ok() {
                    sent += 1;
                }
            }
            sent
        });
        let sent = sender.join().unwrap();
        // Settled: every ring empty, every tile balanced, and nothing new for a while.
        let mut last = u64::MAX;
        let settled = wait_until(Duration::from_secs(8), || {
            let now = p.stats()[0].snapshot().frames_in;
            let quiet = now == last;
            last = now;
            std::thread::sleep(Duration::from_millis(50));
            quiet && drained(&p)
        });
        let [n, v, a] = snaps(&p);
        assert!(settled, "did not settle: {n:?} {v:?} {a:?} {:?}", p.ring_depths());
        assert!(n.frames_in <= sent);
        let backpressure = n.dropped(DropReason::Backpressure) + v.dropped(DropReason::Backpressure);
        assert!(backpressure > 0, "no back-pressure drops: {n:?} {v:?}");
        for s in [n, v, a] {
            assert_eq!(s.frames_in, s.frames_out + s.dropped_total(), "{s:?}");
        }
        assert_eq!(v.frames_in, n.frames_out);
        assert_eq!(a.frames_in, v.frames_out);
        for (name, len, capacity, high_water) in p.ring_depths() {
            assert!(high_water <= capacity && capacity == 256 && len == 0, "{name}: {high_water}/{capacity}");
        }
        let pool = mempool.lock().unwrap();
        assert!(pool.len() <= pool.capacity());
        assert_eq!(pool.len() as u64, a.frames_out);
        println!(
            "sent {sent}, net took {}, backpressure {backpressure}, mempool {} (kernel may drop the rest: {:?})",
            n.frames_in,
            pool.len(),
            p.ingress_stats()
        );
        drop(pool);
        p.stop().unwrap();
    }

    #[test]
    fn rate_limits_each_account() {
        let mut cfg = config(NetBackend::Sockets);
        cfg.rate_per_account = 1;
        cfg.burst_per_account = 5;
        let core = crate::pipeline::pin::allowed_core();
        cfg.pin = PinConfig { net: core, verify: None, admission: core };
        let mempool = Arc::new(Mutex::new(Mempool::new(100)));
        let p = start(cfg, mempool.clone(), Arc::new(|_| Some(0))).unwrap();
        let k = Keypair::derive("pipeline-rate", 0);
        let other = Keypair::derive("pipeline-rate", 1);
        let mut packets: Vec<Vec<u8>> =
            (1..=20u64).map(|n| k.sign(&CHAIN, n, action(n)).packet().unwrap()).collect();
        packets.push(other.sign(&CHAIN, 1, action(1)).packet().unwrap());
        send_paced(&p, &packets, &UdpSocket::bind("127.0.0.1:0").unwrap());
        assert!(wait_until(Duration::from_secs(5), || drained(&p)));
        let a = p.stats()[2].snapshot();
        // Five from the burst, perhaps one more refilled if the test ran slowly.
        assert!((6..=7).contains(&a.frames_out), "{a:?}");
        assert_eq!(a.frames_out + a.dropped(DropReason::RateLimited), 21);
        assert_eq!(mempool.lock().unwrap().len() as u64, a.frames_out);
        p.stop().unwrap();
    }

    /// An admission tile on its own (no threads), with `committed` as the committed state.
    fn admission(committed: CommittedNonce, accounts_max: usize) -> AdmissionTile {
        AdmissionTile {
            input: Arc::new(Ring::new(16)),
            stats: Arc::new(TileStats::new("admission")),
            mempool: Arc::new(Mutex::new(Mempool::new(1000))),
            committed,
            dedup: Dedup::new(1 << 10),
            limiter: RateLimiter::new(1000, 2000, accounts_max),
            outbound: None,
        }
    }

    fn frame(k: &Keypair, nonce: u64) -> TxFrame {
        TxFrame::from_slice(&k.sign(&CHAIN, nonce, action(nonce)).packet().unwrap()).unwrap()
    }

    #[test]
    fn fresh_keys_are_refused_before_they_take_a_rate_bucket() {
        let known = Keypair::derive("admission-known", 0);
        let id = known.account();
        let mut a = admission(Arc::new(move |x| (x == id).then_some(5)), 64);
        let now = Instant::now();
        // 3,000 fresh keys (the attack): every one refused, none reaches the limiter.
        for i in 0..3000 {
            let k = Keypair::derive("admission-fresh", i);
            assert_eq!(a.admit(&frame(&k, 1), now).map(|_| ()), Err(DropReason::UnknownAccount), "key {i}");
        }
        assert_eq!((a.limiter.buckets.len(), a.limiter.order.len()), (0, 0));
        // The existing account: replays refused, its next nonces admitted, far ones refused.
        assert_eq!(a.admit(&frame(&known, 5), now).map(|_| ()), Err(DropReason::Replay));
        assert!(a.admit(&frame(&known, 6), now).is_ok());
        assert!(a.admit(&frame(&known, 5 + NONCE_AHEAD_MAX), now).is_ok(), "a later nonce may wait");
        assert_eq!(
            a.admit(&frame(&known, 6 + NONCE_AHEAD_MAX), now).map(|_| ()),
            Err(DropReason::NonceAhead)
        );
        assert_eq!(a.limiter.buckets.len(), 1);
    }

    #[test]
    fn admission_maps_are_bounded() {
        // The rate limiter forgets its oldest account beyond its limit.
        let mut limiter = RateLimiter::new(1, 1, 8);
        let now = Instant::now();
        for i in 0..100 {
            assert!(limiter.allow(AccountId(i), now));
            assert!(limiter.buckets.len() <= 8 && limiter.order.len() <= 8);
        }
        assert!(limiter.buckets.contains_key(&AccountId(99)) && !limiter.buckets.contains_key(&AccountId(0)));
        assert!(!limiter.allow(AccountId(99), now), "a remembered account's bucket is empty");
        // The duplicate filter keeps its window.
        let mut dedup = Dedup::new(16);
        for i in 0..100u8 {
            dedup.insert(Dedup::key(&[i; 64]));
            assert!(dedup.set.len() <= 16 && dedup.order.len() <= 16);
        }
        assert!(dedup.contains(Dedup::key(&[99; 64])) && !dedup.contains(Dedup::key(&[0; 64])));
        assert_eq!(RATE_ACCOUNTS_MAX, 1 << 20);
    }

    #[test]
    fn a_flood_of_fresh_keys_is_counted_and_admits_nothing() {
        let known = Keypair::derive("pipeline-fresh-known", 0);
        let id = known.account();
        let mempool = Arc::new(Mutex::new(Mempool::new(1000)));
        let committed: CommittedNonce = Arc::new(move |a| (a == id).then_some(0));
        let p = start(config(NetBackend::Sockets), mempool.clone(), committed).unwrap();
        let mut packets: Vec<Vec<u8>> = (0..500u64)
            .map(|i| Keypair::derive("pipeline-fresh", i).sign(&CHAIN, 1, action(i)).packet().unwrap())
            .collect();
        packets.extend((1..=10u64).map(|n| known.sign(&CHAIN, n, action(n)).packet().unwrap()));
        send_paced(&p, &packets, &UdpSocket::bind("127.0.0.1:0").unwrap());
        assert!(wait_until(Duration::from_secs(5), || drained(&p)));
        let a = p.stats()[2].snapshot();
        assert_eq!(a.dropped(DropReason::UnknownAccount), 500, "{a:?}");
        assert_eq!((a.frames_out, a.dropped_total()), (10, 500), "{a:?}");
        let mut pool = mempool.lock().unwrap();
        assert_eq!(pool.len(), 10);
        assert_eq!(pool.take(|a| (a == id).then_some(0), |_| None, 100).len(), 10);
        drop(pool);
        p.stop().unwrap();
    }

    #[test]
    fn an_unavailable_backend_falls_back_only_when_allowed() {
        // A kernel-bypass backend this build or host cannot open: DPDK without its feature, or
        // AF_XDP with no interface configured.
        let (backend, needle) = if NetBackend::Dpdk.compiled_in() {
            (NetBackend::AfXdp, "af_xdp")
        } else {
            (NetBackend::Dpdk, "--features dpdk")
        };
        let mut cfg = config(backend);
        if backend == NetBackend::AfXdp && backend.compiled_in() {
            cfg.ingress.bypass.iface = Some("bastion-no-such-if".into());
        }
        let e =
            start(cfg.clone(), Arc::new(Mutex::new(Mempool::new(10))), Arc::new(|_| Some(0))).unwrap_err();
        assert!(e.contains("ingress") && (e.contains(needle) || e.contains("bastion-no-such-if")), "{e}");
        cfg.ingress_fallback = Some(NetBackend::Sockets);
        let p = start(cfg, Arc::new(Mutex::new(Mempool::new(10))), Arc::new(|_| Some(0))).unwrap();
        assert_eq!(p.backend, NetBackend::Sockets);
        p.stop().unwrap();
    }

    #[test]
    fn start_fails_on_a_bad_pin_and_stop_reports_a_panicking_tile() {
        let mut cfg = config(NetBackend::Sockets);
        cfg.pin.verify = Some(100_000);
        let e = start(cfg, Arc::new(Mutex::new(Mempool::new(10))), Arc::new(|_| Some(0))).unwrap_err();
        assert!(e.contains("verify") && e.contains("100000"), "{e}");

        let committed: CommittedNonce = Arc::new(|_| panic!("committed-state lookup failed"));
        let p =
            start(config(NetBackend::Sockets), Arc::new(Mutex::new(Mempool::new(10))), committed).unwrap();
        let k = Keypair::derive("pipeline-panic", 0);
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(&k.sign(&CHAIN, 1, action(1)).packet().unwrap(), p.local_addr)
            .unwrap();
        assert!(wait_until(Duration::from_secs(5), || p.exited() == vec!["admission"]));
        let e = p.stop().unwrap_err();
        assert!(e.contains("tile admission panicked") && e.contains("committed-state lookup failed"), "{e}");
    }
}
