// SoftmaxRow(x, n), per SIMD target: a row softmax in place, shared by simd/softmax.cc (softmax)
// and simd/attention.cc (each head's scores), which include it after hwy/highway.h and
// hwy/contrib/math/math-inl.h inside their foreach_target.h pass. The contract and accuracy are
// those of simd/softmax.h.
//
// Toggle guard (not #pragma once): this header is compiled once per target.
#if defined(MOEREF_SIMD_SOFTMAX_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MOEREF_SIMD_SOFTMAX_INL_H_
#undef MOEREF_SIMD_SOFTMAX_INL_H_
#else
#define MOEREF_SIMD_SOFTMAX_INL_H_
#endif

#include <algorithm>
#include <cstddef>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// (inline: two translation units define it.) p = exp(x - max) / sum: subtracting the maximum keeps
// every argument <= 0, where Highway's Exp is within 1 ulp and cannot overflow (it returns 0 below
// -104), and the largest term is exactly 1, so the sum is in [1, n].
inline void SoftmaxRow(float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  float max_value = x[0];
  size_t i = 0;
  if (n >= lanes) {
    auto max_v = hn::LoadU(df, x);
    for (i = lanes; i + lanes <= n; i += lanes) max_v = hn::Max(max_v, hn::LoadU(df, x + i));
    max_value = hn::GetLane(hn::MaxOfLanes(df, max_v));
  }
  for (; i < n; ++i) max_value = std::max(max_value, x[i]);

  const auto max_v = hn::Set(df, max_value);
  auto sum0 = hn::Zero(df), sum1 = hn::Zero(df), sum2 = hn::Zero(df), sum3 = hn::Zero(df);
  i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    const auto e0 = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i), max_v));
    const auto e1 = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i + lanes), max_v));
    const auto e2 = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i + 2 * lanes), max_v));
    const auto e3 = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i + 3 * lanes), max_v));
    hn::StoreU(e0, df, x + i);
    hn::StoreU(e1, df, x + i + lanes);
    hn::StoreU(e2, df, x + i + 2 * lanes);
    hn::StoreU(e3, df, x + i + 3 * lanes);
    sum0 = hn::Add(sum0, e0);
    sum1 = hn::Add(sum1, e1);
    sum2 = hn::Add(sum2, e2);
    sum3 = hn::Add(sum3, e3);
  }
  for (; i + lanes <= n; i += lanes) {
    const auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i), max_v));
    hn::StoreU(e, df, x + i);
    sum0 = hn::Add(sum0, e);
  }
  const hn::CappedTag<float, 1> d1;
  float tail = 0.0f;
  for (; i < n; ++i) {
    const auto e = hn::Exp(d1, hn::Sub(hn::LoadU(d1, x + i), hn::Set(d1, max_value)));
    hn::StoreU(e, d1, x + i);
    tail += hn::GetLane(e);
  }
  const auto sum = hn::Add(hn::Add(sum0, sum1), hn::Add(sum2, sum3));
  const float inv_sum = 1.0f / (hn::GetLane(hn::SumOfLanes(df, sum)) + tail);

  const auto scale = hn::Set(df, inv_sum);
  i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), scale), df, x + i);
  for (; i < n; ++i) {
    hn::StoreU(hn::Mul(hn::LoadU(d1, x + i), hn::Set(d1, inv_sum)), d1, x + i);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#endif  // MOEREF_SIMD_SOFTMAX_INL_H_
