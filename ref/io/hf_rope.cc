#include "ref/io/hf_rope.h"

#include <algorithm>
#include <cmath>
#include <string_view>
#include <utility>
#include <vector>

#include "ref/io/hf_config.h"

namespace moeref {

using nlohmann::json;

namespace {

double number_value(const json& value, const std::string& key, const std::string& source) {
  if (!value.is_number()) fail_hf_key(source, key, "expected a number (" + value.dump() + ")");
  return value.get<double>();
}

// The keys transformers 5 validates for each rope_type it computes and moeref computes too
// (besides rope_type, type, rope_theta and partial_rotary_factor, which every kind takes).
const std::vector<std::string_view>* hf_scaling_keys(const std::string& type) {
  static const std::vector<std::pair<std::string, std::vector<std::string_view>>> kKinds = {
      {"default", {}},
      {"linear", {"factor"}},
      {"dynamic", {"factor"}},
      {"yarn",
       {"factor", "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow",
        "mscale", "mscale_all_dim", "truncate"}},
      {"llama3",
       {"factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"}},
  };
  for (const auto& [name, keys] : kKinds) {
    if (name == type) return &keys;
  }
  return nullptr;
}

// One of rope_parameters and rope_scaling, as a moeref "rope_scaling" object; its rope_theta
// joins `thetas`.
json scaling_from_section(const json& hf, const std::string& section, int64_t max_positions,
                          std::vector<std::pair<std::string, double>>& thetas,
                          const std::string& source) {
  const json& parameters = hf.at(section);
  if (!parameters.is_object()) {
    fail_hf_key(source, section, "expected an object or null (" + parameters.dump() + ")");
  }
  // transformers reads rope_type, else the legacy type, else "default".
  if (parameters.contains("rope_type") && parameters.contains("type") &&
      parameters["rope_type"] != parameters["type"]) {
    fail_hf_key(source, section + ".type",
                "is " + parameters["type"].dump() + " but " + section + ".rope_type is " +
                    parameters["rope_type"].dump() + "; both must agree");
  }
  std::string type = "default";
  std::string type_key = section + ".rope_type";
  if (parameters.contains("rope_type") || parameters.contains("type")) {
    const char* key = parameters.contains("rope_type") ? "rope_type" : "type";
    type_key = section + "." + key;
    const json& value = parameters.at(key);
    if (!value.is_string())
      fail_hf_key(source, type_key, "expected a string (" + value.dump() + ")");
    type = value.get<std::string>();
  }
  const std::vector<std::string_view>* keys = hf_scaling_keys(type);
  if (keys == nullptr) {
    fail_hf_key(
        source, type_key,
        "moeref computes the RoPE scaling kinds \"default\", \"linear\", \"dynamic\", \"yarn\" "
        "and \"llama3\"; another kind would give a different model (\"" +
            type + "\")");
  }

  json scaling = {{"type", type}};
  for (const auto& [key, value] : parameters.items()) {
    const std::string name = section + "." + key;
    if (key == "rope_type" || key == "type") continue;
    if (key == "rope_theta") {
      thetas.emplace_back(name, number_value(value, name, source));
    } else if (key == "partial_rotary_factor") {
      if (value != 1.0) {
        fail_hf_key(
            source, name,
            "moeref rotates every dimension of a head; only 1.0 is read (" + value.dump() + ")");
      }
    } else if (std::find(keys->begin(), keys->end(), key) == keys->end()) {
      std::string listed;
      for (const std::string_view read : *keys) {
        listed += (listed.empty() ? "" : ", ") + std::string(read);
      }
      fail_hf_key(source, name,
                  "not a parameter transformers reads for rope_type \"" + type + "\" (it reads " +
                      (listed.empty() ? "none" : listed) + "); refused rather than ignored (" +
                      value.dump() + ")");
    } else if (key == "attention_factor" || key == "mscale" || key == "mscale_all_dim" ||
               key == "beta_fast" || key == "beta_slow") {
      // transformers reads these with `.get(key)` (and the betas `or` their default): null, and
      // for the betas 0, is the default.
      const bool beta = key == "beta_fast" || key == "beta_slow";
      if (!value.is_null() && !(beta && value.is_number() && value.get<double>() == 0.0)) {
        scaling[key] = value;
      }
    } else {
      scaling[key] = value;
    }
  }
  if (type == "default") return scaling;
  if (!parameters.contains("factor")) {
    fail_hf_key(source, section + ".factor",
                "missing; transformers requires it for rope_type \"" + type + "\"");
  }
  if (type == "dynamic") {
    scaling["original_max_position_embeddings"] = max_positions;
  } else if ((type == "yarn" || type == "llama3") &&
             !scaling.contains("original_max_position_embeddings")) {
    scaling["original_max_position_embeddings"] = max_positions;
  }
  const json& original = scaling.contains("original_max_position_embeddings")
                             ? scaling["original_max_position_embeddings"]
                             : json();
  if (type == "yarn" && scaling["factor"].is_null() && original.is_number_integer() &&
      original.get<int64_t>() > 0) {
    // DeepSeek-V3's form: the factor is the ratio of the two contexts.
    scaling["factor"] =
        static_cast<double>(max_positions) / static_cast<double>(original.get<int64_t>());
  }
  return scaling;
}

}  // namespace

HfRope rope_from_hf_json(const json& hf, int64_t max_position_embeddings,
                         const std::string& source) {
  std::vector<std::pair<std::string, double>> thetas;
  if (hf.contains("rope_theta")) {
    thetas.emplace_back("rope_theta", number_value(hf.at("rope_theta"), "rope_theta", source));
  }
  if (hf.contains("rope_type")) {
    fail_hf_key(
        source, "rope_type",
        "belongs in rope_parameters; refused at the top level (" + hf.at("rope_type").dump() + ")");
  }
  if (hf.contains("partial_rotary_factor") && hf.at("partial_rotary_factor") != 1.0) {
    fail_hf_key(source, "partial_rotary_factor",
                "moeref rotates every dimension of a head; only 1.0 is read (" +
                    hf.at("partial_rotary_factor").dump() + ")");
  }

  HfRope rope;
  for (const char* section : {"rope_parameters", "rope_scaling"}) {
    if (!hf.contains(section) || hf.at(section).is_null()) continue;
    json scaling = scaling_from_section(hf, section, max_position_embeddings, thetas, source);
    if (rope.section.empty()) {
      rope.rope_scaling = std::move(scaling);
      rope.section = section;
    } else if (scaling != rope.rope_scaling) {
      fail_hf_key(
          source, section,
          "scales RoPE as " + scaling.dump() + " but " + rope.section + " as " +
              rope.rope_scaling.dump() +
              "; transformers 4 reads only rope_scaling and 5 prefers it, so both must agree");
    }
  }
  if (!rope.rope_scaling.is_null() && rope.rope_scaling["type"] == "default") {
    rope.rope_scaling = nullptr;
  }

  rope.rope_theta = thetas.empty() ? kHfDefaultRopeTheta : thetas[0].second;
  for (const auto& [key, theta] : thetas) {
    if (theta != thetas[0].second) {
      fail_hf_key(source, key,
                  "is " + json(theta).dump() + " but " + thetas[0].first + " is " +
                      json(thetas[0].second).dump() +
                      "; transformers versions differ in which one wins, so both must agree");
    }
  }

  // Dynamic scaling has no limit in transformers; moeref's context is factor times the one
  // dynamic scales past. An invalid factor is left for config_from_json to refuse.
  if (!rope.rope_scaling.is_null() && rope.rope_scaling["type"] == "dynamic" &&
      rope.rope_scaling["factor"].is_number() && max_position_embeddings > 0) {
    const double factor = rope.rope_scaling["factor"].get<double>();
    const double context = std::floor(factor * static_cast<double>(max_position_embeddings));
    if (factor >= 1.0 && !(context < 0x1p62)) {
      fail_hf_key(
          source, rope.section + ".factor",
          "dynamic scaling's context, factor * max_position_embeddings = " + json(context).dump() +
              " positions, does not fit in int64 (" + json(factor).dump() + ")");
    }
    if (factor >= 1.0) rope.max_seq_len = static_cast<int64_t>(context);
  }
  return rope;
}

std::string with_hf_rope_names(std::string message, const HfRope& rope) {
  if (rope.section.empty()) return message;
  const auto replace_all = [&](const std::string& from, const std::string& to) {
    for (size_t at = message.find(from); at != std::string::npos;
         at = message.find(from, at + to.size())) {
      message.replace(at, from.size(), to);
    }
  };
  replace_all("\"rope_scaling.type\"", "\"" + rope.section + ".rope_type\"");
  if (rope.rope_scaling.is_object() && rope.rope_scaling.value("type", "") == "dynamic") {
    replace_all("\"rope_scaling.original_max_position_embeddings\"", "\"max_position_embeddings\"");
  }
  replace_all("\"rope_scaling.", "\"" + rope.section + ".");
  return message;
}

void write_hf_rope(const ModelConfig& c, json& hf) {
  hf["rope_theta"] = c.rope_theta;
  const RopeScaling& r = c.rope_scaling;
  if (r.kind == RopeScalingKind::kDefault) return;
  json parameters = {
      {"rope_type", rope_scaling_name(r.kind)}, {"rope_theta", c.rope_theta}, {"factor", r.factor}};
  switch (r.kind) {
    case RopeScalingKind::kDefault:
    case RopeScalingKind::kLinear:
      break;
    case RopeScalingKind::kDynamic:
      // transformers' dynamic scaling starts past max_position_embeddings.
      hf["max_position_embeddings"] = r.original_max_position_embeddings;
      hf["moeref"]["max_seq_len"] = c.max_seq_len;
      break;
    case RopeScalingKind::kYarn:
      parameters["original_max_position_embeddings"] = r.original_max_position_embeddings;
      if (r.attention_factor) parameters["attention_factor"] = *r.attention_factor;
      parameters["beta_fast"] = r.beta_fast;
      parameters["beta_slow"] = r.beta_slow;
      if (r.mscale > 0) parameters["mscale"] = r.mscale;
      if (r.mscale_all_dim > 0) parameters["mscale_all_dim"] = r.mscale_all_dim;
      parameters["truncate"] = r.truncate;
      break;
    case RopeScalingKind::kLlama3:
      parameters["original_max_position_embeddings"] = r.original_max_position_embeddings;
      parameters["low_freq_factor"] = r.low_freq_factor;
      parameters["high_freq_factor"] = r.high_freq_factor;
      break;
  }
  hf["rope_parameters"] = parameters;
}

}  // namespace moeref
