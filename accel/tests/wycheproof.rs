//! Wycheproof's ed25519 vectors (`shared/vectors/wycheproof_ed25519_test.json`) on every CPU
//! backend, on `verify_one` and on `Auto`: ZIP-215 accepts exactly the cases Wycheproof marks
//! "valid", plus tcId 151 (R encodes y = 1 with the sign bit of x set, which ZIP-215 decodes and
//! strict RFC 8032 rejects). Cases that cannot be a `SigItem` (signature not 64 bytes, key not 32
//! bytes) must be Wycheproof-invalid and must be refused by `OwnedSigItem::from_hex` with a typed
//! length error.
//!
//! The file is read from `$BASTION_VECTORS` or `../shared/vectors/` beside the repository; where
//! it is absent the test fails when `CI` is set and otherwise prints that it skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_accel::{
    AccelError, Auto, Backend, OwnedSigItem, SigItem, Verifier, calibrate, verifier, verify_one,
};
use std::time::Duration;

const FILE: &str = "wycheproof_ed25519_test.json";
/// The one case outside Wycheproof's "valid" set that ZIP-215 accepts.
const ZIP215_EXTRA: u64 = 151;

/// The vector file, or `None` (after a notice) where it is absent outside CI.
fn load() -> Option<serde_json::Value> {
    bastion_vectors::load_json(FILE)
}

/// Byte length of a hex string from the file (the file's hex is well formed).
fn hex_len(field: &str, s: &str) -> usize {
    assert!(
        s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "vector field {field} is not hex: {s:?}"
    );
    s.len() / 2
}

#[derive(Debug)]
struct Case {
    tc_id: u64,
    comment: String,
    /// Wycheproof's verdict is "valid".
    wycheproof_valid: bool,
    item: OwnedSigItem,
}

impl Case {
    /// The ZIP-215 verdict this case must get.
    fn expected(&self) -> bool {
        self.wycheproof_valid || self.tc_id == ZIP215_EXTRA
    }
}

fn str_field<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    match v.get(name).and_then(|x| x.as_str()) {
        Some(s) => s,
        None => panic!("lacks string field {name}: {v}"),
    }
}

/// All representable cases; checks the unrepresentable ones on the way.
fn cases(doc: &serde_json::Value) -> Vec<Case> {
    let groups = doc["testGroups"].as_array().expect("testGroups array");
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut unrepresentable = 0usize;
    for group in groups {
        let pk = str_field(&group["publicKey"], "pk");
        for test in group["tests"].as_array().expect("tests array") {
            total += 1;
            let tc_id = test["tcId"].as_u64().expect("tcId");
            let msg = str_field(test, "msg");
            let sig = str_field(test, "sig");
            let result = str_field(test, "result");
            assert!(
                matches!(result, "valid" | "invalid" | "acceptable"),
                "tcId {tc_id}: unknown result {result:?}"
            );
            let comment = test["comment"].as_str().unwrap_or("").to_owned();
            let (pk_len, sig_len) = (hex_len("pk", pk), hex_len("sig", sig));
            if pk_len != 32 || sig_len != 64 {
                unrepresentable += 1;
                assert_eq!(
                    result, "invalid",
                    "tcId {tc_id} ({comment}): a {sig_len}-byte signature / {pk_len}-byte key must be Wycheproof-invalid"
                );
                match OwnedSigItem::from_hex(pk, msg, sig) {
                    Err(AccelError::Length { expected, got, field }) => {
                        if pk_len != 32 {
                            assert_eq!((field, expected, got), ("public key", 32, pk_len), "tcId {tc_id}");
                        } else {
                            assert_eq!((field, expected, got), ("signature", 64, sig_len), "tcId {tc_id}");
                        }
                    }
                    other => panic!(
                        "tcId {tc_id} ({comment}): {sig_len}-byte signature, {pk_len}-byte key: \
                         expected AccelError::Length, got {other:?}"
                    ),
                }
                continue;
            }
            let item = match OwnedSigItem::from_hex(pk, msg, sig) {
                Ok(item) => item,
                Err(e) => panic!("tcId {tc_id}: well-formed case refused: {e:?}"),
            };
            out.push(Case { tc_id, comment, wycheproof_valid: result == "valid", item });
        }
    }
    if let Some(n) = doc["numberOfTests"].as_u64() {
        assert_eq!(total as u64, n, "numberOfTests disagrees with the cases in the file");
    }
    assert!(unrepresentable > 0, "expected some wrong-length cases in the file");
    assert!(out.len() >= 100, "only {} representable cases", out.len());
    let extra = out.iter().find(|c| c.tc_id == ZIP215_EXTRA);
    assert!(
        extra.is_some_and(|c| !c.wycheproof_valid),
        "tcId {ZIP215_EXTRA} must be present, representable and Wycheproof-invalid"
    );
    eprintln!(
        "wycheproof: {total} cases, {} representable ({} expected valid under ZIP-215), {unrepresentable} wrong-length",
        out.len(),
        out.iter().filter(|c| c.expected()).count()
    );
    out
}

/// Panics listing every case whose verdict differs from the ZIP-215 expectation.
fn check(label: &str, cases: &[Case], verdicts: &[bool]) {
    assert_eq!(verdicts.len(), cases.len(), "{label}: one verdict per item");
    let wrong: Vec<String> = cases
        .iter()
        .zip(verdicts)
        .filter(|(c, v)| **v != c.expected())
        .map(|(c, v)| {
            format!(
                "tcId {} got {} expected {} ({})",
                c.tc_id,
                if *v { "accept" } else { "reject" },
                if c.expected() { "accept" } else { "reject" },
                c.comment
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{label}: {} mismatches:\n  {}", wrong.len(), wrong.join("\n  "));
}

fn verify_all_ways(label: &str, v: &dyn Verifier, cases: &[Case]) {
    let items: Vec<SigItem<'_>> = cases.iter().map(|c| c.item.as_item()).collect();
    // All cases in one batch: many invalid items, so bisection has to find each of them.
    check(&format!("{label} (one batch)"), cases, &v.verify(&items));
    // The same through verify_into, with a dirty output buffer that must be cleared.
    let mut out = vec![true; 3];
    v.verify_into(&items, &mut out);
    check(&format!("{label} (verify_into)"), cases, &out);
    // One by one.
    let singles: Vec<bool> = items
        .iter()
        .map(|it| {
            let r = v.verify(std::slice::from_ref(it));
            assert_eq!(r.len(), 1, "{label}: one verdict for one item");
            r[0]
        })
        .collect();
    check(&format!("{label} (one by one)"), cases, &singles);
    // Reversed order, so a bad item's position changes.
    let rev_items: Vec<SigItem<'_>> = items.iter().rev().copied().collect();
    let mut rev = v.verify(&rev_items);
    rev.reverse();
    check(&format!("{label} (reversed batch)"), cases, &rev);
}

#[test]
fn zip215_accepts_exactly_wycheproof_valid_plus_151() {
    let Some(doc) = load() else { return };
    let cases = cases(&doc);

    let reference: Vec<bool> = cases.iter().map(|c| verify_one(&c.item.as_item())).collect();
    check("verify_one", &cases, &reference);

    for b in Backend::CPU {
        let v = match verifier(b) {
            Ok(v) => v,
            Err(e) => panic!("CPU backend {b} unavailable: {e:?}"),
        };
        assert_eq!(v.backend(), b, "verifier({b}) reports another backend");
        verify_all_ways(b.name(), v.as_ref(), &cases);
    }

    let auto = Auto::new(&calibrate(Duration::from_millis(200)));
    verify_all_ways("auto", &auto, &cases);
}
