// What a config costs: parameters, FLOPs, KV cache and memory, computed from the shapes alone
// (nothing is allocated, so it works for gpt4-rumored too).
//
// Conventions (docs/model.md, "Counting"):
// - active parameters per token: every shared tensor plus top_k of the n_experts experts of each
//   MoE layer (the input embedding counts, although it is a lookup);
// - matmul FLOPs per token: 2 per multiply-add of every active weight matrix except the input
//   embedding (a lookup); attention adds 4 * n_layers * n_heads * head_dim FLOPs per token per
//   position of context (q.k and p.v), reported separately since it grows with the context;
// - KV cache: K and V for every layer, n_kv_heads * head_dim values each per token;
// - vision (docs/vision.md): the tower, resampler and projector run once per image and are not
//   active per token; the gated cross-attention blocks are, except their k_proj and v_proj, which
//   project the vision tokens once per image. Per-token counts are those of a token that sees the
//   image.
#pragma once

#include <cstdint>
#include <string>

#include "ref/io/config.h"

namespace moeref {

struct ModelStats {
  int64_t params_total = 0;
  int64_t params_active = 0;  // per token
  int64_t params_attention = 0;
  int64_t params_per_expert = 0;  // one expert in every MoE layer together
  int64_t params_embedding = 0;   // input embedding, positions, and the LM head when untied
  int64_t matmul_flops_per_token = 0;
  int64_t attention_flops_per_token_per_position = 0;
  int64_t kv_values_per_token = 0;      // this config
  int64_t kv_values_per_token_mha = 0;  // the same config with n_kv_heads = n_heads
  int64_t weight_bytes_f32 = 0;
  int64_t kv_cache_bytes_f32 = 0;               // the whole cache at max_seq_len
  int64_t params_vision = 0;                    // tower, resampler and projector
  int64_t params_cross_attention = 0;           // the gated blocks
  int64_t vision_flops_per_image = 0;           // tower, resampler, projector, gated blocks' K/V
  int64_t cross_attention_flops_per_token = 0;  // q.k and p.v over the vision tokens
};

ModelStats compute_stats(const ModelConfig& config);

// fp32 weights plus one KV cache of max_seq_len positions.
int64_t required_memory_bytes(const ModelConfig& config);

// Throws std::runtime_error (naming the config and both amounts) when required_memory_bytes
// exceeds this machine's physical memory.
void check_fits_in_memory(const ModelConfig& config);

std::string format_bytes(double bytes);  // "60.0 KiB", "6.81 TiB"

}  // namespace moeref
