#include "ref/stats.h"

#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include "ref/weights.h"

namespace moeref {

ModelStats compute_stats(const ModelConfig& config) {
  ModelStats stats;
  for (const WeightSpec& spec : weight_specs(config)) {
    const int64_t n = shape_numel(spec.shape);
    stats.params_total += n;
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
