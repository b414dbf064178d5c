#include "ref/model/stats.h"

#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include "ref/model/weights.h"

namespace moeref {

namespace {

// Matmul and attention FLOPs of encoding one image: the tower, the resampler, the projector and
// the K/V projections of every gated block.
int64_t vision_flops_per_image(const ModelConfig& c) {
  const VisionConfig& v = *c.vision;
  const int64_t w = v.width;
  const int64_t n = v.n_patches();
  const int64_t block_matmuls = 4 * w * w + 2 * w * v.mlp_size;  // multiply-adds per row
  int64_t flops = 2 * n * v.patch_dim() * w;
  flops += v.layers * (2 * n * block_matmuls + 4 * n * n * w);
  const int64_t latents = v.resampler_latents;
  // A resampler layer: q, o and the MLP on the latents; k and v on [features, latents].
  flops += v.resampler_layers * (2 * latents * (2 * w * w + 2 * w * v.mlp_size) +
                                 2 * (n + latents) * 2 * w * w + 4 * latents * (n + latents) * w);
  flops += 2 * v.n_tokens() * w * c.d_model;
  flops += static_cast<int64_t>(v.cross_attention_layers.size()) * 2 * v.n_tokens() * 2 *
           v.cross_attention_kv_heads * c.head_dim * c.d_model;
  return flops;
}

}  // namespace

ModelStats compute_stats(const ModelConfig& config) {
  ModelStats stats;
  for (const WeightSpec& spec : weight_specs(config)) {
    const int64_t n = shape_numel(spec.shape);
    stats.params_total += n;
    if (spec.name.starts_with("vision.")) {  // run once per image, not per token
      stats.params_vision += n;
      continue;
    }
    if (spec.name.find(".xattn.") != std::string::npos) {
      stats.params_cross_attention += n;
      const bool per_image = spec.name.ends_with(".xattn.k_proj.weight") ||
                             spec.name.ends_with(".xattn.v_proj.weight");
      if (per_image) continue;  // projects the vision tokens, once per image
    }
    if (spec.expert < 0) stats.params_active += n;
    if (spec.expert == 0) stats.params_per_expert += n;
    if (spec.name.find(".attn.") != std::string::npos) stats.params_attention += n;
    const bool is_embedding = spec.name == "embed.weight" || spec.name == "pos_embed.weight" ||
                              spec.name == "lm_head.weight";
    if (is_embedding) stats.params_embedding += n;
    const bool is_lookup = spec.name == "embed.weight" || spec.name == "pos_embed.weight";
    const bool is_matrix = spec.shape.size() == 2 && !is_lookup;
    if (is_matrix && spec.expert < 0) stats.matmul_flops_per_token += 2 * n;
  }
  stats.params_active += config.top_k * stats.params_per_expert;
  stats.matmul_flops_per_token += 2 * config.top_k * stats.params_per_expert;
  if (config.tied_embeddings)
    stats.matmul_flops_per_token += 2 * config.vocab_size * config.d_model;
  stats.attention_flops_per_token_per_position = 4 * config.n_layers * config.q_dim();
  stats.kv_values_per_token = 2 * config.n_layers * config.kv_dim();
  stats.kv_values_per_token_mha = 2 * config.n_layers * config.q_dim();
  if (config.vision) {
    const VisionConfig& v = *config.vision;
    stats.vision_flops_per_image = vision_flops_per_image(config);
    stats.cross_attention_flops_per_token = static_cast<int64_t>(v.cross_attention_layers.size()) *
                                            4 * v.cross_attention_heads * config.head_dim *
                                            v.n_tokens();
  }
  stats.weight_bytes_f32 = 4 * stats.params_total;
  stats.kv_cache_bytes_f32 = 4 * stats.kv_values_per_token * config.max_seq_len;
  return stats;
}

int64_t required_memory_bytes(const ModelConfig& config) {
  const ModelStats stats = compute_stats(config);
  return stats.weight_bytes_f32 + stats.kv_cache_bytes_f32;
}

void check_fits_in_memory(const ModelConfig& config) {
  const double needed = static_cast<double>(required_memory_bytes(config));
  const double physical =
      static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  if (needed > physical) {
    throw std::runtime_error("config \"" + config.name + "\" needs " + format_bytes(needed) +
                             " for fp32 weights and a KV cache of " +
                             std::to_string(config.max_seq_len) + " positions; this machine has " +
                             format_bytes(physical) + " of memory. Use `moeref stats` for it.");
  }
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int unit = 0;
  while (bytes >= 1024.0 && unit < 5) {
    bytes /= 1024.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.2f %s", bytes, units[unit]);
  return text;
}

}  // namespace moeref
