#include "runtime/kernel_sets.h"

#include <stdexcept>

#include "simd/kernels.h"

namespace moeref::runtime {

const Kernels& kernels_by_name(const std::string& name) {
  if (name == "ref") return ref_kernels();
  if (name == "simd") return simd::simd_kernels();
  throw std::invalid_argument("unknown backend \"" + name + "\" (ref or simd)");
}

}  // namespace moeref::runtime
