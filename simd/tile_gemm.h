// The matmul of simd/ for a few dozen token rows (an expert's tokens in a prefill, a short prompt):
// Highway register tiles that read the weights where they are, instead of OpenBLAS, which copies
// ("packs") the whole weight matrix on every call.
//
// y [rows, out] = x [rows, in] . w^T, w stored [out, in] (ref/ops/matmul.h's layout), fp32.
//
// How: x is transposed once per call into xt [in, rows rounded up to whole vectors] (zeros
// beyond the rows). A tile of R weight rows times V vectors of token rows then keeps R x V
// accumulators in registers (24 on AVX-512: R = 6, V = 4, i.e. 6 outputs x 64 tokens): for each
// k it loads V vectors of xt[k] and broadcasts w[n + r][k], so each weight is read once per 64
// tokens, in order along its row, straight from the model's copy. The tiles write y transposed,
// 192 outputs at a time, into a buffer that is then transposed into y. Past 128 tokens (AVX-512)
// the tokens go in slabs, so that a slab's part of xt stays in the L2 cache; the weights are then
// read once per slab.
//
// Each y[t, o] is one fused multiply-add chain over k = 0 .. in-1, from zero: the same bits for
// every split, thread count and position of the token in the call on a given target. The result
// differs from the reference's double sums by fp32 rounding (tests/simd_test.cc bounds it).
//
// Threads: outside an OpenMP region, from 2^20 multiply-adds, the output columns are split in
// blocks of 48 over the team; inside one (an expert's product while the experts run in
// parallel), the calling thread does it all. Scratch buffers are per thread and grow to the
// largest call seen: rows x in floats for xt, and 192 x rows for the transposed tile outputs.
#pragma once

#include <cstdint>

namespace moeref::simd {

// The most token rows tile_gemm_xwt is meant for. Past it, OpenBLAS's packed GEMM is faster on
// the machine of docs/performance.md (one thread, weights from memory: 200 to 512 rows, 197-226
// against 186-212 GFLOP/s): its cost of packing spreads over more rows. The function itself is
// correct for any rows.
inline constexpr int64_t kTileGemmMaxRows = 128;

void tile_gemm_xwt(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out);

}  // namespace moeref::simd
