// The bug catalog (golden/bug_catalog.h) and what it rests on: every bug is live, named once, and
// located by a tensor its sets have; its candidates are deterministic; the runner the bugs are
// planted in reproduces every committed set exactly when nothing is planted, and computes like
// the standard candidate runner on emulated kernels. Catch rates are not asserted: they measure
// the checker, and `moeref bugs` reports them.
#include "golden/bug_catalog.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "golden/candidate_runner.h"
#include "golden/detection_matrix.h"
#include "golden/emulated_kernels.h"
#include "golden/golden_set.h"
#include "golden/mutated_runner.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {
namespace {

namespace fs = std::filesystem;

const fs::path kSets = fs::path(MOEREF_SOURCE_DIR) / "golden" / "sets";

const std::vector<GoldenSet>& committed_sets() {
  static const std::vector<GoldenSet> sets = [] {
    std::vector<GoldenSet> opened;
    for (const fs::path& dir : find_golden_sets(kSets)) opened.push_back(GoldenSet::open(dir));
    return opened;
  }();
  return sets;
}

// The name of the first tensor whose bytes, dtype or shape differ, or that `candidate` lacks.
std::optional<std::string> first_difference(const GoldenSet& set, const Candidate& candidate) {
  for (const ExpectedTensor& entry : set.expected()) {
    const auto found = candidate.find(entry.name);
    if (found == candidate.end()) return entry.name + " (missing)";
    const TensorRecord& expected = set.expected_tensor(entry.name);
    const TensorRecord& actual = found->second;
    if (actual.dtype != expected.dtype || actual.shape != expected.shape ||
        actual.bytes != expected.bytes) {
      return entry.name;
    }
  }
  return std::nullopt;
}

bool same_candidates(const Candidate& a, const Candidate& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, record] : a) {
    const auto found = b.find(name);
    if (found == b.end() || found->second.dtype != record.dtype ||
        found->second.shape != record.shape || found->second.bytes != record.bytes) {
      return false;
    }
  }
  return true;
}

// The sets are tiny: on one thread the runs take a fraction of what thread start-ups cost.
class OneThread : public ::testing::Test {
 protected:
  void SetUp() override {
    threads_ = omp_get_max_threads();
    omp_set_num_threads(1);
  }
  void TearDown() override { omp_set_num_threads(threads_); }

 private:
  int threads_ = 1;
};

using BugCatalog = OneThread;
using MutatedRunner = OneThread;
using DetectionMatrix = OneThread;

TEST_F(BugCatalog, HasAtLeast27BugsWithUniqueKebabCaseNames) {
  const std::vector<Bug>& bugs = bug_catalog();
  EXPECT_GE(bugs.size(), 27u);
  std::set<std::string> names;
  // Words of [a-z0-9] joined by single hyphens (<regex> is avoided: GCC 12 warns inside it under
  // the sanitizers).
  const auto kebab = [](const std::string& name) {
    bool after_hyphen = true;  // at the start, as after a hyphen: a word must begin
    for (char c : name) {
      if (c == '-') {
        if (after_hyphen) return false;
        after_hyphen = true;
      } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
        after_hyphen = false;
      } else {
        return false;
      }
    }
    return !after_hyphen;
  };
  for (const Bug& bug : bugs) {
    EXPECT_TRUE(names.insert(bug.name).second) << "named twice: " << bug.name;
    EXPECT_TRUE(kebab(bug.name)) << bug.name;
    EXPECT_FALSE(bug.description.empty()) << bug.name;
    EXPECT_FALSE(bug.own_tensor.empty()) << bug.name;
    EXPECT_EQ(&find_bug(bug.name), &bug);
  }
  EXPECT_THROW(find_bug("no-such-bug"), std::invalid_argument);
}

// Live: the bug alone differs from some committed set by more than the visibility factor times
// the fp32 tolerance.
TEST_F(BugCatalog, EveryBugIsVisibleAtFp32OnSomeCommittedSet) {
  for (const Bug& bug : bug_catalog()) {
    std::vector<std::string> visible_in;
    for (const GoldenSet& set : committed_sets()) {
      const std::optional<Candidate> alone = run_exact(bug, set);
      if (alone && first_visible_difference(set, *alone, kVisibilityFactor)) {
        visible_in.push_back(set.name());
      }
    }
    EXPECT_FALSE(visible_in.empty()) << bug.name << " is visible in no committed set";
  }
}

TEST_F(BugCatalog, EveryBugsOwnTensorIsATensorOfTheSetsItAppliesTo) {
  std::map<std::string, int> applies;
  for (const Bug& bug : bug_catalog()) {
    for (const GoldenSet& set : committed_sets()) {
      if (!bug.reach.covers(set)) continue;
      ++applies[bug.name];
      const std::vector<ExpectedTensor>& expected = set.expected();
      EXPECT_TRUE(
          std::any_of(expected.begin(), expected.end(),
                      [&](const ExpectedTensor& e) { return is_own_tensor(bug, set, e.name); }))
          << bug.name << " applies to " << set.name() << ", which has no tensor " << bug.own_tensor;
    }
    EXPECT_GT(applies[bug.name], 0) << bug.name << " applies to no committed set";
  }
}

TEST_F(BugCatalog, RunsExactlyWhereItsReachCovers) {
  const GoldenSet& rope_case =
      *std::find_if(committed_sets().begin(), committed_sets().end(),
                    [](const GoldenSet& s) { return s.name() == "rope-hd8"; });
  const GoldenSet& mqa =
      *std::find_if(committed_sets().begin(), committed_sets().end(),
                    [](const GoldenSet& s) { return s.name() == "tiny-mqa-moe"; });
  EXPECT_FALSE(find_bug("capacity-token-major").run(mqa, Precision::kFP32).has_value());
  EXPECT_FALSE(find_bug("gqa-kv-head-modulo").run(mqa, Precision::kFP32).has_value());
  EXPECT_FALSE(find_bug("xattn-gate-without-tanh").run(mqa, Precision::kFP32).has_value());
  EXPECT_FALSE(find_bug("experts-swapped").run(rope_case, Precision::kFP32).has_value());
  EXPECT_TRUE(find_bug("rope-adjacent-pairs").run(rope_case, Precision::kFP32).has_value());
  EXPECT_TRUE(is_own_tensor(find_bug("rope-adjacent-pairs"), rope_case, "out"));
  EXPECT_TRUE(is_own_tensor(find_bug("rope-adjacent-pairs"), mqa, "decode.1/layers.1.attn.q"));
  EXPECT_FALSE(is_own_tensor(find_bug("rope-adjacent-pairs"), mqa, "decode.1/layers.1.attn.k"));
}

// The same bug on the same set gives the same bits twice, on the emulated base and alone.
TEST_F(BugCatalog, CandidatesAreDeterministic) {
  for (const Bug& bug : bug_catalog()) {
    for (const GoldenSet& set : committed_sets()) {
      if (!bug.reach.covers(set)) continue;
      EXPECT_TRUE(same_candidates(*bug.run(set, Precision::kBF16), *bug.run(set, Precision::kBF16)))
          << bug.name << " on " << set.name() << " at bf16";
      EXPECT_TRUE(same_candidates(*run_exact(bug, set), *run_exact(bug, set)))
          << bug.name << " on " << set.name() << " alone";
    }
  }
}

TEST_F(MutatedRunner, WithoutAMutationReproducesEveryCommittedSetBitForBit) {
  std::map<std::string, int> kinds;
  for (const GoldenSet& set : committed_sets()) {
    EXPECT_EQ(first_difference(set, run_mutated(set, ref_kernels(), {})), std::nullopt)
        << set.name();
    ++kinds[set.kind()];
  }
  EXPECT_GE(kinds["model"], 5);
  EXPECT_EQ(kinds["batching"], 1);
  EXPECT_EQ(kinds["speculative"], 1);
  EXPECT_GE(kinds["op"], 48);
}

// The honest parts of a bug's candidate compute as the standard candidate runner's do.
TEST_F(MutatedRunner, WithoutAMutationEqualsTheCandidateRunnerOnEmulatedKernels) {
  for (const GoldenSet& set : committed_sets()) {
    for (const Precision p : {Precision::kTF32, Precision::kBF16}) {
      EXPECT_TRUE(same_candidates(run_mutated(set, emulated_kernels(p), {}),
                                  run_case(set, emulated_kernels(p))))
          << set.name() << " at " << precision_name(p);
    }
  }
}

TEST_F(DetectionMatrix, VisibilityIsJudgedOnTheRawTensors) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-hf-mixtral");
  Candidate candidate = candidate_from_file(set.trace());
  EXPECT_EQ(first_visible_difference(set, candidate, kVisibilityFactor), std::nullopt);
  const std::string name = "decode.1/layers.0.attn.out";
  std::vector<float> values = candidate.at(name).to_f32();
  const double tolerance = default_tolerance(Precision::kFP32, ToleranceClass::kActivation).atol;
  values[3] = static_cast<float>(values[3] + 5.0 * tolerance * (1.0 + std::fabs(values[3])));
  candidate[name] = make_f32_record(name, candidate.at(name).shape, values);
  EXPECT_EQ(first_visible_difference(set, candidate, kVisibilityFactor), std::nullopt);
  EXPECT_EQ(first_visible_difference(set, candidate, 1.0), name);
  std::vector<int32_t> tokens = candidate.at("greedy_tokens").to_i32();
  tokens.back() += 1;
  candidate["greedy_tokens"] = make_i32_record("greedy_tokens", {5}, tokens);
  candidate.erase(name);
  EXPECT_EQ(first_visible_difference(set, candidate, kVisibilityFactor), "greedy_tokens");
}

TEST_F(DetectionMatrix, OneRowPerApplicablePairAndPrecision) {
  std::vector<GoldenSet> sets;
  for (const char* name : {"tiny-gqa-mixed", "tiny-mqa-moe", "ops/router-topk-ties-k2"}) {
    sets.push_back(GoldenSet::open(kSets / name));
  }
  const std::vector<Bug> bugs = {find_bug("gqa-kv-head-modulo"),
                                 find_bug("topk-ties-to-higher-index")};
  const std::vector<Precision> precisions = {Precision::kFP32, Precision::kBF16};
  const std::vector<Detection> matrix = detection_matrix(sets, precisions, bugs);
  // gqa-kv-head-modulo: tiny-gqa-mixed only (MQA and top-k cases have no K/V heads to map);
  // topk-ties-to-higher-index: all three.
  ASSERT_EQ(matrix.size(), (1u + 3u) * precisions.size());
  EXPECT_EQ(matrix[0].bug, "gqa-kv-head-modulo");
  EXPECT_EQ(matrix[0].set, "tiny-gqa-mixed");
  EXPECT_TRUE(matrix[0].visible);
  EXPECT_TRUE(matrix[0].honest_passes);
  for (const Detection& d : matrix) {
    if (d.bug == "topk-ties-to-higher-index" && d.set != "router-topk-ties-k2") {
      EXPECT_FALSE(d.visible) << d.set << ": no exact ties among its router probabilities";
    }
    EXPECT_EQ(d.own, d.first_failure.has_value() &&
                         is_own_tensor(
                             find_bug(d.bug),
                             *std::find_if(sets.begin(), sets.end(),
                                           [&](const GoldenSet& s) { return s.name() == d.set; }),
                             *d.first_failure));
  }
  EXPECT_EQ(detection_matrix(sets, precisions, bugs).size(), matrix.size());
}

}  // namespace
}  // namespace moeref::golden
