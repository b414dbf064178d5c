// The default tolerances of golden/compare.h, per precision and tolerance class, with
// rtol = atol = k, so an element passes when |a - e| <= k * (1 + |e|).
//
// k is three times the largest |a - e| / (1 + |e|) that a plain implementation at that precision
// (golden/emulated_kernels.h) reaches on the committed model sets, rounded up to one significant
// digit: the FlashAttention rule (a kernel may err by a small multiple of what a plain kernel at
// its precision errs by), with headroom for reduction orders other than the emulated one.
// `moeref tolerances golden/sets` repeats the measurement; docs/golden-format.md has the table.
#include "golden/compare.h"

namespace moeref::golden {

namespace {

Tolerance symmetric(double k) { return {k, k}; }

}  // namespace

Tolerance default_tolerance(Precision precision, ToleranceClass c) {
  if (c == ToleranceClass::kExact) return {0.0, 0.0};
  const bool probability = c == ToleranceClass::kProbability;
  const bool logits = c == ToleranceClass::kLogits;
  switch (precision) {      // measured 2026-11-28: activation, probability, logits
    case Precision::kFP32:  // 2.98e-6, 3.17e-7, 2.49e-6
      return symmetric(probability ? 1e-6 : logits ? 8e-6 : 9e-6);
    case Precision::kTF32:  // 5.91e-3, 1.08e-3, 6.21e-3
      return symmetric(probability ? 4e-3 : logits ? 2e-2 : 2e-2);
    case Precision::kBF16:  // 7.91e-2, 1.36e-2, 5.95e-2
      return symmetric(probability ? 5e-2 : logits ? 2e-1 : 3e-1);
    case Precision::kFP16:  // 1.31e-2, 1.97e-3, 9.41e-3
      return symmetric(probability ? 6e-3 : logits ? 3e-2 : 4e-2);
  }
  return {0.0, 0.0};
}

GateFactors gate_factors(Precision precision, ToleranceClass c) {
  (void)precision;
  (void)c;
  return {4.0, 16.0};
}

double decision_factor(Precision precision) {
  (void)precision;
  return 2.0;
}

double unit_roundoff(Precision precision) {
  switch (precision) {
    case Precision::kFP32:
    case Precision::kTF32:
      return 0x1.0p-24;
    case Precision::kBF16:
      return 0x1.0p-9;
    case Precision::kFP16:
      return 0x1.0p-11;
  }
  return 0x1.0p-24;
}

}  // namespace moeref::golden
