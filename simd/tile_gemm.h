// The matmul of simd/ for several token rows (a prefill's products: an expert's tokens, a whole
// prompt against the shared weights and the LM head): a blocked GEMM of Highway register tiles
// that reads the weights where they are.
//
// y [rows, out] = x [rows, in] . w^T, w stored [out, in] (ref/ops/matmul.h's layout), fp32.
//
// How, in the terms of a BLIS-style GEMM with the tokens as the vector dimension:
// - the tokens are packed once per call into blocks of B tokens (kTileVectors vectors: 64 tokens
//   on AVX-512, 16 on AVX2), each block [in, B] contiguous: x transposed, zeros past the rows;
// - a tile keeps R x V accumulators in registers (R = 6 weight rows, V = kTileVectors vectors of
//   a block's tokens: 24 of AVX-512's 32 registers, 12 of AVX2's 16): for each k it loads V
//   vectors of the block and broadcasts w[n + r][k] from the model's copy, so each weight is read
//   once per block, in order along its row;
// - blocking for the caches (sizes from the C library, TileGemmBlocking below): k in passes of at
//   most `depth` values, so that a block's part of a pass fills at most a quarter of the L2 cache;
//   the blocks in slabs that fill at most half of it. Each tile of R weight rows runs over every
//   block of a slab, its weights read from memory for the first and from the L1 cache for the
//   rest, while the next tile's weights are prefetched (and its block's tokens, 8 k ahead, where
//   tile_gemm_prefetches_tokens measured that faster);
// - the tiles' sums go from the registers into a buffer of 192 outputs x the call's padded rows
//   (transposed: an output's tokens along a row), where they wait between passes over k; after
//   the last, 8 x 8 blocks of it (4 x 4 where vectors have 4 lanes, and at the edges),
//   transposed back in registers, go into y's rows (simd/tile_gemm.cc says why not straight from
//   the registers). The tokens are packed the same way (simd/transpose-inl.h).
//
// Each y[t, o] is one fused multiply-add chain over k = 0 .. in-1, from zero (a pass resumes the
// previous pass's fp32 sum exactly): the same bits for every blocking, split, thread count and
// position of the token in the call on a given target. The result differs from the reference's
// double sums by fp32 rounding (tests/simd_test.cc bounds it).
//
// Threads: outside an OpenMP region, from 2^20 multiply-adds, the tokens are packed by all
// threads and the output columns split in blocks of 6 over the team; inside one (an expert's
// product while the experts run in parallel), the calling thread does it all. Scratch buffers are
// per thread and grow to the largest call seen: the packed tokens (rows rounded up to a block,
// times in floats) and the sums (192 x padded rows, plus a cache line or two per row).
#pragma once

#include <cstdint>

namespace moeref::simd {

// The most token rows simd/'s matmul sends here; past it, OpenBLAS (simd/blas_gemm.h). On the
// machine of docs/performance.md the tiles were faster than OpenBLAS at every row count up to it,
// for every product of a prefill but k and v (64 outputs, where packing the tokens weighs: 0.9x,
// about 1% of a prefill). The function itself is correct for any rows.
inline constexpr int64_t kTileGemmMaxRows = 2048;

// Whether the tiles prefetch their block's tokens into the L1 cache, a few values of k ahead of
// the loads: as tile_gemm_prefetches_tokens says for this process (the default), or forced either
// way (tests, benchmarks). The bits are the same either way.
enum class TokenPrefetch { kMeasured, kOff, kOn };

// The default's first use in a process may measure (tile_gemm_prefetches_tokens: a few
// milliseconds on the calling thread); simd_kernels() has it done when the simd backend is built.
void tile_gemm_xwt(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out,
                   TokenPrefetch prefetch = TokenPrefetch::kMeasured);

// A SwiGLU feed-forward of `rows` tokens on the calling thread, with the bits of the products and
// swiglu one after the other (tile_gemm_xwt for up, gate and down, simd/activation.h's swiglu):
// y [rows, d] = down . (silu(x . gate^T) * (x . up^T)), gate and up [d_ff, d], down [d, d_ff].
// The tokens are packed once for gate and up; the hidden values never go into a [rows, d_ff]
// array: swiglu runs on the up and gate sums where they wait, transposed, and its results go
// straight into the packed tokens of the down product (no transposition, no second packing).
// Scratch: the packed tokens of x and of the hidden values, two sums' buffers.
void tile_gemm_swiglu_feed_forward(const float* x, const float* gate, const float* up,
                                   const float* down, int64_t rows, int64_t d, int64_t d_ff,
                                   float* y, TokenPrefetch prefetch = TokenPrefetch::kMeasured);

// How tile_gemm_xwt blocks a call on this CPU, at the target Highway's dispatch picks: tokens per
// block, k values per pass, blocks per slab (for a given `in`). For tests and benchmarks.
struct TileGemmBlocking {
  int64_t block_tokens, depth, slab_blocks;
};
TileGemmBlocking tile_gemm_blocking(int64_t in);

// Whether the tiles prefetch their tokens in this process, decided by its first call. A block's
// part of a pass (up to a quarter of the L2 cache) is larger than the L1 cache on AVX-512 (128 KiB
// at small's width), so a tile streams it from L2 at every k: 256 bytes per 24 multiply-adds, 21
// bytes a cycle for two FMA units. Some cores' own prefetchers keep up with that and lose a little
// to prefetching in software (a prefill 2% slower on the Zen 5 of docs/performance.md), others did
// not (larger products 15-35% faster with it on an Emerald Rapids Xeon, measured before the sums
// went through their buffer), and a CPU's features do not say which it is. So the first call
// times one chunk of 192 outputs against 512 tokens of 512 values, the best of five calls each way
// in alternation, a few milliseconds in all, and keeps prefetching where it took at most 95% of
// the time without it; unless kTokenPrefetchVariable says otherwise. Thread-safe; the choice holds
// for the process. Throws std::invalid_argument where the variable has a value it does not take.
bool tile_gemm_prefetches_tokens();

// The environment variable that overrides the measurement: "on" or "off" force the choice for the
// process (to compare the two, or to pin a benchmark's), "measure" or unset leaves it to the
// measurement.
inline constexpr const char* kTokenPrefetchVariable = "MOEREF_TILE_TOKEN_PREFETCH";

// The setting a value of kTokenPrefetchVariable asks for (nullptr: unset): kOn, kOff, kMeasured.
// Anything else throws std::invalid_argument naming the variable and the value.
TokenPrefetch token_prefetch_setting(const char* value);

}  // namespace moeref::simd
