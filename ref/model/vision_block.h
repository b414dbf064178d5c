// The building blocks of the vision tower and of the Perceiver Resampler (docs/vision.md).
//
//   linear:      y = x W^T + b      x: [rows, in], W: [out, in], b: [out], y: [rows, out]
//   attention:   q = linear_q(a), k = linear_k(c), v = linear_v(c), split into `heads` heads
//                of width / heads; every query attends to every key (no mask, no positions,
//                scale 1/sqrt(head_dim)); out = linear_o(context)
//   tower block: x += attention(a = c = LN_attn(x));  x += MLP(LN_mlp(x))
//   resampler block (Flamingo): with l = LN_latent(x) and m = LN_media(features),
//                x += attention(a = l, c = [m; l]);   x += MLP(LN_mlp(x))
//   MLP:         down(gelu(up x)), GELU the exact erf form (ref/ops/activation.h)
//
// x: [rows, width], updated in place; features: [feature_rows, width]. The LayerNorms use the
// vision config's norm_eps. Bidirectional attention is the causal attention kernel with every
// query placed at the last key's position, over K/V laid out [heads, keys, head_dim].
//
// Traced under the caller's prefix: attn_norm.out (tower) or media_norm.out and latent_norm.out
// (resampler), attn.q [rows, heads, hd], attn.k and attn.v [keys, heads, hd], attn.probs [rows,
// heads, keys], attn.context, attn.out [rows, width], attn.residual, mlp_norm.out, mlp.hidden
// [rows, mlp_size] (after GELU), mlp.out, out.
#pragma once

#include <cstdint>
#include <string>

#include "ref/io/config.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"

namespace moeref {

void linear(const Kernels& kernels, const LinearWeights& w, const float* x, int64_t rows,
            int64_t in, int64_t out, float* y);

void layer_norm(const Kernels& kernels, const LayerNormWeights& w, double eps, const float* x,
                float* y, int64_t rows, int64_t d);

// Multi-head attention of `rows` queries over `keys` key rows, every query seeing every key.
// q, context: [rows, heads, head_dim]; k, v: [keys, heads, head_dim]; probs: [rows, heads, keys]
// or null.
void bidirectional_attention(const Kernels& kernels, const float* q, const float* k, const float* v,
                             int64_t rows, int64_t keys, int64_t heads, int64_t head_dim,
                             float* context, float* probs);

// A tower block (features = null) or a resampler block (features given).
void vision_block_forward(const Kernels& kernels, const VisionConfig& vision,
                          const VisionBlockWeights& w, float* x, int64_t rows,
                          const float* features, int64_t feature_rows, Tracer* tracer,
                          const std::string& prefix);

}  // namespace moeref
