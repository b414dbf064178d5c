#include "golden/fp32_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "golden/emulated_dot.h"
#include "golden/emulated_kernels.h"
#include "ref/ops/rope.h"
#include "ref/ops/rope_frequencies.h"

namespace moeref::golden {

namespace {

constexpr float kSqrtHalf = 0.70710678118654752440f;

// The fp32 sum of x over 8 interleaved partial sums combined pairwise, as a GPU block reduction
// orders it.
float fp32_sum(const float* x, int64_t n) {
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) lanes[i % 8] += x[i];
  for (int width = 4; width >= 1; width /= 2) {
    for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  }
  return lanes[0];
}

}  // namespace

void fp32_softmax(float* x, int64_t rows, int64_t n, Precision storage) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * n;
    float max_value = -INFINITY;
    for (int64_t j = 0; j < n; ++j) max_value = std::max(max_value, row[j]);
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) sum += row[j] = std::exp(row[j] - max_value);
    for (int64_t j = 0; j < n; ++j) row[j] = round_to_precision(row[j] / sum, storage);
  }
}

void fp32_rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                   int64_t d) {
  const float eps_f = static_cast<float>(eps);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    const float mean_square =
        emulated_dot(Reduction::kInterleaved, xr, xr, d, Precision::kFP32) / static_cast<float>(d);
    const float inv_rms = 1.0f / std::sqrt(mean_square + eps_f);
    float* yr = y + r * d;
    for (int64_t i = 0; i < d; ++i) yr[i] = weight[i] * (xr[i] * inv_rms);
  }
}

void fp32_layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                     int64_t rows, int64_t d) {
  const float eps_f = static_cast<float>(eps);
  std::vector<float> centred(static_cast<size_t>(d));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    const float mean = fp32_sum(xr, d) / static_cast<float>(d);
    for (int64_t i = 0; i < d; ++i) centred[i] = xr[i] - mean;
    const float variance =
        emulated_dot(Reduction::kInterleaved, centred.data(), centred.data(), d, Precision::kFP32) /
        static_cast<float>(d);
    const float inv_std = 1.0f / std::sqrt(variance + eps_f);
    float* yr = y + r * d;
    for (int64_t i = 0; i < d; ++i) yr[i] = centred[i] * inv_std * weight[i] + bias[i];
  }
}

void fp32_rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
               double theta, const RopeScaling& scaling) {
  const int64_t half = head_dim / 2;
  if (half == 0 || positions.empty()) return;
  const float base = static_cast<float>(theta);
  std::vector<float> inv_freq(static_cast<size_t>(half));
  float attention_scaling = 1.0f;
  if (scaling.kind == RopeScalingKind::kDefault) {
    for (int64_t i = 0; i < half; ++i) {
      inv_freq[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    }
  } else {
    const ref::RopeFrequencies frequencies =
        ref::rope_frequencies(theta, head_dim, scaling, ref::max_position(positions));
    for (int64_t i = 0; i < half; ++i) inv_freq[i] = static_cast<float>(frequencies.inv_freq[i]);
    attention_scaling = static_cast<float>(frequencies.attention_scaling);
  }
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = x + (static_cast<int64_t>(t) * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(positions[t]) * inv_freq[i];
        const float cos_a = std::cos(angle) * attention_scaling;
        const float sin_a = std::sin(angle) * attention_scaling;
        const float first = head[i];
        const float second = head[i + half];
        head[i] = first * cos_a - second * sin_a;
        head[i + half] = second * cos_a + first * sin_a;
      }
    }
  }
}

void fp32_swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void fp32_gelu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * 0.5f * (1.0f + std::erf(x[i] * kSqrtHalf));
}

void fused_swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g * up[i] / (1.0f + std::exp(-g));
  }
}

void unfused_swiglu(const float* gate, const float* up, float* out, int64_t n, Precision storage) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = round_to_precision(g / (1.0f + std::exp(-g)), storage) * up[i];
  }
}

void fused_gelu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * std::erfc(-x[i] * kSqrtHalf);
}

}  // namespace moeref::golden
