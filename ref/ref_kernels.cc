// The reference kernel set: each method forwards to the plain op of the same name.
#include "ref/activation.h"
#include "ref/kernels.h"
#include "ref/matmul.h"
#include "ref/norm.h"
#include "ref/residual.h"
#include "ref/rope.h"
#include "ref/router.h"
#include "ref/softmax.h"

namespace moeref {

namespace {

class RefKernels final : public Kernels {
 public:
  const char* name() const override { return "ref"; }
  void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
              int64_t out) const override {
    ref::matmul(x, w, y, rows, in, out);
  }
  void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                int64_t d) const override {
    ref::rms_norm(x, weight, eps, y, rows, d);
  }
  void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                  int64_t rows, int64_t d) const override {
    ref::layer_norm(x, weight, bias, eps, y, rows, d);
  }
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
            double theta) const override {
    ref::rope(x, positions, n_heads, head_dim, theta);
  }
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override {
    ref::attention(q, keys, values, positions, dims, context, probs, probs_width);
  }
  void softmax(float* x, int64_t rows, int64_t n) const override { ref::softmax(x, rows, n); }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) const override {
    ref::swiglu(gate, up, out, n);
  }
  void gelu(float* x, int64_t n) const override { ref::gelu(x, n); }
  void residual_add(float* x, const float* branch, int64_t n) const override {
    ref::residual_add(x, branch, n);
  }
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override {
    ref::select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
  }
};

}  // namespace

const Kernels& ref_kernels() {
  static const RefKernels kernels;
  return kernels;
}

}  // namespace moeref
