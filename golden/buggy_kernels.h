// A backend's kernel set with one op wrong (golden/bug_catalog.h): every op forwards to an honest
// base set (emulated_kernels(precision), or the exact reference kernels), and a bug overrides the
// op it gets wrong, rounding what it computes to the precision's storage as the base rounds its
// outputs (golden/emulated_kernels.h), or calling the base op on altered operands.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "golden/compare.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

class BuggyKernels : public Kernels {
 public:
  BuggyKernels(const Kernels& base, Precision precision) : base_(base), precision_(precision) {}

  const char* name() const override { return "buggy"; }
  void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
              int64_t out) const override;
  void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                int64_t d) const override;
  void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                  int64_t rows, int64_t d) const override;
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
            double theta, const RopeScaling& scaling) const override;
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override;
  void softmax(float* x, int64_t rows, int64_t n) const override;
  void swiglu(const float* gate, const float* up, float* out, int64_t n) const override;
  void gelu(float* x, int64_t n) const override;
  void residual_add(float* x, const float* branch, int64_t n) const override;
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override;
  std::vector<int64_t> expert_order(std::span<const int64_t> tokens_per_expert) const override;
  int64_t apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k, int64_t n_experts,
                         int64_t capacity, int32_t* kept) const override;

 protected:
  const Kernels& base() const { return base_; }
  // Rounds to the precision's storage, as the base rounds an op's output or a norm's input.
  void store(float* x, int64_t n) const;
  std::vector<float> stored(const float* x, int64_t n) const;

 private:
  const Kernels& base_;
  Precision precision_;
};

}  // namespace moeref::golden
