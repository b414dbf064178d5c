// The paged KV cache (vLLM, Kwon et al. 2023): a pool of fixed-size blocks shared by many
// sequences, each with a block table that lists its blocks in position order. A sequence's
// position p lives in block block_table[p / block_size], row p % block_size (ref/ops/attention.h).
//
// Per layer the pool holds keys and values of [n_blocks, n_kv_heads, block_size, head_dim].
// Blocks are handed out lowest-numbered first and come back on release(), so the same schedule
// always produces the same block tables. Sequences are named by any int64 id.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "ref/io/config.h"
#include "ref/model/kv_view.h"

namespace moeref {

class PagedKvCache {
 public:
  // Throws std::invalid_argument for a non-positive n_blocks or block_size, or more blocks than
  // int32 numbers; std::runtime_error, naming both amounts, when the pool needs more bytes than
  // this machine's physical memory.
  PagedKvCache(const ModelConfig& config, int64_t n_blocks, int64_t block_size);

  int64_t n_blocks() const { return n_blocks_; }
  int64_t block_size() const { return block_size_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t used_blocks() const { return n_blocks_ - free_blocks(); }
  int64_t blocks_for(int64_t positions) const {
    return (positions + block_size_ - 1) / block_size_;
  }

  // Grows sequence `id`'s table until it holds `positions` positions. Returns false, and takes
  // nothing, when too few blocks are free.
  bool reserve(int64_t id, int64_t positions);
  // Returns every block of `id` to the pool (nothing if it holds none).
  void release(int64_t id);

  bool holds(int64_t id) const { return tables_.contains(id); }
  // Throws std::out_of_range naming the sequence if it holds no blocks.
  const std::vector<int32_t>& block_table(int64_t id) const;
  // The sequence's K/V for every layer; valid until its table next changes.
  std::vector<KvView> views(int64_t id);

 private:
  int64_t n_blocks_;
  int64_t block_size_;
  std::vector<std::vector<float>> keys_;  // per layer
  std::vector<std::vector<float>> values_;
  std::set<int32_t> free_;
  std::map<int64_t, std::vector<int32_t>> tables_;
};

}  // namespace moeref
