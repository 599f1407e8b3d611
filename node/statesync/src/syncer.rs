//! The download: discover offers, pick a target, fetch its chunks from every peer that offers
//! it, verify, hand back a state ready to install.
//!
//! [`sync`] is a blocking loop over a [`Transport`] (the node's public network; tests use
//! servers in memory). It never trusts a peer: offers go through [`check_offer`], chunks through
//! the manifest's hashes, the finished state through a recomputed root. A peer that sends what
//! no honest peer sends is penalized on the transport and not asked again during this sync;
//! its reason is kept and reported (in [`Progress::refused`], and in [`SyncError::GaveUp`] when
//! no honest peer is found in time).
//!
//! Target choice: the trusted height when one is given; otherwise, after `discover` from the
//! first valid offer (or once every peer answered), the highest offered height (most peers on
//! a tie), preferring a target saved by an interrupted run so its chunks are reused. When every
//! peer that offered the target stops serving it (rotated away) the sync starts over.

use crate::chunks::{ChunkStore, Resumed};
use crate::install::rebuild;
use crate::wire::{Answer, Manifest, Request};
use crate::{Offer, SyncError, TrustPoint, check_offer};
use bastion_consensus::{CertChecker, Ready};
use bastion_exchange::State;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How the syncer talks to peers.
pub trait Transport {
    /// Peers it may ask now.
    fn peers(&mut self) -> Vec<String>;
    /// Sends `request` to `peer`; the reply comes from [`Transport::recv`] with the returned id.
    fn send(&mut self, peer: &str, request: Vec<u8>) -> Result<u64, String>;
    /// The next reply, waiting at most `timeout`: `(id, peer, bytes or why none)`.
    fn recv(&mut self, timeout: Duration) -> Option<(u64, String, Result<Vec<u8>, String>)>;
    /// Tells the network `peer` misbehaved (lowers its score, disconnects it).
    fn penalize(&mut self, peer: &str, why: &str);
}

/// How to sync.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// The operator's trusted height and hash, if any (see the crate documentation).
    pub trust: Option<TrustPoint>,
    /// Only snapshots above this height are of use (the node's own height).
    pub above: u64,
    /// Chunk requests in flight in all.
    pub parallel: usize,
    /// Chunk requests in flight to one peer.
    pub per_peer: usize,
    /// A request unanswered this long is given up and asked elsewhere.
    pub request_timeout: Duration,
    /// How long to collect offers after the first valid one before choosing.
    pub discover: Duration,
    /// Stop with [`SyncError::GaveUp`] after this long without a target (`None`: never).
    pub give_up_after: Option<Duration>,
    /// Bytes per second the download may take in all (0: unlimited): chunk requests wait so
    /// that the bytes asked for since the target was chosen stay within this pace (plus one
    /// chunk). For a node on a link it shares with consensus or clients.
    pub max_bytes_per_s: u64,
}

impl Default for SyncConfig {
    /// No trust point, 8 requests in flight (2 per peer), 15 s timeout, 2 s discovery, never
    /// give up, no pace.
    fn default() -> Self {
        SyncConfig {
            trust: None,
            above: 0,
            parallel: 8,
            per_peer: 2,
            request_timeout: Duration::from_secs(15),
            discover: Duration::from_secs(2),
            give_up_after: None,
            max_bytes_per_s: 0,
        }
    }
}

/// What the sync is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Asking peers for their snapshots.
    #[default]
    Discovering,
    /// Fetching chunks.
    Downloading,
    /// Rebuilding the state and recomputing its root.
    Verifying,
    /// Finished: the state is verified.
    Done,
}

/// Progress, for logs, `status.json` and metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Progress {
    /// The phase.
    pub phase: Phase,
    /// Height of the chosen snapshot.
    pub target_height: Option<u64>,
    /// Chunks verified (on disk).
    pub chunks_done: u32,
    /// Chunks in the snapshot.
    pub chunks_total: u32,
    /// Bytes verified.
    pub bytes_done: u64,
    /// Bytes in the snapshot.
    pub bytes_total: u64,
    /// Bytes downloaded this run (including refused ones).
    pub bytes_downloaded: u64,
    /// Peers serving the target.
    pub peers: usize,
    /// Peers refused this sync, with why.
    pub refused: BTreeMap<String, String>,
    /// Seconds since the sync started.
    pub elapsed_s: f64,
    /// Estimated seconds to finish the download, from this run's rate.
    pub eta_s: Option<f64>,
}

/// Counters of a finished sync.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncStats {
    /// Bytes received in chunk answers (valid or not).
    pub bytes_downloaded: u64,
    /// Chunks fetched and verified this run.
    pub chunks_fetched: u32,
    /// Chunks found verified on disk from an interrupted run.
    pub chunks_resumed: u32,
    /// Chunk files on disk that were torn or wrong, deleted and fetched again.
    pub chunks_discarded: u32,
    /// Chunks refused (wrong hash or length).
    pub bad_chunks: u32,
    /// Offers refused (anchor, root or trust).
    pub bad_offers: u32,
    /// Targets abandoned because their state did not verify.
    pub bad_targets: u32,
    /// Seconds from start to verified.
    pub seconds: f64,
    /// Peers that served chunks.
    pub peers_used: usize,
}

/// A verified snapshot, ready for [`crate::install::install_from`] or
/// [`crate::install::install`].
#[derive(Debug)]
pub struct Downloaded {
    /// The chunks on disk (marked ready).
    pub chunks: ChunkStore,
    /// The verified anchor blocks.
    pub blocks: Vec<Ready>,
    /// The rebuilt state.
    pub state: State,
    /// Its image.
    pub image: rkyv::util::AlignedVec<16>,
    /// Counters.
    pub stats: SyncStats,
    /// Decoding time.
    pub rebuild: Duration,
    /// Root recomputation time.
    pub recompute: Duration,
}

struct Group {
    offer: Offer,
    peers: BTreeSet<String>,
}

enum Pending {
    Manifest,
    /// A chunk of the target with this manifest digest (a target may change while requests
    /// are out: a late answer for an earlier one is dropped, not checked against the new).
    Chunk([u8; 32], u32),
}

struct Target {
    digest: [u8; 32],
    chunks: ChunkStore,
    blocks: Vec<Ready>,
    in_flight: BTreeSet<u32>,
    /// When it was chosen, and the chunk bytes asked for since (the pace).
    chosen: Instant,
    asked_bytes: u64,
    /// When the last holder was lost (the target is dropped if none comes back).
    orphaned: Option<Instant>,
}

struct Syncer<'a> {
    checker: &'a CertChecker,
    data_dir: &'a Path,
    cfg: &'a SyncConfig,
    groups: HashMap<[u8; 32], Group>,
    banned: BTreeMap<String, String>,
    asked: HashMap<String, Instant>,
    answered: BTreeSet<String>,
    pending: HashMap<u64, (String, Pending, Instant)>,
    backoff: HashMap<String, Instant>,
    target: Option<Target>,
    saved: Option<[u8; 32]>,
    first_offer: Option<Instant>,
    stats: SyncStats,
    served_by: BTreeSet<String>,
    started: Instant,
    /// Why peers without a usable offer had none (for the give-up message).
    notes: BTreeMap<String, String>,
}

/// Runs a state sync until a verified state is on disk (marked ready) or `stop` is set.
/// `progress` is called about every 250 ms.
pub fn sync(
    transport: &mut dyn Transport,
    checker: &CertChecker,
    data_dir: &Path,
    cfg: &SyncConfig,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Downloaded, SyncError> {
    let mut s = Syncer {
        checker,
        data_dir,
        cfg,
        groups: HashMap::new(),
        banned: BTreeMap::new(),
        asked: HashMap::new(),
        answered: BTreeSet::new(),
        pending: HashMap::new(),
        backoff: HashMap::new(),
        target: None,
        saved: ChunkStore::saved(data_dir).map(|(m, _, _)| m.digest()),
        first_offer: None,
        stats: SyncStats::default(),
        served_by: BTreeSet::new(),
        started: Instant::now(),
        notes: BTreeMap::new(),
    };
    let mut last_progress = Instant::now() - Duration::from_secs(1);
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(SyncError::Stopped);
        }
        if s.target.is_none()
            && let Some(limit) = cfg.give_up_after
            && s.started.elapsed() >= limit
        {
            return Err(SyncError::GaveUp { seconds: s.started.elapsed().as_secs_f64(), why: s.why() });
        }
        let peers: Vec<String> =
            transport.peers().into_iter().filter(|p| !s.banned.contains_key(p)).collect();
        s.discover(transport, &peers);
        if s.target.is_none() {
            s.choose(&peers)?;
        }
        s.request_chunks(transport);
        if let Some((id, peer, data)) = transport.recv(Duration::from_millis(20)) {
            s.on_reply(transport, id, &peer, data)?;
        }
        s.expire();
        if last_progress.elapsed() >= Duration::from_millis(250) {
            progress(&s.progress(Phase::Downloading));
            last_progress = Instant::now();
        }
        if let Some(done) = s.verify_if_complete(transport, progress)? {
            return Ok(done);
        }
    }
}

impl Syncer<'_> {
    fn why(&self) -> String {
        let mut parts = Vec::new();
        for (p, r) in &self.banned {
            parts.push(format!("{p}: refused ({r})"));
        }
        for (p, r) in &self.notes {
            if !self.banned.contains_key(p) {
                parts.push(format!("{p}: {r}"));
            }
        }
        if parts.is_empty() {
            "no peer answered (is the node connected to any?)".into()
        } else {
            format!("no usable snapshot offered; {}", parts.join("; "))
        }
    }

    fn ban(&mut self, transport: &mut dyn Transport, peer: &str, why: String) {
        tracing::warn!(peer, "state sync: refusing peer: {why}");
        transport.penalize(peer, &format!("state sync: {why}"));
        self.banned.insert(peer.to_string(), why);
        for g in self.groups.values_mut() {
            g.peers.remove(peer);
        }
        // A refused peer is not asked again: when it was the target's last holder nobody can
        // serve the target, so choose again (and give up in time) instead of waiting forever.
        if let Some(t) = &self.target
            && self.groups.get(&t.digest).is_none_or(|g| g.peers.is_empty())
        {
            tracing::warn!(
                height = t.chunks.manifest().height,
                "state sync: every peer serving the target was refused; choosing again"
            );
            self.target = None;
            self.first_offer = None;
        }
    }

    /// Asks peers for their manifests: every 2 s while no target is chosen, every 10 s after
    /// (to find more holders of the target).
    fn discover(&mut self, transport: &mut dyn Transport, peers: &[String]) {
        let every = if self.target.is_none() { Duration::from_secs(2) } else { Duration::from_secs(10) };
        let height =
            self.cfg.trust.map(|t| t.height).or(self.target.as_ref().map(|t| t.chunks.manifest().height));
        for p in peers {
            if self.asked.get(p).is_some_and(|at| at.elapsed() < every)
                || self.pending.values().any(|(q, k, _)| q == p && matches!(k, Pending::Manifest))
            {
                continue;
            }
            let req = Request::Manifest { height }.encode();
            if let Ok(id) = transport.send(p, req) {
                self.pending.insert(id, (p.clone(), Pending::Manifest, Instant::now()));
            }
            self.asked.insert(p.clone(), Instant::now());
        }
    }

    fn choose(&mut self, peers: &[String]) -> Result<(), SyncError> {
        let Some(first) = self.first_offer else { return Ok(()) };
        let everyone = !peers.is_empty() && peers.iter().all(|p| self.answered.contains(p));
        let saved = self.saved.filter(|d| self.groups.get(d).is_some_and(|g| !g.peers.is_empty()));
        if saved.is_none() && first.elapsed() < self.cfg.discover && !everyone {
            return Ok(());
        }
        let best = saved.or_else(|| {
            self.groups
                .iter()
                .filter(|(_, g)| !g.peers.is_empty())
                .max_by_key(|(_, g)| (g.offer.manifest.height, g.peers.len()))
                .map(|(d, _)| *d)
        });
        let Some(digest) = best else { return Ok(()) };
        let Some(g) = self.groups.get(&digest) else { return Ok(()) };
        let (chunks, resumed) =
            ChunkStore::begin(self.data_dir, g.offer.manifest.clone(), g.offer.anchor.clone())?;
        let Resumed { chunks: kept, discarded } = resumed;
        self.stats.chunks_resumed += kept;
        self.stats.chunks_discarded += discarded;
        tracing::info!(
            height = g.offer.manifest.height,
            chunks = g.offer.manifest.count(),
            bytes = g.offer.manifest.length,
            peers = g.peers.len(),
            resumed = kept,
            discarded,
            "state sync: target chosen"
        );
        self.target = Some(Target {
            digest,
            chunks,
            blocks: g.offer.blocks.clone(),
            in_flight: BTreeSet::new(),
            chosen: Instant::now(),
            asked_bytes: 0,
            orphaned: None,
        });
        Ok(())
    }

    fn request_chunks(&mut self, transport: &mut dyn Transport) {
        let Some(t) = &mut self.target else { return };
        let Some(g) = self.groups.get(&t.digest) else { return };
        let now = Instant::now();
        let mut load: BTreeMap<&String, usize> = g
            .peers
            .iter()
            .filter(|p| self.backoff.get(*p).is_none_or(|until| *until <= now))
            .map(|p| (p, 0))
            .collect();
        for (p, k, _) in self.pending.values() {
            if let (Pending::Chunk(..), Some(n)) = (k, load.get_mut(p)) {
                *n += 1;
            }
        }
        let height = t.chunks.manifest().height;
        let mut next = 0u32;
        let count = t.chunks.manifest().count();
        let chunk = u64::from(t.chunks.manifest().chunk_bytes);
        let budget = (self.cfg.max_bytes_per_s > 0)
            .then(|| (self.cfg.max_bytes_per_s as f64 * t.chosen.elapsed().as_secs_f64()) as u64 + chunk);
        while t.in_flight.len() < self.cfg.parallel {
            if budget.is_some_and(|b| t.asked_bytes + chunk > b) {
                break;
            }
            while next < count && (t.chunks.has(next) || t.in_flight.contains(&next)) {
                next += 1;
            }
            if next >= count {
                break;
            }
            let Some((peer, n)) =
                load.iter_mut().filter(|(_, n)| **n < self.cfg.per_peer).min_by_key(|(_, n)| **n)
            else {
                break;
            };
            let peer = (*peer).clone();
            match transport.send(&peer, Request::Chunk { height, index: next }.encode()) {
                Ok(id) => {
                    *n += 1;
                    t.asked_bytes += chunk;
                    t.in_flight.insert(next);
                    self.pending.insert(id, (peer, Pending::Chunk(t.digest, next), Instant::now()));
                }
                Err(_) => {
                    self.backoff.insert(peer, now + Duration::from_millis(500));
                    break;
                }
            }
            next += 1;
        }
    }

    fn chunk_failed(&mut self, target: &[u8; 32], index: u32) {
        if let Some(t) = &mut self.target
            && t.digest == *target
        {
            t.in_flight.remove(&index);
        }
    }

    fn on_reply(
        &mut self,
        transport: &mut dyn Transport,
        id: u64,
        peer: &str,
        data: Result<Vec<u8>, String>,
    ) -> Result<(), SyncError> {
        let Some((asked, kind, _)) = self.pending.remove(&id) else { return Ok(()) };
        let peer = if peer.is_empty() { asked.as_str() } else { peer };
        let peer = peer.to_string();
        if let Pending::Chunk(target, i) = kind {
            self.chunk_failed(&target, i);
        }
        let bytes = match data {
            Ok(b) => b,
            Err(e) => {
                self.backoff.insert(peer.clone(), Instant::now() + Duration::from_secs(1));
                if matches!(kind, Pending::Manifest) {
                    self.answered.insert(peer.clone());
                    self.notes.insert(peer, format!("no answer ({e})"));
                }
                return Ok(());
            }
        };
        if self.banned.contains_key(&peer) {
            return Ok(());
        }
        let answer = match Answer::decode(&bytes) {
            Ok(a) => a,
            Err(e) => {
                self.ban(transport, &peer, format!("malformed answer: {e}"));
                return Ok(());
            }
        };
        match (kind, answer) {
            (Pending::Manifest, Answer::Manifest { manifest, anchor }) => {
                self.on_offer(transport, &peer, manifest, anchor)
            }
            (Pending::Manifest, Answer::NoSnapshot { newest }) => {
                self.answered.insert(peer.clone());
                self.notes.insert(peer, format!("no snapshot to offer (newest {newest:?})"));
            }
            (_, Answer::Busy { retry_after_ms }) => {
                self.backoff.insert(
                    peer,
                    Instant::now() + Duration::from_millis(u64::from(retry_after_ms.min(10_000))),
                );
            }
            (Pending::Chunk(target, i), Answer::Chunk { height, index, bytes }) => {
                self.stats.bytes_downloaded += bytes.len() as u64;
                let Some(t) = &mut self.target else { return Ok(()) };
                if t.digest != target {
                    return Ok(()); // asked for an abandoned target
                }
                if height != t.chunks.manifest().height || index != i {
                    self.ban(
                        transport,
                        &peer,
                        format!("answered chunk {height}/{index} to a request for {i}"),
                    );
                    return Ok(());
                }
                if t.chunks.put(index, &bytes)? {
                    self.stats.chunks_fetched += 1;
                    self.served_by.insert(peer);
                } else {
                    self.stats.bad_chunks += 1;
                    self.ban(
                        transport,
                        &peer,
                        format!("chunk {index} of height {height} does not match the manifest"),
                    );
                }
            }
            (Pending::Chunk(target, _), Answer::NoSnapshot { .. }) => {
                // The peer rotated the snapshot away: it no longer holds that target.
                if let Some(g) = self.groups.get_mut(&target) {
                    g.peers.remove(&peer);
                }
                if let Some(t) = &mut self.target
                    && t.digest == target
                    && t.orphaned.is_none()
                    && self.groups.get(&t.digest).is_none_or(|g| g.peers.is_empty())
                {
                    t.orphaned = Some(Instant::now());
                }
            }
            (_, other) => {
                self.ban(transport, &peer, format!("unexpected answer {}", kind_name(&other)));
            }
        }
        Ok(())
    }

    fn on_offer(&mut self, transport: &mut dyn Transport, peer: &str, manifest: Manifest, anchor: Vec<u8>) {
        self.answered.insert(peer.to_string());
        if manifest.height <= self.cfg.above && self.cfg.trust.is_none() {
            self.notes.insert(peer.to_string(), format!("offers height {}, not above ours", manifest.height));
            return;
        }
        match check_offer(self.checker, manifest, anchor, self.cfg.trust.as_ref()) {
            Ok(offer) => {
                let digest = offer.manifest.digest();
                self.notes.remove(peer);
                self.first_offer.get_or_insert_with(Instant::now);
                let g = self.groups.entry(digest).or_insert_with(|| Group { offer, peers: BTreeSet::new() });
                g.peers.insert(peer.to_string());
                if let Some(t) = &mut self.target
                    && t.digest == digest
                {
                    t.orphaned = None;
                }
            }
            Err(r) if r.honest() => {
                let why = r.to_string();
                if self.notes.get(peer) != Some(&why) {
                    tracing::warn!(peer, "state sync: no usable offer from this peer: {why}");
                }
                self.notes.insert(peer.to_string(), why);
            }
            Err(r) => {
                self.stats.bad_offers += 1;
                self.ban(transport, peer, r.to_string());
            }
        }
    }

    /// Requests unanswered past the timeout are dropped (their chunks asked again); a target
    /// nobody serves any more for 20 s is abandoned.
    fn expire(&mut self) {
        let limit = self.cfg.request_timeout;
        let late: Vec<u64> =
            self.pending.iter().filter(|(_, (_, _, at))| at.elapsed() >= limit).map(|(id, _)| *id).collect();
        for id in late {
            if let Some((peer, kind, _)) = self.pending.remove(&id) {
                if let Pending::Chunk(target, i) = kind {
                    self.chunk_failed(&target, i);
                }
                self.backoff.insert(peer, Instant::now() + Duration::from_secs(2));
            }
        }
        if let Some(t) = &self.target
            && t.orphaned.is_some_and(|at| at.elapsed() >= Duration::from_secs(20))
        {
            tracing::warn!(
                height = t.chunks.manifest().height,
                "state sync: no peer serves the target any more; starting over"
            );
            self.groups.remove(&t.digest);
            self.target = None;
            self.first_offer = None;
            self.asked.clear();
            self.answered.clear();
        }
    }

    fn progress(&self, phase: Phase) -> Progress {
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut p = Progress {
            phase,
            refused: self.banned.clone(),
            elapsed_s: elapsed,
            bytes_downloaded: self.stats.bytes_downloaded,
            ..Progress::default()
        };
        match &self.target {
            None => p.phase = Phase::Discovering,
            Some(t) => {
                let m = t.chunks.manifest();
                p.target_height = Some(m.height);
                p.chunks_done = t.chunks.count();
                p.chunks_total = m.count();
                p.bytes_done = t.chunks.bytes();
                p.bytes_total = m.length;
                p.peers = self.groups.get(&t.digest).map_or(0, |g| g.peers.len());
                if self.stats.bytes_downloaded > 0 && elapsed > 0.0 {
                    let rate = self.stats.bytes_downloaded as f64 / elapsed;
                    p.eta_s = Some(p.bytes_total.saturating_sub(p.bytes_done) as f64 / rate);
                }
            }
        }
        p
    }

    fn verify_if_complete(
        &mut self,
        transport: &mut dyn Transport,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Option<Downloaded>, SyncError> {
        let complete = self.target.as_ref().is_some_and(|t| t.chunks.complete());
        if !complete {
            return Ok(None);
        }
        progress(&self.progress(Phase::Verifying));
        let Some(mut t) = self.target.take() else { return Ok(None) };
        let image = match t.chunks.assemble() {
            Ok(i) => i,
            Err(e) => {
                // A chunk file went bad on disk: it was deleted; fetch it again.
                tracing::warn!("state sync: {e}");
                self.target = Some(t);
                return Ok(None);
            }
        };
        let manifest = t.chunks.manifest().clone();
        match rebuild(&manifest, &image) {
            Ok((state, rebuild_t, recompute)) => {
                t.chunks.mark_ready()?;
                self.stats.seconds = self.started.elapsed().as_secs_f64();
                self.stats.peers_used = self.served_by.len();
                let mut p = self.progress(Phase::Done);
                // The target was taken above: `progress` reads that as discovering.
                p.phase = Phase::Done;
                p.target_height = Some(manifest.height);
                p.chunks_done = manifest.count();
                p.chunks_total = manifest.count();
                p.bytes_done = manifest.length;
                p.bytes_total = manifest.length;
                progress(&p);
                Ok(Some(Downloaded {
                    chunks: t.chunks,
                    blocks: t.blocks,
                    state,
                    image,
                    stats: self.stats.clone(),
                    rebuild: rebuild_t,
                    recompute,
                }))
            }
            Err(e) => {
                // Every chunk matched the manifest, but the manifest does not describe the
                // certified state: whoever offered it lied.
                self.stats.bad_targets += 1;
                let liars: Vec<String> =
                    self.groups.get(&t.digest).map(|g| g.peers.iter().cloned().collect()).unwrap_or_default();
                for p in liars {
                    self.ban(
                        transport,
                        &p,
                        format!("its manifest of height {} builds a wrong state: {e}", manifest.height),
                    );
                }
                self.groups.remove(&t.digest);
                t.chunks.discard()?;
                self.saved = None;
                self.first_offer = None;
                Ok(None)
            }
        }
    }
}

fn kind_name(a: &Answer) -> &'static str {
    match a {
        Answer::Manifest { .. } => "manifest",
        Answer::Chunk { .. } => "chunk",
        Answer::NoSnapshot { .. } => "no-snapshot",
        Answer::Busy { .. } => "busy",
    }
}
