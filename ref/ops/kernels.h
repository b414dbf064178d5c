// The kernel set: the one interface through which the model calls its ops.
//
// The model (ref/model/model.cc) is written once against this interface. ref_kernels() returns the
// plain reference ops of ref/ops/*.h; the fast set (simd/kernels.h) overrides them op by op, each
// with its twin simd/<op>.h, and is checked against them. Each method has exactly the contract of
// the ref op of the same name: shapes, layout and aliasing are documented in that op's header;
// swiglu_feed_forward, several ops in one, has that of ref/model/feed_forward.h's SwiGLU case.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ref/ops/attention.h"
#include "ref/ops/rope_scaling.h"

namespace moeref {

class Kernels {
 public:
  virtual ~Kernels() = default;
  virtual const char* name() const = 0;

  virtual void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
                      int64_t out) const = 0;  // ref/ops/matmul.h
  virtual void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                        int64_t d) const = 0;  // ref/ops/norm.h
  virtual void layer_norm(const float* x, const float* weight, const float* bias, double eps,
                          float* y, int64_t rows, int64_t d) const = 0;  // ref/ops/norm.h
  virtual void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
                    double theta, const RopeScaling& scaling) const = 0;  // ref/ops/rope.h
  virtual void attention(const float* q, const float* keys, const float* values,
                         std::span<const int64_t> positions, const ref::AttentionDims& dims,
                         float* context, float* probs,
                         int64_t probs_width) const = 0;              // ref/ops/attention.h
  virtual void softmax(float* x, int64_t rows, int64_t n) const = 0;  // ref/ops/softmax.h
  virtual void swiglu(const float* gate, const float* up, float* out,
                      int64_t n) const = 0;          // ref/ops/activation.h
  virtual void gelu(float* x, int64_t n) const = 0;  // ref/ops/activation.h
  // A SwiGLU feed-forward (ref/model/feed_forward.h): y [rows, d] = down . (silu(x . gate^T) *
  // (x . up^T)), gate and up [d_ff, d], down [d, d_ff]. By default this set's own ops one after the
  // other: matmul for up and for gate, swiglu, matmul for down. A set may fuse them (simd/ does),
  // with the same results as that sequence of its own ops.
  virtual void swiglu_feed_forward(const float* x, const float* gate, const float* up,
                                   const float* down, int64_t rows, int64_t d, int64_t d_ff,
                                   float* y) const;
  virtual void residual_add(float* x, const float* branch,
                            int64_t n) const = 0;  // ref/ops/residual.h
  virtual void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                            bool renormalize, int32_t* indices,
                            float* weights) const = 0;  // ref/ops/router.h
  virtual int64_t apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k,
                                 int64_t n_experts, int64_t capacity,
                                 int32_t* kept) const = 0;  // ref/ops/router.h
  // The order in which ref/model/moe.cc runs a layer's experts (in parallel, one per thread at a
  // time), given the tokens routed to each: a permutation of 0 .. n_experts - 1. It decides only
  // which thread waits for which: every order gives the same bits.
  virtual std::vector<int64_t> expert_order(std::span<const int64_t> tokens_per_expert) const = 0;
};

// The reference kernel set: deterministic, bit-identical across runs and thread counts. Derive from
// it to replace one op and keep the reference for the rest (a kernel under test, a planted bug).
class RefKernels : public Kernels {
 public:
  const char* name() const override;
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
  int64_t apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k, int64_t n_experts,
                         int64_t capacity, int32_t* kept) const override;
  // Index order.
  std::vector<int64_t> expert_order(std::span<const int64_t> tokens_per_expert) const override;
};

const Kernels& ref_kernels();  // a RefKernels

}  // namespace moeref
