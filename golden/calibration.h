// Per-tensor calibration: how far the plain emulated backend at each precision lands from the
// reference on each float tensor of a set, the baseline of the checker's per-tensor gates
// (golden/compare.h; docs/golden-format.md, "Per-tensor gates").
//
// The FlashAttention rule (Dao et al. 2022, section 5) judges a kernel by its error relative to a
// plain implementation at the same precision, not by an absolute bound. For every float tensor of
// a set and every precision, the plain emulated backend (golden/emulated_kernels.h) is run on the
// set (golden/candidate_runner.h) and compared with it, re-anchored on its own decisions where it
// makes other ones; its max |a - e| and NMSE are stored in the manifest:
//   "plain_errors": {"<precision>": {"<tensor>": [max_abs_error, nmse], ...}, ...}
// A set without the key (written before it existed, or built by hand) is checked with the
// elementwise bounds alone.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "golden/compare.h"
#include "golden/golden_set.h"

namespace moeref::golden {

struct PlainError {
  double max_abs_error = 0.0;
  double nmse = 0.0;
};

// Runs the plain emulated backend at every precision on `set` and returns the "plain_errors"
// section for its manifest. The set's own "plain_errors", if any, are not read.
nlohmann::json measure_plain_errors(const GoldenSet& set);

// The stored baseline of one tensor at one precision, if the set has one.
std::optional<PlainError> plain_error(const GoldenSet& set, Precision precision,
                                      const std::string& tensor);

}  // namespace moeref::golden
