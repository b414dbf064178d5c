// The op-level golden cases: every case builds, bit for bit the same each time, with the shapes its
// parameters promise, and the routing and tie cases really have the property their names claim.
#include "golden/op_cases.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "golden/compare.h"
#include "golden/golden_set.h"
#include "golden/shaped_op_cases.h"
#include "ref/generation/philox.h"
#include "ref/io/version.h"
#include "tests/test_support.h"

namespace moeref::golden {
namespace {

using test_support::TempDir;

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

const TensorRecord& output(const OpCase& c, const std::string& name) {
  for (const TensorRecord& record : c.outputs) {
    if (record.name == name) return record;
  }
  throw std::out_of_range("case has no output \"" + name + "\"");
}

const TensorRecord& input(const OpCase& c, const std::string& name) {
  for (const TensorRecord& record : c.inputs) {
    if (record.name == name) return record;
  }
  throw std::out_of_range("case has no input \"" + name + "\"");
}

// The count of (token, rank) assignments, or of rank-`rank` choices only, per expert.
std::map<int32_t, int> chosen_by(const OpCase& c, int rank = -1) {
  const TensorRecord& indices = output(c, "moe.topk_indices");
  const int64_t k = indices.shape[1];
  const std::vector<int32_t> values = indices.to_i32();
  std::map<int32_t, int> counts;
  for (size_t i = 0; i < values.size(); ++i) {
    if (rank < 0 || static_cast<int64_t>(i) % k == rank) ++counts[values[i]];
  }
  return counts;
}

// The shape of every output of a case, from the parameters in its manifest.
std::map<std::string, std::vector<int64_t>> documented_shapes(const json& manifest) {
  const std::string op = manifest.at("op");
  const json& p = manifest.at("parameters");
  auto i = [&](const char* key) { return p.at(key).get<int64_t>(); };
  if (op == "matmul") return {{"out", {i("rows"), i("out")}}};
  if (op == "rms_norm" || op == "layer_norm") return {{"out", {i("rows"), i("d")}}};
  if (op == "rope") return {{"out", {i("tokens"), i("n_heads"), i("head_dim")}}};
  if (op == "softmax") return {{"out", {i("rows"), i("n")}}};
  if (op == "attention") {
    return {{"context", {i("new_tokens"), i("n_heads"), i("head_dim")}},
            {"probs", {i("new_tokens"), i("n_heads"), i("cached_positions") + i("new_tokens")}}};
  }
  if (op == "top_k")
    return {{"indices", {i("tokens"), i("k")}}, {"weights", {i("tokens"), i("k")}}};
  if (op == "expert_ffn") return {{"out", {i("rows"), i("d_model")}}};
  if (op == "cross_attention") {
    return {{"context", {i("queries"), i("n_heads"), i("head_dim")}},
            {"probs", {i("queries"), i("n_heads"), i("vision_tokens")}}};
  }
  if (op == "gated_cross_attention") {
    const int64_t t = i("tokens"), d = i("d_model"), n = i("vision_tokens");
    const int64_t h = i("n_heads"), g = i("n_kv_heads"), hd = i("head_dim");
    return {{"layers.0.xattn.k", {n, g, hd}},
            {"layers.0.xattn.v", {n, g, hd}},
            {"layers.0.xattn.attn_norm.out", {t, d}},
            {"layers.0.xattn.q", {t, h, hd}},
            {"layers.0.xattn.probs", {t, h, n}},
            {"layers.0.xattn.context", {t, h, hd}},
            {"layers.0.xattn.attn_out", {t, d}},
            {"layers.0.xattn.attn_gated", {t, d}},
            {"layers.0.xattn.attn_residual", {t, d}},
            {"layers.0.xattn.ffn_norm.out", {t, d}},
            {"layers.0.xattn.ffn.out", {t, d}},
            {"layers.0.xattn.ffn_gated", {t, d}},
            {"layers.0.xattn.out", {t, d}}};
  }
  if (op == "moe") {
    const int64_t t = i("tokens"), e = i("n_experts"), k = i("top_k"), d = i("d_model");
    return {{"moe.router_logits", {t, e}},
            {"moe.router_probs", {t, e}},
            {"moe.topk_indices", {t, k}},
            {"moe.topk_weights", {t, k}},
            {"moe.kept", {t, k}},
            {"moe.expert_outputs", {t, k, d}},
            {"moe.out", {t, d}},
            {"moe.aux_loss", {}},
            {"moe.z_loss", {}}};
  }
  if (op == "sampling") {
    return {{"probs", {i("positions"), i("vocab_size")}}, {"tokens", {i("positions")}}};
  }
  if (op == "greedy") return {{"tokens", {i("rows")}}};
  throw std::invalid_argument("no documented shapes for op \"" + op + "\"");
}

TEST(OpCases, NamesAreUniqueStableAndPrefixedByTheirOp) {
  const std::vector<std::string> names = op_case_names();
  EXPECT_GE(names.size(), 40u);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  EXPECT_EQ(names, op_case_names());
  const std::map<std::string, std::set<std::string>> ops_by_prefix = {
      {"matmul", {"matmul"}},
      {"rmsnorm", {"rms_norm"}},
      {"layernorm", {"layer_norm"}},
      {"rope", {"rope"}},
      {"softmax", {"softmax"}},
      {"attention", {"attention"}},
      {"router", {"top_k"}},
      {"ffn", {"expert_ffn"}},
      {"moe", {"moe"}},
      {"sampling", {"sampling", "greedy"}},
      {"cross", {"cross_attention"}},
      {"gated", {"gated_cross_attention"}}};
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    for (const char ch : name) {
      EXPECT_TRUE((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-');
    }
    const std::string prefix = name.substr(0, name.find('-'));
    ASSERT_TRUE(ops_by_prefix.contains(prefix));
    EXPECT_TRUE(ops_by_prefix.at(prefix).contains(build_op_case(name).manifest.at("op")));
  }
}

TEST(OpCases, UnknownNameThrowsNamingIt) {
  try {
    build_op_case("matmul-does-not-exist");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("\"matmul-does-not-exist\""));
  }
}

TEST(OpCases, EveryCaseBuildsWithAManifestAndTheDocumentedShapes) {
  for (const std::string& name : op_case_names()) {
    SCOPED_TRACE(name);
    const OpCase c = build_op_case(name);
    const json& m = c.manifest;
    EXPECT_EQ(m.at("format_version"), kFormatVersion);
    EXPECT_EQ(m.at("kind"), "op");
    EXPECT_EQ(m.at("case"), name);
    EXPECT_FALSE(m.at("description").get<std::string>().empty());
    EXPECT_EQ(m.at("moeref_version"), version());
    EXPECT_EQ(m.at("git_commit"), git_commit());
    EXPECT_TRUE(m.at("parameters").is_object());
    EXPECT_FALSE(m.contains("files"));
    EXPECT_FALSE(m.contains("tensors"));
    ASSERT_FALSE(c.inputs.empty());
    for (const TensorRecord& record : c.inputs) {
      EXPECT_TRUE(m.at("input_generation").contains(record.name)) << record.name;
    }

    ASSERT_EQ(c.expected.size(), c.outputs.size());
    const std::map<std::string, std::vector<int64_t>> shapes = documented_shapes(m);
    ASSERT_EQ(c.outputs.size(), shapes.size());
    for (size_t i = 0; i < c.outputs.size(); ++i) {
      const TensorRecord& record = c.outputs[i];
      SCOPED_TRACE(record.name);
      EXPECT_EQ(c.expected[i].name, record.name);
      EXPECT_FALSE(c.expected[i].op.empty());
      ASSERT_TRUE(shapes.contains(record.name));
      EXPECT_EQ(record.shape, shapes.at(record.name));
      EXPECT_EQ(record.bytes.size(),
                static_cast<size_t>(record.numel()) * dtype_size(record.dtype));
      const bool integer = record.dtype == DType::kI32;
      EXPECT_EQ(integer, c.expected[i].tolerance == ToleranceClass::kExact);
      if (!integer) {
        for (const float v : record.to_f32()) ASSERT_TRUE(std::isfinite(v));
      }
    }
  }
}

TEST(OpCases, BuildingTwiceGivesTheSameBits) {
  for (const std::string& name : op_case_names()) {
    SCOPED_TRACE(name);
    const OpCase a = build_op_case(name);
    const OpCase b = build_op_case(name);
    EXPECT_EQ(a.manifest.dump(), b.manifest.dump());
    ASSERT_EQ(a.inputs.size(), b.inputs.size());
    for (size_t i = 0; i < a.inputs.size(); ++i) {
      EXPECT_EQ(a.inputs[i].name, b.inputs[i].name);
      EXPECT_EQ(a.inputs[i].shape, b.inputs[i].shape);
      EXPECT_TRUE(a.inputs[i].bytes == b.inputs[i].bytes) << a.inputs[i].name;
    }
    ASSERT_EQ(a.outputs.size(), b.outputs.size());
    for (size_t i = 0; i < a.outputs.size(); ++i) {
      EXPECT_EQ(a.outputs[i].name, b.outputs[i].name);
      EXPECT_EQ(a.outputs[i].dtype, b.outputs[i].dtype);
      EXPECT_TRUE(a.outputs[i].bytes == b.outputs[i].bytes) << a.outputs[i].name;
    }
  }
}

// A named case of an op that golden/shaped_op_cases.h generates is that op's generated case at
// the named case's shape, name and seed 0 (docs/golden-format.md, "Op cases at your shapes").
TEST(OpCases, NamedCasesAreGeneratedCasesAtTheirShapes) {
  struct Named {
    const char* name;
    const char* op;
    json shape;
  };
  const std::vector<Named> cases = {
      {"matmul-13x96x40", "matmul", {{"rows", 13}, {"in", 96}, {"out", 40}}},
      {"rmsnorm-5x37", "rms_norm", {{"rows", 5}, {"d", 37}}},
      {"layernorm-5x64", "layer_norm", {{"rows", 5}, {"d", 64}}},
      {"softmax-4x17", "softmax", {{"rows", 4}, {"n", 17}}},
      {"attention-gqa-hd32-p0-t13",
       "attention",
       {{"new_tokens", 13},
        {"n_heads", 4},
        {"n_kv_heads", 2},
        {"head_dim", 32},
        {"cached_positions", 0}}},
      {"cross-attention-gqa-hd16-n9-t1",
       "cross_attention",
       {{"queries", 1}, {"n_heads", 4}, {"n_kv_heads", 2}, {"head_dim", 16}, {"vision_tokens", 9}}},
      {"router-topk-k2-no-renorm",
       "top_k",
       {{"tokens", 7}, {"n_experts", 8}, {"k", 2}, {"renormalize", 0}}},
      {"ffn-gelu-rows7",
       "expert_ffn",
       {{"rows", 7}, {"d_model", 32}, {"d_ff", 64}, {"activation", "gelu"}}},
  };
  for (const Named& c : cases) {
    SCOPED_TRACE(c.name);
    const OpCase named = build_op_case(c.name);
    const OpCase generated = build_shaped_op_case(
        {.op = c.op, .shape = c.shape, .name = c.name, .seed = 0, .margin = 0.0, .tries = 1});
    EXPECT_EQ(generated.manifest.at("parameters"), named.manifest.at("parameters"));
    EXPECT_EQ(generated.manifest.at("input_generation"), named.manifest.at("input_generation"));
    for (const auto& [mine, theirs] : {std::pair(&generated.inputs, &named.inputs),
                                       std::pair(&generated.outputs, &named.outputs)}) {
      ASSERT_EQ(mine->size(), theirs->size());
      for (size_t i = 0; i < mine->size(); ++i) {
        EXPECT_EQ((*mine)[i].name, (*theirs)[i].name);
        EXPECT_EQ((*mine)[i].bytes, (*theirs)[i].bytes) << (*mine)[i].name;
      }
    }
  }
}

TEST(OpCases, InputsFollowTheDocumentedPhiloxRule) {
  // Element 5 of "w" in matmul-1x96x40: block 1, word 1, scale 0.25, offset 0.
  const OpCase c = build_op_case("matmul-1x96x40");
  const PhiloxCounter bits =
      philox4x32_10({1, 0, fnv1a32("w"), 0x4F504341}, {fnv1a32("matmul-1x96x40"), 0});
  const float expected = 0.25f * (2.0f * uniform_from_bits(bits[1]) - 1.0f);
  EXPECT_EQ(input(c, "w").to_f32()[5], expected);
  // Different tensors and cases draw different streams.
  EXPECT_NE(input(c, "x").to_f32()[0] * 0.25f, input(c, "w").to_f32()[0]);
  EXPECT_NE(input(c, "x").bytes, input(build_op_case("matmul-13x96x40"), "x").bytes);
}

TEST(OpCases, HotExpertIsChosenByMostTokens) {
  const OpCase c = build_op_case("moe-hot-expert");
  const int64_t tokens = c.manifest.at("parameters").at("tokens");
  EXPECT_GT(2 * chosen_by(c)[3], tokens);
  EXPECT_LT(chosen_by(c, 0)[3], tokens) << "hot, not all-on-one";
}

TEST(OpCases, UnusedExpertIsChosenByNone) {
  const OpCase c = build_op_case("moe-unused-expert");
  EXPECT_FALSE(chosen_by(c).contains(6));
  EXPECT_EQ(c.manifest.at("routing").at("assignments_per_expert").at(6), 0);
}

TEST(OpCases, AllOnOneSendsEveryTokensFirstChoiceToOneExpert) {
  const OpCase c = build_op_case("moe-all-on-one");
  const int64_t tokens = c.manifest.at("parameters").at("tokens");
  EXPECT_THAT(chosen_by(c, 0), ElementsAre(std::pair<const int32_t, int>(5, tokens)));
}

TEST(OpCases, CapacityCaseDropsAssignments) {
  const OpCase c = build_op_case("moe-capacity");
  EXPECT_EQ(c.manifest.at("routing").at("capacity"), 2);
  const std::vector<int32_t> kept = output(c, "moe.kept").to_i32();
  const auto dropped = std::count(kept.begin(), kept.end(), 0);
  EXPECT_GE(dropped, 8);  // 24 assignments, at most 2 for each of 8 experts
  EXPECT_EQ(c.manifest.at("routing").at("dropped_assignments"), dropped);
  // A dropped assignment contributes a zero expert output.
  const std::vector<float> outputs = output(c, "moe.expert_outputs").to_f32();
  for (size_t a = 0; a < kept.size(); ++a) {
    if (kept[a] != 0) continue;
    for (size_t i = 0; i < 32; ++i) EXPECT_EQ(outputs[a * 32 + i], 0.0f);
  }
}

TEST(OpCases, SingleTokenAndOddLengthCases) {
  EXPECT_EQ(output(build_op_case("moe-single-token"), "moe.out").shape,
            (std::vector<int64_t>{1, 32}));
  EXPECT_EQ(output(build_op_case("moe-odd-length"), "moe.out").shape,
            (std::vector<int64_t>{13, 32}));
}

TEST(OpCases, MoeRoutingHasComfortableMargins) {
  for (const std::string& name : op_case_names()) {
    if (!name.starts_with("moe-")) continue;
    SCOPED_TRACE(name);
    EXPECT_GT(build_op_case(name).manifest.at("margins").at("min_router").get<double>(), 1e-4);
  }
}

TEST(OpCases, LargeLogitSoftmaxIsFiniteAndSumsToOne) {
  const OpCase c = build_op_case("softmax-large-logits");
  const std::vector<float> x = input(c, "x").to_f32();
  EXPECT_GE(*std::max_element(x.begin(), x.end()), 1e4f - 8.0f);
  EXPECT_TRUE(std::isinf(std::exp(*std::max_element(x.begin(), x.end()))));
  const TensorRecord& out = output(c, "out");
  const std::vector<float> p = out.to_f32();
  const int64_t n = out.shape[1];
  for (int64_t r = 0; r < out.shape[0]; ++r) {
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      ASSERT_TRUE(std::isfinite(p[r * n + j]));
      sum += p[r * n + j];
    }
    EXPECT_NEAR(sum, 1.0, 1e-6) << "row " << r;
  }
}

TEST(OpCases, TopKTiesGoToTheLowerIndex) {
  // Rows (see op_cases.cc): all equal; 1 = 3 > 0 = 2 > rest; 2 = 4 = 5 = 6; 0.375 then four equal
  // 0.125 at 1..4; four equal 0.1875 at 4..7.
  const OpCase k2 = build_op_case("router-topk-ties-k2");
  EXPECT_THAT(output(k2, "indices").to_i32(), ElementsAre(0, 1, 1, 3, 2, 4, 0, 1, 4, 5));
  EXPECT_THAT(output(k2, "weights").to_f32(),
              ElementsAre(0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.75f, 0.25f, 0.5f, 0.5f));
  const OpCase k4 = build_op_case("router-topk-ties-k4");
  EXPECT_THAT(output(k4, "indices").to_i32(),
              ElementsAreArray({0, 1, 2, 3, 1, 3, 0, 2, 2, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 7}));
  const float third = static_cast<float>(1.0 / 3.0);
  const float sixth = static_cast<float>(1.0 / 6.0);
  EXPECT_THAT(
      output(k4, "weights").to_f32(),
      ElementsAreArray({0.25f, 0.25f, 0.25f, 0.25f, third, third, sixth, sixth, 0.25f, 0.25f,
                        0.25f, 0.25f, 0.5f,  sixth, sixth, sixth, 0.25f, 0.25f, 0.25f, 0.25f}));
}

TEST(OpCases, TopKWithoutRenormalisationKeepsTheProbabilities) {
  const OpCase c = build_op_case("router-topk-k2-no-renorm");
  const std::vector<float> probs = input(c, "probs").to_f32();
  const std::vector<int32_t> indices = output(c, "indices").to_i32();
  const std::vector<float> weights = output(c, "weights").to_f32();
  for (size_t a = 0; a < indices.size(); ++a) {
    EXPECT_EQ(weights[a], probs[(a / 2) * 8 + static_cast<size_t>(indices[a])]);
  }
}

TEST(OpCases, GreedyTiesGoToTheLowestTokenId) {
  const OpCase c = build_op_case("sampling-greedy-ties");
  const std::vector<float> logits = input(c, "logits").to_f32();
  const auto row0_max = std::max_element(logits.begin(), logits.begin() + 50) - logits.begin();
  EXPECT_THAT(output(c, "tokens").to_i32(), ElementsAre(row0_max, 7, 2, 0));
}

TEST(OpCases, SampledTokensComeFromTheProcessedDistribution) {
  const OpCase c = build_op_case("sampling-top-k-top-p");
  const std::vector<float> probs = output(c, "probs").to_f32();
  const std::vector<int32_t> tokens = output(c, "tokens").to_i32();
  for (size_t p = 0; p < tokens.size(); ++p) {
    SCOPED_TRACE(p);
    EXPECT_GT(probs[p * 50 + static_cast<size_t>(tokens[p])], 0.0f);
    const auto kept = std::count_if(probs.begin() + static_cast<std::ptrdiff_t>(p * 50),
                                    probs.begin() + static_cast<std::ptrdiff_t>(p * 50 + 50),
                                    [](float v) { return v > 0.0f; });
    EXPECT_GE(kept, 1);
    EXPECT_LE(kept, 10);
  }
  // Not all the same token: the draws really vary with the position.
  EXPECT_GT(std::set<int32_t>(tokens.begin(), tokens.end()).size(), 1u);
}

TEST(OpCases, WriteAndOpenRoundTrip) {
  const TempDir dir;
  const OpCase c = build_op_case("attention-mqa-hd8-p5-t3");
  write_golden_set(dir.path() / "attention-mqa-hd8-p5-t3", c.manifest, {}, c.inputs, c.outputs,
                   c.expected);
  const GoldenSet set = GoldenSet::open(dir.path() / "attention-mqa-hd8-p5-t3");
  EXPECT_EQ(set.name(), "attention-mqa-hd8-p5-t3");
  EXPECT_EQ(set.kind(), "op");
  EXPECT_FALSE(set.weights().has_value());
  EXPECT_EQ(set.manifest().at("parameters"), c.manifest.at("parameters"));
  ASSERT_EQ(set.expected().size(), c.expected.size());
  for (size_t i = 0; i < c.outputs.size(); ++i) {
    EXPECT_EQ(set.expected()[i].name, c.expected[i].name);
    EXPECT_EQ(set.expected()[i].tolerance, c.expected[i].tolerance);
    EXPECT_TRUE(set.expected_tensor(c.outputs[i].name).bytes == c.outputs[i].bytes);
  }
  for (const TensorRecord& record : c.inputs) {
    EXPECT_TRUE(set.inputs().at(record.name).bytes == record.bytes) << record.name;
  }
  // The golden outputs checked against themselves pass.
  EXPECT_TRUE(compare(set, candidate_from_file(set.trace())).passed);
}

// About 1.2 MiB: most of it are the MoE cases' eight experts (d_model 32, d_ff 48) and the
// cross-attention cases' K/V.
TEST(OpCases, TheWholeSetStaysSmall) {
  const TempDir dir;
  uintmax_t total = 0;
  for (const std::string& name : op_case_names()) {
    const OpCase c = build_op_case(name);
    write_golden_set(dir.path() / name, c.manifest, {}, c.inputs, c.outputs, c.expected);
    for (const fs::directory_entry& file : fs::directory_iterator(dir.path() / name)) {
      total += file.file_size();
    }
  }
  EXPECT_LT(total, uintmax_t{1300} * 1024);
}

}  // namespace
}  // namespace moeref::golden
