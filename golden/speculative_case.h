// The golden speculative-decoding case (docs/speculative.md, docs/golden-format.md): a target and
// a draft model, a prompt, and the trace of every block of a greedy and of a sampled speculative
// generation, so a serving engine can check each decision: proposals, q and p, every u, accept or
// reject, and the residual or bonus draw.
//
// Tensors: "greedy/block.b/<field>" and "sampled/block.b/<field>" (fields of
// ref/generation/speculative.h), then "greedy/tokens" and "sampled/tokens". Weights: the target's
// under "target/<name>", the draft's under "draft/<name>" (names of ref/model/weights.h).
//
// Margins (manifest "margins", golden/margins.h): "greedy_blocks" and "sampled_blocks" hold, block
// by block, the margin of every decision: greedy, the gap log p1 - log p2 between the two most
// likely tokens of the distribution each proposal, acceptance and final token was decided on;
// sampled, each proposal's draw against q, each acceptance's |u q(x) - p(x)| and the final draw
// against the residual or the last p. "greedy" and "sampled" are their smallest. As for model
// cases, a prompt is searched (Philox, golden/model_case.h) until both reach the threshold.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "golden/golden_set.h"
#include "ref/generation/sampling.h"
#include "ref/generation/speculative.h"
#include "ref/io/config.h"
#include "ref/io/safetensors.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

struct SpeculativeCaseSpec {
  std::string name;
  std::string description;
  ModelConfig target;
  ModelConfig draft;
  std::vector<int32_t> prompt;  // empty: search for one of prompt_length tokens
  int64_t prompt_length = 8;
  int64_t new_tokens = 16;
  int64_t gamma = 3;
  bool adaptive_gamma = false;
  SamplingParams sampling{.temperature = 1.0, .top_k = 0, .top_p = 1.0, .seed = 99};
  double margin_threshold = 1e-3;
  int64_t max_prompt_candidates = 2000;
};

struct SpeculativeCase {
  nlohmann::json manifest;  // without "files" and "tensors"
  std::vector<TensorRecord> weights;
  std::vector<TensorRecord> inputs;  // "prompt"
  std::vector<TensorRecord> trace;
  std::vector<ExpectedTensor> expected;  // one per trace record
};

// With another kernel set than the reference's, both models compute with it and the records are
// that set's: a candidate for the checker (the simd backend's test runs the committed set so,
// with the set's prompt).
SpeculativeCase build_speculative_case(const SpeculativeCaseSpec& spec,
                                       const Kernels& kernels = ref_kernels());
// What a recorded tensor of a speculative case is: its op and tolerance class (the probabilities
// and draws are probabilities; positions, tokens and decisions exact).
ExpectedTensor speculative_tensor(const std::string& name);

// The case's greedy and sampled generations with the reference following another implementation's
// decisions (SpeculativeOptions::follow), keyed by mode ("greedy", "sampled"), under the set's
// names: how the checker re-runs the reference on a backend's own decisions
// (golden/anchored_run.h). Following the reference's own decisions reproduces the case bit for bit.
std::vector<TensorRecord> follow_speculative_case(
    const SpeculativeCaseSpec& spec,
    const std::map<std::string, std::vector<FollowedBlock>>& follow);

SpeculativeCaseSpec speculative_spec_from_manifest(const nlohmann::json& manifest,
                                                   const std::string& source);

}  // namespace moeref::golden
