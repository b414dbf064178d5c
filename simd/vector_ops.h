// Highway kernels for the inner loops of simd/: dot products, matrix-vector products and axpy,
// compiled for every SIMD target Highway knows and dispatched at run time to the best one the CPU
// supports (Highway's skeleton pattern, simd/vector_ops.cc).
//
// Sums are in fp32 over four independent vector accumulators (so the loads of one don't wait on
// the adds of another), combined at the end: a fixed order for a given target and size, so the
// same inputs give the same bits run to run. The result differs from the reference's double sums
// by fp32 rounding, within the tolerances of docs/golden-format.md. Unaligned pointers and any n
// (0 included) are fine.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moeref::simd {

float dot(const float* a, const float* b, size_t n);

// y[o] = dot(w + o * in, x, in) for o < out: a linear layer on one token, w: [out, in]; the same
// bits as dot. The rows are split into one contiguous block per OpenMP thread from 2^15
// multiply-adds up, each row's sum one thread's; the weights are prefetched 8 KiB ahead of the
// loads, across the 4 KiB page boundaries where the hardware prefetcher stops.
void matvec(const float* w, const float* x, float* y, int64_t out, int64_t in);

// y [rows, out] = x [rows, in] . w^T for a few rows (a decode batch, a speculative block): each
// weight row is loaded once per 4 rows of x and dotted with each of them. Row r's results are the
// same bits as matvec(w, x + r * in, ...), so a token's result does not depend on how many
// others share the call; split over threads as matvec.
void matvec_rows(const float* w, const float* x, float* y, int64_t rows, int64_t out, int64_t in);

// y[i] += alpha * x[i]
void axpy(float alpha, const float* x, float* y, size_t n);

}  // namespace moeref::simd
