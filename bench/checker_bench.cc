// How long the checker takes on a whole tiny model set, re-anchoring included, against the
// reference forward of the same set measured in the same run.
//
// BM_CheckHonestBf16Candidate: compare() of tiny-hf-mixtral with the plain bf16 emulation's
// candidate, which flips two routings and a sampled token there, so every check re-runs the
// reference on its decisions (golden/anchored_run.h). The reference's own run of
// the set (golden/candidate_runner.h), timed in the same run, is the baseline. Counters: seconds
// per check, and the check's time in reference runs. The target is under a second per check.
#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>

#include "golden/candidate_runner.h"
#include "golden/compare.h"
#include "golden/emulated_kernels.h"
#include "golden/golden_set.h"

namespace moeref::golden {
namespace {

const GoldenSet& hf_mixtral() {
  static const GoldenSet set = GoldenSet::open(std::filesystem::path(MOEREF_SOURCE_DIR) / "golden" /
                                               "sets" / "tiny-hf-mixtral");
  return set;
}

double seconds_of(const auto& work, int repeats) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) work();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
}

void BM_CheckHonestBf16Candidate(benchmark::State& state) {
  const GoldenSet& set = hf_mixtral();
  const Candidate candidate = run_case(set, emulated_kernels(Precision::kBF16));
  CompareOptions options;
  options.precision = Precision::kBF16;
  const double reference =
      seconds_of([&] { benchmark::DoNotOptimize(run_case(set, ref_kernels())); }, 5);
  bool anchored = false;
  for (auto _ : state) {
    const CompareReport report = compare(set, candidate, options);
    anchored = report.anchored;
    benchmark::DoNotOptimize(report.passed);
  }
  state.counters["reanchored"] = anchored ? 1.0 : 0.0;
  state.counters["s_per_check"] = benchmark::Counter(
      1.0, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["reference_runs_per_check"] = benchmark::Counter(
      reference, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_CheckHonestBf16Candidate)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace moeref::golden
