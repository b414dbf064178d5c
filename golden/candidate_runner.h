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
#include "ref/kernels.h"
#include "ref/weights.h"

namespace moeref::golden {

// Throws GoldenError if the set is not a model case. `weights` replaces the set's own weights
// (a test planting a bug in them, for example).
Candidate run_model_case(const GoldenSet& set, const Kernels& kernels,
                         const ModelWeights* weights = nullptr);

// Any kind of set: a model case as run_model_case, a batching or speculative case re-run from the
// set's own scenario and prompt, an op case's op computed on the set's inputs.
Candidate run_case(const GoldenSet& set, const Kernels& kernels);

// The records as a candidate, by name.
Candidate candidate_of(const std::vector<TensorRecord>& records);

}  // namespace moeref::golden
