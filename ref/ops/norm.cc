#include "ref/ops/norm.h"

#include <cmath>

#include "ref/ops/parallel.h"

namespace moeref::ref {

void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows, int64_t d) {
#pragma omp parallel for schedule(static) if (rows * d >= kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    double sum_squares = 0.0;
    for (int64_t i = 0; i < d; ++i) sum_squares += static_cast<double>(xr[i]) * xr[i];
    const double inv_rms = 1.0 / std::sqrt(sum_squares / static_cast<double>(d) + eps);
    float* yr = y + r * d;
    for (int64_t i = 0; i < d; ++i) {
      yr[i] = static_cast<float>(static_cast<double>(weight[i]) * (xr[i] * inv_rms));
    }
  }
}

void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                int64_t rows, int64_t d) {
#pragma omp parallel for schedule(static) if (rows * d >= kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    double sum = 0.0;
    for (int64_t i = 0; i < d; ++i) sum += xr[i];
    const double mean = sum / static_cast<double>(d);
    double sum_squares = 0.0;
    for (int64_t i = 0; i < d; ++i) sum_squares += (xr[i] - mean) * (xr[i] - mean);
    const double inv_std = 1.0 / std::sqrt(sum_squares / static_cast<double>(d) + eps);
    float* yr = y + r * d;
    for (int64_t i = 0; i < d; ++i) {
      yr[i] = static_cast<float>((xr[i] - mean) * inv_std * weight[i] + bias[i]);
    }
  }
}

}  // namespace moeref::ref
