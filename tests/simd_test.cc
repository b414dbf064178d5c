// The SIMD kernel set against the reference (gemma.cpp's ops_test): each op over sizes 0..2N and
// misaligned starts, on every Highway target this CPU supports, with tolerances that scale with
// the inputs' magnitudes; then the whole model with simd/ against every golden model set through
// the checker at fp32 precision, and identical results run to run.
#include <gtest/gtest.h>
#include <hwy/targets.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "golden/candidate_runner.h"
#include "golden/compare.h"
#include "golden/golden_set.h"
#include "ref/model/model.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"
#include "ref/ops/attention.h"
#include "ref/ops/matmul.h"
#include "simd/blas_gemm.h"
#include "simd/kernels.h"
#include "simd/matvec.h"
#include "simd/tile_gemm.h"
#include "tests/simd_targets.h"

// OpenBLAS's own entry points (declared here: its headers are simd/'s private dependency), the
// re-initialisation ones weak as in simd/blas_gemm.cc.
extern "C" {
char* openblas_get_corename(void);
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
}

namespace moeref::simd {
namespace {

using test_support::for_each_target;

namespace fs = std::filesystem;

constexpr double kFp32Epsilon = 0x1.0p-23;

std::vector<float> pattern(size_t n, float scale, float offset) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = offset + scale * static_cast<float>(static_cast<int>((i * 37 + 11) % 23) - 11) / 11.0f;
  }
  return v;
}

// One output of matvec is one fp32 dot product: within fp32 summation's bound of the exact sum
// at every length (whole groups of four vectors, single vectors, a scalar tail) and alignment.
TEST(SimdMatvec, EachOutputIsWithinFp32RoundingOfTheExactSum) {
  for_each_target([] {
    const std::vector<float> x = pattern(300, 1.5f, 0.1f);
    const std::vector<float> w = pattern(300, -0.75f, 0.2f);
    for (size_t n = 0; n <= 2 * 64 + 5; ++n) {
      for (size_t misalign = 0; misalign < 4; ++misalign) {
        double exact = 0.0, magnitude = 0.0;
        for (size_t i = 0; i < n; ++i) {
          exact += static_cast<double>(x[misalign + i]) * w[misalign + 1 + i];
          magnitude += std::fabs(static_cast<double>(x[misalign + i]) * w[misalign + 1 + i]);
        }
        float got = 7.0f;
        matvec(x.data() + misalign, w.data() + misalign + 1, &got, static_cast<int64_t>(n), 1);
        // fp32 summation: each partial sum rounds, bounded by n * eps * sum |x_i w_i|.
        EXPECT_NEAR(got, exact, 2.0 * static_cast<double>(n + 1) * kFp32Epsilon * magnitude)
            << "n " << n << " misalign " << misalign;
      }
    }
  });
}

struct MatmulCase {
  int64_t rows, in, out;
};

TEST(SimdMatmul, MatchesTheReferenceForMatrixVectorAndGemm) {
  const std::vector<MatmulCase> cases = {{1, 1, 1},    {1, 7, 3},   {1, 64, 40},  {1, 513, 17},
                                         {2, 8, 8},    {3, 33, 5},  {13, 96, 40}, {64, 64, 128},
                                         {5, 1024, 3}, {0, 16, 16}, {4, 0, 4}};
  for_each_target([&] {
    for (const MatmulCase& c : cases) {
      const std::vector<float> x = pattern(static_cast<size_t>(c.rows * c.in), 1.0f, 0.05f);
      const std::vector<float> w = pattern(static_cast<size_t>(c.out * c.in), 0.1f, -0.01f);
      std::vector<float> expected(static_cast<size_t>(c.rows * c.out), 7.0f);
      std::vector<float> got(expected.size(), 7.0f);
      ref::matmul(x.data(), w.data(), expected.data(), c.rows, c.in, c.out);
      simd_kernels().matmul(x.data(), w.data(), got.data(), c.rows, c.in, c.out);
      for (int64_t r = 0; r < c.rows; ++r) {
        for (int64_t o = 0; o < c.out; ++o) {
          double magnitude = 0.0;
          for (int64_t i = 0; i < c.in; ++i) {
            magnitude += std::fabs(static_cast<double>(x[r * c.in + i]) * w[o * c.in + i]);
          }
          EXPECT_NEAR(got[r * c.out + o], expected[r * c.out + o],
                      2.0 * static_cast<double>(c.in + 1) * kFp32Epsilon * magnitude + 1e-30)
              << c.rows << "x" << c.in << "x" << c.out << " at " << r << ", " << o;
        }
      }
    }
  });
}

// A few rows (decode batches, speculative blocks) go through matvec_rows: each row's outputs are
// the bits of that row alone through matvec, on every target, for group sizes 1 to 4 and a second
// pass, sizes with and without a vector tail, split over threads or not.
TEST(SimdMatmul, FewRowsGiveEachRowsOwnBitsAlone) {
  for_each_target([] {
    for (const MatmulCase& c :
         {MatmulCase{2, 64, 40}, MatmulCase{3, 37, 9}, MatmulCase{4, 512, 300},
          MatmulCase{5, 100, 17}, MatmulCase{8, 513, 64}, MatmulCase{7, 3, 5}}) {
      const std::vector<float> x = pattern(static_cast<size_t>(c.rows * c.in), 1.0f, 0.05f);
      const std::vector<float> w = pattern(static_cast<size_t>(c.out * c.in), 0.1f, -0.01f);
      std::vector<float> together(static_cast<size_t>(c.rows * c.out), 7.0f);
      simd_kernels().matmul(x.data(), w.data(), together.data(), c.rows, c.in, c.out);
      for (int64_t r = 0; r < c.rows; ++r) {
        std::vector<float> alone(static_cast<size_t>(c.out), 8.0f);
        matvec(x.data() + r * c.in, w.data(), alone.data(), c.in, c.out);
        EXPECT_EQ(
            std::memcmp(alone.data(), together.data() + r * c.out, alone.size() * sizeof(float)), 0)
            << c.rows << "x" << c.in << "x" << c.out << " row " << r;
      }
    }
  });
}

// y against the reference within fp32's rounding of each sum, and the sentinels around y
// untouched; x, w and y start one, three and one floats past an aligned boundary.
void expect_tile_gemm_matches_reference(const MatmulCase& c) {
  const std::vector<float> x = pattern(static_cast<size_t>(c.rows * c.in) + 1, 1.0f, 0.05f);
  const std::vector<float> w = pattern(static_cast<size_t>(c.out * c.in) + 3, 0.1f, -0.01f);
  const size_t n = static_cast<size_t>(c.rows * c.out);
  std::vector<float> expected(n);
  ref::matmul(x.data() + 1, w.data() + 3, expected.data(), c.rows, c.in, c.out);
  std::vector<float> got(n + 2, 7.0f);
  tile_gemm_xwt(x.data() + 1, w.data() + 3, got.data() + 1, c.rows, c.in, c.out);
  EXPECT_EQ(got.front(), 7.0f);
  EXPECT_EQ(got.back(), 7.0f);
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t o = 0; o < c.out; ++o) {
      double magnitude = 0.0;
      for (int64_t i = 0; i < c.in; ++i) {
        magnitude += std::fabs(static_cast<double>(x[1 + r * c.in + i]) * w[3 + o * c.in + i]);
      }
      ASSERT_NEAR(got[1 + r * c.out + o], expected[r * c.out + o],
                  2.0 * static_cast<double>(c.in + 1) * kFp32Epsilon * magnitude + 1e-30)
          << c.rows << "x" << c.in << "x" << c.out << " at " << r << ", " << o;
    }
  }
}

// 9 to kTileGemmMaxRows rows go through the blocked GEMM of simd/tile_gemm.h. A table of shapes
// that reach each of its paths, on every target (blocks of 8, 16 or 64 tokens): rows from 1 to
// 600, whole blocks and a last block of 1 to 4 vectors (46 and 61 rows: up to a block's last
// token on AVX-512, AVX2 and SSE4); partial tiles (out not a multiple of
// 6), more outputs than one chunk of 192, in = 0, `in` a multiple of 1024 (x's rows in the same
// cache sets), tokens and outputs past the last whole group of 8 and of 4 (packed and stored in
// 8 x 8 and 4 x 4 blocks; 46 and 61 rows leave 6 and 5, 13 outputs 5), out a
// multiple of 256 (y's rows in the same cache sets); then, from this CPU's blocking, more k than
// one pass (the partial sums resumed) and more blocks than one slab.
TEST(SimdMatmul, TileGemmMatchesTheReferenceOnEveryTarget) {
  const std::vector<MatmulCase> cases = {
      {1, 7, 5},     {5, 33, 13},    {9, 5, 7},      {16, 33, 13},  {17, 64, 200},
      {40, 0, 5},    {64, 1024, 50}, {65, 40, 25},   {80, 100, 7},  {96, 17, 97},
      {33, 2048, 3}, {128, 64, 30},  {130, 513, 61}, {200, 40, 50}, {257, 31, 7},
      {600, 19, 11}, {70, 45, 256},  {46, 40, 13},   {61, 40, 13}};
  for_each_target([&] {
    for (const MatmulCase& c : cases) expect_tile_gemm_matches_reference(c);
    const TileGemmBlocking blocking = tile_gemm_blocking(64);
    SCOPED_TRACE(testing::Message() << "blocks of " << blocking.block_tokens << " tokens");
    const int64_t passes_in = 2 * tile_gemm_blocking(1 << 20).depth + 5;
    expect_tile_gemm_matches_reference({3, passes_in, 7});
    expect_tile_gemm_matches_reference({blocking.block_tokens + 5, passes_in, 7});
    expect_tile_gemm_matches_reference({blocking.slab_blocks * blocking.block_tokens + 3, 64, 7});
  });
}

// Each output of a tile is one multiply-add chain over `in`: a token's row is the same bits in a
// call of any size as alone, and the same on 1 thread as split over several: rows within one
// block, across blocks and slabs, k in one pass and in several.
TEST(SimdMatmul, TileGemmRowsAreTheirOwnBitsAtAnyThreadCount) {
  const TileGemmBlocking blocking = tile_gemm_blocking(64);
  const int64_t several_passes = 2 * tile_gemm_blocking(1 << 20).depth + 5;
  const int64_t slab_rows = blocking.slab_blocks * blocking.block_tokens;
  // Each at least 2^20 multiply-adds: split over threads.
  const std::vector<MatmulCase> cases = {{37, 512, 300},
                                         {3 * blocking.block_tokens + 7, 512, 61},
                                         {blocking.block_tokens + 2, several_passes, 100},
                                         {slab_rows + 5, 64, 200}};
  const int threads = omp_get_max_threads();
  for (const MatmulCase& c : cases) {
    const std::vector<float> x = pattern(static_cast<size_t>(c.rows * c.in), 1.0f, 0.05f);
    const std::vector<float> w = pattern(static_cast<size_t>(c.out * c.in), 0.1f, -0.01f);
    std::vector<float> one_thread(static_cast<size_t>(c.rows * c.out));
    omp_set_num_threads(1);
    tile_gemm_xwt(x.data(), w.data(), one_thread.data(), c.rows, c.in, c.out);
    for (int n_threads : {2, 3}) {
      omp_set_num_threads(n_threads);
      std::vector<float> split(one_thread.size());
      tile_gemm_xwt(x.data(), w.data(), split.data(), c.rows, c.in, c.out);
      EXPECT_EQ(split, one_thread)
          << c.rows << "x" << c.in << "x" << c.out << ", " << n_threads << " threads";
    }
    omp_set_num_threads(threads);
    for (int64_t r : {int64_t{0}, int64_t{16}, c.rows / 2, c.rows - 1}) {
      std::vector<float> alone(static_cast<size_t>(c.out));
      tile_gemm_xwt(x.data() + r * c.in, w.data(), alone.data(), 1, c.in, c.out);
      EXPECT_EQ(
          std::memcmp(alone.data(), one_thread.data() + r * c.out, alone.size() * sizeof(float)), 0)
          << c.rows << "x" << c.in << "x" << c.out << ", row " << r;
    }
  }
}

// Prefetching a tile's tokens or not (the first call measures which is faster on the CPU) moves no
// float: the same bits both ways, on every target, for products and the fused feed-forward over one
// block, a partial last block, more blocks than one slab and more k than one pass.
TEST(SimdMatmul, TileGemmTokenPrefetchChangesNoBits) {
  for_each_target([] {
    const TileGemmBlocking blocking = tile_gemm_blocking(64);
    const int64_t several_passes = 2 * tile_gemm_blocking(1 << 20).depth + 5;
    const int64_t block = blocking.block_tokens;
    const std::vector<MatmulCase> products = {{block, 40, 13},
                                              {3 * block + 7, 96, 61},
                                              {block + 2, several_passes, 7},
                                              {blocking.slab_blocks * block + 5, 64, 200}};
    for (const MatmulCase& c : products) {
      SCOPED_TRACE(testing::Message() << c.rows << "x" << c.in << "x" << c.out);
      const std::vector<float> x = pattern(static_cast<size_t>(c.rows * c.in), 1.0f, 0.05f);
      const std::vector<float> w = pattern(static_cast<size_t>(c.out * c.in), 0.1f, -0.01f);
      std::vector<float> off(static_cast<size_t>(c.rows * c.out)), on(off.size());
      tile_gemm_xwt(x.data(), w.data(), off.data(), c.rows, c.in, c.out, TokenPrefetch::kOff);
      tile_gemm_xwt(x.data(), w.data(), on.data(), c.rows, c.in, c.out, TokenPrefetch::kOn);
      EXPECT_EQ(on, off);
    }
    struct FeedForward {
      int64_t rows, d, d_ff;
    };
    for (const FeedForward& c :
         {FeedForward{2 * block + 37, 24, 200}, FeedForward{block + 5, several_passes, 13}}) {
      SCOPED_TRACE(testing::Message() << c.rows << " tokens, d " << c.d << ", d_ff " << c.d_ff);
      const std::vector<float> x = pattern(static_cast<size_t>(c.rows * c.d), 1.0f, 0.05f);
      const std::vector<float> gate = pattern(static_cast<size_t>(c.d_ff * c.d), 0.3f, -0.02f);
      const std::vector<float> up = pattern(static_cast<size_t>(c.d_ff * c.d), 0.2f, 0.01f);
      const std::vector<float> down = pattern(static_cast<size_t>(c.d * c.d_ff), 0.1f, 0.0f);
      std::vector<float> off(static_cast<size_t>(c.rows * c.d)), on(off.size());
      tile_gemm_swiglu_feed_forward(x.data(), gate.data(), up.data(), down.data(), c.rows, c.d,
                                    c.d_ff, off.data(), TokenPrefetch::kOff);
      tile_gemm_swiglu_feed_forward(x.data(), gate.data(), up.data(), down.data(), c.rows, c.d,
                                    c.d_ff, on.data(), TokenPrefetch::kOn);
      EXPECT_EQ(on, off);
    }
  });
}

// The fused SwiGLU feed-forward (simd/tile_gemm.h) has the bits of simd's ops in turn (the up and
// gate products, swiglu, the down product), on every target: tokens ending in a partial vector, a
// partial block and whole blocks; d_ff over several chunks of 192 outputs and not a multiple of the
// tile height; d and d_ff over several passes over k (a pass as deep as the L2 cache allows leaves
// room for two blocks in a slab: three blocks take two slabs); x, the weights and y off an
// aligned boundary and y's neighbours untouched; no hidden values at all (y is zero). Up to
// kTileGemmMaxRows tokens, where it is used. The same through the kernel set, called as the
// experts call it: on each thread of a parallel region.
TEST(SimdFeedForward, FusedHasTheBitsOfTheOpsInTurn) {
  struct Case {
    int64_t rows, d, d_ff;
  };
  const TileGemmBlocking blocking = tile_gemm_blocking(64);
  const int64_t several_passes = 2 * tile_gemm_blocking(1 << 20).depth + 5;
  const std::vector<Case> cases = {{9, 16, 40},
                                   {17, 33, 200},
                                   {70, 64, 385},
                                   {blocking.block_tokens, 40, 61},
                                   {2 * blocking.block_tokens + 37, 24, 7},
                                   {2 * blocking.block_tokens + 5, several_passes, 13},
                                   {11, 5, several_passes},
                                   {10, 6, 0}};
  for_each_target([&] {
    for (const Case& c : cases) {
      SCOPED_TRACE(testing::Message() << c.rows << " tokens, d " << c.d << ", d_ff " << c.d_ff);
      const std::vector<float> x = pattern(static_cast<size_t>(c.rows * c.d) + 1, 1.0f, 0.05f);
      const std::vector<float> gate = pattern(static_cast<size_t>(c.d_ff * c.d) + 2, 0.3f, -0.02f);
      const std::vector<float> up = pattern(static_cast<size_t>(c.d_ff * c.d) + 3, 0.2f, 0.01f);
      const std::vector<float> down = pattern(static_cast<size_t>(c.d * c.d_ff) + 1, 0.1f, 0.0f);
      const size_t n = static_cast<size_t>(c.rows * c.d);
      std::vector<float> in_turn(n), fused(n + 2, 7.0f);
      simd_kernels().Kernels::swiglu_feed_forward(x.data() + 1, gate.data() + 2, up.data() + 3,
                                                  down.data() + 1, c.rows, c.d, c.d_ff,
                                                  in_turn.data());
      tile_gemm_swiglu_feed_forward(x.data() + 1, gate.data() + 2, up.data() + 3, down.data() + 1,
                                    c.rows, c.d, c.d_ff, fused.data() + 1);
      EXPECT_EQ(fused.front(), 7.0f);
      EXPECT_EQ(fused.back(), 7.0f);
      EXPECT_EQ(std::memcmp(fused.data() + 1, in_turn.data(), n * sizeof(float)), 0);
      std::vector<std::vector<float>> per_thread(2, std::vector<float>(n, 7.0f));
#pragma omp parallel num_threads(2)
      simd_kernels().swiglu_feed_forward(
          x.data() + 1, gate.data() + 2, up.data() + 3, down.data() + 1, c.rows, c.d, c.d_ff,
          per_thread[static_cast<size_t>(omp_get_thread_num())].data());
      for (const std::vector<float>& got : per_thread) EXPECT_EQ(got, in_turn);
    }
  });
}

// Past kTileGemmMaxRows rows, OpenBLAS (simd/blas_gemm.h), its products cut into tiles by their
// shape: by columns (many outputs) and by token rows (few). Close to the reference at any thread
// count, identical run to run and to one thread's; and the last row count of the tiles as well.
TEST(SimdMatmul, SplitGemmMatchesTheReferenceAtAnyThreadCount) {
  const std::vector<MatmulCase> cases = {{kTileGemmMaxRows + 1, 16, 1000},
                                         {kTileGemmMaxRows + 37, 40, 40},
                                         {kTileGemmMaxRows, 24, 50}};
  const int threads = omp_get_max_threads();
  for (const MatmulCase& c : cases) {
    const std::vector<float> x = pattern(static_cast<size_t>(c.rows * c.in), 1.0f, 0.05f);
    const std::vector<float> w = pattern(static_cast<size_t>(c.out * c.in), 0.1f, -0.01f);
    std::vector<float> expected(static_cast<size_t>(c.rows * c.out));
    ref::matmul(x.data(), w.data(), expected.data(), c.rows, c.in, c.out);
    std::vector<float> one_thread;
    for (int n_threads : {1, 2, 3}) {
      omp_set_num_threads(n_threads);
      std::vector<float> got(expected.size(), 7.0f), again(expected.size(), 8.0f);
      simd_kernels().matmul(x.data(), w.data(), got.data(), c.rows, c.in, c.out);
      simd_kernels().matmul(x.data(), w.data(), again.data(), c.rows, c.in, c.out);
      EXPECT_EQ(got, again) << n_threads << " threads";
      if (n_threads == 1) one_thread = got;
      EXPECT_EQ(got, one_thread) << c.rows << " rows, " << n_threads << " threads";
      for (int64_t r = 0; r < c.rows; ++r) {
        for (int64_t o = 0; o < c.out; ++o) {
          double magnitude = 0.0;
          for (int64_t i = 0; i < c.in; ++i) {
            magnitude += std::fabs(static_cast<double>(x[r * c.in + i]) * w[o * c.in + i]);
          }
          ASSERT_NEAR(got[r * c.out + o], expected[r * c.out + o],
                      2.0 * static_cast<double>(c.in + 1) * kFp32Epsilon * magnitude + 1e-30)
              << c.rows << "x" << c.in << "x" << c.out << " at " << r << ", " << o << ", "
              << n_threads << " threads";
        }
      }
    }
    omp_set_num_threads(threads);
  }
}

// The same positions read from a contiguous cache and through a shuffled block table: 8 keys in
// blocks of 3, and 150 keys in blocks of 16, which fill several panels of the transposed keys on
// every target.
TEST(SimdAttention, MatchesTheReferenceContiguousAndPaged) {
  struct Case {
    int64_t capacity, block_size;
    std::vector<int32_t> table;
    std::vector<int64_t> positions;
  };
  const std::vector<Case> cases = {{12, 3, {2, 0, 3, 1}, {5, 6, 7}},
                                   {160, 16, {7, 2, 9, 0, 5, 3, 8, 1, 6, 4}, {147, 148, 149}}};
  for_each_target([&] {
    const int64_t H = 4, hd = 24;
    for (const Case& c : cases) {
      const int64_t T = std::ssize(c.positions), width = c.positions.back() + 1;
      for (int64_t G : {1, 2, 4}) {
        SCOPED_TRACE(testing::Message() << "G " << G << ", " << width << " keys");
        const std::vector<float> q = pattern(static_cast<size_t>(T * H * hd), 0.8f, 0.0f);
        const std::vector<float> keys =
            pattern(static_cast<size_t>(G * c.capacity * hd), 0.6f, 0.1f);
        const std::vector<float> values = pattern(keys.size(), 1.0f, 0.0f);
        std::vector<float> paged_keys(keys.size()), paged_values(values.size());
        const ref::AttentionDims contiguous(H, G, hd, c.capacity);
        const ref::AttentionDims paged(H, G, hd, c.capacity, c.table, c.block_size);
        for (int64_t g = 0; g < G; ++g) {
          for (int64_t p = 0; p < c.capacity; ++p) {
            std::memcpy(paged_keys.data() + ref::kv_row(paged, g, p),
                        keys.data() + ref::kv_row(contiguous, g, p), hd * sizeof(float));
            std::memcpy(paged_values.data() + ref::kv_row(paged, g, p),
                        values.data() + ref::kv_row(contiguous, g, p), hd * sizeof(float));
          }
        }
        std::vector<float> expected(q.size()), got(q.size()), got_paged(q.size());
        std::vector<float> expected_probs(static_cast<size_t>(T * H * width));
        std::vector<float> got_probs(expected_probs.size());
        ref::attention(q.data(), keys.data(), values.data(), c.positions, contiguous,
                       expected.data(), expected_probs.data(), width);
        simd_kernels().attention(q.data(), keys.data(), values.data(), c.positions, contiguous,
                                 got.data(), got_probs.data(), width);
        simd_kernels().attention(q.data(), paged_keys.data(), paged_values.data(), c.positions,
                                 paged, got_paged.data(), nullptr, 0);
        for (size_t i = 0; i < q.size(); ++i) {
          EXPECT_NEAR(got[i], expected[i], 1e-5 * (1.0 + std::fabs(expected[i])));
          EXPECT_EQ(got_paged[i], got[i]) << "paged and contiguous must read the same rows";
        }
        for (size_t i = 0; i < got_probs.size(); ++i) {
          EXPECT_NEAR(got_probs[i], expected_probs[i], 1e-6);
        }
      }
    }
  });
}

// The model's shapes and more: 8 query heads per K/V head (the widest chunk of heads the kernel
// computes together), head_dims that do and do not fill vectors, a causal prefill large enough to
// be split over threads, every query at the last position (bidirectional or cross-attention
// over a contiguous [G, N, head_dim]), caches whose keys fill several panels of the transposed
// keys (simd/attention.cc) for one or two K/V heads, and decode steps long enough for their query
// heads to be split over the threads (1,101 to 2,501 keys). One thread gives the reference's values
// within fp32 rounding, and 2, 3 and 9 threads its bits; the last token alone, its bits in the
// call.
TEST(SimdAttention, MatchesTheReferenceForGroupsPrefillAndBidirectional) {
  struct Case {
    int64_t H, G, hd, T;
    bool all_at_last;
    int64_t first_position = 0;  // of the first token; > 0: a cache that holds earlier positions
  };
  const std::vector<Case> cases = {
      {8, 1, 64, 40, false},      {8, 2, 24, 40, false},      {16, 1, 33, 9, false},
      {12, 4, 64, 5, false},      {8, 1, 64, 70, true},       {6, 3, 20, 17, true},
      {8, 1, 64, 1, false, 150},  {8, 2, 24, 1, false, 37},   {4, 1, 17, 1, false, 0},
      {8, 1, 64, 2, false, 150},  {8, 1, 64, 3, false, 200},  {8, 2, 24, 4, false, 130},
      {8, 1, 64, 1, false, 1100}, {6, 1, 40, 1, false, 2500}, {8, 1, 64, 1, false, 2047}};
  for_each_target([&] {
    for (const Case& c : cases) {
      SCOPED_TRACE("H " + std::to_string(c.H) + " G " + std::to_string(c.G) + " hd " +
                   std::to_string(c.hd) + " T " + std::to_string(c.T) + " from " +
                   std::to_string(c.first_position));
      const int64_t capacity = c.first_position + c.T + 3;
      const std::vector<float> q = pattern(static_cast<size_t>(c.T * c.H * c.hd), 0.9f, 0.02f);
      const std::vector<float> keys =
          pattern(static_cast<size_t>(c.G * capacity * c.hd), 0.7f, 0.1f);
      const std::vector<float> values = pattern(keys.size(), 1.0f, -0.05f);
      std::vector<int64_t> positions(static_cast<size_t>(c.T));
      for (int64_t t = 0; t < c.T; ++t)
        positions[t] = c.first_position + (c.all_at_last ? c.T - 1 : t);
      const ref::AttentionDims dims(c.H, c.G, c.hd, capacity);
      const int64_t width = c.first_position + c.T + 1;
      std::vector<float> expected(q.size()), expected_probs(static_cast<size_t>(c.T * c.H * width));
      ref::attention(q.data(), keys.data(), values.data(), positions, dims, expected.data(),
                     expected_probs.data(), width);
      auto run = [&](std::vector<float>& probs) {
        std::vector<float> context(q.size(), -1.0f);
        probs.assign(expected_probs.size(), -1.0f);
        simd_kernels().attention(q.data(), keys.data(), values.data(), positions, dims,
                                 context.data(), probs.data(), width);
        return context;
      };
      const int threads = omp_get_max_threads();
      std::vector<float> probs_one;
      omp_set_num_threads(1);
      const std::vector<float> one_thread = run(probs_one);
      for (size_t i = 0; i < q.size(); ++i) {
        ASSERT_NEAR(one_thread[i], expected[i], 1e-5 * (1.0 + std::fabs(expected[i])))
            << "at " << i;
      }
      for (size_t i = 0; i < expected_probs.size(); ++i) {
        ASSERT_NEAR(probs_one[i], expected_probs[i], 1e-6) << "at " << i;
      }
      // 2 and 3 threads split a decode step's 6 or 8 heads evenly and not; 9, more than its heads.
      for (int n_threads : {2, 3, 9}) {
        omp_set_num_threads(n_threads);
        std::vector<float> probs;
        EXPECT_EQ(run(probs), one_thread) << n_threads << " threads";
        EXPECT_EQ(probs, probs_one) << n_threads << " threads";
      }
      omp_set_num_threads(threads);
      // The last token alone, as in a decode step, has the bits it has in the call.
      const size_t token = static_cast<size_t>(c.H * c.hd);
      std::vector<float> alone(token, -1.0f);
      simd_kernels().attention(q.data() + q.size() - token, keys.data(), values.data(),
                               std::span(positions).last(1), dims, alone.data(), nullptr, 0);
      EXPECT_EQ(
          std::memcmp(alone.data(), one_thread.data() + q.size() - token, token * sizeof(float)), 0)
          << "the last token alone";
    }
  });
}

const fs::path kSets = fs::path(MOEREF_SOURCE_DIR) / "golden" / "sets";

// The simd backend's candidate for any committed set (golden/candidate_runner.h).
golden::Candidate simd_candidate(const golden::GoldenSet& set) {
  return golden::run_case(set, simd_kernels());
}

// Every committed golden set, of every kind, passes the checker at fp32 with the simd backend.
TEST(SimdModel, EveryCommittedGoldenSetPassesAtFp32) {
  std::map<std::string, int> checked;
  for (const fs::path& dir : golden::find_golden_sets(kSets)) {
    const golden::GoldenSet set = golden::GoldenSet::open(dir);
    const golden::CompareReport report = golden::compare(set, simd_candidate(set));
    EXPECT_TRUE(report.passed) << set.name() << "\n" << report.to_text();
    ++checked[set.kind()];
  }
  EXPECT_GE(checked["model"], 5);
  EXPECT_GE(checked["batching"], 1);
  EXPECT_GE(checked["speculative"], 1);
  EXPECT_GE(checked["op"], 48);
}

TEST(SimdModel, IdenticalRunToRun) {
  const golden::GoldenSet set = golden::GoldenSet::open(kSets / "tiny-gqa-mixed");
  const golden::Candidate first = golden::run_model_case(set, simd_kernels());
  const golden::Candidate second = golden::run_model_case(set, simd_kernels());
  for (const auto& [name, record] : first) {
    EXPECT_EQ(record.bytes, second.at(name).bytes) << name;
  }
}

// OpenBLAS's kernel sets differ in how an output's bits depend on the shape of its call (the SSE3
// Prescott set: 130 token rows in one call and as 65 + 65 differ, 132 do not; the AVX2 Haswell
// set: nearly every split differs). BlasCoreInScope runs the OpenBLAS of this process with the
// named set until it goes out of scope (as simd/blas_gemm.cc re-selects: OPENBLAS_CORETYPE and
// OpenBLAS's own re-initialisation, in its dynamic builds only), then restores the one in use.
class BlasCoreInScope {
 public:
  explicit BlasCoreInScope(const char* core) : restore_(configured_core()) { select(core); }
  BlasCoreInScope(const BlasCoreInScope&) = delete;
  BlasCoreInScope& operator=(const BlasCoreInScope&) = delete;
  ~BlasCoreInScope() { select(restore_.c_str()); }

  static bool possible() { return gotoblas_dynamic_init != nullptr; }

  // The set in use once simd/ has configured OpenBLAS (a later sgemm_xwt changes nothing).
  static std::string configured_core() {
    configure_blas();
    return openblas_get_corename();
  }

 private:
  static void select(const char* core) {
    setenv("OPENBLAS_CORETYPE", core, 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
  }
  std::string restore_;
};

// README's promise: the output does not depend on --threads. The whole model on simd/, every traced
// tensor (logits, and each layer's projections, router and experts on the way) at 1, 2 and 3
// threads, at prompt lengths around each boundary where a matmul changes method (8 | 9: matrix-
// vector to register tiles) or where the tiles' blocks of 8, 16 or 64 tokens could fall
// differently (the OpenBLAS boundary, kTileGemmMaxRows, is checked on the matmul itself); with the
// kernel set simd/ chose and with OpenBLAS's Haswell and Prescott sets. Wide enough that the
// projections and experts reach the split work (2^20 multiply-adds), with few outputs (q, k, v,
// router) and many (o, LM head); 4 experts, so that an expert sees more than 128 tokens.
ModelConfig thread_count_config() {
  ModelConfig c = load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/tiny.json");
  c.vocab_size = 512;
  c.d_model = 256;
  c.n_experts = 4;
  c.max_seq_len = 260;
  return c;
}

std::vector<TensorRecord> traced_forward(const Model& model, int64_t length, int threads) {
  std::vector<int32_t> prompt(static_cast<size_t>(length));
  for (int64_t t = 0; t < length; ++t) prompt[t] = static_cast<int32_t>((t * 37 + 5) % 512);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  KvCache cache = model.new_cache();
  TraceRecorder recorder;
  model.forward(prompt, cache, &recorder);
  omp_set_num_threads(saved);
  return recorder.records();
}

void expect_same_bits_at_every_thread_count(const Model& model, const std::string& kernels) {
  for (int64_t length :
       {1, 2, 8, 9, 63, 64, 65, 127, 128, 129, 130, 131, 132, 133, 255, 256, 257}) {
    const std::vector<TensorRecord> one = traced_forward(model, length, 1);
    ASSERT_FALSE(one.empty());
    for (int threads : {2, 3}) {
      const std::vector<TensorRecord> many = traced_forward(model, length, threads);
      ASSERT_EQ(many.size(), one.size());
      for (size_t i = 0; i < one.size(); ++i) {
        EXPECT_TRUE(many[i].name == one[i].name && many[i].bytes == one[i].bytes)
            << one[i].name << ", " << length << " tokens, " << threads << " threads, OpenBLAS "
            << kernels;
      }
    }
  }
}

TEST(SimdModel, SameBitsAtEveryThreadCountAndPromptLength) {
  const ModelConfig config = thread_count_config();
  const Model model(config, init_weights(config), simd_kernels());
  expect_same_bits_at_every_thread_count(model, BlasCoreInScope::configured_core());
}

TEST(SimdModel, SameBitsAtEveryThreadCountWithOtherOpenBlasKernels) {
  if (!BlasCoreInScope::possible()) GTEST_SKIP() << "this OpenBLAS cannot re-select its kernels";
  const ModelConfig config = thread_count_config();
  const Model model(config, init_weights(config), simd_kernels());
  __builtin_cpu_init();
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  for (const char* core : {"Haswell", "Prescott"}) {
    if (std::string(core) == "Haswell" && !avx2_fma) continue;
    const BlasCoreInScope in_scope(core);
    ASSERT_EQ(std::string(openblas_get_corename()), core);
    expect_same_bits_at_every_thread_count(model, core);
  }
}

}  // namespace
}  // namespace moeref::simd
