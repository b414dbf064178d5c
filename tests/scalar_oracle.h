// A scalar oracle of the whole model, in double, written from the math of docs/model.md and
// docs/vision.md independently of ref/: no Kernels, no fp32 rounding between ops, the loops as the
// formulas read. model_test and vision_test check the reference against it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ref/io/config.h"
#include "ref/model/weights.h"
#include "ref/tensor.h"

namespace moeref::test {

using Vec = std::vector<double>;

// Vision tokens [N_v][d_model] and the position of the first prompt token after the image.
struct OracleImage {
  std::vector<Vec> tokens;
  int64_t position = 0;
};

inline Vec linear(const Tensor& w, const Vec& x) {  // w: [out, in]
  Vec y(static_cast<size_t>(w.dim(0)), 0.0);
  for (int64_t o = 0; o < w.dim(0); ++o) {
    for (int64_t i = 0; i < w.dim(1); ++i) y[o] += w.data()[o * w.dim(1) + i] * x[i];
  }
  return y;
}

inline Vec norm(const ModelConfig& c, const Tensor& gain, const Tensor& bias, const Vec& x) {
  const double d = static_cast<double>(x.size());
  double mean = 0;
  if (c.norm == NormKind::kLayerNorm) {
    for (double v : x) mean += v / d;
  }
  double ms = 0;
  for (double v : x) ms += (v - mean) * (v - mean) / d;
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    y[i] = (x[i] - mean) / std::sqrt(ms + c.norm_eps) * gain.data()[i];
    if (c.norm == NormKind::kLayerNorm) y[i] += bias.data()[i];
  }
  return y;
}

inline void rotate(Vec& head, int64_t pos, double theta) {
  const size_t half = head.size() / 2;
  for (size_t i = 0; i < half; ++i) {
    const double angle =
        static_cast<double>(pos) *
        std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head.size()));
    const double a = head[i], b = head[i + half];
    head[i] = a * std::cos(angle) - b * std::sin(angle);
    head[i + half] = b * std::cos(angle) + a * std::sin(angle);
  }
}

inline Vec ffn(const ModelConfig& c, const FeedForwardWeights& w, const Vec& x) {
  Vec h = linear(w.up_proj, x);
  if (c.ffn_activation == Activation::kSwiGlu) {
    const Vec g = linear(w.gate_proj, x);
    for (size_t i = 0; i < h.size(); ++i) h[i] *= g[i] / (1 + std::exp(-g[i]));
  } else {
    for (double& v : h) v = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
  }
  return linear(w.down_proj, h);
}

inline Vec moe(const ModelConfig& c, const LayerWeights& w, const Vec& x) {
  const Vec logits = linear(w.router, x);
  double max_logit = logits[0];
  for (double v : logits) max_logit = std::max(max_logit, v);
  Vec p(logits.size());
  double sum = 0;
  for (size_t e = 0; e < p.size(); ++e) sum += p[e] = std::exp(logits[e] - max_logit);
  for (double& v : p) v /= sum;
  std::vector<int> order(p.size());
  for (size_t e = 0; e < p.size(); ++e) order[e] = static_cast<int>(e);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
  double chosen = 0;
  for (int64_t j = 0; j < c.top_k; ++j) chosen += p[order[j]];
  Vec out(x.size(), 0.0);
  for (int64_t j = 0; j < c.top_k; ++j) {
    const double weight = c.router_renormalize ? p[order[j]] / chosen : p[order[j]];
    const Vec y = ffn(c, w.experts[order[j]], x);
    for (size_t i = 0; i < out.size(); ++i) out[i] += weight * y[i];
  }
  return out;
}

// ---- Vision (docs/vision.md) ----

inline Vec layer_norm(const Tensor& gain, const Tensor& bias, double eps, const Vec& x) {
  const double d = static_cast<double>(x.size());
  double mean = 0, var = 0;
  for (double v : x) mean += v / d;
  for (double v : x) var += (v - mean) * (v - mean) / d;
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    y[i] = (x[i] - mean) / std::sqrt(var + eps) * gain.data()[i] + bias.data()[i];
  }
  return y;
}

inline Vec affine(const LinearWeights& w, const Vec& x) {
  Vec y = linear(w.weight, x);
  for (size_t o = 0; o < y.size(); ++o) y[o] += w.bias.data()[o];
  return y;
}

inline void add_to(Vec& x, const Vec& y, double scale = 1.0) {
  for (size_t i = 0; i < x.size(); ++i) x[i] += scale * y[i];
}

// softmax(q . k_j / sqrt(hd)) weighted sum of v_j, for one head's query over all keys.
inline Vec attend(const Vec& q, const std::vector<Vec>& keys, const std::vector<Vec>& values) {
  Vec scores(keys.size());
  double max_score = -1e300, sum = 0;
  for (size_t j = 0; j < keys.size(); ++j) {
    scores[j] = 0;
    for (size_t i = 0; i < q.size(); ++i) scores[j] += q[i] * keys[j][i];
    scores[j] /= std::sqrt(static_cast<double>(q.size()));
    max_score = std::max(max_score, scores[j]);
  }
  for (double& s : scores) sum += s = std::exp(s - max_score);
  Vec out(q.size(), 0.0);
  for (size_t j = 0; j < keys.size(); ++j) add_to(out, values[j], scores[j] / sum);
  return out;
}

inline Vec slice(const Vec& v, int64_t index, int64_t size) {
  return Vec(v.begin() + index * size, v.begin() + (index + 1) * size);
}

// A tower block (features null) or a resampler block, on every row of x.
inline void vision_block(const VisionConfig& vc, const VisionBlockWeights& w, std::vector<Vec>& x,
                         const std::vector<Vec>* features) {
  const int64_t hd = vc.head_dim();
  std::vector<Vec> queries, kv_input;
  if (features != nullptr) {
    for (const Vec& f : *features) {
      kv_input.push_back(layer_norm(w.media_norm.weight, w.media_norm.bias, vc.norm_eps, f));
    }
  }
  for (const Vec& row : x) {
    queries.push_back(layer_norm(w.attn_norm.weight, w.attn_norm.bias, vc.norm_eps, row));
    kv_input.push_back(queries.back());
  }
  std::vector<std::vector<Vec>> keys(vc.heads), values(vc.heads);
  for (const Vec& row : kv_input) {
    const Vec k = affine(w.k_proj, row), v = affine(w.v_proj, row);
    for (int64_t h = 0; h < vc.heads; ++h) {
      keys[h].push_back(slice(k, h, hd));
      values[h].push_back(slice(v, h, hd));
    }
  }
  for (size_t t = 0; t < x.size(); ++t) {
    const Vec q = affine(w.q_proj, queries[t]);
    Vec context;
    for (int64_t h = 0; h < vc.heads; ++h) {
      const Vec head = attend(slice(q, h, hd), keys[h], values[h]);
      context.insert(context.end(), head.begin(), head.end());
    }
    add_to(x[t], affine(w.o_proj, context));
    Vec hidden =
        affine(w.up_proj, layer_norm(w.mlp_norm.weight, w.mlp_norm.bias, vc.norm_eps, x[t]));
    for (double& v : hidden) v = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    add_to(x[t], affine(w.down_proj, hidden));
  }
}

// The vision tokens of an image [C, S, S]: patches, tower, resampler, projector.
inline std::vector<Vec> vision_tokens(const ModelConfig& c, const VisionWeights& w,
                                      const Tensor& image) {
  const VisionConfig& vc = *c.vision;
  const int64_t P = vc.patch_size, S = vc.image_size, grid = S / P;
  std::vector<Vec> x;
  for (int64_t py = 0; py < grid; ++py) {
    for (int64_t px = 0; px < grid; ++px) {
      Vec patch;
      for (int64_t ch = 0; ch < vc.channels; ++ch) {
        for (int64_t i = 0; i < P; ++i) {
          for (int64_t j = 0; j < P; ++j) {
            patch.push_back(image.data()[(ch * S + py * P + i) * S + px * P + j]);
          }
        }
      }
      Vec e = affine(w.patch_embed, patch);
      const int64_t n = py * grid + px;
      for (int64_t i = 0; i < vc.width; ++i) e[i] += w.pos_embed.row(n)[i];
      x.push_back(e);
    }
  }
  for (const VisionBlockWeights& block : w.layers) vision_block(vc, block, x, nullptr);
  for (Vec& row : x) row = layer_norm(w.final_norm.weight, w.final_norm.bias, vc.norm_eps, row);
  if (vc.resampler_latents > 0) {
    std::vector<Vec> latents;
    for (int64_t r = 0; r < vc.resampler_latents; ++r) {
      latents.emplace_back(w.latents.row(r), w.latents.row(r) + vc.width);
    }
    for (const VisionBlockWeights& block : w.resampler_layers) vision_block(vc, block, latents, &x);
    x.clear();
    for (const Vec& row : latents) {
      x.push_back(layer_norm(w.resampler_norm.weight, w.resampler_norm.bias, vc.norm_eps, row));
    }
  }
  std::vector<Vec> tokens;
  for (const Vec& row : x) tokens.push_back(affine(w.projector, row));
  return tokens;
}

// RMSNorm of each head_dim slice of v with `gain` (q_norm, k_norm).
inline Vec head_rms_norm(const Vec& v, const Tensor& gain, int64_t hd, double eps) {
  Vec y(v.size());
  for (size_t h = 0; h * hd < v.size(); ++h) {
    double ms = 0;
    for (int64_t i = 0; i < hd; ++i) ms += v[h * hd + i] * v[h * hd + i] / static_cast<double>(hd);
    for (int64_t i = 0; i < hd; ++i) {
      y[h * hd + i] = v[h * hd + i] / std::sqrt(ms + eps) * gain.data()[i];
    }
  }
  return y;
}

// Flamingo's gated block on one token that sees the image.
inline void gated_cross_attention(const ModelConfig& c, const CrossAttentionWeights& w,
                                  const std::vector<Vec>& tokens, Vec& x) {
  const VisionConfig& vc = *c.vision;
  const int64_t hd = c.head_dim;
  const bool qk = vc.cross_attention_qk_norm;
  std::vector<std::vector<Vec>> keys(vc.cross_attention_kv_heads), values(keys.size());
  for (const Vec& token : tokens) {
    Vec k = linear(w.k_proj, token);
    if (qk) k = head_rms_norm(k, w.k_norm, hd, c.norm_eps);
    const Vec v = linear(w.v_proj, token);
    for (size_t g = 0; g < keys.size(); ++g) {
      keys[g].push_back(slice(k, static_cast<int64_t>(g), hd));
      values[g].push_back(slice(v, static_cast<int64_t>(g), hd));
    }
  }
  Vec q = linear(w.q_proj, norm(c, w.attn_norm, w.attn_norm_bias, x));
  if (qk) q = head_rms_norm(q, w.q_norm, hd, c.norm_eps);
  Vec context;
  const int64_t group = vc.cross_attention_heads / vc.cross_attention_kv_heads;
  for (int64_t h = 0; h < vc.cross_attention_heads; ++h) {
    const Vec head = attend(slice(q, h, hd), keys[h / group], values[h / group]);
    context.insert(context.end(), head.begin(), head.end());
  }
  add_to(x, linear(w.o_proj, context), std::tanh(w.attn_gate.data()[0]));
  add_to(x, ffn(c, w.ffn, norm(c, w.ffn_norm, w.ffn_norm_bias, x)),
         std::tanh(w.ffn_gate.data()[0]));
}

// Logits of the last token of `tokens`, run from position 0; with an image, the tokens from
// image->position on read it through the gated blocks.
inline Vec oracle_last_logits(const ModelConfig& c, const ModelWeights& w,
                              const std::vector<int32_t>& tokens,
                              const OracleImage* image = nullptr) {
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t hd = c.head_dim;
  std::vector<Vec> x(T);
  for (int64_t t = 0; t < T; ++t) {
    x[t].assign(w.embed.row(tokens[t]), w.embed.row(tokens[t]) + c.d_model);
    if (c.positions == PositionKind::kLearned) {
      for (int64_t i = 0; i < c.d_model; ++i) x[t][i] += w.pos_embed.row(t)[i];
    }
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    if (image != nullptr && c.vision->has_cross_attention(l)) {
      const CrossAttentionWeights& xw = w.cross_attention[c.vision->cross_attention_index(l)];
      for (int64_t t = image->position; t < T; ++t)
        gated_cross_attention(c, xw, image->tokens, x[t]);
    }
    const LayerWeights& lw = w.layers[l];
    std::vector<Vec> q(T), k(T), v(T);
    for (int64_t t = 0; t < T; ++t) {
      const Vec n = norm(c, lw.attn_norm, lw.attn_norm_bias, x[t]);
      q[t] = linear(lw.q_proj, n);
      k[t] = linear(lw.k_proj, n);
      v[t] = linear(lw.v_proj, n);
      if (c.positions == PositionKind::kRope) {
        for (int64_t h = 0; h < c.n_heads; ++h) {
          Vec head(q[t].begin() + h * hd, q[t].begin() + (h + 1) * hd);
          rotate(head, t, c.rope_theta);
          std::copy(head.begin(), head.end(), q[t].begin() + h * hd);
        }
        for (int64_t g = 0; g < c.n_kv_heads; ++g) {
          Vec head(k[t].begin() + g * hd, k[t].begin() + (g + 1) * hd);
          rotate(head, t, c.rope_theta);
          std::copy(head.begin(), head.end(), k[t].begin() + g * hd);
        }
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      Vec context(static_cast<size_t>(c.n_heads * hd), 0.0);
      for (int64_t h = 0; h < c.n_heads; ++h) {
        const int64_t g = h / (c.n_heads / c.n_kv_heads);
        Vec scores(t + 1);
        double max_score = -1e300, sum = 0;
        for (int64_t s = 0; s <= t; ++s) {
          scores[s] = 0;
          for (int64_t i = 0; i < hd; ++i) scores[s] += q[t][h * hd + i] * k[s][g * hd + i];
          scores[s] /= std::sqrt(static_cast<double>(hd));
          max_score = std::max(max_score, scores[s]);
        }
        for (double& s : scores) sum += s = std::exp(s - max_score);
        for (int64_t s = 0; s <= t; ++s) {
          for (int64_t i = 0; i < hd; ++i)
            context[h * hd + i] += scores[s] / sum * v[s][g * hd + i];
        }
      }
      const Vec attn = linear(lw.o_proj, context);
      for (int64_t i = 0; i < c.d_model; ++i) x[t][i] += attn[i];
      const Vec n = norm(c, lw.ffn_norm, lw.ffn_norm_bias, x[t]);
      const Vec f = c.is_moe_layer(l) ? moe(c, lw, n) : ffn(c, lw.dense, n);
      for (int64_t i = 0; i < c.d_model; ++i) x[t][i] += f[i];
    }
  }
  const Vec n = norm(c, w.final_norm, w.final_norm_bias, x[T - 1]);
  return linear(c.tied_embeddings ? w.embed : w.lm_head, n);
}

}  // namespace moeref::test
