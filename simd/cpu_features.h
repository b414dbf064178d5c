// What simd/ runs on this CPU: the OpenBLAS kernel set ("core") and the Highway target, both
// chosen by what the CPU can do (its instruction sets), never by its name.
//
// OpenBLAS 0.3.21 (Debian 12) picks its kernels by the CPU's family and model. A CPU newer than it
// may get an older core's kernels: an AMD Zen 5 its AVX2 "Haswell" kernels, an Intel Sapphire or
// Emerald Rapids Xeon its SSE3 "Prescott" kernels (a quarter of the SkylakeX kernels' 2048^3 sgemm
// on one of them, docs/performance.md); a Zen 4 got the AVX-512 "Cooperlake" ones.
// best_blas_core() names the kernel set to run instead; simd/blas_gemm.h applies it.
#pragma once

#include <string>
#include <string_view>

namespace moeref::simd {

// The instruction sets OpenBLAS's x86-64 kernel sets are written for.
struct CpuFeatures {
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
};

// This CPU's, from CPUID (which also checks that the OS saves the vector registers).
CpuFeatures this_cpu_features();

// The OpenBLAS core to run, given the one it reported (openblas_get_corename()) and the CPU's
// features: with AVX-512 F, BW, DQ and VL, an AVX-512 set ("SkylakeX", "Cooperlake" or
// "SapphireRapids" as reported, else "SkylakeX", the most 0.3.21 can be told to select); with AVX2
// and FMA but not those, "Haswell" or "Zen" as reported, else "Haswell" (also in place of an
// AVX-512 set the CPU cannot run); with less, the reported core, unchanged. Names are compared as
// OpenBLAS spells them, an unknown name as a set below AVX2. Pure: no CPU or library is consulted.
std::string best_blas_core(std::string_view reported, const CpuFeatures& cpu);

// The Highway target that the dynamic dispatch of simd/ picks on this CPU, e.g. "AVX3" (AVX-512)
// or "AVX2".
const char* highway_target();

}  // namespace moeref::simd
