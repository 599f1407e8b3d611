//! The transaction test vectors (`node/client/vectors/transactions.json`) and the postcard rules
//! that `node/client/PROTOCOL.md` states, checked against real encoded bytes.
//!
//! `vectors_match_the_committed_file` regenerates every vector with this crate and compares
//! the text with the committed file; `BASTION_REGEN=1` rewrites the file instead. It then reads
//! the committed file back as a client would and checks each packet: envelope, key, signature
//! (the validators' `verify_one`), canonical body round trip and hash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use bastion_accel::{SigItem, verify_one};
use bastion_client::{DEVNET_AUTHORITY, DEVNET_TRADER, Keypair, tx_hash};
use bastion_net::packet;
use bastion_types::tx::{decode_body, encode_body, tx_of};
use bastion_types::{
    AccountId, Action, AssetId, LiquidationParams, MarginTier, MarketId, MarketKind, MarketSpec,
    MarketStatus, OptionKind, OracleParams, OrderId, OrderRequest, ParamUpdate, RiskParams,
    SelfTradePrevention, Side, TimeInForce, UnderlyingId,
};
use serde::{Deserialize, Serialize};

/// The chain digest every vector signs for: the bytes 0x00..=0x1f, an obviously made-up
/// genesis digest (a real client reads its chain's from `GET /v1/status`).
fn chain() -> [u8; 32] {
    std::array::from_fn(|i| u8::try_from(i).unwrap())
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/transactions.json")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// One key of the vectors: derived like devnet keys (`label`, `index`) or from a raw seed.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct KeyVector {
    /// `Keypair::derive(label, index)`; `null` for a key made from a raw seed.
    label: Option<String>,
    /// The derivation index; `null` for a raw seed.
    index: Option<u64>,
    /// The 32-byte ed25519 secret seed, hex.
    seed: String,
    /// The ed25519 public key, hex.
    public_key: String,
    /// `account_of(public_key)`, decimal (u64, beyond 2^53: a string).
    account: String,
}

/// One signed transaction.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct TxVector {
    /// What it covers.
    name: String,
    /// Index into `keys` of the signer.
    key: usize,
    /// The transaction's nonce.
    nonce: u64,
    /// The action in its readable JSON form (serde's externally tagged form, PROTOCOL.md).
    action: Action,
    /// `postcard((nonce, action))`, hex.
    body: String,
    /// `"bastion/tx/v1" | chain_digest | body`, hex.
    signed_message: String,
    /// ed25519 signature over `signed_message`, hex.
    signature: String,
    /// The UDP datagram (`POST /v1/tx`'s `packet`), hex.
    packet: String,
    /// `tx_hash`, hex.
    tx_hash: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Vectors {
    about: String,
    chain_digest: String,
    keys: Vec<KeyVector>,
    transactions: Vec<TxVector>,
}

fn keys() -> Vec<(Option<(&'static str, u64)>, Keypair)> {
    let mut out = vec![
        (Some((DEVNET_AUTHORITY, 0)), Keypair::derive(DEVNET_AUTHORITY, 0)),
        (Some((DEVNET_TRADER, 1)), Keypair::derive(DEVNET_TRADER, 1)),
        (Some((DEVNET_TRADER, 2)), Keypair::derive(DEVNET_TRADER, 2)),
        (Some(("vector", 18_446_744_073_709_551_615)), Keypair::derive("vector", u64::MAX)),
    ];
    out.push((None, Keypair::from_seed([0x42; 32])));
    out
}

fn risk() -> RiskParams {
    RiskParams {
        tiers: vec![
            MarginTier { notional_floor: 0, imr_ppm: 20_000, mmr_ppm: 10_000 },
            MarginTier { notional_floor: 5_000_000_000_000, imr_ppm: 50_000, mmr_ppm: 25_000 },
        ],
        oi_imf_lower: 100_000_000_000_000,
        oi_imf_upper: 0,
        price_band_ppm: 100_000,
        open_interest_cap: 10_000_000,
        max_orders_per_account: 256,
        taker_fee_ppm: 500,
        maker_fee_ppm: -100,
        impact_notional: 10_000_000_000,
        funding_cap_ppm: 5_000,
        volatility_ppm: 600_000,
        volatility_min_ppm: 50_000,
        volatility_max_ppm: 5_000_000,
    }
}

/// Every action variant, every enum variant inside one, `None` and `Some`, negative numbers and
/// the widest varints: (name, signer key index, nonce, action).
fn cases(keys: &[(Option<(&'static str, u64)>, Keypair)]) -> Vec<(&'static str, usize, u64, Action)> {
    let trader1 = keys[1].1.account();
    let order = |side, price, qty, tif, reduce_only, good_til_height, stp| {
        Action::Place(OrderRequest {
            market: MarketId(1),
            side,
            price,
            qty,
            tif,
            reduce_only,
            good_til_height,
            stp,
        })
    };
    vec![
        (
            "deposit by the devnet authority",
            0,
            1,
            Action::Deposit { to: trader1, asset: AssetId(0), amount: 1_000_000_000_000 },
        ),
        (
            "deposit wider than 64 bits (i128 varint)",
            0,
            2,
            Action::Deposit { to: AccountId(u64::MAX), asset: AssetId(300), amount: (1i128 << 100) + 7 },
        ),
        ("withdraw", 1, 1, Action::Withdraw { asset: AssetId(0), amount: 5_000_000 }),
        (
            "limit buy GTC with good-til height, cancel resting",
            1,
            2,
            order(
                Side::Buy,
                Some(400_000),
                3,
                TimeInForce::Gtc,
                false,
                Some(900),
                SelfTradePrevention::CancelResting,
            ),
        ),
        (
            "market sell (no price) IOC reduce-only, cancel taker",
            1,
            3,
            order(Side::Sell, None, 2, TimeInForce::Ioc, true, None, SelfTradePrevention::CancelTaker),
        ),
        (
            "fill-or-kill buy, cancel both",
            2,
            1,
            order(
                Side::Buy,
                Some(1 << 40),
                1,
                TimeInForce::Fok,
                false,
                None,
                SelfTradePrevention::CancelBoth,
            ),
        ),
        (
            "post-only sell",
            2,
            2,
            order(
                Side::Sell,
                Some(399_990),
                10_000,
                TimeInForce::PostOnly,
                false,
                Some(0),
                SelfTradePrevention::CancelResting,
            ),
        ),
        ("cancel", 1, 4, Action::Cancel { market: MarketId(1), order: OrderId(123_456_789_012) }),
        (
            "replace",
            1,
            5,
            Action::Replace { market: MarketId(70_000), order: OrderId(1), price: 399_995, qty: 7 },
        ),
        ("portfolio margin on", 2, 3, Action::SetMarginMode { portfolio: true }),
        ("portfolio margin off", 2, 4, Action::SetMarginMode { portfolio: false }),
        ("isolate a market", 1, 6, Action::SetIsolated { market: MarketId(2), isolated: true }),
        (
            "transfer out of isolated margin (negative, zigzag)",
            1,
            7,
            Action::TransferIsolated { market: MarketId(2), amount: -250_000 },
        ),
        (
            "transfer into isolated margin",
            1,
            8,
            Action::TransferIsolated { market: MarketId(2), amount: 250_000 },
        ),
        ("params: risk", 0, 3, Action::UpdateParams(ParamUpdate::Risk { market: MarketId(1), risk: risk() })),
        (
            "params: status halted",
            0,
            4,
            Action::UpdateParams(ParamUpdate::Status { market: MarketId(1), status: MarketStatus::Halted }),
        ),
        (
            "params: status active",
            0,
            5,
            Action::UpdateParams(ParamUpdate::Status { market: MarketId(1), status: MarketStatus::Active }),
        ),
        (
            "params: status reduce-only",
            0,
            6,
            Action::UpdateParams(ParamUpdate::Status {
                market: MarketId(1),
                status: MarketStatus::ReduceOnly,
            }),
        ),
        (
            "params: status settled (encodable, refused by the exchange)",
            0,
            7,
            Action::UpdateParams(ParamUpdate::Status { market: MarketId(1), status: MarketStatus::Settled }),
        ),
        (
            "params: haircut",
            0,
            8,
            Action::UpdateParams(ParamUpdate::Haircut { asset: AssetId(1), haircut_ppm: 100_000 }),
        ),
        (
            "params: list a perpetual",
            0,
            9,
            Action::UpdateParams(ParamUpdate::List(MarketSpec {
                id: MarketId(3),
                name: "ETH-PERP".into(),
                underlying: UnderlyingId(1),
                kind: MarketKind::Perpetual,
                tick_size: 10_000,
                lot_size_nanos: 1_000_000,
                risk: risk(),
            })),
        ),
        (
            "params: list a put option (UTF-8 name)",
            0,
            10,
            Action::UpdateParams(ParamUpdate::List(MarketSpec {
                id: MarketId(4),
                name: "BTC-20261231-90000-P é".into(),
                underlying: UnderlyingId(0),
                kind: MarketKind::Option {
                    kind: OptionKind::Put,
                    strike: 90_000_000_000,
                    expiry_ms: 1_798_675_200_000,
                },
                tick_size: 1_000_000,
                lot_size_nanos: 10_000_000,
                risk: risk(),
            })),
        ),
        (
            "params: list a call option",
            0,
            11,
            Action::UpdateParams(ParamUpdate::List(MarketSpec {
                id: MarketId(5),
                name: "BTC-20261231-110000-C".into(),
                underlying: UnderlyingId(0),
                kind: MarketKind::Option {
                    kind: OptionKind::Call,
                    strike: 110_000_000_000,
                    expiry_ms: 1_798_675_200_000,
                },
                tick_size: 1_000_000,
                lot_size_nanos: 10_000_000,
                risk: RiskParams { tiers: vec![], ..risk() },
            })),
        ),
        (
            "params: oracle guards",
            0,
            12,
            Action::UpdateParams(ParamUpdate::Oracle(OracleParams {
                staleness_ms: 5_000,
                staleness_halt_ms: 60_000,
                observation_max_age_ms: 3_000,
                stable_move_ppm_per_s: 500,
                max_move_ppm: 50_000,
                halt_divergence_ppm: 200_000,
                basis_ema_ppm: 100_000,
            })),
        ),
        (
            "params: liquidation",
            0,
            13,
            Action::UpdateParams(ParamUpdate::Liquidation(LiquidationParams {
                max_fraction_ppm: 250_000,
                min_notional: 1_000_000_000,
                max_notional_per_block: 1_000_000_000_000,
                spread_to_maintenance_ppm: 500_000,
                max_insurance_fee_ppm: 10_000,
                funding_interval_ms: 3_600_000,
                portfolio_mm_ppm: 800_000,
            })),
        ),
        ("nonce 0 (encodable; the first valid nonce is 1)", 3, 0, Action::SetMarginMode { portfolio: true }),
        (
            "largest nonce, largest ids",
            4,
            u64::MAX,
            Action::Cancel { market: MarketId(u32::MAX), order: OrderId(u64::MAX) },
        ),
        (
            "extreme signed values",
            4,
            300,
            Action::Replace { market: MarketId(0), order: OrderId(0), price: i64::MIN, qty: i64::MAX },
        ),
        ("extreme i128", 4, 301, Action::TransferIsolated { market: MarketId(127), amount: i128::MIN }),
    ]
}

fn generate() -> Vectors {
    let keys = keys();
    let chain = chain();
    let key_vectors = keys
        .iter()
        .map(|(derived, k)| KeyVector {
            label: derived.map(|(l, _)| l.to_string()),
            index: derived.map(|(_, i)| i),
            seed: hex(&k.seed()),
            public_key: hex(k.public()),
            account: k.account().0.to_string(),
        })
        .collect();
    let transactions = cases(&keys)
        .into_iter()
        .map(|(name, key, nonce, action)| {
            let k = &keys[key].1;
            let signed = k.sign(&chain, nonce, action.clone());
            let mut msg = Vec::new();
            packet::signing_message(&chain, &signed.body, &mut msg);
            TxVector {
                name: name.to_string(),
                key,
                nonce,
                action,
                body: hex(&signed.body),
                signed_message: hex(&msg),
                signature: hex(&signed.auth.signature),
                packet: hex(&signed.packet().unwrap()),
                tx_hash: hex(&signed.hash()),
            }
        })
        .collect();
    Vectors {
        about: "Bastion transaction test vectors, generated by node/client/tests/vectors.rs \
                (BASTION_REGEN=1 rewrites this file). Format: node/client/PROTOCOL.md. \
                Numbers may exceed 2^53: parse them as big integers."
            .into(),
        chain_digest: hex(&chain),
        keys: key_vectors,
        transactions,
    }
}

/// Exhaustive matches (no wildcard): a new variant fails to compile here until a vector covers it.
fn variants(a: &Action, out: &mut BTreeSet<&'static str>) {
    match a {
        Action::Deposit { .. } => out.insert("Deposit"),
        Action::Withdraw { .. } => out.insert("Withdraw"),
        Action::Place(o) => {
            out.insert(match o.side {
                Side::Buy => "Side::Buy",
                Side::Sell => "Side::Sell",
            });
            out.insert(match o.tif {
                TimeInForce::Gtc => "Tif::Gtc",
                TimeInForce::Ioc => "Tif::Ioc",
                TimeInForce::Fok => "Tif::Fok",
                TimeInForce::PostOnly => "Tif::PostOnly",
            });
            out.insert(match o.stp {
                SelfTradePrevention::CancelResting => "Stp::CancelResting",
                SelfTradePrevention::CancelTaker => "Stp::CancelTaker",
                SelfTradePrevention::CancelBoth => "Stp::CancelBoth",
            });
            out.insert(if o.price.is_some() { "price Some" } else { "price None" });
            out.insert(if o.good_til_height.is_some() { "gtb Some" } else { "gtb None" });
            out.insert(if o.reduce_only { "reduce_only true" } else { "reduce_only false" });
            out.insert("Place")
        }
        Action::Cancel { .. } => out.insert("Cancel"),
        Action::Replace { .. } => out.insert("Replace"),
        Action::SetMarginMode { .. } => out.insert("SetMarginMode"),
        Action::SetIsolated { .. } => out.insert("SetIsolated"),
        Action::TransferIsolated { .. } => out.insert("TransferIsolated"),
        Action::UpdateParams(u) => {
            out.insert(match u {
                ParamUpdate::Risk { .. } => "ParamUpdate::Risk",
                ParamUpdate::Status { status, .. } => match status {
                    MarketStatus::Active => "Status::Active",
                    MarketStatus::ReduceOnly => "Status::ReduceOnly",
                    MarketStatus::Halted => "Status::Halted",
                    MarketStatus::Settled => "Status::Settled",
                },
                ParamUpdate::Haircut { .. } => "ParamUpdate::Haircut",
                ParamUpdate::List(spec) => match spec.kind {
                    MarketKind::Perpetual => "List Perpetual",
                    MarketKind::Option { kind: OptionKind::Call, .. } => "List Call",
                    MarketKind::Option { kind: OptionKind::Put, .. } => "List Put",
                },
                ParamUpdate::Oracle(_) => "ParamUpdate::Oracle",
                ParamUpdate::Liquidation(_) => "ParamUpdate::Liquidation",
            });
            out.insert("UpdateParams")
        }
    };
}

#[test]
fn every_variant_has_a_vector() {
    let mut seen = BTreeSet::new();
    for (_, _, _, a) in cases(&keys()) {
        variants(&a, &mut seen);
    }
    // Count of the names `variants` can produce: 9 actions, 2 sides, 4 TIFs, 3 STPs, 2x2x2
    // options and booleans, 4 statuses, 3 market kinds, Risk, Haircut, Oracle, Liquidation.
    assert_eq!(seen.len(), 9 + 2 + 4 + 3 + 6 + 4 + 3 + 4, "covered: {seen:?}");
}

#[test]
fn vectors_match_the_committed_file() {
    let text = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
    let path = vectors_path();
    if std::env::var_os("BASTION_REGEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; BASTION_REGEN=1 writes it", path.display()));
    if committed != text {
        let line = committed.lines().zip(text.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{} differs from what bastion-client generates (first at line {}: committed {:?}, generated {:?}). \
             If the protocol changed on purpose, rerun with BASTION_REGEN=1 and update PROTOCOL.md and \
             the Python client.",
            path.display(),
            line + 1,
            committed.lines().nth(line),
            text.lines().nth(line)
        );
    }

    // Read the committed file back as an outside client would, and check every packet.
    let v: Vectors = serde_json::from_str(&committed).unwrap();
    let chain: [u8; 32] = unhex(&v.chain_digest).try_into().unwrap();
    assert_eq!(v.transactions.len(), cases(&keys()).len());
    for k in &v.keys {
        let seed: [u8; 32] = unhex(&k.seed).try_into().unwrap();
        let kp = Keypair::from_seed(seed);
        assert_eq!(hex(kp.public()), k.public_key);
        assert_eq!(kp.account().0.to_string(), k.account);
        if let (Some(l), Some(i)) = (&k.label, k.index) {
            assert_eq!(Keypair::derive(l, i).seed(), seed, "derive({l}, {i})");
        }
    }
    for t in &v.transactions {
        let key = &v.keys[t.key];
        let bytes = unhex(&t.packet);
        let p = packet::decode(&bytes).unwrap();
        assert_eq!(hex(p.public_key), key.public_key, "{}", t.name);
        assert_eq!(hex(p.signature), t.signature, "{}", t.name);
        assert_eq!(hex(p.body), t.body, "{}", t.name);
        let mut msg = Vec::new();
        packet::signing_message(&chain, p.body, &mut msg);
        assert_eq!(hex(&msg), t.signed_message, "{}", t.name);
        assert!(
            verify_one(&SigItem { public_key: p.public_key, message: &msg, signature: p.signature }),
            "{}: signature does not verify",
            t.name
        );
        assert_eq!(decode_body(p.body).unwrap(), (t.nonce, t.action.clone()), "{}", t.name);
        assert_eq!(
            encode_body(t.nonce, &t.action),
            p.body,
            "{}: the JSON action encodes to the body",
            t.name
        );
        assert_eq!(tx_of(p.public_key, p.body).unwrap().signer.0.to_string(), key.account, "{}", t.name);
        assert_eq!(hex(&tx_hash(p.public_key, p.body)), t.tx_hash, "{}", t.name);
        // Another chain's message does not verify: the digest is bound.
        let mut other = Vec::new();
        packet::signing_message(&[0xff; 32], p.body, &mut other);
        assert!(!verify_one(&SigItem { public_key: p.public_key, message: &other, signature: p.signature }));
    }
}

fn zero_risk() -> RiskParams {
    RiskParams {
        tiers: vec![],
        oi_imf_lower: 0,
        oi_imf_upper: 0,
        price_band_ppm: 0,
        open_interest_cap: 0,
        max_orders_per_account: 0,
        taker_fee_ppm: 0,
        maker_fee_ppm: 0,
        impact_notional: 0,
        funding_cap_ppm: 0,
        volatility_ppm: 0,
        volatility_min_ppm: 0,
        volatility_max_ppm: 0,
    }
}

/// Every byte-level claim of PROTOCOL.md's "Body encoding", on real bodies.
#[test]
fn postcard_rules_in_protocol_md_hold() {
    let body = |nonce: u64, a: Action| encode_body(nonce, &a);

    // Worked example 1: Withdraw{asset 0, amount 5}, nonce 5.
    assert_eq!(body(5, Action::Withdraw { asset: AssetId(0), amount: 5 }), [0x05, 0x01, 0x00, 0x0a]);
    // Varint LEB128: 300 = 0xac 0x02; 127 one byte, 128 two; u64::MAX ten bytes.
    assert_eq!(body(300, Action::SetMarginMode { portfolio: true })[..3], [0xac, 0x02, 0x05]);
    assert_eq!(body(127, Action::SetMarginMode { portfolio: true }), [0x7f, 0x05, 0x01]);
    assert_eq!(body(128, Action::SetMarginMode { portfolio: false }), [0x80, 0x01, 0x05, 0x00]);
    let max = body(u64::MAX, Action::SetMarginMode { portfolio: true });
    assert_eq!(max, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x05, 0x01]);
    // Enum discriminants are varints in declaration order; bool is one byte 0/1.
    for (i, a) in [
        Action::Deposit { to: AccountId(0), asset: AssetId(0), amount: 0 },
        Action::Withdraw { asset: AssetId(0), amount: 0 },
        Action::Place(OrderRequest {
            market: MarketId(0),
            side: Side::Buy,
            price: None,
            qty: 0,
            tif: TimeInForce::Gtc,
            reduce_only: false,
            good_til_height: None,
            stp: SelfTradePrevention::CancelResting,
        }),
        Action::Cancel { market: MarketId(0), order: OrderId(0) },
        Action::Replace { market: MarketId(0), order: OrderId(0), price: 0, qty: 0 },
        Action::SetMarginMode { portfolio: false },
        Action::SetIsolated { market: MarketId(0), isolated: false },
        Action::TransferIsolated { market: MarketId(0), amount: 0 },
        Action::UpdateParams(ParamUpdate::Risk { market: MarketId(0), risk: zero_risk() }),
    ]
    .into_iter()
    .enumerate()
    {
        let b = body(0, a);
        assert_eq!(b[1], u8::try_from(i).unwrap(), "discriminant of variant {i}");
        // With every field zero / false / None / first variant, each field is one 0x00 byte.
        assert!(b[2..].iter().all(|&x| x == 0), "variant {i}: {b:02x?}");
    }
    // Zigzag for signed: -1 -> 1, 1 -> 2, -250000 -> 499999 (0x9f 0xc2 0x1e).
    assert_eq!(body(0, Action::TransferIsolated { market: MarketId(1), amount: -1 }), [0, 7, 1, 1]);
    assert_eq!(body(0, Action::TransferIsolated { market: MarketId(1), amount: 1 }), [0, 7, 1, 2]);
    assert_eq!(
        body(0, Action::TransferIsolated { market: MarketId(1), amount: -250_000 }),
        [0, 7, 1, 0x9f, 0xc2, 0x1e]
    );
    // i64::MIN zigzags to u64::MAX (ten bytes), i64::MAX to u64::MAX - 1.
    let r =
        body(0, Action::Replace { market: MarketId(0), order: OrderId(0), price: i64::MIN, qty: i64::MAX });
    assert_eq!(r[..4], [0, 4, 0, 0]);
    assert_eq!(r[4..14], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    assert_eq!(r[14..], [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    // i128 (Micros) is a zigzag varint too, up to 19 bytes: i128::MIN -> u128::MAX.
    let m = body(0, Action::TransferIsolated { market: MarketId(0), amount: i128::MIN });
    let mut want = vec![0u8, 7, 0];
    want.extend([0xff; 18]);
    want.push(0x03);
    assert_eq!(m, want);
    // 2^64 = zigzag 2^65: ten 7-bit groups of zeros with continuation, then 0b10.
    let d = body(0, Action::Deposit { to: AccountId(1), asset: AssetId(0), amount: 1 << 64 });
    assert_eq!(d[..4], [0, 0, 1, 0]);
    assert_eq!(d[4..], [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x04]);
    // u16 (AssetId) is a varint (300 -> 0xac 0x02), u32 (MarketId) too (70000 -> 0xf0 0xa2 0x04).
    assert_eq!(body(0, Action::Withdraw { asset: AssetId(300), amount: 0 }), [0, 1, 0xac, 0x02, 0]);
    assert_eq!(
        body(0, Action::SetIsolated { market: MarketId(70_000), isolated: true }),
        [0, 6, 0xf0, 0xa2, 0x04, 1]
    );
    // Option: 0x00 for None, 0x01 then the value for Some; newtypes are transparent.
    let place = |price, gtb| {
        body(
            9,
            Action::Place(OrderRequest {
                market: MarketId(1),
                side: Side::Sell,
                price,
                qty: 3,
                tif: TimeInForce::PostOnly,
                reduce_only: true,
                good_til_height: gtb,
                stp: SelfTradePrevention::CancelBoth,
            }),
        )
    };
    assert_eq!(place(None, None), [9, 2, 1, 1, 0, 6, 3, 1, 0, 2]);
    assert_eq!(place(Some(64), Some(900)), [9, 2, 1, 1, 1, 0x80, 0x01, 6, 3, 1, 1, 0x84, 0x07, 2]);
    // Strings: varint byte length then UTF-8; Vec: varint count then items; struct variants
    // of nested enums (MarketKind::Option) as discriminant then fields.
    let list = body(
        0,
        Action::UpdateParams(ParamUpdate::List(MarketSpec {
            id: MarketId(3),
            name: "é".into(),
            underlying: UnderlyingId(1),
            kind: MarketKind::Option { kind: OptionKind::Put, strike: 2, expiry_ms: 3 },
            tick_size: 1,
            lot_size_nanos: -1,
            risk: RiskParams {
                tiers: vec![MarginTier { notional_floor: 1, imr_ppm: 1, mmr_ppm: 1 }],
                ..risk()
            },
        })),
    );
    assert_eq!(list[..14], [0, 8, 3, 3, 2, 0xc3, 0xa9, 1, 1, 1, 4, 3, 2, 1]);
    assert_eq!(
        list[14..18],
        [1, 2, 2, 2],
        "one tier: count 1, then notional_floor 1, imr 1, mmr 1 zigzagged"
    );
}
