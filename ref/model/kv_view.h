// One layer of one sequence's keys and values, wherever they live: the contiguous KvCache
// (ref/model/kv_cache.h) or a block of the paged cache (ref/model/paged_kv_cache.h). The decoder
// layer writes new K/V through a view and attention reads through it, so both caches share one code
// path.
#pragma once

#include <cstdint>
#include <span>

#include "ref/ops/attention.h"

namespace moeref {

struct KvView {
  float* keys = nullptr;                 // the layer's pool: [n_blocks, G, block_size, head_dim]
  float* values = nullptr;               // (contiguous: one block of `capacity` positions)
  std::span<const int32_t> block_table;  // empty: contiguous
  int64_t block_size = 0;
  int64_t capacity = 0;  // positions this sequence can hold now

  ref::AttentionDims attention_dims(int64_t n_heads, int64_t n_kv_heads, int64_t head_dim) const {
    return {n_heads, n_kv_heads, head_dim, capacity, block_table, block_size};
  }
};

// Writes the K/V of n_tokens new tokens ([n_tokens, n_kv_heads, head_dim] each) at positions
// first_position .. first_position + n_tokens - 1. Throws std::out_of_range past the capacity.
void store_kv(const KvView& view, int64_t n_kv_heads, int64_t head_dim, int64_t first_position,
              int64_t n_tokens, const float* keys, const float* values);

}  // namespace moeref
