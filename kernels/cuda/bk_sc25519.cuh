// bk_sc25519.cuh: scalars mod L = 2^252 + 27742317777372353535851937790883648493, the order of
// the edwards25519 basepoint, as 32-bit little-endian words. Simple rather than fast: the
// reduction is a bitwise long division, a small cost beside the scalar multiplication.
#ifndef BK_SC25519_CUH
#define BK_SC25519_CUH

#include "bk_common.cuh"

// L, little-endian 32-bit words.
static BK_HD BK_INLINE void bk_sc_L(u32 l[8]) {
    l[0] = 0x5cf5d3edu;
    l[1] = 0x5812631au;
    l[2] = 0xa2f79cd6u;
    l[3] = 0x14def9deu;
    l[4] = 0;
    l[5] = 0;
    l[6] = 0;
    l[7] = 0x10000000u;
}

static BK_HD BK_INLINE u32 bk_load32_le(const u8* p) {
    return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}

// a >= b, 8-word little-endian.
static BK_HD BK_INLINE int bk_sc_geq(const u32 a[8], const u32 b[8]) {
    for (int i = 7; i >= 0; i--) {
        if (a[i] != b[i]) return a[i] > b[i];
    }
    return 1;
}

// a -= b (a >= b).
static BK_HD BK_INLINE void bk_sc_sub_in_place(u32 a[8], const u32 b[8]) {
    u64 borrow = 0;
    for (int i = 0; i < 8; i++) {
        u64 d = (u64)a[i] - (u64)b[i] - borrow;
        a[i] = (u32)d;
        borrow = (d >> 32) & 1;
    }
}

// 1 when the 32-byte little-endian s is below L (a canonical scalar), else 0.
static BK_HD BK_INLINE int bk_sc_is_canonical(const u8 s[32]) {
    u32 a[8], l[8];
    for (int i = 0; i < 8; i++) a[i] = bk_load32_le(s + 4 * i);
    bk_sc_L(l);
    return !bk_sc_geq(a, l);
}

// out = (64-byte little-endian x) mod L, 32 bytes little-endian.
static BK_HD inline void bk_sc_reduce64(u8 out[32], const u8 x[64]) {
    u32 r[8], l[8];
    bk_sc_L(l);
    for (int i = 0; i < 8; i++) r[i] = 0;
    // Horner from the top bit: r = 2 r + bit, then r -= L when r >= L; r < L < 2^253 throughout.
    for (int bit = 511; bit >= 0; bit--) {
        u32 carry = (u32)((x[bit >> 3] >> (bit & 7)) & 1);
        for (int i = 0; i < 8; i++) {
            u32 top = r[i] >> 31;
            r[i] = (r[i] << 1) | carry;
            carry = top;
        }
        if (bk_sc_geq(r, l)) bk_sc_sub_in_place(r, l);
    }
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (u8)r[i];
        out[4 * i + 1] = (u8)(r[i] >> 8);
        out[4 * i + 2] = (u8)(r[i] >> 16);
        out[4 * i + 3] = (u8)(r[i] >> 24);
    }
}

#endif // BK_SC25519_CUH
