#include "golden/calibration.h"

#include "golden/candidate_runner.h"
#include "golden/emulated_kernels.h"

namespace moeref::golden {

using nlohmann::json;

json measure_plain_errors(const GoldenSet& set) {
  json errors = json::object();
  for (Precision p : {Precision::kFP32, Precision::kTF32, Precision::kBF16, Precision::kFP16}) {
    CompareOptions options;
    options.precision = p;
    options.per_tensor_gates = false;
    const CompareReport report = compare(set, run_case(set, emulated_kernels(p)), options);
    json tensors = json::object();
    for (const TensorReport& t : report.tensors) {
      if (t.tolerance_class == ToleranceClass::kExact || t.status == TensorStatus::kMissing) {
        continue;
      }
      tensors[t.name] = json::array({t.max_abs_error, t.nmse});
    }
    errors[precision_name(p)] = std::move(tensors);
  }
  return errors;
}

std::optional<PlainError> plain_error(const GoldenSet& set, Precision precision,
                                      const std::string& tensor) {
  const json& manifest = set.manifest();
  if (!manifest.contains("plain_errors")) return std::nullopt;
  const json& by_precision = manifest.at("plain_errors");
  const char* key = precision_name(precision);
  if (!by_precision.is_object() || !by_precision.contains(key)) return std::nullopt;
  const json& by_tensor = by_precision.at(key);
  if (!by_tensor.is_object() || !by_tensor.contains(tensor)) return std::nullopt;
  const json& pair = by_tensor.at(tensor);
  if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number() || !pair[1].is_number()) {
    throw GoldenError((set.dir() / "manifest.json").string() + ": plain_errors." + key + ".\"" +
                      tensor + "\" must be [max_abs_error, nmse], got " + pair.dump());
  }
  return PlainError{pair[0].get<double>(), pair[1].get<double>()};
}

}  // namespace moeref::golden
