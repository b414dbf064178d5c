#include "bench/fma_peak.h"

#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstddef>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/fma_peak.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::bench {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// `steps` FMAs on each of 12 independent chains; returns the sum of the chains, so that the
// compiler keeps them. With m = 1 - 1e-6 and a = 1e-6 each chain stays at 1: no overflow, no
// subnormals.
float FmaChains(size_t steps) {
  const hn::ScalableTag<float> d;
  const auto m = hn::Set(d, 1.0f - 1e-6f), a = hn::Set(d, 1e-6f);
  auto c0 = hn::Set(d, 1.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  auto c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
  for (size_t i = 0; i < steps; ++i) {
    c0 = hn::MulAdd(c0, m, a);
    c1 = hn::MulAdd(c1, m, a);
    c2 = hn::MulAdd(c2, m, a);
    c3 = hn::MulAdd(c3, m, a);
    c4 = hn::MulAdd(c4, m, a);
    c5 = hn::MulAdd(c5, m, a);
    c6 = hn::MulAdd(c6, m, a);
    c7 = hn::MulAdd(c7, m, a);
    c8 = hn::MulAdd(c8, m, a);
    c9 = hn::MulAdd(c9, m, a);
    c10 = hn::MulAdd(c10, m, a);
    c11 = hn::MulAdd(c11, m, a);
  }
  const auto sum = hn::Add(
      hn::Add(hn::Add(hn::Add(c0, c1), hn::Add(c2, c3)), hn::Add(hn::Add(c4, c5), hn::Add(c6, c7))),
      hn::Add(hn::Add(c8, c9), hn::Add(c10, c11)));
  return hn::GetLane(hn::SumOfLanes(d, sum));
}

size_t FloatLanes() { return hn::Lanes(hn::ScalableTag<float>()); }

}  // namespace HWY_NAMESPACE
}  // namespace moeref::bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::bench {

namespace {

constexpr int kChains = 12;
// Steps per chain and thread in one run: about 2^30 FLOPs per thread at 16 lanes, tens of
// milliseconds, far longer than the thread team's start.
constexpr size_t kSteps = size_t{1} << 22;

}  // namespace

HWY_EXPORT(FmaChains);
HWY_EXPORT(FloatLanes);

int fma_peak_lanes() { return static_cast<int>(HWY_DYNAMIC_DISPATCH(FloatLanes)()); }

double fma_peak_flops_per_second(int repeats) {
  const double flops_per_thread =
      2.0 * kChains * static_cast<double>(fma_peak_lanes()) * static_cast<double>(kSteps);
  double best = 0;
  for (int r = 0; r <= repeats; ++r) {  // run 0 untimed: wakes the thread team
    float sink = 0;
    int threads = 1;
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+ : sink)
    {
#pragma omp single
      threads = omp_get_num_threads();
      sink += HWY_DYNAMIC_DISPATCH(FmaChains)(kSteps);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    benchmark::DoNotOptimize(sink);
    if (r > 0) best = std::max(best, flops_per_thread * threads / seconds);
  }
  return best;
}

}  // namespace moeref::bench
#endif  // HWY_ONCE
