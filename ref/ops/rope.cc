#include "ref/ops/rope.h"

#include <algorithm>
#include <cmath>

#include "ref/ops/parallel.h"
#include "ref/ops/rope_frequencies.h"

namespace moeref::ref {

int64_t max_position(std::span<const int64_t> positions) {
  return positions.empty() ? -1 : *std::max_element(positions.begin(), positions.end());
}

void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
          double theta, const RopeScaling& scaling) {
  const int64_t half = head_dim / 2;
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  if (half == 0 || n_tokens == 0) return;
  const RopeFrequencies frequencies =
      rope_frequencies(theta, head_dim, scaling, max_position(positions));
  const double* inv_freq = frequencies.inv_freq.data();
  const double s = frequencies.attention_scaling;
#pragma omp parallel for collapse(2) \
    schedule(static) if (n_tokens * n_heads * head_dim >= kParallelWork)
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(positions[t]) * inv_freq[i];
        const double cos_a = std::cos(angle) * s;
        const double sin_a = std::sin(angle) * s;
        const double first = head[i];
        const double second = head[i + half];
        head[i] = static_cast<float>(first * cos_a - second * sin_a);
        head[i + half] = static_cast<float>(second * cos_a + first * sin_a);
      }
    }
  }
}

}  // namespace moeref::ref
