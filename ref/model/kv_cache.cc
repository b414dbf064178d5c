#include "ref/model/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace moeref {

KvCache::KvCache(const ModelConfig& config)
    : n_kv_heads_(config.n_kv_heads), head_dim_(config.head_dim), capacity_(config.max_seq_len) {
  const size_t per_layer = static_cast<size_t>(n_kv_heads_ * capacity_ * head_dim_);
  keys_.assign(static_cast<size_t>(config.n_layers), std::vector<float>(per_layer, 0.0f));
  values_.assign(static_cast<size_t>(config.n_layers), std::vector<float>(per_layer, 0.0f));
}

KvView KvCache::view(int64_t layer) {
  return {keys_[layer].data(), values_[layer].data(), {}, 0, capacity_};
}

void KvCache::advance(int64_t n_tokens) { length_ += n_tokens; }

void KvCache::truncate(int64_t length) {
  if (length < 0 || length > length_) {
    throw std::out_of_range("cannot truncate a KV cache of " + std::to_string(length_) +
                            " positions to " + std::to_string(length));
  }
  length_ = length;
}

bool KvCache::same_contents(const KvCache& other) const {
  if (length_ != other.length_ || keys_.size() != other.keys_.size() ||
      n_kv_heads_ != other.n_kv_heads_ || head_dim_ != other.head_dim_) {
    return false;
  }
  const size_t row_bytes = static_cast<size_t>(length_ * head_dim_) * sizeof(float);
  for (size_t layer = 0; layer < keys_.size(); ++layer) {
    for (int64_t g = 0; g < n_kv_heads_; ++g) {
      const int64_t mine = g * capacity_ * head_dim_;
      const int64_t theirs = g * other.capacity_ * head_dim_;
      if (std::memcmp(keys_[layer].data() + mine, other.keys_[layer].data() + theirs, row_bytes) ||
          std::memcmp(values_[layer].data() + mine, other.values_[layer].data() + theirs,
                      row_bytes)) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace moeref
