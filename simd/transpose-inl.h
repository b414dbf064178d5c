// Transpose(src, src_stride, rows, cols, dst, dst_stride), per SIMD target: dst[j][i] = src[i][j]
// for i < rows, j < cols, floats only moved. Shared by simd/tile_gemm.cc (packing the tokens,
// storing the sums) and simd/attention.cc (the keys' panels), which include it after
// hwy/highway.h inside their foreach_target.h pass.
//
// How: 8 x 8 blocks in registers where the target has 8-lane vectors (AVX2, AVX-512: 8 loads, 24
// shuffles and 8 stores for 64 floats), then 4 x 4 blocks (4 lanes, every target but scalar: 16
// instructions for 16 floats), the rest one by one. dst is written in bands of 8 (or 4) rows, each
// band's blocks in order along it, so that a band's cache lines are completed one after another.
// src may be given as one pointer per row (TransposeRows: the rows of a paged K/V cache).
//
// Toggle guard (not #pragma once): this header is compiled once per target.
#if defined(MOEREF_SIMD_TRANSPOSE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MOEREF_SIMD_TRANSPOSE_INL_H_
#undef MOEREF_SIMD_TRANSPOSE_INL_H_
#else
#define MOEREF_SIMD_TRANSPOSE_INL_H_
#endif

#include <cstddef>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR
// dst row j, lane i = src row i, lane j, for a 4 x 4 block: src[i] is row i. Two rounds of
// interleaving 128-bit vectors.
inline void Transpose4x4(const float* const* HWY_RESTRICT src, size_t column,
                         float* HWY_RESTRICT dst, size_t dst_stride) {
  const hn::Full128<float> d4;
  const hn::Repartition<uint64_t, decltype(d4)> d2;
  const auto a = hn::LoadU(d4, src[0] + column);
  const auto b = hn::LoadU(d4, src[1] + column);
  const auto c = hn::LoadU(d4, src[2] + column);
  const auto e = hn::LoadU(d4, src[3] + column);
  const auto ab_lower = hn::BitCast(d2, hn::InterleaveLower(d4, a, b));  // a0 b0 a1 b1
  const auto ab_upper = hn::BitCast(d2, hn::InterleaveUpper(d4, a, b));  // a2 b2 a3 b3
  const auto ce_lower = hn::BitCast(d2, hn::InterleaveLower(d4, c, e));
  const auto ce_upper = hn::BitCast(d2, hn::InterleaveUpper(d4, c, e));
  hn::StoreU(hn::BitCast(d4, hn::InterleaveLower(d2, ab_lower, ce_lower)), d4, dst);
  hn::StoreU(hn::BitCast(d4, hn::InterleaveUpper(d2, ab_lower, ce_lower)), d4, dst + dst_stride);
  hn::StoreU(hn::BitCast(d4, hn::InterleaveLower(d2, ab_upper, ce_upper)), d4,
             dst + 2 * dst_stride);
  hn::StoreU(hn::BitCast(d4, hn::InterleaveUpper(d2, ab_upper, ce_upper)), d4,
             dst + 3 * dst_stride);
}
#endif

#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE && HWY_MAX_BYTES >= 32
// The same for an 8 x 8 block, in three rounds: interleaving floats and then pairs of floats
// within each 128-bit half, then joining the halves.
inline void Transpose8x8(const float* const* HWY_RESTRICT src, size_t column,
                         float* HWY_RESTRICT dst, size_t dst_stride) {
  const hn::Full256<float> d8;
  const hn::Repartition<uint64_t, decltype(d8)> d64;
  hn::Vec<decltype(d64)> pairs[8];
  for (size_t i = 0; i < 8; i += 2) {
    const auto a = hn::LoadU(d8, src[i] + column);
    const auto b = hn::LoadU(d8, src[i + 1] + column);
    pairs[i] = hn::BitCast(d64, hn::InterleaveLower(d8, a, b));      // a0 b0 a1 b1 | a4 b4 a5 b5
    pairs[i + 1] = hn::BitCast(d64, hn::InterleaveUpper(d8, a, b));  // a2 b2 a3 b3 | a6 b6 a7 b7
  }
  // quads[q]: rows 0-3 (q < 4) or 4-7 of columns q % 4 and q % 4 + 4, one per half.
  hn::Vec<decltype(d8)> quads[8];
  for (size_t half = 0; half < 2; ++half) {
    const auto* p = pairs + 4 * half;
    quads[4 * half + 0] = hn::BitCast(d8, hn::InterleaveLower(d64, p[0], p[2]));
    quads[4 * half + 1] = hn::BitCast(d8, hn::InterleaveUpper(d64, p[0], p[2]));
    quads[4 * half + 2] = hn::BitCast(d8, hn::InterleaveLower(d64, p[1], p[3]));
    quads[4 * half + 3] = hn::BitCast(d8, hn::InterleaveUpper(d64, p[1], p[3]));
  }
  for (size_t j = 0; j < 4; ++j) {
    hn::StoreU(hn::ConcatLowerLower(d8, quads[4 + j], quads[j]), d8, dst + j * dst_stride);
    hn::StoreU(hn::ConcatUpperUpper(d8, quads[4 + j], quads[j]), d8, dst + (j + 4) * dst_stride);
  }
}
#endif

// dst[j * dst_stride + i] = src[i][j] for i < rows, j < cols.
inline void TransposeRows(const float* const* HWY_RESTRICT src, size_t rows, size_t cols,
                          float* HWY_RESTRICT dst, size_t dst_stride) {
  size_t j = 0;
#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE && HWY_MAX_BYTES >= 32
  for (; j + 8 <= cols; j += 8) {
    float* dst_rows = dst + j * dst_stride;
    size_t i = 0;
    for (; i + 8 <= rows; i += 8) Transpose8x8(src + i, j, dst_rows + i, dst_stride);
    for (; i + 4 <= rows; i += 4) {
      Transpose4x4(src + i, j, dst_rows + i, dst_stride);
      Transpose4x4(src + i, j + 4, dst_rows + 4 * dst_stride + i, dst_stride);
    }
    for (; i < rows; ++i) {
      for (size_t jj = 0; jj < 8; ++jj) dst_rows[jj * dst_stride + i] = src[i][j + jj];
    }
  }
#endif
#if HWY_TARGET != HWY_SCALAR
  for (; j + 4 <= cols; j += 4) {
    float* dst_rows = dst + j * dst_stride;
    size_t i = 0;
    for (; i + 4 <= rows; i += 4) Transpose4x4(src + i, j, dst_rows + i, dst_stride);
    for (; i < rows; ++i) {
      for (size_t jj = 0; jj < 4; ++jj) dst_rows[jj * dst_stride + i] = src[i][j + jj];
    }
  }
#endif
  for (; j < cols; ++j) {
    for (size_t i = 0; i < rows; ++i) dst[j * dst_stride + i] = src[i][j];
  }
}

// The same with src's rows src_stride floats apart, in groups of at most 256 rows.
inline void Transpose(const float* HWY_RESTRICT src, size_t src_stride, size_t rows, size_t cols,
                      float* HWY_RESTRICT dst, size_t dst_stride) {
  constexpr size_t kGroup = 256;
  const float* row_starts[kGroup];
  for (size_t first = 0; first < rows; first += kGroup) {
    const size_t count = rows - first < kGroup ? rows - first : kGroup;
    for (size_t i = 0; i < count; ++i) row_starts[i] = src + (first + i) * src_stride;
    TransposeRows(row_starts, count, cols, dst + first, dst_stride);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#endif  // MOEREF_SIMD_TRANSPOSE_INL_H_
