// Causal scaled dot-product attention with H query heads over G K/V heads (Ainslie et al. 2023).
//
// G = 1 is multi-query attention (Shazeer 2019): every query head reads the same K/V stream, so
// the cache is H times smaller than multi-head attention's (G = H). Query head h reads K/V head
// h / (H / G).
//
//   q:       [tokens, H, head_dim]             (RoPE already applied)
//   keys:    [G, kv_capacity, head_dim]        (the cache; position p at row p)
//   values:  [G, kv_capacity, head_dim]
//   context: [tokens, H, head_dim]             out
//   probs:   [tokens, H, probs_width] or null  out; zero beyond the query's own position
//
// Query t, at positions[t], attends to the keys at positions 0..positions[t] (later keys are
// excluded, not masked with a large negative number):
//   s_j = q . k_j / sqrt(head_dim),  p = softmax(s),  context = sum_j p_j v_j
// Dot products and sums in double in index order; scores, probabilities and outputs are each
// rounded once to fp32. positions[t] < probs_width <= kv_capacity is required.
#pragma once

#include <cstdint>
#include <span>

namespace moeref::ref {

struct AttentionDims {
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t kv_capacity = 0;
};

void attention(const float* q, const float* keys, const float* values,
               std::span<const int64_t> positions, const AttentionDims& dims, float* context,
               float* probs, int64_t probs_width);

}  // namespace moeref::ref
