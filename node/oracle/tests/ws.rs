//! The WebSocket source against a local server replaying a recorded tick file
//! (tests/data/ws_ticks.jsonl): subscription, malformed messages counted and skipped, a forced
//! disconnect, the reconnect, and a server that is not there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_oracle::{ErrorKind, Oracle, OracleConfig, SourceConfig, TimeUnit, WsSource};
use bastion_types::UnderlyingId;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::Message;

const BTC: UnderlyingId = UnderlyingId(0);
const ETH: UnderlyingId = UnderlyingId(1);
const SUBSCRIBE: &str = r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","ethusdt@aggTrade"],"id":1}"#;

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// The recorded line with its event time `E` moved to now (so the ticks are fresh); lines
/// that are not JSON objects are sent as recorded.
fn rebased(line: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(mut m)) if m.contains_key("E") => {
            m.insert("E".into(), now_ms().into());
            serde_json::Value::Object(m).to_string()
        }
        _ => line.to_string(),
    }
}

/// A server replaying the first `split` lines on the first connection and then dropping it
/// without a close frame, and the rest on the second, which it keeps open. It reports each
/// connection's first message (the subscription) on the channel.
fn server(lines: Vec<String>, split: usize) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, part) in [&lines[..split], &lines[split..]].into_iter().enumerate() {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut ws = tungstenite::accept(stream).unwrap();
            let sub = ws.read().unwrap();
            tx.send(sub.into_text().unwrap().to_string()).unwrap();
            for line in part {
                ws.send(Message::text(rebased(line))).unwrap();
            }
            if n == 0 {
                // A forced disconnect: the socket closes under the WebSocket.
                drop(ws);
            } else {
                // Keep the second connection open until the client goes away.
                while ws.read().is_ok() {}
                return;
            }
        }
    });
    (port, rx)
}

fn source(port: u16) -> WsSource {
    WsSource {
        name: "replay".into(),
        weight: 1,
        url: format!("ws://127.0.0.1:{port}/ws"),
        subscribe: Some(SUBSCRIBE.into()),
        list_path: None,
        symbol_path: "s".into(),
        price_path: "p".into(),
        time_path: Some("E".into()),
        time_unit: TimeUnit::Ms,
        symbols: [("BTCUSDT".to_string(), "BTC".to_string()), ("ETHUSDT".to_string(), "ETH".to_string())]
            .into_iter()
            .collect(),
        connect_timeout_ms: 1_000,
        idle_timeout_ms: 10_000,
        reconnect_min_ms: 50,
        reconnect_max_ms: 200,
    }
}

fn oracle(ws: WsSource) -> Oracle {
    let config = OracleConfig {
        min_sources: 1,
        episode_quiet_ms: 0,
        sources: vec![SourceConfig::Ws(ws)],
        ..OracleConfig::default()
    };
    Oracle::new(config, &[(BTC, "BTC".to_string()), (ETH, "ETH".to_string())], &[], 0).unwrap()
}

/// Polls `f` until it holds or 5 s pass.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_replayed_stream_with_a_disconnect_and_bad_messages() {
    let lines: Vec<String> =
        include_str!("data/ws_ticks.jsonl").lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    assert_eq!(lines.len(), 10);
    // First connection: the first five lines (one of them not JSON), then the drop.
    let (port, subs) = server(lines, 5);
    let mut o = oracle(source(port));
    let stats = o.stats();
    assert_eq!(subs.recv_timeout(Duration::from_secs(5)).unwrap(), SUBSCRIBE);
    assert_eq!(
        subs.recv_timeout(Duration::from_secs(5)).unwrap(),
        SUBSCRIBE,
        "subscribed again after reconnecting"
    );
    // The last good ticks of the file: BTC 121455.75, ETH 4349.10.
    let want = vec![(BTC, 121_455_750_000), (ETH, 4_349_100_000)];
    eventually("the last ticks", || o.observe(now_ms()).prices == want);
    let s = stats.snapshot();
    // Three malformed lines (bad JSON, a missing price, a non-numeric price); SOL is ignored.
    assert_eq!(s.get("replay", ErrorKind::Malformed), 3, "{s:?}");
    assert!(s.get("replay", ErrorKind::Disconnect) >= 1, "{s:?}");
    assert_eq!(s.get("replay", ErrorKind::Connect), 0, "{s:?}");
    // The disconnect episode ended with the reconnect, the malformed one with a good message.
    assert!(!stats.sources()[0].failing(ErrorKind::Disconnect));
    assert!(!stats.sources()[0].failing(ErrorKind::Malformed));
    // The ticks' own times are used: they are no later than now, and stale 2 s after.
    let t = now_ms();
    assert_eq!(o.observe(t + 3_000).prices, vec![]);
    assert_eq!(stats.snapshot().get("replay", ErrorKind::Stale), 2);
}

#[test]
fn a_missing_server_is_retried_with_backoff_and_counted() {
    // A port with nothing listening: bind, take the port, close.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut o = oracle(source(port));
    let stats = o.stats();
    let started = Instant::now();
    eventually("three failed connects", || stats.snapshot().get("replay", ErrorKind::Connect) >= 3);
    // Backoff 50, 100, 200 ms: three tries take at least 150 ms.
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
    assert!(stats.sources()[0].failing(ErrorKind::Connect));
    // Observing never waits on the source.
    let t = Instant::now();
    for _ in 0..100 {
        assert!(o.observe(now_ms()).prices.is_empty());
    }
    assert!(t.elapsed() < Duration::from_millis(100), "{:?}", t.elapsed());
}

#[test]
fn a_silent_connection_times_out_and_reconnects() {
    // A server that accepts the handshake and then says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(2) {
            let Ok(stream) = stream else { return };
            if let Ok(ws) = tungstenite::accept(stream) {
                held.push(ws);
            }
        }
        std::thread::sleep(Duration::from_secs(10));
    });
    let mut ws = source(port);
    ws.idle_timeout_ms = 200;
    ws.subscribe = None;
    let o = oracle(ws);
    let stats = o.stats();
    eventually("an idle timeout", || stats.snapshot().get("replay", ErrorKind::Timeout) >= 1);
    drop(o);
}
