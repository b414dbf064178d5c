// The SIMD kernel set's norms, softmax, RoPE and elementwise ops against the reference ops
// (gemma.cpp's ops_test): sizes 0..2N from misaligned starts on every Highway target this CPU
// supports, sentinels around every output (llama.cpp's test-backend-ops), tolerances that scale
// with the inputs; then the OpenMP path at any thread count, softmax on large logits and GELU at
// known values. Each test prints the largest error it saw, absolute and as a share of its bound.
#include <gtest/gtest.h>
#include <hwy/aligned_allocator.h>
#include <hwy/targets.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "golden/scaled_rope_cases.h"
#include "ref/ops/activation.h"
#include "ref/ops/norm.h"
#include "ref/ops/residual.h"
#include "ref/ops/rope.h"
#include "ref/ops/rope_frequencies.h"
#include "ref/ops/router.h"
#include "ref/ops/softmax.h"
#include "simd/activation.h"
#include "simd/kernels.h"
#include "simd/router.h"
#include "tests/simd_targets.h"

namespace moeref::simd {
namespace {

using test_support::for_each_target;

constexpr size_t kN = 64;  // sizes 0..2N cover the 4-vector, 1-vector and tail loops of AVX-512
constexpr size_t kMisalignments = 4;  // floats past a vector-aligned address
constexpr size_t kGuard = 16;
constexpr float kSentinel = -12345.5f;
constexpr double kFp32Epsilon = 0x1.0p-23;
constexpr double kFloatMin =
    std::numeric_limits<float>::min();  // subnormal outputs round absolutely

std::vector<float> uniform(size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& value : v) value = dist(rng);
  return v;
}

// Values copied to a start `misalign` floats past a vector-aligned address, with sentinels before
// and after them to catch a tail read as a whole vector and written back out of bounds.
class Guarded {
 public:
  Guarded(std::span<const float> values, size_t misalign)
      : size_(values.size()),
        misalign_(misalign),
        storage_(hwy::AllocateAligned<float>(misalign + size_ + kGuard)) {
    std::fill(storage_.get(), storage_.get() + misalign_ + size_ + kGuard, kSentinel);
    std::copy(values.begin(), values.end(), data());
  }
  float* data() { return storage_.get() + misalign_; }
  bool guards_intact() const {
    const float* begin = storage_.get();
    const float* end = begin + misalign_ + size_ + kGuard;
    const auto is_sentinel = [](float v) { return v == kSentinel; };
    return std::all_of(begin, begin + misalign_, is_sentinel) &&
           std::all_of(begin + misalign_ + size_, end, is_sentinel);
  }

 private:
  size_t size_, misalign_;
  hwy::AlignedFreeUniquePtr<float[]> storage_;
};

// The largest error a test saw, absolute and as a share of its tolerance.
class MaxError {
 public:
  explicit MaxError(const char* op) : op_(op) {}
  ~MaxError() {
    std::printf("[ max error ] %-13s %.3g absolute, %.3f of the tolerance\n", op_, absolute_,
                share_);
  }
  // Expects |got[i] - expected[i]| <= tolerance(i) for i < n.
  template <class Tolerance>
  void expect_close(const float* got, const float* expected, size_t n, const Tolerance& tolerance) {
    for (size_t i = 0; i < n; ++i) {
      const double error = std::fabs(static_cast<double>(got[i]) - expected[i]);
      const double allowed = tolerance(i);
      absolute_ = std::max(absolute_, error);
      if (allowed > 0) share_ = std::max(share_, error / allowed);
      ASSERT_LE(error, allowed) << "at " << i << ": got " << got[i] << ", expected " << expected[i];
    }
  }

 private:
  const char* op_;
  double absolute_ = 0.0, share_ = 0.0;
};

// Runs check(n, misalign) for n in [0, 2N] and every misalignment, on every target.
template <class Check>
void for_each_size(const Check& check) {
  for_each_target([&] {
    for (size_t n = 0; n <= 2 * kN; ++n) {
      for (size_t misalign = 0; misalign < kMisalignments; ++misalign) {
        SCOPED_TRACE("n " + std::to_string(n) + " misalign " + std::to_string(misalign));
        check(n, misalign);
      }
    }
  });
}

// The norms' sums are fp32: relative error growing like eps * sqrt(d), with room for the few
// roundings of the scale. scale is the size of what is summed at element i.
double norm_tolerance(size_t d, double scale) {
  return 4.0 * kFp32Epsilon * (std::sqrt(static_cast<double>(d)) + 1.0) * scale + kFloatMin;
}

TEST(SimdOps, RmsNormMatchesTheReference) {
  MaxError max_error("rms_norm");
  const int64_t rows = 3;
  for_each_size([&](size_t d, size_t misalign) {
    const std::vector<float> x = uniform(rows * d, -2.0f, 2.0f, static_cast<unsigned>(d));
    const std::vector<float> weight = uniform(d, -1.5f, 1.5f, static_cast<unsigned>(d + 1000));
    std::vector<float> expected(x.size());
    ref::rms_norm(x.data(), weight.data(), 1e-5, expected.data(), rows, static_cast<int64_t>(d));
    Guarded y(std::vector<float>(x.size()), misalign), in_place(x, misalign);
    Guarded x_in(x, misalign + 1);
    simd_kernels().rms_norm(x_in.data(), weight.data(), 1e-5, y.data(), rows,
                            static_cast<int64_t>(d));
    simd_kernels().rms_norm(in_place.data(), weight.data(), 1e-5, in_place.data(), rows,
                            static_cast<int64_t>(d));
    max_error.expect_close(y.data(), expected.data(), x.size(), [&](size_t i) {
      return norm_tolerance(d, std::fabs(static_cast<double>(expected[i])));
    });
    EXPECT_TRUE(std::equal(y.data(), y.data() + x.size(), in_place.data()));
    EXPECT_TRUE(y.guards_intact() && in_place.guards_intact());
  });
}

TEST(SimdOps, LayerNormMatchesTheReferenceAlsoFarFromZero) {
  MaxError max_error("layer_norm");
  const int64_t rows = 3;
  for (float offset : {0.0f, 30.0f}) {
    for_each_size([&](size_t d, size_t misalign) {
      const std::vector<float> x =
          uniform(rows * d, offset - 2.0f, offset + 2.0f, static_cast<unsigned>(d));
      const std::vector<float> weight = uniform(d, -1.5f, 1.5f, static_cast<unsigned>(d + 1000));
      const std::vector<float> bias = uniform(d, -0.5f, 0.5f, static_cast<unsigned>(d + 2000));
      std::vector<float> expected(x.size());
      ref::layer_norm(x.data(), weight.data(), bias.data(), 1e-5, expected.data(), rows,
                      static_cast<int64_t>(d));
      Guarded y(x, misalign);
      simd_kernels().layer_norm(y.data(), weight.data(), bias.data(), 1e-5, y.data(), rows,
                                static_cast<int64_t>(d));
      // The mean's fp32 error enters x - mean absolutely: the scale counts |x| + |mean|.
      std::vector<double> mean(rows), inv_std(rows);
      for (size_t r = 0; r < static_cast<size_t>(rows) && d > 0; ++r) {
        double sum = 0.0, sum_squares = 0.0;
        for (size_t i = 0; i < d; ++i) sum += x[r * d + i];
        mean[r] = sum / static_cast<double>(d);
        for (size_t i = 0; i < d; ++i) sum_squares += std::pow(x[r * d + i] - mean[r], 2);
        inv_std[r] = 1.0 / std::sqrt(sum_squares / static_cast<double>(d) + 1e-5);
      }
      max_error.expect_close(y.data(), expected.data(), x.size(), [&](size_t k) {
        const size_t r = k / d, i = k % d;
        return norm_tolerance(
            d, std::fabs(weight[i]) * (std::fabs(x[k]) + std::fabs(mean[r])) * inv_std[r] +
                   std::fabs(bias[i]));
      });
      EXPECT_TRUE(y.guards_intact());
    });
  }
}

TEST(SimdOps, SoftmaxMatchesTheReference) {
  MaxError max_error("softmax");
  const int64_t rows = 3;
  for_each_size([&](size_t n, size_t misalign) {
    const std::vector<float> x = uniform(rows * n, -8.0f, 8.0f, static_cast<unsigned>(n));
    std::vector<float> expected = x;
    ref::softmax(expected.data(), rows, static_cast<int64_t>(n));
    Guarded p(x, misalign);
    simd_kernels().softmax(p.data(), rows, static_cast<int64_t>(n));
    max_error.expect_close(p.data(), expected.data(), x.size(), [](size_t) { return 1e-6; });
    EXPECT_TRUE(p.guards_intact());
  });
}

TEST(SimdOps, SoftmaxOfLargeLogitsIsFiniteAndSumsToOne) {
  MaxError max_error("softmax 1e3+");
  for_each_target([&] {
    for (int64_t n : {1, 7, 100, 1000}) {
      for (float hi : {1e3f, 1e4f}) {
        // Spread over [1e3, hi], or all within 8 of hi, where x - max keeps only a few bits.
        for (float lo : {1e3f, hi - 8.0f}) {
          std::vector<float> x = uniform(static_cast<size_t>(n), lo, hi, 7);
          std::vector<float> expected = x;
          ref::softmax(expected.data(), 1, n);
          simd_kernels().softmax(x.data(), 1, n);
          double sum = 0.0;
          for (float p : x) {
            ASSERT_TRUE(std::isfinite(p));
            sum += p;
          }
          EXPECT_NEAR(sum, 1.0, 1e-6) << "n " << n << " in " << lo << ".." << hi;
          max_error.expect_close(x.data(), expected.data(), x.size(), [](size_t) { return 1e-6; });
        }
      }
    }
    std::vector<float> equal(10, 1e4f);
    simd_kernels().softmax(equal.data(), 1, 10);
    for (float p : equal) EXPECT_NEAR(p, 0.1f, 1e-7);
  });
}

TEST(SimdOps, RopeMatchesTheReference) {
  MaxError max_error("rope");
  const std::vector<int64_t> positions = {0, 1, 2, 17, 1000, 65535, 100000};
  const int64_t n_tokens = static_cast<int64_t>(positions.size()), n_heads = 3;
  for (double theta : {10000.0, 1e6}) {
    for_each_size([&](size_t n, size_t misalign) {
      if (n % 2 != 0) return;  // head_dim is even
      const int64_t head_dim = static_cast<int64_t>(n);
      const size_t half = n / 2;
      const std::vector<float> x =
          uniform(n_tokens * n_heads * n, -3.0f, 3.0f, static_cast<unsigned>(n));
      std::vector<float> expected = x;
      ref::rope(expected.data(), positions, n_heads, head_dim, theta, RopeScaling{});
      Guarded rotated(x, misalign);
      simd_kernels().rope(rotated.data(), positions, n_heads, head_dim, theta, RopeScaling{});
      // A rotation of the pair (i, i + D/2) mixes both: the bound scales with |x_i| + |x_{i+D/2}|.
      max_error.expect_close(rotated.data(), expected.data(), x.size(), [&](size_t k) {
        const size_t pair = k % n < half ? k + half : k - half;
        return 1e-6 * (std::fabs(x[k]) + std::fabs(x[pair]));
      });
      EXPECT_TRUE(rotated.guards_intact());
    });
  }
}

// Every scaling the golden op cases cover (golden/scaled_rope_cases.h), at their positions past
// the pretraining context: the frequencies and the scale of cos and sin are the reference's, so
// the bound is the unscaled one times the scale.
TEST(SimdOps, RopeMatchesTheReferenceForEveryScaling) {
  const int64_t n_heads = 2;
  for (const golden::NamedRopeCase& c : golden::scaled_rope_cases()) {
    SCOPED_TRACE(c.name);
    const std::vector<int64_t> positions(c.positions.begin(), c.positions.end());
    const auto n_tokens = static_cast<int64_t>(positions.size());
    const int64_t last = *std::max_element(positions.begin(), positions.end());
    const std::string op = "rope " + c.name;
    MaxError max_error(op.c_str());
    for (const int64_t head_dim : {4, 6, 16, 64}) {
      const size_t n = static_cast<size_t>(head_dim), half = n / 2;
      const double s = ref::rope_frequencies(1e4, head_dim, c.scaling, last).attention_scaling;
      const std::vector<float> x =
          uniform(n_tokens * n_heads * n, -3.0f, 3.0f, static_cast<unsigned>(n));
      std::vector<float> expected = x;
      ref::rope(expected.data(), positions, n_heads, head_dim, 1e4, c.scaling);
      Guarded rotated(x, 1);
      simd_kernels().rope(rotated.data(), positions, n_heads, head_dim, 1e4, c.scaling);
      max_error.expect_close(rotated.data(), expected.data(), x.size(), [&](size_t k) {
        const size_t pair = k % n < half ? k + half : k - half;
        return 1e-6 * s * (std::fabs(x[k]) + std::fabs(x[pair]));
      });
      EXPECT_TRUE(rotated.guards_intact());
    }
  }
}

// simd::rope keeps the last call's cos/sin tables per thread: a call at other positions (even of
// the same length, or one position changed) must not reuse them, and tables large enough to be
// computed over several threads must be whole.
TEST(SimdOps, RopeTablesFollowThePositionsAtAnyThreadCount) {
  MaxError max_error("rope tables");
  const int64_t n_tokens = 256, n_heads = 4, head_dim = 64;  // 2^16 values: split over threads
  std::vector<int64_t> first(n_tokens), shifted(n_tokens);
  for (int64_t t = 0; t < n_tokens; ++t) {
    first[t] = t;
    shifted[t] = 100 + 3 * t;
  }
  std::vector<int64_t> one_changed = first;
  one_changed.back() = 5000;
  const std::vector<float> x = uniform(n_tokens * n_heads * head_dim, -3.0f, 3.0f, 7);
  for (const std::vector<int64_t>* positions : {&first, &shifted, &first, &one_changed}) {
    std::vector<float> expected = x, rotated = x;
    ref::rope(expected.data(), *positions, n_heads, head_dim, 10000.0, RopeScaling{});
    simd_kernels().rope(rotated.data(), *positions, n_heads, head_dim, 10000.0, RopeScaling{});
    max_error.expect_close(rotated.data(), expected.data(), x.size(), [&](size_t) { return 1e-5; });
  }
}

// gelu(x) = x / 2 (1 + erf(x / sqrt 2)) through erfc, which keeps the tail (x << 0) exact in
// double where the reference's 1 + erf cancels.
double exact_gelu(double x) {
  return x >= 0 ? x * (1.0 - 0.5 * std::erfc(x / std::sqrt(2.0)))
                : 0.5 * x * std::erfc(-x / std::sqrt(2.0));
}

// Relative 1e-6, plus the erf bound scaled by |x| / 2, plus subnormal rounding.
double activation_tolerance(double expected, double x, double erf_bound) {
  return 1e-6 * std::fabs(expected) + 0.5 * std::fabs(x) * erf_bound + kFloatMin;
}

TEST(SimdOps, SwigluMatchesTheReferenceInPlaceToo) {
  MaxError max_error("swiglu");
  for_each_size([&](size_t n, size_t misalign) {
    std::vector<float> gate = uniform(n, -12.0f, 12.0f, static_cast<unsigned>(n));
    const std::vector<float> up = uniform(n, -3.0f, 3.0f, static_cast<unsigned>(n + 1000));
    // Past exp's fp32 range on both sides, at the largest n.
    const float beyond_exp_range[] = {-1000.0f, -103.0f, -88.8f, 88.8f, 1000.0f};
    if (n == 2 * kN)
      std::copy(std::begin(beyond_exp_range), std::end(beyond_exp_range), gate.begin());
    std::vector<float> expected(n);
    ref::swiglu(gate.data(), up.data(), expected.data(), static_cast<int64_t>(n));
    Guarded out(std::vector<float>(n), misalign), in_place(gate, misalign);
    simd_kernels().swiglu(gate.data(), up.data(), out.data(), static_cast<int64_t>(n));
    simd_kernels().swiglu(in_place.data(), up.data(), in_place.data(), static_cast<int64_t>(n));
    max_error.expect_close(out.data(), expected.data(), n,
                           [&](size_t i) { return activation_tolerance(expected[i], 0.0, 0.0); });
    EXPECT_TRUE(std::equal(out.data(), out.data() + n, in_place.data()));
    EXPECT_TRUE(out.guards_intact() && in_place.guards_intact());
  });
}

TEST(SimdOps, GeluMatchesTheReference) {
  MaxError max_error("gelu");
  for_each_size([&](size_t n, size_t misalign) {
    const std::vector<float> x = uniform(n, -6.0f, 6.0f, static_cast<unsigned>(n));
    std::vector<float> expected = x;
    ref::gelu(expected.data(), static_cast<int64_t>(n));
    Guarded y(x, misalign);
    simd_kernels().gelu(y.data(), static_cast<int64_t>(n));
    max_error.expect_close(y.data(), expected.data(), n, [&](size_t i) {
      return activation_tolerance(expected[i], x[i], kGeluErfBound);
    });
    EXPECT_TRUE(y.guards_intact());
  });
}

// kGeluErfBound holds over [-16, 16] (the function is x or 0 to fp32 beyond): every x on a grid of
// step 2^-10 against the exact form.
TEST(SimdOps, GeluErfBoundHoldsOnADenseGrid) {
  MaxError max_error("gelu exact");
  for_each_target([&] {
    std::vector<float> x;
    for (int k = -16 * 1024; k <= 16 * 1024; ++k) x.push_back(static_cast<float>(k) / 1024.0f);
    std::vector<float> y = x, expected(x.size());
    for (size_t i = 0; i < x.size(); ++i) expected[i] = static_cast<float>(exact_gelu(x[i]));
    simd_kernels().gelu(y.data(), static_cast<int64_t>(y.size()));
    max_error.expect_close(y.data(), expected.data(), x.size(), [&](size_t i) {
      return kFp32Epsilon * std::fabs(expected[i]) + 0.5 * std::fabs(x[i]) * kGeluErfBound;
    });
  });
}

TEST(SimdOps, GeluAtKnownValues) {
  // x / 2 (1 + erf(x / sqrt 2)) to 16 digits; gelu(-10) = -5 erfc(5 sqrt 2), which the reference
  // rounds to -0 (1 + erf cancels in double) and the erfc form keeps, to the relative accuracy of
  // its fp32 exponent -x^2 / 2 (a few 1e-6 at x = -10).
  const std::vector<float> x = {0.0f, 1.0f, -1.0f, 10.0f, -10.0f};
  const std::vector<double> known = {0.0, 0.8413447460685429, -0.15865525393145707, 10.0,
                                     -7.619853024160593e-23};
  const std::vector<double> relative = {0.0, 1e-6, 1e-6, 1e-6, 1e-5};
  for_each_target([&] {
    std::vector<float> y = x;
    simd_kernels().gelu(y.data(), static_cast<int64_t>(y.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_NEAR(y[i], known[i], relative[i] * std::fabs(known[i])) << "gelu(" << x[i] << ")";
    }
  });
}

TEST(SimdOps, ResidualAddIsTheReferenceBitForBit) {
  for_each_size([&](size_t n, size_t misalign) {
    const std::vector<float> x = uniform(n, -5.0f, 5.0f, static_cast<unsigned>(n));
    const std::vector<float> branch = uniform(n, -5.0f, 5.0f, static_cast<unsigned>(n + 1000));
    std::vector<float> expected = x;
    ref::residual_add(expected.data(), branch.data(), static_cast<int64_t>(n));
    Guarded sum(x, misalign);
    simd_kernels().residual_add(sum.data(), branch.data(), static_cast<int64_t>(n));
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), sum.data()));
    EXPECT_TRUE(sum.guards_intact());
  });
}

// select_top_k must give the reference's indices and weights to the bit: compared with ==.
void expect_top_k_as_reference(const std::vector<float>& probs, int64_t n_experts, int64_t k,
                               bool renormalize) {
  const int64_t n_tokens = static_cast<int64_t>(probs.size()) / n_experts;
  const size_t chosen = static_cast<size_t>(n_tokens * k);
  std::vector<int32_t> expected_indices(chosen), got_indices(chosen, -7);
  std::vector<float> expected_weights(chosen), got_weights(chosen, kSentinel);
  ref::select_top_k(probs.data(), n_tokens, n_experts, k, renormalize, expected_indices.data(),
                    expected_weights.data());
  simd_kernels().select_top_k(probs.data(), n_tokens, n_experts, k, renormalize, got_indices.data(),
                              got_weights.data());
  EXPECT_EQ(got_indices, expected_indices) << n_experts << " experts, k " << k;
  for (size_t i = 0; i < chosen; ++i) {
    EXPECT_TRUE(std::bit_cast<uint32_t>(got_weights[i]) ==
                    std::bit_cast<uint32_t>(expected_weights[i]) ||
                (std::isnan(got_weights[i]) && std::isnan(expected_weights[i])))
        << "weight " << i << ": " << got_weights[i] << " vs " << expected_weights[i];
  }
}

struct TopKCase {
  std::vector<float> probs;  // one token
  int64_t k;
  std::vector<int32_t> expected;
};

TEST(SimdOps, TopKBreaksTiesTowardTheLowerIndexOnATableOfCases) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  const std::vector<TopKCase> cases = {
      {{0.25f, 0.25f, 0.25f, 0.25f}, 2, {0, 1}},
      {{0.1f, 0.3f, 0.3f, 0.3f}, 3, {1, 2, 3}},
      {{0.5f}, 1, {0}},
      {{0.0f, -0.0f, 0.0f}, 2, {0, 1}},
      {{-0.0f, 0.0f, 1.0f}, 3, {2, 0, 1}},
      {{-kInf, -kInf, -kInf}, 3, {0, 1, 2}},
      {{-kInf, 2.0f, -kInf, kInf}, 4, {3, 1, 0, 2}},
      {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, 3, {19, 18, 17}},
      // 17 experts: the winner and its tie in the tail that does not fill an AVX-512 vector.
      {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.5f, 0.5f}, 2, {15, 16}},
      {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.5f}, 2, {16, 0}},
      // NaN: the reference's strict > never lets a NaN win, except as the first candidate.
      {{kNaN, 0.5f, 0.7f}, 2, {0, 2}},
      {{0.5f, kNaN, 0.7f}, 3, {2, 0, 1}},
  };
  for_each_target([&] {
    for (const TopKCase& c : cases) {
      const int64_t n = static_cast<int64_t>(c.probs.size());
      std::vector<int32_t> indices(static_cast<size_t>(c.k));
      std::vector<float> weights(indices.size());
      simd_kernels().select_top_k(c.probs.data(), 1, n, c.k, false, indices.data(), weights.data());
      EXPECT_EQ(indices, c.expected) << n << " experts, k " << c.k;
      for (bool renormalize : {false, true})
        expect_top_k_as_reference(c.probs, n, c.k, renormalize);
    }
  });
}

TEST(SimdOps, TopKMatchesTheReferenceWithManyTies) {
  for_each_target([&] {
    for (int64_t n = 1; n <= static_cast<int64_t>(kN) + 3; ++n) {
      for (int64_t k : {int64_t{1}, int64_t{2}, int64_t{3}, n / 2 + 1, n}) {
        if (k > n) continue;
        // Five levels over 7 tokens: ties at every rank.
        std::vector<float> probs =
            uniform(static_cast<size_t>(7 * n), 0.0f, 5.0f, static_cast<unsigned>(n * 131 + k));
        for (float& p : probs) p = std::floor(p) / 8.0f;
        for (bool renormalize : {false, true}) expect_top_k_as_reference(probs, n, k, renormalize);
      }
    }
  });
  std::vector<int32_t> indices(4);
  std::vector<float> probs(4, 0.25f), weights(4);
  EXPECT_THROW(select_top_k(probs.data(), 1, 4, 0, true, indices.data(), weights.data()),
               std::invalid_argument);
  EXPECT_THROW(select_top_k(probs.data(), 1, 4, 5, true, indices.data(), weights.data()),
               std::invalid_argument);
}

// Above ref::kParallelWork the ops split rows, heads or chunks over threads; every output is
// still one thread's, so one thread and all of them give the same bits, close to the reference.
struct ExpertOrderCase {
  const char* description;
  std::vector<int64_t> tokens_per_expert;
  std::vector<int64_t> simd_order;
};

// The simd set runs the busiest experts first, ties in index order; the reference, index order.
TEST(SimdOps, ExpertOrderIsBusiestFirstTiesByIndex) {
  const std::vector<ExpertOrderCase> cases = {
      {"none", {}, {}},
      {"one", {5}, {0}},
      {"already busiest first", {9, 4, 1}, {0, 1, 2}},
      {"busiest last", {1, 4, 9}, {2, 1, 0}},
      {"ties keep index order", {3, 7, 3, 7, 0}, {1, 3, 0, 2, 4}},
      {"idle experts last", {0, 0, 504, 0, 12}, {2, 4, 0, 1, 3}},
  };
  for (const ExpertOrderCase& c : cases) {
    EXPECT_EQ(simd_kernels().expert_order(c.tokens_per_expert), c.simd_order) << c.description;
    std::vector<int64_t> index_order(c.tokens_per_expert.size());
    for (size_t e = 0; e < index_order.size(); ++e) index_order[e] = static_cast<int64_t>(e);
    EXPECT_EQ(ref_kernels().expert_order(c.tokens_per_expert), index_order) << c.description;
  }
}

TEST(SimdOps, LargeWorkIsTheSameOnAnyThreadCountAndMatchesTheReference) {
  const int64_t rows = 64, d = 1100, n = rows * d + 3;
  const std::vector<float> x = uniform(n, -4.0f, 4.0f, 1);
  const std::vector<float> other = uniform(n, -2.0f, 2.0f, 2);
  const std::vector<int64_t> positions = {3, 4, 5, 6, 7, 8, 9, 10};
  const auto run_all = [&] {
    std::vector<std::vector<float>> out(7, x);
    simd_kernels().rms_norm(x.data(), other.data(), 1e-6, out[0].data(), rows, d);
    simd_kernels().layer_norm(x.data(), other.data(), other.data() + d, 1e-6, out[1].data(), rows,
                              d);
    simd_kernels().softmax(out[2].data(), rows, d);
    simd_kernels().rope(out[3].data(), positions, 64, 128, 10000.0, RopeScaling{});
    simd_kernels().rope(
        out[6].data(), positions, 64, 128, 10000.0,
        {.kind = RopeScalingKind::kYarn, .factor = 4.0, .original_max_position_embeddings = 4});
    simd_kernels().swiglu(x.data(), other.data(), out[4].data(), n);
    simd_kernels().gelu(out[5].data(), n);
    simd_kernels().residual_add(out[5].data(), other.data(), n);
    return out;
  };
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<std::vector<float>> one_thread = run_all();
  omp_set_num_threads(threads);
  const std::vector<std::vector<float>> all_threads = run_all();
  for (size_t op = 0; op < one_thread.size(); ++op) EXPECT_EQ(one_thread[op], all_threads[op]);

  std::vector<float> expected = x;
  ref::softmax(expected.data(), rows, d);
  MaxError max_error("softmax large");
  max_error.expect_close(all_threads[2].data(), expected.data(), rows * d,
                         [](size_t) { return 1e-6; });
  expected = x;
  ref::gelu(expected.data(), n);
  ref::residual_add(expected.data(), other.data(), n);
  MaxError gelu_error("gelu+add large");
  gelu_error.expect_close(all_threads[5].data(), expected.data(), n, [&](size_t i) {
    return activation_tolerance(expected[i], x[i], kGeluErfBound) + kFp32Epsilon * 8.0;
  });
}

}  // namespace
}  // namespace moeref::simd
