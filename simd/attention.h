// Highway attention, the contract of ref/ops/attention.h: causal scaled dot-product attention of H
// query heads over G K/V heads, contiguous or paged cache, optional probabilities.
//
// The H / G query heads that share a K/V head are computed together, so that each K and V row is
// read once per group and token rather than once per head (multi-query attention's saving, for
// the arithmetic as well as for the cache):
// - the keys of each K/V head are first copied transposed, once per call, in panels of 4 vectors
//   of keys ([n_panels, head_dim, 4 * lanes], zeros past the last key; the panels shared out over
//   the threads), so that a vector holds one head's scores against several consecutive keys and
//   the dot products need no horizontal sums: score[h][j..j+lanes) += q[h][i] * kT[i][j..). Panels
//   rather than one [head_dim, keys] block keep the copy in the L1 cache (simd/attention.cc);
// - softmax per head over its n_keys = position + 1 scores (simd/softmax.h);
// - context[h] = sum_j p[h][j] v_j, the V rows read in key order with one vector accumulator per
//   head and slice of head_dim.
// The scores and the context are fp32 sums in a fixed order (i ascending, j ascending). The items
// of work are (token, K/V head) pairs; when there are fewer pairs than threads (a decode step) and
// the call has 8 x 2^16 multiply-adds or more (1,024 keys of 8 heads of 64), each pair's query
// heads in parts, enough to give every thread one. The items are split over OpenMP threads in a
// fixed round-robin when there is enough work; a head's chains are the same in any part, so the
// bits do not depend on the thread count. Nothing is allocated per token or head: the panels, the
// row offsets and each thread's scores live in buffers reused across calls. Tests:
// tests/simd_test.cc (SimdAttention) against ref::attention.
#pragma once

#include <cstdint>
#include <span>

#include "ref/ops/attention.h"

namespace moeref::simd {

void attention(const float* q, const float* keys, const float* values,
               std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
               float* probs, int64_t probs_width);

}  // namespace moeref::simd
