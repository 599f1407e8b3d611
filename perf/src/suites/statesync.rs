//! Suite `statesync`: what joining the chain from a certified snapshot costs (issue 18).
//!
//! The source is a real node data dir: a store holding a large state (1M funded accounts, then
//! 1,000 blocks of 50 random orders, cancels and withdrawals, so ~20k accounts hold positions
//! and resting orders; quick: 20k accounts, 40 blocks), its snapshot at height `h` taken by
//! the store, the block `h + 1` executed on it and certified by a quorum (3 of 4) of a BLS
//! multisig validator set, and the certificate log. The syncer trusts only that validator set
//! (`CertChecker`), as a node trusts its genesis file.
//!
//! - `serve-manifest-cold`: a fresh `Server`'s first manifest answer: it opens the snapshot
//!   (map, CRC-32C of every byte), cuts the manifest (BLAKE3 of every 1 MiB chunk) and reads
//!   the anchor from the logs (`serve_range`). What the first syncing peer costs a server.
//! - `serve-manifest` / `serve-chunk`: a warm server's answers to a manifest request and to
//!   chunk requests at the default chunk size (1 MiB), cycling over every chunk, no per-peer
//!   rate limit (so every request is served, not answered busy); MiB/s served in `params`.
//! - `sync-4-peers`: `bastion_statesync::sync` from 4 honest servers over an in-memory
//!   transport (default `SyncConfig`: 8 requests in flight, 2 per peer), unlimited serving, to a
//!   verified state: the anchor's certificate checked, every chunk's BLAKE3 checked and written
//!   durably (a synced file per chunk), every chunk read back and checked again, the state
//!   rebuilt and its root recomputed from every record and compared with the certified one. The
//!   servers answer inside the transport's `send` on the same thread, so their time is measured
//!   there and reported apart (`serving`): on a network it is the peers' CPU, not the joiner's.
//!   Phases per run: `download` (start to the syncer's `Verifying` progress: offers, chunks,
//!   durable writes, serving), `assemble` (read back and re-check, the `ready` mark),
//!   `rebuild` and `recompute` (`Downloaded`'s fields). Each run starts from an empty sync dir.
//! - `sync-4-peers-default-limits`: the same with `ServeConfig::default()` on the servers
//!   (32 MiB/s per peer, 8 MiB burst): what a joiner sees from 4 default peers.
//! - Baselines, same image, same run: `baseline-blake3` (BLAKE3 of the image in memory: the
//!   floor of the chunk checks), `baseline-own-disk-load` (open the snapshot file, CRC-32C of
//!   every byte, rebuild the state: what a node restarting from its own disk does, trusting
//!   it), `baseline-own-disk-load-recompute` (that plus the root recomputed from every record:
//!   a node checking its own disk as hard as state sync checks a peer's). Ratios are of p50
//!   times, sync over baseline.
//!
//! Files go to `$BASTION_PERF_DIR` or `target/perf-statesync` (a disk, not tmpfs: the chunk
//! files' fsyncs must mean something), removed afterwards.
//!
//! Goals (full runs, for the 1M-account state; why each threshold is in `goals`):
//! - the syncer's own share of the download (serving time taken out) reaches at least
//!   128 MiB/s: the 4 peers' default serving budget, so the budget and not the joiner's CPU
//!   bounds a sync from 4 default peers;
//! - a verified sync of the 1M-account state within 10 s, under one snapshot interval at the
//!   devnet's block rate;
//! - at most 3x the time of loading the same snapshot from the node's own disk;
//! - serving chunks at 512 MiB/s or more on one core, so four peers syncing at their default
//!   budget take at most a quarter of one of a validator's two cores.

use crate::harness::{self, Ctx, Measurement, Percentiles, Ratio, Report};
use bastion_consensus::{
    BlockLimits, CertChecker, CertLog, ChainBlock, Multisig, execute, genesis_block, serve_range,
};
use bastion_exchange::testkit::{PathKind, Workload};
use bastion_exchange::{Genesis, IMAGE_LAYOUT, State};
use bastion_statesync::wire::{DEFAULT_CHUNK_BYTES, MAX_ANCHOR_BYTES};
use bastion_statesync::{Answer, Phase, Request, ServeConfig, Server, SyncConfig, Transport, sync};
use bastion_storage::Snapshot;
use bastion_store::{Store, StoreConfig};
use commonware_codec::Encode as _;
use commonware_consensus::simplex::scheme::bls12381_multisig;
use commonware_consensus::simplex::types::{Finalization, Finalize, Proposal};
use commonware_consensus::types::{Epoch, Round, View};
use commonware_cryptography::bls12381::primitives::variant::MinSig;
use commonware_cryptography::certificate::mocks::Fixture;
use commonware_cryptography::sha256::Digest;
use commonware_parallel::Sequential;
use commonware_utils::{TestRng, non_empty};
use serde_json::json;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// The validator set's namespace (any fixed value: the fixture signs and the checker verifies
/// under it).
const NS: &[u8] = b"bastion:perf-statesync";
/// The syncing node's name on the in-memory network.
const ME: &str = "joiner";
/// Honest servers the joiner syncs from.
const PEERS: usize = 4;
/// Default per-peer serving budget (`ServeConfig::default`), for the goals.
const PEER_BUDGET_MIB_S: f64 = 32.0;
const MIB: f64 = (1u64 << 20) as f64;

fn scratch() -> Result<PathBuf, String> {
    let base = std::env::var_os("BASTION_PERF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/perf-statesync"));
    let dir = base.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// The validator set (4 BLS multisig keys from a fixed seed).
fn fixture() -> Fixture<Multisig> {
    bls12381_multisig::fixture::<MinSig, _>(&mut TestRng::new(7), NS, 4)
}

/// A finalization of `digest` at `view` signed by a quorum (3 of 4) of `f`.
fn certify(f: &Fixture<Multisig>, view: u64, digest: Digest) -> Result<Vec<u8>, String> {
    let proposal = Proposal::new(Round::new(Epoch::new(0), View::new(view)), View::new(view - 1), digest);
    let votes: Vec<_> = f
        .schemes
        .iter()
        .take(3)
        .map(|s| Finalize::sign(s, proposal.clone()).ok_or("a fixture key did not sign"))
        .collect::<Result<_, _>>()?;
    let cert = Finalization::from_finalizes(&f.schemes[0], non_empty![@&votes], &Sequential)
        .map_err(|e| format!("the quorum's votes did not aggregate: {e:?}"))?;
    Ok(cert.encode().to_vec())
}

/// A serving node's data dir: the store (snapshot at `height`, block `height + 1` executed and
/// certified) and its certificate log.
struct Source {
    store: Store,
    certs: CertLog,
    limits: BlockLimits,
    height: u64,
    root: [u8; 32],
    snapshot: PathBuf,
    image_bytes: u64,
    accounts: usize,
    positions: usize,
}

impl Source {
    /// The certified range answer from `from` (what a node's server offers as an anchor).
    fn anchor(&self, from: u64) -> Option<Vec<u8>> {
        serve_range(&self.store, &self.certs, &self.limits, from, from, MAX_ANCHOR_BYTES)
    }
}

fn build_source(ctx: &Ctx, dir: &Path, f: &Fixture<Multisig>) -> Result<(Source, CertChecker), String> {
    let accounts = ctx.size(1_000_000, 20_000);
    let trading = ctx.size(1_000, 40);
    let g = Genesis::devnet();
    let limits = BlockLimits::default();
    let t = Instant::now();
    let cfg = StoreConfig { snapshot_every: 0, ..StoreConfig::default() };
    let (mut store, _) = Store::open(dir, &g, cfg).map_err(|e| e.to_string())?;
    let mut w = Workload::new(ctx.seed, accounts, PathKind::Calm, &g);
    let funding = w.funding_txs(5_000_000_000);
    for chunk in funding.chunks(100_000) {
        let b = w.block_with(chunk.to_vec());
        store.apply(&b).map_err(|e| e.to_string())?;
    }
    for _ in 0..trading {
        let b = w.next_block(store.state(), 50);
        store.apply(&b).map_err(|e| e.to_string())?;
    }
    store.commit().map_err(|e| e.to_string())?;
    let meta = store.snapshot_now().map_err(|e| e.to_string())?.ok_or("the store took no snapshot")?;
    let (height, root) = (meta.height, meta.root);
    // Block `height + 1`, executed on the snapshot's state and certified: the anchor. The
    // state was built from unsigned exchange blocks (1M signed deposits would only slow the
    // setup), so there is no chain block `height` to link to; the anchor's parent digest is the
    // genesis block's. Without a trust point the syncer checks only the anchor's certificate
    // and that its parent root is the snapshot's root, so this costs it nothing less.
    let genesis = genesis_block(&g)?.id();
    let block = ChainBlock::new(genesis, root, w.block_with(Vec::new()), Vec::new(), &limits)
        .map_err(|e| format!("anchor block: {e}"))?;
    execute(&mut store, &block)?;
    let mut certs = CertLog::open(dir)?;
    certs.append(height + 1, Some(&certify(f, height + 1, block.id())?))?;
    store.commit().map_err(|e| e.to_string())?;
    certs.commit()?;
    let state = store.state();
    let positions =
        state.accounts.iter().map(|(_, a)| a.positions.iter().filter(|p| p.size != 0).count()).sum();
    let source = Source {
        accounts: state.accounts.len(),
        positions,
        store,
        certs,
        limits,
        height,
        root,
        snapshot: meta.path,
        image_bytes: meta.payload_len,
    };
    eprintln!(
        "  built the source: {} accounts, {} open positions, snapshot at height {height} of {:.1} MiB in {:.1} s",
        source.accounts,
        source.positions,
        source.image_bytes as f64 / MIB,
        t.elapsed().as_secs_f64()
    );
    let checker = CertChecker::with_verifier(f.verifier.clone(), limits, genesis);
    Ok((source, checker))
}

/// The in-memory network: each request is answered by its peer's `Server` inside `send`, the
/// replies queued in order; the time spent answering is kept apart (`serving`).
struct Net<'a> {
    peers: Vec<(String, &'a Server)>,
    source: &'a Source,
    queue: VecDeque<(u64, String, Result<Vec<u8>, String>)>,
    next_id: u64,
    serving: Duration,
    penalized: Vec<String>,
}

impl Transport for Net<'_> {
    fn peers(&mut self) -> Vec<String> {
        self.peers.iter().map(|(n, _)| n.clone()).collect()
    }

    fn send(&mut self, peer: &str, request: Vec<u8>) -> Result<u64, String> {
        let (_, server) = self.peers.iter().find(|(n, _)| n == peer).ok_or("no such peer")?;
        let source = self.source;
        let t = Instant::now();
        let reply = server.answer(ME, &request, &|h| source.anchor(h));
        self.serving += t.elapsed();
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back((id, peer.to_string(), reply.ok_or_else(|| "unavailable".to_string())));
        Ok(id)
    }

    fn recv(&mut self, timeout: Duration) -> Option<(u64, String, Result<Vec<u8>, String>)> {
        let reply = self.queue.pop_front();
        if reply.is_none() {
            // Nothing in flight: every peer is backing off (busy answers under a rate limit).
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
        reply
    }

    fn penalize(&mut self, peer: &str, why: &str) {
        self.penalized.push(format!("{peer}: {why}"));
    }
}

/// One sync's figures.
#[derive(Clone, Debug)]
struct Run {
    total: Duration,
    download: Duration,
    serving: Duration,
    rebuild: Duration,
    recompute: Duration,
    bytes_downloaded: u64,
    chunks: u32,
    peers_used: usize,
}

impl Run {
    /// Read-back and re-check of the chunks, the `ready` mark (what is left of the total).
    fn assemble(&self) -> Duration {
        self.total.saturating_sub(self.download + self.rebuild + self.recompute)
    }
}

/// One sync from `servers` into an empty sync dir under `joiner`, checked against the source.
fn sync_once(
    servers: &[Server],
    source: &Source,
    checker: &CertChecker,
    joiner: &Path,
) -> Result<Run, String> {
    bastion_statesync::chunks::clear(joiner).map_err(|e| e.to_string())?;
    let mut net = Net {
        peers: servers.iter().enumerate().map(|(i, s)| (format!("peer-{i}"), s)).collect(),
        source,
        queue: VecDeque::new(),
        next_id: 1,
        serving: Duration::ZERO,
        penalized: Vec::new(),
    };
    let stop = AtomicBool::new(false);
    let cfg = SyncConfig { give_up_after: Some(Duration::from_secs(120)), ..SyncConfig::default() };
    let t = Instant::now();
    let mut verifying = None;
    let done = sync(&mut net, checker, joiner, &cfg, &stop, &mut |p| {
        if p.phase == Phase::Verifying && verifying.is_none() {
            verifying = Some(t.elapsed());
        }
    })
    .map_err(|e| e.to_string())?;
    let total = t.elapsed();
    if !net.penalized.is_empty() {
        return Err(format!("honest peers were penalized: {}", net.penalized.join("; ")));
    }
    if done.state.height != source.height || done.state.state_root() != source.root {
        return Err(format!("synced height {} with another root than the source's", done.state.height));
    }
    let run = Run {
        total,
        download: verifying.unwrap_or(total),
        serving: net.serving,
        rebuild: done.rebuild,
        recompute: done.recompute,
        bytes_downloaded: done.stats.bytes_downloaded,
        chunks: done.stats.chunks_fetched,
        peers_used: done.stats.peers_used,
    };
    drop(done);
    Ok(run)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `warmup` untimed syncs, then `runs` timed ones; a measurement whose ops are image bytes (so
/// `ops_per_s` is bytes/s) with one latency sample per sync and the phases' medians in
/// `params`. Returns the timed runs too.
fn sync_series(
    name: &str,
    warmup: u64,
    runs: u64,
    serve: &ServeConfig,
    source: &Source,
    checker: &CertChecker,
    joiner: &Path,
) -> Result<(Measurement, Vec<Run>), String> {
    let mut out = Vec::new();
    for i in 0..warmup + runs {
        // Fresh, warmed servers each run: the snapshot opened and cached by another peer's
        // manifest request (so the joiner's first request does not pay the open, and under a
        // rate limit its byte budget starts full).
        let servers: Vec<Server> =
            (0..PEERS).map(|_| Server::new(&source.store.snapshot_dir(), serve.clone())).collect();
        for s in &servers {
            s.answer("warm", &Request::Manifest { height: None }.encode(), &|h| source.anchor(h))
                .ok_or("a server refused a manifest request")?;
        }
        let run = sync_once(&servers, source, checker, joiner)?;
        eprintln!(
            "  {name} run {i}: {:.2} s (download {:.2} s of which serving {:.2} s, assemble {:.2} s, rebuild {:.2} s, recompute {:.2} s){}",
            secs(run.total),
            secs(run.download),
            secs(run.serving),
            secs(run.assemble()),
            secs(run.rebuild),
            secs(run.recompute),
            if i < warmup { " [warm-up]" } else { "" }
        );
        if i >= warmup {
            out.push(run);
        }
    }
    bastion_statesync::chunks::clear(joiner).map_err(|e| e.to_string())?;
    let mut h = harness::histogram();
    for r in &out {
        h.saturating_record((r.total.as_nanos() as u64).max(1));
    }
    let elapsed: Duration = out.iter().map(|r| r.total).sum();
    let ops = source.image_bytes * out.len() as u64;
    let med = |f: fn(&Run) -> Duration| median(out.iter().map(f).collect());
    let (total, download, serving) = (med(|r| r.total), med(|r| r.download), med(|r| r.serving));
    let syncer_download = med(|r| r.download.saturating_sub(r.serving));
    let mib = source.image_bytes as f64 / MIB;
    let params = json!({
        "peers": PEERS,
        "image_bytes": source.image_bytes,
        "image_mib": mib,
        "accounts": source.accounts,
        "open_positions": source.positions,
        "chunk_bytes": serve.chunk_bytes,
        "serve_bytes_per_s": serve.bytes_per_s,
        "serve_burst_bytes": serve.burst_bytes,
        "parallel": SyncConfig::default().parallel,
        "per_peer": SyncConfig::default().per_peer,
        "ops_are": "image bytes (ops_per_s is bytes/s of verified state)",
        "median_s": {
            "total": secs(total),
            "download": secs(download),
            "serving_within_download": secs(serving),
            "download_syncer_side": secs(syncer_download),
            "assemble": secs(med(Run::assemble)),
            "rebuild": secs(med(|r| r.rebuild)),
            "recompute": secs(med(|r| r.recompute)),
            "syncer_side_total": secs(med(|r| r.total.saturating_sub(r.serving))),
        },
        "mib_per_s": {
            "verified_end_to_end": mib / secs(total),
            "download": mib / secs(download),
            "download_syncer_side": mib / secs(syncer_download),
        },
        "runs": out.iter().map(|r| json!({
            "total_s": secs(r.total),
            "download_s": secs(r.download),
            "serving_s": secs(r.serving),
            "assemble_s": secs(r.assemble()),
            "rebuild_s": secs(r.rebuild),
            "recompute_s": secs(r.recompute),
            "bytes_downloaded": r.bytes_downloaded,
            "chunks_fetched": r.chunks,
            "peers_used": r.peers_used,
        })).collect::<Vec<_>>(),
    });
    let m = Measurement {
        name: name.into(),
        ops,
        elapsed_ns: elapsed.as_nanos() as u64,
        ops_per_s: if elapsed.is_zero() { f64::INFINITY } else { ops as f64 / elapsed.as_secs_f64() },
        latency: Some(Percentiles::from_histogram(&h)),
        unit: "sync".into(),
        params,
    };
    Ok((m, out))
}

/// The server's answers: a fresh server's first manifest, a warm server's manifests and chunks.
/// Returns the chunk MiB/s served.
fn serving(ctx: &Ctx, report: &mut Report, source: &Source) -> Result<f64, String> {
    let dir = source.store.snapshot_dir();
    let unlimited = ServeConfig { bytes_per_s: 0, ..ServeConfig::default() };
    let manifest_req = Request::Manifest { height: None }.encode();
    let anchor = |h: u64| source.anchor(h);
    // Answers are decoded and checked in the warm-up calls only: decoding is the joiner's cost
    // (`decode-chunk-answer`), not the server's.
    let mut err = None;
    let mut check = |bytes: Option<&Vec<u8>>, want_chunk: bool| match bytes.map(|b| Answer::decode(b)) {
        Some(Ok(Answer::Manifest { .. })) if !want_chunk => {}
        Some(Ok(Answer::Chunk { .. })) if want_chunk => {}
        other => err = Some(format!("unexpected answer: {other:?}")),
    };
    let params = json!({ "image_bytes": source.image_bytes, "chunk_bytes": unlimited.chunk_bytes });
    report.push(harness::latency("serve-manifest-cold", 1, ctx.size(5, 3), params.clone(), |i| {
        let server = Server::new(&dir, unlimited.clone());
        let answer = server.answer(ME, &manifest_req, &anchor);
        if i < 1 {
            check(answer.as_ref(), false);
        }
    }));
    let server = Server::new(&dir, unlimited.clone());
    report.push(harness::latency("serve-manifest", 10, ctx.size(1_000, 100), params.clone(), |i| {
        let answer = server.answer(ME, &manifest_req, &anchor);
        if i < 10 {
            check(answer.as_ref(), false);
        }
    }));
    let chunks = source.image_bytes.div_ceil(u64::from(unlimited.chunk_bytes)).max(1);
    let warmup = chunks;
    let mut served = 0u64;
    let mut last = Vec::new();
    let m = harness::latency("serve-chunk", warmup, ctx.size(2_000, 200), params.clone(), |i| {
        let req = Request::Chunk { height: source.height, index: (i % chunks) as u32 }.encode();
        let answer = server.answer(ME, &req, &anchor);
        if i >= warmup {
            served += answer.as_ref().map_or(0, |a| a.len() as u64);
        } else {
            check(answer.as_ref(), true);
            if i == 0 {
                last = answer.unwrap_or_default();
            }
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let mib_s = served as f64 / MIB / (m.elapsed_ns as f64 / 1e9);
    let mut m = m;
    if let Some(p) = m.params.as_object_mut() {
        p.insert("mib_per_s".into(), json!(mib_s));
        p.insert("chunks_in_image".into(), json!(chunks));
    }
    report.push(m);
    // The joiner's decode of one full chunk answer (before its BLAKE3 check).
    report.push(harness::latency("decode-chunk-answer", 10, ctx.size(500, 50), params, |_| {
        std::hint::black_box(Answer::decode(std::hint::black_box(&last)).is_ok());
    }));
    report.note(format!(
        "serving: {mib_s:.0} MiB/s of 1 MiB chunk answers on one core (copy out of the mapped snapshot, \
         postcard encode); a cold server's first manifest opens and checksums the {:.1} MiB snapshot",
        source.image_bytes as f64 / MIB
    ));
    Ok(mib_s)
}

/// Baselines on the same image: BLAKE3 in memory, own-disk load, own-disk load + recompute.
fn baselines(ctx: &Ctx, report: &mut Report, source: &Source) -> Result<(), String> {
    let rounds = ctx.size(5, 3);
    let bytes = source.image_bytes;
    let image = Snapshot::open(&source.snapshot, IMAGE_LAYOUT).map_err(|e| e.to_string())?.payload().to_vec();
    let params = json!({ "image_bytes": bytes, "ops_are": "image bytes" });
    report.push(harness::rounds("baseline-blake3", "image", 1, rounds, bytes, params.clone(), |_| {
        std::hint::black_box(blake3::hash(std::hint::black_box(&image)));
    }));
    drop(image);
    let mut err = None;
    let load = |check_root: bool| -> Result<(), String> {
        let snap = Snapshot::open(&source.snapshot, IMAGE_LAYOUT).map_err(|e| e.to_string())?;
        let state = State::from_image_bytes(snap.payload()).map_err(|e| e.to_string())?;
        if check_root && state.recompute_root() != source.root {
            return Err("the recomputed root differs from the snapshot's".into());
        }
        drop(std::hint::black_box(state));
        Ok(())
    };
    report.push(harness::rounds("baseline-own-disk-load", "load", 1, rounds, bytes, params.clone(), |_| {
        if let Err(e) = load(false) {
            err = Some(e);
        }
    }));
    report.push(harness::rounds(
        "baseline-own-disk-load-recompute",
        "load",
        1,
        rounds,
        bytes,
        params,
        |_| {
            if let Err(e) = load(true) {
                err = Some(e);
            }
        },
    ));
    err.map_or(Ok(()), Err)
}

/// Records `numerator p50 / denominator p50` (time: above 1, the numerator is slower).
fn time_ratio(report: &mut Report, name: &str, numerator: &str, denominator: &str) -> Option<f64> {
    let n = report.get(numerator)?.latency.as_ref()?.p50_ns as f64;
    let d = report.get(denominator)?.latency.as_ref()?.p50_ns as f64;
    let value = n / d.max(1.0);
    eprintln!("  ratio {name}: {value:.3} ({numerator} / {denominator}, p50 time)");
    report.ratios.push(Ratio {
        name: name.into(),
        numerator: numerator.into(),
        denominator: denominator.into(),
        metric: "p50_ns".into(),
        value,
    });
    Some(value)
}

fn measure(ctx: &Ctx, report: &mut Report, dir: &Path) -> Result<(), String> {
    let f = fixture();
    let (source, checker) = build_source(ctx, &dir.join("source"), &f)?;
    let joiner = dir.join("joiner");
    let mib = source.image_bytes as f64 / MIB;
    report.note(format!(
        "state: {} accounts, {} open positions, image of {mib:.1} MiB ({} chunks of {} KiB) at height {}",
        source.accounts,
        source.positions,
        source.image_bytes.div_ceil(u64::from(DEFAULT_CHUNK_BYTES)),
        DEFAULT_CHUNK_BYTES >> 10,
        source.height
    ));

    let serve_mib_s = serving(ctx, report, &source)?;
    baselines(ctx, report, &source)?;

    let unlimited = ServeConfig { bytes_per_s: 0, ..ServeConfig::default() };
    let (m, runs) = sync_series("sync-4-peers", 1, ctx.size(5, 2), &unlimited, &source, &checker, &joiner)?;
    report.push(m);
    let (m, _) = sync_series(
        "sync-4-peers-default-limits",
        0,
        ctx.size(2, 1),
        &ServeConfig::default(),
        &source,
        &checker,
        &joiner,
    )?;
    report.push(m);

    let total = median(runs.iter().map(|r| r.total).collect());
    let syncer_download = median(runs.iter().map(|r| r.download.saturating_sub(r.serving)).collect());
    let serving_t = median(runs.iter().map(|r| r.serving).collect());
    let recompute = median(runs.iter().map(|r| r.recompute).collect());
    let rebuild = median(runs.iter().map(|r| r.rebuild).collect());
    let assemble = median(runs.iter().map(Run::assemble).collect());
    let overhead = time_ratio(report, "sync-over-own-disk-load", "sync-4-peers", "baseline-own-disk-load");
    time_ratio(
        report,
        "sync-over-own-disk-load-recompute",
        "sync-4-peers",
        "baseline-own-disk-load-recompute",
    );
    time_ratio(
        report,
        "own-disk-load-recompute-over-load",
        "baseline-own-disk-load-recompute",
        "baseline-own-disk-load",
    );
    let share = secs(recompute) / secs(total).max(1e-9);
    report.ratios.push(Ratio {
        name: "recompute-share-of-sync".into(),
        numerator: "sync-4-peers recompute (median)".into(),
        denominator: "sync-4-peers total (median)".into(),
        metric: "seconds".into(),
        value: share,
    });
    let limited = report
        .get("sync-4-peers-default-limits")
        .and_then(|m| m.params["mib_per_s"]["verified_end_to_end"].as_f64())
        .unwrap_or(f64::NAN);
    report.note(format!(
        "sync from {PEERS} peers, {mib:.1} MiB: {:.2} s to a verified state ({:.0} MiB/s); download {:.2} s of which \
         serving {:.2} s (the joiner's side {:.2} s = {:.0} MiB/s), assemble {:.2} s, rebuild {:.2} s, recompute \
         {:.2} s ({:.0}% of the total); with the servers' default limits ({PEERS} x {PEER_BUDGET_MIB_S} MiB/s) \
         {limited:.0} MiB/s",
        secs(total),
        mib / secs(total),
        secs(median(runs.iter().map(|r| r.download).collect())),
        secs(serving_t),
        secs(syncer_download),
        mib / secs(syncer_download).max(1e-9),
        secs(assemble),
        secs(rebuild),
        secs(recompute),
        share * 100.0
    ));

    if ctx.quick {
        report.note("quick run: goals are for the full 1M-account state and are not checked");
        return Ok(());
    }
    // 4 peers at the default per-peer serving budget offer 128 MiB/s; below that the joiner's
    // CPU, not the peers' budget, would bound a default sync. Serving time is the peers' CPU on
    // a network, so it is taken out; rebuild and recompute come after the download and do not
    // compete with it.
    let budget = PEER_BUDGET_MIB_S * PEERS as f64;
    let rate = mib / secs(syncer_download).max(1e-9);
    report.goal(
        "sync-download-keeps-up-with-4-default-peers",
        "the joiner's share of the download >= 128 MiB/s (4 peers x the default 32 MiB/s serving budget)",
        format!("{rate:.0} MiB/s"),
        rate >= budget,
    );
    // Nodes snapshot every 1,000 blocks (`StoreConfig::default`); the devnet finalizes ~85
    // blocks/s on this box (issue 5), so a snapshot interval is ~11.8 s. A join slower than
    // that starts a snapshot behind, and peers rotate its target away (3 kept) after ~3.
    report.goal(
        "verified-sync-within-a-snapshot-interval",
        "a verified sync of the 1M-account state (serving included) in <= 10 s",
        format!("{:.2} s", secs(total)),
        total <= Duration::from_secs(10),
    );
    // The sync does the load's work (rebuild) plus what the load trusts: a recompute of the
    // root over every record (of the order of a rebuild), BLAKE3 of every byte twice (GB/s), one
    // durable write and a read-back of the image (issue 4 measured write + fsync at ~0.6x a
    // load's speed). About 2.6x; at most 3x.
    let overhead = overhead.unwrap_or(f64::INFINITY);
    report.goal(
        "sync-overhead-vs-own-disk-load",
        "sync p50 <= 3x the p50 of loading the same snapshot from the node's own disk",
        format!("{overhead:.2}x"),
        overhead <= 3.0,
    );
    // A validator has 2 cores for consensus and execution; 4 peers syncing from it at their
    // default budget (128 MiB/s) must take at most a quarter of one.
    report.goal(
        "serving-cost",
        "chunk answers >= 512 MiB/s on one core (4 peers at the default budget take <= 25% of a core)",
        format!("{serve_mib_s:.0} MiB/s"),
        serve_mib_s >= 4.0 * budget,
    );
    Ok(())
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let dir = scratch()?;
    let result = measure(ctx, report, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}
