// The model's weights: their names, shapes and deterministic initialisation, and their storage in
// safetensors.
//
// Names (moeref's own; Hugging Face names are mapped in ref/hf_interop.h), linear weights in the
// [out, in] layout:
//   embed.weight                               [vocab_size, d_model]
//   pos_embed.weight                           [max_seq_len, d_model]      positions = learned
//   layers.L.attn_norm.weight (.bias)          [d_model]                   bias with layernorm
//   layers.L.attn.{q,k,v,o}_proj.weight        q: [H*hd, d], k, v: [G*hd, d], o: [d, H*hd]
//   layers.L.ffn_norm.weight (.bias)           [d_model]
//   layers.L.moe.router.weight                 [n_experts, d_model]        MoE layers
//   layers.L.moe.experts.E.gate_proj.weight    [expert_d_ff, d_model]      swiglu only
//   layers.L.moe.experts.E.up_proj.weight      [expert_d_ff, d_model]
//   layers.L.moe.experts.E.down_proj.weight    [d_model, expert_d_ff]
//   layers.L.ffn.{gate,up,down}_proj.weight    as an expert, with dense_d_ff    dense layers
//   final_norm.weight (.bias)                  [d_model]
//   lm_head.weight                             [vocab_size, d_model]       absent when tied
//
// Initialisation (docs/model.md, "Weights"): element i of tensor N is drawn from Philox4x32-10
// with key = init_seed and counter = {i / 4 (low, high 32 bits), fnv1a32(N), 0x57454947}, word
// i % 4, so adding or renaming a tensor never changes another. With u in [0, 1) and
// a = init_std * sqrt(3), r = a * (2u - 1) is uniform with standard deviation init_std; matrices
// take r, norm gains 1 + r and norm biases r (not 1 and 0, so a backend that drops a gain or a
// bias is caught). Every step is a correctly rounded IEEE operation (no libm call, no library
// distribution), so the weights are the same bits on every machine.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ref/config.h"
#include "ref/safetensors.h"
#include "ref/tensor.h"

namespace moeref {

enum class InitKind { kMatrix, kGain, kBias };

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  InitKind init = InitKind::kMatrix;
  int64_t expert = -1;  // the routed expert this tensor belongs to, -1 for shared weights
};

struct FeedForwardWeights {
  Tensor gate_proj;  // swiglu only
  Tensor up_proj;
  Tensor down_proj;
};

struct LayerWeights {
  Tensor attn_norm, attn_norm_bias;
  Tensor q_proj, k_proj, v_proj, o_proj;
  Tensor ffn_norm, ffn_norm_bias;
  Tensor router;                            // MoE layers
  std::vector<FeedForwardWeights> experts;  // MoE layers
  FeedForwardWeights dense;                 // dense layers
};

struct ModelWeights {
  Tensor embed;
  Tensor pos_embed;
  std::vector<LayerWeights> layers;
  Tensor final_norm, final_norm_bias;
  Tensor lm_head;

  const Tensor& output_head() const { return lm_head.empty() ? embed : lm_head; }
};

// Every tensor of the config, in the canonical order (the order of the list above).
std::vector<WeightSpec> weight_specs(const ModelConfig& config);

// Maps a moeref tensor name to the name used in a file (identity for moeref's own files).
using TensorNaming = std::function<std::string(const std::string&)>;

// Both refuse, before allocating anything, a config whose weights and KV cache would not fit in
// this machine's memory, saying how much it would need (see required_memory_bytes in stats.h).
ModelWeights init_weights(const ModelConfig& config);
// Every tensor of the config must be present with its shape and dtype F32, and nothing else;
// each violation is a SafetensorsError naming the file and the tensor.
ModelWeights load_weights(const ModelConfig& config, const SafetensorsFile& file,
                          const TensorNaming& naming = {});
ModelWeights load_weights(const ModelConfig& config, const std::filesystem::path& path);

std::vector<TensorRecord> weight_records(const ModelConfig& config, const ModelWeights& weights,
                                         const TensorNaming& naming = {});
void save_weights(const ModelConfig& config, const ModelWeights& weights,
                  const std::filesystem::path& path,
                  const std::map<std::string, std::string>& metadata = {});

}  // namespace moeref
