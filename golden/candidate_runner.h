// Runs a golden set with another kernel set and collects what a backend would hand to the checker:
// the same calls as the set, named the same way.
//
// The prefill and the decode calls are teacher-forced: decode call i feeds the set's own greedy
// token i, so each call's tensors are comparable with the set's even where the candidate's argmax
// differs. "greedy_tokens" holds the candidate's own argmax at each call; "sampled_tokens" its own
// sampled generation, with the set's sampling parameters.
#pragma once

#include "golden/compare.h"
#include "golden/golden_set.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

// Throws GoldenError if the set is not a model case. `weights` replaces the set's own weights
// (a test planting a bug in them, for example).
//
// With `forced_sampled`, the sampled generation is teacher-forced instead: step i feeds back
// forced_sampled[i] (where there is one and it is a token of the vocabulary; the kernels' own
// choice otherwise), "sampled_tokens" holds the kernels' own choice at each step, and
// "sampled_logits" [steps, vocab_size] the logits each step chose from. This is how the checker
// re-runs the reference on a backend's own sampled prefix (golden/anchored_run.h).
Candidate run_model_case(const GoldenSet& set, const Kernels& kernels,
                         const ModelWeights* weights = nullptr,
                         const std::vector<int32_t>* forced_sampled = nullptr);

// Any kind of set: a model case as run_model_case, a batching or speculative case re-run from the
// set's own scenario and prompt, an op case's op computed on the set's inputs.
Candidate run_case(const GoldenSet& set, const Kernels& kernels);

// The records as a candidate, by name.
Candidate candidate_of(const std::vector<TensorRecord>& records);

}  // namespace moeref::golden
