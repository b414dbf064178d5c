// The kernels of simd/ are chosen by what the CPU can do, not by its name (simd/cpu_features.h):
// the choice for every core name OpenBLAS may report against every feature set, then the choice
// taking effect in a real process, from a core forced below what this CPU supports. And the one
// choice made by measuring, the tiles' token prefetch (simd/tile_gemm.h), as the environment sets
// it.
#include "simd/cpu_features.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "simd/blas_gemm.h"
#include "simd/tile_gemm.h"
#include "tests/cli_runner.h"

namespace moeref::simd {
namespace {

using cli_tests::describe;
using cli_tests::run_cli;
using test_support::quote;
using ::testing::HasSubstr;

CpuFeatures with(bool avx2, bool fma, bool f, bool bw, bool dq, bool vl) {
  CpuFeatures cpu;
  cpu.avx2 = avx2;
  cpu.fma = fma;
  cpu.avx512f = f;
  cpu.avx512bw = bw;
  cpu.avx512dq = dq;
  cpu.avx512vl = vl;
  return cpu;
}

// The feature sets, in the order of the table's columns.
const std::array<CpuFeatures, 6> kFeatureSets = {
    with(false, false, false, false, false, false),  // none (SSE only: Prescott .. Nehalem)
    with(true, false, false, false, false, false),   // AVX2 without FMA
    with(true, true, false, false, false, false),    // AVX2 + FMA (Haswell, Zen 1-3)
    with(true, true, true, false, false, false),     // + AVX-512 F alone (Knights Landing)
    with(true, true, true, true, true, true),        // + AVX-512 F, BW, DQ, VL (Skylake-SP on)
    with(false, false, true, true, true, true),      // AVX-512 reported without AVX2 and FMA
};

struct CoreCase {
  const char* reported;
  std::array<const char*, 6> chosen;  // per feature set above
};

// llama.cpp-style table: what OpenBLAS reported, and what runs on each feature set.
const std::vector<CoreCase> kCoreCases = {
    {"Prescott", {"Prescott", "Prescott", "Haswell", "Haswell", "SkylakeX", "Prescott"}},
    {"Nehalem", {"Nehalem", "Nehalem", "Haswell", "Haswell", "SkylakeX", "Nehalem"}},
    {"Sandybridge",
     {"Sandybridge", "Sandybridge", "Haswell", "Haswell", "SkylakeX", "Sandybridge"}},
    {"Haswell", {"Haswell", "Haswell", "Haswell", "Haswell", "SkylakeX", "Haswell"}},
    {"Zen", {"Zen", "Zen", "Zen", "Zen", "SkylakeX", "Zen"}},
    {"SkylakeX", {"SkylakeX", "SkylakeX", "Haswell", "Haswell", "SkylakeX", "SkylakeX"}},
    {"Cooperlake", {"Cooperlake", "Cooperlake", "Haswell", "Haswell", "Cooperlake", "Cooperlake"}},
    {"SapphireRapids",
     {"SapphireRapids", "SapphireRapids", "Haswell", "Haswell", "SapphireRapids",
      "SapphireRapids"}},
    {"Excavator", {"Excavator", "Excavator", "Haswell", "Haswell", "SkylakeX", "Excavator"}},
    {"a core of a later OpenBLAS",
     {"a core of a later OpenBLAS", "a core of a later OpenBLAS", "Haswell", "Haswell", "SkylakeX",
      "a core of a later OpenBLAS"}},
    {"", {"", "", "Haswell", "Haswell", "SkylakeX", ""}},
    {"haswell", {"haswell", "haswell", "Haswell", "Haswell", "SkylakeX", "haswell"}},  // spelling
};

TEST(BestBlasCore, EveryReportedNameOnEveryFeatureSet) {
  for (const CoreCase& c : kCoreCases) {
    for (size_t f = 0; f < kFeatureSets.size(); ++f) {
      EXPECT_EQ(best_blas_core(c.reported, kFeatureSets[f]), c.chosen[f])
          << "reported \"" << c.reported << "\", feature set " << f;
    }
  }
}

// Each of AVX-512 F, BW, DQ and VL is needed for the AVX-512 kernels: without any one of them the
// CPU gets what AVX2 + FMA gets.
TEST(BestBlasCore, EveryAvx512SubsetCountsAsAvx2) {
  for (int missing = 0; missing < 4; ++missing) {
    const CpuFeatures cpu =
        with(true, true, missing != 0, missing != 1, missing != 2, missing != 3);
    for (const CoreCase& c : kCoreCases) {
      EXPECT_EQ(best_blas_core(c.reported, cpu), c.chosen[2])
          << "reported \"" << c.reported << "\", AVX-512 flag " << missing << " missing";
    }
  }
}

// The kernels this CPU should run, from its features as the compiler's runtime reads them.
std::optional<std::string> best_for_this_cpu() {
  __builtin_cpu_init();
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2_fma && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    return "SkylakeX";
  }
  if (avx2_fma) return "Haswell";
  return std::nullopt;
}

// OpenBLAS told to pick its SSE3 kernels (as it does on its own on a Sapphire Rapids Xeon): the
// moeref program reports, and runs, the best set this CPU supports instead.
TEST(BlasKernels, ReselectedInARealProcessFromAForcedPrescott) {
  const std::optional<std::string> best = best_for_this_cpu();
  if (!best) GTEST_SKIP() << "this CPU has no AVX2 + FMA: nothing better than OpenBLAS's choice";
  const char* saved = std::getenv("OPENBLAS_CORETYPE");
  const std::optional<std::string> restore =
      saved ? std::optional<std::string>(saved) : std::nullopt;
  setenv("OPENBLAS_CORETYPE", "Prescott", 1);
  const cli_tests::CliResult r =
      run_cli("stats " + quote(std::string(MOEREF_SOURCE_DIR) + "/configs/tiny.json"));
  if (restore) {
    setenv("OPENBLAS_CORETYPE", restore->c_str(), 1);
  } else {
    unsetenv("OPENBLAS_CORETYPE");
  }
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr("OpenBLAS " + *best + " (OpenBLAS chose Prescott), Highway "));
}

// The tiles' token prefetch (simd/tile_gemm.h), as MOEREF_TILE_TOKEN_PREFETCH sets it: forced on
// or off in a real process, and a value it does not take refused by name.
TEST(TileTokenPrefetch, SetByTheEnvironmentInARealProcess) {
  const char* saved = std::getenv(kTokenPrefetchVariable);
  const std::optional<std::string> restore =
      saved ? std::optional<std::string>(saved) : std::nullopt;
  const std::string tiny = quote(std::string(MOEREF_SOURCE_DIR) + "/configs/tiny.json");
  for (const char* value : {"on", "off"}) {
    setenv(kTokenPrefetchVariable, value, 1);
    const cli_tests::CliResult r = run_cli("stats " + tiny);
    ASSERT_EQ(r.exit_code, 0) << describe(r);
    EXPECT_THAT(r.out, HasSubstr(std::string(", tile token prefetch ") + value + "\n"));
  }
  // Refused where the kernels are named and where the simd backend is chosen.
  setenv(kTokenPrefetchVariable, "yes", 1);
  const std::vector<cli_tests::CliResult> refused = {
      run_cli("stats " + tiny),
      run_cli("--backend simd run " + tiny + " --tokens 1 --max-new-tokens 1")};
  if (restore) {
    setenv(kTokenPrefetchVariable, restore->c_str(), 1);
  } else {
    unsetenv(kTokenPrefetchVariable);
  }
  for (const cli_tests::CliResult& r : refused) {
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_THAT(r.err,
                HasSubstr("MOEREF_TILE_TOKEN_PREFETCH is \"yes\": it takes on, off or measure"));
  }
}

// Each value the variable takes, and a table of those it does not (case, empty, numbers).
TEST(TileTokenPrefetch, SettingOfEachValue) {
  EXPECT_EQ(token_prefetch_setting(nullptr), TokenPrefetch::kMeasured);
  EXPECT_EQ(token_prefetch_setting("measure"), TokenPrefetch::kMeasured);
  EXPECT_EQ(token_prefetch_setting("on"), TokenPrefetch::kOn);
  EXPECT_EQ(token_prefetch_setting("off"), TokenPrefetch::kOff);
  for (const char* bad : {"", "ON", "Off", "1", "0", "yes", "on ", "measured"}) {
    try {
      token_prefetch_setting(bad);
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(),
                  HasSubstr(std::string("MOEREF_TILE_TOKEN_PREFETCH is \"") + bad + "\""));
    }
  }
}

// In this process: whatever OpenBLAS chose, the set in use is the best this CPU supports.
TEST(BlasKernels, InUseIsTheBestThisCpuSupports) {
  const std::optional<std::string> best = best_for_this_cpu();
  const BlasCores cores = blas_cores();
  if (!best) {
    EXPECT_EQ(cores.in_use, cores.chosen_by_openblas);
  } else if (*best == "SkylakeX") {
    EXPECT_THAT(cores.in_use, ::testing::AnyOf("SkylakeX", "Cooperlake", "SapphireRapids"));
  } else {
    EXPECT_THAT(cores.in_use, ::testing::AnyOf("Haswell", "Zen"));
  }
}

}  // namespace
}  // namespace moeref::simd
