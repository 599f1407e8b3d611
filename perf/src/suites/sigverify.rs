//! Suite `sigverify`: ed25519 signatures/s of each CPU backend of `bastion-accel` (scalar,
//! batch, parallel; every one ZIP-215) at batch sizes 1 to 1024, against `ed25519-dalek`'s
//! single `verify` measured in the same run. Goals (issue 3, on a 2-core box): `batch` at least
//! 2x the single-verify baseline per core at batch >= 64, and `parallel` at least 1.8x `batch`.
//! The start-up calibration's crossovers and the curve arithmetic backend that ran are recorded
//! in the notes and in every measurement's params.

use crate::harness::{self, Ctx, Report};
use bastion_accel::{Backend, HashOn, OwnedSigItem, SigItem, Verifier as _};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

const SIZES: [usize; 6] = [1, 16, 64, 128, 256, 1024];
/// Length of each signed message (a small client transaction).
const MESSAGE_LEN: usize = 128;
const BASELINE: &str = "dalek-single";

/// `n` valid signatures, each by its own key, on distinct random messages of `message_len`
/// bytes (also the e2e suite's ceiling).
pub(crate) fn generate(n: usize, message_len: usize, seed: u64) -> Vec<OwnedSigItem> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut secret = [0u8; 32];
            rng.fill(&mut secret);
            let mut message = vec![0u8; message_len];
            rng.fill(&mut message[..]);
            let sk = SigningKey::from_bytes(&secret);
            let signature = sk.sign(&message).to_bytes();
            OwnedSigItem { public_key: sk.verifying_key().to_bytes(), signature, message }
        })
        .collect()
}

/// The baseline: dalek's single verify from bytes (the key is decompressed in each call, as the
/// backends do), true when valid.
fn dalek_verify(item: &SigItem<'_>) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(item.public_key) else { return false };
    vk.verify(item.message, &Signature::from_bytes(item.signature)).is_ok()
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    if ctx.backend("cpu", &["cpu", "gpu"])? == "gpu" {
        return run_gpu(ctx, report);
    }
    let sizes: Vec<usize> = SIZES.iter().copied().filter(|&n| !ctx.quick || n <= 256).collect();
    let max = sizes.iter().copied().max().unwrap_or(1);
    // Signatures timed per measurement (at least `min_rounds` rounds each).
    let target = ctx.size(24_576, 512) as usize;
    let min_rounds = ctx.size(8, 2);
    let warmup = ctx.size(2, 1);

    let owned = generate(max, MESSAGE_LEN, ctx.seed);
    let items: Vec<SigItem<'_>> = owned.iter().map(OwnedSigItem::as_item).collect();

    // Calibration first, as the validator does at start-up.
    let calibration = bastion_accel::calibrate(Duration::from_millis(ctx.size(1_000, 150)));
    let curve = bastion_accel::curve_backend();
    let samples: Vec<serde_json::Value> = calibration
        .samples
        .iter()
        .map(|(b, n, r)| serde_json::json!({ "backend": b.name(), "batch": n, "sigs_per_s": r }))
        .collect();
    let calib_json = serde_json::json!({
        "batch_from": calibration.batch_from,
        "parallel_from": calibration.parallel_from,
        "samples": samples,
    });
    let threads = cores();

    // Every backend, and the baseline, must call every generated signature valid; a mixed batch
    // must be judged item by item.
    let mut verifiers = Vec::new();
    for b in Backend::CPU {
        let v = bastion_accel::verifier(b).map_err(|e| format!("{}: {e}", b.name()))?;
        let verdicts = v.verify(&items);
        if let Some(i) = verdicts.iter().position(|ok| !ok) {
            return Err(format!("backend {} rejects generated signature {i}", b.name()));
        }
        verifiers.push((b, v));
    }
    if let Some(i) = items.iter().position(|it| !dalek_verify(it)) {
        return Err(format!("ed25519-dalek rejects generated signature {i}"));
    }
    let mut mixed = owned[..sizes.iter().copied().filter(|&n| n <= 64).max().unwrap_or(1)].to_vec();
    let bad = mixed.len() / 2;
    mixed[bad].signature[40] ^= 1;
    let mixed_items: Vec<SigItem<'_>> = mixed.iter().map(OwnedSigItem::as_item).collect();
    for (b, v) in &verifiers {
        let verdicts = v.verify(&mixed_items);
        let expect: Vec<bool> = (0..mixed.len()).map(|i| i != bad).collect();
        if verdicts != expect {
            return Err(format!("backend {} misjudges a mixed batch with item {bad} invalid", b.name()));
        }
    }

    let params = |backend: &str, n: usize, rounds: u64| {
        serde_json::json!({
            "backend": backend,
            "batch": n,
            "rounds": rounds,
            "message_len": MESSAGE_LEN,
            "distinct_keys": true,
            "cores": threads,
            "curve_backend": curve,
            "calibration": calib_json,
        })
    };
    let rounds_for = |n: usize| ((target / n) as u64).max(min_rounds);

    // Baseline: dalek single verify, one signature per call, over the largest batch.
    let base_rounds = rounds_for(max);
    report.push(harness::rounds(
        BASELINE,
        "batch",
        warmup,
        base_rounds,
        max as u64,
        params("ed25519-dalek 3 VerifyingKey::from_bytes + verify", max, base_rounds),
        |_| {
            let mut ok = 0u32;
            for it in &items {
                ok += u32::from(dalek_verify(black_box(it)));
            }
            black_box(ok);
        },
    ));

    let mut out: Vec<bool> = Vec::with_capacity(max);
    for (b, v) in &verifiers {
        for &n in &sizes {
            let rounds = rounds_for(n);
            let batch = &items[..n];
            report.push(harness::rounds(
                &format!("{}@{n}", b.name()),
                "batch",
                warmup,
                rounds,
                n as u64,
                params(b.name(), n, rounds),
                |_| {
                    v.verify_into(black_box(batch), &mut out);
                    black_box(&out);
                },
            ));
        }
    }

    // Ratios and goals at batch >= 64.
    let big: Vec<usize> = sizes.iter().copied().filter(|&n| n >= 64).collect();
    let mut all_batch: Vec<String> = Vec::new();
    let mut all_parallel: Vec<String> = Vec::new();
    let mut best_batch: Option<(usize, f64)> = None;
    let mut best_parallel: Option<(usize, f64)> = None;
    for &n in &big {
        if let Some(r) =
            report.ratio_throughput(&format!("batch_vs_dalek_single@{n}"), &format!("batch@{n}"), BASELINE)
        {
            all_batch.push(format!("{n}: {r:.2}"));
            if best_batch.is_none_or(|(_, b)| r > b) {
                best_batch = Some((n, r));
            }
        }
        if let Some(r) = report.ratio_throughput(
            &format!("parallel_vs_batch@{n}"),
            &format!("parallel@{n}"),
            &format!("batch@{n}"),
        ) {
            all_parallel.push(format!("{n}: {r:.2}"));
            if best_parallel.is_none_or(|(_, b)| r > b) {
                best_parallel = Some((n, r));
            }
        }
    }
    match best_batch {
        Some((n, r)) => report.goal(
            "batch >= 2x single-verify baseline per core at batch >= 64",
            "batch@N ops/s >= 2 x dalek-single ops/s (both on one core), best N >= 64",
            format!("{r:.2}x at N = {n} (every N >= 64: {})", all_batch.join(", ")),
            r >= 2.0,
        ),
        None => report.goal(
            "batch >= 2x single-verify baseline per core at batch >= 64",
            "batch@N ops/s >= 2 x dalek-single ops/s, best N >= 64",
            "not measured".into(),
            false,
        ),
    }
    match best_parallel {
        Some((n, r)) => report.goal(
            "parallel >= 1.8x batch",
            "parallel@N ops/s >= 1.8 x batch@N ops/s, best N >= 64",
            format!("{r:.2}x at N = {n} on {threads} cores (every N >= 64: {})", all_parallel.join(", ")),
            r >= 1.8,
        ),
        None => report.goal(
            "parallel >= 1.8x batch",
            "parallel@N ops/s >= 1.8 x batch@N ops/s, best N >= 64",
            "not measured".into(),
            false,
        ),
    }

    report.note(format!(
        "calibration crossovers (auto-selection): batch from {} items, parallel from {} items",
        calibration.batch_from, calibration.parallel_from
    ));
    let rates: Vec<String> =
        calibration.samples.iter().map(|(b, n, r)| format!("{}@{n} {r:.0}/s", b.name())).collect();
    report.note(format!("calibration samples: {}", rates.join(", ")));
    report.note(format!("curve arithmetic backend that ran: {curve}"));
    report.note(format!(
        "one op = one signature (ZIP-215 for bastion-accel, dalek's default verify for the baseline); \
         {MESSAGE_LEN}-byte messages, a distinct key per item; batch and parallel include point \
         decompression, as does the baseline (VerifyingKey::from_bytes in each call)"
    ));
    Ok(())
}

/// Batch sizes of `--backend gpu`.
const GPU_SIZES: [usize; 7] = [1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304];

/// `sigverify --backend gpu`: the GPU backend against all CPU cores (`parallel`) at the same
/// batch sizes, 1K to 4M signatures, in the same run. Distinct signatures (64Ki, or 4Ki quick)
/// are repeated to each size; a mixed batch checks the GPU's verdicts item by item first. The
/// GPU runs in both of its hashing modes: the challenge hashed by the kernel (`gpu@N`) and on
/// the host's cores while packing (`gpu-hash-host@N`); the better one counts for the goals.
/// Goals (issue 7, on an H100): at least 5M verifies/s at large batches and at least 10x the
/// machine's CPU cores.
fn run_gpu(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    let gpu = bastion_accel::GpuVerifier::open(0).map_err(|e| e.to_string())?;
    let parallel = bastion_accel::verifier(Backend::Parallel).map_err(|e| e.to_string())?;
    let info = bastion_accel::gpu_probe(0).map(|i| i.to_string()).unwrap_or_else(|e| e.to_string());
    report.note(format!("GPU: {info}; kernel compiled to {}", gpu.target()));
    let distinct = ctx.size(65_536, 4_096) as usize;
    let sizes: Vec<usize> = GPU_SIZES.iter().copied().filter(|&n| !ctx.quick || n <= 16_384).collect();
    let t = std::time::Instant::now();
    let owned = generate(distinct, MESSAGE_LEN, ctx.seed);
    report.note(format!("generated {distinct} distinct signatures in {:.1} s", t.elapsed().as_secs_f64()));
    let base: Vec<SigItem<'_>> = owned.iter().map(OwnedSigItem::as_item).collect();

    // Verdicts first: a mixed batch (every 7th item broken in one of three ways) must be judged
    // exactly as the reference rule judges it.
    let mut mixed = owned[..distinct.min(20_000)].to_vec();
    for (i, it) in mixed.iter_mut().enumerate().filter(|(i, _)| i % 7 == 3) {
        match i % 3 {
            0 => it.signature[40] ^= 1,
            1 => it.message.push(0),
            _ => it.public_key[5] ^= 0x10,
        }
    }
    let mixed_items: Vec<SigItem<'_>> = mixed.iter().map(OwnedSigItem::as_item).collect();
    let expect: Vec<bool> = mixed_items.iter().map(bastion_accel::verify_one).collect();
    for mode in [HashOn::Device, HashOn::Host] {
        gpu.set_hash_on(mode);
        if gpu.verify(&mixed_items) != expect {
            return Err(format!(
                "the GPU backend, hashing on the {mode}, misjudges a mixed batch (differs from the reference rule)"
            ));
        }
    }
    report.note(format!(
        "GPU verdicts equal the reference rule on a mixed batch of {} ({} invalid)",
        expect.len(),
        expect.iter().filter(|v| !**v).count()
    ));

    let threads = cores();
    let mut out: Vec<bool> = Vec::new();
    for &n in &sizes {
        let batch: Vec<SigItem<'_>> = base.iter().cycle().take(n).copied().collect();
        let rounds = ctx.size(((8 * 1_048_576 / n) as u64).clamp(3, 64), 2);
        for (name, mode) in
            [("gpu", Some(HashOn::Device)), ("gpu-hash-host", Some(HashOn::Host)), ("parallel", None)]
        {
            if let Some(m) = mode {
                gpu.set_hash_on(m);
            }
            let v: &dyn bastion_accel::Verifier = if mode.is_some() { &gpu } else { parallel.as_ref() };
            // The CPU at the largest sizes takes seconds per round: fewer rounds there.
            let r = if name == "parallel" { rounds.min(ctx.size(4, 2)) } else { rounds };
            report.push(harness::rounds(
                &format!("{name}@{n}"),
                "batch",
                1,
                r,
                n as u64,
                serde_json::json!({"backend": name, "hash_on": mode.map(HashOn::name), "batch": n, "distinct": distinct, "cores": threads, "message_len": MESSAGE_LEN}),
                |_| {
                    v.verify_into(black_box(&batch), &mut out);
                    black_box(&out);
                },
            ));
            if out.iter().any(|ok| !ok) {
                return Err(format!("{name} rejected a valid signature at batch {n}"));
            }
        }
        report.ratio_throughput(
            &format!("gpu_vs_parallel@{n}"),
            &format!("gpu@{n}"),
            &format!("parallel@{n}"),
        );
        report.ratio_throughput(
            &format!("gpu-hash-host_vs_gpu@{n}"),
            &format!("gpu-hash-host@{n}"),
            &format!("gpu@{n}"),
        );
    }
    if gpu.fallbacks() > 0 {
        return Err(format!("the GPU fell back to the CPU {} times during the run", gpu.fallbacks()));
    }
    // The better hashing mode at each size counts for the goals.
    let best_at = |report: &Report, n: usize| -> Option<f64> {
        ["gpu", "gpu-hash-host"]
            .iter()
            .filter_map(|b| report.get(&format!("{b}@{n}")).map(|m| m.ops_per_s))
            .reduce(f64::max)
    };
    let best = sizes
        .iter()
        .filter_map(|n| best_at(report, *n).map(|r| (*n, r)))
        .fold(None, |acc: Option<(usize, f64)>, x| if acc.is_none_or(|a| x.1 > a.1) { Some(x) } else { acc });
    if let Some((n, rate)) = best {
        report.goal(
            "GPU >= 5M verifies/s at large batches (H100)",
            "gpu@N ops/s >= 5,000,000, best N",
            format!("{rate:.0}/s at N = {n}"),
            rate >= 5e6,
        );
        let vs = report.get(&format!("parallel@{n}")).map_or(0.0, |p| rate / p.ops_per_s.max(1e-9));
        report.goal(
            "GPU >= 10x all CPU cores",
            "gpu@N ops/s >= 10 x parallel@N ops/s on every core of the same machine",
            format!("{vs:.2}x at N = {n} against {threads} cores"),
            vs >= 10.0,
        );
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
