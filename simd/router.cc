#include "simd/router.h"

#include <cmath>
#include <cstddef>
#include <limits>

#include "ref/ops/router.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/router.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

bool RowHasNaN(const float* p, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto v = hn::LoadU(df, p + i);
    if (!hn::AllFalse(df, hn::IsNaN(v))) return true;
  }
  for (; i < n; ++i) {
    if (std::isnan(p[i])) return true;
  }
  return false;
}

// Fills chosen[0..k) for one row without NaN: rank by rank, the first index of the largest
// value among those not chosen yet.
void TopKRow(const float* p, size_t n, size_t k, int32_t* chosen) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const size_t lanes = hn::Lanes(df);
  const auto minus_inf = hn::Set(df, -std::numeric_limits<float>::infinity());
  const auto lane_index = hn::Iota(di, 0);
  // Lanes of the block starting at `first` that hold an expert chosen at an earlier rank.
  auto taken_in_block = [&](size_t first, size_t ranks) {
    auto taken = hn::FirstN(di, 0);
    const auto index = hn::Add(lane_index, hn::Set(di, static_cast<int32_t>(first)));
    for (size_t r = 0; r < ranks; ++r) taken = hn::Or(taken, hn::Eq(index, hn::Set(di, chosen[r])));
    return hn::RebindMask(df, taken);
  };
  auto taken_scalar = [&](size_t e, size_t ranks) {
    for (size_t r = 0; r < ranks; ++r) {
      if (chosen[r] == static_cast<int32_t>(e)) return true;
    }
    return false;
  };
  const size_t whole = n / lanes * lanes;
  for (size_t rank = 0; rank < k; ++rank) {
    float best = -std::numeric_limits<float>::infinity();
    if (whole > 0) {
      auto best_v = minus_inf;
      for (size_t i = 0; i < whole; i += lanes) {
        const auto v = hn::IfThenElse(taken_in_block(i, rank), minus_inf, hn::LoadU(df, p + i));
        best_v = hn::Max(best_v, v);
      }
      best = hn::GetLane(hn::MaxOfLanes(df, best_v));
    }
    for (size_t e = whole; e < n; ++e) {
      if (!taken_scalar(e, rank) && p[e] > best) best = p[e];
    }
    // The first unchosen index holding `best` (one exists: -inf is reached when every unchosen
    // value is -inf, and k <= n leaves at least one unchosen).
    int64_t found = -1;
    const auto best_v = hn::Set(df, best);
    for (size_t i = 0; i < whole && found < 0; i += lanes) {
      const auto hit = hn::AndNot(taken_in_block(i, rank), hn::Eq(hn::LoadU(df, p + i), best_v));
      const intptr_t lane = hn::FindFirstTrue(df, hit);
      if (lane >= 0) found = static_cast<int64_t>(i) + lane;
    }
    for (size_t e = whole; e < n && found < 0; ++e) {
      if (!taken_scalar(e, rank) && p[e] == best) found = static_cast<int64_t>(e);
    }
    chosen[rank] = static_cast<int32_t>(found);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::simd {

HWY_EXPORT(RowHasNaN);
HWY_EXPORT(TopKRow);

void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                  bool renormalize, int32_t* indices, float* weights) {
  if (k < 1 || k > n_experts) {  // the reference throws the error
    ref::select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
    return;
  }
  const size_t n = static_cast<size_t>(n_experts);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* p = probs + t * n_experts;
    int32_t* chosen = indices + t * k;
    if (HWY_DYNAMIC_DISPATCH(RowHasNaN)(p, n)) {
      ref::select_top_k(p, 1, n_experts, k, renormalize, chosen, weights + t * k);
      continue;
    }
    HWY_DYNAMIC_DISPATCH(TopKRow)(p, n, static_cast<size_t>(k), chosen);
    // The reference's weights, operation for operation.
    double chosen_sum = 0.0;
    for (int64_t rank = 0; rank < k; ++rank) chosen_sum += p[chosen[rank]];
    for (int64_t rank = 0; rank < k; ++rank) {
      weights[t * k + rank] =
          renormalize ? static_cast<float>(p[chosen[rank]] / chosen_sum) : p[chosen[rank]];
    }
  }
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
