// What the checker is worth, measured: the bug catalog (golden/bug_catalog.h) run on every
// committed set at every precision must be caught (fp32: every bug that shows at all, at its own
// tensor; bf16 and fp16: at least 95% of the visible (bug, set) pairs), and no honest emulated
// backend (golden/emulated_kernels.h) may fail a calibrated set at any precision.
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
#include "golden/golden_set.h"

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

}  // namespace
}  // namespace moeref::golden
