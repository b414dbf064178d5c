// Causal scaled dot-product attention with H query heads over G K/V heads (Ainslie et al. 2023).
//
// G = 1 is multi-query attention (Shazeer 2019): every query head reads the same K/V stream, so
// the cache is H times smaller than multi-head attention's (G = H). Query head h reads K/V head
// h / (H / G).
//
//   q:       [tokens, H, head_dim]             (RoPE already applied)
//   keys:    the cache, in blocks (below)
//   values:  the same layout as keys
//   context: [tokens, H, head_dim]             out
//   probs:   [tokens, H, probs_width] or null  out; zero beyond the query's own position
//
// The cache is a pool of blocks [n_blocks, G, block_size, head_dim]; a sequence's position p lives
// in block block_table[p / block_size] at row p % block_size (paged attention, Kwon et al. 2023).
// An empty block table means one contiguous block of kv_capacity positions, [G, kv_capacity,
// head_dim]: the unpaged cache is the one-block case of the same rule (kv_row below).
//
// Query t, at positions[t], attends to the keys at positions 0..positions[t] (later keys are
// excluded, not masked with a large negative number):
//   s_j = q . k_j / sqrt(head_dim),  p = softmax(s),  context = sum_j p_j v_j
// Dot products and sums in double in index order; scores, probabilities and outputs are each
// rounded once to fp32. positions[t] < probs_width and positions[t] < kv_capacity are required.
//
// Fast twin: simd/attention.h, the same arguments in the same order. Tests: tests/ops_test.cc
// (Attention); the twin against this op: tests/simd_test.cc (SimdAttention).
#pragma once

#include <cstdint>
#include <span>

namespace moeref::ref {

struct AttentionDims {
  AttentionDims(int64_t heads, int64_t kv_heads, int64_t dim, int64_t capacity,
                std::span<const int32_t> table = {}, int64_t block = 0)
      : n_heads(heads),
        n_kv_heads(kv_heads),
        head_dim(dim),
        kv_capacity(capacity),
        block_table(table),
        block_size(block) {}

  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t kv_capacity = 0;               // positions the cache can hold
  std::span<const int32_t> block_table;  // empty: one contiguous block
  int64_t block_size = 0;                // with a block table
};

// Offset (in floats) of the K or V row of head g at `position`.
inline int64_t kv_row(const AttentionDims& d, int64_t g, int64_t position) {
  if (d.block_table.empty()) return (g * d.kv_capacity + position) * d.head_dim;
  const int64_t block = d.block_table[static_cast<size_t>(position / d.block_size)];
  return ((block * d.n_kv_heads + g) * d.block_size + position % d.block_size) * d.head_dim;
}

void attention(const float* q, const float* keys, const float* values,
               std::span<const int64_t> positions, const AttentionDims& dims, float* context,
               float* probs, int64_t probs_width);

}  // namespace moeref::ref
