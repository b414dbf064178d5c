#include "simd/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "ref/ops/parallel.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// After highway.h: the math header and SoftmaxRow are per target too.
#include "hwy/contrib/math/math-inl.h"
#include "simd/softmax-inl.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// scores[h][j..j+kVecs*lanes) = scale * sum_i q[h][i] kt[i][j..]: kHeads x kVecs accumulators,
// each broadcast q[h][i] multiplied into kVecs vectors of keys, each key vector loaded once for
// all heads. Every element is one multiply-add chain over i, whatever kVecs.
template <size_t kHeads, size_t kVecs>
void ScoreKeys(const float* q, size_t hd, const float* kt, size_t kt_stride, size_t j, float scale,
               float* scores, size_t scores_stride) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  hn::Vec<decltype(df)> acc[kHeads][kVecs];
  for (size_t h = 0; h < kHeads; ++h) {
    for (size_t v = 0; v < kVecs; ++v) acc[h][v] = hn::Zero(df);
  }
  for (size_t i = 0; i < hd; ++i) {
    hn::Vec<decltype(df)> k[kVecs];
    for (size_t v = 0; v < kVecs; ++v) k[v] = hn::LoadU(df, kt + i * kt_stride + j + v * lanes);
    for (size_t h = 0; h < kHeads; ++h) {
      const auto qi = hn::Set(df, q[h * hd + i]);
      for (size_t v = 0; v < kVecs; ++v) acc[h][v] = hn::MulAdd(qi, k[v], acc[h][v]);
    }
  }
  const auto s = hn::Set(df, scale);
  for (size_t h = 0; h < kHeads; ++h) {
    for (size_t v = 0; v < kVecs; ++v) {
      hn::StoreU(hn::Mul(acc[h][v], s), df, scores + h * scores_stride + j + v * lanes);
    }
  }
}

// scores[h][j] for kHeads heads and j < n_keys, computed for whole vectors of keys: the
// transposed keys and the score rows are padded (zeros in kt) to a multiple of the widest vector,
// so the last vector may run past n_keys but not past the buffers. Two vectors of keys at a time
// for 8 heads (16 accumulators), four for fewer.
template <size_t kHeads>
void ScoreHeads(const float* q, size_t hd, const float* kt, size_t kt_stride, size_t n_keys,
                float scale, float* scores, size_t scores_stride) {
  constexpr size_t kVecs = kHeads >= 8 ? 2 : 4;
  const size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  size_t j = 0;
  for (; j + kVecs * lanes <= n_keys; j += kVecs * lanes) {
    ScoreKeys<kHeads, kVecs>(q, hd, kt, kt_stride, j, scale, scores, scores_stride);
  }
  for (; j < n_keys; j += lanes) {
    ScoreKeys<kHeads, 1>(q, hd, kt, kt_stride, j, scale, scores, scores_stride);
  }
}

// context[h][c..c+kSlices*Lanes(d)) = sum_j probs[h][j] v_j[c..]: kSlices slices of head_dim of
// width Lanes(d) (whole vectors, or one lane for the tail of head_dim), each V row's slices loaded
// once for all kHeads heads.
template <size_t kHeads, size_t kSlices, class D>
void WeightSlices(D d, const float* probs, size_t probs_stride, const float* values,
                  const int64_t* rows, size_t n_keys, size_t c, float* context, size_t hd) {
  const size_t lanes = hn::Lanes(d);
  hn::Vec<D> acc[kHeads][kSlices];
  for (size_t h = 0; h < kHeads; ++h) {
    for (size_t s = 0; s < kSlices; ++s) acc[h][s] = hn::Zero(d);
  }
  for (size_t j = 0; j < n_keys; ++j) {
    hn::Vec<D> v[kSlices];
    for (size_t s = 0; s < kSlices; ++s) v[s] = hn::LoadU(d, values + rows[j] + c + s * lanes);
    for (size_t h = 0; h < kHeads; ++h) {
      const auto p = hn::Set(d, probs[h * probs_stride + j]);
      for (size_t s = 0; s < kSlices; ++s) acc[h][s] = hn::MulAdd(p, v[s], acc[h][s]);
    }
  }
  for (size_t h = 0; h < kHeads; ++h) {
    for (size_t s = 0; s < kSlices; ++s) {
      hn::StoreU(acc[h][s], d, context + h * hd + c + s * lanes);
    }
  }
}

template <size_t kHeads>
void WeightHeads(const float* probs, size_t probs_stride, const float* values, const int64_t* rows,
                 size_t n_keys, size_t hd, float* context) {
  const hn::ScalableTag<float> df;
  const hn::CappedTag<float, 1> d1;
  const size_t lanes = hn::Lanes(df);
  size_t c = 0;
  for (; c + 2 * lanes <= hd; c += 2 * lanes) {
    WeightSlices<kHeads, 2>(df, probs, probs_stride, values, rows, n_keys, c, context, hd);
  }
  for (; c + lanes <= hd; c += lanes) {
    WeightSlices<kHeads, 1>(df, probs, probs_stride, values, rows, n_keys, c, context, hd);
  }
  for (; c < hd; ++c)
    WeightSlices<kHeads, 1>(d1, probs, probs_stride, values, rows, n_keys, c, context, hd);
}

// Calls body.template operator()<k>(first_head) over the heads in chunks of 8, then 4, 2 and 1.
template <class Body>
void ForHeadChunks(size_t heads, const Body& body) {
  size_t h = 0;
  for (; h + 8 <= heads; h += 8) body.template operator()<8>(h);
  if (h + 4 <= heads) {
    body.template operator()<4>(h);
    h += 4;
  }
  if (h + 2 <= heads) {
    body.template operator()<2>(h);
    h += 2;
  }
  if (h < heads) body.template operator()<1>(h);
}

// One token's query heads of one K/V head: scores, softmax, weighted sum of V.
void AttendGroup(const float* q, size_t heads, size_t hd, const float* kt, size_t kt_stride,
                 const float* values, const int64_t* rows, size_t n_keys, float scale,
                 float* scores, size_t scores_stride, float* context) {
  ForHeadChunks(heads, [&]<size_t k>(size_t h) {
    ScoreHeads<k>(q + h * hd, hd, kt, kt_stride, n_keys, scale, scores + h * scores_stride,
                  scores_stride);
  });
  for (size_t h = 0; h < heads; ++h) SoftmaxRow(scores + h * scores_stride, n_keys);
  ForHeadChunks(heads, [&]<size_t k>(size_t h) {
    WeightHeads<k>(scores + h * scores_stride, scores_stride, values, rows, n_keys, hd,
                   context + h * hd);
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::simd {

namespace {

// Rows of the transposed keys and of the scores are padded to a multiple of this many floats:
// the widest vector Highway has (2048-bit SVE), so whole-vector loads and stores stay inside.
constexpr int64_t kKeyPad = 64;

int64_t padded(int64_t n) { return (n + kKeyPad - 1) / kKeyPad * kKeyPad; }

}  // namespace

HWY_EXPORT(AttendGroup);

void attention(const float* q, const float* keys, const float* values,
               std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
               float* probs, int64_t probs_width) {
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  if (n_tokens == 0) return;
  const int64_t H = dims.n_heads, G = dims.n_kv_heads, hd = dims.head_dim;
  const int64_t heads_per_kv = H / G;
  const int64_t max_keys = *std::max_element(positions.begin(), positions.end()) + 1;
  const int64_t stride = padded(max_keys);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // Per K/V head g: kt [hd, stride], the keys transposed (zero past max_keys), and rows
  // [max_keys], the offset of each position's K/V row in the (paged or contiguous) cache.
  static thread_local std::vector<float> kt;
  static thread_local std::vector<int64_t> rows;
  kt.assign(static_cast<size_t>(G * hd * stride), 0.0f);
  rows.resize(static_cast<size_t>(G * max_keys));
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t j = 0; j < max_keys; ++j) {
      const int64_t row = ref::kv_row(dims, g, j);
      rows[g * max_keys + j] = row;
      for (int64_t i = 0; i < hd; ++i) kt[(g * hd + i) * stride + j] = keys[row + i];
    }
  }
  const float* kt_data = kt.data();
  const int64_t* rows_data = rows.data();

  const int64_t items = n_tokens * G;
  const bool parallel = items >= 2 && n_tokens * H * max_keys * hd >= ref::kParallelWork;
#pragma omp parallel if (parallel)
  {
    static thread_local std::vector<float> scores;
    if (scores.size() < static_cast<size_t>(heads_per_kv * stride)) {
      scores.resize(static_cast<size_t>(heads_per_kv * stride));
    }
    // Round-robin: causal rows grow with t, so contiguous blocks would load the last thread most.
#pragma omp for schedule(static, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t t = item / G, g = item % G;
      const int64_t n_keys = positions[t] + 1;
      const int64_t first_head = t * H + g * heads_per_kv;
      HWY_DYNAMIC_DISPATCH(AttendGroup)
      (q + first_head * hd, static_cast<size_t>(heads_per_kv), static_cast<size_t>(hd),
       kt_data + g * hd * stride, static_cast<size_t>(stride), values, rows_data + g * max_keys,
       static_cast<size_t>(n_keys), scale, scores.data(), static_cast<size_t>(stride),
       context + first_head * hd);
      if (probs != nullptr) {
        for (int64_t h = 0; h < heads_per_kv; ++h) {
          float* row = probs + (first_head + h) * probs_width;
          const float* p = scores.data() + h * stride;
          std::copy(p, p + n_keys, row);
          std::fill(row + n_keys, row + probs_width, 0.0f);
        }
      }
    }
  }
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
