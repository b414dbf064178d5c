#include "ref/model/vision_block.h"

#include <vector>

#include "ref/model/kv_view.h"

namespace moeref {

void linear(const Kernels& kernels, const LinearWeights& w, const float* x, int64_t rows,
            int64_t in, int64_t out, float* y) {
  kernels.matmul(x, w.weight.data(), y, rows, in, out);
  for (int64_t r = 0; r < rows; ++r) kernels.residual_add(y + r * out, w.bias.data(), out);
}

void layer_norm(const Kernels& kernels, const LayerNormWeights& w, double eps, const float* x,
                float* y, int64_t rows, int64_t d) {
  kernels.layer_norm(x, w.weight.data(), w.bias.data(), eps, y, rows, d);
}

void bidirectional_attention(const Kernels& kernels, const float* q, const float* k, const float* v,
                             int64_t rows, int64_t keys, int64_t heads, int64_t head_dim,
                             float* context, float* probs) {
  std::vector<float> key_rows(static_cast<size_t>(heads * keys * head_dim));
  std::vector<float> value_rows(key_rows.size());
  const KvView view{key_rows.data(), value_rows.data(), {}, 0, keys};
  store_kv(view, heads, head_dim, 0, keys, k, v);
  const std::vector<int64_t> last_position(static_cast<size_t>(rows), keys - 1);
  kernels.attention(q, key_rows.data(), value_rows.data(), last_position,
                    view.attention_dims(heads, heads, head_dim), context, probs, keys);
}

void vision_block_forward(const Kernels& kernels, const VisionConfig& vision,
                          const VisionBlockWeights& w, float* x, int64_t rows,
                          const float* features, int64_t feature_rows, Tracer* tracer,
                          const std::string& prefix) {
  const TraceScope trace(tracer, prefix);
  const int64_t width = vision.width;
  const int64_t heads = vision.heads;
  const int64_t hd = vision.head_dim();
  const double eps = vision.norm_eps;
  const bool resampler = features != nullptr;

  // The attention's inputs: queries from the normed rows, keys and values from the normed rows
  // (tower) or from the normed features followed by the normed rows (resampler).
  const int64_t keys = resampler ? feature_rows + rows : rows;
  std::vector<float> kv_input(static_cast<size_t>(keys * width));
  float* normed = kv_input.data() + (keys - rows) * width;
  if (resampler) {
    layer_norm(kernels, w.media_norm, eps, features, kv_input.data(), feature_rows, width);
    trace("media_norm.out", {feature_rows, width}, kv_input.data());
  }
  layer_norm(kernels, w.attn_norm, eps, x, normed, rows, width);
  trace(resampler ? "latent_norm.out" : "attn_norm.out", {rows, width}, normed);

  std::vector<float> q(static_cast<size_t>(rows * width));
  std::vector<float> k(kv_input.size());
  std::vector<float> v(kv_input.size());
  linear(kernels, w.q_proj, normed, rows, width, width, q.data());
  linear(kernels, w.k_proj, kv_input.data(), keys, width, width, k.data());
  linear(kernels, w.v_proj, kv_input.data(), keys, width, width, v.data());
  trace("attn.q", {rows, heads, hd}, q.data());
  trace("attn.k", {keys, heads, hd}, k.data());
  trace("attn.v", {keys, heads, hd}, v.data());

  std::vector<float> context(q.size());
  std::vector<float> probs(trace.enabled() ? static_cast<size_t>(rows * heads * keys) : 0);
  bidirectional_attention(kernels, q.data(), k.data(), v.data(), rows, keys, heads, hd,
                          context.data(), trace.enabled() ? probs.data() : nullptr);
  trace("attn.probs", {rows, heads, keys}, probs.data());
  trace("attn.context", {rows, heads, hd}, context.data());

  std::vector<float> attn_out(q.size());
  linear(kernels, w.o_proj, context.data(), rows, width, width, attn_out.data());
  trace("attn.out", {rows, width}, attn_out.data());
  kernels.residual_add(x, attn_out.data(), rows * width);
  trace("attn.residual", {rows, width}, x);

  std::vector<float> mlp_in(static_cast<size_t>(rows * width));
  layer_norm(kernels, w.mlp_norm, eps, x, mlp_in.data(), rows, width);
  trace("mlp_norm.out", {rows, width}, mlp_in.data());
  std::vector<float> hidden(static_cast<size_t>(rows * vision.mlp_size));
  linear(kernels, w.up_proj, mlp_in.data(), rows, width, vision.mlp_size, hidden.data());
  kernels.gelu(hidden.data(), rows * vision.mlp_size);
  trace("mlp.hidden", {rows, vision.mlp_size}, hidden.data());
  std::vector<float> mlp_out(static_cast<size_t>(rows * width));
  linear(kernels, w.down_proj, hidden.data(), rows, vision.mlp_size, width, mlp_out.data());
  trace("mlp.out", {rows, width}, mlp_out.data());
  kernels.residual_add(x, mlp_out.data(), rows * width);
  trace("out", {rows, width}, x);
}

}  // namespace moeref
