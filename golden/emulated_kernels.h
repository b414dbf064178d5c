// Kernel sets that compute like a typical GPU backend at a given precision, to measure what
// honest backends deviate from the reference by (the default tolerances of golden/compare.h come
// from this measurement) and to test the checker with realistic candidates.
//
// Every op runs the reference math on inputs rounded to the precision and rounds its output to the
// precision, except:
// - matmul accumulates in fp32 (not double) over 8 interleaved partial sums combined pairwise, as
//   a SIMD or tensor-core kernel does; for tf32 its inputs are rounded to tf32 (10-bit mantissa)
//   and its output stays fp32, as in PyTorch's allow_tf32 matmuls; for bf16 and fp16 its inputs
//   and output are rounded to that type (activations and weights stored in it);
// - softmax, norms and attention probabilities are computed from rounded inputs, with fp32 sums.
// fp32 thus differs from the reference only by summation order and fp32 accumulation.
// Rounding is to nearest even: bf16 as semantics.md section 7, fp16 through _Float16, tf32 by
// clearing 13 mantissa bits with the same rule.
#pragma once

#include "golden/compare.h"
#include "ref/kernels.h"

namespace moeref::golden {

const Kernels& emulated_kernels(Precision precision);

float round_to_precision(float value, Precision precision);

}  // namespace moeref::golden
