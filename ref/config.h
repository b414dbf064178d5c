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
#include <stdexcept>
#include <string>

namespace moeref {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class NormKind { kRmsNorm, kLayerNorm };
enum class PositionKind { kRope, kLearned };
enum class Activation { kSwiGlu, kGelu };

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

bool operator==(const ModelConfig& a, const ModelConfig& b);

}  // namespace moeref
