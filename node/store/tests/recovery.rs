//! Recovery of a node's data dir after damage: each fault is detected, recovered from where a
//! snapshot or the log holds the data again, and otherwise refused with an error naming the
//! file and height. Never a silently wrong state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::testkit::{PathKind, Rng, Workload};
use bastion_exchange::{Genesis, State};
use bastion_storage::Faults;
use bastion_store::{LogEntry, Store, StoreConfig, StoreError};
use bastion_types::Block;
use std::path::{Path, PathBuf};

fn cfg(snapshot_every: u64) -> StoreConfig {
    StoreConfig { snapshot_every, keep_snapshots: 2, segment_bytes: 16 << 10, ..StoreConfig::default() }
}

/// `n` blocks of a seeded workload and the root after each (index = height - 1).
fn chain(seed: u64, n: usize) -> (Vec<Block>, Vec<[u8; 32]>) {
    let g = Genesis::devnet();
    let mut s = State::from_genesis(&g).unwrap();
    let mut w = Workload::new(seed, 60, PathKind::Calm, &g);
    let funding = w.funding_txs(1_000_000_000);
    let mut blocks = vec![w.block_with(funding)];
    let mut roots = vec![s.apply_block(&blocks[0]).unwrap().root];
    while blocks.len() < n {
        let b = w.next_block(&s, 20);
        roots.push(s.apply_block(&b).unwrap().root);
        blocks.push(b);
    }
    (blocks, roots)
}

fn run(dir: &Path, cfg: StoreConfig, blocks: &[Block]) -> Store {
    let (mut store, _) = Store::open(dir, &Genesis::devnet(), cfg).unwrap();
    for b in blocks.iter().skip(store.state().height as usize) {
        store.apply(b).unwrap();
    }
    store
}

/// A store whose I/O failures the test arms, after `blocks` were applied.
fn with_faults(dir: &Path, snapshot_every: u64, blocks: &[Block]) -> (Store, std::sync::Arc<Faults>) {
    let faults = Faults::none();
    let cfg = StoreConfig { faults: faults.clone(), ..cfg(snapshot_every) };
    (run(dir, cfg, blocks), faults)
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = (offset as usize).min(bytes.len() - 1);
    bytes[i] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn reopen_recovers_the_same_state_and_snapshots_prune_the_log() {
    let (blocks, roots) = chain(1, 120);
    let tmp = tempfile::tempdir().unwrap();
    let store = run(tmp.path(), cfg(25), &blocks);
    let stats = store.close();
    assert!(stats.snapshots_written >= 3, "{stats:?}");
    assert!(stats.segments_pruned > 0, "snapshots make old segments unnecessary: {stats:?}");
    let (store, rec) = Store::open(tmp.path(), &Genesis::devnet(), cfg(25)).unwrap();
    assert_eq!(rec.height, 120);
    assert_eq!(rec.root, roots[119]);
    let snap = rec.snapshot.clone().expect("recovery starts from a snapshot");
    assert_eq!(snap.height, 100);
    assert_eq!(rec.replayed, 20);
    assert_eq!(store.state().recompute_root(), roots[119]);
    println!("{}", rec.describe().join("\n"));
}

#[test]
fn a_damaged_snapshot_falls_back_to_the_previous_one_plus_replay() {
    let (blocks, roots) = chain(2, 90);
    let tmp = tempfile::tempdir().unwrap();
    run(tmp.path(), cfg(40), &blocks).close();
    let snaps = files(&tmp.path().join("snapshots"), "bsnap");
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let newest = snaps.last().unwrap();
    let len = std::fs::metadata(newest).unwrap().len();
    let mut rng = Rng::new(2);
    flip(newest, 128 + rng.below(len - 128));
    let (_store, rec) = Store::open(tmp.path(), &Genesis::devnet(), cfg(40)).unwrap();
    assert_eq!(rec.snapshot.as_ref().map(|s| s.height), Some(40));
    assert_eq!(rec.replayed, 50);
    assert_eq!(rec.root, roots[89]);
    assert!(
        rec.skipped_snapshots.iter().any(|s| s.contains("snap-") && s.contains("080")),
        "{:?}",
        rec.skipped_snapshots
    );
}

#[test]
fn log_damage_below_the_snapshot_is_tolerated_and_above_it_is_refused() {
    let (blocks, roots) = chain(3, 70);
    let tmp = tempfile::tempdir().unwrap();
    // One snapshot, at 60: with a single snapshot the whole log is kept (genesis is its fallback).
    run(tmp.path(), cfg(60), &blocks).close();
    let segs = files(&tmp.path().join("log"), "log");
    assert!(segs.len() >= 3, "{segs:?}");
    // Damage in the first segment: below the snapshot at 60, not needed.
    flip(&segs[0], 40);
    let (store, rec) = Store::open(tmp.path(), &Genesis::devnet(), cfg(0)).unwrap();
    assert_eq!(rec.root, roots[69]);
    assert!(!rec.log_damage.is_empty(), "the damage is reported");
    store.close();
    // Now remove the snapshot: replay from genesis needs the damaged record -> refused.
    for s in files(&tmp.path().join("snapshots"), "bsnap") {
        std::fs::remove_file(s).unwrap();
    }
    let err = Store::open(tmp.path(), &Genesis::devnet(), cfg(0)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unrecoverable { .. }), "{msg}");
    assert!(msg.contains("00000000000000000001.log") && msg.contains("damage"), "{msg}");
}

#[test]
fn a_logged_root_that_replay_does_not_reproduce_stops_recovery() {
    let (blocks, _) = chain(4, 12);
    let tmp = tempfile::tempdir().unwrap();
    run(tmp.path(), cfg(0), &blocks[..8]).close();
    let parent_root = Store::open(tmp.path(), &Genesis::devnet(), cfg(0)).unwrap().0.state().state_root();
    // Append an entry whose block is valid but whose logged root is wrong, with a valid
    // checksum: what a diverged (buggy) node would have written.
    {
        let (mut log, _) =
            bastion_storage::BlockLog::open(&tmp.path().join("log"), bastion_storage::LogConfig::default())
                .unwrap();
        let entry = LogEntry::encode(&blocks[8], &[], &parent_root, &[7u8; 32], &[0u8; 32]);
        log.append(9, &entry).unwrap();
        log.commit().unwrap();
    }
    let err = Store::open(tmp.path(), &Genesis::devnet(), cfg(0)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::RootMismatch { height: 9, .. }), "{msg}");
    assert!(msg.contains("height 9") && msg.contains("0707070707"), "{msg}");
}

#[test]
fn a_data_dir_of_another_genesis_or_in_use_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(tmp.path(), &Genesis::devnet(), cfg(0)).unwrap();
    let err = Store::open(tmp.path(), &Genesis::devnet(), cfg(0)).unwrap_err();
    assert!(err.to_string().contains("in use by another process"), "{err}");
    store.close();
    let mut other = Genesis::devnet();
    other.timestamp_ms += 1;
    let err = Store::open(tmp.path(), &other, cfg(0)).unwrap_err();
    assert!(matches!(err, StoreError::Genesis { .. }), "{err}");
}

#[test]
fn fsync_failure_stops_the_store_and_restart_recovers_the_durable_height() {
    let (blocks, roots) = chain(5, 30);
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, faults) = with_faults(tmp.path(), 0, &blocks[..20]);
    faults.fail_sync_after(0);
    store.execute(&blocks[20]).unwrap();
    let err = store.commit().unwrap_err();
    assert!(err.to_string().contains("fdatasync"), "{err}");
    let err = store.execute(&blocks[21]).unwrap_err();
    assert!(matches!(err, StoreError::Stopped(_)), "{err}");
    drop(store);
    let (_store, rec) = Store::open(tmp.path(), &Genesis::devnet(), cfg(0)).unwrap();
    // Height 21 was written but its sync failed: it may or may not be on disk; 20 must be.
    assert!(rec.height == 20 || rec.height == 21, "{}", rec.height);
    assert_eq!(rec.root, roots[rec.height as usize - 1]);
}

#[test]
fn a_full_disk_stops_the_store_and_restart_recovers() {
    let (blocks, roots) = chain(6, 40);
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, faults) = with_faults(tmp.path(), 10, &blocks[..9]);
    faults.no_space_after(100);
    store.execute(&blocks[9]).unwrap();
    let err = store.commit().unwrap_err();
    assert!(err.to_string().contains("no space left"), "{err}");
    assert!(matches!(store.commit().unwrap_err(), StoreError::Stopped(_)));
    drop(store);
    faults.clear();
    let (_s, rec) = Store::open(tmp.path(), &Genesis::devnet(), cfg(10)).unwrap();
    assert_eq!((rec.height, rec.root), (9, roots[8]));
}

#[test]
fn snapshot_write_failure_is_reported_and_the_log_is_kept() {
    let (blocks, roots) = chain(7, 30);
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, faults) = with_faults(tmp.path(), 10, &blocks[..9]);
    // Room for block 10's log record (entry + a small header), not for a snapshot.
    let mut shadow = store.state().clone();
    let out = shadow.apply_block(&blocks[9]).unwrap();
    faults.no_space_after(
        LogEntry::encode(&blocks[9], &out.events, &out.root, &out.root, &[0u8; 32]).len() as u64 + 64,
    );
    store.apply(&blocks[9]).unwrap();
    let stats = store.close();
    assert_eq!(stats.snapshots_written, 0, "{stats:?}");
    assert!(stats.snapshot_errors.iter().any(|e| e.contains("no space")), "{stats:?}");
    faults.clear();
    let (_s, rec) = Store::open(tmp.path(), &Genesis::devnet(), cfg(10)).unwrap();
    assert_eq!((rec.height, rec.root), (10, roots[9]));
    assert!(rec.snapshot.is_none());
}

/// A chain through a flash crash (liquidations in some blocks), with the roots after each.
fn crash_chain(seed: u64, n: usize) -> (Vec<Block>, Vec<[u8; 32]>, Vec<Vec<bastion_types::Event>>) {
    let g = Genesis::devnet();
    let mut s = State::from_genesis(&g).unwrap();
    let mut w = Workload::new(seed, 60, PathKind::FlashCrash { crash_at: 30, crash_blocks: 10 }, &g);
    let funding = w.funding_txs(20_000_000);
    let mut blocks = vec![w.block_with(funding)];
    let out = s.apply_block(&blocks[0]).unwrap();
    let (mut roots, mut events) = (vec![out.root], vec![out.events]);
    while blocks.len() < n {
        let b = w.next_block(&s, 30);
        let out = s.apply_block(&b).unwrap();
        roots.push(out.root);
        events.push(out.events);
        blocks.push(b);
    }
    (blocks, roots, events)
}

#[test]
fn replay_with_shortcuts_reaches_every_root_a_full_replay_does() {
    let (blocks, roots, events) = crash_chain(8, 80);
    let may =
        blocks.iter().zip(&events).filter(|(b, e)| bastion_exchange::sweep_may_have_acted(b, e)).count();
    let liquidated = events
        .iter()
        .filter(|e| e.iter().any(|e| matches!(e, bastion_types::Event::Liquidated { .. })))
        .count();
    println!("{liquidated} of {} blocks liquidated, {may} may have", blocks.len());
    assert!(liquidated > 0, "the crash liquidates someone");
    let tmp = tempfile::tempdir().unwrap();
    run(tmp.path(), cfg(0), &blocks).close();
    let (store, fast) = Store::open(tmp.path(), &Genesis::devnet(), cfg(0)).unwrap();
    store.close();
    let exact_cfg = StoreConfig { exact_replay: true, ..cfg(0) };
    let (_store, exact) = Store::open(tmp.path(), &Genesis::devnet(), exact_cfg).unwrap();
    assert_eq!((fast.height, fast.root), (80, roots[79]));
    assert_eq!((exact.height, exact.root), (80, roots[79]));
    assert_eq!(fast.exact_after, None, "{:?}", fast.describe());
    assert_eq!(exact.swept, 80);
    assert_eq!(fast.swept, may as u64, "the sweep runs where the events say it may have acted");
    assert!(fast.swept < fast.replayed, "blocks without liquidations skip the sweep: {}", fast.swept);
}

#[test]
fn logged_events_that_hide_a_liquidation_make_recovery_replay_in_full() {
    let (blocks, roots, events) = crash_chain(8, 80);
    let k = events
        .iter()
        .position(|e| e.iter().any(|e| matches!(e, bastion_types::Event::Liquidated { .. })))
        .expect("a block liquidates");
    let tmp = tempfile::tempdir().unwrap();
    run(tmp.path(), cfg(0), &blocks[..k]).close();
    {
        // The rest of the chain, with the liquidating block's events emptied: valid
        // checksums, valid roots, events that do not show the sweep acted.
        let (mut log, _) =
            bastion_storage::BlockLog::open(&tmp.path().join("log"), bastion_storage::LogConfig::default())
                .unwrap();
        for i in k..blocks.len() {
            let logged = if i == k { Vec::new() } else { events[i].clone() };
            let entry = LogEntry::encode(&blocks[i], &logged, &roots[i - 1], &roots[i], &[0u8; 32]);
            log.append(blocks[i].height, &entry).unwrap();
        }
        log.commit().unwrap();
    }
    let (store, rec) = Store::open(tmp.path(), &Genesis::devnet(), cfg(0)).unwrap();
    assert_eq!((rec.height, rec.root), (80, roots[79]));
    assert_eq!(store.state().recompute_root(), roots[79]);
    let why = rec.exact_after.clone().expect("the shortcut replay was abandoned");
    assert!(why.contains(&format!("height {}", k + 1)), "{why}");
    assert_eq!(rec.swept, 80, "the second replay runs every block in full");
    assert!(rec.describe().iter().any(|l| l.contains("again in full")), "{:?}", rec.describe());
}
