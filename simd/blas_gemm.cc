#include "simd/blas_gemm.h"

#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>

#include "simd/cpu_features.h"

// OpenBLAS's DYNAMIC_ARCH entry points (exported by its dynamic builds, absent from others: weak,
// so that a build without them links and keeps its kernels).
extern "C" {
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
}

namespace moeref::simd {

namespace {

// The core OpenBLAS chose for this CPU at its initialisation, before configure_blas().
std::string& core_chosen_by_openblas() {
  static std::string core;
  return core;
}

// Re-selects OpenBLAS's kernels when the CPU supports better ones (simd/cpu_features.h). Only its
// dynamic builds can: their initialisation exports the core they chose as OPENBLAS_CORETYPE, and
// gotoblas_dynamic_init reads that variable, but returns at once unless quit cleared the choice.
void select_best_kernels() {
  core_chosen_by_openblas() = openblas_get_corename();
  const std::string best = best_blas_core(core_chosen_by_openblas(), this_cpu_features());
  if (best == core_chosen_by_openblas()) return;
  if (gotoblas_dynamic_init == nullptr || gotoblas_dynamic_quit == nullptr) return;
  setenv("OPENBLAS_CORETYPE", best.c_str(), 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
}

// The most tiles a product is cut into, whatever the thread count: 12 give a whole share to each
// of 2, 3, 4 or 6 threads.
constexpr int64_t kMaxTiles = 12;
// A tile spans at least this many output columns and token rows where the product has them: each
// call packs its own copies of the token rows and weight rows it reads, at most 1/256 + 1/128 of
// its multiply-adds.
constexpr int64_t kMinTileColumns = 256;
constexpr int64_t kMinTileRows = 128;
// Column slices are whole multiples of this: 64-byte lines of y, and OpenBLAS's register blocks.
constexpr int64_t kColumnAlign = 16;

// One sgemm on the calling thread: y[rows, cols] (row stride ldy) = x[rows, in] . w[cols, in]^T.
void sgemm_block(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t cols,
                 int64_t ldy) {
  if (rows == 0 || cols == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
              static_cast<int>(cols), static_cast<int>(in), 1.0f, x, static_cast<int>(in), w,
              static_cast<int>(in), 0.0f, y, static_cast<int>(ldy));
}

// [begin, end) of part `part` of `parts` over n items, in whole multiples of `align`.
void split(int64_t n, int64_t align, int64_t part, int64_t parts, int64_t& begin, int64_t& end) {
  const int64_t blocks = (n + align - 1) / align;
  begin = std::min(n, blocks * part / parts * align);
  end = std::min(n, blocks * (part + 1) / parts * align);
}

// A product's tiles: row_parts x column_parts, a function of its shape alone, never of the thread
// count, so that each output is computed by the same OpenBLAS call (same shape, same position in
// it) however many threads share the tiles: OpenBLAS's bits for an output depend on the call's
// shape (its edge kernels, its small-matrix path), e.g. 65 + 65 token rows differ from 130.
struct GemmTiles {
  int64_t row_parts, column_parts;
};

GemmTiles gemm_tiles(int64_t rows, int64_t in, int64_t out) {
  if (rows * in * out < kGemmSplitWork) return {1, 1};
  const int64_t column_parts = std::clamp<int64_t>(out / kMinTileColumns, 1, kMaxTiles);
  const int64_t row_parts =
      std::clamp<int64_t>(rows / kMinTileRows, 1, std::max<int64_t>(1, kMaxTiles / column_parts));
  return {row_parts, column_parts};
}

}  // namespace

void configure_blas() {
  static std::once_flag configured;
  std::call_once(configured, [] {
    select_best_kernels();
    openblas_set_num_threads(1);
  });
}

BlasCores blas_cores() {
  configure_blas();
  return {core_chosen_by_openblas(), openblas_get_corename()};
}

void sgemm_xwt(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out) {
  configure_blas();
  if (rows == 0 || out == 0) return;
  if (in == 0) {
    std::fill(y, y + rows * out, 0.0f);
    return;
  }
  const GemmTiles tiles = gemm_tiles(rows, in, out);
  const int64_t n_tiles = tiles.row_parts * tiles.column_parts;
  // Inside an enclosing parallel region (an expert's product) the team is the calling thread.
#pragma omp parallel for schedule(static) if (n_tiles > 1)
  for (int64_t tile = 0; tile < n_tiles; ++tile) {
    int64_t row_begin = 0, row_end = 0, column_begin = 0, column_end = 0;
    split(rows, 1, tile / tiles.column_parts, tiles.row_parts, row_begin, row_end);
    split(out, kColumnAlign, tile % tiles.column_parts, tiles.column_parts, column_begin,
          column_end);
    sgemm_block(x + row_begin * in, w + column_begin * in, y + row_begin * out + column_begin,
                row_end - row_begin, in, column_end - column_begin, out);
  }
}

}  // namespace moeref::simd
