#include "golden/verify.h"

#include <cstdio>

#include "golden/batching_case.h"
#include "golden/calibration.h"
#include "golden/golden_set.h"
#include "golden/op_cases.h"
#include "golden/resolution.h"
#include "golden/speculative_case.h"
#include "ref/io/atomic_file.h"

namespace moeref::golden {

namespace fs = std::filesystem;

namespace {

std::vector<ExpectedTensor> model_tensor_kinds(const std::vector<TensorRecord>& trace) {
  std::vector<ExpectedTensor> kinds;
  for (const TensorRecord& record : trace) {
    const TensorKind kind = classify_model_tensor(record.name);
    kinds.push_back({record.name, kind.op, kind.tolerance});
  }
  return kinds;
}

// The first difference between regenerated records and a committed file, or "".
std::string first_difference(const std::vector<TensorRecord>& regenerated,
                             const SafetensorsFile& committed, const std::string& file) {
  const std::vector<TensorRecord>& stored = committed.tensors();
  for (size_t i = 0; i < std::max(regenerated.size(), stored.size()); ++i) {
    if (i >= stored.size()) return file + ": tensor \"" + regenerated[i].name + "\" is missing";
    if (i >= regenerated.size())
      return file + ": tensor \"" + stored[i].name + "\" is not produced";
    const TensorRecord& a = regenerated[i];
    const TensorRecord& b = stored[i];
    if (a.name != b.name) {
      return file + ": tensor " + std::to_string(i) + " is \"" + b.name + "\", regenerated \"" +
             a.name + "\"";
    }
    if (a.dtype != b.dtype || a.shape != b.shape) {
      return file + ": tensor \"" + a.name + "\" has another dtype or shape";
    }
    if (a.bytes != b.bytes) return file + ": tensor \"" + a.name + "\" differs bitwise";
  }
  return "";
}

// The first manifest field that regeneration gives differently, or "". The margins and routing
// figures the checker reads must be what the code computes, not what someone typed.
std::string manifest_difference(const nlohmann::json& stored, nlohmann::json regenerated) {
  for (const auto& [key, value] : regenerated.items()) {
    if (key == "moeref_version" || key == "git_commit") continue;
    if (!stored.contains(key) || stored.at(key) != value) {
      return "manifest.json: \"" + key + "\" differs from what regeneration computes";
    }
  }
  return "";
}

// The first regenerated tensor or manifest field that differs from the set's files, or "".
std::string regenerated_difference(const GoldenSet& set) {
  nlohmann::json manifest;
  std::vector<TensorRecord> weights, inputs, trace;
  if (set.kind() == "model") {
    ModelCase regenerated = build_model_case(
        spec_from_manifest(set.manifest(), (set.dir() / "manifest.json").string()));
    manifest = std::move(regenerated.manifest);
    weights = std::move(regenerated.weights);
    inputs = std::move(regenerated.inputs);
    trace = std::move(regenerated.trace);
  } else if (set.kind() == "batching") {
    BatchingCase regenerated = build_batching_case(
        batching_spec_from_manifest(set.manifest(), (set.dir() / "manifest.json").string()));
    manifest = std::move(regenerated.manifest);
    weights = std::move(regenerated.weights);
    inputs = std::move(regenerated.inputs);
    trace = std::move(regenerated.trace);
  } else if (set.kind() == "speculative") {
    SpeculativeCase regenerated = build_speculative_case(
        speculative_spec_from_manifest(set.manifest(), (set.dir() / "manifest.json").string()));
    manifest = std::move(regenerated.manifest);
    weights = std::move(regenerated.weights);
    inputs = std::move(regenerated.inputs);
    trace = std::move(regenerated.trace);
  } else {
    OpCase regenerated = rebuild_op_case(set);
    manifest = std::move(regenerated.manifest);
    inputs = std::move(regenerated.inputs);
    trace = std::move(regenerated.outputs);
  }
  std::string difference = manifest_difference(set.manifest(), std::move(manifest));
  if (difference.empty() && set.weights())
    difference = first_difference(weights, *set.weights(), "weights.safetensors");
  if (difference.empty()) difference = first_difference(inputs, set.inputs(), "inputs.safetensors");
  if (difference.empty()) difference = first_difference(trace, set.trace(), "trace.safetensors");
  if (difference.empty() && (!set.manifest().contains("honest_errors") ||
                             set.manifest().at("honest_errors") != measure_honest_errors(set))) {
    difference =
        "manifest.json: \"honest_errors\" differs from what the honest emulated backends measure";
  }
  return difference;
}

VerifyResult verify_set(const fs::path& dir) {
  VerifyResult result{dir, false, ""};
  try {
    const GoldenSet set = GoldenSet::open(dir);
    const std::string difference = regenerated_difference(set);
    result.ok = difference.empty();
    result.message =
        result.ok ? std::to_string(set.expected().size()) + " tensors regenerated bit for bit"
                  : difference;
  } catch (const GoldenError& e) {
    result.message = e.what();
    try {  // a changed file: say which tensor changed
      const std::string difference =
          regenerated_difference(GoldenSet::open(dir, Integrity::kSkipDigests));
      if (!difference.empty()) result.message += "; " + difference;
    } catch (const std::exception&) {
    }
  } catch (const std::exception& e) {
    result.message = e.what();
  }
  return result;
}

// The set staged in a hidden draft beside `dir`, with its calibration (golden/calibration.h),
// which is measured by running the set; never published.
class CalibratedDraft {
 public:
  CalibratedDraft(const fs::path& dir, nlohmann::json manifest,
                  const std::vector<TensorRecord>& weights, const std::vector<TensorRecord>& inputs,
                  const std::vector<TensorRecord>& trace,
                  const std::vector<ExpectedTensor>& expected)
      : draft_(dir) {
    write_golden_set(draft_.path(), manifest, weights, inputs, trace, expected);
    manifest["honest_errors"] = measure_honest_errors(GoldenSet::open(draft_.path()));
    write_golden_set(draft_.path(), manifest, weights, inputs, trace, expected);
    manifest_ = std::move(manifest);
  }
  const nlohmann::json& manifest() const { return manifest_; }
  GoldenSet open() const { return GoldenSet::open(draft_.path()); }

 private:
  StagedDirectory draft_;
  nlohmann::json manifest_;
};

// Writes the set with its calibration, measured on a draft first, so that an interrupted run
// leaves no uncalibrated set behind.
void write_calibrated_set(const fs::path& dir, const nlohmann::json& manifest,
                          const std::vector<TensorRecord>& weights,
                          const std::vector<TensorRecord>& inputs,
                          const std::vector<TensorRecord>& trace,
                          const std::vector<ExpectedTensor>& expected) {
  const nlohmann::json calibrated =
      CalibratedDraft(dir, manifest, weights, inputs, trace, expected).manifest();
  write_golden_set(dir, calibrated, weights, inputs, trace, expected);
}

// Refuses a case with a decision that could go the other way at `precision` unnoticed: a margin
// at or below its resolution on the case's own calibration.
std::string unresolved_decision(const CalibratedDraft& draft, Precision precision) {
  const std::vector<DecisionResolution> decisions = decision_resolutions(draft.open(), precision);
  const DecisionResolution* least = least_resolved(decisions);
  if (least == nullptr || least->resolved()) return "";
  char numbers[128];
  std::snprintf(numbers, sizeof numbers, ": margin %.4g, %s resolution %.4g", least->margin,
                precision_name(precision), least->resolution);
  return least->decision + numbers;
}

}  // namespace

void write_model_case(const ModelCaseSpec& spec, const fs::path& dir) {
  CaseCheck check;
  if (spec.resolved_at) {
    check = [&](const ModelCase& built) {
      const CalibratedDraft draft(dir, built.manifest, built.weights, built.inputs, built.trace,
                                  model_tensor_kinds(built.trace));
      return unresolved_decision(draft, *spec.resolved_at);
    };
  }
  const ModelCase built = build_model_case(spec, check);
  write_calibrated_set(dir, built.manifest, built.weights, built.inputs, built.trace,
                       model_tensor_kinds(built.trace));
}

void write_speculative_case(const SpeculativeCaseSpec& spec, const fs::path& dir) {
  const SpeculativeCase built = build_speculative_case(spec);
  write_calibrated_set(dir, built.manifest, built.weights, built.inputs, built.trace,
                       built.expected);
}

void write_batching_case(const BatchingCaseSpec& spec, const fs::path& dir) {
  const BatchingCase built = build_batching_case(spec);
  write_calibrated_set(dir, built.manifest, built.weights, built.inputs, built.trace,
                       built.expected);
}

void write_shaped_op_case(const OpCaseRequest& request, const fs::path& dir) {
  OpCaseCheck check;
  if (request.resolved_at) {
    check = [&](const OpCase& built) {
      const CalibratedDraft draft(dir, built.manifest, {}, built.inputs, built.outputs,
                                  built.expected);
      return unresolved_decision(draft, *request.resolved_at);
    };
  }
  const OpCase built = build_shaped_op_case(request, check);
  write_calibrated_set(dir, built.manifest, {}, built.inputs, built.outputs, built.expected);
}

void write_op_cases(const fs::path& dir) {
  const GoldenTarget target = classify_golden_target(dir);
  if (target == GoldenTarget::kGoldenSet || target == GoldenTarget::kOther) {
    throw GoldenError(
        dir.string() +
        ": not a tree of golden sets, nor an empty directory; refusing to replace it");
  }
  StagedDirectory staging(dir);
  for (const std::string& name : op_case_names()) {
    const OpCase built = build_op_case(name);
    write_calibrated_set(staging.path() / name, built.manifest, {}, built.inputs, built.outputs,
                         built.expected);
  }
  staging.publish();
}

std::vector<VerifyResult> verify_golden_tree(const fs::path& root) {
  std::vector<VerifyResult> results;
  for (const fs::path& dir : find_golden_sets(root)) results.push_back(verify_set(dir));
  return results;
}

}  // namespace moeref::golden
