#include "golden/detection_matrix.h"

#include <cmath>
#include <utility>

#include "golden/emulated_kernels.h"
#include "golden/mutated_runner.h"

namespace moeref::golden {

namespace {

bool float_differs(const TensorRecord& golden, const TensorRecord& candidate, Tolerance tolerance,
                   double factor) {
  const std::vector<float> expected = golden.to_f32();
  const std::vector<float> actual = candidate.to_f32();
  for (size_t i = 0; i < expected.size(); ++i) {
    const double e = expected[i];
    const double a = actual[i];
    if (!std::isfinite(e)) {
      if (!(a == e || (std::isnan(a) && std::isnan(e)))) return true;
    } else if (!std::isfinite(a) ||
               std::fabs(a - e) > factor * (tolerance.atol + tolerance.rtol * std::fabs(e))) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::optional<std::string> first_visible_difference(const GoldenSet& set,
                                                    const Candidate& candidate, double factor) {
  for (const ExpectedTensor& entry : set.expected()) {
    const auto found = candidate.find(entry.name);
    if (found == candidate.end()) continue;
    const TensorRecord& golden = set.expected_tensor(entry.name);
    const TensorRecord& actual = found->second;
    const bool differs =
        actual.shape != golden.shape || actual.dtype != golden.dtype ||
        (entry.tolerance == ToleranceClass::kExact
             ? actual.to_i32() != golden.to_i32()
             : float_differs(golden, actual, default_tolerance(Precision::kFP32, entry.tolerance),
                             factor));
    if (differs) return entry.name;
  }
  return std::nullopt;
}

std::vector<Detection> detection_matrix(const std::vector<GoldenSet>& sets,
                                        const std::vector<Precision>& precisions,
                                        const std::vector<Bug>& bugs) {
  std::map<std::pair<size_t, Precision>, bool> honest;  // (set, precision): the baseline passes
  auto honest_passes = [&](size_t s, Precision precision) {
    const auto key = std::pair(s, precision);
    if (!honest.contains(key)) {
      CompareOptions options;
      options.precision = precision;
      honest[key] =
          compare(sets[s], run_mutated(sets[s], emulated_kernels(precision), {}), options).passed;
    }
    return honest.at(key);
  };
  std::vector<Detection> matrix;
  for (const Bug& bug : bugs) {
    for (size_t s = 0; s < sets.size(); ++s) {
      const GoldenSet& set = sets[s];
      const std::optional<Candidate> alone = run_exact(bug, set);
      if (!alone) continue;
      const std::optional<std::string> first_visible =
          first_visible_difference(set, *alone, kVisibilityFactor);
      for (const Precision precision : precisions) {
        CompareOptions options;
        options.precision = precision;
        const CompareReport report = compare(set, *bug.run(set, precision), options);
        Detection d;
        d.bug = bug.name;
        d.set = set.name();
        d.precision = precision;
        d.visible = first_visible.has_value();
        d.first_visible = first_visible;
        d.caught = !report.passed;
        d.first_failure = report.first_failure;
        d.own = report.first_failure && is_own_tensor(bug, set, *report.first_failure);
        d.honest_passes = honest_passes(s, precision);
        matrix.push_back(std::move(d));
      }
    }
  }
  return matrix;
}

namespace {

void count(CatchRate& rate, const Detection& d) {
  if (!d.visible) return;
  ++rate.visible;
  rate.caught += d.caught;
  rate.own += d.caught && d.own;
  rate.honest_passes += d.honest_passes;
  rate.caught_where_honest_passes += d.caught && d.honest_passes;
}

}  // namespace

std::map<Precision, CatchRate> catch_rates(const std::vector<Detection>& matrix) {
  std::map<Precision, CatchRate> rates;
  for (const Detection& d : matrix) count(rates[d.precision], d);
  return rates;
}

std::map<std::string, std::map<Precision, CatchRate>> catch_rates_by_bug(
    const std::vector<Detection>& matrix) {
  std::map<std::string, std::map<Precision, CatchRate>> rates;
  for (const Detection& d : matrix) count(rates[d.bug][d.precision], d);
  return rates;
}

}  // namespace moeref::golden
