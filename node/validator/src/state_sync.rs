//! The node's side of state sync (issue 18): the `[storage]` and `[state_sync]` tables of
//! `node.toml`, the public network as the sync's transport, serving snapshot requests, the
//! rule that decides when to sync, and what `status.json` and the metrics show of it.
//!
//! **When a node syncs.** With `[state_sync] enable = true` (the default):
//! - `bastion run --state-sync`, a configured `trust_height` above the node's height, or a
//!   sync an earlier run began (its verified chunks in `<data_dir>/statesync/`): at start,
//!   before anything else;
//! - automatically, when the blocks it needs next are not served by any peer: its range
//!   requests for the height after its own were answered "unavailable" [`STUCK_FAILURES`]
//!   times in a row over at least [`STUCK_FOR`] (timeouts and refused ranges do not count;
//!   peers pruned their logs below it: a new node whose peers no longer
//!   hold genesis, or a node down longer than the retention) and a peer offers a certified
//!   snapshot above its height.
//!
//! **What it trusts** is in `bastion_statesync`'s documentation: by default the genesis
//! validator set's certificates; with `trust_height` and `trust_hash`, exactly that block.

use bastion_consensus::CertChecker;
use bastion_gossip::Gossip;
use bastion_statesync::{Progress, ServeConfig, Server, SyncConfig, Transport, TrustPoint};
use bastion_store::StoreConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// Range requests for the next height that must fail in a row before a node syncs.
pub const STUCK_FAILURES: u32 = 3;
/// ... over at least this long.
pub const STUCK_FOR: Duration = Duration::from_secs(5);

/// The `[storage]` table: snapshots and the log's retention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// A snapshot every this many blocks (0: none; then the log is never pruned and peers
    /// cannot state-sync from this node).
    pub snapshot_every: u64,
    /// Snapshots kept; the block log is kept back to the oldest (retention is about
    /// `snapshot_every * keep_snapshots` blocks).
    pub keep_snapshots: usize,
    /// Snapshot writeback pace in MiB/s (0: unpaced).
    pub snapshot_write_mb_per_s: u64,
    /// Block log segment size, KiB: the log is pruned in whole segments, so retention is
    /// also at least one segment.
    pub segment_kib: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        let d = StoreConfig::default();
        StorageSection {
            snapshot_every: d.snapshot_every,
            keep_snapshots: d.keep_snapshots,
            snapshot_write_mb_per_s: d.snapshot_write_bytes_per_s >> 20,
            segment_kib: d.segment_bytes >> 10,
        }
    }
}

impl StorageSection {
    /// The store's configuration.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            snapshot_every: self.snapshot_every,
            keep_snapshots: self.keep_snapshots,
            snapshot_write_bytes_per_s: self.snapshot_write_mb_per_s << 20,
            segment_bytes: self.segment_kib << 10,
            ..StoreConfig::default()
        }
    }

    /// Checks the values; errors name the key.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        if !(1..=64).contains(&self.keep_snapshots) {
            return Err(format!(
                "{}: key `storage.keep_snapshots` is {}; allowed: 1 to 64",
                path.display(),
                self.keep_snapshots
            ));
        }
        if !(64..=(1 << 22)).contains(&self.segment_kib) {
            return Err(format!(
                "{}: key `storage.segment_kib` is {}; allowed: 64 to 4194304",
                path.display(),
                self.segment_kib
            ));
        }
        Ok(())
    }
}

/// The `[state_sync]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSyncSection {
    /// Sync when needed (see the module documentation); `false`: never (the node then waits
    /// for blocks no peer serves, and says so).
    pub enable: bool,
    /// Sync to the snapshot at exactly this height (with `trust_hash`).
    pub trust_height: Option<u64>,
    /// The digest (64 hex digits) of the block at `trust_height`.
    pub trust_hash: Option<String>,
    /// Serve this node's snapshots to peers.
    pub serve: bool,
    /// Chunk size served, KiB (1 to 4096).
    pub chunk_kib: u32,
    /// Bytes per second served to one peer, MiB/s (0: unlimited).
    pub serve_mb_per_s: u64,
    /// Give up a sync after this many seconds without a usable offer (0: keep trying).
    pub give_up_after_s: u64,
    /// The pace of this node's own sync downloads in all, KiB/s (0: as fast as peers serve).
    pub fetch_kib_per_s: u64,
}

impl Default for StateSyncSection {
    fn default() -> Self {
        StateSyncSection {
            enable: true,
            trust_height: None,
            trust_hash: None,
            serve: true,
            chunk_kib: 1024,
            serve_mb_per_s: 32,
            give_up_after_s: 0,
            fetch_kib_per_s: 0,
        }
    }
}

impl StateSyncSection {
    /// The trust point, if configured.
    pub fn trust(&self) -> Result<Option<TrustPoint>, String> {
        match (self.trust_height, &self.trust_hash) {
            (None, None) => Ok(None),
            (Some(h), Some(x)) => TrustPoint::parse(h, x).map(Some),
            _ => {
                Err("`state_sync.trust_height` and `state_sync.trust_hash` go together: set both or neither"
                    .into())
            }
        }
    }

    /// Checks the values; errors name the key.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        self.trust().map_err(|e| format!("{}: {e}", path.display()))?;
        if !(1..=4096).contains(&self.chunk_kib) {
            return Err(format!(
                "{}: key `state_sync.chunk_kib` is {}; allowed: 1 to 4096",
                path.display(),
                self.chunk_kib
            ));
        }
        Ok(())
    }

    /// How this node serves its snapshots.
    pub fn serve_config(&self) -> ServeConfig {
        ServeConfig {
            chunk_bytes: self.chunk_kib.saturating_mul(1024),
            bytes_per_s: self.serve_mb_per_s << 20,
            burst_bytes: (self.serve_mb_per_s << 20).max(4 << 20),
            ..ServeConfig::default()
        }
    }

    /// How this node syncs, from `above` (its own height).
    pub fn sync_config(&self, trust: Option<TrustPoint>, above: u64) -> SyncConfig {
        SyncConfig {
            trust,
            above,
            give_up_after: (self.give_up_after_s > 0).then(|| Duration::from_secs(self.give_up_after_s)),
            max_bytes_per_s: self.fetch_kib_per_s.saturating_mul(1024),
            ..SyncConfig::default()
        }
    }
}

/// What `status.json` shows of state sync.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// "discovering", "downloading", "verifying", "done", or "failed".
    pub phase: String,
    /// The snapshot height being fetched (or installed).
    pub target_height: Option<u64>,
    /// Chunks verified / in the snapshot.
    pub chunks_done: u32,
    /// See `chunks_done`.
    pub chunks_total: u32,
    /// Bytes verified / in the snapshot.
    pub bytes_done: u64,
    /// See `bytes_done`.
    pub bytes_total: u64,
    /// Bytes received.
    pub bytes_downloaded: u64,
    /// Peers serving the target.
    pub peers: usize,
    /// Estimated seconds left.
    pub eta_s: Option<f64>,
    /// Peers refused, with why.
    pub refused: std::collections::BTreeMap<String, String>,
    /// Seconds since the sync started.
    pub elapsed_s: f64,
    /// Once installed: the snapshot height the node synced from.
    pub synced_from_height: Option<u64>,
    /// Once installed: the seconds from start to installed.
    pub sync_seconds: Option<f64>,
    /// Once installed: chunks found verified on disk from an interrupted run (and torn or
    /// wrong ones found there, fetched again).
    #[serde(default)]
    pub chunks_resumed: u32,
    /// See `chunks_resumed`.
    #[serde(default)]
    pub chunks_discarded: u32,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
}

impl SyncStatus {
    /// The status while a sync runs.
    pub fn of(p: &Progress) -> SyncStatus {
        SyncStatus {
            phase: serde_json::to_value(p.phase)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            target_height: p.target_height,
            chunks_done: p.chunks_done,
            chunks_total: p.chunks_total,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            bytes_downloaded: p.bytes_downloaded,
            peers: p.peers,
            eta_s: p.eta_s,
            refused: p.refused.clone(),
            elapsed_s: p.elapsed_s,
            ..SyncStatus::default()
        }
    }

    /// One progress line for the log.
    pub fn line(&self) -> String {
        let eta = self.eta_s.map_or(String::new(), |s| format!(", ETA {s:.0} s"));
        match self.target_height {
            None => format!(
                "state sync: looking for a snapshot ({:.0} s, {} peers refused)",
                self.elapsed_s,
                self.refused.len()
            ),
            Some(h) => format!(
                "state sync: height {h}, {}/{} chunks, {:.1}/{:.1} MiB from {} peers{eta} ({} refused)",
                self.chunks_done,
                self.chunks_total,
                self.bytes_done as f64 / (1 << 20) as f64,
                self.bytes_total as f64 / (1 << 20) as f64,
                self.peers,
                self.refused.len()
            ),
        }
    }
}

/// Whether an earlier run began a sync in `data_dir` (killed or stopped): it resumes at once,
/// from its verified chunks.
pub fn interrupted(data_dir: &Path) -> bool {
    bastion_statesync::chunks::ChunkStore::saved(data_dir).is_some()
}

/// The public network as the sync's transport.
pub struct GossipTransport<'a> {
    gossip: &'a Gossip,
    peers: Vec<String>,
    peers_at: Option<Instant>,
}

impl<'a> GossipTransport<'a> {
    /// A transport over `gossip`.
    pub fn new(gossip: &'a Gossip) -> Self {
        GossipTransport { gossip, peers: Vec::new(), peers_at: None }
    }
}

impl Transport for GossipTransport<'_> {
    fn peers(&mut self) -> Vec<String> {
        // Asking the swarm is a round trip: twice a second is enough.
        if self.peers_at.is_none_or(|at| at.elapsed() >= Duration::from_millis(500)) {
            self.peers = self.gossip.connected_peers();
            self.peers_at = Some(Instant::now());
        }
        self.peers.clone()
    }

    fn send(&mut self, peer: &str, request: Vec<u8>) -> Result<u64, String> {
        self.gossip.ask_snapshot(peer, request)
    }

    fn recv(&mut self, timeout: Duration) -> Option<(u64, String, Result<Vec<u8>, String>)> {
        let a = self.gossip.snapshot_answers().recv_timeout(timeout).ok()?;
        Some((a.id, a.peer, a.data))
    }

    fn penalize(&mut self, peer: &str, why: &str) {
        self.gossip.penalize(peer, why);
    }
}

/// Answers the peers' snapshot requests waiting on `gossip` from `server`, with `anchor(h)`
/// the node's certified range answer from height `h`. Returns how many were answered.
pub fn serve_requests(gossip: &Gossip, server: &Server, anchor: &dyn Fn(u64) -> Option<Vec<u8>>) -> usize {
    let mut n = 0;
    while let Ok(req) = gossip.snapshot_requests().try_recv() {
        let answer = server.answer(&req.peer, &req.data, anchor);
        let _ = req.reply.send(answer);
        n += 1;
    }
    n
}

/// Counts failed range requests for the height after the node's own, to decide it is stuck
/// behind what peers serve.
#[derive(Debug, Default)]
pub struct Stuck {
    height: u64,
    failures: u32,
    since: Option<Instant>,
}

impl Stuck {
    /// A peer answered that it does not hold the range from `height + 1` (the full node counts
    /// only those: timeouts and refusals say nothing of what peers serve).
    pub fn failed(&mut self, height: u64) {
        if height != self.height {
            *self = Stuck { height, failures: 0, since: None };
        }
        self.failures += 1;
        self.since.get_or_insert_with(Instant::now);
    }

    /// The node executed past `height`: not stuck.
    pub fn progressed(&mut self, height: u64) {
        if height != self.height {
            *self = Stuck { height, failures: 0, since: None };
        }
    }

    /// Whether the node at `height` is stuck (see the module documentation).
    pub fn stuck(&self, height: u64) -> bool {
        self.height == height
            && self.failures >= STUCK_FAILURES
            && self.since.is_some_and(|s| s.elapsed() >= STUCK_FOR)
    }
}

/// The highest snapshot height peers offer with a valid anchor (see
/// `bastion_statesync::check_offer`), asking every connected peer once and waiting at most
/// `wait` (less when all answered). `None` when none offers one.
pub fn best_offer(gossip: &Gossip, checker: &CertChecker, wait: Duration) -> Option<u64> {
    let peers = gossip.connected_peers();
    let mut pending = std::collections::BTreeSet::new();
    for p in &peers {
        if let Ok(id) = gossip.ask_snapshot(p, bastion_statesync::Request::Manifest { height: None }.encode())
        {
            pending.insert(id);
        }
    }
    let started = Instant::now();
    let mut best = None;
    while !pending.is_empty() && started.elapsed() < wait {
        let Ok(a) = gossip.snapshot_answers().recv_timeout(Duration::from_millis(50)) else { continue };
        if !pending.remove(&a.id) {
            continue;
        }
        if let Ok(bytes) = a.data
            && let Ok(bastion_statesync::Answer::Manifest { manifest, anchor }) =
                bastion_statesync::Answer::decode(&bytes)
            && let Ok(offer) = bastion_statesync::check_offer(checker, manifest, anchor, None)
        {
            best = best.max(Some(offer.manifest.height));
        }
    }
    best
}

/// Whether a node at `height` should state-sync on its own: some peer offers a certified
/// snapshot above `height`, and no peer serves block `height + 1` (range requests for it
/// failed [`STUCK_FAILURES`] times, or never answered within `wait` each). A fresh chain (no
/// snapshots yet) and a node whose peers still hold its next blocks answer `false` quickly.
pub fn behind_peers(gossip: &Gossip, checker: &CertChecker, height: u64, wait: Duration) -> bool {
    // Give the bootstrap connections a moment.
    let started = Instant::now();
    while gossip.connected_peers().is_empty() && started.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(100));
    }
    match best_offer(gossip, checker, wait) {
        Some(h) if h > height => {}
        _ => return false,
    }
    for _ in 0..STUCK_FAILURES {
        if gossip.request_range(height + 1, height + 1).is_err() {
            return false;
        }
        let deadline = Instant::now() + wait * 2;
        while Instant::now() < deadline {
            let Ok(ans) = gossip.ranges().recv_timeout(Duration::from_millis(100)) else { continue };
            if ans.from != height + 1 {
                continue;
            }
            if let Ok(bytes) = ans.data
                && checker.check_range(&bytes, height + 1).is_ok()
            {
                return false;
            }
            break;
        }
    }
    true
}

/// Sets `stop` once `after` has passed (the node's `--duration` also bounds a sync).
pub fn stop_after(stop: &std::sync::Arc<std::sync::atomic::AtomicBool>, after: Option<Duration>) {
    let Some(after) = after else { return };
    let stop = stop.clone();
    let _ = std::thread::Builder::new().name("sync-deadline".into()).spawn(move || {
        std::thread::sleep(after);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
}

/// A validator's state sync, before it starts consensus: finishes an interrupted install,
/// then syncs when asked to (`--state-sync`, a trust height above its own) or when no peer on
/// the public network serves the block after its height. It runs a public-network node of its
/// own for the sync (the validator's identity, the configured address), stopped before the
/// validator's own starts. Returns what `status.json` shows of it, if a sync ran.
pub fn validator_sync(
    cfg: &crate::node::NodeConfig,
    opts: &crate::node::RunOptions,
    spec: &bastion_consensus::ChainSpec,
    store: &mut bastion_store::Store,
    identity_seed: &[u8; 32],
) -> Result<Option<SyncStatus>, String> {
    use bastion_statesync::install::{finish_pending, install_from};
    let forced_flag = opts.state_sync || opts.trust.is_some();
    if !cfg.state_sync.enable {
        if forced_flag {
            return Err("--state-sync and --trust-height need [state_sync] enable = true in node.toml".into());
        }
        return Ok(None);
    }
    let checker = CertChecker::new(spec).map_err(|e| e.to_string())?;
    if let Some(i) = finish_pending(&cfg.data_dir, store, None, &checker)
        .map_err(|e| format!("state sync: cannot finish the install in {}: {e}", cfg.data_dir.display()))?
    {
        tracing::info!(
            height = i.height,
            tip = i.tip,
            "state sync: finished the install an earlier run had verified"
        );
    }
    let trust = match opts.trust {
        Some(t) => Some(t),
        None => cfg.state_sync.trust()?,
    };
    let height = store.state().height;
    let forced = opts.state_sync || interrupted(&cfg.data_dir) || trust.is_some_and(|t| height < t.height);
    let Some(listen) = cfg.public.listen else {
        if forced {
            return Err(
                "state sync needs the public network: set [public] listen (and bootstrap peers)".into()
            );
        }
        return Ok(None);
    };
    let secret = match &cfg.public.key {
        Some(p) => crate::public::read_seed(p)?,
        None => crate::public::derived_seed(identity_seed),
    };
    let limits = spec.block_limits();
    let mut g = bastion_gossip::GossipConfig::new(listen, secret, spec.chain_id.clone());
    g.bootstrap = cfg.public.bootstrap.clone();
    g.max_block_bytes = crate::node::public_max_bytes(&limits);
    g.max_snapshot_bytes = crate::node::public_max_bytes(&limits) + (1 << 20);
    let committed = std::sync::Arc::new(std::sync::RwLock::new(crate::node::Committed::of(store.state())));
    let check = std::sync::Arc::new(crate::publish::GossipCheck::new(
        spec.digest(),
        committed,
        Some(checker.clone()),
    ));
    let gossip = Gossip::start(g, check)?;
    let behind = forced || behind_peers(&gossip, &checker, height, Duration::from_secs(2));
    if !behind {
        gossip.stop();
        return Ok(None);
    }
    tracing::info!(
        height,
        forced,
        "state sync: no peer serves the blocks after height {height}, or asked to sync"
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    crate::full::watch_signals(stop.clone());
    stop_after(&stop, opts.duration);
    let status_path = cfg.data_dir.join("status.json");
    let started = Instant::now();
    let sc = cfg.state_sync.sync_config(trust, height);
    let mut transport = GossipTransport::new(&gossip);
    let mut last_log = Instant::now();
    let result = bastion_statesync::sync(&mut transport, &checker, &cfg.data_dir, &sc, &stop, &mut |p| {
        let s = SyncStatus::of(p);
        if last_log.elapsed() >= Duration::from_secs(5) {
            tracing::info!("{}", s.line());
            last_log = Instant::now();
        }
        crate::node::write_status(&status_path, &serde_json::json!({ "height": height, "state_sync": s }));
    });
    let d = match result {
        Ok(d) => d,
        Err(e) => {
            gossip.stop();
            return Err(format!("state sync failed: {e}"));
        }
    };
    let stats = d.stats.clone();
    let installed = install_from(&cfg.data_dir, store, None, d.chunks, &d.blocks);
    gossip.stop();
    let installed = installed.map_err(|e| format!("state sync install: {e}"))?;
    tracing::info!(
        height = installed.height,
        tip = installed.tip,
        bytes = stats.bytes_downloaded,
        seconds = started.elapsed().as_secs_f64(),
        "state sync: verified and installed; joining consensus above height {}",
        installed.tip
    );
    Ok(Some(SyncStatus {
        phase: "done".into(),
        target_height: Some(installed.height),
        synced_from_height: Some(installed.height),
        sync_seconds: Some(started.elapsed().as_secs_f64()),
        bytes_downloaded: stats.bytes_downloaded,
        chunks_resumed: stats.chunks_resumed,
        chunks_discarded: stats.chunks_discarded,
        bytes_done: installed.bytes,
        bytes_total: installed.bytes,
        ..SyncStatus::default()
    }))
}
