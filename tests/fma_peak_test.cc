// The FMA probe of the benchmarks' compute roofline (bench/fma_peak.h) runs independent chains:
// chains that computed the same values would be one computation to the compiler, folded into a
// single latency-bound chain and counted as many, a peak several times the machine's.
#include "bench/fma_peak.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <set>
#include <vector>

#include "tests/simd_targets.h"

namespace moeref::bench {
namespace {

using test_support::for_each_target;

// Every chain follows acc = acc * m + a from its documented start, within the roundings of its
// steps (one per step with an FMA unit, as std::fmaf; two on targets that multiply and add
// apart), and no two chains hold the same value.
TEST(FmaPeak, ChainsAreDistinctAndFollowTheirRecurrenceOnEveryTarget) {
  for_each_target([] {
    for (size_t steps : {size_t{0}, size_t{1}, size_t{1000}}) {
      const std::vector<float> ends = fma_chain_values(steps);
      ASSERT_EQ(ends.size(), kFmaChains);
      for (size_t c = 0; c < kFmaChains; ++c) {
        float expected = 1.0f + static_cast<float>(c) / 16.0f;
        for (size_t i = 0; i < steps; ++i) expected = std::fmaf(expected, 1.0f - 1e-6f, 1e-6f);
        const double roundings = 2.0 * static_cast<double>(steps);
        EXPECT_NEAR(ends[c], expected, roundings * 0x1.0p-23)
            << "chain " << c << " after " << steps << " steps";
      }
      EXPECT_EQ(std::set<float>(ends.begin(), ends.end()).size(), kFmaChains)
          << "after " << steps << " steps";
    }
  });
}

}  // namespace
}  // namespace moeref::bench
