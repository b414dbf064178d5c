// Measures how far honest backends at each precision land from the reference on the golden sets:
// the evidence behind golden/tolerances.cc (docs/golden-format.md, "Default tolerances"). Every
// committed set of every kind (model, speculative, batching, op) is run with every honest backend
// of golden/emulated_kernels.h at each precision (golden/candidate_runner.h: model sets
// teacher-forced) and compared with golden/compare.h at that precision. Per tolerance class the
// worst figures of any tensor are kept, with the backend and tensor that gave each, over the
// whole family and for each backend.
//
// Model, batching and speculative sets are measured against the reference re-run on the backend's
// own decisions, as the checker compares them (golden/anchored_run.h). In an op set, which is not
// re-run, once a run's decisions differ from the set's (an integer tensor that compare() reports
// as a near-tie, or one it fails), every later tensor of that set is left out: after a flip it
// measures the flip, not the precision. A failed decision is an honest backend's flip the checker
// did not excuse, and is listed by name.
//
// Where a set is calibrated (golden/calibration.h), the ratio of each tensor's max |a - e| and
// NMSE to the gate's baseline (the worst honest backend's) is kept too: the evidence behind
// gate_factors(), which must stay above the worst ratio of any honest backend. Tensors that failed
// compare() are listed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "golden/compare.h"

namespace moeref::golden {

// The largest value of one figure, and where it came from.
struct Worst {
  double value = 0.0;
  std::string backend;  // an honest backend's name
  std::string tensor;   // "set: tensor"
};

struct ClassMeasurement {
  Worst scaled_error;      // max |a - e| / (1 + |e|) of any element: the rtol = atol that passes
  Worst nmse;              // sum (a - e)^2 / sum e^2 of a tensor (compare()'s)
  Worst one_minus_cosine;  // 1 - the cosine similarity of a tensor (compare()'s)
  double max_abs_error = 0.0;
  int64_t tensors = 0;  // tensors measured
  Worst max_abs_ratio;  // max |a - e| over the gate's baseline (golden/compare.cc)
  Worst nmse_ratio;     // NMSE over the gate's baseline
};

struct Measurement {
  std::map<ToleranceClass, ClassMeasurement> classes;  // float classes only
  int64_t runs = 0;                                    // sets run
  int64_t near_ties = 0;           // integer tensors compare() excused as near-ties
  int64_t failed_decisions = 0;    // integer tensors that differ and were not excused
  int64_t tensors_after_flip = 0;  // left out of the figures
  std::vector<std::string> failed_decision_names;  // "backend: set: tensor: note"
  int64_t failed_tensors = 0;                      // float tensors that failed compare()
  std::vector<std::string> failed_tensor_names;    // "backend: set: tensor: note"
};

struct BackendMeasurement {
  std::string name;  // as honest_backends() names it
  Measurement measurement;
};

struct PrecisionMeasurement {
  Precision precision = Precision::kFP32;
  Measurement family;                        // over every honest backend
  std::vector<BackendMeasurement> backends;  // in honest_backends() order
};

// sets: golden set directories of any kind. Deterministic: the same figures with any number of
// threads.
std::vector<PrecisionMeasurement> measure_tolerances(
    const std::vector<std::filesystem::path>& sets);

}  // namespace moeref::golden
