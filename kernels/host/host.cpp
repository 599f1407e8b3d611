// host.cpp: the device math (kernels/cuda/*.cuh) compiled for the host, so the exact code the
// GPU runs is tested on the CPU. Exposed to Rust through kernels/src/host.rs.
#include "bk_ed25519.cuh"

extern "C" int bk_host_ed25519_verify(const unsigned char* pk, const unsigned char* sig,
                                      const unsigned char* msg, unsigned long long len) {
    return bk_ed25519_verify(pk, sig, msg, (u64)len);
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
