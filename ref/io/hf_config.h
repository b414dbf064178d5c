// A Mixtral config.json of Hugging Face, to and from a moeref config.
//
// Reading follows transformers' MixtralConfig: every key it defines is either honoured, with its
// class default when absent, or refused; a key that changes nothing the oracle computes (token
// ids other than eos, training-only settings, the storage dtype, versions) is accepted and
// recorded nowhere. Any other key is refused, never dropped. docs/hf-interop.md has the table.
// Every error is a ConfigError of the form
//   SOURCE: key "num_key_value_heads": num_attention_heads (4) must be a multiple of ... (3)
// naming the Hugging Face key and its value, also where the rule is moeref's own.
//
// Decisions where transformers leaves a choice:
//   - RoPE: the top-level rope_theta (transformers 4) and rope_parameters.rope_theta
//     (transformers 5; rope_scaling.rope_theta too) must agree where more than one is given;
//     absent, it is 1e6 (MixtralConfig's default_theta). A rope_type other than "default", or any
//     scaling parameter, is refused: moeref computes unscaled RoPE only.
//   - eos_token_id: a list (Hub configs of newer families carry several) is read as its first
//     entry, which is where moeref's generation stops; an empty list or null is no eos.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

#include "ref/io/config.h"

namespace moeref {

// The MixtralConfig defaults moeref reads (transformers 4.36 to 5.x agree on them).
inline constexpr double kHfDefaultRopeTheta = 1e6;
inline constexpr int64_t kHfDefaultKeyValueHeads = 8;

nlohmann::json hf_config_json(const ModelConfig& config);
// `source` prefixes errors, which name the Hugging Face key and its value.
ModelConfig config_from_hf_json(const nlohmann::json& json, const std::string& source);

}  // namespace moeref
