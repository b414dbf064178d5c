#include "golden/kernel_bugs.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "golden/buggy_kernels.h"
#include "golden/mutated_runner.h"

namespace moeref::golden {

namespace {

// ---- RoPE ----

// Adjacent pairs (2i, 2i+1), as the original paper and llama.cpp's 'llama' kernels, instead of
// rotate-half: the base op on each head's dims regrouped so that its pairs are the adjacent ones.
class RopeAdjacentPairs final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
            double theta, const RopeScaling& scaling) const override {
    const int64_t half = head_dim / 2;
    const int64_t heads = static_cast<int64_t>(positions.size()) * n_heads;
    std::vector<float> grouped(static_cast<size_t>(heads * head_dim));
    for (int64_t r = 0; r < heads; ++r) {
      for (int64_t i = 0; i < half; ++i) {
        grouped[r * head_dim + i] = x[r * head_dim + 2 * i];
        grouped[r * head_dim + half + i] = x[r * head_dim + 2 * i + 1];
      }
    }
    base().rope(grouped.data(), positions, n_heads, head_dim, theta, scaling);
    for (int64_t r = 0; r < heads; ++r) {
      for (int64_t i = 0; i < half; ++i) {
        x[r * head_dim + 2 * i] = grouped[r * head_dim + i];
        x[r * head_dim + 2 * i + 1] = grouped[r * head_dim + half + i];
      }
    }
  }
};

// A base of 500000 (Llama 3's) hard-coded instead of the config's theta.
class RopeThetaHardCoded final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim, double,
            const RopeScaling& scaling) const override {
    base().rope(x, positions, n_heads, head_dim, 500000.0, scaling);
  }
};

class RopePositionsOffByOne final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
            double theta, const RopeScaling& scaling) const override {
    std::vector<int64_t> shifted(positions.begin(), positions.end());
    for (int64_t& p : shifted) ++p;
    base().rope(x, shifted, n_heads, head_dim, theta, scaling);
  }
};

// Positions counted from the call's first token (0, 1, ...) instead of the cache length: right for
// a prefill from an empty cache, position 0 for every decode step.
class RopePositionsFromCallStart final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
            double theta, const RopeScaling& scaling) const override {
    std::vector<int64_t> local(positions.size());
    std::iota(local.begin(), local.end(), 0);
    base().rope(x, local, n_heads, head_dim, theta, scaling);
  }
};

// ---- Norms ----

// RMSNorm of rows of the storage-rounded input: y = w * x * inv(sum of squares, d), in double.
template <typename InverseRms>
void rms_norm_with(const std::vector<float>& x, const float* weight, float* y, int64_t rows,
                   int64_t d, InverseRms inverse_rms) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * d;
    double sum_squares = 0.0;
    for (int64_t i = 0; i < d; ++i) sum_squares += static_cast<double>(xr[i]) * xr[i];
    const double inv = inverse_rms(sum_squares);
    for (int64_t i = 0; i < d; ++i) {
      y[r * d + i] = static_cast<float>(static_cast<double>(weight[i]) * (xr[i] * inv));
    }
  }
}

class RmsNormEpsAfterSqrt final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                int64_t d) const override {
    rms_norm_with(stored(x, rows * d), weight, y, rows, d, [&](double sum_squares) {
      return 1.0 / (std::sqrt(sum_squares / static_cast<double>(d)) + eps);
    });
    store(y, rows * d);
  }
};

// The mean of squares over the row padded with zeros to a multiple of 64 lanes.
class RmsNormPaddedWidth final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                int64_t d) const override {
    const auto padded = static_cast<double>((d + 63) / 64 * 64);
    rms_norm_with(stored(x, rows * d), weight, y, rows, d,
                  [&](double sum_squares) { return 1.0 / std::sqrt(sum_squares / padded + eps); });
    store(y, rows * d);
  }
};

class NormWithoutGain final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void rms_norm(const float* x, const float*, double eps, float* y, int64_t rows,
                int64_t d) const override {
    const std::vector<float> ones(static_cast<size_t>(d), 1.0f);
    base().rms_norm(x, ones.data(), eps, y, rows, d);
  }
  void layer_norm(const float* x, const float*, const float* bias, double eps, float* y,
                  int64_t rows, int64_t d) const override {
    const std::vector<float> ones(static_cast<size_t>(d), 1.0f);
    base().layer_norm(x, ones.data(), bias, eps, y, rows, d);
  }
};

// LayerNorm of rows of the storage-rounded input with a given centre and variance rule, in double.
template <typename Statistics>
void layer_norm_with(const std::vector<float>& x, const float* weight, const float* bias,
                     double eps, float* y, int64_t rows, int64_t d, Statistics statistics) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * d;
    const auto [centre, variance] = statistics(xr);
    const double inv_std = 1.0 / std::sqrt(variance + eps);
    for (int64_t i = 0; i < d; ++i) {
      y[r * d + i] = static_cast<float>((xr[i] - centre) * inv_std * weight[i] + bias[i]);
    }
  }
}

// The mean not subtracted: x / sqrt(mean(x^2) + eps), an RMSNorm with LayerNorm's bias.
class LayerNormWithoutMean final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                  int64_t rows, int64_t d) const override {
    layer_norm_with(stored(x, rows * d), weight, bias, eps, y, rows, d, [&](const float* xr) {
      double sum_squares = 0.0;
      for (int64_t i = 0; i < d; ++i) sum_squares += static_cast<double>(xr[i]) * xr[i];
      return std::pair(0.0, sum_squares / static_cast<double>(d));
    });
    store(y, rows * d);
  }
};

// The unbiased variance (divided by d - 1, torch.var's default) instead of the biased one.
class LayerNormUnbiasedVariance final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                  int64_t rows, int64_t d) const override {
    layer_norm_with(stored(x, rows * d), weight, bias, eps, y, rows, d, [&](const float* xr) {
      double sum = 0.0;
      for (int64_t i = 0; i < d; ++i) sum += xr[i];
      const double mean = sum / static_cast<double>(d);
      double sum_squares = 0.0;
      for (int64_t i = 0; i < d; ++i) sum_squares += (xr[i] - mean) * (xr[i] - mean);
      return std::pair(mean, sum_squares / static_cast<double>(d - 1));
    });
    store(y, rows * d);
  }
};

// ---- Attention ----

// The base attention one query at a time, query t reading the keys at positions 0..last(t) (none
// when last(t) < 0: its context and probabilities are zero, as a kernel that guards an empty row).
void attend_each(const Kernels& base, const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width, const std::function<int64_t(size_t)>& last) {
  const int64_t width = dims.n_heads * dims.head_dim;
  for (size_t t = 0; t < positions.size(); ++t) {
    const auto row = static_cast<int64_t>(t);
    float* context_row = context + row * width;
    float* probs_row = probs != nullptr ? probs + row * dims.n_heads * probs_width : nullptr;
    const int64_t last_key = last(t);
    if (last_key < 0) {
      std::fill_n(context_row, width, 0.0f);
      if (probs_row != nullptr) std::fill_n(probs_row, dims.n_heads * probs_width, 0.0f);
      continue;
    }
    base.attention(q + row * width, keys, values, std::span(&last_key, 1), dims, context_row,
                   probs_row, probs_width);
  }
}

// Scores scaled by 1 / head_dim instead of 1 / sqrt(head_dim): the queries divided by
// sqrt(head_dim) once more before the base op.
class AttentionScaleOverHeadDim final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override {
    std::vector<float> scaled(
        q, q + static_cast<int64_t>(positions.size()) * dims.n_heads * dims.head_dim);
    const float extra = 1.0f / std::sqrt(static_cast<float>(dims.head_dim));
    for (float& v : scaled) v *= extra;
    base().attention(scaled.data(), keys, values, positions, dims, context, probs, probs_width);
  }
};

// The causal mask also hides the diagonal: a query attends to the positions before its own only.
class CausalMaskHidesDiagonal final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override {
    attend_each(base(), q, keys, values, positions, dims, context, probs, probs_width,
                [&](size_t t) { return positions[t] - 1; });
  }
};

// The causal mask lets each query see one key past its own position, within the call's keys.
class CausalMaskOneFutureKey final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override {
    const int64_t last = *std::max_element(positions.begin(), positions.end());
    attend_each(base(), q, keys, values, positions, dims, context, probs, probs_width,
                [&](size_t t) { return std::min(positions[t] + 1, last); });
  }
};

// A single query after cached positions (a decode step) reads as many keys as the cache held before
// the call: its own new K/V slot is left out.
class DecodeReadsOneSlotShort final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override {
    if (positions.size() != 1 || positions[0] == 0) {
      base().attention(q, keys, values, positions, dims, context, probs, probs_width);
      return;
    }
    attend_each(base(), q, keys, values, positions, dims, context, probs, probs_width,
                [&](size_t) { return positions[0] - 1; });
  }
};

// Query head h reads K/V head h % G instead of h / (H / G): the base op on the query heads
// reordered so that its mapping lands where the wrong one does, and the outputs put back.
class KvHeadModulo final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override {
    const int64_t H = dims.n_heads;
    const int64_t G = dims.n_kv_heads;
    const int64_t hd = dims.head_dim;
    const int64_t T = static_cast<int64_t>(positions.size());
    // Head h goes to slot (h % G) * (H / G) + h / G, which the base maps to K/V head h % G.
    auto slot = [&](int64_t h) { return (h % G) * (H / G) + h / G; };
    std::vector<float> q_slots(static_cast<size_t>(T * H * hd));
    std::vector<float> context_slots(q_slots.size());
    std::vector<float> probs_slots(probs != nullptr ? static_cast<size_t>(T * H * probs_width) : 0);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        std::copy_n(q + (t * H + h) * hd, hd, q_slots.begin() + (t * H + slot(h)) * hd);
      }
    }
    base().attention(q_slots.data(), keys, values, positions, dims, context_slots.data(),
                     probs != nullptr ? probs_slots.data() : nullptr, probs_width);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        std::copy_n(context_slots.begin() + (t * H + slot(h)) * hd, hd, context + (t * H + h) * hd);
        if (probs != nullptr) {
          std::copy_n(probs_slots.begin() + (t * H + slot(h)) * probs_width, probs_width,
                      probs + (t * H + h) * probs_width);
        }
      }
    }
  }
};

// ---- Router ----

// The router's softmax over the tokens of the call (axis 0) instead of over the experts.
class RouterSoftmaxOverTokens final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void softmax(float* x, int64_t rows, int64_t n) const override {
    for (int64_t j = 0; j < n; ++j) {
      double max_value = x[j];
      for (int64_t r = 1; r < rows; ++r) max_value = std::max(max_value, double{x[r * n + j]});
      std::vector<double> exps(static_cast<size_t>(rows));
      double sum = 0.0;
      for (int64_t r = 0; r < rows; ++r) sum += exps[r] = std::exp(x[r * n + j] - max_value);
      for (int64_t r = 0; r < rows; ++r) x[r * n + j] = static_cast<float>(exps[r] / sum);
    }
    store(x, rows * n);
  }
};

// exp(x) / sum exp(x) in fp32 without the maximum subtracted: inf / inf for large logits.
class SoftmaxWithoutMax final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void softmax(float* x, int64_t rows, int64_t n) const override {
    for (int64_t r = 0; r < rows; ++r) {
      float* row = x + r * n;
      float sum = 0.0f;
      for (int64_t j = 0; j < n; ++j) sum += row[j] = std::exp(row[j]);
      for (int64_t j = 0; j < n; ++j) row[j] /= sum;
    }
    store(x, rows * n);
  }
};

// The k chosen experts listed in ascending order of probability (a sort's order not reversed).
class TopKRankReversed final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override {
    base().select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::reverse(indices + t * k, indices + (t + 1) * k);
      std::reverse(weights + t * k, weights + (t + 1) * k);
    }
  }
};

// On equal probabilities the higher expert index ranks first: the base op on the experts in
// reverse order, its indices mapped back.
class TopKTiesToHigherIndex final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override {
    std::vector<float> reversed(static_cast<size_t>(n_tokens * n_experts));
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::reverse_copy(probs + t * n_experts, probs + (t + 1) * n_experts,
                        reversed.begin() + t * n_experts);
    }
    base().select_top_k(reversed.data(), n_tokens, n_experts, k, renormalize, indices, weights);
    for (int64_t i = 0; i < n_tokens * k; ++i) {
      indices[i] = static_cast<int32_t>(n_experts - 1 - indices[i]);
    }
  }
};

class TopKWithoutRenormalization final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k, bool,
                    int32_t* indices, float* weights) const override {
    base().select_top_k(probs, n_tokens, n_experts, k, false, indices, weights);
  }
};

// Capacity filled token by token (token 0's choices, then token 1's, ...) instead of GShard's
// rank-major priority (every token's first choice before any second choice).
class CapacityTokenMajor final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  int64_t apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k, int64_t n_experts,
                         int64_t capacity, int32_t* kept) const override {
    std::vector<int64_t> load(static_cast<size_t>(n_experts), 0);
    int64_t dropped = 0;
    for (int64_t i = 0; i < n_tokens * k; ++i) {
      const bool fits = capacity == 0 || load[indices[i]] < capacity;
      kept[i] = fits ? 1 : 0;
      if (fits) {
        ++load[indices[i]];
      } else {
        ++dropped;
      }
    }
    return dropped;
  }
};

// No token dropping: every assignment kept, whatever the capacity.
class CapacityIgnored final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  int64_t apply_capacity(const int32_t*, int64_t n_tokens, int64_t k, int64_t, int64_t,
                         int32_t* kept) const override {
    std::fill_n(kept, n_tokens * k, 1);
    return 0;
  }
};

// ---- FFN and residual ----

class SwiGluGateUpSwapped final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void swiglu(const float* gate, const float* up, float* out, int64_t n) const override {
    base().swiglu(up, gate, out, n);
  }
};

// x = branch instead of x + branch.
class MissingResidual final : public BuggyKernels {
 public:
  using BuggyKernels::BuggyKernels;
  void residual_add(float* x, const float* branch, int64_t n) const override {
    std::copy_n(branch, n, x);
    store(x, n);
  }
};

// ---- Where each can arise ----

const std::set<std::string> kModelKinds = {"model", "batching"};

bool uses_rope(const ModelConfig& c) { return c.positions == PositionKind::kRope; }

bool uses_rms_norm(const ModelConfig& c) {
  return c.norm == NormKind::kRmsNorm || (c.vision && c.vision->cross_attention_qk_norm);
}

bool uses_layer_norm(const ModelConfig& c) {
  return c.norm == NormKind::kLayerNorm || c.vision.has_value();
}

bool grouped(int64_t heads, int64_t kv_heads) { return kv_heads > 1 && kv_heads < heads; }

bool groups_kv_heads(const ModelConfig& c) {
  return grouped(c.n_heads, c.n_kv_heads) ||
         (c.vision && grouped(c.vision->cross_attention_heads, c.vision->cross_attention_kv_heads));
}

bool has_moe_layer(const ModelConfig& c) { return c.n_moe_layers() > 0; }

template <typename K>
Bug kernel_bug(std::string name, std::string description, std::string own_tensor,
               std::vector<std::string> own_op_tensors, Reach reach,
               std::vector<std::string> also_own = {}) {
  Bug bug = make_bug(std::move(name), std::move(description), std::move(own_tensor),
                     std::move(own_op_tensors), std::move(reach),
                     [](const GoldenSet& set, const Kernels& base, Precision precision) {
                       const K kernels(base, precision);
                       return run_mutated(set, kernels, {});
                     });
  bug.also_own = std::move(also_own);
  return bug;
}

}  // namespace

std::vector<Bug> kernel_bugs() {
  const Reach rope{kModelKinds, uses_rope, {"rope"}, {}};
  const Reach rms_norm{kModelKinds, uses_rms_norm, {"rms_norm", "gated_cross_attention"}, {}};
  const Reach layer_norm{kModelKinds, uses_layer_norm, {"layer_norm"}, {}};
  const Reach attention{
      kModelKinds, {}, {"attention", "cross_attention", "gated_cross_attention"}, {}};
  return {
      kernel_bug<RopeAdjacentPairs>(
          "rope-adjacent-pairs", "RoPE rotates adjacent pairs (2i, 2i+1) instead of (i, i + hd/2)",
          "attn.q", {"out"}, rope),
      kernel_bug<RopeThetaHardCoded>(
          "rope-theta-500000", "RoPE uses a hard-coded base of 500000, not the config's theta",
          "attn.q", {"out"}, rope),
      kernel_bug<RopePositionsOffByOne>("rope-positions-off-by-one",
                                        "RoPE rotates token t by position t + 1", "attn.q", {"out"},
                                        rope),
      kernel_bug<RopePositionsFromCallStart>(
          "rope-positions-from-call-start",
          "RoPE counts positions from the call's first token, so every decode step is at 0",
          "attn.q", {"out"}, rope),
      kernel_bug<RmsNormEpsAfterSqrt>("rmsnorm-eps-after-sqrt",
                                      "RMSNorm adds eps after the square root: x / (rms + eps)",
                                      "attn_norm.out", {"out"}, rms_norm, {"xattn.q", "xattn.k"}),
      kernel_bug<RmsNormPaddedWidth>(
          "rmsnorm-padded-width",
          "RMSNorm averages the squares over the row padded to 64 lanes, not over its width",
          "attn_norm.out", {"out"}, rms_norm, {"xattn.q", "xattn.k"}),
      kernel_bug<NormWithoutGain>(
          "norm-without-gain", "RMSNorm and LayerNorm leave out the gain w (as if it were 1)",
          "attn_norm.out", {"out"},
          {kModelKinds, {}, {"rms_norm", "layer_norm", "gated_cross_attention"}, {}},
          {"xattn.q", "xattn.k", "norm.out"}),
      kernel_bug<LayerNormWithoutMean>(
          "layernorm-mean-not-subtracted",
          "LayerNorm does not subtract the mean: x / sqrt(mean(x^2) + eps) * w + b",
          "attn_norm.out", {"out"}, layer_norm),
      kernel_bug<LayerNormUnbiasedVariance>(
          "layernorm-unbiased-variance",
          "LayerNorm divides the sum of squares by d - 1 (torch.var's default), not d",
          "attn_norm.out", {"out"}, layer_norm),
      kernel_bug<AttentionScaleOverHeadDim>("attention-scale-over-head-dim",
                                            "attention scores scaled by 1/hd, not 1/sqrt(hd)",
                                            "attn.probs", {"context", "probs"}, attention),
      kernel_bug<CausalMaskHidesDiagonal>(
          "causal-mask-hides-diagonal",
          "the causal mask also hides a query's own position (j < i instead of j <= i)",
          "attn.probs", {"context", "probs"}, attention),
      kernel_bug<CausalMaskOneFutureKey>(
          "causal-mask-one-future-key",
          "the causal mask lets a prefill query see the next position's key (j <= i + 1)",
          "attn.probs", {"context", "probs"}, attention),
      kernel_bug<DecodeReadsOneSlotShort>(
          "kv-decode-reads-one-slot-short",
          "a decode step reads the cache up to its old length, leaving out its own new K/V",
          "attn.probs", {"context", "probs"},
          {kModelKinds,
           {},
           {"attention", "cross_attention", "gated_cross_attention"},
           [](const nlohmann::json& p) {
             if (p.contains("new_tokens")) {
               return p.at("new_tokens") == 1 && p.at("cached_positions").get<int64_t>() > 0;
             }
             return !p.contains("queries") || p.at("queries") == 1;
           }}),
      kernel_bug<KvHeadModulo>(
          "gqa-kv-head-modulo", "query head h reads K/V head h % G instead of h / (H / G)",
          "attn.probs", {"context", "probs"},
          {kModelKinds, groups_kv_heads, attention.ops,
           [](const nlohmann::json& p) {
             return grouped(p.at("n_heads").get<int64_t>(), p.at("n_kv_heads").get<int64_t>());
           }}),
      kernel_bug<RouterSoftmaxOverTokens>(
          "router-softmax-over-tokens",
          "the router's softmax runs over the call's tokens (axis 0) instead of the experts",
          "moe.router_probs", {"out"}, {kModelKinds, has_moe_layer, {"softmax", "moe"}, {}}),
      kernel_bug<SoftmaxWithoutMax>(
          "softmax-without-max",
          "the softmax computes exp(x) / sum exp(x) without subtracting the max",
          "moe.router_probs", {"out"}, {kModelKinds, has_moe_layer, {"softmax", "moe"}, {}}),
      kernel_bug<TopKRankReversed>(
          "topk-rank-order-reversed",
          "the k chosen experts are listed in ascending order of probability", "moe.topk_indices",
          {"indices"}, {kModelKinds, has_moe_layer, {"top_k", "moe"}, {}}),
      kernel_bug<TopKTiesToHigherIndex>(
          "topk-ties-to-higher-index", "on equal router probabilities the higher expert index wins",
          "moe.topk_indices", {"indices"}, {kModelKinds, has_moe_layer, {"top_k", "moe"}, {}}),
      kernel_bug<TopKWithoutRenormalization>(
          "topk-weights-not-renormalised",
          "the top-k weights are not renormalised over the chosen experts", "moe.topk_weights",
          {"weights"},
          {kModelKinds,
           [](const ModelConfig& c) { return has_moe_layer(c) && c.router_renormalize; },
           {"top_k", "moe"},
           [](const nlohmann::json& p) {
             return p.value("renormalize", false) || p.value("router_renormalize", false);
           }}),
      kernel_bug<CapacityTokenMajor>(
          "capacity-token-major",
          "capacity keeps assignments token by token, not every first choice before any second",
          "moe.kept", {},
          {kModelKinds,
           [](const ModelConfig& c) { return c.capacity_factor > 0.0; },
           {"moe"},
           [](const nlohmann::json& p) { return p.at("capacity_factor").get<double>() > 0.0; }}),
      kernel_bug<CapacityIgnored>(
          "capacity-ignored", "no token is dropped: the expert capacity is not enforced",
          "moe.kept", {},
          {kModelKinds,
           [](const ModelConfig& c) { return c.capacity_factor > 0.0; },
           {"moe"},
           [](const nlohmann::json& p) { return p.at("capacity_factor").get<double>() > 0.0; }}),
      kernel_bug<SwiGluGateUpSwapped>(
          "swiglu-gate-up-swapped", "SwiGLU computes silu(up x) * gate x: gate and up swapped",
          "moe.expert_outputs", {"out"},
          {kModelKinds,
           [](const ModelConfig& c) { return c.ffn_activation == Activation::kSwiGlu; },
           {"expert_ffn", "moe"},
           [](const nlohmann::json& p) { return p.at("activation") == "swiglu"; }},
          {"xattn.ffn.out"}),
      kernel_bug<MissingResidual>(
          "missing-residual", "the residual add writes the branch alone: x = f(x), not x + f(x)",
          "attn.residual", {}, {kModelKinds, {}, {}, {}}, {"vision.embed.out"}),
  };
}

}  // namespace moeref::golden
