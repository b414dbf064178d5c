// Linked into every benchmark program: it runs as the moeref program does, with Tensors on huge
// pages (runtime/huge_pages.h) and freed memory kept for reuse (runtime/freed_memory.h), both set
// before main so that they cover the weights as well;
// and the kernels simd/ runs on this CPU are in the context of every benchmark table (its JSON's
// "context", the header of its console output), next to the CPU they ran on:
//   openblas_core        the OpenBLAS kernel set in use (simd/blas_gemm.h re-selects it)
//   openblas_chose       the one OpenBLAS chose for this CPU by itself
//   openblas_best_core   the best set this CPU supports (simd/cpu_features.h); bench/report.py
//                        warns when openblas_core is not it
//   highway_target       the Highway target of simd/ and of the FMA probe (bench/fma_peak.h)
//   tile_token_prefetch  "on" where the register tiles prefetch their tokens in this process, "off"
//                        where not (measured at start-up, or as MOEREF_TILE_TOKEN_PREFETCH sets
//                        it: simd/tile_gemm.h)
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include "runtime/freed_memory.h"
#include "runtime/huge_pages.h"
#include "simd/blas_gemm.h"
#include "simd/cpu_features.h"
#include "simd/tile_gemm.h"

namespace {

[[maybe_unused]] const bool kMemorySetUp =
    (moeref::runtime::use_huge_pages_for_tensors(), moeref::runtime::retain_freed_memory(), true);

bool add_kernels_to_context() {
  bool tiles_prefetch = false;
  try {
    tiles_prefetch = moeref::simd::tile_gemm_prefetches_tokens();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::exit(2);
  }
  const moeref::simd::BlasCores cores = moeref::simd::blas_cores();
  benchmark::AddCustomContext("openblas_core", cores.in_use);
  benchmark::AddCustomContext("openblas_chose", cores.chosen_by_openblas);
  benchmark::AddCustomContext(
      "openblas_best_core",
      moeref::simd::best_blas_core(cores.in_use, moeref::simd::this_cpu_features()));
  benchmark::AddCustomContext("highway_target", moeref::simd::highway_target());
  benchmark::AddCustomContext("tile_token_prefetch", tiles_prefetch ? "on" : "off");
  return true;
}

[[maybe_unused]] const bool kKernelsInContext = add_kernels_to_context();

}  // namespace
