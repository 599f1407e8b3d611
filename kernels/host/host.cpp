// host.cpp: the device math (kernels/cuda/*.cuh) compiled for the host, so the exact code the
// GPU runs is tested on the CPU. Exposed to Rust through kernels/src/host.rs.
#include "bk_ed25519.cuh"

extern "C" int bk_host_ed25519_verify(const unsigned char* pk, const unsigned char* sig,
                                      const unsigned char* msg, unsigned long long len) {
    return bk_ed25519_verify(pk, sig, msg, (u64)len);
}

// The kernel bk_ed25519_verify_prehashed_batch as a loop on the CPU: same layout.
extern "C" void bk_host_ed25519_verify_prehashed_batch(const unsigned char* pks, const unsigned char* sigs,
                                                       const unsigned char* ks, unsigned int n,
                                                       unsigned char* out) {
    for (unsigned int i = 0; i < n; i++) {
        out[i] = (unsigned char)bk_ed25519_verify_k(pks + 32 * (u64)i, sigs + 64 * (u64)i, ks + 32 * (u64)i);
    }
}

// The challenge k = SHA-512(R || A || M) mod L, as the device computes it.
extern "C" void bk_host_ed25519_challenge(const unsigned char* pk, const unsigned char* sig,
                                          const unsigned char* msg, unsigned long long len, unsigned char* k) {
    bk_ed25519_challenge(k, pk, sig, msg, (u64)len);
}

// The kernel bk_ed25519_verify_batch (ed25519_verify.cu) as a loop on the CPU: same layout.
extern "C" void bk_host_ed25519_verify_batch(const unsigned char* pks, const unsigned char* sigs,
                                             const unsigned char* msgs, const unsigned int* msg_offsets,
                                             unsigned int n, unsigned char* out) {
    for (unsigned int i = 0; i < n; i++) {
        unsigned int start = msg_offsets[i];
        unsigned int end = msg_offsets[i + 1];
        out[i] = (unsigned char)bk_ed25519_verify(pks + 32 * (u64)i, sigs + 64 * (u64)i, msgs + start,
                                                  (u64)(end - start));
    }
}

// ---- Portfolio risk (portfolio_risk.cu) -------------------------------------------------------
#include "bk_risk.cuh"

static_assert(sizeof(__int128) == 16 && alignof(__int128) == 16, "Rust i128 is 16 bytes, 16-aligned");

// The kernel bk_portfolio_risk as a loop on the CPU over accounts [begin, end), same layout and
// inputs. The outputs point at account `begin`'s slot: account a writes out_*[a - begin], so
// Rust can hand disjoint output chunks to threads. Inputs are trusted (validated in risk.rs).
extern "C" void bk_host_portfolio_risk(const long long* diffs, const long long* lots, const unsigned char* market_ok,
                                       const unsigned int* acct_groups, const unsigned int* group_pos,
                                       const unsigned int* pos_market, const long long* pos_size,
                                       const unsigned char* acct_ok, long long mm_ppm, unsigned int begin,
                                       unsigned int end, __int128* out_worst, __int128* out_mm,
                                       unsigned char* out_status) {
    for (unsigned int a = begin; a < end; a++) {
        bk_i128 worst, mm;
        int status = bk_risk_account(a, (const i64*)diffs, (const i64*)lots, market_ok, acct_groups, group_pos,
                                     pos_market, (const i64*)pos_size, acct_ok, (i64)mm_ppm, &worst, &mm);
        out_worst[a - begin] = worst;
        out_mm[a - begin] = mm;
        out_status[a - begin] = (unsigned char)status;
    }
}

// The i128 helpers, one by one, so tests compare them with Rust's i128::checked_* (the sum, neg
// and mm overflows are unreachable through bk_risk_account with testable input sizes). Each
// returns 1 and writes *out, or returns 0 on overflow.
// Arguments by pointer so no 128-bit value crosses the FFI boundary in registers.
extern "C" int bk_host_i128_checked_add(const __int128* a, const __int128* b, __int128* out) {
    return bk_i128_checked_add(*a, *b, out);
}
extern "C" int bk_host_i128_checked_neg(const __int128* a, __int128* out) { return bk_i128_checked_neg(*a, out); }
extern "C" int bk_host_i128_checked_mul(const __int128* a, const __int128* b, __int128* out) {
    return bk_i128_checked_mul(*a, *b, out);
}
extern "C" void bk_host_i128_div_floor_nanos(const __int128* x, __int128* out) {
    *out = bk_i128_div_floor<BK_RISK_NANOS_PER_UNIT>(*x);
}
extern "C" void bk_host_i128_div_floor_ppm(const __int128* x, __int128* out) {
    *out = bk_i128_div_floor<BK_RISK_PPM>(*x);
}
