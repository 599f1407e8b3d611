//! The verification backends, start-up calibration and automatic selection.

use crate::{AccelError, SigItem};
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes, batch};
use rayon::prelude::*;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A verification backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// One signature at a time.
    Scalar,
    /// One multi-scalar batch on the calling core, bisected on failure.
    Batch,
    /// Batches across all cores (rayon).
    Parallel,
    /// The GPU (issue 7).
    Gpu,
}

impl Backend {
    /// The CPU backends, in order of increasing batch size where they win.
    pub const CPU: [Backend; 3] = [Backend::Scalar, Backend::Batch, Backend::Parallel];

    /// The backend's name in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Batch => "batch",
            Backend::Parallel => "parallel",
            Backend::Gpu => "gpu",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = AccelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(Backend::Scalar),
            "batch" => Ok(Backend::Batch),
            "parallel" => Ok(Backend::Parallel),
            "gpu" => Ok(Backend::Gpu),
            _ => Err(AccelError::UnknownBackend(s.to_string())),
        }
    }
}

/// A signature verifier. Every implementation gives the ZIP-215 verdict for every item.
pub trait Verifier: Send + Sync {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Clears `out` and pushes one verdict per item, in order (`true`: valid).
    fn verify_into(&self, items: &[SigItem<'_>], out: &mut Vec<bool>);

    /// The verdicts of `items`.
    fn verify(&self, items: &[SigItem<'_>]) -> Vec<bool> {
        let mut out = Vec::with_capacity(items.len());
        self.verify_into(items, &mut out);
        out
    }
}

/// The reference verdict: scalar ZIP-215 verification of one item.
pub fn verify_one(item: &SigItem<'_>) -> bool {
    let Ok(key) = VerificationKey::try_from(*item.public_key) else { return false };
    key.verify(&Signature::from_bytes(item.signature), item.message).is_ok()
}

fn prepare(item: &SigItem<'_>) -> batch::Item {
    batch::Item::from((
        VerificationKeyBytes::from(*item.public_key),
        Signature::from_bytes(item.signature),
        item.message,
    ))
}

/// Below this many items a failing segment is checked one signature at a time: a batch's fixed
/// cost no longer pays for itself.
const BISECT_SINGLES_BELOW: usize = 8;

fn batch_ok(items: &[batch::Item]) -> bool {
    let mut v = batch::Verifier::new();
    for item in items {
        v.queue(item.clone());
    }
    v.verify(rand::rng()).is_ok()
}

fn singles(items: &[batch::Item], out: &mut [bool]) {
    for (item, slot) in items.iter().zip(out.iter_mut()) {
        *slot = item.clone().verify_single().is_ok();
    }
}

/// Verifies prepared items as one batch; a failing batch is resolved by [`resolve_failed`].
/// `out` has one slot per item.
fn verify_bisect(items: &[batch::Item], out: &mut [bool]) {
    if items.len() < BISECT_SINGLES_BELOW {
        singles(items, out);
    } else if batch_ok(items) {
        out.fill(true);
    } else {
        resolve_failed(items, out);
    }
}

/// Finds the invalid items of a segment known to fail as a batch. Each half is checked as a
/// batch: a passing half is all valid; if exactly one half fails, it is bisected further; if
/// both fail, invalid items are dense and the halves are checked one by one. A flood of bad
/// signatures therefore costs at most about three times the scalar work, never n log n.
fn resolve_failed(items: &[batch::Item], out: &mut [bool]) {
    if items.len() < BISECT_SINGLES_BELOW {
        singles(items, out);
        return;
    }
    let mid = items.len() / 2;
    let (left, right) = items.split_at(mid);
    let (out_left, out_right) = out.split_at_mut(mid);
    match (batch_ok(left), batch_ok(right)) {
        (true, false) => {
            out_left.fill(true);
            resolve_failed(right, out_right);
        }
        (false, true) => {
            out_right.fill(true);
            resolve_failed(left, out_left);
        }
        // Both failing: dense failures. Both passing (only possible through the 2^-128 chance
        // in the batch weights): decide item by item, the reference rule.
        _ => {
            singles(left, out_left);
            singles(right, out_right);
        }
    }
}

struct Scalar;

impl Verifier for Scalar {
    fn backend(&self) -> Backend {
        Backend::Scalar
    }
    fn verify_into(&self, items: &[SigItem<'_>], out: &mut Vec<bool>) {
        out.clear();
        out.extend(items.iter().map(verify_one));
    }
}

struct Batch;

impl Verifier for Batch {
    fn backend(&self) -> Backend {
        Backend::Batch
    }
    fn verify_into(&self, items: &[SigItem<'_>], out: &mut Vec<bool>) {
        out.clear();
        out.resize(items.len(), false);
        let prepared: Vec<batch::Item> = items.iter().map(prepare).collect();
        verify_bisect(&prepared, out);
    }
}

/// Smallest chunk the parallel backend hands to one core: below this the batch equation's
/// fixed cost dominates and splitting loses.
const PARALLEL_CHUNK_MIN: usize = 32;

struct Parallel;

impl Verifier for Parallel {
    fn backend(&self) -> Backend {
        Backend::Parallel
    }
    fn verify_into(&self, items: &[SigItem<'_>], out: &mut Vec<bool>) {
        out.clear();
        out.resize(items.len(), false);
        let threads = rayon::current_num_threads().max(1);
        let chunk = items.len().div_ceil(threads).max(PARALLEL_CHUNK_MIN);
        items.par_chunks(chunk).zip(out.par_chunks_mut(chunk)).for_each(|(items, out)| {
            let prepared: Vec<batch::Item> = items.iter().map(prepare).collect();
            verify_bisect(&prepared, out);
        });
    }
}

/// A verifier for one backend. The GPU backend arrives with issue 7.
pub fn verifier(backend: Backend) -> Result<Box<dyn Verifier>, AccelError> {
    match backend {
        Backend::Scalar => Ok(Box::new(Scalar)),
        Backend::Batch => Ok(Box::new(Batch)),
        Backend::Parallel => Ok(Box::new(Parallel)),
        Backend::Gpu => Err(AccelError::Unavailable {
            backend,
            reason: "the GPU backend is not built yet (issue 7); use scalar, batch, parallel or auto".into(),
        }),
    }
}

/// The curve arithmetic curve25519-dalek selects at run time on this machine.
pub fn curve_backend() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "avx512ifma (curve25519-dalek vector backend)";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2 (curve25519-dalek vector backend)";
        }
    }
    "portable (curve25519-dalek serial u64 backend)"
}

/// The backend configuration asks for: `auto` (calibrate at start-up and choose per batch by
/// size) or one named backend, the operator's override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Calibrate, then dispatch by batch size.
    Auto,
    /// Always this backend.
    Fixed(Backend),
}

impl FromStr for Selection {
    type Err = AccelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Selection::Auto);
        }
        s.parse::<Backend>().map(Selection::Fixed)
    }
}

impl Selection {
    /// The verifier this selection stands for; `Auto` calibrates within `calibration_budget`.
    pub fn build(self, calibration_budget: Duration) -> Result<Box<dyn Verifier>, AccelError> {
        match self {
            Selection::Auto => Ok(Box::new(Auto::new(&calibrate(calibration_budget)))),
            Selection::Fixed(b) => verifier(b),
        }
    }
}

/// What start-up calibration measured and decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// From this batch size on, `batch` beats `scalar`.
    pub batch_from: usize,
    /// From this batch size on, `parallel` beats `batch`.
    pub parallel_from: usize,
    /// `(backend, batch size, signatures per second)` as measured.
    pub samples: Vec<(Backend, usize, f64)>,
}

impl Default for Calibration {
    /// The crossovers measured on the 2-core development VM, for when there is no time to
    /// calibrate.
    fn default() -> Self {
        Calibration { batch_from: 4, parallel_from: 128, samples: Vec::new() }
    }
}

/// Deterministic valid signatures for calibration (keys from a counter; nothing secret).
fn calibration_items(n: usize) -> Vec<crate::OwnedSigItem> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            seed[31] = 0xCA;
            let sk = ed25519_zebra::SigningKey::from(seed);
            let message = format!("bastion calibration {i}").into_bytes();
            let signature = sk.sign(&message).to_bytes();
            let public_key: [u8; 32] = VerificationKey::from(&sk).into();
            crate::OwnedSigItem { public_key, signature, message }
        })
        .collect()
}

/// Measures the CPU backends on valid signatures at a few batch sizes within about `budget`
/// and finds the crossovers: a backend's threshold is the smallest size from which it beats the
/// backend below it by at least 5% at every larger size measured (never, if it does not).
pub fn calibrate(budget: Duration) -> Calibration {
    const SIZES: [usize; 7] = [1, 4, 16, 32, 64, 128, 256];
    let owned = calibration_items(256);
    let items: Vec<SigItem<'_>> = owned.iter().map(|o| o.as_item()).collect();
    let per_point = budget / u32::try_from(SIZES.len() * 3).unwrap_or(u32::MAX);
    let mut samples = Vec::new();
    let mut out = Vec::new();
    for &size in &SIZES {
        let slice = items.get(..size).unwrap_or(&items);
        for backend in Backend::CPU {
            let Ok(v) = verifier(backend) else { continue };
            let start = Instant::now();
            let mut sigs = 0usize;
            // At least one round, then as many as fit the time allowed for this point.
            loop {
                v.verify_into(slice, &mut out);
                sigs = sigs.saturating_add(slice.len());
                if start.elapsed() >= per_point {
                    break;
                }
            }
            let rate = sigs as f64 / start.elapsed().as_secs_f64().max(1e-9);
            samples.push((backend, size, rate));
        }
    }
    let rate = |b: Backend, n: usize| samples.iter().find(|(sb, sn, _)| *sb == b && *sn == n).map(|s| s.2);
    // The threshold is the smallest size from which the winner is ahead by a margin at every
    // larger size measured: a single noisy crossing must not switch backends.
    let sustained_win = |winner: Backend, loser: Backend| -> usize {
        let ahead = |n: usize| rate(winner, n).zip(rate(loser, n)).is_some_and(|(w, l)| w > l * 1.05);
        SIZES
            .iter()
            .enumerate()
            .find(|(i, _)| SIZES.get(*i..).unwrap_or(&[]).iter().all(|&n| ahead(n)))
            .map_or(usize::MAX, |(_, &n)| n)
    };
    Calibration {
        batch_from: sustained_win(Backend::Batch, Backend::Scalar),
        parallel_from: sustained_win(Backend::Parallel, Backend::Batch),
        samples,
    }
}

/// Chooses the backend per call by its size, using a [`Calibration`].
pub struct Auto {
    batch_from: usize,
    parallel_from: usize,
}

impl Auto {
    /// Dispatch by the calibration's crossovers.
    pub fn new(c: &Calibration) -> Auto {
        Auto { batch_from: c.batch_from, parallel_from: c.parallel_from }
    }

    fn pick(&self, n: usize) -> &'static dyn Verifier {
        if n >= self.parallel_from {
            &Parallel
        } else if n >= self.batch_from {
            &Batch
        } else {
            &Scalar
        }
    }
}

impl Verifier for Auto {
    /// The backend a large batch would use.
    fn backend(&self) -> Backend {
        self.pick(usize::MAX).backend()
    }
    fn verify_into(&self, items: &[SigItem<'_>], out: &mut Vec<bool>) {
        self.pick(items.len()).verify_into(items, out);
    }
}

impl fmt::Debug for Auto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Auto {{ batch_from: {}, parallel_from: {} }}", self.batch_from, self.parallel_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bad_signature_does_not_reject_its_neighbours() {
        let mut owned = calibration_items(40);
        owned[17].signature[40] ^= 1;
        owned[33].message.push(0);
        let items: Vec<SigItem<'_>> = owned.iter().map(|o| o.as_item()).collect();
        for b in Backend::CPU {
            let got = verifier(b).unwrap().verify(&items);
            let bad: Vec<usize> = got.iter().enumerate().filter(|(_, v)| !**v).map(|(i, _)| i).collect();
            assert_eq!(bad, vec![17, 33], "{b}");
        }
        assert!(matches!(verifier(Backend::Gpu), Err(AccelError::Unavailable { .. })));
    }

    #[test]
    fn configuration_selects_auto_or_a_named_backend() {
        assert_eq!("auto".parse::<Selection>().unwrap(), Selection::Auto);
        assert_eq!(" Batch ".parse::<Selection>().unwrap(), Selection::Fixed(Backend::Batch));
        assert!(matches!("fast".parse::<Selection>(), Err(AccelError::UnknownBackend(_))));
        assert_eq!(
            Selection::Fixed(Backend::Parallel).build(Duration::ZERO).unwrap().backend(),
            Backend::Parallel
        );
        assert!(Selection::Fixed(Backend::Gpu).build(Duration::ZERO).is_err());
        assert!(Selection::Auto.build(Duration::from_millis(30)).is_ok());
    }

    #[test]
    fn calibration_orders_the_crossovers() {
        let c = calibrate(Duration::from_millis(60));
        assert_eq!(c.samples.len(), 21);
        assert!(c.samples.iter().all(|s| s.2 > 0.0));
        let auto = Auto::new(&c);
        let owned = calibration_items(3);
        let items: Vec<SigItem<'_>> = owned.iter().map(|o| o.as_item()).collect();
        assert_eq!(auto.verify(&items), vec![true; 3]);
    }
}
