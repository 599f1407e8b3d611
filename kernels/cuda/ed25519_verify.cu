// ed25519_verify.cu: batch ed25519 verification (ZIP-215), one thread per signature.
//
// Layout (packed by the host, see kernels/src/host.rs): item i has its public key at
// pks[32 i .. 32 i + 32], its signature at sigs[64 i .. 64 i + 64] and its message at
// msgs[msg_offsets[i] .. msg_offsets[i + 1]]; msg_offsets has n + 1 entries. out[i] receives 1
// (valid) or 0 (invalid).
#include "bk_ed25519.cuh"

// Launch with 128 threads per block. The bounds cap registers at 128 per thread (65536 / (128 x
// 4)): without them ptxas gives each thread 255 registers and occupancy falls; measured on an
// H100, 3.0M verifies/s uncapped against 4.4M/s capped (perf/results/issue7-gpu-h100.md).
#define BK_VERIFY_THREADS 128
extern "C" __global__ void __launch_bounds__(BK_VERIFY_THREADS, 4) bk_ed25519_verify_batch(const u8* pks, const u8* sigs, const u8* msgs,
                                                   const u32* msg_offsets, u32 n, u8* out) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    u32 start = msg_offsets[i];
    u32 end = msg_offsets[i + 1];
    out[i] = (u8)bk_ed25519_verify(pks + 32 * (u64)i, sigs + 64 * (u64)i, msgs + start, (u64)(end - start));
}

// The same verification with the challenge k = SHA-512(R || A || M) mod L computed by the host
// (the backend's "hash on the host" mode): item i's k is ks[32 i .. 32 i + 32]. Each item then
// moves 128 bytes over the bus whatever its message length, and the device skips SHA-512.
// Which mode is faster depends on the card, the host's cores and the message sizes, so the
// backend measures both (accel: calibration and `sigverify --backend gpu`).
extern "C" __global__ void __launch_bounds__(BK_VERIFY_THREADS, 4)
    bk_ed25519_verify_prehashed_batch(const u8* pks, const u8* sigs, const u8* ks, u32 n, u8* out) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[i] = (u8)bk_ed25519_verify_k(pks + 32 * (u64)i, sigs + 64 * (u64)i, ks + 32 * (u64)i);
}
