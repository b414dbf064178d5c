// Hugging Face interop: moeref configs that fit Mixtral, exported to and imported from the Hub's
// MixtralForCausalLM layout (config.json + model.safetensors).
//
// A config fits Mixtral when it uses RMSNorm, RoPE, SwiGLU experts in every layer (moe_every 1),
// dropless routing with renormalised top-k weights and an untied LM head; Mixtral has no biases
// to add. Tensor names map as follows (moeref -> Hugging Face):
//   embed.weight                          model.embed_tokens.weight
//   layers.L.attn_norm.weight             model.layers.L.input_layernorm.weight
//   layers.L.attn.{q,k,v,o}_proj.weight   model.layers.L.self_attn.{q,k,v,o}_proj.weight
//   layers.L.ffn_norm.weight              model.layers.L.post_attention_layernorm.weight
//   layers.L.moe.router.weight            model.layers.L.block_sparse_moe.gate.weight
//   layers.L.moe.experts.E.gate_proj      model.layers.L.block_sparse_moe.experts.E.w1
//   layers.L.moe.experts.E.up_proj        ... .w3
//   layers.L.moe.experts.E.down_proj      ... .w2
//   final_norm.weight                     model.norm.weight
//   lm_head.weight                        lm_head.weight
// Values are copied bit for bit, so export followed by import gives back the same config and the
// same weights exactly. moeref's own fields with no Mixtral key (name, init_seed) travel under a
// "moeref" object in config.json, which transformers keeps as an attribute and otherwise ignores.
#pragma once

#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "ref/config.h"
#include "ref/weights.h"

namespace moeref {

// Throws ConfigError naming the first key whose value Mixtral cannot express.
void check_mixtral_compatible(const ModelConfig& config, const std::string& source);

std::string hf_tensor_name(const std::string& moeref_name);

nlohmann::json hf_config_json(const ModelConfig& config);
// `source` prefixes errors, which name the Hugging Face key and its value.
ModelConfig config_from_hf_json(const nlohmann::json& json, const std::string& source);

// Writes DIR/config.json and DIR/model.safetensors (creating DIR), published together
// (ref/atomic_file.h): after a failure both are as they were, never new weights beside an old
// config.
void export_hf(const ModelConfig& config, const ModelWeights& weights,
               const std::filesystem::path& dir);

struct ImportedModel {
  ModelConfig config;
  ModelWeights weights;
};

// Errors name the file and the key (config.json) or the tensor (model.safetensors); NaN and Inf
// weights are refused unless non_finite is kAllow (ref/weights.h).
ImportedModel import_hf(const std::filesystem::path& dir,
                        NonFiniteWeights non_finite = NonFiniteWeights::kRefuse);

}  // namespace moeref
