// bk_risk.cuh: the exchange's portfolio margin (node/exchange/src/options.rs,
// `portfolio_requirement`), scenario-grid reduction part, for one account.
//
// For each underlying group of the account (increasing underlying id), for each of the 31
// scenarios s:
//     pnl_s = sum over the group's positions p with size != 0, in the account's order, of
//             div_floor(checked_mul(checked_mul(diff[p.market][s], size_p), lot[p.market]), 1e9)
//             (accumulated with checked_add)
//     worst_U = max(0, max_s checked_neg(pnl_s))
// worst_total = checked sum of worst_U over the groups, mm = div_floor(checked_mul(worst_total,
// mm_ppm), 1e6). All arithmetic is on i128 with Rust's `checked_*` semantics: any overflow makes
// the account a fallback (status 1), which the CPU decides. Everything here is bit-identical to
// that Rust code:
//
// - The terms are computed as diff * (size * lot) instead of (diff * size) * lot. Both inner
//   products are exact (|i64 x i64| <= 2^126 fits i128), so either way the checked outer
//   product fails exactly when the mathematical product diff * size * lot is outside i128, and
//   otherwise equals it: same value, same overflow.
// - Per scenario the additions happen in the same order (positions in group order). The
//   scenarios are processed in chunks of BK_RISK_CHUNK with one accumulator each: positions outer,
//   scenarios of the chunk inner, so position data is loaded once per chunk and the accumulators
//   stay in registers (4 x 8 x 128 bits).
// - Overflow anywhere is an error for the whole account in both, so evaluating the terms in a
//   different interleaving across scenarios cannot change the outcome.
//
// No i128 division anywhere (device __int128 division would call a slow library routine):
// floor division by the positive constants 1e9 and 1e6 is done on u64 halves, which the
// compiler turns into multiply-high sequences.
//
// Requires `__int128` in device code: NVRTC option `--device-int128` (nvcc: sm_xx >= 50 and a
// CUDA >= 11.5 toolkit; NVRTC needs the flag).
#ifndef BK_RISK_CUH
#define BK_RISK_CUH

#include "bk_common.cuh"

#define BK_RISK_SCENARIOS 31
// Scenarios per register-resident chunk (31 = 8 + 8 + 8 + 7).
#define BK_RISK_CHUNK 8
// bastion_types::NANOS_PER_UNIT: lot sizes are in nanos of a unit.
#define BK_RISK_NANOS_PER_UNIT 1000000000u
// bastion_types::PPM.
#define BK_RISK_PPM 1000000u

// Full unrolling of the chunk loops keeps the accumulators in registers.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define BK_RISK_UNROLL _Pragma("unroll")
#else
#define BK_RISK_UNROLL
#endif

typedef __int128 bk_i128;
typedef unsigned __int128 bk_u128;

#define BK_I128_MAX ((bk_i128)(((bk_u128)1 << 127) - 1))
#define BK_I128_MIN ((bk_i128)((bk_u128)1 << 127))

// Status codes of bk_risk_account (and out_status).
#define BK_RISK_OK 0
#define BK_RISK_FALLBACK 1

// a + b; 0 on overflow (Rust's i128::checked_add).
static BK_HD BK_INLINE int bk_i128_checked_add(bk_i128 a, bk_i128 b, bk_i128* out) {
    bk_u128 s = (bk_u128)a + (bk_u128)b;
    // Signed overflow: both operands have the sign opposite to the wrapped sum's.
    if ((bk_i128)(((bk_u128)a ^ s) & ((bk_u128)b ^ s)) < 0) return 0;
    *out = (bk_i128)s;
    return 1;
}

// -a; 0 on overflow (only for i128::MIN, Rust's i128::checked_neg).
static BK_HD BK_INLINE int bk_i128_checked_neg(bk_i128 a, bk_i128* out) {
    if (a == BK_I128_MIN) return 0;
    *out = (bk_i128)((bk_u128)0 - (bk_u128)a);
    return 1;
}

// |a| as an unsigned 128-bit value (exact, also for i128::MIN).
static BK_HD BK_INLINE bk_u128 bk_i128_uabs(bk_i128 a) {
    return a < 0 ? (bk_u128)0 - (bk_u128)a : (bk_u128)a;
}

// a * b for any two i128; 0 on overflow (Rust's i128::checked_mul). Works on the magnitudes
// split in unsigned 64-bit halves: only 64 x 64 -> 128 products, which the device does with
// mul.lo / mul.hi.u64.
static BK_HD BK_INLINE int bk_i128_checked_mul(bk_i128 a, bk_i128 b, bk_i128* out) {
    bk_u128 ua = bk_i128_uabs(a);
    bk_u128 ub = bk_i128_uabs(b);
    int neg = (a < 0) != (b < 0);
    u64 a1 = (u64)(ua >> 64), a0 = (u64)ua;
    u64 b1 = (u64)(ub >> 64), b0 = (u64)ub;
    if (a1 != 0 && b1 != 0) return 0;  // |a| |b| >= 2^128
    bk_u128 lo = (bk_u128)a0 * b0;
    // At most one of the two cross products is nonzero, so their sum cannot wrap.
    bk_u128 cross = (bk_u128)a1 * b0 + (bk_u128)a0 * b1;
    if ((u64)(cross >> 64) != 0) return 0;
    u64 hi = (u64)(lo >> 64) + (u64)cross;
    if (hi < (u64)cross) return 0;  // carry out of bit 127 of the magnitude
    bk_u128 m = ((bk_u128)hi << 64) | (u64)lo;
    // The magnitude must fit: 2^127 - 1 for a positive result, 2^127 for a negative one.
    if (m > ((bk_u128)1 << 127) - (neg ? 0 : 1)) return 0;
    *out = neg ? (bk_i128)((bk_u128)0 - m) : (bk_i128)m;
    return 1;
}

// The exact product of two i64 (|a b| <= 2^126 always fits).
static BK_HD BK_INLINE bk_i128 bk_i64_mul_wide(i64 a, i64 b) {
    return (bk_i128)a * (bk_i128)b;
}

// floor(x / D) for a constant 0 < D < 2^32 (Rust's div_floor with a positive divisor: the
// truncated quotient, minus one when the remainder is negative). Never overflows.
template <u32 D>
static BK_HD BK_INLINE bk_i128 bk_i128_div_floor(bk_i128 x) {
    static_assert(D > 0, "divisor must be positive");
    i64 x64 = (i64)x;
    if ((bk_i128)x64 == x) {
        // Fits i64 (the common case): one 64-bit division by a constant.
        i64 q = x64 / (i64)D;
        if (x64 % (i64)D < 0) q -= 1;
        return (bk_i128)q;
    }
    int neg = x < 0;
    bk_u128 m = bk_i128_uabs(x);
    u64 hi = (u64)(m >> 64), lo = (u64)m;
    // Long division in base 2^32 below the top half: every partial dividend is below D 2^32 < 2^64.
    u64 qh = hi / D;
    u64 r = hi % D;
    u64 t = (r << 32) | (lo >> 32);
    u64 q1 = t / D;
    r = t % D;
    t = (r << 32) | (lo & 0xffffffffull);
    u64 q0 = t / D;
    r = t % D;
    bk_u128 q = ((bk_u128)qh << 64) | ((q1 << 32) | q0);
    if (!neg) return (bk_i128)q;
    // floor(-m / D) = -(ceil(m / D)).
    return (bk_i128)((bk_u128)0 - (q + (r != 0 ? 1 : 0)));
}

// One account's portfolio worst loss and maintenance margin. Returns BK_RISK_OK with *worst_out
// and *mm_out set, or BK_RISK_FALLBACK with both 0 (acct_ok[a] == 0, a nonzero position on a
// market with market_ok 0, or an i128 overflow anywhere). The inputs are trusted: offsets
// monotone and in range, every pos_market < n_markets (kernels/src/risk.rs validates them).
static BK_HD inline int bk_risk_account(u32 a, const i64* diffs, const i64* lots, const u8* market_ok,
                                        const u32* acct_groups, const u32* group_pos, const u32* pos_market,
                                        const i64* pos_size, const u8* acct_ok, i64 mm_ppm, bk_i128* worst_out,
                                        bk_i128* mm_out) {
    *worst_out = 0;
    *mm_out = 0;
    if (acct_ok[a] == 0) return BK_RISK_FALLBACK;
    const u32 g_begin = acct_groups[a];
    const u32 g_end = acct_groups[a + 1];
    const u32 p_begin = group_pos[g_begin];
    const u32 p_end = group_pos[g_end];
    // Markets the CPU must price: any nonzero position on one sends the account to the CPU.
    for (u32 p = p_begin; p < p_end; p++) {
        if (pos_size[p] != 0 && market_ok[pos_market[p]] == 0) return BK_RISK_FALLBACK;
    }

    bk_i128 worst_total = 0;
    for (u32 g = g_begin; g < g_end; g++) {
        const u32 gp_begin = group_pos[g];
        const u32 gp_end = group_pos[g + 1];
        bk_i128 worst = 0;
        for (u32 s0 = 0; s0 < BK_RISK_SCENARIOS; s0 += BK_RISK_CHUNK) {
            bk_i128 pnl[BK_RISK_CHUNK];
BK_RISK_UNROLL
            for (u32 k = 0; k < BK_RISK_CHUNK; k++) pnl[k] = 0;
            for (u32 p = gp_begin; p < gp_end; p++) {
                const i64 size = pos_size[p];
                if (size == 0) continue;
                const u32 m = pos_market[p];
                // size * lot is exact; the term is diff * (size * lot) (see the top of the file).
                const bk_i128 size_lot = bk_i64_mul_wide(size, lots[m]);
                const i64 sl64 = (i64)size_lot;
                const int sl_fits = (bk_i128)sl64 == size_lot;
                const i64* row = diffs + (u64)m * BK_RISK_SCENARIOS + s0;
BK_RISK_UNROLL
                for (u32 k = 0; k < BK_RISK_CHUNK; k++) {
                    if (s0 + k < BK_RISK_SCENARIOS) {
                        const i64 diff = row[k];
                        bk_i128 prod;
                        if (sl_fits) {
                            prod = bk_i64_mul_wide(diff, sl64);  // exact: |i64 x i64| <= 2^126
                        } else if (!bk_i128_checked_mul((bk_i128)diff, size_lot, &prod)) {
                            return BK_RISK_FALLBACK;
                        }
                        if (!bk_i128_checked_add(pnl[k], bk_i128_div_floor<BK_RISK_NANOS_PER_UNIT>(prod), &pnl[k]))
                            return BK_RISK_FALLBACK;
                    }
                }
            }
BK_RISK_UNROLL
            for (u32 k = 0; k < BK_RISK_CHUNK; k++) {
                if (s0 + k < BK_RISK_SCENARIOS) {
                    bk_i128 loss;
                    if (!bk_i128_checked_neg(pnl[k], &loss)) return BK_RISK_FALLBACK;
                    if (loss > worst) worst = loss;
                }
            }
        }
        if (!bk_i128_checked_add(worst_total, worst, &worst_total)) return BK_RISK_FALLBACK;
    }
    bk_i128 scaled;
    if (!bk_i128_checked_mul(worst_total, (bk_i128)mm_ppm, &scaled)) return BK_RISK_FALLBACK;
    *worst_out = worst_total;
    *mm_out = bk_i128_div_floor<BK_RISK_PPM>(scaled);
    return BK_RISK_OK;
}

#endif  // BK_RISK_CUH
