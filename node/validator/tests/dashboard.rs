//! The live dashboard of a running devnet, as a browser shows it: headless Chromium loads
//! `/dashboard` from validator 0's metrics endpoint twice, a few seconds apart, lets the page's
//! script poll and render, and dumps the DOM and a screenshot each time. The numbers must be
//! real and moving: height up, orders flowing, the fund seeded, both sides of the book quoted
//! (the load generator's makers rest post-only quotes on both sides), in order, never crossed. Then the same page,
//! cut off from its node, must say so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{BIN, exclusive, port_block, tool};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `bastion devnet`, stopped with SIGTERM when dropped (it then stops its nodes).
struct Devnet(Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped (we still hold its Child).
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = Instant::now();
        while self.0.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(20) {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What one Chromium run left: the DOM after the page's script ran, and the screenshot.
struct Capture {
    dom: String,
    png: PathBuf,
}

/// Loads `url` in headless Chromium for 3 s of the page's (virtual) time, with its own profile.
fn chromium(chromium: &str, url: &str, out: &Path, name: &str) -> Capture {
    let png = out.join(format!("{name}.png"));
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .args(["--no-first-run", "--hide-scrollbars", "--virtual-time-budget=3000"])
        .arg(format!("--user-data-dir={}", out.join(format!("{name}-profile")).display()))
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1280,1000", "--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(45) {
            let _ = child.kill();
            panic!("chromium did not finish {url} within 45 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Capture { dom: reader.join().unwrap(), png }
}

/// The text of the element with this id (up to its first child tag).
fn text(dom: &str, id: &str) -> String {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no element #{id} in:\n{dom}"));
    let rest = &dom[at..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap();
    rest[open..open + close].trim().to_string()
}

/// The number in the element with this id (thousands separators and units dropped).
fn number(dom: &str, id: &str) -> f64 {
    let t = text(dom, id);
    let digits: String = t.chars().take_while(|c| !c.is_whitespace()).filter(|c| *c != ',').collect();
    digits.parse().unwrap_or_else(|_| panic!("#{id} is {t:?}, not a number"))
}

/// The inner HTML of the element with this id (no nesting of the same tag inside).
fn inner<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let attr = dom.find(&format!(" id=\"{id}\"")).unwrap_or_else(|| panic!("no <{tag} id={id}>"));
    assert!(
        dom[..attr].rfind('<').is_some_and(|open| dom[open + 1..].starts_with(tag)),
        "#{id} is no <{tag}>"
    );
    let at = attr + dom[attr..].find('>').unwrap() + 1;
    let end = dom[at..].find(&format!("</{tag}>")).unwrap();
    &dom[at..at + end]
}

/// Rows of one side of the book.
fn levels(dom: &str, side: &str) -> usize {
    inner(dom, "tbody", &format!("book-{side}s")).matches(&format!("<tr class=\"level {side}\">")).count()
}

/// The prices of one side of the book, top row first.
fn prices(dom: &str, side: &str) -> Vec<f64> {
    let rows = inner(dom, "tbody", &format!("book-{side}s"));
    rows.split("<td class=\"px\">")
        .skip(1)
        .map(|cell| cell[..cell.find('<').unwrap()].replace(',', "").parse().unwrap())
        .collect()
}

#[test]
fn the_dashboard_shows_a_live_devnet() {
    let Some(browser) = tool("chromium", "chromium") else { return };
    let _one = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let net = tmp.path().join("net");
    let log = std::fs::File::create(tmp.path().join("devnet.log")).unwrap();
    // One validator and no full node keep the test light on two cores; the devnet's own
    // duration is a backstop: the test stops it when done.
    let base = port_block(16);
    let devnet = Devnet(
        Command::new(BIN)
            .args(["devnet", "--validators", "1", "--full-nodes", "0", "--duration", "60s"])
            .args(["--rate", "400", "--traders", "100", "--scenario", "calm"])
            .args(["--base-port", &base.to_string(), "--data-dir"])
            .arg(&net)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let devnet_log = || std::fs::read_to_string(tmp.path().join("devnet.log")).unwrap_or_default();

    // Orders flow (validator 0's status names its metrics endpoint), and the load generator's
    // makers quote both sides of the first market (in the first seconds the takers' buys and
    // sells can empty one side of a still thin book).
    let status_path = net.join("v0/data/status.json");
    let start = Instant::now();
    let metrics = loop {
        let status: serde_json::Value = std::fs::read(&status_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if status["orders_finalized"].as_u64().unwrap_or(0) > 1_000
            && let Some(m) = status["metrics"].as_str()
            && let Ok(book) = serde_json::from_str::<serde_json::Value>(&get(m, "/dashboard/book.json"))
            && book["market"]["bids"].as_array().is_some_and(|b| !b.is_empty())
            && book["market"]["asks"].as_array().is_some_and(|a| !a.is_empty())
        {
            break m.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "no orders finalized and quoted on both sides in 45 s:\n{}",
            devnet_log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let url = format!("http://{metrics}/dashboard");

    let first = chromium(browser, &url, tmp.path(), "first");
    std::thread::sleep(Duration::from_secs(3));
    let second = chromium(browser, &url, tmp.path(), "second");

    for (name, c) in [("first", &first), ("second", &second)] {
        let dom = &c.dom;
        assert_eq!(text(dom, "conn"), "live", "{name} run: the page reached the node");
        assert_eq!((text(dom, "node"), text(dom, "role")), ("v0".into(), "validator".into()));
        assert_ne!(text(dom, "updated"), "never", "{name} run");
        assert!(number(dom, "height") > 0.0, "{name} run");
        assert!(number(dom, "orders-rate") > 0.0, "{name} run: orders flow");
        assert!(number(dom, "orders-total") > 0.0, "{name} run");
        assert!(number(dom, "insurance") > 0.0, "{name} run: the devnet seeds the fund");
        assert!(number(dom, "liquidations") >= 0.0 && number(dom, "adl") >= 0.0, "{name} run");
        // Top 10 at most per side; the asks listed from the highest down to the best, then the
        // bids from the best down, never crossed. A taker's IOC (up to 1% through the fair
        // price) can sweep one side of this one-validator devnet's book for a moment (makers'
        // quotes live 200 blocks, about a second here), so a side may be empty in one load.
        let (bids, asks) = (levels(dom, "bid"), levels(dom, "ask"));
        assert!(bids <= 10 && asks <= 10 && bids + asks > 0, "{name} run: book {bids} bids, {asks} asks");
        let (bid_px, ask_px) = (prices(dom, "bid"), prices(dom, "ask"));
        assert_eq!((bid_px.len(), ask_px.len()), (bids, asks));
        assert!(bid_px.windows(2).all(|w| w[0] > w[1]), "{name} run: bids {bid_px:?}");
        assert!(ask_px.windows(2).all(|w| w[0] > w[1]), "{name} run: asks {ask_px:?}");
        if let (Some(best_bid), Some(best_ask)) = (bid_px.first(), ask_px.last()) {
            assert!(best_bid < best_ask, "{name} run: crossed {best_bid} >= {best_ask}");
        }
        assert!(text(dom, "book-status").starts_with("BTC-PERP"), "{name} run: {}", text(dom, "book-status"));
        // The charts were drawn from the node's history, the tiles and rings listed.
        assert!(inner(dom, "svg", "chart-height").contains("<polyline points="), "{name} run");
        let tiles = inner(dom, "tbody", "tiles");
        for tile in ["net", "verify", "admission", "sequencer", "consensus", "execution", "storage"] {
            assert!(tiles.contains(&format!("<td class=\"name\">{tile}</td>")), "{name} run: tile {tile}");
        }
        assert!(inner(dom, "tbody", "rings").contains("<td class=\"name\">net_to_verify</td>"), "{name} run");
    }
    // Both sides quoted: each shown in at least one of the two loads.
    let sides = |side| [&first, &second].iter().map(|c| levels(&c.dom, side)).max().unwrap_or(0);
    assert!(sides("bid") > 0 && sides("ask") > 0, "one side of the book never shown");
    let (h1, h2) = (number(&first.dom, "height"), number(&second.dom, "height"));
    assert!(h2 > h1, "the height moved between the two loads: {h1} then {h2}");
    assert_ne!(text(&first.dom, "updated"), text(&second.dom, "updated"));
    println!(
        "first: height {h1}, {} orders/s, insurance {}, book {}x{}; second: height {h2}, {} orders/s, book {}x{}",
        text(&first.dom, "orders-rate"),
        text(&first.dom, "insurance"),
        levels(&first.dom, "bid"),
        levels(&first.dom, "ask"),
        text(&second.dom, "orders-rate"),
        levels(&second.dom, "bid"),
        levels(&second.dom, "ask"),
    );

    // Both screenshots exist, are PNGs of the page, and differ (the numbers moved).
    let (a, b) = (std::fs::read(&first.png).unwrap(), std::fs::read(&second.png).unwrap());
    for png in [&a, &b] {
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} bytes", png.len());
    }
    assert_ne!(a, b, "the two screenshots are identical");
    if let Some(dir) = std::env::var_os("DASHBOARD_SCREENSHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&first.png, dir.join("first.png")).unwrap();
        std::fs::copy(&second.png, dir.join("second.png")).unwrap();
    }

    // The page cut off from its node says so plainly.
    let page = tmp.path().join("offline.html");
    let served = get(&metrics, "/dashboard");
    assert!(served.contains("id=\"conn\""), "{served}");
    std::fs::write(&page, served).unwrap();
    drop(devnet);
    let offline = chromium(browser, &format!("file://{}", page.display()), tmp.path(), "offline");
    let conn = text(&offline.dom, "conn");
    assert!(conn.starts_with("NODE UNREACHABLE: the node does not answer"), "{conn}");
}

/// The body of `GET path` from `addr` (HTTP/1.0, the metrics server's dialect), whatever the
/// status; empty when the exchange fails.
fn get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let exchange = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        Ok(raw.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
    };
    exchange().unwrap_or_default()
}
