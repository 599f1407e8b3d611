//! The GPU backend.
//!
//! Without a GPU (this is what runs on machines with no NVIDIA driver): every GPU entry point is
//! a clear `Unavailable` error naming what is missing, never a panic; calibration leaves the GPU
//! out (`gpu_from == usize::MAX`) and `Auto` still verifies.
//!
//! With a GPU (skipped with a notice where GPU 0 does not open; `BASTION_REQUIRE_GPU=1` turns a
//! missing GPU into a failure): the GPU verifier agrees with `verify_one` (ed25519-zebra,
//! ZIP-215) on Wycheproof's vectors and on a seeded random mutation campaign at batch sizes 1, 7,
//! 128, 65537 and 200000 (crossing the chunk boundary); `GpuRisk` equals
//! `bastion_kernels::risk::host_portfolio_risk` on random inputs. `BASTION_SEED=<seed>` replays
//! a campaign.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bastion_accel::gpu::DRIVER_LIBRARIES;
use bastion_accel::{
    AccelError, Auto, Backend, Calibration, GpuRisk, GpuVerifier, HashOn, OwnedSigItem, Selection, SigItem,
    Verifier, calibrate, gpu_probe, verifier, verify_one,
};
use bastion_kernels::risk::{RiskInput, SCENARIOS, host_portfolio_risk};
use bastion_vectors::ed25519::{BASEPOINT, L, add_l, non_canonical_encodings, small_order_encodings};
use ed25519_zebra::SigningKey;
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Whether the NVIDIA driver library can be loaded here (the tests' own check, independent of
/// the crate's).
fn libcuda_present() -> bool {
    DRIVER_LIBRARIES.iter().any(|name| {
        // SAFETY: loading the NVIDIA driver library runs only its own initialisers, which have no
        // preconditions on the caller; no symbol is used and the handle is dropped at once.
        unsafe { libloading::Library::new(name) }.is_ok()
    })
}

fn require_gpu() -> bool {
    std::env::var("BASTION_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Asserts `e` is the GPU's `Unavailable` and, where libcuda is absent, that it says so.
fn assert_clear_unavailable(what: &str, e: &AccelError) {
    let AccelError::Unavailable { backend: Backend::Gpu, reason } = e else {
        panic!("{what}: expected Unavailable {{ backend: Gpu }}, got {e:?}");
    };
    assert!(!reason.is_empty(), "{what}: empty reason");
    assert!(e.to_string().contains("gpu"), "{what}: the message should name the backend: {e}");
    if !libcuda_present() {
        assert!(reason.contains("libcuda.so.1"), "{what}: the message should name libcuda: {reason}");
        assert!(
            reason.contains("scalar, batch, parallel or auto"),
            "{what}: the message should name the alternatives: {reason}"
        );
    }
}

/// One GPU verifier for the whole test binary (opening compiles or loads the kernel), or `None`
/// after a notice; with `BASTION_REQUIRE_GPU=1` a missing GPU fails the test.
fn gpu(test: &str) -> Option<Arc<GpuVerifier>> {
    static GPU: OnceLock<Result<Arc<GpuVerifier>, String>> = OnceLock::new();
    match GPU.get_or_init(|| GpuVerifier::open(0).map(Arc::new).map_err(|e| e.to_string())) {
        Ok(v) => {
            eprintln!("{test}: {} ({})", v.info(), v.target());
            Some(v.clone())
        }
        Err(e) if require_gpu() => panic!("{test}: BASTION_REQUIRE_GPU=1 but the GPU does not open: {e}"),
        Err(e) => {
            eprintln!("skipping {test}: no GPU ({e})");
            None
        }
    }
}

/// A seeded generator (SplitMix64): enough for test inputs, and replayable from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the bias is negligible for test sizes).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

fn seed() -> u64 {
    match std::env::var("BASTION_SEED") {
        Ok(s) => s.trim().parse().expect("BASTION_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7),
    }
}

fn as_items(owned: &[OwnedSigItem]) -> Vec<SigItem<'_>> {
    owned.iter().map(|o| o.as_item()).collect()
}

// ---------------------------------------------------------------------------------------------
// Without a GPU: clear errors, no panics

#[test]
fn probe_is_a_clear_error_without_a_gpu() {
    for ordinal in [0, 1, 7] {
        match gpu_probe(ordinal) {
            Ok(info) => {
                assert!(libcuda_present(), "a GPU opened without libcuda?");
                let line = info.to_string();
                assert!(!line.contains('\n') && line.contains(&info.name), "{line}");
                eprintln!("probe {ordinal}: {line}");
            }
            Err(e) => assert_clear_unavailable(&format!("gpu_probe({ordinal})"), &e),
        }
    }
    // Probing again gives the same answer (the driver check is not a one-shot).
    assert_eq!(gpu_probe(0).is_ok(), gpu_probe(0).is_ok());
}

#[test]
fn gpu_backend_is_a_clear_error_without_a_gpu() {
    let probe = gpu_probe(0);
    match (verifier(Backend::Gpu), &probe) {
        (Ok(v), Ok(_)) => assert_eq!(v.backend(), Backend::Gpu),
        (Ok(_), Err(e)) => panic!("verifier(gpu) opened although the probe failed: {e}"),
        (Err(e), _) => assert_clear_unavailable("verifier(gpu)", &e),
    }
    let selection: Selection = "gpu".parse().unwrap();
    assert_eq!(selection, Selection::Fixed(Backend::Gpu));
    match selection.build(Duration::ZERO) {
        Ok(v) => {
            assert!(probe.is_ok(), "Selection::Fixed(gpu) built without a GPU");
            assert_eq!(v.backend(), Backend::Gpu);
        }
        Err(e) => assert_clear_unavailable("Selection::Fixed(gpu).build", &e),
    }
    match GpuVerifier::open(0) {
        Ok(v) => {
            // Empty batches never touch the GPU.
            let mut out = vec![true; 4];
            v.verify_into(&[], &mut out);
            assert!(out.is_empty());
            assert_eq!(v.fallbacks(), 0);
        }
        Err(e) => assert_clear_unavailable("GpuVerifier::open", &e),
    }
}

#[test]
fn calibration_without_a_gpu_leaves_it_out_and_auto_still_verifies() {
    assert_eq!(Calibration::default().gpu_from, usize::MAX);
    assert!(Calibration::default().gpu.is_none());
    // The CPU fields still work with struct update syntax.
    let custom = Calibration { batch_from: 2, parallel_from: 64, ..Calibration::default() };
    assert_eq!(custom.gpu_from, usize::MAX);

    let c = calibrate(Duration::from_millis(40));
    assert_eq!(c.samples.len(), 21, "the CPU measurements are unchanged");
    if gpu_probe(0).is_err() {
        assert_eq!(c.gpu_from, usize::MAX);
        assert!(c.gpu.is_none() && c.gpu_info().is_none());
        assert!(c.gpu_samples.is_empty());
        let why = c.gpu_unavailable.as_deref().expect("calibration says why there is no GPU");
        if !libcuda_present() {
            assert!(why.contains("libcuda"), "{why}");
        }
    } else {
        eprintln!(
            "calibration with {}: gpu_from {} samples {:?} ({:?})",
            c.gpu_info().map_or("no GPU".to_owned(), |i| i.to_string()),
            c.gpu_from,
            c.gpu_samples,
            c.gpu_unavailable
        );
    }
    let auto = Auto::new(&c);
    if c.gpu_from == usize::MAX {
        assert_ne!(auto.backend(), Backend::Gpu);
    }
    let mut owned: Vec<OwnedSigItem> = (0..300u32)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let sk = SigningKey::from(seed);
            let message = i.to_be_bytes().to_vec();
            OwnedSigItem {
                public_key: <[u8; 32]>::from(sk.verification_key()),
                signature: sk.sign(&message).to_bytes(),
                message,
            }
        })
        .collect();
    owned[5].signature[3] ^= 1;
    owned[250].message.push(1);
    for n in [0, 1, 3, 64, 300] {
        let items = as_items(&owned[..n]);
        let expected: Vec<bool> = items.iter().map(verify_one).collect();
        assert_eq!(auto.verify(&items), expected, "auto, {n} items");
    }
}

#[test]
fn gpu_risk_open_is_a_clear_error_without_a_gpu() {
    match GpuRisk::open(0) {
        Ok(r) => {
            assert!(gpu_probe(0).is_ok());
            eprintln!("GpuRisk on {} ({})", r.info(), r.target());
        }
        Err(e) => assert_clear_unavailable("GpuRisk::open", &e),
    }
}

// ---------------------------------------------------------------------------------------------
// With a GPU: the kernel agrees with zebra

/// Panics listing (the first few) items where the GPU and `verify_one` disagree.
fn check_against_reference(label: &str, items: &[SigItem<'_>], got: &[bool]) {
    assert_eq!(got.len(), items.len(), "{label}: one verdict per item");
    let reference: Vec<bool> = items.par_iter().map(verify_one).collect();
    let wrong: Vec<String> = (0..items.len())
        .filter(|&i| got[i] != reference[i])
        .take(20)
        .map(|i| {
            format!(
                "item {i}: gpu {} zebra {} (pk {:02x?}.., sig {:02x?}.., {} message bytes)",
                got[i],
                reference[i],
                &items[i].public_key[..4],
                &items[i].signature[..4],
                items[i].message.len()
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{label}: the GPU disagrees with zebra:\n  {}", wrong.join("\n  "));
}

#[test]
fn gpu_agrees_with_zebra_on_wycheproof() {
    let Some(gpu) = gpu("gpu_agrees_with_zebra_on_wycheproof") else { return };
    let Some(doc) = bastion_vectors::load_json("wycheproof_ed25519_test.json") else { return };
    let mut cases: Vec<(u64, bool, OwnedSigItem)> = Vec::new();
    for group in doc["testGroups"].as_array().expect("testGroups") {
        let pk = group["publicKey"]["pk"].as_str().expect("pk");
        for t in group["tests"].as_array().expect("tests") {
            let tc_id = t["tcId"].as_u64().expect("tcId");
            let (msg, sig) = (t["msg"].as_str().expect("msg"), t["sig"].as_str().expect("sig"));
            // Wrong-length keys and signatures cannot be items (wycheproof.rs checks them).
            if let Ok(item) = OwnedSigItem::from_hex(pk, msg, sig) {
                let valid = t["result"].as_str() == Some("valid");
                cases.push((tc_id, valid || tc_id == 151, item));
            }
        }
    }
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let owned: Vec<OwnedSigItem> = cases.iter().map(|c| c.2.clone()).collect();
    let items = as_items(&owned);
    let expected: Vec<bool> = cases.iter().map(|c| c.1).collect();
    let kept = gpu.hash_on();
    for mode in [HashOn::Device, HashOn::Host] {
        gpu.set_hash_on(mode);
        let got = gpu.verify(&items);
        check_against_reference(&format!("wycheproof (one batch, hash on the {mode})"), &items, &got);
        assert_eq!(
            got, expected,
            "wycheproof, hash on the {mode}: ZIP-215 accepts exactly the valid cases plus tcId 151"
        );
        // One by one, and through verify_into with a dirty buffer.
        for (i, item) in items.iter().enumerate() {
            assert_eq!(
                gpu.verify(std::slice::from_ref(item)),
                vec![expected[i]],
                "tcId {} ({mode})",
                cases[i].0
            );
        }
        let mut out = vec![true; 5];
        gpu.verify_into(&items, &mut out);
        assert_eq!(out, expected);
    }
    gpu.set_hash_on(kept);
    assert_eq!(gpu.fallbacks(), 0, "the GPU fell back to the CPU");
}

/// Signed items, then mutated ones: the differential campaign's mutations (see
/// differential.rs), on the GPU.
struct Campaign {
    rng: Rng,
    pool: Vec<OwnedSigItem>,
    small: Vec<[u8; 32]>,
    noncanon: Vec<[u8; 32]>,
}

impl Campaign {
    fn new(seed: u64, pool: usize) -> Campaign {
        let mut rng = Rng(seed);
        let seeds: Vec<(u64, usize)> = (0..pool)
            .map(|_| {
                let len = match rng.below(10) {
                    0 => 0,
                    1 => 500 + rng.below(1500),
                    _ => 1 + rng.below(199),
                };
                (rng.next(), len)
            })
            .collect();
        let pool = seeds
            .par_iter()
            .map(|&(s, len)| {
                let mut r = Rng(s);
                let mut key = [0u8; 32];
                r.fill(&mut key);
                let sk = SigningKey::from(key);
                let mut message = vec![0u8; len];
                r.fill(&mut message);
                OwnedSigItem {
                    public_key: <[u8; 32]>::from(sk.verification_key()),
                    signature: sk.sign(&message).to_bytes(),
                    message,
                }
            })
            .collect();
        Campaign { rng, pool, small: small_order_encodings(), noncanon: non_canonical_encodings() }
    }

    fn pick32(&mut self, from: &[[u8; 32]]) -> [u8; 32] {
        from[self.rng.below(from.len())]
    }

    fn item(&mut self) -> OwnedSigItem {
        let mut it = self.pool[self.rng.below(self.pool.len())].clone();
        let small = self.small.clone();
        let noncanon = self.noncanon.clone();
        match self.rng.below(24) {
            0 => {
                let bit = self.rng.below(256);
                it.signature[bit / 8] ^= 1 << (bit % 8);
            }
            1 => {
                let bit = 256 + self.rng.below(256);
                it.signature[bit / 8] ^= 1 << (bit % 8);
            }
            2 => {
                let bit = self.rng.below(256);
                it.public_key[bit / 8] ^= 1 << (bit % 8);
            }
            3 => {
                let s = add_l(&it.signature[32..]);
                it.signature[32..].copy_from_slice(&s);
            }
            4 => it.signature[32..].copy_from_slice(&L),
            5 => {
                if it.message.is_empty() {
                    it.message.push(self.rng.next() as u8);
                } else {
                    let bit = self.rng.below(it.message.len() * 8);
                    it.message[bit / 8] ^= 1 << (bit % 8);
                }
            }
            6 => it.signature = self.pool[self.rng.below(self.pool.len())].signature,
            7 => it.public_key = self.pick32(&noncanon),
            8 => {
                let r = self.pick32(&noncanon);
                it.signature[..32].copy_from_slice(&r);
            }
            9 => it.public_key = self.pick32(&small),
            10 => {
                let r = self.pick32(&small);
                it.signature[..32].copy_from_slice(&r);
            }
            11 => {
                // Small-order A and R, S = 0: valid under ZIP-215.
                it.public_key = self.pick32(&small);
                let r = self.pick32(&small);
                it.signature[..32].copy_from_slice(&r);
                it.signature[32..].fill(0);
            }
            12 => {
                // Small-order A, R = B, S = 1: valid under ZIP-215.
                it.public_key = self.pick32(&small);
                it.signature[..32].copy_from_slice(&BASEPOINT);
                it.signature[32..].fill(0);
                it.signature[32] = 1;
            }
            13 => {
                self.rng.fill(&mut it.public_key);
                self.rng.fill(&mut it.signature);
            }
            14 => it.message.truncate(it.message.len() / 2),
            _ => {} // valid, untouched
        }
        it
    }
}

#[test]
fn gpu_agrees_with_zebra_on_a_random_mutation_campaign() {
    let Some(gpu) = gpu("gpu_agrees_with_zebra_on_a_random_mutation_campaign") else { return };
    let seed = seed();
    eprintln!("campaign seed {seed} (replay: BASTION_SEED={seed})");
    let mut campaign = Campaign::new(seed, 4096);
    let kept = gpu.hash_on();
    for n in [1usize, 7, 128, 65_537, 200_000] {
        let owned: Vec<OwnedSigItem> = (0..n).map(|_| campaign.item()).collect();
        let items = as_items(&owned);
        for mode in [HashOn::Device, HashOn::Host] {
            gpu.set_hash_on(mode);
            let got = gpu.verify(&items);
            let valid = got.iter().filter(|v| **v).count();
            eprintln!("  {n} items, hash on the {mode}: {valid} valid");
            check_against_reference(&format!("seed {seed}, {n} items, hash on the {mode}"), &items, &got);
        }
    }
    gpu.set_hash_on(kept);
    // An all-valid batch past two chunks, and the lanes reused after it.
    let owned: Vec<OwnedSigItem> =
        (0..150_000).map(|i| campaign.pool[i % campaign.pool.len()].clone()).collect();
    assert!(gpu.verify(&as_items(&owned)).iter().all(|v| *v));
    assert_eq!(gpu.verify(&as_items(&owned[..3])), vec![true; 3]);
    assert_eq!(gpu.fallbacks(), 0, "the GPU fell back to the CPU");
}

#[test]
fn auto_with_a_gpu_verifies_large_batches() {
    let Some(_gpu) = gpu("auto_with_a_gpu_verifies_large_batches") else { return };
    let c = calibrate(Duration::from_millis(200));
    assert_eq!(c.gpu_samples.len(), 2 * bastion_accel::GPU_CALIBRATION_SIZES.len(), "{c:?}");
    eprintln!("gpu_from {} samples {:?}", c.gpu_from, c.gpu_samples);
    let auto = Auto::new(&c);
    let mut campaign = Campaign::new(seed(), 1024);
    let owned: Vec<OwnedSigItem> = (0..70_000).map(|_| campaign.item()).collect();
    let items = as_items(&owned);
    check_against_reference("auto", &items, &auto.verify(&items));
}

// ---------------------------------------------------------------------------------------------
// With a GPU: the risk kernel equals the host build

/// An owned `RiskInput`.
struct RiskCase {
    diffs: Vec<i64>,
    lots: Vec<i64>,
    market_ok: Vec<u8>,
    acct_groups: Vec<u32>,
    group_pos: Vec<u32>,
    pos_market: Vec<u32>,
    pos_size: Vec<i64>,
    acct_ok: Vec<u8>,
    mm_ppm: i64,
}

impl RiskCase {
    fn random(rng: &mut Rng, n_accounts: usize, n_markets: usize, extreme: bool) -> RiskCase {
        let big = |rng: &mut Rng| match rng.below(if extreme { 8 } else { 1000 }) {
            0 => i64::MAX,
            1 => i64::MIN,
            2 => rng.range_i64(-(1 << 62), 1 << 62),
            _ => rng.range_i64(-50_000_000_000, 50_000_000_000),
        };
        let diffs = (0..n_markets * SCENARIOS).map(|_| big(rng)).collect();
        let lots = (0..n_markets).map(|_| [1, 1_000, 1_000_000, 1_000_000_000][rng.below(4)]).collect();
        let market_ok = (0..n_markets).map(|_| u8::from(rng.below(50) != 0)).collect();
        let (mut acct_groups, mut group_pos) = (vec![0u32], vec![0u32]);
        let (mut pos_market, mut pos_size) = (Vec::new(), Vec::new());
        for _ in 0..n_accounts {
            for _ in 0..rng.below(4) {
                for _ in 0..rng.below(6) {
                    pos_market.push(rng.below(n_markets) as u32);
                    pos_size.push(match rng.below(10) {
                        0 => 0,
                        1 if extreme => big(rng),
                        _ => rng.range_i64(-100_000, 100_000),
                    });
                }
                group_pos.push(pos_market.len() as u32);
            }
            acct_groups.push((group_pos.len() - 1) as u32);
        }
        let acct_ok = (0..n_accounts).map(|_| u8::from(rng.below(100) != 0)).collect();
        let mm_ppm = [1, 500_000, 1_000_000, rng.range_i64(1, 1_000_000)][rng.below(4)];
        RiskCase { diffs, lots, market_ok, acct_groups, group_pos, pos_market, pos_size, acct_ok, mm_ppm }
    }

    fn input(&self) -> RiskInput<'_> {
        RiskInput {
            diffs: &self.diffs,
            lots: &self.lots,
            market_ok: &self.market_ok,
            acct_groups: &self.acct_groups,
            group_pos: &self.group_pos,
            pos_market: &self.pos_market,
            pos_size: &self.pos_size,
            acct_ok: &self.acct_ok,
            mm_ppm: self.mm_ppm,
        }
    }
}

#[test]
fn gpu_risk_equals_the_host_build() {
    let risk = match GpuRisk::open(0) {
        Ok(r) => r,
        Err(e) if require_gpu() => panic!("BASTION_REQUIRE_GPU=1 but GpuRisk does not open: {e}"),
        Err(e) => {
            eprintln!("skipping gpu_risk_equals_the_host_build: no GPU ({e})");
            return;
        }
    };
    eprintln!("GpuRisk on {} ({})", risk.info(), risk.target());
    let seed = seed();
    eprintln!("risk seed {seed} (replay: BASTION_SEED={seed})");
    let mut rng = Rng(seed);
    for (n_accounts, n_markets, extreme) in
        [(0, 1, false), (1, 1, false), (129, 7, false), (5_000, 40, true), (100_000, 300, false)]
    {
        let case = RiskCase::random(&mut rng, n_accounts, n_markets, extreme);
        let input = case.input();
        let expected = host_portfolio_risk(&input).expect("the generated input is valid");
        let (got, timing) = risk.run(&input).expect("GpuRisk::run");
        let fallbacks = got.status.iter().filter(|s| **s != 0).count();
        eprintln!("  {n_accounts} accounts, {n_markets} markets: {fallbacks} fallbacks; {timing}");
        if got != expected {
            let first = (0..n_accounts)
                .find(|&a| {
                    got.worst[a] != expected.worst[a]
                        || got.mm[a] != expected.mm[a]
                        || got.status[a] != expected.status[a]
                })
                .unwrap_or(0);
            panic!(
                "seed {seed}, {n_accounts} accounts: GPU differs from the host build, first at account {first}: \
                 gpu ({}, {}, {}) host ({}, {}, {})",
                got.worst[first],
                got.mm[first],
                got.status[first],
                expected.worst[first],
                expected.mm[first],
                expected.status[first]
            );
        }
    }
    // An invalid input is refused before the GPU.
    let mut case = RiskCase::random(&mut rng, 10, 3, false);
    case.pos_market.push(99);
    match risk.run(&case.input()) {
        Err(AccelError::RiskInput(_)) => {}
        other => panic!("expected RiskInput error, got {:?}", other.map(|(o, _)| o.len())),
    }
}

// ---------------------------------------------------------------------------------------------
// A fake driver: the guards against a libcuda that loads but misbehaves

/// A stand-in `libcuda.so.1`. `empty`: no symbols at all (cudarc panics at its first call);
/// `no_device`: `cuInit` fails with CUDA_ERROR_NO_DEVICE; `zero`: `cuInit` succeeds and the
/// driver counts no GPU; `device`: one sm_90 "GPU" that opens (and loads no module).
const FAKE_LIBCUDA: &str = r#"
typedef int CUresult;
int bastion_fake_libcuda;
#ifdef FAKE_INIT
CUresult cuInit(unsigned flags) { (void)flags; return FAKE_INIT; }
CUresult cuDeviceGetCount(int* n) { *n = FAKE_COUNT; return 0; }
CUresult cuDriverGetVersion(int* v) { *v = 12090; return 0; }
CUresult cuGetErrorString(CUresult e, const char** s) { (void)e; *s = "fake driver error"; return 0; }
CUresult cuGetErrorName(CUresult e, const char** s) { (void)e; *s = "CUDA_ERROR_FAKE"; return 0; }
#endif
#ifdef FAKE_DEVICE
/* One sm_90 device whose module loads all fail (CUDA_ERROR_NO_BINARY_FOR_GPU). */
static int fake_ctx;
static void* current;
CUresult cuDeviceGet(int* d, int ordinal) { *d = ordinal; return ordinal == 0 ? 0 : 101; }
CUresult cuDeviceGetAttribute(int* v, int attr, int dev) {
    (void)dev;
    switch (attr) {
        case 75: *v = 9; break;   /* compute capability major */
        case 76: *v = 0; break;   /* minor */
        case 16: *v = 132; break; /* multiprocessors */
        default: *v = 0;
    }
    return 0;
}
CUresult cuDevicePrimaryCtxRetain(void** ctx, int dev) { (void)dev; *ctx = &fake_ctx; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; return 0; }
CUresult cuCtxGetCurrent(void** ctx) { *ctx = current; return 0; }
CUresult cuCtxSetCurrent(void* ctx) { current = ctx; return 0; }
CUresult cuDeviceGetName(char* name, int len, int dev) {
    const char* n = "FAKE GPU";
    int i = 0;
    (void)dev;
    for (; n[i] && i + 1 < len; i++) name[i] = n[i];
    name[i] = 0;
    return 0;
}
CUresult cuDeviceTotalMem_v2(unsigned long long* bytes, int dev) { (void)dev; *bytes = 1ull << 34; return 0; }
CUresult cuModuleLoadData(void** module, const void* image) { (void)module; (void)image; return 209; }
#endif
"#;

const FAKE_CASE_VAR: &str = "BASTION_FAKE_LIBCUDA_CASE";

/// Runs in a child process with the fake driver first on `LD_LIBRARY_PATH` (the loader reads it
/// at start-up only); a no-op in an ordinary run.
#[test]
fn fake_driver_child() {
    let Ok(case) = std::env::var(FAKE_CASE_VAR) else { return };
    let expect = match case.as_str() {
        "empty" => "panicked",
        "no_device" => "CUDA_ERROR_NO_DEVICE",
        "zero" => "sees no GPU",
        "device" => return fake_device_child(),
        other => panic!("unknown fake driver case {other}"),
    };
    let check = |what: &str, e: &AccelError| {
        assert_clear_unavailable(what, e);
        assert!(e.to_string().contains(expect), "{case}: {what}: expected {expect:?} in: {e}");
        eprintln!("{case}: {what}: {e}");
    };
    check("gpu_probe", &gpu_probe(0).expect_err("the fake driver has no GPU"));
    check("gpu_probe again", &gpu_probe(0).expect_err("the fake driver has no GPU"));
    check("verifier(gpu)", &verifier(Backend::Gpu).err().expect("the fake driver has no GPU"));
    check("GpuRisk::open", &GpuRisk::open(0).expect_err("the fake driver has no GPU"));
    let c = calibrate(Duration::from_millis(10));
    assert_eq!(c.gpu_from, usize::MAX);
    assert!(c.gpu_unavailable.as_deref().is_some_and(|w| w.contains(expect)), "{:?}", c.gpu_unavailable);
    let owned = [OwnedSigItem { public_key: [1; 32], signature: [2; 64], message: vec![] }];
    assert_eq!(Auto::new(&c).verify(&as_items(&owned)), vec![false]);
}

#[test]
fn a_driver_that_loads_but_fails_is_a_clear_error() {
    if std::env::var_os(FAKE_CASE_VAR).is_some() {
        return;
    }
    let base = std::env::temp_dir().join(format!("bastion-fake-libcuda-{}", std::process::id()));
    let source = base.join("fake_libcuda.c");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(&source, FAKE_LIBCUDA).unwrap();
    for (case, defines) in [
        ("empty", &[][..]),
        ("no_device", &["-DFAKE_INIT=100", "-DFAKE_COUNT=0"][..]),
        ("zero", &["-DFAKE_INIT=0", "-DFAKE_COUNT=0"][..]),
        ("device", &["-DFAKE_INIT=0", "-DFAKE_COUNT=1", "-DFAKE_DEVICE"][..]),
    ] {
        let dir = base.join(case);
        std::fs::create_dir_all(&dir).unwrap();
        let built = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(dir.join("libcuda.so.1"))
            .args(defines)
            .arg(&source)
            .status();
        match built {
            Ok(s) if s.success() => {}
            other => {
                eprintln!(
                    "skipping the fake driver tests: cannot build a shared library with cc ({other:?})"
                );
                return;
            }
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["fake_driver_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("LD_LIBRARY_PATH", &dir)
            .env(FAKE_CASE_VAR, case)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "fake driver case {case} failed:\n{stdout}\n{stderr}"
        );
        let said: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&format!("{case}: "))).collect();
        eprintln!("fake driver case {case}: ok\n  {}", said.join("\n  "));
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// The `device` case: the probe reads the fake GPU's properties through cudarc, and a missing
/// ordinal is a clear error. (Opening the verifier is not tried here: NVRTC itself loads libcuda,
/// and the installed NVRTC crashes inside `nvrtcCompileProgram` when it finds this stand-in.)
fn fake_device_child() {
    let info = gpu_probe(0).expect("the fake device opens");
    assert_eq!((info.name.as_str(), info.compute_capability, info.sm_count), ("FAKE GPU", (9, 0), 132));
    assert_eq!((info.arch(), info.total_memory, info.driver_cuda), (90, 1 << 34, (12, 9)));
    eprintln!("device: gpu_probe: {info}");
    let e = gpu_probe(1).expect_err("one device only");
    assert_clear_unavailable("gpu_probe(1)", &e);
    assert!(e.to_string().contains("GPU 1 does not exist"), "{e}");
    eprintln!("device: gpu_probe(1): {e}");
}
