#include "simd/kernels.h"

#include <omp.h>

#include <algorithm>

#include "simd/activation.h"
#include "simd/attention.h"
#include "simd/matmul.h"
#include "simd/norm.h"
#include "simd/residual.h"
#include "simd/rope.h"
#include "simd/router.h"
#include "simd/softmax.h"
#include "simd/tile_gemm.h"

namespace moeref::simd {

const char* SimdKernels::name() const { return "simd"; }

void SimdKernels::matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
                         int64_t out) const {
  simd::matmul(x, w, y, rows, in, out);
}

void SimdKernels::attention(const float* q, const float* keys, const float* values,
                            std::span<const int64_t> positions, const ref::AttentionDims& dims,
                            float* context, float* probs, int64_t probs_width) const {
  simd::attention(q, keys, values, positions, dims, context, probs, probs_width);
}

void SimdKernels::rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                           int64_t d) const {
  simd::rms_norm(x, weight, eps, y, rows, d);
}

void SimdKernels::layer_norm(const float* x, const float* weight, const float* bias, double eps,
                             float* y, int64_t rows, int64_t d) const {
  simd::layer_norm(x, weight, bias, eps, y, rows, d);
}

void SimdKernels::rope(float* x, std::span<const int64_t> positions, int64_t n_heads,
                       int64_t head_dim, double theta, const RopeScaling& scaling) const {
  simd::rope(x, positions, n_heads, head_dim, theta, scaling);
}

void SimdKernels::softmax(float* x, int64_t rows, int64_t n) const { simd::softmax(x, rows, n); }

void SimdKernels::swiglu(const float* gate, const float* up, float* out, int64_t n) const {
  simd::swiglu(gate, up, out, n);
}

void SimdKernels::gelu(float* x, int64_t n) const { simd::gelu(x, n); }

void SimdKernels::swiglu_feed_forward(const float* x, const float* gate, const float* up,
                                      const float* down, int64_t rows, int64_t d, int64_t d_ff,
                                      float* y) const {
  const bool tiles = rows > kMatvecRows && rows <= kTileGemmMaxRows && d > 0 && d_ff > 0;
  const bool one_thread = omp_in_parallel() || omp_get_max_threads() == 1;
  if (tiles && one_thread) {
    tile_gemm_swiglu_feed_forward(x, gate, up, down, rows, d, d_ff, y);
    return;
  }
  Kernels::swiglu_feed_forward(x, gate, up, down, rows, d, d_ff, y);
}

void SimdKernels::residual_add(float* x, const float* branch, int64_t n) const {
  simd::residual_add(x, branch, n);
}

void SimdKernels::select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                               bool renormalize, int32_t* indices, float* weights) const {
  simd::select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
}

std::vector<int64_t> SimdKernels::expert_order(std::span<const int64_t> tokens_per_expert) const {
  std::vector<int64_t> order = RefKernels::expert_order(tokens_per_expert);
  std::ranges::stable_sort(
      order, [&](int64_t a, int64_t b) { return tokens_per_expert[a] > tokens_per_expert[b]; });
  return order;
}

const Kernels& simd_kernels() {
  [[maybe_unused]] static const bool settled = tile_gemm_prefetches_tokens();
  static const SimdKernels kernels;
  return kernels;
}

}  // namespace moeref::simd
