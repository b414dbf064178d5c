// One pre-norm decoder layer, as a pipeline of named steps over the residual stream x:
//
//   attention block:  h = x + o_proj(Attention(RoPE(q_proj n), RoPE(k_proj n), v_proj n)),
//                     n = Norm1(x); RoPE only with positions = rope
//   FFN block:        x' = h + FFN(Norm2(h)),   FFN = MoE (ref/moe.h) or dense (ref/feed_forward.h)
//
// The new tokens' K/V are stored in the cache before attention, so a token attends to itself
// and to every earlier position. x: [tokens, d_model], updated in place.
// Traced under "layers.L." (docs/tracing.md).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "ref/config.h"
#include "ref/kernels.h"
#include "ref/kv_cache.h"
#include "ref/moe.h"
#include "ref/tracer.h"
#include "ref/weights.h"

namespace moeref {

struct LayerContext {
  const Kernels& kernels;
  const ModelConfig& config;
  int64_t layer;
  const LayerWeights& weights;
  std::span<const int64_t> positions;  // of the new tokens: cache.length() + t
  KvCache& cache;
  const TraceScope& trace;
};

// Returns the router's statistics for an MoE layer, nothing for a dense one.
std::optional<RouterStats> decoder_layer_forward(const LayerContext& context, float* x);

// Norm1/Norm2/final norm: RMSNorm or LayerNorm per the config. x, y: [rows, d_model].
void apply_norm(const Kernels& kernels, const ModelConfig& config, const Tensor& gain,
                const Tensor& bias, const float* x, float* y, int64_t rows);

}  // namespace moeref
