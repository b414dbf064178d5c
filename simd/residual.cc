#include "simd/residual.h"

#include <cstddef>

#include "simd/elementwise_chunks.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/residual.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

void ResidualAddImpl(float* HWY_RESTRICT x, const float* HWY_RESTRICT branch, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::Add(hn::LoadU(df, x + i), hn::LoadU(df, branch + i)), df, x + i);
  }
  for (; i < n; ++i) x[i] += branch[i];
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::simd {

HWY_EXPORT(ResidualAddImpl);

void residual_add(float* x, const float* branch, int64_t n) {
  over_chunks(n, [&](int64_t begin, size_t count) {
    HWY_DYNAMIC_DISPATCH(ResidualAddImpl)(x + begin, branch + begin, count);
  });
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
