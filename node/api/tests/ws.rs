//! WebSocket: every fill exactly once, in order, gapless seq; a slow consumer is closed with
//! bounded memory; connection and subscription limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn user_fills_arrive_exactly_once_in_order_with_gapless_seq() {
    let (api, _) = start(config(), false);
    let feeder = api.feeder();
    let mut c = Chain::new(11, 6);
    let first = c.fund();
    feeder.push(first.clone());
    wait_height(&api, first.height);
    let who = c.traders[1];
    let mut ws = ws_connect(&api).unwrap();
    ws_send(
        &mut ws,
        json!({"method": "subscribe", "subscription": {"type": "userFills", "account": who.0.to_string()}}),
    );
    ws_send(&mut ws, json!({"method": "subscribe", "subscription": {"type": "blocks"}}));
    let r = ws_next(&mut ws);
    assert_eq!(r["channel"], "subscriptionResponse", "{r}");
    let snap = ws_next(&mut ws);
    assert_eq!(
        (snap["channel"].as_str(), snap["seq"].as_u64(), snap["snapshot"].as_bool()),
        (Some("userFills"), Some(0), Some(true))
    );
    assert_eq!(snap["data"], json!([]), "no fills before trading");
    let mut want = Vec::new();
    let blocks = 80;
    let mut last = first.height;
    for _ in 0..blocks {
        let u = c.trade(40);
        want.extend(fills_of(&u.events, who).into_iter().map(|f| (u.height, f)));
        last = u.height;
        feeder.push(u);
    }
    assert!(want.len() >= 10, "the workload trades: {} fills", want.len());
    let mut got = Vec::new();
    let (mut seq_fills, mut seq_blocks) = (1u64, 0u64);
    let mut block_heights = Vec::new();
    // The blocks subscription may be answered after a block or two (its snapshot says when).
    let mut blocks_from = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while block_heights.last() != Some(&last) {
        assert!(Instant::now() < deadline, "timed out with {} fills", got.len());
        let m = ws_next(&mut ws);
        match m["channel"].as_str().unwrap() {
            "userFills" => {
                assert_eq!(m["seq"].as_u64(), Some(seq_fills), "gapless seq: {m}");
                seq_fills += 1;
                let h = m["height"].as_u64().unwrap();
                for f in m["data"].as_array().unwrap() {
                    assert_eq!(f["height"].as_u64(), Some(h));
                    assert!(f["maker"].as_u64() == Some(who.0) || f["taker"].as_u64() == Some(who.0));
                    got.push((
                        h,
                        (
                            f["price"].as_i64().unwrap(),
                            f["qty"].as_i64().unwrap(),
                            f["maker_order"].as_u64().unwrap(),
                        ),
                    ));
                }
            }
            "blocks" => {
                assert_eq!(m["seq"].as_u64(), Some(seq_blocks), "{m}");
                seq_blocks += 1;
                if m["snapshot"] == false {
                    block_heights.push(m["height"].as_u64().unwrap());
                } else {
                    blocks_from = m["height"].as_u64().unwrap() + 1;
                }
            }
            "subscriptionResponse" => {}
            other => panic!("unexpected {other}: {m}"),
        }
    }
    assert_eq!(got, want, "every fill of the account exactly once, in order");
    assert!(blocks_from > first.height);
    assert_eq!(
        block_heights,
        (blocks_from..=last).collect::<Vec<_>>(),
        "one blocks message per block after the snapshot"
    );
    // Unsubscribe: answered, and nothing more arrives on that channel.
    ws_send(&mut ws, json!({"method": "unsubscribe", "subscription": {"type": "blocks"}}));
    assert_eq!(ws_next(&mut ws)["channel"], "subscriptionResponse");
    ws_send(&mut ws, json!({"method": "unsubscribe", "subscription": {"type": "blocks"}}));
    assert_eq!(ws_next(&mut ws)["data"]["code"], "not_subscribed");
    ws_send(&mut ws, json!({"method": "subscribe", "subscription": {"type": "l2Book", "market": 77}}));
    let e = ws_next(&mut ws);
    assert_eq!(e["data"]["code"], "bad_subscription", "{e}");
    assert!(e["data"]["message"].as_str().unwrap().starts_with("subscription.market"), "{e}");
    ws_send(&mut ws, json!({"method": "subscribe", "subscription": {"type": "nope"}}));
    assert_eq!(ws_next(&mut ws)["data"]["code"], "bad_subscription");
    // l2Book, bbo, trades, orderUpdates, account, liquidations answer snapshots too.
    for sub in [
        json!({"type": "l2Book", "market": "BTC-PERP", "depth": 5}),
        json!({"type": "bbo", "market": 0}),
        json!({"type": "trades", "market": 0}),
        json!({"type": "orderUpdates", "account": who.0.to_string()}),
        json!({"type": "account", "account": who.0.to_string()}),
        json!({"type": "liquidations"}),
    ] {
        ws_send(&mut ws, json!({"method": "subscribe", "subscription": sub}));
        assert_eq!(ws_next(&mut ws)["channel"], "subscriptionResponse");
        let s = ws_next(&mut ws);
        assert_eq!(
            (s["channel"].clone(), s["seq"].as_u64(), s["height"].as_u64()),
            (sub["type"].clone(), Some(0), Some(last)),
            "{s}"
        );
    }
    let u = c.trade(40);
    let h = u.height;
    feeder.push(u);
    let mut channels = std::collections::BTreeSet::new();
    while channels.len() < 3 {
        let m = ws_next(&mut ws);
        assert_eq!(m["height"].as_u64(), Some(h));
        if m["channel"] == "l2Book" {
            assert!(m["data"]["bids"].as_array().unwrap().len() <= 5);
        }
        if m["channel"] == "account" {
            assert_eq!(m["data"]["account"].as_u64(), Some(who.0));
        }
        channels.insert(m["channel"].as_str().unwrap().to_string());
        if channels.contains("l2Book") && channels.contains("trades") && channels.contains("bbo") {
            break;
        }
    }
    assert!(api.stats().ws_messages > 100);
}

#[test]
fn a_consumer_that_never_reads_is_closed_and_memory_stays_bounded() {
    let mut cfg = config();
    cfg.ws_buffer = 128;
    cfg.max_subscriptions_per_connection = 64;
    let (api, _) = start(cfg, false);
    let feeder = api.feeder();
    let mut c = Chain::new(5, 10);
    let u = c.fund();
    feeder.push(u.clone());
    wait_height(&api, u.height);
    let mut slow = ws_connect(&api).unwrap();
    // Many deep book subscriptions: each block that moves the book queues ~60 messages.
    for depth in 41..=100 {
        ws_send(
            &mut slow,
            json!({"method": "subscribe", "subscription": {"type": "l2Book", "market": 0, "depth": depth}}),
        );
    }
    // A healthy subscriber alongside, that reads.
    let mut good = ws_connect(&api).unwrap();
    ws_send(&mut good, json!({"method": "subscribe", "subscription": {"type": "blocks"}}));
    assert_eq!(ws_next(&mut good)["channel"], "subscriptionResponse");
    let mut max_queued = 0;
    let bound = 128 * 16 * 1024; // ws_buffer messages x the largest one (100 levels a side)
    let t = Instant::now();
    let mut height = u.height;
    while api.stats().ws_closed_slow == 0 {
        assert!(t.elapsed() < Duration::from_secs(30), "never closed: {:?}", api.stats());
        let u = c.trade(40);
        height = u.height;
        feeder.push(u);
        wait_height(&api, height);
        max_queued = max_queued.max(api.stats().ws_queued_bytes);
        // Drain the good one.
        while ws_next(&mut good)["height"].as_u64() != Some(height) {}
    }
    assert!(max_queued <= bound, "queued {max_queued} bytes");
    eprintln!(
        "slow consumer closed after {} blocks, {:?}; peak queued {max_queued} bytes",
        height - u.height,
        t.elapsed()
    );
    // The good subscriber still gets every block.
    let u = c.trade(40);
    feeder.push(u.clone());
    while ws_next(&mut good)["height"].as_u64() != Some(u.height) {}
    // The slow one, reading at last, finds the close frame with the reason after its backlog.
    let t = Instant::now();
    let reason = loop {
        assert!(t.elapsed() < Duration::from_secs(20));
        match slow.read() {
            Ok(tungstenite::Message::Close(Some(f))) => break f.reason.to_string(),
            Ok(tungstenite::Message::Close(None)) => break String::new(),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(reason, "slow consumer");
    let s = api.stats();
    assert_eq!((s.ws_closed_slow, s.ws_connections), (1, 1), "{s:?}");
    assert!(s.ws_queued_bytes <= bound, "{s:?}");
}

#[test]
fn connection_and_subscription_limits_per_ip() {
    let mut cfg = config();
    cfg.max_connections_per_ip = 2;
    cfg.max_subscriptions_per_connection = 2;
    let (api, _) = start(cfg, false);
    let mut c = Chain::new(3, 2);
    let u = c.fund();
    api.feeder().push(u.clone());
    wait_height(&api, u.height);
    let mut a = ws_connect(&api).unwrap();
    let b = ws_connect(&api).unwrap();
    match ws_connect(&api) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 429),
        other => panic!("third connection: {:?}", other.map(|_| ())),
    }
    for sub in [json!({"type": "blocks"}), json!({"type": "liquidations"})] {
        ws_send(&mut a, json!({"method": "subscribe", "subscription": sub}));
        assert_eq!(ws_next(&mut a)["channel"], "subscriptionResponse");
        ws_next(&mut a);
    }
    ws_send(&mut a, json!({"method": "subscribe", "subscription": {"type": "bbo", "market": 0}}));
    let e = ws_next(&mut a);
    assert_eq!(e["data"]["code"], "too_many_subscriptions", "{e}");
    ws_send(&mut a, json!({"method": "subscribe", "subscription": {"type": "blocks"}}));
    assert_eq!(ws_next(&mut a)["data"]["code"], "already_subscribed");
    // Closing one frees its slot.
    drop(b);
    let t = Instant::now();
    loop {
        match ws_connect(&api) {
            Ok(_) => break,
            Err(_) if t.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("slot never freed: {e}"),
        }
    }
}

#[test]
fn a_full_feed_queue_marks_the_api_behind_and_closes_subscribers_at_the_gap() {
    let mut cfg = config();
    cfg.feed_queue = 2;
    let (api, _) = start(cfg, false);
    let feeder = api.feeder();
    let mut c = Chain::new(2, 4);
    let u = c.fund();
    feeder.push(u.clone());
    wait_height(&api, u.height);
    let mut ws = ws_connect(&api).unwrap();
    ws_send(&mut ws, json!({"method": "subscribe", "subscription": {"type": "blocks"}}));
    assert_eq!(ws_next(&mut ws)["channel"], "subscriptionResponse");
    assert_eq!(ws_next(&mut ws)["snapshot"], true);
    let updates: Vec<_> = (0..300).map(|_| c.trade(10)).collect();
    for u in &updates {
        feeder.push(u.clone());
    }
    // A block after the burst: the API sees the gap (if the last ones were the dropped ones).
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) && api.stats().height < updates.last().unwrap().height {
        std::thread::sleep(Duration::from_millis(20));
    }
    feeder.push(c.trade(10));
    let s = api.stats();
    assert!(s.updates_dropped > 0 && s.behind, "{s:?}");
    assert_eq!(get(&api, "/v1/status").1["behind"], true);
    // The subscriber sees consecutive heights, then a close naming the gap: never a skip.
    let mut expect = u.height + 1;
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => {
                let m: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(m["height"].as_u64(), Some(expect), "{m}");
                expect += 1;
            }
            tungstenite::Message::Close(Some(f)) => {
                assert!(f.reason.contains("fell behind"), "{f:?}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn stopping_the_api_closes_every_subscriber_with_a_reason() {
    let mut cfg = config();
    cfg.max_connections_per_ip = 200;
    cfg.rate_per_ip = 10_000;
    let (api, _) = start(cfg, false);
    let feeder = api.feeder();
    let mut c = Chain::new(3, 4);
    let u = c.fund();
    feeder.push(u.clone());
    wait_height(&api, u.height);
    let mut subs: Vec<Ws> = (0..150).map(|_| ws_connect(&api).unwrap()).collect();
    for ws in &mut subs {
        ws_send(ws, json!({"method": "subscribe", "subscription": {"type": "blocks"}}));
        assert_eq!(ws_next(ws)["channel"], "subscriptionResponse");
        assert_eq!(ws_next(ws)["snapshot"], true);
    }
    let t = Instant::now();
    api.stop();
    eprintln!("stop took {:?}", t.elapsed());
    // A subscriber of a node that shuts down learns it from a close frame, not a reset.
    for (k, ws) in subs.iter_mut().enumerate() {
        let reason = loop {
            match ws.read() {
                Ok(tungstenite::Message::Close(Some(f))) => break f.reason.to_string(),
                Ok(tungstenite::Message::Close(None)) => break String::new(),
                Ok(_) => {}
                Err(e) => panic!("subscriber {k}: no close frame: {e}"),
            }
        };
        assert_eq!(reason, "server shutting down", "subscriber {k}");
    }
}
