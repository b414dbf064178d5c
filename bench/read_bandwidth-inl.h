// The streaming read of the bandwidth baseline (bench/roofline_bench.cc), compiled per SIMD
// target: roofline_bench.cc sets HWY_TARGET_INCLUDE to this file, includes hwy/foreach_target.h,
// and dispatches to the best target with HWY_DYNAMIC_DISPATCH.
//
// SumOfFloats(values, n): the fp32 sum of values[0, n), a read of 4n bytes and nothing else. Eight
// independent vector accumulators keep eight loads in flight per core, so the loop waits on memory
// and not on the latency of its own adds (with one accumulator every add waits for the previous
// one). The sum itself is only there so that the compiler cannot drop the loads.
//
// Toggle guard (not #pragma once): this header is compiled once per target.
#if defined(MOEREF_BENCH_READ_BANDWIDTH_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MOEREF_BENCH_READ_BANDWIDTH_INL_H_
#undef MOEREF_BENCH_READ_BANDWIDTH_INL_H_
#else
#define MOEREF_BENCH_READ_BANDWIDTH_INL_H_
#endif

#include <cstddef>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::bench {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

inline float SumOfFloats(const float* HWY_RESTRICT values, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  auto sum0 = hn::Zero(d), sum1 = hn::Zero(d), sum2 = hn::Zero(d), sum3 = hn::Zero(d);
  auto sum4 = hn::Zero(d), sum5 = hn::Zero(d), sum6 = hn::Zero(d), sum7 = hn::Zero(d);
  size_t i = 0;
  for (; i + 8 * lanes <= n; i += 8 * lanes) {
    sum0 = hn::Add(sum0, hn::LoadU(d, values + i));
    sum1 = hn::Add(sum1, hn::LoadU(d, values + i + lanes));
    sum2 = hn::Add(sum2, hn::LoadU(d, values + i + 2 * lanes));
    sum3 = hn::Add(sum3, hn::LoadU(d, values + i + 3 * lanes));
    sum4 = hn::Add(sum4, hn::LoadU(d, values + i + 4 * lanes));
    sum5 = hn::Add(sum5, hn::LoadU(d, values + i + 5 * lanes));
    sum6 = hn::Add(sum6, hn::LoadU(d, values + i + 6 * lanes));
    sum7 = hn::Add(sum7, hn::LoadU(d, values + i + 7 * lanes));
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += values[i];
  const auto sum = hn::Add(hn::Add(hn::Add(sum0, sum1), hn::Add(sum2, sum3)),
                           hn::Add(hn::Add(sum4, sum5), hn::Add(sum6, sum7)));
  return hn::GetLane(hn::SumOfLanes(d, sum)) + tail;
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::bench
HWY_AFTER_NAMESPACE();

#endif  // MOEREF_BENCH_READ_BANDWIDTH_INL_H_ toggle guard
