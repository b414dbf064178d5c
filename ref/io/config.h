// The model configuration: every size and convention of one member of the model family.
//
// A config is read from a JSON object whose keys are exactly the field names below (see
// docs/config.md). Reading validates every field; the first violation throws ConfigError, whose
// message names the file, the key and the offending value, e.g.
//   configs/tiny.json: key "n_kv_heads": n_heads (4) must be a multiple of n_kv_heads (3)
// Unknown keys, missing required keys, wrong JSON types, non-positive sizes and inconsistent
// combinations are all errors; nothing is clamped or defaulted silently (optional keys and their
// defaults are listed in docs/config.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/ops/rope_scaling.h"

namespace moeref {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class NormKind { kRmsNorm, kLayerNorm };
enum class PositionKind { kRope, kLearned };
enum class Activation { kSwiGlu, kGelu };

// The optional vision path (docs/vision.md): a ViT tower that turns one image into vision tokens,
// read by gated cross-attention blocks placed in front of chosen decoder layers. Read from the
// config's "vision" object; its keys are the field names below (errors name them "vision.<key>").
struct VisionConfig {
  int64_t image_size = 0;  // the tower's input is a square image_size x image_size image
  int64_t channels = 0;
  int64_t patch_size = 0;  // divides image_size
  int64_t width = 0;       // the tower's model width
  int64_t layers = 0;      // encoder blocks
  int64_t heads = 0;       // divides width
  int64_t mlp_size = 0;
  double norm_eps = 1e-5;                       // of the tower's LayerNorms
  std::vector<double> mean;                     // per channel, applied to pixel values in [0, 1]
  std::vector<double> std;                      // per channel, positive
  int64_t resampler_latents = 0;                // Perceiver Resampler latents; 0 = no resampler
  int64_t resampler_layers = 0;                 // positive with latents, else 0
  std::vector<int64_t> cross_attention_layers;  // decoder layers with a gated block in front
  int64_t cross_attention_heads = 0;            // query heads; head_dim is the decoder's
  int64_t cross_attention_kv_heads = 0;         // divides cross_attention_heads; 1 = multi-query
  int64_t cross_attention_d_ff = 0;             // the gated FFN's hidden size
  bool cross_attention_qk_norm = false;         // per-head RMSNorm on q and k (Mllama)
  double gate_init = 0.0;  // attn gates start near +gate_init, FFN gates near -gate_init

  int64_t patches_per_side() const { return image_size / patch_size; }
  int64_t n_patches() const { return patches_per_side() * patches_per_side(); }
  int64_t patch_dim() const { return channels * patch_size * patch_size; }
  int64_t head_dim() const { return width / heads; }
  // Vision tokens per image: the resampler's latents, or one per patch.
  int64_t n_tokens() const { return resampler_latents > 0 ? resampler_latents : n_patches(); }
  bool has_cross_attention(int64_t layer) const;
  // The index of `layer` in cross_attention_layers; -1 when it has no gated block.
  int64_t cross_attention_index(int64_t layer) const;
};

struct ModelConfig {
  std::string name;  // free text, e.g. "tiny"

  int64_t vocab_size = 0;
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;     // query heads H
  int64_t n_kv_heads = 0;  // K/V heads G; 1 = multi-query, n_heads = multi-head
  int64_t head_dim = 0;

  NormKind norm = NormKind::kRmsNorm;
  double norm_eps = 1e-5;

  PositionKind positions = PositionKind::kRope;
  double rope_theta = 10000.0;  // only read with positions = rope
  RopeScaling rope_scaling;     // only read with positions = rope

  Activation ffn_activation = Activation::kSwiGlu;

  int64_t n_experts = 0;
  int64_t top_k = 0;
  bool router_renormalize = true;
  double capacity_factor = 0.0;  // 0 = dropless
  int64_t moe_every = 1;         // layer l is MoE iff (l + 1) % moe_every == 0; 1 = all layers
  int64_t expert_d_ff = 0;
  int64_t dense_d_ff = 0;  // required when some layer is dense, else may be 0

  int64_t max_seq_len = 0;
  bool tied_embeddings = false;

  uint64_t init_seed = 0;
  double init_std = 0.02;

  int64_t eos_token_id = -1;  // -1 = no end-of-sequence token

  // The safetensors file holding this model's weights, relative to the config's directory (or
  // absolute); empty: the weights are initialised from init_seed. Written by import-hf, so that
  // an imported model never runs on seeded weights by mistake; read by the commands that load a
  // model (tools/model_loading.h).
  std::string weights_file;

  std::optional<VisionConfig> vision;  // absent: a text-only model

  bool is_moe_layer(int64_t layer) const { return (layer + 1) % moe_every == 0; }
  int64_t n_moe_layers() const { return n_layers / moe_every; }
  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

// Parses and validates. `source` names where the JSON came from and prefixes every error.
ModelConfig config_from_json(const nlohmann::json& json, const std::string& source);
ModelConfig load_config(const std::filesystem::path& path);

// The inverse of config_from_json: every field, so that a written config reads back equal.
nlohmann::json config_to_json(const ModelConfig& config);

// A config's "rope_scaling" object alone (an op's parameters, a Python dict), validated as
// config_from_json validates it for a model of this head_dim and rope_theta; errors name
// "rope_scaling.<key>". And its inverse: the kind's keys only.
RopeScaling rope_scaling_from_json(const nlohmann::json& json, const std::string& source,
                                   int64_t head_dim, double rope_theta);
nlohmann::json rope_scaling_to_json(const RopeScaling& scaling);

bool operator==(const VisionConfig& a, const VisionConfig& b);
bool operator==(const ModelConfig& a, const ModelConfig& b);

}  // namespace moeref
