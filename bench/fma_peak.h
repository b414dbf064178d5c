// The machine's floating-point peak as a Highway probe measures it: on every OpenMP thread,
// independent fused multiply-add chains at the widest vector Highway's dynamic dispatch picks on
// this CPU. The compute roofline of the benchmarks is the higher of this and OpenBLAS's sgemm
// (bench/sgemm_peak.h), so that it does not rest on the library's guess of the CPU: OpenBLAS with
// kernels below the CPU's (its SSE3 kernels on a Sapphire Rapids Xeon) is measured against what the
// CPU can do, not against itself.
//
// Each chain is acc = acc * m + a, one FMA per step, waiting on its own previous result: 12
// chains hide the FMA latency (4 cycles) on two FMA units, with 14 of the 16 vector registers of
// AVX2 in use. FLOPs are counted as 2 per lane per FMA. Linked into every benchmark program.
#pragma once

namespace moeref::bench {

// The best FLOP/s of `repeats` timed runs (after one untimed run) of the probe on all threads.
double fma_peak_flops_per_second(int repeats);

// Float lanes of the vector the probe runs at (16 with AVX-512, 8 with AVX2).
int fma_peak_lanes();

}  // namespace moeref::bench
