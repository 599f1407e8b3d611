// bk_ge25519.cuh: the edwards25519 group (-x^2 + y^2 = 1 + d x^2 y^2) in extended coordinates
// (ref10's representations and formulas, the same complete a = -1 formulas curve25519-dalek
// uses), decompression exactly as curve25519-dalek's CompressedEdwardsY::decompress (ZIP-215),
// and a variable-time double-scalar multiplication.
#ifndef BK_GE25519_CUH
#define BK_GE25519_CUH

#include "bk_common.cuh"
#include "bk_fe25519.cuh"

// Projective (X : Y : Z), x = X / Z, y = Y / Z.
typedef struct {
    bk_fe X, Y, Z;
} bk_ge_p2;

// Extended (X : Y : Z : T), additionally x y = T / Z.
typedef struct {
    bk_fe X, Y, Z, T;
} bk_ge_p3;

// Completed ((X : Z), (Y : T)): the result of an addition or doubling before the final products.
typedef struct {
    bk_fe X, Y, Z, T;
} bk_ge_p1p1;

// Cached form of a point for additions: (Y + X, Y - X, Z, 2 d T).
typedef struct {
    bk_fe YplusX, YminusX, Z, T2d;
} bk_ge_cached;

static BK_HD BK_INLINE void bk_fe_d(bk_fe* h) {
    // d = -121665 / 121666 mod p, little-endian.
    const u8 b[32] = {0xa3, 0x78, 0x59, 0x13, 0xca, 0x4d, 0xeb, 0x75, 0xab, 0xd8, 0x41,
                      0x41, 0x4d, 0x0a, 0x70, 0x00, 0x98, 0xe8, 0x79, 0x77, 0x79, 0x40,
                      0xc7, 0x8c, 0x73, 0xfe, 0x6f, 0x2b, 0xee, 0x6c, 0x03, 0x52};
    bk_fe_frombytes(h, b);
}

static BK_HD BK_INLINE void bk_fe_sqrtm1(bk_fe* h) {
    // sqrt(-1) = 2^((p - 1) / 4) mod p, little-endian.
    const u8 b[32] = {0xb0, 0xa0, 0x0e, 0x4a, 0x27, 0x1b, 0xee, 0xc4, 0x78, 0xe4, 0x2f,
                      0xad, 0x06, 0x18, 0x43, 0x2f, 0xa7, 0xd7, 0xfb, 0x3d, 0x99, 0x00,
                      0x4d, 0x2b, 0x0b, 0xdf, 0xc1, 0x4f, 0x80, 0x24, 0x83, 0x2b};
    bk_fe_frombytes(h, b);
}

static BK_HD BK_INLINE void bk_ge_p3_0(bk_ge_p3* h) {
    bk_fe_0(&h->X);
    bk_fe_1(&h->Y);
    bk_fe_1(&h->Z);
    bk_fe_0(&h->T);
}

// Decodes a 32-byte encoding as curve25519-dalek's CompressedEdwardsY::decompress does, the
// decoding ZIP-215 prescribes: y is the low 255 bits taken mod p (y >= p accepted), x is
// recovered from x^2 = (y^2 - 1) / (d y^2 + 1) and the decoding fails only when that is not a
// square; of the two roots, the one whose low bit equals the sign bit (bit 255) is taken, and
// x = 0 with the sign bit set is accepted (as x = 0, like dalek's conditional negation of 0).
// Returns 1 on success, 0 on failure.
static BK_HD inline int bk_ge_frombytes(bk_ge_p3* h, const u8 s[32]) {
    bk_fe u, v, v3, vxx, check, d, t;
    bk_fe_frombytes(&h->Y, s);
    bk_fe_1(&h->Z);
    bk_fe_d(&d);
    bk_fe_sq(&u, &h->Y);
    bk_fe_mul(&v, &u, &d);
    bk_fe_sub(&u, &u, &h->Z); // u = y^2 - 1
    bk_fe_add(&v, &v, &h->Z); // v = d y^2 + 1
    bk_fe_carry(&u, &u);
    bk_fe_carry(&v, &v);

    bk_fe_sq(&v3, &v);
    bk_fe_mul(&v3, &v3, &v);      // v^3
    bk_fe_sq(&h->X, &v3);
    bk_fe_mul(&h->X, &h->X, &v);
    bk_fe_mul(&h->X, &h->X, &u);  // u v^7
    bk_fe_pow22523(&h->X, &h->X); // (u v^7)^((p - 5) / 8)
    bk_fe_mul(&h->X, &h->X, &v3);
    bk_fe_mul(&h->X, &h->X, &u);  // u v^3 (u v^7)^((p - 5) / 8)

    bk_fe_sq(&vxx, &h->X);
    bk_fe_mul(&vxx, &vxx, &v);
    bk_fe_sub(&check, &vxx, &u); // v x^2 - u
    if (!bk_fe_iszero(&check)) {
        bk_fe_add(&check, &vxx, &u); // v x^2 + u
        if (!bk_fe_iszero(&check)) return 0;
        bk_fe_sqrtm1(&t);
        bk_fe_mul(&h->X, &h->X, &t);
    }
    // Choose the root whose low bit is the sign bit; for x = 0 both roots are 0.
    if (bk_fe_isnegative(&h->X) != (s[31] >> 7)) {
        bk_fe_neg(&h->X, &h->X);
        bk_fe_carry(&h->X, &h->X);
    }
    bk_fe_mul(&h->T, &h->X, &h->Y);
    return 1;
}

static BK_HD BK_INLINE void bk_ge_p3_to_cached(bk_ge_cached* r, const bk_ge_p3* p) {
    bk_fe d2;
    bk_fe_d(&d2);
    bk_fe_add(&d2, &d2, &d2);
    bk_fe_carry(&d2, &d2);
    bk_fe_add(&r->YplusX, &p->Y, &p->X);
    bk_fe_sub(&r->YminusX, &p->Y, &p->X);
    bk_fe_carry(&r->YplusX, &r->YplusX);
    bk_fe_carry(&r->YminusX, &r->YminusX);
    bk_fe_copy(&r->Z, &p->Z);
    bk_fe_mul(&r->T2d, &p->T, &d2);
}

static BK_HD BK_INLINE void bk_ge_p1p1_to_p2(bk_ge_p2* r, const bk_ge_p1p1* p) {
    bk_fe_mul(&r->X, &p->X, &p->T);
    bk_fe_mul(&r->Y, &p->Y, &p->Z);
    bk_fe_mul(&r->Z, &p->Z, &p->T);
}

static BK_HD BK_INLINE void bk_ge_p1p1_to_p3(bk_ge_p3* r, const bk_ge_p1p1* p) {
    bk_fe_mul(&r->X, &p->X, &p->T);
    bk_fe_mul(&r->Y, &p->Y, &p->Z);
    bk_fe_mul(&r->Z, &p->Z, &p->T);
    bk_fe_mul(&r->T, &p->X, &p->Y);
}

static BK_HD BK_INLINE void bk_ge_p3_to_p2(bk_ge_p2* r, const bk_ge_p3* p) {
    bk_fe_copy(&r->X, &p->X);
    bk_fe_copy(&r->Y, &p->Y);
    bk_fe_copy(&r->Z, &p->Z);
}

// r = 2 p (dbl-2008-hwcd, a = -1).
static BK_HD inline void bk_ge_p2_dbl(bk_ge_p1p1* r, const bk_ge_p2* p) {
    bk_fe t0;
    bk_fe_sq(&r->X, &p->X);
    bk_fe_sq(&r->Z, &p->Y);
    bk_fe_sq2(&r->T, &p->Z);
    bk_fe_add(&r->Y, &p->X, &p->Y);
    bk_fe_sq(&t0, &r->Y);
    bk_fe_add(&r->Y, &r->Z, &r->X);
    bk_fe_sub(&r->Z, &r->Z, &r->X);
    bk_fe_sub(&r->X, &t0, &r->Y);
    bk_fe_sub(&r->T, &r->T, &r->Z);
}

static BK_HD BK_INLINE void bk_ge_p3_dbl(bk_ge_p1p1* r, const bk_ge_p3* p) {
    bk_ge_p2 q;
    bk_ge_p3_to_p2(&q, p);
    bk_ge_p2_dbl(r, &q);
}

// r = p + q (add-2008-hwcd-3, complete on edwards25519).
static BK_HD inline void bk_ge_add(bk_ge_p1p1* r, const bk_ge_p3* p, const bk_ge_cached* q) {
    bk_fe t0;
    bk_fe_add(&r->X, &p->Y, &p->X);
    bk_fe_sub(&r->Y, &p->Y, &p->X);
    bk_fe_mul(&r->Z, &r->X, &q->YplusX);
    bk_fe_mul(&r->Y, &r->Y, &q->YminusX);
    bk_fe_mul(&r->T, &q->T2d, &p->T);
    bk_fe_mul(&r->X, &p->Z, &q->Z);
    bk_fe_add(&t0, &r->X, &r->X);
    bk_fe_sub(&r->X, &r->Z, &r->Y);
    bk_fe_add(&r->Y, &r->Z, &r->Y);
    bk_fe_add(&r->Z, &t0, &r->T);
    bk_fe_sub(&r->T, &t0, &r->T);
}

// r = p - q.
static BK_HD inline void bk_ge_sub(bk_ge_p1p1* r, const bk_ge_p3* p, const bk_ge_cached* q) {
    bk_fe t0;
    bk_fe_add(&r->X, &p->Y, &p->X);
    bk_fe_sub(&r->Y, &p->Y, &p->X);
    bk_fe_mul(&r->Z, &r->X, &q->YminusX);
    bk_fe_mul(&r->Y, &r->Y, &q->YplusX);
    bk_fe_mul(&r->T, &q->T2d, &p->T);
    bk_fe_mul(&r->X, &p->Z, &q->Z);
    bk_fe_add(&t0, &r->X, &r->X);
    bk_fe_sub(&r->X, &r->Z, &r->Y);
    bk_fe_add(&r->Y, &r->Z, &r->Y);
    bk_fe_sub(&r->Z, &t0, &r->T);
    bk_fe_add(&r->T, &t0, &r->T);
}

static BK_HD BK_INLINE void bk_ge_neg(bk_ge_p3* r, const bk_ge_p3* p) {
    bk_fe_neg(&r->X, &p->X);
    bk_fe_copy(&r->Y, &p->Y);
    bk_fe_copy(&r->Z, &p->Z);
    bk_fe_neg(&r->T, &p->T);
}

// r = [8] p (three doublings).
static BK_HD inline void bk_ge_mul8(bk_ge_p3* r, const bk_ge_p3* p) {
    bk_ge_p1p1 t;
    bk_ge_p2 q;
    bk_ge_p3_dbl(&t, p);
    bk_ge_p1p1_to_p2(&q, &t);
    bk_ge_p2_dbl(&t, &q);
    bk_ge_p1p1_to_p2(&q, &t);
    bk_ge_p2_dbl(&t, &q);
    bk_ge_p1p1_to_p3(r, &t);
}

// The neutral element: X = 0 and Y = Z (projectively x = 0, y = 1).
static BK_HD BK_INLINE int bk_ge_is_identity(const bk_ge_p3* p) {
    bk_fe t;
    bk_fe_sub(&t, &p->Y, &p->Z);
    return bk_fe_iszero(&p->X) && bk_fe_iszero(&t);
}

// table[i] = [i] p for i = 0..15, cached.
static BK_HD inline void bk_ge_table16(bk_ge_cached table[16], const bk_ge_p3* p) {
    bk_ge_p3 acc, z;
    bk_ge_p1p1 t;
    bk_ge_p3_0(&z);
    bk_ge_p3_to_cached(&table[0], &z);
    bk_ge_p3_to_cached(&table[1], p);
    acc = *p;
    for (int i = 2; i < 16; i++) {
        bk_ge_add(&t, &acc, &table[1]);
        bk_ge_p1p1_to_p3(&acc, &t);
        bk_ge_p3_to_cached(&table[i], &acc);
    }
}

// r = [a] A + [b] B (variable time: the scalars and points are public). a and b are 32-byte
// little-endian scalars; a fixed 4-bit window over both, from the top nibble down.
static BK_HD inline void bk_ge_double_scalarmult_vartime(bk_ge_p3* r, const u8 a[32], const bk_ge_p3* A,
                                                  const u8 b[32], const bk_ge_p3* B) {
    bk_ge_cached ta[16], tb[16];
    bk_ge_table16(ta, A);
    bk_ge_table16(tb, B);
    bk_ge_p1p1 t;
    bk_ge_p2 q;
    bk_ge_p3_0(r);
    for (int j = 63; j >= 0; j--) {
        if (j != 63) {
            bk_ge_p3_dbl(&t, r);
            bk_ge_p1p1_to_p2(&q, &t);
            bk_ge_p2_dbl(&t, &q);
            bk_ge_p1p1_to_p2(&q, &t);
            bk_ge_p2_dbl(&t, &q);
            bk_ge_p1p1_to_p2(&q, &t);
            bk_ge_p2_dbl(&t, &q);
            bk_ge_p1p1_to_p3(r, &t);
        }
        int na = (a[j >> 1] >> ((j & 1) * 4)) & 15;
        int nb = (b[j >> 1] >> ((j & 1) * 4)) & 15;
        if (na) {
            bk_ge_add(&t, r, &ta[na]);
            bk_ge_p1p1_to_p3(r, &t);
        }
        if (nb) {
            bk_ge_add(&t, r, &tb[nb]);
            bk_ge_p1p1_to_p3(r, &t);
        }
    }
}

#endif // BK_GE25519_CUH
