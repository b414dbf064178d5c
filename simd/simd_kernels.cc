#include "simd/simd_kernels.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "simd/attention_ops.h"
#include "simd/elementwise_ops.h"
#include "simd/gemm.h"
#include "simd/rope_ops.h"
#include "simd/router_ops.h"
#include "simd/row_ops.h"
#include "simd/tile_gemm.h"
#include "simd/vector_ops.h"

namespace moeref::simd {

namespace {

// Up to this many rows a matmul streams the weights through matrix-vector products (at most two
// passes), each row the bits of its own matvec: a small decode batch's tokens keep their solo
// results. From here to kTileGemmMaxRows, the blocked GEMM of register tiles; past it, OpenBLAS.
constexpr int64_t kMatvecRows = 8;

}  // namespace

const char* SimdKernels::name() const { return "simd"; }

void SimdKernels::matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
                         int64_t out) const {
  if (rows == 0 || out == 0) return;
  if (rows == 1) return matvec(w, x, y, out, in);
  if (rows <= kMatvecRows) return matvec_rows(w, x, y, rows, out, in);
  if (rows <= kTileGemmMaxRows) return tile_gemm_xwt(x, w, y, rows, in, out);
  sgemm_xwt(x, w, y, rows, in, out);
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

void SimdKernels::residual_add(float* x, const float* branch, int64_t n) const {
  simd::residual_add(x, branch, n);
}

void SimdKernels::select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                               bool renormalize, int32_t* indices, float* weights) const {
  simd::select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
}

const Kernels& simd_kernels() {
  static const SimdKernels kernels;
  return kernels;
}

}  // namespace moeref::simd

namespace moeref {

const Kernels& kernels_by_name(const std::string& name) {
  if (name == "ref") return ref_kernels();
  if (name == "simd") return simd::simd_kernels();
  throw std::invalid_argument("unknown backend \"" + name + "\" (ref or simd)");
}

}  // namespace moeref
