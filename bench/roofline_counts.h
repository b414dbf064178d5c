// What one token costs, for the rooflines of bench/roofline_bench.cc (docs/performance.md).
//
// Prefill: FLOPs per token over the compute peak, and the roofline model's bound, in which each
// expert's products, whose weights serve only the prompt's tokens routed to it, take the longer
// of their FLOPs over the peak and their weights' bytes over the read bandwidth. Decode is
// bandwidth-bound: its roofline is the bytes it must read per token over the read bandwidth.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/io/config.h"
#include "ref/model/stats.h"
#include "ref/model/weights.h"

namespace moeref::bench {

// Mean FLOPs per token of a prefill of `prompt_tokens` tokens: every active weight matrix
// (ref/model/stats.h) plus attention, whose token at position p reads p + 1 positions, (T + 1) / 2
// on average over a prompt of T tokens.
inline double prefill_flops_per_token(const ModelConfig& config, int64_t prompt_tokens) {
  const ModelStats stats = compute_stats(config);
  const double mean_context = static_cast<double>(prompt_tokens + 1) / 2.0;
  return static_cast<double>(stats.matmul_flops_per_token) +
         static_cast<double>(stats.attention_flops_per_token_per_position) * mean_context;
}

// A prefill's bound in the roofline model, in seconds: every product at the compute `peak`
// (FLOP/s) but the experts', each of which takes the longer of its FLOPs at the peak and its
// weights' bytes (fp32) at the read `bandwidth` (bytes/s). Below the ridge point an expert's few
// tokens cannot use its weights faster than they are read; an expert no token reaches is not read.
// `tokens_per_expert` holds, for each MoE layer in order, the tokens each of its experts received
// (as Kernels::expert_order sees them). Throws std::invalid_argument when its shape is not
// n_moe_layers x n_experts, or when it routes a number of tokens other than prompt_tokens x top_k
// in a layer (the FLOPs of ref/model/stats.h count top_k experts per token).
inline double prefill_roofline_model_seconds(
    const ModelConfig& config, int64_t prompt_tokens,
    std::span<const std::vector<int64_t>> tokens_per_expert, double peak, double bandwidth) {
  if (std::ssize(tokens_per_expert) != config.n_moe_layers()) {
    throw std::invalid_argument("the routing of " + std::to_string(tokens_per_expert.size()) +
                                " layers, for a config of " +
                                std::to_string(config.n_moe_layers()) + " MoE layers");
  }
  const double expert_values = static_cast<double>(compute_stats(config).params_per_expert) /
                               static_cast<double>(std::max<int64_t>(1, config.n_moe_layers()));
  double expert_flops = 0, expert_seconds = 0;
  for (const std::vector<int64_t>& layer : tokens_per_expert) {
    int64_t routed = 0;
    for (const int64_t tokens : layer) routed += tokens;
    if (std::ssize(layer) != config.n_experts || routed != prompt_tokens * config.top_k) {
      throw std::invalid_argument("a layer's routing of " + std::to_string(routed) + " tokens to " +
                                  std::to_string(layer.size()) + " experts, for " +
                                  std::to_string(prompt_tokens) + " tokens, top " +
                                  std::to_string(config.top_k) + " of " +
                                  std::to_string(config.n_experts));
    }
    for (const int64_t tokens : layer) {
      if (tokens == 0) continue;
      const double flops = 2.0 * static_cast<double>(tokens) * expert_values;
      expert_flops += flops;
      expert_seconds += std::max(flops / peak, 4.0 * expert_values / bandwidth);
    }
  }
  const double flops =
      prefill_flops_per_token(config, prompt_tokens) * static_cast<double>(prompt_tokens);
  return (flops - expert_flops) / peak + expert_seconds;
}

// Bytes of weights one decode step must read (fp32): the token's embedding row, in every layer
// both norms, q, k, v and o projections, the router and top_k experts (gate, up, down), then the
// final norm and the LM head. The other n_experts - top_k experts are not read.
inline double decode_weight_bytes_per_token(const ModelConfig& config,
                                            const ModelWeights& weights) {
  int64_t values = config.d_model;  // embedding row
  for (int64_t l = 0; l < config.n_layers; ++l) {
    const LayerWeights& w = weights.layers[l];
    values += w.attn_norm.numel() + w.attn_norm_bias.numel() + w.ffn_norm.numel() +
              w.ffn_norm_bias.numel();
    values += w.q_proj.numel() + w.k_proj.numel() + w.v_proj.numel() + w.o_proj.numel();
    const FeedForwardWeights& ffn = config.is_moe_layer(l) ? w.experts[0] : w.dense;
    const int64_t ffn_values = ffn.gate_proj.numel() + ffn.up_proj.numel() + ffn.down_proj.numel();
    values += config.is_moe_layer(l) ? w.router.numel() + config.top_k * ffn_values : ffn_values;
  }
  values += weights.final_norm.numel() + weights.final_norm_bias.numel();
  values += weights.output_head().numel();
  return 4.0 * static_cast<double>(values);
}

// Bytes of K/V one decode step reads at a context of `positions` positions: K and V of every
// K/V head of every layer (n_kv_heads = 1 under multi-query attention).
inline double decode_kv_bytes_per_token(const ModelConfig& config, double positions) {
  return 4.0 * static_cast<double>(compute_stats(config).kv_values_per_token) * positions;
}

// Every tensor of `weights`, in pieces of at most `piece_values` values: a list to split evenly
// over threads for a read of the weights where they lie.
inline std::vector<std::span<const float>> weight_pieces(const ModelWeights& weights,
                                                         int64_t piece_values) {
  std::vector<std::span<const float>> pieces;
  auto add = [&](const Tensor& tensor) {
    for (int64_t begin = 0; begin < tensor.numel(); begin += piece_values) {
      pieces.push_back(tensor.values().subspan(
          static_cast<size_t>(begin),
          static_cast<size_t>(std::min(piece_values, tensor.numel() - begin))));
    }
  };
  auto add_ffn = [&](const FeedForwardWeights& ffn) {
    add(ffn.gate_proj);
    add(ffn.up_proj);
    add(ffn.down_proj);
  };
  add(weights.embed);
  add(weights.pos_embed);
  for (const LayerWeights& layer : weights.layers) {
    for (const Tensor* tensor :
         {&layer.attn_norm, &layer.attn_norm_bias, &layer.q_proj, &layer.k_proj, &layer.v_proj,
          &layer.o_proj, &layer.ffn_norm, &layer.ffn_norm_bias, &layer.router}) {
      add(*tensor);
    }
    for (const FeedForwardWeights& ffn : layer.experts) add_ffn(ffn);
    add_ffn(layer.dense);
  }
  add(weights.final_norm);
  add(weights.final_norm_bias);
  add(weights.lm_head);
  return pieces;
}

// A field of /proc/self/status in bytes ("VmHWM", "VmRSS"), or -1 where it cannot be read.
inline double proc_status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string name;
  while (status >> name) {
    if (name == field + ":") {
      double kib = -1;
      status >> kib;
      return kib * 1024.0;
    }
    status.ignore(1 << 12, '\n');
  }
  return -1;
}

// Resets VmHWM to the current resident size (Linux >= 4.0); false where it is not allowed.
inline bool reset_peak_resident_memory() {
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";
  clear_refs.flush();
  return static_cast<bool>(clear_refs);
}

}  // namespace moeref::bench
