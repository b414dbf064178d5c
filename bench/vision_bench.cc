// The vision path on a small config (docs/vision.md): encoding one image, and a prefill whose
// tokens read it through the gated blocks, with the ref and the simd kernels in the same run.
//
// The config is configs/small.json plus a ViT-S/16-like tower: a 224 x 224 RGB image in 196
// patches, width 384, 4 blocks of 6 heads, MLP 1536, a Perceiver Resampler of 64 latents, and
// multi-query gated cross-attention (8 query heads, q/k norms) in front of layers 3 and 7.
// Baselines measured in the same run: the ref path (simd / ref ratios) and OpenBLAS sgemm at
// 2048^3 (the fraction of the machine's matrix peak the encoder reaches).
//
//   build/bench/vision_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/sgemm_peak.h"
#include "golden/model_case.h"
#include "ref/io/config.h"
#include "ref/model/model.h"
#include "ref/model/stats.h"
#include "ref/model/weights.h"
#include "runtime/kernel_sets.h"
#include "simd/blas_gemm.h"

namespace moeref {
namespace {

constexpr int64_t kPromptTokens = 128;

ModelConfig small_vision() {
  ModelConfig config = load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/small.json");
  config.name = "small-vision";
  VisionConfig v;
  v.image_size = 224;
  v.channels = 3;
  v.patch_size = 16;
  v.width = 384;
  v.layers = 4;
  v.heads = 6;
  v.mlp_size = 1536;
  v.mean = {0.5, 0.5, 0.5};
  v.std = {0.25, 0.25, 0.25};
  v.resampler_latents = 64;
  v.resampler_layers = 1;
  v.cross_attention_layers = {3, 7};
  v.cross_attention_heads = 8;
  v.cross_attention_kv_heads = 1;
  v.cross_attention_d_ff = 1024;
  v.cross_attention_qk_norm = true;
  v.gate_init = 0.5;
  config.vision = v;
  return config;
}

// One copy of the weights, computed with either kernel set.
const Model& model(const std::string& backend) {
  static const ModelConfig config = small_vision();
  static const ModelWeights weights = init_weights(config);
  static std::map<std::string, std::unique_ptr<Model>> models;
  auto& slot = models[backend];
  if (!slot) slot = std::make_unique<Model>(config, weights, runtime::kernels_by_name(backend));
  return *slot;
}

Tensor image(const VisionConfig& v) { return golden::synthetic_image(v, 3); }

// The sgemm peak at 2048^3 of bench/sgemm_peak.h, the best of three calls, as roofline_bench
// measures it.
double sgemm_gflops() {
  static const double peak = [] {
    bench::SgemmProduct product(2048);
    double best = 0;
    for (int i = 0; i < 3; ++i) best = std::max(best, product.flops() / product.timed() / 1e9);
    return best;
  }();
  return peak;
}

// Encoding one image (tower, resampler, projector, the gated blocks' K/V): ref once, simd for
// the benchmark's iterations.
void BM_VisionEncode(benchmark::State& state) {
  const Model& simd = model("simd");
  const Model& ref = model("ref");  // built before anything is timed
  const Tensor pixels = image(*simd.config().vision);
  const double ref_seconds = bench::seconds_of([&] { ref.encode_image(pixels); });
  double simd_seconds = 0;
  int64_t images = 0;
  for (auto _ : state) {
    simd_seconds += bench::seconds_of([&] { benchmark::DoNotOptimize(simd.encode_image(pixels)); });
    ++images;
  }
  const double flops = static_cast<double>(compute_stats(simd.config()).vision_flops_per_image);
  const double simd_gflops = flops * static_cast<double>(images) / simd_seconds / 1e9;
  state.counters["ref_images_per_s"] = 1.0 / ref_seconds;
  state.counters["simd_images_per_s"] = static_cast<double>(images) / simd_seconds;
  state.counters["simd_over_ref"] = ref_seconds * static_cast<double>(images) / simd_seconds;
  state.counters["simd_GFLOP_per_s"] = simd_gflops;
  state.counters["fraction_of_sgemm_peak"] = simd_gflops / sgemm_gflops();
}
BENCHMARK(BM_VisionEncode)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

// A prefill of 128 tokens that all see the image, against the same prompt without one: what the
// two gated blocks cost. Range 0: 0 = ref (one iteration, seconds each), 1 = simd (ten).
void BM_PrefillWithImage(benchmark::State& state) {
  const Model& m = model(state.range(0) == 0 ? "ref" : "simd");
  const ImageKv kv = m.encode_image(image(*m.config().vision));
  std::vector<int32_t> prompt(kPromptTokens);
  for (int64_t t = 0; t < kPromptTokens; ++t) prompt[t] = static_cast<int32_t>((t * 97) % 32000);
  double with = 0, without = 0;
  for (auto _ : state) {
    KvCache a = m.new_cache();
    with += bench::seconds_of([&] { m.forward(prompt, a, SequenceImage{&kv, 0}); });
    KvCache b = m.new_cache();
    without += bench::seconds_of([&] { m.forward(prompt, b); });
  }
  const auto n = static_cast<double>(state.iterations());
  state.counters["tokens_per_s_with_image"] = kPromptTokens * n / with;
  state.counters["tokens_per_s_text_only"] = kPromptTokens * n / without;
  state.counters["gated_blocks_cost"] = with / without - 1.0;
}
BENCHMARK(BM_PrefillWithImage)
    ->ArgName("simd")
    ->Arg(0)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime();
BENCHMARK(BM_PrefillWithImage)
    ->ArgName("simd")
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(10)
    ->UseRealTime();

}  // namespace
}  // namespace moeref
