#include "golden/tolerance_measurement.h"

#include <algorithm>
#include <cmath>

#include "golden/candidate_runner.h"
#include "golden/emulated_kernels.h"

namespace moeref::golden {

namespace {

void measure_tensor(const std::string& where, const TensorRecord& golden,
                    const TensorRecord& candidate, double nmse, ClassMeasurement& m) {
  const std::vector<float> expected = golden.to_f32();
  const std::vector<float> actual = candidate.to_f32();
  for (size_t i = 0; i < expected.size(); ++i) {
    const double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    const double scaled = error / (1.0 + std::fabs(static_cast<double>(expected[i])));
    m.max_abs_error = std::max(m.max_abs_error, error);
    if (scaled > m.max_scaled_error) {
      m.max_scaled_error = scaled;
      m.worst_tensor = where;
    }
  }
  m.max_nmse = std::max(m.max_nmse, nmse);
}

}  // namespace

std::vector<PrecisionMeasurement> measure_tolerances(
    const std::vector<std::filesystem::path>& model_sets) {
  std::vector<PrecisionMeasurement> results;
  for (Precision p : {Precision::kFP32, Precision::kTF32, Precision::kBF16, Precision::kFP16}) {
    PrecisionMeasurement result;
    result.precision = p;
    for (const std::filesystem::path& dir : model_sets) {
      const GoldenSet set = GoldenSet::open(dir);
      const Candidate candidate = run_model_case(set, emulated_kernels(p));
      CompareOptions options;
      options.precision = p;
      const CompareReport report = compare(set, candidate, options);
      bool after_near_tie = false;
      for (const TensorReport& t : report.tensors) {
        if (after_near_tie) ++result.tensors_after_near_tie;
        if (t.status == TensorStatus::kNearTie) {
          ++result.near_ties;
          after_near_tie = true;
        }
        if (after_near_tie || t.tolerance_class == ToleranceClass::kExact ||
            t.status == TensorStatus::kMissing) {
          continue;
        }
        measure_tensor(set.name() + ": " + t.name, set.expected_tensor(t.name),
                       candidate.at(t.name), t.nmse, result.classes[t.tolerance_class]);
      }
    }
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace moeref::golden
