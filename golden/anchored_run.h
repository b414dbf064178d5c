// Re-anchoring: the reference re-run with a backend's own decisions (docs/golden-format.md,
// "Re-anchoring").
//
// A backend at reduced precision may legitimately route a token to another expert, or sample
// another token, where the golden decision was closer than its precision can resolve. What it
// computes after that is then a different, equally valid computation, and comparing it with the
// golden tensors would either fail an honest backend or, if excused wholesale, let any later bug
// pass. Instead the checker compares it with the reference run on the backend's decisions:
// - model sets: every "moe.topk_indices" tensor of the candidate forced into the reference's
//   routing (golden/forced_routing.h), and the candidate's "sampled_tokens" fed back in the
//   sampled generation; greedy tokens need no re-run (the decode calls are teacher-forced);
// - batching sets: the set's schedule replayed (golden/batching_replay.h) with the routing forced
//   and each request fed the candidate's tokens ("request.id/tokens", else "step.s/sampled");
// - speculative sets: both generations with the reference following the candidate's proposals,
//   acceptances and final tokens block by block (SpeculativeOptions::follow), so that the blocks
//   are the candidate's, however many there are.
// Whether each of those decisions was itself legitimate is judged separately
// (golden/decisions.h) on the scores of this same run, which records the reference's own choice at
// every decision. Forcing the golden decisions reproduces the golden tensors bit for bit.
#pragma once

#include "golden/compare.h"
#include "golden/golden_set.h"

namespace moeref::golden {

// Whether a re-run is needed: the set is a model, batching or speculative case with weights (a set
// built by hand without them is judged on its own scores) and some decision tensor of the
// candidate (integer-typed; of the set's shape, except in speculative sets) differs from the
// set's.
bool needs_anchoring(const GoldenSet& set, const Candidate& candidate);

// The reference's tensors on the candidate's decisions, under the set's names; a model case's
// also "sampled_logits" [sampled_tokens, vocab_size]: the logits each step of the sampled
// generation chose from. Every decision tensor holds the reference's own choice given the
// candidate's earlier ones. Throws GoldenError if the set is an op case.
Candidate anchored_run(const GoldenSet& set, const Candidate& candidate);

// The tensors to compare after a re-run, in execution order: the set's, except for a speculative
// case, whose blocks are the re-run's.
std::vector<ExpectedTensor> anchored_expected(const GoldenSet& set, const Candidate& anchored);

}  // namespace moeref::golden
