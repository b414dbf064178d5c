// The reference ops against hand-derived values and the properties the math guarantees.
// Expected numbers are worked out by hand in the comments, or by a double-precision oracle
// written here independently of the op under test.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "ref/ops/activation.h"
#include "ref/ops/attention.h"
#include "ref/ops/matmul.h"
#include "ref/ops/norm.h"
#include "ref/ops/residual.h"
#include "ref/ops/rope.h"
#include "ref/ops/router.h"
#include "ref/ops/softmax.h"

namespace moeref::ref {
namespace {

std::vector<float> ramp(int64_t n, float scale, float offset) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = offset + scale * static_cast<float>((i * 7) % 11 - 5);
  return v;
}

TEST(Matmul, HandComputed) {
  // x = [1 2], w rows: [3 4], [5 6], [-1 0.5] -> y = [11, 17, 0].
  const std::vector<float> x = {1, 2};
  const std::vector<float> w = {3, 4, 5, 6, -1, 0.5f};
  std::vector<float> y(3);
  matmul(x.data(), w.data(), y.data(), 1, 2, 3);
  EXPECT_EQ(y, (std::vector<float>{11, 17, 0}));
}

TEST(Matmul, AccumulatesInDouble) {
  // 1e8 + 1 - 1e8: in fp32 the 1 is lost (1e8 + 1 rounds to 1e8); in double it survives.
  const std::vector<float> x = {1e8f, 1.0f, -1e8f};
  const std::vector<float> w = {1, 1, 1};
  float y = 0;
  matmul(x.data(), w.data(), &y, 1, 3, 1);
  EXPECT_EQ(y, 1.0f);
}

TEST(Matmul, ZeroSizedShapesWriteNothing) {
  std::vector<float> y = {42.0f};
  matmul(nullptr, nullptr, y.data(), 0, 4, 1);
  EXPECT_EQ(y[0], 42.0f);
}

TEST(Softmax, SumsToOneAndOrdersLikeLogits) {
  std::vector<float> x = ramp(37, 0.9f, 0.1f);
  const std::vector<float> logits = x;
  softmax(x.data(), 1, 37);
  double sum = 0;
  for (float p : x) sum += p;
  EXPECT_NEAR(sum, 1.0, 1e-6);
  for (int i = 0; i < 37; ++i) {
    for (int j = 0; j < 37; ++j) {
      if (logits[i] < logits[j]) {
        EXPECT_LT(x[i], x[j]);
      }
    }
  }
}

TEST(Softmax, UniformRowIsExact) {
  std::vector<float> x = {3, 3, 3, 3};
  softmax(x.data(), 1, 4);
  EXPECT_EQ(x, (std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f}));
}

TEST(Softmax, SurvivesLargeLogits) {
  // Without subtracting the maximum, exp(1000) overflows to inf and the result is NaN.
  std::vector<float> large = {1000, 1001, 1002};
  std::vector<float> small = {0, 1, 2};
  softmax(large.data(), 1, 3);
  softmax(small.data(), 1, 3);
  EXPECT_EQ(large, small);
  const double z = 1 + std::exp(1.0) + std::exp(2.0);
  EXPECT_FLOAT_EQ(small[2], static_cast<float>(std::exp(2.0) / z));
}

TEST(Softmax, LogSumExpIsStable) {
  const std::vector<float> x = {1000, 1000};
  EXPECT_NEAR(log_sum_exp(x.data(), 2), 1000 + std::log(2.0), 1e-9);
}

TEST(RmsNorm, HandComputed) {
  // x = [3, 4]: mean square = 12.5, so y = w * x / sqrt(12.5 + eps).
  const std::vector<float> x = {3, 4};
  const std::vector<float> w = {1, 2};
  std::vector<float> y(2);
  rms_norm(x.data(), w.data(), 0.0, y.data(), 1, 2);
  EXPECT_FLOAT_EQ(y[0], static_cast<float>(3 / std::sqrt(12.5)));
  EXPECT_FLOAT_EQ(y[1], static_cast<float>(2 * 4 / std::sqrt(12.5)));
}

TEST(RmsNorm, EpsIsInsideTheSquareRoot) {
  // x = 0 gives 0 whatever eps; x = [1] with eps = 3 gives 1 / sqrt(1 + 3) = 0.5 exactly.
  const std::vector<float> x = {1};
  const std::vector<float> w = {1};
  float y = 0;
  rms_norm(x.data(), w.data(), 3.0, &y, 1, 1);
  EXPECT_EQ(y, 0.5f);
}

TEST(RmsNorm, IsScaleInvariant) {
  const int64_t d = 64;
  std::vector<float> x = ramp(d, 0.37f, 0.05f);
  std::vector<float> scaled(x.size());
  for (size_t i = 0; i < x.size(); ++i) scaled[i] = 3.5f * x[i];
  const std::vector<float> w = ramp(d, 0.1f, 1.0f);
  std::vector<float> y(d), y_scaled(d);
  rms_norm(x.data(), w.data(), 0.0, y.data(), 1, d);
  rms_norm(scaled.data(), w.data(), 0.0, y_scaled.data(), 1, d);
  for (int64_t i = 0; i < d; ++i) EXPECT_NEAR(y[i], y_scaled[i], 1e-6 * std::fabs(y[i]) + 1e-7);
}

TEST(LayerNorm, HandComputed) {
  // x = [1, 3]: mean 2, variance 1, so y = w * (x - 2) / sqrt(1 + eps) + b.
  const std::vector<float> x = {1, 3};
  const std::vector<float> w = {2, 3};
  const std::vector<float> b = {0.5f, -0.5f};
  std::vector<float> y(2);
  layer_norm(x.data(), w.data(), b.data(), 0.0, y.data(), 1, 2);
  EXPECT_EQ(y, (std::vector<float>{-1.5f, 2.5f}));
}

TEST(LayerNorm, NormalisesMeanAndVariance) {
  const int64_t d = 48;
  const std::vector<float> x = ramp(d, 1.3f, 7.0f);
  const std::vector<float> ones(d, 1.0f), zeros(d, 0.0f);
  std::vector<float> y(d);
  layer_norm(x.data(), ones.data(), zeros.data(), 0.0, y.data(), 1, d);
  double mean = 0, var = 0;
  for (float v : y) mean += v;
  mean /= d;
  for (float v : y) var += (v - mean) * (v - mean);
  EXPECT_NEAR(mean, 0.0, 1e-6);
  EXPECT_NEAR(var / d, 1.0, 1e-5);
}

TEST(Rope, RotatesHalvesNotAdjacentPairs) {
  // head_dim 4: the pairs are (0, 2) and (1, 3). inv_freq[0] = 1, so at position 1 the unit
  // vector e0 turns by 1 radian into e0 cos 1 + e2 sin 1; adjacent pairs would move it to e1.
  std::vector<float> x = {1, 0, 0, 0};
  const std::vector<int64_t> positions = {1};
  rope(x.data(), positions, 1, 4, 10000.0, RopeScaling{});
  EXPECT_FLOAT_EQ(x[0], static_cast<float>(std::cos(1.0)));
  EXPECT_EQ(x[1], 0.0f);
  EXPECT_FLOAT_EQ(x[2], static_cast<float>(std::sin(1.0)));
  EXPECT_EQ(x[3], 0.0f);
}

TEST(Rope, SecondFrequencyUsesTheta) {
  // inv_freq[1] = theta^(-2/4) = 1/100 for theta 10000: e1 at position 50 turns by 0.5 rad.
  std::vector<float> x = {0, 1, 0, 0};
  const std::vector<int64_t> positions = {50};
  rope(x.data(), positions, 1, 4, 10000.0, RopeScaling{});
  EXPECT_FLOAT_EQ(x[1], static_cast<float>(std::cos(0.5)));
  EXPECT_FLOAT_EQ(x[3], static_cast<float>(std::sin(0.5)));
}

TEST(Rope, PositionZeroIsIdentity) {
  std::vector<float> x = ramp(2 * 16, 0.3f, 0.1f);
  const std::vector<float> before = x;
  const std::vector<int64_t> positions = {0};
  rope(x.data(), positions, 2, 16, 10000.0, RopeScaling{});
  EXPECT_EQ(x, before);
}

double dot_double(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

TEST(Rope, PreservesNorms) {
  const int64_t hd = 32;
  for (int64_t position : {1, 7, 1000}) {
    std::vector<float> x = ramp(hd, 0.21f, 0.3f);
    const double before = dot_double(x, x);
    const std::vector<int64_t> positions = {position};
    rope(x.data(), positions, 1, hd, 10000.0, RopeScaling{});
    EXPECT_NEAR(dot_double(x, x), before, 1e-5 * before) << "position " << position;
  }
}

TEST(Rope, DotProductDependsOnlyOnPositionDifference) {
  const int64_t hd = 16;
  auto rotated_dot = [&](int64_t m, int64_t n) {
    std::vector<float> q = ramp(hd, 0.2f, 0.1f);
    std::vector<float> k = ramp(hd, -0.15f, 0.05f);
    const std::vector<int64_t> pm = {m}, pn = {n};
    rope(q.data(), pm, 1, hd, 10000.0, RopeScaling{});
    rope(k.data(), pn, 1, hd, 10000.0, RopeScaling{});
    return dot_double(q, k);
  };
  EXPECT_NEAR(rotated_dot(5, 2), rotated_dot(105, 102), 1e-5);
  EXPECT_NEAR(rotated_dot(3, 3), rotated_dot(0, 0), 1e-5);
  EXPECT_GT(std::fabs(rotated_dot(5, 2) - rotated_dot(2, 2)), 1e-3);  // the test can fail
}

// Cache of `n_kv_heads` heads, `capacity` positions, filled with a deterministic pattern.
std::vector<float> make_cache(int64_t n_kv_heads, int64_t capacity, int64_t hd, float scale) {
  return ramp(n_kv_heads * capacity * hd, scale, 0.01f);
}

TEST(Attention, SingleTokenReturnsItsValue) {
  const int64_t H = 4, hd = 8, capacity = 4;
  const AttentionDims dims{H, 1, hd, capacity};
  const std::vector<float> q = ramp(H * hd, 0.5f, 0.2f);
  const std::vector<float> keys = make_cache(1, capacity, hd, 0.3f);
  const std::vector<float> values = make_cache(1, capacity, hd, -0.7f);
  std::vector<float> context(H * hd);
  std::vector<float> probs(H * 1);
  const std::vector<int64_t> positions = {0};
  attention(q.data(), keys.data(), values.data(), positions, dims, context.data(), probs.data(), 1);
  for (int64_t h = 0; h < H; ++h) {
    EXPECT_EQ(probs[h], 1.0f);
    for (int64_t i = 0; i < hd; ++i) EXPECT_EQ(context[h * hd + i], values[i]);
  }
}

TEST(Attention, HandComputedTwoKeys) {
  // head_dim 4, q = [2 0 0 0], k0 = [0 ...], k1 = [1 0 0 0]: scores 0 and 2/sqrt(4) = 1,
  // p = [1, e] / (1 + e); v0 = [1 0 0 0], v1 = [0 1 0 0]: context = [p0, p1, 0, 0].
  const AttentionDims dims{1, 1, 4, 2};
  const std::vector<float> q = {2, 0, 0, 0};
  const std::vector<float> keys = {0, 0, 0, 0, 1, 0, 0, 0};
  const std::vector<float> values = {1, 0, 0, 0, 0, 1, 0, 0};
  std::vector<float> context(4), probs(2);
  const std::vector<int64_t> positions = {1};
  attention(q.data(), keys.data(), values.data(), positions, dims, context.data(), probs.data(), 2);
  const double e = std::exp(1.0);
  EXPECT_FLOAT_EQ(probs[0], static_cast<float>(1 / (1 + e)));
  EXPECT_FLOAT_EQ(probs[1], static_cast<float>(e / (1 + e)));
  EXPECT_FLOAT_EQ(context[0], probs[0]);
  EXPECT_FLOAT_EQ(context[1], probs[1]);
}

TEST(Attention, IgnoresFuturePositions) {
  const int64_t H = 2, hd = 8, capacity = 6;
  const AttentionDims dims{H, 1, hd, capacity};
  const std::vector<float> q = ramp(H * hd, 0.4f, 0.0f);
  const std::vector<float> keys = make_cache(1, capacity, hd, 0.3f);
  std::vector<float> values = make_cache(1, capacity, hd, 0.2f);
  const std::vector<int64_t> positions = {2};
  std::vector<float> before(H * hd), after(H * hd), probs(H * capacity);
  attention(q.data(), keys.data(), values.data(), positions, dims, before.data(), probs.data(),
            capacity);
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t j = 3; j < capacity; ++j) EXPECT_EQ(probs[h * capacity + j], 0.0f);
  }
  for (int64_t i = 3 * hd; i < capacity * hd; ++i) values[i] = 1e6f;  // positions 3..5
  attention(q.data(), keys.data(), values.data(), positions, dims, after.data(), nullptr, 0);
  EXPECT_EQ(before, after);
}

TEST(Attention, MultiQueryEqualsMultiHeadWithCopiedKvHead) {
  const int64_t H = 4, hd = 8, capacity = 5, T = 3;
  const std::vector<float> q = ramp(T * H * hd, 0.25f, 0.1f);
  const std::vector<float> k1 = make_cache(1, capacity, hd, 0.3f);
  const std::vector<float> v1 = make_cache(1, capacity, hd, -0.2f);
  std::vector<float> kH, vH;
  for (int64_t h = 0; h < H; ++h) {
    kH.insert(kH.end(), k1.begin(), k1.end());
    vH.insert(vH.end(), v1.begin(), v1.end());
  }
  const std::vector<int64_t> positions = {2, 3, 4};
  std::vector<float> mqa(T * H * hd), mha(T * H * hd);
  attention(q.data(), k1.data(), v1.data(), positions, {H, 1, hd, capacity}, mqa.data(), nullptr,
            0);
  attention(q.data(), kH.data(), vH.data(), positions, {H, H, hd, capacity}, mha.data(), nullptr,
            0);
  EXPECT_EQ(mqa, mha);
}

TEST(Attention, GroupedQueryHeadsReadTheirGroupsKvHead) {
  // H = 4, G = 2: heads 0, 1 read K/V head 0; heads 2, 3 read K/V head 1. With one key the
  // context is that head's value, so each query head must return its group's value row.
  const int64_t H = 4, G = 2, hd = 2, capacity = 1;
  const std::vector<float> q(H * hd, 1.0f);
  const std::vector<float> keys = {0, 0, 0, 0};
  const std::vector<float> values = {1, 2, 3, 4};  // head 0: [1 2], head 1: [3 4]
  std::vector<float> context(H * hd);
  const std::vector<int64_t> positions = {0};
  attention(q.data(), keys.data(), values.data(), positions, {H, G, hd, capacity}, context.data(),
            nullptr, 0);
  EXPECT_EQ(context, (std::vector<float>{1, 2, 1, 2, 3, 4, 3, 4}));
}

TEST(Activation, SwiGluHandComputed) {
  // silu(0) = 0; silu(1) * 2 = 2 / (1 + e^-1); silu(-1) * 1 = -1 / (1 + e).
  const std::vector<float> gate = {0, 1, -1};
  const std::vector<float> up = {5, 2, 1};
  std::vector<float> out(3);
  swiglu(gate.data(), up.data(), out.data(), 3);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_FLOAT_EQ(out[1], static_cast<float>(2 / (1 + std::exp(-1.0))));
  EXPECT_FLOAT_EQ(out[2], static_cast<float>(-1 / (1 + std::exp(1.0))));
}

TEST(Activation, GeluIsTheExactErfForm) {
  // gelu(1) = Phi(1) = 0.841344746068543 (normal CDF); the tanh approximation gives
  // 0.841191990607477, which this test tells apart.
  std::vector<float> x = {0, 1, -1, 10, -10};
  gelu(x.data(), 5);
  EXPECT_EQ(x[0], 0.0f);
  EXPECT_NEAR(x[1], 0.841344746068543, 1e-7);
  EXPECT_NEAR(x[2], 0.841344746068543 - 1, 1e-7);
  EXPECT_EQ(x[3], 10.0f);
  EXPECT_NEAR(x[4], 0.0f, 1e-20);
}

TEST(Residual, AddsTheBranchInPlaceWithOneRoundingEach) {
  // 0.5 + 2^-25 is a tie between 0.5 and its successor 0.5 + 2^-24: rounds to even, 0.5.
  std::vector<float> x = {1.0f, -2.0f, 0.5f, 3.0f};
  const std::vector<float> branch = {0.25f, 2.0f, 0x1.0p-25f, -0.5f};
  residual_add(x.data(), branch.data(), 3);
  EXPECT_EQ(x, (std::vector<float>{1.25f, 0.0f, 0.5f, 3.0f}));  // the fourth is past n
}

struct TopKCase {
  const char* description;
  std::vector<float> probs;
  int64_t k;
  std::vector<int32_t> expected_indices;
};

TEST(RouterTopK, RankOrderAndTies) {
  const std::vector<TopKCase> cases = {
      {"distinct", {0.1f, 0.4f, 0.2f, 0.3f}, 2, {1, 3}},
      {"tie for first goes to the lower index", {0.3f, 0.2f, 0.3f, 0.2f}, 2, {0, 2}},
      {"tie for second goes to the lower index", {0.1f, 0.5f, 0.2f, 0.2f}, 2, {1, 2}},
      {"all equal", {0.25f, 0.25f, 0.25f, 0.25f}, 3, {0, 1, 2}},
      {"k = n", {0.4f, 0.1f, 0.5f}, 3, {2, 0, 1}},
      {"last expert wins", {0.1f, 0.1f, 0.1f, 0.7f}, 1, {3}},
  };
  for (const TopKCase& c : cases) {
    const int64_t n = static_cast<int64_t>(c.probs.size());
    std::vector<int32_t> indices(c.k);
    std::vector<float> weights(c.k);
    select_top_k(c.probs.data(), 1, n, c.k, false, indices.data(), weights.data());
    EXPECT_EQ(indices, c.expected_indices) << c.description;
    for (int64_t j = 0; j < c.k; ++j) EXPECT_EQ(weights[j], c.probs[indices[j]]) << c.description;
  }
}

TEST(RouterTopK, RenormalisedWeightsSumToOne) {
  // p = 0.5 and 0.25 chosen: weights 2/3 and 1/3.
  const std::vector<float> probs = {0.5f, 0.125f, 0.25f, 0.125f};
  std::vector<int32_t> indices(2);
  std::vector<float> weights(2);
  select_top_k(probs.data(), 1, 4, 2, true, indices.data(), weights.data());
  EXPECT_EQ(indices, (std::vector<int32_t>{0, 2}));
  EXPECT_FLOAT_EQ(weights[0], 2.0f / 3.0f);
  EXPECT_FLOAT_EQ(weights[1], 1.0f / 3.0f);
}

TEST(RouterTopK, NeverRepeatsAnExpertWithinAToken) {
  const std::vector<float> probs(8, 0.125f);
  std::vector<int32_t> indices(8);
  std::vector<float> weights(8);
  select_top_k(probs.data(), 1, 8, 8, true, indices.data(), weights.data());
  EXPECT_EQ(indices, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(RouterTopK, RejectsKOutsideOneToExperts) {
  const std::vector<float> probs(4, 0.25f);
  std::vector<int32_t> indices(5);
  std::vector<float> weights(5);
  EXPECT_THROW(select_top_k(probs.data(), 1, 4, 5, true, indices.data(), weights.data()),
               std::invalid_argument);
  EXPECT_THROW(select_top_k(probs.data(), 1, 4, 0, true, indices.data(), weights.data()),
               std::invalid_argument);
}

TEST(Capacity, Formula) {
  EXPECT_EQ(expert_capacity(0.0, 100, 2, 16), 0);  // dropless
  EXPECT_EQ(expert_capacity(1.0, 8, 2, 16), 1);    // 8 * 2 / 16 = 1
  EXPECT_EQ(expert_capacity(1.25, 3, 2, 4), 2);    // ceil(1.875)
  EXPECT_EQ(expert_capacity(0.5, 4, 2, 4), 1);     // exactly 1
  EXPECT_EQ(expert_capacity(2.0, 64, 2, 16), 16);  // 2 * 64 * 2 / 16
}

struct CapacityCase {
  const char* description;
  std::vector<int32_t> indices;  // [tokens, 2]
  int64_t capacity;
  std::vector<int32_t> expected_kept;
  int64_t expected_dropped;
};

TEST(Capacity, GShardPriorityOrder) {
  // Three tokens, top-2 of 2 experts. Worked by hand: all rank-0 choices in token order first,
  // then rank-1 choices in token order.
  const std::vector<CapacityCase> cases = {
      // C = 1: t0 r0 -> e0 kept; t1 r0 -> e0 full; t2 r0 -> e1 kept; every rank-1 choice full.
      {"capacity 1", {0, 1, 0, 1, 1, 0}, 1, {1, 0, 0, 0, 1, 0}, 4},
      // C = 2: rank 0 fills e0 twice and e1 once; t0 r1 -> e1 kept; t1 r1 -> e1 full;
      // t2 r1 -> e0 full. A token-major order would keep t1's second choice instead of t2's first.
      {"capacity 2", {0, 1, 0, 1, 1, 0}, 2, {1, 1, 1, 0, 1, 0}, 2},
      {"dropless", {0, 1, 0, 1, 1, 0}, 0, {1, 1, 1, 1, 1, 1}, 0},
      // Rank 0 has priority over an earlier token's rank 1: t0 r1 -> e1 loses to t1 r0 -> e1.
      {"later first choice beats earlier second choice", {0, 1, 1, 0}, 1, {1, 0, 1, 0}, 2},
  };
  for (const CapacityCase& c : cases) {
    const int64_t tokens = static_cast<int64_t>(c.indices.size()) / 2;
    std::vector<int32_t> kept(c.indices.size());
    const int64_t dropped = apply_capacity(c.indices.data(), tokens, 2, 2, c.capacity, kept.data());
    EXPECT_EQ(kept, c.expected_kept) << c.description;
    EXPECT_EQ(dropped, c.expected_dropped) << c.description;
  }
}

TEST(RouterLosses, LoadBalancingIsKUnderUniformRouting) {
  // 4 experts, k = 2, 2 tokens choosing {0,1} and {2,3}; uniform probabilities 1/4:
  // f_e = 1/2 for every e, P_e = 1/4, aux = 4 * sum(1/2 * 1/4) = 2 = k.
  const std::vector<float> probs(8, 0.25f);
  const std::vector<int32_t> indices = {0, 1, 2, 3};
  EXPECT_DOUBLE_EQ(load_balancing_loss(probs.data(), indices.data(), 2, 4, 2), 2.0);
}

TEST(RouterLosses, LoadBalancingPenalisesCollapse) {
  // Every token on experts 0 and 1 with all probability there: f = [1, 1, 0, 0],
  // P = [0.5, 0.5, 0, 0], aux = 4 * (0.5 + 0.5) = 4 > k.
  const std::vector<float> probs = {0.5f, 0.5f, 0, 0, 0.5f, 0.5f, 0, 0};
  const std::vector<int32_t> indices = {0, 1, 1, 0};
  EXPECT_DOUBLE_EQ(load_balancing_loss(probs.data(), indices.data(), 2, 4, 2), 4.0);
}

TEST(RouterLosses, ZLossHandComputed) {
  // Zero logits over 4 experts: logsumexp = log 4, z = (log 4)^2. Logits [ln 3, 0]: lse = ln 4.
  const std::vector<float> zeros(4, 0.0f);
  EXPECT_NEAR(router_z_loss(zeros.data(), 1, 4), std::pow(std::log(4.0), 2), 1e-12);
  const std::vector<float> two = {static_cast<float>(std::log(3.0)), 0.0f};
  EXPECT_NEAR(router_z_loss(two.data(), 1, 2), std::pow(std::log(4.0), 2), 1e-6);
}

}  // namespace
}  // namespace moeref::ref
