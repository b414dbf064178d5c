// The checker's measured power against the bug catalog (golden/bug_catalog.h): for every bug, set
// and precision where the bug can arise, whether compare() catches the bug's candidate, the
// tensor it names first, and whether that is the bug's own tensor; and, independently of the
// checker, whether the bug can be seen in that set at all.
//
// Visible: the bug alone, on the exact reference kernels, differs from the golden tensors by more
// than kVisibilityFactor times the fp32 tolerance of some tensor's class (golden-format.md,
// section 6), judged on the raw values: a float element with |a - e| > factor * (atol + rtol |e|)
// or a non-finite value where the golden one is not, an integer element that differs, or a
// tensor of another shape. A bug invisible in a set cannot be asked of any checker there; catch
// rates are taken over the visible pairs.
//
// Honest baseline: the same runner without the bug (golden/mutated_runner.h on
// emulated_kernels(precision)), checked at that precision. Where it fails too, a catch is no
// evidence against the bug: a checker that fails every candidate catches every bug.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "golden/bug_catalog.h"
#include "golden/compare.h"
#include "golden/golden_set.h"

namespace moeref::golden {

constexpr double kVisibilityFactor = 10.0;

struct Detection {
  std::string bug;
  std::string set;
  Precision precision = Precision::kFP32;
  bool visible = false;
  std::optional<std::string> first_visible;  // the first tensor where the bug alone shows
  bool caught = false;                       // compare() at this precision did not pass
  std::optional<std::string> first_failure;  // the tensor compare() names first
  bool own = false;                          // first_failure is the bug's own tensor
  bool honest_passes = false;                // compare() passes the honest baseline
};

// One Detection per (bug, set, precision) where the bug can arise in the set: bugs in the order
// given, then sets, then precisions. Deterministic.
std::vector<Detection> detection_matrix(const std::vector<GoldenSet>& sets,
                                        const std::vector<Precision>& precisions,
                                        const std::vector<Bug>& bugs = bug_catalog());

// The first expected tensor, in execution order, where `candidate` differs from the set by more
// than `factor` times the fp32 tolerance, as described above; tensors the candidate lacks are
// skipped.
std::optional<std::string> first_visible_difference(const GoldenSet& set,
                                                    const Candidate& candidate, double factor);

struct CatchRate {
  int64_t visible = 0;        // visible pairs
  int64_t caught = 0;         // of them, caught
  int64_t own = 0;            // of those, with the bug's own tensor named first
  int64_t honest_passes = 0;  // visible pairs whose honest baseline passes
  int64_t caught_where_honest_passes = 0;
};

// Over the visible (bug, set) pairs: per precision, and per bug and precision.
std::map<Precision, CatchRate> catch_rates(const std::vector<Detection>& matrix);
std::map<std::string, std::map<Precision, CatchRate>> catch_rates_by_bug(
    const std::vector<Detection>& matrix);

}  // namespace moeref::golden
