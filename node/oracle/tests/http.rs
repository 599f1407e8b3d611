//! The HTTP source against a local server answering by hand: tickers as an array and under a
//! list path, a 500, garbage, and a server that never answers (the timeout).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_oracle::{ErrorKind, HttpSource, Oracle, OracleConfig, SourceConfig, TimeUnit};
use bastion_types::UnderlyingId;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BTC: UnderlyingId = UnderlyingId(0);
const ETH: UnderlyingId = UnderlyingId(1);

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Reads a request's head and answers it by its path.
fn answer(mut stream: TcpStream) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
    // Decimal seconds, as some venues write them.
    let secs = format!("{:.3}", now_ms() as f64 / 1_000.0);
    let tickers = format!(
        r#"[{{"symbol":"BTC-USD","last":"100000.5","time":{secs}}},{{"symbol":"ETH-USD","last":4000.25,"time":"{secs}"}}]"#
    );
    let (status, body) = match path.as_str() {
        "/tickers" => ("200 OK", tickers),
        "/wrapped" => ("200 OK", format!(r#"{{"data":{tickers}}}"#)),
        "/broken" => ("500 Internal Server Error", "oops".to_string()),
        "/garbage" => ("200 OK", "<html>not json</html>".to_string()),
        "/hang" => {
            std::thread::sleep(Duration::from_secs(10));
            return;
        }
        _ => ("404 Not Found", String::new()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || answer(stream));
        }
    });
    port
}

fn source(name: &str, port: u16, path: &str) -> SourceConfig {
    SourceConfig::Http(HttpSource {
        name: name.into(),
        weight: 1,
        url: format!("http://127.0.0.1:{port}{path}"),
        poll_ms: 100,
        timeout_ms: 300,
        list_path: (path == "/wrapped").then(|| "data".to_string()),
        symbol_path: "symbol".into(),
        price_path: "last".into(),
        time_path: Some("time".into()),
        time_unit: TimeUnit::S,
        symbols: [("BTC-USD".to_string(), "BTC".to_string()), ("ETH-USD".to_string(), "ETH".to_string())]
            .into_iter()
            .collect(),
    })
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn polling_endpoints_good_and_bad() {
    let port = server();
    let config = OracleConfig {
        min_sources: 2,
        sources: vec![
            source("array", port, "/tickers"),
            source("wrapped", port, "/wrapped"),
            source("broken", port, "/broken"),
            source("garbage", port, "/garbage"),
            source("hang", port, "/hang"),
        ],
        ..OracleConfig::default()
    };
    let started = Instant::now();
    let mut o = Oracle::new(config, &[(BTC, "BTC".to_string()), (ETH, "ETH".to_string())], &[], 0).unwrap();
    assert!(started.elapsed() < Duration::from_millis(100), "starting sources does not wait on them");
    let stats = o.stats();
    let want = vec![(BTC, 100_000_500_000), (ETH, 4_000_250_000)];
    eventually("prices from the two good endpoints", || o.observe(now_ms()).prices == want);
    eventually("every failure counted", || {
        let s = stats.snapshot();
        s.get("broken", ErrorKind::HttpStatus) >= 2
            && s.get("garbage", ErrorKind::Malformed) >= 2
            && s.get("hang", ErrorKind::Timeout) >= 2
    });
    let s = stats.snapshot();
    for good in ["array", "wrapped"] {
        for kind in ErrorKind::ALL {
            assert_eq!(s.get(good, kind), 0, "{good} {kind:?}");
        }
    }
    assert_eq!(s.get("hang", ErrorKind::Connect), 0, "a timeout is not a connect failure");
    // While "hang" is stuck in a request, observing still never waits.
    let t = Instant::now();
    for _ in 0..100 {
        assert_eq!(o.observe(now_ms()).prices, want);
    }
    assert!(t.elapsed() < Duration::from_millis(100), "{:?}", t.elapsed());
}

#[test]
fn a_refused_connection_is_counted() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = OracleConfig {
        min_sources: 1,
        sources: vec![source("gone", port, "/tickers")],
        ..OracleConfig::default()
    };
    let o = Oracle::new(config, &[(BTC, "BTC".to_string()), (ETH, "ETH".to_string())], &[], 0).unwrap();
    let stats = o.stats();
    eventually("connect failures", || stats.snapshot().get("gone", ErrorKind::Connect) >= 2);
}
