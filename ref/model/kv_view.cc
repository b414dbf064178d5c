#include "ref/model/kv_view.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moeref {

void store_kv(const KvView& view, int64_t n_kv_heads, int64_t head_dim, int64_t first_position,
              int64_t n_tokens, const float* keys, const float* values) {
  if (first_position + n_tokens > view.capacity) {
    throw std::out_of_range("a KV cache of " + std::to_string(view.capacity) +
                            " positions cannot hold " + std::to_string(n_tokens) + " more after " +
                            std::to_string(first_position));
  }
  const ref::AttentionDims dims = view.attention_dims(n_kv_heads, n_kv_heads, head_dim);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t g = 0; g < n_kv_heads; ++g) {
      const int64_t from = (t * n_kv_heads + g) * head_dim;
      const int64_t to = ref::kv_row(dims, g, first_position + t);
      std::copy_n(keys + from, head_dim, view.keys + to);
      std::copy_n(values + from, head_dim, view.values + to);
    }
  }
}

}  // namespace moeref
