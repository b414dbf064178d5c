#include "ref/model/decoder_layer.h"

#include <algorithm>
#include <vector>

#include "ref/model/feed_forward.h"

namespace moeref {

namespace {

void cross_attention_block(const LayerContext& c, float* x) {
  std::vector<SequenceImage> images;
  for (const SequenceSlice& slice : c.sequences) {
    images.insert(images.end(), static_cast<size_t>(slice.n_tokens), slice.image);
  }
  gated_cross_attention(c.kernels, c.config, *c.cross_attention,
                        c.config.vision->cross_attention_index(c.layer), c.positions, images, x,
                        c.trace.nested("xattn."));
}

void attention_block(const LayerContext& c, float* x) {
  const ModelConfig& config = c.config;
  const Kernels& kernels = c.kernels;
  const LayerWeights& w = c.weights;
  const TraceScope& trace = c.trace;
  const int64_t n_tokens = static_cast<int64_t>(c.positions.size());
  const int64_t d = config.d_model;
  const int64_t H = config.n_heads;
  const int64_t G = config.n_kv_heads;
  const int64_t hd = config.head_dim;

  std::vector<float> normed(static_cast<size_t>(n_tokens * d));
  apply_norm(kernels, config, w.attn_norm, w.attn_norm_bias, x, normed.data(), n_tokens);
  trace("attn_norm.out", {n_tokens, d}, normed.data());

  std::vector<float> q(static_cast<size_t>(n_tokens * H * hd));
  std::vector<float> k(static_cast<size_t>(n_tokens * G * hd));
  std::vector<float> v(k.size());
  kernels.matmul(normed.data(), w.q_proj.data(), q.data(), n_tokens, d, H * hd);
  kernels.matmul(normed.data(), w.k_proj.data(), k.data(), n_tokens, d, G * hd);
  kernels.matmul(normed.data(), w.v_proj.data(), v.data(), n_tokens, d, G * hd);
  if (config.positions == PositionKind::kRope) {
    kernels.rope(q.data(), c.positions, H, hd, config.rope_theta, config.rope_scaling);
    kernels.rope(k.data(), c.positions, G, hd, config.rope_theta, config.rope_scaling);
  }
  trace("attn.q", {n_tokens, H, hd}, q.data());
  trace("attn.k", {n_tokens, G, hd}, k.data());
  trace("attn.v", {n_tokens, G, hd}, v.data());

  int64_t n_keys = 0;  // the longest context of the call: the width of the traced probabilities
  for (const SequenceSlice& slice : c.sequences) {
    n_keys = std::max(n_keys, slice.start_position + slice.n_tokens);
  }
  std::vector<float> context(q.size());
  std::vector<float> probs(trace.enabled() ? static_cast<size_t>(n_tokens * H * n_keys) : 0);
  int64_t first = 0;
  for (const SequenceSlice& slice : c.sequences) {
    store_kv(slice.kv, G, hd, slice.start_position, slice.n_tokens, k.data() + first * G * hd,
             v.data() + first * G * hd);
    kernels.attention(
        q.data() + first * H * hd, slice.kv.keys, slice.kv.values,
        c.positions.subspan(static_cast<size_t>(first), static_cast<size_t>(slice.n_tokens)),
        slice.kv.attention_dims(H, G, hd), context.data() + first * H * hd,
        trace.enabled() ? probs.data() + first * H * n_keys : nullptr, n_keys);
    first += slice.n_tokens;
  }
  trace("attn.probs", {n_tokens, H, n_keys}, probs.data());
  trace("attn.context", {n_tokens, H, hd}, context.data());

  std::vector<float> attn_out(static_cast<size_t>(n_tokens * d));
  kernels.matmul(context.data(), w.o_proj.data(), attn_out.data(), n_tokens, H * hd, d);
  trace("attn.out", {n_tokens, d}, attn_out.data());

  kernels.residual_add(x, attn_out.data(), n_tokens * d);
  trace("attn.residual", {n_tokens, d}, x);
}

std::optional<RouterStats> ffn_block(const LayerContext& c, float* x) {
  const ModelConfig& config = c.config;
  const LayerWeights& w = c.weights;
  const int64_t n_tokens = static_cast<int64_t>(c.positions.size());
  const int64_t d = config.d_model;

  std::vector<float> normed(static_cast<size_t>(n_tokens * d));
  apply_norm(c.kernels, config, w.ffn_norm, w.ffn_norm_bias, x, normed.data(), n_tokens);
  c.trace("ffn_norm.out", {n_tokens, d}, normed.data());

  std::vector<float> ffn_out(normed.size());
  std::optional<RouterStats> router;
  if (config.is_moe_layer(c.layer)) {
    router = moe_forward(c.kernels, config, w, normed.data(), n_tokens, ffn_out.data(), c.trace);
    router->layer = c.layer;
  } else {
    feed_forward(c.kernels, config.ffn_activation, w.dense, normed.data(), n_tokens,
                 ffn_out.data());
    c.trace("ffn.out", {n_tokens, d}, ffn_out.data());
  }

  c.kernels.residual_add(x, ffn_out.data(), n_tokens * d);
  c.trace("out", {n_tokens, d}, x);
  return router;
}

}  // namespace

void apply_norm(const Kernels& kernels, const ModelConfig& config, const Tensor& gain,
                const Tensor& bias, const float* x, float* y, int64_t rows) {
  if (config.norm == NormKind::kRmsNorm) {
    kernels.rms_norm(x, gain.data(), config.norm_eps, y, rows, config.d_model);
  } else {
    kernels.layer_norm(x, gain.data(), bias.data(), config.norm_eps, y, rows, config.d_model);
  }
}

std::optional<RouterStats> decoder_layer_forward(const LayerContext& context, float* x) {
  if (context.cross_attention != nullptr) cross_attention_block(context, x);
  attention_block(context, x);
  return ffn_block(context, x);
}

}  // namespace moeref
