#include "ref/config.h"

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
#include <utility>
#include <vector>

namespace moeref {

namespace {

using nlohmann::json;

// Every key a config may hold, in ModelConfig order (the order of docs/config.md's table).
constexpr std::array<std::string_view, 24> kKeys = {"name",
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
                                                    "eos_token_id"};

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

// Reads typed fields out of the config object. Every failure throws
//   <source>: key "<key>": <what is wrong> (<the value>)
class FieldReader {
 public:
  FieldReader(const json& object, const std::string& source) : object_(object), source_(source) {}

  [[noreturn]] void fail(std::string_view key, const std::string& what,
                         const std::string& value) const {
    throw ConfigError(source_ + ": key \"" + std::string(key) + "\": " + what + " (" + value + ")");
  }
  [[noreturn]] void fail(std::string_view key, const std::string& what, int64_t value) const {
    fail(key, what, std::to_string(value));
  }
  [[noreturn]] void fail_missing(std::string_view key, const std::string& why = "") const {
    throw ConfigError(source_ + ": key \"" + std::string(key) + "\": required key is missing" +
                      why);
  }

  bool has(const char* key) const { return object_.contains(key); }

  void reject_unknown_keys() const {
    for (const auto& [key, value] : object_.items()) {
      if (std::find(kKeys.begin(), kKeys.end(), key) != kKeys.end()) continue;
      const auto closest = std::min_element(kKeys.begin(), kKeys.end(), [&](auto a, auto b) {
        return edit_distance(key, a) < edit_distance(key, b);
      });
      if (edit_distance(key, *closest) <= 2) {
        fail(key, "unknown key; did you mean \"" + std::string(*closest) + "\"?", show(value));
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

}  // namespace

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

  check_consistency(reader, c);
  check_sizes_fit(reader, c);
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
  // field is rejected instead. Depth 1 is the top-level object's own keys.
  std::set<std::string> seen_keys;
  const json::parser_callback_t reject_repeated_keys = [&](int depth, json::parse_event_t event,
                                                           json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 &&
        !seen_keys.insert(parsed.get<std::string>()).second) {
      throw ConfigError(source + ": key \"" + parsed.get<std::string>() +
                        "\": appears more than once");
    }
    return true;
  };
  json object;
  try {
    object = json::parse(text, reject_repeated_keys);
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line L, column C: ...".
    const std::string what = e.what();
    const size_t prefix_end = what.find("] ");
    throw ConfigError(source + ": malformed JSON: " +
                      what.substr(prefix_end == std::string::npos ? 0 : prefix_end + 2));
  }
  return config_from_json(object, source);
}

json config_to_json(const ModelConfig& c) {
  return json{{"name", c.name},
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
}

namespace {

auto fields(const ModelConfig& c) {
  return std::tie(c.name, c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim,
                  c.norm, c.norm_eps, c.positions, c.rope_theta, c.ffn_activation, c.n_experts,
                  c.top_k, c.router_renormalize, c.capacity_factor, c.moe_every, c.expert_d_ff,
                  c.dense_d_ff, c.max_seq_len, c.tied_embeddings, c.init_seed, c.init_std,
                  c.eos_token_id);
}

}  // namespace

static_assert(std::tuple_size_v<decltype(fields(ModelConfig{}))> == kKeys.size(),
              "every ModelConfig field is compared, and has a key");

bool operator==(const ModelConfig& a, const ModelConfig& b) { return fields(a) == fields(b); }

}  // namespace moeref
