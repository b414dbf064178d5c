#include "ref/ops/activation.h"

#include <cmath>

#include "ref/ops/parallel.h"

namespace moeref::ref {

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const double a = gate[i];
    const double silu = a / (1.0 + std::exp(-a));
    out[i] = static_cast<float>(silu * up[i]);
  }
}

void gelu(float* x, int64_t n) {
  const double inv_sqrt2 = 1.0 / std::sqrt(2.0);
#pragma omp parallel for schedule(static) if (n >= kParallelWork)
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    x[i] = static_cast<float>(0.5 * v * (1.0 + std::erf(v * inv_sqrt2)));
  }
}

}  // namespace moeref::ref
