//! [`GpuVerifier`]: the ed25519 kernel driven over two CUDA streams.

use super::{KernelSpec, LoadedKernel, guarded, load_kernel, open_device, panic_text, unavailable};
use crate::backend::Parallel;
use crate::gpu::GpuInfo;
use crate::{AccelError, Backend, SigItem, Verifier};
use bastion_kernels::nvrtc::Target;
use bastion_kernels::source;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtrMut, DeviceRepr, DriverError, LaunchConfig,
    PinnedHostSlice, PushKernelArg, ValidAsZeroBits, sys,
};
use rayon::prelude::*;
use std::fmt;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most items in one chunk: a batch is split into chunks of at most this many items, processed
/// alternately on two streams so that one chunk's copy-in overlaps the previous one's kernel.
pub const CHUNK_ITEMS: usize = 1 << 16;

/// Most message bytes in one chunk (a chunk of a single larger message is allowed).
pub const CHUNK_MESSAGE_BYTES: usize = 32 << 20;

/// Threads per block of the ed25519 kernel: its `__launch_bounds__(128, 4)` (see
/// `kernels/cuda/ed25519_verify.cu`).
pub const THREADS_PER_BLOCK: u32 = 128;

/// Smallest buffer capacities allocated (items, message bytes): growth starts here.
const MIN_ITEMS: usize = 1024;
const MIN_MESSAGE_BYTES: usize = 64 << 10;

/// The verdict byte the device output is set to before each launch: the kernel writes 0 or 1,
/// so a byte still at this value after the copy-out means the kernel did not run.
const NOT_WRITTEN: u8 = 0xA5;

/// Where each item's challenge `k = SHA-512(R || A || M) mod L` is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashOn {
    /// On the GPU, in the verification kernel (`bk_ed25519_verify_batch`): messages cross the
    /// bus.
    Device,
    /// On the host's cores while packing (`bk_ed25519_verify_prehashed_batch`): 32 bytes of `k`
    /// cross the bus instead of the message, and the GPU skips SHA-512.
    Host,
}

impl HashOn {
    /// The mode's name.
    pub fn name(self) -> &'static str {
        match self {
            HashOn::Device => "device",
            HashOn::Host => "host",
        }
    }
}

impl fmt::Display for HashOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The challenge `k = SHA-512(R || A || M) mod L` of an item, 32 bytes little-endian: what the
/// kernel computes on the device, computed on the host (the [`HashOn::Host`] mode).
pub fn challenge(item: &SigItem<'_>) -> [u8; 32] {
    use sha2::Digest as _;
    let digest = sha2::Sha512::new()
        .chain_update(&item.signature[..32])
        .chain_update(item.public_key)
        .chain_update(item.message)
        .finalize();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&digest);
    curve25519_dalek::Scalar::from_bytes_mod_order_wide(&wide).to_bytes()
}

/// The GPU verifier. Buffers (pinned host memory and device memory, per stream) are allocated on
/// first use and grown on demand; one call at a time uses them (a `Mutex`), other callers wait.
///
/// A call never panics and never returns a verdict the GPU did not compute: any CUDA error, a
/// batch whose messages do not fit the kernel's 32-bit offsets, or a verdict byte the kernel did
/// not write sends the whole call to the `parallel` CPU backend, counted in
/// [`GpuVerifier::fallbacks`] (the first one is also logged to stderr).
pub struct GpuVerifier {
    info: GpuInfo,
    target: Target,
    engine: Mutex<Engine>,
    /// [`HashOn`] as a byte (0 device, 1 host); calibration sets the faster one.
    hash_on: AtomicU8,
    /// Set when a call panicked inside the CUDA bindings: the engine's state is unknown, so it is
    /// never used again (every later call runs on the CPU).
    broken: AtomicBool,
    fallbacks: AtomicU64,
    logged: AtomicBool,
}

impl fmt::Debug for GpuVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuVerifier")
            .field("info", &self.info)
            .field("target", &self.target)
            .field("fallbacks", &self.fallbacks())
            .finish()
    }
}

impl GpuVerifier {
    /// Opens GPU `ordinal`, compiles the ed25519 kernel for it (or takes it from the kernel cache)
    /// and loads it. A missing driver, GPU or NVRTC is a clear [`AccelError::Unavailable`].
    pub fn open(ordinal: usize) -> Result<GpuVerifier, AccelError> {
        // Everything under the guard, the drops on the error paths included.
        guarded("opening the GPU verifier", || GpuVerifier::open_unguarded(ordinal))
    }

    fn open_unguarded(ordinal: usize) -> Result<GpuVerifier, AccelError> {
        let (ctx, info) = open_device(ordinal)?;
        let spec = KernelSpec {
            source: source::ED25519_VERIFY,
            program: "ed25519_verify.cu",
            headers: source::HEADERS,
            options: &[],
            kernel: source::ED25519_KERNEL_NAME,
        };
        let LoadedKernel { module, function, target } = load_kernel(&ctx, &info, &spec)?;
        let prehashed = guarded("loading the prehashed kernel", || {
            module.load_function(source::ED25519_PREHASHED_KERNEL_NAME).map_err(|e| {
                unavailable(format!("cuModuleGetFunction({}): {e}", source::ED25519_PREHASHED_KERNEL_NAME))
            })
        })?;
        let engine = guarded("creating CUDA streams", || {
            let lane = || {
                ctx.new_stream()
                    .map(|stream| Lane { stream, host: None, device: None, pending: None })
                    .map_err(|e| unavailable(format!("CUDA cuStreamCreate failed: {e}")))
            };
            Ok(Engine { ctx: ctx.clone(), function, prehashed, lanes: [lane()?, lane()?] })
        })?;
        Ok(GpuVerifier {
            info,
            target,
            engine: Mutex::new(engine),
            hash_on: AtomicU8::new(0),
            broken: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
            logged: AtomicBool::new(false),
        })
    }

    /// The GPU in use.
    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// What the kernel was compiled to (`sm_90` cubin, or PTX).
    pub fn target(&self) -> Target {
        self.target
    }

    /// Where challenges are computed (device by default; calibration picks the faster).
    pub fn hash_on(&self) -> HashOn {
        if self.hash_on.load(Ordering::Relaxed) == 1 { HashOn::Host } else { HashOn::Device }
    }

    /// Sets where challenges are computed, for the calls that start after this.
    pub fn set_hash_on(&self, mode: HashOn) {
        self.hash_on.store(u8::from(mode == HashOn::Host), Ordering::Relaxed);
    }

    /// Calls that fell back to the CPU since this verifier was opened.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    fn fall_back(&self, items: &[SigItem<'_>], out: &mut Vec<bool>, reason: &str) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        if !self.logged.swap(true, Ordering::Relaxed) {
            eprintln!(
                "bastion-accel: {}: {reason}; the call was verified on the parallel CPU backend \
                 (logged once; GpuVerifier::fallbacks counts every such call)",
                self.info
            );
        }
        Parallel.verify_into(items, out);
    }

    /// Runs the batch on the GPU; `out` has one slot per item.
    fn run(&self, items: &[SigItem<'_>], out: &mut [bool]) -> Result<(), String> {
        // A panic elsewhere while holding the lock leaves nothing half-done that `reset` does not
        // undo, so a poisoned lock is taken over (panics inside are caught by the caller and mark
        // the verifier broken before the lock is poisoned for anyone else to see).
        let mut engine = self.engine.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = engine.verify(items, out, self.hash_on());
        if result.is_err() {
            engine.reset();
        }
        result
    }
}

impl Verifier for GpuVerifier {
    fn backend(&self) -> Backend {
        Backend::Gpu
    }

    fn verify_into(&self, items: &[SigItem<'_>], out: &mut Vec<bool>) {
        out.clear();
        if items.is_empty() {
            return;
        }
        if self.broken.load(Ordering::Relaxed) {
            return self.fall_back(items, out, "the GPU backend was disabled after a panic");
        }
        if let Some(big) = items.iter().find(|it| u32::try_from(it.message.len()).is_err()) {
            let reason =
                format!("a {}-byte message does not fit the kernel's 32-bit offsets", big.message.len());
            return self.fall_back(items, out, &reason);
        }
        out.resize(items.len(), false);
        match catch_unwind(AssertUnwindSafe(|| self.run(items, out))) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => self.fall_back(items, out, &reason),
            Err(payload) => {
                self.broken.store(true, Ordering::Relaxed);
                let reason = format!("the CUDA bindings panicked: {}", panic_text(payload.as_ref()));
                self.fall_back(items, out, &reason);
            }
        }
    }
}

/// The chunks a batch is processed in: consecutive ranges of at most [`CHUNK_ITEMS`] items and
/// at most [`CHUNK_MESSAGE_BYTES`] message bytes (or one item, however long its message).
pub(crate) fn chunks(items: &[SigItem<'_>]) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(items.len().div_ceil(CHUNK_ITEMS));
    let (mut start, mut bytes) = (0usize, 0usize);
    for (i, item) in items.iter().enumerate() {
        let len = item.message.len();
        if i > start && (i - start == CHUNK_ITEMS || bytes.saturating_add(len) > CHUNK_MESSAGE_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(len);
    }
    if start < items.len() {
        out.push(start..items.len());
    }
    out
}

/// A capacity of at least `needed`, at least `min`, and a power of two where one fits.
fn grown(needed: usize, min: usize) -> usize {
    let n = needed.max(min);
    n.checked_next_power_of_two().unwrap_or(n)
}

fn ck<T>(call: &'static str, r: Result<T, DriverError>) -> Result<T, String> {
    r.map_err(|e| format!("CUDA {call} failed: {e}"))
}

/// Page-locked host memory of `len` elements, zeroed (so that it is initialised before any
/// reference to it exists).
fn pinned<T: DeviceRepr + ValidAsZeroBits>(
    ctx: &Arc<CudaContext>,
    len: usize,
    flags: u32,
) -> Result<PinnedHostSlice<T>, String> {
    // SAFETY: the allocation is uninitialised; it is zeroed below, through a raw pointer, before
    // any reference to its contents is formed.
    let mut p = ck("cuMemHostAlloc", unsafe { ctx.alloc_pinned_with_flags::<T>(len, flags) })?;
    let ptr = ck("cuEventSynchronize", p.as_mut_ptr())?;
    // SAFETY: `ptr` starts the `len` elements just allocated (non-null and aligned: cudarc checks
    // both), owned by `p` alone and not in use by the device (nothing was queued on it); the
    // all-zero bit pattern is a valid `T` (`ValidAsZeroBits`).
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
    Ok(p)
}

/// Pinned host buffers of one lane, with room for `items` items and `bytes` message bytes.
struct HostBuffers {
    items: usize,
    bytes: usize,
    pks: PinnedHostSlice<u8>,
    sigs: PinnedHostSlice<u8>,
    msgs: PinnedHostSlice<u8>,
    offsets: PinnedHostSlice<u32>,
    /// The challenges of [`HashOn::Host`].
    ks: PinnedHostSlice<u8>,
    out: PinnedHostSlice<u8>,
}

impl HostBuffers {
    fn new(ctx: &Arc<CudaContext>, items: usize, bytes: usize) -> Result<HostBuffers, String> {
        // Inputs are only written by the host: write-combined memory suits them (and crosses the
        // bus faster). The verdicts are read by the host: ordinary cached pinned memory.
        let wc = sys::CU_MEMHOSTALLOC_WRITECOMBINED;
        Ok(HostBuffers {
            items,
            bytes,
            pks: pinned(ctx, items * 32, wc)?,
            sigs: pinned(ctx, items * 64, wc)?,
            msgs: pinned(ctx, bytes, wc)?,
            offsets: pinned(ctx, items + 1, wc)?,
            ks: pinned(ctx, items * 32, wc)?,
            out: pinned(ctx, items, 0)?,
        })
    }
}

/// Device buffers of one lane, with room for `items` items and `bytes` message bytes.
struct DeviceBuffers {
    items: usize,
    bytes: usize,
    pks: CudaSlice<u8>,
    sigs: CudaSlice<u8>,
    msgs: CudaSlice<u8>,
    offsets: CudaSlice<u32>,
    ks: CudaSlice<u8>,
    out: CudaSlice<u8>,
}

impl DeviceBuffers {
    fn new(stream: &Arc<CudaStream>, items: usize, bytes: usize) -> Result<DeviceBuffers, String> {
        Ok(DeviceBuffers {
            items,
            bytes,
            pks: ck("cuMemAlloc", stream.alloc_zeros(items * 32))?,
            sigs: ck("cuMemAlloc", stream.alloc_zeros(items * 64))?,
            msgs: ck("cuMemAlloc", stream.alloc_zeros(bytes))?,
            offsets: ck("cuMemAlloc", stream.alloc_zeros(items + 1))?,
            ks: ck("cuMemAlloc", stream.alloc_zeros(items * 32))?,
            out: ck("cuMemAlloc", stream.alloc_zeros(items))?,
        })
    }
}

/// One stream with its own buffers, and the chunk it has in flight.
struct Lane {
    stream: Arc<CudaStream>,
    host: Option<HostBuffers>,
    device: Option<DeviceBuffers>,
    /// The range of the current call's items whose verdicts this lane is computing.
    pending: Option<Range<usize>>,
}

impl Drop for Lane {
    fn drop(&mut self) {
        // Nothing may still be copying from or to the pinned buffers when they are freed.
        let _ = self.stream.synchronize();
    }
}

impl Lane {
    /// Waits for the lane's chunk in flight, if any, and writes its verdicts into `out`.
    fn finish(&mut self, out: &mut [bool]) -> Result<(), String> {
        let Some(range) = self.pending.take() else { return Ok(()) };
        ck("cuStreamSynchronize", self.stream.synchronize())?;
        let host = self.host.as_ref().ok_or("no host buffers for a chunk in flight")?;
        let verdicts = ck("cuEventSynchronize", host.out.as_slice())?;
        let n = range.len();
        let verdicts = verdicts.get(..n).ok_or("verdict buffer smaller than the chunk")?;
        let dst = out.get_mut(range).ok_or("chunk outside the batch")?;
        for (d, &v) in dst.iter_mut().zip(verdicts) {
            *d = match v {
                0 => false,
                1 => true,
                other => return Err(format!("the kernel left verdict byte {other:#04x} (not 0 or 1)")),
            };
        }
        Ok(())
    }

    /// Makes room for `items` items and `bytes` message bytes. The lane must be idle.
    fn reserve(&mut self, ctx: &Arc<CudaContext>, items: usize, bytes: usize) -> Result<(), String> {
        if self.host.as_ref().is_none_or(|h| h.items < items || h.bytes < bytes) {
            let (old_items, old_bytes) = self.host.as_ref().map_or((0, 0), |h| (h.items, h.bytes));
            // Free the old buffers before allocating larger ones.
            self.host = None;
            self.host = Some(HostBuffers::new(
                ctx,
                grown(items, MIN_ITEMS.max(old_items)),
                grown(bytes, MIN_MESSAGE_BYTES.max(old_bytes)),
            )?);
        }
        if self.device.as_ref().is_none_or(|d| d.items < items || d.bytes < bytes) {
            let (old_items, old_bytes) = self.device.as_ref().map_or((0, 0), |d| (d.items, d.bytes));
            self.device = None;
            self.device = Some(DeviceBuffers::new(
                &self.stream,
                grown(items, MIN_ITEMS.max(old_items)),
                grown(bytes, MIN_MESSAGE_BYTES.max(old_bytes)),
            )?);
        }
        Ok(())
    }

    /// Packs `chunk` (items `range` of the call) into the pinned buffers and queues its copy-in,
    /// kernel and copy-out on the lane's stream. The lane must be idle (after [`Lane::finish`]).
    fn submit(
        &mut self,
        ctx: &Arc<CudaContext>,
        function: &CudaFunction,
        chunk: &[SigItem<'_>],
        range: Range<usize>,
        prehashed: Option<&CudaFunction>,
    ) -> Result<(), String> {
        let n = chunk.len();
        // Prehashed chunks carry no messages.
        let bytes: usize =
            if prehashed.is_some() { 0 } else { chunk.iter().map(|it| it.message.len()).sum() };
        let n32 = u32::try_from(n).map_err(|_| format!("chunk of {n} items"))?;
        if u32::try_from(bytes).is_err() {
            return Err(format!("chunk of {bytes} message bytes does not fit 32-bit offsets"));
        }
        self.reserve(ctx, n, bytes)?;
        let (Some(host), Some(dev)) = (self.host.as_mut(), self.device.as_mut()) else {
            return Err("buffers missing after reserve".to_owned());
        };
        let stream = &self.stream;

        // Pack in the kernel's layout (see bastion_kernels::host::Packed). The lane is idle: no
        // copy is reading these buffers.
        let pks = ck("cuEventSynchronize", host.pks.as_mut_slice())?;
        let sigs = ck("cuEventSynchronize", host.sigs.as_mut_slice())?;
        let msgs = ck("cuEventSynchronize", host.msgs.as_mut_slice())?;
        let offsets = ck("cuEventSynchronize", host.offsets.as_mut_slice())?;
        let ks = ck("cuEventSynchronize", host.ks.as_mut_slice())?;
        for (dst, item) in pks.chunks_exact_mut(32).zip(chunk) {
            dst.copy_from_slice(item.public_key);
        }
        for (dst, item) in sigs.chunks_exact_mut(64).zip(chunk) {
            dst.copy_from_slice(item.signature);
        }
        if prehashed.is_some() {
            // The challenges, on all cores (the other lane's kernel runs meanwhile).
            ks.get_mut(..32 * n)
                .ok_or("challenge buffer too small")?
                .par_chunks_mut(32)
                .zip(chunk.par_iter())
                .for_each(|(dst, item)| dst.copy_from_slice(&challenge(item)));
        } else {
            let (first, rest) = offsets.split_first_mut().ok_or("empty offsets buffer")?;
            *first = 0;
            let mut at = 0usize;
            for (offset, item) in rest.iter_mut().zip(chunk) {
                let end = at + item.message.len();
                msgs.get_mut(at..end).ok_or("message buffer too small")?.copy_from_slice(item.message);
                at = end;
                // Cannot fail: the chunk's total fits u32 (checked above).
                *offset = u32::try_from(at).map_err(|_| "offset past u32")?;
            }
        }

        // Copy in. The host memory is pinned, so these are truly asynchronous: the buffers are
        // not touched again until `finish` has synchronized the stream.
        let short = "device buffer smaller than the chunk";
        ck(
            "cuMemcpyHtoDAsync",
            stream.memcpy_htod(
                pks.get(..32 * n).ok_or(short)?,
                &mut dev.pks.try_slice_mut(..32 * n).ok_or(short)?,
            ),
        )?;
        ck(
            "cuMemcpyHtoDAsync",
            stream.memcpy_htod(
                sigs.get(..64 * n).ok_or(short)?,
                &mut dev.sigs.try_slice_mut(..64 * n).ok_or(short)?,
            ),
        )?;
        if prehashed.is_some() {
            ck(
                "cuMemcpyHtoDAsync",
                stream.memcpy_htod(
                    ks.get(..32 * n).ok_or(short)?,
                    &mut dev.ks.try_slice_mut(..32 * n).ok_or(short)?,
                ),
            )?;
        } else {
            if bytes > 0 {
                ck(
                    "cuMemcpyHtoDAsync",
                    stream.memcpy_htod(
                        msgs.get(..bytes).ok_or(short)?,
                        &mut dev.msgs.try_slice_mut(..bytes).ok_or(short)?,
                    ),
                )?;
            }
            ck(
                "cuMemcpyHtoDAsync",
                stream.memcpy_htod(
                    offsets.get(..n + 1).ok_or(short)?,
                    &mut dev.offsets.try_slice_mut(..n + 1).ok_or(short)?,
                ),
            )?;
        }

        let mut out_view = dev.out.try_slice_mut(..n).ok_or(short)?;
        {
            let (ptr, _record) = out_view.device_ptr_mut(stream);
            // SAFETY: `ptr` is the device address of the `n` bytes of `out_view` (a view of
            // `dev.out`, bounds-checked above), which stays allocated until this stream has been
            // synchronized (buffers are only freed or regrown on an idle lane); the memset writes
            // exactly those `n` bytes, on this stream.
            ck("cuMemsetD8Async", unsafe {
                cudarc::driver::result::memset_d8_async(ptr, NOT_WRITTEN, n, stream.cu_stream())
            })?;
        }

        let cfg = LaunchConfig {
            grid_dim: (n32.div_ceil(THREADS_PER_BLOCK), 1, 1),
            block_dim: (THREADS_PER_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(prehashed.unwrap_or(function));
        if prehashed.is_some() {
            launch.arg(&dev.pks).arg(&dev.sigs).arg(&dev.ks).arg(&n32).arg(&mut out_view);
        } else {
            launch.arg(&dev.pks).arg(&dev.sigs).arg(&dev.msgs).arg(&dev.offsets).arg(&n32).arg(&mut out_view);
        }
        // SAFETY (prehashed): the arguments match `bk_ed25519_verify_prehashed_batch(const u8* pks,
        // const u8* sigs, const u8* ks, u32 n, u8* out)` in order and type; for i < n it reads
        // pks, sigs as below and ks[32 i..32 i + 32] (32 n bytes copied in, within the buffer of
        // 32 times the item capacity) and writes out[i].
        // SAFETY: the arguments match `bk_ed25519_verify_batch(const u8* pks, const u8* sigs,
        // const u8* msgs, const u32* msg_offsets, u32 n, u8* out)` in order and type (device
        // pointers, then `n` as a u32, then the output pointer). For i < n the kernel reads
        // pks[32 i..32 i + 32] and sigs[64 i..64 i + 64] (copied in above, within the buffers of
        // 32 and 64 times their item capacity >= n), msg_offsets[i] and [i + 1] (n + 1 entries
        // copied in, non-decreasing, the last = `bytes` <= the message capacity) and
        // msgs[offsets[i]..offsets[i + 1]], and writes out[i] (the view holds n bytes); threads
        // with i >= n return at the kernel's bound check. The copies precede the launch on the
        // same stream, so the kernel sees them; `n32` lives until `launch` returns (the driver
        // copies kernel arguments at launch).
        ck("cuLaunchKernel", unsafe { launch.launch(cfg) })?;

        let host_out = ck("cuEventSynchronize", host.out.as_mut_slice())?;
        ck("cuMemcpyDtoHAsync", stream.memcpy_dtoh(&out_view, host_out.get_mut(..n).ok_or(short)?))?;
        self.pending = Some(range);
        Ok(())
    }
}

/// The context, the kernel and two lanes.
struct Engine {
    ctx: Arc<CudaContext>,
    function: CudaFunction,
    /// `bk_ed25519_verify_prehashed_batch`, for [`HashOn::Host`].
    prehashed: CudaFunction,
    lanes: [Lane; 2],
}

impl Engine {
    /// Verifies `items` chunk by chunk, alternating lanes: chunk k waits only for chunk k - 2
    /// (same lane), so chunk k's packing and copy-in overlap chunk k - 1's kernel.
    fn verify(&mut self, items: &[SigItem<'_>], out: &mut [bool], hash_on: HashOn) -> Result<(), String> {
        let prehashed = (hash_on == HashOn::Host).then_some(&self.prehashed);
        for (k, range) in chunks(items).into_iter().enumerate() {
            let lane = &mut self.lanes[k % 2];
            lane.finish(out)?;
            let chunk = items.get(range.clone()).ok_or("chunk outside the batch")?;
            lane.submit(&self.ctx, &self.function, chunk, range, prehashed)?;
        }
        for lane in &mut self.lanes {
            lane.finish(out)?;
        }
        // Errors cudarc could only record (in destructors and event bookkeeping).
        ck("(deferred error)", self.ctx.check_err())
    }

    /// After a failed call: waits for whatever is still queued (errors ignored: the call has
    /// failed already) and forgets the chunks in flight, so the next call starts clean.
    fn reset(&mut self) {
        for lane in &mut self.lanes {
            let _ = lane.stream.synchronize();
            lane.pending = None;
        }
        let _ = self.ctx.check_err();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items_with(lens: &[usize]) -> (Vec<u8>, Vec<SigItem<'static>>) {
        static PK: [u8; 32] = [0; 32];
        static SIG: [u8; 64] = [0; 64];
        let max = lens.iter().copied().max().unwrap_or(0);
        let buf: &'static [u8] = Box::leak(vec![0u8; max].into_boxed_slice());
        let items =
            lens.iter().map(|&l| SigItem { public_key: &PK, signature: &SIG, message: &buf[..l] }).collect();
        (Vec::new(), items)
    }

    #[test]
    fn chunks_split_by_items_and_bytes() {
        let (_, items) = items_with(&[]);
        assert!(chunks(&items).is_empty());

        let (_, items) = items_with(&vec![10; 2 * CHUNK_ITEMS + 1]);
        assert_eq!(
            chunks(&items),
            vec![0..CHUNK_ITEMS, CHUNK_ITEMS..2 * CHUNK_ITEMS, 2 * CHUNK_ITEMS..2 * CHUNK_ITEMS + 1]
        );

        let half = CHUNK_MESSAGE_BYTES / 2;
        let (_, items) = items_with(&[half, half, 1, CHUNK_MESSAGE_BYTES + 5, 0, 3]);
        assert_eq!(chunks(&items), vec![0..2, 2..3, 3..4, 4..6]);

        // Every item is in exactly one chunk, in order.
        let lens: Vec<usize> = (0..200_000).map(|i| (i * 7919) % 300).collect();
        let (_, items) = items_with(&lens);
        let c = chunks(&items);
        assert_eq!(c.first().map(|r| r.start), Some(0));
        assert_eq!(c.last().map(|r| r.end), Some(items.len()));
        assert!(c.windows(2).all(|w| w[0].end == w[1].start));
        assert!(c.iter().all(|r| !r.is_empty() && r.len() <= CHUNK_ITEMS));
    }

    #[test]
    fn capacities_grow_in_powers_of_two() {
        assert_eq!(grown(1, MIN_ITEMS), MIN_ITEMS);
        assert_eq!(grown(65_537, 1024), 131_072);
        assert_eq!(grown(0, 0), 1);
        assert_eq!(grown(usize::MAX, 1), usize::MAX);
    }
}
