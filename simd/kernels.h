// The SIMD kernel set: the reference's ops computed fast, one file per op with the reference op's
// name and arguments (simd/<op>.h, the twin of ref/ops/<op>.h), checked against them
// (tests/simd_test.cc, tests/simd_ops_test.cc) and against every golden set at fp32 precision.
//
// Each in fp32 with Highway vector code dispatched to the best target the CPU supports:
// - matmul (simd/matmul.h): up to 8 tokens, matrix-vector products that read each weight row once
//   per 4 tokens; up to 2048, a blocked GEMM of register tiles over the weights in place; more,
//   OpenBLAS sgemm in tiles fixed by the product's shape;
// - attention (simd/attention.h): the query heads that share a K/V head computed together over
//   each K and V row, Highway scores, softmax and weighted sum;
// - rms_norm, layer_norm (simd/norm.h), softmax (simd/softmax.h): fp32 row sums over four vector
//   accumulators, the scale applied with Mul / MulAdd; softmax's exponentials through Highway's
//   Exp;
// - rope (simd/rope.h): the reference's double angles, cosines and sines rounded to fp32 tables
//   per token, the rotate-half pairs rotated with MulAdd / MulSub;
// - swiglu, gelu (simd/activation.h): silu through Exp in an overflow-free form; gelu's erf from
//   its Maclaurin series for |x| < sqrt 2 and from a Chebyshev fit of erfc (Numerical Recipes'
//   erfcc) beyond, about 1e-7 absolute;
// - residual_add (simd/residual.h): one vector Add, the reference's bits;
// - select_top_k (simd/router.h): vector max and first-match search, the reference's results to
//   the bit; apply_capacity stays the reference's;
// - expert_order: the busiest experts first, where the reference runs them in index order.
// Rows, heads and chunks of elements are split over OpenMP threads once the work reaches
// ref::kParallelWork; every sum stays one thread's, in a fixed order for a given target whatever
// the thread count, so results are identical run to run and at any --threads.
#pragma once

#include "ref/ops/kernels.h"

namespace moeref::simd {

class SimdKernels final : public RefKernels {
 public:
  const char* name() const override;
  void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
              int64_t out) const override;
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override;
  void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                int64_t d) const override;
  void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                  int64_t rows, int64_t d) const override;
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
            double theta, const RopeScaling& scaling) const override;
  void softmax(float* x, int64_t rows, int64_t n) const override;
  void swiglu(const float* gate, const float* up, float* out, int64_t n) const override;
  void gelu(float* x, int64_t n) const override;
  // Fused (simd/tile_gemm.h) where each product would be a tile GEMM on the calling thread: 9 to
  // kTileGemmMaxRows tokens, inside a parallel region (an expert's tokens while the experts run
  // in parallel) or on one thread; elsewhere the ops in turn, the products split over the
  // threads. The same bits either way.
  void swiglu_feed_forward(const float* x, const float* gate, const float* up, const float* down,
                           int64_t rows, int64_t d, int64_t d_ff, float* y) const override;
  void residual_add(float* x, const float* branch, int64_t n) const override;
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override;
  // The busiest first (ties in index order): with the experts shared out one at a time, the last
  // to start is then a small one, and the other threads do not wait long at the layer's end.
  // Against index order, 2-24% (9% on average) of a 512-token prefill on a 2-vCPU Zen 4, whose
  // randomly routed experts get 0 to 504 of the 1,024 token slots (docs/performance.md).
  std::vector<int64_t> expert_order(std::span<const int64_t> tokens_per_expert) const override;
};

// The simd kernel set. Its first call also settles whether the prefill's tiles prefetch their
// tokens (simd/tile_gemm.h: measured, a few milliseconds), so that no forward call's time includes
// it; it throws what that throws (a bad MOEREF_TILE_TOKEN_PREFETCH).
const Kernels& simd_kernels();

}  // namespace moeref::simd
