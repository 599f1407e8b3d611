//! State sync inside the deterministic whole-node simulation (issue 18), with loss and a
//! Byzantine server.
//!
//! What the deterministic simulation provides (`bastion_consensus::sim`, seeded; the seed is
//! printed and `BASTION_SEED=<n>` replays it): four validators running Simplex and the real
//! exchange over commonware's simulated network with a lossy, jittery link, each executing the
//! synthetic workload into its own `Store` with the simulations' store configuration
//! (a snapshot every 40 blocks, 3 kept, the log pruned behind the oldest). Their data dirs are
//! kept after the run ([`Run::keep_dirs`]), and every finalized block is recorded as their
//! publishers received it (wire bytes, own finalization certificate, root).
//!
//! What runs after it, on wall-clock time: the state sync. [`sync`] is a blocking loop over a
//! blocking [`bastion_statesync::Transport`] (its `recv` waits with a timeout; the node drives
//! it from a thread of its own), so it cannot run as a task of commonware's deterministic
//! runtime, whose executor is single-threaded and whose clock only advances when tasks await it:
//! a blocking `recv` would stop the very executor that has to produce the reply. Its servers
//! are the validators' real data dirs: a [`bastion_statesync::Server`] on each validator's
//! snapshot directory, anchors read by `serve_range` from that validator's own (pruned) block
//! log with the certificates the validators published (the simulated validators keep no
//! certificate log of their own, so one is built from their publishers' stream). The transport
//! is the test harness's in-memory network made lossy ([`common::Loss`]): requests and replies
//! dropped, replies delayed past the syncer's timeout, reordered and duplicated, every draw
//! from a ChaCha RNG seeded from the simulation's seed. The n-th request always gets the same
//! fate, but which request is the n-th depends on the syncer's timing: a seed replays the
//! chain, the snapshots and the pruning exactly, the network's fates approximately.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bastion_consensus::{
    BlockLimits, CertChecker, CertLog, ChainBlock, Finalized, Published, Publisher, execute, serve_range,
    sim::{Run, check, link, seeds, sim_store_config, simulate_outcome},
};
use bastion_statesync::{
    Answer, Downloaded, Manifest, Phase, Progress, ServeConfig, SyncConfig, SyncError, install, sync,
    wire::MAX_ANCHOR_BYTES,
};
use bastion_store::Store;
use common::{Event, Loss, Net, Responder, altered, corrupt_chunks, serving, wrong_root};
use commonware_codec::Decode as _;
use commonware_utils::probability;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default seed (`BASTION_SEED` replaces it).
const SEED: u64 = 18;
/// Validators in the simulation.
const VALIDATORS: usize = 4;
/// Every validator finalizes at least this height: past three snapshots and a log pruned behind
/// the oldest.
const TARGET: u64 = 210;
/// The validator that serves dishonestly in the first case.
const BYZANTINE: usize = 3;
/// Bytes per chunk the servers cut snapshots into.
const CHUNK_BYTES: u32 = 2 << 10;

fn name(i: usize) -> String {
    format!("validator-{i}")
}

/// One finalized height as the validators' publishers received it.
#[derive(Clone, Debug)]
struct Block {
    wire: Vec<u8>,
    /// The block's own finalization certificate, from whichever validator had one.
    certificate: Option<Vec<u8>>,
    root: [u8; 32],
    /// Validators that published it.
    by: BTreeSet<usize>,
    /// Validators that published other bytes or another root at this height.
    conflicts: Vec<usize>,
}

type Record = Arc<Mutex<BTreeMap<u64, Block>>>;

/// Validator `i`'s publisher: records what it executed.
#[derive(Debug)]
struct Recorder {
    i: usize,
    record: Record,
}

impl Publisher for Recorder {
    fn finalized(&mut self, p: &Published<'_>) {
        let mut r = self.record.lock().unwrap();
        let b = r.entry(p.block.height_u64()).or_insert_with(|| Block {
            wire: p.wire.to_vec(),
            certificate: None,
            root: p.root,
            by: BTreeSet::new(),
            conflicts: Vec::new(),
        });
        if b.wire != p.wire[..] || b.root != p.root {
            b.conflicts.push(self.i);
        }
        if b.certificate.is_none() {
            b.certificate = p.certificate.map(<[u8]>::to_vec);
        }
        b.by.insert(self.i);
    }
}

/// The simulation's results, with the validators' data dirs reopened (fields drop in order:
/// the stores and the certificate log before their directories).
struct Simulated {
    seed: u64,
    ledgers: Vec<BTreeMap<u64, Finalized>>,
    checker: CertChecker,
    genesis: bastion_exchange::Genesis,
    limits: BlockLimits,
    published: BTreeMap<u64, Block>,
    /// A certificate log of every published certificate (what a node following the publishers
    /// keeps), and its directory.
    certs: CertLog,
    /// Each validator's store, reopened from its kept data dir.
    stores: Vec<Store>,
    _certs_dir: tempfile::TempDir,
    /// The validators' kept data dirs (`validator-<i>`).
    _root: tempfile::TempDir,
}

fn simulate() -> Simulated {
    let seed = seeds(SEED);
    let root = tempfile::tempdir().unwrap();
    let record: Record = Arc::default();
    let r = record.clone();
    let started = Instant::now();
    let o = simulate_outcome(Run {
        publisher: Some(Arc::new(move |i| {
            Some(Box::new(Recorder { i, record: r.clone() }) as Box<dyn Publisher>)
        })),
        keep_dirs: Some(root.path().to_path_buf()),
        ..Run::new(VALIDATORS as u32, seed, link(20, 10, probability!(0.85)), TARGET)
    });
    println!("simulated {TARGET} heights in {:.1} s (wall clock)", started.elapsed().as_secs_f64());
    check(&o.ledgers, TARGET);
    let published = std::mem::take(&mut *record.lock().unwrap());
    let top = o.ledgers.iter().map(|l| l.len() as u64).max().unwrap();
    assert_eq!(
        published.keys().copied().collect::<Vec<_>>(),
        (1..=top).collect::<Vec<_>>(),
        "every finalized height was published"
    );
    for (h, b) in &published {
        assert!(b.conflicts.is_empty(), "validators {:?} published another block at {h}", b.conflicts);
        for (i, l) in o.ledgers.iter().enumerate() {
            if let Some(f) = l.get(h) {
                assert_eq!(f.root, b.root, "validator {i}'s root at {h}");
            }
        }
    }
    let certified = published.values().filter(|b| b.certificate.is_some()).count();
    println!("{} heights published, {certified} with their own certificate", published.len());

    let certs_dir = tempfile::tempdir().unwrap();
    let mut certs = CertLog::open(certs_dir.path()).unwrap();
    for (h, b) in &published {
        certs.append(*h, b.certificate.as_deref()).unwrap();
    }
    certs.commit().unwrap();
    let stores = (0..VALIDATORS)
        .map(|i| Store::open(&root.path().join(name(i)), &o.genesis, sim_store_config()).unwrap().0)
        .collect();
    Simulated {
        seed,
        limits: *o.checker.limits(),
        ledgers: o.ledgers,
        checker: o.checker,
        genesis: o.genesis,
        published,
        certs,
        stores,
        _certs_dir: certs_dir,
        _root: root,
    }
}

impl Simulated {
    /// The certified range answer from `from` out of validator `i`'s block log.
    fn anchor(&self, i: usize, from: u64) -> Option<Vec<u8>> {
        serve_range(&self.stores[i], &self.certs, &self.limits, from, from, MAX_ANCHOR_BYTES)
    }

    /// Validator `i` serving its snapshots honestly.
    fn honest(&self, i: usize) -> Responder<'_> {
        serving(&self.stores[i].snapshot_dir(), serve_config(), move |h| self.anchor(i, h))
    }

    /// The snapshots in validator `i`'s data dir, newest first.
    fn snapshots(&self, i: usize) -> Vec<(u64, PathBuf)> {
        bastion_storage::snapshot::list_in(&self.stores[i].snapshot_dir()).unwrap()
    }

    /// Every validator's root at `h` (those that finalized it: at least three).
    fn roots(&self, h: u64) -> Vec<[u8; 32]> {
        let roots: Vec<[u8; 32]> = self.ledgers.iter().filter_map(|l| l.get(&h)).map(|f| f.root).collect();
        assert!(roots.len() >= VALIDATORS - 1, "only {} validators finalized {h}", roots.len());
        roots
    }

    /// Checks that `root` is every validator's root at `h`.
    fn agrees(&self, h: u64, root: &[u8; 32], what: &str) {
        for r in self.roots(h) {
            assert_eq!(&r, root, "seed {}: {what} at height {h}", self.seed);
        }
    }

    /// The validators' logs were pruned behind their snapshots: none holds the blocks after
    /// genesis any more, so a joiner cannot replay from there.
    fn logs_were_pruned(&self) {
        let every = sim_store_config().snapshot_every;
        for (i, store) in self.stores.iter().enumerate() {
            let first = store.log().first_height().unwrap();
            let snaps: Vec<u64> = self.snapshots(i).iter().map(|(h, _)| *h).collect();
            println!(
                "validator {i}: height {}, log from {first}, snapshots {snaps:?}",
                store.log().durable_height().unwrap()
            );
            assert!(first > every, "validator {i}'s log was not pruned: it starts at {first}");
            assert!(snaps.len() >= 2, "validator {i} keeps snapshots {snaps:?}");
            assert!(snaps.iter().all(|h| *h >= first - 1), "validator {i} cannot anchor {snaps:?}");
            assert!(self.anchor(i, 1).is_none(), "validator {i} still serves the chain from height 1");
        }
    }
}

fn serve_config() -> ServeConfig {
    ServeConfig { chunk_bytes: CHUNK_BYTES, ..ServeConfig::default() }
}

/// Small timeouts (drops cost 100 ms and the peer's 2 s backoff); a discovery window longer than
/// the 2 s after which a lost manifest request is asked again, so every server's offer counts.
fn sync_config(give_up_after: Duration) -> SyncConfig {
    SyncConfig {
        request_timeout: Duration::from_millis(100),
        discover: Duration::from_millis(2_500),
        give_up_after: Some(give_up_after),
        ..SyncConfig::default()
    }
}

fn run_sync(
    net: &mut Net<'_>,
    checker: &CertChecker,
    data_dir: &Path,
    cfg: &SyncConfig,
) -> (Result<Downloaded, SyncError>, Progress) {
    let mut last = Progress::default();
    let r = sync(net, checker, data_dir, cfg, &AtomicBool::new(false), &mut |p| last = p.clone());
    (r, last)
}

/// A joiner syncs from the validators' real snapshots over a lossy network where one of the four
/// servers corrupts its chunks, installs, follows the rest of the chain and has the validators'
/// root at every height from its snapshot to the end of the run. Then, with only dishonest
/// servers, the sync gives up naming each refusal.
#[test]
fn a_joiner_state_syncs_from_a_lossy_simulated_chain_despite_a_byzantine_server() {
    let started = Instant::now();
    let s = simulate();
    s.logs_were_pruned();
    joins_past_a_byzantine_server(&s);
    gives_up_with_only_dishonest_servers(&s);
    println!("seed {}: {:.1} s in all (wall clock)", s.seed, started.elapsed().as_secs_f64());
}

fn joins_past_a_byzantine_server(s: &Simulated) {
    let mut net = Net::new().lossy(Loss::new(s.seed));
    for i in 0..VALIDATORS {
        let r = if i == BYZANTINE { corrupt_chunks(s.honest(i)) } else { s.honest(i) };
        net = net.peer(&name(i), r);
    }
    let joiner = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let (r, progress) = run_sync(&mut net, &s.checker, joiner.path(), &sync_config(Duration::from_secs(30)));
    let d = r.unwrap();
    let m = d.chunks.manifest().clone();
    let loss = net.loss.clone().unwrap().stats;
    println!(
        "synced height {} ({} bytes, {} chunks) in {:.1} s: {:?}; network {loss:?}",
        m.height,
        m.length,
        m.count(),
        t.elapsed().as_secs_f64(),
        d.stats
    );

    // The snapshot: far above genesis, the newest the validators can anchor, theirs byte for byte.
    let every = sim_store_config().snapshot_every;
    assert!(m.height >= 3 * every, "snapshot at {}", m.height);
    let newest = (0..VALIDATORS)
        .filter(|i| *i != BYZANTINE)
        .filter_map(|i| s.snapshots(i).into_iter().find(|(h, _)| s.anchor(i, h + 1).is_some()))
        .map(|(h, _)| h)
        .max()
        .unwrap();
    assert_eq!(m.height, newest, "the newest anchored snapshot is chosen");
    s.agrees(m.height, &m.root, "the manifest's root");
    assert_eq!(d.state.recompute_root(), m.root);
    let path = &s.snapshots(0).into_iter().find(|(h, _)| *h == m.height).unwrap().1;
    let snapshot = bastion_storage::Snapshot::open(path, bastion_exchange::IMAGE_LAYOUT).unwrap();
    assert_eq!(&d.image[..], snapshot.payload(), "the image is validator 0's snapshot");
    assert_eq!(m, Manifest::of(m.height, m.root, m.layout, snapshot.payload(), CHUNK_BYTES));
    assert!(m.count() > 8, "{} chunks: the test needs more than the requests in flight", m.count());

    // The Byzantine server was caught and refused; the honest ones served everything.
    let penalized: BTreeMap<String, String> = net.penalized();
    assert_eq!(penalized.keys().cloned().collect::<Vec<_>>(), [name(BYZANTINE)], "{penalized:?}");
    let why = &penalized[&name(BYZANTINE)];
    assert!(why.contains("does not match the manifest"), "{why}");
    assert_eq!(progress.phase, Phase::Done);
    assert_eq!(progress.refused.keys().cloned().collect::<Vec<_>>(), [name(BYZANTINE)]);
    assert!(d.stats.bad_chunks >= 1 && d.stats.bad_offers == 0 && d.stats.bad_targets == 0, "{:?}", d.stats);
    assert_eq!(d.stats.chunks_fetched, m.count());
    assert_eq!(d.stats.peers_used, VALIDATORS - 1, "every honest server served chunks");
    let banned_at = net.penalized_at(&name(BYZANTINE)).unwrap();
    assert!(net.chunk_requests(&name(BYZANTINE)).iter().all(|(at, _)| *at < banned_at));
    // The loss was real: round trips were lost and chunks asked again.
    assert!(loss.requests_dropped + loss.replies_dropped + loss.replies_late > 0, "{loss:?}");
    let asked: usize = (0..VALIDATORS).map(|i| net.chunk_requests(&name(i)).len()).sum();
    assert!(asked as u32 > m.count(), "{asked} chunk requests for {} chunks", m.count());
    let manifests_asked = net
        .events
        .iter()
        .filter(|e| matches!(e, Event::Sent { request: bastion_statesync::Request::Manifest { .. }, .. }))
        .count();
    println!("{manifests_asked} manifest requests, {asked} chunk requests");

    // Install: the snapshot, then the anchor's blocks (each checked against its parent root).
    let mut store = Store::open(joiner.path(), &s.genesis, sim_store_config()).unwrap().0;
    let mut certs = CertLog::open(joiner.path()).unwrap();
    for b in &d.blocks {
        let h = b.block.height_u64();
        s.agrees(h - 1, b.block.parent_state_root(), "the anchor's parent root");
    }
    let inst =
        install::install_from(joiner.path(), &mut store, Some(&mut certs), d.chunks, &d.blocks).unwrap();
    assert_eq!(inst.height, m.height);
    assert!(inst.tip > inst.height);
    s.agrees(inst.tip, &inst.root, "the joiner's root after the anchor");

    // Follow: certified ranges (to the first certified height 32 blocks on) out of the honest
    // validators' logs, in turn, while they reach.
    let honest: Vec<usize> = (0..VALIDATORS).filter(|i| *i != BYZANTINE).collect();
    let mut turn = 0;
    let mut ranges = 0;
    loop {
        let from = store.state().height + 1;
        let Some(answer) = (0..honest.len())
            .map(|k| honest[(turn + k) % honest.len()])
            .find_map(|i| serve_range(&s.stores[i], &s.certs, &s.limits, from, from + 31, 1 << 20))
        else {
            break;
        };
        turn += 1;
        ranges += 1;
        for b in s.checker.check_range(&answer, from).unwrap() {
            let h = b.block.height_u64();
            let out = execute(&mut store, &b.block).unwrap();
            s.agrees(h, &out.root, "the joiner's root");
            certs.append(h, b.certificate.as_deref()).unwrap();
        }
        store.commit().unwrap();
        certs.commit().unwrap();
    }
    let certified_end = store.state().height;
    // The tail no validator's log can prove yet (no certificate after it, or not durable): the
    // blocks as the validators' publishers executed them, to the end of the run.
    let top = *s.published.keys().last().unwrap();
    for h in certified_end + 1..=top {
        let wire = &s.published[&h].wire;
        let block = ChainBlock::decode_cfg(wire[1..].to_vec(), &s.limits).unwrap();
        let out = execute(&mut store, &block).unwrap();
        s.agrees(h, &out.root, "the joiner's root");
    }
    store.commit().unwrap();
    println!(
        "joiner: snapshot {} + anchor to {}, {ranges} ranges to {certified_end}, published tail to {top}",
        inst.height, inst.tip
    );
    assert!(certified_end >= TARGET, "the validators' logs proved only up to {certified_end}");
    assert_eq!(store.state().height, top);
    s.agrees(top, &store.state().recompute_root(), "the joiner's recomputed root");
    drop(store);
    let store = Store::open(joiner.path(), &s.genesis, sim_store_config()).unwrap().0;
    assert_eq!(store.state().height, top, "the joiner reopens at the end");
    s.agrees(top, &store.state().state_root(), "the reopened joiner's root");
}

/// Every server dishonest, each its own way: corrupt chunks, a manifest root other than the
/// certified one, an anchor carrying a genuine certificate of another height, an anchor that
/// does not start after the snapshot. The sync gives up naming every refusal.
fn gives_up_with_only_dishonest_servers(s: &Simulated) {
    // A genuine certificate of another height, for the forged anchor.
    let (other_height, other_cert) =
        s.published.iter().rev().find_map(|(h, b)| Some((*h, b.certificate.clone()?))).unwrap();
    let swap_certificate = move |a: Answer| match a {
        Answer::Manifest { manifest, mut anchor } => {
            let own = s.published.range(manifest.height + 1..).find_map(|(_, b)| b.certificate.clone());
            let own = own.filter(|c| anchor.ends_with(c)).expect("the anchor ends with its certificate");
            assert_ne!(own, other_cert, "the forged anchor carries another height's certificate");
            anchor.truncate(anchor.len() - own.len());
            anchor.extend_from_slice(&other_cert);
            Answer::Manifest { manifest, anchor }
        }
        other => other,
    };
    let unlinked = move |a: Answer| match a {
        Answer::Manifest { manifest, .. } => {
            let anchor = s.anchor(2, manifest.height + 2).unwrap();
            Answer::Manifest { manifest, anchor }
        }
        other => other,
    };
    let mut net = Net::new()
        .lossy(Loss::new(s.seed.wrapping_add(1)))
        .peer(&name(0), corrupt_chunks(s.honest(0)))
        .peer(&name(1), wrong_root(s.honest(1)))
        .peer(&name(2), altered(s.honest(2), swap_certificate))
        .peer(&name(3), altered(s.honest(3), unlinked));
    let joiner = tempfile::tempdir().unwrap();
    let limit = Duration::from_secs(6);
    let (r, progress) = run_sync(&mut net, &s.checker, joiner.path(), &sync_config(limit));
    let Err(SyncError::GaveUp { seconds, why }) = r else { panic!("expected GaveUp, got {r:?}") };
    println!("gave up after {seconds:.1} s (forged anchor: certificate of {other_height}): {why}");
    assert!(seconds >= limit.as_secs_f64());
    let penalized = net.penalized();
    assert_eq!(penalized.len(), VALIDATORS, "{penalized:?}");
    assert_eq!(progress.refused.len(), VALIDATORS, "{:?}", progress.refused);
    let expect = [
        (0, "does not match the manifest"),
        (1, "differs from the certified root"),
        (2, "anchor refused"),
        (3, "anchor refused"),
    ];
    for (i, reason) in expect {
        assert!(why.contains(&format!("{}: refused (", name(i))), "{}: {why}", name(i));
        assert!(penalized[&name(i)].contains(reason), "{}: {}", name(i), penalized[&name(i)]);
        assert!(progress.refused[&name(i)].contains(reason), "{}: {}", name(i), progress.refused[&name(i)]);
    }
    assert!(common::chunk_files(joiner.path()).is_empty(), "no corrupt chunk was written");
}
