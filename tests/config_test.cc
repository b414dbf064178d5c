// ModelConfig: the presets, the JSON round trip, and one case per validation rule.

#include "ref/io/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace moeref {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const fs::path kSourceDir = MOEREF_SOURCE_DIR;

// A valid config naming every key (the tiny preset's values), which the bad cases mutate.
json base_config() {
  return json::parse(R"({
    "name": "base", "vocab_size": 256, "d_model": 64, "n_layers": 2, "n_heads": 4,
    "n_kv_heads": 1, "head_dim": 16, "norm": "rmsnorm", "norm_eps": 1e-5, "positions": "rope",
    "rope_theta": 10000.0, "ffn_activation": "swiglu", "n_experts": 16, "top_k": 2,
    "router_renormalize": true, "capacity_factor": 0.0, "moe_every": 1, "expert_d_ff": 128,
    "dense_d_ff": 0, "max_seq_len": 128, "tied_embeddings": false, "init_seed": 1,
    "init_std": 0.08, "eos_token_id": -1})");
}

// base_config() with a vision section naming every vision key.
json vision_config() {
  json config = base_config();
  config["vision"] = json::parse(R"({
    "image_size": 32, "channels": 3, "patch_size": 8, "width": 64, "layers": 2, "heads": 4,
    "mlp_size": 128, "norm_eps": 1e-5, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
    "resampler_latents": 0, "resampler_layers": 0, "cross_attention_layers": [1],
    "cross_attention_heads": 4, "cross_attention_kv_heads": 2, "cross_attention_d_ff": 128,
    "cross_attention_qk_norm": false, "gate_init": 0.5})");
  return config;
}

// Only the keys docs/config.md calls required.
const std::vector<std::string> kRequiredKeys = {"vocab_size",  "d_model",    "n_layers",  "n_heads",
                                                "n_kv_heads",  "head_dim",   "n_experts", "top_k",
                                                "expert_d_ff", "max_seq_len"};

json required_only() {
  const json base = base_config();
  json config = base;
  for (const auto& [key, value] : base.items()) {
    if (std::find(kRequiredKeys.begin(), kRequiredKeys.end(), key) == kRequiredKeys.end()) {
      config.erase(key);
    }
  }
  return config;
}

std::string message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError thrown";
  return "";
}

TEST(ConfigPresets, TinyHasTheDocumentedValues) {
  ModelConfig expected;
  expected.name = "tiny";
  expected.vocab_size = 256;
  expected.d_model = 64;
  expected.n_layers = 2;
  expected.n_heads = 4;
  expected.n_kv_heads = 1;
  expected.head_dim = 16;
  expected.norm = NormKind::kRmsNorm;
  expected.norm_eps = 1e-5;
  expected.positions = PositionKind::kRope;
  expected.rope_theta = 10000.0;
  expected.ffn_activation = Activation::kSwiGlu;
  expected.n_experts = 16;
  expected.top_k = 2;
  expected.router_renormalize = true;
  expected.capacity_factor = 0.0;
  expected.moe_every = 1;
  expected.expert_d_ff = 128;
  expected.dense_d_ff = 0;
  expected.max_seq_len = 128;
  expected.tied_embeddings = false;
  expected.init_seed = 1;
  expected.init_std = 0.08;
  expected.eos_token_id = -1;
  EXPECT_EQ(load_config(kSourceDir / "configs/tiny.json"), expected);
}

TEST(ConfigPresets, SmallHasTheDocumentedValues) {
  const ModelConfig c = load_config(kSourceDir / "configs/small.json");
  EXPECT_EQ(c.name, "small");
  EXPECT_EQ(c.d_model, 512);
  EXPECT_EQ(c.n_layers, 8);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.n_experts, 16);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.expert_d_ff, 1024);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.max_seq_len, 2048);
  EXPECT_EQ(c.ffn_activation, Activation::kSwiGlu);
  EXPECT_EQ(c.init_std, 0.02);
  EXPECT_EQ(c.init_seed, 1u);
}

TEST(ConfigPresets, Gpt4RumoredMatchesTheReportedShape) {
  const ModelConfig c = load_config(kSourceDir / "configs/gpt4-rumored.json");
  EXPECT_EQ(c.name, "gpt4-rumored");
  EXPECT_EQ(c.d_model, 15360);
  EXPECT_EQ(c.n_layers, 120);
  EXPECT_EQ(c.n_heads, 120);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.n_experts, 16);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.ffn_activation, Activation::kGelu);
  EXPECT_EQ(c.expert_d_ff, 30720);
  EXPECT_EQ(c.vocab_size, 100256);
  EXPECT_EQ(c.max_seq_len, 32768);
  EXPECT_EQ(c.n_moe_layers(), 120);
  // docs/config.md's arithmetic: one expert's two matrices over all layers ~113B parameters.
  EXPECT_EQ(2 * c.expert_d_ff * c.d_model * c.n_layers, int64_t{113'246'208'000});
}

// Presets name every key, in canonical form: what config_to_json writes back is the file.
TEST(ConfigPresets, FilesHoldEveryKeyAndReadBackEqual) {
  for (const char* name : {"tiny", "small", "gpt4-rumored", "tiny-vision"}) {
    SCOPED_TRACE(name);
    const fs::path path = kSourceDir / "configs" / (std::string(name) + ".json");
    std::ifstream in(path);
    const json file = json::parse(in);
    const ModelConfig config = load_config(path);
    EXPECT_EQ(config_to_json(config), file);
    EXPECT_EQ(config_from_json(config_to_json(config), "round trip"), config);
  }
}

TEST(ConfigJson, ToJsonWritesEveryKey) {
  const json written = config_to_json(config_from_json(base_config(), "test.json"));
  EXPECT_EQ(written.size(), base_config().size());
  const json base = base_config();
  for (const auto& [key, value] : base.items()) EXPECT_TRUE(written.contains(key)) << key;
}

TEST(ConfigJson, RoundTripsNonDefaultValues) {
  ModelConfig c;
  c.name = "every field set \xc3\xa9";
  c.vocab_size = 1000;
  c.d_model = 96;
  c.n_layers = 5;
  c.n_heads = 6;
  c.n_kv_heads = 3;
  c.head_dim = 17;
  c.norm = NormKind::kLayerNorm;
  c.norm_eps = 0.1 + 0.2;
  c.positions = PositionKind::kLearned;
  c.rope_theta = 500000.0;
  c.ffn_activation = Activation::kGelu;
  c.n_experts = 4;
  c.top_k = 4;
  c.router_renormalize = false;
  c.capacity_factor = 1.25;
  c.moe_every = 2;
  c.expert_d_ff = 33;
  c.dense_d_ff = 130;
  c.max_seq_len = 77;
  c.tied_embeddings = true;
  c.init_seed = std::numeric_limits<uint64_t>::max();
  c.init_std = 1.0 / 3.0;
  c.eos_token_id = 999;
  EXPECT_EQ(config_from_json(config_to_json(c), "round trip"), c);
  // Through text as well: the doubles must survive printing.
  EXPECT_EQ(config_from_json(json::parse(config_to_json(c).dump()), "round trip"), c);
}

// Every scaling kind with every parameter it reads set away from its default.
TEST(ConfigJson, RopeScalingRoundTripsForEveryKind) {
  const std::vector<RopeScaling> kinds = {
      {.kind = RopeScalingKind::kLinear, .factor = 2.5},
      {.kind = RopeScalingKind::kDynamic, .factor = 3.0, .original_max_position_embeddings = 48},
      {.kind = RopeScalingKind::kYarn,
       .factor = 4.0,
       .original_max_position_embeddings = 64,
       .attention_factor = 1.25,
       .beta_fast = 16.0,
       .beta_slow = 0.5,
       .mscale = 0.707,
       .mscale_all_dim = 1.0 / 3.0,
       .truncate = false},
      {.kind = RopeScalingKind::kYarn, .factor = 1.0, .original_max_position_embeddings = 1},
      {.kind = RopeScalingKind::kLlama3,
       .factor = 8.0,
       .original_max_position_embeddings = 8192,
       .low_freq_factor = 0.5,
       .high_freq_factor = 4.5},
  };
  for (const RopeScaling& scaling : kinds) {
    SCOPED_TRACE(rope_scaling_name(scaling.kind));
    ModelConfig c = config_from_json(base_config(), "base");
    c.rope_scaling = scaling;
    const json written = config_to_json(c);
    EXPECT_EQ(written.at("rope_scaling").at("type"), rope_scaling_name(scaling.kind));
    EXPECT_EQ(config_from_json(written, "round trip"), c);
    EXPECT_EQ(config_from_json(json::parse(written.dump()), "round trip"), c);
  }
}

// The defaults of the optional yarn keys are transformers': betas 32 and 1, truncated, no
// attention_factor or mscale.
TEST(ConfigJson, YarnOptionalKeysTakeTransformersDefaults) {
  json j = base_config();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32}};
  const RopeScaling r = config_from_json(j, "test.json").rope_scaling;
  EXPECT_EQ(r.kind, RopeScalingKind::kYarn);
  EXPECT_EQ(r.beta_fast, 32.0);
  EXPECT_EQ(r.beta_slow, 1.0);
  EXPECT_TRUE(r.truncate);
  EXPECT_FALSE(r.attention_factor.has_value());
  EXPECT_EQ(r.mscale, 0.0);
  EXPECT_EQ(r.mscale_all_dim, 0.0);
  j["rope_scaling"] = {{"type", "default"}};
  EXPECT_EQ(config_from_json(j, "test.json").rope_scaling, RopeScaling{});
}

TEST(ConfigJson, OptionalKeysTakeTheStructDefaults) {
  const ModelConfig c = config_from_json(required_only(), "test.json");
  const ModelConfig defaults;
  EXPECT_EQ(c.name, "");
  EXPECT_EQ(c.norm, defaults.norm);
  EXPECT_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.positions, PositionKind::kRope);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.ffn_activation, Activation::kSwiGlu);
  EXPECT_TRUE(c.router_renormalize);
  EXPECT_EQ(c.capacity_factor, 0.0);
  EXPECT_EQ(c.moe_every, 1);
  EXPECT_EQ(c.dense_d_ff, 0);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ(c.init_seed, 0u);
  EXPECT_EQ(c.init_std, 0.02);
  EXPECT_EQ(c.eos_token_id, -1);
}

// Configs at the edges of the rules, which must load.
TEST(ConfigJson, AcceptsBoundaryValues) {
  const std::vector<std::pair<const char*, std::function<void(json&)>>> cases = {
      {"odd head_dim with learned positions",
       [](json& j) {
         j["positions"] = "learned";
         j["head_dim"] = 15;
       }},
      {"rope_theta present with learned positions", [](json& j) { j["positions"] = "learned"; }},
      {"top_k equal to n_experts", [](json& j) { j["top_k"] = 16; }},
      {"multi-head attention", [](json& j) { j["n_kv_heads"] = 4; }},
      {"moe_every equal to n_layers",
       [](json& j) {
         j["moe_every"] = 2;
         j["dense_d_ff"] = 96;
       }},
      {"init_std 0", [](json& j) { j["init_std"] = 0; }},
      {"integer for a double key", [](json& j) { j["norm_eps"] = 1; }},
      {"largest init_seed", [](json& j) { j["init_seed"] = UINT64_MAX; }},
      {"eos_token_id last token", [](json& j) { j["eos_token_id"] = 255; }},
      {"empty name", [](json& j) { j["name"] = ""; }},
  };
  for (const auto& [description, mutate] : cases) {
    json config = base_config();
    mutate(config);
    EXPECT_NO_THROW(config_from_json(config, "test.json")) << description;
  }
}

TEST(ConfigJson, EqualityComparesEveryField) {
  const ModelConfig base = config_from_json(base_config(), "test.json");
  const std::vector<std::function<void(ModelConfig&)>> changes = {
      [](ModelConfig& c) { c.name = "other"; },
      [](ModelConfig& c) { c.vocab_size += 1; },
      [](ModelConfig& c) { c.d_model += 1; },
      [](ModelConfig& c) { c.n_layers += 1; },
      [](ModelConfig& c) { c.n_heads += 1; },
      [](ModelConfig& c) { c.n_kv_heads += 1; },
      [](ModelConfig& c) { c.head_dim += 1; },
      [](ModelConfig& c) { c.norm = NormKind::kLayerNorm; },
      [](ModelConfig& c) { c.norm_eps *= 2; },
      [](ModelConfig& c) { c.positions = PositionKind::kLearned; },
      [](ModelConfig& c) { c.rope_theta *= 2; },
      [](ModelConfig& c) { c.ffn_activation = Activation::kGelu; },
      [](ModelConfig& c) { c.n_experts += 1; },
      [](ModelConfig& c) { c.top_k += 1; },
      [](ModelConfig& c) { c.router_renormalize = !c.router_renormalize; },
      [](ModelConfig& c) { c.capacity_factor += 1; },
      [](ModelConfig& c) { c.moe_every += 1; },
      [](ModelConfig& c) { c.expert_d_ff += 1; },
      [](ModelConfig& c) { c.dense_d_ff += 1; },
      [](ModelConfig& c) { c.max_seq_len += 1; },
      [](ModelConfig& c) { c.tied_embeddings = !c.tied_embeddings; },
      [](ModelConfig& c) { c.init_seed += 1; },
      [](ModelConfig& c) { c.init_std *= 2; },
      [](ModelConfig& c) { c.eos_token_id += 1; },
  };
  EXPECT_EQ(changes.size(), base_config().size());
  EXPECT_TRUE(base == base);
  for (size_t i = 0; i < changes.size(); ++i) {
    ModelConfig changed = base;
    changes[i](changed);
    EXPECT_FALSE(changed == base) << "change " << i;
  }
}

TEST(ConfigJson, RopeScalingEqualityComparesEveryField) {
  const std::vector<std::function<void(RopeScaling&)>> changes = {
      [](RopeScaling& r) { r.kind = RopeScalingKind::kLinear; },
      [](RopeScaling& r) { r.factor *= 2; },
      [](RopeScaling& r) { r.original_max_position_embeddings += 1; },
      [](RopeScaling& r) { r.attention_factor = 1.0; },
      [](RopeScaling& r) { r.beta_fast *= 2; },
      [](RopeScaling& r) { r.beta_slow *= 2; },
      [](RopeScaling& r) { r.mscale += 1; },
      [](RopeScaling& r) { r.mscale_all_dim += 1; },
      [](RopeScaling& r) { r.truncate = !r.truncate; },
      [](RopeScaling& r) { r.low_freq_factor += 1; },
      [](RopeScaling& r) { r.high_freq_factor += 1; },
  };
  const RopeScaling base;
  for (size_t i = 0; i < changes.size(); ++i) {
    RopeScaling changed = base;
    changes[i](changed);
    EXPECT_FALSE(changed == base) << "change " << i;
    ModelConfig a = config_from_json(base_config(), "test.json");
    ModelConfig b = a;
    b.rope_scaling = changed;
    EXPECT_FALSE(a == b) << "change " << i;
  }
}

TEST(ConfigJson, RejectsAConfigThatIsNotAnObject) {
  for (const json& not_object : {json::array({1, 2}), json("tiny"), json(3), json(nullptr)}) {
    const std::string message = message_of([&] { config_from_json(not_object, "test.json"); });
    EXPECT_EQ(message.rfind("test.json: a config must be a JSON object", 0), 0u) << message;
    EXPECT_NE(message.find(not_object.dump()), std::string::npos) << message;
  }
}

// One bad config per validation rule, in the style of llama.cpp's case tables.
struct BadConfigCase {
  std::string description;
  std::function<void(json&)> mutate;  // applied to base_config()
  std::string key;                    // the message reads `test.json: key "<key>": ...`
  std::string expected;               // what is wrong
  std::string value;                  // the message ends with ` (<value>)`; empty: no value
};

void PrintTo(const BadConfigCase& bad, std::ostream* out) { *out << bad.description; }

std::vector<BadConfigCase> bad_config_cases() {
  const int64_t two_to_the_56 = int64_t{1} << 56;
  const int64_t two_to_the_58 = int64_t{1} << 58;
  const int64_t two_to_the_62 = int64_t{1} << 62;
  std::vector<BadConfigCase> cases = {
      // Keys.
      {"misspelt key", [](json& j) { j["d_modle"] = 64; }, "d_modle",
       "unknown key; did you mean \"d_model\"?", "64"},
      {"unknown key", [](json& j) { j["flash_attention"] = true; }, "flash_attention",
       "unknown key; docs/config.md lists the keys", "true"},
      {"dense_d_ff missing with a dense layer",
       [](json& j) {
         j["moe_every"] = 2;
         j.erase("dense_d_ff");
       },
       "dense_d_ff",
       "required key is missing (layers are dense where (l + 1) % moe_every != 0, moe_every = 2)",
       ""},
      // JSON types.
      {"string for an integer", [](json& j) { j["d_model"] = "64"; }, "d_model",
       "expected an integer, got a string", "\"64\""},
      {"fraction for an integer", [](json& j) { j["d_model"] = 64.5; }, "d_model",
       "expected an integer, got a floating-point number", "64.5"},
      {"whole float for an integer", [](json& j) { j["n_layers"] = 2.0; }, "n_layers",
       "expected an integer, got a floating-point number", "2.0"},
      {"bool for an integer", [](json& j) { j["n_heads"] = true; }, "n_heads",
       "expected an integer, got a boolean", "true"},
      {"null for an integer", [](json& j) { j["moe_every"] = nullptr; }, "moe_every",
       "expected an integer, got null", "null"},
      {"array for an integer", [](json& j) { j["top_k"] = json::array({2}); }, "top_k",
       "expected an integer, got an array", "[2]"},
      {"integer above int64", [](json& j) { j["vocab_size"] = uint64_t{1} << 63; }, "vocab_size",
       "integer out of the int64 range", "9223372036854775808"},
      {"integer above uint64 (read as a double)",
       [](json& j) { j["eos_token_id"] = json::parse("100000000000000000000"); }, "eos_token_id",
       "integer out of the int64 range", "1e+20"},
      {"negative integer below int64 (read as a double)",
       [](json& j) { j["eos_token_id"] = json::parse("-10000000000000000000"); }, "eos_token_id",
       "integer out of the int64 range", "-1e+19"},
      {"bool for a number", [](json& j) { j["norm_eps"] = true; }, "norm_eps",
       "expected a number, got a boolean", "true"},
      {"string for a number", [](json& j) { j["init_std"] = "0.02"; }, "init_std",
       "expected a number, got a string", "\"0.02\""},
      {"integer for a bool", [](json& j) { j["router_renormalize"] = 1; }, "router_renormalize",
       "expected true or false, got an integer", "1"},
      {"string for a bool", [](json& j) { j["tied_embeddings"] = "false"; }, "tied_embeddings",
       "expected true or false, got a string", "\"false\""},
      {"name not a string", [](json& j) { j["name"] = 3; }, "name",
       "expected a string, got an integer", "3"},
      {"name an object", [](json& j) { j["name"] = json::object(); }, "name",
       "expected a string, got an object", "{}"},
      // init_seed: unsigned 64-bit.
      {"negative init_seed", [](json& j) { j["init_seed"] = -1; }, "init_seed",
       "must be a non-negative integer (at most 2^64-1)", "-1"},
      {"init_seed above uint64",
       [](json& j) { j["init_seed"] = json::parse("18446744073709551616"); }, "init_seed",
       "integer out of the uint64 range", "1.8446744073709552e+19"},
      {"fractional init_seed", [](json& j) { j["init_seed"] = 1.5; }, "init_seed",
       "expected an integer, got a floating-point number", "1.5"},
      // Enumerations.
      {"unknown norm", [](json& j) { j["norm"] = "batchnorm"; }, "norm",
       "must be one of \"rmsnorm\", \"layernorm\"", "\"batchnorm\""},
      {"norm in capitals", [](json& j) { j["norm"] = "RMSNorm"; }, "norm",
       "must be one of \"rmsnorm\", \"layernorm\"", "\"RMSNorm\""},
      {"unknown positions", [](json& j) { j["positions"] = "alibi"; }, "positions",
       "must be one of \"rope\", \"learned\"", "\"alibi\""},
      {"unknown ffn_activation", [](json& j) { j["ffn_activation"] = "relu"; }, "ffn_activation",
       "must be one of \"swiglu\", \"gelu\"", "\"relu\""},
      {"number for an enum", [](json& j) { j["norm"] = 1; }, "norm",
       "expected a string, got an integer", "1"},
      // Head layout.
      {"n_heads not a multiple of n_kv_heads", [](json& j) { j["n_kv_heads"] = 3; }, "n_kv_heads",
       "n_heads (4) must be a multiple of n_kv_heads", "3"},
      {"more K/V heads than query heads", [](json& j) { j["n_kv_heads"] = 8; }, "n_kv_heads",
       "n_heads (4) must be a multiple of n_kv_heads", "8"},
      {"odd head_dim with rope", [](json& j) { j["head_dim"] = 15; }, "head_dim",
       "must be even with positions \"rope\"", "15"},
      // Experts.
      {"top_k above n_experts", [](json& j) { j["top_k"] = 17; }, "top_k",
       "must be at most n_experts (16)", "17"},
      {"moe_every 0", [](json& j) { j["moe_every"] = 0; }, "moe_every", "must be at least 1", "0"},
      {"moe_every negative", [](json& j) { j["moe_every"] = -2; }, "moe_every",
       "must be at least 1", "-2"},
      {"moe_every above n_layers",
       [](json& j) {
         j["moe_every"] = 3;
         j["dense_d_ff"] = 96;
       },
       "moe_every", "must be at most n_layers (2), else no layer is MoE", "3"},
      {"dense_d_ff 0 with a dense layer", [](json& j) { j["moe_every"] = 2; }, "dense_d_ff",
       "must be positive (layers are dense where", "0"},
      {"dense_d_ff negative with a dense layer",
       [](json& j) {
         j["moe_every"] = 2;
         j["dense_d_ff"] = -5;
       },
       "dense_d_ff", "must be positive (layers are dense where", "-5"},
      {"dense_d_ff set with no dense layer", [](json& j) { j["dense_d_ff"] = 256; }, "dense_d_ff",
       "must be 0 or absent when every layer is MoE (moe_every = 1)", "256"},
      {"dense_d_ff negative with no dense layer", [](json& j) { j["dense_d_ff"] = -1; },
       "dense_d_ff", "must be 0 or absent when every layer is MoE", "-1"},
      // Real-valued keys.
      {"norm_eps 0", [](json& j) { j["norm_eps"] = 0.0; }, "norm_eps",
       "must be a finite number > 0", "0.0"},
      {"norm_eps negative", [](json& j) { j["norm_eps"] = -1e-5; }, "norm_eps",
       "must be a finite number > 0", "-1e-05"},
      {"norm_eps NaN", [](json& j) { j["norm_eps"] = std::nan(""); }, "norm_eps",
       "must be a finite number > 0", "nan"},
      {"norm_eps infinite", [](json& j) { j["norm_eps"] = HUGE_VAL; }, "norm_eps",
       "must be a finite number > 0", "inf"},
      {"rope_theta 0", [](json& j) { j["rope_theta"] = 0; }, "rope_theta",
       "must be a finite number > 0", "0.0"},
      {"rope_theta negative with learned positions",
       [](json& j) {
         j["positions"] = "learned";
         j["rope_theta"] = -1.0;
       },
       "rope_theta", "must be a finite number > 0", "-1.0"},
      {"init_std negative", [](json& j) { j["init_std"] = -0.02; }, "init_std",
       "must be a finite number >= 0", "-0.02"},
      {"init_std infinite", [](json& j) { j["init_std"] = -HUGE_VAL; }, "init_std",
       "must be a finite number >= 0", "-inf"},
      {"capacity_factor negative", [](json& j) { j["capacity_factor"] = -1.0; }, "capacity_factor",
       "must be a finite number >= 0", "-1.0"},
      {"capacity_factor NaN", [](json& j) { j["capacity_factor"] = std::nan(""); },
       "capacity_factor", "must be a finite number >= 0", "nan"},
      // Token ids.
      {"eos_token_id below -1", [](json& j) { j["eos_token_id"] = -2; }, "eos_token_id",
       "must be -1 (none) or a token id below vocab_size (256)", "-2"},
      {"eos_token_id equal to vocab_size", [](json& j) { j["eos_token_id"] = 256; }, "eos_token_id",
       "must be -1 (none) or a token id below vocab_size (256)", "256"},
      // Sizes whose products overflow int64.
      {"embedding overflows", [=](json& j) { j["vocab_size"] = two_to_the_62; }, "vocab_size",
       "vocab_size * d_model = 4611686018427387904 * 64 overflows int64", "4611686018427387904"},
      {"attention overflows", [=](json& j) { j["n_heads"] = two_to_the_56; }, "n_heads",
       "n_heads * head_dim * d_model * n_layers * 2 (q_proj and o_proj)", "72057594037927936"},
      {"experts overflow", [=](json& j) { j["expert_d_ff"] = two_to_the_56; }, "expert_d_ff",
       "expert_d_ff * d_model * n_experts * n_layers * matrices per expert", "72057594037927936"},
      {"dense FFN overflows",
       [=](json& j) {
         j["moe_every"] = 2;
         j["dense_d_ff"] = two_to_the_56;
       },
       "dense_d_ff", "dense_d_ff * d_model * n_layers * matrices per FFN", "72057594037927936"},
      {"KV cache overflows", [=](json& j) { j["max_seq_len"] = two_to_the_58; }, "max_seq_len",
       "max_seq_len * n_layers * n_kv_heads * head_dim * 2 (K and V) = ", "288230376151711744"},
      {"total weight count overflows", [=](json& j) { j["vocab_size"] = two_to_the_56; }, "d_model",
       "the total weight count (embeddings, attention, FFNs) overflows int64", "64"},
  };
  // The rope_scaling section: each kind's own keys, required or range-checked; a key of another
  // kind is refused.
  const std::vector<BadConfigCase> rope_scaling_cases = {
      {"rope_scaling not an object", [](json& j) { j["rope_scaling"] = "yarn"; }, "rope_scaling",
       "expected an object of keys, got a string", "\"yarn\""},
      {"rope_scaling without type",
       [](json& j) {
         j["rope_scaling"] = {{"factor", 2.0}};
       },
       "rope_scaling.type", "required key is missing", ""},
      {"rope_scaling unknown type",
       [](json& j) {
         j["rope_scaling"] = {{"type", "longrope"}};
       },
       "rope_scaling.type",
       "must be one of \"default\", \"linear\", \"dynamic\", \"yarn\", \"llama3\"", "\"longrope\""},
      {"rope_scaling misspelt key",
       [](json& j) {
         j["rope_scaling"] = {{"type", "linear"}, {"facter", 2.0}};
       },
       "rope_scaling.facter", "unknown key; did you mean \"rope_scaling.factor\"?", "2.0"},
      {"rope_scaling a yarn key under linear",
       [](json& j) {
         j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}, {"beta_fast", 16.0}};
       },
       "rope_scaling.beta_fast", "not a parameter of type \"linear\" (it reads factor)", "16.0"},
      {"rope_scaling a factor under default",
       [](json& j) {
         j["rope_scaling"] = {{"type", "default"}, {"factor", 2.0}};
       },
       "rope_scaling.factor", "not a parameter of type \"default\" (it reads none)", "2.0"},
      {"rope_scaling linear without factor",
       [](json& j) {
         j["rope_scaling"] = {{"type", "linear"}};
       },
       "rope_scaling.factor", "required key is missing (type \"linear\" reads it)", ""},
      {"rope_scaling factor below 1",
       [](json& j) {
         j["rope_scaling"] = {{"type", "linear"}, {"factor", 0.5}};
       },
       "rope_scaling.factor", "must be a finite number >= 1", "0.5"},
      {"rope_scaling factor a string",
       [](json& j) {
         j["rope_scaling"] = {{"type", "linear"}, {"factor", "2"}};
       },
       "rope_scaling.factor", "expected a number, got a string", "\"2\""},
      {"rope_scaling dynamic without original_max_position_embeddings",
       [](json& j) {
         j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
       },
       "rope_scaling.original_max_position_embeddings",
       "required key is missing (type \"dynamic\" reads it)", ""},
      {"rope_scaling original_max_position_embeddings zero",
       [](json& j) {
         j["rope_scaling"] = {
             {"type", "yarn"}, {"factor", 2.0}, {"original_max_position_embeddings", 0}};
       },
       "rope_scaling.original_max_position_embeddings", "must be positive", "0"},
      {"rope_scaling dynamic with head_dim 2",
       [](json& j) {
         j["head_dim"] = 2;
         j["rope_scaling"] = {
             {"type", "dynamic"}, {"factor", 2.0}, {"original_max_position_embeddings", 32}};
       },
       "rope_scaling.type", "head_dim (2) must be at least 4", "\"dynamic\""},
      {"rope_scaling yarn with rope_theta 1",
       [](json& j) {
         j["rope_theta"] = 1.0;
         j["rope_scaling"] = {
             {"type", "yarn"}, {"factor", 2.0}, {"original_max_position_embeddings", 32}};
       },
       "rope_scaling.type", "rope_theta must not be 1", "\"yarn\""},
      {"rope_scaling yarn attention_factor zero",
       [](json& j) {
         j["rope_scaling"] = {{"type", "yarn"},
                              {"factor", 2.0},
                              {"original_max_position_embeddings", 32},
                              {"attention_factor", 0.0}};
       },
       "rope_scaling.attention_factor", "must be a finite number > 0", "0.0"},
      {"rope_scaling yarn beta_slow negative",
       [](json& j) {
         j["rope_scaling"] = {{"type", "yarn"},
                              {"factor", 2.0},
                              {"original_max_position_embeddings", 32},
                              {"beta_slow", -1.0}};
       },
       "rope_scaling.beta_slow", "must be a finite number > 0", "-1.0"},
      {"rope_scaling yarn beta_fast below beta_slow",
       [](json& j) {
         j["rope_scaling"] = {{"type", "yarn"},
                              {"factor", 2.0},
                              {"original_max_position_embeddings", 32},
                              {"beta_fast", 0.5}};
       },
       "rope_scaling.beta_fast", "must be at least beta_slow (1.0)", "0.5"},
      {"rope_scaling yarn mscale negative",
       [](json& j) {
         j["rope_scaling"] = {{"type", "yarn"},
                              {"factor", 2.0},
                              {"original_max_position_embeddings", 32},
                              {"mscale", -0.5}};
       },
       "rope_scaling.mscale", "must be a finite number >= 0", "-0.5"},
      {"rope_scaling yarn truncate a number",
       [](json& j) {
         j["rope_scaling"] = {{"type", "yarn"},
                              {"factor", 2.0},
                              {"original_max_position_embeddings", 32},
                              {"truncate", 1}};
       },
       "rope_scaling.truncate", "expected true or false, got an integer", "1"},
      {"rope_scaling llama3 without low_freq_factor",
       [](json& j) {
         j["rope_scaling"] = {{"type", "llama3"},
                              {"factor", 8.0},
                              {"original_max_position_embeddings", 32},
                              {"high_freq_factor", 4.0}};
       },
       "rope_scaling.low_freq_factor", "required key is missing (type \"llama3\" reads it)", ""},
      {"rope_scaling llama3 high_freq_factor not above low_freq_factor",
       [](json& j) {
         j["rope_scaling"] = {{"type", "llama3"},
                              {"factor", 8.0},
                              {"original_max_position_embeddings", 32},
                              {"low_freq_factor", 4.0},
                              {"high_freq_factor", 4.0}};
       },
       "rope_scaling.high_freq_factor", "must be a finite number > low_freq_factor (4.0)", "4.0"},
  };
  cases.insert(cases.end(), rope_scaling_cases.begin(), rope_scaling_cases.end());
  // The vision section (cases start from vision_config(): see BadVisionConfig below).
  const std::vector<BadConfigCase> vision_cases = {
      {"vision not an object", [](json& j) { j["vision"] = 3; }, "vision",
       "expected an object of keys, got an integer", "3"},
      {"vision misspelt key", [](json& j) { j["vision"]["patch_sise"] = 8; }, "vision.patch_sise",
       "unknown key; did you mean \"vision.patch_size\"?", "8"},
      {"vision patch_size does not divide image_size",
       [](json& j) { j["vision"]["patch_size"] = 5; }, "vision.patch_size",
       "must divide image_size (32)", "5"},
      {"vision heads do not divide width", [](json& j) { j["vision"]["heads"] = 3; },
       "vision.heads", "must divide width (64)", "3"},
      {"vision mean of the wrong length",
       [](json& j) {
         j["vision"]["mean"] = {0.5, 0.5};
       },
       "vision.mean", "one entry per channel (channels = 3)", "[0.5,0.5]"},
      {"vision std zero",
       [](json& j) {
         j["vision"]["std"] = {0.25, 0.0, 0.25};
       },
       "vision.std", "every entry must be a finite number > 0", "[0.25,0.0,0.25]"},
      {"vision mean not numbers",
       [](json& j) {
         j["vision"]["mean"] = {0.5, "x", 0.5};
       },
       "vision.mean", "expected an array of numbers, found a string", "[0.5,\"x\",0.5]"},
      {"vision resampler without layers", [](json& j) { j["vision"]["resampler_latents"] = 8; },
       "vision.resampler_layers", "must be positive when resampler_latents > 0", "0"},
      {"vision resampler layers without latents",
       [](json& j) { j["vision"]["resampler_layers"] = 2; }, "vision.resampler_layers",
       "must be 0 or absent when resampler_latents is 0", "2"},
      {"vision negative latents", [](json& j) { j["vision"]["resampler_latents"] = -1; },
       "vision.resampler_latents", "must be 0 (no resampler) or positive", "-1"},
      {"vision no cross-attention layer",
       [](json& j) { j["vision"]["cross_attention_layers"] = json::array(); },
       "vision.cross_attention_layers", "must name at least one decoder layer", "[]"},
      {"vision cross-attention layer past the model",
       [](json& j) {
         j["vision"]["cross_attention_layers"] = {0, 2};
       },
       "vision.cross_attention_layers", "layer 2 is not a decoder layer (0..1)", "[0,2]"},
      {"vision cross-attention layers repeated",
       [](json& j) {
         j["vision"]["cross_attention_layers"] = {1, 1};
       },
       "vision.cross_attention_layers", "distinct and in increasing order", "[1,1]"},
      {"vision cross-attention layer not an integer",
       [](json& j) { j["vision"]["cross_attention_layers"] = {0.5}; },
       "vision.cross_attention_layers", "expected an array of integers", "[0.5]"},
      {"vision kv heads do not divide heads",
       [](json& j) { j["vision"]["cross_attention_kv_heads"] = 3; },
       "vision.cross_attention_kv_heads", "must be a multiple of cross_attention_kv_heads", "3"},
      {"vision gate_init infinite", [](json& j) { j["vision"]["gate_init"] = INFINITY; },
       "vision.gate_init", "must be a finite number", "inf"},
      {"vision norm_eps zero", [](json& j) { j["vision"]["norm_eps"] = 0.0; }, "vision.norm_eps",
       "must be a finite number > 0", "0.0"},
      {"vision qk_norm not a boolean", [](json& j) { j["vision"]["cross_attention_qk_norm"] = 1; },
       "vision.cross_attention_qk_norm", "expected true or false, got an integer", "1"},
      {"vision patch embedding overflows",
       [=](json& j) {
         j["vision"]["image_size"] = two_to_the_62;
         j["vision"]["patch_size"] = two_to_the_62;
       },
       "vision.channels", "channels * patch_size * patch_size * width", "3"},
      {"vision tower attention matrices overflow",
       [](json& j) { j["vision"]["width"] = int64_t{1} << 32; }, "vision.width",
       "width * width * layers * 4 (q, k, v, o)", "4294967296"},
  };
  for (const BadConfigCase& vision_case : vision_cases) {
    cases.push_back({vision_case.description,
                     [mutate = vision_case.mutate](json& j) {
                       j = vision_config();
                       mutate(j);
                     },
                     vision_case.key, vision_case.expected, vision_case.value});
  }
  for (const std::string key :
       {"image_size", "channels", "patch_size", "width", "layers", "heads", "mlp_size", "mean",
        "std", "cross_attention_layers", "cross_attention_heads", "cross_attention_kv_heads",
        "cross_attention_d_ff"}) {
    cases.push_back({"vision missing " + key,
                     [key](json& j) {
                       j = vision_config();
                       j["vision"].erase(key);
                     },
                     "vision." + key, "required key is missing", ""});
  }
  for (const std::string& key : kRequiredKeys) {
    cases.push_back(
        {"missing " + key, [key](json& j) { j.erase(key); }, key, "required key is missing", ""});
    cases.push_back({key + " zero", [key](json& j) { j[key] = 0; }, key, "must be positive", "0"});
    cases.push_back(
        {key + " negative", [key](json& j) { j[key] = -4; }, key, "must be positive", "-4"});
  }
  return cases;
}

class BadConfig : public testing::TestWithParam<BadConfigCase> {};

TEST_P(BadConfig, ThrowsNamingSourceKeyAndValue) {
  const BadConfigCase& bad = GetParam();
  json config = base_config();
  bad.mutate(config);
  const std::string message = message_of([&] { config_from_json(config, "test.json"); });
  const std::string prefix = "test.json: key \"" + bad.key + "\": ";
  EXPECT_EQ(message.rfind(prefix, 0), 0u) << message;
  EXPECT_NE(message.find(bad.expected), std::string::npos) << message;
  if (!bad.value.empty()) {
    const std::string suffix = " (" + bad.value + ")";
    EXPECT_TRUE(message.ends_with(suffix)) << message << "\nexpected to end with" << suffix;
  }
}

std::string case_name(const testing::TestParamInfo<BadConfigCase>& info) {
  std::string name;
  for (const char ch : info.param.description)
    name += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Rules, BadConfig, testing::ValuesIn(bad_config_cases()), case_name);

// The bad cases above must fail for their own reason only, so the configs they start from are
// valid.
TEST(ConfigJson, BaseConfigsAreValid) {
  EXPECT_NO_THROW(config_from_json(base_config(), "test.json"));
  EXPECT_NO_THROW(config_from_json(vision_config(), "test.json"));
  EXPECT_NO_THROW(config_from_json(required_only(), "test.json"));
}

fs::path write_temp(const std::string& name, const std::string& contents) {
  const fs::path path = fs::path(testing::TempDir()) / name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

TEST(LoadConfig, MissingFileNamesTheFile) {
  const fs::path path = fs::path(testing::TempDir()) / "moeref_no_such_config.json";
  const std::string message = message_of([&] { load_config(path); });
  EXPECT_EQ(message.rfind(path.string() + ": cannot open", 0), 0u) << message;
}

TEST(LoadConfig, DirectoryNamesTheDirectory) {
  const std::string message = message_of([&] { load_config(kSourceDir / "configs"); });
  EXPECT_EQ(message.rfind((kSourceDir / "configs").string() + ": ", 0), 0u) << message;
  EXPECT_NE(message.find("is a directory"), std::string::npos) << message;
}

TEST(LoadConfig, MalformedJsonNamesTheFileAndPosition) {
  const fs::path path =
      write_temp("moeref_malformed.json", "{\n  \"d_model\": 64,\n  \"n_layers\" 2\n}\n");
  const std::string message = message_of([&] { load_config(path); });
  EXPECT_EQ(message.rfind(path.string() + ": malformed JSON: ", 0), 0u) << message;
  EXPECT_NE(message.find("line 3"), std::string::npos) << message;
}

TEST(LoadConfig, EmptyFileIsMalformed) {
  const fs::path path = write_temp("moeref_empty.json", "");
  const std::string message = message_of([&] { load_config(path); });
  EXPECT_EQ(message.rfind(path.string() + ": malformed JSON: ", 0), 0u) << message;
}

// A number past the largest double is an error naming the file, the key and the number as
// written, wherever it stands.
TEST(LoadConfig, NumberOverflowNamesTheFileKeyAndValue) {
  struct Case {
    std::function<void(json&)> place;  // puts the "NUMBER" placeholder where the number goes
    const char* number;                // written in its place
    const char* key;                   // the key the message names
  };
  const std::vector<Case> cases = {
      {[](json& c) { c["rope_theta"] = "NUMBER"; }, "1e999", "rope_theta"},
      {[](json& c) { c["norm_eps"] = "NUMBER"; }, "-1e400", "norm_eps"},
      {[](json& c) { c["vision"]["mean"][1] = "NUMBER"; }, "1E+309", "vision.mean"},
      {[](json& c) { c["n_layers"] = "NUMBER"; }, "123456789012345678901234567890e300", "n_layers"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.number);
    json config = vision_config();
    c.place(config);
    std::string text = config.dump();
    text.replace(text.find("\"NUMBER\""), 8, c.number);
    const fs::path path = write_temp("moeref_overflow.json", text);
    const std::string message = message_of([&] { load_config(path); });
    EXPECT_EQ(message, path.string() + ": key \"" + c.key + "\": number " + c.number +
                           " is out of the range of a double");
  }
}

TEST(LoadConfig, RepeatedKeyIsAnError) {
  json config = base_config();
  config.erase("d_model");
  std::string text = config.dump();
  text.insert(1, "\"d_model\": 64, \"d_model\": 128, ");
  const fs::path path = write_temp("moeref_repeated.json", text);
  const std::string message = message_of([&] { load_config(path); });
  EXPECT_EQ(message, path.string() + ": key \"d_model\": appears more than once");
}

TEST(LoadConfig, RepeatedVisionKeyIsAnError) {
  std::string text = vision_config().dump();
  const size_t vision = text.find("\"vision\":{");
  ASSERT_NE(vision, std::string::npos);
  text.insert(vision + 10, "\"width\": 16, ");
  const fs::path path = write_temp("moeref_repeated_vision.json", text);
  const std::string message = message_of([&] { load_config(path); });
  EXPECT_EQ(message, path.string() + ": key \"vision.width\": appears more than once");
}

TEST(ConfigJson, VisionRoundTripsAndEveryVisionFieldIsCompared) {
  const ModelConfig base = config_from_json(vision_config(), "test.json");
  EXPECT_EQ(config_to_json(base), vision_config());
  EXPECT_EQ(config_from_json(json::parse(config_to_json(base).dump()), "round trip"), base);
  const std::vector<std::function<void(VisionConfig&)>> changes = {
      [](VisionConfig& v) { v.image_size += 8; },
      [](VisionConfig& v) { v.channels += 1; },
      [](VisionConfig& v) { v.patch_size += 1; },
      [](VisionConfig& v) { v.width += 1; },
      [](VisionConfig& v) { v.layers += 1; },
      [](VisionConfig& v) { v.heads += 1; },
      [](VisionConfig& v) { v.mlp_size += 1; },
      [](VisionConfig& v) { v.norm_eps *= 2; },
      [](VisionConfig& v) { v.mean[1] += 0.1; },
      [](VisionConfig& v) { v.std[2] += 0.1; },
      [](VisionConfig& v) { v.resampler_latents += 1; },
      [](VisionConfig& v) { v.resampler_layers += 1; },
      [](VisionConfig& v) {
        v.cross_attention_layers = {0, 1};
      },
      [](VisionConfig& v) { v.cross_attention_heads += 1; },
      [](VisionConfig& v) { v.cross_attention_kv_heads += 1; },
      [](VisionConfig& v) { v.cross_attention_d_ff += 1; },
      [](VisionConfig& v) { v.cross_attention_qk_norm = !v.cross_attention_qk_norm; },
      [](VisionConfig& v) { v.gate_init = -v.gate_init; },
  };
  for (size_t i = 0; i < changes.size(); ++i) {
    ModelConfig changed = base;
    changes[i](*changed.vision);
    EXPECT_FALSE(changed == base) << "change " << i;
  }
  ModelConfig text_only = base;
  text_only.vision.reset();
  EXPECT_FALSE(text_only == base);
  // Optional vision keys take the struct's defaults.
  json minimal = vision_config();
  for (const char* key : {"norm_eps", "resampler_latents", "resampler_layers",
                          "cross_attention_qk_norm", "gate_init"}) {
    minimal["vision"].erase(key);
  }
  const VisionConfig defaults;
  const VisionConfig v = *config_from_json(minimal, "test.json").vision;
  EXPECT_EQ(v.norm_eps, defaults.norm_eps);
  EXPECT_EQ(v.resampler_latents, 0);
  EXPECT_FALSE(v.cross_attention_qk_norm);
  EXPECT_EQ(v.gate_init, 0.0);
}

TEST(LoadConfig, ValidationErrorsNameTheFile) {
  json config = base_config();
  config["n_kv_heads"] = 3;
  const fs::path path = write_temp("moeref_invalid.json", config.dump(2));
  const std::string message = message_of([&] { load_config(path); });
  EXPECT_EQ(message, path.string() +
                         ": key \"n_kv_heads\": n_heads (4) must be a multiple of n_kv_heads (3)");
}

}  // namespace
}  // namespace moeref
