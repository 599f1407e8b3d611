#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A trader's view of a real devnet (issue 17): `bastion devnet` with its full node serving
//! the API, read by real clients.
//! - A: a WebSocket client subscribed to `userFills` of several load-generator traders (makers
//!   and takers) and to `blocks` through a run with the flash crash receives, for each account,
//!   exactly the fills the chain holds (re-executed from genesis out of the longest validator
//!   block log), in order, each once, with `seq` gapless per subscription.
//! - B: the Python client's `examples/first_trade.py` (faucet, IOC order, fill over the
//!   WebSocket) against a devnet.
//!
//! One devnet at a time, across test processes too (nextest runs each test in its own
//! process): a lock file in the temporary directory. Ports derive from the process id.

use bastion_storage::{BlockLog, LogConfig};
use bastion_store::LogEntry;
use bastion_types::{AccountId, Event, Side};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bastion");

/// Holds the cross-process lock: one devnet at a time.
fn exclusive() -> std::fs::File {
    let path = std::env::temp_dir().join("bastion-trader-tests.lock");
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).unwrap();
    f.lock().unwrap();
    f
}

/// `(p2p base port, API port)` of a devnet, from the process id (`slot` tells the tests apart).
fn ports(slot: u16) -> (u16, u16) {
    let k = (std::process::id() % 500) as u16;
    (10_000 + k * 16 + slot * 8, 22_000 + k * 4 + slot * 2)
}

/// A `bastion devnet` process in its own process group; the group (the devnet and the
/// validators and full node it started) is killed on drop.
struct Devnet {
    child: Child,
    dir: PathBuf,
    api: u16,
}

impl Devnet {
    fn start(dir: &Path, slot: u16, args: &[&str]) -> Devnet {
        let (base, api) = ports(slot);
        let child = Command::new(BIN)
            .arg("devnet")
            .args(args)
            .args(["--base-port", &base.to_string(), "--api-port", &api.to_string()])
            .arg("--data-dir")
            .arg(dir.join("net"))
            .arg("--json")
            .arg(dir.join("summary.json"))
            .env("RUST_LOG", "warn")
            .stdout(std::fs::File::create(dir.join("devnet.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("devnet.err")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        Devnet { child, dir: dir.to_path_buf(), api }
    }

    fn output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        let out = read("devnet.out");
        // The progress line is rewritten with \r: keep its last state.
        let out: Vec<&str> = out.lines().map(|l| l.rsplit('\r').next().unwrap_or(l)).collect();
        format!("{}\n{}", out.join("\n"), read("devnet.err"))
    }

    /// `GET path` on the API: (HTTP status, JSON body); `None` while it cannot be reached.
    fn get(&self, path: &str) -> Option<(u16, Value)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.api)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let status = raw.split(' ').nth(1)?.parse().ok()?;
        let body = raw.split_once("\r\n\r\n")?.1;
        Some((status, serde_json::from_str(body).ok()?))
    }

    /// Waits for `/v1/status` to answer with a height of at least `min`.
    fn wait_height(&mut self, min: u64, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            if let Some((200, s)) = self.get("/v1/status")
                && s["height"].as_u64().is_some_and(|h| h >= min)
            {
                return s;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the devnet exited ({status}) before its API served height {min}:\n{}", self.output());
            }
            assert!(
                start.elapsed() < timeout,
                "no /v1/status with height >= {min} on port {} after {timeout:?}:\n{}",
                self.api,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the devnet to end on its own; its summary (`--json`).
    fn finish(&mut self, timeout: Duration) -> Value {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < timeout,
                "the devnet did not end within {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(status.success(), "the devnet failed ({status}):\n{}", self.output());
        serde_json::from_slice(&std::fs::read(self.dir.join("summary.json")).unwrap()).unwrap()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        // The whole group: `bastion devnet` and every node it spawned.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// The chain's fills of each of `accounts` (as the API renders a fill for that account), by
/// height, from the longest validator block log, every block re-executed from genesis: the events
/// used are those execution produces, and they must equal the logged ones.
fn chain_fills(net: &Path, accounts: &[AccountId]) -> (HashMap<AccountId, Vec<Value>>, u64) {
    let spec = bastion_consensus::ChainSpec::load(&net.join("genesis.json")).unwrap();
    let mut state = bastion_exchange::State::from_genesis(&spec.exchange).unwrap();
    // The longest validator log: the validators stop together, and the one that stopped first
    // may lack the last blocks the full node (and its subscribers) took from the others.
    let (name, log) = (0..)
        .map(|i| format!("v{i}"))
        .take_while(|v| net.join(v).is_dir())
        .map(|v| {
            let (log, _) = BlockLog::open(&net.join(&v).join("data/log"), LogConfig::default()).unwrap();
            (v, log)
        })
        .max_by_key(|(_, log)| log.last_height())
        .expect("a validator's block log");
    let (first, last) = (log.first_height().unwrap(), log.last_height().unwrap());
    assert_eq!(first, 1, "{name}'s log starts at genesis");
    let mut out: HashMap<AccountId, Vec<Value>> = accounts.iter().map(|a| (*a, Vec::new())).collect();
    for h in first..=last {
        let entry = LogEntry::decode(&log.read(h).unwrap()).unwrap();
        let done = state.apply_block(&entry.block).unwrap();
        assert_eq!(done.root, entry.root, "re-executed root at height {h}");
        assert_eq!(done.events, entry.events, "re-executed events at height {h}");
        let fills = done.events.iter().filter_map(|e| match e {
            Event::Fill {
                market,
                maker_order,
                maker,
                taker,
                taker_side,
                price,
                qty,
                maker_fee,
                taker_fee,
            } => Some((market, maker_order, maker, taker, taker_side, price, qty, maker_fee, taker_fee)),
            _ => None,
        });
        for (index, (market, maker_order, maker, taker, taker_side, price, qty, maker_fee, taker_fee)) in
            fills.enumerate()
        {
            for a in accounts {
                if maker != a && taker != a {
                    continue;
                }
                let (my_side, role, fee) = if maker == a {
                    (taker_side.opposite(), "maker", maker_fee)
                } else {
                    (*taker_side, "taker", taker_fee)
                };
                out.get_mut(a).unwrap().push(json!({
                    "height": h, "timestamp_ms": entry.block.timestamp_ms, "index": index, "market": market.0,
                    "maker_order": maker_order.0, "maker": maker.0, "taker": taker.0, "side": side(my_side),
                    "role": role, "price": price, "qty": qty, "fee_micros": i64::try_from(*fee).unwrap(),
                }));
            }
        }
    }
    (out, last)
}

/// What one subscription received.
#[derive(Debug, Default)]
struct Received {
    snapshot_height: u64,
    snapshot: Vec<Value>,
    /// Update fills with their message's height.
    fills: Vec<Value>,
    seqs: Vec<u64>,
    heights: Vec<u64>,
}

#[test]
fn a_trader_sees_every_fill_of_its_account_exactly_once_over_websocket() {
    let _one = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Devnet::start(
        tmp.path(),
        0,
        &["--duration", "30", "--crash-at-s", "15", "--rate", "300", "--traders", "200"],
    );
    net.wait_height(1, Duration::from_secs(60));

    // Makers (traders 1..=99 quote) and takers; the last two subscribe mid-run (a snapshot
    // with fills in it).
    let traders = [1u64, 2, 21, 50, 120, 150, 199, 75, 160];
    let (early, late) = traders.split_at(traders.len() - 2);
    let accounts: Vec<AccountId> =
        traders.iter().map(|&i| bastion_client::devnet_trader(i).account()).collect();
    let stream = TcpStream::connect(("127.0.0.1", net.api)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://127.0.0.1:{}/v1/ws", net.api), stream).unwrap();
    let subscribe = |ws: &mut tungstenite::WebSocket<TcpStream>, trader: u64| {
        let a = bastion_client::devnet_trader(trader).account();
        let sub =
            json!({"method": "subscribe", "subscription": {"type": "userFills", "account": a.0.to_string()}});
        ws.send(tungstenite::Message::text(sub.to_string())).unwrap();
    };
    for &t in early {
        subscribe(&mut ws, t);
    }
    ws.send(tungstenite::Message::text(
        json!({"method": "subscribe", "subscription": {"type": "blocks"}}).to_string(),
    ))
    .unwrap();

    let mut got: BTreeMap<u64, Received> = BTreeMap::new();
    let mut blocks: Vec<(u64, u64)> = Vec::new(); // (seq, height)
    let mut pending: Option<AccountId> = None; // subscribed, snapshot next
    let close;
    let mut messages = 0u64;
    loop {
        let msg = match ws.read() {
            Ok(tungstenite::Message::Text(t)) => t,
            // The full node ends its run: it closes the connection with a reason.
            Ok(tungstenite::Message::Close(f)) => {
                close = f.map(|f| f.reason.to_string()).unwrap_or_default();
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("reading the WebSocket after {messages} messages: {e}\n{}", net.output()),
        };
        messages += 1;
        let m: Value = serde_json::from_str(msg.as_str()).unwrap();
        let channel = m["channel"].as_str().unwrap();
        let height = m["height"].as_u64();
        match channel {
            "subscriptionResponse" => {
                let sub = &m["data"]["subscription"];
                assert_eq!(m["data"]["method"], "subscribe", "{m}");
                pending = match sub["type"].as_str().unwrap() {
                    "userFills" => Some(AccountId(sub["account"].as_str().unwrap().parse().unwrap())),
                    "blocks" => None,
                    other => panic!("subscribed to {other}? {m}"),
                };
            }
            "userFills" if m["snapshot"] == true => {
                let a = pending.take().expect("a snapshot right after its subscriptionResponse");
                assert_eq!(m["seq"], 0, "{m}");
                let r = got.entry(a.0).or_default();
                r.snapshot_height = height.unwrap();
                r.snapshot = m["data"].as_array().unwrap().clone();
            }
            "userFills" => {
                let data = m["data"].as_array().unwrap();
                assert!(!data.is_empty(), "an update is sent only for a block with fills: {m}");
                // The account of a message: every fill in it is rendered for that account.
                let whose =
                    |f: &Value| if f["role"] == "maker" { f["maker"].as_u64() } else { f["taker"].as_u64() };
                let a = whose(&data[0]).unwrap();
                assert!(data.iter().all(|f| whose(f) == Some(a) && f["height"].as_u64() == height), "{m}");
                let r = got.get_mut(&a).unwrap_or_else(|| panic!("fills of {a}, not subscribed: {m}"));
                r.seqs.push(m["seq"].as_u64().unwrap());
                r.heights.push(height.unwrap());
                r.fills.extend(data.iter().cloned());
            }
            "blocks" => {
                blocks.push((m["seq"].as_u64().unwrap(), height.unwrap()));
                if blocks.len() == 120 {
                    for &t in late {
                        subscribe(&mut ws, t);
                    }
                }
            }
            _ => panic!("unexpected message {m}"),
        }
    }
    let summary = net.finish(Duration::from_secs(60));
    assert_eq!(close, "server shutting down", "the close frame's reason");
    println!(
        "websocket: {messages} messages, closed: {close}; summary liquidations {}",
        summary["liquidations"]
    );

    // The blocks subscription: seq 0.. gapless, every height once, in order.
    assert!(blocks.len() > 50, "blocks received: {}", blocks.len());
    for (k, w) in blocks.windows(2).enumerate() {
        assert_eq!((w[1].0, w[1].1), (k as u64 + 1, w[0].1 + 1), "blocks message {k}: {blocks:?}");
    }
    // Every message of a block is queued before the next block's: all of the block before the
    // last `blocks` message arrived (the close drops what is still queued).
    let last_seen = blocks.last().unwrap().1 - 1;

    let (chain, log_last) = chain_fills(&tmp.path().join("net"), &accounts);
    assert!(
        log_last >= last_seen,
        "the longest validator log ends at {log_last}, the subscriber saw {last_seen}"
    );
    let mut compared = 0;
    for a in &accounts {
        let r = got.get(&a.0).unwrap_or_else(|| panic!("no snapshot for {}", a.0));
        let expected: Vec<&Value> = chain[a]
            .iter()
            .filter(|f| (r.snapshot_height + 1..=last_seen).contains(&f["height"].as_u64().unwrap()))
            .collect();
        // Later updates may be a cut-off block's part.
        let seen: Vec<&Value> =
            r.fills.iter().filter(|f| f["height"].as_u64().unwrap() <= last_seen).collect();
        assert_eq!(seen.len(), expected.len(), "account {}: fills over WebSocket vs the chain's", a.0);
        for (k, (s, e)) in seen.iter().zip(&expected).enumerate() {
            assert_eq!(s, e, "account {}: fill {k} after the snapshot at {}", a.0, r.snapshot_height);
        }
        // seq gapless from 1; heights increasing, all after the snapshot.
        let want: Vec<u64> = (1..=r.seqs.len() as u64).collect();
        assert_eq!(r.seqs, want, "account {}: seq", a.0);
        assert!(r.heights.windows(2).all(|w| w[0] < w[1]), "account {}: heights {:?}", a.0, r.heights);
        assert!(r.heights.first().is_none_or(|&h| h > r.snapshot_height), "account {}", a.0);
        // The snapshot: the account's latest fills up to its height, in chain order.
        let before: Vec<&Value> =
            chain[a].iter().filter(|f| f["height"].as_u64().unwrap() <= r.snapshot_height).collect();
        let tail = &before[before.len() - r.snapshot.len().min(before.len())..];
        assert_eq!(r.snapshot.iter().collect::<Vec<_>>(), tail, "account {}: snapshot", a.0);
        assert_eq!(r.snapshot.len(), before.len().min(100), "account {}: snapshot size", a.0);
        println!(
            "account {} (trader {}): snapshot at {} with {} fills, then {} fills in {} messages up to {last_seen}",
            a.0,
            traders[accounts.iter().position(|x| x == a).unwrap()],
            r.snapshot_height,
            r.snapshot.len(),
            seen.len(),
            r.seqs.len()
        );
        compared += seen.len();
    }
    assert!(compared >= 20, "only {compared} fills compared: the test proves little");
    let full = &summary["full_nodes"][0];
    assert_eq!(full["roots_agree"], true, "{summary}");
    assert!(summary["liquidations"].as_u64().unwrap() > 0, "the flash crash liquidated nobody: {summary}");
}

/// The Python interpreter with the client's requirements: `BASTION_PY`, else `python3` when it
/// imports them; `None` (with a notice) otherwise, a failure when `CI` is set.
fn python() -> Option<String> {
    if let Ok(py) = std::env::var("BASTION_PY") {
        return Some(py);
    }
    let ok = Command::new("python3")
        .args(["-c", "import nacl, blake3, websockets"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some("python3".into());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but neither BASTION_PY nor python3 with nacl, blake3 and websockets is available \
         (.ci/run creates target/py-venv and exports BASTION_PY)"
    );
    eprintln!(
        "NOTICE: skipped: no BASTION_PY and python3 lacks nacl, blake3 or websockets \
         (pip install -r node/client/python/requirements.txt)"
    );
    None
}

#[test]
fn the_python_client_trades_against_a_devnet() {
    let Some(py) = python() else { return };
    let _one = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Devnet::start(tmp.path(), 1, &["--duration", "40", "--rate", "200", "--traders", "100"]);
    net.wait_height(10, Duration::from_secs(60));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/python/examples/first_trade.py");
    let out = tmp.path().join("first_trade.out");
    let file = std::fs::File::create(&out).unwrap();
    let mut child = Command::new(&py)
        .arg(&script)
        .args(["--api", &format!("http://127.0.0.1:{}", net.api), "--timeout", "25"])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&out).unwrap();
    println!("{text}");
    let status = status.unwrap_or_else(|| panic!("first_trade.py ran over 40 s:\n{text}\n{}", net.output()));
    assert!(status.success(), "first_trade.py exited {status}:\n{text}\n{}", net.output());
    assert!(text.contains("    filled at height "), "{text}");
    assert!(text.contains("as taker") && text.contains("OK: faucet, order, fill"), "{text}");
}
