//! A state of 1,000,000 accounts through a snapshot file and recovery: the recovered state has
//! the same root (incremental and recomputed from every record) and executes the next blocks
//! identically.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::testkit::{PathKind, Workload};
use bastion_exchange::{Genesis, State};
use bastion_store::{Store, StoreConfig};
use std::time::Instant;

#[test]
fn a_million_accounts_round_trip_through_snapshot_and_recovery() {
    let accounts =
        std::env::var("BASTION_ACCOUNTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000u64);
    let g = Genesis::devnet();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = StoreConfig { snapshot_every: 0, ..StoreConfig::default() };
    let t = Instant::now();
    let (mut store, _) = Store::open(tmp.path(), &g, cfg.clone()).unwrap();
    let mut w = Workload::new(11, accounts, PathKind::Calm, &g);
    let deposits = w.funding_txs(1_000_000_000);
    for chunk in deposits.chunks(100_000) {
        let b = w.block_with(chunk.to_vec());
        store.apply(&b).unwrap();
    }
    // Some trading, so positions and resting orders are part of the image.
    for _ in 0..3 {
        let b = w.next_block(store.state(), 400);
        store.apply(&b).unwrap();
    }
    assert!(store.state().accounts.len() as u64 >= accounts);
    println!("built {accounts} accounts in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let meta = store.snapshot_now().unwrap().expect("a snapshot was written");
    println!(
        "snapshot at height {}: {:.1} MB in {:.2} s",
        meta.height,
        meta.payload_len as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    // Two more blocks after the snapshot, replayed from the log on recovery.
    let mut shadow: State = store.state().clone();
    let next: Vec<_> = (0..2)
        .map(|_| {
            let b = w.next_block(&shadow, 400);
            shadow.apply_block(&b).unwrap();
            b
        })
        .collect();
    for b in &next {
        store.apply(b).unwrap();
    }
    let root = store.state().state_root();
    store.close();

    let t = Instant::now();
    let (mut store, rec) = Store::open(tmp.path(), &g, cfg).unwrap();
    println!("recovered in {:.2} s: {}", t.elapsed().as_secs_f64(), rec.describe().join("; "));
    assert_eq!(rec.snapshot.as_ref().map(|s| s.height), Some(meta.height));
    assert_eq!(rec.replayed, 2);
    assert_eq!(rec.root, root);
    assert_eq!(store.state().recompute_root(), root, "every record round-tripped");
    // The recovered state executes the next block exactly as the original does.
    let b = w.next_block(&shadow, 400);
    let want = shadow.apply_block(&b).unwrap();
    let got = store.apply(&b).unwrap();
    assert_eq!(got, want);
}
