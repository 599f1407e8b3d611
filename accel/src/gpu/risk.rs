//! [`GpuRisk`]: the launcher of `bastion-kernels`' portfolio-risk kernel.

use super::{GpuInfo, KernelSpec, LoadedKernel, cuda_err, guarded, load_kernel, open_device, unavailable};
use crate::AccelError;
use bastion_kernels::nvrtc::Target;
use bastion_kernels::risk::{RiskInput, RiskOutput, STATUS_FALLBACK, STATUS_OK};
use bastion_kernels::source;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
    ValidAsZeroBits, sys,
};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Threads per block of the portfolio-risk kernel (`source::PORTFOLIO_RISK_THREADS`).
pub const RISK_THREADS_PER_BLOCK: u32 = source::PORTFOLIO_RISK_THREADS;

/// The status byte the device output starts at (the kernel writes 0 or 1).
const NOT_WRITTEN: u8 = 0xA5;

/// Where the time of one [`GpuRisk::run`] went. `copy_in`, `kernel` and `copy_out` are measured
/// on the GPU with CUDA events recorded between the stages on the one stream; `total` is the wall
/// time of the whole call (validation, device allocation, the three stages and synchronization).
/// The input copies are from pageable host memory (the caller's slices), staged by the driver.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RiskTiming {
    /// Host to device copies of the eight input arrays.
    pub copy_in: Duration,
    /// The kernel.
    pub kernel: Duration,
    /// Device to host copies of the three outputs.
    pub copy_out: Duration,
    /// The whole call, wall clock.
    pub total: Duration,
}

impl fmt::Display for RiskTiming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "copy-in {:.3} ms, kernel {:.3} ms, copy-out {:.3} ms, total {:.3} ms",
            self.copy_in.as_secs_f64() * 1e3,
            self.kernel.as_secs_f64() * 1e3,
            self.copy_out.as_secs_f64() * 1e3,
            self.total.as_secs_f64() * 1e3
        )
    }
}

/// The portfolio-risk kernel loaded on one GPU. [`GpuRisk::run`] validates the input, copies it
/// to the device, runs one thread per account and copies the results back. A CUDA error is an
/// [`AccelError::Unavailable`] (the caller has the CPU path:
/// `bastion_kernels::risk::host_portfolio_risk`); an invalid input is
/// [`AccelError::RiskInput`] and never reaches the GPU.
pub struct GpuRisk {
    info: GpuInfo,
    target: Target,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    function: CudaFunction,
    /// One run at a time, so that the events of a run time that run alone.
    serial: Mutex<()>,
}

impl fmt::Debug for GpuRisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuRisk").field("info", &self.info).field("target", &self.target).finish()
    }
}

/// A device buffer with room for `src` (at least one element: CUDA refuses empty allocations).
fn room_for<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    src: &[T],
) -> Result<CudaSlice<T>, AccelError> {
    stream.alloc_zeros::<T>(src.len().max(1)).map_err(cuda_err("cuMemAlloc"))
}

/// Copies `src` into the start of `dst` on `stream`.
fn upload<T: DeviceRepr>(
    stream: &Arc<CudaStream>,
    src: &[T],
    dst: &mut CudaSlice<T>,
) -> Result<(), AccelError> {
    if !src.is_empty() {
        stream.memcpy_htod(src, dst).map_err(cuda_err("cuMemcpyHtoDAsync"))?;
    }
    Ok(())
}

fn elapsed(from: &CudaEvent, to: &CudaEvent) -> Result<Duration, AccelError> {
    let ms = from.elapsed_ms(to).map_err(cuda_err("cuEventElapsedTime"))?;
    Ok(Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1e3))
}

impl GpuRisk {
    /// Opens GPU `ordinal` and compiles (or takes from the kernel cache) and loads the
    /// portfolio-risk kernel. A missing driver, GPU or NVRTC is a clear
    /// [`AccelError::Unavailable`].
    pub fn open(ordinal: usize) -> Result<GpuRisk, AccelError> {
        // Everything under the guard, the drops on the error paths included.
        guarded("opening the portfolio-risk kernel", || GpuRisk::open_unguarded(ordinal))
    }

    fn open_unguarded(ordinal: usize) -> Result<GpuRisk, AccelError> {
        let (ctx, info) = open_device(ordinal)?;
        let spec = KernelSpec {
            source: source::PORTFOLIO_RISK,
            program: "portfolio_risk.cu",
            headers: source::HEADERS,
            options: source::PORTFOLIO_RISK_OPTIONS,
            kernel: source::PORTFOLIO_RISK_KERNEL_NAME,
        };
        let LoadedKernel { function, target, .. } = load_kernel(&ctx, &info, &spec)?;
        let stream =
            guarded("creating a CUDA stream", || ctx.new_stream().map_err(cuda_err("cuStreamCreate")))?;
        Ok(GpuRisk { info, target, ctx, stream, function, serial: Mutex::new(()) })
    }

    /// The GPU in use.
    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// What the kernel was compiled to.
    pub fn target(&self) -> Target {
        self.target
    }

    /// Runs the kernel on `input`: one `(worst, mm, status)` per account, as
    /// `bastion_kernels::risk::host_portfolio_risk` computes them.
    pub fn run(&self, input: &RiskInput<'_>) -> Result<(RiskOutput, RiskTiming), AccelError> {
        let start = Instant::now();
        let shape = input.validate()?;
        let n = shape.n_accounts;
        if n == 0 {
            return Ok((
                RiskOutput::default(),
                RiskTiming { total: start.elapsed(), ..RiskTiming::default() },
            ));
        }
        let n32 = u32::try_from(n).map_err(|_| unavailable(format!("{n} accounts do not fit u32")))?;
        let _serial = self.serial.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = guarded("running the portfolio-risk kernel", || self.run_on_device(input, n, n32));
        if result.is_err() {
            // Leave the stream idle for the next run (errors ignored: this run failed already).
            let _ = self.stream.synchronize();
            let _ = self.ctx.check_err();
        }
        let (output, mut timing) = result?;
        timing.total = start.elapsed();
        Ok((output, timing))
    }

    fn run_on_device(
        &self,
        input: &RiskInput<'_>,
        n: usize,
        n32: u32,
    ) -> Result<(RiskOutput, RiskTiming), AccelError> {
        let stream = &self.stream;
        let event = || {
            self.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(cuda_err("cuEventCreate"))
        };
        let (e_start, e_copied, e_kernel, e_done) = (event()?, event()?, event()?, event()?);
        // Allocation first: it is not copy time.
        let mut d_worst = stream.alloc_zeros::<i128>(n).map_err(cuda_err("cuMemAlloc"))?;
        let mut d_mm = stream.alloc_zeros::<i128>(n).map_err(cuda_err("cuMemAlloc"))?;
        // Status starts at a value the kernel never writes: an account it did not reach fails the
        // run instead of reading as "OK, zero margin".
        let mut d_status = stream.clone_htod(&vec![NOT_WRITTEN; n]).map_err(cuda_err("cuMemcpyHtoD"))?;

        let mut d_diffs = room_for(stream, input.diffs)?;
        let mut d_lots = room_for(stream, input.lots)?;
        let mut d_market_ok = room_for(stream, input.market_ok)?;
        let mut d_acct_groups = room_for(stream, input.acct_groups)?;
        let mut d_group_pos = room_for(stream, input.group_pos)?;
        let mut d_pos_market = room_for(stream, input.pos_market)?;
        let mut d_pos_size = room_for(stream, input.pos_size)?;
        let mut d_acct_ok = room_for(stream, input.acct_ok)?;

        e_start.record(stream).map_err(cuda_err("cuEventRecord"))?;
        upload(stream, input.diffs, &mut d_diffs)?;
        upload(stream, input.lots, &mut d_lots)?;
        upload(stream, input.market_ok, &mut d_market_ok)?;
        upload(stream, input.acct_groups, &mut d_acct_groups)?;
        upload(stream, input.group_pos, &mut d_group_pos)?;
        upload(stream, input.pos_market, &mut d_pos_market)?;
        upload(stream, input.pos_size, &mut d_pos_size)?;
        upload(stream, input.acct_ok, &mut d_acct_ok)?;
        e_copied.record(stream).map_err(cuda_err("cuEventRecord"))?;

        let mm_ppm: i64 = input.mm_ppm;
        let cfg = LaunchConfig {
            grid_dim: (n32.div_ceil(RISK_THREADS_PER_BLOCK), 1, 1),
            block_dim: (RISK_THREADS_PER_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = stream.launch_builder(&self.function);
        launch
            .arg(&d_diffs)
            .arg(&d_lots)
            .arg(&d_market_ok)
            .arg(&d_acct_groups)
            .arg(&d_group_pos)
            .arg(&d_pos_market)
            .arg(&d_pos_size)
            .arg(&d_acct_ok)
            .arg(&mm_ppm)
            .arg(&n32)
            .arg(&mut d_worst)
            .arg(&mut d_mm)
            .arg(&mut d_status);
        // SAFETY: the arguments match `bk_portfolio_risk(const i64* diffs, const i64* lots, const
        // u8* market_ok, const u32* acct_groups, const u32* group_pos, const u32* pos_market,
        // const i64* pos_size, const u8* acct_ok, i64 mm_ppm, u32 n_accounts, __int128*
        // out_worst, __int128* out_mm, u8* out_status)` in order and type. `input.validate()`
        // (in `run`) established every bound the kernel relies on: acct_ok has n entries and
        // acct_groups n + 1, non-decreasing and ending at n_groups = group_pos.len() - 1;
        // group_pos is non-decreasing and ends at n_positions = pos_market.len() =
        // pos_size.len(); every pos_market < n_markets = lots.len() = market_ok.len() =
        // diffs.len() / 31. Each device buffer holds its whole array (copied in above on this
        // stream, so before the kernel in stream order). The kernel writes out_*[a] for a < n
        // only, and the outputs hold n elements each; `i128` is 16 bytes like `__int128`, and
        // device allocations are 256-byte aligned. `mm_ppm` and `n32` outlive the launch call
        // (the driver copies arguments at launch).
        unsafe { launch.launch(cfg) }.map_err(cuda_err("cuLaunchKernel"))?;
        e_kernel.record(stream).map_err(cuda_err("cuEventRecord"))?;

        let mut output = RiskOutput { worst: vec![0; n], mm: vec![0; n], status: vec![0; n] };
        stream.memcpy_dtoh(&d_worst, &mut output.worst).map_err(cuda_err("cuMemcpyDtoHAsync"))?;
        stream.memcpy_dtoh(&d_mm, &mut output.mm).map_err(cuda_err("cuMemcpyDtoHAsync"))?;
        stream.memcpy_dtoh(&d_status, &mut output.status).map_err(cuda_err("cuMemcpyDtoHAsync"))?;
        e_done.record(stream).map_err(cuda_err("cuEventRecord"))?;
        stream.synchronize().map_err(cuda_err("cuStreamSynchronize"))?;
        self.ctx.check_err().map_err(cuda_err("(deferred error)"))?;

        if let Some((a, s)) =
            output.status.iter().enumerate().find(|(_, s)| !matches!(**s, STATUS_OK | STATUS_FALLBACK))
        {
            return Err(unavailable(format!("the portfolio-risk kernel left status {s} for account {a}")));
        }
        let timing = RiskTiming {
            copy_in: elapsed(&e_start, &e_copied)?,
            kernel: elapsed(&e_copied, &e_kernel)?,
            copy_out: elapsed(&e_kernel, &e_done)?,
            total: Duration::ZERO,
        };
        Ok((output, timing))
    }
}
