// gpu_bench.cu: throughput of the ed25519 kernel on a real GPU, before the `gpu` backend of
// `accel` exists (issue 7). Built with nvcc on the GPU machine:
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -I kernels/cuda kernels/bench/gpu_bench.cu -o gpu_bench
//   ./gpu_bench BATCH_FILE > result.json
//
// BATCH_FILE is what `BASTION_DUMP_BATCH=FILE cargo test -p bastion-kernels --test
// ed25519_host campaign` writes: the campaign's items in the kernel's layout with
// ed25519-zebra's verdicts. Every item is first verified once on the GPU and compared with
// zebra's verdict (any disagreement fails the run). The throughput batches are the valid items
// only (an invalid one can stop early), repeated to each batch size; per size it reports the
// kernel alone (CUDA events) and the round trip (pinned host buffers, copy in, kernel, copy
// out, one stream), best of several repetitions, as one JSON object per line.
#include "ed25519_verify.cu"

#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CHECK(call)                                                                        \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess) {                                                           \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,             \
                         cudaGetErrorString(e_));                                          \
            std::exit(2);                                                                  \
        }                                                                                  \
    } while (0)

struct Batch {
    u32 n = 0;
    std::vector<u8> pks, sigs, msgs, verdicts;
    std::vector<u32> offsets;
};

static Batch read_batch(const char* path) {
    FILE* f = std::fopen(path, "rb");
    if (!f) {
        std::fprintf(stderr, "cannot open %s\n", path);
        std::exit(2);
    }
    std::vector<u8> bytes;
    u8 buf[65536];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + got);
    std::fclose(f);
    size_t at = 0;
    auto take = [&](size_t len) {
        if (at + len > bytes.size()) {
            std::fprintf(stderr, "%s: truncated\n", path);
            std::exit(2);
        }
        const u8* p = bytes.data() + at;
        at += len;
        return p;
    };
    Batch b;
    std::memcpy(&b.n, take(4), 4);
    const u8* p = take(32 * (size_t)b.n);
    b.pks.assign(p, p + 32 * (size_t)b.n);
    p = take(64 * (size_t)b.n);
    b.sigs.assign(p, p + 64 * (size_t)b.n);
    b.offsets.resize(b.n + 1);
    std::memcpy(b.offsets.data(), take(4 * ((size_t)b.n + 1)), 4 * ((size_t)b.n + 1));
    p = take(b.offsets[b.n]);
    b.msgs.assign(p, p + b.offsets[b.n]);
    p = take(b.n);
    b.verdicts.assign(p, p + b.n);
    return b;
}

// The items `pick` of `src`, repeated to `n` items, packed in the kernel's layout.
static Batch repeat(const Batch& src, const std::vector<u32>& pick, u32 n) {
    Batch b;
    b.n = n;
    b.offsets.push_back(0);
    for (u32 i = 0; i < n; i++) {
        u32 j = pick[i % pick.size()];
        b.pks.insert(b.pks.end(), src.pks.begin() + 32 * (size_t)j, src.pks.begin() + 32 * (size_t)j + 32);
        b.sigs.insert(b.sigs.end(), src.sigs.begin() + 64 * (size_t)j, src.sigs.begin() + 64 * (size_t)j + 64);
        b.msgs.insert(b.msgs.end(), src.msgs.begin() + src.offsets[j], src.msgs.begin() + src.offsets[j + 1]);
        b.offsets.push_back((u32)b.msgs.size());
        b.verdicts.push_back(src.verdicts[j]);
    }
    return b;
}

struct Device {
    u8 *pks = nullptr, *sigs = nullptr, *msgs = nullptr, *out = nullptr;
    u32* offsets = nullptr;
};

struct Timing {
    double kernel_ms, round_trip_ms;
    u32 mismatches;
};

static Timing run(const Batch& b, int reps, int threads) {
    Device d;
    CHECK(cudaMalloc(&d.pks, b.pks.size()));
    CHECK(cudaMalloc(&d.sigs, b.sigs.size()));
    CHECK(cudaMalloc(&d.msgs, b.msgs.size() ? b.msgs.size() : 1));
    CHECK(cudaMalloc(&d.offsets, b.offsets.size() * 4));
    CHECK(cudaMalloc(&d.out, b.n));
    u8 *h_pks, *h_sigs, *h_msgs, *h_out;
    u32* h_offsets;
    CHECK(cudaMallocHost(&h_pks, b.pks.size()));
    CHECK(cudaMallocHost(&h_sigs, b.sigs.size()));
    CHECK(cudaMallocHost(&h_msgs, b.msgs.size() ? b.msgs.size() : 1));
    CHECK(cudaMallocHost(&h_offsets, b.offsets.size() * 4));
    CHECK(cudaMallocHost(&h_out, b.n));
    std::memcpy(h_pks, b.pks.data(), b.pks.size());
    std::memcpy(h_sigs, b.sigs.data(), b.sigs.size());
    if (b.msgs.size()) std::memcpy(h_msgs, b.msgs.data(), b.msgs.size());
    std::memcpy(h_offsets, b.offsets.data(), b.offsets.size() * 4);
    cudaStream_t s;
    CHECK(cudaStreamCreate(&s));
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    u32 blocks = (b.n + threads - 1) / threads;
    Timing t{1e30, 1e30, 0};
    for (int r = 0; r < reps + 1; r++) {
        auto start = std::chrono::steady_clock::now();
        CHECK(cudaMemcpyAsync(d.pks, h_pks, b.pks.size(), cudaMemcpyHostToDevice, s));
        CHECK(cudaMemcpyAsync(d.sigs, h_sigs, b.sigs.size(), cudaMemcpyHostToDevice, s));
        if (b.msgs.size()) CHECK(cudaMemcpyAsync(d.msgs, h_msgs, b.msgs.size(), cudaMemcpyHostToDevice, s));
        CHECK(cudaMemcpyAsync(d.offsets, h_offsets, b.offsets.size() * 4, cudaMemcpyHostToDevice, s));
        CHECK(cudaEventRecord(e0, s));
        bk_ed25519_verify_batch<<<blocks, threads, 0, s>>>(d.pks, d.sigs, d.msgs, d.offsets, b.n, d.out);
        CHECK(cudaGetLastError());
        CHECK(cudaEventRecord(e1, s));
        CHECK(cudaMemcpyAsync(h_out, d.out, b.n, cudaMemcpyDeviceToHost, s));
        CHECK(cudaStreamSynchronize(s));
        double rt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        float k = 0;
        CHECK(cudaEventElapsedTime(&k, e0, e1));
        if (r == 0) continue;  // warm-up (module load, clocks)
        if (k < t.kernel_ms) t.kernel_ms = k;
        if (rt < t.round_trip_ms) t.round_trip_ms = rt;
    }
    for (u32 i = 0; i < b.n; i++) t.mismatches += (h_out[i] != 0) != (b.verdicts[i] != 0);
    cudaFree(d.pks);
    cudaFree(d.sigs);
    cudaFree(d.msgs);
    cudaFree(d.offsets);
    cudaFree(d.out);
    cudaFreeHost(h_pks);
    cudaFreeHost(h_sigs);
    cudaFreeHost(h_msgs);
    cudaFreeHost(h_offsets);
    cudaFreeHost(h_out);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaStreamDestroy(s);
    return t;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s BATCH_FILE [threads per block]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? std::atoi(argv[2]) : 128;
    Batch all = read_batch(argv[1]);
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("{\"device\":\"%s\",\"sm\":%d%d,\"multiprocessors\":%d,\"items\":%u,\"threads_per_block\":%d}\n",
                prop.name, prop.major, prop.minor, prop.multiProcessorCount, all.n, threads);
    // 1. Every campaign item once, against zebra's verdicts.
    Timing check = run(all, 1, threads);
    u32 valid = 0;
    std::vector<u32> pick;
    for (u32 i = 0; i < all.n; i++)
        if (all.verdicts[i]) pick.push_back(i), valid++;
    std::printf("{\"check\":\"campaign vs ed25519-zebra\",\"items\":%u,\"zebra_valid\":%u,\"mismatches\":%u}\n",
                all.n, valid, check.mismatches);
    if (check.mismatches != 0) return 1;
    // 2. Throughput on valid signatures.
    const u32 sizes[] = {1024, 4096, 16384, 65536, 262144, 1048576};
    for (u32 n : sizes) {
        Batch b = repeat(all, pick, n);
        int reps = n >= 262144 ? 3 : 10;
        Timing t = run(b, reps, threads);
        std::printf("{\"batch\":%u,\"kernel_ms\":%.4f,\"round_trip_ms\":%.4f,\"kernel_verifies_per_s\":%.0f,"
                    "\"round_trip_verifies_per_s\":%.0f,\"mismatches\":%u}\n",
                    n, t.kernel_ms, t.round_trip_ms, n / (t.kernel_ms / 1e3), n / (t.round_trip_ms / 1e3),
                    t.mismatches);
        if (t.mismatches != 0) return 1;
    }
    return 0;
}
