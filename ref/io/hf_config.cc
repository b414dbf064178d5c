#include "ref/io/hf_config.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>
#include <vector>

#include "ref/io/hf_rope.h"

namespace moeref {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Keys whose value changes nothing moeref computes: token ids other than eos (the forward pass
// takes token ids, never looks them up), training-only settings (dropout, router jitter and the
// auxiliary loss act only in training), what transformers returns or caches, the dtype the
// weights were saved in (each tensor's own dtype is read, and the oracle computes in float32),
// and provenance.
constexpr std::array<std::string_view, 14> kNoEffectKeys = {
    "bos_token_id",         "pad_token_id",         "attention_dropout", "router_jitter_noise",
    "router_aux_loss_coef", "output_router_logits", "use_cache",         "output_attentions",
    "output_hidden_states", "return_dict",          "torch_dtype",       "dtype",
    "transformers_version", "_name_or_path"};

// Keys read into the moeref config (or checked to hold the one value moeref computes).
constexpr std::array<std::string_view, 24> kHonouredKeys = {"model_type",
                                                            "architectures",
                                                            "vocab_size",
                                                            "hidden_size",
                                                            "intermediate_size",
                                                            "num_hidden_layers",
                                                            "num_attention_heads",
                                                            "num_key_value_heads",
                                                            "head_dim",
                                                            "hidden_act",
                                                            "max_position_embeddings",
                                                            "initializer_range",
                                                            "rms_norm_eps",
                                                            "eos_token_id",
                                                            "tie_word_embeddings",
                                                            "sliding_window",
                                                            "num_experts_per_tok",
                                                            "num_local_experts",
                                                            "rope_theta",
                                                            "rope_parameters",
                                                            "rope_scaling",
                                                            "moeref",
                                                            "rope_type",
                                                            "partial_rotary_factor"};

// moeref's config keys as the Hugging Face keys they come from, for messages of
// config_from_json's own rules.
constexpr std::array<std::pair<std::string_view, std::string_view>, 13> kHfNames = {{
    {"d_model", "hidden_size"},
    {"n_layers", "num_hidden_layers"},
    {"n_heads", "num_attention_heads"},
    {"n_kv_heads", "num_key_value_heads"},
    {"norm_eps", "rms_norm_eps"},
    {"n_experts", "num_local_experts"},
    {"top_k", "num_experts_per_tok"},
    {"expert_d_ff", "intermediate_size"},
    {"max_seq_len", "max_position_embeddings"},
    {"init_std", "initializer_range"},
    {"init_seed", "moeref.init_seed"},
    {"vocab_size", "vocab_size"},
    {"head_dim", "head_dim"},
}};

bool is_word_character(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// `text` with every whole word that is a moeref key replaced by its Hugging Face key.
std::string with_hf_names(const std::string& text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    if (!is_word_character(text[i])) {
      out += text[i++];
      continue;
    }
    size_t end = i;
    while (end < text.size() && is_word_character(text[end])) ++end;
    const std::string_view word(text.data() + i, end - i);
    std::string_view replacement = word;
    for (const auto& [moeref_key, hf_key] : kHfNames) {
      if (word == moeref_key) replacement = hf_key;
    }
    out += replacement;
    i = end;
  }
  return out;
}

int64_t integer_value(const json& value, const std::string& key, const std::string& source) {
  if (!value.is_number_integer())
    fail_hf_key(source, key, "expected an integer (" + value.dump() + ")");
  // nlohmann keeps integers past int64 as uint64; get<int64_t> would wrap 2^64 - 1 to -1.
  if (value.is_number_unsigned() &&
      value.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()}) {
    fail_hf_key(source, key, "integer out of the int64 range (" + value.dump() + ")");
  }
  return value.get<int64_t>();
}

int64_t integer_or(const json& hf, const std::string& key, int64_t fallback,
                   const std::string& source) {
  return hf.contains(key) ? integer_value(hf.at(key), key, source) : fallback;
}

double number_value(const json& value, const std::string& key, const std::string& source) {
  if (!value.is_number()) fail_hf_key(source, key, "expected a number (" + value.dump() + ")");
  return value.get<double>();
}

double number_or(const json& hf, const std::string& key, double fallback,
                 const std::string& source) {
  return hf.contains(key) ? number_value(hf.at(key), key, source) : fallback;
}

void require_value(const json& hf, const std::string& key, const json& expected,
                   const std::string& why, const std::string& source) {
  if (hf.contains(key) && hf.at(key) != expected) {
    fail_hf_key(source, key, why + " (" + hf.at(key).dump() + ")");
  }
}

void check_no_effect_key(const std::string& key, const json& value, const std::string& source) {
  const bool token_id = key == "bos_token_id" || key == "pad_token_id";
  bool fits = true;
  if (token_id) {
    fits = value.is_null() || value.is_number_integer() || value.is_array();
  } else if (key == "attention_dropout" || key == "router_jitter_noise" ||
             key == "router_aux_loss_coef") {
    fits = value.is_number();
  } else if (key == "torch_dtype" || key == "dtype") {
    fits = value.is_null() || value.is_string();
  } else if (key == "transformers_version" || key == "_name_or_path") {
    fits = value.is_string();
  } else {
    fits = value.is_boolean();
  }
  if (!fits)
    fail_hf_key(source, key, "has a type transformers does not take (" + value.dump() + ")");
}

// eos_token_id: an integer, null (none) or a list whose first entry is read.
int64_t eos_from(const json& hf, const std::string& source) {
  if (!hf.contains("eos_token_id")) return 2;  // MixtralConfig's default
  const json& eos = hf.at("eos_token_id");
  if (eos.is_null()) return -1;
  if (!eos.is_array()) return integer_value(eos, "eos_token_id", source);
  for (size_t i = 0; i < eos.size(); ++i) {
    integer_value(eos[i], "eos_token_id[" + std::to_string(i) + "]", source);
  }
  return eos.empty() ? -1 : integer_value(eos[0], "eos_token_id[0]", source);
}

}  // namespace

json hf_config_json(const ModelConfig& c) {
  json hf{
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
  write_hf_rope(c, hf);
  return hf;
}

ModelConfig config_from_hf_json(const json& hf, const std::string& source) {
  if (!hf.is_object()) throw ConfigError(source + ": expected a JSON object");
  for (const auto& [key, value] : hf.items()) {
    if (std::find(kNoEffectKeys.begin(), kNoEffectKeys.end(), key) != kNoEffectKeys.end()) {
      check_no_effect_key(key, value, source);
    } else if (std::find(kHonouredKeys.begin(), kHonouredKeys.end(), key) == kHonouredKeys.end()) {
      fail_hf_key(source, key,
                  "not a MixtralConfig key moeref reads; refused rather than ignored (" +
                      value.dump() + ")");
    }
  }
  if (!hf.contains("model_type")) fail_hf_key(source, "model_type", "missing");
  require_value(hf, "model_type", "mixtral", "expected \"mixtral\"", source);
  require_value(hf, "architectures", json::array({"MixtralForCausalLM"}),
                "expected [\"MixtralForCausalLM\"]", source);
  require_value(hf, "hidden_act", "silu", "expected \"silu\"", source);
  require_value(hf, "tie_word_embeddings", false, "must be false (moeref reads an untied lm_head)",
                source);
  if (hf.contains("sliding_window") && !hf.at("sliding_window").is_null()) {
    fail_hf_key(
        source, "sliding_window",
        "sliding-window attention is not supported (" + hf.at("sliding_window").dump() + ")");
  }
  const int64_t n_heads = integer_or(hf, "num_attention_heads", 32, source);
  const int64_t d_model = integer_or(hf, "hidden_size", 4096, source);
  // Checked here, before head_dim may be derived from them by a division.
  if (n_heads < 1)
    fail_hf_key(source, "num_attention_heads",
                "must be at least 1 (" + std::to_string(n_heads) + ")");
  if (d_model < 1)
    fail_hf_key(source, "hidden_size", "must be at least 1 (" + std::to_string(d_model) + ")");
  // MixtralConfig: absent is its default (8), null is num_attention_heads.
  const bool kv_null = hf.contains("num_key_value_heads") && hf.at("num_key_value_heads").is_null();
  const int64_t n_kv_heads =
      kv_null ? n_heads : integer_or(hf, "num_key_value_heads", kHfDefaultKeyValueHeads, source);
  const bool head_dim_given = hf.contains("head_dim") && !hf.at("head_dim").is_null();
  const int64_t max_positions = integer_or(hf, "max_position_embeddings", 4096 * 32, source);
  const HfRope rope = rope_from_hf_json(hf, max_positions, source);
  json moeref_json = {
      {"name", fs::path(source).parent_path().filename().string()},
      {"vocab_size", integer_or(hf, "vocab_size", 32000, source)},
      {"d_model", d_model},
      {"n_layers", integer_or(hf, "num_hidden_layers", 32, source)},
      {"n_heads", n_heads},
      {"n_kv_heads", n_kv_heads},
      {"head_dim",
       head_dim_given ? integer_value(hf.at("head_dim"), "head_dim", source) : d_model / n_heads},
      {"norm", "rmsnorm"},
      {"norm_eps", number_or(hf, "rms_norm_eps", 1e-5, source)},
      {"positions", "rope"},
      {"rope_theta", rope.rope_theta},
      {"ffn_activation", "swiglu"},
      {"n_experts", integer_or(hf, "num_local_experts", 8, source)},
      {"top_k", integer_or(hf, "num_experts_per_tok", 2, source)},
      {"router_renormalize", true},
      {"capacity_factor", 0.0},
      {"moe_every", 1},
      {"expert_d_ff", integer_or(hf, "intermediate_size", 14336, source)},
      {"max_seq_len", rope.max_seq_len.value_or(max_positions)},
      {"tied_embeddings", false},
      {"init_std", number_or(hf, "initializer_range", 0.02, source)},
      {"eos_token_id", eos_from(hf, source)},
  };
  if (!rope.rope_scaling.is_null()) moeref_json["rope_scaling"] = rope.rope_scaling;
  if (hf.contains("moeref")) {
    const json& extra = hf.at("moeref");
    if (!extra.is_object())
      fail_hf_key(source, "moeref", "expected an object (" + extra.dump() + ")");
    for (const auto& [key, value] : extra.items()) {
      if (key != "name" && key != "init_seed" && key != "max_seq_len") {
        fail_hf_key(source, "moeref." + key, "unknown key (" + value.dump() + ")");
      }
      moeref_json[key] = value;
    }
  }
  try {
    return config_from_json(moeref_json, source);
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    if (message.rfind(source, 0) != 0) throw;
    throw ConfigError(source +
                      with_hf_rope_names(with_hf_names(message.substr(source.size())), rope));
  }
}

void fail_hf_key(const std::string& source, const std::string& key, const std::string& problem) {
  throw ConfigError(source + ": key \"" + key + "\": " + problem);
}

}  // namespace moeref
