#include "simd/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>

// OpenBLAS's DYNAMIC_ARCH entry points (exported by its dynamic builds, absent from others: weak,
// so that a build without them links and keeps its kernels).
extern "C" {
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
}

namespace moeref::simd {

namespace {

// The CPU has what OpenBLAS's SkylakeX kernels use, but OpenBLAS chose an AVX2 kernel set.
bool fell_back_from_avx512() {
  const std::string core = openblas_get_corename();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         (core == "Haswell" || core == "Zen");
}

void select_avx512_kernels() {
  if (gotoblas_dynamic_init == nullptr || gotoblas_dynamic_quit == nullptr) return;
  if (!fell_back_from_avx512()) return;
  // OpenBLAS's initialisation exports the core it chose as OPENBLAS_CORETYPE, and
  // gotoblas_dynamic_init reads that variable, but returns at once unless quit cleared the choice.
  setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
}

// Below this many multiply-adds a split costs more than it saves.
constexpr int64_t kSplitWork = int64_t{1} << 20;
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
void split(int64_t n, int64_t align, int part, int parts, int64_t& begin, int64_t& end) {
  const int64_t blocks = (n + align - 1) / align;
  begin = std::min(n, blocks * part / parts * align);
  end = std::min(n, blocks * (part + 1) / parts * align);
}

}  // namespace

void configure_blas() {
  static std::once_flag configured;
  std::call_once(configured, [] {
    select_avx512_kernels();
    openblas_set_num_threads(1);
  });
}

const char* blas_core_name() { return openblas_get_corename(); }

void sgemm_xwt(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out) {
  configure_blas();
  if (rows == 0 || out == 0) return;
  if (in == 0) {
    std::fill(y, y + rows * out, 0.0f);
    return;
  }
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads == 1 || rows * in * out < kSplitWork) {
    sgemm_block(x, w, y, rows, in, out, out);
    return;
  }
  // Columns when each thread gets at least a few register blocks of them (each thread then reads
  // only its slice of w, the larger operand in the model), else token rows.
  const bool by_columns = out >= 4 * kColumnAlign * threads;
#pragma omp parallel num_threads(threads)
  {
    int64_t begin = 0, end = 0;
    const int part = omp_get_thread_num(), parts = omp_get_num_threads();
    if (by_columns) {
      split(out, kColumnAlign, part, parts, begin, end);
      sgemm_block(x, w + begin * in, y + begin, rows, in, end - begin, out);
    } else {
      split(rows, 1, part, parts, begin, end);
      sgemm_block(x + begin * in, w, y + begin * out, end - begin, in, out, out);
    }
  }
}

}  // namespace moeref::simd
