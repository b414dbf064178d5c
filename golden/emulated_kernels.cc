#include "golden/emulated_kernels.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "ref/activation.h"
#include "ref/norm.h"
#include "ref/residual.h"
#include "ref/rope.h"
#include "ref/router.h"

namespace moeref::golden {

namespace {

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

float from_bits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Keeps the top (32 - dropped) bits, rounding to nearest even; NaN stays NaN.
float round_mantissa(float value, int dropped) {
  if (std::isnan(value)) return value;
  const uint32_t u = bits_of(value);
  const uint32_t half = (1u << (dropped - 1)) - 1;
  const uint32_t odd = (u >> dropped) & 1u;
  return from_bits(((u + half + odd) >> dropped) << dropped);
}

std::vector<float> rounded(const float* x, int64_t n, Precision p) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = round_to_precision(x[i], p);
  return out;
}

void round_in_place(float* x, int64_t n, Precision p) {
  for (int64_t i = 0; i < n; ++i) x[i] = round_to_precision(x[i], p);
}

// fp32 dot product over 8 interleaved partial sums, combined pairwise.
float simd_style_dot(const float* a, const float* b, int64_t n) {
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) lanes[i % 8] += a[i] * b[i];
  for (int width = 4; width >= 1; width /= 2) {
    for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  }
  return lanes[0];
}

class EmulatedKernels final : public Kernels {
 public:
  explicit EmulatedKernels(Precision precision) : p_(precision) {}
  const char* name() const override { return precision_name(p_); }

  void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
              int64_t out) const override {
    const std::vector<float> xr = rounded(x, rows * in, p_);
    const std::vector<float> wr = rounded(w, out * in, p_);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        y[r * out + o] = simd_style_dot(xr.data() + r * in, wr.data() + o * in, in);
      }
    }
    if (p_ != Precision::kTF32) round_in_place(y, rows * out, p_);
  }
  void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                int64_t d) const override {
    const std::vector<float> xr = storage(x, rows * d);
    ref::rms_norm(xr.data(), weight, eps, y, rows, d);
    round_in_place(y, rows * d, storage_precision());
  }
  void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                  int64_t rows, int64_t d) const override {
    const std::vector<float> xr = storage(x, rows * d);
    ref::layer_norm(xr.data(), weight, bias, eps, y, rows, d);
    round_in_place(y, rows * d, storage_precision());
  }
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
            double theta) const override {
    ref::rope(x, positions, n_heads, head_dim, theta);
    round_in_place(x, static_cast<int64_t>(positions.size()) * n_heads * head_dim,
                   storage_precision());
  }
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override {
    const int64_t n_tokens = static_cast<int64_t>(positions.size());
    const int64_t hd = dims.head_dim;
    const int64_t heads_per_kv = dims.n_heads / dims.n_kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t h = 0; h < dims.n_heads; ++h) {
        const int64_t n_keys = positions[t] + 1;
        const float* qh = q + (t * dims.n_heads + h) * hd;
        const int64_t g = h / heads_per_kv;
        std::vector<float> p(static_cast<size_t>(n_keys));
        float max_score = -INFINITY;
        for (int64_t j = 0; j < n_keys; ++j) {
          p[j] = simd_style_dot(qh, keys + ref::kv_row(dims, g, j), hd) * scale;
          max_score = std::max(max_score, p[j]);
        }
        float sum = 0.0f;
        for (float& v : p) sum += v = std::exp(v - max_score);
        for (float& v : p) v = round_to_precision(v / sum, storage_precision());
        float* out = context + (t * dims.n_heads + h) * hd;
        for (int64_t i = 0; i < hd; ++i) {
          float acc = 0.0f;
          for (int64_t j = 0; j < n_keys; ++j) acc += p[j] * values[ref::kv_row(dims, g, j) + i];
          out[i] = round_to_precision(acc, storage_precision());
        }
        if (probs != nullptr) {
          float* row = probs + (t * dims.n_heads + h) * probs_width;
          std::fill(row, row + probs_width, 0.0f);
          std::copy(p.begin(), p.end(), row);
        }
      }
    }
  }
  void softmax(float* x, int64_t rows, int64_t n) const override {
    for (int64_t r = 0; r < rows; ++r) {
      float* row = x + r * n;
      float max_value = -INFINITY;
      for (int64_t j = 0; j < n; ++j) max_value = std::max(max_value, row[j]);
      float sum = 0.0f;
      for (int64_t j = 0; j < n; ++j) sum += row[j] = std::exp(row[j] - max_value);
      for (int64_t j = 0; j < n; ++j)
        row[j] = round_to_precision(row[j] / sum, storage_precision());
    }
  }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) const override {
    ref::swiglu(gate, up, out, n);
    round_in_place(out, n, storage_precision());
  }
  void gelu(float* x, int64_t n) const override {
    ref::gelu(x, n);
    round_in_place(x, n, storage_precision());
  }
  void residual_add(float* x, const float* branch, int64_t n) const override {
    ref::residual_add(x, branch, n);
    round_in_place(x, n, storage_precision());
  }
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override {
    ref::select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
    round_in_place(weights, n_tokens * k, storage_precision());
  }
  int64_t apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k, int64_t n_experts,
                         int64_t capacity, int32_t* kept) const override {
    return ref::apply_capacity(indices, n_tokens, k, n_experts, capacity, kept);
  }

 private:
  Precision storage_precision() const { return golden::storage_precision(p_); }
  std::vector<float> storage(const float* x, int64_t n) const {
    return rounded(x, n, storage_precision());
  }

  Precision p_;
};

}  // namespace

float round_to_precision(float value, Precision precision) {
  switch (precision) {
    case Precision::kFP32:
      return value;
    case Precision::kTF32:
      return round_mantissa(value, 13);
    case Precision::kBF16:
      return round_mantissa(value, 16);
    case Precision::kFP16:
      return static_cast<float>(static_cast<_Float16>(value));
  }
  return value;
}

Precision storage_precision(Precision precision) {
  return precision == Precision::kTF32 ? Precision::kFP32 : precision;
}

const Kernels& emulated_kernels(Precision precision) {
  static const EmulatedKernels fp32(Precision::kFP32), tf32(Precision::kTF32),
      bf16(Precision::kBF16), fp16(Precision::kFP16);
  switch (precision) {
    case Precision::kFP32:
      return fp32;
    case Precision::kTF32:
      return tf32;
    case Precision::kBF16:
      return bf16;
    case Precision::kFP16:
      return fp16;
  }
  return fp32;
}

}  // namespace moeref::golden
