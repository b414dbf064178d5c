#include "golden/shaped_op_cases.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <utility>

#include "golden/shaped_op_builders.h"

namespace moeref::golden {

using nlohmann::json;

namespace {

using shaped::Built;
using shaped::Decision;
using shaped::Shape;
using shaped::shape_error;

enum class Kind {
  kCount,            // an integer >= 1
  kCountOrZero,      // an integer >= 0
  kFlag,             // 0 or 1
  kActivation,       // "swiglu" or "gelu"
  kPositiveReal,     // a finite number > 0
  kNonNegativeReal,  // a finite number >= 0
  kUnitInterval,     // a number in (0, 1]
};

struct ParameterSpec {
  const char* key;
  Kind kind;
  json fallback = nullptr;  // null: required
};

using Builder = std::function<Built(const Shape&, const std::string& name, uint32_t seed,
                                    const Kernels& kernels)>;

struct OpSpec {
  const char* op;
  std::vector<ParameterSpec> parameters;
  Builder build;
};

const std::vector<OpSpec>& op_specs() {
  using enum Kind;
  static const std::vector<OpSpec> specs = {
      {"matmul", {{"rows", kCount}, {"in", kCount}, {"out", kCount}}, shaped::matmul},
      {"rms_norm", {{"rows", kCount}, {"d", kCount}}, shaped::rms_norm},
      {"layer_norm", {{"rows", kCount}, {"d", kCount}}, shaped::layer_norm},
      {"rope",
       {{"tokens", kCount},
        {"n_heads", kCount},
        {"head_dim", kCount},
        {"max_position", kCount, 4096},
        {"theta", kPositiveReal, 10000.0}},
       shaped::rope},
      {"softmax", {{"rows", kCount}, {"n", kCount}}, shaped::softmax},
      {"attention",
       {{"new_tokens", kCount},
        {"n_heads", kCount},
        {"n_kv_heads", kCount},
        {"head_dim", kCount},
        {"cached_positions", kCountOrZero}},
       shaped::attention},
      {"cross_attention",
       {{"queries", kCount},
        {"n_heads", kCount},
        {"n_kv_heads", kCount},
        {"head_dim", kCount},
        {"vision_tokens", kCount}},
       shaped::cross_attention},
      {"top_k",
       {{"tokens", kCount}, {"n_experts", kCount}, {"k", kCount}, {"renormalize", kFlag, 1}},
       shaped::top_k},
      {"expert_ffn",
       {{"rows", kCount},
        {"d_model", kCount},
        {"d_ff", kCount},
        {"activation", kActivation, "swiglu"}},
       shaped::expert_ffn},
      {"moe",
       {{"tokens", kCount},
        {"d_model", kCount},
        {"n_experts", kCount},
        {"expert_d_ff", kCount},
        {"top_k", kCount},
        {"capacity_factor", kNonNegativeReal, 0.0},
        {"activation", kActivation, "swiglu"},
        {"renormalize", kFlag, 1}},
       shaped::moe},
      {"sampling",
       {{"positions", kCount},
        {"vocab_size", kCount},
        {"temperature", kPositiveReal},
        {"top_k", kCountOrZero, 0},
        {"top_p", kUnitInterval, 1.0}},
       shaped::sampling},
      {"greedy", {{"rows", kCount}, {"vocab_size", kCount}}, shaped::greedy},
  };
  return specs;
}

const OpSpec& spec_of(const std::string& op) {
  std::string known;
  for (const OpSpec& spec : op_specs()) {
    if (spec.op == op) return spec;
    known += (known.empty() ? "" : ", ") + std::string(spec.op);
  }
  throw std::invalid_argument("op \"" + op + "\" has no generated cases (one of " + known + ")");
}

std::string value_text(const json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// The largest count a shape takes: products of three stay far inside int64_t, positions inside
// int32_t.
constexpr int64_t kMaxCount = int64_t{1} << 20;

// One parameter's value checked against its kind; the error names the parameter and the value.
json checked(const std::string& op, const ParameterSpec& p, const json& value) {
  const auto fail = [&](const std::string& wanted) {
    return shape_error(op, p.key, "must be " + wanted + ", got " + value.dump());
  };
  const bool integral =
      value.is_number_integer() || (value.is_number_float() && std::isfinite(value.get<double>()) &&
                                    std::floor(value.get<double>()) == value.get<double>() &&
                                    std::fabs(value.get<double>()) < 9e15);
  switch (p.kind) {
    case Kind::kCount:
    case Kind::kCountOrZero:
    case Kind::kFlag: {
      const int64_t minimum = p.kind == Kind::kCount ? 1 : 0;
      const char* wanted = p.kind == Kind::kCount  ? "an integer >= 1"
                           : p.kind == Kind::kFlag ? "0 or 1"
                                                   : "an integer >= 0";
      if (value.is_boolean() && p.kind == Kind::kFlag) return value.get<bool>() ? 1 : 0;
      if (!integral) throw fail(wanted);
      const auto n = value.get<int64_t>();
      if (n < minimum || (p.kind == Kind::kFlag && n > 1)) throw fail(wanted);
      if (n > kMaxCount) throw fail("at most " + std::to_string(kMaxCount));
      return n;
    }
    case Kind::kActivation:
      if (value != "swiglu" && value != "gelu") throw fail("\"swiglu\" or \"gelu\"");
      return value;
    case Kind::kPositiveReal:
    case Kind::kNonNegativeReal:
    case Kind::kUnitInterval: {
      const bool number = value.is_number() && std::isfinite(value.get<double>());
      const double v = number ? value.get<double>() : 0.0;
      if (p.kind == Kind::kPositiveReal && !(number && v > 0.0)) throw fail("a number > 0");
      if (p.kind == Kind::kNonNegativeReal && !(number && v >= 0.0)) throw fail("a number >= 0");
      if (p.kind == Kind::kUnitInterval && !(number && v > 0.0 && v <= 1.0)) {
        throw fail("a number in (0, 1]");
      }
      return v;
    }
  }
  throw fail("valid");
}

// Every parameter of the op, checked, defaults filled in, in the op's order.
json checked_shape(const OpSpec& spec, const json& shape) {
  if (!shape.is_object()) {
    throw std::invalid_argument("shape of op " + std::string(spec.op) +
                                " must map parameter names to values, got " + shape.dump());
  }
  std::string names;
  for (const ParameterSpec& p : spec.parameters) {
    names += (names.empty() ? "" : ", ") + std::string(p.key);
  }
  for (const auto& item : shape.items()) {
    const std::string& key = item.key();
    const bool known = std::any_of(spec.parameters.begin(), spec.parameters.end(),
                                   [&](const ParameterSpec& p) { return key == p.key; });
    if (!known) throw shape_error(spec.op, key, "is not a parameter of the op (" + names + ")");
  }
  json values = json::object();
  for (const ParameterSpec& p : spec.parameters) {
    if (!shape.contains(p.key) && p.fallback.is_null()) {
      throw shape_error(spec.op, p.key, "is missing");
    }
    values[p.key] = checked(spec.op, p, shape.contains(p.key) ? shape.at(p.key) : p.fallback);
  }
  return values;
}

// "<op>-<key><value>-..." in the op's order of parameters.
std::string default_name(const OpSpec& spec, const json& shape) {
  std::string name = spec.op;
  for (const ParameterSpec& p : spec.parameters) {
    name.append("-").append(p.key).append(value_text(shape.at(p.key)));
  }
  return name;
}

json finite_or_null(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }

const Decision* tightest(const std::vector<Decision>& decisions) {
  const auto least =
      std::min_element(decisions.begin(), decisions.end(),
                       [](const Decision& a, const Decision& b) { return a.margin < b.margin; });
  return least == decisions.end() ? nullptr : &*least;
}

// The case at one seed, with "generator" and "margins" in its manifest.
Built build_at_seed(const OpSpec& spec, const Shape& shape, const std::string& name, uint32_t seed,
                    double margin, const std::optional<Precision>& resolved_at,
                    const Kernels& kernels) {
  Built built = spec.build(shape, name, seed, kernels);
  json& manifest = built.op_case.manifest;
  manifest["generator"] = {{"shape", shape.values()}, {"seed", seed}};
  const Decision* least = tightest(built.decisions);
  manifest["margins"] = {{"threshold", margin},
                         {"decisions", built.decisions.size()},
                         {"min", least ? finite_or_null(least->margin) : json(nullptr)},
                         {"tightest", least ? json(least->name) : json(nullptr)}};
  if (resolved_at) manifest["margins"]["resolved_at"] = precision_name(*resolved_at);
  return built;
}

std::string margin_text(const Decision& d) {
  char text[64];
  std::snprintf(text, sizeof text, "%.4g", d.margin);
  return "\"" + d.name + "\" (margin " + text + ")";
}

}  // namespace

std::vector<std::string> shaped_op_names() {
  std::vector<std::string> names;
  for (const OpSpec& spec : op_specs()) names.emplace_back(spec.op);
  return names;
}

OpCase build_shaped_op_case(const OpCaseRequest& request, const OpCaseCheck& check) {
  const OpSpec& spec = spec_of(request.op);
  const Shape shape(checked_shape(spec, request.shape));
  if (!(request.margin >= 0.0) || !std::isfinite(request.margin)) {
    throw std::invalid_argument("margin must be a finite number >= 0, got " +
                                std::to_string(request.margin));
  }
  if (request.tries < 1) {
    throw std::invalid_argument("tries must be >= 1, got " + std::to_string(request.tries));
  }
  const std::string name = request.name.empty() ? default_name(spec, shape.values()) : request.name;
  std::optional<Decision> closest;
  std::string refusal;
  for (int64_t i = 0; i < request.tries; ++i) {
    const auto seed = static_cast<uint32_t>(request.seed + static_cast<uint64_t>(i));
    Built built =
        build_at_seed(spec, shape, name, seed, request.margin, request.resolved_at, ref_kernels());
    const Decision* least = tightest(built.decisions);
    if (least != nullptr && !(least->margin > request.margin)) {
      if (!closest || least->margin > closest->margin) closest = *least;
      continue;
    }
    if (!check) return std::move(built.op_case);
    refusal = check(built.op_case);
    if (refusal.empty()) return std::move(built.op_case);
  }
  const std::string seeds = "none of the " + std::to_string(request.tries) + " seeds from " +
                            std::to_string(request.seed);
  if (!refusal.empty()) {
    throw std::runtime_error("op case \"" + name + "\": " + seeds + " resolves every decision at " +
                             precision_name(request.resolved_at.value_or(Precision::kFP32)) +
                             " (last refused: " + refusal + ")");
  }
  char threshold[32];
  std::snprintf(threshold, sizeof threshold, "%.4g", request.margin);
  throw std::runtime_error("op case \"" + name + "\": " + seeds +
                           " keeps every decision's margin above " + threshold +
                           "; the closest still had " + margin_text(closest.value()) +
                           "; ask for a smaller margin, other shapes or more tries");
}

bool is_shaped_op_case(const json& manifest) {
  return manifest.is_object() && manifest.contains("generator");
}

OpCase rebuild_op_case(const GoldenSet& set, const Kernels& kernels) {
  const json& manifest = set.manifest();
  if (!is_shaped_op_case(manifest)) return build_op_case(set.name(), kernels);
  const std::string source = (set.dir() / "manifest.json").string();
  try {
    const OpSpec& spec = spec_of(manifest.at("op").get<std::string>());
    const json& generator = manifest.at("generator");
    const json& margins = manifest.at("margins");
    std::optional<Precision> resolved_at;
    if (margins.contains("resolved_at")) {
      resolved_at = precision_from_name(margins.at("resolved_at").get<std::string>());
    }
    return build_at_seed(spec, Shape(checked_shape(spec, generator.at("shape"))), set.name(),
                         generator.at("seed").get<uint32_t>(),
                         margins.at("threshold").get<double>(), resolved_at, kernels)
        .op_case;
  } catch (const json::exception& e) {
    throw GoldenError(source + ": malformed generated op case: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw GoldenError(source + ": " + e.what());
  }
}

}  // namespace moeref::golden
