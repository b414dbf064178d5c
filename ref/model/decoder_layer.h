// One pre-norm decoder layer, as a pipeline of named steps over the residual stream x:
//
//   gated cross-attention (vision configs, layers of cross_attention_layers only):
//                     ref/model/cross_attention.h, for the tokens that see their sequence's image
//   attention block:  h = x + o_proj(Attention(RoPE(q_proj n), RoPE(k_proj n), v_proj n)),
//                     n = Norm1(x); RoPE only with positions = rope
//   FFN block:        x' = h + FFN(Norm2(h)),   FFN = MoE (ref/model/moe.h) or dense
//   (ref/model/feed_forward.h)
//
// Each sequence's new K/V are stored in its cache before attention, so a token attends to itself
// and to every earlier position of its own sequence, never to another sequence's. Every other
// step treats tokens one row at a time, so a token's result does not depend on which other
// sequences share the call (dropless MoE included). x: [tokens, d_model], updated in place.
// attn.probs is traced as [tokens, H, S], S the longest context of the call, zero-padded.
// Traced under "layers.L." (docs/tracing.md).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "ref/io/config.h"
#include "ref/model/cross_attention.h"
#include "ref/model/kv_view.h"
#include "ref/model/moe.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"

namespace moeref {

// The consecutive tokens of one sequence in a forward call, and where its K/V live for this layer.
// A single-sequence call has one slice; a batch (Model::forward_batch) one per sequence.
struct SequenceSlice {
  int64_t n_tokens = 0;
  int64_t start_position = 0;  // of the slice's first token
  KvView kv;
  SequenceImage image;  // the sequence's image, if any
};

struct LayerContext {
  const Kernels& kernels;
  const ModelConfig& config;
  int64_t layer;
  const LayerWeights& weights;
  const CrossAttentionWeights* cross_attention;  // the gated block in front, or null
  std::span<const int64_t> positions;            // of every token of the call, slice after slice
  std::span<const SequenceSlice> sequences;      // in the order of the tokens
  const TraceScope& trace;
};

// Runs the gated cross-attention block (if any), the attention block and the FFN block.
// Returns the router's statistics for an MoE layer, nothing for a dense one.
std::optional<RouterStats> decoder_layer_forward(const LayerContext& context, float* x);

// Norm1/Norm2/final norm: RMSNorm or LayerNorm per the config. x, y: [rows, d_model].
void apply_norm(const Kernels& kernels, const ModelConfig& config, const Tensor& gain,
                const Tensor& bias, const float* x, float* y, int64_t rows);

}  // namespace moeref
