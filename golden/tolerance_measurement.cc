#include "golden/tolerance_measurement.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "golden/anchored_run.h"
#include "golden/candidate_runner.h"
#include "golden/emulated_kernels.h"
#include "golden/golden_set.h"

namespace moeref::golden {

namespace {

constexpr Precision kPrecisions[] = {Precision::kFP32, Precision::kTF32, Precision::kBF16,
                                     Precision::kFP16};

void offer(Worst& worst, const Worst& candidate) {
  if (candidate.value > worst.value) worst = candidate;
}

// A float tensor of the golden shape: its largest errors, with compare()'s NMSE and cosine.
void measure_tensor(const TensorRecord& golden, const TensorRecord& candidate,
                    const TensorReport& t, Precision precision, const std::string& backend,
                    const std::string& where, ClassMeasurement& m) {
  const std::vector<float> expected = golden.to_f32();
  const std::vector<float> actual = candidate.to_f32();
  double scaled = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double error = std::isfinite(actual[i])
                             ? std::fabs(static_cast<double>(actual[i]) - expected[i])
                             : std::numeric_limits<double>::infinity();
    m.max_abs_error = std::max(m.max_abs_error, error);
    scaled = std::max(scaled, error / (1.0 + std::fabs(static_cast<double>(expected[i]))));
  }
  offer(m.scaled_error, {scaled, backend, where});
  offer(m.nmse, {t.nmse, backend, where});
  offer(m.one_minus_cosine, {1.0 - t.cosine, backend, where});
  if (std::isfinite(t.max_abs_bound)) {
    const GateFactors factors = gate_factors(precision, t.tolerance_class);
    offer(m.max_abs_ratio, {t.max_abs_error / (t.max_abs_bound / factors.max_abs), backend, where});
    offer(m.nmse_ratio, {t.nmse / (t.nmse_bound / factors.nmse), backend, where});
  }
  ++m.tensors;
}

void measure_run(const GoldenSet& set, const Candidate& candidate, Precision precision,
                 const std::string& backend, Measurement& m) {
  CompareOptions options;
  options.precision = precision;
  const CompareReport report = compare(set, candidate, options);
  const std::optional<Candidate> anchored =
      report.anchored ? std::optional(anchored_run(set, candidate)) : std::nullopt;
  ++m.runs;
  bool after_flip = false;
  for (const TensorReport& t : report.tensors) {
    if (after_flip) {
      ++m.tensors_after_flip;
      continue;
    }
    if (t.status == TensorStatus::kMissing) continue;
    if (t.tolerance_class == ToleranceClass::kExact) {
      if (t.status == TensorStatus::kNearTie) {
        ++m.near_ties;
        after_flip = !anchored;
      } else if (t.status == TensorStatus::kFail) {
        ++m.failed_decisions;
        m.failed_decision_names.push_back(backend + ": " + set.name() + ": " + t.name + ": " +
                                          t.note);
        after_flip = !anchored;
      }
      continue;
    }
    if (t.status == TensorStatus::kFail) {
      ++m.failed_tensors;
      m.failed_tensor_names.push_back(backend + ": " + set.name() + ": " + t.name + ": " + t.note);
    }
    const TensorRecord& golden = anchored ? anchored->at(t.name) : set.expected_tensor(t.name);
    const TensorRecord& actual = candidate.at(t.name);
    if (actual.shape != golden.shape) continue;  // failed by compare(); nothing to measure
    measure_tensor(golden, actual, t, precision, backend, set.name() + ": " + t.name,
                   m.classes[t.tolerance_class]);
  }
}

void merge(Measurement& into, const Measurement& m) {
  for (const auto& [tolerance_class, c] : m.classes) {
    ClassMeasurement& target = into.classes[tolerance_class];
    offer(target.scaled_error, c.scaled_error);
    offer(target.nmse, c.nmse);
    offer(target.one_minus_cosine, c.one_minus_cosine);
    target.max_abs_error = std::max(target.max_abs_error, c.max_abs_error);
    offer(target.max_abs_ratio, c.max_abs_ratio);
    offer(target.nmse_ratio, c.nmse_ratio);
    target.tensors += c.tensors;
  }
  into.runs += m.runs;
  into.near_ties += m.near_ties;
  into.failed_decisions += m.failed_decisions;
  into.tensors_after_flip += m.tensors_after_flip;
  into.failed_decision_names.insert(into.failed_decision_names.end(),
                                    m.failed_decision_names.begin(), m.failed_decision_names.end());
  into.failed_tensors += m.failed_tensors;
  into.failed_tensor_names.insert(into.failed_tensor_names.end(), m.failed_tensor_names.begin(),
                                  m.failed_tensor_names.end());
}

}  // namespace

std::vector<PrecisionMeasurement> measure_tolerances(
    const std::vector<std::filesystem::path>& sets) {
  std::vector<PrecisionMeasurement> results;
  for (Precision p : kPrecisions) {
    PrecisionMeasurement result;
    result.precision = p;
    for (const HonestBackend& backend : honest_backends(p)) {
      result.backends.push_back({backend.name, {}});
    }
    results.push_back(std::move(result));
  }
  for (const std::filesystem::path& dir : sets) {
    const GoldenSet set = GoldenSet::open(dir);
    for (PrecisionMeasurement& result : results) {
      const std::vector<HonestBackend>& backends = honest_backends(result.precision);
      for (size_t b = 0; b < backends.size(); ++b) {
        measure_run(set, run_case(set, *backends[b].kernels), result.precision, backends[b].name,
                    result.backends[b].measurement);
      }
    }
  }
  for (PrecisionMeasurement& result : results) {
    for (const BackendMeasurement& b : result.backends) merge(result.family, b.measurement);
  }
  return results;
}

}  // namespace moeref::golden
