#include "simd/tile_gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstddef>

#include "simd/gemm.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/tile_gemm.cc"
#include "hwy/aligned_allocator.h"
#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#ifndef MOEREF_SIMD_TILE_GEMM_ONCE
#define MOEREF_SIMD_TILE_GEMM_ONCE
namespace moeref::simd::tile_gemm_detail {

// Output columns per pass of the tiles: their transposed results (kChunk x padded rows floats,
// 96 KiB at 128 rows) stay in the L2 cache until they are transposed into y. A multiple of every
// target's tile height (6 or 3), so that only a call's last chunk has a partial tile.
constexpr size_t kChunk = 192;

}  // namespace moeref::simd::tile_gemm_detail
#endif

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;
using tile_gemm_detail::kChunk;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Accumulators per tile: 24 of AVX-512's 32 vector registers, the rest for the V loads of xt and
// the broadcast weight; 12 where there are 16 registers.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr size_t kAccumulators = 24;
#else
constexpr size_t kAccumulators = 12;
#endif
// Vectors of token rows per tile (64 tokens on AVX-512), and weight rows per tile.
constexpr size_t kTileVectors = 4;
constexpr size_t kTileRows = kAccumulators / kTileVectors;

// Token rows per slab, in vectors (128 tokens on AVX-512): a slab's part of xt, in x 128 floats,
// stays in the L2 cache while every weight tile streams past it. The weights are read once per
// slab.
constexpr size_t kSlabVectors = 8;

// How far ahead along each weight row of a tile its lines are prefetched (1 KiB): the R rows are
// R interleaved streams, which the hardware prefetcher follows less well than one.
constexpr size_t kPrefetchFloats = 256;

size_t PaddedRowsImpl(size_t rows) {
  const size_t lanes = hn::Lanes(DF());
  return (rows + lanes - 1) / lanes * lanes;
}

// xt [in, padded] = x [rows, in] transposed, zeros in columns rows .. padded-1. By 16 columns
// of x (one cache line of each row) at a time: column by column, x's rows, `in` floats apart,
// would all fall into the same few sets of the L1 cache when `in` is a multiple of 1024.
void TransposeTokensImpl(const float* x, size_t rows, size_t in, size_t padded, float* xt) {
  constexpr size_t kBlock = 16;
  for (size_t k0 = 0; k0 < in; k0 += kBlock) {
    const size_t k1 = std::min(in, k0 + kBlock);
    for (size_t t = 0; t < rows; ++t) {
      for (size_t k = k0; k < k1; ++k) xt[k * padded + t] = x[t * in + k];
    }
    for (size_t k = k0; k < k1; ++k) std::fill(xt + k * padded + rows, xt + (k + 1) * padded, 0.0f);
  }
}

// yt [R, padded] (row r at yt + r * padded, V vectors of it) = w [R, in] . xt [in, V vectors]:
// one multiply-add chain per element over k in order.
template <size_t V, size_t R>
HWY_NOINLINE void Tile(const float* HWY_RESTRICT xt, size_t padded, const float* HWY_RESTRICT w,
                       size_t in, float* HWY_RESTRICT yt) {
  const DF d;
  const size_t lanes = hn::Lanes(d);
  VF acc[R][V];
#pragma GCC unroll 32
  for (size_t r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) acc[r][v] = hn::Zero(d);
  }
  for (size_t k = 0; k < in; ++k) {
    if (k % 16 == 0) {
#pragma GCC unroll 32
      for (size_t r = 0; r < R; ++r) hwy::Prefetch(w + r * in + k + kPrefetchFloats);
    }
    VF tokens[V];
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) tokens[v] = hn::Load(d, xt + k * padded + v * lanes);
#pragma GCC unroll 32
    for (size_t r = 0; r < R; ++r) {
      const VF weight = hn::Set(d, w[r * in + k]);
#pragma GCC unroll 8
      for (size_t v = 0; v < V; ++v) acc[r][v] = hn::MulAdd(weight, tokens[v], acc[r][v]);
    }
  }
#pragma GCC unroll 32
  for (size_t r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) hn::Store(acc[r][v], d, yt + r * padded + v * lanes);
  }
}

// R weight rows against all `vectors` vectors of token rows, in blocks of at most kTileVectors,
// as even as possible (5 vectors: 3 + 2, not 4 + 1, which would leave a tile of R accumulators
// waiting on its own multiply-adds).
template <size_t R>
void TileAllTokens(size_t vectors, const float* xt, size_t padded, const float* w, size_t in,
                   float* yt) {
  const size_t lanes = hn::Lanes(DF());
  const size_t blocks = (vectors + kTileVectors - 1) / kTileVectors;
  for (size_t b = 0; b < blocks; ++b) {
    const size_t first = vectors * b / blocks, count = vectors * (b + 1) / blocks - first;
    const float* block_xt = xt + first * lanes;
    float* block_yt = yt + first * lanes;
    switch (count) {
      case 1:
        Tile<1, R>(block_xt, padded, w, in, block_yt);
        break;
      case 2:
        Tile<2, R>(block_xt, padded, w, in, block_yt);
        break;
      case 3:
        Tile<3, R>(block_xt, padded, w, in, block_yt);
        break;
      default:
        Tile<kTileVectors, R>(block_xt, padded, w, in, block_yt);
        break;
    }
  }
}

// Weight rows [begin, end) of w in tiles of R rows, then what is left in tiles of R/2, R/4, ... 1.
template <size_t R>
void TileRows(size_t vectors, const float* xt, size_t padded, const float* w, size_t in, float* yt,
              size_t begin, size_t end) {
  size_t n = begin;
  for (; n + R <= end; n += R)
    TileAllTokens<R>(vectors, xt, padded, w + n * in, in, yt + n * padded);
  if constexpr (R > 1) TileRows<R / 2>(vectors, xt, padded, w, in, yt, n, end);
}

// y[t, o] for t < rows and o in [begin, end): the token rows in slabs of at most kSlabVectors
// vectors, and for each slab kChunk outputs at a time through yt.
void TileColumnsImpl(const float* xt, size_t padded, const float* w, size_t in, float* y,
                     size_t rows, size_t out, size_t begin, size_t end, float* yt) {
  const size_t lanes = hn::Lanes(DF());
  const size_t vectors = padded / lanes;
  const size_t slabs = (vectors + kSlabVectors - 1) / kSlabVectors;
  for (size_t slab = 0; slab < slabs; ++slab) {
    const size_t first_token = vectors * slab / slabs * lanes;
    const size_t end_token = vectors * (slab + 1) / slabs * lanes;
    const size_t slab_vectors = (end_token - first_token) / lanes;
    for (size_t first = begin; first < end; first += kChunk) {
      const size_t n = std::min(kChunk, end - first);
      TileRows<kTileRows>(slab_vectors, xt + first_token, padded, w + first * in, in,
                          yt + first_token, 0, n);
      // By 16 outputs (one cache line of each row of y) at a time, for the same reason as
      // TransposeTokensImpl.
      for (size_t o0 = 0; o0 < n; o0 += 16) {
        const size_t o1 = std::min(n, o0 + 16);
        for (size_t t = first_token; t < std::min(rows, end_token); ++t) {
          float* y_row = y + t * out + first;
          for (size_t o = o0; o < o1; ++o) y_row[o] = yt[o * padded + t];
        }
      }
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::simd {

namespace {

using tile_gemm_detail::kChunk;

// From kGemmSplitWork multiply-adds (simd/gemm.h) the output columns are split over the threads,
// in blocks of kSplitColumns: a multiple of every target's tile height (6 or 3), so that only the
// last block has a partial tile.
constexpr size_t kSplitColumns = 48;

// A scratch buffer of one thread, aligned for Highway's loads, grown to the largest request.
class Scratch {
 public:
  float* get(size_t floats) {
    if (floats > size_) {
      data_ = hwy::AllocateAligned<float>(floats);
      size_ = floats;
    }
    return data_.get();
  }

 private:
  hwy::AlignedFreeUniquePtr<float[]> data_;
  size_t size_ = 0;
};

Scratch& transposed_tokens() {
  thread_local Scratch scratch;
  return scratch;
}

Scratch& transposed_outputs() {
  thread_local Scratch scratch;
  return scratch;
}

}  // namespace

HWY_EXPORT(PaddedRowsImpl);
HWY_EXPORT(TransposeTokensImpl);
HWY_EXPORT(TileColumnsImpl);

void tile_gemm_xwt(const float* x, const float* w, float* y, int64_t rows, int64_t in,
                   int64_t out) {
  if (rows <= 0 || out <= 0) return;
  if (in == 0) {
    std::fill(y, y + rows * out, 0.0f);
    return;
  }
  const size_t n_rows = static_cast<size_t>(rows), n_in = static_cast<size_t>(in);
  const size_t n_out = static_cast<size_t>(out);
  const size_t padded = HWY_DYNAMIC_DISPATCH(PaddedRowsImpl)(n_rows);
  float* xt = transposed_tokens().get(padded * n_in);
  HWY_DYNAMIC_DISPATCH(TransposeTokensImpl)(x, n_rows, n_in, padded, xt);

  const size_t blocks = (n_out + kSplitColumns - 1) / kSplitColumns;
  const bool split = !omp_in_parallel() && omp_get_max_threads() > 1 && blocks > 1 &&
                     rows * in * out >= kGemmSplitWork;
  if (!split) {
    HWY_DYNAMIC_DISPATCH(TileColumnsImpl)
    (xt, padded, w, n_in, y, n_rows, n_out, 0, n_out, transposed_outputs().get(kChunk * padded));
    return;
  }
#pragma omp parallel
  {
    const size_t part = static_cast<size_t>(omp_get_thread_num());
    const size_t parts = static_cast<size_t>(omp_get_num_threads());
    const size_t begin = std::min(n_out, blocks * part / parts * kSplitColumns);
    const size_t end = std::min(n_out, blocks * (part + 1) / parts * kSplitColumns);
    if (begin < end) {
      HWY_DYNAMIC_DISPATCH(TileColumnsImpl)
      (xt, padded, w, n_in, y, n_rows, n_out, begin, end,
       transposed_outputs().get(kChunk * padded));
    }
  }
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
