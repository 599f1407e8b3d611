//! Suite `storage`: what durability costs.
//!
//! - Commit latency per block for blocks of 10k fills: the block log's append + `fdatasync`
//!   against `redb` storing the same entry bytes under the height with an immediately durable
//!   commit, same disk, same run (ratio of p50 and p99).
//! - Recovery of a large state (1M accounts) from its snapshot plus 1,000 logged blocks: the
//!   snapshot part (map, checksum, checked access, rebuild) and the replay part, separately.
//! - Snapshot write throughput (serialize, and write + sync) and the stall snapshots cause on
//!   block execution: per-block latency with snapshots every few blocks against none, same
//!   blocks, same starting state.
//!
//! Files go to `$BASTION_PERF_DIR` or `target/perf-storage` (a disk, not tmpfs: fsync must
//! mean something), removed afterwards.

use crate::harness::{self, Ctx, Measurement, Ratio, Report};
use bastion_exchange::testkit::{PathKind, Workload};
use bastion_exchange::{Genesis, IMAGE_LAYOUT, State};
use bastion_storage::{BlockLog, Faults, LogConfig, SnapshotStore};
use bastion_store::{LogEntry, Store, StoreConfig};
use bastion_types::{
    AccountId, Action, Block, MarketId, OrderRequest, SelfTradePrevention, Side, TimeInForce, Tx,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ENTRIES: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("blocks");

fn scratch() -> Result<PathBuf, String> {
    let base = std::env::var_os("BASTION_PERF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/perf-storage"));
    let dir = base.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn tx(w: &mut Workload, signer: u64, action: Action) -> Tx {
    let i = signer as usize;
    w.nonces[i] += 1;
    Tx { signer: AccountId(signer), nonce: w.nonces[i], action }
}

/// A log entry for a block of `fills` fills on BTC-PERP: `fills` makers rest one-lot asks,
/// then `fills` takers each lift one with an IOC bid.
fn fill_entry(fills: u64, seed: u64) -> Result<(Vec<u8>, usize), String> {
    let g = Genesis::devnet();
    let mut s = State::from_genesis(&g).map_err(|e| e.to_string())?;
    let mut w = Workload::new(seed, 2 * fills, PathKind::Calm, &g);
    let funding = w.funding_txs(1_000_000_000);
    let b = w.block_with(funding);
    s.apply_block(&b).map_err(|e| e.to_string())?;
    let m = &s.markets[&MarketId(0)];
    let mark = m.mark / m.spec.tick_size.max(1);
    let order = |side, price, tif| {
        Action::Place(OrderRequest {
            market: MarketId(0),
            side,
            price: Some(price),
            qty: 1,
            tif,
            reduce_only: false,
            good_til_height: None,
            stp: SelfTradePrevention::CancelResting,
        })
    };
    let asks: Vec<Tx> = (1..=fills)
        .map(|t| tx(&mut w, t, order(Side::Sell, mark + 1 + (t % 50) as i64, TimeInForce::Gtc)))
        .collect();
    let b = w.block_with(asks);
    s.apply_block(&b).map_err(|e| e.to_string())?;
    let bids: Vec<Tx> = (fills + 1..=2 * fills)
        .map(|t| tx(&mut w, t, order(Side::Buy, mark + 100, TimeInForce::Ioc)))
        .collect();
    let b = w.block_with(bids);
    let parent_root = s.state_root();
    let out = s.apply_block(&b).map_err(|e| e.to_string())?;
    let n_fills = out.events.iter().filter(|e| matches!(e, bastion_types::Event::Fill { .. })).count();
    Ok((LogEntry::encode(&b, &out.events, &parent_root, &out.root, &[0u8; 32]), n_fills))
}

fn commit_latency(ctx: &Ctx, report: &mut Report, dir: &Path) -> Result<(), String> {
    let fills = ctx.size(10_000, 1_000);
    let blocks = ctx.size(200, 20);
    let (entry, n_fills) = fill_entry(fills, ctx.seed)?;
    report.note(format!(
        "commit: entry of a block with {n_fills} fills is {:.2} MiB (block, events, root; postcard)",
        entry.len() as f64 / (1 << 20) as f64
    ));
    let params = json!({ "fills": n_fills, "entry_bytes": entry.len(), "blocks": blocks });

    let log_dir = dir.join("commit-log");
    let (mut log, _) = BlockLog::open(&log_dir, LogConfig::default()).map_err(|e| e.to_string())?;
    let mut err = None;
    let m = harness::rounds("bastion-log", "block", 3, blocks, 1, params.clone(), |i| {
        let r = log.append(i + 1, &entry).and_then(|_| log.commit());
        if let Err(e) = r {
            err = Some(e.to_string());
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    report.push(m);
    drop(log);

    let db = redb::Database::create(dir.join("commit.redb")).map_err(|e| e.to_string())?;
    let mut err = None;
    let m = harness::rounds("redb", "block", 3, blocks, 1, params, |i| {
        let r = (|| -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut t = txn.open_table(ENTRIES)?;
                t.insert(i + 1, entry.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = r {
            err = Some(e.to_string());
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    report.push(m);
    latency_ratios(report, "commit", "redb", "bastion-log");
    Ok(())
}

/// Records `denominator_latency / numerator_latency` at p50 and p99 (above 1: `faster` wins).
fn latency_ratios(report: &mut Report, name: &str, slower: &str, faster: &str) {
    let (Some(a), Some(b)) = (report.get(slower), report.get(faster)) else { return };
    let (Some(la), Some(lb)) = (a.latency.clone(), b.latency.clone()) else { return };
    for (metric, x, y) in [("p50_ns", la.p50_ns, lb.p50_ns), ("p99_ns", la.p99_ns, lb.p99_ns)] {
        let value = x as f64 / y.max(1) as f64;
        eprintln!("  ratio {name} {metric}: {value:.3} ({slower} / {faster})");
        report.ratios.push(Ratio {
            name: format!("{name}-{metric}"),
            numerator: slower.into(),
            denominator: faster.into(),
            metric: metric.into(),
            value,
        });
    }
}

fn measured(name: &str, unit: &str, d: Duration, ops: u64, params: serde_json::Value) -> Measurement {
    let s = d.as_secs_f64();
    Measurement {
        name: name.into(),
        ops,
        elapsed_ns: d.as_nanos() as u64,
        ops_per_s: if s > 0.0 { ops as f64 / s } else { f64::INFINITY },
        latency: None,
        unit: unit.into(),
        params,
    }
}

/// A state of `accounts` funded accounts (deposits in blocks of 100k).
fn big_state(w: &mut Workload, g: &Genesis, store: &mut Store) -> Result<(), String> {
    let txs = w.funding_txs(5_000_000_000);
    for chunk in txs.chunks(100_000) {
        let b = w.block_with(chunk.to_vec());
        store.apply(&b).map_err(|e| e.to_string())?;
    }
    let _ = g;
    Ok(())
}

fn recovery_and_snapshots(ctx: &Ctx, report: &mut Report, dir: &Path) -> Result<(), String> {
    let accounts = ctx.size(1_000_000, 20_000);
    let logged = ctx.size(1_000, 40);
    let txs_per_block = 50;
    let g = Genesis::devnet();
    let data = dir.join("recovery");
    let cfg = StoreConfig { snapshot_every: 0, ..StoreConfig::default() };
    let t = Instant::now();
    let (mut store, _) = Store::open(&data, &g, cfg.clone()).map_err(|e| e.to_string())?;
    let mut w = Workload::new(ctx.seed, accounts, PathKind::Calm, &g);
    big_state(&mut w, &g, &mut store)?;
    eprintln!("  built {accounts} accounts in {:.2} s", t.elapsed().as_secs_f64());

    // Snapshot throughput: serialize, then write + sync, of the whole state.
    let t = Instant::now();
    let bytes = store.state().to_image_bytes().map_err(|e| e.to_string())?;
    let serialize = t.elapsed();
    let mb = bytes.len() as f64 / 1e6;
    let snaps = SnapshotStore::open(&dir.join("throughput"), 1, Faults::none()).map_err(|e| e.to_string())?;
    let t = Instant::now();
    snaps
        .write(store.state().height, store.state().state_root(), IMAGE_LAYOUT, &bytes)
        .map_err(|e| e.to_string())?;
    let write = t.elapsed();
    let params = json!({ "accounts": accounts, "image_mb": mb });
    report.push(measured(
        "snapshot-serialize",
        "MB",
        serialize,
        bytes.len() as u64 / 1_000_000,
        params.clone(),
    ));
    report.push(measured("snapshot-write-sync", "MB", write, bytes.len() as u64 / 1_000_000, params.clone()));
    report.note(format!(
        "snapshot of {accounts} accounts: {mb:.1} MB; serialize {:.0} MB/s, write+fsync {:.0} MB/s",
        mb / serialize.as_secs_f64(),
        mb / write.as_secs_f64()
    ));
    drop(bytes);

    // The snapshot recovery starts from, then `logged` blocks of trading after it.
    store.snapshot_now().map_err(|e| e.to_string())?;
    let t = Instant::now();
    for _ in 0..logged {
        let b = w.next_block(store.state(), txs_per_block);
        store.apply(&b).map_err(|e| e.to_string())?;
    }
    let exec = t.elapsed();
    let tip = store.state().height;
    let root = store.state().state_root();
    store.close();

    let t = Instant::now();
    let (store, rec) = Store::open(&data, &g, cfg).map_err(|e| e.to_string())?;
    let total = t.elapsed();
    if rec.height != tip || rec.root != root {
        return Err(format!("recovered height {} root differs from the tip {tip}", rec.height));
    }
    let params = json!({ "accounts": accounts, "logged_blocks": logged, "txs_per_block": txs_per_block });
    report.push(measured("recovery-total", "recovery", total, 1, params.clone()));
    report.push(measured("recovery-snapshot-load", "recovery", rec.load, 1, params.clone()));
    report.push(measured("recovery-replay", "block", rec.replay, rec.replayed, params));
    report.note(format!(
        "recovery of {accounts} accounts + {} logged blocks: {:.0} ms (snapshot load {:.0} ms, replay {:.0} \
         ms = {:.2} ms/block; executing those blocks live took {:.2} ms/block)",
        rec.replayed,
        total.as_secs_f64() * 1e3,
        rec.load.as_secs_f64() * 1e3,
        rec.replay.as_secs_f64() * 1e3,
        rec.replay.as_secs_f64() * 1e3 / rec.replayed.max(1) as f64,
        exec.as_secs_f64() * 1e3 / logged.max(1) as f64
    ));
    if !ctx.quick {
        report.goal(
            "recovery-1m-under-1s",
            "< 1 s for 1M accounts from snapshot + 1,000 logged blocks",
            format!("{:.2} s", total.as_secs_f64()),
            total < Duration::from_secs(1),
        );
    }
    store.close();

    stall(ctx, report, dir, &data, &mut w)
}

/// Per-block latency with a snapshot every few blocks against none, same blocks, same start.
fn stall(ctx: &Ctx, report: &mut Report, dir: &Path, data: &Path, w: &mut Workload) -> Result<(), String> {
    let g = Genesis::devnet();
    let blocks_n = ctx.size(300, 30);
    let every = ctx.size(50, 10);
    // Start both runs from a snapshot at the same height (so opening does not replay).
    let cfg = StoreConfig { snapshot_every: 0, ..StoreConfig::default() };
    let (mut store, _) = Store::open(data, &g, cfg.clone()).map_err(|e| e.to_string())?;
    store.snapshot_now().map_err(|e| e.to_string())?;
    let mut shadow = store.state().clone();
    let t = Instant::now();
    let mut views = 0u32;
    while t.elapsed() < Duration::from_millis(200) || views < 5 {
        std::hint::black_box(store.state().view());
        views += 1;
    }
    let view_time = t.elapsed() / views;
    store.close();
    let blocks: Vec<Block> = (0..blocks_n)
        .map(|_| {
            let b = w.next_block(&shadow, 50);
            let _ = shadow.apply_block(&b);
            b
        })
        .collect();
    drop(shadow);
    let accounts = w.traders;
    for (name, snapshot_every) in [("blocks-no-snapshots", 0), ("blocks-with-snapshots", every)] {
        let copy = dir.join(name);
        copy_dir(data, &copy)?;
        let (mut store, _) = Store::open(&copy, &g, StoreConfig { snapshot_every, ..cfg.clone() })
            .map_err(|e| e.to_string())?;
        let mut err = None;
        let params = json!({ "accounts": accounts, "snapshot_every": snapshot_every, "txs_per_block": 50 });
        let m = harness::rounds(name, "block", 0, blocks_n, 1, params, |i| {
            if let Some(b) = blocks.get(i as usize)
                && let Err(e) = store.apply(b)
            {
                err = Some(e.to_string());
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let stats = store.close();
        report.note(format!(
            "{name}: {} snapshots written, {} skipped while one was being written",
            stats.snapshots_written, stats.snapshots_skipped_busy
        ));
        report.push(m);
        std::fs::remove_dir_all(&copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    }
    report.note(format!(
        "taking the copy-on-write view of {accounts} accounts costs {:.1} us on the execution thread",
        view_time.as_secs_f64() * 1e6
    ));
    latency_ratios(report, "snapshot-stall", "blocks-with-snapshots", "blocks-no-snapshots");
    let (Some(a), Some(b)) = (report.get("blocks-with-snapshots"), report.get("blocks-no-snapshots")) else {
        return Ok(());
    };
    let (pa, pb) = (a.latency.clone().map(|l| l.p99_ns), b.latency.clone().map(|l| l.p99_ns));
    if let (Some(pa), Some(pb), false) = (pa, pb, ctx.quick) {
        let ratio = pa as f64 / pb.max(1) as f64;
        report.goal(
            "no-measurable-stall-at-p99",
            "p99 block latency with snapshots within 10% of without",
            format!("{ratio:.2}x"),
            ratio <= 1.10,
        );
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(&path, &target).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let dir = scratch()?;
    let result = commit_latency(ctx, report, &dir).and_then(|_| recovery_and_snapshots(ctx, report, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}
