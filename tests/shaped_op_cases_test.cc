// Op cases at the caller's shapes (golden/shaped_op_cases.h): a table of ops at odd shapes, each
// written, verified by regeneration, passed by the reference and failed by a perturbed candidate;
// the margin search, checked on the stored inputs; refusals that name the decision or the shape
// parameter; and the CLI's `golden --op`.
#include "golden/shaped_op_cases.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "golden/candidate_runner.h"
#include "golden/compare.h"
#include "golden/golden_set.h"
#include "golden/resolution.h"
#include "golden/verify.h"
#include "tests/cli_runner.h"
#include "tests/test_support.h"

namespace moeref::golden {
namespace {

using nlohmann::json;
using test_support::TempDir;
using ::testing::HasSubstr;

struct ShapeCase {
  const char* op;
  json shape;
};

std::vector<ShapeCase> shape_cases() {
  return {
      {"matmul", {{"rows", 3}, {"in", 17}, {"out", 5}}},
      {"rms_norm", {{"rows", 2}, {"d", 13}}},
      {"layer_norm", {{"rows", 3}, {"d", 7}}},
      {"rope", {{"tokens", 5}, {"n_heads", 3}, {"head_dim", 10}, {"max_position", 5000}}},
      {"softmax", {{"rows", 3}, {"n", 19}}},
      {"attention",
       {{"new_tokens", 3},
        {"n_heads", 6},
        {"n_kv_heads", 3},
        {"head_dim", 12},
        {"cached_positions", 7}}},
      {"cross_attention",
       {{"queries", 2}, {"n_heads", 3}, {"n_kv_heads", 1}, {"head_dim", 6}, {"vision_tokens", 11}}},
      {"top_k", {{"tokens", 9}, {"n_experts", 6}, {"k", 3}, {"renormalize", 0}}},
      {"expert_ffn", {{"rows", 3}, {"d_model", 9}, {"d_ff", 13}, {"activation", "gelu"}}},
      {"moe",
       {{"tokens", 7},
        {"d_model", 12},
        {"n_experts", 5},
        {"expert_d_ff", 10},
        {"top_k", 2},
        {"capacity_factor", 0.75}}},
      {"sampling",
       {{"positions", 5}, {"vocab_size", 23}, {"temperature", 0.9}, {"top_k", 7}, {"top_p", 0.8}}},
      {"greedy", {{"rows", 4}, {"vocab_size", 29}}},
  };
}

TEST(ShapedOpCases, TheTableCoversEveryOp) {
  std::vector<std::string> ops;
  for (const ShapeCase& c : shape_cases()) ops.emplace_back(c.op);
  EXPECT_EQ(ops, shaped_op_names());
}

TEST(ShapedOpCases, EachCaseVerifiesAndTheCheckerPassesTheReferenceOnly) {
  const TempDir dir;
  for (const ShapeCase& c : shape_cases()) {
    SCOPED_TRACE(c.op);
    const std::filesystem::path set_dir = dir.path() / c.op;
    write_shaped_op_case({.op = c.op, .shape = c.shape}, set_dir);
    const GoldenSet set = GoldenSet::open(set_dir);
    EXPECT_EQ(set.manifest().at("op"), c.op);
    for (const auto& [key, value] : c.shape.items()) {
      EXPECT_EQ(set.manifest().at("generator").at("shape").at(key), value) << key;
    }
    const std::vector<VerifyResult> verified = verify_golden_tree(set_dir);
    ASSERT_EQ(verified.size(), 1u);
    EXPECT_TRUE(verified[0].ok) << verified[0].message;

    Candidate candidate = run_case(set, ref_kernels());
    EXPECT_TRUE(compare(set, candidate).passed);
    // The first output off: a float scaled by 1.05, or else a token moved to another id.
    const std::string first = set.expected().front().name;
    TensorRecord& changed = candidate.at(first);
    if (changed.dtype == DType::kF32) {
      std::vector<float> values = changed.to_f32();
      for (float& v : values) v *= 1.05f;
      changed = make_f32_record(first, changed.shape, values);
    } else {
      std::vector<int32_t> values = changed.to_i32();
      values[0] = values[0] == 0 ? 1 : 0;
      changed = make_i32_record(first, changed.shape, values);
    }
    const CompareReport report = compare(set, candidate);
    EXPECT_FALSE(report.passed);
    EXPECT_EQ(report.first_failure, first);
  }
}

TEST(ShapedOpCases, TheSameRequestGivesTheSameBitsAndAnotherSeedOthers) {
  const OpCaseRequest request{.op = "matmul", .shape = {{"rows", 2}, {"in", 3}, {"out", 4}}};
  const OpCase a = build_shaped_op_case(request);
  const OpCase b = build_shaped_op_case(request);
  EXPECT_TRUE(a.inputs[0].bytes == b.inputs[0].bytes);
  EXPECT_TRUE(a.outputs[0].bytes == b.outputs[0].bytes);
  OpCaseRequest other = request;
  other.seed = request.seed + 1;
  EXPECT_FALSE(build_shaped_op_case(other).inputs[0].bytes == a.inputs[0].bytes);
  EXPECT_EQ(a.manifest.at("case"), "matmul-rows2-in3-out4");
}

// The smallest gap between neighbours among the k + 1 largest of any row, sorted here.
double smallest_gap(std::vector<float> values, int64_t width, int64_t k) {
  double smallest = 1e300;
  for (size_t row = 0; row < values.size(); row += static_cast<size_t>(width)) {
    std::vector<double> sorted(values.begin() + static_cast<std::ptrdiff_t>(row),
                               values.begin() + static_cast<std::ptrdiff_t>(row) + width);
    std::sort(sorted.rbegin(), sorted.rend());
    for (int64_t j = 0; j < k && j + 1 < width; ++j) {
      smallest = std::min(smallest, sorted[j] - sorted[j + 1]);
    }
  }
  return smallest;
}

TEST(ShapedOpCases, TheSearchFindsASeedWhoseDecisionsClearTheMargin) {
  const OpCaseRequest request{.op = "top_k",
                              .shape = {{"tokens", 6}, {"n_experts", 5}, {"k", 2}},
                              .seed = 7,
                              .margin = 0.02};
  const OpCase c = build_shaped_op_case(request);
  const TensorRecord& probs = c.inputs.front();
  ASSERT_EQ(probs.name, "probs");
  EXPECT_GT(smallest_gap(probs.to_f32(), 5, 2), 0.02);
  // The first seed does not reach it: the search moved on.
  EXPECT_GT(c.manifest.at("generator").at("seed").get<uint32_t>(), 7u);
  OpCaseRequest first_seed = request;
  first_seed.seed = c.manifest.at("generator").at("seed").get<uint32_t>();
  first_seed.tries = 1;
  EXPECT_TRUE(build_shaped_op_case(first_seed).inputs.front().bytes == probs.bytes);
}

std::string error_of(const std::function<void()>& run) {
  try {
    run();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

TEST(ShapedOpCases, AnUnreachableMarginIsRefusedNamingTheDecision) {
  const std::string message = error_of([] {
    build_shaped_op_case({.op = "top_k",
                          .shape = {{"tokens", 16}, {"n_experts", 64}, {"k", 8}},
                          .seed = 0,
                          .margin = 0.05,
                          .tries = 5});
  });
  EXPECT_THAT(message, HasSubstr("none of the 5 seeds from 0"));
  EXPECT_THAT(message, HasSubstr("\"indices row "));
}

TEST(ShapedOpCases, AnUnresolvableRequestIsRefusedAndWritesNothing) {
  const TempDir dir;
  const std::string message = error_of([&] {
    write_shaped_op_case({.op = "greedy",
                          .shape = {{"rows", 8}, {"vocab_size", 64}},
                          .margin = 0.0,
                          .resolved_at = Precision::kFP16,
                          .tries = 2},
                         dir.path() / "case");
  });
  EXPECT_THAT(message, HasSubstr("resolves every decision at fp16"));
  EXPECT_THAT(message, HasSubstr("tokens row "));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "case"));
}

// With resolved_at, the written case's decisions are all above their resolution; the committed tie
// case's are not (golden/resolution.h on op sets).
TEST(ShapedOpCases, AResolvedCaseHasEveryDecisionResolved) {
  const TempDir dir;
  write_shaped_op_case({.op = "top_k",
                        .shape = {{"tokens", 5}, {"n_experts", 4}, {"k", 2}},
                        .resolved_at = Precision::kBF16},
                       dir.path() / "case");
  const GoldenSet set = GoldenSet::open(dir.path() / "case");
  EXPECT_EQ(set.manifest().at("margins").at("resolved_at"), "bf16");
  const std::vector<DecisionResolution> decisions = decision_resolutions(set, Precision::kBF16);
  ASSERT_EQ(decisions.size(), 5u);
  for (const DecisionResolution& d : decisions) {
    EXPECT_TRUE(d.resolved()) << d.decision << ": margin " << d.margin << ", resolution "
                              << d.resolution;
  }
  EXPECT_EQ(decisions[4].decision, "indices row 4");

  const GoldenSet ties = GoldenSet::open(std::filesystem::path(MOEREF_SOURCE_DIR) /
                                         "golden/sets/ops/router-topk-ties-k2");
  const std::vector<DecisionResolution> tie_decisions =
      decision_resolutions(ties, Precision::kFP32);
  const DecisionResolution* least = least_resolved(tie_decisions);
  ASSERT_NE(least, nullptr);
  EXPECT_FALSE(least->resolved());
  EXPECT_EQ(least->margin, 0.0);
}

TEST(ShapedOpCases, BadRequestsAreRefusedNamingTheField) {
  struct Bad {
    const char* op;
    json shape;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {"convolution", {{"rows", 1}}, "op \"convolution\" has no generated cases (one of matmul"},
      {"matmul", {{"rows", 3}, {"in", 4}}, "shape \"out\" of op matmul is missing"},
      {"matmul",
       {{"rows", -3}, {"in", 4}, {"out", 2}},
       "shape \"rows\" of op matmul must be an integer >= 1, got -3"},
      {"matmul",
       {{"rows", "3"}, {"in", 4}, {"out", 2}},
       "shape \"rows\" of op matmul must be an integer >= 1, got \"3\""},
      {"matmul",
       {{"rows", 1}, {"in", 4}, {"out", 2}, {"cols", 2}},
       "shape \"cols\" of op matmul is not a parameter of the op (rows, in, out)"},
      {"attention",
       {{"new_tokens", 1},
        {"n_heads", 4},
        {"n_kv_heads", 3},
        {"head_dim", 8},
        {"cached_positions", 0}},
       "shape \"n_kv_heads\" of op attention must divide n_heads (4), got 3"},
      {"moe",
       {{"tokens", 1}, {"d_model", 2}, {"n_experts", 2}, {"expert_d_ff", 2}, {"top_k", 3}},
       "shape \"top_k\" of op moe must be at most n_experts (2), got 3"},
      {"softmax",
       {{"rows", 1}, {"n", 1048577}},
       "shape \"n\" of op softmax must be at most 1048576, got 1048577"},
      {"sampling",
       {{"positions", 1}, {"vocab_size", 2}, {"temperature", 0}},
       "shape \"temperature\" of op sampling must be a number > 0, got 0"},
  };
  for (const Bad& b : bad) {
    EXPECT_THAT(error_of([&] { build_shaped_op_case({.op = b.op, .shape = b.shape}); }),
                HasSubstr(b.message));
  }
  EXPECT_THAT(
      error_of([] {
        build_shaped_op_case({.op = "softmax", .shape = {{"rows", 1}, {"n", 1}}, .tries = 0});
      }),
      HasSubstr("tries must be >= 1, got 0"));
  EXPECT_THAT(
      error_of([] {
        build_shaped_op_case({.op = "softmax", .shape = {{"rows", 1}, {"n", 1}}, .margin = -1.0});
      }),
      HasSubstr("margin must be a finite number >= 0"));
}

TEST(ShapedOpCases, TheCliWritesTheCaseAndRefusesBadShapes) {
  const TempDir dir;
  const std::filesystem::path out = dir.path() / "case";
  const cli_tests::CliResult written = cli_tests::run_cli(
      "golden --op softmax --shape rows=3 --shape n=7 --seed 5 --out " + test_support::quote(out));
  ASSERT_EQ(written.exit_code, 0) << cli_tests::describe(written);
  const OpCase built =
      build_shaped_op_case({.op = "softmax", .shape = {{"rows", 3}, {"n", 7}}, .seed = 5});
  const GoldenSet set = GoldenSet::open(out);
  EXPECT_TRUE(set.expected_tensor("out").bytes == built.outputs[0].bytes);

  const cli_tests::CliResult bad =
      cli_tests::run_cli("golden --op softmax --shape rows=-1 --shape n=7 --out " +
                         test_support::quote(dir.path() / "bad"));
  EXPECT_EQ(bad.exit_code, 1) << cli_tests::describe(bad);
  EXPECT_THAT(bad.err, HasSubstr("shape \"rows\" of op softmax must be an integer >= 1, got -1"));
  const cli_tests::CliResult malformed = cli_tests::run_cli(
      "golden --op softmax --shape rows --out " + test_support::quote(dir.path() / "bad"));
  EXPECT_EQ(malformed.exit_code, 2) << cli_tests::describe(malformed);
  EXPECT_THAT(malformed.err, HasSubstr("--shape: expected KEY=VALUE, got \"rows\""));
  // --shape takes one value: a config after it is the positional CONFIG, which --op refuses.
  const cli_tests::CliResult with_config = cli_tests::run_cli(
      "golden --op softmax --shape rows=1 --shape n=2 " +
      test_support::quote(std::filesystem::path(MOEREF_SOURCE_DIR) / "configs/tiny.json") +
      " --out " + test_support::quote(dir.path() / "bad"));
  EXPECT_EQ(with_config.exit_code, 2) << cli_tests::describe(with_config);
  EXPECT_THAT(with_config.err, HasSubstr("--op writes one op case: give no CONFIG"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "bad"));
}

}  // namespace
}  // namespace moeref::golden
