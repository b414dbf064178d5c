#include "simd/matmul.h"

#include "simd/blas_gemm.h"
#include "simd/matvec.h"
#include "simd/tile_gemm.h"

namespace moeref::simd {

void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out) {
  if (rows == 0 || out == 0) return;
  if (rows == 1) return matvec(x, w, y, in, out);
  if (rows <= kMatvecRows) return matvec_rows(x, w, y, rows, in, out);
  if (rows <= kTileGemmMaxRows) return tile_gemm_xwt(x, w, y, rows, in, out);
  sgemm_xwt(x, w, y, rows, in, out);
}

}  // namespace moeref::simd
