//! The devnet faucet with a real Submit: a signed authority deposit, re-signed when another
//! signer of the authority key takes its nonce, included in the end; refused off a devnet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use bastion_api::FaucetConfig;
use bastion_client::devnet_authority;
use bastion_types::{Action, AssetId, TxAuth};
use common::*;

/// Decodes a recorded packet, verifies its signature for the chain, and returns the tx.
fn check(packet: &[u8]) -> (bastion_types::Tx, TxAuth) {
    let p = bastion_net::packet::decode(packet).unwrap();
    let mut msg = Vec::new();
    bastion_net::packet::signing_message(&DIGEST, p.body, &mut msg);
    let key = ed25519_zebra::VerificationKey::try_from(*p.public_key).unwrap();
    key.verify(&ed25519_zebra::Signature::from(*p.signature), &msg).expect("signature verifies");
    assert_eq!(p.public_key, devnet_authority().public());
    let tx = bastion_types::tx::tx_of(p.public_key, p.body).unwrap();
    (tx, TxAuth { public_key: *p.public_key, signature: *p.signature })
}

#[test]
fn faucet_deposits_are_signed_resigned_when_the_nonce_is_taken_and_included() {
    let mut cfg = config();
    cfg.faucet =
        Some(FaucetConfig { authority: devnet_authority(), amount: 1_000_000_000, asset: AssetId(0) });
    cfg.faucet_per_ip_per_minute = 3;
    let (api, rec) = start(cfg, true);
    let feeder = api.feeder();
    let mut c = Chain::new(9, 3);
    let u = c.fund();
    feeder.push(u.clone());
    wait_height(&api, u.height);
    let committed = c.state.accounts.get(&c.authority()).unwrap().nonce;
    let newcomer = bastion_client::Keypair::derive("faucet-test", 1);
    let to = newcomer.account();

    let (st, v) = post(&api, "/v1/faucet", &format!(r#"{{"account": "0x{}"}}"#, hex(newcomer.public())));
    assert_eq!(st, 200, "{v}");
    let first = v["hash"].as_str().unwrap().to_string();
    let (tx, _) = check(&rec.packets.lock().unwrap()[0]);
    assert_eq!(tx.nonce, committed + 1);
    assert_eq!(tx.action, Action::Deposit { to, asset: AssetId(0), amount: 1_000_000_000 });
    assert_eq!(get(&api, &format!("/v1/tx/{first}")).1["status"], "pending");

    // The load generator signs with the authority too and takes that nonce first.
    c.w.nonces[0] = committed;
    let other = c.w.funding_txs(1_000_000);
    let u = c.with_txs(other[..1].to_vec());
    feeder.push(u.clone());
    wait_height(&api, u.height);
    let t = std::time::Instant::now();
    while rec.packets.lock().unwrap().len() < 2 {
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "not re-signed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (tx2, auth2) = check(&rec.packets.lock().unwrap()[1]);
    assert_eq!(tx2.nonce, committed + 2, "a fresh nonce");
    assert_eq!(tx2.action, tx.action);
    let (_, v) = get(&api, &format!("/v1/tx/{first}"));
    assert_eq!(v["status"], "pending");
    assert_ne!(v["hash"].as_str().unwrap(), first, "follows the re-signed deposit: {v}");

    // The re-signed deposit is included: the first hash reports it, and the account is credited.
    c.w.nonces[0] = committed + 2;
    let b = c.w.block_with(vec![tx2]);
    let u = c.update_with(b, vec![auth2]);
    feeder.push(u.clone());
    wait_height(&api, u.height);
    let (_, v) = get(&api, &format!("/v1/tx/{first}"));
    assert_eq!(
        (v["status"].as_str(), v["outcome"].as_str(), v["height"].as_u64()),
        (Some("included"), Some("ok"), Some(u.height)),
        "{v}"
    );
    let (st, a) = get(&api, &format!("/v1/accounts/{}", to.0));
    assert_eq!((st, a["balances"][0]["amount"].as_i64()), (200, Some(1_000_000_000)));

    // Bad input, then the per-IP limit (3 a minute: one used above, one bad request is not
    // counted, one more passes).
    assert_eq!(post(&api, "/v1/faucet", "{}").1["code"], "missing_field");
    assert_eq!(post(&api, "/v1/faucet", r#"{"account": "x"}"#).1["code"], "bad_account");
    let codes: Vec<u16> =
        (0..4).map(|i| post(&api, "/v1/faucet", &format!(r#"{{"account": "{}"}}"#, 100 + i)).0).collect();
    assert_eq!(codes, [200, 200, 429, 429]);
}

#[test]
fn the_faucet_refuses_off_a_devnet() {
    let mut cfg = config();
    cfg.faucet = Some(FaucetConfig { authority: devnet_authority(), amount: 1, asset: AssetId(0) });
    let (api, rec) = start(cfg, false);
    let (st, v) = post(&api, "/v1/faucet", r#"{"account": "5"}"#);
    assert_eq!((st, v["code"].as_str()), (403, Some("not_devnet")));
    // No faucet configured at all: the same.
    let (api2, _) = start(config(), true);
    assert_eq!(post(&api2, "/v1/faucet", r#"{"account": "5"}"#).0, 403);
    assert!(rec.packets.lock().unwrap().is_empty());
    drop(api);
}
