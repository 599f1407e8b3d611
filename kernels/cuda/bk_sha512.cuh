// bk_sha512.cuh: SHA-512 (FIPS 180-4), streaming (init / update / final), so that the
// challenge hash SHA-512(R || A || M) needs no concatenated copy of the message.
#ifndef BK_SHA512_CUH
#define BK_SHA512_CUH

#include "bk_common.cuh"

// Round constants: the first 64 bits of the fractional parts of the cube roots of the first 80
// primes.
BK_TABLE u64 BK_SHA512_K[80] = {
    0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
    0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
    0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
    0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
    0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
    0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
    0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
    0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
    0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
    0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
    0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
    0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
    0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
    0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
    0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
    0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
    0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
    0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
    0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
    0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL
};

typedef struct {
    u64 h[8];
    u8 buf[128];
    u64 total;  // bytes absorbed so far
    u32 buflen; // bytes pending in buf
} bk_sha512_ctx;

static BK_HD BK_INLINE u64 bk_rotr64(u64 x, int n) { return (x >> n) | (x << (64 - n)); }

static BK_HD BK_INLINE u64 bk_load64_be(const u8* p) {
    u64 r = 0;
    for (int i = 0; i < 8; i++) r = (r << 8) | (u64)p[i];
    return r;
}

static BK_HD BK_INLINE void bk_store64_be(u8* p, u64 v) {
    for (int i = 7; i >= 0; i--) {
        p[i] = (u8)(v & 0xff);
        v >>= 8;
    }
}

// BK_NOINLINE: one out-of-line copy on the device. bk_sha512_compress has four call sites
// (update twice, final twice) and each inlined copy of its 80 rounds was several thousand PTX
// instructions; a call costs a few instructions against ~80 x 40 per block.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define BK_NOINLINE __noinline__
#else
#define BK_NOINLINE
#endif

static BK_HD BK_NOINLINE void bk_sha512_compress(u64 h[8], const u8* block) {
    u64 w[16];
    for (int i = 0; i < 16; i++) w[i] = bk_load64_be(block + 8 * i);
    u64 a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 80; i++) {
        u64 wi;
        if (i < 16) {
            wi = w[i];
        } else {
            u64 w15 = w[(i - 15) & 15], w2 = w[(i - 2) & 15];
            u64 s0 = bk_rotr64(w15, 1) ^ bk_rotr64(w15, 8) ^ (w15 >> 7);
            u64 s1 = bk_rotr64(w2, 19) ^ bk_rotr64(w2, 61) ^ (w2 >> 6);
            wi = w[i & 15] + s0 + w[(i - 7) & 15] + s1;
            w[i & 15] = wi;
        }
        u64 S1 = bk_rotr64(e, 14) ^ bk_rotr64(e, 18) ^ bk_rotr64(e, 41);
        u64 ch = (e & f) ^ (~e & g);
        u64 t1 = hh + S1 + ch + BK_SHA512_K[i] + wi;
        u64 S0 = bk_rotr64(a, 28) ^ bk_rotr64(a, 34) ^ bk_rotr64(a, 39);
        u64 maj = (a & b) ^ (a & c) ^ (b & c);
        u64 t2 = S0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

static BK_HD BK_INLINE void bk_sha512_init(bk_sha512_ctx* ctx) {
    // Initial hash value: the first 64 bits of the fractional parts of the square roots of the
    // first 8 primes.
    const u64 iv[8] = {
        0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
        0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL
    };
    for (int i = 0; i < 8; i++) ctx->h[i] = iv[i];
    ctx->total = 0;
    ctx->buflen = 0;
}

static BK_HD inline void bk_sha512_update(bk_sha512_ctx* ctx, const u8* data, u64 len) {
    ctx->total += len;
    if (ctx->buflen > 0) {
        while (len > 0 && ctx->buflen < 128) {
            ctx->buf[ctx->buflen++] = *data++;
            len--;
        }
        if (ctx->buflen < 128) return;
        bk_sha512_compress(ctx->h, ctx->buf);
        ctx->buflen = 0;
    }
    while (len >= 128) {
        bk_sha512_compress(ctx->h, data);
        data += 128;
        len -= 128;
    }
    while (len > 0) {
        ctx->buf[ctx->buflen++] = *data++;
        len--;
    }
}

static BK_HD inline void bk_sha512_final(bk_sha512_ctx* ctx, u8 out[64]) {
    u64 bits = ctx->total << 3;
    u64 bits_hi = ctx->total >> 61;
    u32 n = ctx->buflen;
    ctx->buf[n++] = 0x80;
    if (n > 112) {
        while (n < 128) ctx->buf[n++] = 0;
        bk_sha512_compress(ctx->h, ctx->buf);
        n = 0;
    }
    while (n < 112) ctx->buf[n++] = 0;
    bk_store64_be(ctx->buf + 112, bits_hi);
    bk_store64_be(ctx->buf + 120, bits);
    bk_sha512_compress(ctx->h, ctx->buf);
    for (int i = 0; i < 8; i++) bk_store64_be(out + 8 * i, ctx->h[i]);
}

#endif // BK_SHA512_CUH
