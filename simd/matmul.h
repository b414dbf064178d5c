// Highway matmul, the contract of ref/ops/matmul.h, same arguments in the same order:
//
//   y [rows, out] = x [rows, in] . w^T        w stored [out, in], the model's copy read in place
//
// Three ways, by the number of token rows, each in fp32 with its own fixed summation order:
// - up to kMatvecRows rows (decode, a decode batch, a speculative block, an expert's few tokens):
//   matrix-vector products that stream each weight row once per 4 tokens (simd/matvec.h); a
//   token's outputs are the bits it gets alone, however many share the call;
// - up to kTileGemmMaxRows (a prefill's experts, projections and LM head): a blocked GEMM of
//   Highway register tiles (simd/tile_gemm.h);
// - more: OpenBLAS sgemm in tiles fixed by the product's shape (simd/blas_gemm.h).
// Every path gives the same bits at any thread count (each output one thread's sum, in an order
// that does not depend on the split). Tests: tests/simd_test.cc (SimdMatmul) against ref::matmul.
#pragma once

#include <cstdint>

namespace moeref::simd {

// The most rows that go through matrix-vector products (at most two passes over the weights).
inline constexpr int64_t kMatvecRows = 8;

void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out);

}  // namespace moeref::simd
