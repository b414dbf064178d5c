#include "simd/tile_gemm.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

#include "simd/activation.h"
#include "simd/blas_gemm.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/tile_gemm.cc"
#include "hwy/aligned_allocator.h"
#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// After highway.h: the transposes and the register count are per target too.
#include "simd/transpose-inl.h"
#include "simd/vector_registers-inl.h"

#ifndef MOEREF_SIMD_TILE_GEMM_ONCE
#define MOEREF_SIMD_TILE_GEMM_ONCE
namespace moeref::simd::tile_gemm_detail {

// Output columns per round of passes: their sums, transposed (kChunk x padded rows floats), wait
// in a buffer between passes and until they go into y. A multiple of every tile height (6, 3 and
// 1 weight rows), so that only a call's last chunk has a partial tile.
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
constexpr size_t kTileVectors = kVectorRegisters >= 32 ? 4 : 2;
// Weight rows per tile.
constexpr size_t kTileRows = 6;
// Where the tiles prefetch their block's tokens (tile_gemm_prefetches_tokens), how many values of
// k ahead of the loads: 8 of the block's rows of tokens, 2 KiB on AVX-512 (4 lines a row).
constexpr size_t kTokensAhead = 8;

size_t BlockTokensImpl() { return kTileVectors * hn::Lanes(DF()); }

// Token blocks [first_block, end_block) of x [rows, in] packed: block b is [in, nb] at
// xp + b * in * nb (x transposed, zeros past the rows). By 16 columns of x (one cache line of
// each row) at a time, 8 rows at a time within them (two 8 x 8 transposes), so that each row's
// line is used whole once loaded: x's rows, `in` floats apart, fall into the same few sets of the
// L1 cache when `in` is a multiple of 1024, and a block's 64 rows would evict each other between
// two visits. What is left (a partial line, fewer than 8 rows, a target of 4 lanes) goes through
// Transpose.
void PackTokensImpl(const float* x, size_t rows, size_t in, size_t first_block, size_t end_block,
                    float* xp) {
  const size_t nb = BlockTokensImpl();
  constexpr size_t kColumns = 16;
  for (size_t b = first_block; b < end_block; ++b) {
    float* block = xp + b * in * nb;
    const size_t first = b * nb, count = std::min(nb, rows - first);
    for (size_t k0 = 0; k0 < in; k0 += kColumns) {
      const size_t k1 = std::min(in, k0 + kColumns);
      size_t t = 0;
#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE && HWY_MAX_BYTES >= 32
      if (k1 - k0 == kColumns) {
        for (; t + 8 <= count; t += 8) {
          const float* token_rows[8];
          for (size_t i = 0; i < 8; ++i) token_rows[i] = x + (first + t + i) * in;
          Transpose8x8(token_rows, k0, block + k0 * nb + t, nb);
          Transpose8x8(token_rows, k0 + 8, block + (k0 + 8) * nb + t, nb);
        }
      }
#endif
      if (t < count) {
        Transpose(x + (first + t) * in + k0, in, count - t, k1 - k0, block + k0 * nb + t, nb);
      }
      for (size_t k = k0; k < k1; ++k)
        std::fill(block + k * nb + count, block + (k + 1) * nb, 0.0f);
    }
  }
}

// R weight rows (w, `in` floats apart, at the pass's first k) against V vectors of a block's
// tokens (tokens + k * nb) over `depth` values of k: one multiply-add chain per output, from zero,
// or from the sums of the previous pass when `resume`. The sums go to yt, transposed: output r's
// V vectors of tokens at yt + r * yt_stride. With kPrefetchTokens, the block's tokens of k +
// kTokensAhead are prefetched at k (past the pass's end, those of the next pass or block: a
// prefetch never faults).
template <size_t V, size_t R, bool kPrefetchTokens>
HWY_NOINLINE void Tile(const float* HWY_RESTRICT tokens, size_t nb, const float* HWY_RESTRICT w,
                       size_t in, size_t depth, bool resume, float* HWY_RESTRICT yt,
                       size_t yt_stride) {
  const DF d;
  const size_t lanes = hn::Lanes(d);
  VF acc[R][V];
#pragma GCC unroll 32
  for (size_t r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) {
      acc[r][v] = resume ? hn::Load(d, yt + r * yt_stride + v * lanes) : hn::Zero(d);
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
    if constexpr (kPrefetchTokens) {
      // One prefetch per 64-byte line of the k's tokens (the block is aligned to them).
#pragma GCC unroll 8
      for (size_t i = 0; i < V * lanes; i += 64 / sizeof(float)) {
        hwy::Prefetch(tokens + (k + kTokensAhead) * nb + i);
      }
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
#pragma GCC unroll 32
  for (size_t r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (size_t v = 0; v < V; ++v) hn::Store(acc[r][v], d, yt + r * yt_stride + v * lanes);
  }
}

// One pass over k of a chunk of outputs against a slab of token blocks.
struct Pass {
  const float* xp;  // the packed tokens
  size_t nb, in;    // tokens per block, k values of a row
  size_t first_block, end_block;
  size_t k0, depth;
  const float* w;  // the chunk's first weight row
  float* yt;       // the chunk's sums, transposed: output o's tokens at yt + o * yt_stride
  size_t yt_stride;
  bool prefetch_tokens;  // by the tiles of whole blocks
};

// Weight rows [begin, end) of the chunk in tiles of R rows, each against the pass's blocks
// [first_block, end_block) with V vectors of tokens; what is left, in tiles of R/2, R/4 ... 1.
template <size_t V, size_t R, bool kPrefetchTokens = false>
void TileRows(const Pass& pass, size_t first_block, size_t end_block, size_t begin, size_t end) {
  size_t n = begin;
  for (; n + R <= end; n += R) {
    for (size_t b = first_block; b < end_block; ++b) {
      Tile<V, R, kPrefetchTokens>(pass.xp + b * pass.in * pass.nb + pass.k0 * pass.nb, pass.nb,
                                  pass.w + n * pass.in + pass.k0, pass.in, pass.depth, pass.k0 > 0,
                                  pass.yt + n * pass.yt_stride + b * pass.nb, pass.yt_stride);
    }
  }
  if constexpr (R > 1) {
    TileRows<V, R / 2, kPrefetchTokens>(pass, first_block, end_block, n, end);
  }
}

// The chunk's `outputs` rows against the pass's blocks: whole blocks with tiles of kTileVectors
// vectors, their tokens prefetched where the pass says so; the call's last block, when partial,
// with tiles of only its `last_vectors` vectors.
void TileChunk(const Pass& pass, size_t last_vectors, size_t outputs) {
  const size_t full_end = last_vectors < kTileVectors ? pass.end_block - 1 : pass.end_block;
  if (pass.prefetch_tokens) {
    TileRows<kTileVectors, kTileRows, true>(pass, pass.first_block, full_end, 0, outputs);
  } else {
    TileRows<kTileVectors, kTileRows>(pass, pass.first_block, full_end, 0, outputs);
  }
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

// y[t, o] = yt[o, t] for tokens [t0, t1) and `outputs` outputs (y at the first of them), each
// token's row of y written in order. Why not straight from the tiles' registers: a tile's 64 rows
// of y, 6 outputs each and `out` floats apart, fall into the same few sets of the L1 cache when
// `out` is a multiple of 256 (every product of the model's configs), and writing them cost the
// products 10-20% on the Zen 5 of docs/performance.md. yt's rows, an odd number of lines apart,
// spread over the sets.
void StoreOutputs(const float* HWY_RESTRICT yt, size_t yt_stride, size_t t0, size_t t1,
                  size_t outputs, float* HWY_RESTRICT y, size_t out) {
  Transpose(yt + t0, yt_stride, outputs, t1 - t0, y + t0 * out, out);
}

// The sums of a chunk of `outputs` outputs (w at the first one's row) for every token of the packed
// tokens xp, into yt (output o's tokens at yt + o * yt_stride): passes over k of at most
// `blocking.depth` values; in each pass, the token blocks in slabs of `blocking.slab_blocks`,
// whose part of the pass stays in the L2 cache while the chunk's weights stream past it. The sums
// wait in yt between passes; after a slab's last pass, slab_done(t0, t1) is called for its tokens
// [t0, t1).
template <class SlabDone>
void ChunkSums(const float* xp, size_t rows, size_t in, const float* w, size_t outputs,
               const TileGemmBlocking& blocking, bool prefetch_tokens, float* yt, size_t yt_stride,
               const SlabDone& slab_done) {
  const size_t lanes = hn::Lanes(DF());
  const size_t nb = BlockTokensImpl();
  const size_t depth = static_cast<size_t>(blocking.depth);
  const size_t slab_blocks = static_cast<size_t>(blocking.slab_blocks);
  const size_t blocks = (rows + nb - 1) / nb;
  const size_t last_vectors = (rows - (blocks - 1) * nb + lanes - 1) / lanes;
  for (size_t k0 = 0; k0 < in; k0 += depth) {
    const size_t pass_depth = std::min(depth, in - k0);
    for (size_t b0 = 0; b0 < blocks; b0 += slab_blocks) {
      const size_t b1 = std::min(blocks, b0 + slab_blocks);
      const Pass pass{.xp = xp,
                      .nb = nb,
                      .in = in,
                      .first_block = b0,
                      .end_block = b1,
                      .k0 = k0,
                      .depth = pass_depth,
                      .w = w,
                      .yt = yt,
                      .yt_stride = yt_stride,
                      .prefetch_tokens = prefetch_tokens};
      TileChunk(pass, b1 == blocks ? last_vectors : kTileVectors, outputs);
      if (k0 + pass_depth == in) slab_done(b0 * nb, std::min(rows, b1 * nb));
    }
  }
}

// y[t, o] for t < rows and o in [begin, end) from the packed tokens xp: kChunk outputs at a time,
// their sums (ChunkSums) going from yt into y as each slab is done.
void TileColumnsImpl(const float* xp, size_t rows, size_t in, const float* w, float* y, size_t out,
                     size_t begin, size_t end, const TileGemmBlocking& blocking,
                     bool prefetch_tokens, float* yt, size_t yt_stride) {
  for (size_t first = begin; first < end; first += kChunk) {
    const size_t outputs = std::min(kChunk, end - first);
    ChunkSums(xp, rows, in, w + first * in, outputs, blocking, prefetch_tokens, yt, yt_stride,
              [&](size_t t0, size_t t1) {
                StoreOutputs(yt, yt_stride, t0, t1, outputs, y + first, out);
              });
  }
}

// A SwiGLU feed-forward on the calling thread, from the packed tokens xp [rows, d]: for each chunk
// of d_ff outputs, the up and gate sums (ChunkSums into yt_up, yt_gate), swiglu over them in
// place, and the results copied, a block's tokens at a time, into the packed hidden tokens hp
// (blocks of [d_ff, nb]: the layout PackTokensImpl would give the hidden [rows, d_ff]); then the
// down product from hp into y [rows, d]. The padding tokens' sums are zero (with finite weights)
// and swiglu(0, 0) = 0, so hp's padding is zero as packing makes it, up to the last vector the
// tiles compute (the rest of a partial last block is neither written nor read); a padding token's
// values never reach a real token's outputs either way. for_d, for_ff: the blocking of products
// from d and from d_ff values (tile_gemm_blocking).
void SwigluFeedForwardImpl(const float* xp, size_t rows, size_t d, const float* gate,
                           const float* up, const float* down, size_t d_ff, float* y,
                           const TileGemmBlocking& for_d, const TileGemmBlocking& for_ff,
                           bool prefetch_tokens, float* yt_gate, float* yt_up, size_t yt_stride,
                           float* hp) {
  const size_t nb = BlockTokensImpl();
  const size_t blocks = (rows + nb - 1) / nb;
  // The tokens the tiles compute: whole vectors (a last block's tiles stop at its last vector).
  const size_t lanes = hn::Lanes(DF());
  const size_t computed = (rows + lanes - 1) / lanes * lanes;
  const auto nothing = [](size_t, size_t) {};
  for (size_t first = 0; first < d_ff; first += kChunk) {
    const size_t outputs = std::min(kChunk, d_ff - first);
    ChunkSums(xp, rows, d, up + first * d, outputs, for_d, prefetch_tokens, yt_up, yt_stride,
              nothing);
    ChunkSums(xp, rows, d, gate + first * d, outputs, for_d, prefetch_tokens, yt_gate, yt_stride,
              nothing);
    for (size_t o = 0; o < outputs; ++o) {
      float* hidden = yt_up + o * yt_stride;
      swiglu(yt_gate + o * yt_stride, hidden, hidden, static_cast<int64_t>(computed));
      for (size_t b = 0; b < blocks; ++b) {
        std::copy_n(hidden + b * nb, std::min(nb, computed - b * nb),
                    hp + (b * d_ff + first + o) * nb);
      }
    }
  }
  TileColumnsImpl(hp, rows, d_ff, down, y, d, 0, d, for_ff, prefetch_tokens, yt_up, yt_stride);
}

// The sums of one chunk of kChunk outputs (w [kChunk, in]) for `rows` packed tokens xp, into yt:
// what the first call times (tile_gemm_prefetches_tokens).
void ChunkAloneImpl(const float* xp, size_t rows, size_t in, const float* w,
                    const TileGemmBlocking& blocking, bool prefetch_tokens, float* yt,
                    size_t yt_stride) {
  ChunkSums(xp, rows, in, w, kChunk, blocking, prefetch_tokens, yt, yt_stride,
            [](size_t, size_t) {});
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::simd {

namespace {

using tile_gemm_detail::kChunk;

// From kGemmSplitWork multiply-adds (simd/blas_gemm.h) the output columns are split over the
// threads, in blocks of kSplitColumns: the tile height, so that only the last block has a partial
// tile, and the threads' shares differ by at most one block (48 columns left k and v, 64 outputs,
// split 48 to 16).
constexpr size_t kSplitColumns = 6;

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

Scratch& tile_sums() {
  thread_local Scratch scratch;
  return scratch;
}

Scratch& packed_hidden() {
  thread_local Scratch scratch;
  return scratch;
}

bool prefetches_tokens(TokenPrefetch prefetch) {
  switch (prefetch) {
    case TokenPrefetch::kOff:
      return false;
    case TokenPrefetch::kOn:
      return true;
    case TokenPrefetch::kMeasured:
      return tile_gemm_prefetches_tokens();
  }
  throw std::invalid_argument("tile_gemm: a TokenPrefetch value out of its range");
}

// The sums' buffer rows for a call of `rows` tokens in blocks of nb: the padded tokens and then
// some, an odd number of 64-byte lines in all (StoreOutputs reads its columns).
size_t sums_stride(size_t rows, size_t nb) {
  const size_t line_floats = 64 / sizeof(float);
  const size_t blocks = (rows + nb - 1) / nb;
  return ((blocks * nb + line_floats - 1) / line_floats | 1) * line_floats;
}

}  // namespace

HWY_EXPORT(BlockTokensImpl);
HWY_EXPORT(PackTokensImpl);
HWY_EXPORT(TileColumnsImpl);
HWY_EXPORT(SwigluFeedForwardImpl);
HWY_EXPORT(ChunkAloneImpl);

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

namespace {

// Prefetching the tokens is kept where the measured call takes at most this share of the time
// without: clearly faster, not a tie decided by the noise of a few calls.
constexpr double kPrefetchGain = 0.95;

// Whether the tiles are faster with their tokens prefetched, timed on the calling thread
// (tile_gemm.h).
bool prefetching_measured_faster() {
  // A chunk of outputs against 512 tokens of small's width: 8 blocks of 64 on AVX-512, whose
  // part of the pass (128 KiB) streams from the L2 cache as in a prefill's larger products.
  constexpr size_t kRounds = 5, kRows = 512, kIn = 512;
  const TileGemmBlocking blocking = tile_gemm_blocking(kIn);
  const size_t nb = static_cast<size_t>(blocking.block_tokens);
  const size_t padded = (kRows + nb - 1) / nb * nb, yt_stride = sums_stride(kRows, nb);
  auto xp = hwy::AllocateAligned<float>(padded * kIn);
  auto w = hwy::AllocateAligned<float>(kChunk * kIn);
  auto yt = hwy::AllocateAligned<float>(kChunk * yt_stride);
  std::fill(xp.get(), xp.get() + padded * kIn, 0.5f);
  std::fill(w.get(), w.get() + kChunk * kIn, 0.25f);
  // The best of kRounds calls each way after one untimed call each, in alternation, each way
  // first in every other round (a clock that drifts within a round favours neither).
  double best[2] = {std::numeric_limits<double>::infinity(),
                    std::numeric_limits<double>::infinity()};
  for (size_t round = 0; round <= kRounds; ++round) {
    for (size_t turn = 0; turn < 2; ++turn) {
      const size_t prefetch = (round + turn) % 2;
      const auto start = std::chrono::steady_clock::now();
      HWY_DYNAMIC_DISPATCH(ChunkAloneImpl)
      (xp.get(), kRows, kIn, w.get(), blocking, prefetch == 1, yt.get(), yt_stride);
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      if (round > 0) best[prefetch] = std::min(best[prefetch], took.count());
    }
  }
  return best[1] <= kPrefetchGain * best[0];
}

}  // namespace

TokenPrefetch token_prefetch_setting(const char* value) {
  if (value == nullptr || std::string_view(value) == "measure") return TokenPrefetch::kMeasured;
  if (std::string_view(value) == "on") return TokenPrefetch::kOn;
  if (std::string_view(value) == "off") return TokenPrefetch::kOff;
  throw std::invalid_argument(std::string(kTokenPrefetchVariable) + " is \"" + value +
                              "\": it takes on, off or measure");
}

bool tile_gemm_prefetches_tokens() {
  static const bool prefetch = [] {
    const TokenPrefetch setting = token_prefetch_setting(std::getenv(kTokenPrefetchVariable));
    if (setting == TokenPrefetch::kMeasured) return prefetching_measured_faster();
    return setting == TokenPrefetch::kOn;
  }();
  return prefetch;
}

void tile_gemm_xwt(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out,
                   TokenPrefetch prefetch) {
  if (rows <= 0 || out <= 0) return;
  if (in == 0) {
    std::fill(y, y + rows * out, 0.0f);
    return;
  }
  const size_t n_rows = static_cast<size_t>(rows), n_in = static_cast<size_t>(in);
  const size_t n_out = static_cast<size_t>(out);
  const TileGemmBlocking blocking = tile_gemm_blocking(in);
  const bool prefetch_tokens = prefetches_tokens(prefetch);
  const size_t nb = static_cast<size_t>(blocking.block_tokens);
  const size_t blocks = (n_rows + nb - 1) / nb;
  const size_t yt_stride = sums_stride(n_rows, nb);

  float* xp = packed_tokens().get(blocks * nb * n_in);
  const size_t column_blocks = (n_out + kSplitColumns - 1) / kSplitColumns;
  const bool split = !omp_in_parallel() && omp_get_max_threads() > 1 && column_blocks > 1 &&
                     rows * in * out >= kGemmSplitWork;
  if (!split) {
    HWY_DYNAMIC_DISPATCH(PackTokensImpl)(x, n_rows, n_in, 0, blocks, xp);
    HWY_DYNAMIC_DISPATCH(TileColumnsImpl)
    (xp, n_rows, n_in, w, y, n_out, 0, n_out, blocking, prefetch_tokens,
     tile_sums().get(kChunk * yt_stride), yt_stride);
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
      HWY_DYNAMIC_DISPATCH(TileColumnsImpl)
      (xp, n_rows, n_in, w, y, n_out, begin, end, blocking, prefetch_tokens,
       tile_sums().get(kChunk * yt_stride), yt_stride);
    }
  }
}

void tile_gemm_swiglu_feed_forward(const float* x, const float* gate, const float* up,
                                   const float* down, int64_t rows, int64_t d, int64_t d_ff,
                                   float* y, TokenPrefetch prefetch) {
  if (rows <= 0 || d <= 0) return;
  if (d_ff == 0) {
    std::fill(y, y + rows * d, 0.0f);
    return;
  }
  const size_t n_rows = static_cast<size_t>(rows), n_d = static_cast<size_t>(d);
  const size_t n_ff = static_cast<size_t>(d_ff);
  const TileGemmBlocking for_d = tile_gemm_blocking(d), for_ff = tile_gemm_blocking(d_ff);
  const size_t nb = static_cast<size_t>(for_d.block_tokens);
  const size_t blocks = (n_rows + nb - 1) / nb;
  const size_t yt_stride = sums_stride(n_rows, nb);
  float* xp = packed_tokens().get(blocks * nb * n_d);
  float* hp = packed_hidden().get(blocks * nb * n_ff);
  float* sums = tile_sums().get(2 * kChunk * yt_stride);
  HWY_DYNAMIC_DISPATCH(PackTokensImpl)(x, n_rows, n_d, 0, blocks, xp);
  HWY_DYNAMIC_DISPATCH(SwigluFeedForwardImpl)
  (xp, n_rows, n_d, gate, up, down, n_ff, y, for_d, for_ff, prefetches_tokens(prefetch), sums,
   sums + kChunk * yt_stride, yt_stride, hp);
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
