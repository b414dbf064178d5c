// Kernel sets that compute like GPU backends at a given precision, to measure what honest
// backends deviate from the reference by (the default tolerances of golden/compare.h come from
// this measurement, golden/tolerance_measurement.h) and to test the checker with realistic
// candidates.
//
// emulated_kernels(precision), the plain one: each op rounds its output to the precision
// ("storage"), and:
// - matmul rounds its inputs too and accumulates in fp32 (not double) over 8 interleaved partial
//   sums combined pairwise, as a SIMD or tensor-core kernel does; for tf32 its inputs are rounded
//   to tf32 (10-bit mantissa) and its output stays fp32, as in PyTorch's allow_tf32 matmuls;
// - softmax and attention compute in fp32 (exponentials, sums, probabilities, p.v);
// - the norms round their input, then run the reference (double sums);
// - RoPE, activations, top-k weights and residual adds run the reference and round the output;
// - capacity, integer logic, is the reference's.
// The embedding lookup and the weights of norms are not rounded. fp32 thus differs from the
// reference only by fp32 accumulation and summation order in matmul, softmax and attention.
// Rounding is to nearest even: bf16 as PyTorch's float-to-bfloat16 conversion, fp16 as
// golden/fp16.h, tf32 by clearing 13 mantissa bits with the same rule.
//
// honest_backends(precision): a family of such kernel sets, the plain one first, each computing
// the model correctly and differing only where real GPU backends differ: reduction order, fused
// or unfused multiply-adds, the attention kernel, and where rounding happens. golden/emulation.h
// has the recipe, docs/golden-format.md section 6 a table of what each member does. One backend
// alone measures one rounding pattern; tolerances and statistical gates are calibrated on all.
#pragma once

#include <string>
#include <vector>

#include "golden/compare.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

const Kernels& emulated_kernels(Precision precision);

float round_to_precision(float value, Precision precision);

struct HonestBackend {
  std::string name;         // short and stable: "plain", "split-k", "flash-attention", ...
  std::string description;  // one line: what a real GPU backend does this way
  const Kernels* kernels;   // deterministic: no threads, no random numbers; lives forever
};

// At least 9 per precision, the same names in the same order at every precision; the first is
// "plain", whose kernels are &emulated_kernels(precision).
const std::vector<HonestBackend>& honest_backends(Precision precision);

// The precision every op but matmul stores its output in: tf32 rounds only matmul inputs, so fp32
// for tf32, the precision itself otherwise.
Precision storage_precision(Precision precision);

}  // namespace moeref::golden
