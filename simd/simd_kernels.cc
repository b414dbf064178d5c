#include "simd/simd_kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "simd/elementwise_ops.h"
#include "simd/rope_ops.h"
#include "simd/row_ops.h"
#include "simd/vector_ops.h"

namespace moeref::simd {

const char* SimdKernels::name() const { return "simd"; }

void SimdKernels::matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
                         int64_t out) const {
  if (rows == 0 || out == 0) return;
  if (rows == 1) return matvec(w, x, y, out, in);
  // y [rows, out] = x [rows, in] . w^T, w stored [out, in].
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
              static_cast<int>(out), static_cast<int>(in), 1.0f, x, static_cast<int>(in), w,
              static_cast<int>(in), 0.0f, y, static_cast<int>(out));
}

void SimdKernels::attention(const float* q, const float* keys, const float* values,
                            std::span<const int64_t> positions, const ref::AttentionDims& dims,
                            float* context, float* probs, int64_t probs_width) const {
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  const int64_t hd = dims.head_dim;
  const int64_t heads_per_kv = dims.n_heads / dims.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel for collapse(2) schedule(                                              \
    static) if (n_tokens * dims.n_heads * (n_tokens > 0 ? positions.back() + 1 : 0) * hd >= \
                (1 << 16))
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < dims.n_heads; ++h) {
      const int64_t n_keys = positions[t] + 1;
      const int64_t g = h / heads_per_kv;
      const float* qh = q + (t * dims.n_heads + h) * hd;
      std::vector<float> p(static_cast<size_t>(n_keys));
      float max_score = -INFINITY;
      for (int64_t j = 0; j < n_keys; ++j) {
        p[j] = dot(qh, keys + ref::kv_row(dims, g, j), static_cast<size_t>(hd)) * scale;
        max_score = std::max(max_score, p[j]);
      }
      float sum = 0.0f;
      for (float& v : p) sum += v = std::exp(v - max_score);
      const float inv_sum = 1.0f / sum;
      float* out = context + (t * dims.n_heads + h) * hd;
      std::fill(out, out + hd, 0.0f);
      for (int64_t j = 0; j < n_keys; ++j) {
        p[j] *= inv_sum;
        axpy(p[j], values + ref::kv_row(dims, g, j), out, static_cast<size_t>(hd));
      }
      if (probs != nullptr) {
        float* row = probs + (t * dims.n_heads + h) * probs_width;
        std::fill(row, row + probs_width, 0.0f);
        std::copy(p.begin(), p.end(), row);
      }
    }
  }
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
                       int64_t head_dim, double theta) const {
  simd::rope(x, positions, n_heads, head_dim, theta);
}

void SimdKernels::softmax(float* x, int64_t rows, int64_t n) const { simd::softmax(x, rows, n); }

void SimdKernels::swiglu(const float* gate, const float* up, float* out, int64_t n) const {
  simd::swiglu(gate, up, out, n);
}

void SimdKernels::gelu(float* x, int64_t n) const { simd::gelu(x, n); }

void SimdKernels::residual_add(float* x, const float* branch, int64_t n) const {
  simd::residual_add(x, branch, n);
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
