// Hugging Face interop: moeref configs that fit Mixtral, exported to and imported from the Hub's
// MixtralForCausalLM layout (config.json, ref/io/hf_config.h, and safetensors weights).
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
// That is the per-expert layout of the Hub, which transformers 4 holds and transformers 5 writes.
// transformers 5 holds the experts of a layer fused, and import reads that layout too:
//   model.layers.L.mlp.gate.weight            [E, d]          the router
//   model.layers.L.mlp.experts.gate_up_proj   [E, 2 * ff, d]  expert e's w1 rows, then its w3 rows
//   model.layers.L.mlp.experts.down_proj      [E, d, ff]      expert e's w2
// Export writes float32 values bit for bit, or bfloat16 when every value is exactly one, so export
// followed by import gives back the same config and the same weights exactly. moeref's own fields
// with no Mixtral key (name, init_seed) travel under a "moeref" object in config.json, which
// transformers keeps as an attribute and otherwise ignores.
#pragma once

#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "ref/io/config.h"
#include "ref/io/hf_config.h"
#include "ref/model/weights.h"

namespace moeref {

// Throws ConfigError naming the first key whose value Mixtral cannot express.
void check_mixtral_compatible(const ModelConfig& config, const std::string& source);

// The per-expert (Hub) name of a moeref tensor.
std::string hf_tensor_name(const std::string& moeref_name);

struct HfExportOptions {
  DType dtype = DType::kF32;     // kF32 or kBF16
  uint64_t max_shard_bytes = 0;  // 0: one model.safetensors
};

// The files export_hf writes besides config.json, each with the Hugging Face names of its
// tensors: one model.safetensors, or, when the tensors exceed max_shard_bytes, shards named
// model-0000i-of-0000n.safetensors filled in canonical order (a shard closes before the tensor
// that would take it past the limit; a tensor larger than the limit has a shard of its own) and
// model.safetensors.index.json. More shards than can be published together (14) is a ConfigError
// asking for a larger shard size.
struct HfShard {
  std::string file;
  std::vector<std::string> tensors;
};
std::vector<HfShard> hf_shards(const ModelConfig& config, const HfExportOptions& options);

// Writes DIR/config.json and the weights (creating DIR), published together (ref/io/atomic_file.h):
// after a failure every file is as it was, never new weights beside an old config. The file of
// the other layout (model.safetensors beside a new index, or an index beside a new
// model.safetensors) is removed once the new files are in place, so the directory holds one
// checkpoint. With dtype kBF16, a value that bfloat16 cannot hold exactly is a ConfigError naming
// the first such tensor, the element and the value, before anything is written.
void export_hf(const ModelConfig& config, const ModelWeights& weights,
               const std::filesystem::path& dir, const HfExportOptions& options = {});

struct ImportedModel {
  ModelConfig config;
  ModelWeights weights;
};

// Reads DIR/config.json (ref/io/hf_config.h) and the weights (ref/io/hf_checkpoint.h: one file or
// shards; F32, F16 or BF16), in either expert layout; one checkpoint uses one layout. Every tensor
// of the config must be present with its shape; the RoPE buffers transformers does not load
// (model.rotary_emb.inv_freq, model.layers.L.self_attn.rotary_emb.inv_freq, and their
// original_inv_freq) are skipped, and any other tensor is refused. Errors name the file and the
// key (config.json) or the tensor; NaN and Inf weights are refused unless non_finite is kAllow
// (ref/model/weights.h).
ImportedModel import_hf(const std::filesystem::path& dir,
                        NonFiniteWeights non_finite = NonFiniteWeights::kRefuse);

}  // namespace moeref
