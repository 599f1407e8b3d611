// bk_fe25519.cuh: arithmetic in GF(p), p = 2^255 - 19, in ref10's representation: ten signed
// 32-bit limbs of alternately 26 and 25 bits (radix 2^25.5), products in 64 bits. No 128-bit
// integers, so the same code compiles for the host, nvcc and NVRTC.
//
// Bounds (the carry chain rounds to nearest, so its limbs are centred):
// - "carried": the output of bk_fe_carry64 (bk_fe_mul, bk_fe_sq, bk_fe_sq2, bk_fe_frombytes,
//   bk_fe_carry) has |even limb| <= 2^25 and |odd limb| <= 2^24, except limb 1, which also takes
//   the final carry out of limb 0: |limb 1| <= 2^24 + 2^17 (that carry is at most
//   (2^25 + 19 * 2^38) / 2^26 < 2^17 for sums below 2^63). So: |even| <= 2^25 = E1,
//   |odd| <= 1.008 * 2^24 = O1.
// - Every bk_fe_mul / bk_fe_sq operand in this code is a sum or difference of at most 3 carried
//   values (e.g. X = t0 - (Z + X) in bk_ge_p2_dbl, Z = 2 Z1 + T in bk_ge_add) or a table entry
//   (canonical limbs, even < 2^26 = 2 E1, odd < 2^25 < 2 O1), so |even| <= E = 3 * 2^25 and
//   |odd| <= O = 3 * 1.008 * 2^24. Anything new must keep to this.
// - 32-bit operand multiples: 19 E = 57 * 2^25 < 2^30.84 and 38 O < 115 * 2^24 < 2^30.85 fit in
//   i32 (19 g[j] for any j, 38 f[odd] in bk_fe_sq; 2 f[i] is smaller still).
// - 64-bit sums: the largest output sum (limb 0) of bk_fe_mul is f0 g0 plus five 38-weighted
//   odd x odd and four 19-weighted even x even products: with E^2 = 9 * 2^50 and O^2 < 2.29 * 2^50,
//   <= (9 + 5 * 38 * 2.29 + 4 * 19 * 9) * 2^50 < 1130 * 2^50 < 2^60.2 (other limbs are smaller);
//   bk_fe_sq has the same sums and bk_fe_sq2 doubles them: < 2^61.2 < 2^63. bk_fe_carry64 accepts |t| < 2^62 (t + 2^25 does not overflow,
//   carries below 2^37).
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

// h = f * g. h may alias f or g. ref10's schoolbook product with the factors 19 (wrap-around
// past limb 9: 2^255 = 19 mod p) and 2 (odd x odd limbs: limb i has weight 2^ceil(25.5 i), and
// for i, j both odd 2^ceil(25.5 i) 2^ceil(25.5 j) = 2 * 2^ceil(25.5 (i + j))) folded into the
// operands once (19 g[j], 2 f[i], in 32 bits: see the bounds in the file header) instead of into
// each of the 100 products: every product is one 32 x 32 -> 64-bit multiply (mul.wide.s32).
// The sums are the old loop's, term for term, so the limbs (not only the value) are unchanged.
static BK_HD inline void bk_fe_mul(bk_fe* h, const bk_fe* f, const bk_fe* g) {
    i32 f0 = f->v[0], f1 = f->v[1], f2 = f->v[2], f3 = f->v[3], f4 = f->v[4];
    i32 f5 = f->v[5], f6 = f->v[6], f7 = f->v[7], f8 = f->v[8], f9 = f->v[9];
    i32 g0 = g->v[0], g1 = g->v[1], g2 = g->v[2], g3 = g->v[3], g4 = g->v[4];
    i32 g5 = g->v[5], g6 = g->v[6], g7 = g->v[7], g8 = g->v[8], g9 = g->v[9];
    i32 g1_19 = 19 * g1, g2_19 = 19 * g2, g3_19 = 19 * g3, g4_19 = 19 * g4;
    i32 g5_19 = 19 * g5, g6_19 = 19 * g6, g7_19 = 19 * g7, g8_19 = 19 * g8, g9_19 = 19 * g9;
    i32 f1_2 = 2 * f1, f3_2 = 2 * f3, f5_2 = 2 * f5, f7_2 = 2 * f7, f9_2 = 2 * f9;
    i64 t[10];
    t[0] = (i64)f0 * g0 + (i64)f1_2 * g9_19 + (i64)f2 * g8_19 + (i64)f3_2 * g7_19 + (i64)f4 * g6_19 +
             (i64)f5_2 * g5_19 + (i64)f6 * g4_19 + (i64)f7_2 * g3_19 + (i64)f8 * g2_19 +
             (i64)f9_2 * g1_19;
    t[1] = (i64)f0 * g1 + (i64)f1 * g0 + (i64)f2 * g9_19 + (i64)f3 * g8_19 + (i64)f4 * g7_19 +
             (i64)f5 * g6_19 + (i64)f6 * g5_19 + (i64)f7 * g4_19 + (i64)f8 * g3_19 + (i64)f9 * g2_19;
    t[2] = (i64)f0 * g2 + (i64)f1_2 * g1 + (i64)f2 * g0 + (i64)f3_2 * g9_19 + (i64)f4 * g8_19 +
             (i64)f5_2 * g7_19 + (i64)f6 * g6_19 + (i64)f7_2 * g5_19 + (i64)f8 * g4_19 +
             (i64)f9_2 * g3_19;
    t[3] = (i64)f0 * g3 + (i64)f1 * g2 + (i64)f2 * g1 + (i64)f3 * g0 + (i64)f4 * g9_19 + (i64)f5 * g8_19 +
             (i64)f6 * g7_19 + (i64)f7 * g6_19 + (i64)f8 * g5_19 + (i64)f9 * g4_19;
    t[4] = (i64)f0 * g4 + (i64)f1_2 * g3 + (i64)f2 * g2 + (i64)f3_2 * g1 + (i64)f4 * g0 +
             (i64)f5_2 * g9_19 + (i64)f6 * g8_19 + (i64)f7_2 * g7_19 + (i64)f8 * g6_19 +
             (i64)f9_2 * g5_19;
    t[5] = (i64)f0 * g5 + (i64)f1 * g4 + (i64)f2 * g3 + (i64)f3 * g2 + (i64)f4 * g1 + (i64)f5 * g0 +
             (i64)f6 * g9_19 + (i64)f7 * g8_19 + (i64)f8 * g7_19 + (i64)f9 * g6_19;
    t[6] = (i64)f0 * g6 + (i64)f1_2 * g5 + (i64)f2 * g4 + (i64)f3_2 * g3 + (i64)f4 * g2 + (i64)f5_2 * g1 +
             (i64)f6 * g0 + (i64)f7_2 * g9_19 + (i64)f8 * g8_19 + (i64)f9_2 * g7_19;
    t[7] = (i64)f0 * g7 + (i64)f1 * g6 + (i64)f2 * g5 + (i64)f3 * g4 + (i64)f4 * g3 + (i64)f5 * g2 +
             (i64)f6 * g1 + (i64)f7 * g0 + (i64)f8 * g9_19 + (i64)f9 * g8_19;
    t[8] = (i64)f0 * g8 + (i64)f1_2 * g7 + (i64)f2 * g6 + (i64)f3_2 * g5 + (i64)f4 * g4 + (i64)f5_2 * g3 +
             (i64)f6 * g2 + (i64)f7_2 * g1 + (i64)f8 * g0 + (i64)f9_2 * g9_19;
    t[9] = (i64)f0 * g9 + (i64)f1 * g8 + (i64)f2 * g7 + (i64)f3 * g6 + (i64)f4 * g5 + (i64)f5 * g4 +
             (i64)f6 * g3 + (i64)f7 * g2 + (i64)f8 * g1 + (i64)f9 * g0;
    bk_fe_carry64(h, t);
}

// h = f^2 (times 2 when dbl is set): ref10's squaring, 55 distinct products instead of 100
// (f[i] f[j] and f[j] f[i] taken once, through 2 f[i]). Same sums as bk_fe_mul(h, f, f), hence
// the same limbs; for 2 f^2 the sums are doubled before the carry (bounds: file header).
static BK_HD BK_INLINE void bk_fe_sq_impl(bk_fe* h, const bk_fe* f, int dbl) {
    i32 f0 = f->v[0], f1 = f->v[1], f2 = f->v[2], f3 = f->v[3], f4 = f->v[4];
    i32 f5 = f->v[5], f6 = f->v[6], f7 = f->v[7], f8 = f->v[8], f9 = f->v[9];
    i32 f0_2 = 2 * f0, f1_2 = 2 * f1, f2_2 = 2 * f2, f3_2 = 2 * f3;
    i32 f4_2 = 2 * f4, f5_2 = 2 * f5, f6_2 = 2 * f6, f7_2 = 2 * f7;
    i32 f5_38 = 38 * f5, f6_19 = 19 * f6, f7_38 = 38 * f7, f8_19 = 19 * f8, f9_38 = 38 * f9;
    i64 t[10];
    t[0] = (i64)f0 * f0 + (i64)f1_2 * f9_38 + (i64)f2_2 * f8_19 + (i64)f3_2 * f7_38 + (i64)f4_2 * f6_19 +
             (i64)f5 * f5_38;
    t[1] = (i64)f0 * f1_2 + (i64)f2 * f9_38 + (i64)f3_2 * f8_19 + (i64)f4 * f7_38 + (i64)f5_2 * f6_19;
    t[2] = (i64)f0 * f2_2 + (i64)f1 * f1_2 + (i64)f3_2 * f9_38 + (i64)f4_2 * f8_19 + (i64)f5_2 * f7_38 +
             (i64)f6 * f6_19;
    t[3] = (i64)f0 * f3_2 + (i64)f1 * f2_2 + (i64)f4 * f9_38 + (i64)f5_2 * f8_19 + (i64)f6 * f7_38;
    t[4] = (i64)f0 * f4_2 + (i64)f1_2 * f3_2 + (i64)f2 * f2 + (i64)f5_2 * f9_38 + (i64)f6_2 * f8_19 +
             (i64)f7 * f7_38;
    t[5] = (i64)f0 * f5_2 + (i64)f1 * f4_2 + (i64)f2 * f3_2 + (i64)f6 * f9_38 + (i64)f7_2 * f8_19;
    t[6] = (i64)f0 * f6_2 + (i64)f1_2 * f5_2 + (i64)f2 * f4_2 + (i64)f3 * f3_2 + (i64)f7_2 * f9_38 +
             (i64)f8 * f8_19;
    t[7] = (i64)f0 * f7_2 + (i64)f1 * f6_2 + (i64)f2 * f5_2 + (i64)f3 * f4_2 + (i64)f8 * f9_38;
    t[8] = (i64)f0_2 * f8 + (i64)f1_2 * f7_2 + (i64)f2 * f6_2 + (i64)f3_2 * f5_2 + (i64)f4 * f4 +
             (i64)f9 * f9_38;
    t[9] = (i64)f0_2 * f9 + (i64)f1_2 * f8 + (i64)f2 * f7_2 + (i64)f3 * f6_2 + (i64)f4 * f5_2;
    if (dbl) {
        for (int i = 0; i < 10; i++) t[i] += t[i];
    }
    bk_fe_carry64(h, t);
}

static BK_HD inline void bk_fe_sq(bk_fe* h, const bk_fe* f) { bk_fe_sq_impl(h, f, 0); }

// h = 2 * f^2.
static BK_HD inline void bk_fe_sq2(bk_fe* h, const bk_fe* f) { bk_fe_sq_impl(h, f, 1); }

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
