//! Serving snapshots to peers: manifests (with their certified anchor) and chunks, bounded per
//! peer.
//!
//! The server reads the node's snapshot directory beside the store's writer (listing names and
//! mapping files, never removing anything). A snapshot it has opened stays mapped in a small
//! cache (`max_cached`), so a syncing peer can finish fetching it even after the store rotated
//! the file away (the mapping keeps the data alive). Bounds: chunk size (`chunk_bytes`), bytes
//! per second per peer (a token bucket of `bytes_per_s` with `burst_bytes`; a request over it is
//! answered [`Answer::Busy`] with the wait), and the network layer's concurrent requests per
//! peer.

use crate::wire::{Answer, Manifest, Request};
use bastion_exchange::IMAGE_LAYOUT;
use bastion_storage::Snapshot;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How a node serves its snapshots.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Bytes per chunk.
    pub chunk_bytes: u32,
    /// Bytes per second one peer may take (0: unlimited).
    pub bytes_per_s: u64,
    /// Bytes one peer may take at once before the rate applies.
    pub burst_bytes: u64,
    /// Opened snapshots kept mapped (at least 1).
    pub max_cached: usize,
}

impl Default for ServeConfig {
    /// 1 MiB chunks, 32 MiB/s per peer with an 8 MiB burst, 3 snapshots cached.
    fn default() -> Self {
        ServeConfig {
            chunk_bytes: crate::wire::DEFAULT_CHUNK_BYTES,
            bytes_per_s: 32 << 20,
            burst_bytes: 8 << 20,
            max_cached: 3,
        }
    }
}

/// What a server has done (cumulative).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerStats {
    /// Manifests served.
    pub manifests: u64,
    /// Chunks served.
    pub chunks: u64,
    /// Chunk bytes served.
    pub bytes: u64,
    /// Requests answered "busy" (over a peer's byte budget).
    pub busy: u64,
    /// Requests answered "no snapshot".
    pub unavailable: u64,
    /// Requests that did not decode.
    pub malformed: u64,
}

#[derive(Default)]
struct Counters {
    manifests: AtomicU64,
    chunks: AtomicU64,
    bytes: AtomicU64,
    busy: AtomicU64,
    unavailable: AtomicU64,
    malformed: AtomicU64,
}

struct Cached {
    snapshot: Arc<Snapshot>,
    manifest: Arc<Manifest>,
    used: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    cache: HashMap<u64, Cached>,
    peers: HashMap<String, Bucket>,
}

/// Answers peers' state-sync requests from a snapshot directory. `Send + Sync`.
pub struct Server {
    dir: PathBuf,
    cfg: ServeConfig,
    inner: Mutex<Inner>,
    counters: Counters,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("dir", &self.dir).field("cfg", &self.cfg).finish()
    }
}

impl Server {
    /// A server of the snapshots in `snapshot_dir` (the store's, `<data_dir>/snapshots`).
    pub fn new(snapshot_dir: &Path, cfg: ServeConfig) -> Server {
        Server {
            dir: snapshot_dir.to_path_buf(),
            cfg,
            inner: Mutex::new(Inner::default()),
            counters: Counters::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ServerStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServerStats {
            manifests: g(&c.manifests),
            chunks: g(&c.chunks),
            bytes: g(&c.bytes),
            busy: g(&c.busy),
            unavailable: g(&c.unavailable),
            malformed: g(&c.malformed),
        }
    }

    /// The answer to `request` from `peer`; `None` when the request does not decode (the
    /// network layer answers "unavailable"). `anchor(h)` gives the certified range answer
    /// starting at height `h` (from the node's block and certificate logs, or its recent
    /// blocks), `None` when it has none: a snapshot without an anchor is not offered.
    pub fn answer(
        &self,
        peer: &str,
        request: &[u8],
        anchor: &dyn Fn(u64) -> Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let Ok(req) = Request::decode(request) else {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let answer = match req {
            Request::Manifest { height } => self.manifest(peer, height, anchor),
            Request::Chunk { height, index } => self.chunk(peer, height, index),
        };
        Some(answer.encode())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `cost` bytes from `peer`'s bucket, or says how long until it could.
    fn charge(&self, peer: &str, cost: u64) -> Result<(), u32> {
        if self.cfg.bytes_per_s == 0 {
            return Ok(());
        }
        let rate = self.cfg.bytes_per_s as f64;
        let burst = self.cfg.burst_bytes.max(u64::from(self.cfg.chunk_bytes)) as f64;
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.peers.len() > 4096 {
            inner.peers.retain(|_, b| now.duration_since(b.at) < Duration::from_secs(60));
        }
        let b = inner.peers.entry(peer.to_string()).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        let cost = cost as f64;
        if b.tokens >= cost {
            b.tokens -= cost;
            Ok(())
        } else {
            Err((((cost - b.tokens) / rate) * 1000.0).ceil().clamp(1.0, 60_000.0) as u32)
        }
    }

    /// The snapshot at `height`, from the cache or opened (validated) and cut into chunks.
    fn open(&self, height: u64, path: Option<&Path>) -> Option<(Arc<Snapshot>, Arc<Manifest>)> {
        {
            let mut inner = self.lock();
            if let Some(c) = inner.cache.get_mut(&height) {
                c.used = Instant::now();
                return Some((c.snapshot.clone(), c.manifest.clone()));
            }
        }
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                bastion_storage::snapshot::list_in(&self.dir).ok()?.into_iter().find(|(h, _)| *h == height)?.1
            }
        };
        // Validated in full (header, checksum of every byte) outside the lock.
        let snap = Snapshot::open(&path, IMAGE_LAYOUT).ok()?;
        let meta = snap.meta();
        if meta.height != height {
            return None;
        }
        let manifest =
            Arc::new(Manifest::of(height, meta.root, meta.layout, snap.payload(), self.cfg.chunk_bytes));
        let snapshot = Arc::new(snap);
        let mut inner = self.lock();
        while inner.cache.len() >= self.cfg.max_cached.max(1) {
            let Some(oldest) = inner.cache.iter().min_by_key(|(_, c)| c.used).map(|(h, _)| *h) else { break };
            inner.cache.remove(&oldest);
        }
        inner.cache.insert(
            height,
            Cached { snapshot: snapshot.clone(), manifest: manifest.clone(), used: Instant::now() },
        );
        Some((snapshot, manifest))
    }

    fn manifest(&self, peer: &str, height: Option<u64>, anchor: &dyn Fn(u64) -> Option<Vec<u8>>) -> Answer {
        let listed = bastion_storage::snapshot::list_in(&self.dir).unwrap_or_default();
        let newest = listed.first().map(|(h, _)| *h);
        // Cached snapshots (rotated away on disk, still mapped) count too.
        let mut candidates: Vec<(u64, Option<PathBuf>)> =
            listed.into_iter().map(|(h, p)| (h, Some(p))).collect();
        for h in self.lock().cache.keys() {
            if !candidates.iter().any(|(c, _)| c == h) {
                candidates.push((*h, None));
            }
        }
        candidates.sort_unstable_by_key(|(h, _)| std::cmp::Reverse(*h));
        for (h, path) in candidates {
            if height.is_some_and(|want| want != h) {
                continue;
            }
            let Some(anchor) = h.checked_add(1).and_then(anchor) else { continue };
            let Some((_, manifest)) = self.open(h, path.as_deref()) else { continue };
            let answer = Answer::Manifest { manifest: (*manifest).clone(), anchor };
            let cost = 64 + 32 * manifest.chunks.len() as u64;
            if let Err(ms) = self.charge(peer, cost) {
                self.counters.busy.fetch_add(1, Ordering::Relaxed);
                return Answer::Busy { retry_after_ms: ms };
            }
            self.counters.manifests.fetch_add(1, Ordering::Relaxed);
            return answer;
        }
        self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
        Answer::NoSnapshot { newest }
    }

    fn chunk(&self, peer: &str, height: u64, index: u32) -> Answer {
        let Some((snap, manifest)) = self.open(height, None) else {
            self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            let newest =
                bastion_storage::snapshot::list_in(&self.dir).ok().and_then(|l| l.first().map(|(h, _)| *h));
            return Answer::NoSnapshot { newest };
        };
        let Some(bytes) = manifest.range(index).and_then(|r| snap.payload().get(r)) else {
            self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return Answer::NoSnapshot { newest: Some(height) };
        };
        if let Err(ms) = self.charge(peer, bytes.len() as u64) {
            self.counters.busy.fetch_add(1, Ordering::Relaxed);
            return Answer::Busy { retry_after_ms: ms };
        }
        self.counters.chunks.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Answer::Chunk { height, index, bytes: bytes.to_vec() }
    }
}
