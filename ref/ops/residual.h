// The residual connection: x += branch, elementwise, each sum rounded once to fp32.
// x, branch: [n]; they must not overlap.
#pragma once

#include <cstdint>

namespace moeref::ref {

void residual_add(float* x, const float* branch, int64_t n);

}  // namespace moeref::ref
