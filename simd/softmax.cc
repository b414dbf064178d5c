#include "simd/softmax.h"

#include <cstddef>

#include "ref/ops/parallel.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/softmax.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// After highway.h: the math header and SoftmaxRow are per target too.
#include "hwy/contrib/math/math-inl.h"
#include "simd/softmax-inl.h"

#if HWY_ONCE
namespace moeref::simd {

HWY_EXPORT(SoftmaxRow);

void softmax(float* x, int64_t rows, int64_t n) {
  if (n == 0) return;
  const size_t width = static_cast<size_t>(n);
#pragma omp parallel for schedule(static) if (rows * n >= ref::kParallelWork)
  for (int64_t r = 0; r < rows; ++r) HWY_DYNAMIC_DISPATCH(SoftmaxRow)(x + r * n, width);
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
