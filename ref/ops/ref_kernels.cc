// The reference kernel set: each method forwards to the plain op of the same name.
#include <numeric>
#include <vector>

#include "ref/ops/activation.h"
#include "ref/ops/kernels.h"
#include "ref/ops/matmul.h"
#include "ref/ops/norm.h"
#include "ref/ops/residual.h"
#include "ref/ops/rope.h"
#include "ref/ops/router.h"
#include "ref/ops/softmax.h"

namespace moeref {

const char* RefKernels::name() const { return "ref"; }

void RefKernels::matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
                        int64_t out) const {
  ref::matmul(x, w, y, rows, in, out);
}

void RefKernels::rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                          int64_t d) const {
  ref::rms_norm(x, weight, eps, y, rows, d);
}

void RefKernels::layer_norm(const float* x, const float* weight, const float* bias, double eps,
                            float* y, int64_t rows, int64_t d) const {
  ref::layer_norm(x, weight, bias, eps, y, rows, d);
}

void RefKernels::rope(float* x, std::span<const int64_t> positions, int64_t n_heads,
                      int64_t head_dim, double theta, const RopeScaling& scaling) const {
  ref::rope(x, positions, n_heads, head_dim, theta, scaling);
}

void RefKernels::attention(const float* q, const float* keys, const float* values,
                           std::span<const int64_t> positions, const ref::AttentionDims& dims,
                           float* context, float* probs, int64_t probs_width) const {
  ref::attention(q, keys, values, positions, dims, context, probs, probs_width);
}

void RefKernels::softmax(float* x, int64_t rows, int64_t n) const { ref::softmax(x, rows, n); }

void RefKernels::swiglu(const float* gate, const float* up, float* out, int64_t n) const {
  ref::swiglu(gate, up, out, n);
}

void RefKernels::gelu(float* x, int64_t n) const { ref::gelu(x, n); }

void Kernels::swiglu_feed_forward(const float* x, const float* gate, const float* up,
                                  const float* down, int64_t rows, int64_t d, int64_t d_ff,
                                  float* y) const {
  std::vector<float> hidden(static_cast<size_t>(rows * d_ff));
  std::vector<float> gated(hidden.size());
  matmul(x, up, hidden.data(), rows, d, d_ff);
  matmul(x, gate, gated.data(), rows, d, d_ff);
  swiglu(gated.data(), hidden.data(), hidden.data(), rows * d_ff);
  matmul(hidden.data(), down, y, rows, d_ff, d);
}

void RefKernels::residual_add(float* x, const float* branch, int64_t n) const {
  ref::residual_add(x, branch, n);
}

void RefKernels::select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                              bool renormalize, int32_t* indices, float* weights) const {
  ref::select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
}

int64_t RefKernels::apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k,
                                   int64_t n_experts, int64_t capacity, int32_t* kept) const {
  return ref::apply_capacity(indices, n_tokens, k, n_experts, capacity, kept);
}

std::vector<int64_t> RefKernels::expert_order(std::span<const int64_t> tokens_per_expert) const {
  std::vector<int64_t> order(tokens_per_expert.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  return order;
}

const Kernels& ref_kernels() {
  static const RefKernels kernels;
  return kernels;
}

}  // namespace moeref
