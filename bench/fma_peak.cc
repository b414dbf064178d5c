#include "bench/fma_peak.h"

#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/fma_peak.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::bench {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// `steps` FMAs on each of the kFmaChains chains; writes each chain's first lane to ends. With
// m = 1 - 1e-6 and a = 1e-6 each chain moves towards 1 from its start in [1, 2): no overflow, no
// subnormals.
void FmaChains(size_t steps, float* HWY_RESTRICT ends) {
  const hn::ScalableTag<float> d;
  const auto m = hn::Set(d, 1.0f - 1e-6f), a = hn::Set(d, 1e-6f);
  hn::Vec<decltype(d)> chains[kFmaChains];
#pragma GCC unroll 16
  for (size_t c = 0; c < kFmaChains; ++c) {
    chains[c] = hn::Set(d, 1.0f + static_cast<float>(c) / 16.0f);
  }
  for (size_t i = 0; i < steps; ++i) {
#pragma GCC unroll 16
    for (size_t c = 0; c < kFmaChains; ++c) chains[c] = hn::MulAdd(chains[c], m, a);
  }
#pragma GCC unroll 16
  for (size_t c = 0; c < kFmaChains; ++c) ends[c] = hn::GetLane(chains[c]);
}

size_t FloatLanes() { return hn::Lanes(hn::ScalableTag<float>()); }

}  // namespace HWY_NAMESPACE
}  // namespace moeref::bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::bench {

namespace {

// Steps per chain and thread in one run: about 2^30 FLOPs per thread at 16 lanes, tens of
// milliseconds, far longer than the thread team's start.
constexpr size_t kSteps = size_t{1} << 22;

double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

}  // namespace

HWY_EXPORT(FmaChains);
HWY_EXPORT(FloatLanes);

int fma_peak_lanes() { return static_cast<int>(HWY_DYNAMIC_DISPATCH(FloatLanes)()); }

std::vector<float> fma_chain_values(size_t steps) {
  std::vector<float> ends(kFmaChains);
  HWY_DYNAMIC_DISPATCH(FmaChains)(steps, ends.data());
  return ends;
}

double fma_peak_flops_per_second(int repeats) {
  const double flops_per_thread =
      2.0 * kFmaChains * static_cast<double>(fma_peak_lanes()) * static_cast<double>(kSteps);
  double best = 0;
  for (int r = 0; r <= repeats; ++r) {  // run 0 untimed: wakes the thread team
    int threads = 1;
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel
    {
#pragma omp single
      threads = omp_get_num_threads();
      float ends[kFmaChains];
      HWY_DYNAMIC_DISPATCH(FmaChains)(kSteps, ends);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r > 0) best = std::max(best, flops_per_thread * threads / seconds);
  }
  return best;
}

double fma_peak_thread_cpu_flops_per_second(int repeats) {
  const double flops =
      2.0 * kFmaChains * static_cast<double>(fma_peak_lanes()) * static_cast<double>(kSteps);
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    float ends[kFmaChains];
    const double start = thread_cpu_seconds();
    HWY_DYNAMIC_DISPATCH(FmaChains)(kSteps, ends);
    best = std::max(best, flops / (thread_cpu_seconds() - start));
  }
  return best;
}

}  // namespace moeref::bench
#endif  // HWY_ONCE
