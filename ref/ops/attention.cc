#include "ref/ops/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ref/ops/matmul.h"
#include "ref/ops/parallel.h"
#include "ref/ops/softmax.h"

namespace moeref::ref {

void attention(const float* q, const float* keys, const float* values,
               std::span<const int64_t> positions, const AttentionDims& dims, float* context,
               float* probs, int64_t probs_width) {
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  const int64_t heads_per_kv = dims.n_heads / dims.n_kv_heads;
  const int64_t hd = dims.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const int64_t longest_context = n_tokens > 0 ? positions.back() + 1 : 0;
  const int64_t work = n_tokens * dims.n_heads * longest_context * hd;
#pragma omp parallel for collapse(2) schedule(static) if (work >= kParallelWork)
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < dims.n_heads; ++h) {
      const int64_t n_keys = positions[t] + 1;
      const int64_t kv_head = h / heads_per_kv;
      const float* qh = q + (t * dims.n_heads + h) * hd;

      std::vector<float> p(static_cast<size_t>(n_keys));
      for (int64_t j = 0; j < n_keys; ++j) {
        p[j] = static_cast<float>(dot(qh, keys + kv_row(dims, kv_head, j), hd) * scale);
      }
      softmax(p.data(), 1, n_keys);

      float* out = context + (t * dims.n_heads + h) * hd;
      for (int64_t i = 0; i < hd; ++i) {
        double sum = 0.0;
        for (int64_t j = 0; j < n_keys; ++j) {
          sum += static_cast<double>(p[j]) * values[kv_row(dims, kv_head, j) + i];
        }
        out[i] = static_cast<float>(sum);
      }
      if (probs != nullptr) {
        float* row = probs + (t * dims.n_heads + h) * probs_width;
        std::fill(row, row + probs_width, 0.0f);
        std::copy(p.begin(), p.end(), row);
      }
    }
  }
}

}  // namespace moeref::ref
