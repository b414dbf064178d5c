#include "ref/io/hf_interop.h"

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <span>

#include "ref/io/atomic_file.h"
#include "ref/io/half_float.h"
#include "ref/io/hf_checkpoint.h"
#include "ref/io/hf_config.h"
#include "ref/io/json_text.h"
#include "ref/io/temporary_cleanup.h"

namespace moeref {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void fail_tensor(const fs::path& file, const std::string& problem) {
  throw SafetensorsError(file.string() + ": " + problem);
}

std::string json_quoted(const std::string& text) { return json(text).dump(); }

// ---------------------------------------------------------------------------------------------
// Export

// The weights as bfloat16, each value checked to be exactly one.
std::vector<std::vector<uint16_t>> narrow_to_bf16(const std::vector<TensorView>& views) {
  std::vector<std::vector<uint16_t>> narrowed;
  narrowed.reserve(views.size());
  for (const TensorView& view : views) {
    const std::span<const float> values(reinterpret_cast<const float*>(view.bytes.data()),
                                        view.bytes.size() / sizeof(float));
    std::vector<uint16_t>& bits = narrowed.emplace_back(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      const std::optional<uint16_t> exact = bf16_exactly(values[i]);
      if (!exact) {
        char value[64];
        std::snprintf(value, sizeof value, "%.9g (float32 bits 0x%08" PRIx32 ")",
                      static_cast<double>(values[i]), std::bit_cast<uint32_t>(values[i]));
        throw ConfigError("tensor " + json_quoted(view.name) + ": element " + std::to_string(i) +
                          " is " + value +
                          ", which bfloat16 cannot hold exactly; export it as float32");
      }
      bits[i] = *exact;
    }
  }
  return narrowed;
}

std::string shard_file_name(size_t index, size_t count) {
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return name;
}

// ---------------------------------------------------------------------------------------------
// Import

enum class ExpertLayout { kPerExpert, kFused };

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The RoPE tables transformers recomputes and never loads from a checkpoint.
bool is_ignored_buffer(const std::string& name) {
  for (const std::string buffer : {"rotary_emb.inv_freq", "rotary_emb.original_inv_freq"}) {
    if (name == "model." + buffer) return true;
    const std::string prefix = "model.layers.";
    const std::string suffix = ".self_attn." + buffer;
    if (name.size() > prefix.size() + suffix.size() && name.starts_with(prefix) &&
        name.ends_with(suffix) &&
        all_digits(std::string_view(name).substr(prefix.size(),
                                                 name.size() - prefix.size() - suffix.size()))) {
      return true;
    }
  }
  return false;
}

ExpertLayout expert_layout(const HfCheckpoint& checkpoint) {
  std::string fused;
  std::string per_expert;
  for (const std::string& name : checkpoint.names()) {
    if (fused.empty() && (name.find(".mlp.experts.") != std::string::npos ||
                          name.find(".mlp.gate.") != std::string::npos)) {
      fused = name;
    }
    if (per_expert.empty() && name.find(".block_sparse_moe.") != std::string::npos) {
      per_expert = name;
    }
  }
  if (!fused.empty() && !per_expert.empty()) {
    fail_tensor(checkpoint.source(), "mixes the expert layout of transformers 4 (" +
                                         json_quoted(per_expert) +
                                         ") with the fused one of transformers 5 (" +
                                         json_quoted(fused) + "); a checkpoint uses one");
  }
  return fused.empty() ? ExpertLayout::kPerExpert : ExpertLayout::kFused;
}

// Where a moeref tensor's values lie in the checkpoint: `numel` elements from `first` on.
struct Source {
  std::string tensor;
  uint64_t first = 0;
  std::string label;  // for messages: the tensor, or the slice of a fused one
};

int64_t layer_of(const std::string& moeref_name) {
  const size_t begin = std::string("layers.").size();
  return std::stoll(moeref_name.substr(begin, moeref_name.find('.', begin) - begin));
}

std::string fused_name(int64_t layer, const char* part) {
  return "model.layers." + std::to_string(layer) + ".mlp." + part;
}

Source source_of(const WeightSpec& spec, ExpertLayout layout, const ModelConfig& c) {
  if (layout == ExpertLayout::kFused && spec.name.ends_with(".moe.router.weight")) {
    const std::string name = fused_name(layer_of(spec.name), "gate.weight");
    return {name, 0, name};
  }
  if (layout == ExpertLayout::kPerExpert || spec.expert < 0) {
    const std::string name = hf_tensor_name(spec.name);
    return {name, 0, name};
  }
  const int64_t layer = layer_of(spec.name);
  const auto e = static_cast<uint64_t>(spec.expert);
  const auto ff = static_cast<uint64_t>(c.expert_d_ff);
  const auto d = static_cast<uint64_t>(c.d_model);
  const std::string expert = std::to_string(spec.expert);
  const std::string rows = std::to_string(ff);
  if (spec.name.ends_with(".down_proj.weight")) {
    const std::string name = fused_name(layer, "experts.down_proj");
    return {name, e * d * ff, name + "[" + expert + "]"};
  }
  const std::string name = fused_name(layer, "experts.gate_up_proj");
  if (spec.name.ends_with(".gate_proj.weight")) {
    return {name, e * 2 * ff * d, name + "[" + expert + ", :" + rows + "]"};
  }
  return {name, e * 2 * ff * d + ff * d, name + "[" + expert + ", " + rows + ":]"};
}

// Every checkpoint tensor the config needs, with its shape.
std::map<std::string, std::vector<int64_t>> expected_tensors(const ModelConfig& c,
                                                             ExpertLayout layout) {
  std::map<std::string, std::vector<int64_t>> expected;
  for (const WeightSpec& spec : weight_specs(c)) {
    if (layout == ExpertLayout::kFused && spec.expert >= 0) continue;
    expected.emplace(source_of(spec, layout, c).tensor, spec.shape);
  }
  if (layout == ExpertLayout::kFused) {
    for (int64_t l = 0; l < c.n_layers; ++l) {
      expected.emplace(fused_name(l, "experts.gate_up_proj"),
                       std::vector<int64_t>{c.n_experts, 2 * c.expert_d_ff, c.d_model});
      expected.emplace(fused_name(l, "experts.down_proj"),
                       std::vector<int64_t>{c.n_experts, c.d_model, c.expert_d_ff});
    }
  }
  return expected;
}

// Names, dtypes and shapes, from the headers alone, before any data is read.
void check_tensors(const HfCheckpoint& checkpoint, const ModelConfig& config, ExpertLayout layout) {
  const auto expected = expected_tensors(config, layout);
  for (const auto& [name, shape] : expected) {
    const TensorEntry* entry = checkpoint.find(name);
    if (!entry) fail_tensor(checkpoint.source(), "no tensor named " + json_quoted(name));
    const fs::path& file = checkpoint.file_of(name);
    if (entry->dtype != DType::kF32 && entry->dtype != DType::kF16 &&
        entry->dtype != DType::kBF16) {
      fail_tensor(file, "tensor " + json_quoted(name) + " has dtype " + dtype_name(entry->dtype) +
                            "; weights are read from F32, F16 or BF16");
    }
    if (entry->shape != shape) {
      fail_tensor(file, "tensor " + json_quoted(name) + " has shape " + shape_string(entry->shape) +
                            ", the config needs " + shape_string(shape));
    }
  }
  for (const std::string& name : checkpoint.names()) {
    if (!expected.contains(name) && !is_ignored_buffer(name)) {
      fail_tensor(checkpoint.file_of(name),
                  "tensor " + json_quoted(name) + " is not part of this config");
    }
  }
}

}  // namespace

void check_mixtral_compatible(const ModelConfig& c, const std::string& source) {
  auto refuse = [&](const std::string& key, const std::string& value, const std::string& why) {
    fail_hf_key(source, key, why + " for a Mixtral export (" + value + ")");
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

std::vector<HfShard> hf_shards(const ModelConfig& config, const HfExportOptions& options) {
  std::vector<HfShard> shards(1);
  uint64_t shard_bytes = 0;
  for (const WeightSpec& spec : weight_specs(config)) {
    uint64_t bytes = dtype_size(options.dtype);
    for (const int64_t dim : spec.shape) bytes *= static_cast<uint64_t>(dim);
    if (options.max_shard_bytes > 0 && !shards.back().tensors.empty() &&
        shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().tensors.push_back(hf_tensor_name(spec.name));
    shard_bytes += bytes;
  }
  // Every file of the set is staged at once, and may keep its old contents beside it until all
  // are in place: two registered temporaries per file (ref/io/temporary_cleanup.h).
  constexpr size_t kMostShards = (kMaxTemporaries - 4) / 2;
  if (shards.size() > kMostShards) {
    throw ConfigError("a shard size of " + std::to_string(options.max_shard_bytes) +
                      " bytes splits the weights into " + std::to_string(shards.size()) +
                      " shards, more than the " + std::to_string(kMostShards) +
                      " written at once; choose a larger shard size");
  }
  for (size_t i = 0; i < shards.size(); ++i) {
    shards[i].file = shards.size() == 1 ? kHfWeightsFile : shard_file_name(i, shards.size());
  }
  return shards;
}

void export_hf(const ModelConfig& config, const ModelWeights& weights, const fs::path& dir,
               const HfExportOptions& options) {
  check_mixtral_compatible(config, config.name);
  if (options.dtype != DType::kF32 && options.dtype != DType::kBF16) {
    throw ConfigError(std::string("export-hf writes F32 or BF16, not ") +
                      dtype_name(options.dtype));
  }
  std::vector<TensorView> views = weight_views(config, weights, hf_tensor_name);
  std::vector<std::vector<uint16_t>> narrowed;
  if (options.dtype == DType::kBF16) {
    narrowed = narrow_to_bf16(views);
    for (size_t i = 0; i < views.size(); ++i) {
      views[i].dtype = DType::kBF16;
      views[i].bytes = std::as_bytes(std::span<const uint16_t>(narrowed[i]));
    }
  }
  std::map<std::string, const TensorView*> by_name;
  for (const TensorView& view : views) by_name.emplace(view.name, &view);
  const std::vector<HfShard> shards = hf_shards(config, options);

  fs::create_directories(dir);
  std::vector<StagedFile> files;
  json weight_map = json::object();
  uint64_t total_size = 0;
  for (const HfShard& shard : shards) {
    std::vector<TensorView> shard_views;
    for (const std::string& name : shard.tensors) {
      shard_views.push_back(*by_name.at(name));
      weight_map[name] = shard.file;
      total_size += by_name.at(name)->bytes.size();
    }
    files.push_back(stage_safetensors(dir / shard.file, shard_views, {{"format", "pt"}}));
  }
  const bool sharded = shards.size() > 1;
  if (sharded) {
    const std::string index_text =
        json{{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}}.dump(2) + "\n";
    files.push_back(StagedFile(dir / kHfIndexFile, [&](std::ostream& out) { out << index_text; }));
  }
  json hf_config = hf_config_json(config);
  hf_config["torch_dtype"] = options.dtype == DType::kBF16 ? "bfloat16" : "float32";
  const std::string config_text = hf_config.dump(2) + "\n";
  files.push_back(StagedFile(dir / "config.json", [&](std::ostream& out) { out << config_text; }));
  publish_together(files);
  // The other layout's file, left by an earlier export, would make the directory ambiguous.
  fs::remove(dir / (sharded ? kHfWeightsFile : kHfIndexFile));
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
  HfCheckpoint checkpoint = HfCheckpoint::open(dir);
  const ExpertLayout layout = expert_layout(checkpoint);
  check_tensors(checkpoint, model.config, layout);
  model.weights = fill_weights(model.config, [&](const WeightSpec& spec, Tensor& tensor) {
    const Source source = source_of(spec, layout, model.config);
    checkpoint.read_f32(source.tensor, source.first, tensor.values());
    if (non_finite == NonFiniteWeights::kRefuse) {
      check_finite_weight(checkpoint.file_of(source.tensor), source.label, tensor);
    }
  });
  return model;
}

}  // namespace moeref
