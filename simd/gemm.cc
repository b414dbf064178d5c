#include "simd/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <mutex>

namespace moeref::simd {

namespace {

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

void sgemm_xwt(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out) {
  static std::once_flag one_blas_thread;
  std::call_once(one_blas_thread, [] { openblas_set_num_threads(1); });
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
