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
// After highway.h: the math header, SoftmaxRow, the transposes and the register count are per
// target too.
#include "hwy/contrib/math/math-inl.h"
#include "simd/softmax-inl.h"
#include "simd/transpose-inl.h"
#include "simd/vector_registers-inl.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// Accumulators a block of scores or of weighted sums keeps in registers, beside the vectors it
// loads and the broadcast it multiplies them by: half the registers, 16 of AVX-512's 32, 8 where
// there are 16 (AVX2). With 16 there, the accumulators and their operands spilled: on the Zen 5
// of docs/performance.md running its AVX2 code, one thread's attention of a 512-token prefill (one
// layer of small) took 4.1 ms, against 3.2 ms with 8 and 1.6 ms at AVX-512. The bits are the same
// either way: each score and each sum is one chain, whatever the block.
constexpr size_t kAccumulators = kVectorRegisters / 2;

// Keys per panel of the transposed keys: the most ScoreHeads scores at once (4 vectors), so that
// each group of keys it scores lies within one panel.
size_t KeyPanelWidth() { return 4 * hn::Lanes(hn::ScalableTag<float>()); }

// Panel `panel` of a K/V head's keys, transposed: out[i][jj] = k_{panel * width + jj}[i] for
// i < hd, jj < width (KeyPanelWidth()), zero past max_keys; key j's row at keys + rows[j]. A key's
// hd values go `width` floats apart, into the panel's hd x width floats (16 KiB with AVX-512),
// which stay in the L1 cache while it is written; 16 keys at a time, 8 x 8 blocks in registers
// (simd/transpose-inl.h). Why panels: in one [hd, keys] block, rows a power of two floats apart at
// 512, 1,024 or 2,048 keys, each key's values fell into one or two sets of the L1 cache, and a
// decode step at position 2,047 spent 0.77 ms per layer copying on the Zen 5 of
// docs/performance.md (0.06 ms in panels).
void CopyKeyPanel(const float* keys, const int64_t* rows, size_t max_keys, size_t hd, size_t panel,
                  float* out) {
  const size_t width = KeyPanelWidth();
  const size_t first = panel * width;
  const size_t count = std::min(width, max_keys - first);
  constexpr size_t kKeys = 16;
  const float* key_rows[kKeys];
  for (size_t group = 0; group < count; group += kKeys) {
    const size_t n = std::min(kKeys, count - group);
    for (size_t jj = 0; jj < n; ++jj) key_rows[jj] = keys + rows[first + group + jj];
    TransposeRows(key_rows, n, hd, out + group, width);
  }
  for (size_t i = 0; i < hd; ++i) std::fill(out + i * width + count, out + (i + 1) * width, 0.0f);
}

// scores[h][v * lanes ..] = scale * sum_i q[h][i] kt[i][v * lanes ..] for kVecs vectors of keys,
// kt at the group's first key in its panel (rows `width` floats apart): kHeads x kVecs
// accumulators, each broadcast q[h][i] multiplied into kVecs vectors of keys, each key vector
// loaded once for all heads. Every element is one multiply-add chain over i, whatever kVecs.
template <size_t kHeads, size_t kVecs>
void ScoreKeys(const float* q, size_t hd, const float* kt, size_t width, float scale, float* scores,
               size_t scores_stride) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  hn::Vec<decltype(df)> acc[kHeads][kVecs];
  for (size_t h = 0; h < kHeads; ++h) {
    for (size_t v = 0; v < kVecs; ++v) acc[h][v] = hn::Zero(df);
  }
  for (size_t i = 0; i < hd; ++i) {
    hn::Vec<decltype(df)> k[kVecs];
    for (size_t v = 0; v < kVecs; ++v) k[v] = hn::LoadU(df, kt + i * width + v * lanes);
    for (size_t h = 0; h < kHeads; ++h) {
      const auto qi = hn::Set(df, q[h * hd + i]);
      for (size_t v = 0; v < kVecs; ++v) acc[h][v] = hn::MulAdd(qi, k[v], acc[h][v]);
    }
  }
  const auto s = hn::Set(df, scale);
  for (size_t h = 0; h < kHeads; ++h) {
    for (size_t v = 0; v < kVecs; ++v) {
      hn::StoreU(hn::Mul(acc[h][v], s), df, scores + h * scores_stride + v * lanes);
    }
  }
}

// scores[h][j] for kHeads heads and j < n_keys, computed for whole vectors of keys: the panels
// (zeros past the last key) and the score rows are padded to a whole panel, so the last vector
// may run past n_keys but not past the buffers. As many vectors of keys at a time as
// kAccumulators allows for kHeads heads, up to four (a panel).
template <size_t kHeads>
void ScoreHeads(const float* q, size_t hd, const float* panels, size_t n_keys, float scale,
                float* scores, size_t scores_stride) {
  constexpr size_t kVecs = std::clamp<size_t>(kAccumulators / kHeads, 1, 4);
  const size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  const size_t width = KeyPanelWidth();
  const auto keys_at = [&](size_t j) { return panels + j / width * hd * width + j % width; };
  size_t j = 0;
  for (; j + kVecs * lanes <= n_keys; j += kVecs * lanes) {
    ScoreKeys<kHeads, kVecs>(q, hd, keys_at(j), width, scale, scores + j, scores_stride);
  }
  for (; j < n_keys; j += lanes) {
    ScoreKeys<kHeads, 1>(q, hd, keys_at(j), width, scale, scores + j, scores_stride);
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

// Two vector slices of head_dim at a time where kAccumulators allows it for kHeads heads, else
// one.
template <size_t kHeads>
void WeightHeads(const float* probs, size_t probs_stride, const float* values, const int64_t* rows,
                 size_t n_keys, size_t hd, float* context) {
  constexpr size_t kSlices = std::clamp<size_t>(kAccumulators / kHeads, 1, 2);
  const hn::ScalableTag<float> df;
  const hn::CappedTag<float, 1> d1;
  const size_t lanes = hn::Lanes(df);
  size_t c = 0;
  for (; c + kSlices * lanes <= hd; c += kSlices * lanes) {
    WeightSlices<kHeads, kSlices>(df, probs, probs_stride, values, rows, n_keys, c, context, hd);
  }
  for (; c + lanes <= hd; c += lanes) {
    WeightSlices<kHeads, 1>(df, probs, probs_stride, values, rows, n_keys, c, context, hd);
  }
  for (; c < hd; ++c)
    WeightSlices<kHeads, 1>(d1, probs, probs_stride, values, rows, n_keys, c, context, hd);
}

// Calls body.template operator()<k>(first_head) over the heads in chunks of 8 (where
// kAccumulators holds two vectors for each), then 4, 2 and 1.
template <class Body>
void ForHeadChunks(size_t heads, const Body& body) {
  size_t h = 0;
  if constexpr (kAccumulators >= 16) {
    for (; h + 8 <= heads; h += 8) body.template operator()<8>(h);
  }
  for (; h + 4 <= heads; h += 4) body.template operator()<4>(h);
  if (h + 2 <= heads) {
    body.template operator()<2>(h);
    h += 2;
  }
  if (h < heads) body.template operator()<1>(h);
}

// One token's query heads of one K/V head: scores, softmax, weighted sum of V. panels: the K/V
// head's keys transposed, [ceil(n_keys / KeyPanelWidth()), hd, KeyPanelWidth()], zeros past the
// last key; values and rows: the cache and each position's row offset in it; scores: one row per
// head, scores_stride floats apart, at least n_keys rounded up to a whole panel.
void AttendGroup(const float* q, size_t heads, size_t hd, const float* panels, const float* values,
                 const int64_t* rows, size_t n_keys, float scale, float* scores,
                 size_t scores_stride, float* context) {
  ForHeadChunks(heads, [&]<size_t k>(size_t h) {
    ScoreHeads<k>(q + h * hd, hd, panels, n_keys, scale, scores + h * scores_stride, scores_stride);
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

// Multiply-adds of a call from which a decode step's query heads are split over the threads: on
// the Zen 5 of docs/performance.md one token's attention gained from the split only past about
// 750 keys (8 heads of 64), and lost up to a microsecond below.
constexpr int64_t kSplitHeadsWork = 8 * ref::kParallelWork;

}  // namespace

HWY_EXPORT(KeyPanelWidth);
HWY_EXPORT(CopyKeyPanel);
HWY_EXPORT(AttendGroup);

void attention(const float* q, const float* keys, const float* values,
               std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
               float* probs, int64_t probs_width) {
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  if (n_tokens == 0) return;
  const int64_t H = dims.n_heads, G = dims.n_kv_heads, hd = dims.head_dim;
  const int64_t heads_per_kv = H / G;
  const int64_t max_keys = *std::max_element(positions.begin(), positions.end()) + 1;
  const int64_t width = static_cast<int64_t>(HWY_DYNAMIC_DISPATCH(KeyPanelWidth)());
  const int64_t n_panels = (max_keys + width - 1) / width;
  const int64_t stride = n_panels * width;  // of a row of scores
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // Per K/V head g: n_panels panels [hd, width] of the keys transposed (kt), and rows
  // [max_keys], the offset of each position's K/V row in the (paged or contiguous) cache.
  static thread_local std::vector<float> kt;
  static thread_local std::vector<int64_t> rows;
  kt.resize(static_cast<size_t>(G * n_panels * hd * width));
  rows.resize(static_cast<size_t>(G * max_keys));
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t j = 0; j < max_keys; ++j) rows[g * max_keys + j] = ref::kv_row(dims, g, j);
  }
  float* kt_data = kt.data();
  const int64_t* rows_data = rows.data();

  // Items of work: (token, K/V head, part of its query heads). One part, all the group's heads
  // reading each K and V row once, when there are at least as many (token, K/V head) pairs as
  // threads; fewer (a decode step: one token, often one K/V head) and from kSplitHeadsWork, the
  // heads in as many parts as it takes to give every thread one. A head's scores and context are
  // the same chains of operations in any part, so the bits do not depend on the split.
  const int64_t pairs = n_tokens * G;
  const int64_t work = n_tokens * H * max_keys * hd;
  const int64_t parts =
      work < kSplitHeadsWork
          ? 1
          : std::clamp<int64_t>((omp_get_max_threads() + pairs - 1) / pairs, 1, heads_per_kv);
  const int64_t items = pairs * parts;
  const bool parallel = items >= 2 && work >= ref::kParallelWork;
#pragma omp parallel if (parallel)
  {
#pragma omp for schedule(static)
    for (int64_t item = 0; item < G * n_panels; ++item) {
      const int64_t g = item / n_panels, panel = item % n_panels;
      HWY_DYNAMIC_DISPATCH(CopyKeyPanel)
      (keys, rows_data + g * max_keys, static_cast<size_t>(max_keys), static_cast<size_t>(hd),
       static_cast<size_t>(panel), kt_data + (g * n_panels + panel) * hd * width);
    }
    static thread_local std::vector<float> scores;
    if (scores.size() < static_cast<size_t>(heads_per_kv * stride)) {
      scores.resize(static_cast<size_t>(heads_per_kv * stride));
    }
    // Round-robin: causal rows grow with t, so contiguous blocks would load the last thread most.
#pragma omp for schedule(static, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t t = item / (G * parts), g = item / parts % G, part = item % parts;
      const int64_t n_keys = positions[t] + 1;
      const int64_t first_head = t * H + g * heads_per_kv + heads_per_kv * part / parts;
      const int64_t heads = heads_per_kv * (part + 1) / parts - heads_per_kv * part / parts;
      HWY_DYNAMIC_DISPATCH(AttendGroup)
      (q + first_head * hd, static_cast<size_t>(heads), static_cast<size_t>(hd),
       kt_data + g * n_panels * hd * width, values, rows_data + g * max_keys,
       static_cast<size_t>(n_keys), scale, scores.data(), static_cast<size_t>(stride),
       context + first_head * hd);
      if (probs != nullptr) {
        for (int64_t h = 0; h < heads; ++h) {
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
