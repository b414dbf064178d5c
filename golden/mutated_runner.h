// A candidate runner for a backend whose mistakes lie outside its kernels: in its weights, in how
// it picks tokens, where its text tokens start seeing the image, which distribution it draws a
// rejected speculative token from, or how its engine treats a preempted sequence
// (golden/bug_catalog.h plants such bugs here).
//
// With the default mutation, a set runs as golden/candidate_runner.h runs it, with the same
// bits on the same kernels: model sets teacher-forced (the sampled generation by this runner's own
// loop, through the token picker), op cases through rebuild_op_case (sampling and greedy cases
// through the token picker), speculative sets through ref/generation/speculative.h with the set's
// models, and batching sets replayed from their recorded schedule (golden/batching_replay.h).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "golden/batching_replay.h"
#include "golden/compare.h"
#include "golden/golden_set.h"
#include "golden/token_picker.h"
#include "ref/generation/speculative.h"
#include "ref/io/config.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

struct RunMutation {
  // Applied to the weights of every model the set runs (not to op cases' inputs); null: none.
  std::function<void(const ModelConfig&, ModelWeights&)> weights;
  // How tokens are picked from logits (greedy, sampled, batched); null: moeref's rules.
  const TokenPicker* tokens = nullptr;
  // Model sets with an image: the position from which text tokens see it, instead of the set's.
  std::optional<int64_t> image_position;
  // Speculative sets: the residual a rejected position's token is drawn from.
  ResidualWeights speculative_residual = exact_residual;
  BatchingFault batching = BatchingFault::kNone;
};

Candidate run_mutated(const GoldenSet& set, const Kernels& kernels, const RunMutation& mutation);

}  // namespace moeref::golden
