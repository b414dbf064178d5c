// The golden continuous-batching case (docs/batching.md, docs/golden-format.md): a model, a
// scenario of requests with staggered arrivals, and the engine's limits, small enough that
// prefills are chunked and a sequence is preempted. Recorded, for every step s: "step.s/schedule",
// "step.s/block_tables", "step.s/sampled" (ref/generation/engine.h) and the forward pass's traced
// tensors under "step.s/" (docs/tracing.md), so a paged-attention backend can be checked step by
// step; then for every request "request.id/tokens" and "request.id/logits" [tokens, vocab], which
// by batch invariance are also those of the request run alone.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "golden/golden_set.h"
#include "ref/generation/engine.h"
#include "ref/io/config.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

struct BatchingCaseSpec {
  std::string name;
  std::string description;
  ModelConfig config;
  std::vector<EngineRequest> requests;
  EngineLimits limits;
};

// The committed scenario for a config: four requests (greedy and sampled, prompts of 5 to 20
// tokens, arriving at steps 0, 0, 2 and 3), at most 3 sequences, 16 tokens a step, 10 blocks of 4.
BatchingCaseSpec default_batching_spec(const ModelConfig& config);

struct BatchingCase {
  nlohmann::json manifest;  // without "files" and "tensors"
  std::vector<TensorRecord> weights;
  std::vector<TensorRecord> inputs;  // "request.id/prompt"
  std::vector<TensorRecord> trace;
  std::vector<ExpectedTensor> expected;
};

// With another kernel set than the reference's, the run and its records are that set's: a
// candidate for the checker (the simd backend's test runs the committed set so).
BatchingCase build_batching_case(const BatchingCaseSpec& spec,
                                 const Kernels& kernels = ref_kernels());
BatchingCaseSpec batching_spec_from_manifest(const nlohmann::json& manifest,
                                             const std::string& source);

}  // namespace moeref::golden
