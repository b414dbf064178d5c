// The matmul of simd/ past the register tiles' rows (simd/tile_gemm.h): OpenBLAS sgemm, each call
// on one thread, the calls shared out over the OpenMP threads.
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
// The kernels: whatever OpenBLAS chose for this CPU, configure_blas() re-selects the best set the
// CPU supports (simd/cpu_features.h), through OpenBLAS's documented OPENBLAS_CORETYPE and its own
// re-initialisation, before simd/'s first sgemm.
#pragma once

#include <cstdint>
#include <string>

namespace moeref::simd {

// Multiply-adds from which a product of simd/ is split into parts (OpenBLAS tiles here, column
// blocks of register tiles in simd/tile_gemm.h); below, one call does it all.
inline constexpr int64_t kGemmSplitWork = int64_t{1} << 20;

// OpenBLAS as simd/ uses it: the kernel choice above, then one thread per call. Runs once per
// process (the first sgemm_xwt calls it); call it first to measure OpenBLAS as simd/ runs it.
void configure_blas();

// The core OpenBLAS chose for this CPU and the one in use after configure_blas() (which it
// calls), e.g. {"Haswell", "SkylakeX"} on a Zen 5; the same name twice when OpenBLAS's choice was
// already the best, or when its build cannot re-select (not DYNAMIC_ARCH).
struct BlasCores {
  std::string chosen_by_openblas, in_use;
};
BlasCores blas_cores();

// y [rows, out] = x [rows, in] . w^T, w stored [out, in] (ref/ops/matmul.h's layout), fp32.
void sgemm_xwt(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out);

}  // namespace moeref::simd
