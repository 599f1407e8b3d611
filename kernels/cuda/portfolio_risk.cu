// portfolio_risk.cu: portfolio margin (scenario-grid reduction), one thread per account.
//
// The math is bk_risk_account (bk_risk.cuh), bit-identical to the exchange's i128 arithmetic;
// the same function runs on the host in host/host.cpp (bk_host_portfolio_risk) for the tests and
// the CPU path. Compile with NVRTC option --device-int128 (source::PORTFOLIO_RISK_OPTIONS).
//
// Layout (packed by the host, validated by kernels/src/risk.rs before any launch):
//   diffs        n_markets * 31 i64, diffs[m * 31 + s] = scenario price - mark (quote micros)
//   lots         n_markets i64, lot size in nanos of a unit
//   market_ok    n_markets u8, 1 when every scenario of market m was computed and fits i64
//   acct_groups  n_accounts + 1 u32: account a's underlying groups are [acct_groups[a], acct_groups[a+1])
//   group_pos    n_groups + 1 u32: group g's positions are [group_pos[g], group_pos[g+1])
//   pos_market   n_positions u32, dense market index
//   pos_size     n_positions i64, signed size in lots
//   acct_ok      n_accounts u8, 0 when the host already knows the account needs the CPU path
// Outputs per account: out_worst (worst_total), out_mm, out_status (0 ok, 1 fallback with
// worst = mm = 0). __int128 outputs need 16-byte alignment (cudaMalloc gives 256).
#include "bk_risk.cuh"

// Launch with 128 threads per block (any multiple of 32 up to 256 is valid). The bounds only
// tell ptxas a block never exceeds 256 threads; there is deliberately no minimum-blocks clause.
// NVRTC 12.9 for sm_90 gives the kernel 96 registers, no stack and no spills (8 i128
// accumulators = 32 registers, the rest the inlined i128 multiply / divide-by-constant code);
// capping it spills the accumulators: (256, 3) -> 80 registers with 90 bytes of spill stores,
// (256, 4) -> 64 registers with 398 bytes. 96 registers leave 5 blocks of 128 per SM (20 warps);
// the 8 independent accumulator chains per position supply the ILP. BK_RISK_CHUNK trades the
// two: 1 -> 58 registers (but position data reloaded per scenario), 4 -> 79, 16 -> 124.
// Not yet measured on a GPU: compare chunk 4 and 8 there before tuning further.
// One thread per account keeps each account's summation order sequential (bit-identical to the
// CPU); output stores are coalesced (consecutive accounts, consecutive slots); inputs go through
// the read-only path (const __restrict__ -> ld.global.nc).
#define BK_RISK_THREADS 128
#define BK_RISK_MAX_THREADS 256
extern "C" __global__ void __launch_bounds__(BK_RISK_MAX_THREADS)
    bk_portfolio_risk(const i64* __restrict__ diffs, const i64* __restrict__ lots, const u8* __restrict__ market_ok,
                      const u32* __restrict__ acct_groups, const u32* __restrict__ group_pos,
                      const u32* __restrict__ pos_market, const i64* __restrict__ pos_size,
                      const u8* __restrict__ acct_ok, i64 mm_ppm, u32 n_accounts, __int128* __restrict__ out_worst,
                      __int128* __restrict__ out_mm, u8* __restrict__ out_status) {
    // 64-bit index: a grid covering n_accounts near 2^32 must not wrap onto low accounts.
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_accounts) return;
    u32 a = (u32)i;
    bk_i128 worst, mm;
    int status = bk_risk_account(a, diffs, lots, market_ok, acct_groups, group_pos, pos_market, pos_size, acct_ok,
                                 mm_ppm, &worst, &mm);
    out_worst[a] = worst;
    out_mm[a] = mm;
    out_status[a] = (u8)status;
}
