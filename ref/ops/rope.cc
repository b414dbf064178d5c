#include "ref/ops/rope.h"

#include <cmath>

#include "ref/ops/parallel.h"

namespace moeref::ref {

void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
          double theta) {
  const int64_t half = head_dim / 2;
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
#pragma omp parallel for collapse(2) \
    schedule(static) if (n_tokens * n_heads * head_dim >= kParallelWork)
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double inv_freq =
            std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
        const double angle = static_cast<double>(positions[t]) * inv_freq;
        const double cos_a = std::cos(angle);
        const double sin_a = std::sin(angle);
        const double first = head[i];
        const double second = head[i + half];
        head[i] = static_cast<float>(first * cos_a - second * sin_a);
        head[i + half] = static_cast<float>(second * cos_a + first * sin_a);
      }
    }
  }
}

}  // namespace moeref::ref
