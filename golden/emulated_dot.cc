#include "golden/emulated_dot.h"

#include <algorithm>
#include <cmath>

#include "golden/emulated_kernels.h"

namespace moeref::golden {

namespace {

float interleaved(const float* a, const float* b, int64_t n) {
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; ++i) lanes[i % 8] += a[i] * b[i];
  for (int width = 4; width >= 1; width /= 2) {
    for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  }
  return lanes[0];
}

float fma_chain(const float* a, const float* b, int64_t begin, int64_t end) {
  float sum = 0.0f;
  for (int64_t i = begin; i < end; ++i) sum = std::fma(a[i], b[i], sum);
  return sum;
}

float split_k(const float* a, const float* b, int64_t n, bool round_partials, Precision storage) {
  float total = 0.0f;
  for (int64_t begin = 0; begin < n; begin += kSplitKBlock) {
    const float partial = fma_chain(a, b, begin, std::min(n, begin + kSplitKBlock));
    if (round_partials) {
      total = round_to_precision(total + round_to_precision(partial, storage), storage);
    } else {
      total += partial;
    }
  }
  return total;
}

}  // namespace

float emulated_dot(Reduction reduction, const float* a, const float* b, int64_t n,
                   Precision storage) {
  switch (reduction) {
    case Reduction::kInterleaved:
      return interleaved(a, b, n);
    case Reduction::kSequential: {
      float sum = 0.0f;
      for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
      return sum;
    }
    case Reduction::kReversed: {
      float sum = 0.0f;
      for (int64_t i = n - 1; i >= 0; --i) sum += a[i] * b[i];
      return sum;
    }
    case Reduction::kFmaChain:
      return fma_chain(a, b, 0, n);
    case Reduction::kSplitK:
      return split_k(a, b, n, false, storage);
    case Reduction::kSplitKRounded:
      return split_k(a, b, n, true, storage);
  }
  return 0.0f;
}

}  // namespace moeref::golden
