// bk_fe25519.cuh: arithmetic in GF(p), p = 2^255 - 19, in ref10's representation: ten signed
// 32-bit limbs of alternately 26 and 25 bits (radix 2^25.5), products in 64 bits. No 128-bit
// integers, so the same code compiles for the host, nvcc and NVRTC.
//
// Bounds: the outputs of bk_fe_mul / bk_fe_sq / bk_fe_frombytes / bk_fe_carry have limbs below
// 2^26 in absolute value (slightly above for limb 1); sums and differences of a few of them
// stay below 2^27, which bk_fe_mul accepts (10 products of at most 38 * 2^27 * 2^27 < 2^63).
#ifndef BK_FE25519_CUH
#define BK_FE25519_CUH

#include "bk_common.cuh"

typedef struct {
    i32 v[10];
} bk_fe;

// Limb widths: 26 bits for even limbs, 25 for odd ones.
static BK_HD BK_INLINE int bk_fe_width(int i) { return (i & 1) ? 25 : 26; }

// Carries 64-bit limbs into a bounded bk_fe (ref10's carry chain, as a loop).
static BK_HD BK_INLINE void bk_fe_carry64(bk_fe* h, i64 t[10]) {
    for (int i = 0; i < 10; i++) {
        int w = bk_fe_width(i);
        i64 c = (t[i] + ((i64)1 << (w - 1))) >> w;
        t[i] -= c * ((i64)1 << w);
        if (i < 9) {
            t[i + 1] += c;
        } else {
            t[0] += c * 19;
        }
    }
    // One more carry from limb 0, which may have grown by 19 * carry9.
    i64 c = (t[0] + ((i64)1 << 25)) >> 26;
    t[0] -= c * ((i64)1 << 26);
    t[1] += c;
    for (int i = 0; i < 10; i++) h->v[i] = (i32)t[i];
}

static BK_HD BK_INLINE void bk_fe_carry(bk_fe* h, const bk_fe* f) {
    i64 t[10];
    for (int i = 0; i < 10; i++) t[i] = f->v[i];
    bk_fe_carry64(h, t);
}

static BK_HD BK_INLINE void bk_fe_0(bk_fe* h) {
    for (int i = 0; i < 10; i++) h->v[i] = 0;
}

static BK_HD BK_INLINE void bk_fe_1(bk_fe* h) {
    bk_fe_0(h);
    h->v[0] = 1;
}

static BK_HD BK_INLINE void bk_fe_copy(bk_fe* h, const bk_fe* f) {
    for (int i = 0; i < 10; i++) h->v[i] = f->v[i];
}

static BK_HD BK_INLINE void bk_fe_add(bk_fe* h, const bk_fe* f, const bk_fe* g) {
    for (int i = 0; i < 10; i++) h->v[i] = f->v[i] + g->v[i];
}

static BK_HD BK_INLINE void bk_fe_sub(bk_fe* h, const bk_fe* f, const bk_fe* g) {
    for (int i = 0; i < 10; i++) h->v[i] = f->v[i] - g->v[i];
}

static BK_HD BK_INLINE void bk_fe_neg(bk_fe* h, const bk_fe* f) {
    for (int i = 0; i < 10; i++) h->v[i] = -f->v[i];
}

// h = f * g. h may alias f or g.
static BK_HD inline void bk_fe_mul(bk_fe* h, const bk_fe* f, const bk_fe* g) {
    i64 t[10];
    for (int i = 0; i < 10; i++) t[i] = 0;
    for (int i = 0; i < 10; i++) {
        for (int j = 0; j < 10; j++) {
            // Limb i has weight 2^ceil(25.5 i); the product of two odd limbs carries an extra 2.
            i64 m = (i64)f->v[i] * (i64)g->v[j];
            if (i & j & 1) m *= 2;
            if (i + j >= 10) {
                t[i + j - 10] += m * 19;
            } else {
                t[i + j] += m;
            }
        }
    }
    bk_fe_carry64(h, t);
}

static BK_HD BK_INLINE void bk_fe_sq(bk_fe* h, const bk_fe* f) { bk_fe_mul(h, f, f); }

// h = 2 * f^2.
static BK_HD BK_INLINE void bk_fe_sq2(bk_fe* h, const bk_fe* f) {
    bk_fe t;
    bk_fe_mul(&t, f, f);
    bk_fe_add(&t, &t, &t);
    bk_fe_carry(h, &t);
}

// h = f^(2^k), k >= 1.
static BK_HD BK_INLINE void bk_fe_sqn(bk_fe* h, const bk_fe* f, int k) {
    bk_fe_sq(h, f);
    for (int i = 1; i < k; i++) bk_fe_sq(h, h);
}

// Loads 32 little-endian bytes, ignoring bit 255. The value is NOT required to be below p: a
// y >= p is taken mod p by the arithmetic (as curve25519-dalek's FieldElement::from_bytes).
static BK_HD inline void bk_fe_frombytes(bk_fe* h, const u8 s[32]) {
    i64 t[10];
    int bit = 0;
    for (int i = 0; i < 10; i++) {
        int w = bk_fe_width(i);
        u64 acc = 0;
        for (int b = 0; b < w; b++) {
            int pos = bit + b;
            if (pos < 255) acc |= (u64)((s[pos >> 3] >> (pos & 7)) & 1) << b;
        }
        t[i] = (i64)acc;
        bit += w;
    }
    bk_fe_carry64(h, t);
}

// Stores the canonical encoding (value fully reduced mod p, below p).
static BK_HD inline void bk_fe_tobytes(u8 s[32], const bk_fe* f) {
    bk_fe c;
    bk_fe_carry(&c, f);
    i32 h[10];
    for (int i = 0; i < 10; i++) h[i] = c.v[i];
    // q = floor(h / p) in {0, 1} (ref10): h + 19 overflows 2^255 exactly when h >= p.
    i32 q = (19 * h[9] + ((i32)1 << 24)) >> 25;
    for (int i = 0; i < 10; i++) q = (h[i] + q) >> bk_fe_width(i);
    h[0] += 19 * q;
    // h - q * p = h + 19 q - q 2^255: carry through and drop the 2^255 bit.
    for (int i = 0; i < 9; i++) {
        int w = bk_fe_width(i);
        i32 carry = h[i] >> w;
        h[i + 1] += carry;
        h[i] -= carry * ((i32)1 << w);
    }
    h[9] &= ((i32)1 << 25) - 1;
    u64 acc = 0;
    int bits = 0, o = 0;
    for (int i = 0; i < 10; i++) {
        acc |= (u64)(u32)h[i] << bits;
        bits += bk_fe_width(i);
        while (bits >= 8) {
            s[o++] = (u8)(acc & 0xff);
            acc >>= 8;
            bits -= 8;
        }
    }
    s[31] = (u8)acc;
}

static BK_HD BK_INLINE int bk_fe_iszero(const bk_fe* f) {
    u8 s[32];
    bk_fe_tobytes(s, f);
    u8 r = 0;
    for (int i = 0; i < 32; i++) r |= s[i];
    return r == 0;
}

// The "sign" of f: the low bit of its canonical encoding.
static BK_HD BK_INLINE int bk_fe_isnegative(const bk_fe* f) {
    u8 s[32];
    bk_fe_tobytes(s, f);
    return s[0] & 1;
}

// h = f if b == 1, unchanged if b == 0 (branch-free).
static BK_HD BK_INLINE void bk_fe_cmov(bk_fe* h, const bk_fe* f, u32 b) {
    i32 mask = -(i32)b;
    for (int i = 0; i < 10; i++) h->v[i] ^= mask & (h->v[i] ^ f->v[i]);
}

// The common head of the two exponentiation chains below: t250 = z^(2^250 - 1), z11 = z^11.
static BK_HD inline void bk_fe_pow2_250_1(bk_fe* t250, bk_fe* z11, const bk_fe* z) {
    bk_fe t0, t1, t2;
    bk_fe_sq(&t0, z);             // 2
    bk_fe_sqn(&t1, &t0, 2);       // 8
    bk_fe_mul(&t1, z, &t1);       // 9
    bk_fe_mul(z11, &t0, &t1);     // 11
    bk_fe_sq(&t0, z11);           // 22
    bk_fe_mul(&t0, &t1, &t0);     // 2^5 - 1
    bk_fe_sqn(&t1, &t0, 5);
    bk_fe_mul(&t0, &t1, &t0);     // 2^10 - 1
    bk_fe_sqn(&t1, &t0, 10);
    bk_fe_mul(&t1, &t1, &t0);     // 2^20 - 1
    bk_fe_sqn(&t2, &t1, 20);
    bk_fe_mul(&t1, &t2, &t1);     // 2^40 - 1
    bk_fe_sqn(&t1, &t1, 10);
    bk_fe_mul(&t0, &t1, &t0);     // 2^50 - 1
    bk_fe_sqn(&t1, &t0, 50);
    bk_fe_mul(&t1, &t1, &t0);     // 2^100 - 1
    bk_fe_sqn(&t2, &t1, 100);
    bk_fe_mul(&t1, &t2, &t1);     // 2^200 - 1
    bk_fe_sqn(&t1, &t1, 50);
    bk_fe_mul(t250, &t1, &t0);    // 2^250 - 1
}

// h = z^(p - 2) = 1 / z (0 for z = 0).
static BK_HD inline void bk_fe_invert(bk_fe* h, const bk_fe* z) {
    bk_fe t, z11;
    bk_fe_pow2_250_1(&t, &z11, z);
    bk_fe_sqn(&t, &t, 5);         // 2^255 - 32
    bk_fe_mul(h, &t, &z11);       // 2^255 - 21 = p - 2
}

// h = z^((p - 5) / 8) = z^(2^252 - 3).
static BK_HD inline void bk_fe_pow22523(bk_fe* h, const bk_fe* z) {
    bk_fe t, z11;
    bk_fe_pow2_250_1(&t, &z11, z);
    bk_fe_sqn(&t, &t, 2);         // 2^252 - 4
    bk_fe_mul(h, &t, z);          // 2^252 - 3
}

#endif // BK_FE25519_CUH
