#include "simd/rope.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "ref/ops/parallel.h"
#include "ref/ops/rope.h"
#include "ref/ops/rope_frequencies.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/rope.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// Rotates the pairs (i, i + half) of one head by the angles whose cosines and sines are cos_a and
// sin_a [half]. The tail i >= half - half % lanes goes through a one-lane vector of the same
// target.
void RotateHalfImpl(float* head, const float* cos_a, const float* sin_a, size_t half) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= half; i += lanes) {
    const auto first = hn::LoadU(df, head + i);
    const auto second = hn::LoadU(df, head + half + i);
    const auto c = hn::LoadU(df, cos_a + i);
    const auto s = hn::LoadU(df, sin_a + i);
    hn::StoreU(hn::MulSub(first, c, hn::Mul(second, s)), df, head + i);
    hn::StoreU(hn::MulAdd(second, c, hn::Mul(first, s)), df, head + half + i);
  }
  const hn::CappedTag<float, 1> d1;
  for (; i < half; ++i) {
    const auto first = hn::LoadU(d1, head + i);
    const auto second = hn::LoadU(d1, head + half + i);
    const auto c = hn::LoadU(d1, cos_a + i);
    const auto s = hn::LoadU(d1, sin_a + i);
    hn::StoreU(hn::MulSub(first, c, hn::Mul(second, s)), d1, head + i);
    hn::StoreU(hn::MulAdd(second, c, hn::Mul(first, s)), d1, head + half + i);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::simd {

HWY_EXPORT(RotateHalfImpl);

namespace {

// s cos and s sin of every (token, frequency) angle of one call, in fp32, with what they were
// computed for.
struct RopeTables {
  std::vector<int64_t> positions;
  int64_t head_dim = 0;
  double theta = 0.0;
  RopeScaling scaling;
  std::vector<float> cos, sin;
};

// The tables for these positions: those of the calling thread's last call when it was for the
// same positions, head_dim, theta and scaling (a forward call rotates q and k of every layer at
// the same positions: 2 x n_layers calls, one computation), else computed anew from the
// reference's frequencies with the reference's expressions, so that every angle is the same
// double.
const RopeTables& rope_tables(std::span<const int64_t> positions, int64_t half, int64_t head_dim,
                              double theta, const RopeScaling& scaling, bool parallel) {
  thread_local RopeTables last;
  if (last.head_dim == head_dim && last.theta == theta && last.scaling == scaling &&
      std::ranges::equal(last.positions, positions)) {
    return last;
  }
  const ref::RopeFrequencies frequencies =
      ref::rope_frequencies(theta, head_dim, scaling, ref::max_position(positions));
  const double* const inv_freq = frequencies.inv_freq.data();
  const double s = frequencies.attention_scaling;
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  last.cos.resize(static_cast<size_t>(n_tokens * half));
  last.sin.resize(last.cos.size());
  // Through pointers: inside the region, `last` would name each thread's own.
  float* const cos = last.cos.data();
  float* const sin = last.sin.data();
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(positions[t]) * inv_freq[i];
      cos[t * half + i] = static_cast<float>(std::cos(angle) * s);
      sin[t * half + i] = static_cast<float>(std::sin(angle) * s);
    }
  }
  last.positions.assign(positions.begin(), positions.end());
  last.head_dim = head_dim;
  last.theta = theta;
  last.scaling = scaling;
  return last;
}

}  // namespace

void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
          double theta, const RopeScaling& scaling) {
  const int64_t half = head_dim / 2;
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  if (half == 0 || n_tokens == 0) return;
  const bool parallel = n_tokens * n_heads * head_dim >= ref::kParallelWork;

  const RopeTables& tables = rope_tables(positions, half, head_dim, theta, scaling, parallel);
  const size_t half_size = static_cast<size_t>(half);
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = x + (t * n_heads + h) * head_dim;
      const float* cos_a = tables.cos.data() + t * half;
      const float* sin_a = tables.sin.data() + t * half;
      HWY_DYNAMIC_DISPATCH(RotateHalfImpl)(head, cos_a, sin_a, half_size);
    }
  }
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
