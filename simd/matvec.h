// The matmul of simd/ for one to a few token rows (decode, a decode batch, a speculative block, an
// expert's few tokens): Highway matrix-vector products that stream the weights once, compiled for
// every SIMD target Highway knows and dispatched at run time to the best one the CPU supports
// (Highway's skeleton pattern, simd/matvec.cc). simd/matmul.h chooses it; tests/simd_test.cc
// checks it.
//
// y [rows, out] = x [rows, in] . w^T, w stored [out, in]: ref/ops/matmul.h's layout and argument
// order. Each y[r, o] is an fp32 sum over four independent vector accumulators (so the loads of one
// don't wait on the adds of another) combined at the end: a fixed order for a given target and
// `in`, so the same inputs give the same bits run to run. It differs from the reference's double
// sums by fp32 rounding, within the tolerances of docs/golden-format.md. Unaligned pointers and
// any size (0 included) are fine.
#pragma once

#include <cstdint>

namespace moeref::simd {

// One token: y[o] = x . w[o] for o < out. The rows of w are split into one contiguous block per
// OpenMP thread from 2^15 multiply-adds up, each row's sum one thread's; the weights are
// prefetched 8 KiB ahead of the loads, across the 4 KiB page boundaries where the hardware
// prefetcher stops.
void matvec(const float* x, const float* w, float* y, int64_t in, int64_t out);

// A few tokens: each weight row is loaded once per 4 rows of x and dotted with each of them. Row
// r's results are the same bits as matvec(x + r * in, w, ...), so a token's result does not depend
// on how many others share the call; split over threads as matvec.
void matvec_rows(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out);

}  // namespace moeref::simd
