#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The public network with real processes (issue 17): four validators and a full node from
//! `bastion init --full-nodes 1`, each a `bastion run` process on loopback.
//! - The full node follows the chain (every certificate verified), is killed with SIGKILL,
//!   restarts from its data dir and catches up by backfill; its state roots equal the
//!   validators' at every height both hold.
//! - Transaction gossip: each transaction sent once, to one validator, reaches every
//!   validator's mempool exactly once; a transaction sent to two validators is still admitted
//!   once per validator; packets with a bad signature are not forwarded.

mod common;

use common::{BIN, Nodes, exclusive, init, port_block, root, roots};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_full_node_follows_is_killed_restarts_and_catches_up_with_the_same_roots() {
    let _one = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), port_block(50), 1);
    let mut nodes = Nodes::new(tmp.path(), 4, 1);
    for k in 0..5 {
        nodes.start(k);
    }
    nodes.wait_until("the full node at height 15", Duration::from_secs(90), |n| n.height(4) >= 15);
    let full = nodes.status(4);
    assert_eq!(full["role"], "full", "{full}");
    assert_eq!(
        full["refused"].as_object().map_or(0, |m| m.len()),
        0,
        "honest network, nothing refused: {full}"
    );

    nodes.kill(4);
    let at_kill = nodes.height(4);
    let then = (0..4).map(|k| nodes.height(k)).max().unwrap();
    nodes.wait_until("the validators 80 heights further", Duration::from_secs(90), |n| {
        (0..4).all(|k| n.height(k) >= then + 80)
    });
    let target = (0..4).map(|k| nodes.height(k)).max().unwrap();
    nodes.start(4);
    println!("full node killed at {at_kill}, restarted with the validators at {target}");
    nodes.wait_until("the full node to catch up", Duration::from_secs(90), |n| n.height(4) >= target + 5);
    let status = nodes.status(4);
    assert!(status["backfilled"].as_u64().unwrap() > 0, "the gap was backfilled: {status}");
    nodes.stop_all();

    let (v0, v_first, v_last) = roots(&tmp.path().join("v0/data"));
    let (f0, f_first, f_last) = roots(&tmp.path().join("f0/data"));
    let (lo, hi) = (v_first.max(f_first), v_last.min(f_last));
    assert!(hi >= target, "compared up to {hi}, below the restart target {target}");
    for h in lo..=hi {
        assert_eq!(root(&f0, h), root(&v0, h), "the full node's root differs from v0's at height {h}");
    }
    println!("roots agree at heights {lo}..={hi}");
}

/// `bastion status --json` of validator `i`'s admission tile.
fn admission(dir: &Path, i: usize) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["status", "--json", "--config"])
        .arg(dir.join(format!("v{i}/node.toml")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    status["tiles"].as_array().unwrap().iter().find(|t| t["tile"] == "admission").cloned().unwrap()
}

#[test]
fn each_transaction_sent_to_one_validator_reaches_every_mempool_exactly_once() {
    let _one = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let spec = init(tmp.path(), port_block(50), 0);
    let mut nodes = Nodes::new(tmp.path(), 4, 0);
    for k in 0..4 {
        nodes.start(k);
    }
    nodes.wait_until("every validator at height 5", Duration::from_secs(90), |n| {
        (0..4).all(|k| n.height(k) >= 5)
    });
    // Let the public network's mesh form.
    std::thread::sleep(Duration::from_secs(3));

    // Deposits from the authority with nonces 2..=201: nonce 1 is never sent, so none can be
    // included and every one stays in every mempool (admission allows nonces up to 4096
    // ahead): what each mempool admitted is exactly what reached it.
    let authority = bastion_client::devnet_authority();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let ingress: Vec<std::net::SocketAddr> = spec.validators.iter().map(|v| v.ingress.unwrap()).collect();
    let n = 200u64;
    for k in 0..n {
        let to = bastion_client::devnet_trader(k + 1).account();
        let action =
            bastion_types::Action::Deposit { to, asset: bastion_types::AssetId(0), amount: 1_000_000 };
        let packet = authority.sign(&spec.digest(), k + 2, action).packet().unwrap();
        let i = (k % 4) as usize;
        socket.send_to(&packet, ingress[i]).unwrap();
        // Every tenth also to the next validator: still once per mempool.
        if k % 10 == 0 {
            socket.send_to(&packet, ingress[(i + 1) % 4]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Bad signatures: refused at the receiving validator's verify tile, never published.
    for k in 0..20u64 {
        let action = bastion_types::Action::Deposit {
            to: bastion_client::devnet_trader(1).account(),
            asset: bastion_types::AssetId(0),
            amount: 1,
        };
        let mut packet = authority.sign(&spec.digest(), 300 + k, action).packet().unwrap();
        packet[40] ^= 1; // inside the signature
        socket.send_to(&packet, ingress[0]).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out: Vec<u64> = (0..4).map(|i| admission(tmp.path(), i)["out"].as_u64().unwrap_or(0)).collect();
        if out.iter().all(|o| *o >= n) || Instant::now() > deadline {
            println!("admitted per validator: {out:?}");
            for (i, a) in out.iter().enumerate() {
                assert_eq!(*a, n, "v{i} admitted {a} of {n}: each transaction exactly once");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Only v0 received the bad packets (over UDP); the others never saw them.
    let bad = |i: usize| {
        let out = Command::new(BIN)
            .args(["status", "--json", "--config"])
            .arg(tmp.path().join(format!("v{i}/node.toml")))
            .output()
            .unwrap();
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let verify = s["tiles"].as_array().unwrap().iter().find(|t| t["tile"] == "verify").cloned().unwrap();
        verify["dropped_by_reason"]["bad_signature"].as_u64().unwrap_or(0)
    };
    assert_eq!(bad(0), 20, "v0's verify tile refused the bad signatures");
    for i in 1..4 {
        assert_eq!(bad(i), 0, "v{i} never received a bad signature: they were not forwarded");
    }
    nodes.stop_all();
}

/// An attacker on the public network (a libp2p node of the test's own) takes real certified
/// blocks off the `blocks` topic and publishes tampered ones to the full node: block bytes
/// changed under a valid certificate (digest mismatch) and a certificate changed as well (the
/// certificate is checked first). The full node refuses and counts both kinds, never executes
/// them, keeps following, and ends with the validators' roots.
#[test]
fn a_full_node_refuses_and_counts_tampered_blocks_from_the_public_network() {
    use bastion_gossip::{Gossip, GossipConfig, Handler, Verdict};
    struct AcceptAll;
    impl Handler for AcceptAll {
        fn validate_tx(&self, _: &[u8]) -> Verdict {
            Verdict::Accept
        }
        fn validate_block(&self, _: &[u8]) -> Verdict {
            Verdict::Accept
        }
    }

    let _one = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let base = port_block(50);
    let spec = init(tmp.path(), base, 1);
    let mut nodes = Nodes::new(tmp.path(), 4, 1);
    for k in 0..5 {
        nodes.start(k);
    }
    nodes.wait_until("the full node at height 5", Duration::from_secs(90), |n| n.height(4) >= 5);

    let attacker_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cfg = GossipConfig::new(
        format!("127.0.0.1:{attacker_port}").parse().unwrap(),
        [0xA7; 32],
        spec.chain_id.clone(),
    );
    cfg.bootstrap = vec![format!("/ip4/127.0.0.1/tcp/{}", base + 30 + 4)];
    cfg.max_block_bytes = 32 << 20;
    let attacker = Gossip::start(cfg, std::sync::Arc::new(AcceptAll)).unwrap();
    // Real certified blocks, relayed to us by the full node.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut real = Vec::new();
    while real.len() < 2 && Instant::now() < deadline {
        if let Ok(m) = attacker.blocks().recv_timeout(Duration::from_millis(200)) {
            real.push(m.data);
        }
    }
    assert_eq!(real.len(), 2, "the attacker received real blocks from the full node");
    let block = bastion_consensus::certified_block_bytes(&real[0]).unwrap().to_vec();
    let cert = real[0][5 + block.len()..].to_vec();
    // 1. The block's bytes changed (a byte inside the exchange block), the certificate intact.
    let mut bent = block.clone();
    let at = bent.len() - 1;
    bent[at] ^= 0x01;
    attacker.publish_block(bastion_consensus::encode_certified(&bent, &cert)).unwrap();
    // 2. The same, and the certificate's last byte changed too.
    let mut forged = cert.clone();
    let at = forged.len() - 1;
    forged[at] ^= 0x01;
    bent[0] ^= 0x01;
    attacker.publish_block(bastion_consensus::encode_certified(&bent, &forged)).unwrap();

    nodes.wait_until("the full node to refuse both", Duration::from_secs(20), |n| {
        let refused = n.status(4)["refused"].clone();
        refused.as_object().map_or(0, |m| m.values().filter_map(serde_json::Value::as_u64).sum::<u64>()) >= 2
    });
    let refused = nodes.status(4)["refused"].clone();
    println!("full node refused: {refused}");
    assert!(refused["digest_mismatch"].as_u64().unwrap_or(0) >= 1, "{refused}");
    assert!(
        refused["bad_certificate"].as_u64().unwrap_or(0) + refused["malformed"].as_u64().unwrap_or(0) >= 1,
        "{refused}"
    );
    // A full node's metrics pass Prometheus's linter too (issue 22); f0's endpoint is at
    // metrics-port + validators.
    let full_metrics = common::scrape(&format!("127.0.0.1:{}", base + 24), "bastion_full_executed_total");
    assert!(full_metrics.contains("bastion_public_refused_total"), "{full_metrics}");
    common::promtool_accepts(&full_metrics);
    // Its live dashboard shows the book it executed into, as a full node.
    let (status, book) = common::http_get(&format!("127.0.0.1:{}", base + 24), "/dashboard/book.json");
    assert!(status.contains(" 200 "), "{status}: {book}");
    let book: serde_json::Value = serde_json::from_str(&book).unwrap();
    assert_eq!(book["role"], "full", "{book}");
    assert!(
        book["market"]["id"].is_u64() && book["markets"].as_array().is_some_and(|m| !m.is_empty()),
        "{book}"
    );
    let then = nodes.height(4);
    nodes
        .wait_until("the full node to keep following", Duration::from_secs(30), |n| n.height(4) >= then + 10);
    attacker.stop();
    nodes.stop_all();
    let (v0, v_first, v_last) = roots(&tmp.path().join("v0/data"));
    let (f0, f_first, f_last) = roots(&tmp.path().join("f0/data"));
    for h in v_first.max(f_first)..=v_last.min(f_last) {
        assert_eq!(root(&f0, h), root(&v0, h), "height {h}");
    }
}
