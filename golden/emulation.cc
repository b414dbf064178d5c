#include "golden/emulation.h"

#include <vector>

#include "golden/emulated_kernels.h"
#include "golden/fp32_ops.h"
#include "ref/ops/activation.h"
#include "ref/ops/norm.h"
#include "ref/ops/residual.h"
#include "ref/ops/rope.h"
#include "ref/ops/router.h"

namespace moeref::golden {

namespace {

std::vector<float> rounded(const float* x, int64_t n, Precision p) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = round_to_precision(x[i], p);
  return out;
}

void round_in_place(float* x, int64_t n, Precision p) {
  for (int64_t i = 0; i < n; ++i) x[i] = round_to_precision(x[i], p);
}

class EmulatedKernels final : public Kernels {
 public:
  EmulatedKernels(Precision precision, const Emulation& emulation, std::string name)
      : p_(precision),
        storage_(storage_precision(precision)),
        e_(emulation),
        name_(std::move(name)) {}
  const char* name() const override { return name_.c_str(); }

  void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
              int64_t out) const override {
    const std::vector<float> xr = rounded(x, rows * in, p_);
    const std::vector<float> wr = rounded(w, out * in, p_);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        y[r * out + o] =
            emulated_dot(e_.matmul, xr.data() + r * in, wr.data() + o * in, in, storage_);
      }
    }
    round_in_place(y, rows * out, storage_);
  }
  void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                int64_t d) const override {
    if (e_.fp32_outside_matmul) {
      fp32_rms_norm(x, weight, eps, y, rows, d);
      return;
    }
    const std::vector<float> input = norm_input(x, rows * d);
    ref::rms_norm(input.data(), weight, eps, y, rows, d);
    round_in_place(y, rows * d, storage_);
  }
  void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                  int64_t rows, int64_t d) const override {
    if (e_.fp32_outside_matmul) {
      fp32_layer_norm(x, weight, bias, eps, y, rows, d);
      return;
    }
    const std::vector<float> input = norm_input(x, rows * d);
    ref::layer_norm(input.data(), weight, bias, eps, y, rows, d);
    round_in_place(y, rows * d, storage_);
  }
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
            double theta, const RopeScaling& scaling) const override {
    if (e_.fp32_outside_matmul) {
      fp32_rope(x, positions, n_heads, head_dim, theta, scaling);
      return;
    }
    ref::rope(x, positions, n_heads, head_dim, theta, scaling);
    round_in_place(x, static_cast<int64_t>(positions.size()) * n_heads * head_dim, storage_);
  }
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override {
    emulated_attention(e_.attention, p_, storage_, q, keys, values, positions, dims, context, probs,
                       probs_width);
  }
  void softmax(float* x, int64_t rows, int64_t n) const override {
    fp32_softmax(x, rows, n, outside_matmul());
  }
  void swiglu(const float* gate, const float* up, float* out, int64_t n) const override {
    if (e_.fp32_outside_matmul) {
      fp32_swiglu(gate, up, out, n);
      return;
    }
    switch (e_.activation) {
      case ActivationFormula::kReference:
        ref::swiglu(gate, up, out, n);
        break;
      case ActivationFormula::kFused:
        fused_swiglu(gate, up, out, n);
        break;
      case ActivationFormula::kEager:
        unfused_swiglu(gate, up, out, n, storage_);
        break;
    }
    round_in_place(out, n, storage_);
  }
  void gelu(float* x, int64_t n) const override {
    if (e_.fp32_outside_matmul) {
      fp32_gelu(x, n);
      return;
    }
    switch (e_.activation) {
      case ActivationFormula::kReference:
        ref::gelu(x, n);
        break;
      case ActivationFormula::kFused:
        fused_gelu(x, n);
        break;
      case ActivationFormula::kEager:
        fp32_gelu(x, n);
        break;
    }
    round_in_place(x, n, storage_);
  }
  void residual_add(float* x, const float* branch, int64_t n) const override {
    ref::residual_add(x, branch, n);
    if (!e_.fp32_residual) round_in_place(x, n, outside_matmul());
  }
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override {
    ref::select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
    round_in_place(weights, n_tokens * k, outside_matmul());
  }
  int64_t apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k, int64_t n_experts,
                         int64_t capacity, int32_t* kept) const override {
    return ref::apply_capacity(indices, n_tokens, k, n_experts, capacity, kept);
  }
  std::vector<int64_t> expert_order(std::span<const int64_t> tokens_per_expert) const override {
    return ref_kernels().expert_order(tokens_per_expert);
  }

 private:
  // The precision of the outputs of ops other than matmul.
  Precision outside_matmul() const { return e_.fp32_outside_matmul ? Precision::kFP32 : storage_; }
  // A norm reads the residual stream: in storage, unless the backend keeps it in fp32.
  std::vector<float> norm_input(const float* x, int64_t n) const {
    return rounded(x, n, e_.fp32_residual ? Precision::kFP32 : storage_);
  }

  Precision p_;
  Precision storage_;
  Emulation e_;
  std::string name_;
};

}  // namespace

std::unique_ptr<const Kernels> make_emulated_kernels(Precision precision,
                                                     const Emulation& emulation, std::string name) {
  return std::make_unique<EmulatedKernels>(precision, emulation, std::move(name));
}

}  // namespace moeref::golden
