#include "simd/matvec.h"

#include <omp.h>

#include <algorithm>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/matvec.cc"
#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// After highway.h: the register count is per target too.
#include "simd/vector_registers-inl.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// Rows of x that share one load of each weight row in matvec_rows.
constexpr size_t kMatvecGroup = 4;

// Rows of x dotted with a weight row at once: 4 where 4 x 4 accumulators and the row's 4 vectors
// fit in 32 vector registers (AVX-512), 2 where there are 16 (AVX2); the group's other rows read
// the weight row again from L1. At AVX2 four rows at once spilled: on the Zen 5 of
// docs/performance.md, one thread's 4 rows into 256 outputs from 512 (weights in L2) ran at 29
// GFLOP/s against 46 for 3 rows.
constexpr size_t kRowsAtOnce = kVectorRegisters >= 32 ? 4 : 2;

// Weights of a matrix-vector product stream from memory once. On 4 KiB pages (a program that does
// not opt into runtime/huge_pages.h) the hardware prefetcher stops at each page boundary, and on
// 2 MiB pages it still runs only so far ahead; prefetching this far ahead of the loads starts the
// next page's walk and lines before they are needed. On the Zen 5
// guest of docs/performance.md, a 1024 x 512 product over 2 threads read 18% faster with any
// distance from 2 to 16 KiB (alternated in one process); whole decode steps gained within noise.
// A prefetch never faults, so running past the end of the matrix is harmless.
constexpr size_t kPrefetchFloats = 2048;  // 8 KiB

// sum_i a[i] b[i] over four vector accumulators, a (a weight row) prefetched ahead.
float Dot(const float* a, const float* b, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  auto sum0 = hn::Zero(d), sum1 = hn::Zero(d), sum2 = hn::Zero(d), sum3 = hn::Zero(d);
  size_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    for (size_t line = 0; line < 4 * lanes; line += 16)
      hwy::Prefetch(a + i + kPrefetchFloats + line);
    sum0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), sum0);
    sum1 = hn::MulAdd(hn::LoadU(d, a + i + lanes), hn::LoadU(d, b + i + lanes), sum1);
    sum2 = hn::MulAdd(hn::LoadU(d, a + i + 2 * lanes), hn::LoadU(d, b + i + 2 * lanes), sum2);
    sum3 = hn::MulAdd(hn::LoadU(d, a + i + 3 * lanes), hn::LoadU(d, b + i + 3 * lanes), sum3);
  }
  for (; i + lanes <= n; i += lanes) {
    sum0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), sum0);
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  const auto sum = hn::Add(hn::Add(sum0, sum1), hn::Add(sum2, sum3));
  return hn::GetLane(hn::SumOfLanes(d, sum)) + tail;
}

// out[r] = Dot(a, b + r * stride, n) for r < R, with a (a weight row) loaded once for all
// R rows of b: the same operations in the same order per row as Dot, so the same bits.
template <size_t R>
void DotRows(const float* a, const float* b, size_t stride, size_t n, float* out) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const size_t lanes = hn::Lanes(d);
  V sum0[R], sum1[R], sum2[R], sum3[R];
  for (size_t r = 0; r < R; ++r) sum0[r] = sum1[r] = sum2[r] = sum3[r] = hn::Zero(d);
  size_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    for (size_t line = 0; line < 4 * lanes; line += 16)
      hwy::Prefetch(a + i + kPrefetchFloats + line);
    const V a0 = hn::LoadU(d, a + i), a1 = hn::LoadU(d, a + i + lanes);
    const V a2 = hn::LoadU(d, a + i + 2 * lanes), a3 = hn::LoadU(d, a + i + 3 * lanes);
    for (size_t r = 0; r < R; ++r) {
      const float* row = b + r * stride + i;
      sum0[r] = hn::MulAdd(a0, hn::LoadU(d, row), sum0[r]);
      sum1[r] = hn::MulAdd(a1, hn::LoadU(d, row + lanes), sum1[r]);
      sum2[r] = hn::MulAdd(a2, hn::LoadU(d, row + 2 * lanes), sum2[r]);
      sum3[r] = hn::MulAdd(a3, hn::LoadU(d, row + 3 * lanes), sum3[r]);
    }
  }
  for (; i + lanes <= n; i += lanes) {
    const V a0 = hn::LoadU(d, a + i);
    for (size_t r = 0; r < R; ++r)
      sum0[r] = hn::MulAdd(a0, hn::LoadU(d, b + r * stride + i), sum0[r]);
  }
  for (size_t r = 0; r < R; ++r) {
    float tail = 0.0f;
    for (size_t j = i; j < n; ++j) tail += a[j] * b[r * stride + j];
    const V sum = hn::Add(hn::Add(sum0[r], sum1[r]), hn::Add(sum2[r], sum3[r]));
    out[r] = hn::GetLane(hn::SumOfLanes(d, sum)) + tail;
  }
}

// sums[r] = a . xs[r] for r < group (<= kMatvecGroup), rows of xs `in` floats apart, up to
// kRowsAtOnce of them at once.
HWY_INLINE void DotGroup(const float* a, const float* xs, size_t in, size_t group, float* sums) {
  size_t r = 0;
  for (; r + kRowsAtOnce <= group; r += kRowsAtOnce) {
    DotRows<kRowsAtOnce>(a, xs + r * in, in, in, sums + r);
  }
  if constexpr (kRowsAtOnce > 3) {
    if (group - r == 3) {
      DotRows<3>(a, xs + r * in, in, in, sums + r);
      return;
    }
  }
  if (group - r >= 2) {
    DotRows<2>(a, xs + r * in, in, in, sums + r);
    r += 2;
  }
  if (group - r == 1) sums[r] = Dot(a, xs + r * in, in);
}

// y[r * out + o] = x[r] . w[o] for r < rows, o in [begin, end): each weight row is read from
// memory once per kMatvecGroup rows of x.
void MatvecManyRowsImpl(const float* x, const float* w, float* y, size_t rows, size_t in,
                        size_t out, size_t begin, size_t end) {
  float sums[kMatvecGroup];
  for (size_t first = 0; first < rows; first += kMatvecGroup) {
    const size_t group = std::min(kMatvecGroup, rows - first);
    for (size_t o = begin; o < end; ++o) {
      DotGroup(w + o * in, x + first * in, in, group, sums);
      for (size_t r = 0; r < group; ++r) y[(first + r) * out + o] = sums[r];
    }
  }
}

// y[o] = x . w[o] for o in [begin, end): one row after the other, each one sequential stream
// (several rows interleaved were 30 to 40% slower: more streams than the prefetcher follows).
void MatvecRowsImpl(const float* x, const float* w, float* y, size_t in, size_t begin, size_t end) {
  for (size_t o = begin; o < end; ++o) y[o] = Dot(w + o * in, x, in);
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::simd {

namespace {

// Multiply-adds from which a matrix-vector product is split over threads: from the k and v
// projections of small (64 x 512) up; below, a thread team's start costs more than it saves.
constexpr int64_t kParallelMatvec = int64_t{1} << 15;

}  // namespace

HWY_EXPORT(MatvecRowsImpl);
HWY_EXPORT(MatvecManyRowsImpl);

void matvec(const float* x, const float* w, float* y, int64_t in, int64_t out) {
  const size_t width = static_cast<size_t>(in);
  // One contiguous block of rows per thread, one dispatch per block.
#pragma omp parallel if (out * in >= kParallelMatvec)
  {
    const int64_t part = omp_get_thread_num(), parts = omp_get_num_threads();
    HWY_DYNAMIC_DISPATCH(MatvecRowsImpl)
    (x, w, y, width, static_cast<size_t>(out * part / parts),
     static_cast<size_t>(out * (part + 1) / parts));
  }
}

void matvec_rows(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out) {
#pragma omp parallel if (rows * out * in >= kParallelMatvec)
  {
    const int64_t part = omp_get_thread_num(), parts = omp_get_num_threads();
    HWY_DYNAMIC_DISPATCH(MatvecManyRowsImpl)
    (x, w, y, static_cast<size_t>(rows), static_cast<size_t>(in), static_cast<size_t>(out),
     static_cast<size_t>(out * part / parts), static_cast<size_t>(out * (part + 1) / parts));
  }
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
