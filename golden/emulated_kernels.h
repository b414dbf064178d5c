// Kernel sets that compute like a typical GPU backend at a given precision, to measure what
// honest backends deviate from the reference by (the default tolerances of golden/compare.h come
// from this measurement) and to test the checker with realistic candidates.
//
// Each op rounds its output to the precision ("storage"), and:
// - matmul rounds its inputs too and accumulates in fp32 (not double) over 8 interleaved partial
//   sums combined pairwise, as a SIMD or tensor-core kernel does; for tf32 its inputs are rounded
//   to tf32 (10-bit mantissa) and its output stays fp32, as in PyTorch's allow_tf32 matmuls;
// - softmax and attention compute in fp32 (exponentials, sums, probabilities, p.v);
// - the norms round their input, then run the reference (double sums);
// - RoPE, activations, top-k weights and residual adds run the reference and round the output;
// - capacity, integer logic, is the reference's.
// The embedding lookup and the weights of norms are not rounded. fp32 thus differs from the
// reference only by fp32 accumulation and summation order in matmul, softmax and attention.
// Rounding is to nearest even: bf16 as semantics.md section 7, fp16 through _Float16, tf32 by
// clearing 13 mantissa bits with the same rule.
#pragma once

#include "golden/compare.h"
#include "ref/kernels.h"

namespace moeref::golden {

const Kernels& emulated_kernels(Precision precision);

float round_to_precision(float value, Precision precision);

// The precision every op but matmul stores its output in: tf32 rounds only matmul inputs, so fp32
// for tf32, the precision itself otherwise.
Precision storage_precision(Precision precision);

}  // namespace moeref::golden
