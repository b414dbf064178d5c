// Normalisation of each row of x: [rows, d] into y: [rows, d] (y may alias x).
//
// RMSNorm (Zhang & Sennrich 2019), as in Mixtral: y = w * (x / sqrt(mean(x^2) + eps)),
// eps inside the square root, the gain applied after normalising (not the 1 + w form).
// LayerNorm (Ba et al. 2016): y = w * (x - mean) / sqrt(var + eps) + b, var the biased variance.
// Sums are accumulated in double in index order; each output is rounded once to fp32.
//
// Fast twin: simd/norm.h, the same arguments in the same order. Tests: tests/ops_test.cc (RmsNorm,
// LayerNorm); the twin against this op: tests/simd_ops_test.cc.
#pragma once

#include <cstdint>

namespace moeref::ref {

void rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows, int64_t d);

void layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                int64_t rows, int64_t d);

}  // namespace moeref::ref
