// Highway RMSNorm and LayerNorm, the contract of ref/ops/norm.h, same arguments in the same order:
// x, y: [rows, d] (y may alias x); weight (and bias): [d]; d of 0 and unaligned pointers are fine.
//
// Each row is one thread's (rows are split over OpenMP threads when rows * d >= 2^16), its sums are
// fp32 over four vector accumulators combined at the end, and the tail that does not fill a vector
// goes through the same vector code one lane at a time: a fixed order for a given target and size,
// so the same inputs give the same bits run to run and for any thread count. Against the
// reference's double sums, the fp32 rounding grows like eps * sqrt(d) for random signs
// (tests/simd_ops_test.cc, RmsNorm... and LayerNorm..., holds them to 4 eps (sqrt(d) + 1) of each
// output's scale).
#pragma once

#include <cstdint>

namespace moeref::simd {

// The mean square (or mean and variance) is summed in fp32, 1 / sqrt(... + eps) is taken in double
// and rounded once, and each output is weight * (x * inv_rms) (or MulAdd((x - mean) * inv_std,
// weight, bias)) in fp32.
void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows, int64_t d);
void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                int64_t rows, int64_t d);

}  // namespace moeref::simd
