// A kernel set that forwards every op to the set selected last: one Model, one copy of the
// weights, run with ref or simd kernels in turn. The benchmark of the small config holds its
// weights once this way, so the peak resident memory it reports is that of one model.
//
// It can also record the routing: the tokens per expert of each MoE layer, as the model hands them
// to expert_order (for the prefill's roofline model, bench/roofline_counts.h).
//
// Not thread-safe: select() and record_routing() between forward calls, never during one.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ref/ops/kernels.h"

namespace moeref::bench {

class KernelSwitch : public Kernels {
 public:
  explicit KernelSwitch(const Kernels& initial) : selected_(&initial) {}
  void select(const Kernels& kernels) { selected_ = &kernels; }
  // Appends each MoE layer's tokens per expert to `routing` from now on; nullptr stops.
  void record_routing(std::vector<std::vector<int64_t>>* routing) { routing_ = routing; }

  const char* name() const override { return selected_->name(); }
  void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
              int64_t out) const override {
    selected_->matmul(x, w, y, rows, in, out);
  }
  void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                int64_t d) const override {
    selected_->rms_norm(x, weight, eps, y, rows, d);
  }
  void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                  int64_t rows, int64_t d) const override {
    selected_->layer_norm(x, weight, bias, eps, y, rows, d);
  }
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
            double theta, const RopeScaling& scaling) const override {
    selected_->rope(x, positions, n_heads, head_dim, theta, scaling);
  }
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override {
    selected_->attention(q, keys, values, positions, dims, context, probs, probs_width);
  }
  void softmax(float* x, int64_t rows, int64_t n) const override { selected_->softmax(x, rows, n); }
  void swiglu_feed_forward(const float* x, const float* gate, const float* up, const float* down,
                           int64_t rows, int64_t d, int64_t d_ff, float* y) const override {
    selected_->swiglu_feed_forward(x, gate, up, down, rows, d, d_ff, y);
  }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) const override {
    selected_->swiglu(gate, up, out, n);
  }
  void gelu(float* x, int64_t n) const override { selected_->gelu(x, n); }
  void residual_add(float* x, const float* branch, int64_t n) const override {
    selected_->residual_add(x, branch, n);
  }
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override {
    selected_->select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
  }
  int64_t apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k, int64_t n_experts,
                         int64_t capacity, int32_t* kept) const override {
    return selected_->apply_capacity(indices, n_tokens, k, n_experts, capacity, kept);
  }
  std::vector<int64_t> expert_order(std::span<const int64_t> tokens_per_expert) const override {
    if (routing_ != nullptr)
      routing_->emplace_back(tokens_per_expert.begin(), tokens_per_expert.end());
    return selected_->expert_order(tokens_per_expert);
  }

 private:
  const Kernels* selected_;
  std::vector<std::vector<int64_t>>* routing_ = nullptr;
};

}  // namespace moeref::bench
