#include "ref/model/cross_attention.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "ref/model/decoder_layer.h"
#include "ref/model/feed_forward.h"
#include "ref/model/kv_view.h"

namespace moeref {

namespace {

float gate_factor(const Tensor& gate) {
  return static_cast<float>(std::tanh(static_cast<double>(gate.data()[0])));
}

// gated = g * branch in the rows that see the image, zero elsewhere; x += gated in those rows.
void add_gated_branch(const Kernels& kernels, const float* branch, float g,
                      const std::vector<bool>& sees, int64_t d, float* gated, float* x) {
  const int64_t rows = static_cast<int64_t>(sees.size());
  for (int64_t t = 0; t < rows; ++t) {
    float* gated_row = gated + t * d;
    if (!sees[static_cast<size_t>(t)]) {
      std::fill_n(gated_row, d, 0.0f);
      continue;
    }
    for (int64_t i = 0; i < d; ++i) gated_row[i] = g * branch[t * d + i];
    kernels.residual_add(x + t * d, gated_row, d);
  }
}

}  // namespace

void check_image_position(int64_t position, int64_t prompt_length) {
  if (position < 0 || position > prompt_length) {
    throw std::invalid_argument("image_position " + std::to_string(position) +
                                " is outside the prompt (0.." + std::to_string(prompt_length) +
                                ")");
  }
}

void check_image_kv(const ModelConfig& config, const ImageKv& kv) {
  const VisionConfig& v = config.vision.value();
  const size_t blocks = v.cross_attention_layers.size();
  const std::vector<int64_t> shape = {v.cross_attention_kv_heads, kv.n_tokens, config.head_dim};
  bool fits = kv.n_tokens > 0 && kv.keys.size() == blocks && kv.values.size() == blocks;
  for (size_t b = 0; fits && b < blocks; ++b) {
    fits = kv.keys[b].shape() == shape && kv.values[b].shape() == shape;
  }
  if (!fits) {
    throw std::invalid_argument("an image's K/V do not fit config \"" + config.name +
                                "\": it needs " + std::to_string(blocks) +
                                " K and V tensors of shape [" +
                                std::to_string(v.cross_attention_kv_heads) + ", N_v > 0, " +
                                std::to_string(config.head_dim) +
                                "], one per gated block (Model::encode_image makes them)");
  }
}

ImageKv image_kv(const Kernels& kernels, const ModelConfig& config,
                 std::span<const CrossAttentionWeights> blocks, const Tensor& tokens,
                 Tracer* tracer) {
  const VisionConfig& v = config.vision.value();
  const int64_t n = tokens.dim(0);
  const int64_t G = v.cross_attention_kv_heads;
  const int64_t hd = config.head_dim;
  ImageKv result;
  result.n_tokens = n;
  for (size_t b = 0; b < blocks.size(); ++b) {
    const CrossAttentionWeights& w = blocks[b];
    std::vector<float> k(static_cast<size_t>(n * G * hd));
    std::vector<float> values(k.size());
    kernels.matmul(tokens.data(), w.k_proj.data(), k.data(), n, config.d_model, G * hd);
    kernels.matmul(tokens.data(), w.v_proj.data(), values.data(), n, config.d_model, G * hd);
    if (v.cross_attention_qk_norm) {
      kernels.rms_norm(k.data(), w.k_norm.data(), config.norm_eps, k.data(), n * G, hd);
    }
    const TraceScope trace(tracer,
                           "layers." + std::to_string(v.cross_attention_layers[b]) + ".xattn.");
    trace("k", {n, G, hd}, k.data());
    trace("v", {n, G, hd}, values.data());

    result.keys.emplace_back(std::vector<int64_t>{G, n, hd});
    result.values.emplace_back(std::vector<int64_t>{G, n, hd});
    const KvView view{result.keys.back().data(), result.values.back().data(), {}, 0, n};
    store_kv(view, G, hd, 0, n, k.data(), values.data());
  }
  return result;
}

void gated_cross_attention(const Kernels& kernels, const ModelConfig& config,
                           const CrossAttentionWeights& w, int64_t block,
                           std::span<const int64_t> positions,
                           std::span<const SequenceImage> images, float* x,
                           const TraceScope& trace) {
  const VisionConfig& v = config.vision.value();
  const int64_t n_tokens = static_cast<int64_t>(positions.size());
  const int64_t d = config.d_model;
  const int64_t H = v.cross_attention_heads;
  const int64_t G = v.cross_attention_kv_heads;
  const int64_t hd = config.head_dim;

  std::vector<bool> sees(static_cast<size_t>(n_tokens));
  int64_t n_vision = 0;  // the width of the traced probabilities
  for (int64_t t = 0; t < n_tokens; ++t) {
    sees[t] = images[t].seen_at(positions[t]);
    if (sees[t]) n_vision = std::max(n_vision, images[t].kv->n_tokens);
  }
  if (n_vision == 0) return;

  std::vector<float> normed(static_cast<size_t>(n_tokens * d));
  apply_norm(kernels, config, w.attn_norm, w.attn_norm_bias, x, normed.data(), n_tokens);
  trace("attn_norm.out", {n_tokens, d}, normed.data());

  std::vector<float> q(static_cast<size_t>(n_tokens * H * hd));
  kernels.matmul(normed.data(), w.q_proj.data(), q.data(), n_tokens, d, H * hd);
  if (v.cross_attention_qk_norm) {
    kernels.rms_norm(q.data(), w.q_norm.data(), config.norm_eps, q.data(), n_tokens * H, hd);
  }
  trace("q", {n_tokens, H, hd}, q.data());

  // Each token that sees an image attends, as if placed after the last vision token, to all of
  // them; the others' context stays zero.
  std::vector<float> context(q.size());
  std::vector<float> probs(trace.enabled() ? static_cast<size_t>(n_tokens * H * n_vision) : 0);
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (!sees[t]) continue;
    const ImageKv& image = *images[t].kv;
    const int64_t last_vision_token[] = {image.n_tokens - 1};
    kernels.attention(q.data() + t * H * hd, image.keys[block].data(), image.values[block].data(),
                      last_vision_token, ref::AttentionDims(H, G, hd, image.n_tokens),
                      context.data() + t * H * hd,
                      trace.enabled() ? probs.data() + t * H * n_vision : nullptr, n_vision);
  }
  trace("probs", {n_tokens, H, n_vision}, probs.data());
  trace("context", {n_tokens, H, hd}, context.data());

  std::vector<float> branch(normed.size());
  std::vector<float> gated(normed.size());
  kernels.matmul(context.data(), w.o_proj.data(), branch.data(), n_tokens, H * hd, d);
  trace("attn_out", {n_tokens, d}, branch.data());
  add_gated_branch(kernels, branch.data(), gate_factor(w.attn_gate), sees, d, gated.data(), x);
  trace("attn_gated", {n_tokens, d}, gated.data());
  trace("attn_residual", {n_tokens, d}, x);

  apply_norm(kernels, config, w.ffn_norm, w.ffn_norm_bias, x, normed.data(), n_tokens);
  trace("ffn_norm.out", {n_tokens, d}, normed.data());
  feed_forward(kernels, config.ffn_activation, w.ffn, normed.data(), n_tokens, branch.data());
  trace("ffn.out", {n_tokens, d}, branch.data());
  add_gated_branch(kernels, branch.data(), gate_factor(w.ffn_gate), sees, d, gated.data(), x);
  trace("ffn_gated", {n_tokens, d}, gated.data());
  trace("out", {n_tokens, d}, x);
}

}  // namespace moeref
