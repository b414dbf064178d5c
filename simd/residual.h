// Highway residual add, the contract of ref/ops/residual.h: x, branch: [n], x += branch, the two
// not overlapping; any n, 0 included, and unaligned pointers are fine. One fp32 add per element:
// the reference's bits (n >= 2^16 split over OpenMP threads in chunks). Tests:
// tests/simd_ops_test.cc (ResidualAddIsTheReferenceBitForBit).
#pragma once

#include <cstdint>

namespace moeref::simd {

void residual_add(float* x, const float* branch, int64_t n);

}  // namespace moeref::simd
