#include "simd/cpu_features.h"

#include <hwy/targets.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace moeref::simd {

namespace {

// How much of the CPU an OpenBLAS kernel set uses; an unknown name counts as below AVX2.
enum class VectorLevel { kBelowAvx2, kAvx2Fma, kAvx512 };

VectorLevel level_of_core(std::string_view core) {
  constexpr std::array<std::string_view, 3> kAvx512 = {"SkylakeX", "Cooperlake", "SapphireRapids"};
  constexpr std::array<std::string_view, 2> kAvx2 = {"Haswell", "Zen"};
  if (std::ranges::find(kAvx512, core) != kAvx512.end()) return VectorLevel::kAvx512;
  if (std::ranges::find(kAvx2, core) != kAvx2.end()) return VectorLevel::kAvx2Fma;
  return VectorLevel::kBelowAvx2;
}

VectorLevel level_of_cpu(const CpuFeatures& cpu) {
  if (!cpu.avx2 || !cpu.fma) return VectorLevel::kBelowAvx2;
  if (cpu.avx512f && cpu.avx512bw && cpu.avx512dq && cpu.avx512vl) return VectorLevel::kAvx512;
  return VectorLevel::kAvx2Fma;
}

}  // namespace

CpuFeatures this_cpu_features() {
  __builtin_cpu_init();
  CpuFeatures cpu;
  cpu.avx2 = __builtin_cpu_supports("avx2");
  cpu.fma = __builtin_cpu_supports("fma");
  cpu.avx512f = __builtin_cpu_supports("avx512f");
  cpu.avx512bw = __builtin_cpu_supports("avx512bw");
  cpu.avx512dq = __builtin_cpu_supports("avx512dq");
  cpu.avx512vl = __builtin_cpu_supports("avx512vl");
  return cpu;
}

std::string best_blas_core(std::string_view reported, const CpuFeatures& cpu) {
  const VectorLevel can = level_of_cpu(cpu);
  if (can == VectorLevel::kBelowAvx2 || level_of_core(reported) == can) {
    return std::string(reported);
  }
  return can == VectorLevel::kAvx512 ? "SkylakeX" : "Haswell";
}

const char* highway_target() {
  const std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  return targets.empty() ? "none" : hwy::TargetName(targets.front());  // best first
}

}  // namespace moeref::simd
