// The KV cache: for every layer, the keys (after RoPE) and values of every position seen so far.
//
// Layout per layer: keys and values each [n_kv_heads, max_seq_len, head_dim], position p of K/V
// head g at row g * max_seq_len + p. With multi-query attention (n_kv_heads = 1) this is
// n_heads times smaller than multi-head attention's cache.
#pragma once

#include <cstdint>
#include <vector>

#include "ref/io/config.h"
#include "ref/model/kv_view.h"

namespace moeref {

class KvCache {
 public:
  explicit KvCache(const ModelConfig& config);

  int64_t length() const { return length_; }  // positions filled: the next token's position
  int64_t capacity() const { return capacity_; }
  int64_t n_layers() const { return static_cast<int64_t>(keys_.size()); }

  float* keys(int64_t layer) { return keys_[layer].data(); }
  float* values(int64_t layer) { return values_[layer].data(); }
  const float* keys(int64_t layer) const { return keys_[layer].data(); }
  const float* values(int64_t layer) const { return values_[layer].data(); }

  // Layer `layer`'s K/V, for the decoder layer to write new tokens to and attention to read.
  // After every layer has stored a forward call's tokens, advance() moves length() past them.
  KvView view(int64_t layer);
  void advance(int64_t n_tokens);

  // Forgets every position from `length` on (speculative decoding's rollback). Throws
  // std::out_of_range if length is negative or past length().
  void truncate(int64_t length);

  // Equal lengths and bitwise-equal K/V at every filled position.
  bool same_contents(const KvCache& other) const;

 private:
  int64_t n_kv_heads_;
  int64_t head_dim_;
  int64_t capacity_;
  int64_t length_ = 0;
  std::vector<std::vector<float>> keys_;
  std::vector<std::vector<float>> values_;
};

}  // namespace moeref
