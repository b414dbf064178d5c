#include "simd/tile_gemm.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>

#include "simd/blas_gemm.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/tile_gemm.cc"
#include "hwy/aligned_allocator.h"
#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

#ifndef MOEREF_SIMD_TILE_GEMM_ONCE
#define MOEREF_SIMD_TILE_GEMM_ONCE
namespace moeref::simd::tile_gemm_detail {

// Output columns per round of passes: their partial sums between passes, transposed (kChunk x
// padded rows floats), wait in a buffer. A multiple of every tile height (6, 3 and 1 weight
// rows), so that only a call's last chunk has a partial tile.
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

// Vectors of tokens per tile: 4 on AVX-512 (24 accumulators of its 32 registers), 2 where there
// are 16 registers (12 accumulators: 2 token vectors, the broadcast weight and the 12 fit; 4 x 3
// did not, and spilled). A whole block's tile has at least the 8 independent chains that two FMA
// units of latency 4 need; a call's last, partial block gets tiles of its 1 to 3 vectors only.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr size_t kTileVectors = 4;
#else
constexpr size_t kTileVectors = 2;
#endif
// Weight rows per tile.
constexpr size_t kTileRows = 6;

size_t BlockTokensImpl() { return kTileVectors * hn::Lanes(DF()); }

// Token blocks [first_block, end_block) of x [rows, in] packed: block b is [in, nb] at
// xp + b * in * nb (x transposed, zeros past the rows). By 16 columns of x (one cache line of
// each row) at a time: column by column, x's rows, `in` floats apart, would all fall into the same
// few sets of the L1 cache when `in` is a multiple of 1024.
void PackTokensImpl(const float* x, size_t rows, size_t in, size_t first_block, size_t end_block,
                    float* xp) {
  const size_t nb = BlockTokensImpl();
  constexpr size_t kColumns = 16;
  for (size_t b = first_block; b < end_block; ++b) {
    float* block = xp + b * in * nb;
    const size_t first = b * nb, count = std::min(nb, rows - first);
    for (size_t k0 = 0; k0 < in; k0 += kColumns) {
      const size_t k1 = std::min(in, k0 + kColumns);
      for (size_t t = 0; t < count; ++t) {
        const float* x_row = x + (first + t) * in;
        for (size_t k = k0; k < k1; ++k) block[k * nb + t] = x_row[k];
      }
      for (size_t k = k0; k < k1; ++k)
        std::fill(block + k * nb + count, block + (k + 1) * nb, 0.0f);
    }
  }
}

// Where a tile's sums go: y (its first token's row at the tile's first output) at the last pass
// over k, `tokens` rows of it; before, the partial-sum buffer (yt, row r at yt + r * yt_stride).
struct TileOutput {
  float* y;
  size_t out, tokens;
  float* yt;
  size_t yt_stride;
};

// R weight rows (w, `in` floats apart, at the pass's first k) against V vectors of a block's
// tokens (tokens + k * nb) over `depth` values of k: one multiply-add chain per output, from zero,
// or from the partial sums of the previous pass when `resume`.
template <size_t V, size_t R>
HWY_NOINLINE void Tile(const float* HWY_RESTRICT tokens, size_t nb, const float* HWY_RESTRICT w,
                       size_t in, size_t depth, bool resume, const TileOutput& output) {
  const DF d;
  const size_t lanes = hn::Lanes(d);
  VF acc[R][V];
#pragma GCC unroll 32
  for (size_t r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) {
      acc[r][v] = resume ? hn::Load(d, output.yt + r * output.yt_stride + v * lanes) : hn::Zero(d);
    }
  }
  for (size_t k = 0; k < depth; ++k) {
    // The next tile's rows, a line of each per 16 k: they are read while this tile computes, so
    // that its first block finds them in the cache. The hardware prefetcher, left to the R
    // interleaved streams of this tile's rows, kept few tokens' tiles waiting on memory.
    if (k % 16 == 0) {
#pragma GCC unroll 32
      for (size_t r = 0; r < R; ++r) hwy::Prefetch(w + (R + r) * in + k);
    }
    VF token[V];
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) token[v] = hn::Load(d, tokens + k * nb + v * lanes);
#pragma GCC unroll 32
    for (size_t r = 0; r < R; ++r) {
      const VF weight = hn::Set(d, w[r * in + k]);
#pragma GCC unroll 8
      for (size_t v = 0; v < V; ++v) acc[r][v] = hn::MulAdd(weight, token[v], acc[r][v]);
    }
  }
  if (output.y == nullptr) {
#pragma GCC unroll 32
    for (size_t r = 0; r < R; ++r) {
#pragma GCC unroll 8
      for (size_t v = 0; v < V; ++v) {
        hn::Store(acc[r][v], d, output.yt + r * output.yt_stride + v * lanes);
      }
    }
    return;
  }
  // The last pass: through a small buffer in the L1 cache into y's rows, R outputs each.
  HWY_ALIGN float sums[R][V * hn::MaxLanes(d)];
#pragma GCC unroll 32
  for (size_t r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) hn::Store(acc[r][v], d, sums[r] + v * lanes);
  }
  for (size_t t = 0; t < output.tokens; ++t) {
#pragma GCC unroll 32
    for (size_t r = 0; r < R; ++r) output.y[t * output.out + r] = sums[r][t];
  }
}

// One pass over k of a chunk of outputs against a slab of token blocks.
struct Pass {
  const float* xp;      // the packed tokens
  size_t nb, rows, in;  // tokens per block, rows of the call, k values of a row
  size_t first_block, end_block;
  size_t k0, depth;
  const float* w;  // the chunk's first weight row
  float* y;        // y at the chunk's first output on the last pass, else null
  size_t out;
  float* yt;  // the chunk's partial sums (row stride yt_stride) when there are several passes
  size_t yt_stride;
};

// Weight rows [begin, end) of the chunk in tiles of R rows, each against the pass's blocks
// [first_block, end_block) with V vectors of tokens; what is left, in tiles of R/2, R/4 ... 1.
template <size_t V, size_t R>
void TileRows(const Pass& pass, size_t first_block, size_t end_block, size_t begin, size_t end) {
  size_t n = begin;
  for (; n + R <= end; n += R) {
    for (size_t b = first_block; b < end_block; ++b) {
      const size_t first_token = b * pass.nb;
      const bool last_pass = pass.y != nullptr;
      const TileOutput output{
          .y = last_pass ? pass.y + first_token * pass.out + n : nullptr,
          .out = pass.out,
          .tokens = std::min(pass.nb, pass.rows - first_token),
          .yt = pass.yt == nullptr ? nullptr : pass.yt + n * pass.yt_stride + first_token,
          .yt_stride = pass.yt_stride};
      Tile<V, R>(pass.xp + b * pass.in * pass.nb + pass.k0 * pass.nb, pass.nb,
                 pass.w + n * pass.in + pass.k0, pass.in, pass.depth, pass.k0 > 0, output);
    }
  }
  if constexpr (R > 1) TileRows<V, R / 2>(pass, first_block, end_block, n, end);
}

// The chunk's `outputs` rows against the pass's blocks: whole blocks with tiles of kTileVectors
// vectors; the call's last block, when partial, with tiles of only its `last_vectors` vectors.
void TileChunk(const Pass& pass, size_t last_vectors, size_t outputs) {
  const size_t full_end = last_vectors < kTileVectors ? pass.end_block - 1 : pass.end_block;
  TileRows<kTileVectors, kTileRows>(pass, pass.first_block, full_end, 0, outputs);
  if (full_end == pass.end_block) return;
  switch (last_vectors) {
    case 1:
      TileRows<1, kTileRows>(pass, full_end, pass.end_block, 0, outputs);
      break;
    case 2:
      TileRows<2, kTileRows>(pass, full_end, pass.end_block, 0, outputs);
      break;
    default:
      TileRows<3, kTileRows>(pass, full_end, pass.end_block, 0, outputs);
      break;
  }
}

// y[t, o] for t < rows and o in [begin, end) from the packed tokens xp: kChunk outputs at a time;
// for each, passes over k of at most `depth` values; in each pass, the token blocks in slabs of
// `slab_blocks`, whose part of the pass stays in the L2 cache while the chunk's weights stream
// past it.
void TileColumnsImpl(const float* xp, size_t rows, size_t in, const float* w, float* y, size_t out,
                     size_t begin, size_t end, size_t depth, size_t slab_blocks, float* yt) {
  const size_t lanes = hn::Lanes(DF());
  const size_t nb = BlockTokensImpl();
  const size_t blocks = (rows + nb - 1) / nb;
  const size_t last_vectors = (rows - (blocks - 1) * nb + lanes - 1) / lanes;
  for (size_t first = begin; first < end; first += kChunk) {
    const size_t outputs = std::min(kChunk, end - first);
    for (size_t k0 = 0; k0 < in; k0 += depth) {
      const size_t pass_depth = std::min(depth, in - k0);
      for (size_t b0 = 0; b0 < blocks; b0 += slab_blocks) {
        const size_t b1 = std::min(blocks, b0 + slab_blocks);
        const Pass pass{.xp = xp,
                        .nb = nb,
                        .rows = rows,
                        .in = in,
                        .first_block = b0,
                        .end_block = b1,
                        .k0 = k0,
                        .depth = pass_depth,
                        .w = w + first * in,
                        .y = k0 + pass_depth == in ? y + first : nullptr,
                        .out = out,
                        .yt = yt,
                        .yt_stride = blocks * nb};
        TileChunk(pass, b1 == blocks ? last_vectors : kTileVectors, outputs);
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

// From kGemmSplitWork multiply-adds (simd/blas_gemm.h) the output columns are split over the
// threads, in blocks of kSplitColumns: a multiple of every tile height, so that only the last block
// has a partial tile.
constexpr size_t kSplitColumns = 48;

// The core's L2 cache in bytes, as the C library reports it (the CPU's own description); where it
// reports none, 256 KiB, the smallest of the x86-64 cores with AVX2.
size_t l2_cache_bytes() {
  static const size_t bytes = [] {
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return reported > 0 ? static_cast<size_t>(reported) : size_t{256} << 10;
  }();
  return bytes;
}

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

Scratch& packed_tokens() {
  thread_local Scratch scratch;
  return scratch;
}

Scratch& partial_sums() {
  thread_local Scratch scratch;
  return scratch;
}

}  // namespace

HWY_EXPORT(BlockTokensImpl);
HWY_EXPORT(PackTokensImpl);
HWY_EXPORT(TileColumnsImpl);

TileGemmBlocking tile_gemm_blocking(int64_t in) {
  const size_t nb = HWY_DYNAMIC_DISPATCH(BlockTokensImpl)();
  const size_t block_bytes_per_k = nb * sizeof(float);
  const size_t n_in = static_cast<size_t>(std::max<int64_t>(in, 1));
  // A block's part of a pass in a quarter of the L2 cache, whole 64-byte lines of each weight
  // row; then passes of equal depth.
  const size_t max_depth = std::max<size_t>(16, l2_cache_bytes() / 4 / block_bytes_per_k / 16 * 16);
  const size_t passes = (n_in + max_depth - 1) / max_depth;
  const size_t depth = ((n_in + passes - 1) / passes + 15) / 16 * 16;
  // A slab's part of a pass in half of it: the rest for the weights and the outputs in flight.
  const size_t slab_blocks =
      std::max<size_t>(1, l2_cache_bytes() / 2 / (depth * block_bytes_per_k));
  return {static_cast<int64_t>(nb), static_cast<int64_t>(depth), static_cast<int64_t>(slab_blocks)};
}

void tile_gemm_xwt(const float* x, const float* w, float* y, int64_t rows, int64_t in,
                   int64_t out) {
  if (rows <= 0 || out <= 0) return;
  if (in == 0) {
    std::fill(y, y + rows * out, 0.0f);
    return;
  }
  const size_t n_rows = static_cast<size_t>(rows), n_in = static_cast<size_t>(in);
  const size_t n_out = static_cast<size_t>(out);
  const TileGemmBlocking blocking = tile_gemm_blocking(in);
  const size_t nb = static_cast<size_t>(blocking.block_tokens);
  const size_t depth = static_cast<size_t>(blocking.depth);
  const size_t slab_blocks = static_cast<size_t>(blocking.slab_blocks);
  const size_t blocks = (n_rows + nb - 1) / nb;
  const bool several_passes = depth < n_in;

  float* xp = packed_tokens().get(blocks * nb * n_in);
  const size_t column_blocks = (n_out + kSplitColumns - 1) / kSplitColumns;
  const bool split = !omp_in_parallel() && omp_get_max_threads() > 1 && column_blocks > 1 &&
                     rows * in * out >= kGemmSplitWork;
  if (!split) {
    HWY_DYNAMIC_DISPATCH(PackTokensImpl)(x, n_rows, n_in, 0, blocks, xp);
    float* yt = several_passes ? partial_sums().get(kChunk * blocks * nb) : nullptr;
    HWY_DYNAMIC_DISPATCH(TileColumnsImpl)
    (xp, n_rows, n_in, w, y, n_out, 0, n_out, depth, slab_blocks, yt);
    return;
  }
#pragma omp parallel
  {
    const size_t part = static_cast<size_t>(omp_get_thread_num());
    const size_t parts = static_cast<size_t>(omp_get_num_threads());
    HWY_DYNAMIC_DISPATCH(PackTokensImpl)
    (x, n_rows, n_in, blocks * part / parts, blocks * (part + 1) / parts, xp);
#pragma omp barrier
    const size_t begin = std::min(n_out, column_blocks * part / parts * kSplitColumns);
    const size_t end = std::min(n_out, column_blocks * (part + 1) / parts * kSplitColumns);
    if (begin < end) {
      float* yt = several_passes ? partial_sums().get(kChunk * blocks * nb) : nullptr;
      HWY_DYNAMIC_DISPATCH(TileColumnsImpl)
      (xp, n_rows, n_in, w, y, n_out, begin, end, depth, slab_blocks, yt);
    }
  }
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
