// simd/'s matmul of several token rows, method against method, at the shapes of a prefill of the
// small config (docs/performance.md, section "The prefill GEMM"): the register-tile GEMM
// (simd/tile_gemm.h) and OpenBLAS as simd/ runs it (simd/blas_gemm.h), each called for any row
// count, on one thread (an expert's product while the experts run in parallel) and on all of them
// (the shared weights). Each result is a ratio measured in this process: GFLOP/s against the FMA
// probe at the same thread count (bench/fma_peak.h) and, for the tiles, against OpenBLAS at the
// same shape. BM_TilesTokensPrefetched runs each shape with the tiles' tokens not prefetched (last
// argument 0) and prefetched (1): the choice the tiles' first call makes by timing one shape both
// ways (simd/tile_gemm.h), here at every shape.
//
// Weights are cycled through 256 MiB or four times the L3 cache (bench/weight_pool.h), so that each
// call reads them from memory as a prefill does (an expert's weights are read once per layer). Each
// benchmark reports its best call: on a shared machine the other calls measure the other work as
// well. On one thread it also reports the best call in the thread's own CPU time, against the probe
// timed the same way (gflops_thread_cpu, of_fma_peak_thread_cpu, over_openblas_thread_cpu), which
// the time other processes take from the core does not count: the figures to compare on a loaded
// machine.
//
//   build/bench/gemm_bench --benchmark_counters_tabular=true
//   build/bench/gemm_bench --benchmark_filter='/64/' --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "bench/fma_peak.h"
#include "bench/sgemm_peak.h"
#include "bench/weight_pool.h"
#include "simd/blas_gemm.h"
#include "simd/tile_gemm.h"

namespace moeref::bench {
namespace {

// The FMA probe's FLOP/s on `threads` threads, measured once per thread count.
double fma_peak(int threads) {
  static std::map<int, double> peaks;
  if (!peaks.contains(threads)) {
    const int all = omp_get_max_threads();
    omp_set_num_threads(threads);
    peaks[threads] = fma_peak_flops_per_second(5);
    omp_set_num_threads(all);
  }
  return peaks[threads];
}

double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

// OpenBLAS's best GFLOP/s per {rows, in, out, threads} (wall time, thread CPU time), for the
// tiles' ratios.
struct Rates {
  double wall = 0, thread_cpu = 0;
};
std::map<std::tuple<int64_t, int64_t, int64_t, int>, Rates>& openblas_rates() {
  static std::map<std::tuple<int64_t, int64_t, int64_t, int>, Rates> rates;
  return rates;
}

using Gemm = void (*)(const float*, const float*, float*, int64_t, int64_t, int64_t);

// range: rows, in, out, threads (0: all of OpenMP's).
void run_gemm(benchmark::State& state, Gemm gemm, bool is_openblas) {
  const int64_t rows = state.range(0), in = state.range(1), out = state.range(2);
  const int all = omp_get_max_threads();
  const int threads = state.range(3) == 0 ? all : static_cast<int>(state.range(3));
  const double peak = fma_peak(threads);
  simd::configure_blas();
  WeightPool weights(out, in);
  std::vector<float> x(static_cast<size_t>(rows * in)), y(static_cast<size_t>(rows * out));
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * static_cast<float>(i % 7) - 0.03f;
  const double flops = 2.0 * static_cast<double>(rows * in * out);
  omp_set_num_threads(threads);
  Rates best;
  for (auto _ : state) {
    const float* w = weights.next();
    const double cpu_start = thread_cpu_seconds();
    const double call = seconds_of([&] { gemm(x.data(), w, y.data(), rows, in, out); });
    const double cpu = thread_cpu_seconds() - cpu_start;
    state.SetIterationTime(call);
    best.wall = std::max(best.wall, flops / call);
    best.thread_cpu = std::max(best.thread_cpu, flops / cpu);
  }
  omp_set_num_threads(all);
  state.counters["gflops"] = best.wall / 1e9;
  state.counters["threads"] = threads;
  state.counters["fma_peak_gflops"] = peak / 1e9;
  state.counters["of_fma_peak"] = best.wall / peak;
  if (threads == 1) {
    static const double thread_cpu_peak = fma_peak_thread_cpu_flops_per_second(5);
    state.counters["gflops_thread_cpu"] = best.thread_cpu / 1e9;
    state.counters["of_fma_peak_thread_cpu"] = best.thread_cpu / thread_cpu_peak;
  }
  const auto shape = std::tuple(rows, in, out, threads);
  if (is_openblas) {
    openblas_rates()[shape] = best;
  } else if (openblas_rates().contains(shape)) {
    state.counters["over_openblas"] = best.wall / openblas_rates()[shape].wall;
    if (threads == 1) {
      state.counters["over_openblas_thread_cpu"] =
          best.thread_cpu / openblas_rates()[shape].thread_cpu;
    }
  }
}

void BM_OpenBlas(benchmark::State& state) { run_gemm(state, simd::sgemm_xwt, true); }

// The tiles with their tokens prefetched as `prefetch` says.
template <simd::TokenPrefetch prefetch>
void tiles(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out) {
  simd::tile_gemm_xwt(x, w, y, rows, in, out, prefetch);
}

// The tiles as simd/ runs them, their tokens prefetched or not as measured on this CPU (the
// counter tokens_prefetched).
void BM_Tiles(benchmark::State& state) {
  run_gemm(state, tiles<simd::TokenPrefetch::kMeasured>, false);
  state.counters["tokens_prefetched"] = simd::tile_gemm_prefetches_tokens() ? 1 : 0;
}

// The tiles with the choice forced, each shape both ways in turn (range(4): 1 if prefetched): what
// the measurement of the first call decides between, at every shape.
void BM_TilesTokensPrefetched(benchmark::State& state) {
  run_gemm(state,
           state.range(4) == 1 ? tiles<simd::TokenPrefetch::kOn> : tiles<simd::TokenPrefetch::kOff>,
           false);
}

// A prefill's products of small, f(rows, in, out, threads): an expert's gate and up, its down
// (rows: the tokens routed to it, 0 to ~500 in the benchmark's 512-token prefill; 2048, the tiles'
// last row count), q and o, the LM head; one thread and all.
template <class F>
void for_each_prefill_shape(const F& f) {
  for (int64_t threads : {1, 0}) {
    for (int64_t rows : {16, 32, 64, 96, 128, 192, 256, 384, 512, 2048}) {
      f(rows, 512, 1024, threads);
      f(rows, 1024, 512, threads);
    }
    for (int64_t rows : {128, 512}) {
      f(rows, 512, 512, threads);
      f(rows, 512, 32000, threads);
    }
  }
}

void prefill_shapes(benchmark::internal::Benchmark* b) {
  for_each_prefill_shape([b](int64_t rows, int64_t in, int64_t out, int64_t threads) {
    b->Args({rows, in, out, threads});
  });
}

// Each shape without and then with the tokens prefetched.
void prefill_shapes_each_way(benchmark::internal::Benchmark* b) {
  for_each_prefill_shape([b](int64_t rows, int64_t in, int64_t out, int64_t threads) {
    b->Args({rows, in, out, threads, 0});
    b->Args({rows, in, out, threads, 1});
  });
}

// OpenBLAS first, so that each tile result has its ratio.
BENCHMARK(BM_OpenBlas)
    ->Apply(prefill_shapes)
    ->MinTime(0.2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Tiles)
    ->Apply(prefill_shapes)
    ->MinTime(0.2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TilesTokensPrefetched)
    ->Apply(prefill_shapes_each_way)
    ->MinTime(0.2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace moeref::bench
