// Flamingo's GATED XATTN-DENSE block (Alayrac et al. 2022), in front of each decoder layer of
// vision.cross_attention_layers; per-head q/k RMSNorm optional, as in Mllama. docs/vision.md.
//
// For a token that sees the image:
//   y += tanh(attn_gate) * o_proj(XAttn(q = q_norm(q_proj Norm(y)), K, V))
//   y += tanh(ffn_gate)  * FFN(Norm(y))
// Every other token is left exactly as it is: both branches are skipped, so text before the image
// (and every token of a sequence without one) is computed exactly as by the text-only model (in a
// dropless config; with capacity_factor > 0 routing depends on every token of the call, those
// after the image included, as ref/model/model.h says).
// A token sees its sequence's image when its position is >= the image's position, the index of
// the first prompt token after the image (Flamingo: a token reads only the image before it).
//
// K = k_norm(k_proj tokens) and V = v_proj tokens are computed once per image (image_kv) and
// laid out [Gx, N_v, head_dim]. XAttn has Hx = cross_attention_heads query heads over Gx =
// cross_attention_kv_heads K/V heads (query head h reads K/V head h / (Hx / Gx)), reads every one
// of the N_v vision tokens with no mask and no RoPE, and scales by 1/sqrt(head_dim) (the
// decoder's). Norm and FFN are the decoder's kinds (norm, ffn_activation), the FFN with
// cross_attention_d_ff; q_norm and k_norm are RMSNorms over head_dim with the decoder's norm_eps.
// The gate factor is g = fp32(tanh(gate)), tanh in double; the gated branch g * b and the sum are
// each rounded once to fp32.
//
// Traced under "layers.L.xattn." at each forward call where some token sees an image:
// attn_norm.out [T, d], q [T, Hx, hd], probs [T, Hx, N_v], context [T, Hx, hd], attn_out [T, d],
// attn_gated [T, d], attn_residual [T, d], ffn_norm.out, ffn.out, ffn_gated, out [T, d]; probs,
// context and the gated branches are zero in the rows of tokens that do not see an image. k and
// v [N_v, Gx, hd] are traced by image_kv, once per image.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ref/io/config.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"
#include "ref/tensor.h"

namespace moeref {

// One image's K/V for every gated block, computed once (the cross-attention cache).
struct ImageKv {
  int64_t n_tokens = 0;        // N_v
  std::vector<Tensor> keys;    // per gated block, in cross_attention_layers order: [Gx, N_v, hd]
  std::vector<Tensor> values;  // the same
};

// A sequence's image and where it sits in the sequence.
struct SequenceImage {
  const ImageKv* kv = nullptr;  // null: the sequence has no image
  int64_t position = 0;         // tokens at positions >= position see the image

  bool seen_at(int64_t token_position) const { return kv != nullptr && token_position >= position; }
};

// Throws std::invalid_argument unless 0 <= position <= prompt_length: an image sits before one of
// the prompt's tokens or after the last.
void check_image_position(int64_t position, int64_t prompt_length);

// Throws std::invalid_argument unless `kv` fits the config: N_v > 0, one K and one V per gated
// block, each [Gx, N_v, head_dim].
void check_image_kv(const ModelConfig& config, const ImageKv& kv);

// tokens: the vision tokens [N_v, d_model] (ref/model/vision_encoder.h). Traces layers.L.xattn.k
// and .v.
ImageKv image_kv(const Kernels& kernels, const ModelConfig& config,
                 std::span<const CrossAttentionWeights> blocks, const Tensor& tokens,
                 Tracer* tracer = nullptr);

// x: [T, d_model], updated in place. positions and images: one per row of x. `block` is the index
// of this block in cross_attention_layers.
void gated_cross_attention(const Kernels& kernels, const ModelConfig& config,
                           const CrossAttentionWeights& w, int64_t block,
                           std::span<const int64_t> positions,
                           std::span<const SequenceImage> images, float* x,
                           const TraceScope& trace);

}  // namespace moeref
