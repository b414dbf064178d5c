// The RoPE settings of a Hugging Face config.json: rope_theta and the scaling of transformers 4
// (rope_scaling, with "type" or "rope_type") and 5 (rope_parameters, with "rope_type" and
// "rope_theta"), to and from a moeref config (ref/io/hf_config.h uses them).
//
// Reading follows transformers 5 (modeling_rope_utils.py, RotaryEmbeddingConfigMixin):
//   - rope_type (or the legacy "type") is "default" when absent; "linear", "dynamic", "yarn" and
//     "llama3" are computed, any other ("longrope", ...) is refused naming it;
//   - a kind reads the keys transformers validates for it (factor for all; yarn:
//     original_max_position_embeddings, attention_factor, beta_fast, beta_slow, mscale,
//     mscale_all_dim, truncate; llama3: original_max_position_embeddings, low_freq_factor,
//     high_freq_factor), with transformers' defaults: original_max_position_embeddings is
//     max_position_embeddings, null or 0 betas are 32 and 1, a null attention_factor, mscale or
//     mscale_all_dim is unset, a null yarn factor is max_position_embeddings /
//     original_max_position_embeddings. Any other key is refused, naming it;
//   - partial_rotary_factor other than 1 is refused (moeref rotates whole heads).
// Decisions where transformers leaves a choice:
//   - rope_theta at the top level, in rope_parameters and in rope_scaling must agree where more
//     than one is given (absent: MixtralConfig's 1e6); rope_scaling and rope_parameters both
//     given must say the same of the scaling (transformers 5 reads rope_scaling then), and
//     "type" and "rope_type" both given must agree;
//   - dynamic: transformers scales past max_position_embeddings and sets no limit. moeref needs
//     one (its KV cache): max_seq_len is factor * max_position_embeddings (rounded down), as vLLM
//     allows, unless the moeref object of the file names max_seq_len.
// Errors are ConfigErrors naming the Hugging Face key ("rope_parameters.factor") and its value.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ref/io/config.h"

namespace moeref {

// What a config.json says of RoPE, as moeref config keys.
struct HfRope {
  double rope_theta = 0.0;
  nlohmann::json rope_scaling;         // a moeref "rope_scaling" object; null when unscaled
  std::optional<int64_t> max_seq_len;  // dynamic: factor * max_position_embeddings
  std::string section;  // the key the scaling came from: "rope_parameters" or "rope_scaling"
};

// `max_position_embeddings` is the file's (or MixtralConfig's default).
HfRope rope_from_hf_json(const nlohmann::json& hf, int64_t max_position_embeddings,
                         const std::string& source);

// `message` (a ConfigError's text from config_from_json) with moeref's rope_scaling keys named as
// the file's: "rope_scaling.type" as "<section>.rope_type", "rope_scaling.<key>" as
// "<section>.<key>".
std::string with_hf_rope_names(std::string message, const HfRope& rope);

// Writes rope_theta, rope_parameters (transformers 5's spelling, for a scaled kind) and, for
// dynamic, max_position_embeddings = original_max_position_embeddings and moeref.max_seq_len.
void write_hf_rope(const ModelConfig& config, nlohmann::json& hf);

}  // namespace moeref
