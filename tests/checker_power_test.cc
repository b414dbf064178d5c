// What the checker is worth, measured: the bug catalog (golden/bug_catalog.h) run on every
// committed set at every precision must be caught (fp32: every bug that shows at all, at its own
// tensor; bf16 and fp16: at least 95% of the visible (bug, set) pairs), and no honest emulated
// backend (golden/emulated_kernels.h) may fail a calibrated set at any precision. The bf16-ready
// set resolves every decision at bf16: an honest backend flips none, and any flip fails.
#include <gtest/gtest.h>
#include <omp.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "golden/calibration.h"
#include "golden/candidate_runner.h"
#include "golden/compare.h"
#include "golden/detection_matrix.h"
#include "golden/emulated_kernels.h"
#include "golden/forced_routing.h"
#include "golden/golden_set.h"
#include "golden/model_case.h"
#include "golden/resolution.h"
#include "golden/verify.h"

namespace moeref::golden {
namespace {

namespace fs = std::filesystem;

const fs::path kSets = fs::path(MOEREF_SOURCE_DIR) / "golden" / "sets";

std::vector<GoldenSet> committed_sets() {
  std::vector<GoldenSet> sets;
  for (const fs::path& dir : find_golden_sets(kSets)) sets.push_back(GoldenSet::open(dir));
  return sets;
}

// One test, so that the matrix (37 bugs, every committed set, three precisions) is run once.
TEST(CheckerPower, TheBugCatalogIsCaught) {
  const std::vector<Detection> matrix =
      detection_matrix(committed_sets(), {Precision::kFP32, Precision::kBF16, Precision::kFP16});
  // fp32: every bug that shows at all is caught, at its own tensor.
  int64_t visible = 0;
  for (const Detection& d : matrix) {
    if (d.precision != Precision::kFP32 || !d.visible) continue;
    ++visible;
    EXPECT_TRUE(d.caught) << d.bug << " on " << d.set;
    EXPECT_TRUE(d.own) << d.bug << " on " << d.set << ": first failure "
                       << d.first_failure.value_or("none");
  }
  EXPECT_GE(visible, 250);  // 37 bugs over the committed sets
  // bf16 and fp16: at least 95% of the visible (bug, set) pairs.
  const std::map<Precision, CatchRate> rates = catch_rates(matrix);
  for (Precision p : {Precision::kBF16, Precision::kFP16}) {
    const CatchRate& rate = rates.at(p);
    EXPECT_GE(static_cast<double>(rate.caught), 0.95 * static_cast<double>(rate.visible))
        << precision_name(p) << ": " << rate.caught << " of " << rate.visible;
  }
}

// Every honest backend of the family, at every precision, on every set of every kind.
TEST(CheckerPower, NoHonestBackendFailsAnySet) {
  for (const GoldenSet& set : committed_sets()) {
    for (Precision p : {Precision::kFP32, Precision::kTF32, Precision::kBF16, Precision::kFP16}) {
      CompareOptions options;
      options.precision = p;
      for (const HonestBackend& backend : honest_backends(p)) {
        const CompareReport report = compare(set, run_case(set, *backend.kernels), options);
        EXPECT_TRUE(report.passed)
            << backend.name << " at " << precision_name(p) << " on " << set.name() << "\n"
            << report.to_text();
      }
    }
  }
}

// The bf16-ready set: every honest backend at bf16 and fp16 makes every decision as the reference
// does, so its whole comparison is against the set's own tensors.
TEST(Bf16ReadySet, HonestBackendsMakeNoOtherDecision) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-bf16-ready");
  for (Precision p : {Precision::kTF32, Precision::kBF16, Precision::kFP16}) {
    CompareOptions options;
    options.precision = p;
    for (const HonestBackend& backend : honest_backends(p)) {
      const CompareReport report = compare(set, run_case(set, *backend.kernels), options);
      EXPECT_TRUE(report.passed) << backend.name << " at " << precision_name(p);
      EXPECT_FALSE(report.anchored) << backend.name << " at " << precision_name(p) << "\n"
                                    << report.to_text();
      for (const TensorReport& t : report.tensors) {
        EXPECT_NE(t.status, TensorStatus::kNearTie) << backend.name << ": " << t.name;
      }
    }
  }
}

// Every decision of the bf16-ready set has its margin above the bf16 resolution (what its search
// asked for, golden/resolution.h); tiny-mqa-moe, searched for margins alone, has one that is not.
TEST(Bf16ReadySet, EveryDecisionIsResolvedAtBf16) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-bf16-ready");
  EXPECT_EQ(set.manifest().at("margins").at("resolved_at"), "bf16");
  for (Precision p : {Precision::kBF16, Precision::kFP16, Precision::kTF32}) {
    const std::vector<DecisionResolution> decisions = decision_resolutions(set, p);
    EXPECT_EQ(decisions.size(), 37u);  // 24 router rows, 5 greedy and 8 sampled tokens
    for (const DecisionResolution& d : decisions) {
      EXPECT_TRUE(d.resolved()) << d.decision << " at " << precision_name(p) << ": margin "
                                << d.margin << ", resolution " << d.resolution;
    }
  }
  const GoldenSet mqa = GoldenSet::open(kSets / "tiny-mqa-moe");
  const std::vector<DecisionResolution> decisions = decision_resolutions(mqa, Precision::kBF16);
  const DecisionResolution* least = least_resolved(decisions);
  ASSERT_NE(least, nullptr);
  EXPECT_FALSE(least->resolved()) << least->decision;
}

// A prompt given with --resolved-at that leaves a decision unresolved is refused, naming it, and
// nothing is written.
TEST(Bf16ReadySet, AGivenPromptWithAnUnresolvedDecisionIsRefused) {
  const GoldenSet mqa = GoldenSet::open(kSets / "tiny-mqa-moe");
  ModelCaseSpec spec = spec_from_manifest(mqa.manifest(), "tiny-mqa-moe");
  spec.resolved_at = Precision::kBF16;
  const fs::path dir = fs::path(::testing::TempDir()) / "unresolved-set";
  fs::remove_all(dir);
  try {
    write_model_case(spec, dir);
    ADD_FAILURE() << "a prompt with a bf16 near-tie was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("bf16 resolution"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir));
}

// The golden routing of every call and MoE layer, in the order the set traces it.
std::vector<std::vector<int32_t>> golden_routing(const GoldenSet& set) {
  std::vector<std::vector<int32_t>> routing;
  for (const ExpectedTensor& entry : set.expected()) {
    if (entry.name.ends_with("moe.topk_indices")) {
      routing.push_back(set.expected_tensor(entry.name).to_i32());
    }
  }
  return routing;
}

// Every router row of the bf16-ready set (top-1 of 4 experts), its expert replaced by each other
// one and the model run on from there: the checker fails it at that routing tensor, at bf16 and
// fp16. Nothing is excused as a near-tie.
TEST(Bf16ReadySet, EveryOtherExpertFailsAtItsRoutingTensor) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-bf16-ready");
  std::vector<std::string> routing_tensors;
  for (const ExpectedTensor& entry : set.expected()) {
    if (entry.name.ends_with("moe.topk_indices")) routing_tensors.push_back(entry.name);
  }
  const std::vector<std::vector<int32_t>> golden = golden_routing(set);
  int64_t flips = 0;
  for (size_t call = 0; call < golden.size(); ++call) {
    for (size_t row = 0; row < golden[call].size(); ++row) {
      for (int32_t expert = 0; expert < 4; ++expert) {
        if (expert == golden[call][row]) continue;
        std::vector<std::vector<int32_t>> routing(golden.begin(),
                                                  golden.begin() + static_cast<int64_t>(call) + 1);
        routing[call][row] = expert;
        const Candidate candidate = run_model_case(set, ForcedRouting(routing));
        ++flips;
        for (Precision p : {Precision::kBF16, Precision::kFP16}) {
          CompareOptions options;
          options.precision = p;
          const CompareReport report = compare(set, candidate, options);
          EXPECT_FALSE(report.passed) << routing_tensors[call] << " row " << row << " expert "
                                      << expert << " at " << precision_name(p);
          EXPECT_EQ(report.first_failure, routing_tensors[call])
              << "row " << row << " expert " << expert << " at " << precision_name(p);
        }
      }
    }
  }
  EXPECT_EQ(flips, 24 * 3);
}

// Every greedy and sampled token of the bf16-ready set replaced by each other token of the
// vocabulary: the checker fails it at that token tensor, at bf16 and fp16.
TEST(Bf16ReadySet, EveryOtherTokenFailsAtItsTokenTensor) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-bf16-ready");
  const Candidate golden = candidate_from_file(set.trace());
  for (const std::string name : {"greedy_tokens", "sampled_tokens"}) {
    const std::vector<int32_t> tokens = golden.at(name).to_i32();
    for (size_t row = 0; row < tokens.size(); ++row) {
      for (int32_t token = 0; token < 32; ++token) {
        if (token == tokens[row]) continue;
        std::vector<int32_t> flipped = tokens;
        flipped[row] = token;
        Candidate candidate = golden;
        candidate[name] = make_i32_record(name, golden.at(name).shape, flipped);
        for (Precision p : {Precision::kBF16, Precision::kFP16}) {
          CompareOptions options;
          options.precision = p;
          const CompareReport report = compare(set, candidate, options);
          EXPECT_FALSE(report.passed)
              << name << " row " << row << " token " << token << " at " << precision_name(p);
          EXPECT_EQ(report.first_failure, name)
              << "row " << row << " token " << token << " at " << precision_name(p);
        }
      }
    }
  }
}

}  // namespace
}  // namespace moeref::golden
