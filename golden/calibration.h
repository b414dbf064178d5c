// Per-tensor calibration: how far honest backends at each precision land from the reference on
// each float tensor of a set, the baseline of the checker's per-tensor gates and of its decision
// resolutions (golden/compare.h; docs/golden-format.md, "Per-tensor gates").
//
// The FlashAttention rule (the flash-attention repository's tests, Dao et al. 2022) judges a kernel
// by its error relative to plain implementations at the same precision, not by an absolute bound.
// For every float tensor of a set and every precision, each honest emulated backend
// (golden/emulated_kernels.h: twelve ways to compute this model at that precision: reduction
// orders, fused and unfused multiply-add, flash and memory-efficient attention, autocast, ...) is
// run on the set (golden/candidate_runner.h) and compared with it, re-anchored on its own decisions
// where it makes other ones (golden/anchored_run.h). The largest max |a - e| and the largest NMSE
// of any of them are stored in the manifest:
//   "honest_errors": {"<precision>": {"<tensor>": [max_abs_error, nmse], ...}, ...}
// A set without the key (written before it existed, or built by hand) is checked with the
// elementwise bounds alone.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "golden/compare.h"
#include "golden/golden_set.h"

namespace moeref::golden {

struct HonestError {
  double max_abs_error = 0.0;
  double nmse = 0.0;
};

// Runs every honest backend at every precision on `set` and returns the "honest_errors" section
// for its manifest. The set's own "honest_errors", if any, are not read.
nlohmann::json measure_honest_errors(const GoldenSet& set);

// The stored baseline of one tensor at one precision, if the set has one. Throws GoldenError
// naming the manifest and the entry when it is malformed.
std::optional<HonestError> honest_error(const GoldenSet& set, Precision precision,
                                        const std::string& tensor);

// The tolerance of the scores a decision is judged on (golden/decisions.h): where the set stores
// the score tensor's calibration at `precision`, rtol = one rounding (unit_roundoff) and atol =
// decision_factor times its worst honest max |a - e|; otherwise the class tolerance.
Tolerance decision_tolerance(const GoldenSet& set, Precision precision,
                             ToleranceClass tolerance_class, const std::string& score_tensor);

}  // namespace moeref::golden
