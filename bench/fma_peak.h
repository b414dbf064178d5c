// The machine's floating-point peak as a Highway probe measures it: on every OpenMP thread,
// independent fused multiply-add chains at the widest vector Highway's dynamic dispatch picks on
// this CPU. The compute roofline of the benchmarks is the higher of this and OpenBLAS's sgemm
// (bench/sgemm_peak.h), so that it does not rest on the library's guess of the CPU: OpenBLAS with
// kernels below the CPU's (its SSE3 kernels on a Sapphire Rapids Xeon) is measured against what the
// CPU can do, not against itself.
//
// Each chain is acc = acc * m + a (m = 1 - 1e-6, a = 1e-6), one FMA per step, waiting on its own
// previous result: 12 chains hide the FMA latency (4 cycles) on two FMA units, with 14 of the 16
// vector registers of AVX2 in use. FLOPs are counted as 2 per lane per FMA. Chain c starts at
// 1 + c / 16: chains that started equal would be one computation, which the compiler folds into a
// single chain (GCC 12 did: one FMA per step, bound by its latency, counted 12 times, three times
// the true peak of a Zen 4). Linked into every benchmark program.
#pragma once

#include <cstddef>
#include <vector>

namespace moeref::bench {

// Chains of the probe.
inline constexpr size_t kFmaChains = 12;

// The best FLOP/s of `repeats` timed runs (after one untimed run) of the probe on all threads.
double fma_peak_flops_per_second(int repeats);

// The same on the calling thread alone, timed in that thread's CPU time: one core's peak, which
// the time other processes take from the core does not lower (for one-thread ratios on a shared
// machine).
double fma_peak_thread_cpu_flops_per_second(int repeats);

// Float lanes of the vector the probe runs at (16 with AVX-512, 8 with AVX2).
int fma_peak_lanes();

// Each chain's value (its first lane) after `steps` steps on the calling thread, at the target
// Highway's dispatch picks: kFmaChains values, what the probe computes, for tests.
std::vector<float> fma_chain_values(size_t steps);

}  // namespace moeref::bench
