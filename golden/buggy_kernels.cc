#include "golden/buggy_kernels.h"

#include "golden/emulated_kernels.h"

namespace moeref::golden {

void BuggyKernels::matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
                          int64_t out) const {
  base_.matmul(x, w, y, rows, in, out);
}

void BuggyKernels::rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                            int64_t d) const {
  base_.rms_norm(x, weight, eps, y, rows, d);
}

void BuggyKernels::layer_norm(const float* x, const float* weight, const float* bias, double eps,
                              float* y, int64_t rows, int64_t d) const {
  base_.layer_norm(x, weight, bias, eps, y, rows, d);
}

void BuggyKernels::rope(float* x, std::span<const int64_t> positions, int64_t n_heads,
                        int64_t head_dim, double theta, const RopeScaling& scaling) const {
  base_.rope(x, positions, n_heads, head_dim, theta, scaling);
}

void BuggyKernels::attention(const float* q, const float* keys, const float* values,
                             std::span<const int64_t> positions, const ref::AttentionDims& dims,
                             float* context, float* probs, int64_t probs_width) const {
  base_.attention(q, keys, values, positions, dims, context, probs, probs_width);
}

void BuggyKernels::softmax(float* x, int64_t rows, int64_t n) const { base_.softmax(x, rows, n); }

void BuggyKernels::swiglu(const float* gate, const float* up, float* out, int64_t n) const {
  base_.swiglu(gate, up, out, n);
}

void BuggyKernels::gelu(float* x, int64_t n) const { base_.gelu(x, n); }

void BuggyKernels::residual_add(float* x, const float* branch, int64_t n) const {
  base_.residual_add(x, branch, n);
}

void BuggyKernels::select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                                bool renormalize, int32_t* indices, float* weights) const {
  base_.select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
}

int64_t BuggyKernels::apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k,
                                     int64_t n_experts, int64_t capacity, int32_t* kept) const {
  return base_.apply_capacity(indices, n_tokens, k, n_experts, capacity, kept);
}

std::vector<int64_t> BuggyKernels::expert_order(std::span<const int64_t> tokens_per_expert) const {
  return base_.expert_order(tokens_per_expert);
}

void BuggyKernels::store(float* x, int64_t n) const {
  const Precision storage = storage_precision(precision_);
  for (int64_t i = 0; i < n; ++i) x[i] = round_to_precision(x[i], storage);
}

std::vector<float> BuggyKernels::stored(const float* x, int64_t n) const {
  std::vector<float> out(x, x + n);
  store(out.data(), n);
  return out;
}

}  // namespace moeref::golden
