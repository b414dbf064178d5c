// The matrix peak of the machine as OpenBLAS reaches it: an sgemm of n x n x n, x . w^T (the
// layout of every matmul of the model), with the kernels simd/ selects (simd/blas_gemm.h: the best
// set the CPU supports, whatever OpenBLAS 0.3.21 guessed from the CPU's name) and on every OpenMP
// thread's core, whatever simd/ sets it to for its own calls (one thread per call): the peak of
// the whole machine. Shared by roofline_bench (one of its two compute baselines, with
// bench/fma_peak.h) and vision_bench.
#pragma once

#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "simd/blas_gemm.h"

namespace moeref::bench {

inline double seconds_of(auto&& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Time one product at a time; OpenBLAS's thread count is restored when it goes out of scope.
class SgemmProduct {
 public:
  explicit SgemmProduct(int64_t n)
      : n_(n), a_(static_cast<size_t>(n * n)), b_(a_.size()), c_(a_.size()) {
    simd::configure_blas();
    blas_threads_ = openblas_get_num_threads();
    openblas_set_num_threads(omp_get_max_threads());
    for (int64_t i = 0; i < n * n; ++i) {
      a_[i] = 0.01f * static_cast<float>(i % 13) - 0.06f;
      b_[i] = 0.01f * static_cast<float>(i % 7) - 0.03f;
    }
    run();  // untimed: OpenBLAS's buffers and the pages of c
  }
  SgemmProduct(const SgemmProduct&) = delete;
  SgemmProduct& operator=(const SgemmProduct&) = delete;
  ~SgemmProduct() { openblas_set_num_threads(blas_threads_); }

  double flops() const { return 2.0 * static_cast<double>(n_ * n_) * static_cast<double>(n_); }
  // Seconds of one product.
  double timed() {
    return seconds_of([&] { run(); });
  }

 private:
  void run() {
    const int n = static_cast<int>(n_);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a_.data(), n, b_.data(), n,
                0.0f, c_.data(), n);
  }

  int64_t n_;
  std::vector<float> a_, b_, c_;
  int blas_threads_ = 1;
};

}  // namespace moeref::bench
