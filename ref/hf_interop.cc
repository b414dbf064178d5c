#include "ref/hf_interop.h"

#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>

#include "ref/atomic_file.h"
#include "ref/json_text.h"

namespace moeref {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& key,
                       const std::string& problem) {
  throw ConfigError(source + ": key \"" + key + "\": " + problem);
}

const json& require(const json& object, const std::string& key, const std::string& source) {
  if (!object.contains(key)) fail(source, key, "missing");
  return object.at(key);
}

int64_t require_int(const json& object, const std::string& key, const std::string& source) {
  const json& value = require(object, key, source);
  if (!value.is_number_integer()) fail(source, key, "expected an integer (" + value.dump() + ")");
  // nlohmann keeps integers past int64 as uint64; get<int64_t> would wrap 2^64 - 1 to -1.
  if (value.is_number_unsigned() &&
      value.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()}) {
    fail(source, key, "integer out of the int64 range (" + value.dump() + ")");
  }
  return value.get<int64_t>();
}

double require_number(const json& object, const std::string& key, const std::string& source) {
  const json& value = require(object, key, source);
  if (!value.is_number()) fail(source, key, "expected a number (" + value.dump() + ")");
  return value.get<double>();
}

void require_string(const json& object, const std::string& key, const std::string& expected,
                    const std::string& source) {
  const json& value = require(object, key, source);
  if (value != expected) fail(source, key, "expected \"" + expected + "\" (" + value.dump() + ")");
}

}  // namespace

void check_mixtral_compatible(const ModelConfig& c, const std::string& source) {
  auto refuse = [&](const std::string& key, const std::string& value, const std::string& why) {
    fail(source, key, why + " for a Mixtral export (" + value + ")");
  };
  if (c.norm != NormKind::kRmsNorm) refuse("norm", "layernorm", "must be rmsnorm");
  if (c.positions != PositionKind::kRope) refuse("positions", "learned", "must be rope");
  if (c.ffn_activation != Activation::kSwiGlu) refuse("ffn_activation", "gelu", "must be swiglu");
  if (c.moe_every != 1) refuse("moe_every", std::to_string(c.moe_every), "must be 1");
  if (c.capacity_factor != 0.0) {
    refuse("capacity_factor", std::to_string(c.capacity_factor), "must be 0 (dropless)");
  }
  if (!c.router_renormalize) refuse("router_renormalize", "false", "must be true");
  if (c.tied_embeddings) refuse("tied_embeddings", "true", "must be false");
  if (c.vision) refuse("vision", "a vision section", "must be absent (Mixtral is text-only)");
}

std::string hf_tensor_name(const std::string& name) {
  static const std::vector<std::pair<std::regex, std::string>> rules = {
      {std::regex(R"(^embed\.weight$)"), "model.embed_tokens.weight"},
      {std::regex(R"(^layers\.(\d+)\.attn_norm\.)"), "model.layers.$1.input_layernorm."},
      {std::regex(R"(^layers\.(\d+)\.attn\.)"), "model.layers.$1.self_attn."},
      {std::regex(R"(^layers\.(\d+)\.ffn_norm\.)"), "model.layers.$1.post_attention_layernorm."},
      {std::regex(R"(^layers\.(\d+)\.moe\.router\.)"), "model.layers.$1.block_sparse_moe.gate."},
      {std::regex(R"(^layers\.(\d+)\.moe\.experts\.(\d+)\.gate_proj\.)"),
       "model.layers.$1.block_sparse_moe.experts.$2.w1."},
      {std::regex(R"(^layers\.(\d+)\.moe\.experts\.(\d+)\.up_proj\.)"),
       "model.layers.$1.block_sparse_moe.experts.$2.w3."},
      {std::regex(R"(^layers\.(\d+)\.moe\.experts\.(\d+)\.down_proj\.)"),
       "model.layers.$1.block_sparse_moe.experts.$2.w2."},
      {std::regex(R"(^final_norm\.)"), "model.norm."},
  };
  for (const auto& [pattern, replacement] : rules) {
    if (std::regex_search(name, pattern)) return std::regex_replace(name, pattern, replacement);
  }
  return name;  // lm_head.weight keeps its name
}

json hf_config_json(const ModelConfig& c) {
  return json{
      {"architectures", {"MixtralForCausalLM"}},
      {"model_type", "mixtral"},
      {"hidden_size", c.d_model},
      {"intermediate_size", c.expert_d_ff},
      {"num_hidden_layers", c.n_layers},
      {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads},
      {"head_dim", c.head_dim},
      {"num_local_experts", c.n_experts},
      {"num_experts_per_tok", c.top_k},
      {"rms_norm_eps", c.norm_eps},
      {"rope_theta", c.rope_theta},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_seq_len},
      {"tie_word_embeddings", false},
      {"hidden_act", "silu"},
      {"sliding_window", nullptr},
      {"attention_dropout", 0.0},
      {"router_jitter_noise", 0.0},
      {"initializer_range", c.init_std},
      {"eos_token_id", c.eos_token_id >= 0 ? json(c.eos_token_id) : json(nullptr)},
      {"torch_dtype", "float32"},
      {"moeref", {{"name", c.name}, {"init_seed", c.init_seed}}},
  };
}

ModelConfig config_from_hf_json(const json& hf, const std::string& source) {
  if (!hf.is_object()) throw ConfigError(source + ": expected a JSON object");
  require_string(hf, "model_type", "mixtral", source);
  require_string(hf, "hidden_act", "silu", source);
  if (hf.contains("tie_word_embeddings") && hf.at("tie_word_embeddings") != false) {
    fail(source, "tie_word_embeddings",
         "must be false (" + hf.at("tie_word_embeddings").dump() + ")");
  }
  if (hf.contains("sliding_window") && !hf.at("sliding_window").is_null()) {
    fail(source, "sliding_window",
         "sliding-window attention is not supported (" + hf.at("sliding_window").dump() + ")");
  }
  const int64_t n_heads = require_int(hf, "num_attention_heads", source);
  const int64_t d_model = require_int(hf, "hidden_size", source);
  // Checked here, before head_dim may be derived from them by a division.
  if (n_heads < 1)
    fail(source, "num_attention_heads", "must be at least 1 (" + std::to_string(n_heads) + ")");
  if (d_model < 1)
    fail(source, "hidden_size", "must be at least 1 (" + std::to_string(d_model) + ")");
  double rope_theta = 0.0;
  if (hf.contains("rope_parameters")) {
    rope_theta =
        require_number(hf.at("rope_parameters"), "rope_theta", source + ": rope_parameters");
  } else {
    rope_theta = require_number(hf, "rope_theta", source);
  }
  json moeref_json = {
      {"name", fs::path(source).parent_path().filename().string()},
      {"vocab_size", require_int(hf, "vocab_size", source)},
      {"d_model", d_model},
      {"n_layers", require_int(hf, "num_hidden_layers", source)},
      {"n_heads", n_heads},
      // transformers' MixtralConfig reads a null num_key_value_heads as num_attention_heads; an
      // absent one would be its class default (8), which is not guessed here: absent is missing.
      {"n_kv_heads", require(hf, "num_key_value_heads", source).is_null()
                         ? n_heads
                         : require_int(hf, "num_key_value_heads", source)},
      {"head_dim", hf.contains("head_dim") && !hf.at("head_dim").is_null()
                       ? require_int(hf, "head_dim", source)
                       : d_model / n_heads},
      {"norm", "rmsnorm"},
      {"norm_eps", require_number(hf, "rms_norm_eps", source)},
      {"positions", "rope"},
      {"rope_theta", rope_theta},
      {"ffn_activation", "swiglu"},
      {"n_experts", require_int(hf, "num_local_experts", source)},
      {"top_k", require_int(hf, "num_experts_per_tok", source)},
      {"router_renormalize", true},
      {"capacity_factor", 0.0},
      {"moe_every", 1},
      {"expert_d_ff", require_int(hf, "intermediate_size", source)},
      {"max_seq_len", require_int(hf, "max_position_embeddings", source)},
      {"tied_embeddings", false},
  };
  if (hf.contains("initializer_range")) {
    moeref_json["init_std"] = require_number(hf, "initializer_range", source);
  }
  if (hf.contains("eos_token_id") && !hf.at("eos_token_id").is_null()) {
    moeref_json["eos_token_id"] = require_int(hf, "eos_token_id", source);
  }
  if (hf.contains("moeref")) {
    const json& extra = hf.at("moeref");
    if (!extra.is_object()) fail(source, "moeref", "expected an object (" + extra.dump() + ")");
    for (const char* key : {"name", "init_seed"}) {
      if (extra.contains(key)) moeref_json[key] = extra.at(key);
    }
  }
  return config_from_json(moeref_json, source);
}

void export_hf(const ModelConfig& config, const ModelWeights& weights, const fs::path& dir) {
  check_mixtral_compatible(config, config.name);
  fs::create_directories(dir);
  std::vector<StagedFile> files;
  files.push_back(stage_safetensors(dir / "model.safetensors",
                                    weight_views(config, weights, hf_tensor_name),
                                    {{"format", "pt"}}));
  const std::string config_text = hf_config_json(config).dump(2) + "\n";
  files.push_back(StagedFile(dir / "config.json", [&](std::ostream& out) { out << config_text; }));
  publish_together(files);
}

ImportedModel import_hf(const fs::path& dir, NonFiniteWeights non_finite) {
  const fs::path config_path = dir / "config.json";
  std::ifstream in(config_path, std::ios::binary);
  if (!in) throw ConfigError(config_path.string() + ": cannot open");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw ConfigError(config_path.string() + ": cannot read");
  json hf;
  try {
    hf = parse_json_text(text);
  } catch (const JsonTextError& e) {
    throw ConfigError(config_path.string() + ": " + e.what());
  }
  ImportedModel model;
  model.config = config_from_hf_json(hf, config_path.string());
  model.weights =
      load_weights(model.config, dir / "model.safetensors", {hf_tensor_name, non_finite});
  return model;
}

}  // namespace moeref
