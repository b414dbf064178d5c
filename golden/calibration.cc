#include "golden/calibration.h"

#include <algorithm>

#include "golden/candidate_runner.h"
#include "golden/emulated_kernels.h"

namespace moeref::golden {

using nlohmann::json;

json measure_honest_errors(const GoldenSet& set) {
  json errors = json::object();
  for (Precision p : {Precision::kFP32, Precision::kTF32, Precision::kBF16, Precision::kFP16}) {
    CompareOptions options;
    options.precision = p;
    options.per_tensor_gates = false;
    json tensors = json::object();
    for (const HonestBackend& backend : honest_backends(p)) {
      const CompareReport report = compare(set, run_case(set, *backend.kernels), options);
      for (const TensorReport& t : report.tensors) {
        if (t.tolerance_class == ToleranceClass::kExact || t.status == TensorStatus::kMissing) {
          continue;
        }
        json& entry = tensors[t.name];
        if (entry.is_null()) entry = json::array({0.0, 0.0});
        entry[0] = std::max(entry[0].get<double>(), t.max_abs_error);
        entry[1] = std::max(entry[1].get<double>(), t.nmse);
      }
    }
    errors[precision_name(p)] = std::move(tensors);
  }
  return errors;
}

std::optional<HonestError> honest_error(const GoldenSet& set, Precision precision,
                                        const std::string& tensor) {
  const json& manifest = set.manifest();
  if (!manifest.contains("honest_errors")) return std::nullopt;
  const json& by_precision = manifest.at("honest_errors");
  const char* key = precision_name(precision);
  if (!by_precision.is_object() || !by_precision.contains(key)) return std::nullopt;
  const json& by_tensor = by_precision.at(key);
  if (!by_tensor.is_object() || !by_tensor.contains(tensor)) return std::nullopt;
  const json& pair = by_tensor.at(tensor);
  if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number() || !pair[1].is_number()) {
    throw GoldenError((set.dir() / "manifest.json").string() + ": honest_errors." + key + ".\"" +
                      tensor + "\" must be [max_abs_error, nmse], got " + pair.dump());
  }
  return HonestError{pair[0].get<double>(), pair[1].get<double>()};
}

Tolerance decision_tolerance(const GoldenSet& set, Precision precision,
                             ToleranceClass tolerance_class, const std::string& score_tensor) {
  if (const std::optional<HonestError> honest = honest_error(set, precision, score_tensor)) {
    return {unit_roundoff(precision), decision_factor(precision) * honest->max_abs_error};
  }
  return default_tolerance(precision, tolerance_class);
}

}  // namespace moeref::golden
