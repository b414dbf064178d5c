#include "ref/ops/softmax.h"

#include <cmath>
#include <vector>

#include "ref/ops/parallel.h"

namespace moeref::ref {

namespace {

float row_max(const float* x, int64_t n) {
  float max_value = x[0];
  for (int64_t j = 1; j < n; ++j) max_value = x[j] > max_value ? x[j] : max_value;
  return max_value;
}

}  // namespace

void softmax(float* x, int64_t rows, int64_t n) {
  if (n == 0) return;
#pragma omp parallel for schedule(static) if (rows * n >= kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * n;
    const double max_value = row_max(xr, n);
    std::vector<double> exps(static_cast<size_t>(n));
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      exps[j] = std::exp(xr[j] - max_value);
      sum += exps[j];
    }
    for (int64_t j = 0; j < n; ++j) xr[j] = static_cast<float>(exps[j] / sum);
  }
}

double log_sum_exp(const float* x, int64_t n) {
  const double max_value = row_max(x, n);
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(x[j] - max_value);
  return max_value + std::log(sum);
}

}  // namespace moeref::ref
