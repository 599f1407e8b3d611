//! The verification backends, start-up calibration and automatic selection.

use crate::gpu::{GpuInfo, GpuVerifier, HashOn};
use crate::{AccelError, SigItem};
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes, batch};
use rayon::prelude::*;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
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
    /// The GPU: the CUDA ed25519 kernel of `bastion-kernels`, compiled with NVRTC for the device
    /// and run over two streams (see [`GpuVerifier`]). Needs the NVIDIA driver and NVRTC at run
    /// time; without them asking for it is a clear [`AccelError::Unavailable`].
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

pub(crate) struct Parallel;

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

/// A verifier for one backend. `Gpu` opens GPU 0 and compiles (or takes from the kernel cache)
/// its kernel; without an NVIDIA driver, a GPU or NVRTC it is a clear
/// [`AccelError::Unavailable`] saying which is missing.
pub fn verifier(backend: Backend) -> Result<Box<dyn Verifier>, AccelError> {
    match backend {
        Backend::Scalar => Ok(Box::new(Scalar)),
        Backend::Batch => Ok(Box::new(Batch)),
        Backend::Parallel => Ok(Box::new(Parallel)),
        Backend::Gpu => Ok(Box::new(GpuVerifier::open(0)?)),
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
#[derive(Clone, Debug)]
pub struct Calibration {
    /// From this batch size on, `batch` beats `scalar`.
    pub batch_from: usize,
    /// From this batch size on, `parallel` beats `batch`.
    pub parallel_from: usize,
    /// `(backend, batch size, signatures per second)` as measured for the CPU backends.
    pub samples: Vec<(Backend, usize, f64)>,
    /// From this batch size on, the GPU beats `parallel`; `usize::MAX` without a GPU (or when it
    /// never wins).
    pub gpu_from: usize,
    /// The GPU verifier calibration opened (shared with [`Auto`]), or `None`.
    pub gpu: Option<Arc<GpuVerifier>>,
    /// Why there is no GPU, when `gpu` is `None` after [`calibrate`].
    pub gpu_unavailable: Option<String>,
    /// `(backend, batch size, signatures per second)` of the GPU and of `parallel` at the GPU's
    /// calibration sizes ([`GPU_CALIBRATION_SIZES`]); empty without a GPU.
    pub gpu_samples: Vec<(Backend, usize, f64)>,
    /// The GPU's signatures per second at the largest calibration size with the challenge hashed
    /// on the device and on the host; the faster mode is the one the GPU verifier keeps.
    pub gpu_hash_rates: Vec<(HashOn, f64)>,
}

impl Calibration {
    /// The GPU calibration found, if any.
    pub fn gpu_info(&self) -> Option<&GpuInfo> {
        self.gpu.as_deref().map(GpuVerifier::info)
    }
}

impl PartialEq for Calibration {
    /// Field by field; GPUs compare by what they are ([`GpuInfo`]).
    fn eq(&self, other: &Self) -> bool {
        self.batch_from == other.batch_from
            && self.parallel_from == other.parallel_from
            && self.samples == other.samples
            && self.gpu_from == other.gpu_from
            && self.gpu_info() == other.gpu_info()
            && self.gpu_unavailable == other.gpu_unavailable
            && self.gpu_samples == other.gpu_samples
            && self.gpu_hash_rates == other.gpu_hash_rates
    }
}

impl Default for Calibration {
    /// The crossovers measured on the 2-core development VM, for when there is no time to
    /// calibrate; no GPU.
    fn default() -> Self {
        Calibration {
            batch_from: 4,
            parallel_from: 128,
            samples: Vec::new(),
            gpu_from: usize::MAX,
            gpu: None,
            gpu_unavailable: None,
            gpu_samples: Vec::new(),
            gpu_hash_rates: Vec::new(),
        }
    }
}

/// The batch sizes at which calibration measures the GPU against `parallel`.
pub const GPU_CALIBRATION_SIZES: [usize; 5] = [256, 1024, 4096, 16384, 65536];

/// Rounds each GPU calibration point runs at least (the first includes one-time costs such as
/// buffer allocation).
const GPU_CALIBRATION_ROUNDS: u32 = 3;

/// Deterministic valid signatures for calibration (keys from a counter; nothing secret).
fn calibration_items(n: usize) -> Vec<crate::OwnedSigItem> {
    calibration_items_range(0..n)
}

/// Calibration items `range` (item i is the same whatever the range).
fn calibration_items_range(range: std::ops::Range<usize>) -> Vec<crate::OwnedSigItem> {
    range
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

/// Signatures per second of `v` on `items`: at least `min_rounds` rounds, then as many as fit
/// `time`.
fn measure(
    v: &dyn Verifier,
    items: &[SigItem<'_>],
    min_rounds: u32,
    time: Duration,
    out: &mut Vec<bool>,
) -> f64 {
    let start = Instant::now();
    let mut sigs = 0usize;
    let mut rounds = 0u32;
    loop {
        v.verify_into(items, out);
        sigs = sigs.saturating_add(items.len());
        rounds = rounds.saturating_add(1);
        if rounds >= min_rounds && start.elapsed() >= time {
            break;
        }
    }
    sigs as f64 / start.elapsed().as_secs_f64().max(1e-9)
}

/// The smallest of `sizes` from which `winner` is ahead of `loser` by 5% at every larger size
/// measured in `samples`; `usize::MAX` if there is none. A single noisy crossing must not switch
/// backends.
fn sustained_win(
    samples: &[(Backend, usize, f64)],
    sizes: &[usize],
    winner: Backend,
    loser: Backend,
) -> usize {
    let rate = |b: Backend, n: usize| samples.iter().find(|(sb, sn, _)| *sb == b && *sn == n).map(|s| s.2);
    let ahead = |n: usize| rate(winner, n).zip(rate(loser, n)).is_some_and(|(w, l)| w > l * 1.05);
    sizes
        .iter()
        .enumerate()
        .find(|(i, _)| sizes.get(*i..).unwrap_or(&[]).iter().all(|&n| ahead(n)))
        .map_or(usize::MAX, |(_, &n)| n)
}

/// Measures the CPU backends on valid signatures at a few batch sizes within about `budget`
/// and finds the crossovers: a backend's threshold is the smallest size from which it beats the
/// backend below it by at least 5% at every larger size measured (never, if it does not).
///
/// Then, when GPU 0 opens (driver, device and NVRTC present; the kernel is compiled on first use
/// and cached on disk), it measures the GPU against `parallel` at [`GPU_CALIBRATION_SIZES`]
/// (valid signatures, at least three rounds per point, about `budget` more in all) and sets
/// `gpu_from` by the same rule. A GPU that fell back to the CPU during calibration is not used.
/// Without a GPU `gpu_from` is `usize::MAX` and `gpu_unavailable` says why.
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
            // At least one round, then as many as fit the time allowed for this point.
            samples.push((backend, size, measure(v.as_ref(), slice, 1, per_point, &mut out)));
        }
    }
    let mut c = Calibration {
        batch_from: sustained_win(&samples, &SIZES, Backend::Batch, Backend::Scalar),
        parallel_from: sustained_win(&samples, &SIZES, Backend::Parallel, Backend::Batch),
        samples,
        ..Calibration::default()
    };
    match GpuVerifier::open(0) {
        Ok(gpu) => calibrate_gpu(&mut c, Arc::new(gpu), budget),
        Err(e) => c.gpu_unavailable = Some(e.to_string()),
    }
    c
}

/// The GPU half of [`calibrate`].
fn calibrate_gpu(c: &mut Calibration, gpu: Arc<GpuVerifier>, budget: Duration) {
    let largest = GPU_CALIBRATION_SIZES.iter().copied().max().unwrap_or(0);
    let owned = calibration_items_parallel(largest);
    let items: Vec<SigItem<'_>> = owned.iter().map(|o| o.as_item()).collect();
    let per_point = budget / u32::try_from(GPU_CALIBRATION_SIZES.len() * 2).unwrap_or(u32::MAX);
    let fallbacks_before = gpu.fallbacks();
    let mut out = Vec::new();
    // Where to compute the challenges: both modes at the largest size, the faster one kept for
    // the crossover measurements and for the verifier's life.
    for mode in [HashOn::Device, HashOn::Host] {
        gpu.set_hash_on(mode);
        let r = measure(gpu.as_ref(), &items, GPU_CALIBRATION_ROUNDS, per_point, &mut out);
        if out.iter().any(|v| !v) {
            c.gpu_unavailable =
                Some(format!("{}: rejected a valid calibration signature hashing on the {mode}", gpu.info()));
            return;
        }
        c.gpu_hash_rates.push((mode, r));
    }
    let faster = c.gpu_hash_rates.iter().max_by(|a, b| a.1.total_cmp(&b.1)).map_or(HashOn::Device, |r| r.0);
    gpu.set_hash_on(faster);
    for &size in &GPU_CALIBRATION_SIZES {
        let slice = items.get(..size).unwrap_or(&items);
        let g = measure(gpu.as_ref(), slice, GPU_CALIBRATION_ROUNDS, per_point, &mut out);
        if out.iter().any(|v| !v) {
            c.gpu_unavailable = Some(format!("{}: rejected a valid calibration signature", gpu.info()));
            return;
        }
        c.gpu_samples.push((Backend::Gpu, size, g));
        let p = measure(&Parallel, slice, GPU_CALIBRATION_ROUNDS, per_point, &mut out);
        c.gpu_samples.push((Backend::Parallel, size, p));
    }
    if gpu.fallbacks() != fallbacks_before {
        c.gpu_unavailable = Some(format!("{}: fell back to the CPU during calibration", gpu.info()));
        return;
    }
    c.gpu_from = sustained_win(&c.gpu_samples, &GPU_CALIBRATION_SIZES, Backend::Gpu, Backend::Parallel);
    c.gpu = Some(gpu);
}

/// [`calibration_items`], signed on all cores (GPU calibration needs tens of thousands).
fn calibration_items_parallel(n: usize) -> Vec<crate::OwnedSigItem> {
    let chunk = 1024;
    (0..n.div_ceil(chunk))
        .into_par_iter()
        .flat_map_iter(|c| {
            let start = c * chunk;
            calibration_items_range(start..(start + chunk).min(n))
        })
        .collect()
}

/// Chooses the backend per call by its size, using a [`Calibration`].
pub struct Auto {
    batch_from: usize,
    parallel_from: usize,
    gpu_from: usize,
    gpu: Option<Arc<GpuVerifier>>,
}

impl Auto {
    /// Dispatch by the calibration's crossovers; the GPU (when calibration opened one and it
    /// wins somewhere) takes every call of at least `gpu_from` items.
    pub fn new(c: &Calibration) -> Auto {
        let gpu = c.gpu.clone().filter(|_| c.gpu_from != usize::MAX);
        Auto {
            batch_from: c.batch_from,
            parallel_from: c.parallel_from,
            gpu_from: if gpu.is_some() { c.gpu_from } else { usize::MAX },
            gpu,
        }
    }

    fn pick(&self, n: usize) -> &dyn Verifier {
        if let Some(gpu) = self.gpu.as_deref()
            && n >= self.gpu_from
        {
            gpu
        } else if n >= self.parallel_from {
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
        write!(
            f,
            "Auto {{ batch_from: {}, parallel_from: {}, gpu_from: {} }}",
            self.batch_from, self.parallel_from, self.gpu_from
        )
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
        // The GPU verifier where there is one, a clear error elsewhere.
        match (verifier(Backend::Gpu), crate::gpu_probe(0)) {
            (Ok(v), Ok(_)) => assert_eq!(v.backend(), Backend::Gpu),
            (Err(AccelError::Unavailable { backend: Backend::Gpu, .. }), _) => {}
            (other, probe) => panic!("verifier(gpu): {:?} with probe {probe:?}", other.map(|v| v.backend())),
        }
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
        if crate::gpu_probe(0).is_err() {
            assert!(Selection::Fixed(Backend::Gpu).build(Duration::ZERO).is_err());
        }
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
