#include "golden/bug_catalog.h"

#include <algorithm>
#include <stdexcept>

#include "golden/emulated_kernels.h"
#include "golden/kernel_bugs.h"
#include "golden/run_bugs.h"
#include "golden/weight_bugs.h"

namespace moeref::golden {

std::vector<ModelConfig> models_of(const GoldenSet& set) {
  const std::string source = (set.dir() / "manifest.json").string();
  const std::string kind = set.kind();
  const nlohmann::json& manifest = set.manifest();
  if (kind == "model" || kind == "batching") {
    return {config_from_json(manifest.at("config"), source + ": config")};
  }
  if (kind == "speculative") {
    return {config_from_json(manifest.at("target_config"), source + ": target_config"),
            config_from_json(manifest.at("draft_config"), source + ": draft_config")};
  }
  return {};
}

bool Reach::covers(const GoldenSet& set) const {
  const std::string kind = set.kind();
  if (kind == "op") {
    return ops.contains(set.manifest().at("op").get<std::string>()) &&
           (!op_parameters || op_parameters(set.manifest().at("parameters")));
  }
  if (!kinds.contains(kind)) return false;
  if (!model) return true;
  const std::vector<ModelConfig> models = models_of(set);
  return std::any_of(models.begin(), models.end(), model);
}

Bug make_bug(std::string name, std::string description, std::string own_tensor,
             std::vector<std::string> own_op_tensors, Reach reach,
             std::function<Candidate(const GoldenSet&, const Kernels&, Precision)> candidate) {
  Bug bug{std::move(name),
          std::move(description),
          std::move(own_tensor),
          std::move(own_op_tensors),
          {},
          reach,
          {},
          {}};
  bug.run_on = [reach = std::move(reach), candidate = std::move(candidate)](
                   const GoldenSet& set, const Kernels& base,
                   Precision precision) -> std::optional<Candidate> {
    if (!reach.covers(set)) return std::nullopt;
    return candidate(set, base, precision);
  };
  bug.run = [run_on = bug.run_on](const GoldenSet& set, Precision precision) {
    return run_on(set, emulated_kernels(precision), precision);
  };
  return bug;
}

const std::vector<Bug>& bug_catalog() {
  static const std::vector<Bug> catalog = [] {
    std::vector<Bug> bugs = kernel_bugs();
    for (std::vector<Bug> more : {weight_bugs(), run_bugs()}) {
      bugs.insert(bugs.end(), std::make_move_iterator(more.begin()),
                  std::make_move_iterator(more.end()));
    }
    return bugs;
  }();
  return catalog;
}

const Bug& find_bug(const std::string& name) {
  const std::vector<Bug>& bugs = bug_catalog();
  const auto it =
      std::find_if(bugs.begin(), bugs.end(), [&](const Bug& bug) { return bug.name == name; });
  if (it == bugs.end()) throw std::invalid_argument("no bug named \"" + name + "\" in the catalog");
  return *it;
}

std::optional<Candidate> run_exact(const Bug& bug, const GoldenSet& set) {
  return bug.run_on(set, ref_kernels(), Precision::kFP32);
}

bool is_own_tensor(const Bug& bug, const GoldenSet& set, const std::string& name) {
  const std::string_view traced = traced_name(name);
  if (traced.ends_with(bug.own_tensor)) return true;
  for (const std::string& also : bug.also_own) {
    if (traced.ends_with(also)) return true;
  }
  return set.kind() == "op" && std::find(bug.own_op_tensors.begin(), bug.own_op_tensors.end(),
                                         traced) != bug.own_op_tensors.end();
}

}  // namespace moeref::golden
