// A backend author's tests, built against an installed moeref: a kernel's output against an op
// case, a model tensor against a model case, a whole candidate against its set, and the negative
// controls that must not match. MOEREF_GOLDEN_DIR is the package's installed golden sets.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "golden/compare.h"
#include "golden/golden_set.h"
#include "golden/matchers.h"
#include "ref/io/safetensors.h"
#include "ref/ops/norm.h"
#include "ref/tensor.h"

namespace {

using moeref::golden::Candidate;
using moeref::golden::CompareOptions;
using moeref::golden::GoldenSet;
using moeref::golden::MatchesGolden;
using moeref::golden::MatchesGoldenSet;
using moeref::golden::Precision;
using ::testing::HasSubstr;
using ::testing::Not;

const std::filesystem::path kGoldenDir = MOEREF_GOLDEN_DIR;
const std::string kRouterLogits = "prefill/layers.0.moe.router_logits";

// The golden values with one element moved far past any precision's tolerance.
std::vector<float> perturbed(std::vector<float> values) {
  values.at(3) += 1.0f + 2.0f * std::abs(values.at(3));
  return values;
}

TEST(ConsumerTest, RmsNormKernelMatchesOpCase) {
  const GoldenSet set = GoldenSet::open(kGoldenDir / "ops" / "rmsnorm-5x64");
  const auto& parameters = set.manifest().at("parameters");
  const int64_t rows = parameters.at("rows").get<int64_t>();
  const int64_t d = parameters.at("d").get<int64_t>();
  const double eps = parameters.at("eps").get<double>();
  const std::vector<float> x = set.inputs().at("x").to_f32();
  const std::vector<float> weight = set.inputs().at("weight").to_f32();

  moeref::Tensor out({rows, d});
  moeref::ref::rms_norm(x.data(), weight.data(), eps, out.data(), rows, d);

  EXPECT_THAT(out, MatchesGolden(set, "out"));
  EXPECT_THAT(perturbed(std::vector<float>(out.values().begin(), out.values().end())),
              Not(MatchesGolden(set, "out", Precision::kBF16)));
}

TEST(ConsumerTest, ModelTensorMatchesAndPerturbedDoesNot) {
  const GoldenSet set = GoldenSet::open(kGoldenDir / "tiny-mqa-moe");
  const std::vector<float> router_logits = set.expected_tensor(kRouterLogits).to_f32();

  EXPECT_THAT(router_logits, MatchesGolden(set, kRouterLogits, Precision::kBF16));
  EXPECT_THAT(std::span<const float>(router_logits), MatchesGolden(set, kRouterLogits));
  EXPECT_THAT(perturbed(router_logits), Not(MatchesGolden(set, kRouterLogits, Precision::kBF16)));
  // A tolerance the caller widens past the perturbation accepts it.
  CompareOptions wide;
  wide.atol = 1e3;
  EXPECT_THAT(perturbed(router_logits), MatchesGolden(set, kRouterLogits, wide));
}

TEST(ConsumerTest, FailureExplainsWithTheReport) {
  const GoldenSet set = GoldenSet::open(kGoldenDir / "tiny-mqa-moe");
  const std::vector<float> router_logits = set.expected_tensor(kRouterLogits).to_f32();

  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(::testing::ExplainMatchResult(MatchesGolden(set, kRouterLogits, Precision::kBF16),
                                             perturbed(router_logits), &listener));
  const std::string elements = std::to_string(router_logits.size());
  EXPECT_THAT(listener.str(), HasSubstr("FAIL: max abs error"));
  EXPECT_THAT(listener.str(), HasSubstr("1 of " + elements + " elements out of tolerance"));
  EXPECT_THAT(listener.str(), HasSubstr("(bf16, activation)"));

  ::testing::StringMatchResultListener too_short;
  EXPECT_FALSE(::testing::ExplainMatchResult(MatchesGolden(set, kRouterLogits),
                                             std::vector<float>(5), &too_short));
  EXPECT_EQ(too_short.str(), "FAIL: 5 values, expected " + elements);
}

TEST(ConsumerTest, CandidateMatchesSetAndPlantedBugIsFound) {
  const GoldenSet set = GoldenSet::open(kGoldenDir / "tiny-mqa-moe");
  Candidate candidate = moeref::golden::candidate_from_file(set.trace());
  EXPECT_THAT(candidate, MatchesGoldenSet(set));

  const moeref::TensorRecord& golden = set.expected_tensor(kRouterLogits);
  candidate[kRouterLogits] =
      moeref::make_f32_record(kRouterLogits, golden.shape, perturbed(golden.to_f32()));
  CompareOptions bf16;
  bf16.precision = Precision::kBF16;
  const auto matcher = MatchesGoldenSet(set, bf16);
  EXPECT_THAT(candidate, Not(matcher));

  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(matcher.MatchAndExplain(candidate, &listener));
  EXPECT_THAT(listener.str(), HasSubstr("first failing tensor: " + kRouterLogits));
}

}  // namespace
