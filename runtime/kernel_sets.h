// The kernel sets a program picks by name (the moeref program's --backend, the benchmarks): "ref",
// the reference ops of ref/ops/ (ref_kernels(), ref/ops/kernels.h), or "simd", their fast twins of
// simd/ (simd_kernels(), simd/kernels.h). Here rather than in either library: the reference does
// not know the fast path, and the fast path's choice is the program's.
#pragma once

#include <string>

#include "ref/ops/kernels.h"

namespace moeref::runtime {

// The kernel set called `name`; throws std::invalid_argument naming the accepted names otherwise.
const Kernels& kernels_by_name(const std::string& name);

}  // namespace moeref::runtime
