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

// Returns 1 when sig is a valid ZIP-215 signature of msg[0..msg_len) under pk, else 0.
static BK_HD inline int bk_ed25519_verify(const u8 pk[32], const u8 sig[64], const u8* msg, u64 msg_len) {
    const u8* r_bytes = sig;
    const u8* s_bytes = sig + 32;
    if (!bk_sc_is_canonical(s_bytes)) return 0;

    bk_ge_p3 A, R, minus_A;
    if (!bk_ge_frombytes(&A, pk)) return 0;
    if (!bk_ge_frombytes(&R, r_bytes)) return 0;

    u8 h[64], k[32];
    bk_sha512_ctx ctx;
    bk_sha512_init(&ctx);
    bk_sha512_update(&ctx, r_bytes, 32);
    bk_sha512_update(&ctx, pk, 32);
    bk_sha512_update(&ctx, msg, msg_len);
    bk_sha512_final(&ctx, h);
    bk_sc_reduce64(k, h);

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

#endif // BK_ED25519_CUH
