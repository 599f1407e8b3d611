// bk_common.cuh: portability layer for the device math, shared by CUDA (nvcc / NVRTC) and the
// host build (g++ / clang++ through the `cc` crate).
//
// - BK_HD marks functions compiled for both sides (__host__ __device__ under CUDA, nothing on
//   the host); BK_INLINE forces inlining where the compiler allows it.
// - BK_TABLE declares a read-only lookup table: constant memory on the device, a static const
//   array on the host.
// - Fixed-width integer types without <stdint.h> under NVRTC (which has no standard headers).
#ifndef BK_COMMON_CUH
#define BK_COMMON_CUH

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define BK_HD __host__ __device__
#define BK_INLINE __forceinline__
#else
#define BK_HD
#define BK_INLINE inline
#endif

#if defined(__CUDA_ARCH__)
#define BK_TABLE static __constant__ const
#else
#define BK_TABLE static const
#endif

#if defined(__CUDACC_RTC__)
typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int i32;
typedef long long i64;
#else
#include <stdint.h>
typedef uint8_t u8;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t i32;
typedef int64_t i64;
#endif

#endif // BK_COMMON_CUH
