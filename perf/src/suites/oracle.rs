//! Suite `oracle`: what validators' signed observations cost (issue 16).
//!
//! - `check-observations@N`: `State::check_observations` on a block carrying one observation
//!   from each of N validators (4, 7, 100), each with every devnet underlying's price and a
//!   volatility quote per option expiry: what every verifier (and every replay) pays per
//!   block. `scalar-verify` is one ed25519 verification on the same machine, so the overhead
//!   beyond the signatures shows. The bytes the observations add to a block are in `params`.
//! - `devnet-observing` / `devnet-fixed-feed` (full runs only; skipped with `--quick`):
//!   `bastion devnet --scenario calm` with the default oracle (every validator signs and
//!   gossips an observation every 200 ms, leaders include them, every block aggregates them)
//!   against the same run with observations every 5 s (the index nearly fixed, almost no
//!   observation bytes or signatures in blocks), alternated A B A B so the machine's noise
//!   falls on both; finality p50/p99 from each run's summary, the medians compared.
//!
//! Goals: observations add at most 10% to finality p50 (the goal), and checking an
//! observation costs at most 1.5x one ed25519 verification.

use crate::harness::{self, Ctx, Report};
use bastion_accel::{Backend, SigItem};
use bastion_exchange::{Genesis, State, sign_observation};
use bastion_types::{Block, Observation, SignedObservation, UnderlyingId, ValidatorIndex, VolQuote};
use serde_json::json;
use std::path::Path;

/// The devnet start prices of BTC and ETH.
const PRICES: [i64; 2] = [100_000_000_000, 4_000_000_000];

/// A state with `n` validators (equal stake, keys from seeds) and one signed observation from
/// each, made at the block's time.
fn observed_block(n: usize) -> Result<(State, Block, Vec<[u8; 32]>), String> {
    let seeds: Vec<[u8; 32]> = (0..n).map(|i| *blake3::hash(&(i as u64).to_le_bytes()).as_bytes()).collect();
    let mut genesis = Genesis::devnet().with_validator_seeds(&seeds);
    genesis.validator_stakes = vec![1; n];
    let state = State::from_genesis(&genesis).map_err(|e| e.to_string())?;
    let expiries = genesis.option_expiries();
    let t = genesis.timestamp_ms + 1_000;
    let oracle: Vec<SignedObservation> = seeds
        .iter()
        .enumerate()
        .map(|(i, seed)| {
            let o = Observation {
                validator: ValidatorIndex(i as u16),
                height: 1,
                timestamp_ms: t - 50,
                prices: PRICES
                    .iter()
                    .enumerate()
                    .map(|(u, p)| (UnderlyingId(u as u16), p + i as i64))
                    .collect(),
                vols: expiries
                    .iter()
                    .map(|(u, e)| VolQuote {
                        underlying: *u,
                        expiry_ms: *e,
                        atm_ppm: 600_000,
                        skew_ppm: -200_000,
                    })
                    .collect(),
            };
            sign_observation(*seed, &genesis.chain_id, o)
        })
        .collect();
    let block = Block { height: 1, timestamp_ms: t, oracle, ..Block::default() };
    state.check_observations(&block).map_err(|e| format!("the observed block was refused: {e}"))?;
    Ok((state, block, seeds))
}

/// Median of a few values (NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One `bastion devnet --scenario calm` run with observations every `every_ms`; its JSON summary.
fn devnet(bin: &Path, dir: &Path, name: &str, every_ms: u64, secs: u64) -> Result<serde_json::Value, String> {
    crate::suites::run_devnet(
        bin,
        dir,
        name,
        &["--scenario", "calm", "--observe-every-ms", &every_ms.to_string()],
        secs,
    )
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<(), String> {
    // 1. Checking a block's observations.
    let mut per_observation_ns = f64::NAN;
    for n in [4usize, 7, 100] {
        let (state, block, _) = observed_block(n)?;
        let bytes = postcard::to_allocvec(&block.oracle).map_err(|e| e.to_string())?.len();
        let name = format!("check-observations@{n}");
        let params = json!({
            "validators": n,
            "observations": n,
            "prices_each": PRICES.len(),
            "vols_each": block.oracle.first().map_or(0, |o| o.observation.vols.len()),
            "block_bytes": bytes,
            "bytes_per_observation": bytes / n,
        });
        let m = harness::rounds(&name, "observation", 2, ctx.size(50, 5), n as u64, params, |_| {
            std::hint::black_box(state.check_observations(std::hint::black_box(&block)).is_ok());
        });
        if n == 4 {
            per_observation_ns = 1e9 / m.ops_per_s.max(1e-9);
        }
        report.note(format!(
            "{name}: {bytes} bytes of observations in the block ({} per observation)",
            bytes / n
        ));
        report.push(m);
    }
    // One plain signature verification, for scale.
    use ed25519_dalek::Signer as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let public: [u8; 32] = key.verifying_key().to_bytes();
    let message = vec![7u8; 200];
    let signature: [u8; 64] = key.sign(&message).to_bytes();
    let item = [SigItem { public_key: &public, signature: &signature, message: &message }];
    let scalar = bastion_accel::verifier(Backend::Scalar).map_err(|e| e.to_string())?;
    report.push(harness::latency("scalar-verify", 20, ctx.size(2_000, 200), serde_json::Value::Null, |_| {
        std::hint::black_box(scalar.verify(std::hint::black_box(&item)));
    }));
    let ratio = report.ratio_throughput("observation_vs_signature", "check-observations@4", "scalar-verify");
    let cost = ratio.map_or(f64::INFINITY, |r| if r > 0.0 { 1.0 / r } else { f64::INFINITY });
    report.goal(
        "observation-check-cost",
        "checking an observation costs at most 1.5x one ed25519 verification",
        format!("{cost:.2}x ({per_observation_ns:.0} ns per observation)"),
        cost <= 1.5,
    );

    // 2. Finality with and without a live feed.
    if ctx.quick {
        report.note("quick run: the devnet comparison (about 3 minutes) is skipped");
        return Ok(());
    }
    let bin = super::bastion_bin("the oracle suite's devnet comparison")?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let secs = 20;
    let mut live = Vec::new();
    let mut fixed = Vec::new();
    for round in 0..2 {
        for (every, runs) in [(200u64, &mut live), (5_000u64, &mut fixed)] {
            let name = format!("devnet-observe-{every}ms-{round}");
            let s = devnet(&bin, tmp.path(), &name, every, secs)?;
            let p50 = s["finality_ms"]["p50"].as_f64().unwrap_or(f64::NAN);
            let p99 = s["finality_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
            report.note(format!(
                "{name}: finality p50 {p50:.1} ms p99 {p99:.1} ms; oracle {}",
                s.get("oracle").map_or("-".to_string(), |o| o.to_string())
            ));
            runs.push((p50, p99, s));
        }
    }
    let summarize = |name: &str, runs: &[(f64, f64, serde_json::Value)]| harness::Measurement {
        name: name.into(),
        ops: runs.len() as u64,
        elapsed_ns: 0,
        ops_per_s: 0.0,
        latency: None,
        unit: "devnet run (finality medians over runs)".into(),
        params: json!({
            "p50_ms": median(runs.iter().map(|r| r.0).collect()),
            "p99_ms": median(runs.iter().map(|r| r.1).collect()),
            "runs": runs.iter().map(|r| json!({"p50_ms": r.0, "p99_ms": r.1, "oracle": r.2.get("oracle")})).collect::<Vec<_>>(),
            "duration_s": secs,
        }),
    };
    let (live_p50, fixed_p50) =
        (median(live.iter().map(|r| r.0).collect()), median(fixed.iter().map(|r| r.0).collect()));
    report.push(summarize("devnet-observing", &live));
    report.push(summarize("devnet-fixed-feed", &fixed));
    let slower = live_p50 / fixed_p50 - 1.0;
    report.goal(
        "finality-p50-with-observations",
        "finality p50 with observations every 200 ms at most 10% above the same devnet with a near-fixed feed",
        format!("{live_p50:.1} ms vs {fixed_p50:.1} ms ({:+.1}%)", slower * 100.0),
        slower <= 0.10,
    );
    Ok(())
}
