// The RoPE scalings the named op cases cover (golden/op_cases.h, "rope-linear-hd16" ...): each
// kind of docs/model.md once, YaRN also with its optional parameters, every one with positions past
// its pretraining context so that the scaling changes the rotation. The simd backend's RoPE test
// runs the same scalings, so that a scaling the golden sets cover is one the fast path is tested
// on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ref/ops/rope_scaling.h"

namespace moeref::golden {

// One named rope case: 3 heads, theta 10000, random x, the positions given.
struct NamedRopeCase {
  std::string name;  // the op case's name
  int64_t head_dim;
  RopeScaling scaling;
  std::vector<int32_t> positions;  // with a scaling kind, some past its pretraining context
  std::string description;         // the op case's manifest "description"
};

// In a fixed order (the order of the op cases).
const std::vector<NamedRopeCase>& scaled_rope_cases();

}  // namespace moeref::golden
