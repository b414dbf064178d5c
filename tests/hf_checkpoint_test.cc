// Hugging Face checkpoints as the Hub and transformers write them (ref/io/hf_checkpoint.h,
// ref/io/hf_interop.h): sharded, F16 and BF16, the fused expert layout of transformers 5, RoPE
// buffers; a table of bad index files; BF16 and sharded export.
//
// Checkpoints are written here from tiny's weights: the fused tensors are assembled by hand from
// the layout in modeling_mixtral.py (gate_up_proj [E, 2 * ff, d], expert e's w1 rows then its w3
// rows; down_proj [E, d, ff]), F16 and BF16 values are given as bits and expected as the textbook
// formula evaluated with ldexp.

#include "ref/io/hf_checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "ref/io/config.h"
#include "ref/io/hf_interop.h"
#include "ref/io/safetensors.h"
#include "ref/model/weights.h"
#include "tests/test_support.h"

namespace moeref {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test_support::TempDir;
using ::testing::HasSubstr;

const fs::path kSourceDir = MOEREF_SOURCE_DIR;

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Every tensor of both weights, in canonical order, bit for bit.
void expect_same_weights(const ModelConfig& config, const ModelWeights& a, const ModelWeights& b) {
  const std::vector<TensorRecord> left = weight_records(config, a);
  const std::vector<TensorRecord> right = weight_records(config, b);
  ASSERT_EQ(left.size(), right.size());
  for (size_t i = 0; i < left.size(); ++i) {
    EXPECT_EQ(left[i].name, right[i].name);
    EXPECT_TRUE(left[i].shape == right[i].shape && left[i].bytes == right[i].bytes) << left[i].name;
  }
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

class HfCheckpointTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    config_ = new ModelConfig(load_config(kSourceDir / "configs/tiny.json"));
    weights_ = new ModelWeights(init_weights(*config_));
  }
  static void TearDownTestSuite() {
    delete config_;
    delete weights_;
  }
  // tiny exported into DIR (under the temporary directory) with `options`.
  fs::path exported(const std::string& name, const HfExportOptions& options = {}) {
    const fs::path dir = temp_.path() / name;
    export_hf(*config_, *weights_, dir, options);
    return dir;
  }
  static HfExportOptions sharded() {
    HfExportOptions options;
    options.max_shard_bytes = 700'000;  // tiny's 2.6 MB of float32 in 4 or more shards
    return options;
  }

  static ModelConfig* config_;
  static ModelWeights* weights_;
  TempDir temp_;
};

ModelConfig* HfCheckpointTest::config_ = nullptr;
ModelWeights* HfCheckpointTest::weights_ = nullptr;

// ------------------------------------------------------------------------------------------------
// Sharded checkpoints.

TEST_F(HfCheckpointTest, ShardedImportEqualsUnshardedBitForBit) {
  const fs::path dir = exported("sharded", sharded());
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  const json index = read_json(dir / "model.safetensors.index.json");
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : index.at("weight_map").items()) shards.insert(shard);
  EXPECT_GE(shards.size(), 4u);
  EXPECT_TRUE(
      shards.contains("model-00001-of-0000" + std::to_string(shards.size()) + ".safetensors"));
  EXPECT_EQ(index.at("weight_map").size(), 113u);

  const ImportedModel whole = import_hf(exported("whole"));
  const ImportedModel split = import_hf(dir);
  EXPECT_EQ(split.config, whole.config);
  expect_same_weights(*config_, split.weights, *weights_);
  expect_same_weights(*config_, whole.weights, *weights_);
}

TEST_F(HfCheckpointTest, ExportSwitchingLayoutRemovesTheOtherLayoutsFile) {
  const fs::path dir = exported("out");
  export_hf(*config_, *weights_, dir, sharded());
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  EXPECT_NO_THROW(import_hf(dir));
  export_hf(*config_, *weights_, dir);
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_NO_THROW(import_hf(dir));
}

TEST_F(HfCheckpointTest, TooManyShardsAreRefusedBeforeWriting) {
  HfExportOptions options;
  options.max_shard_bytes = 1000;
  const fs::path dir = temp_.path() / "many";
  EXPECT_THAT(error_of([&] { export_hf(*config_, *weights_, dir, options); }),
              HasSubstr("choose a larger shard size"));
  EXPECT_FALSE(fs::exists(dir));
}

// One bad index or shard set per row; the message must name the file and the value.
struct BadIndexCase {
  const char* what;
  std::function<void(const fs::path& dir, json& index)> edit;  // index is written back after
  std::vector<std::string> expected;                           // substrings of the message
};

std::string first_shard(const json& index) {
  return index.at("weight_map").at("model.embed_tokens.weight").get<std::string>();
}

std::string last_shard(const json& index) {
  return index.at("weight_map").at("lm_head.weight").get<std::string>();
}

TEST_F(HfCheckpointTest, BadIndexesAreRefusedNamingFileKeyAndValue) {
  const std::vector<BadIndexCase> cases = {
      {"a shard outside the directory",
       [](const fs::path&, json& index) {
         index["weight_map"]["lm_head.weight"] = "../outside.safetensors";
       },
       {"model.safetensors.index.json", "\"weight_map\"", "lm_head.weight",
        "../outside.safetensors", "leaves the checkpoint directory"}},
      {"an absolute shard path",
       [](const fs::path&, json& index) { index["weight_map"]["lm_head.weight"] = "/etc/passwd"; },
       {"model.safetensors.index.json", "/etc/passwd", "not a file name relative"}},
      {"a link leading out of the directory",
       [](const fs::path& dir, json& index) {
         const std::string shard = last_shard(index);
         fs::rename(dir / shard, dir.parent_path() / "moved.safetensors");
         fs::create_symlink(dir.parent_path() / "moved.safetensors", dir / shard);
       },
       {"model.safetensors.index.json", "leaves the checkpoint directory", "moved.safetensors"}},
      {"a missing shard",
       [](const fs::path&, json& index) {
         index["weight_map"]["lm_head.weight"] = "model-00009-of-00009.safetensors";
       },
       {"model.safetensors.index.json", "model-00009-of-00009.safetensors", "cannot be read"}},
      {"a shard that is a directory",
       [](const fs::path& dir, json& index) {
         fs::create_directory(dir / "folder.safetensors");
         index["weight_map"]["lm_head.weight"] = "folder.safetensors";
       },
       {"folder.safetensors", "not a regular file"}},
      {"a tensor the index maps to another shard",
       [](const fs::path&, json& index) {
         index["weight_map"]["lm_head.weight"] = first_shard(index);
       },
       {"lm_head.weight", "maps to shard"}},
      {"a tensor the index lists but no shard holds",
       [](const fs::path&, json& index) {
         index["weight_map"]["model.extra.weight"] = first_shard(index);
       },
       {"model.safetensors.index.json", "model.extra.weight", "holds no tensor of that name"}},
      {"a tensor a shard holds but the index does not list",
       [](const fs::path&, json& index) { index["weight_map"].erase("lm_head.weight"); },
       {"lm_head.weight", "does not list"}},
      {"an unknown top-level key",
       [](const fs::path&, json& index) { index["weights"] = json::object(); },
       {"model.safetensors.index.json", "\"weights\"", "unknown key"}},
      {"no weight_map",
       [](const fs::path&, json& index) { index.erase("weight_map"); },
       {"model.safetensors.index.json", "\"weight_map\"", "missing"}},
      {"weight_map a list",
       [](const fs::path&, json& index) { index["weight_map"] = json::array({1}); },
       {"model.safetensors.index.json", "\"weight_map\"", "[1]"}},
      {"a shard name that is not a string",
       [](const fs::path&, json& index) { index["weight_map"]["lm_head.weight"] = 7; },
       {"model.safetensors.index.json", "lm_head.weight", "(7)"}},
      {"metadata not an object",
       [](const fs::path&, json& index) { index["metadata"] = "big"; },
       {"model.safetensors.index.json", "\"metadata\"", "\"big\""}},
      {"model.safetensors beside the index",
       [](const fs::path& dir, json&) { write_safetensors(dir / "model.safetensors", {}); },
       {"model.safetensors and model.safetensors.index.json", "ambiguous"}},
  };
  for (const BadIndexCase& c : cases) {
    SCOPED_TRACE(c.what);
    TempDir temp;
    const fs::path dir = temp.path() / "hf";
    export_hf(*config_, *weights_, dir, sharded());
    json index = read_json(dir / "model.safetensors.index.json");
    c.edit(dir, index);
    write_text(dir / "model.safetensors.index.json", index.dump(1));
    const std::string message = error_of([&] { import_hf(dir); });
    for (const std::string& part : c.expected) EXPECT_THAT(message, HasSubstr(part));
  }
}

TEST_F(HfCheckpointTest, ATensorListedTwiceInTheIndexIsRefused) {
  const fs::path dir = exported("twice", sharded());
  const std::string text = test_support::read_file(dir / "model.safetensors.index.json");
  const std::string entry = "\"lm_head.weight\":";
  const size_t at = text.find(entry);
  ASSERT_NE(at, std::string::npos);
  write_text(dir / "model.safetensors.index.json",
             text.substr(0, at) + entry + " \"x.safetensors\", " + text.substr(at));
  EXPECT_THAT(error_of([&] { import_hf(dir); }),
              HasSubstr("tensor \"lm_head.weight\" appears more than once"));
}

TEST_F(HfCheckpointTest, NeitherWeightsFileIsNamed) {
  const fs::path dir = exported("none");
  fs::remove(dir / "model.safetensors");
  EXPECT_THAT(error_of([&] { import_hf(dir); }),
              HasSubstr("holds neither model.safetensors nor model.safetensors.index.json"));
}

// ------------------------------------------------------------------------------------------------
// F16 and BF16 tensors.

// tiny's checkpoint with every tensor in `dtype`, element i of each tensor holding `bits(i)`.
void write_half_checkpoint(const ModelConfig& config, const fs::path& dir, DType dtype,
                           const std::function<uint16_t(size_t)>& bits) {
  fs::create_directories(dir);
  write_text(dir / "config.json", hf_config_json(config).dump());
  std::vector<TensorRecord> records;
  for (const WeightSpec& spec : weight_specs(config)) {
    size_t numel = 1;
    for (const int64_t dim : spec.shape) numel *= static_cast<size_t>(dim);
    TensorRecord record{hf_tensor_name(spec.name), dtype, spec.shape, {}};
    record.bytes.resize(numel * 2);
    for (size_t i = 0; i < numel; ++i) {
      const uint16_t value = bits(i);
      std::memcpy(record.bytes.data() + 2 * i, &value, 2);
    }
    records.push_back(std::move(record));
  }
  write_safetensors(dir / "model.safetensors", records);
}

// Finite values only, every exponent and sign: (i * 40503) mod 2^16 with the exponent's top bit
// cleared for F16 (exponent 31 is Inf and NaN).
uint16_t f16_pattern(size_t i) { return static_cast<uint16_t>((i * 40503) & 0xBFFF); }
uint16_t bf16_pattern(size_t i) { return static_cast<uint16_t>((i * 40503) & 0xBFFF); }

double f16_value(uint16_t bits) {
  const double sign = (bits >> 15) ? -1.0 : 1.0;
  const int exponent = (bits >> 10) & 0x1F;
  const int mantissa = bits & 0x3FF;
  return sign *
         (exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 25));
}

double bf16_value(uint16_t bits) {
  const double sign = (bits >> 15) ? -1.0 : 1.0;
  const int exponent = (bits >> 7) & 0xFF;
  const int mantissa = bits & 0x7F;
  return sign *
         (exponent == 0 ? std::ldexp(mantissa, -133) : std::ldexp(128 + mantissa, exponent - 134));
}

TEST_F(HfCheckpointTest, F16AndBF16TensorsImportToTheirExactValues) {
  struct Case {
    DType dtype;
    uint16_t (*bits)(size_t);
    double (*value)(uint16_t);
  };
  for (const Case& c :
       {Case{DType::kF16, f16_pattern, f16_value}, Case{DType::kBF16, bf16_pattern, bf16_value}}) {
    SCOPED_TRACE(dtype_name(c.dtype));
    const fs::path dir = temp_.path() / dtype_name(c.dtype);
    write_half_checkpoint(*config_, dir, c.dtype, c.bits);
    const ImportedModel model = import_hf(dir);
    const std::vector<TensorRecord> records = weight_records(model.config, model.weights);
    for (const TensorRecord& record : records) {
      const std::vector<float> values = record.to_f32();
      for (size_t i = 0; i < values.size(); ++i) {
        ASSERT_EQ(static_cast<double>(values[i]), c.value(c.bits(i))) << record.name << " " << i;
      }
    }
  }
}

TEST_F(HfCheckpointTest, BF16ExportOfBF16ExactWeightsImportsAsTheF32Export) {
  // tiny's weights cut to bfloat16 (their low 16 bits cleared), so each is exactly a bfloat16.
  const std::vector<TensorRecord> records = weight_records(*config_, *weights_);
  size_t r = 0;
  const ModelWeights cut = fill_weights(*config_, [&](const WeightSpec&, Tensor& tensor) {
    const std::vector<float> values = records[r++].to_f32();
    for (size_t i = 0; i < values.size(); ++i) {
      tensor.values()[i] = std::bit_cast<float>(std::bit_cast<uint32_t>(values[i]) & 0xFFFF0000u);
    }
  });
  HfExportOptions bf16;
  bf16.dtype = DType::kBF16;
  const fs::path f32_dir = temp_.path() / "f32";
  const fs::path bf16_dir = temp_.path() / "bf16";
  export_hf(*config_, cut, f32_dir);
  export_hf(*config_, cut, bf16_dir, bf16);
  EXPECT_EQ(read_json(bf16_dir / "config.json").at("torch_dtype"), "bfloat16");
  const SafetensorsFile bf16_file = SafetensorsFile::read(bf16_dir / "model.safetensors");
  for (const TensorRecord& record : bf16_file.tensors()) {
    EXPECT_EQ(record.dtype, DType::kBF16) << record.name;
  }
  const ImportedModel from_bf16 = import_hf(bf16_dir);
  expect_same_weights(*config_, from_bf16.weights, cut);
  expect_same_weights(*config_, import_hf(f32_dir).weights, cut);
}

TEST_F(HfCheckpointTest, BF16ExportOfOtherWeightsNamesTheFirstInexactValue) {
  HfExportOptions bf16;
  bf16.dtype = DType::kBF16;
  const fs::path dir = temp_.path() / "bf16";
  const float first = weights_->embed.values()[0];
  char value[32];
  std::snprintf(value, sizeof value, "%.9g", static_cast<double>(first));
  const std::string message = error_of([&] { export_hf(*config_, *weights_, dir, bf16); });
  EXPECT_THAT(message, HasSubstr("tensor \"model.embed_tokens.weight\": element 0 is "));
  EXPECT_THAT(message, HasSubstr(value));
  EXPECT_THAT(message, HasSubstr("bfloat16 cannot hold exactly"));
  EXPECT_FALSE(fs::exists(dir));
}

TEST_F(HfCheckpointTest, OtherDtypesAreRefusedNamingTheTensor) {
  const fs::path dir = exported("f64");
  std::vector<TensorRecord> records = SafetensorsFile::read(dir / "model.safetensors").tensors();
  for (TensorRecord& record : records) {
    if (record.name == "model.norm.weight") {
      record.dtype = DType::kF64;
      record.shape = {32};  // the bytes of [64] F32
    }
  }
  write_safetensors(dir / "model.safetensors", records);
  const std::string message = error_of([&] { import_hf(dir); });
  EXPECT_THAT(message, HasSubstr("model.norm.weight"));
  EXPECT_THAT(message, HasSubstr("F64"));
}

// ------------------------------------------------------------------------------------------------
// The fused expert layout of transformers 5, and buffers.

// The exported per-expert checkpoint rewritten with each layer's experts fused.
void fuse_experts(const ModelConfig& c, const fs::path& file) {
  const SafetensorsFile per_expert = SafetensorsFile::read(file);
  std::vector<TensorRecord> records;
  for (const TensorRecord& record : per_expert.tensors()) {
    if (record.name.find(".block_sparse_moe.") == std::string::npos) records.push_back(record);
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string moe = "model.layers." + std::to_string(l) + ".block_sparse_moe.";
    const std::string mlp = "model.layers." + std::to_string(l) + ".mlp.";
    TensorRecord router = per_expert.at(moe + "gate.weight");
    router.name = mlp + "gate.weight";
    records.push_back(router);
    std::vector<float> gate_up;
    std::vector<float> down;
    for (int64_t e = 0; e < c.n_experts; ++e) {
      const std::string expert = moe + "experts." + std::to_string(e) + ".";
      for (const char* w : {"w1", "w3"}) {
        const std::vector<float> rows = per_expert.at(expert + w + ".weight").to_f32();
        gate_up.insert(gate_up.end(), rows.begin(), rows.end());
      }
      const std::vector<float> w2 = per_expert.at(expert + "w2.weight").to_f32();
      down.insert(down.end(), w2.begin(), w2.end());
    }
    records.push_back(make_f32_record(mlp + "experts.gate_up_proj",
                                      {c.n_experts, 2 * c.expert_d_ff, c.d_model}, gate_up));
    records.push_back(
        make_f32_record(mlp + "experts.down_proj", {c.n_experts, c.d_model, c.expert_d_ff}, down));
  }
  write_safetensors(file, records);
}

TEST_F(HfCheckpointTest, FusedExpertsOfTransformers5GiveTheSameModel) {
  const fs::path dir = exported("fused");
  fuse_experts(*config_, dir / "model.safetensors");
  const ImportedModel fused = import_hf(dir);
  expect_same_weights(*config_, fused.weights, *weights_);
}

TEST_F(HfCheckpointTest, MixedExpertLayoutsAreRefused) {
  const fs::path dir = exported("mixed");
  std::vector<TensorRecord> records = SafetensorsFile::read(dir / "model.safetensors").tensors();
  const std::vector<float> values(16 * 64, 0.5f);
  records.push_back(make_f32_record("model.layers.0.mlp.gate.weight", {16, 64}, values));
  write_safetensors(dir / "model.safetensors", records);
  const std::string message = error_of([&] { import_hf(dir); });
  EXPECT_THAT(message, HasSubstr("mixes the expert layout"));
  EXPECT_THAT(message, HasSubstr("model.layers.0.mlp.gate.weight"));
}

TEST_F(HfCheckpointTest, FusedTensorOfTheWrongShapeIsNamed) {
  const fs::path dir = exported("fused-shape");
  fuse_experts(*config_, dir / "model.safetensors");
  std::vector<TensorRecord> records = SafetensorsFile::read(dir / "model.safetensors").tensors();
  for (TensorRecord& record : records) {
    if (record.name == "model.layers.1.mlp.experts.gate_up_proj") {
      record.shape = {16, 64, 256};  // transposed: [E, d, 2 * ff]
    }
  }
  write_safetensors(dir / "model.safetensors", records);
  const std::string message = error_of([&] { import_hf(dir); });
  EXPECT_THAT(message, HasSubstr("model.layers.1.mlp.experts.gate_up_proj"));
  EXPECT_THAT(message, HasSubstr("[16, 64, 256]"));
  EXPECT_THAT(message, HasSubstr("[16, 256, 64]"));
}

TEST_F(HfCheckpointTest, RopeBuffersAreSkippedAndOtherExtrasRefused) {
  const std::vector<float> inv_freq(8, 0.25f);
  struct Case {
    const char* name;
    bool accepted;
  };
  for (const Case& c :
       {Case{"model.rotary_emb.inv_freq", true}, Case{"model.rotary_emb.original_inv_freq", true},
        Case{"model.layers.1.self_attn.rotary_emb.inv_freq", true},
        Case{"model.layers.x.self_attn.rotary_emb.inv_freq", false},
        Case{"model.layers.1.self_attn.rotary_emb.cos_cached", false},
        Case{"model.layers.1.self_attn.q_norm.weight", false}}) {
    SCOPED_TRACE(c.name);
    TempDir temp;
    const fs::path dir = temp.path() / "hf";
    export_hf(*config_, *weights_, dir);
    std::vector<TensorRecord> records = SafetensorsFile::read(dir / "model.safetensors").tensors();
    records.push_back(make_f32_record(c.name, {8}, inv_freq));
    write_safetensors(dir / "model.safetensors", records);
    const std::string message = error_of([&] {
      const ImportedModel model = import_hf(dir);
      expect_same_weights(*config_, model.weights, *weights_);
    });
    if (c.accepted) {
      EXPECT_EQ(message, "");
    } else {
      EXPECT_THAT(message, HasSubstr(std::string(c.name) + "\" is not part of this config"));
    }
  }
}

}  // namespace
}  // namespace moeref
