// The residual connection: x += branch, elementwise, each sum rounded once to fp32.
// x, branch: [n]; they must not overlap.
//
// Fast twin: simd/residual.h, the same arguments in the same order. Tests: tests/ops_test.cc
// (Residual); the twin against this op: tests/simd_ops_test.cc.
#pragma once

#include <cstdint>

namespace moeref::ref {

void residual_add(float* x, const float* branch, int64_t n);

}  // namespace moeref::ref
