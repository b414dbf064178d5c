// RoPE scaling: the frequencies of every kind against values derived by hand from the formulas
// of docs/model.md for heads of 4 and 8 dimensions, and the rotation's attention scaling.
//
// The bases are chosen so that the unscaled frequencies are round: theta 100 with head_dim 4
// gives inv_freq = (1, 1/10); theta 10^4 with head_dim 8 gives (1, 1/10, 1/100, 1/1000), and
// YaRN's pair index for r rotations over L positions, D ln(L / 2 pi r) / (2 ln theta), is then
// log10(L / (2 pi r)).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/ops/rope.h"
#include "ref/ops/rope_frequencies.h"

namespace moeref {
namespace {

constexpr double kPi = std::numbers::pi;

struct FrequencyCase {
  std::string what;
  double theta;
  int64_t head_dim;
  RopeScaling scaling;
  int64_t max_position;
  std::vector<double> inv_freq;  // derived by hand below
  double attention_scaling;
};

// YaRN over L = 2000 positions, head_dim 8, theta 10^4, betas 32 and 1: pair d(32) =
// log10(2000 / 64 pi) = 0.998 rounds down to 0, d(1) = log10(2000 / 2 pi) = 2.503 up to 3, so
// ramp(i) = i / 3 and inv_freq'[i] = inv_freq[i] (ramp / factor + 1 - ramp).
std::vector<double> yarn_truncated(double factor) {
  std::vector<double> inv_freq;
  for (int i = 0; i < 4; ++i) {
    const double ramp = i / 3.0;
    inv_freq.push_back(std::pow(10.0, -i) * (ramp / factor + 1.0 - ramp));
  }
  return inv_freq;
}

// The same without rounding the ramp's ends: low = log10(2000 / 64 pi), high = log10(2000 / 2 pi).
std::vector<double> yarn_untruncated(double factor) {
  const double low = std::log10(2000.0 / (64.0 * kPi));
  const double high = std::log10(2000.0 / (2.0 * kPi));
  std::vector<double> inv_freq;
  for (int i = 0; i < 4; ++i) {
    const double ramp = std::min(1.0, std::max(0.0, (i - low) / (high - low)));
    inv_freq.push_back(std::pow(10.0, -i) * (ramp / factor + 1.0 - ramp));
  }
  return inv_freq;
}

std::vector<FrequencyCase> frequency_cases() {
  const RopeScaling yarn = {
      .kind = RopeScalingKind::kYarn, .factor = 4.0, .original_max_position_embeddings = 2000};
  RopeScaling yarn_attention = yarn;
  yarn_attention.attention_factor = 1.5;
  RopeScaling yarn_mscale = yarn;
  yarn_mscale.mscale = 1.0;
  yarn_mscale.mscale_all_dim = 0.5;
  RopeScaling yarn_one_mscale = yarn;  // only one of the two: the plain formula
  yarn_one_mscale.mscale = 2.0;
  RopeScaling yarn_untruncated_scaling = yarn;
  yarn_untruncated_scaling.truncate = false;
  const RopeScaling dynamic = {
      .kind = RopeScalingKind::kDynamic, .factor = 2.0, .original_max_position_embeddings = 10};
  // Llama 3.1 over L = 1000, factor 8, low 1, high 4: wavelengths 2 pi 10^i; 2 pi and 20 pi
  // are below L / 4 = 250 (kept), 2000 pi above L / 1 (divided by 8), and 200 pi in between:
  // s = (1000 / 200 pi - 1) / 3, inv_freq' = (1 - s) / 100 / 8 + s / 100.
  const double s = (1000.0 / (200.0 * kPi) - 1.0) / 3.0;
  const RopeScaling llama3 = {.kind = RopeScalingKind::kLlama3,
                              .factor = 8.0,
                              .original_max_position_embeddings = 1000,
                              .low_freq_factor = 1.0,
                              .high_freq_factor = 4.0};
  const double yarn_mscale_4 = 0.1 * std::log(4.0) + 1.0;
  return {
      {"default", 100.0, 4, {}, -1, {1.0, 0.1}, 1.0},
      {"default, head_dim 8", 1e4, 8, {}, 5, {1.0, 0.1, 0.01, 0.001}, 1.0},
      {"linear divides by the factor",
       100.0,
       4,
       {.kind = RopeScalingKind::kLinear, .factor = 4.0},
       -1,
       {0.25, 0.025},
       1.0},
      // theta' = 100 (2 s / 10 - 1)^(4 / 2) at s = max(largest position + 1, 10).
      {"dynamic below the context is unscaled", 100.0, 4, dynamic, 5, {1.0, 0.1}, 1.0},
      {"dynamic at the context is unscaled", 100.0, 4, dynamic, 9, {1.0, 0.1}, 1.0},
      {"dynamic past the context: theta 900", 100.0, 4, dynamic, 19, {1.0, 1.0 / 30.0}, 1.0},
      {"dynamic further: theta 100 * 7^2", 100.0, 4, dynamic, 39, {1.0, 1.0 / 70.0}, 1.0},
      {"yarn", 1e4, 8, yarn, -1, yarn_truncated(4.0), yarn_mscale_4},
      {"yarn's attention_factor", 1e4, 8, yarn_attention, -1, yarn_truncated(4.0), 1.5},
      {"yarn's mscale ratio", 1e4, 8, yarn_mscale, -1, yarn_truncated(4.0),
       yarn_mscale_4 / (0.05 * std::log(4.0) + 1.0)},
      {"yarn with one mscale", 1e4, 8, yarn_one_mscale, -1, yarn_truncated(4.0), yarn_mscale_4},
      {"yarn untruncated", 1e4, 8, yarn_untruncated_scaling, -1, yarn_untruncated(4.0),
       yarn_mscale_4},
      {"llama3", 1e4, 8, llama3, -1, {1.0, 0.1, (1.0 - s) / 800.0 + s / 100.0, 0.001 / 8.0}, 1.0},
  };
}

TEST(RopeFrequencies, EveryKindMatchesItsFormulaByHand) {
  for (const FrequencyCase& c : frequency_cases()) {
    SCOPED_TRACE(c.what);
    const ref::RopeFrequencies f =
        ref::rope_frequencies(c.theta, c.head_dim, c.scaling, c.max_position);
    ASSERT_EQ(f.inv_freq.size(), c.inv_freq.size());
    for (size_t i = 0; i < c.inv_freq.size(); ++i) {
      EXPECT_NEAR(f.inv_freq[i], c.inv_freq[i], 1e-14 * c.inv_freq[i]) << "pair " << i;
    }
    EXPECT_NEAR(f.attention_scaling, c.attention_scaling, 1e-15);
  }
}

// YaRN's ramp ends meet when beta_fast and beta_slow pick the same pair: transformers then moves
// the upper end by 0.001, so the pair past it is fully interpolated and the one at it kept.
TEST(RopeFrequencies, YarnRampWhoseEndsMeet) {
  // Untruncated with beta_fast = beta_slow = 4: low = high = d(4) = log10(2000 / 8 pi) = 1.90.
  const RopeScaling meet = {.kind = RopeScalingKind::kYarn,
                            .factor = 2.0,
                            .original_max_position_embeddings = 2000,
                            .beta_fast = 4.0,
                            .beta_slow = 4.0,
                            .truncate = false};
  const double d = std::log10(2000.0 / (8.0 * kPi));
  const ref::RopeFrequencies f = ref::rope_frequencies(1e4, 8, meet);
  for (int i = 0; i < 4; ++i) {
    const double ramp = std::min(1.0, std::max(0.0, (i - d) / 0.001));
    EXPECT_NEAR(f.inv_freq[i], std::pow(10.0, -i) * (ramp / 2.0 + 1.0 - ramp),
                1e-14 * std::pow(10.0, -i))
        << "pair " << i;
  }
  EXPECT_EQ(f.inv_freq[1], 0.1);         // below the ramp: kept
  EXPECT_EQ(f.inv_freq[2], 0.01 / 2.0);  // past it: interpolated
}

TEST(RopeFrequencies, RefusesWhatItCannotCompute) {
  EXPECT_THROW(ref::rope_frequencies(1e4, 3), std::invalid_argument);
  EXPECT_THROW(ref::rope_frequencies(1e4, 0), std::invalid_argument);
  EXPECT_THROW(ref::rope_frequencies(-1.0, 8), std::invalid_argument);
  EXPECT_THROW(ref::rope_frequencies(1e4, 2,
                                     {.kind = RopeScalingKind::kDynamic,
                                      .factor = 2.0,
                                      .original_max_position_embeddings = 8}),
               std::invalid_argument);
}

// The rotation multiplies cos and sin by the attention scaling: at position 0 every value is
// scaled by it, and at any position the norm of each pair is.
TEST(Rope, YarnScalesEveryPairByTheAttentionFactor) {
  const RopeScaling yarn = {.kind = RopeScalingKind::kYarn,
                            .factor = 4.0,
                            .original_max_position_embeddings = 2000,
                            .attention_factor = 1.5};
  std::vector<float> x = {0.5f, -1.0f, 2.0f, 0.25f, 1.0f, 3.0f, -0.5f, 4.0f};
  const std::vector<float> before = x;
  const std::vector<int64_t> at_zero = {0};
  ref::rope(x.data(), at_zero, 1, 8, 1e4, yarn);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], 1.5f * before[i]) << i;

  std::vector<float> y = before;
  const std::vector<int64_t> far = {12345};
  ref::rope(y.data(), far, 1, 8, 1e4, yarn);
  for (size_t i = 0; i < 4; ++i) {
    const double norm_before = std::hypot(before[i], before[i + 4]);
    EXPECT_NEAR(std::hypot(y[i], y[i + 4]), 1.5 * norm_before, 1e-6 * norm_before) << "pair " << i;
  }
}

// Dynamic scaling reads the call's largest position: the same token rotates differently when the
// call reaches further, and exactly as unscaled RoPE while the call stays within the context.
TEST(Rope, DynamicScalingFollowsTheCallsLargestPosition) {
  const RopeScaling dynamic = {
      .kind = RopeScalingKind::kDynamic, .factor = 2.0, .original_max_position_embeddings = 10};
  const std::vector<float> x = {1.0f, 0.5f, -0.25f, 2.0f};
  const auto rotated = [&](const std::vector<int64_t>& positions, const RopeScaling& scaling) {
    std::vector<float> y;
    for (size_t t = 0; t < positions.size(); ++t) y.insert(y.end(), x.begin(), x.end());
    ref::rope(y.data(), positions, 1, 4, 100.0, scaling);
    return std::vector<float>(y.begin(), y.begin() + 4);  // the first token's
  };
  EXPECT_EQ(rotated({3, 9}, dynamic), rotated({3, 9}, RopeScaling{}));
  EXPECT_NE(rotated({3, 19}, dynamic), rotated({3, 9}, dynamic));
  // At largest position 19 the base is 900 (see above): pair 1 turns 3 / 30 radians.
  const std::vector<float> y = rotated({3, 19}, dynamic);
  EXPECT_FLOAT_EQ(y[1], static_cast<float>(0.5 * std::cos(0.1) - 2.0 * std::sin(0.1)));
  EXPECT_FLOAT_EQ(y[3], static_cast<float>(2.0 * std::cos(0.1) + 0.5 * std::sin(0.1)));
}

}  // namespace
}  // namespace moeref
