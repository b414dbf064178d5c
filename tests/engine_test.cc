// The continuous-batching engine: a request's tokens and logits are bitwise those of its solo run
// whatever its neighbours, chunking, arrival and preemptions (vLLM's needle test, with a negative
// control that must fail); limits hold at every step; no block leaks; unfit requests are rejected.
#include "ref/generation/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "ref/generation/generate.h"
#include "ref/generation/philox.h"
#include "ref/io/config.h"
#include "ref/model/weights.h"

namespace moeref {
namespace {

ModelConfig tiny() { return load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/tiny.json"); }

const Model& tiny_model() {
  static const Model model(tiny(), init_weights(tiny()));
  return model;
}

EngineRequest needle_request() {
  EngineRequest r;
  r.id = 1000;
  r.prompt = {5, 80, 13, 200, 41, 41, 7, 99, 150, 3, 61};
  r.max_new_tokens = 10;
  r.sampling = {.temperature = 0.8, .top_k = 50, .top_p = 0.95, .seed = 31};
  return r;
}

struct EngineRun {
  std::map<int64_t, RequestOutcome> outcomes;
  std::vector<StepRecord> steps;
  EngineSummary summary;
  int64_t free_blocks_at_end = 0;
};

EngineRun run_engine(const Model& model, const std::vector<EngineRequest>& requests,
                     const EngineLimits& limits) {
  Engine engine(model, limits);
  for (const EngineRequest& r : requests) engine.submit(r);
  EngineRun run;
  while (!engine.done()) {
    run.steps.push_back(engine.step());
    EXPECT_LT(run.steps.size(), 2000u) << "the engine does not finish";
    if (run.steps.size() >= 2000) break;
  }
  run.outcomes = engine.outcomes();
  run.summary = engine.summary();
  run.free_blocks_at_end = engine.cache().free_blocks();
  return run;
}

const RequestOutcome& solo(const Model& model, const EngineRequest& request) {
  static std::map<std::pair<const Model*, int64_t>, RequestOutcome> cache;
  auto [it, inserted] = cache.try_emplace({&model, request.id});
  if (inserted) {
    it->second = run_engine(model, {request}, {1, 4096, 64, 16}).outcomes.at(request.id);
  }
  return it->second;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return std::ranges::equal(std::as_bytes(std::span(a)), std::as_bytes(std::span(b)));
}

TEST(Engine, SoloRunEqualsGenerate) {
  const EngineRequest needle = needle_request();
  const RequestOutcome& alone = solo(tiny_model(), needle);
  GenerationRequest plain{needle.prompt,   needle.max_new_tokens,
                          needle.sampling, static_cast<uint32_t>(needle.id),
                          std::nullopt,    0};
  EXPECT_EQ(alone.tokens, generate(tiny_model(), plain).tokens);
  EXPECT_EQ(alone.status, RequestStatus::kFinished);
  EXPECT_EQ(alone.logits.size(), static_cast<size_t>(10 * 256));
}

// Philox-driven randomness for the test's own choices: fixed, so the test is deterministic.
class TestRandom {
 public:
  explicit TestRandom(uint32_t trial) : trial_(trial) {}
  int64_t below(int64_t n) {
    const PhiloxCounter bits = philox4x32_10({counter_++, trial_, 0, 0x54455354}, {7, 0});
    return static_cast<int64_t>(bits[0] % static_cast<uint32_t>(n));
  }

 private:
  uint32_t trial_;
  uint32_t counter_ = 0;
};

struct Scenario {
  std::vector<EngineRequest> requests;
  EngineLimits limits;
};

// The needle among 1 to 6 random fillers, at a random place in arrival order, with a random step
// budget (so random prefill chunks), sequence limit and pool size (small pools preempt).
Scenario random_scenario(uint32_t trial) {
  TestRandom random(trial);
  Scenario s;
  const int64_t fillers = 1 + random.below(6);
  const int64_t needle_slot = random.below(fillers + 1);
  for (int64_t i = 0; i <= fillers; ++i) {
    if (i == needle_slot) {
      EngineRequest needle = needle_request();
      needle.arrival_step = random.below(4);
      s.requests.push_back(needle);
      continue;
    }
    EngineRequest filler;
    filler.id = i;
    for (int64_t t = 0, n = 1 + random.below(20); t < n; ++t) {
      filler.prompt.push_back(static_cast<int32_t>(random.below(256)));
    }
    filler.max_new_tokens = 1 + random.below(12);
    filler.sampling = {.temperature = random.below(2) ? 0.0 : 1.0, .seed = uint64_t(i)};
    filler.arrival_step = random.below(6);
    s.requests.push_back(filler);
  }
  s.limits.max_sequences = 1 + random.below(5);
  s.limits.max_tokens_per_step = 1 + random.below(24);
  s.limits.block_size = 1 + random.below(8);
  s.limits.n_blocks = (40 + random.below(40)) / s.limits.block_size + 2;
  return s;
}

TEST(EngineInvariance, NeedleEqualsItsSoloRunInAnyBatch) {
  const EngineRequest needle = needle_request();
  const RequestOutcome& alone = solo(tiny_model(), needle);
  int64_t preemptions = 0, mixed_steps = 0;
  for (uint32_t trial = 0; trial < 12; ++trial) {
    const Scenario s = random_scenario(trial);
    const EngineRun run = run_engine(tiny_model(), s.requests, s.limits);
    const RequestOutcome& batched = run.outcomes.at(needle.id);
    ASSERT_EQ(batched.status, RequestStatus::kFinished)
        << "trial " << trial << ": " << batched.error;
    EXPECT_EQ(batched.tokens, alone.tokens) << "trial " << trial;
    EXPECT_TRUE(same_bits(batched.logits, alone.logits)) << "trial " << trial;
    preemptions += run.summary.preemptions;
    for (const StepRecord& step : run.steps) mixed_steps += step.chunks.size() > 1;
  }
  // The trials did exercise what they claim: shared batches and preemptions.
  EXPECT_GT(mixed_steps, 20);
  EXPECT_GT(preemptions, 0);
}

// A kernel set whose matmul picks its accumulation by batch size, as GEMM libraries pick tiles:
// fp32 sums for batches of more than one row, the reference's double sums for one.
class BatchDependentMatmul final : public RefKernels {
 public:
  void matmul(const float* x, const float* w, float* y, int64_t rows, int64_t in,
              int64_t out) const override {
    if (rows == 1) return RefKernels::matmul(x, w, y, rows, in, out);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        float sum = 0.0f;
        for (int64_t i = 0; i < in; ++i) sum += x[r * in + i] * w[o * in + i];
        y[r * out + o] = sum;
      }
    }
  }
};

TEST(EngineInvariance, ABatchDependentReductionFailsTheSameComparison) {
  static const BatchDependentMatmul kernels;
  const Model model(tiny(), init_weights(tiny()), kernels);
  EngineRequest needle = needle_request();
  needle.sampling = {};  // greedy: the comparison below is on logits bits
  const RequestOutcome& alone = solo(model, needle);
  const Scenario s = random_scenario(3);
  std::vector<EngineRequest> requests = s.requests;
  for (EngineRequest& r : requests) {
    if (r.id == needle.id) r.sampling = {};
  }
  const EngineRun run = run_engine(model, requests, s.limits);
  EXPECT_FALSE(same_bits(run.outcomes.at(needle.id).logits, alone.logits))
      << "the negative control must show the comparison can fail";
}

TEST(EngineInvariance, PreemptedRequestsEqualUninterruptedOnes) {
  // A pool of 6 blocks of 4 positions for three requests of up to 20 positions each.
  std::vector<EngineRequest> requests;
  for (int64_t id = 0; id < 3; ++id) {
    EngineRequest r;
    r.id = id;
    r.prompt = {static_cast<int32_t>(10 + id), 20, 30, 40, 50, 60, 70, 80};
    r.max_new_tokens = 12;
    r.sampling = {.temperature = 0.9, .seed = 5};
    requests.push_back(r);
  }
  const EngineRun run = run_engine(tiny_model(), requests, {3, 64, 6, 4});
  EXPECT_GT(run.summary.preemptions, 0);
  for (const EngineRequest& r : requests) {
    const RequestOutcome& alone = solo(tiny_model(), r);
    EXPECT_EQ(run.outcomes.at(r.id).tokens, alone.tokens) << "request " << r.id;
    EXPECT_TRUE(same_bits(run.outcomes.at(r.id).logits, alone.logits)) << "request " << r.id;
  }
}

TEST(EngineLimits, NeverExceededAndNoBlockLeaks) {
  for (uint32_t trial = 0; trial < 12; ++trial) {
    const Scenario s = random_scenario(trial);
    const EngineRun run = run_engine(tiny_model(), s.requests, s.limits);
    for (const StepRecord& step : run.steps) {
      int64_t tokens = 0;
      for (const ScheduledChunk& chunk : step.chunks) tokens += chunk.n_tokens;
      EXPECT_LE(tokens, s.limits.max_tokens_per_step) << "trial " << trial;
      EXPECT_LE(step.running, s.limits.max_sequences) << "trial " << trial;
      EXPECT_LE(step.used_blocks, s.limits.n_blocks) << "trial " << trial;
      // Each chunk's positions fit in its sequence's blocks.
      for (size_t i = 0; i < step.chunks.size(); ++i) {
        const int64_t capacity =
            static_cast<int64_t>(step.block_tables[i].size()) * s.limits.block_size;
        EXPECT_LE(step.chunks[i].start_position + step.chunks[i].n_tokens, capacity);
      }
    }
    EXPECT_EQ(run.free_blocks_at_end, s.limits.n_blocks) << "trial " << trial << ": blocks leaked";
    for (const auto& [id, outcome] : run.outcomes) {
      EXPECT_EQ(outcome.status, RequestStatus::kFinished) << "trial " << trial << " request " << id;
    }
  }
}

TEST(EngineLimits, ARequestThatCanNeverFitIsRejectedAndTheOthersGoOn) {
  EngineRequest huge = needle_request();
  huge.id = 1;
  huge.max_new_tokens = 100;  // 11 + 99 positions: 14 blocks of 8, the pool has 10
  EngineRequest past_context = needle_request();
  past_context.id = 2;
  past_context.max_new_tokens = 200;  // past max_seq_len 128
  EngineRequest bad_token = needle_request();
  bad_token.id = 3;
  bad_token.prompt[0] = 999;
  EngineRequest fine = needle_request();
  fine.id = 4;
  const EngineRun run =
      run_engine(tiny_model(), {huge, past_context, bad_token, fine}, {4, 32, 10, 8});
  EXPECT_EQ(run.outcomes.at(1).status, RequestStatus::kRejected);
  EXPECT_THAT(run.outcomes.at(1).error, ::testing::HasSubstr("needs 14 KV blocks of 8 positions "
                                                             "and the pool has 10"));
  EXPECT_THAT(run.outcomes.at(2).error, ::testing::HasSubstr("exceeds the context of 128"));
  EXPECT_THAT(run.outcomes.at(3).error, ::testing::HasSubstr("prompt token 999"));
  EXPECT_EQ(run.outcomes.at(4).status, RequestStatus::kFinished);
  EXPECT_EQ(run.summary.rejected, 3);
}

TEST(EngineLimits, ZeroNewTokensFinishesAndHugeCountsAreRejectedWithoutOverflow) {
  EngineRequest nothing = needle_request();
  nothing.id = 1;
  nothing.max_new_tokens = 0;
  EngineRequest huge = needle_request();
  huge.id = 2;
  huge.max_new_tokens = INT64_MAX;
  const EngineRun run = run_engine(tiny_model(), {nothing, huge}, {});
  EXPECT_EQ(run.outcomes.at(1).status, RequestStatus::kFinished);
  EXPECT_TRUE(run.outcomes.at(1).tokens.empty());
  EXPECT_EQ(run.outcomes.at(2).status, RequestStatus::kRejected);
  EXPECT_THAT(run.outcomes.at(2).error, ::testing::HasSubstr("exceeds the context of 128"));
}

// Skipping the idle stretch before an arrival gives the same steps, outcomes and summary as
// stepping through it; an arrival at the last accepted step is reached at once.
TEST(EngineSchedule, IdleStepsBeforeAnArrivalAreSkippedWithTheSameResult) {
  EngineRequest early = needle_request();
  early.id = 1;
  early.max_new_tokens = 3;
  EngineRequest late = needle_request();
  late.id = 2;
  late.arrival_step = 40;
  const EngineRun stepped = run_engine(tiny_model(), {early, late}, EngineLimits{});

  Engine engine(tiny_model(), EngineLimits{});
  engine.submit(early);
  engine.submit(late);
  std::vector<StepRecord> busy_steps;
  int64_t skipped = 0;
  while (!engine.done()) {
    skipped += engine.skip_idle_steps();
    busy_steps.push_back(engine.step());
    ASSERT_LT(busy_steps.size(), 2000u) << "the engine does not finish";
  }
  std::vector<int64_t> stepped_busy, skipping_busy;
  for (const StepRecord& r : stepped.steps) {
    if (!r.chunks.empty()) stepped_busy.push_back(r.step);
  }
  for (const StepRecord& r : busy_steps) skipping_busy.push_back(r.step);
  EXPECT_EQ(skipping_busy, stepped_busy);
  EXPECT_EQ(skipped, static_cast<int64_t>(stepped.steps.size() - busy_steps.size()));
  EXPECT_EQ(summary_json(engine.summary()), summary_json(stepped.summary));
  for (const int64_t id : {1, 2}) {
    EXPECT_EQ(engine.outcomes().at(id).tokens, stepped.outcomes.at(id).tokens) << id;
  }

  Engine far(tiny_model(), EngineLimits{});
  EngineRequest last = needle_request();
  last.arrival_step = std::numeric_limits<int32_t>::max();
  far.submit(last);
  EXPECT_EQ(far.skip_idle_steps(), last.arrival_step);
  const StepRecord first = far.step();
  EXPECT_EQ(first.step, last.arrival_step);
  EXPECT_EQ(first.admitted, std::vector<int64_t>{last.id});
  EXPECT_EQ(far.skip_idle_steps(), 0) << "a running request leaves nothing to skip";
}

TEST(EngineLimits, RepeatedRequestIdIsAnError) {
  Engine engine(tiny_model(), {});
  engine.submit(needle_request());
  EXPECT_THROW(engine.submit(needle_request()), std::invalid_argument);
}

TEST(EngineSchedule, FirstComeFirstServedWithChunkedPrefill) {
  // Budget 4 tokens a step, two sequences: request 0's 6-token prompt takes steps 0 and 1 (4 + 2);
  // request 1 is admitted in step 1 with the 2 tokens left, then decodes alongside.
  std::vector<EngineRequest> requests(2);
  requests[0].id = 0;
  requests[0].prompt = {1, 2, 3, 4, 5, 6};
  requests[0].max_new_tokens = 3;
  requests[1].id = 1;
  requests[1].prompt = {7, 8, 9};
  requests[1].max_new_tokens = 2;
  Engine engine(tiny_model(), {2, 4, 16, 4});
  for (const EngineRequest& r : requests) engine.submit(r);
  const StepRecord s0 = engine.step();
  ASSERT_EQ(s0.chunks.size(), 1u);
  EXPECT_EQ(s0.chunks[0].n_tokens, 4);
  EXPECT_TRUE(s0.sampled.empty());
  const StepRecord s1 = engine.step();
  ASSERT_EQ(s1.chunks.size(), 2u);
  EXPECT_EQ(s1.chunks[0].request, 0);
  EXPECT_EQ(s1.chunks[0].n_tokens, 2);
  EXPECT_EQ(s1.chunks[1].request, 1);
  EXPECT_EQ(s1.chunks[1].n_tokens, 2);
  EXPECT_EQ(s1.sampled.size(), 1u);  // request 0's first token; request 1 has 1 token to go
  EXPECT_EQ(s1.block_tables[0], (std::vector<int32_t>{0, 1}));  // lowest blocks first
  EXPECT_EQ(s1.block_tables[1], (std::vector<int32_t>{2}));
}

}  // namespace
}  // namespace moeref
