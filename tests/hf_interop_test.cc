// Hugging Face interop (ref/io/hf_interop.h): the tensor-name map, the Mixtral config.json, and the
// export/import round trip.
//
// Expected names and config.json values are written out by hand from transformers'
// modeling_mixtral.py (the MixtralForCausalLM layout on the Hub) and configs/tiny.json; the round
// trip is checked bit for bit against the original weights and logits.

#include "ref/io/hf_interop.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ref/io/config.h"
#include "ref/io/safetensors.h"
#include "ref/model/model.h"
#include "ref/model/weights.h"
#include "tests/test_support.h"

namespace moeref {
namespace {

using test_support::TempDir;

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

const fs::path kSourceDir = MOEREF_SOURCE_DIR;

template <class E>
std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected exception not thrown";
  return "";
}

// "key" with its quotes, as error messages name keys.
std::string quoted_key(const char* key) {
  std::string quoted = "\"";
  quoted += key;
  quoted += '"';
  return quoted;
}

ModelConfig tiny_config() { return load_config(kSourceDir / "configs/tiny.json"); }

json tiny_json() {
  std::ifstream in(kSourceDir / "configs/tiny.json");
  return json::parse(in);
}

// ------------------------------------------------------------------------------------------------
// Tensor names.

struct NameCase {
  const char* moeref;
  const char* hf;
};

// The Hub's MixtralForCausalLM keys (w1 = gate, w3 = up, w2 = down).
const NameCase kNameCases[] = {
    {"embed.weight", "model.embed_tokens.weight"},
    {"layers.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
    {"layers.0.attn.q_proj.weight", "model.layers.0.self_attn.q_proj.weight"},
    {"layers.0.attn.k_proj.weight", "model.layers.0.self_attn.k_proj.weight"},
    {"layers.0.attn.v_proj.weight", "model.layers.0.self_attn.v_proj.weight"},
    {"layers.0.attn.o_proj.weight", "model.layers.0.self_attn.o_proj.weight"},
    {"layers.0.ffn_norm.weight", "model.layers.0.post_attention_layernorm.weight"},
    {"layers.0.moe.router.weight", "model.layers.0.block_sparse_moe.gate.weight"},
    {"layers.0.moe.experts.0.gate_proj.weight",
     "model.layers.0.block_sparse_moe.experts.0.w1.weight"},
    {"layers.0.moe.experts.0.up_proj.weight",
     "model.layers.0.block_sparse_moe.experts.0.w3.weight"},
    {"layers.0.moe.experts.0.down_proj.weight",
     "model.layers.0.block_sparse_moe.experts.0.w2.weight"},
    // Multi-digit layer and expert numbers.
    {"layers.31.attn.o_proj.weight", "model.layers.31.self_attn.o_proj.weight"},
    {"layers.119.ffn_norm.weight", "model.layers.119.post_attention_layernorm.weight"},
    {"layers.17.moe.router.weight", "model.layers.17.block_sparse_moe.gate.weight"},
    {"layers.12.moe.experts.15.gate_proj.weight",
     "model.layers.12.block_sparse_moe.experts.15.w1.weight"},
    {"layers.3.moe.experts.7.up_proj.weight",
     "model.layers.3.block_sparse_moe.experts.7.w3.weight"},
    {"layers.100.moe.experts.10.down_proj.weight",
     "model.layers.100.block_sparse_moe.experts.10.w2.weight"},
    {"final_norm.weight", "model.norm.weight"},
    {"lm_head.weight", "lm_head.weight"},
};

TEST(HfTensorName, MapsEveryMoerefNameToTheHubName) {
  for (const NameCase& c : kNameCases) {
    EXPECT_EQ(hf_tensor_name(c.moeref), c.hf) << c.moeref;
  }
}

// The Hub key set of a tiny Mixtral, built by hand from the layout (2 layers, 16 experts).
std::set<std::string> hub_names(int64_t n_layers, int64_t n_experts) {
  std::set<std::string> names = {"model.embed_tokens.weight", "model.norm.weight",
                                 "lm_head.weight"};
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string layer = "model.layers." + std::to_string(l) + ".";
    for (const char* suffix :
         {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
          "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
          "block_sparse_moe.gate.weight"}) {
      names.insert(layer + suffix);
    }
    for (int64_t e = 0; e < n_experts; ++e) {
      for (const char* w : {"w1", "w2", "w3"}) {
        names.insert(layer + "block_sparse_moe.experts." + std::to_string(e) + "." + w + ".weight");
      }
    }
  }
  return names;
}

TEST(HfTensorName, TinyWeightSpecsMapOntoExactlyTheHubKeys) {
  std::set<std::string> mapped;
  for (const WeightSpec& spec : weight_specs(tiny_config()))
    mapped.insert(hf_tensor_name(spec.name));
  const std::set<std::string> expected = hub_names(2, 16);
  EXPECT_EQ(expected.size(), 3u + 2u * (7u + 16u * 3u));  // 113
  EXPECT_EQ(mapped, expected);
}

// ------------------------------------------------------------------------------------------------
// Export and import.

// Every tensor of a ModelWeights with a label, walked from the struct (not from weight_specs).
std::vector<std::pair<std::string, const Tensor*>> all_tensors(const ModelWeights& w) {
  std::vector<std::pair<std::string, const Tensor*>> out = {{"embed", &w.embed},
                                                            {"pos_embed", &w.pos_embed},
                                                            {"final_norm", &w.final_norm},
                                                            {"final_norm_bias", &w.final_norm_bias},
                                                            {"lm_head", &w.lm_head}};
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& layer = w.layers[l];
    const std::string p = "layers." + std::to_string(l) + ".";
    for (const auto& [name, tensor] : std::vector<std::pair<std::string, const Tensor*>>{
             {"attn_norm", &layer.attn_norm},
             {"attn_norm_bias", &layer.attn_norm_bias},
             {"q_proj", &layer.q_proj},
             {"k_proj", &layer.k_proj},
             {"v_proj", &layer.v_proj},
             {"o_proj", &layer.o_proj},
             {"ffn_norm", &layer.ffn_norm},
             {"ffn_norm_bias", &layer.ffn_norm_bias},
             {"router", &layer.router},
             {"dense.gate", &layer.dense.gate_proj},
             {"dense.up", &layer.dense.up_proj},
             {"dense.down", &layer.dense.down_proj}}) {
      out.emplace_back(p + name, tensor);
    }
    for (size_t e = 0; e < layer.experts.size(); ++e) {
      const std::string q = p + "experts." + std::to_string(e) + ".";
      out.emplace_back(q + "gate", &layer.experts[e].gate_proj);
      out.emplace_back(q + "up", &layer.experts[e].up_proj);
      out.emplace_back(q + "down", &layer.experts[e].down_proj);
    }
  }
  return out;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  // Bytes, not floats: bitwise, and well defined for empty tensors (memcmp of null is not).
  return a.shape() == b.shape() &&
         std::ranges::equal(std::as_bytes(a.values()), std::as_bytes(b.values()));
}

bool bitwise_equal(const TensorRecord& record, const Tensor& tensor) {
  return record.dtype == DType::kF32 && record.shape == tensor.shape() &&
         std::ranges::equal(std::span<const std::byte>(record.bytes),
                            std::as_bytes(tensor.values()));
}

class HfExportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    config_ = new ModelConfig(tiny_config());
    weights_ = new ModelWeights(init_weights(*config_));
  }
  static void TearDownTestSuite() {
    delete config_;
    delete weights_;
  }
  fs::path exported() {
    const fs::path dir = temp_.path() / "hf";
    export_hf(*config_, *weights_, dir);
    return dir;
  }

  static ModelConfig* config_;
  static ModelWeights* weights_;
  TempDir temp_;
};

ModelConfig* HfExportTest::config_ = nullptr;
ModelWeights* HfExportTest::weights_ = nullptr;

TEST_F(HfExportTest, RoundTripGivesTheSameConfigWeightsAndLogits) {
  const ImportedModel imported = import_hf(exported());
  EXPECT_EQ(imported.config, *config_);

  const auto original = all_tensors(*weights_);
  const auto round_trip = all_tensors(imported.weights);
  ASSERT_EQ(original.size(), round_trip.size());
  int64_t non_empty = 0;
  for (size_t i = 0; i < original.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(*original[i].second, *round_trip[i].second)) << original[i].first;
    non_empty += !original[i].second->empty();
  }
  EXPECT_EQ(non_empty, 113);  // every tensor of tiny was compared, not just empty ones

  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 100, 255};
  const Model a(*config_, *weights_);
  const Model b(imported.config, imported.weights);
  KvCache cache_a = a.new_cache();
  KvCache cache_b = b.new_cache();
  const Tensor logits_a = a.forward(prompt, cache_a).logits;
  const Tensor logits_b = b.forward(prompt, cache_b).logits;
  EXPECT_EQ(logits_a.shape(), (std::vector<int64_t>{7, 256}));
  EXPECT_TRUE(bitwise_equal(logits_a, logits_b));
}

TEST_F(HfExportTest, ConfigJsonHasTheMixtralKeys) {
  std::ifstream in(exported() / "config.json");
  const json hf = json::parse(in);
  // Values from configs/tiny.json, by hand.
  EXPECT_EQ(hf.at("architectures"), json::array({"MixtralForCausalLM"}));
  EXPECT_EQ(hf.at("model_type"), "mixtral");
  EXPECT_EQ(hf.at("hidden_act"), "silu");
  EXPECT_EQ(hf.at("hidden_size"), 64);
  EXPECT_EQ(hf.at("intermediate_size"), 128);
  EXPECT_EQ(hf.at("num_hidden_layers"), 2);
  EXPECT_EQ(hf.at("num_attention_heads"), 4);
  EXPECT_EQ(hf.at("num_key_value_heads"), 1);
  EXPECT_EQ(hf.at("head_dim"), 16);
  EXPECT_EQ(hf.at("num_local_experts"), 16);
  EXPECT_EQ(hf.at("num_experts_per_tok"), 2);
  EXPECT_EQ(hf.at("rms_norm_eps"), 1e-5);
  EXPECT_EQ(hf.at("rope_theta"), 10000.0);
  EXPECT_EQ(hf.at("vocab_size"), 256);
  EXPECT_EQ(hf.at("max_position_embeddings"), 128);
  EXPECT_EQ(hf.at("tie_word_embeddings"), false);
  // Mixtral's sliding window must be off (null), or transformers would mask differently.
  EXPECT_TRUE(hf.contains("sliding_window"));
  EXPECT_TRUE(hf.at("sliding_window").is_null());
  // Every key must be ints where transformers expects ints.
  for (const char* key :
       {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "num_local_experts", "num_experts_per_tok", "vocab_size",
        "max_position_embeddings"}) {
    EXPECT_TRUE(hf.at(key).is_number_integer()) << key;
  }
}

TEST_F(HfExportTest, SafetensorsHoldsExactlyTheHubKeysWithTheRightTensors) {
  const SafetensorsFile file = SafetensorsFile::read(exported() / "model.safetensors");
  std::set<std::string> names;
  for (const TensorRecord& record : file.tensors()) names.insert(record.name);
  EXPECT_EQ(file.tensors().size(), names.size());  // no duplicates
  EXPECT_EQ(names, hub_names(2, 16));

  // Each Hub tensor carries the moeref tensor the layout says (w1 = gate, w3 = up, w2 = down),
  // bit for bit, with Hugging Face's [out, in] shapes.
  const LayerWeights& l1 = weights_->layers[1];
  const std::vector<std::pair<std::string, const Tensor*>> expected = {
      {"model.embed_tokens.weight", &weights_->embed},
      {"model.norm.weight", &weights_->final_norm},
      {"lm_head.weight", &weights_->lm_head},
      {"model.layers.1.input_layernorm.weight", &l1.attn_norm},
      {"model.layers.1.post_attention_layernorm.weight", &l1.ffn_norm},
      {"model.layers.1.self_attn.q_proj.weight", &l1.q_proj},
      {"model.layers.1.self_attn.k_proj.weight", &l1.k_proj},
      {"model.layers.1.self_attn.v_proj.weight", &l1.v_proj},
      {"model.layers.1.self_attn.o_proj.weight", &l1.o_proj},
      {"model.layers.1.block_sparse_moe.gate.weight", &l1.router},
      {"model.layers.1.block_sparse_moe.experts.13.w1.weight", &l1.experts[13].gate_proj},
      {"model.layers.1.block_sparse_moe.experts.13.w3.weight", &l1.experts[13].up_proj},
      {"model.layers.1.block_sparse_moe.experts.13.w2.weight", &l1.experts[13].down_proj},
  };
  for (const auto& [name, tensor] : expected) {
    EXPECT_TRUE(bitwise_equal(file.at(name), *tensor)) << name;
  }
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"model.embed_tokens.weight", {256, 64}},
      {"lm_head.weight", {256, 64}},
      {"model.norm.weight", {64}},
      {"model.layers.0.self_attn.q_proj.weight", {64, 64}},  // [H * hd, d] = [4 * 16, 64]
      {"model.layers.0.self_attn.k_proj.weight", {16, 64}},  // [G * hd, d] = [1 * 16, 64]
      {"model.layers.0.self_attn.v_proj.weight", {16, 64}},
      {"model.layers.0.self_attn.o_proj.weight", {64, 64}},
      {"model.layers.0.block_sparse_moe.gate.weight", {16, 64}},  // [E, d]
      {"model.layers.0.block_sparse_moe.experts.0.w1.weight", {128, 64}},
      {"model.layers.0.block_sparse_moe.experts.0.w3.weight", {128, 64}},
      {"model.layers.0.block_sparse_moe.experts.0.w2.weight", {64, 128}},
  };
  for (const auto& [name, shape] : shapes) EXPECT_EQ(file.at(name).shape, shape) << name;
}

// ------------------------------------------------------------------------------------------------
// Configs Mixtral cannot express.

struct IncompatibleCase {
  const char* key;
  json changes;  // merged into configs/tiny.json; the result is a valid moeref config
};

const std::vector<IncompatibleCase>& incompatible_cases() {
  static const std::vector<IncompatibleCase> cases = {
      {"norm", {{"norm", "layernorm"}}},
      {"positions", {{"positions", "learned"}}},
      {"ffn_activation", {{"ffn_activation", "gelu"}}},
      {"moe_every", {{"moe_every", 2}, {"dense_d_ff", 128}}},
      {"capacity_factor", {{"capacity_factor", 0.5}}},
      {"router_renormalize", {{"router_renormalize", false}}},
      {"tied_embeddings", {{"tied_embeddings", true}}},
  };
  return cases;
}

TEST(HfCompatibility, TinyIsCompatible) {
  EXPECT_NO_THROW(check_mixtral_compatible(tiny_config(), "tiny"));
}

TEST(HfCompatibility, RefusesEachIncompatibleKeyByName) {
  for (const IncompatibleCase& c : incompatible_cases()) {
    SCOPED_TRACE(c.key);
    json j = tiny_json();
    j.merge_patch(c.changes);
    const ModelConfig config = config_from_json(j, "case");
    const std::string quoted = quoted_key(c.key);
    EXPECT_THAT(message_of<ConfigError>([&] { check_mixtral_compatible(config, "case"); }),
                HasSubstr(quoted));
    // export_hf refuses too, before creating anything.
    TempDir temp;
    const fs::path dir = temp.path() / "out";
    const ModelWeights weights = init_weights(config);
    EXPECT_THAT(message_of<ConfigError>([&] { export_hf(config, weights, dir); }),
                HasSubstr(quoted));
    EXPECT_FALSE(fs::exists(dir));
  }
}

// ------------------------------------------------------------------------------------------------
// config_from_hf_json.

// A Hub-style config.json for tiny, written by hand (moeref's extras under "moeref").
json hand_hf_config() {
  return json::parse(R"({
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_act": "silu",
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16,
    "num_local_experts": 16, "num_experts_per_tok": 2, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "vocab_size": 256, "max_position_embeddings": 128,
    "tie_word_embeddings": false, "sliding_window": null, "initializer_range": 0.08,
    "eos_token_id": null, "torch_dtype": "float32", "attention_dropout": 0.0,
    "moeref": {"name": "tiny", "init_seed": 1}})");
}

TEST(ConfigFromHfJson, HandWrittenHubConfigGivesTiny) {
  EXPECT_EQ(config_from_hf_json(hand_hf_config(), "hub/config.json"), tiny_config());
  json with_eos = hand_hf_config();
  with_eos["eos_token_id"] = 2;
  EXPECT_EQ(config_from_hf_json(with_eos, "hub/config.json").eos_token_id, 2);
}

// transformers' MixtralConfig: a null num_key_value_heads is num_attention_heads (multi-head
// attention), and a missing or null head_dim is hidden_size / num_attention_heads.
TEST(ConfigFromHfJson, NullKeyValueHeadsAndHeadDimDefaultAsTransformersDoes) {
  json hf = hand_hf_config();
  hf["num_key_value_heads"] = nullptr;
  hf["head_dim"] = nullptr;
  const ModelConfig config = config_from_hf_json(hf, "hub/config.json");
  EXPECT_EQ(config.n_kv_heads, 4);
  EXPECT_EQ(config.head_dim, 16);

  hf.erase("head_dim");
  EXPECT_EQ(config_from_hf_json(hf, "hub/config.json").head_dim, 16);
}

// transformers' MixtralConfig defaults (configuration_mixtral.py), written out by hand: a
// config.json with nothing but model_type is Mixtral-8x7B's shape.
TEST(ConfigFromHfJson, AbsentKeysTakeMixtralConfigDefaults) {
  const ModelConfig c =
      config_from_hf_json(json::parse(R"({"model_type": "mixtral"})"), "hub/config.json");
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.d_model, 4096);
  EXPECT_EQ(c.expert_d_ff, 14336);
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_EQ(c.n_heads, 32);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_seq_len, 4096 * 32);
  EXPECT_EQ(c.init_std, 0.02);
  EXPECT_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.eos_token_id, 2);
  EXPECT_EQ(c.n_experts, 8);
  EXPECT_EQ(c.top_k, 2);
}

// The config.json transformers 5.17 wrote for a tiny MixtralConfig with save_pretrained (BF16,
// sharded), copied key for key: every key is read or known to change nothing.
TEST(ConfigFromHfJson, Transformers5SavePretrainedConfigIsRead) {
  const ModelConfig c = config_from_hf_json(json::parse(R"({
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
    "dtype": "bfloat16", "eos_token_id": 2, "head_dim": null, "hidden_act": "silu",
    "hidden_size": 16, "initializer_range": 0.02, "intermediate_size": 24,
    "max_position_embeddings": 64, "model_type": "mixtral", "num_attention_heads": 4,
    "num_experts_per_tok": 2, "num_hidden_layers": 2, "num_key_value_heads": 2,
    "num_local_experts": 4, "output_router_logits": false, "pad_token_id": null,
    "rms_norm_eps": 1e-05, "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
    "router_aux_loss_coef": 0.001, "router_jitter_noise": 0.0, "sliding_window": null,
    "tie_word_embeddings": false, "transformers_version": "5.17.0", "use_cache": true,
    "vocab_size": 64})"),
                                            "ck/config.json");
  EXPECT_EQ(c.d_model, 16);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.eos_token_id, 2);
}

TEST(ConfigFromHfJson, AcceptedForms) {
  struct Case {
    const char* what;
    std::function<void(json&)> mutate;
    std::function<void(const ModelConfig&)> check;
  };
  const std::vector<Case> cases = {
      {"eos list: the first",
       [](json& j) {
         j["eos_token_id"] = {7, 9};
       },
       [](const ModelConfig& c) { EXPECT_EQ(c.eos_token_id, 7); }},
      {"eos empty list: none", [](json& j) { j["eos_token_id"] = json::array(); },
       [](const ModelConfig& c) { EXPECT_EQ(c.eos_token_id, -1); }},
      {"rope_parameters alone",
       [](json& j) {
         j.erase("rope_theta");
         j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5e5}};
       },
       [](const ModelConfig& c) { EXPECT_EQ(c.rope_theta, 5e5); }},
      {"no theta anywhere: 1e6", [](json& j) { j.erase("rope_theta"); },
       [](const ModelConfig& c) { EXPECT_EQ(c.rope_theta, 1e6); }},
      {"both thetas equal",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e4}};
       },
       [](const ModelConfig& c) { EXPECT_EQ(c.rope_theta, 10000.0); }},
      {"rope_scaling null", [](json& j) { j["rope_scaling"] = nullptr; },
       [](const ModelConfig& c) { EXPECT_EQ(c.rope_theta, 10000.0); }},
      {"legacy default rope_scaling",
       [](json& j) {
         j["rope_scaling"] = {{"type", "default"}};
       },
       [](const ModelConfig& c) { EXPECT_EQ(c.rope_theta, 10000.0); }},
      {"partial_rotary_factor 1", [](json& j) { j["partial_rotary_factor"] = 1.0; },
       [](const ModelConfig& c) { EXPECT_EQ(c.head_dim, 16); }},
      {"rope_scaling and rope_parameters that agree",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 1e4}};
         j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
       },
       [](const ModelConfig& c) {
         EXPECT_EQ(c.rope_scaling, (RopeScaling{.kind = RopeScalingKind::kLinear, .factor = 2.0}));
       }},
      {"keys with no effect",
       [](json& j) {
         j["bos_token_id"] = {1, 2};
         j["pad_token_id"] = nullptr;
         j["torch_dtype"] = "bfloat16";
         j["use_cache"] = false;
         j["router_aux_loss_coef"] = 0.02;
         j["attention_dropout"] = 0.1;
       },
       [](const ModelConfig& c) { EXPECT_EQ(c, tiny_config()); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    json j = hand_hf_config();
    c.mutate(j);
    c.check(config_from_hf_json(j, "hub/config.json"));
  }
}

// Each scaling kind in the spellings transformers 4 and 5 write, read with transformers' defaults
// (modeling_rope_utils.py): original_max_position_embeddings is max_position_embeddings (128
// here), null or 0 betas are 32 and 1, a null attention_factor or mscale is unset, a null yarn
// factor is max_position_embeddings / original_max_position_embeddings. Dynamic scales past
// max_position_embeddings, and moeref's context is factor times it.
TEST(ConfigFromHfJson, RopeScalingOfEveryKindIsRead) {
  struct Case {
    const char* what;
    std::function<void(json&)> mutate;
    RopeScaling expected;
    int64_t max_seq_len;
  };
  const std::vector<Case> cases = {
      {"transformers 4 linear",
       [](json& j) {
         j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
       },
       {.kind = RopeScalingKind::kLinear, .factor = 2.0},
       128},
      {"transformers 5 linear",
       [](json& j) {
         j.erase("rope_theta");
         j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 1e4}};
       },
       {.kind = RopeScalingKind::kLinear, .factor = 2.0},
       128},
      {"dynamic",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 2.5}};
       },
       {.kind = RopeScalingKind::kDynamic, .factor = 2.5, .original_max_position_embeddings = 128},
       320},
      {"dynamic with moeref's own context",
       [](json& j) {
         j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
         j["moeref"]["max_seq_len"] = 200;
       },
       {.kind = RopeScalingKind::kDynamic, .factor = 2.0, .original_max_position_embeddings = 128},
       200},
      {"yarn with transformers' defaults",
       [](json& j) {
         j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
       },
       {.kind = RopeScalingKind::kYarn, .factor = 4.0, .original_max_position_embeddings = 128},
       128},
      {"yarn with nulls and zero betas",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "yarn"},
                                 {"factor", 4.0},
                                 {"original_max_position_embeddings", 32},
                                 {"attention_factor", nullptr},
                                 {"beta_fast", 0},
                                 {"beta_slow", nullptr},
                                 {"mscale", nullptr},
                                 {"mscale_all_dim", nullptr}};
       },
       {.kind = RopeScalingKind::kYarn, .factor = 4.0, .original_max_position_embeddings = 32},
       128},
      {"yarn with every parameter",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "yarn"},
                                 {"factor", 4.0},
                                 {"original_max_position_embeddings", 32},
                                 {"attention_factor", 1.25},
                                 {"beta_fast", 16},
                                 {"beta_slow", 2},
                                 {"mscale", 0.707},
                                 {"mscale_all_dim", 0.5},
                                 {"truncate", false},
                                 {"partial_rotary_factor", 1.0}};
       },
       {.kind = RopeScalingKind::kYarn,
        .factor = 4.0,
        .original_max_position_embeddings = 32,
        .attention_factor = 1.25,
        .beta_fast = 16.0,
        .beta_slow = 2.0,
        .mscale = 0.707,
        .mscale_all_dim = 0.5,
        .truncate = false},
       128},
      {"yarn with a null factor: DeepSeek-V3's ratio",
       [](json& j) {
         j["rope_parameters"] = {
             {"rope_type", "yarn"}, {"factor", nullptr}, {"original_max_position_embeddings", 32}};
       },
       {.kind = RopeScalingKind::kYarn, .factor = 4.0, .original_max_position_embeddings = 32},
       128},
      {"llama3",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "llama3"},
                                 {"factor", 8.0},
                                 {"low_freq_factor", 1.0},
                                 {"high_freq_factor", 4.0},
                                 {"original_max_position_embeddings", 16}};
       },
       {.kind = RopeScalingKind::kLlama3,
        .factor = 8.0,
        .original_max_position_embeddings = 16,
        .low_freq_factor = 1.0,
        .high_freq_factor = 4.0},
       128},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    json j = hand_hf_config();
    c.mutate(j);
    const ModelConfig config = config_from_hf_json(j, "hub/config.json");
    EXPECT_EQ(config.rope_scaling, c.expected);
    EXPECT_EQ(config.rope_theta, 1e4);
    EXPECT_EQ(config.max_seq_len, c.max_seq_len);
  }
}

// export-hf writes each kind in transformers 5's spelling, which reads back equal.
TEST(ConfigFromHfJson, RopeScalingRoundTripsThroughTheHfConfig) {
  const std::vector<std::pair<RopeScaling, int64_t>> kinds = {
      {{.kind = RopeScalingKind::kLinear, .factor = 2.0}, 128},
      {{.kind = RopeScalingKind::kDynamic, .factor = 2.0, .original_max_position_embeddings = 48},
       100},
      {{.kind = RopeScalingKind::kYarn,
        .factor = 4.0,
        .original_max_position_embeddings = 32,
        .attention_factor = 1.1,
        .beta_fast = 16.0,
        .beta_slow = 2.0,
        .mscale = 1.0,
        .mscale_all_dim = 0.5,
        .truncate = false},
       128},
      {{.kind = RopeScalingKind::kYarn, .factor = 4.0, .original_max_position_embeddings = 32},
       128},
      {{.kind = RopeScalingKind::kLlama3,
        .factor = 8.0,
        .original_max_position_embeddings = 16,
        .low_freq_factor = 1.0,
        .high_freq_factor = 4.0},
       128},
  };
  for (const auto& [scaling, max_seq_len] : kinds) {
    SCOPED_TRACE(rope_scaling_name(scaling.kind));
    ModelConfig c = tiny_config();
    c.rope_scaling = scaling;
    c.max_seq_len = max_seq_len;
    const json hf = hf_config_json(c);
    EXPECT_EQ(hf.at("rope_parameters").at("rope_type"), rope_scaling_name(scaling.kind));
    EXPECT_EQ(hf.at("rope_parameters").at("rope_theta"), c.rope_theta);
    EXPECT_FALSE(hf.contains("rope_scaling"));
    EXPECT_EQ(config_from_hf_json(hf, "tiny/config.json"), c);
  }
  // Dynamic scales past max_position_embeddings in transformers: that is where it is written.
  ModelConfig dynamic = tiny_config();
  dynamic.rope_scaling = kinds[1].first;
  EXPECT_EQ(hf_config_json(dynamic).at("max_position_embeddings"), 48);
  EXPECT_FALSE(hf_config_json(tiny_config()).contains("rope_parameters"));
}

// Every refusal: the message names the file, the Hugging Face key and the value, and never a
// moeref key the file does not have.
TEST(ConfigFromHfJson, ErrorsNameTheHuggingFaceKeyAndValue) {
  struct Case {
    const char* what;
    const char* key;
    const char* value;
    std::function<void(json&)> mutate;
  };
  const std::vector<Case> cases = {
      {"missing model_type", "model_type", "missing", [](json& j) { j.erase("model_type"); }},
      {"hidden_size a string", "hidden_size", "\"64\"", [](json& j) { j["hidden_size"] = "64"; }},
      {"vocab_size a float", "vocab_size", "256.5", [](json& j) { j["vocab_size"] = 256.5; }},
      {"vocab_size null", "vocab_size", "null", [](json& j) { j["vocab_size"] = nullptr; }},
      {"rms_norm_eps a string", "rms_norm_eps", "\"1e-5\"",
       [](json& j) { j["rms_norm_eps"] = "1e-5"; }},
      {"rms_norm_eps 0", "rms_norm_eps", "0", [](json& j) { j["rms_norm_eps"] = 0.0; }},
      // Absent, it is MixtralConfig's 8, which does not divide tiny's 4 heads.
      {"missing num_key_value_heads", "num_key_value_heads", "(8)",
       [](json& j) { j.erase("num_key_value_heads"); }},
      {"num_key_value_heads 3", "num_key_value_heads", "(3)",
       [](json& j) { j["num_key_value_heads"] = 3; }},
      {"num_key_value_heads 3 beside unscaled rope_parameters", "num_key_value_heads", "(3)",
       [](json& j) {
         j["num_key_value_heads"] = 3;
         j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e4}};
       }},
      {"num_key_value_heads 3 beside dynamic scaling", "num_key_value_heads", "(3)",
       [](json& j) {
         j["num_key_value_heads"] = 3;
         j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
       }},
      {"num_key_value_heads a string", "num_key_value_heads", "\"1\"",
       [](json& j) { j["num_key_value_heads"] = "1"; }},
      {"num_experts_per_tok above the experts", "num_experts_per_tok", "(17)",
       [](json& j) { j["num_experts_per_tok"] = 17; }},
      {"num_local_experts 0", "num_local_experts", "0",
       [](json& j) { j["num_local_experts"] = 0; }},
      {"intermediate_size -1", "intermediate_size", "-1",
       [](json& j) { j["intermediate_size"] = -1; }},
      {"max_position_embeddings 0", "max_position_embeddings", "0",
       [](json& j) { j["max_position_embeddings"] = 0; }},
      {"num_hidden_layers 0", "num_hidden_layers", "0",
       [](json& j) { j["num_hidden_layers"] = 0; }},
      {"initializer_range -1", "initializer_range", "-1",
       [](json& j) { j["initializer_range"] = -1.0; }},
      {"odd head_dim", "head_dim", "15", [](json& j) { j["head_dim"] = 15; }},
      {"model_type llama", "model_type", "\"llama\"", [](json& j) { j["model_type"] = "llama"; }},
      {"another architecture", "architectures", "MixtralForSequenceClassification",
       [](json& j) { j["architectures"] = {"MixtralForSequenceClassification"}; }},
      {"hidden_act gelu", "hidden_act", "\"gelu\"", [](json& j) { j["hidden_act"] = "gelu"; }},
      {"sliding_window set", "sliding_window", "4096", [](json& j) { j["sliding_window"] = 4096; }},
      {"tied embeddings", "tie_word_embeddings", "true",
       [](json& j) { j["tie_word_embeddings"] = true; }},
      {"eos past the vocabulary", "eos_token_id", "256", [](json& j) { j["eos_token_id"] = 256; }},
      {"eos list with a string", "eos_token_id[1]", "\"x\"",
       [](json& j) {
         j["eos_token_id"] = {1, "x"};
       }},
      {"eos a string", "eos_token_id", "\"2\"", [](json& j) { j["eos_token_id"] = "2"; }},
      {"a rope_type moeref does not compute", "rope_parameters.rope_type", "\"longrope\"",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "longrope"}, {"factor", 2.0}};
       }},
      {"a legacy type moeref does not compute", "rope_scaling.type", "\"su\"",
       [](json& j) {
         j["rope_scaling"] = {{"type", "su"}};
       }},
      {"rope_type not a string", "rope_parameters.rope_type", "3",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", 3}};
       }},
      {"type and rope_type disagree", "rope_scaling.type", "\"linear\"",
       [](json& j) {
         j["rope_scaling"] = {{"rope_type", "yarn"}, {"type", "linear"}, {"factor", 2.0}};
       }},
      {"linear without factor", "rope_parameters.factor", "missing",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "linear"}};
       }},
      {"llama3 without low_freq_factor", "rope_parameters.low_freq_factor", "missing",
       [](json& j) {
         j["rope_parameters"] = {
             {"rope_type", "llama3"}, {"factor", 8.0}, {"high_freq_factor", 4.0}};
       }},
      {"a yarn key under dynamic", "rope_parameters.beta_fast", "32",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 2.0}, {"beta_fast", 32}};
       }},
      // transformers' dynamic scaling reads max_position_embeddings, never this key.
      {"original_max_position_embeddings under dynamic",
       "rope_parameters.original_max_position_embeddings", "64",
       [](json& j) {
         j["rope_parameters"] = {
             {"rope_type", "dynamic"}, {"factor", 2.0}, {"original_max_position_embeddings", 64}};
       }},
      {"linear factor below 1", "rope_scaling.factor", "0.5",
       [](json& j) {
         j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 0.5}};
       }},
      {"dynamic factor a string", "rope_parameters.factor", "\"2\"",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", "2"}};
       }},
      {"dynamic context past int64", "rope_parameters.factor", "1e+300",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 1e300}};
       }},
      {"yarn original_max_position_embeddings a float",
       "rope_parameters.original_max_position_embeddings", "32.5",
       [](json& j) {
         j["rope_parameters"] = {
             {"rope_type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32.5}};
       }},
      {"yarn beta_fast below beta_slow", "rope_parameters.beta_fast", "0.5",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"beta_fast", 0.5}};
       }},
      {"llama3 high_freq_factor not above low_freq_factor", "rope_parameters.high_freq_factor",
       "(1.0)",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "llama3"},
                                 {"factor", 8.0},
                                 {"low_freq_factor", 1.0},
                                 {"high_freq_factor", 1.0}};
       }},
      {"dynamic with head_dim 2", "rope_parameters.rope_type", "head_dim (2) must be at least 4",
       [](json& j) {
         j["head_dim"] = 2;
         j["rope_parameters"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
       }},
      {"partial rotary inside rope_parameters", "rope_parameters.partial_rotary_factor", "0.25",
       [](json& j) {
         j["rope_parameters"] = {
             {"rope_type", "linear"}, {"factor", 2.0}, {"partial_rotary_factor", 0.25}};
       }},
      {"rope_scaling and rope_parameters disagree", "rope_scaling", "\"factor\":2.0",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 4.0}};
         j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
       }},
      {"a scaling factor under default", "rope_parameters.factor", "2.0",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "default"}, {"factor", 2.0}};
       }},
      {"rope_parameters a number", "rope_parameters", "5",
       [](json& j) { j["rope_parameters"] = 5; }},
      {"two different thetas", "rope_parameters.rope_theta", "500000",
       [](json& j) {
         j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5e5}};
       }},
      {"rope_theta a string", "rope_theta", "\"1e4\"", [](json& j) { j["rope_theta"] = "1e4"; }},
      {"rope_type at the top level", "rope_type", "\"linear\"",
       [](json& j) { j["rope_type"] = "linear"; }},
      {"partial rotary", "partial_rotary_factor", "0.5",
       [](json& j) { j["partial_rotary_factor"] = 0.5; }},
      {"an unknown key", "quantization_config", "\"quant_method\"",
       [](json& j) {
         j["quantization_config"] = {{"quant_method", "gptq"}};
       }},
      {"attention_bias, which Mixtral does not have", "attention_bias", "true",
       [](json& j) { j["attention_bias"] = true; }},
      {"an unknown moeref key", "moeref.seed", "3", [](json& j) { j["moeref"]["seed"] = 3; }},
      {"bos_token_id a string", "bos_token_id", "\"one\"",
       [](json& j) { j["bos_token_id"] = "one"; }},
      {"use_cache a number", "use_cache", "1", [](json& j) { j["use_cache"] = 1; }},
      // Without head_dim, head_dim is hidden_size / num_attention_heads: checked before dividing.
      {"no head_dim, 0 heads", "num_attention_heads", "0",
       [](json& j) {
         j.erase("head_dim");
         j["num_attention_heads"] = 0;
       }},
      {"no head_dim, -1 heads of the most negative hidden_size", "num_attention_heads", "-1",
       [](json& j) {
         j.erase("head_dim");
         j["num_attention_heads"] = -1;
         j["hidden_size"] = std::numeric_limits<int64_t>::min();
       }},
      {"no head_dim, hidden_size 0", "hidden_size", "0",
       [](json& j) {
         j.erase("head_dim");
         j["hidden_size"] = 0;
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    json j = hand_hf_config();
    c.mutate(j);
    const std::string message =
        message_of<ConfigError>([&] { config_from_hf_json(j, "hub/config.json"); });
    EXPECT_THAT(message, HasSubstr("hub/config.json: key " + quoted_key(c.key)));
    EXPECT_THAT(message, HasSubstr(c.value));
    for (const char* moeref_key : {"n_kv_heads", "top_k", "n_heads", "d_model", "n_experts",
                                   "expert_d_ff", "max_seq_len", "n_layers", "init_std"}) {
      // As a word: "n_heads" is also the end of "num_attention_heads".
      EXPECT_THAT(message, ::testing::Not(HasSubstr(std::string(" ") + moeref_key)));
      EXPECT_THAT(message, ::testing::Not(HasSubstr(quoted_key(moeref_key))));
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Importing a directory whose safetensors does not match its config.

class HfImportErrorTest : public HfExportTest {
 protected:
  // Exports tiny, rewrites model.safetensors through `edit`, and returns the import error.
  std::string import_error(const std::function<void(std::vector<TensorRecord>&)>& edit) {
    const fs::path dir = exported();
    const fs::path file = dir / "model.safetensors";
    std::vector<TensorRecord> records = SafetensorsFile::read(file).tensors();
    edit(records);
    write_safetensors(file, records);
    path_ = file.string();
    return message_of<SafetensorsError>([&] { import_hf(dir); });
  }
  static void erase(std::vector<TensorRecord>& records, const std::string& name) {
    std::erase_if(records, [&](const TensorRecord& r) { return r.name == name; });
  }
  std::string path_;
};

TEST_F(HfImportErrorTest, MissingTensorIsNamed) {
  const std::string name = "model.layers.1.block_sparse_moe.experts.7.w3.weight";
  const std::string message = import_error([&](auto& records) { erase(records, name); });
  EXPECT_THAT(message, HasSubstr(path_));
  EXPECT_THAT(message, HasSubstr(name));
}

TEST_F(HfImportErrorTest, ExtraTensorIsNamed) {
  // A tensor Mixtral does not have (a q_norm, as Qwen3 has): never silently ignored.
  const std::string name = "model.layers.0.self_attn.q_norm.weight";
  const std::vector<float> values(8, 1.0f);
  const std::string message =
      import_error([&](auto& records) { records.push_back(make_f32_record(name, {8}, values)); });
  EXPECT_THAT(message, HasSubstr(path_));
  EXPECT_THAT(message, HasSubstr(name));
}

TEST_F(HfImportErrorTest, WrongShapeIsNamed) {
  const std::string name = "model.layers.0.block_sparse_moe.gate.weight";
  const std::vector<float> values(8 * 64, 0.5f);
  const std::string message = import_error([&](auto& records) {
    for (TensorRecord& r : records) {
      if (r.name == name) r = make_f32_record(name, {8, 64}, values);
    }
  });
  EXPECT_THAT(message, HasSubstr(path_));
  EXPECT_THAT(message, HasSubstr(name));
  EXPECT_THAT(message, HasSubstr("[8, 64]"));
  EXPECT_THAT(message, HasSubstr("[16, 64]"));
}

TEST_F(HfImportErrorTest, WrongDtypeIsNamed) {
  const std::string name = "lm_head.weight";
  const std::string message = import_error([&](auto& records) {
    for (TensorRecord& r : records) {
      if (r.name == name) {
        r.dtype = DType::kI32;  // F32, F16 and BF16 are read
      }
    }
  });
  EXPECT_THAT(message, HasSubstr(path_));
  EXPECT_THAT(message, HasSubstr(name));
  EXPECT_THAT(message, HasSubstr("I32"));
}

TEST_F(HfImportErrorTest, NonFiniteWeightIsNamedWithItsIndexUnlessAllowed) {
  const std::string name = "model.layers.1.self_attn.k_proj.weight";  // [16, 64]
  const std::string message = import_error([&](auto& records) {
    for (TensorRecord& r : records) {
      if (r.name != name) continue;
      std::vector<float> values = r.to_f32();
      values[64 * 3 + 5] = std::numeric_limits<float>::infinity();
      r = make_f32_record(name, r.shape, values);
    }
  });
  EXPECT_THAT(message, HasSubstr(path_));
  EXPECT_THAT(message, HasSubstr(name));
  EXPECT_THAT(message, HasSubstr("+Inf at index 197 (element [3, 5] of [16, 64])"));
  const ImportedModel allowed = import_hf(fs::path(path_).parent_path(), NonFiniteWeights::kAllow);
  EXPECT_EQ(allowed.weights.layers[1].k_proj.data()[197], std::numeric_limits<float>::infinity());
}

TEST(HfImport, NumberOverflowInConfigJsonNamesFileKeyAndValue) {
  TempDir temp;
  json hf = hand_hf_config();
  std::string text = hf.dump();
  const std::string theta = "\"rope_theta\":10000.0";
  ASSERT_NE(text.find(theta), std::string::npos);
  text.replace(text.find(theta), theta.size(), "\"rope_theta\":1e999");
  std::ofstream(temp.path() / "config.json") << text;
  const std::string message = message_of<ConfigError>([&] { import_hf(temp.path()); });
  EXPECT_THAT(message, HasSubstr((temp.path() / "config.json").string()));
  EXPECT_THAT(message, HasSubstr("key \"rope_theta\""));
  EXPECT_THAT(message, HasSubstr("1e999"));
}

TEST(HfImport, MissingOrMalformedConfigJsonIsNamed) {
  TempDir temp;
  EXPECT_THAT(message_of<ConfigError>([&] { import_hf(temp.path()); }),
              HasSubstr((temp.path() / "config.json").string()));
  std::ofstream(temp.path() / "config.json") << "{\"model_type\": ";
  EXPECT_THAT(message_of<ConfigError>([&] { import_hf(temp.path()); }),
              HasSubstr((temp.path() / "config.json").string()));
}

}  // namespace
}  // namespace moeref
