#include "ref/model/feed_forward.h"

#include <vector>

namespace moeref {

void feed_forward(const Kernels& kernels, Activation activation, const FeedForwardWeights& w,
                  const float* x, int64_t rows, float* y) {
  const int64_t d_ff = w.up_proj.dim(0);
  const int64_t d_model = w.up_proj.dim(1);
  std::vector<float> hidden(static_cast<size_t>(rows * d_ff));
  kernels.matmul(x, w.up_proj.data(), hidden.data(), rows, d_model, d_ff);
  if (activation == Activation::kSwiGlu) {
    std::vector<float> gate(hidden.size());
    kernels.matmul(x, w.gate_proj.data(), gate.data(), rows, d_model, d_ff);
    kernels.swiglu(gate.data(), hidden.data(), hidden.data(), rows * d_ff);
  } else {
    kernels.gelu(hidden.data(), rows * d_ff);
  }
  kernels.matmul(hidden.data(), w.down_proj.data(), y, rows, d_ff, d_model);
}

}  // namespace moeref
