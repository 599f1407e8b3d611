//! Crash campaign: a child process executes blocks into a data dir with random group commits
//! and snapshots, and is killed with SIGKILL at random moments, many times. After every kill
//! the data dir is recovered here and checked:
//! - no height the child reported durable is missing;
//! - the recovered state root equals the reference replay's at the recovered height;
//! - every root the child reported equals the reference.
//!
//! Seeded: `BASTION_SEED=<n>` replays a run; `BASTION_LONG=1` runs a long campaign.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_exchange::testkit::{PathKind, Rng, Workload};
use bastion_exchange::{Genesis, State};
use bastion_store::hex;
use bastion_store::{Store, StoreConfig};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn seed() -> u64 {
    std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
    })
}

fn long() -> bool {
    std::env::var("BASTION_LONG").is_ok_and(|v| v == "1")
}

/// Blocks 1..=n of a seeded flash-crash workload and the reference root after each.
fn reference(seed: u64, n: u64) -> (Vec<bastion_types::Block>, Vec<String>, String) {
    let genesis = Genesis::devnet();
    let mut state = State::from_genesis(&genesis).unwrap();
    let genesis_root = hex(&state.state_root());
    let mut w = Workload::new(seed, 120, PathKind::FlashCrash { crash_at: n / 3, crash_blocks: 8 }, &genesis);
    let mut blocks = Vec::new();
    let mut roots = Vec::new();
    let funding = w.funding_txs(2_000_000_000);
    let first = w.block_with(funding);
    let out = state.apply_block(&first).unwrap();
    blocks.push(first);
    roots.push(hex(&out.root));
    while (blocks.len() as u64) < n {
        let b = w.next_block(&state, 30);
        let out = state.apply_block(&b).unwrap();
        blocks.push(b);
        roots.push(hex(&out.root));
    }
    (blocks, roots, genesis_root)
}

#[test]
fn sigkill_at_random_moments_never_loses_a_durable_height() {
    let seed = seed();
    println!("crash campaign seed {seed} (replay with BASTION_SEED={seed})");
    let (n, kills) = if long() { (3000, 400) } else { (600, 60) };
    let (blocks, roots, genesis_root) = reference(seed, n);
    let tmp = tempfile::tempdir().unwrap();
    let blocks_file = tmp.path().join("blocks.bin");
    std::fs::write(&blocks_file, postcard::to_stdvec(&blocks).unwrap()).unwrap();
    let data = tmp.path().join("data");
    let mut rng = Rng::new(seed);
    let mut max_durable = 0u64;
    let mut kills_done = 0;
    let mut restarts = 0;
    let started = Instant::now();
    loop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bastion-store-soak"))
            .args(["--data-dir", data.to_str().unwrap(), "--blocks", blocks_file.to_str().unwrap()])
            .args(["--seed", &rng.next_u64().to_string(), "--snapshot-every", "20", "--keep-snapshots", "2"])
            .args(["--segment-bytes", "32768"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after the child has recovered and made a random number of heights durable, at
        // a random moment after that (often in the middle of a write or a snapshot).
        let kill = kills_done < kills;
        let target = rng.below(6);
        let delay = Duration::from_micros(rng.below(3000));
        let mut done = false;
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    match parts.as_slice() {
                        ["recovered", h, root] => {
                            let h: u64 = h.parse().unwrap();
                            assert!(
                                h >= max_durable,
                                "seed {seed}: child recovered {h} < durable {max_durable}"
                            );
                            let want = if h == 0 { &genesis_root } else { &roots[h as usize - 1] };
                            assert_eq!(root, want, "seed {seed}: child recovered a wrong root at {h}");
                        }
                        ["durable", h, root] => {
                            let h: u64 = h.parse().unwrap();
                            assert_eq!(*root, roots[h as usize - 1], "seed {seed}: wrong root at {h}");
                            max_durable = max_durable.max(h);
                            seen += 1;
                            if kill && seen >= target {
                                std::thread::sleep(delay);
                                break;
                            }
                        }
                        ["done", _] => {
                            done = true;
                            break;
                        }
                        _ => panic!("seed {seed}: unexpected line {line:?}"),
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if !done {
            child.kill().unwrap(); // SIGKILL
        }
        let status = child.wait().unwrap();
        // Drain what the child printed before it died: a durable line printed just before the
        // kill still counts.
        reader.join().unwrap();
        for line in rx.try_iter() {
            if let ["durable", h, _] = line.split_whitespace().collect::<Vec<_>>().as_slice() {
                max_durable = max_durable.max(h.parse().unwrap());
            }
            if line.starts_with("done") {
                done = true;
            }
        }
        if !done && !kill {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("seed {seed}: soak child failed ({status}): {err}");
        }
        if !done {
            kills_done += 1;
        }
        // Recover in this process and compare with the reference.
        let (store, rec) = Store::open(
            &data,
            &Genesis::devnet(),
            StoreConfig {
                segment_bytes: 32768,
                keep_snapshots: 2,
                snapshot_every: 0,
                ..StoreConfig::default()
            },
        )
        .unwrap_or_else(|e| panic!("seed {seed}: recovery after kill {kills_done} failed: {e}"));
        assert!(
            rec.height >= max_durable,
            "seed {seed}: recovered height {} but {max_durable} was reported durable",
            rec.height
        );
        let want = if rec.height == 0 { &genesis_root } else { &roots[rec.height as usize - 1] };
        assert_eq!(&hex(&rec.root), want, "seed {seed}: recovered root at height {} differs", rec.height);
        drop(store);
        restarts += 1;
        if done {
            assert_eq!(rec.height, n, "seed {seed}");
            break;
        }
    }
    println!(
        "seed {seed}: {kills_done} SIGKILLs, {restarts} recoveries, {n} blocks, all durable heights kept ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(kills_done >= kills.min(1), "seed {seed}: the child was never killed");
}
