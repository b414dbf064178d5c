#include "simd/norm.h"

#include <cmath>
#include <cstddef>

#include "ref/ops/parallel.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/norm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// Each loop below runs whole vectors, then the last d % lanes elements through a one-lane vector
// of the same target (CappedTag<float, 1>), so the tail is computed by the same operations.

float SumRow(const float* x, size_t d) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  auto sum0 = hn::Zero(df), sum1 = hn::Zero(df), sum2 = hn::Zero(df), sum3 = hn::Zero(df);
  size_t i = 0;
  for (; i + 4 * lanes <= d; i += 4 * lanes) {
    sum0 = hn::Add(sum0, hn::LoadU(df, x + i));
    sum1 = hn::Add(sum1, hn::LoadU(df, x + i + lanes));
    sum2 = hn::Add(sum2, hn::LoadU(df, x + i + 2 * lanes));
    sum3 = hn::Add(sum3, hn::LoadU(df, x + i + 3 * lanes));
  }
  for (; i + lanes <= d; i += lanes) sum0 = hn::Add(sum0, hn::LoadU(df, x + i));
  const hn::CappedTag<float, 1> d1;
  float tail = 0.0f;
  for (; i < d; ++i) tail += hn::GetLane(hn::LoadU(d1, x + i));
  const auto sum = hn::Add(hn::Add(sum0, sum1), hn::Add(sum2, sum3));
  return hn::GetLane(hn::SumOfLanes(df, sum)) + tail;
}

// sum of (x[i] - center)^2: the variance's numerator, or with center 0 RMSNorm's sum of squares.
float SumSquaredDeviations(const float* x, float center, size_t d) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  const auto c = hn::Set(df, center);
  auto sum0 = hn::Zero(df), sum1 = hn::Zero(df), sum2 = hn::Zero(df), sum3 = hn::Zero(df);
  size_t i = 0;
  for (; i + 4 * lanes <= d; i += 4 * lanes) {
    const auto v0 = hn::Sub(hn::LoadU(df, x + i), c);
    const auto v1 = hn::Sub(hn::LoadU(df, x + i + lanes), c);
    const auto v2 = hn::Sub(hn::LoadU(df, x + i + 2 * lanes), c);
    const auto v3 = hn::Sub(hn::LoadU(df, x + i + 3 * lanes), c);
    sum0 = hn::MulAdd(v0, v0, sum0);
    sum1 = hn::MulAdd(v1, v1, sum1);
    sum2 = hn::MulAdd(v2, v2, sum2);
    sum3 = hn::MulAdd(v3, v3, sum3);
  }
  for (; i + lanes <= d; i += lanes) {
    const auto v = hn::Sub(hn::LoadU(df, x + i), c);
    sum0 = hn::MulAdd(v, v, sum0);
  }
  const hn::CappedTag<float, 1> d1;
  float tail = 0.0f;
  for (; i < d; ++i) {
    const auto v = hn::Sub(hn::LoadU(d1, x + i), hn::Set(d1, center));
    tail += hn::GetLane(hn::Mul(v, v));
  }
  const auto sum = hn::Add(hn::Add(sum0, sum1), hn::Add(sum2, sum3));
  return hn::GetLane(hn::SumOfLanes(df, sum)) + tail;
}

// 1 / sqrt(sum / d + eps) in double, rounded once: the fp32 error is all in the sum.
float InverseRoot(float sum, size_t d, double eps) {
  return static_cast<float>(1.0 /
                            std::sqrt(static_cast<double>(sum) / static_cast<double>(d) + eps));
}

// y = weight * (x * inv_rms), the reference's order of operations.
void RmsNormRow(const float* x, const float* weight, double eps, float* y, size_t d) {
  const float inv_rms = InverseRoot(SumSquaredDeviations(x, 0.0f, d), d, eps);
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  const auto scale = hn::Set(df, inv_rms);
  size_t i = 0;
  for (; i + lanes <= d; i += lanes) {
    const auto normalized = hn::Mul(hn::LoadU(df, x + i), scale);
    hn::StoreU(hn::Mul(hn::LoadU(df, weight + i), normalized), df, y + i);
  }
  const hn::CappedTag<float, 1> d1;
  for (; i < d; ++i) {
    const auto normalized = hn::Mul(hn::LoadU(d1, x + i), hn::Set(d1, inv_rms));
    hn::StoreU(hn::Mul(hn::LoadU(d1, weight + i), normalized), d1, y + i);
  }
}

// Two passes (the mean, then the squared deviations from it) rather than E[x^2] - E[x]^2, which
// cancels when the mean is large against the spread. y = MulAdd((x - mean) * inv_std, w, b).
void LayerNormRow(const float* x, const float* weight, const float* bias, double eps, float* y,
                  size_t d) {
  const float mean = static_cast<float>(static_cast<double>(SumRow(x, d)) / static_cast<double>(d));
  const float inv_std = InverseRoot(SumSquaredDeviations(x, mean, d), d, eps);
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  const auto center = hn::Set(df, mean);
  const auto scale = hn::Set(df, inv_std);
  size_t i = 0;
  for (; i + lanes <= d; i += lanes) {
    const auto normalized = hn::Mul(hn::Sub(hn::LoadU(df, x + i), center), scale);
    hn::StoreU(hn::MulAdd(normalized, hn::LoadU(df, weight + i), hn::LoadU(df, bias + i)), df,
               y + i);
  }
  const hn::CappedTag<float, 1> d1;
  for (; i < d; ++i) {
    const auto normalized =
        hn::Mul(hn::Sub(hn::LoadU(d1, x + i), hn::Set(d1, mean)), hn::Set(d1, inv_std));
    hn::StoreU(hn::MulAdd(normalized, hn::LoadU(d1, weight + i), hn::LoadU(d1, bias + i)), d1,
               y + i);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::simd {

HWY_EXPORT(RmsNormRow);
HWY_EXPORT(LayerNormRow);

void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows, int64_t d) {
  if (d == 0) return;
  const size_t width = static_cast<size_t>(d);
#pragma omp parallel for schedule(static) if (rows * d >= ref::kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    HWY_DYNAMIC_DISPATCH(RmsNormRow)(x + r * d, weight, eps, y + r * d, width);
  }
}

void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                int64_t rows, int64_t d) {
  if (d == 0) return;
  const size_t width = static_cast<size_t>(d);
#pragma omp parallel for schedule(static) if (rows * d >= ref::kParallelWork)
  for (int64_t r = 0; r < rows; ++r) {
    HWY_DYNAMIC_DISPATCH(LayerNormRow)(x + r * d, weight, bias, eps, y + r * d, width);
  }
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
