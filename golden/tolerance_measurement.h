// Measures how far an honest backend at each precision lands from the reference on the golden
// model sets: the evidence behind golden/tolerances.cc (docs/golden-format.md, "Default
// tolerances"). Each set is run with golden/emulated_kernels.h at each precision, teacher-forced
// (golden/candidate_runner.h); per tolerance class the largest error of any element is kept.
// Every tensor after a near-tie is left out, whether it passes or not: once a routing decision
// flips, it measures the flip, not the precision.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "golden/compare.h"

namespace moeref::golden {

struct ClassMeasurement {
  double max_scaled_error = 0.0;  // max |a - e| / (1 + |e|): the rtol = atol that would pass
  double max_abs_error = 0.0;
  double max_nmse = 0.0;
  std::string worst_tensor;  // "set: tensor" of the largest scaled error
};

struct PrecisionMeasurement {
  Precision precision = Precision::kFP32;
  std::map<ToleranceClass, ClassMeasurement> classes;  // float classes only
  int64_t near_ties = 0;                               // integer decisions excused as near-ties
  int64_t tensors_after_near_tie = 0;                  // left out of the maxima
};

std::vector<PrecisionMeasurement> measure_tolerances(
    const std::vector<std::filesystem::path>& model_sets);

}  // namespace moeref::golden
