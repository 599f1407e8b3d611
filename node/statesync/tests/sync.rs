//! State sync end to end over a real certified chain: blocks with signed deposits and orders,
//! executed by the real exchange into real stores, certified by a BLS multisig quorum of the
//! genesis validator set; peers answering through the crate's `Server` over an in-memory
//! `Transport` (honest, or altering the honest answers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bastion_consensus::{CertLog, execute};
use bastion_statesync::{
    Answer, Downloaded, Manifest, Phase, Progress, Request, ServeConfig, Server, SyncConfig, SyncError,
    TrustPoint,
    chunks::{ChunkStore, SYNC_DIR},
    file, install, sync,
};
use bastion_store::Store;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

fn cfg() -> SyncConfig {
    SyncConfig {
        request_timeout: Duration::from_secs(5),
        give_up_after: Some(Duration::from_secs(30)),
        ..SyncConfig::default()
    }
}

/// Runs a sync into `data_dir`; returns its result and the last progress it reported.
fn run(
    net: &mut Net<'_>,
    data_dir: &Path,
    cfg: &SyncConfig,
    stop: &AtomicBool,
) -> (Result<Downloaded, SyncError>, Progress) {
    let checker = checker();
    let mut last = Progress::default();
    let r = sync(net, &checker, data_dir, cfg, stop, &mut |p| last = p.clone());
    (r, last)
}

fn go() -> AtomicBool {
    AtomicBool::new(false)
}

/// Executes the chain from `from` to the end, checking the source's root at every height.
fn follow_to_end(store: &mut Store, from: u64) {
    let c = chain();
    assert_eq!(store.state().height + 1, from);
    for h in from..=CHAIN_LEN {
        let out = execute(store, c.block(h)).unwrap();
        assert_eq!(out.root, c.roots[h as usize], "root at height {h}");
        assert_eq!(store.state().state_root(), c.roots[h as usize], "root at height {h}");
        if h % 16 == 0 {
            store.commit().unwrap();
        }
    }
    store.commit().unwrap();
}

/// The store in `dir` after a restart is at the end of the chain with its root.
fn reopens_at_the_end(dir: &Path) {
    let store = open_store(dir);
    assert_eq!(store.state().height, CHAIN_LEN);
    assert_eq!(store.state().state_root(), chain().roots[CHAIN_LEN as usize]);
}

fn count_for(image_len: usize) -> u32 {
    image_len.div_ceil(CHUNK as usize) as u32
}

/// The verified chunks on disk for the target saved in `data_dir`: (its digest, chunk files that
/// verify, chunk files that do not).
fn on_disk(data_dir: &Path) -> Option<([u8; 32], u32, u32)> {
    let (m, _, _) = ChunkStore::saved(data_dir)?;
    let (mut good, mut bad) = (0, 0);
    for f in chunk_files(data_dir) {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        let index: u32 = name.trim_start_matches("chunk-").parse().unwrap();
        if m.chunk_ok(index, &std::fs::read(&f).unwrap()) {
            good += 1;
        } else {
            bad += 1;
        }
    }
    Some((m.digest(), good, bad))
}

#[test]
fn honest_sync_from_three_peers_installs_and_follows_with_the_source_roots() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60]);
    let mut net = Net::new().peer("a", honest(&src)).peer("b", honest(&src)).peer("c", honest(&src));
    let node = tempfile::tempdir().unwrap();
    let (r, progress) = run(&mut net, node.path(), &cfg(), &go());
    let d = r.unwrap();
    let m = d.chunks.manifest().clone();
    assert_eq!((m.height, m.root), (60, c.roots[60]));
    assert!(m.count() > 3, "{} chunks: the test needs several", m.count());
    assert_eq!(m.count(), count_for(src.image(60).len()));
    assert_eq!(d.state.recompute_root(), c.roots[60]);
    assert_eq!(&d.image[..], &src.image(60)[..]);
    let heights: Vec<u64> = d.blocks.iter().map(|b| b.block.height_u64()).collect();
    assert_eq!(heights, (61..=64).collect::<Vec<_>>(), "the anchor ends at the first certified height");
    assert!(d.blocks.last().unwrap().certificate.is_some());
    let s = &d.stats;
    assert_eq!((s.chunks_fetched, s.chunks_resumed, s.chunks_discarded), (m.count(), 0, 0));
    assert_eq!((s.bad_chunks, s.bad_offers, s.bad_targets), (0, 0, 0));
    assert_eq!(s.bytes_downloaded, m.length);
    assert_eq!(s.peers_used, 3);
    assert_eq!(progress.phase, Phase::Done);
    assert_eq!((progress.chunks_done, progress.chunks_total), (m.count(), m.count()));
    assert!(progress.refused.is_empty());
    assert!(net.penalized().is_empty());
    for p in ["a", "b", "c"] {
        assert!(!net.chunk_requests(p).is_empty(), "{p} was asked for chunks");
    }

    let mut store = open_store(node.path());
    let mut certs = CertLog::open(node.path()).unwrap();
    let inst = install::install_from(node.path(), &mut store, Some(&mut certs), d.chunks, &d.blocks).unwrap();
    assert_eq!((inst.height, inst.tip, inst.root), (60, 64, c.roots[64]));
    assert_eq!(store.state().recompute_root(), c.roots[64]);
    assert!(!node.path().join(SYNC_DIR).exists(), "the sync directory is removed after the install");
    assert_eq!(certs.get(64), c.certs[63], "the anchor's certificate is kept");
    follow_to_end(&mut store, 65);
    drop(store);
    reopens_at_the_end(node.path());
}

#[test]
fn dishonest_peers_are_penalized_and_the_sync_finishes_from_the_honest_one() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60]);
    let mut net = Net::new()
        .peer("corrupt", corrupt_chunks(honest(&src)))
        .peer("wrong-root", wrong_root(honest(&src)))
        .peer("honest", honest(&src));
    let node = tempfile::tempdir().unwrap();
    let (r, progress) = run(&mut net, node.path(), &cfg(), &go());
    let d = r.unwrap();
    let m = d.chunks.manifest().clone();
    assert_eq!((m.height, m.root), (60, c.roots[60]));
    assert_eq!(d.state.recompute_root(), c.roots[60]);

    let penalized = net.penalized();
    assert_eq!(penalized.keys().map(String::as_str).collect::<Vec<_>>(), ["corrupt", "wrong-root"]);
    assert!(penalized["corrupt"].contains("does not match the manifest"), "{}", penalized["corrupt"]);
    assert!(
        penalized["wrong-root"].contains("differs from the certified root"),
        "{}",
        penalized["wrong-root"]
    );
    assert_eq!(progress.refused.keys().map(String::as_str).collect::<Vec<_>>(), ["corrupt", "wrong-root"]);
    assert!(progress.refused["corrupt"].contains("does not match the manifest"));
    assert!(progress.refused["wrong-root"].contains("differs from the certified root"));
    let s = &d.stats;
    assert!(s.bad_chunks >= 1);
    assert_eq!((s.bad_offers, s.bad_targets, s.chunks_fetched), (1, 0, m.count()));
    assert_eq!(s.peers_used, 1, "every verified chunk came from the honest peer");
    // After its ban the corrupt peer was asked nothing; the wrong-root one never for a chunk.
    let banned_at = net.penalized_at("corrupt").unwrap();
    assert!(net.chunk_requests("corrupt").iter().all(|(at, _)| *at < banned_at));
    assert!(net.chunk_requests("wrong-root").is_empty());
    let from_honest: BTreeSet<u32> = net.chunk_requests("honest").iter().map(|(_, i)| *i).collect();
    assert_eq!(from_honest.len() as u32, m.count(), "the honest peer was asked for every chunk");

    let mut store = open_store(node.path());
    let mut certs = CertLog::open(node.path()).unwrap();
    let inst = install::install_from(node.path(), &mut store, Some(&mut certs), d.chunks, &d.blocks).unwrap();
    assert_eq!(inst.root, c.roots[inst.tip as usize]);
    follow_to_end(&mut store, inst.tip + 1);
}

#[test]
fn only_dishonest_peers_make_the_sync_give_up_naming_them() {
    let src = Source::new(CHAIN_LEN, &[60]);
    let mut net =
        Net::new().peer("corrupt", corrupt_chunks(honest(&src))).peer("wrong-root", wrong_root(honest(&src)));
    net.deadline = Instant::now() + Duration::from_secs(15);
    let node = tempfile::tempdir().unwrap();
    let cfg = SyncConfig { give_up_after: Some(Duration::from_millis(500)), ..cfg() };
    let (r, _) = run(&mut net, node.path(), &cfg, &go());
    match r {
        Err(SyncError::GaveUp { why, seconds }) => {
            assert!(seconds >= 0.5);
            assert!(
                why.contains("corrupt: refused (chunk") && why.contains("does not match the manifest"),
                "{why}"
            );
            assert!(why.contains("wrong-root: refused (manifest root"), "{why}");
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }
    assert_eq!(net.penalized().len(), 2);
}

/// A liar serves the manifest of an image with one record changed (chunk hashes consistent with
/// it) under the true root and the true certified anchor: its offer verifies and so does every
/// chunk; the recomputed root betrays it. It is alone at first; an honest peer (offering the same
/// height, or another) connects once the liar was penalized.
#[test]
fn a_lying_manifest_is_caught_at_rebuild_and_an_honest_peer_finishes() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60, 100]);
    let lie = lying_image(&src.image(60));
    let lie_chunks = count_for(lie.len());
    for honest_height in [60u64, 100] {
        let mut net = Net::new()
            .peer("liar", liar(honest_with(&src, |h| h == 61), 60, lie.clone()))
            .later("honest", honest_with(&src, move |h| h == honest_height + 1));
        net.join_on_penalty.insert("liar".into(), vec!["honest".into()]);
        let node = tempfile::tempdir().unwrap();
        let (r, progress) = run(&mut net, node.path(), &cfg(), &go());
        let d = r.unwrap();
        let m = d.chunks.manifest().clone();
        assert_eq!((m.height, m.root), (honest_height, c.roots[honest_height as usize]));
        assert_eq!(d.state.recompute_root(), c.roots[honest_height as usize]);
        assert_eq!(d.stats.bad_targets, 1, "the liar's target was rebuilt and refused");
        assert_eq!(d.stats.bad_chunks, 0, "every chunk of the lie matched its manifest");
        // The liar's target was chosen and fetched in full before the honest peer existed.
        let asked: BTreeSet<u32> = net.chunk_requests("liar").iter().map(|(_, i)| *i).collect();
        assert_eq!(asked.len() as u32, lie_chunks);
        let banned_at = net.penalized_at("liar").unwrap();
        assert!(net.chunk_requests("honest").iter().all(|(at, _)| *at > banned_at));
        let penalized = net.penalized();
        assert_eq!(penalized.keys().map(String::as_str).collect::<Vec<_>>(), ["liar"]);
        assert!(penalized["liar"].contains("builds a wrong state"), "{}", penalized["liar"]);
        assert!(penalized["liar"].contains("recomputed"), "{}", penalized["liar"]);
        assert!(progress.refused.contains_key("liar"));

        let mut store = open_store(node.path());
        let mut certs = CertLog::open(node.path()).unwrap();
        let inst =
            install::install_from(node.path(), &mut store, Some(&mut certs), d.chunks, &d.blocks).unwrap();
        assert_eq!(inst.root, c.roots[inst.tip as usize]);
        assert_eq!(store.state().recompute_root(), c.roots[inst.tip as usize]);
        follow_to_end(&mut store, inst.tip + 1);
    }
}

/// Both connected from the start; the liar offers the highest snapshot (a real one, with its real
/// anchor), so its target is chosen first; after its rebuild fails the honest, lower one wins.
#[test]
fn a_liar_offering_the_highest_snapshot_is_chosen_first_then_refused() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60, 100]);
    let lie = lying_image(&src.image(100));
    let mut net =
        Net::new().peer("honest", honest_with(&src, |h| h == 61)).peer("liar", liar(honest(&src), 100, lie));
    let node = tempfile::tempdir().unwrap();
    let (r, _) = run(&mut net, node.path(), &cfg(), &go());
    let d = r.unwrap();
    let first_chunk = net.events.iter().find_map(|e| match e {
        Event::Sent { peer, request: Request::Chunk { height, .. } } => Some((peer.clone(), *height)),
        _ => None,
    });
    assert_eq!(first_chunk, Some(("liar".to_string(), 100)), "the liar's target was chosen first");
    assert_eq!(d.stats.bad_targets, 1);
    assert_eq!(net.penalized().keys().map(String::as_str).collect::<Vec<_>>(), ["liar"]);
    let m = d.chunks.manifest();
    assert_eq!((m.height, m.root), (60, c.roots[60]));
    assert_eq!(d.state.recompute_root(), c.roots[60]);
}

/// Stops the sync in `data_dir` once `k` chunk answers arrived (all honest: `k` more chunks on
/// disk).
fn stopped_after(src: &Source, data_dir: &Path, k: u32) {
    let before = chunk_files(data_dir).len() as u32;
    let stop = go();
    let mut net = Net::new().peer("a", honest(src)).peer("b", honest(src));
    net.stop_after_chunks = Some((k, &stop));
    let (r, _) = run(&mut net, data_dir, &cfg(), &stop);
    assert!(matches!(r, Err(SyncError::Stopped)), "{r:?}");
    assert_eq!(chunk_files(data_dir).len() as u32, before + k);
}

#[test]
fn a_stopped_sync_resumes_from_its_verified_chunks() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60]);
    let node = tempfile::tempdir().unwrap();
    let k = 7;
    stopped_after(&src, node.path(), k);
    // Stopped twice: nothing lost, nothing counted twice.
    stopped_after(&src, node.path(), k);
    assert_eq!(chunk_files(node.path()).len() as u32, 2 * k);
    let mut net = Net::new().peer("a", honest(&src)).peer("b", honest(&src));
    let (r, _) = run(&mut net, node.path(), &cfg(), &go());
    let d = r.unwrap();
    let m = d.chunks.manifest().clone();
    assert_eq!(d.stats.chunks_resumed, 2 * k);
    assert_eq!(d.stats.chunks_discarded, 0);
    assert_eq!(d.stats.chunks_fetched, m.count() - 2 * k);
    let asked = net.chunk_requests("a").len() + net.chunk_requests("b").len();
    assert_eq!(asked as u32, m.count() - 2 * k, "resumed chunks are not asked again");
    assert_eq!(d.state.recompute_root(), c.roots[60]);
    let mut store = open_store(node.path());
    let inst = install::install_from(node.path(), &mut store, None, d.chunks, &d.blocks).unwrap();
    assert_eq!(inst.root, c.roots[inst.tip as usize]);
    follow_to_end(&mut store, inst.tip + 1);
}

#[test]
fn torn_and_wrong_chunk_files_are_discarded_and_fetched_again() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60]);
    let node = tempfile::tempdir().unwrap();
    let k = 8;
    stopped_after(&src, node.path(), k);
    let files = chunk_files(node.path());
    // Torn: half of it. Wrong: garbage of the right length. A leftover temporary file.
    let torn = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &torn[..torn.len() / 2]).unwrap();
    std::fs::write(&files[2], vec![0x5a; CHUNK as usize]).unwrap();
    std::fs::write(files[3].with_extension("tmp"), b"half a chunk").unwrap();
    let mut net = Net::new().peer("a", honest(&src));
    let (r, _) = run(&mut net, node.path(), &cfg(), &go());
    let d = r.unwrap();
    let m = d.chunks.manifest().clone();
    assert_eq!(d.stats.chunks_discarded, 2);
    assert_eq!(d.stats.chunks_resumed, k - 2);
    assert_eq!(d.stats.chunks_fetched, m.count() - (k - 2));
    assert_eq!(d.state.recompute_root(), c.roots[60]);
    let mut store = open_store(node.path());
    let inst = install::install_from(node.path(), &mut store, None, d.chunks, &d.blocks).unwrap();
    assert_eq!(inst.root, c.roots[inst.tip as usize]);
}

/// The seeds of the kill campaign: `BASTION_SEED=<n>` replays one; `BASTION_LONG=1` runs 400.
fn campaign_seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("BASTION_SEED") {
        return vec![s.trim().parse().expect("BASTION_SEED is a number")];
    }
    let n = if std::env::var("BASTION_LONG").is_ok_and(|v| v == "1") { 400 } else { 40 };
    (1..=n).collect()
}

/// A random network: 1 to 3 honest peers offering height 60, maybe an honest one offering 100,
/// maybe a peer corrupting the chunks of 60, maybe one lying about the root.
fn campaign_net<'a>(rng: &mut Rng, src: &'a Source) -> Net<'a> {
    let mut net = Net::new();
    for i in 0..1 + rng.below(3) {
        net = net.peer(&format!("h60-{i}"), honest_with(src, |h| h == 61));
    }
    if rng.chance(30) {
        net = net.peer("h100", honest(src));
    }
    if rng.chance(30) {
        net = net.peer("corrupt", corrupt_chunks(honest_with(src, |h| h == 61)));
    }
    if rng.chance(30) {
        net = net.peer("wrong-root", wrong_root(honest(src)));
    }
    // Any order.
    for i in (1..net.active.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        net.active.swap(i, j);
    }
    net
}

/// Damages the chunk files on disk: one torn, one overwritten, or a stray temporary file.
fn damage(rng: &mut Rng, data_dir: &Path) {
    let files = chunk_files(data_dir);
    if files.is_empty() {
        return;
    }
    let f = &files[rng.below(files.len() as u64) as usize];
    match rng.below(3) {
        0 => {
            let bytes = std::fs::read(f).unwrap();
            std::fs::write(f, &bytes[..rng.below(bytes.len() as u64) as usize]).unwrap();
        }
        1 => {
            let mut bytes = std::fs::read(f).unwrap();
            let i = rng.below(bytes.len() as u64) as usize;
            bytes[i] ^= 1 << rng.below(8);
            std::fs::write(f, &bytes).unwrap();
        }
        _ => std::fs::write(f.with_extension("tmp"), b"torn").unwrap(),
    }
}

/// One seed: syncs stopped at random points (several restarts, chunk files damaged between some),
/// then one of: a normal install; a crash after the state was marked ready, before the install
/// (the next start finishes it, maybe after a chunk went bad on disk); a crash inside the install
/// after the store took the snapshot, before the anchor was executed; or after some anchor blocks.
/// Every seed ends at the source's root, and every installed state's recomputed root is the
/// certified one.
fn campaign_run(src: &Source, seed: u64, tally: &mut Tally) {
    let c = chain();
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let checker = checker();
    let node = tempfile::tempdir().unwrap();
    let dir = node.path();
    let mut store = open_store(dir);
    let mut certs = CertLog::open(dir).unwrap();
    let restarts = rng.below(4);
    let mut attempt = 0;
    let d = loop {
        attempt += 1;
        assert!(attempt < 30, "seed {seed}: no end after {attempt} runs");
        if attempt > 1 && rng.chance(25) {
            damage(&mut rng, dir);
        }
        let expect = on_disk(dir);
        let stop = go();
        let mut net = campaign_net(&mut rng, src);
        if attempt <= restarts {
            if rng.chance(20) {
                net.stop_after_answers = Some((1 + rng.below(3) as u32, &stop));
            } else {
                net.stop_after_chunks = Some((1 + rng.below(30) as u32, &stop));
            }
        }
        let (r, _) = run(&mut net, dir, &cfg(), &stop);
        assert_eq!(store.state().height, 0, "seed {seed}: a sync installed nothing");
        match r {
            Err(SyncError::Stopped) if attempt <= restarts => {
                tally.stopped += 1;
                continue;
            }
            Ok(d) => {
                let m = d.chunks.manifest();
                tally.penalized += net.penalized().len() as u32;
                match expect {
                    Some((digest, good, bad)) if digest == m.digest() => {
                        tally.resumed += u32::from(good > 0);
                        tally.discarded += u32::from(bad > 0);
                        assert_eq!(
                            (d.stats.chunks_resumed, d.stats.chunks_discarded),
                            (good, bad),
                            "seed {seed}: resumed what was on disk"
                        );
                    }
                    _ => {
                        assert_eq!((d.stats.chunks_resumed, d.stats.chunks_discarded), (0, 0), "seed {seed}")
                    }
                }
                assert_eq!(d.stats.chunks_fetched + d.stats.chunks_resumed, m.count(), "seed {seed}");
                break d;
            }
            Err(e) => panic!("seed {seed}: run {attempt}: {e}"),
        }
    };
    let h = d.chunks.manifest().height;
    assert_eq!(d.chunks.manifest().root, c.roots[h as usize], "seed {seed}");
    assert_eq!(d.state.recompute_root(), c.roots[h as usize], "seed {seed}: verified state");
    let reopen = |store: Store, certs: CertLog| {
        drop(store);
        drop(certs);
        (open_store(dir), CertLog::open(dir).unwrap())
    };
    let mode = rng.below(4) as usize;
    tally.modes[mode] += 1;
    match mode {
        0 => {
            let inst = install::install_from(dir, &mut store, Some(&mut certs), d.chunks, &d.blocks).unwrap();
            assert_eq!(inst.height, h, "seed {seed}");
        }
        1 => {
            // Crash after `mark_ready`, before the install.
            drop(d);
            (store, certs) = reopen(store, certs);
            if rng.chance(30) {
                // ... and a chunk went bad on disk meanwhile: nothing to finish, sync again.
                tally.bad_after_ready += 1;
                let files = chunk_files(dir);
                std::fs::write(&files[rng.below(files.len() as u64) as usize], b"bad").unwrap();
                let done = install::finish_pending(dir, &mut store, Some(&mut certs), &checker).unwrap();
                assert!(done.is_none(), "seed {seed}: a damaged target is not installed");
                assert_eq!(store.state().height, 0, "seed {seed}");
                let mut net = Net::new().peer("a", honest(src)).peer("b", honest_with(src, |h| h == 61));
                let (r, _) = run(&mut net, dir, &cfg(), &go());
                let d = r.unwrap();
                assert_eq!(d.chunks.manifest().height, h, "seed {seed}: the saved target is preferred");
                assert_eq!(d.stats.chunks_fetched, 1, "seed {seed}: only the bad chunk is fetched again");
                (store, certs) = reopen(store, certs);
            }
            let inst = install::finish_pending(dir, &mut store, Some(&mut certs), &checker).unwrap();
            assert_eq!(inst.map(|i| i.height), Some(h), "seed {seed}: the pending install is finished");
        }
        2 => {
            // Crash inside the install: the store took the snapshot, the anchor is not executed.
            store.install_synced(d.state, &d.image).unwrap();
            drop(d.chunks);
            (store, certs) = reopen(store, certs);
            assert_eq!(store.state().height, h, "seed {seed}");
            assert_eq!(store.state().state_root(), c.roots[h as usize], "seed {seed}");
            let inst = install::finish_pending(dir, &mut store, Some(&mut certs), &checker).unwrap();
            assert_eq!(inst.map(|i| i.height), Some(h), "seed {seed}: the pending install is finished");
        }
        _ => {
            // Crash inside the install after some anchor blocks (committed or not).
            store.install_synced(d.state, &d.image).unwrap();
            certs.reset().unwrap();
            let j = rng.below(d.blocks.len() as u64 + 1) as usize;
            for b in &d.blocks[..j] {
                execute(&mut store, &b.block).unwrap();
                certs.append(b.block.height_u64(), b.certificate.as_deref()).unwrap();
            }
            if rng.chance(50) {
                store.commit().unwrap();
                certs.commit().unwrap();
            }
            drop(d.chunks);
            (store, certs) = reopen(store, certs);
            let at = store.state().height;
            assert!((h..=h + j as u64).contains(&at), "seed {seed}: reopened at {at}");
            assert_eq!(store.state().state_root(), c.roots[at as usize], "seed {seed}");
            let inst = install::finish_pending(dir, &mut store, Some(&mut certs), &checker).unwrap();
            if at == h {
                assert_eq!(inst.map(|i| i.height), Some(h), "seed {seed}");
            } else {
                assert!(inst.is_none(), "seed {seed}: the store is past the target");
            }
        }
    }
    let at = store.state().height;
    assert!(at > h, "seed {seed}: the anchor was executed");
    assert_eq!(store.state().state_root(), c.roots[at as usize], "seed {seed}");
    assert_eq!(store.state().recompute_root(), c.roots[at as usize], "seed {seed}: installed state");
    assert!(!dir.join(SYNC_DIR).exists(), "seed {seed}: the sync directory is removed");
    follow_to_end(&mut store, at + 1);
    drop(store);
    drop(certs);
    reopens_at_the_end(dir);
}

#[test]
fn kill_campaign_every_seed_ends_at_the_source_root() {
    let src = Source::new(CHAIN_LEN, &[60, 100]);
    let seeds = campaign_seeds();
    let started = Instant::now();
    let mut tally = Tally::default();
    for &seed in &seeds {
        eprintln!("kill campaign seed {seed} (replay: BASTION_SEED={seed})");
        campaign_run(&src, seed, &mut tally);
    }
    println!("kill campaign: {} seeds in {:.1} s: {tally:?}", seeds.len(), started.elapsed().as_secs_f64());
    if seeds.len() >= 40 {
        // The campaign reaches every path it is meant to.
        assert!(tally.modes.iter().all(|n| *n > 0), "{tally:?}");
        assert!(tally.stopped > 0 && tally.resumed > 0 && tally.discarded > 0, "{tally:?}");
        assert!(tally.bad_after_ready > 0 && tally.penalized > 0, "{tally:?}");
    }
}

/// What a kill campaign exercised.
#[derive(Debug, Default)]
struct Tally {
    /// Runs stopped before the end.
    stopped: u32,
    /// Final runs that resumed chunks from disk / discarded bad ones.
    resumed: u32,
    discarded: u32,
    /// Dishonest peers penalized in final runs.
    penalized: u32,
    /// Seeds per ending: installed at once, crash after ready, crash after the snapshot, crash
    /// after some anchor blocks.
    modes: [u32; 4],
    /// Crashes after ready with a chunk damaged before the restart.
    bad_after_ready: u32,
}

#[test]
fn a_trust_point_pins_the_snapshot_and_a_wrong_one_is_refused() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60, 100]);
    let hex: String = c.digest(60).iter().map(|b| format!("{b:02x}")).collect();
    let trust = TrustPoint::parse(60, &hex).unwrap();
    assert_eq!(trust, TrustPoint { height: 60, hash: c.digest(60) });
    assert_eq!(
        d_block_parent(&src, 60),
        c.digest(60),
        "the trust hash is block 60's digest, the anchor's first block's parent"
    );

    // Right: height 60 though 100 is newer.
    let mut net = Net::new().peer("a", honest(&src)).peer("b", honest(&src));
    let node = tempfile::tempdir().unwrap();
    let (r, _) = run(&mut net, node.path(), &SyncConfig { trust: Some(trust), ..cfg() }, &go());
    let d = r.unwrap();
    assert_eq!((d.chunks.manifest().height, d.chunks.manifest().root), (60, c.roots[60]));
    assert_eq!(d.state.recompute_root(), c.roots[60]);
    assert!(net.penalized().is_empty());

    // A wrong hash (block 59's): every offer refused, no peer penalized (their chain is the
    // certified one: the trust point is wrong), then give up saying why.
    let wrong = TrustPoint { height: 60, hash: c.digest(59) };
    let mut net = Net::new().peer("a", honest(&src)).peer("b", honest(&src));
    let node = tempfile::tempdir().unwrap();
    let short = SyncConfig { trust: Some(wrong), give_up_after: Some(Duration::from_millis(400)), ..cfg() };
    let (r, _) = run(&mut net, node.path(), &short, &go());
    let Err(SyncError::GaveUp { why, .. }) = r else { panic!("expected GaveUp, got {r:?}") };
    assert!(net.penalized().is_empty(), "{:?}", net.penalized());
    for p in ["a", "b"] {
        assert!(why.contains(&format!("{p}: block 60 is")) && why.contains("the trusted hash is"), "{why}");
    }
    assert!(chunk_files(node.path()).is_empty());

    // A height nobody serves: honest refusals, nobody penalized.
    let nowhere = TrustPoint { height: 50, hash: c.digest(50) };
    let mut net = Net::new().peer("a", honest(&src)).peer("b", honest(&src));
    let short = SyncConfig { trust: Some(nowhere), give_up_after: Some(Duration::from_millis(400)), ..cfg() };
    let (r, _) = run(&mut net, node.path(), &short, &go());
    let Err(SyncError::GaveUp { why, .. }) = r else { panic!("expected GaveUp, got {r:?}") };
    assert!(net.penalized().is_empty(), "{:?}", net.penalized());
    assert!(why.contains("a: no snapshot to offer") && why.contains("b: no snapshot to offer"), "{why}");
}

/// The parent digest of the first block of the anchor `src` offers for snapshot `h`.
fn d_block_parent(src: &Source, h: u64) -> [u8; 32] {
    let blocks = checker().check_range(&src.anchor(h + 1).unwrap(), h + 1).unwrap();
    let mut out = [0u8; 32];
    out.copy_from_slice(blocks[0].block.parent_digest().as_ref());
    out
}

fn untouched(store: &Store) {
    assert_eq!(store.state().height, 0);
    assert_eq!(store.state().state_root(), chain().roots[0]);
    assert!(bastion_storage::snapshot::list_in(&store.snapshot_dir()).unwrap().is_empty());
}

#[test]
fn export_and_import_move_a_verified_snapshot_and_refuse_tampering() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60]);
    let files = tempfile::tempdir().unwrap();
    let out = files.path().join("snapshot.bsync");
    let ex = file::export(&src.store, &src.certs, &limits(), &out).unwrap();
    assert_eq!((ex.height, ex.root, ex.block_hash), (60, c.roots[60], c.digest(60)));
    assert_eq!(ex.bytes, std::fs::metadata(&out).unwrap().len());
    let trust = TrustPoint { height: ex.height, hash: ex.block_hash };

    let node = tempfile::tempdir().unwrap();
    let mut store = open_store(node.path());
    let mut certs = CertLog::open(node.path()).unwrap();
    let inst = file::import(&mut store, Some(&mut certs), &checker(), &out, &trust).unwrap();
    assert_eq!((inst.height, inst.tip, inst.root), (60, 64, c.roots[64]));
    assert_eq!(store.state().recompute_root(), c.roots[64]);
    assert_eq!(certs.get(64), c.certs[63]);
    follow_to_end(&mut store, 65);

    // A wrong trust hash: refused, the store untouched.
    let node = tempfile::tempdir().unwrap();
    let mut store = open_store(node.path());
    let wrong = TrustPoint { height: 60, hash: c.digest(61) };
    let e = file::import(&mut store, None, &checker(), &out, &wrong).unwrap_err();
    assert!(matches!(&e, SyncError::Invalid(m) if m.contains("the trusted hash is")), "{e}");
    untouched(&store);
    // Another validator set's checker: the anchor does not verify.
    let e = file::import(&mut store, None, &foreign_checker(), &out, &trust).unwrap_err();
    assert!(e.to_string().contains("anchor refused"), "{e}");
    untouched(&store);

    // One byte flipped in the image: refused naming the chunk, the store untouched.
    let mut bytes = std::fs::read(&out).unwrap();
    let head = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
    let image_at = 20 + head;
    assert_eq!(bytes.len() - image_at, src.image(60).len());
    bytes[image_at + 1000] ^= 0x10;
    let bad = files.path().join("flipped.bsync");
    std::fs::write(&bad, &bytes).unwrap();
    let e = file::import(&mut store, None, &checker(), &bad, &trust).unwrap_err();
    assert!(e.to_string().contains("chunk 0 does not match its hash"), "{e}");
    untouched(&store);
    // Cut short.
    let short = files.path().join("short.bsync");
    std::fs::write(&short, &bytes[..image_at + 10]).unwrap();
    assert!(file::import(&mut store, None, &checker(), &short, &trust).is_err());
    untouched(&store);
}

#[test]
fn the_server_bounds_each_peer_and_serves_what_it_opened() {
    let src = Source::new(CHAIN_LEN, &[60]);
    let image = src.image(60);
    let anchor = |h: u64| src.anchor(h);
    // A copy of the snapshot in a directory of its own (deleted below).
    let snaps = tempfile::tempdir().unwrap();
    let path = src.snapshot_path(60);
    let copy = snaps.path().join(path.file_name().unwrap());
    std::fs::copy(&path, &copy).unwrap();

    // Unbounded: the manifest is the image's, every chunk matches it.
    let open = Server::new(snaps.path(), ServeConfig { bytes_per_s: 0, ..serve_config() });
    let ask = |server: &Server, peer: &str, r: Request| {
        Answer::decode(&server.answer(peer, &r.encode(), &anchor).unwrap()).unwrap()
    };
    let Answer::Manifest { manifest, anchor: a } = ask(&open, "p", Request::Manifest { height: None }) else {
        panic!("no manifest")
    };
    assert_eq!(manifest, Manifest::of(60, chain().roots[60], manifest.layout, &image, CHUNK));
    assert_eq!(a, src.anchor(61).unwrap());
    let mut rebuilt = Vec::new();
    for index in 0..manifest.count() {
        let Answer::Chunk { bytes, .. } = ask(&open, "p", Request::Chunk { height: 60, index }) else {
            panic!()
        };
        assert!(manifest.chunk_ok(index, &bytes));
        rebuilt.extend_from_slice(&bytes);
    }
    assert_eq!(rebuilt, image);
    // No anchor for it: not offered.
    let none = Server::new(snaps.path(), serve_config());
    let r = none.answer("p", &Request::Manifest { height: None }.encode(), &|_| None).unwrap();
    assert_eq!(Answer::decode(&r).unwrap(), Answer::NoSnapshot { newest: Some(60) });

    // 1 KiB/s per peer with a 2 KiB burst: the third chunk in a row is refused with the wait.
    let server = Server::new(
        snaps.path(),
        ServeConfig { chunk_bytes: CHUNK, bytes_per_s: 1024, burst_bytes: 2048, max_cached: 2 },
    );
    for index in 0..2 {
        assert!(matches!(ask(&server, "greedy", Request::Chunk { height: 60, index }), Answer::Chunk { .. }));
    }
    match ask(&server, "greedy", Request::Chunk { height: 60, index: 2 }) {
        Answer::Busy { retry_after_ms } => {
            assert!((500..=1000).contains(&retry_after_ms), "{retry_after_ms}")
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // Another peer is still served.
    let Answer::Chunk { bytes, .. } = ask(&server, "other", Request::Chunk { height: 60, index: 2 }) else {
        panic!("the other peer was refused")
    };
    assert_eq!(bytes, image[2048..3072]);
    // Unknown heights and indices.
    assert_eq!(
        ask(&server, "x", Request::Chunk { height: 59, index: 0 }),
        Answer::NoSnapshot { newest: Some(60) }
    );
    assert_eq!(
        ask(&server, "x", Request::Manifest { height: Some(59) }),
        Answer::NoSnapshot { newest: Some(60) }
    );
    assert_eq!(
        ask(&server, "x", Request::Chunk { height: 60, index: 100_000 }),
        Answer::NoSnapshot { newest: Some(60) }
    );

    // The file is deleted (rotated away) after it was opened: still served from the mapping.
    std::fs::remove_file(&copy).unwrap();
    let Answer::Chunk { bytes, .. } = ask(&server, "late", Request::Chunk { height: 60, index: 5 }) else {
        panic!("a cached snapshot was not served")
    };
    assert_eq!(bytes, image[5 * 1024..6 * 1024]);
    match ask(&server, "late-2", Request::Manifest { height: None }) {
        Answer::Manifest { manifest: m, .. } => assert_eq!(m, manifest),
        other => panic!("expected the cached manifest, got {other:?}"),
    }

    // Malformed requests: no answer, counted.
    assert_eq!(server.answer("x", b"garbage", &anchor), None);
    assert_eq!(server.answer("x", &[], &anchor), None);
    let mut trailing = Request::Manifest { height: None }.encode();
    trailing.push(0);
    assert_eq!(server.answer("x", &trailing, &anchor), None);
    let s = server.stats();
    assert_eq!(s.malformed, 3);
    assert_eq!(s.busy, 1);
    assert_eq!(s.chunks, 4);
    assert_eq!(s.manifests, 1);
    assert_eq!(s.unavailable, 3);
    assert_eq!(s.bytes, 4 * 1024);
}

/// Peers over their per-peer byte rate answer "busy": the syncer backs off and asks again, and
/// the sync completes.
#[test]
fn a_sync_from_rate_limited_servers_backs_off_and_completes() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60]);
    let slow = ServeConfig { chunk_bytes: CHUNK, bytes_per_s: 32 << 10, burst_bytes: 4 << 10, max_cached: 1 };
    let (a, b) = (Server::new(&src.snapshot_dir(), slow.clone()), Server::new(&src.snapshot_dir(), slow));
    let mut net = Net::new().peer("a", honest_on(&a, &src)).peer("b", honest_on(&b, &src));
    let node = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (r, _) = run(&mut net, node.path(), &cfg(), &go());
    let d = r.unwrap();
    assert_eq!(d.state.recompute_root(), c.roots[60]);
    let (sa, sb) = (a.stats(), b.stats());
    assert!(sa.busy + sb.busy > 0, "the servers refused some requests: {sa:?} {sb:?}");
    assert_eq!(sa.chunks + sb.chunks, u64::from(d.chunks.manifest().count()), "each chunk served once");
    assert!(net.penalized().is_empty(), "busy is not misbehaviour");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A manifest may name at most 65,536 chunks of 4 MiB (256 GiB), but no state image exceeds
/// 2 GiB. With the real root and a real certified anchor, a longer manifest would have a syncing
/// node download (and write to disk) up to 256 GiB from one Byzantine peer, and then allocate
/// that much to assemble it; an import file with such a manifest allocates it at once. Refused on
/// the wire and by `check_offer`.
#[test]
fn a_manifest_longer_than_any_image_is_refused() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60]);
    let chunk = bastion_statesync::wire::MAX_CHUNK_BYTES;
    let zeros = *blake3::hash(&vec![0u8; chunk as usize]).as_bytes();
    let count = bastion_statesync::wire::MAX_CHUNKS;
    let huge = Manifest {
        height: 60,
        root: c.roots[60],
        layout: bastion_exchange::IMAGE_LAYOUT,
        length: count as u64 * u64::from(chunk),
        chunk_bytes: chunk,
        chunks: vec![zeros; count],
    };
    let anchor = src.anchor(61).unwrap();
    let offered = bastion_statesync::check_offer(&checker(), huge.clone(), anchor.clone(), None);
    assert!(offered.is_err(), "a manifest of {} bytes was accepted", huge.length);
    let answer = Answer::Manifest { manifest: huge, anchor };
    assert!(Answer::decode(&answer.encode()).is_err());
    // The largest image the exchange writes still validates.
    let big = bastion_statesync::wire::MAX_IMAGE_BYTES;
    let m = Manifest {
        height: 60,
        root: c.roots[60],
        layout: bastion_exchange::IMAGE_LAYOUT,
        length: big,
        chunk_bytes: chunk,
        chunks: vec![zeros; big.div_ceil(u64::from(chunk)) as usize],
    };
    m.validate().unwrap();
}

/// `max_bytes_per_s` paces the download: the image (tens of KiB, 1 KiB chunks) at 16 KiB/s
/// takes at least its length over the pace, minus the one chunk allowed at once; unpaced, the
/// same sync from the same servers is many times faster.
#[test]
fn a_paced_sync_downloads_no_faster_than_its_pace() {
    let c = chain();
    let src = Source::new(CHAIN_LEN, &[60]);
    let timed = |pace: u64| {
        let mut net = Net::new().peer("a", honest(&src)).peer("b", honest(&src));
        let node = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let (r, _) = run(&mut net, node.path(), &SyncConfig { max_bytes_per_s: pace, ..cfg() }, &go());
        let d = r.unwrap();
        assert_eq!(d.state.recompute_root(), c.roots[60]);
        (d.stats.bytes_downloaded, started.elapsed())
    };
    let pace = 16 << 10;
    let (bytes, paced) = timed(pace);
    let (_, free) = timed(0);
    let floor = Duration::from_secs_f64((bytes - u64::from(CHUNK)) as f64 / pace as f64);
    println!("{bytes} bytes: paced at {pace} B/s in {paced:?} (floor {floor:?}), unpaced in {free:?}");
    assert!(paced >= floor, "paced sync took {paced:?}, below {floor:?}");
    assert!(free * 2 < paced, "unpaced {free:?} is not much faster than paced {paced:?}");
}
