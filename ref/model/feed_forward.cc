#include "ref/model/feed_forward.h"

#include <vector>

namespace moeref {

void feed_forward(const Kernels& kernels, Activation activation, const FeedForwardWeights& w,
                  const float* x, int64_t rows, float* y) {
  const int64_t d_ff = w.up_proj.dim(0);
  const int64_t d_model = w.up_proj.dim(1);
  if (activation == Activation::kSwiGlu) {
    // up and gate products, swiglu, down product: ref_kernels.cc, or a kernel set's fused form.
    kernels.swiglu_feed_forward(x, w.gate_proj.data(), w.up_proj.data(), w.down_proj.data(), rows,
                                d_model, d_ff, y);
    return;
  }
  std::vector<float> hidden(static_cast<size_t>(rows * d_ff));
  kernels.matmul(x, w.up_proj.data(), hidden.data(), rows, d_model, d_ff);
  kernels.gelu(hidden.data(), rows * d_ff);
  kernels.matmul(hidden.data(), w.down_proj.data(), y, rows, d_ff, d_model);
}

}  // namespace moeref
