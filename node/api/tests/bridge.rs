//! The bridge over real HTTP and WebSocket, on a chain that is not a devnet (no authority: only
//! validators' attestations credit collateral): credited deposits by source id, vouchers with
//! their signatures and the exact message they cover (checked with ed25519 here, as the source
//! chain would), an account's vouchers newest first, the withdrawal's voucher on its
//! transaction, and the bridge summary in `/v1/status`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use bastion_exchange::{DEVNET_VALIDATOR_SEEDS, Genesis, sign_deposit, sign_voucher};
use bastion_types::{
    Action, AssetId, AttestedDeposit, BridgeDeposit, INSURANCE_FUND_ACCOUNT, SourceId, Tx, Voucher,
    VoucherSignatures, voucher_message,
};
use common::*;
use serde_json::{Value, json};

const USDC: i128 = 1_000_000;

/// A deposit attested by validators 0, 1 and 2 of the four (3/4 of stake).
fn attested(chain_id: &str, deposit: BridgeDeposit) -> AttestedDeposit {
    let attestations = (0..3u16)
        .map(|i| sign_deposit(DEVNET_VALIDATOR_SEEDS[usize::from(i)], i, chain_id, &deposit))
        .collect();
    AttestedDeposit { deposit, attestations }
}

/// Checks `v` (a voucher's JSON) against `want`, and every signature in it over its `message`,
/// both with the key it names and with the validator's key from its seed.
fn check_voucher(v: &Value, want: &Voucher, chain_id: &str, signed: bool) {
    assert_eq!(v["id"], want.id, "{v}");
    assert_eq!(v["account"], want.account.0, "{v}");
    assert_eq!(v["asset"], want.asset.0, "{v}");
    assert_eq!(v["amount"], json!(want.amount), "{v}");
    assert_eq!(v["height"], want.height, "{v}");
    assert_eq!(v["signed"], signed, "{v}");
    assert_eq!(v["chain_id"], chain_id, "{v}");
    let message = unhex(v["message"].as_str().unwrap());
    assert_eq!(message, voucher_message(chain_id, want), "the message the validators signed");
    let sigs = v["signatures"].as_array().unwrap();
    if !signed {
        assert!(sigs.is_empty(), "{v}");
        return;
    }
    assert_eq!(sigs.len(), 3, "{v}");
    for s in sigs {
        let i = usize::try_from(s["validator"].as_u64().unwrap()).unwrap();
        let hex_sig = s["signature"].as_str().unwrap();
        assert_eq!(hex_sig.len(), 128, "{s}");
        let sig = ed25519_zebra::Signature::from(<[u8; 64]>::try_from(unhex(hex_sig)).unwrap());
        let named: [u8; 32] = unhex(s["public_key"].as_str().unwrap()).try_into().unwrap();
        let seeded =
            ed25519_zebra::VerificationKey::from(&ed25519_zebra::SigningKey::from(DEVNET_VALIDATOR_SEEDS[i]));
        assert_eq!(named, <[u8; 32]>::from(seeded), "validator {i}'s genesis key");
        seeded.verify(&sig, &message).expect("the signature verifies over the returned message");
        // A signature over anything else does not.
        let mut other = message.clone();
        *other.last_mut().unwrap() ^= 1;
        assert!(seeded.verify(&sig, &other).is_err());
    }
}

#[test]
fn deposits_vouchers_and_the_bridge_summary() {
    let (api, _) = start(config(), false);
    let feeder = api.feeder();
    let mut c =
        Chain::with_genesis(13, 3, |_| Genesis { devnet: false, authority: None, ..Genesis::devnet() });
    let chain_id = c.state.chain_id.clone();
    let alice = c.traders[0];
    let genesis_insurance = c.state.assets[0].insurance;

    // Block 1: nothing of the bridge yet.
    let u = c.with_txs(vec![]);
    feeder.push(u.clone());
    wait_height(&api, u.height);
    let (_, s) = get(&api, "/v1/status");
    assert_eq!(s["bridge"], json!({"deposits_credited": 0, "last_voucher": null}), "{s}");
    assert_eq!(s["insurance_fund"][0], json!({"asset": 0, "name": "USDC", "amount": genesis_insurance}));

    // A WebSocket subscriber to alice's vouchers: an empty snapshot first (her account does
    // not exist yet: vouchers is an account's stream, not the account's state).
    let mut ws = ws_connect(&api).unwrap();
    ws_send(
        &mut ws,
        json!({"method": "subscribe", "subscription": {"type": "vouchers", "account": alice.0.to_string()}}),
    );
    assert_eq!(ws_next(&mut ws)["channel"], "subscriptionResponse");
    let snap = ws_next(&mut ws);
    assert_eq!((snap["channel"].as_str(), snap["data"].clone()), (Some("vouchers"), json!([])), "{snap}");

    // Block 2: two attested deposits, one to alice (creating her account), one to the
    // insurance fund.
    let to_alice =
        BridgeDeposit { source_id: SourceId([7; 32]), to: alice, asset: AssetId(0), amount: 90_000 * USDC };
    let to_fund = BridgeDeposit {
        source_id: SourceId([8; 32]),
        to: INSURANCE_FUND_ACCOUNT,
        asset: AssetId(0),
        amount: 1_000 * USDC,
    };
    let mut b = c.w.block_with(vec![]);
    b.deposits = vec![attested(&chain_id, to_alice.clone()), attested(&chain_id, to_fund.clone())];
    let credit = c.update(b);
    feeder.push(credit.clone());
    wait_height(&api, credit.height);

    let (st, d) = get(&api, &format!("/v1/deposits/{}", hex(&[7; 32])));
    assert_eq!(st, 200, "{d}");
    assert_eq!(
        d,
        json!({
            "source_id": hex(&[7; 32]), "credited": true, "height": credit.height, "account": alice.0,
            "insurance_fund": false, "asset": 0, "amount": 90_000 * USDC,
        })
    );
    let (st, d) = get(&api, &format!("/v1/deposits/0x{}", hex(&[8; 32]).to_uppercase()));
    assert_eq!((st, d["insurance_fund"].as_bool(), d["account"].as_u64()), (200, Some(true), Some(u64::MAX)));
    let (st, e) = get(&api, &format!("/v1/deposits/{}", hex(&[9; 32])));
    assert_eq!((st, e["code"].as_str()), (404, Some("not_credited")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("not credited (yet)"), "{e}");
    for bad in ["zz", "abc", &"g".repeat(64), &"0".repeat(63), &"0".repeat(66)] {
        let (st, e) = get(&api, &format!("/v1/deposits/{bad}"));
        assert_eq!((st, e["code"].as_str()), (400, Some("bad_source_id")), "{bad}: {e}");
        assert!(e["message"].as_str().unwrap().starts_with("source_id"), "{e}");
    }
    let (_, blk) = get(&api, &format!("/v1/blocks/{}", credit.height));
    let deps = blk["deposits"].as_array().unwrap();
    assert_eq!(deps.len(), 2, "{blk}");
    assert_eq!(
        (deps[0]["source_id"].as_str(), deps[0]["attestations"].as_u64()),
        (Some(&*hex(&[7; 32])), Some(3))
    );
    assert_eq!(deps[1]["insurance_fund"], true);
    assert_eq!(blk["voucher_signatures"], json!([]));

    // Block 3: alice withdraws 5 USDC, then too much (rejected), then 7 USDC: vouchers 1 and 2,
    // each on its own transaction.
    let key = c.keys[&alice].clone();
    let n = c.state.accounts.get(&alice).unwrap().nonce;
    let withdraw = |amount| Action::Withdraw { asset: AssetId(0), amount };
    let signed: Vec<_> = [5 * USDC, i128::MAX / 4, 7 * USDC]
        .into_iter()
        .enumerate()
        .map(|(i, a)| key.sign(&DIGEST, n + 1 + i as u64, withdraw(a)))
        .collect();
    c.w.nonces[1] = n + 3;
    let b = c.w.block_with(signed.iter().map(|s| s.tx.clone()).collect::<Vec<Tx>>());
    let out = c.update_with(b, signed.iter().map(|s| s.auth).collect());
    feeder.push(out.clone());
    wait_height(&api, out.height);
    let v1 = Voucher { id: 1, account: alice, asset: AssetId(0), amount: 5 * USDC, height: out.height };
    let v2 = Voucher { id: 2, amount: 7 * USDC, ..v1.clone() };
    assert_eq!(c.state.voucher(1).unwrap().voucher, v1);
    assert_eq!(c.state.voucher(2).unwrap().voucher, v2);
    for (s, voucher) in signed.iter().zip([Some(1u64), None, Some(2)]) {
        let (_, t) = get(&api, &format!("/v1/tx/{}", hex(&s.hash())));
        assert_eq!(t["status"], "included", "{t}");
        assert_eq!(t["voucher"].as_u64(), voucher, "{t}");
    }
    let (_, blk) = get(&api, &format!("/v1/blocks/{}", out.height));
    let vs: Vec<Option<u64>> = blk["txs"].as_array().unwrap().iter().map(|t| t["voucher"].as_u64()).collect();
    assert_eq!(vs, [Some(1), None, Some(2)]);

    // Unsigned until a block carries 2/3 of stake's signatures.
    let (st, v) = get(&api, "/v1/vouchers/1");
    assert_eq!(st, 200, "{v}");
    check_voucher(&v, &v1, &chain_id, false);
    let m = ws_next(&mut ws);
    assert_eq!(
        (m["channel"].as_str(), m["height"].as_u64(), m["seq"].as_u64()),
        (Some("vouchers"), Some(out.height), Some(1))
    );
    let ids: Vec<u64> = m["data"].as_array().unwrap().iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2], "the block's new vouchers, in order: {m}");
    check_voucher(&m["data"][0], &v1, &chain_id, false);

    // Block 4: voucher 1 signed by validators 0, 1 and 2.
    let approvals =
        (0..3u16).map(|i| sign_voucher(DEVNET_VALIDATOR_SEEDS[usize::from(i)], i, &chain_id, &v1)).collect();
    let mut b = c.w.block_with(vec![]);
    b.vouchers = vec![VoucherSignatures { id: 1, approvals }];
    let sign = c.update(b);
    feeder.push(sign.clone());
    wait_height(&api, sign.height);
    let (_, v) = get(&api, "/v1/vouchers/1");
    check_voucher(&v, &v1, &chain_id, true);
    let (_, v) = get(&api, "/v1/vouchers/2");
    check_voucher(&v, &v2, &chain_id, false);
    let m = ws_next(&mut ws);
    assert_eq!((m["height"].as_u64(), m["seq"].as_u64()), (Some(sign.height), Some(2)), "{m}");
    assert_eq!(m["data"].as_array().unwrap().len(), 1, "{m}");
    check_voucher(&m["data"][0], &v1, &chain_id, true);
    let (_, blk) = get(&api, &format!("/v1/blocks/{}", sign.height));
    assert_eq!(blk["voucher_signatures"], json!([{"voucher": 1, "signatures": 3}]));

    for (path, status, code) in [
        ("/v1/vouchers/3", 404, "unknown_voucher"),
        ("/v1/vouchers/0", 404, "unknown_voucher"),
        ("/v1/vouchers/abc", 400, "bad_voucher"),
        ("/v1/vouchers/-1", 400, "bad_voucher"),
        ("/v1/accounts/abc/vouchers", 400, "bad_account"),
        ("/v1/accounts/12345/vouchers", 404, "unknown_account"),
    ] {
        let (st, e) = get(&api, path);
        assert_eq!((st, e["code"].as_str()), (status, Some(code)), "{path}: {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }

    // The account's vouchers, newest first, bounded by limit.
    let (st, l) = get(&api, &format!("/v1/accounts/{}/vouchers", alice.0));
    assert_eq!(st, 200, "{l}");
    assert_eq!((l["account"].as_u64(), l["height"].as_u64()), (Some(alice.0), Some(sign.height)));
    let list = l["vouchers"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    check_voucher(&list[0], &v2, &chain_id, false);
    check_voucher(&list[1], &v1, &chain_id, true);
    let (_, l) = get(&api, &format!("/v1/accounts/0x{}/vouchers?limit=1", hex(key.public())));
    assert_eq!(l["vouchers"].as_array().unwrap().len(), 1);
    assert_eq!(l["vouchers"][0]["id"], 2);
    for q in ["limit=0", "limit=1001", "limit=x"] {
        let (st, e) = get(&api, &format!("/v1/accounts/{}/vouchers?{q}", alice.0));
        assert_eq!((st, e["code"].as_str()), (400, Some("bad_query")), "{q}: {e}");
    }

    // Status: the bridge summary and the insurance fund topped up by the deposit.
    let (_, s) = get(&api, "/v1/status");
    assert_eq!(s["bridge"], json!({"deposits_credited": 2, "last_voucher": 2}), "{s}");
    assert_eq!(s["insurance_fund"][0]["amount"], json!(c.state.assets[0].insurance));
    assert_eq!(c.state.assets[0].insurance, genesis_insurance + 1_000 * USDC);
    assert_eq!(s["insurance_fund"].as_array().unwrap().len(), c.state.assets.len());
}

#[test]
fn an_api_started_late_finds_every_voucher_of_an_account() {
    // The node executed the withdrawals before the API started: the first update it is fed
    // carries vouchers it never saw created.
    let mut c = Chain::new(17, 2);
    let fund = c.fund();
    let alice = c.traders[0];
    let key = c.keys[&alice].clone();
    let n = c.state.accounts.get(&alice).unwrap().nonce;
    let signed: Vec<_> = (1..=3u64)
        .map(|i| key.sign(&DIGEST, n + i, Action::Withdraw { asset: AssetId(0), amount: USDC }))
        .collect();
    c.w.nonces[1] = n + 3;
    let b = c.w.block_with(signed.iter().map(|s| s.tx.clone()).collect());
    let _ = c.update_with(b, signed.iter().map(|s| s.auth).collect());
    assert_eq!(c.state.last_voucher(), 3);
    let (api, _) = start(config(), true);
    let u = c.with_txs(vec![]);
    assert!(u.height > fund.height + 1);
    api.feeder().push(u.clone());
    wait_height(&api, u.height);
    let (_, l) = get(&api, &format!("/v1/accounts/{}/vouchers", alice.0));
    let ids: Vec<u64> = l["vouchers"].as_array().unwrap().iter().map(|v| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [3, 2, 1], "{l}");
    let other = c.traders[1];
    assert_eq!(get(&api, &format!("/v1/accounts/{}/vouchers", other.0)).1["vouchers"], json!([]));
    assert_eq!(get(&api, "/v1/status").1["bridge"]["last_voucher"], 3);
}
