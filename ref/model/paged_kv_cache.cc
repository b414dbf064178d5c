#include "ref/model/paged_kv_cache.h"

#include <unistd.h>

#include <limits>
#include <stdexcept>
#include <string>

#include "ref/model/stats.h"

namespace moeref {

PagedKvCache::PagedKvCache(const ModelConfig& config, int64_t n_blocks, int64_t block_size)
    : n_blocks_(n_blocks), block_size_(block_size) {
  if (n_blocks < 1 || block_size < 1) {
    throw std::invalid_argument(
        "a paged KV cache needs at least one block of at least one "
        "position (got " +
        std::to_string(n_blocks) + " blocks of " + std::to_string(block_size) + ")");
  }
  if (n_blocks > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("a paged KV cache holds at most " +
                                std::to_string(std::numeric_limits<int32_t>::max()) +
                                " blocks (block ids are int32), got " + std::to_string(n_blocks));
  }
  // K and V of every layer in fp32, counted in double: the product may pass int64.
  const double pool_bytes = 2.0 * static_cast<double>(config.n_layers) *
                            static_cast<double>(n_blocks) * static_cast<double>(block_size) *
                            static_cast<double>(config.n_kv_heads) *
                            static_cast<double>(config.head_dim) * sizeof(float);
  const double physical =
      static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  if (pool_bytes > physical) {
    throw std::runtime_error(
        "a paged KV cache of " + std::to_string(n_blocks) + " blocks of " +
        std::to_string(block_size) + " positions needs " + format_bytes(pool_bytes) +
        " (K and V, fp32, for " + std::to_string(config.n_layers) + " layers of " +
        std::to_string(config.n_kv_heads) + " KV heads of " + std::to_string(config.head_dim) +
        "); this machine has " + format_bytes(physical) + " of memory");
  }
  const size_t per_layer =
      static_cast<size_t>(n_blocks * config.n_kv_heads * block_size * config.head_dim);
  keys_.assign(static_cast<size_t>(config.n_layers), std::vector<float>(per_layer, 0.0f));
  values_.assign(static_cast<size_t>(config.n_layers), std::vector<float>(per_layer, 0.0f));
  for (int32_t b = 0; b < n_blocks; ++b) free_.insert(b);
}

bool PagedKvCache::reserve(int64_t id, int64_t positions) {
  std::vector<int32_t>& table = tables_[id];
  const int64_t needed = blocks_for(positions) - static_cast<int64_t>(table.size());
  if (needed > free_blocks()) {
    if (table.empty()) tables_.erase(id);
    return false;
  }
  for (int64_t i = 0; i < needed; ++i) {
    table.push_back(*free_.begin());
    free_.erase(free_.begin());
  }
  return true;
}

void PagedKvCache::release(int64_t id) {
  const auto found = tables_.find(id);
  if (found == tables_.end()) return;
  free_.insert(found->second.begin(), found->second.end());
  tables_.erase(found);
}

const std::vector<int32_t>& PagedKvCache::block_table(int64_t id) const {
  const auto found = tables_.find(id);
  if (found == tables_.end()) {
    throw std::out_of_range("sequence " + std::to_string(id) + " holds no KV blocks");
  }
  return found->second;
}

std::vector<KvView> PagedKvCache::views(int64_t id) {
  const std::vector<int32_t>& table = block_table(id);
  std::vector<KvView> layers;
  for (size_t l = 0; l < keys_.size(); ++l) {
    layers.push_back({keys_[l].data(), values_[l].data(), table, block_size_,
                      static_cast<int64_t>(table.size()) * block_size_});
  }
  return layers;
}

}  // namespace moeref
