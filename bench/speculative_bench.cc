// Speculative against plain decoding on the small config (configs/small.json), measured in the
// same run: the speedup is plain time / speculative time for the same tokens.
//
// The pair: the draft is the target's own first layer with its embedding, final norm and LM head
// (make_shallow_draft, ref/generation/speculative.h). With randomly initialised weights the logits
// are nearly flat, so sampled proposals are accepted often; greedy ones rarely. On the ref path a
// forward costs time linear in its tokens, so verifying gamma + 1 tokens in one call saves nothing:
// the speedup there is below 1. The simd path scores several tokens with one sgemm, reading the
// weights once: there the method can pay. Both are measured.
//
//   build/bench/speculative_bench --benchmark_counters_tabular=true
// Counters: plain and speculative tokens/s, speedup, acceptance rate, tokens per target forward.
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "ref/generation/generate.h"
#include "ref/generation/speculative.h"
#include "ref/io/config.h"
#include "ref/model/model.h"
#include "ref/model/weights.h"
#include "runtime/kernel_sets.h"

namespace moeref {
namespace {

constexpr int64_t kNewTokens = 24;

struct Pair {
  std::unique_ptr<Model> target;
  std::unique_ptr<Model> draft;
};

// The pair computed with the given kernel set ("ref" or "simd").
const Pair& small_pair(const std::string& backend) {
  static std::map<std::string, Pair> pairs;
  auto [it, inserted] = pairs.try_emplace(backend);
  if (inserted) {
    const ModelConfig config = load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/small.json");
    const Kernels& kernels = runtime::kernels_by_name(backend);
    it->second.target = std::make_unique<Model>(config, init_weights(config), kernels);
    DraftModel draft = make_shallow_draft(config, it->second.target->weights(), 1);
    it->second.draft =
        std::make_unique<Model>(std::move(draft.config), std::move(draft.weights), kernels);
  }
  return it->second;
}

double seconds_of(auto&& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void BM_SpeculativeVsPlainDecoding(benchmark::State& state) {
  const Pair& pair = small_pair(state.range(2) == 0 ? "ref" : "simd");
  GenerationRequest request;
  request.prompt = {1, 450, 3037, 310, 29871, 15, 27, 9};
  request.max_new_tokens = kNewTokens;
  request.sampling = {.temperature = state.range(1) == 0 ? 0.0 : 0.8, .seed = 7};
  SpeculativeOptions options;
  options.gamma = state.range(0);
  double plain_seconds = 0, speculative_seconds = 0;
  SpeculativeStats stats;
  for (auto _ : state) {
    plain_seconds += seconds_of([&] { benchmark::DoNotOptimize(generate(*pair.target, request)); });
    speculative_seconds += seconds_of(
        [&] { stats = speculative_generate(*pair.target, *pair.draft, request, options).stats; });
  }
  const double tokens = static_cast<double>(kNewTokens * state.iterations());
  state.counters["plain_tok_s"] = tokens / plain_seconds;
  state.counters["speculative_tok_s"] = tokens / speculative_seconds;
  state.counters["speedup"] = plain_seconds / speculative_seconds;
  state.counters["acceptance"] = stats.acceptance_rate();
  state.counters["tok_per_target_fwd"] = stats.tokens_per_target_forward();
}

// gamma, greedy (0) or sampled at temperature 0.8 (1), ref (0) or simd (1) kernels.
BENCHMARK(BM_SpeculativeVsPlainDecoding)
    ->ArgsProduct({{2, 4}, {0, 1}, {0, 1}})
    ->Iterations(1)
    ->Unit(benchmark::kSecond);

}  // namespace
}  // namespace moeref
