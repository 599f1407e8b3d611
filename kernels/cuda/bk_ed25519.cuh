// bk_ed25519.cuh: ed25519 signature verification under ZIP-215, exactly as ed25519-zebra
// (VerificationKey::try_from then verify):
// - A (the public key) and R (the first half of the signature) must decode to curve points,
//   as curve25519-dalek decodes them: y >= p is accepted (taken mod p), x = 0 with the sign bit
//   set is accepted, small-order points are accepted;
// - S (the second half) must be canonical, S < L;
// - k = SHA-512(R || A || M) mod L over the original 32-byte encodings of R and A;
// - the cofactored equation [8]([S]B - [k]A - R) = identity must hold.
#ifndef BK_ED25519_CUH
#define BK_ED25519_CUH

#include "bk_common.cuh"
#include "bk_fe25519.cuh"
#include "bk_ge25519.cuh"
#include "bk_sc25519.cuh"
#include "bk_sha512.cuh"

// The verification equation once k is known: returns 1 when S is canonical, A (pk) and R (the
// signature's first half) decode, and [8]([S]B - [k]A - R) is the identity; else 0. k is the
// 32-byte little-endian scalar SHA-512(R || A || M) mod L, however it was computed (on the device
// by bk_ed25519_verify, or on the host for bk_ed25519_verify_prehashed_batch).
static BK_HD inline int bk_ed25519_verify_k(const u8 pk[32], const u8 sig[64], const u8 k[32]) {
    const u8* r_bytes = sig;
    const u8* s_bytes = sig + 32;
    if (!bk_sc_is_canonical(s_bytes)) return 0;

    bk_ge_p3 A, R, minus_A;
    if (!bk_ge_frombytes(&A, pk)) return 0;
    if (!bk_ge_frombytes(&R, r_bytes)) return 0;

    // P = [k](-A) + [S]B - R, then [8]P.
    bk_ge_p3 P, P8;
    bk_ge_neg(&minus_A, &A);
    bk_ge_double_scalarmult_vartime(&P, k, &minus_A, s_bytes); // B: the precomputed table
    bk_ge_cached rc;
    bk_ge_p3_to_cached(&rc, &R);
    bk_ge_p1p1 t;
    bk_ge_sub(&t, &P, &rc);
    bk_ge_p1p1_to_p3(&P, &t);
    bk_ge_mul8(&P8, &P);
    return bk_ge_is_identity(&P8);
}

// k = SHA-512(R || A || M) mod L, 32 bytes little-endian.
static BK_HD inline void bk_ed25519_challenge(u8 k[32], const u8 pk[32], const u8 sig[64], const u8* msg,
                                             u64 msg_len) {
    u8 h[64];
    bk_sha512_ctx ctx;
    bk_sha512_init(&ctx);
    bk_sha512_update(&ctx, sig, 32);
    bk_sha512_update(&ctx, pk, 32);
    bk_sha512_update(&ctx, msg, msg_len);
    bk_sha512_final(&ctx, h);
    bk_sc_reduce64(k, h);
}

// Returns 1 when sig is a valid ZIP-215 signature of msg[0..msg_len) under pk, else 0.
static BK_HD inline int bk_ed25519_verify(const u8 pk[32], const u8 sig[64], const u8* msg, u64 msg_len) {
    // S is checked first, before the hash, as it costs nothing.
    if (!bk_sc_is_canonical(sig + 32)) return 0;
    u8 k[32];
    bk_ed25519_challenge(k, pk, sig, msg, msg_len);
    return bk_ed25519_verify_k(pk, sig, k);
}

#endif // BK_ED25519_CUH
