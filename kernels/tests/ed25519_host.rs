//! The kernel's ed25519 math (`cuda/*.cuh`, compiled for the host) against `ed25519-zebra`, the
//! ZIP-215 oracle: every Wycheproof case, a seeded mutation campaign, and the batch entry point
//! (the kernel's packed layout) against single verification.
//!
//! The campaign's seed is printed; `BASTION_SEED=<seed>` replays it and `BASTION_LONG=1` runs a
//! much larger one. The Wycheproof file is read from `$BASTION_VECTORS` or `../shared/vectors/`;
//! where it is absent the test fails when `CI` is set and otherwise prints that it skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_kernels::host;
use bastion_vectors::ed25519::{BASEPOINT, L, add_l, hex, non_canonical_encodings, small_order_encodings};
use ed25519_zebra::{Signature, SigningKey, VerificationKey};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "{s}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// `ed25519-zebra`: the ZIP-215 rule.
fn zebra(pk: &[u8; 32], sig: &[u8; 64], msg: &[u8]) -> bool {
    VerificationKey::try_from(*pk).and_then(|vk| vk.verify(&Signature::from_bytes(sig), msg)).is_ok()
}

#[derive(Clone, Debug)]
struct Item {
    kind: &'static str,
    pk: [u8; 32],
    sig: [u8; 64],
    msg: Vec<u8>,
}

fn describe(it: &Item) -> String {
    format!("{} pk={} sig={} msg={}", it.kind, hex(&it.pk), hex(&it.sig), hex(&it.msg))
}

#[test]
fn wycheproof_matches_zebra() {
    let Some(doc) = bastion_vectors::load_json("wycheproof_ed25519_test.json") else {
        return;
    };
    let (mut total, mut checked, mut accepted, mut skipped) = (0usize, 0usize, Vec::new(), 0usize);
    let mut disagreements = Vec::new();
    for group in doc["testGroups"].as_array().expect("testGroups") {
        let pk = unhex(group["publicKey"]["pk"].as_str().expect("pk"));
        for test in group["tests"].as_array().expect("tests") {
            total += 1;
            let tc_id = test["tcId"].as_u64().expect("tcId");
            let msg = unhex(test["msg"].as_str().expect("msg"));
            let sig = unhex(test["sig"].as_str().expect("sig"));
            let (Ok(pk), Ok(sig)) = (<[u8; 32]>::try_from(&pk[..]), <[u8; 64]>::try_from(&sig[..])) else {
                // Not representable as (32-byte key, 64-byte signature): no verdict to compare.
                assert_ne!(test["result"].as_str(), Some("valid"), "tcId {tc_id}");
                skipped += 1;
                continue;
            };
            checked += 1;
            let ours = host::verify(&pk, &sig, &msg);
            let theirs = zebra(&pk, &sig, &msg);
            if ours {
                accepted.push(tc_id);
            }
            if ours != theirs {
                disagreements.push(format!("tcId {tc_id}: host {ours}, zebra {theirs}"));
            }
        }
    }
    eprintln!(
        "wycheproof: {total} cases, {checked} checked ({} accepted), {skipped} unrepresentable",
        accepted.len()
    );
    assert!(disagreements.is_empty(), "disagreements with zebra:\n{}", disagreements.join("\n"));
    assert!(accepted.contains(&151), "ZIP-215 accepts tcId 151");
    assert!(checked > 100, "too few cases: {checked}");
}

struct Gen {
    rng: StdRng,
    keys: Vec<SigningKey>,
    small: Vec<[u8; 32]>,
    noncanon: Vec<[u8; 32]>,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys = (0..16)
            .map(|_| {
                let mut s = [0u8; 32];
                rng.fill(&mut s[..]);
                SigningKey::from(s)
            })
            .collect();
        Gen { rng, keys, small: small_order_encodings(), noncanon: non_canonical_encodings() }
    }

    fn pick(&mut self, from: usize) -> [u8; 32] {
        let list = if from == 0 { &self.small } else { &self.noncanon };
        list[self.rng.random_range(0..list.len())]
    }

    fn valid(&mut self) -> Item {
        let sk = self.keys[self.rng.random_range(0..self.keys.len())];
        let len = match self.rng.random_range(0..10) {
            0 => 0,
            1 => self.rng.random_range(100..400),
            _ => self.rng.random_range(1..130),
        };
        let mut msg = vec![0u8; len];
        self.rng.fill(&mut msg[..]);
        Item {
            kind: "valid",
            pk: <[u8; 32]>::from(sk.verification_key()),
            sig: sk.sign(&msg).to_bytes(),
            msg,
        }
    }

    fn item(&mut self) -> Item {
        let mut it = self.valid();
        match self.rng.random_range(0..14) {
            0 | 1 => {}
            2 => {
                it.kind = "flip";
                let total = 8 * (32 + 64 + it.msg.len());
                let bit = self.rng.random_range(0..total);
                let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
                if byte < 32 {
                    it.pk[byte] ^= mask;
                } else if byte < 96 {
                    it.sig[byte - 32] ^= mask;
                } else {
                    it.msg[byte - 96] ^= mask;
                }
            }
            3 => {
                it.kind = "s+l";
                let s = add_l(&it.sig[32..]);
                it.sig[32..].copy_from_slice(&s);
            }
            4 => {
                it.kind = "s=l";
                it.sig[32..].copy_from_slice(&L);
            }
            5 => {
                it.kind = "small-order A, R, S=0";
                it.pk = self.pick(0);
                let r = self.pick(0);
                it.sig[..32].copy_from_slice(&r);
                it.sig[32..].fill(0);
            }
            6 => {
                it.kind = "small-order A, R=B, S=1";
                it.pk = self.pick(0);
                it.sig[..32].copy_from_slice(&BASEPOINT);
                it.sig[32..].fill(0);
                it.sig[32] = 1;
            }
            7 => {
                it.kind = "small-order A";
                it.pk = self.pick(0);
            }
            8 => {
                it.kind = "small-order R";
                let r = self.pick(0);
                it.sig[..32].copy_from_slice(&r);
            }
            9 => {
                it.kind = "y>=p A";
                it.pk = self.pick(1);
                if self.rng.random_bool(0.5) {
                    let r = self.pick(0);
                    it.sig[..32].copy_from_slice(&r);
                    it.sig[32..].fill(0);
                }
            }
            10 => {
                it.kind = "y>=p R";
                let r = self.pick(1);
                it.sig[..32].copy_from_slice(&r);
                if self.rng.random_bool(0.5) {
                    it.pk = self.pick(0);
                    it.sig[32..].fill(0);
                }
            }
            11 => {
                it.kind = "random key";
                self.rng.fill(&mut it.pk[..]);
            }
            12 => {
                it.kind = "random R";
                self.rng.fill(&mut it.sig[..32]);
            }
            _ => {
                it.kind = "garbage";
                self.rng.fill(&mut it.pk[..]);
                self.rng.fill(&mut it.sig[..]);
                // Keep S canonical half the time so decoding and the equation are exercised.
                if self.rng.random_bool(0.5) {
                    it.sig[63] &= 0x0f;
                }
            }
        }
        it
    }
}

#[test]
fn mutation_campaign_matches_zebra() {
    let long = std::env::var("BASTION_LONG").is_ok_and(|v| v == "1");
    let seed = std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_260_701_u64);
    let n = if long { 200_000 } else { 3_000 };
    eprintln!("ed25519_host: seed {seed}, {n} items; replay with BASTION_SEED={seed}");
    let mut g = Gen::new(seed);
    let (mut accepted, mut rejected) = (0usize, 0usize);
    let mut disagreements = Vec::new();
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        items.push(g.item());
    }
    for it in &items {
        let ours = host::verify(&it.pk, &it.sig, &it.msg);
        let theirs = zebra(&it.pk, &it.sig, &it.msg);
        if theirs {
            accepted += 1;
        } else {
            rejected += 1;
        }
        if ours != theirs {
            disagreements.push(format!("host {ours}, zebra {theirs}: {}", describe(it)));
        }
    }
    eprintln!("ed25519_host: seed {seed}: {accepted} accepted, {rejected} rejected by zebra");
    assert!(
        disagreements.is_empty(),
        "seed {seed} (replay: BASTION_SEED={seed}): {} disagreements with zebra:\n{}",
        disagreements.len(),
        disagreements.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(accepted > n / 10 && rejected > n / 3, "campaign unbalanced: {accepted} / {rejected}");

    // The batch entry point (the kernel's layout, looped on the CPU) agrees item by item.
    let batch: Vec<(&[u8; 32], &[u8; 64], &[u8])> =
        items.iter().map(|it| (&it.pk, &it.sig, &it.msg[..])).collect();
    let mut out = Vec::new();
    host::verify_batch(&batch, &mut out);
    assert_eq!(out.len(), items.len());
    for (i, (it, v)) in items.iter().zip(&out).enumerate() {
        assert_eq!(*v, zebra(&it.pk, &it.sig, &it.msg), "seed {seed}: batch item {i}: {}", describe(it));
    }

    // `BASTION_DUMP_BATCH=<file>` writes the batch in the kernel's layout with zebra's verdicts
    // (for checking the kernel on a GPU): u32 n, pks, sigs, n + 1 u32 offsets, the messages,
    // n verdict bytes; integers little-endian.
    if let Some(path) = std::env::var_os("BASTION_DUMP_BATCH") {
        let p = host::Packed::new(&batch).unwrap();
        let mut f = Vec::new();
        f.extend_from_slice(&u32::try_from(p.len()).unwrap().to_le_bytes());
        f.extend_from_slice(&p.pks);
        f.extend_from_slice(&p.sigs);
        for o in &p.msg_offsets {
            f.extend_from_slice(&o.to_le_bytes());
        }
        f.extend_from_slice(&p.msgs);
        f.extend(out.iter().map(|&v| u8::from(v)));
        std::fs::write(&path, f).unwrap();
        eprintln!("ed25519_host: wrote {} items to {}", p.len(), path.to_string_lossy());
    }
}

#[test]
fn batch_matches_single() {
    let mut g = Gen::new(7);
    let items: Vec<Item> = (0..300).map(|_| g.item()).collect();
    let batch: Vec<(&[u8; 32], &[u8; 64], &[u8])> =
        items.iter().map(|it| (&it.pk, &it.sig, &it.msg[..])).collect();
    let mut out = vec![true; 3];
    host::verify_batch(&batch, &mut out);
    assert_eq!(out.len(), items.len());
    for (i, (it, v)) in items.iter().zip(&out).enumerate() {
        assert_eq!(*v, host::verify(&it.pk, &it.sig, &it.msg), "item {i}: {}", describe(it));
    }
    assert!(out.iter().any(|&v| v) && out.iter().any(|&v| !v));

    // Empty messages only, a single item, and an empty batch.
    let empty: Vec<(&[u8; 32], &[u8; 64], &[u8])> =
        items.iter().map(|it| (&it.pk, &it.sig, &[][..])).collect();
    host::verify_batch(&empty, &mut out);
    for (i, (it, v)) in items.iter().zip(&out).enumerate() {
        assert_eq!(*v, host::verify(&it.pk, &it.sig, &[]), "item {i} (empty message)");
    }
    host::verify_batch(&batch[..1], &mut out);
    assert_eq!(out, vec![host::verify(&items[0].pk, &items[0].sig, &items[0].msg)]);
    host::verify_batch(&[], &mut out);
    assert!(out.is_empty());

    // The packed layout itself.
    let p = host::Packed::new(&batch[..3]).unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p.pks.len(), 96);
    assert_eq!(p.sigs.len(), 192);
    assert_eq!(p.msg_offsets.len(), 4);
    assert_eq!(p.msg_offsets[0], 0);
    assert_eq!(p.msg_offsets[3] as usize, p.msgs.len());
    assert_eq!(&p.msgs[p.msg_offsets[1] as usize..p.msg_offsets[2] as usize], &items[1].msg[..]);
}

/// The kernel's signed radix-256 recoding of S (`bk_sc_signed_radix256`), in Rust.
fn signed_radix256(s: &[u8]) -> [i32; 32] {
    let mut e = [0i32; 32];
    let mut carry = 0i32;
    for i in 0..31 {
        let v = i32::from(s[i]) + carry;
        carry = (v + 128) >> 8;
        e[i] = v - (carry << 8);
    }
    e[31] = i32::from(s[31]) + carry;
    e
}

/// The precomputed basepoint table (`cuda/bk_ed25519_btable.cuh`, generated by
/// `tools/gen_ed25519_btable.py`): valid zebra signatures are verified until every entry
/// [1]B..[127]B has been used with both signs and [128]B negated (the digits of S, recoded as the kernel does, name
/// the entries), and every one must be accepted: a wrong entry (or a wrong negation) gives a
/// wrong [S]B and rejects the signatures that use it. The recoding's digit range is checked too.
#[test]
fn basepoint_table_every_entry_both_signs() {
    let mut rng = StdRng::seed_from_u64(128);
    let mut seen = [[0u32; 2]; 129];
    let mut n = 0usize;
    // Digits are in [-128, 128) below the top one (which is at most 17): [128]B is only ever
    // used negated, every other entry with both signs.
    while seen[1..128].iter().any(|s| s[0] == 0 || s[1] == 0) || seen[128][1] == 0 {
        n += 1;
        assert!(n < 20_000, "coverage not reached after {n} signatures");
        let mut seed = [0u8; 32];
        rng.fill(&mut seed[..]);
        let sk = SigningKey::from(seed);
        let msg = n.to_le_bytes();
        let (pk, sig) = (<[u8; 32]>::from(sk.verification_key()), sk.sign(&msg).to_bytes());
        assert!(zebra(&pk, &sig, &msg));
        assert!(host::verify(&pk, &sig, &msg), "signature {n} rejected: pk={} sig={}", hex(&pk), hex(&sig));
        for d in signed_radix256(&sig[32..]) {
            assert!((-128..=128).contains(&d), "digit {d}");
            seen[d.unsigned_abs() as usize][usize::from(d < 0)] += 1;
        }
    }
    // Extremes: S = L - 1 (the largest canonical S) and S = 0, 1 recode within the table.
    let mut l1 = L;
    l1[0] -= 1;
    for s in [l1, [0u8; 32], {
        let mut o = [0u8; 32];
        o[0] = 1;
        o
    }] {
        assert!(signed_radix256(&s).iter().all(|d| (-128..=128).contains(d)));
    }
    assert_eq!(seen[128][0], 0, "a digit of +128 below the top");
    eprintln!("basepoint table: every entry with both signs after {n} valid signatures");
}

/// The committed basepoint table is exactly what its generator writes (so nobody edits it by
/// hand, and the generator stays the source of truth).
#[test]
fn basepoint_table_is_what_the_generator_writes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out =
        match std::process::Command::new("python3").arg(root.join("tools/gen_ed25519_btable.py")).output() {
            Ok(o) => o,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "python3 is needed in CI: {e}");
                println!("skipping: python3 not runnable ({e})");
                return;
            }
        };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let committed = std::fs::read(root.join("cuda/bk_ed25519_btable.cuh")).unwrap();
    assert!(
        out.stdout == committed,
        "cuda/bk_ed25519_btable.cuh differs from what tools/gen_ed25519_btable.py writes"
    );
}
