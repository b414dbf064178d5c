// The several-token matmul of simd/: OpenBLAS sgemm, each call on one thread, the calls shared
// out over the OpenMP threads.
//
// One thread pool. OpenBLAS's pthread build runs its own workers, which spin (sched_yield) after
// every call while OpenMP's workers spin after every region of the model's other ops: on two
// cores the two pools took each other's time (docs/performance.md). So OpenBLAS is set to one
// thread (openblas_set_num_threads(1), process-wide, the first time sgemm_xwt runs) and the work
// is divided here, inside one OpenMP region.
//
// The same bits at any thread count. OpenBLAS's result for an output depends on the shape of the
// call that computes it (its edge kernels, its small-matrix path: 130 token rows in one call and
// in two calls of 65 differ), so a product is cut into tiles by its shape alone: whole blocks of
// token rows and of output columns (16-column multiples), at most 12, each one sgemm call, and
// the threads share out the tiles. Each output element is then the same call's at 1, 2 or 3
// threads, and inside an OpenMP region (an expert's product, the calling thread does every tile).
//
// OpenBLAS 0.3.21 (Debian 12) does not know AVX-512 CPUs newer than Cooper Lake: on AMD Zen 4 and
// Zen 5 its DYNAMIC_ARCH build falls back to the AVX2 "Haswell" kernels, half of what the machine
// can do (234 against 452 GFLOP/s at 2048^3 on the Zen 5 guest of docs/performance.md). Where
// Highway sees AVX-512 and OpenBLAS chose Haswell or Zen, configure_blas() re-selects its
// "SkylakeX" kernels (its documented OPENBLAS_CORETYPE, applied through its own
// re-initialisation, before simd/'s first sgemm).
#pragma once

#include <cstdint>

namespace moeref::simd {

// OpenBLAS as simd/ uses it: the kernel choice above, then one thread per call. Runs once per
// process (the first sgemm_xwt calls it); call it first to measure OpenBLAS as simd/ runs it.
void configure_blas();

// The OpenBLAS kernel set in use, e.g. "SkylakeX".
const char* blas_core_name();

// y [rows, out] = x [rows, in] . w^T, w stored [out, in] (ref/matmul.h's layout), fp32.
void sgemm_xwt(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out);

}  // namespace moeref::simd
