//! Differential campaign: every CPU backend (and `Auto`) must give, for every item of every
//! batch, the same verdict as `verify_one`, the scalar ZIP-215 reference — which is itself
//! checked against `ed25519-zebra` called directly, and against the verdicts that ZIP-215
//! prescribes where the mutation fixes one (valid signatures accepted; S >= L, flipped bits,
//! changed messages rejected; small-order A and R with S = 0 accepted, canonical or not).
//!
//! Random keys, messages and signatures come from a seeded ChaCha stream. The seed is printed;
//! `BASTION_SEED=<seed> cargo test -p bastion-accel --test differential` replays it and
//! `BASTION_LONG=1` runs a much larger campaign (on fresh seeds unless `BASTION_SEED` is set).
//! Batch verification draws its own coefficients from the OS, so a replay repeats the inputs,
//! not the coefficients (which cannot change a verdict except with probability 2^-128).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bastion_accel::{Auto, Backend, OwnedSigItem, SigItem, Verifier, calibrate, verifier, verify_one};
use bastion_vectors::ed25519::{BASEPOINT, L, add_l, hex, non_canonical_encodings, small_order_encodings};
use ed25519_zebra::{Signature, SigningKey, VerificationKey};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::time::Duration;

fn pick(rng: &mut StdRng, from: &[[u8; 32]]) -> [u8; 32] {
    from[rng.random_range(0..from.len())]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Valid,
    FlipR,
    FlipS,
    FlipA,
    SPlusL,
    SEqualsL,
    MessageChanged,
    OtherKey,
    NonCanonicalA,
    NonCanonicalR,
    SmallOrderA,
    SmallOrderR,
    /// A and R small-order (canonical or not), S = 0: valid under ZIP-215 for any message.
    TorsionZero,
    /// A small-order, R = B, S = 1: valid under ZIP-215 for any message.
    TorsionBase,
    Garbage,
}

const BAD: [Kind; 13] = [
    Kind::FlipR,
    Kind::FlipS,
    Kind::FlipA,
    Kind::SPlusL,
    Kind::SEqualsL,
    Kind::MessageChanged,
    Kind::OtherKey,
    Kind::NonCanonicalA,
    Kind::NonCanonicalR,
    Kind::SmallOrderA,
    Kind::SmallOrderR,
    Kind::Garbage,
    // Weighted twice: the non-canonical R of a real signature.
    Kind::NonCanonicalR,
];

impl Kind {
    /// The ZIP-215 verdict this kind must get, where the mutation determines it (up to
    /// negligible probability).
    fn expected(self) -> Option<bool> {
        match self {
            Kind::Valid | Kind::TorsionZero | Kind::TorsionBase => Some(true),
            Kind::Garbage => None,
            _ => Some(false),
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    kind: Kind,
    item: OwnedSigItem,
}

struct Gen {
    rng: StdRng,
    pool: Vec<OwnedSigItem>,
    small: Vec<[u8; 32]>,
    noncanon: Vec<[u8; 32]>,
}

impl Gen {
    fn new(seed: u64, keys: usize, pool: usize) -> Gen {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys: Vec<SigningKey> = (0..keys)
            .map(|_| {
                let mut seed = [0u8; 32];
                rng.fill(&mut seed[..]);
                SigningKey::from(seed)
            })
            .collect();
        let pool = (0..pool)
            .map(|_| {
                let sk = &keys[rng.random_range(0..keys.len())];
                let len = match rng.random_range(0..10) {
                    0 => 0,
                    1 => rng.random_range(500..2000),
                    _ => rng.random_range(1..200),
                };
                let mut message = vec![0u8; len];
                rng.fill(&mut message[..]);
                OwnedSigItem {
                    public_key: <[u8; 32]>::from(sk.verification_key()),
                    signature: sk.sign(&message).to_bytes(),
                    message,
                }
            })
            .collect();
        Gen { rng, pool, small: small_order_encodings(), noncanon: non_canonical_encodings() }
    }

    fn valid(&mut self) -> OwnedSigItem {
        self.pool[self.rng.random_range(0..self.pool.len())].clone()
    }

    fn case(&mut self, kind: Kind) -> Case {
        let mut it = self.valid();
        match kind {
            Kind::Valid => {}
            Kind::FlipR => {
                let bit = self.rng.random_range(0..256);
                it.signature[bit / 8] ^= 1 << (bit % 8);
            }
            Kind::FlipS => {
                let bit = self.rng.random_range(256..512);
                it.signature[bit / 8] ^= 1 << (bit % 8);
            }
            Kind::FlipA => {
                let bit = self.rng.random_range(0..256);
                it.public_key[bit / 8] ^= 1 << (bit % 8);
            }
            Kind::SPlusL => {
                let s = add_l(&it.signature[32..]);
                it.signature[32..].copy_from_slice(&s);
            }
            Kind::SEqualsL => it.signature[32..].copy_from_slice(&L),
            Kind::MessageChanged => {
                if it.message.is_empty() || self.rng.random_bool(0.2) {
                    it.message.push(self.rng.random());
                } else {
                    let bit = self.rng.random_range(0..it.message.len() * 8);
                    it.message[bit / 8] ^= 1 << (bit % 8);
                }
            }
            Kind::OtherKey => {
                // A signature by another key (or on another message) under this key.
                let other = self.valid();
                if other.public_key == it.public_key && other.message == it.message {
                    it.signature[40] ^= 1;
                } else {
                    it.signature = other.signature;
                }
            }
            Kind::NonCanonicalA => {
                it.public_key = pick(&mut self.rng, &self.noncanon);
            }
            Kind::NonCanonicalR => {
                let r = pick(&mut self.rng, &self.noncanon);
                it.signature[..32].copy_from_slice(&r);
            }
            Kind::SmallOrderA => {
                it.public_key = pick(&mut self.rng, &self.small);
            }
            Kind::SmallOrderR => {
                let r = pick(&mut self.rng, &self.small);
                it.signature[..32].copy_from_slice(&r);
            }
            Kind::TorsionZero => {
                it.public_key = pick(&mut self.rng, &self.small);
                let r = pick(&mut self.rng, &self.small);
                it.signature[..32].copy_from_slice(&r);
                it.signature[32..].fill(0);
            }
            Kind::TorsionBase => {
                it.public_key = pick(&mut self.rng, &self.small);
                it.signature[..32].copy_from_slice(&BASEPOINT);
                it.signature[32..].fill(0);
                it.signature[32] = 1;
            }
            Kind::Garbage => {
                self.rng.fill(&mut it.public_key[..]);
                self.rng.fill(&mut it.signature[..]);
            }
        }
        Case { kind, item: it }
    }

    fn bad(&mut self) -> Case {
        let kind = BAD[self.rng.random_range(0..BAD.len())];
        self.case(kind)
    }

    /// A "good" item: mostly ordinary valid signatures, sometimes the ZIP-215-valid torsion
    /// forms, which batch verification must accept too.
    fn good(&mut self) -> Case {
        match self.rng.random_range(0..20) {
            0 => self.case(Kind::TorsionZero),
            1 => self.case(Kind::TorsionBase),
            _ => self.case(Kind::Valid),
        }
    }
}

/// `ed25519-zebra` called directly: the rule `verify_one` must implement.
fn zebra_verdict(it: &OwnedSigItem) -> bool {
    VerificationKey::try_from(it.public_key)
        .and_then(|vk| vk.verify(&Signature::from(it.signature), &it.message))
        .is_ok()
}

fn describe(c: &Case) -> String {
    format!(
        "{:?} pk={} sig={} msg={}",
        c.kind,
        hex(&c.item.public_key),
        hex(&c.item.signature),
        hex(&c.item.message)
    )
}

struct Campaign {
    seed: u64,
    verifiers: Vec<(String, Box<dyn Verifier>)>,
    items: usize,
    batches: usize,
    bad_items: usize,
}

impl Campaign {
    /// Checks one batch on every verifier against `verify_one`; returns the reference verdicts.
    fn check_batch(&mut self, label: &str, cases: &[Case]) -> Vec<bool> {
        let items: Vec<SigItem<'_>> = cases.iter().map(|c| c.item.as_item()).collect();
        let reference: Vec<bool> = items.iter().map(verify_one).collect();
        for (i, (c, r)) in cases.iter().zip(&reference).enumerate() {
            let z = zebra_verdict(&c.item);
            assert_eq!(
                *r,
                z,
                "seed {}: {label}[{i}]: verify_one says {r}, ed25519-zebra says {z}: {}",
                self.seed,
                describe(c)
            );
            if let Some(e) = c.kind.expected() {
                assert_eq!(
                    *r,
                    e,
                    "seed {}: {label}[{i}]: ZIP-215 verdict should be {e}: {}",
                    self.seed,
                    describe(c)
                );
            }
        }
        let mut out = vec![false; 7]; // dirty: verify_into must clear it
        for (name, v) in &self.verifiers {
            v.verify_into(&items, &mut out);
            assert_eq!(
                out.len(),
                items.len(),
                "seed {}: {label}: {name} gave {} verdicts for {} items",
                self.seed,
                out.len(),
                items.len()
            );
            let wrong: Vec<String> = (0..items.len())
                .filter(|&i| out[i] != reference[i])
                .map(|i| {
                    format!("[{i}] {name}={} reference={}: {}", out[i], reference[i], describe(&cases[i]))
                })
                .collect();
            assert!(
                wrong.is_empty(),
                "seed {} (replay: BASTION_SEED={}): {label} ({} items): {name} disagrees with verify_one on {} items:\n  {}",
                self.seed,
                self.seed,
                items.len(),
                wrong.len(),
                wrong.join("\n  ")
            );
        }
        self.items += items.len();
        self.batches += 1;
        self.bad_items += reference.iter().filter(|r| !**r).count();
        reference
    }
}

fn verifiers() -> Vec<(String, Box<dyn Verifier>)> {
    let mut vs: Vec<(String, Box<dyn Verifier>)> = Backend::CPU
        .iter()
        .map(|&b| match verifier(b) {
            Ok(v) => {
                assert_eq!(v.backend(), b);
                (b.name().to_owned(), v)
            }
            Err(e) => panic!("CPU backend {b} unavailable: {e:?}"),
        })
        .collect();
    assert_eq!(vs.len(), 3, "three CPU backends");
    vs.push(("auto".to_owned(), Box::new(Auto::new(&calibrate(Duration::from_millis(200))))));
    // The GPU kernels' device code built for the host, in both of the GPU backend's modes: the
    // challenge hashed by the kernel, and hashed by the backend on the host (`challenge`).
    vs.push(("gpu-code-device-hash".to_owned(), Box::new(GpuCode { host_hash: false })));
    vs.push(("gpu-code-host-hash".to_owned(), Box::new(GpuCode { host_hash: true })));
    vs
}

/// The GPU backend's kernels run on the CPU (their host build in `bastion-kernels`).
struct GpuCode {
    host_hash: bool,
}

impl Verifier for GpuCode {
    fn backend(&self) -> Backend {
        Backend::Gpu
    }
    fn verify_into(&self, items: &[SigItem<'_>], out: &mut Vec<bool>) {
        if self.host_hash {
            let ks: Vec<[u8; 32]> = items.iter().map(bastion_accel::challenge).collect();
            let packed: Vec<(&[u8; 32], &[u8; 64], &[u8; 32])> =
                items.iter().zip(&ks).map(|(it, k)| (it.public_key, it.signature, k)).collect();
            bastion_kernels::host::verify_prehashed_batch(&packed, out);
        } else {
            let packed: Vec<(&[u8; 32], &[u8; 64], &[u8])> =
                items.iter().map(|it| (it.public_key, it.signature, it.message)).collect();
            bastion_kernels::host::verify_batch(&packed, out);
        }
    }
}

#[test]
fn host_challenge_equals_the_kernel_s() {
    // The backend's host-side challenge (sha2 + curve25519-dalek) against the kernel's own SHA-512
    // and reduction, on random keys, signatures and messages of every length up to 300 bytes.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for len in 0..300usize {
        let mut pk = [0u8; 32];
        let mut sig = [0u8; 64];
        pk.iter_mut().chain(sig.iter_mut()).for_each(|b| *b = next() as u8);
        let msg: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let item = SigItem { public_key: &pk, signature: &sig, message: &msg };
        assert_eq!(
            bastion_accel::challenge(&item),
            bastion_kernels::host::challenge(&pk, &sig, &msg),
            "message length {len}"
        );
    }
}

fn run_seed(seed: u64, scale: usize, verifiers: Vec<(String, Box<dyn Verifier>)>) -> Campaign {
    let mut g = Gen::new(seed, 24, 400 * scale.min(10));
    let mut c = Campaign { seed, verifiers, items: 0, batches: 0, bad_items: 0 };

    // Every small-order (A, R) pair with S = 0, in one batch: all valid under ZIP-215.
    let small = small_order_encodings();
    let mut torsion = Vec::new();
    for a in &small {
        for r in &small {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(r);
            torsion.push(Case {
                kind: Kind::TorsionZero,
                item: OwnedSigItem { public_key: *a, signature, message: b"Zcash".to_vec() },
            });
        }
    }
    let v = c.check_batch("torsion (A, R small-order, S = 0)", &torsion);
    assert!(v.iter().all(|x| *x));

    // Each mutation kind alone, in a batch of one, a few times.
    let kinds = [
        Kind::Valid,
        Kind::FlipR,
        Kind::FlipS,
        Kind::FlipA,
        Kind::SPlusL,
        Kind::SEqualsL,
        Kind::MessageChanged,
        Kind::OtherKey,
        Kind::NonCanonicalA,
        Kind::NonCanonicalR,
        Kind::SmallOrderA,
        Kind::SmallOrderR,
        Kind::TorsionZero,
        Kind::TorsionBase,
        Kind::Garbage,
    ];
    for _ in 0..4 * scale {
        for k in kinds {
            let case = g.case(k);
            c.check_batch(&format!("single {k:?}"), &[case]);
        }
    }

    // Every non-canonical encoding as A and as R of a real signature.
    let mut nc = Vec::new();
    for e in non_canonical_encodings().iter().chain(&small) {
        let mut a = g.valid();
        a.public_key = *e;
        nc.push(Case { kind: Kind::NonCanonicalA, item: a });
        let mut r = g.valid();
        r.signature[..32].copy_from_slice(e);
        nc.push(Case { kind: Kind::NonCanonicalR, item: r });
    }
    c.check_batch("every non-canonical/small-order A and R", &nc);

    // All valid: every verdict true.
    for size in [1, 2, 63, 64, 65, 257] {
        let batch: Vec<Case> = (0..size).map(|_| g.good()).collect();
        let v = c.check_batch(&format!("all valid ({size})"), &batch);
        assert!(v.iter().all(|x| *x), "seed {seed}: all-valid batch has a rejection");
    }

    // Mixed batches with exactly one bad item at a random position.
    for _ in 0..12 * scale {
        let size = g.rng.random_range(1..=300);
        let pos = g.rng.random_range(0..size);
        let batch: Vec<Case> = (0..size).map(|i| if i == pos { g.bad() } else { g.good() }).collect();
        c.check_batch(&format!("one bad at {pos} of {size}"), &batch);
    }
    // The bad item first and last.
    for size in [2, 129, 300] {
        for pos in [0, size - 1] {
            let batch: Vec<Case> = (0..size).map(|i| if i == pos { g.bad() } else { g.good() }).collect();
            c.check_batch(&format!("one bad at {pos} of {size}"), &batch);
        }
    }

    // Batches with several bad items, sparse to dense.
    for _ in 0..8 * scale {
        let size = g.rng.random_range(2..=300);
        let p = [0.02, 0.1, 0.5, 0.9][g.rng.random_range(0..4)];
        let batch: Vec<Case> =
            (0..size).map(|_| if g.rng.random_bool(p) { g.bad() } else { g.good() }).collect();
        c.check_batch(&format!("several bad (p = {p}) in {size}"), &batch);
    }
    // All bad.
    let batch: Vec<Case> = (0..100).map(|_| g.bad()).collect();
    c.check_batch("all bad (100)", &batch);

    // Large batches, split into parallel chunks: all valid, and a few bad ones scattered.
    for round in 0..scale.div_ceil(4) {
        let size = 1000 + g.rng.random_range(0..600);
        let batch: Vec<Case> = (0..size).map(|_| g.good()).collect();
        let v = c.check_batch(&format!("large all valid ({size})"), &batch);
        assert!(v.iter().all(|x| *x), "seed {seed}: large all-valid batch has a rejection");
        let bad = [1, 3, 17][round % 3];
        let mut batch: Vec<Case> = (0..size).map(|_| g.good()).collect();
        for _ in 0..bad {
            let pos = g.rng.random_range(0..size);
            batch[pos] = g.bad();
        }
        c.check_batch(&format!("large ({size}) with {bad} bad"), &batch);
    }
    c
}

#[test]
fn every_backend_matches_scalar_zip215() {
    let long = std::env::var("BASTION_LONG").is_ok_and(|v| v == "1");
    let scale = if long { 50 } else { 1 };
    let seeds: Vec<u64> = match std::env::var("BASTION_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None if long => {
            // Long runs explore new seeds each time; each is printed for replay.
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            (base..base + 4).collect()
        }
        None => vec![20_240_301],
    };
    let mut verifiers = Some(verifiers());
    for seed in seeds {
        eprintln!("differential: seed {seed} (scale {scale}); replay with BASTION_SEED={seed}");
        let c = run_seed(seed, scale, verifiers.take().unwrap_or_else(self::verifiers));
        eprintln!(
            "differential: seed {seed}: {} items ({} invalid) in {} batches, each on {} verifiers",
            c.items,
            c.bad_items,
            c.batches,
            c.verifiers.len()
        );
        assert!(c.items > 1000 && c.bad_items > 50, "campaign too small");
        verifiers = Some(c.verifiers);
    }
}
