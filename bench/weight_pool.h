// The weights of the kernel benchmarks: copies of one [out, in] matrix, together at least
// weight_pool_bytes(), used in turn, so that each call reads its weights from memory as decode and
// prefill do (an expert's weights are read once per layer).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace moeref::bench {

// 256 MiB, or four times the L3 cache where the C library reports a larger one: a fixed 256 MiB
// fitted in the 300 MiB L3 of an Emerald Rapids Xeon, where one-token products then "read" at
// 112% of the memory's bandwidth.
inline int64_t weight_pool_bytes() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return std::max<int64_t>(int64_t{256} << 20, 4 * static_cast<int64_t>(std::max(l3, 0L)));
}

// values[i] = 0.01 (i mod 13) - 0.06 for i < n: small, varied and the same in every run.
inline void fill_pattern(float* values, int64_t n) {
  for (int64_t i = 0; i < n; ++i) values[i] = 0.01f * static_cast<float>(i % 13) - 0.06f;
}

class WeightPool {
 public:
  WeightPool(int64_t out, int64_t in)
      : matrix_values_(out * in),
        count_(std::max<int64_t>(2, weight_pool_bytes() / (4 * matrix_values_))),
        values_(static_cast<size_t>(matrix_values_ * count_)) {
    fill_pattern(values_.data(), static_cast<int64_t>(values_.size()));
  }
  // The next copy, [out, in] row-major.
  const float* next() { return values_.data() + (next_++ % count_) * matrix_values_; }

 private:
  int64_t matrix_values_;
  int64_t count_;
  std::vector<float> values_;
  int64_t next_ = 0;
};

}  // namespace moeref::bench
