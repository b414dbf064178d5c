#include "ref/io/config.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "ref/io/json_text.h"

namespace moeref {

namespace {

using nlohmann::json;

// Every key a config may hold, in ModelConfig order (the order of docs/config.md's table).
constexpr std::array<std::string_view, 27> kKeys = {"name",
                                                    "vocab_size",
                                                    "d_model",
                                                    "n_layers",
                                                    "n_heads",
                                                    "n_kv_heads",
                                                    "head_dim",
                                                    "norm",
                                                    "norm_eps",
                                                    "positions",
                                                    "rope_theta",
                                                    "rope_scaling",
                                                    "ffn_activation",
                                                    "n_experts",
                                                    "top_k",
                                                    "router_renormalize",
                                                    "capacity_factor",
                                                    "moe_every",
                                                    "expert_d_ff",
                                                    "dense_d_ff",
                                                    "max_seq_len",
                                                    "tied_embeddings",
                                                    "init_seed",
                                                    "init_std",
                                                    "eos_token_id",
                                                    "weights_file",
                                                    "vision"};

// Every key of the "vision" object, in VisionConfig order.
constexpr std::array<std::string_view, 18> kVisionKeys = {"image_size",
                                                          "channels",
                                                          "patch_size",
                                                          "width",
                                                          "layers",
                                                          "heads",
                                                          "mlp_size",
                                                          "norm_eps",
                                                          "mean",
                                                          "std",
                                                          "resampler_latents",
                                                          "resampler_layers",
                                                          "cross_attention_layers",
                                                          "cross_attention_heads",
                                                          "cross_attention_kv_heads",
                                                          "cross_attention_d_ff",
                                                          "cross_attention_qk_norm",
                                                          "gate_init"};

// Every key of the "rope_scaling" object, in RopeScaling order ("type" is its kind).
constexpr std::array<std::string_view, 11> kRopeScalingKeys = {"type",
                                                               "factor",
                                                               "original_max_position_embeddings",
                                                               "attention_factor",
                                                               "beta_fast",
                                                               "beta_slow",
                                                               "mscale",
                                                               "mscale_all_dim",
                                                               "truncate",
                                                               "low_freq_factor",
                                                               "high_freq_factor"};

template <class Enum>
struct EnumName {
  Enum value;
  const char* name;
};

constexpr EnumName<NormKind> kNormNames[] = {{NormKind::kRmsNorm, "rmsnorm"},
                                             {NormKind::kLayerNorm, "layernorm"}};
constexpr EnumName<PositionKind> kPositionNames[] = {{PositionKind::kRope, "rope"},
                                                     {PositionKind::kLearned, "learned"}};
constexpr EnumName<Activation> kActivationNames[] = {{Activation::kSwiGlu, "swiglu"},
                                                     {Activation::kGelu, "gelu"}};
constexpr EnumName<RopeScalingKind> kRopeScalingNames[] = {{RopeScalingKind::kDefault, "default"},
                                                           {RopeScalingKind::kLinear, "linear"},
                                                           {RopeScalingKind::kDynamic, "dynamic"},
                                                           {RopeScalingKind::kYarn, "yarn"},
                                                           {RopeScalingKind::kLlama3, "llama3"}};

template <class Enum>
const char* enum_name(Enum value, std::span<const EnumName<Enum>> names) {
  for (const auto& entry : names) {
    if (entry.value == value) return entry.name;
  }
  throw std::logic_error("enum value without a name");
}

// A JSON value as it appears in messages: its JSON text, cut short if long. NaN and infinities
// (which JSON text cannot hold, but a json built in code can) are spelled out instead of dump()'s
// "null".
std::string show(const json& value) {
  if (value.is_number_float() && !std::isfinite(value.get<double>())) {
    const double number = value.get<double>();
    return std::isnan(number) ? "nan" : number > 0 ? "inf" : "-inf";
  }
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

std::string kind_of(const json& value) {
  if (value.is_number_float()) return "a floating-point number";
  if (value.is_number()) return "an integer";
  const std::string type = value.type_name();
  if (type == "null") return "null";
  if (type == "object" || type == "array") return "an " + type;
  return "a " + type;
}

// Edit distance, to suggest the key a misspelt one was meant to be.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Reads typed fields out of a config object (the top level, or the "vision" object, whose keys are
// named with the prefix "vision."). Every failure throws
//   <source>: key "<prefix><key>": <what is wrong> (<the value>)
class FieldReader {
 public:
  FieldReader(const json& object, const std::string& source,
              std::span<const std::string_view> keys = kKeys, std::string prefix = "")
      : object_(object), source_(source), keys_(keys), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(std::string_view key, const std::string& what,
                         const std::string& value) const {
    throw ConfigError(source_ + ": key \"" + prefix_ + std::string(key) + "\": " + what + " (" +
                      value + ")");
  }
  [[noreturn]] void fail(std::string_view key, const std::string& what, int64_t value) const {
    fail(key, what, std::to_string(value));
  }
  [[noreturn]] void fail_missing(std::string_view key, const std::string& why = "") const {
    throw ConfigError(source_ + ": key \"" + prefix_ + std::string(key) +
                      "\": required key is missing" + why);
  }

  bool has(const char* key) const { return object_.contains(key); }

  void reject_unknown_keys() const {
    // Not a structured binding: clang 14 cannot capture one in the lambda below.
    for (const auto& item : object_.items()) {
      const std::string& key = item.key();
      const auto& value = item.value();
      if (std::find(keys_.begin(), keys_.end(), key) != keys_.end()) continue;
      const auto closest = std::min_element(keys_.begin(), keys_.end(), [&](auto a, auto b) {
        return edit_distance(key, a) < edit_distance(key, b);
      });
      if (edit_distance(key, *closest) <= 2) {
        fail(key, "unknown key; did you mean \"" + prefix_ + std::string(*closest) + "\"?",
             show(value));
      }
      fail(key, "unknown key; docs/config.md lists the keys", show(value));
    }
  }

  int64_t integer(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    const json* value = find(key, fallback.has_value());
    if (value == nullptr) return *fallback;
    if (value->is_number_unsigned() &&
        value->get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()}) {
      fail(key, "integer out of the int64 range", show(*value));
    }
    if (value->is_number_integer()) return value->get<int64_t>();
    reject_non_integer(key, *value, 0x1p63);
  }

  // A size: an integer that must be positive.
  int64_t size(const char* key) const {
    const int64_t value = integer(key);
    if (value <= 0) fail(key, "must be positive", value);
    return value;
  }

  uint64_t unsigned_integer(const char* key, uint64_t fallback) const {
    const json* value = find(key, true);
    if (value == nullptr) return fallback;
    if (value->is_number_unsigned()) return value->get<uint64_t>();
    if (value->is_number_integer()) {
      const int64_t number = value->get<int64_t>();
      if (number < 0) fail(key, "must be a non-negative integer (at most 2^64-1)", number);
      return static_cast<uint64_t>(number);
    }
    reject_non_integer(key, *value, 0x1p64);
  }

  double number(const char* key, double fallback) const {
    const json* value = find(key, true);
    if (value == nullptr) return fallback;
    if (!value->is_number()) fail(key, "expected a number, got " + kind_of(*value), show(*value));
    return value->get<double>();
  }

  bool boolean(const char* key, bool fallback) const {
    const json* value = find(key, true);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) {
      fail(key, "expected true or false, got " + kind_of(*value), show(*value));
    }
    return value->get<bool>();
  }

  std::string string(const char* key, const std::string& fallback) const {
    const json* value = find(key, true);
    if (value == nullptr) return fallback;
    if (!value->is_string()) fail(key, "expected a string, got " + kind_of(*value), show(*value));
    return value->get<std::string>();
  }

  // A required JSON array of numbers (T = double) or integers (T = int64_t).
  template <class T>
  std::vector<T> array(const char* key) const {
    const json* value = find(key, false);
    if (!value->is_array()) fail(key, "expected an array, got " + kind_of(*value), show(*value));
    constexpr bool kIntegers = std::is_integral_v<T>;
    std::vector<T> result;
    for (const json& element : *value) {
      const bool fits =
          kIntegers ? element.is_number_integer() &&
                          !(element.is_number_unsigned() &&
                            element.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()})
                    : element.is_number();
      if (!fits) {
        fail(key,
             std::string("expected an array of ") + (kIntegers ? "integers" : "numbers") +
                 ", found " + kind_of(element),
             show(*value));
      }
      result.push_back(element.get<T>());
    }
    return result;
  }

  template <class Enum>
  Enum enumeration(const char* key, std::span<const EnumName<Enum>> names, Enum fallback) const {
    const std::string text = string(key, enum_name(fallback, names));
    std::string allowed;
    for (const auto& entry : names) {
      if (entry.name == text) return entry.value;
      allowed += (allowed.empty() ? "\"" : ", \"") + std::string(entry.name) + "\"";
    }
    fail(key, "must be one of " + allowed, show(json(text)));
  }

 private:
  const json* find(const char* key, bool optional) const {
    const auto it = object_.find(key);
    if (it != object_.end()) return &*it;
    if (!optional) fail_missing(key);
    return nullptr;
  }

  // `value` is not a JSON integer: say whether it is a whole number past `limit` (the JSON
  // reader stores integers too large for 64 bits as doubles) or simply the wrong type.
  [[noreturn]] void reject_non_integer(const char* key, const json& value, double limit) const {
    if (value.is_number_float()) {
      const double number = value.get<double>();
      if (std::isfinite(number) && number == std::trunc(number) && std::abs(number) >= limit) {
        fail(key,
             limit > 0x1p63 ? "integer out of the uint64 range" : "integer out of the int64 range",
             show(value));
      }
    }
    fail(key, "expected an integer, got " + kind_of(value), show(value));
  }

  const json& object_;
  const std::string& source_;
  std::span<const std::string_view> keys_;
  std::string prefix_;
};

// The product of config fields, or a ConfigError naming the first factor's key if it overflows
// int64. Factors are positive, except dense_d_ff (0 when unused), which callers list first; so
// the product overflows exactly when some partial product does.
int64_t checked_product(const FieldReader& reader,
                        std::initializer_list<std::pair<const char*, int64_t>> factors) {
  int64_t product = 1;
  std::string names;
  std::string values;
  bool overflow = false;
  for (const auto& [name, value] : factors) {
    overflow = overflow || __builtin_mul_overflow(product, value, &product);
    names += (names.empty() ? "" : " * ") + std::string(name);
    values += (values.empty() ? "" : " * ") + std::to_string(value);
  }
  if (overflow) {
    const auto& [key, value] = *factors.begin();
    reader.fail(key, names + " = " + values + " overflows int64", value);
  }
  return product;
}

// Checks, once, that every weight count and the per-sequence KV cache size fit in int64, so
// that code downstream (allocation, parameter counts, FLOP estimates) may multiply sizes freely.
// The total is an upper bound on the weights of any layout the config describes: untied
// embeddings, learned positions, a dense FFN in every layer as well as the experts, norms with
// biases.
void check_sizes_fit(const FieldReader& reader, const ModelConfig& c) {
  const int64_t matrices = c.ffn_activation == Activation::kSwiGlu ? 3 : 2;
  checked_product(reader, {{"max_seq_len", c.max_seq_len},
                           {"n_layers", c.n_layers},
                           {"n_kv_heads", c.n_kv_heads},
                           {"head_dim", c.head_dim},
                           {"2 (K and V)", 2}});
  const int64_t embedding =
      checked_product(reader, {{"vocab_size", c.vocab_size}, {"d_model", c.d_model}});
  const int64_t terms[] = {
      embedding,
      embedding,
      checked_product(reader, {{"max_seq_len", c.max_seq_len}, {"d_model", c.d_model}}),
      checked_product(reader, {{"n_heads", c.n_heads},
                               {"head_dim", c.head_dim},
                               {"d_model", c.d_model},
                               {"n_layers", c.n_layers},
                               {"2 (q_proj and o_proj)", 2}}),
      checked_product(reader, {{"n_kv_heads", c.n_kv_heads},
                               {"head_dim", c.head_dim},
                               {"d_model", c.d_model},
                               {"n_layers", c.n_layers},
                               {"2 (k_proj and v_proj)", 2}}),
      checked_product(reader, {{"expert_d_ff", c.expert_d_ff},
                               {"d_model", c.d_model},
                               {"n_experts", c.n_experts},
                               {"n_layers", c.n_layers},
                               {"matrices per expert", matrices}}),
      checked_product(reader, {{"dense_d_ff", c.dense_d_ff},
                               {"d_model", c.d_model},
                               {"n_layers", c.n_layers},
                               {"matrices per FFN", matrices}}),
      checked_product(
          reader, {{"n_experts", c.n_experts}, {"d_model", c.d_model}, {"n_layers", c.n_layers}}),
      checked_product(reader,
                      {{"n_layers", c.n_layers}, {"d_model", c.d_model}, {"4 (two norms)", 4}}),
      checked_product(reader, {{"d_model", c.d_model}, {"2 (final norm)", 2}}),
  };
  int64_t total = 0;
  for (const int64_t term : terms) {
    if (__builtin_add_overflow(total, term, &total)) {
      reader.fail("d_model", "the total weight count (embeddings, attention, FFNs) overflows int64",
                  c.d_model);
    }
  }
}

// Rules that relate several fields. Each names the key a user would most likely change.
void check_consistency(const FieldReader& reader, const ModelConfig& c) {
  if (c.n_heads % c.n_kv_heads != 0) {
    reader.fail("n_kv_heads",
                "n_heads (" + std::to_string(c.n_heads) + ") must be a multiple of n_kv_heads",
                c.n_kv_heads);
  }
  if (c.positions == PositionKind::kRope && c.head_dim % 2 != 0) {
    reader.fail("head_dim",
                "must be even with positions \"rope\", which rotates pairs (i, i + head_dim/2)",
                c.head_dim);
  }
  if (c.top_k > c.n_experts) {
    reader.fail("top_k", "must be at most n_experts (" + std::to_string(c.n_experts) + ")",
                c.top_k);
  }
  if (c.moe_every > c.n_layers) {
    reader.fail("moe_every",
                "must be at most n_layers (" + std::to_string(c.n_layers) +
                    "), else no layer is MoE (layer l is MoE iff (l + 1) % moe_every == 0)",
                c.moe_every);
  }
  if (c.moe_every > 1) {
    const std::string why = " (layers are dense where (l + 1) % moe_every != 0, moe_every = " +
                            std::to_string(c.moe_every) + ")";
    if (!reader.has("dense_d_ff")) reader.fail_missing("dense_d_ff", why);
    if (c.dense_d_ff <= 0) reader.fail("dense_d_ff", "must be positive" + why, c.dense_d_ff);
  } else if (c.dense_d_ff != 0) {
    reader.fail("dense_d_ff", "must be 0 or absent when every layer is MoE (moe_every = 1)",
                c.dense_d_ff);
  }
  if (c.eos_token_id < -1 || c.eos_token_id >= c.vocab_size) {
    reader.fail(
        "eos_token_id",
        "must be -1 (none) or a token id below vocab_size (" + std::to_string(c.vocab_size) + ")",
        c.eos_token_id);
  }
}

// `allow_zero`: the number must be >= 0, else > 0.
void require_finite(const FieldReader& reader, const char* key, double value, bool allow_zero) {
  if (!std::isfinite(value) || value < 0 || (value == 0 && !allow_zero)) {
    reader.fail(key, allow_zero ? "must be a finite number >= 0" : "must be a finite number > 0",
                show(json(value)));
  }
}

// The keys of "rope_scaling" that each kind reads besides "type": transformers' lists, and for
// dynamic the context it scales past (transformers' max_position_embeddings).
std::span<const std::string_view> rope_scaling_keys(RopeScalingKind kind) {
  static constexpr std::string_view kLinear[] = {"factor"};
  static constexpr std::string_view kDynamic[] = {"factor", "original_max_position_embeddings"};
  static constexpr std::string_view kYarn[] = {
      "factor",           "original_max_position_embeddings",
      "attention_factor", "beta_fast",
      "beta_slow",        "mscale",
      "mscale_all_dim",   "truncate"};
  static constexpr std::string_view kLlama3[] = {"factor", "original_max_position_embeddings",
                                                 "low_freq_factor", "high_freq_factor"};
  switch (kind) {
    case RopeScalingKind::kDefault:
      return {};
    case RopeScalingKind::kLinear:
      return kLinear;
    case RopeScalingKind::kDynamic:
      return kDynamic;
    case RopeScalingKind::kYarn:
      return kYarn;
    case RopeScalingKind::kLlama3:
      return kLlama3;
  }
  throw std::logic_error("rope scaling kind without keys");
}

// The "vision" object. Sizes are positive; the tower's shapes must tile (patch_size divides
// image_size, heads divide width); mean and std have one entry per channel; the cross-attention
// layers are distinct decoder layers in increasing order.
VisionConfig vision_from_json(const json& object, const std::string& source,
                              const ModelConfig& text) {
  if (!object.is_object()) {
    throw ConfigError(source + ": key \"vision\": expected an object of keys, got " +
                      kind_of(object) + " (" + show(object) + ")");
  }
  const FieldReader reader(object, source, kVisionKeys, "vision.");
  reader.reject_unknown_keys();
  const VisionConfig defaults;
  VisionConfig v;
  v.image_size = reader.size("image_size");
  v.channels = reader.size("channels");
  v.patch_size = reader.size("patch_size");
  v.width = reader.size("width");
  v.layers = reader.size("layers");
  v.heads = reader.size("heads");
  v.mlp_size = reader.size("mlp_size");
  v.norm_eps = reader.number("norm_eps", defaults.norm_eps);
  require_finite(reader, "norm_eps", v.norm_eps, false);
  v.mean = reader.array<double>("mean");
  v.std = reader.array<double>("std");
  v.resampler_latents = reader.integer("resampler_latents", defaults.resampler_latents);
  v.resampler_layers = reader.integer("resampler_layers", defaults.resampler_layers);
  v.cross_attention_layers = reader.array<int64_t>("cross_attention_layers");
  v.cross_attention_heads = reader.size("cross_attention_heads");
  v.cross_attention_kv_heads = reader.size("cross_attention_kv_heads");
  v.cross_attention_d_ff = reader.size("cross_attention_d_ff");
  v.cross_attention_qk_norm =
      reader.boolean("cross_attention_qk_norm", defaults.cross_attention_qk_norm);
  v.gate_init = reader.number("gate_init", defaults.gate_init);
  if (!std::isfinite(v.gate_init)) {
    reader.fail("gate_init", "must be a finite number", show(json(v.gate_init)));
  }

  if (v.image_size % v.patch_size != 0) {
    reader.fail("patch_size",
                "must divide image_size (" + std::to_string(v.image_size) +
                    "), so that the patches tile the image",
                v.patch_size);
  }
  if (v.width % v.heads != 0) {
    reader.fail("heads", "must divide width (" + std::to_string(v.width) + ")", v.heads);
  }
  for (const char* key : {"mean", "std"}) {
    const std::vector<double>& values = std::string_view(key) == "mean" ? v.mean : v.std;
    if (static_cast<int64_t>(values.size()) != v.channels) {
      reader.fail(key,
                  "must have one entry per channel (channels = " + std::to_string(v.channels) + ")",
                  show(object.at(key)));
    }
    for (const double value : values) {
      const bool bad = !std::isfinite(value) || (std::string_view(key) == "std" && value <= 0);
      if (bad) {
        reader.fail(key,
                    std::string_view(key) == "std" ? "every entry must be a finite number > 0"
                                                   : "every entry must be a finite number",
                    show(object.at(key)));
      }
    }
  }
  if (v.resampler_latents < 0) {
    reader.fail("resampler_latents", "must be 0 (no resampler) or positive", v.resampler_latents);
  }
  if (v.resampler_latents > 0 && v.resampler_layers <= 0) {
    reader.fail("resampler_layers", "must be positive when resampler_latents > 0",
                v.resampler_layers);
  }
  if (v.resampler_latents == 0 && v.resampler_layers != 0) {
    reader.fail("resampler_layers", "must be 0 or absent when resampler_latents is 0",
                v.resampler_layers);
  }
  if (v.cross_attention_layers.empty()) {
    reader.fail("cross_attention_layers",
                "must name at least one decoder layer, else the image is never read",
                show(object.at("cross_attention_layers")));
  }
  for (size_t i = 0; i < v.cross_attention_layers.size(); ++i) {
    const int64_t layer = v.cross_attention_layers[i];
    if (layer < 0 || layer >= text.n_layers) {
      reader.fail("cross_attention_layers",
                  "layer " + std::to_string(layer) + " is not a decoder layer (0.." +
                      std::to_string(text.n_layers - 1) + ")",
                  show(object.at("cross_attention_layers")));
    }
    if (i > 0 && layer <= v.cross_attention_layers[i - 1]) {
      reader.fail("cross_attention_layers", "layers must be distinct and in increasing order",
                  show(object.at("cross_attention_layers")));
    }
  }
  if (v.cross_attention_heads % v.cross_attention_kv_heads != 0) {
    reader.fail("cross_attention_kv_heads",
                "cross_attention_heads (" + std::to_string(v.cross_attention_heads) +
                    ") must be a multiple of cross_attention_kv_heads",
                v.cross_attention_kv_heads);
  }
  // Every vision weight count fits in int64 (the largest are the patch embedding, the tower's
  // matrices, and the gated blocks' attention and FFN).
  checked_product(reader, {{"channels", v.channels},
                           {"patch_size", v.patch_size},
                           {"patch_size", v.patch_size},
                           {"width", v.width}});
  checked_product(reader,
                  {{"image_size", v.image_size}, {"image_size", v.image_size}, {"width", v.width}});
  checked_product(reader, {{"mlp_size", v.mlp_size},
                           {"width", v.width},
                           {"layers", v.layers},
                           {"6 (attention, MLP)", 6}});
  checked_product(
      reader,
      {{"width", v.width}, {"width", v.width}, {"layers", v.layers}, {"4 (q, k, v, o)", 4}});
  checked_product(reader, {{"width", v.width}, {"d_model (the projector)", text.d_model}});
  // The tower's attention FLOPs (ref/model/stats.h): 4 * N^2 * width * layers, N = (image_size /
  // patch_size)^2 patches.
  const int64_t grid = v.image_size / v.patch_size;
  checked_product(reader, {{"width", v.width},
                           {"image_size / patch_size", grid},
                           {"image_size / patch_size", grid},
                           {"image_size / patch_size", grid},
                           {"image_size / patch_size", grid},
                           {"layers", v.layers},
                           {"4 (q.k and p.v)", 4}});
  checked_product(
      reader, {{"cross_attention_d_ff", v.cross_attention_d_ff},
               {"cross_attention_layers", static_cast<int64_t>(v.cross_attention_layers.size())},
               {"d_model", text.d_model},
               {"3 (gate, up, down)", 3}});
  checked_product(
      reader, {{"cross_attention_heads", v.cross_attention_heads},
               {"head_dim", text.head_dim},
               {"d_model", text.d_model},
               {"4 (q, k, v, o)", 4},
               {"cross_attention_layers", static_cast<int64_t>(v.cross_attention_layers.size())}});
  if (v.resampler_latents > 0) {
    checked_product(reader, {{"resampler_latents", v.resampler_latents}, {"width", v.width}});
  }
  return v;
}

}  // namespace

RopeScaling rope_scaling_from_json(const json& object, const std::string& source, int64_t head_dim,
                                   double rope_theta) {
  if (!object.is_object()) {
    throw ConfigError(source + ": key \"rope_scaling\": expected an object of keys, got " +
                      kind_of(object) + " (" + show(object) + ")");
  }
  const FieldReader reader(object, source, kRopeScalingKeys, "rope_scaling.");
  reader.reject_unknown_keys();
  if (!reader.has("type")) reader.fail_missing("type");
  const RopeScaling defaults;
  RopeScaling r;
  r.kind = reader.enumeration<RopeScalingKind>("type", kRopeScalingNames, defaults.kind);
  const std::span<const std::string_view> read = rope_scaling_keys(r.kind);
  const std::string type_name = rope_scaling_name(r.kind);
  for (const auto& item : object.items()) {
    if (item.key() == "type" || std::find(read.begin(), read.end(), item.key()) != read.end()) {
      continue;
    }
    std::string listed;
    for (const std::string_view key : read)
      listed += (listed.empty() ? "" : ", ") + std::string(key);
    reader.fail(item.key(),
                "not a parameter of type \"" + type_name + "\" (it reads " +
                    (listed.empty() ? std::string("none") : listed) + ")",
                show(item.value()));
  }
  if (r.kind == RopeScalingKind::kDefault) return r;

  const auto required_number = [&](const char* key) {
    if (!reader.has(key)) {
      reader.fail_missing(key, " (type \"" + type_name + "\" reads it)");
    }
    return reader.number(key, 0.0);
  };
  const auto at_least = [&](const char* key, double value, double bound, const std::string& what) {
    if (!std::isfinite(value) || value < bound) {
      reader.fail(key, "must be a finite number >= " + what, show(json(value)));
    }
  };
  const auto positive = [&](const char* key, double value) {
    if (!std::isfinite(value) || value <= 0) {
      reader.fail(key, "must be a finite number > 0", show(json(value)));
    }
  };

  r.factor = required_number("factor");
  at_least("factor", r.factor, 1.0, "1 (it stretches the context)");
  if (r.kind == RopeScalingKind::kLinear) return r;

  if (!reader.has("original_max_position_embeddings")) {
    reader.fail_missing("original_max_position_embeddings",
                        " (type \"" + type_name + "\" reads it)");
  }
  r.original_max_position_embeddings = reader.size("original_max_position_embeddings");
  if (r.kind == RopeScalingKind::kDynamic && head_dim < 4) {
    reader.fail("type",
                "dynamic raises the base to the power head_dim / (head_dim - 2), so head_dim (" +
                    std::to_string(head_dim) + ") must be at least 4",
                show(json(type_name)));
  }
  if (r.kind == RopeScalingKind::kYarn) {
    if (reader.has("attention_factor")) {
      r.attention_factor = reader.number("attention_factor", 0.0);
      positive("attention_factor", *r.attention_factor);
    }
    r.beta_fast = reader.number("beta_fast", defaults.beta_fast);
    positive("beta_fast", r.beta_fast);
    r.beta_slow = reader.number("beta_slow", defaults.beta_slow);
    positive("beta_slow", r.beta_slow);
    if (r.beta_fast < r.beta_slow) {
      reader.fail("beta_fast",
                  "must be at least beta_slow (" + show(json(r.beta_slow)) +
                      "): the ramp runs from beta_fast rotations down to beta_slow",
                  show(json(r.beta_fast)));
    }
    r.mscale = reader.number("mscale", defaults.mscale);
    at_least("mscale", r.mscale, 0.0, "0");
    r.mscale_all_dim = reader.number("mscale_all_dim", defaults.mscale_all_dim);
    at_least("mscale_all_dim", r.mscale_all_dim, 0.0, "0");
    r.truncate = reader.boolean("truncate", defaults.truncate);
    if (rope_theta == 1.0) {
      reader.fail("type", "yarn divides by ln(rope_theta), so rope_theta must not be 1",
                  show(json(type_name)));
    }
  }
  if (r.kind == RopeScalingKind::kLlama3) {
    r.low_freq_factor = required_number("low_freq_factor");
    positive("low_freq_factor", r.low_freq_factor);
    r.high_freq_factor = required_number("high_freq_factor");
    if (!std::isfinite(r.high_freq_factor) || r.high_freq_factor <= r.low_freq_factor) {
      reader.fail("high_freq_factor",
                  "must be a finite number > low_freq_factor (" + show(json(r.low_freq_factor)) +
                      "): the band between them is interpolated",
                  show(json(r.high_freq_factor)));
    }
  }
  return r;
}

bool VisionConfig::has_cross_attention(int64_t layer) const {
  return cross_attention_index(layer) >= 0;
}

int64_t VisionConfig::cross_attention_index(int64_t layer) const {
  const auto it = std::find(cross_attention_layers.begin(), cross_attention_layers.end(), layer);
  return it == cross_attention_layers.end() ? -1 : it - cross_attention_layers.begin();
}

ModelConfig config_from_json(const json& object, const std::string& source) {
  if (!object.is_object()) {
    throw ConfigError(source + ": a config must be a JSON object of keys, got " + kind_of(object) +
                      " (" + show(object) + ")");
  }
  const FieldReader reader(object, source);
  reader.reject_unknown_keys();

  const ModelConfig defaults;
  ModelConfig c;
  c.name = reader.string("name", defaults.name);
  c.vocab_size = reader.size("vocab_size");
  c.d_model = reader.size("d_model");
  c.n_layers = reader.size("n_layers");
  c.n_heads = reader.size("n_heads");
  c.n_kv_heads = reader.size("n_kv_heads");
  c.head_dim = reader.size("head_dim");
  c.norm = reader.enumeration<NormKind>("norm", kNormNames, defaults.norm);
  c.norm_eps = reader.number("norm_eps", defaults.norm_eps);
  require_finite(reader, "norm_eps", c.norm_eps, false);
  c.positions = reader.enumeration<PositionKind>("positions", kPositionNames, defaults.positions);
  c.rope_theta = reader.number("rope_theta", defaults.rope_theta);
  require_finite(reader, "rope_theta", c.rope_theta, false);
  c.ffn_activation =
      reader.enumeration<Activation>("ffn_activation", kActivationNames, defaults.ffn_activation);
  c.n_experts = reader.size("n_experts");
  c.top_k = reader.size("top_k");
  c.router_renormalize = reader.boolean("router_renormalize", defaults.router_renormalize);
  c.capacity_factor = reader.number("capacity_factor", defaults.capacity_factor);
  require_finite(reader, "capacity_factor", c.capacity_factor, true);
  c.moe_every = reader.integer("moe_every", defaults.moe_every);
  if (c.moe_every < 1) reader.fail("moe_every", "must be at least 1", c.moe_every);
  c.expert_d_ff = reader.size("expert_d_ff");
  c.dense_d_ff = reader.integer("dense_d_ff", defaults.dense_d_ff);
  c.max_seq_len = reader.size("max_seq_len");
  c.tied_embeddings = reader.boolean("tied_embeddings", defaults.tied_embeddings);
  c.init_seed = reader.unsigned_integer("init_seed", defaults.init_seed);
  c.init_std = reader.number("init_std", defaults.init_std);
  require_finite(reader, "init_std", c.init_std, true);
  c.eos_token_id = reader.integer("eos_token_id", defaults.eos_token_id);
  c.weights_file = reader.string("weights_file", defaults.weights_file);
  if (reader.has("weights_file") && c.weights_file.empty()) {
    reader.fail("weights_file", "must name a safetensors file (omit the key for seeded weights)",
                "\"\"");
  }

  check_consistency(reader, c);
  check_sizes_fit(reader, c);
  if (object.contains("rope_scaling")) {
    c.rope_scaling =
        rope_scaling_from_json(object.at("rope_scaling"), source, c.head_dim, c.rope_theta);
  }
  if (object.contains("vision")) c.vision = vision_from_json(object.at("vision"), source, c);
  return c;
}

ModelConfig load_config(const std::filesystem::path& path) {
  const std::string source = path.string();
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    throw ConfigError(source + ": cannot read a config: is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(source + ": cannot open: " + std::strerror(errno));
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw ConfigError(source + ": cannot read: " + std::strerror(errno));

  // nlohmann keeps the last of repeated keys silently; a config that says two things about one
  // field is rejected instead. Depth 1 is the top-level object's own keys, depth 2 those of an
  // object inside it ("rope_scaling", "vision"), named "<outer>.<inner>".
  std::set<std::string> seen_keys;
  std::string outer_key;
  const json::parser_callback_t reject_repeated_keys = [&](int depth, json::parse_event_t event,
                                                           json& parsed) {
    if (event != json::parse_event_t::key || depth > 2) return true;
    if (depth == 1) outer_key = parsed.get<std::string>();
    const std::string key = depth == 1 ? outer_key : outer_key + "." + parsed.get<std::string>();
    if (!seen_keys.insert(key).second) {
      throw ConfigError(source + ": key \"" + key + "\": appears more than once");
    }
    return true;
  };
  json object;
  try {
    object = parse_json_text(text, reject_repeated_keys);
  } catch (const JsonTextError& e) {
    throw ConfigError(source + ": " + e.what());
  }
  return config_from_json(object, source);
}

json rope_scaling_to_json(const RopeScaling& r) {
  json scaling{{"type", rope_scaling_name(r.kind)}};
  for (const std::string_view key : rope_scaling_keys(r.kind)) {
    if (key == "factor") scaling["factor"] = r.factor;
    if (key == "original_max_position_embeddings") {
      scaling["original_max_position_embeddings"] = r.original_max_position_embeddings;
    }
    if (key == "attention_factor" && r.attention_factor) {
      scaling["attention_factor"] = *r.attention_factor;
    }
    if (key == "beta_fast") scaling["beta_fast"] = r.beta_fast;
    if (key == "beta_slow") scaling["beta_slow"] = r.beta_slow;
    if (key == "mscale") scaling["mscale"] = r.mscale;
    if (key == "mscale_all_dim") scaling["mscale_all_dim"] = r.mscale_all_dim;
    if (key == "truncate") scaling["truncate"] = r.truncate;
    if (key == "low_freq_factor") scaling["low_freq_factor"] = r.low_freq_factor;
    if (key == "high_freq_factor") scaling["high_freq_factor"] = r.high_freq_factor;
  }
  return scaling;
}

json config_to_json(const ModelConfig& c) {
  json config{{"name", c.name},
              {"vocab_size", c.vocab_size},
              {"d_model", c.d_model},
              {"n_layers", c.n_layers},
              {"n_heads", c.n_heads},
              {"n_kv_heads", c.n_kv_heads},
              {"head_dim", c.head_dim},
              {"norm", enum_name<NormKind>(c.norm, kNormNames)},
              {"norm_eps", c.norm_eps},
              {"positions", enum_name<PositionKind>(c.positions, kPositionNames)},
              {"rope_theta", c.rope_theta},
              {"ffn_activation", enum_name<Activation>(c.ffn_activation, kActivationNames)},
              {"n_experts", c.n_experts},
              {"top_k", c.top_k},
              {"router_renormalize", c.router_renormalize},
              {"capacity_factor", c.capacity_factor},
              {"moe_every", c.moe_every},
              {"expert_d_ff", c.expert_d_ff},
              {"dense_d_ff", c.dense_d_ff},
              {"max_seq_len", c.max_seq_len},
              {"tied_embeddings", c.tied_embeddings},
              {"init_seed", c.init_seed},
              {"init_std", c.init_std},
              {"eos_token_id", c.eos_token_id}};
  if (c.rope_scaling.kind != RopeScalingKind::kDefault) {
    config["rope_scaling"] = rope_scaling_to_json(c.rope_scaling);
  }
  if (!c.weights_file.empty()) config["weights_file"] = c.weights_file;
  if (c.vision) {
    const VisionConfig& v = *c.vision;
    config["vision"] = json{{"image_size", v.image_size},
                            {"channels", v.channels},
                            {"patch_size", v.patch_size},
                            {"width", v.width},
                            {"layers", v.layers},
                            {"heads", v.heads},
                            {"mlp_size", v.mlp_size},
                            {"norm_eps", v.norm_eps},
                            {"mean", v.mean},
                            {"std", v.std},
                            {"resampler_latents", v.resampler_latents},
                            {"resampler_layers", v.resampler_layers},
                            {"cross_attention_layers", v.cross_attention_layers},
                            {"cross_attention_heads", v.cross_attention_heads},
                            {"cross_attention_kv_heads", v.cross_attention_kv_heads},
                            {"cross_attention_d_ff", v.cross_attention_d_ff},
                            {"cross_attention_qk_norm", v.cross_attention_qk_norm},
                            {"gate_init", v.gate_init}};
  }
  return config;
}

namespace {

auto fields(const ModelConfig& c) {
  return std::tie(c.name, c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim,
                  c.norm, c.norm_eps, c.positions, c.rope_theta, c.rope_scaling, c.ffn_activation,
                  c.n_experts, c.top_k, c.router_renormalize, c.capacity_factor, c.moe_every,
                  c.expert_d_ff, c.dense_d_ff, c.max_seq_len, c.tied_embeddings, c.init_seed,
                  c.init_std, c.eos_token_id, c.weights_file, c.vision);
}

auto rope_scaling_fields(const RopeScaling& r) {
  return std::tie(r.kind, r.factor, r.original_max_position_embeddings, r.attention_factor,
                  r.beta_fast, r.beta_slow, r.mscale, r.mscale_all_dim, r.truncate,
                  r.low_freq_factor, r.high_freq_factor);
}

auto vision_fields(const VisionConfig& v) {
  return std::tie(v.image_size, v.channels, v.patch_size, v.width, v.layers, v.heads, v.mlp_size,
                  v.norm_eps, v.mean, v.std, v.resampler_latents, v.resampler_layers,
                  v.cross_attention_layers, v.cross_attention_heads, v.cross_attention_kv_heads,
                  v.cross_attention_d_ff, v.cross_attention_qk_norm, v.gate_init);
}

}  // namespace

static_assert(std::tuple_size_v<decltype(fields(ModelConfig{}))> == kKeys.size(),
              "every ModelConfig field is compared, and has a key");
static_assert(std::tuple_size_v<decltype(rope_scaling_fields(RopeScaling{}))> ==
                  kRopeScalingKeys.size(),
              "every RopeScaling field is compared, and has a key");
static_assert(std::tuple_size_v<decltype(vision_fields(VisionConfig{}))> == kVisionKeys.size(),
              "every VisionConfig field is compared, and has a key");

const char* rope_scaling_name(RopeScalingKind kind) {
  return enum_name<RopeScalingKind>(kind, kRopeScalingNames);
}

bool operator==(const RopeScaling& a, const RopeScaling& b) {
  return rope_scaling_fields(a) == rope_scaling_fields(b);
}

bool operator==(const VisionConfig& a, const VisionConfig& b) {
  return vision_fields(a) == vision_fields(b);
}

bool operator==(const ModelConfig& a, const ModelConfig& b) { return fields(a) == fields(b); }

}  // namespace moeref
