//! Every REST endpoint over real HTTP, with its 4xx cases, against updates of real blocks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use bastion_api::{ROUTES, SubmitError};
use bastion_types::{Action, AssetId, MarketId, OrderRequest, SelfTradePrevention, Side, TimeInForce};
use common::*;

#[test]
fn every_endpoint_answers_and_refuses_bad_input() {
    let (api, rec) = start(config(), true);
    let feeder = api.feeder();
    let mut c = Chain::new(7, 8);
    let (st, v) = get(&api, "/v1/markets");
    assert_eq!((st, v["code"].as_str()), (503, Some("no_state")), "{v}");
    let mut fills_by_trader = std::collections::HashMap::new();
    let mut last = c.fund();
    feeder.push(last.clone());
    for _ in 0..40 {
        last = c.trade(30);
        for t in &c.traders {
            fills_by_trader.entry(*t).or_insert_with(Vec::new).extend(fills_of(&last.events, *t));
        }
        feeder.push(last.clone());
    }
    wait_height(&api, last.height);

    let (st, s) = get(&api, "/v1/status");
    assert_eq!(st, 200);
    assert_eq!(s["genesis_digest"], hex(&DIGEST));
    assert_eq!(s["height"], last.height);
    assert_eq!(s["root"], hex(&last.root));
    assert_eq!((s["role"].as_str(), s["behind"].as_bool()), (Some("full"), Some(false)));

    let (st, m) = get(&api, "/v1/markets");
    assert_eq!(st, 200);
    let markets = m["markets"].as_array().unwrap();
    assert_eq!(markets.len(), c.state.markets.len());
    let btc = &markets[0];
    assert_eq!(btc["symbol"], "BTC-PERP");
    assert_eq!(btc["mark_price_micros"], c.state.markets[&MarketId(0)].mark);
    assert_eq!(btc["open_interest_lots"], c.state.markets[&MarketId(0)].open_interest);

    // Book by id and by symbol, depth bounded.
    let (st, b) = get(&api, "/v1/book/0?depth=3");
    assert_eq!(st, 200);
    let book = &c.state.markets[&MarketId(0)].book;
    let want: Vec<[i64; 2]> = book.levels(Side::Buy).take(3).map(|(p, q)| [p, q]).collect();
    assert_eq!(serde_json::to_value(&want).unwrap(), b["bids"]);
    assert!(!want.is_empty(), "the workload rests bids");
    assert_eq!(get(&api, "/v1/book/btc-perp?depth=3").1["bids"], b["bids"]);
    for (path, code, status) in [
        ("/v1/book/99", "unknown_market", 404),
        ("/v1/book/NOPE", "unknown_market", 404),
        ("/v1/book/0?depth=0", "bad_query", 400),
        ("/v1/book/0?depth=x", "bad_query", 400),
        ("/v1/trades/99", "unknown_market", 404),
        ("/v1/accounts/12", "unknown_account", 404),
        ("/v1/accounts/abc", "bad_account", 400),
        ("/v1/accounts/0x12", "bad_account", 400),
        ("/v1/accounts/12/orders", "unknown_account", 404),
        ("/v1/accounts/12/fills", "unknown_account", 404),
        ("/v1/blocks/abc", "bad_height", 400),
        ("/v1/blocks/100000", "unknown_block", 404),
        ("/v1/tx/zz", "bad_hash", 400),
        ("/v1/tx/0000000000000000000000000000000000000000000000000000000000000000", "unknown_tx", 404),
        ("/v1/nothing", "no_route", 404),
    ] {
        let (st, v) = get(&api, path);
        assert_eq!((st, v["code"].as_str()), (status, Some(code)), "{path}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {v}");
    }

    // Trades: the last trades of market 0 are the last fills of the last blocks.
    let (st, t) = get(&api, "/v1/trades/BTC-PERP?limit=5");
    assert_eq!(st, 200);
    assert!(t["trades"].as_array().unwrap().len() <= 5);

    // Accounts, by id and by public key; orders are the book's; fills are the events'.
    let trader = c.traders[0];
    let key = *c.keys[&trader].public();
    let (st, a) = get(&api, &format!("/v1/accounts/{}", trader.0));
    assert_eq!(st, 200);
    assert_eq!(a, get(&api, &format!("/v1/accounts/0x{}", hex(&key))).1);
    let acct = c.state.accounts.get(&trader).unwrap();
    assert_eq!(a["balances"][0]["amount"], serde_json::json!(acct.balances[0]));
    assert_eq!(a["nonce"], acct.nonce);
    let h = c.state.account_health(trader).unwrap();
    assert_eq!(a["health"]["collateral_micros"], serde_json::json!(h.collateral));
    assert_eq!(a["positions"].as_array().unwrap().len(), acct.positions.len());
    let (_, o) = get(&api, &format!("/v1/accounts/{}/orders", trader.0));
    let want: usize =
        c.state.markets.values().map(|m| m.book.orders().filter(|o| o.account == trader).count()).sum();
    assert_eq!(o["orders"].as_array().unwrap().len(), want);
    for t in &c.traders {
        let (_, f) = get(&api, &format!("/v1/accounts/{}/fills?limit=1000", t.0));
        let got: Vec<(i64, i64, u64)> = f["fills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (x["price"].as_i64().unwrap(), x["qty"].as_i64().unwrap(), x["maker_order"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(got, fills_by_trader[t], "fills of {t}");
    }

    // A block: header and each tx's hash is tx_hash of its key and body.
    let (st, blk) = get(&api, &format!("/v1/blocks/{}", last.height));
    assert_eq!(st, 200);
    assert_eq!(blk["header"]["root"], hex(&last.root));
    let txs = blk["txs"].as_array().unwrap();
    assert_eq!(txs.len(), last.block.txs.len());
    for (i, tx) in last.block.txs.iter().enumerate() {
        let body = bastion_types::tx::encode_body(tx.nonce, &tx.action);
        assert_eq!(txs[i]["hash"], hex(&bastion_client::tx_hash(&last.auths[i].public_key, &body)));
    }

    // POST /v1/tx: a real order, pending, then included with outcome ok; a withdrawal too large
    // is included with its typed rejection.
    let key = c.keys[&trader].clone();
    let n = c.state.accounts.get(&trader).unwrap().nonce;
    let order = Action::Place(OrderRequest {
        market: MarketId(0),
        side: Side::Buy,
        price: Some(c.state.markets[&MarketId(0)].mark / c.state.markets[&MarketId(0)].spec.tick_size),
        qty: 1,
        tif: TimeInForce::Ioc,
        reduce_only: false,
        good_til_height: None,
        stp: SelfTradePrevention::CancelResting,
    });
    let s1 = key.sign(&DIGEST, n + 1, order.clone());
    let s2 = key.sign(&DIGEST, n + 2, Action::Withdraw { asset: AssetId(0), amount: i128::MAX / 4 });
    for s in [&s1, &s2] {
        let (st, v) =
            post(&api, "/v1/tx", &serde_json::json!({"packet": hex(&s.packet().unwrap())}).to_string());
        assert_eq!((st, v["hash"].as_str()), (200, Some(hex(&s.hash()).as_str())), "{v}");
        assert_eq!(get(&api, &format!("/v1/tx/{}", hex(&s.hash()))).1["status"], "pending");
    }
    assert_eq!(rec.packets.lock().unwrap().len(), 2);
    assert_eq!(rec.packets.lock().unwrap()[0], s1.packet().unwrap());
    // The workload must not reuse the trader's nonces.
    let i = c.traders.iter().position(|t| *t == trader).unwrap() + 1;
    c.w.nonces[i] = n + 2;
    let b = c.w.block_with(vec![s1.tx.clone(), s2.tx.clone()]);
    let u = c.update_with(b, vec![s1.auth, s2.auth]);
    feeder.push(u.clone());
    wait_height(&api, u.height);
    let (_, v) = get(&api, &format!("/v1/tx/{}", hex(&s1.hash())));
    assert_eq!(
        (v["status"].as_str(), v["outcome"].as_str(), v["height"].as_u64()),
        (Some("included"), Some("ok"), Some(u.height)),
        "{v}"
    );
    let (_, v) = get(&api, &format!("/v1/tx/{}", hex(&s2.hash())));
    assert_eq!((v["status"].as_str(), v["outcome"].as_str()), (Some("included"), Some("rejected")), "{v}");
    assert!(v["reason"].is_object() || v["reason"].is_string(), "typed reason: {v}");

    // Submit refuses: the status says so with the reason.
    let s3 = key.sign(&DIGEST, n + 3, order.clone());
    *rec.refuse.lock().unwrap() =
        Some(SubmitError { code: "mempool_full", message: "full".into(), status: 503 });
    let (st, v) =
        post(&api, "/v1/tx", &serde_json::json!({"packet": hex(&s3.packet().unwrap())}).to_string());
    assert_eq!((st, v["code"].as_str()), (503, Some("mempool_full")));
    let (_, v) = get(&api, &format!("/v1/tx/{}", hex(&s3.hash())));
    assert_eq!((v["status"].as_str(), v["code"].as_str()), (Some("rejected"), Some("mempool_full")), "{v}");
    *rec.refuse.lock().unwrap() = None;

    // Malformed POSTs: each names its field.
    let good = s3.packet().unwrap();
    let mut bad_sig = good.clone();
    bad_sig[40] ^= 1;
    let mut bad_body = good.clone();
    bad_body.push(0);
    let mut bad_version = good.clone();
    bad_version[0] = 9;
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("not json".into(), 400, "bad_json", "body"),
        ("[1]".into(), 400, "bad_body", "body"),
        ("{}".into(), 400, "missing_field", "packet"),
        (r#"{"packet": 5}"#.into(), 400, "bad_packet", "packet"),
        (r#"{"packet": "xyz"}"#.into(), 400, "bad_packet", "packet"),
        (format!(r#"{{"packet": "{}"}}"#, hex(&bad_version)), 400, "bad_packet", "packet"),
        (format!(r#"{{"packet": "{}"}}"#, hex(&bad_body)), 400, "bad_body", "packet.body"),
        (format!(r#"{{"packet": "{}"}}"#, hex(&bad_sig)), 400, "bad_signature", "packet.signature"),
        (format!(r#"{{"packet": "{}"}}"#, "00".repeat(1300)), 413, "too_large", "packet"),
        (format!(r#"{{"packet": "{}"}}"#, "00".repeat(10_000)), 413, "too_large", "body"),
    ];
    for (body, status, code, field) in cases {
        let (st, v) = post(&api, "/v1/tx", &body);
        assert_eq!((st, v["code"].as_str()), (status, Some(code)), "{body:.60}: {v}");
        assert!(v["message"].as_str().unwrap().starts_with(field), "{v}");
    }
    assert_eq!(rec.packets.lock().unwrap().len(), 2, "nothing malformed was submitted");

    // Faucet on a chain started as not-devnet: 403.
    let (st, v) = post(&api, "/v1/faucet", r#"{"account": "5"}"#);
    assert_eq!((st, v["code"].as_str()), (403, Some("not_devnet")));

    let stats = api.stats();
    assert!(stats.requests.success > 10 && stats.requests.client_error > 20, "{stats:?}");
    assert_eq!(stats.updates_applied, 42);
    api.stop();
}

#[test]
fn rate_limit_answers_429_per_ip() {
    let mut cfg = config();
    cfg.rate_per_ip = 5;
    let (api, _) = start(cfg, false);
    let codes: Vec<u16> = (0..20).map(|_| get(&api, "/v1/status").0).collect();
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert!(codes[..5].iter().all(|c| *c == 200), "{codes:?}");
    assert!(limited >= 10, "{codes:?}");
    let (st, v) = get(&api, "/v1/status");
    assert_eq!((st, v["code"].as_str()), (429, Some("rate_limited")));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(get(&api, "/v1/status").0, 200, "the bucket refills");
}

#[test]
fn openapi_lists_exactly_the_served_routes() {
    let doc: serde_yaml::Value = serde_yaml::from_str(include_str!("../openapi.yaml")).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut listed = Vec::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for (method, op) in item.as_mapping().unwrap() {
            let m = method.as_str().unwrap().to_uppercase();
            if m == "PARAMETERS" {
                continue;
            }
            assert!(op["responses"].as_mapping().is_some_and(|r| !r.is_empty()), "{path:?} {m}");
            listed.push((m, path.as_str().unwrap().to_string()));
        }
    }
    let mut served: Vec<(String, String)> =
        ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    listed.sort();
    served.sort();
    assert_eq!(listed, served);
    // And the router serves each of them (not the fallback).
    let (api, _) = start(config(), false);
    for (m, p) in ROUTES {
        let path = p
            .replace("{market}", "0")
            .replace("{account}", "1")
            .replace("{height}", "1")
            .replace("{id}", "1")
            .replace("{source_id}", &"00".repeat(32))
            .replace("{hash}", "0000000000000000000000000000000000000000000000000000000000000000");
        if *p == "/v1/ws" {
            continue; // upgraded in tests/ws.rs
        }
        let (_, v) = if *m == "GET" { get(&api, &path) } else { post(&api, &path, "{}") };
        assert_ne!(v["code"], "no_route", "{m} {p}");
    }
    // An unknown path is the fallback.
    assert_eq!(get(&api, "/v1/unknown").1["code"], "no_route");
}
