// The SIMD kernel set: the reference's ops computed fast, checked against them (tests/simd_test.cc,
// tests/simd_ops_test.cc) and against every golden set at fp32 precision.
//
// Replaced, each in fp32 with Highway vector code dispatched to the best target the CPU supports:
// - matmul: up to 8 tokens, Highway matrix-vector products that read each weight row once per 4
//   tokens (simd/vector_ops.h; decode, a decode batch, a speculative block, an expert's few
//   tokens); 9 to 2048 tokens, a blocked GEMM of Highway register tiles over the weights in place
//   (simd/tile_gemm.h; a prefill's experts, projections and LM head); more, OpenBLAS sgemm on one
//   thread per call, split over the OpenMP threads (simd/gemm.h);
// - attention (simd/attention_ops.h): the query heads that share a K/V head computed together over
//   each K and V row, Highway scores, softmax and weighted sum;
// - rms_norm, layer_norm, softmax (simd/row_ops.h): fp32 row sums over four vector accumulators,
//   the scale applied with Mul / MulAdd; softmax's exponentials through Highway's Exp;
// - rope (simd/rope_ops.h): the reference's double angles, cosines and sines rounded to fp32
//   tables per token, the rotate-half pairs rotated with MulAdd / MulSub;
// - swiglu, gelu, residual_add (simd/elementwise_ops.h): silu through Exp in an overflow-free
//   form; gelu's erf from its Maclaurin series for |x| < sqrt 2 and from a Chebyshev fit of erfc
//   (Numerical Recipes' erfcc) beyond, about 1e-7 absolute; residual_add one vector Add (the
//   reference's bits);
// - select_top_k (simd/router_ops.h): vector max and first-match search, the reference's results
//   to the bit.
// Rows, heads and chunks of elements are split over OpenMP threads once the work reaches
// ref::kParallelWork; every sum stays one thread's, in a fixed order for a given target whatever
// the thread count (OpenBLAS's products in tiles fixed by their shape, simd/gemm.h), so results are
// identical run to run and at any --threads.
#pragma once

#include <string>

#include "ref/ops/kernels.h"

namespace moeref::simd {

class SimdKernels : public RefKernels {
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
  void residual_add(float* x, const float* branch, int64_t n) const override;
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override;
};

const Kernels& simd_kernels();

}  // namespace moeref::simd

namespace moeref {

// "ref" or "simd"; throws std::invalid_argument naming the accepted names otherwise.
const Kernels& kernels_by_name(const std::string& name);

}  // namespace moeref
