// Sampling (ref/generation/sampling.h), the Philox generator behind it (ref/generation/philox.h)
// and generation (ref/generation/generate.h).
//
// Expected values come from published known answers (Random123's kat_vectors, the FNV test
// suite), from hand arithmetic written out in comments, or from small oracles in this file (a
// double-precision softmax, a hand generation loop); none is copied from the code under test.

#include "ref/generation/sampling.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/generation/generate.h"
#include "ref/generation/philox.h"
#include "ref/io/config.h"
#include "ref/model/model.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"

namespace moeref {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kSourceDir = MOEREF_SOURCE_DIR;

// The message of the std::invalid_argument that `action` throws ("" and a failure if none).
std::string invalid_argument_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "no std::invalid_argument thrown";
  return "";
}

// ------------------------------------------------------------------------------------------------
// Philox4x32-10 and the conversions built on it.

struct PhiloxCase {
  PhiloxCounter counter;
  PhiloxKey key;
  PhiloxCounter expected;
};

// Random123 kat_vectors, philox4x32 with 10 rounds (Salmon et al. 2011).
const PhiloxCase kPhiloxKnownAnswers[] = {
    {{0x00000000, 0x00000000, 0x00000000, 0x00000000},
     {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

TEST(Philox, MatchesRandom123KnownAnswers) {
  for (const PhiloxCase& c : kPhiloxKnownAnswers) {
    SCOPED_TRACE(::testing::Message()
                 << std::hex << "counter " << c.counter[0] << " key " << c.key[0]);
    EXPECT_EQ(philox4x32_10(c.counter, c.key), c.expected);
  }
}

TEST(Philox, KeyFromSeedIsLowWordThenHighWord) {
  EXPECT_EQ(philox_key_from_seed(0x0123456789abcdefULL), (PhiloxKey{0x89abcdef, 0x01234567}));
  EXPECT_EQ(philox_key_from_seed(0), (PhiloxKey{0, 0}));
  EXPECT_EQ(philox_key_from_seed(0xffffffffULL), (PhiloxKey{0xffffffff, 0}));
}

struct UniformCase {
  uint32_t bits;
  double expected;  // (bits >> 8) * 2^-24, worked out by hand
};

const UniformCase kUniformCases[] = {
    {0x00000000, 0.0},
    {0x000000ff, 0.0},                   // the low 8 bits are dropped
    {0x00000100, 0x1.0p-24},             // the smallest non-zero value
    {0x80000000, 0.5},                   // 0x800000 * 2^-24
    {0xffffffff, 1.0 - 0x1.0p-24},       // the largest: below 1, never 1
    {0x12345678, 0x123456 * 0x1.0p-24},  // top 24 bits 0x123456
    {0xc0000080, 0.75},                  // 0xc00000 * 2^-24; the 0x80 is dropped
};

TEST(Philox, UniformFromBitsIsExact) {
  for (const UniformCase& c : kUniformCases) {
    SCOPED_TRACE(::testing::Message() << std::hex << "bits 0x" << c.bits);
    EXPECT_EQ(static_cast<double>(uniform_from_bits(c.bits)), c.expected);
  }
}

// The 32-bit FNV-1a test vectors (Fowler, Noll, Vo; draft-eastlake-fnv).
TEST(Philox, Fnv1a32KnownValues) {
  EXPECT_EQ(fnv1a32(""), 0x811c9dc5u);
  EXPECT_EQ(fnv1a32("a"), 0xe40c292cu);
  EXPECT_EQ(fnv1a32("foobar"), 0xbf9cf968u);
}

// The uniform of one generation draw, computed here from philox4x32_10 with the documented
// layout: key = {seed low, seed high}, counter = {draw, position, request, stream}, word 0 only.
double hand_generation_uniform(uint64_t seed, uint32_t draw, uint32_t position, uint32_t request,
                               uint32_t stream) {
  const PhiloxCounter bits =
      philox4x32_10({draw, position, request, stream},
                    {static_cast<uint32_t>(seed & 0xffffffffu), static_cast<uint32_t>(seed >> 32)});
  return std::ldexp(static_cast<double>(bits[0] >> 8), -24);
}

TEST(Philox, GenerationUniformUsesTheDocumentedCounterLayout) {
  struct Case {
    uint64_t seed;
    uint32_t draw, position, request;
    RandomStream stream;
  };
  const Case cases[] = {
      {0, 0, 0, 0, RandomStream::kSampling},
      {1, 0, 0, 0, RandomStream::kSampling},
      {0x0123456789abcdefULL, 3, 17, 5, RandomStream::kSampling},
      {0xfedcba9876543210ULL, 0, 1000, 0, RandomStream::kSpeculativeAccept},
      {42, 7, 2, 9, RandomStream::kSpeculativeResidual},
      {0xffffffffffffffffULL, 0xffffffff, 0xffffffff, 0xffffffff, RandomStream::kSampling},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "seed " << c.seed << " draw " << c.draw << " position "
                                      << c.position << " request " << c.request);
    const float u = generation_uniform(c.seed, c.draw, c.position, c.request, c.stream);
    EXPECT_EQ(static_cast<double>(u), hand_generation_uniform(c.seed, c.draw, c.position, c.request,
                                                              static_cast<uint32_t>(c.stream)));
    EXPECT_GE(u, 0.0f);
    EXPECT_LT(u, 1.0f);
  }
  // The all-zero case in full: counter 0, key 0 gives word 0 = 0x6627e8d5 (first known answer),
  // so u = 0x6627e8 * 2^-24.
  EXPECT_EQ(static_cast<double>(generation_uniform(0, 0, 0, 0, RandomStream::kSampling)),
            0x6627e8 * 0x1.0p-24);
}

// ------------------------------------------------------------------------------------------------
// Greedy.

struct GreedyCase {
  std::vector<float> logits;
  int32_t expected;
};

const GreedyCase kGreedyCases[] = {
    {{0.5f}, 0},
    {{1.0f, 3.0f, 2.0f}, 1},
    {{-1.0f, -3.0f, -2.0f}, 0},
    {{5.0f, 5.0f, 1.0f}, 0},              // tie: lowest id
    {{1.0f, 5.0f, 5.0f}, 1},              // tie not at the start
    {{2.0f, 2.0f, 2.0f, 2.0f}, 0},        // all equal
    {{1.0f, 4.0f, 2.0f, 4.0f, 4.0f}, 1},  // three-way tie
    {{-std::numeric_limits<float>::infinity(), -1e30f}, 1},
    {{0.0f, 1e-30f, 0.0f}, 1},      // tiny differences still count
    {{3.0f, 2.0f, 3.0000002f}, 2},  // one ulp above 3
};

TEST(Greedy, ArgmaxWithTiesToTheLowestId) {
  for (const GreedyCase& c : kGreedyCases) {
    SCOPED_TRACE(::testing::PrintToString(c.logits));
    EXPECT_EQ(greedy_token(c.logits), c.expected);
  }
}

TEST(Greedy, EmptyLogitsThrow) {
  EXPECT_THROW(greedy_token(std::span<const float>()), std::invalid_argument);
}

TEST(Greedy, SampleTokenAtTemperatureZeroIsGreedy) {
  const std::vector<float> logits = {0.1f, 0.7f, 0.7f, -2.0f};
  for (uint32_t position = 0; position < 16; ++position) {
    EXPECT_EQ(sample_token(logits, SamplingParams{0.0, 0, 1.0, position}, position), 1);
  }
}

// ------------------------------------------------------------------------------------------------
// processed_distribution.

// Oracle: softmax of logit / temperature over all tokens, in double with max subtraction.
std::vector<double> hand_softmax(const std::vector<float>& logits, double temperature) {
  double max_z = -std::numeric_limits<double>::infinity();
  for (const float l : logits) max_z = std::max(max_z, static_cast<double>(l) / temperature);
  std::vector<double> p;
  double sum = 0.0;
  for (const float l : logits) {
    p.push_back(std::exp(static_cast<double>(l) / temperature - max_z));
    sum += p.back();
  }
  for (double& v : p) v /= sum;
  return p;
}

std::vector<int32_t> tokens_of(const std::vector<TokenProbability>& distribution) {
  std::vector<int32_t> tokens;
  for (const TokenProbability& t : distribution) tokens.push_back(t.token);
  return tokens;
}

SamplingParams params(double temperature, int64_t top_k = 0, double top_p = 1.0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  return p;
}

constexpr double kProbabilityTolerance = 1e-14;  // a few ulp of 1 in double

TEST(ProcessedDistribution, TemperatureScalesLogitsBeforeTheSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, 0.5f, -1.25f};
  for (const double temperature : {0.25, 0.7, 1.0, 1.5, 10.0}) {
    SCOPED_TRACE(temperature);
    const std::vector<double> expected = hand_softmax(logits, temperature);
    const std::vector<TokenProbability> got = processed_distribution(logits, params(temperature));
    ASSERT_EQ(got.size(), logits.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].token, static_cast<int32_t>(i));
      EXPECT_NEAR(got[i].probability, expected[i], kProbabilityTolerance);
    }
  }
}

// Two tokens whose logits differ by ln 4: p1 / p0 = exp(ln 4 / T) = 4^(1/T), so
// T = 2 gives 2 : 1, i.e. {1/3, 2/3}; T = 0.5 gives 16 : 1, i.e. {1/17, 16/17}.
TEST(ProcessedDistribution, TemperatureHandCase) {
  const std::vector<float> logits = {0.0f, static_cast<float>(std::log(4.0))};
  // The float rounding of ln 4 moves the probabilities by ~1e-8 at most.
  const std::vector<TokenProbability> t2 = processed_distribution(logits, params(2.0));
  EXPECT_NEAR(t2[0].probability, 1.0 / 3.0, 1e-7);
  EXPECT_NEAR(t2[1].probability, 2.0 / 3.0, 1e-7);
  const std::vector<TokenProbability> t05 = processed_distribution(logits, params(0.5));
  EXPECT_NEAR(t05[0].probability, 1.0 / 17.0, 1e-7);
  EXPECT_NEAR(t05[1].probability, 16.0 / 17.0, 1e-7);
}

struct FilterCase {
  const char* what;
  std::vector<float> logits;
  int64_t top_k;
  double top_p;
  std::vector<int32_t> kept;  // in token-id order
};

// Expected sets by hand. Probabilities quoted are at temperature 1.
const FilterCase kFilterCases[] = {
    {"top-k off", {1, 3, 3, 2, 3}, 0, 1.0, {0, 1, 2, 3, 4}},
    {"top-k = vocab", {1, 3, 3, 2, 3}, 5, 1.0, {0, 1, 2, 3, 4}},
    {"top-k > vocab", {1, 3, 3, 2, 3}, 9, 1.0, {0, 1, 2, 3, 4}},
    {"top-k 1 on a three-way tie keeps the lowest id", {1, 3, 3, 2, 3}, 1, 1.0, {1}},
    {"top-k 2 on a three-way tie keeps the two lowest ids", {1, 3, 3, 2, 3}, 2, 1.0, {1, 2}},
    {"top-k 3 keeps the whole tie", {1, 3, 3, 2, 3}, 3, 1.0, {1, 2, 4}},
    {"top-k 4 adds the next largest", {1, 3, 3, 2, 3}, 4, 1.0, {1, 2, 3, 4}},
    {"top-k on distinct logits", {0.5f, -1, 4, 2, 3}, 2, 1.0, {2, 4}},
    {"top-k all equal", {0, 0, 0, 0, 0, 0}, 3, 1.0, {0, 1, 2}},
    // Four equal logits: p = 0.25 each, exactly; cumulative 0.25, 0.5, 0.75, 1 exactly, so the
    // boundaries below are not subject to rounding. Ties rank the lower id first.
    {"top-p reaching 0.5 exactly keeps 2", {0, 0, 0, 0}, 0, 0.5, {0, 1}},
    {"top-p just above 0.5 keeps 3", {0, 0, 0, 0}, 0, 0.5000001, {0, 1, 2}},
    {"top-p 0.25 keeps 1", {0, 0, 0, 0}, 0, 0.25, {0}},
    {"top-p tiny keeps at least 1", {0, 0, 0, 0}, 0, 1e-9, {0}},
    {"top-p 0.75 keeps 3", {0, 0, 0, 0}, 0, 0.75, {0, 1, 2}},
    {"top-p 1 is off", {0, 0, 0, 0}, 0, 1.0, {0, 1, 2, 3}},
    // The ranking is by probability, not by id: the largest logit is token 2.
    {"top-p ranks by probability", {1, -2, 4, 0}, 0, 0.5, {2}},
};

TEST(ProcessedDistribution, TopKAndTopPKeepTheDocumentedSets) {
  for (const FilterCase& c : kFilterCases) {
    SCOPED_TRACE(c.what);
    const std::vector<TokenProbability> got =
        processed_distribution(c.logits, params(1.0, c.top_k, c.top_p));
    EXPECT_EQ(tokens_of(got), c.kept);
    // The kept tokens get the softmax over the kept tokens only: the full softmax renormalised.
    const std::vector<double> full = hand_softmax(c.logits, 1.0);
    double kept_mass = 0.0;
    for (const int32_t t : c.kept) kept_mass += full[static_cast<size_t>(t)];
    for (const TokenProbability& t : got) {
      EXPECT_NEAR(t.probability, full[static_cast<size_t>(t.token)] / kept_mass,
                  kProbabilityTolerance);
    }
  }
}

// Probabilities 0.5, 0.3, 0.2 from logits log(p) (float, so off by ~1e-8): top-p keeps the
// shortest prefix of the ranking (0.5, 0.3, 0.2) whose sum reaches p. Cumulative sums 0.5, 0.8, 1.
// The boundary 0.8 itself is left to the exact cases above, since 0.5 + 0.3 after rounding may
// land on either side of 0.8.
TEST(ProcessedDistribution, TopPHandCase) {
  // Listed out of rank order so that the ranking matters: token 0 has 0.2, token 1 0.5, token 2
  // 0.3.
  const std::vector<float> logits = {static_cast<float>(std::log(0.2)),
                                     static_cast<float>(std::log(0.5)),
                                     static_cast<float>(std::log(0.3))};
  struct Case {
    double top_p;
    std::vector<int32_t> kept;
    std::vector<double> probabilities;  // renormalised over the kept set, by hand
  };
  const Case cases[] = {
      {0.3, {1}, {1.0}},
      {0.5 - 1e-6, {1}, {1.0}},
      {0.75, {1, 2}, {0.5 / 0.8, 0.3 / 0.8}},
      {0.79, {1, 2}, {0.5 / 0.8, 0.3 / 0.8}},
      {0.81, {0, 1, 2}, {0.2, 0.5, 0.3}},
      {0.99, {0, 1, 2}, {0.2, 0.5, 0.3}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.top_p);
    const std::vector<TokenProbability> got =
        processed_distribution(logits, params(1.0, 0, c.top_p));
    ASSERT_EQ(tokens_of(got), c.kept);
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i].probability, c.probabilities[i], 1e-7);
    }
  }
}

// Probabilities 0.4, 0.3, 0.2, 0.1 (logits log p), top_k 2, top_p 0.55.
// Top-k first (the documented order): {0.4, 0.3} renormalised to {4/7, 3/7}; 4/7 = 0.571 reaches
// 0.55, so only token 0 is left, with probability 1.
// Top-p first would keep {0.4, 0.3} (0.4 < 0.55 <= 0.7) and top-k 2 would keep both.
TEST(ProcessedDistribution, TopKIsAppliedBeforeTopP) {
  const std::vector<float> logits = {
      static_cast<float>(std::log(0.4)), static_cast<float>(std::log(0.3)),
      static_cast<float>(std::log(0.2)), static_cast<float>(std::log(0.1))};
  const std::vector<TokenProbability> got = processed_distribution(logits, params(1.0, 2, 0.55));
  ASSERT_EQ(tokens_of(got), std::vector<int32_t>{0});
  EXPECT_EQ(got[0].probability, 1.0);
  // Sanity of the hand case: with top_k off the same top_p keeps two tokens.
  EXPECT_EQ(tokens_of(processed_distribution(logits, params(1.0, 0, 0.55))),
            (std::vector<int32_t>{0, 1}));
}

TEST(ProcessedDistribution, ResultIsInTokenIdOrderAndSumsToOne) {
  // A fixed pseudo-random row of 50 logits (a simple LCG, independent of the code under test).
  std::vector<float> logits;
  uint32_t state = 12345;
  for (int i = 0; i < 50; ++i) {
    state = state * 1664525u + 1013904223u;
    logits.push_back(static_cast<float>(state >> 8) * 0x1.0p-24f * 8.0f - 4.0f);
  }
  for (const int64_t top_k : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{50}}) {
    for (const double top_p : {0.1, 0.6, 0.95, 1.0}) {
      for (const double temperature : {0.3, 1.0, 2.5}) {
        SCOPED_TRACE(::testing::Message()
                     << "top_k " << top_k << " top_p " << top_p << " T " << temperature);
        const std::vector<TokenProbability> got =
            processed_distribution(logits, params(temperature, top_k, top_p));
        ASSERT_FALSE(got.empty());
        if (top_k > 0) {
          EXPECT_LE(got.size(), static_cast<size_t>(top_k));
        }
        double sum = 0.0;
        for (size_t i = 0; i < got.size(); ++i) {
          if (i > 0) {
            EXPECT_LT(got[i - 1].token, got[i].token);
          }
          EXPECT_GT(got[i].probability, 0.0);
          sum += got[i].probability;
        }
        EXPECT_NEAR(sum, 1.0, 1e-12);
        // Every kept token is at least as likely as every dropped one.
        const std::vector<double> full = hand_softmax(logits, temperature);
        double min_kept = 1.0;
        for (const TokenProbability& t : got) {
          min_kept = std::min(min_kept, full[static_cast<size_t>(t.token)]);
        }
        const std::vector<int32_t> kept = tokens_of(got);
        for (size_t i = 0; i < full.size(); ++i) {
          if (!std::binary_search(kept.begin(), kept.end(), static_cast<int32_t>(i))) {
            EXPECT_LE(full[i], min_kept);
          }
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// draw_token: the inverse CDF in token-id order.

TEST(DrawToken, InverseCdfHandCases) {
  // Cumulative: token 2 -> 0.25, token 5 -> 0.75, token 7 -> 1 (all exact in binary).
  const std::vector<TokenProbability> d = {{2, 0.25}, {5, 0.5}, {7, 0.25}};
  struct Case {
    double u;
    int32_t expected;
  };
  const Case cases[] = {
      {0.0, 2},
      {0.1, 2},
      {std::nextafter(0.25, 0.0), 2},  // just below the first boundary
      {0.25, 5},                       // on the boundary: the cumulative sum must exceed u
      {0.5, 5},
      {std::nextafter(0.75, 0.0), 5},
      {0.75, 7},
      {std::nextafter(1.0, 0.0), 7},
      {1.0, 7},  // past the total: the last token
      {1.5, 7},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.u);
    EXPECT_EQ(draw_token(d, c.u), c.expected);
  }
}

TEST(DrawToken, RoundingShortfallGoesToTheLastToken) {
  // Probabilities that sum to 0.9 (as after rounding): u in [0.9, 1) falls past the total.
  const std::vector<TokenProbability> d = {{0, 0.3}, {1, 0.6}};
  EXPECT_EQ(draw_token(d, 0.95), 1);
  EXPECT_EQ(draw_token(d, 0.29), 0);
  // A single token takes every u.
  EXPECT_EQ(draw_token({{9, 1.0}}, 0.0), 9);
  EXPECT_EQ(draw_token({{9, 1.0}}, 0.999999), 9);
}

// ------------------------------------------------------------------------------------------------
// sample_token.

TEST(SampleToken, IsDrawTokenOfTheDocumentedUniform) {
  const std::vector<float> logits = {0.3f, -0.2f, 1.1f, 0.0f, 0.9f, -1.5f, 0.4f, 0.2f};
  const SamplingParams p = [] {
    SamplingParams s = params(0.8, 6, 0.9);
    s.seed = 0xdeadbeef12345678ULL;
    return s;
  }();
  const std::vector<TokenProbability> distribution = processed_distribution(logits, p);
  for (uint32_t position = 0; position < 200; ++position) {
    for (const uint32_t request : {0u, 3u}) {
      for (const uint32_t draw : {0u, 1u}) {
        const double u = hand_generation_uniform(p.seed, draw, position, request, 0);
        EXPECT_EQ(sample_token(logits, p, position, request, draw), draw_token(distribution, u))
            << "position " << position << " request " << request << " draw " << draw;
      }
    }
  }
}

TEST(SampleToken, ReproducibleAndVaryingWithSeedPositionRequestDraw) {
  const std::vector<float> logits(8, 0.0f);  // uniform over 8 tokens
  SamplingParams p = params(1.0);
  p.seed = 7;
  SamplingParams other_seed = p;
  other_seed.seed = 8;
  int differ_seed = 0, differ_position = 0, differ_request = 0, differ_draw = 0;
  for (uint32_t position = 0; position < 64; ++position) {
    const int32_t token = sample_token(logits, p, position, 0, 0);
    EXPECT_EQ(sample_token(logits, p, position, 0, 0), token);  // reproducible
    differ_seed += sample_token(logits, other_seed, position, 0, 0) != token;
    differ_position += sample_token(logits, p, position + 1000, 0, 0) != token;
    differ_request += sample_token(logits, p, position, 1, 0) != token;
    differ_draw += sample_token(logits, p, position, 0, 1) != token;
  }
  // Independent uniform draws over 8 tokens agree 1/8 of the time: ~56 of 64 differ. Requiring
  // more than 32 only fails if a counter word is ignored.
  EXPECT_GT(differ_seed, 32);
  EXPECT_GT(differ_position, 32);
  EXPECT_GT(differ_request, 32);
  EXPECT_GT(differ_draw, 32);
}

// Pearson's chi-square of observed counts against a distribution over the same tokens; a count
// outside the distribution makes it infinite.
double chi_square(const std::map<int32_t, int64_t>& counts,
                  const std::vector<TokenProbability>& distribution, int64_t n) {
  double chi2 = 0.0;
  int64_t covered = 0;
  for (const TokenProbability& t : distribution) {
    const auto it = counts.find(t.token);
    const double observed = it == counts.end() ? 0.0 : static_cast<double>(it->second);
    const double expected = t.probability * static_cast<double>(n);
    chi2 += (observed - expected) * (observed - expected) / expected;
    covered += static_cast<int64_t>(observed);
  }
  return covered == n ? chi2 : std::numeric_limits<double>::infinity();
}

// Upper 0.1% points of chi-square (standard tables): df 4 -> 18.47, df 7 -> 24.32.
double chi_square_limit(size_t categories) {
  switch (categories) {
    case 5:
      return 18.47;
    case 8:
      return 24.32;
    default:
      ADD_FAILURE() << "no table entry for " << categories << " categories";
      return 0.0;
  }
}

std::map<int32_t, int64_t> sample_counts(const std::vector<float>& logits, const SamplingParams& p,
                                         int64_t n) {
  std::map<int32_t, int64_t> counts;
  for (int64_t i = 0; i < n; ++i) ++counts[sample_token(logits, p, static_cast<uint32_t>(i))];
  return counts;
}

// Many positions under one seed (deterministic) against the processed distribution, which is
// itself checked against the double oracle; then the same statistic against a deliberately
// wrong distribution, which must fail (the negative control).
TEST(SampleToken, EmpiricalFrequenciesMatchTheProcessedDistribution) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, 0.0f, -0.5f, 1.5f, -1.0f, 0.25f};
  const int64_t n = 40000;
  SamplingParams p = params(0.9);
  p.seed = 20240601;

  const std::vector<double> oracle = hand_softmax(logits, 0.9);
  std::vector<TokenProbability> expected;
  for (size_t i = 0; i < oracle.size(); ++i)
    expected.push_back({static_cast<int32_t>(i), oracle[i]});
  const std::map<int32_t, int64_t> counts = sample_counts(logits, p, n);
  const double limit = chi_square_limit(expected.size());
  EXPECT_LT(chi_square(counts, expected, n), limit);

  // Negative controls: temperature 1 instead of 0.9, and two tokens' probabilities swapped.
  const std::vector<double> hotter = hand_softmax(logits, 1.0);
  std::vector<TokenProbability> wrong_temperature, swapped = expected;
  for (size_t i = 0; i < hotter.size(); ++i) {
    wrong_temperature.push_back({static_cast<int32_t>(i), hotter[i]});
  }
  std::swap(swapped[1].probability, swapped[5].probability);
  EXPECT_GT(chi_square(counts, wrong_temperature, n), limit);
  EXPECT_GT(chi_square(counts, swapped, n), limit);
}

TEST(SampleToken, EmpiricalFrequenciesWithTopKAndTopP) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, 0.0f, -0.5f, 1.5f, -1.0f, 0.25f};
  const int64_t n = 40000;
  SamplingParams p = params(1.0, 6, 0.9);
  p.seed = 99;
  // By hand from the full softmax at T = 1 (ranking 0, 5, 1, 2, 7, 3, 6, 4): top-k 6 drops tokens
  // 6 and 4 (exp: 7.39, 4.48, 2.72, 1.65, 1.28, 1.00 left, sum 18.52); over the six left the
  // cumulative ranking masses are 0.40, 0.64, 0.79, 0.88, 0.95, 1, so top-p 0.9 keeps five:
  // {0, 1, 2, 5, 7}.
  const std::vector<double> full = hand_softmax(logits, 1.0);
  const std::vector<int32_t> kept = {0, 1, 2, 5, 7};
  double mass = 0.0;
  for (const int32_t t : kept) mass += full[static_cast<size_t>(t)];
  std::vector<TokenProbability> expected;
  for (const int32_t t : kept) expected.push_back({t, full[static_cast<size_t>(t)] / mass});
  ASSERT_EQ(tokens_of(processed_distribution(logits, p)), kept);

  const std::map<int32_t, int64_t> counts = sample_counts(logits, p, n);
  const double limit = chi_square_limit(expected.size());
  EXPECT_LT(chi_square(counts, expected, n), limit);
  // Negative control: the unfiltered distribution's mass on the kept tokens, not renormalised
  // to the filtered set (i.e. forgetting step 5), must be rejected.
  std::vector<TokenProbability> unrenormalised;
  for (const int32_t t : kept) unrenormalised.push_back({t, full[static_cast<size_t>(t)]});
  EXPECT_GT(chi_square(counts, unrenormalised, n), limit);
}

// ------------------------------------------------------------------------------------------------
// validate.

TEST(Validate, AcceptsValidParameters) {
  for (const SamplingParams& p :
       {params(0.0), params(1.0, 5, 0.5), params(0.01, 0, 1.0), params(100.0, 1, 1e-9)}) {
    EXPECT_NO_THROW(validate(p));
  }
}

TEST(Validate, RejectsEachBadParameterNamingIt) {
  struct Case {
    SamplingParams p;
    const char* parameter;
    const char* value;  // how the value starts in the message
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const Case cases[] = {
      {params(-1.0), "temperature", "-1"},   {params(-1e-9), "temperature", "-0"},
      {params(nan), "temperature", "nan"},   {params(inf), "temperature", "inf"},
      {params(1.0, -1), "top_k", "-1"},      {params(1.0, -7), "top_k", "-7"},
      {params(1.0, 0, 0.0), "top_p", "0"},   {params(1.0, 0, -0.5), "top_p", "-0.5"},
      {params(1.0, 0, 1.5), "top_p", "1.5"}, {params(1.0, 0, nan), "top_p", "nan"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.parameter);
    const std::string message = invalid_argument_message([&] { validate(c.p); });
    EXPECT_THAT(message, HasSubstr(c.parameter));
    EXPECT_THAT(message, HasSubstr(c.value));
  }
}

// ------------------------------------------------------------------------------------------------
// generate() on the tiny preset.

class GenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    config_ = new ModelConfig(load_config(kSourceDir / "configs/tiny.json"));
    weights_ = new ModelWeights(init_weights(*config_));
  }
  static void TearDownTestSuite() {
    delete config_;
    delete weights_;
  }
  static Model model(const ModelConfig& config) { return Model(config, *weights_); }

  static ModelConfig* config_;
  static ModelWeights* weights_;
};

ModelConfig* GenerateTest::config_ = nullptr;
ModelWeights* GenerateTest::weights_ = nullptr;

// The hand loop: prefill, then one forward call per token, choosing each token with `choose`
// from the last row of logits and the position the token will occupy.
std::vector<int32_t> hand_generation(
    const Model& model, const std::vector<int32_t>& prompt, int64_t n,
    const std::function<int32_t(std::span<const float>, uint32_t)>& choose) {
  KvCache cache = model.new_cache();
  Tensor logits = model.forward(prompt, cache).logits;
  std::vector<int32_t> tokens;
  uint32_t position = static_cast<uint32_t>(prompt.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t vocab = logits.dim(1);
    const std::span<const float> last(logits.row(logits.dim(0) - 1), static_cast<size_t>(vocab));
    const int32_t token = choose(last, position);
    tokens.push_back(token);
    logits = model.forward(std::vector<int32_t>{token}, cache).logits;
    ++position;
  }
  return tokens;
}

TEST_F(GenerateTest, GreedyEqualsAHandLoopAndIsReproducible) {
  const Model m = model(*config_);
  GenerationRequest request;
  request.prompt = {1, 2, 3, 200, 17};
  request.max_new_tokens = 12;
  const GenerationResult first = generate(m, request);
  const GenerationResult second = generate(m, request);
  EXPECT_EQ(first.tokens, second.tokens);
  EXPECT_FALSE(first.stopped_at_eos);
  EXPECT_EQ(first.tokens, hand_generation(m, request.prompt, 12, [](auto logits, uint32_t) {
              return greedy_token(logits);
            }));
}

TEST_F(GenerateTest, SampledEqualsAHandLoopAtTheTokensPositions) {
  const Model m = model(*config_);
  GenerationRequest request;
  request.prompt = {5, 6, 7};
  request.max_new_tokens = 10;
  request.request_id = 4;
  request.sampling = params(1.0, 40, 0.95);
  request.sampling.seed = 1234;
  const GenerationResult got = generate(m, request);
  const SamplingParams p = request.sampling;
  // Position = the index the new token takes in the sequence: 3 for the first one.
  EXPECT_EQ(got.tokens, hand_generation(m, request.prompt, 10, [&](auto logits, uint32_t position) {
              return draw_token(processed_distribution(logits, p),
                                hand_generation_uniform(p.seed, 0, position, 4, 0));
            }));
}

TEST_F(GenerateTest, SampledIsReproducibleFromTheSeedAndDependsOnIt) {
  const Model m = model(*config_);
  GenerationRequest request;
  request.prompt = {10, 20, 30};
  request.max_new_tokens = 16;
  request.sampling = params(1.0);
  request.sampling.seed = 1;
  const std::vector<int32_t> a = generate(m, request).tokens;
  EXPECT_EQ(generate(m, request).tokens, a);
  EXPECT_EQ(a.size(), 16u);
  request.sampling.seed = 2;
  const std::vector<int32_t> b = generate(m, request).tokens;
  EXPECT_EQ(b.size(), 16u);
  EXPECT_NE(a, b);
  request.sampling.seed = 1;
  request.request_id = 1;
  EXPECT_NE(generate(m, request).tokens, a);
}

TEST_F(GenerateTest, StopsRightAfterTheEosToken) {
  GenerationRequest request;
  request.prompt = {1, 2, 3};
  request.max_new_tokens = 8;
  const int32_t first = generate(model(*config_), request).tokens.at(0);

  ModelConfig with_eos = *config_;
  with_eos.eos_token_id = first;
  const GenerationResult got = generate(model(with_eos), request);
  EXPECT_EQ(got.tokens, std::vector<int32_t>{first});
  EXPECT_TRUE(got.stopped_at_eos);
}

TEST_F(GenerateTest, MaxNewTokensZeroAndExactlyFillingTheContext) {
  const Model m = model(*config_);
  GenerationRequest request;
  request.prompt = {1};
  request.max_new_tokens = 0;
  EXPECT_TRUE(generate(m, request).tokens.empty());
  // 120 + 8 = 128 = max_seq_len: allowed.
  request.prompt.assign(120, 65);
  request.max_new_tokens = 8;
  EXPECT_EQ(generate(m, request).tokens.size(), 8u);
}

// ref/generation/generate.h: the prefill is traced under "prefill/", the i-th decode call (feeding
// back generated token i) under "decode.i/"; the last token is never fed back, so 3 new tokens give
// decode.0 and decode.1 only. The traced logits are those of the hand loop's calls.
TEST_F(GenerateTest, TraceNamesEachCallAndHoldsItsLogits) {
  const Model m = model(*config_);
  GenerationRequest request;
  request.prompt = {11, 12, 13, 14};
  request.max_new_tokens = 3;
  TraceRecorder recorder;
  const std::vector<int32_t> tokens = generate(m, request, &recorder).tokens;
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_TRUE(recorder.contains("prefill/logits"));
  EXPECT_TRUE(recorder.contains("decode.0/logits"));
  EXPECT_TRUE(recorder.contains("decode.1/logits"));
  EXPECT_FALSE(recorder.contains("decode.2/logits"));
  EXPECT_FALSE(recorder.contains("logits"));

  KvCache cache = m.new_cache();
  std::vector<Tensor> expected = {m.forward(request.prompt, cache).logits};
  expected.push_back(m.forward(std::vector<int32_t>{tokens[0]}, cache).logits);
  expected.push_back(m.forward(std::vector<int32_t>{tokens[1]}, cache).logits);
  const char* names[] = {"prefill/logits", "decode.0/logits", "decode.1/logits"};
  for (size_t i = 0; i < 3; ++i) {
    const TensorRecord& record = recorder.at(names[i]);
    EXPECT_EQ(record.shape, expected[i].shape()) << names[i];
    const std::vector<float> values = record.to_f32();
    EXPECT_TRUE(std::equal(values.begin(), values.end(), expected[i].values().begin(),
                           expected[i].values().end()))
        << names[i];
  }
}

TEST_F(GenerateTest, RejectsBadRequestsNamingTheNumbers) {
  const Model m = model(*config_);
  GenerationRequest empty;
  empty.max_new_tokens = 4;
  EXPECT_THAT(invalid_argument_message([&] { generate(m, empty); }), HasSubstr("empty"));

  GenerationRequest too_long;
  too_long.prompt.assign(100, 1);
  too_long.max_new_tokens = 29;  // 100 + 29 = 129 > 128
  const std::string long_message = invalid_argument_message([&] { generate(m, too_long); });
  EXPECT_THAT(long_message, HasSubstr("100"));
  EXPECT_THAT(long_message, HasSubstr("29"));
  EXPECT_THAT(long_message, HasSubstr("128"));

  GenerationRequest out_of_vocab;
  out_of_vocab.prompt = {1, 256, 3};
  const std::string vocab_message = invalid_argument_message([&] { generate(m, out_of_vocab); });
  EXPECT_THAT(vocab_message, HasSubstr("token 256"));
  EXPECT_THAT(vocab_message, HasSubstr("index 1"));
  EXPECT_THAT(vocab_message, HasSubstr("256 tokens"));

  GenerationRequest negative;
  negative.prompt = {-1};
  EXPECT_THAT(invalid_argument_message([&] { generate(m, negative); }), HasSubstr("-1"));

  GenerationRequest bad_sampling;
  bad_sampling.prompt = {1};
  bad_sampling.sampling.top_p = 0.0;
  EXPECT_THAT(invalid_argument_message([&] { generate(m, bad_sampling); }), HasSubstr("top_p"));
}

}  // namespace
}  // namespace moeref
