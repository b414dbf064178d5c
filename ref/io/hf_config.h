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
//   - RoPE: rope_theta, rope_parameters and rope_scaling as ref/io/hf_rope.h reads and writes them
//     (the scaling kinds default, linear, dynamic, yarn and llama3; thetas that must agree).
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

// Throws ConfigError "SOURCE: key "KEY": PROBLEM": how every reader of a Hugging Face config.json
// (this file, ref/io/hf_rope.h, ref/io/hf_interop.h) names what it refuses.
[[noreturn]] void fail_hf_key(const std::string& source, const std::string& key,
                              const std::string& problem);

nlohmann::json hf_config_json(const ModelConfig& config);
// `source` prefixes errors, which name the Hugging Face key and its value.
ModelConfig config_from_hf_json(const nlohmann::json& json, const std::string& source);

}  // namespace moeref
