#include "ref/ops/matmul.h"

#include "ref/ops/parallel.h"

namespace moeref::ref {

double dot(const float* a, const float* b, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return sum;
}

void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out) {
#pragma omp parallel for collapse(2) schedule(static) if (rows * out * in >= kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      y[r * out + o] = static_cast<float>(dot(x + r * in, w + o * in, in));
    }
  }
}

}  // namespace moeref::ref
