// The small config (configs/small.json) against its rooflines, measured in one run
// (docs/performance.md):
//
// - baselines: the compute peak, the higher of OpenBLAS's sgemm (the best of n^3 products, with
//   the best kernels the CPU supports) and a Highway FMA-throughput probe (bench/fma_peak.h); and
//   the read bandwidth of a streaming SIMD read of 1 GiB over all threads
//   (bench/read_bandwidth-inl.h);
// - kernels: the simd one-token matmul (matrix-vector) at the small config's shapes, in GB/s of
//   weights read from memory, and the simd matmul (sgemm) at the shapes of a 512-token prefill,
//   in GFLOP/s;
// - end to end: prefill of 128 and 512 tokens and decode, ref and simd, in tokens/s, each as a
//   fraction of its roofline: prefill FLOPs per token x tokens/s / compute peak, decode bytes read
//   per token x tokens/s / read bandwidth (bench/roofline_counts.h). Prefill is also measured
//   against the roofline model, in which each expert of its routing is compute- or read-bound,
//   whichever is slower (the prefill targets are judged there). Prefill and decode also read the
//   model's weights in place just before and after they run: on a shared machine the bandwidth
//   moves during a run, and their reads are judged at the best read of the run, never a slow
//   moment's;
// - the peak resident memory of the end-to-end part against weights + KV cache.
//
// Benchmarks run in the order they are registered: the baselines first, so that every fraction
// uses the machine's figures of this run (a filtered run measures a missing baseline on demand).
//
//   build/bench/roofline_bench --benchmark_counters_tabular=true
//   python3 bench/report.py [--json]       the table of results, rooflines, fractions, targets
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "bench/fma_peak.h"
#include "bench/kernel_switch.h"
#include "bench/roofline_counts.h"
#include "bench/sgemm_peak.h"
#include "bench/weight_pool.h"
#include "ref/io/config.h"
#include "ref/model/kv_cache.h"
#include "ref/model/model.h"
#include "ref/model/stats.h"
#include "ref/model/weights.h"
#include "runtime/huge_pages.h"
#include "runtime/kernel_sets.h"
#include "simd/blas_gemm.h"
#include "simd/cpu_features.h"
#include "simd/kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/read_bandwidth-inl.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// The static target's pass; foreach_target.h compiled the others.
#include "bench/read_bandwidth-inl.h"

namespace moeref::bench {

HWY_EXPORT(SumOfFloats);

namespace {

constexpr int64_t kReadBytes = int64_t{1} << 30;

struct Baselines {
  double sgemm_flops_per_second = 0;
  double fma_flops_per_second = 0;
  double read_bytes_per_second = 0;
};

Baselines& baselines() {
  static Baselines measured;
  return measured;
}

// The best FLOP/s of `repeats` n x n x n products of bench/sgemm_peak.h after one untimed call;
// each timed call is reported to `state` when given.
double measure_sgemm(int64_t n, int64_t repeats, benchmark::State* state) {
  SgemmProduct product(n);
  double best = 0;
  auto timed_product = [&] {
    const double seconds = product.timed();
    best = std::max(best, product.flops() / seconds);
    return seconds;
  };
  if (state != nullptr) {
    for (auto _ : *state) state->SetIterationTime(timed_product());
  } else {
    for (int64_t r = 0; r < repeats; ++r) timed_product();
  }
  baselines().sgemm_flops_per_second = std::max(baselines().sgemm_flops_per_second, best);
  return best;
}

// The best bytes/s of reading 1 GiB with every OpenMP thread, each its own contiguous part
// (written first by the same thread, so that its pages sit near it). The buffer asks for 2 MiB
// pages, which this kernel only grants on request (transparent huge pages in "madvise" mode):
// fewer TLB misses, the best read this machine can do. Not through runtime/huge_pages.h:
// its cache would keep the freed GiB resident when the peak memory is reset for the model.
double measure_read_bandwidth(int64_t repeats, benchmark::State* state) {
  constexpr int64_t n = kReadBytes / static_cast<int64_t>(sizeof(float));
  const std::unique_ptr<float[], decltype(&std::free)> values(
      static_cast<float*>(std::aligned_alloc(runtime::kHugePageBytes, kReadBytes)), &std::free);
  if (values == nullptr) throw std::bad_alloc();
  madvise(values.get(), kReadBytes, MADV_HUGEPAGE);  // a hint: without it, 4 KiB pages
  auto part = [](int thread, int threads) {
    const int64_t per_thread = (n / threads) / 16 * 16;  // whole 64-byte lines
    const int64_t begin = per_thread * thread;
    return std::pair(begin, thread + 1 == threads ? n : begin + per_thread);
  };
#pragma omp parallel
  {
    const auto [begin, end] = part(omp_get_thread_num(), omp_get_num_threads());
    std::fill(values.get() + begin, values.get() + end, 1.0f);
  }
  double best = 0;
  auto timed_read = [&] {
    float total = 0;
    const double seconds = seconds_of([&] {
#pragma omp parallel reduction(+ : total)
      {
        const auto [begin, end] = part(omp_get_thread_num(), omp_get_num_threads());
        total += HWY_DYNAMIC_DISPATCH(SumOfFloats)(values.get() + begin,
                                                   static_cast<size_t>(end - begin));
      }
    });
    benchmark::DoNotOptimize(total);
    best = std::max(best, static_cast<double>(kReadBytes) / seconds);
    return seconds;
  };
  timed_read();  // untimed: wakes the thread team and the memory controller
  best = 0;
  if (state != nullptr) {
    for (auto _ : *state) state->SetIterationTime(timed_read());
  } else {
    for (int64_t r = 0; r < repeats; ++r) timed_read();
  }
  baselines().read_bytes_per_second = std::max(baselines().read_bytes_per_second, best);
  return best;
}

// The best bytes/s of `repeats` reads of every weight of the model where it lies (on 4 KiB pages,
// unlike the baseline's buffer), with every thread, in 1 MiB pieces: the bandwidth a decode
// benchmark had just before and after it ran, which on a shared machine may be far from the
// baseline's.
double measure_weights_read(const ModelWeights& weights, int64_t repeats) {
  const std::vector<std::span<const float>> pieces = weight_pieces(weights, int64_t{1} << 18);
  const int64_t n = static_cast<int64_t>(pieces.size());
  double bytes = 0;
  for (const std::span<const float> piece : pieces)
    bytes += 4.0 * static_cast<double>(piece.size());
  double best = 0;
  for (int64_t r = 0; r < repeats; ++r) {
    float total = 0;
    const double seconds = seconds_of([&] {
#pragma omp parallel for schedule(static) reduction(+ : total)
      for (int64_t i = 0; i < n; ++i) {
        total += HWY_DYNAMIC_DISPATCH(SumOfFloats)(pieces[i].data(), pieces[i].size());
      }
    });
    benchmark::DoNotOptimize(total);
    best = std::max(best, bytes / seconds);
  }
  return best;
}

// Timed runs of the FMA probe, the best kept: about half a second. Five (a twentieth of a second)
// measured half the peak of a 2-vCPU Xeon guest in two runs of three, below the sgemm of the same
// runs: while the hypervisor ran both threads on one core, every run of the window did.
constexpr int kFmaProbeRepeats = 40;

// The compute roofline: the higher of the sgemm and FMA baselines, each measured here if this
// run has not yet (a filtered run).
double compute_peak() {
  if (baselines().sgemm_flops_per_second == 0) measure_sgemm(2048, 5, nullptr);
  if (baselines().fma_flops_per_second == 0) {
    baselines().fma_flops_per_second = fma_peak_flops_per_second(kFmaProbeRepeats);
  }
  return std::max(baselines().sgemm_flops_per_second, baselines().fma_flops_per_second);
}

double read_bandwidth() {
  if (baselines().read_bytes_per_second == 0) measure_read_bandwidth(5, nullptr);
  return baselines().read_bytes_per_second;
}

void BM_0_SgemmPeak(benchmark::State& state) {
  const double best = measure_sgemm(state.range(0), 0, &state);
  state.counters["gflops"] = best / 1e9;
  state.counters["blas_threads"] = omp_get_max_threads();
  state.SetLabel(openblas_get_config());
}

// The FMA-throughput probe: the best of kFmaProbeRepeats runs on all threads, at the widest
// vector of this CPU.
void BM_0_FmaPeak(benchmark::State& state) {
  double best = 0;
  for (auto _ : state) best = std::max(best, fma_peak_flops_per_second(kFmaProbeRepeats));
  baselines().fma_flops_per_second = std::max(baselines().fma_flops_per_second, best);
  state.counters["gflops"] = best / 1e9;
  state.counters["lanes"] = fma_peak_lanes();
  state.counters["threads"] = omp_get_max_threads();
  state.SetLabel(simd::highway_target());
}

void BM_0_ReadBandwidth(benchmark::State& state) {
  const double best = measure_read_bandwidth(0, &state);
  state.counters["gbytes_per_s"] = best / 1e9;
  state.counters["threads"] = omp_get_max_threads();
  state.SetLabel(simd::highway_target());
}

BENCHMARK(BM_0_SgemmPeak)
    ->Arg(2048)
    ->Arg(4096)
    ->Iterations(4)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_0_FmaPeak)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_0_ReadBandwidth)->Iterations(8)->UseManualTime()->Unit(benchmark::kMillisecond);

// The simd one-token matmul, y = w x with w [out, in]: GB/s of weights against the bandwidth.
void BM_1_SimdMatvec(benchmark::State& state) {
  const int64_t out = state.range(0), in = state.range(1);
  WeightPool weights(out, in);
  std::vector<float> x(static_cast<size_t>(in), 0.5f), y(static_cast<size_t>(out));
  const Kernels& kernels = simd::simd_kernels();
  double seconds = 0;
  for (auto _ : state) {
    const float* w = weights.next();
    const double call = seconds_of([&] { kernels.matmul(x.data(), w, y.data(), 1, in, out); });
    state.SetIterationTime(call);
    seconds += call;
  }
  const double bytes_per_s =
      4.0 * static_cast<double>(out * in) * static_cast<double>(state.iterations()) / seconds;
  state.counters["gbytes_per_s"] = bytes_per_s / 1e9;
  state.counters["roofline_gbytes_per_s"] = read_bandwidth() / 1e9;
  state.counters["roofline_fraction"] = bytes_per_s / read_bandwidth();
}

// The simd matmul of several tokens (register tiles or OpenBLAS sgemm): GFLOP/s against the
// compute peak.
void BM_1_SimdMatmul(benchmark::State& state) {
  const int64_t rows = state.range(0), in = state.range(1), out = state.range(2);
  WeightPool weights(out, in);
  std::vector<float> x(static_cast<size_t>(rows * in)), y(static_cast<size_t>(rows * out));
  fill_pattern(x.data(), rows * in);
  const Kernels& kernels = simd::simd_kernels();
  double seconds = 0;
  for (auto _ : state) {
    const float* w = weights.next();
    const double call = seconds_of([&] { kernels.matmul(x.data(), w, y.data(), rows, in, out); });
    state.SetIterationTime(call);
    seconds += call;
  }
  const double flops_per_s = 2.0 * static_cast<double>(rows * in * out) *
                             static_cast<double>(state.iterations()) / seconds;
  state.counters["gflops"] = flops_per_s / 1e9;
  state.counters["roofline_gflops"] = compute_peak() / 1e9;
  state.counters["roofline_fraction"] = flops_per_s / compute_peak();
}

// small's shapes {out, in}: q and o, k and v, expert gate and up, expert down, router, LM head.
BENCHMARK(BM_1_SimdMatvec)
    ->Args({512, 512})
    ->Args({64, 512})
    ->Args({1024, 512})
    ->Args({512, 1024})
    ->Args({16, 512})
    ->Args({32000, 512})
    ->MinTime(0.2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
// A 512-token prefill's {rows, in, out}: q and o, k and v, an expert's gate and up and its down
// (512 tokens x top-2 over 16 experts: 64 rows each on average), the router, the LM head.
BENCHMARK(BM_1_SimdMatmul)
    ->Args({512, 512, 512})
    ->Args({512, 512, 64})
    ->Args({64, 512, 1024})
    ->Args({64, 1024, 512})
    ->Args({512, 512, 16})
    ->Args({512, 512, 32000})
    ->MinTime(0.2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// The small config's model, built once with a kernel switch (one copy of the weights for both
// backends). VmHWM is reset just before, so the peak it reports later is the end-to-end part's
// and not the baselines' 1 GiB buffer (already freed by then).
struct SmallModel {
  ModelConfig config;
  KernelSwitch kernels{ref_kernels()};
  std::unique_ptr<Model> model;
  bool peak_reset = false;
};

SmallModel& small_model() {
  static SmallModel* const small = [] {
    auto* s = new SmallModel;
    s->config = load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/small.json");
    s->peak_reset = reset_peak_resident_memory();
    s->model = std::make_unique<Model>(s->config, init_weights(s->config), s->kernels);
    return s;
  }();
  return *small;
}

std::vector<int32_t> prompt_tokens(int64_t n, int64_t vocab_size) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) tokens[t] = static_cast<int32_t>((t * 7919 + 1) % vocab_size);
  return tokens;
}

// tokens/s of the ref runs, for simd_over_ref.
std::map<std::pair<std::string, int64_t>, double>& ref_rates() {
  static std::map<std::pair<std::string, int64_t>, double> rates;
  return rates;
}

void report_speedup(benchmark::State& state, const std::string& backend, const std::string& phase,
                    int64_t tokens, double tokens_per_s) {
  state.counters["threads"] = omp_get_max_threads();
  if (backend == "ref") {
    ref_rates()[{phase, tokens}] = tokens_per_s;
  } else if (ref_rates().contains({phase, tokens})) {
    state.counters["simd_over_ref"] = tokens_per_s / ref_rates()[{phase, tokens}];
  }
}

// One forward call of the whole prompt into an empty cache; the logits of every position are
// computed and freed inside the timing, as Model::forward returns them.
void BM_2_Prefill(benchmark::State& state, const char* backend) {
  SmallModel& small = small_model();
  small.kernels.select(runtime::kernels_by_name(backend));
  const int64_t n = state.range(0);
  const std::vector<int32_t> prompt = prompt_tokens(n, small.config.vocab_size);
  // One untimed call first: the first call of a size grows the kernels' scratch buffers and maps
  // their pages, a cost a model serving prefills pays once (on the Zen 5 of docs/performance.md,
  // simd's first calls took 73 ms at 128 tokens and 129 ms at 512, the next ones 33 and 118).
  // Its routing (every call routes the same) is the roofline model's.
  std::vector<std::vector<int64_t>> routing;
  small.kernels.record_routing(&routing);
  {
    KvCache cache = small.model->new_cache();
    benchmark::DoNotOptimize(small.model->forward(prompt, cache).logits.data());
  }
  small.kernels.record_routing(nullptr);
  double adjacent_read = measure_weights_read(small.model->weights(), 3);
  double seconds = 0;
  for (auto _ : state) {
    KvCache cache = small.model->new_cache();
    const double call = seconds_of([&] {
      const ForwardOutput output = small.model->forward(prompt, cache);
      benchmark::DoNotOptimize(output.logits.data());
    });
    state.SetIterationTime(call);
    seconds += call;
  }
  adjacent_read = std::max(adjacent_read, measure_weights_read(small.model->weights(), 3));
  const double tokens_per_s = static_cast<double>(n * state.iterations()) / seconds;
  const double flops_per_token = prefill_flops_per_token(small.config, n);
  state.counters["tokens_per_s"] = tokens_per_s;
  state.counters["flops_per_token"] = flops_per_token;
  state.counters["roofline_tokens_per_s"] = compute_peak() / flops_per_token;
  state.counters["roofline_fraction"] = tokens_per_s * flops_per_token / compute_peak();
  // The roofline model: the experts' weights read at the best read of the run so far, the
  // baseline's or that of the weights in place before and after (as for decode).
  const double bandwidth = std::max(read_bandwidth(), adjacent_read);
  const double model_tokens_per_s =
      static_cast<double>(n) /
      prefill_roofline_model_seconds(small.config, n, routing, compute_peak(), bandwidth);
  state.counters["model_read_gbytes_per_s"] = bandwidth / 1e9;
  state.counters["model_roofline_tokens_per_s"] = model_tokens_per_s;
  state.counters["model_roofline_fraction"] = tokens_per_s / model_tokens_per_s;
  report_speedup(state, backend, "prefill", n, tokens_per_s);
}

// The longest prompt prefilled in one call: a call returns the logits of all its positions, and
// a longer one would raise the peak memory that BM_3_PeakResidentMemory reports above that of the
// 512-token prefill.
constexpr size_t kLongestPrefillCall = 512;

// range(0) new tokens, one forward call each, after an untimed prefill of range(1) tokens (with
// simd whatever the backend: the cache holds the same positions either way), in calls of at most
// kLongestPrefillCall tokens.
void BM_2_Decode(benchmark::State& state, const char* backend) {
  SmallModel& small = small_model();
  const int64_t new_tokens = state.range(0);
  const int64_t prompt_length = state.range(1);
  const std::vector<int32_t> prompt = prompt_tokens(prompt_length, small.config.vocab_size);
  const std::vector<int32_t> fed =
      prompt_tokens(new_tokens + prompt_length, small.config.vocab_size);
  double adjacent_read = measure_weights_read(small.model->weights(), 3);
  double seconds = 0;
  for (auto _ : state) {
    KvCache cache = small.model->new_cache();
    small.kernels.select(simd::simd_kernels());
    for (size_t first = 0; first < prompt.size(); first += kLongestPrefillCall) {
      small.model->forward(
          std::span(prompt).subspan(first, std::min(kLongestPrefillCall, prompt.size() - first)),
          cache);
    }
    small.kernels.select(runtime::kernels_by_name(backend));
    const double run = seconds_of([&] {
      for (int64_t i = 0; i < new_tokens; ++i) {
        const ForwardOutput output =
            small.model->forward(std::span(&fed[prompt_length + i], 1), cache);
        benchmark::DoNotOptimize(output.logits.data());
      }
    });
    state.SetIterationTime(run);
    seconds += run;
  }
  adjacent_read = std::max(adjacent_read, measure_weights_read(small.model->weights(), 3));
  const double tokens_per_s = static_cast<double>(new_tokens * state.iterations()) / seconds;
  // Step i reads prompt_length + i + 1 positions of K/V.
  const double mean_context =
      static_cast<double>(prompt_length) + static_cast<double>(new_tokens + 1) / 2.0;
  const double weight_bytes = decode_weight_bytes_per_token(small.config, small.model->weights());
  const double kv_bytes = decode_kv_bytes_per_token(small.config, mean_context);
  const double bytes_per_token = weight_bytes + kv_bytes;
  state.counters["tokens_per_s"] = tokens_per_s;
  state.counters["prompt_tokens"] = static_cast<double>(prompt_length);
  state.counters["bytes_per_token"] = bytes_per_token;
  state.counters["kv_bytes_per_token"] = kv_bytes;
  // The roofline is the best read seen in this run: the baseline, or the read of the weights in
  // place next to this benchmark when the machine was faster then than at the baseline.
  const double bandwidth = std::max(read_bandwidth(), adjacent_read);
  state.counters["roofline_gbytes_per_s"] = bandwidth / 1e9;
  state.counters["roofline_tokens_per_s"] = bandwidth / bytes_per_token;
  state.counters["roofline_fraction"] = tokens_per_s * bytes_per_token / bandwidth;
  state.counters["adjacent_read_gbytes_per_s"] = adjacent_read / 1e9;
  state.counters["adjacent_fraction"] = tokens_per_s * bytes_per_token / adjacent_read;
  report_speedup(state, backend, "decode after " + std::to_string(prompt_length), new_tokens,
                 tokens_per_s);
}

// ref first, so that simd can report its speedup. The ref path is slow (double sums, no
// blocking): one run of each prompt length.
BENCHMARK_CAPTURE(BM_2_Prefill, ref, "ref")
    ->Arg(128)
    ->Arg(512)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_2_Prefill, simd, "simd")
    ->Arg(128)
    ->Arg(512)
    ->Iterations(5)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_2_Decode, ref, "ref")
    ->Args({32, 128})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
// Also near the end of the context (2048 positions for small), where a decode step reads about 14
// times more K/V and attention weighs more.
BENCHMARK_CAPTURE(BM_2_Decode, simd, "simd")
    ->Args({32, 128})
    ->Args({32, 1984})
    ->Iterations(4)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// The peak resident memory since the model was built (after a simd prefill of 512 tokens and
// 32 decode steps here, so that it covers a generation even when run alone), against fp32
// weights + one KV cache of max_seq_len positions (ref/model/stats.h).
void BM_3_PeakResidentMemory(benchmark::State& state) {
  SmallModel& small = small_model();
  small.kernels.select(simd::simd_kernels());
  const std::vector<int32_t> prompt = prompt_tokens(512 + 32, small.config.vocab_size);
  for (auto _ : state) {
    KvCache cache = small.model->new_cache();
    small.model->forward(std::span(prompt).first(512), cache);
    for (size_t i = 512; i < prompt.size(); ++i)
      small.model->forward(std::span(&prompt[i], 1), cache);
  }
  const double peak = proc_status_bytes("VmHWM");
  const double budget = static_cast<double>(required_memory_bytes(small.config));
  state.counters["peak_rss_mib"] = peak / (1 << 20);
  state.counters["weights_plus_kv_mib"] = budget / (1 << 20);
  state.counters["peak_over_weights_plus_kv"] = peak / budget;
  state.counters["peak_reset"] = small.peak_reset ? 1 : 0;
}

BENCHMARK(BM_3_PeakResidentMemory)->Iterations(1)->Unit(benchmark::kMillisecond);

// The read bandwidth and the FMA probe once more at the end (not used by any fraction): far from
// the first, the machine was not the same during the run (other work, another tenant, the
// hypervisor moving the vCPUs), and the run is noise.
BENCHMARK(BM_0_ReadBandwidth)
    ->Name("BM_4_ReadBandwidthAfter")
    ->Iterations(8)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_0_FmaPeak)->Name("BM_4_FmaPeakAfter")->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace moeref::bench
