// Matrix multiplication against a weight in the [out, in] layout of a linear layer.
//
//   y[r, o] = sum_i x[r, i] * w[o, i]        x: [rows, in], w: [out, in], y: [rows, out]
//
// Each output is a dot product accumulated in double in index order and rounded once to fp32,
// so it does not depend on how the work is split across threads (rows and outputs are
// independent). x and y must not overlap.
//
// Fast twin: simd/matmul.h, the same arguments in the same order. Tests: tests/ops_test.cc
// (Matmul); the twin against this op: tests/simd_test.cc (SimdMatmul).
#pragma once

#include <cstdint>

namespace moeref::ref {

void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out);

// sum_i a[i] * b[i] in double, index order. The reduction every ref op is built on.
double dot(const float* a, const float* b, int64_t n);

}  // namespace moeref::ref
