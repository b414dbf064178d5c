// Softmax over the last axis: p[j] = exp(x[j] - max) / sum_k exp(x[k] - max).
//
// Subtracting the maximum first keeps exp() from overflowing on large logits without changing
// the result. The exponentials and their sum are kept in double, summed in index order; each
// probability is rounded once to fp32.
//
// Fast twin: simd/softmax.h, the same arguments in the same order. Tests: tests/ops_test.cc
// (Softmax); the twin against this op: tests/simd_ops_test.cc.
#pragma once

#include <cstdint>

namespace moeref::ref {

// x: [rows, n], in place.
void softmax(float* x, int64_t rows, int64_t n);

// log(sum_j exp(x[j])) in double, stable for large x.
double log_sum_exp(const float* x, int64_t n);

}  // namespace moeref::ref
