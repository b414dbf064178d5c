// Runs a check once for every SIMD target Highway compiled and this CPU supports (Highway's
// HWY_EXPORT_AND_TEST_P, which Debian's Highway 1.0.3 does not ship for gtest's own main).
#pragma once

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cstdint>
#include <vector>

namespace moeref::test_support {

template <class Check>
void for_each_target(const Check& check) {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  ASSERT_FALSE(targets.empty());
  for (int64_t target : targets) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    check();
  }
  hwy::SetSupportedTargetsForTest(0);
}

}  // namespace moeref::test_support
