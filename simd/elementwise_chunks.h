// How simd/'s elementwise ops (simd/activation.h, simd/residual.h) share out n elements: at once
// below ref::kParallelWork, else in fixed chunks over the OpenMP threads. Each element is computed
// by the same code whatever chunk it falls in, so any split gives the same bits.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "ref/ops/parallel.h"

namespace moeref::simd {

// Elements per OpenMP iteration once n >= ref::kParallelWork.
inline constexpr int64_t kElementwiseChunk = 1 << 13;

// Calls apply(begin, count) over [0, n): once, or chunk by chunk over the OpenMP threads.
template <class Apply>
void over_chunks(int64_t n, const Apply& apply) {
  if (n < ref::kParallelWork) {
    if (n > 0) apply(0, static_cast<size_t>(n));
    return;
  }
  const int64_t chunks = (n + kElementwiseChunk - 1) / kElementwiseChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kElementwiseChunk;
    apply(begin, static_cast<size_t>(std::min(kElementwiseChunk, n - begin)));
  }
}

}  // namespace moeref::simd
