#include "golden/emulated_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "golden/emulated_kernels.h"
#include "golden/fp32_ops.h"

namespace moeref::golden {

namespace {

constexpr float kLog2e = 1.44269504088896340736f;

// One query head's operands, gathered from the cache and rounded to `precision` as the kernel
// reads them (fp32: as they are): the query, the keys [n, head_dim] and the values transposed
// [head_dim, n], so that each context element is one dot product over the keys.
struct Head {
  Head(const float* q_row, const float* keys, const float* values, const ref::AttentionDims& dims,
       int64_t kv_head, int64_t n_keys, Precision precision)
      : n(n_keys), dim(dims.head_dim) {
    q.assign(q_row, q_row + dim);
    k.resize(static_cast<size_t>(n * dim));
    v_columns.resize(k.size());
    for (int64_t j = 0; j < n; ++j) {
      const int64_t row = ref::kv_row(dims, kv_head, j);
      for (int64_t i = 0; i < dim; ++i) {
        k[j * dim + i] = keys[row + i];
        v_columns[i * n + j] = values[row + i];
      }
    }
    for (std::vector<float>* x : {&q, &k, &v_columns}) {
      for (float& value : *x) value = round_to_precision(value, precision);
    }
  }
  const float* key(int64_t j) const { return k.data() + j * dim; }
  float value(int64_t j, int64_t i) const { return v_columns[i * n + j]; }
  const float* value_column(int64_t i) const { return v_columns.data() + i * n; }

  int64_t n;
  int64_t dim;
  std::vector<float> q, k, v_columns;
};

void materialized(const AttentionRecipe& recipe, Precision storage, const Head& h, float scale,
                  float* p, float* out) {
  for (int64_t j = 0; j < h.n; ++j) {
    p[j] = emulated_dot(recipe.scores, h.q.data(), h.key(j), h.dim, storage) * scale;
  }
  fp32_softmax(p, 1, h.n, storage);
  for (int64_t i = 0; i < h.dim; ++i) {
    out[i] = round_to_precision(emulated_dot(recipe.context, p, h.value_column(i), h.n, storage),
                                storage);
  }
}

void eager(const AttentionRecipe& recipe, Precision matmul_inputs, Precision storage, const Head& h,
           float scale, float* p, float* out) {
  for (int64_t j = 0; j < h.n; ++j) {
    const float product = round_to_precision(
        emulated_dot(recipe.scores, h.q.data(), h.key(j), h.dim, storage), storage);
    p[j] = round_to_precision(product * scale, storage);
  }
  fp32_softmax(p, 1, h.n, Precision::kFP32);
  std::vector<float> p_in(p, p + h.n);
  for (float& value : p_in) value = round_to_precision(value, matmul_inputs);
  for (int64_t i = 0; i < h.dim; ++i) {
    out[i] = round_to_precision(
        emulated_dot(recipe.context, p_in.data(), h.value_column(i), h.n, storage), storage);
  }
}

void flash(const AttentionRecipe& recipe, Precision storage, const Head& h, float scale, float* p,
           float* out) {
  std::vector<float> raw(static_cast<size_t>(h.n));
  for (int64_t j = 0; j < h.n; ++j) {
    raw[j] = emulated_dot(recipe.scores, h.q.data(), h.key(j), h.dim, storage);
  }
  const float scale_log2 = scale * kLog2e;
  float running_max = -INFINITY;
  float running_sum = 0.0f;
  std::vector<float> acc(static_cast<size_t>(h.dim), 0.0f);
  for (int64_t begin = 0; begin < h.n; begin += kFlashKeyBlock) {
    const int64_t end = std::min(h.n, begin + kFlashKeyBlock);
    float block_max = running_max;
    for (int64_t j = begin; j < end; ++j) block_max = std::max(block_max, raw[j]);
    const float rescale = std::exp2((running_max - block_max) * scale_log2);
    running_sum *= rescale;
    for (float& a : acc) a *= rescale;
    const float max_scaled = block_max * scale_log2;
    for (int64_t j = begin; j < end; ++j) {
      const float e = std::exp2(std::fma(raw[j], scale_log2, -max_scaled));
      running_sum += e;
      const float e_stored = round_to_precision(e, storage);
      for (int64_t i = 0; i < h.dim; ++i) acc[i] += e_stored * h.value(j, i);
    }
    running_max = block_max;
  }
  for (int64_t i = 0; i < h.dim; ++i) out[i] = round_to_precision(acc[i] / running_sum, storage);
  const float lse = running_max * scale + std::log(running_sum);
  for (int64_t j = 0; j < h.n; ++j) {
    p[j] = round_to_precision(std::exp(raw[j] * scale - lse), storage);
  }
}

void memory_efficient(const AttentionRecipe& recipe, Precision storage, const Head& h, float scale,
                      float* p, float* out) {
  for (int64_t j = 0; j < h.n; ++j) {
    p[j] = emulated_dot(recipe.scores, h.q.data(), h.key(j), h.dim, storage) * scale;
  }
  float running_max = -INFINITY;
  float running_sum = 0.0f;
  for (int64_t begin = 0; begin < h.n; begin += kMemoryEfficientKeyBlock) {
    const int64_t end = std::min(h.n, begin + kMemoryEfficientKeyBlock);
    float block_max = running_max;
    for (int64_t j = begin; j < end; ++j) block_max = std::max(block_max, p[j]);
    float block_sum = 0.0f;
    for (int64_t j = begin; j < end; ++j) block_sum += std::exp(p[j] - block_max);
    running_sum = running_sum * std::exp(running_max - block_max) + block_sum;
    running_max = block_max;
  }
  const float lse = running_max + std::log(running_sum);
  for (int64_t j = 0; j < h.n; ++j) p[j] = round_to_precision(std::exp(p[j] - lse), storage);
  for (int64_t i = 0; i < h.dim; ++i) {
    float acc = 0.0f;
    for (int64_t begin = 0; begin < h.n; begin += kMemoryEfficientKeyBlock) {
      const int64_t end = std::min(h.n, begin + kMemoryEfficientKeyBlock);
      float block = 0.0f;
      for (int64_t j = begin; j < end; ++j) block += p[j] * h.value(j, i);
      acc += block;
    }
    out[i] = round_to_precision(acc, storage);
  }
}

}  // namespace

void emulated_attention(const AttentionRecipe& recipe, Precision matmul_inputs, Precision storage,
                        const float* q, const float* keys, const float* values,
                        std::span<const int64_t> positions, const ref::AttentionDims& dims,
                        float* context, float* probs, int64_t probs_width) {
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  const int64_t hd = dims.head_dim;
  const int64_t heads_per_kv = dims.n_heads / dims.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // What each kernel reads its operands as: FlashAttention and the memory-efficient kernel take
  // tensors in the storage precision, autocast's matmuls round theirs; the fused kernel takes
  // them as stored.
  Precision operands = Precision::kFP32;
  if (recipe.algorithm == AttentionAlgorithm::kEager) operands = matmul_inputs;
  if (recipe.algorithm == AttentionAlgorithm::kFlash ||
      recipe.algorithm == AttentionAlgorithm::kMemoryEfficient) {
    operands = storage;
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t head = 0; head < dims.n_heads; ++head) {
      const Head h(q + (t * dims.n_heads + head) * hd, keys, values, dims, head / heads_per_kv,
                   positions[t] + 1, operands);
      std::vector<float> p(static_cast<size_t>(h.n));
      float* out = context + (t * dims.n_heads + head) * hd;
      switch (recipe.algorithm) {
        case AttentionAlgorithm::kMaterialized:
          materialized(recipe, storage, h, scale, p.data(), out);
          break;
        case AttentionAlgorithm::kEager:
          eager(recipe, matmul_inputs, storage, h, scale, p.data(), out);
          break;
        case AttentionAlgorithm::kFlash:
          flash(recipe, storage, h, scale, p.data(), out);
          break;
        case AttentionAlgorithm::kMemoryEfficient:
          memory_efficient(recipe, storage, h, scale, p.data(), out);
          break;
      }
      if (probs != nullptr) {
        float* row = probs + (t * dims.n_heads + head) * probs_width;
        std::fill(row, row + probs_width, 0.0f);
        std::copy(p.begin(), p.end(), row);
      }
    }
  }
}

}  // namespace moeref::golden
