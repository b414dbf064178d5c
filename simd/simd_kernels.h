// The SIMD kernel set: the reference's ops computed fast, checked against them (tests/simd_test.cc)
// and against every golden set at fp32 precision.
//
// Replaced so far: matmul (one token: Highway matrix-vector products; several: OpenBLAS sgemm,
// the path of prefill and of experts over their grouped tokens) and attention (Highway dot
// products and axpy over the K/V rows, fp32 softmax; all query heads of a multi-query token read
// the same K/V rows). The other ops are still the reference's (RefKernels); issue #7 lists what
// remains. Results are fp32 sums in a fixed order for a given thread count: identical run to run.
#pragma once

#include <string>

#include "ref/kernels.h"

namespace moeref::simd {

class SimdKernels : public RefKernels {
 public:
  const char* name() const override;
  void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
              int64_t out) const override;
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override;
};

const Kernels& simd_kernels();

}  // namespace moeref::simd

namespace moeref {

// "ref" or "simd"; throws std::invalid_argument naming the accepted names otherwise.
const Kernels& kernels_by_name(const std::string& name);

}  // namespace moeref
