// Highway softmax, the contract of ref/ops/softmax.h: x [rows, n], each row in place,
// p = exp(x - max) / sum; n of 0 and unaligned pointers are fine.
//
// Each row is one thread's (rows are split over OpenMP threads when rows * n >= 2^16). The
// exponentials are Highway's Exp (1 ulp), summed in fp32 over four vector accumulators combined at
// the end, the tail that does not fill a vector through the same code one lane at a time: a fixed
// order for a given target and size, so the same bits run to run and for any thread count. Against
// the reference's double sums, each probability is within 1e-6 absolute. The row code
// (simd/softmax-inl.h) is shared with simd/attention.h's softmax of the scores. Tests:
// tests/simd_ops_test.cc (Softmax...).
#pragma once

#include <cstdint>

namespace moeref::simd {

void softmax(float* x, int64_t rows, int64_t n);

}  // namespace moeref::simd
