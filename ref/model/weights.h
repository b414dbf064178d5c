// The model's weights: their names, shapes and deterministic initialisation, and their storage in
// safetensors.
//
// Names (moeref's own; Hugging Face names are mapped in ref/io/hf_interop.h), linear weights in the
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
// With a "vision" config (docs/vision.md), a gated cross-attention block in front of each layer L
// of cross_attention_layers (listed before layers.L.attn_norm), Gx = cross_attention_kv_heads:
//   layers.L.xattn.attn_norm.weight (.bias)    [d_model]                   the decoder's norm
//   layers.L.xattn.{q,o}_proj.weight           q: [Hx*hd, d], o: [d, Hx*hd] Hx = cross_attn. heads
//   layers.L.xattn.{k,v}_proj.weight           [Gx*hd, d]
//   layers.L.xattn.{q,k}_norm.weight           [head_dim]                  cross_attention_qk_norm
//   layers.L.xattn.attn_gate                   [1]
//   layers.L.xattn.ffn_norm.weight (.bias)     [d_model]
//   layers.L.xattn.ffn.{gate,up,down}_proj.weight  as a dense FFN, with cross_attention_d_ff
//   layers.L.xattn.ffn_gate                    [1]
// and the vision tower, after everything else (W = width, M = mlp_size, N = patches, every
// LayerNorm with .weight and .bias, every linear with .weight [out, in] and .bias [out]):
//   vision.patch_embed                         [W, channels * patch_size^2]
//   vision.pos_embed.weight                    [N, W]
//   vision.layers.L.attn_norm, .attn.{q,k,v,o}_proj ([W, W]), .mlp_norm, .mlp.up_proj ([M, W]),
//   vision.layers.L.mlp.down_proj ([W, M])
//   vision.final_norm
//   vision.resampler.latents                   [resampler_latents, W]      with a resampler
//   vision.resampler.layers.L.{media_norm, latent_norm, attn.*, mlp_norm, mlp.*}  as a tower block
//   vision.resampler.final_norm
//   vision.projector                           [d_model, W]
//
// Initialisation (docs/model.md, "Weights"): element i of tensor N is drawn from Philox4x32-10
// with key = init_seed and counter = {i / 4 (low, high 32 bits), fnv1a32(N), 0x57454947}, word
// i % 4, so adding or renaming a tensor never changes another. With u in [0, 1) and
// a = init_std * sqrt(3), r = a * (2u - 1) is uniform with standard deviation init_std; matrices
// take r, norm gains 1 + r and norm biases r (not 1 and 0, so a backend that drops a gain or a
// bias is caught); attention gates gate_init + r and FFN gates -gate_init + r (so both signs of
// tanh(gate) are exercised). Every step is a correctly rounded IEEE operation (no libm call, no
// library distribution), so the weights are the same bits on every machine.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ref/io/config.h"
#include "ref/io/safetensors.h"
#include "ref/tensor.h"

namespace moeref {

enum class InitKind { kMatrix, kGain, kBias, kGate };

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  InitKind init = InitKind::kMatrix;
  int64_t expert = -1;       // the routed expert this tensor belongs to, -1 for shared weights
  double gate_center = 0.0;  // kGate: the value the gate is drawn around
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

// A gated cross-attention block (ref/model/cross_attention.h), in the decoder's width.
struct CrossAttentionWeights {
  Tensor attn_norm, attn_norm_bias;
  Tensor q_proj, k_proj, v_proj, o_proj;
  Tensor q_norm, k_norm;  // cross_attention_qk_norm only
  Tensor attn_gate;       // [1]
  Tensor ffn_norm, ffn_norm_bias;
  FeedForwardWeights ffn;
  Tensor ffn_gate;  // [1]
};

struct LinearWeights {  // y = x W^T + b
  Tensor weight, bias;
};

struct LayerNormWeights {
  Tensor weight, bias;
};

// A pre-norm block of the vision tower (and, with media_norm, of the resampler).
struct VisionBlockWeights {
  LayerNormWeights media_norm;  // resampler layers only
  LayerNormWeights attn_norm;   // the resampler's latent_norm
  LinearWeights q_proj, k_proj, v_proj, o_proj;
  LayerNormWeights mlp_norm;
  LinearWeights up_proj, down_proj;
};

struct VisionWeights {
  LinearWeights patch_embed;
  Tensor pos_embed;
  std::vector<VisionBlockWeights> layers;
  LayerNormWeights final_norm;
  Tensor latents;  // with a resampler
  std::vector<VisionBlockWeights> resampler_layers;
  LayerNormWeights resampler_norm;
  LinearWeights projector;
};

struct ModelWeights {
  Tensor embed;
  Tensor pos_embed;
  std::vector<LayerWeights> layers;
  Tensor final_norm, final_norm_bias;
  Tensor lm_head;
  std::vector<CrossAttentionWeights> cross_attention;  // one per vision.cross_attention_layers
  VisionWeights vision;                                // with a vision config

  const Tensor& output_head() const { return lm_head.empty() ? embed : lm_head; }
};

// Every tensor of the config, in the canonical order (the order of the list above).
std::vector<WeightSpec> weight_specs(const ModelConfig& config);

// Maps a moeref tensor name to the name used in a file (identity for moeref's own files).
using TensorNaming = std::function<std::string(const std::string&)>;

// NaN and Inf in weights are refused by default: a model computing with them gives garbage (all
// tokens 0) without a word. kAllow is for a backend author testing how NaN propagates.
enum class NonFiniteWeights { kRefuse, kAllow };

struct WeightLoading {
  TensorNaming naming;  // identity when empty
  NonFiniteWeights non_finite = NonFiniteWeights::kRefuse;
};

// Both refuse, before allocating anything, a config whose weights and KV cache would not fit in
// this machine's memory, saying how much it would need (see required_memory_bytes in stats.h).
ModelWeights init_weights(const ModelConfig& config);
// Every tensor of the config must be present with its shape and dtype F32, and nothing else;
// each violation is a SafetensorsError naming the file and the tensor, found from the header
// before any tensor data is read. Each tensor is then read straight into the weights (one copy
// in memory) and, unless loading.non_finite is kAllow, its first NaN or Inf is a SafetensorsError
// naming the tensor, the flat index and the element.
ModelWeights load_weights(const ModelConfig& config, const SafetensorsFile& file,
                          const WeightLoading& loading = {});
// The same checks, errors and copy for tensors already in memory (the Python module's dict of
// arrays); `source` stands in for the file's path in the messages.
ModelWeights load_weights(const ModelConfig& config, const std::vector<TensorRecord>& tensors,
                          const std::filesystem::path& source, const WeightLoading& loading = {});
ModelWeights load_weights(const ModelConfig& config, const std::filesystem::path& path,
                          const WeightLoading& loading = {});
// Weights from any other source (ref/io/hf_interop.h): every tensor of the config, in canonical
// order, made with its shape and handed to `fill`, which writes all of its elements. Refuses a
// config that would not fit in memory first, as load_weights does.
ModelWeights fill_weights(const ModelConfig& config,
                          const std::function<void(const WeightSpec&, Tensor&)>& fill);
// Throws SafetensorsError naming the file, `name` (the tensor as the file calls it), the flat
// index and the element of the tensor's first NaN or Inf; the check load_weights makes.
void check_finite_weight(const std::filesystem::path& file, const std::string& name,
                         const Tensor& tensor);

std::vector<TensorRecord> weight_records(const ModelConfig& config, const ModelWeights& weights,
                                         const TensorNaming& naming = {});
// The weights as tensors to write, borrowing their memory: no second copy.
std::vector<TensorView> weight_views(const ModelConfig& config, const ModelWeights& weights,
                                     const TensorNaming& naming = {});
// Writes the weights from where they lie, so saving needs no second copy of them.
void save_weights(const ModelConfig& config, const ModelWeights& weights,
                  const std::filesystem::path& path,
                  const std::map<std::string, std::string>& metadata = {});

}  // namespace moeref
