// The checker: compares a candidate's tensors with a golden set and says where a backend first
// goes wrong (docs/golden-format.md, "Checking").
//
// Every expected tensor is visited in execution order.
// - Expected values: the set's own, or, where a model set's candidate routed a token elsewhere or
//   sampled another token, the reference re-run on the candidate's decisions (re-anchoring,
//   golden/anchored_run.h), so that what follows a legitimate flip is compared with what it should
//   be, not excused.
// - Float tensors pass when every element satisfies |a - e| <= atol + rtol * |e| and, in a
//   calibrated set (golden/calibration.h), the tensor's max |a - e| and NMSE stay within
//   gate_factors() times the worst honest backend's on that tensor. A non-finite candidate value
//   where the golden one is finite fails (counted in non_finite); a non-finite golden value must
//   be matched exactly (the same infinity, or NaN). Reported: max absolute and relative error
//   (relative over nonzero golden values), NMSE = sum (a - e)^2 / sum e^2 (the plain sum of
//   squared errors when every golden value is 0), cosine similarity (1 when both are all zeros, 0
//   when only one is), each over the elements where both values are finite, the count of elements
//   out of tolerance, and the gates applied. rtol and atol come from the precision and the
//   tensor's tolerance class (default_tolerance), atol widened to the tensor's gate where an
//   honest backend needs it; overrides replace both and turn the gates off.
// - Integer tensors (expert indices, kept flags, tokens) must be equal, except where a differing
//   row is a decision the candidate's precision cannot resolve, judged on the reference's scores
//   (golden/decisions.h): such a row is a near-tie, reported but not failed; any other differing
//   row fails the tensor. Integer tensors report rtol = atol = 0.
// - A candidate tensor of the wrong shape fails. Missing tensors are reported (failed only with
//   require_all); candidate tensors the set does not have are listed as extra. A candidate that
//   matches no expected tensor at all fails.
// The report names the first failing tensor: the place a backend author should look first.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "golden/golden_set.h"
#include "golden/tensor_kinds.h"
#include "ref/io/safetensors.h"

namespace moeref::golden {

enum class Precision { kFP32, kTF32, kBF16, kFP16 };

const char* precision_name(Precision precision);
// Throws std::invalid_argument listing the accepted names.
Precision precision_from_name(const std::string& name);

struct Tolerance {
  double rtol = 0.0;
  double atol = 0.0;
};

// The defaults, measured (docs/golden-format.md, "Default tolerances").
Tolerance default_tolerance(Precision precision, ToleranceClass tolerance_class);

struct CompareOptions {
  Precision precision = Precision::kFP32;
  std::optional<double> rtol;  // overrides every float class
  std::optional<double> atol;
  bool require_all = false;
  // The per-tensor gates of a calibrated set (golden/calibration.h); off while calibrating, and
  // whenever rtol or atol override the tolerances.
  bool per_tensor_gates = true;
};

// The per-tensor gates' factors (golden/tolerances.cc): a float tensor fails when its max |a - e|
// exceeds max_abs times the worst honest emulated backend's on that tensor, or its NMSE exceeds
// nmse times theirs, each baseline floored at four roundings (golden/calibration.h).
struct GateFactors {
  double max_abs = 0.0;
  double nmse = 0.0;
};
GateFactors gate_factors(Precision precision, ToleranceClass tolerance_class);

// How many times the worst honest backend's largest error on a score tensor (router probabilities,
// logits) a score may be off when a decision made on it is judged (golden/decisions.h).
double decision_factor(Precision precision);

// Half the spacing of the precision's stored values at 1: 2^-24 for fp32 (and for tf32, whose
// activations are stored in fp32), 2^-9 for bf16, 2^-11 for fp16.
double unit_roundoff(Precision precision);

enum class TensorStatus { kPass, kFail, kNearTie, kMissing };
const char* status_name(TensorStatus status);

struct TensorReport {
  std::string name;
  std::string op;
  ToleranceClass tolerance_class = ToleranceClass::kActivation;
  TensorStatus status = TensorStatus::kPass;
  int64_t elements = 0;
  int64_t out_of_tolerance = 0;  // float: elements past the tolerance; integer: mismatches
  int64_t non_finite = 0;
  double max_abs_error = 0.0;
  double max_rel_error = 0.0;
  double nmse = 0.0;
  double cosine = 1.0;
  Tolerance tolerance;
  // The per-tensor gates applied (infinite where the set has no calibration for the tensor).
  double max_abs_bound = std::numeric_limits<double>::infinity();
  double nmse_bound = std::numeric_limits<double>::infinity();
  std::string note;  // why it failed or was excused, in words
};

struct CompareReport {
  std::string set;
  Precision precision = Precision::kFP32;
  std::vector<TensorReport> tensors;  // execution order
  std::vector<std::string> extra;     // candidate tensors the set does not have
  std::optional<std::string> first_failure;
  bool anchored = false;  // compared with the reference re-run on the candidate's decisions
  int64_t compared = 0;
  bool passed = false;

  nlohmann::json to_json() const;
  // The tensors that did not simply pass (or every tensor, with all_tensors), then the verdict.
  std::string to_text(bool all_tensors = false) const;
};

// Candidate tensors by name; dtypes F32, F16, BF16 or F64 for float tensors and I32 or I64 for
// integer ones (anything else fails that tensor, saying why).
using Candidate = std::map<std::string, TensorRecord>;
// The values of a tensor of any of those dtypes, as double.
std::vector<double> as_doubles(const TensorRecord& record);
// An integer tensor's value as a decision (an expert, a token): values outside int32 become -1,
// which is no expert and no token.
int32_t as_decision(double value);
Candidate candidate_from_file(const SafetensorsFile& file);

CompareReport compare(const GoldenSet& set, const Candidate& candidate,
                      const CompareOptions& options = {});

// One float tensor against the set's tensor of that name, with the same metrics and tolerance;
// near-ties do not apply. For unit tests of single kernels (see golden/matchers.h).
TensorReport compare_tensor(const GoldenSet& set, const std::string& name,
                            std::span<const float> candidate, const CompareOptions& options = {});

}  // namespace moeref::golden
