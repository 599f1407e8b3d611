// bk_ge25519.cuh: the edwards25519 group (-x^2 + y^2 = 1 + d x^2 y^2) in extended coordinates
// (ref10's representations and formulas, the same complete a = -1 formulas curve25519-dalek
// uses), decompression exactly as curve25519-dalek's CompressedEdwardsY::decompress (ZIP-215),
// and a variable-time double-scalar multiplication.
#ifndef BK_GE25519_CUH
#define BK_GE25519_CUH

#include "bk_common.cuh"
#include "bk_fe25519.cuh"
#include "bk_sha512.cuh"
#include "bk_ed25519_btable.cuh"

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

// Affine precomputed form (Z = 1): (y + x, y - x, 2 d x y); the basepoint table's entries.
typedef struct {
    bk_fe yplusx, yminusx, xy2d;
} bk_ge_precomp;

// The curve constants, as limbs (generated with the basepoint table): loading them costs ten
// moves, not a 255-step bk_fe_frombytes.
static BK_HD BK_INLINE void bk_fe_from_limbs(bk_fe* h, const i32 l[10]) {
    for (int i = 0; i < 10; i++) h->v[i] = l[i];
}

// d = -121665 / 121666 mod p.
static BK_HD BK_INLINE void bk_fe_d(bk_fe* h) {
    const i32 l[10] = BK_FE_D_LIMBS;
    bk_fe_from_limbs(h, l);
}

// 2 d mod p.
static BK_HD BK_INLINE void bk_fe_d2(bk_fe* h) {
    const i32 l[10] = BK_FE_D2_LIMBS;
    bk_fe_from_limbs(h, l);
}

// sqrt(-1) = 2^((p - 1) / 4) mod p.
static BK_HD BK_INLINE void bk_fe_sqrtm1(bk_fe* h) {
    const i32 l[10] = BK_FE_SQRTM1_LIMBS;
    bk_fe_from_limbs(h, l);
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
// Out of line on the device (BK_NOINLINE, bk_sha512.cuh): two call sites (A and R), each ~270
// field operations, so the call costs nothing measurable and the cubin holds one copy.
static BK_HD BK_NOINLINE int bk_ge_frombytes(bk_ge_p3* h, const u8 s[32]) {
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
    bk_fe_d2(&d2);
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

// r = p + q, q affine (ref10's ge_madd: no Z1 Z2 product).
static BK_HD inline void bk_ge_madd(bk_ge_p1p1* r, const bk_ge_p3* p, const bk_ge_precomp* q) {
    bk_fe t0;
    bk_fe_add(&r->X, &p->Y, &p->X);
    bk_fe_sub(&r->Y, &p->Y, &p->X);
    bk_fe_mul(&r->Z, &r->X, &q->yplusx);
    bk_fe_mul(&r->Y, &r->Y, &q->yminusx);
    bk_fe_mul(&r->T, &q->xy2d, &p->T);
    bk_fe_add(&t0, &p->Z, &p->Z);
    bk_fe_sub(&r->X, &r->Z, &r->Y);
    bk_fe_add(&r->Y, &r->Z, &r->Y);
    bk_fe_add(&r->Z, &t0, &r->T);
    bk_fe_sub(&r->T, &t0, &r->T);
}

// -(x, y) = (-x, y): in cached or precomp form, swap y + x with y - x and negate 2 d x y (the
// negated limbs keep the bounds). Branch-free selects, so a warp whose threads have digits of
// both signs runs one addition, not an addition and a subtraction.
static BK_HD BK_INLINE void bk_fe_cswap_neg(bk_fe* p, bk_fe* m, bk_fe* t, int neg) {
    for (int i = 0; i < 10; i++) {
        i32 a = p->v[i], b = m->v[i], c = t->v[i];
        p->v[i] = neg ? b : a;
        m->v[i] = neg ? a : b;
        t->v[i] = neg ? -c : c;
    }
}

// [|d|]B for 1 <= |d| <= 128 from the precomputed table (bk_ed25519_btable.cuh), negated when
// d < 0. On the device the 128-byte entry comes in eight 16-byte loads through the read-only
// cache (see the table's header for the placement).
static BK_HD BK_INLINE void bk_ge_btable_select(bk_ge_precomp* r, int d) {
    int neg = d < 0;
    int i = (neg ? -d : d) - 1;
#if defined(__CUDA_ARCH__)
    const int4* src = (const int4*)BK_ED25519_BTABLE[i].v;
    i32 w[32];
#pragma unroll
    for (int k = 0; k < 8; k++) {
        int4 q = __ldg(src + k);
        w[4 * k] = q.x;
        w[4 * k + 1] = q.y;
        w[4 * k + 2] = q.z;
        w[4 * k + 3] = q.w;
    }
#else
    const i32* w = BK_ED25519_BTABLE[i].v;
#endif
    for (int k = 0; k < 10; k++) {
        r->yplusx.v[k] = w[k];
        r->yminusx.v[k] = w[10 + k];
        r->xy2d.v[k] = w[20 + k];
    }
    bk_fe_cswap_neg(&r->yplusx, &r->yminusx, &r->xy2d, neg);
}

// table[i] = [i + 1] p for i = 0..7, cached: [1..8] p for signed digits in [-8, 8].
static BK_HD inline void bk_ge_table8(bk_ge_cached table[8], const bk_ge_p3* p) {
    bk_ge_p3 acc = *p;
    bk_ge_p1p1 t;
    bk_ge_p3_to_cached(&table[0], p);
    for (int i = 1; i < 8; i++) {
        bk_ge_add(&t, &acc, &table[0]);
        bk_ge_p1p1_to_p3(&acc, &t);
        bk_ge_p3_to_cached(&table[i], &acc);
    }
}

// Signed radix-16 digits of a 32-byte little-endian scalar a < 2^255: a = sum e[i] 16^i with
// e[i] in [-8, 8) for i < 63 and e[63] in [0, 8] (ref10). For a reduced scalar (< L < 2^253),
// e[63] <= 2.
static BK_HD BK_INLINE void bk_sc_signed_radix16(signed char e[64], const u8 a[32]) {
    for (int i = 0; i < 32; i++) {
        e[2 * i] = (signed char)(a[i] & 15);
        e[2 * i + 1] = (signed char)(a[i] >> 4);
    }
    int carry = 0;
    for (int i = 0; i < 63; i++) {
        int v = e[i] + carry;
        carry = (v + 8) >> 4;
        e[i] = (signed char)(v - (carry << 4));
    }
    e[63] = (signed char)(e[63] + carry);
}

// Signed radix-256 digits of a 32-byte little-endian scalar b < L: b = sum e[i] 256^i with
// e[i] in [-128, 128) for i < 31, and e[31] = b[31] + carry <= 0x10 + 1 (b < L < 2^253), so every
// |digit| <= 128, inside the basepoint table.
static BK_HD BK_INLINE void bk_sc_signed_radix256(signed char e[32], const u8 b[32]) {
    int carry = 0;
    for (int i = 0; i < 31; i++) {
        int v = b[i] + carry;
        carry = (v + 128) >> 8;
        e[i] = (signed char)(v - (carry << 8));
    }
    e[31] = (signed char)(b[31] + carry);
}

// r = [a] A + [b] B, B the basepoint (variable time: the scalars and points are public). a is a
// reduced scalar (< L), b a canonical one (< L), both 32-byte little-endian.
//
// Fixed windows, so every thread of a warp adds at the same steps (a sliding window's additions
// fall at data-dependent steps, and a warp would run the union of its threads' additions):
// - [a]A: signed radix-16 digits in [-8, 8], an 8-entry cached table built per thread, an
//   addition every 4 doublings (64 in all; 7 to build the table, against 15 for unsigned digits);
// - [b]B: signed radix-256 digits in [-128, 128], the precomputed 128-entry affine table of
//   bk_ed25519_btable.cuh, a mixed addition (bk_ge_madd) every 8 doublings (32 in all). Nothing
//   about B is computed at run time.
// Between additions the point stays projective (p2): a doubling needs no T, and only the point
// entering an addition is converted to extended coordinates (p3).
static BK_HD inline void bk_ge_double_scalarmult_vartime(bk_ge_p3* r, const u8 a[32], const bk_ge_p3* A,
                                                         const u8 b[32]) {
    signed char ea[64], eb[32];
    bk_sc_signed_radix16(ea, a);
    bk_sc_signed_radix256(eb, b);
    bk_ge_cached ta[8];
    bk_ge_table8(ta, A);

    bk_ge_p1p1 t;
    bk_ge_p2 q;
    bk_ge_p3 u;
    bk_ge_precomp pb;
    bk_ge_cached ca;
    bk_ge_p3_0(&u);
    for (int i = 63; i >= 0; i--) {
        int da = ea[i];
        int db = (i & 1) ? 0 : eb[i >> 1];
        if (i != 63) {
            // u = [16] q, in p3 when an addition follows.
            bk_ge_p2_dbl(&t, &q);
            bk_ge_p1p1_to_p2(&q, &t);
            bk_ge_p2_dbl(&t, &q);
            bk_ge_p1p1_to_p2(&q, &t);
            bk_ge_p2_dbl(&t, &q);
            bk_ge_p1p1_to_p2(&q, &t);
            bk_ge_p2_dbl(&t, &q);
            if (da == 0 && db == 0) {
                if (i == 0) {
                    bk_ge_p1p1_to_p3(r, &t);
                    return;
                }
                bk_ge_p1p1_to_p2(&q, &t);
                continue;
            }
            bk_ge_p1p1_to_p3(&u, &t);
        } else if (da == 0 && db == 0) {
            bk_ge_p3_to_p2(&q, &u);
            continue;
        }
        // Here u (p3) is the running point and at least one digit is nonzero.
        if (da != 0) {
            int neg = da < 0;
            ca = ta[(neg ? -da : da) - 1];
            bk_fe_cswap_neg(&ca.YplusX, &ca.YminusX, &ca.T2d, neg);
            bk_ge_add(&t, &u, &ca);
            if (db != 0) bk_ge_p1p1_to_p3(&u, &t);
        }
        if (db != 0) {
            bk_ge_btable_select(&pb, db);
            bk_ge_madd(&t, &u, &pb);
        }
        if (i == 0) {
            bk_ge_p1p1_to_p3(r, &t);
            return;
        }
        bk_ge_p1p1_to_p2(&q, &t);
    }
}

#endif // BK_GE25519_CUH
