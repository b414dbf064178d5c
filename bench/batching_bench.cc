// Continuous batching throughput against batch size on the small config (configs/small.json,
// weights from init_weights), measured in one run. Each benchmark runs its workload at batch size
// B and the same workload at B = 1 side by side, alternating their steps, so ratio_to_b1 comes
// from two timings taken under the same conditions (a busy machine slows both alike).
//
// Greedy sampling throughout; the forward pass dominates the time.
//
//   BM_DecodeOnly/B  B sequences with 8-token prompts, prefilled untimed in one call. Timed:
//                    kDecodeSteps calls of Model::forward_batch straight on a PagedKvCache (not the
//                    Engine), each exactly one decode token for each of the B sequences: pure
//                    batched decode, as the Engine runs it with max_sequences =
//                    max_tokens_per_step = B once every prompt is in. (The Engine with a budget of
//                    B would first decode the early sequences for many steps while the later ones
//                    prefill, which costs minutes on the ref path.)
//   BM_Mixed/B       the Engine (ref/generation/engine.h), so scheduler, paged cache and sampling
//   are timed
//                    too: B requests with 64-token prompts arriving together at step 0, limits
//                    max_sequences = B, max_tokens_per_step = 64, kMixedNewTokens new tokens each,
//                    run until done(), so prefill chunks and decode tokens share steps. The B = 1
//                    engine is restarted whenever it finishes while the B engine still runs, and
//                    its last run is completed; its throughput counts whole runs only.
//
// Counters: tok_s, generated tokens per second of the B workload; b1_tok_s, the same for the
// B = 1 workload run alongside; ratio_to_b1 = tok_s / b1_tok_s; fwd_tok_s, tokens through the
// forward pass per second in the B workload (prefill included; equal to tok_s for decode-only);
// generated, the tokens the B workload generated in its timed steps. Each benchmark also checks
// that request 0's tokens equal those of its B = 1 run (batch invariance) and fails otherwise.
//
// On the ref path every row costs the same arithmetic whatever the batch, so batching gains little;
// on the simd path a decode step of B rows reads the weights about once per 4 rows (simd/'s
// matvec_rows up to 8 rows), so it gains (docs/batching.md section 12 has measured tables and
// their reading).
//
//   OMP_WAIT_POLICY=passive build-bench/bench/batching_bench --benchmark_counters_tabular=true
// (On a machine shared with other jobs, libgomp's default spinning at barriers made decode 10 times
// slower; the passive policy avoids it. About a minute on 2 idle cores.)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/kernel_switch.h"
#include "ref/generation/engine.h"
#include "ref/generation/sampling.h"
#include "ref/io/config.h"
#include "ref/model/model.h"
#include "ref/model/paged_kv_cache.h"
#include "ref/model/weights.h"
#include "runtime/kernel_sets.h"

namespace moeref {
namespace {

constexpr int64_t kDecodePrompt = 8;
constexpr int64_t kDecodeSteps = 12;
constexpr int64_t kMixedPrompt = 64;
constexpr int64_t kMixedNewTokens = 8;
constexpr int64_t kBlockSize = 16;

// The kernel set every benchmark selects first (its "simd" argument): one copy of the weights.
bench::KernelSwitch& kernel_switch() {
  static bench::KernelSwitch kernels(ref_kernels());
  return kernels;
}

const Model& small_model() {
  static const std::unique_ptr<Model> model = [] {
    const ModelConfig config = load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/small.json");
    return std::make_unique<Model>(config, init_weights(config), kernel_switch());
  }();
  return *model;
}

void select_kernels(const benchmark::State& state) {
  kernel_switch().select(runtime::kernels_by_name(state.range(1) == 0 ? "ref" : "simd"));
}

// Seconds `run` takes.
double timed(auto&& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// B requests, ids 0..B-1, with distinct deterministic prompts inside the vocabulary.
std::vector<EngineRequest> requests(int64_t batch, int64_t prompt_length, int64_t new_tokens) {
  const int64_t vocab = small_model().config().vocab_size;
  std::vector<EngineRequest> out;
  for (int64_t id = 0; id < batch; ++id) {
    EngineRequest r;
    r.id = id;
    for (int64_t t = 0; t < prompt_length; ++t) {
      r.prompt.push_back(static_cast<int32_t>((1 + 7919 * id + 104729 * t + 31 * t * t) % vocab));
    }
    r.max_new_tokens = new_tokens;
    r.sampling = {};  // greedy
    out.push_back(std::move(r));
  }
  return out;
}

int64_t blocks_for(int64_t batch, int64_t positions) {
  return batch * ((positions + kBlockSize - 1) / kBlockSize);
}

// One workload's timed totals.
struct Totals {
  double seconds = 0;
  int64_t generated = 0;
  int64_t forwarded = 0;
};

// B sequences decoding together through Model::forward_batch on a paged cache.
class DecodeBatch {
 public:
  // Prefills the prompts (one call, untimed) and samples each sequence's first token.
  explicit DecodeBatch(int64_t batch)
      : batch_(batch),
        cache_(small_model().config(), blocks_for(batch, kDecodePrompt + kDecodeSteps),
               kBlockSize) {
    for (const EngineRequest& r : requests(batch, kDecodePrompt, 0)) tokens_.push_back(r.prompt);
    forward_and_sample(0, kDecodePrompt);
  }

  // One decode token for each sequence, timed.
  void step(Totals& totals) {
    const int64_t first = static_cast<int64_t>(tokens_[0].size()) - 1;
    totals.seconds += timed([&] { forward_and_sample(first, 1); });
    totals.generated += batch_;
    totals.forwarded += batch_;
  }

  std::vector<int32_t> generated(int64_t id) const {
    return {tokens_[id].begin() + kDecodePrompt, tokens_[id].end()};
  }

 private:
  // One forward call over tokens first .. first + count - 1 of every sequence, then each one's
  // next token from the last row of its range. Blocks are reserved as the Engine reserves them.
  void forward_and_sample(int64_t first, int64_t count) {
    const Model& model = small_model();
    std::vector<SequenceInput> inputs;
    for (int64_t id = 0; id < batch_; ++id) {
      if (!cache_.reserve(id, first + count)) throw std::runtime_error("the pool is too small");
    }
    for (int64_t id = 0; id < batch_; ++id) {
      inputs.push_back(
          {std::span(tokens_[id]).subspan(static_cast<size_t>(first), static_cast<size_t>(count)),
           first, cache_.views(id), SequenceImage{}});
    }
    const Tensor logits = model.forward_batch(inputs).logits;
    const auto vocab = static_cast<size_t>(model.config().vocab_size);
    for (int64_t id = 0; id < batch_; ++id) {
      tokens_[id].push_back(
          greedy_token(std::span<const float>(logits.row((id + 1) * count - 1), vocab)));
    }
  }

  int64_t batch_;
  PagedKvCache cache_;
  std::vector<std::vector<int32_t>> tokens_;
};

std::unique_ptr<Engine> mixed_engine(int64_t batch) {
  EngineLimits limits;
  limits.max_sequences = batch;
  limits.max_tokens_per_step = kMixedPrompt;
  limits.block_size = kBlockSize;
  limits.n_blocks = blocks_for(batch, kMixedPrompt + kMixedNewTokens);
  auto engine = std::make_unique<Engine>(small_model(), limits);
  for (EngineRequest& r : requests(batch, kMixedPrompt, kMixedNewTokens)) {
    engine->submit(std::move(r));
  }
  return engine;
}

// One engine step, timed, with its forwarded and generated tokens.
void step(Engine& engine, Totals& totals) {
  StepRecord record;
  totals.seconds += timed([&] { record = engine.step(); });
  for (const ScheduledChunk& chunk : record.chunks) totals.forwarded += chunk.n_tokens;
  totals.generated += static_cast<int64_t>(record.sampled.size());
}

void report(benchmark::State& state, const Totals& batched, const Totals& alone,
            const std::vector<int32_t>& batched0, const std::vector<int32_t>& alone0) {
  if (state.error_occurred()) return;
  if (batched0.empty() || batched0 != alone0) {
    state.SkipWithError("request 0's tokens differ from its B = 1 run");
    return;
  }
  const double tok_s = static_cast<double>(batched.generated) / batched.seconds;
  const double b1_tok_s = static_cast<double>(alone.generated) / alone.seconds;
  state.counters["tok_s"] = tok_s;
  state.counters["b1_tok_s"] = b1_tok_s;
  state.counters["ratio_to_b1"] = tok_s / b1_tok_s;
  state.counters["fwd_tok_s"] = static_cast<double>(batched.forwarded) / batched.seconds;
  state.counters["generated"] = static_cast<double>(batched.generated);
}

void BM_DecodeOnly(benchmark::State& state) {
  const int64_t batch = state.range(0);
  select_kernels(state);
  small_model();  // built before anything is timed
  Totals batched, alone;
  std::vector<int32_t> batched0, alone0;
  for (auto _ : state) {
    DecodeBatch many(batch), one(1);
    for (int64_t s = 0; s < kDecodeSteps; ++s) {
      // Alternate which goes first, so neither always runs with the other's data in cache.
      if (s % 2 == 0) {
        many.step(batched);
        one.step(alone);
      } else {
        one.step(alone);
        many.step(batched);
      }
    }
    batched0 = many.generated(0);
    alone0 = one.generated(0);
  }
  report(state, batched, alone, batched0, alone0);
}

void BM_Mixed(benchmark::State& state) {
  const int64_t batch = state.range(0);
  select_kernels(state);
  small_model();
  Totals batched, alone;
  std::vector<int32_t> batched0, alone0;
  for (auto _ : state) {
    std::unique_ptr<Engine> many = mixed_engine(batch);
    std::unique_ptr<Engine> one = mixed_engine(1);
    while (!many->done()) {
      step(*many, batched);
      if (one->done()) {
        alone0 = one->outcomes().at(0).tokens;
        one = mixed_engine(1);
      }
      step(*one, alone);
    }
    while (!one->done()) step(*one, alone);
    alone0 = one->outcomes().at(0).tokens;
    batched0 = many->outcomes().at(0).tokens;
    if (many->summary().preemptions != 0) {
      state.SkipWithError("the mixed run preempted");
      break;
    }
  }
  report(state, batched, alone, batched0, alone0);
}

// B = 1, 2, 4, 8, 16 with the ref (simd:0) and the simd (simd:1) kernels, each run once.
void batch_sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "simd"})
      ->ArgsProduct({{1, 2, 4, 8, 16}, {0, 1}})
      ->Iterations(1)
      ->Unit(benchmark::kSecond);
}

BENCHMARK(BM_DecodeOnly)->Apply(batch_sizes);
BENCHMARK(BM_Mixed)->Apply(batch_sizes);

}  // namespace
}  // namespace moeref
