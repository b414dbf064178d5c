// Re-anchoring: the reference re-run with a backend's own decisions (docs/golden-format.md,
// "Re-anchoring").
//
// A backend at reduced precision may legitimately route a token to another expert, or sample
// another token, where the golden decision was closer than its precision can resolve. What it
// computes after that is then a different, equally valid computation, and comparing it with the
// golden tensors would either fail an honest backend or, if excused wholesale, let any later bug
// pass. Instead the checker compares it with the reference run on the backend's decisions: every
// "moe.topk_indices" tensor of the candidate forced into the reference's routing
// (golden/forced_routing.h), and the candidate's "sampled_tokens" fed back in the sampled
// generation. Whether each of those decisions was itself legitimate is judged separately
// (golden/decisions.h) on the scores of this same run. Forcing the golden decisions reproduces the
// golden tensors bit for bit.
//
// Greedy tokens need no re-run: the decode calls are teacher-forced with the set's own tokens.
#pragma once

#include "golden/compare.h"
#include "golden/golden_set.h"

namespace moeref::golden {

// Whether a re-run is needed: the set is a model case with weights (a set built by hand without
// them is judged on its own scores) and some "moe.topk_indices" tensor or
// "sampled_tokens" of the candidate (of the set's shape, integer-typed) differs from the set's.
bool needs_anchoring(const GoldenSet& set, const Candidate& candidate);

// The reference's tensors on the candidate's decisions, under the set's names, plus
// "sampled_logits" [sampled_tokens, vocab_size]: the logits each step of the sampled generation
// chose from. "sampled_tokens" holds the reference's own choice at each step given the
// candidate's earlier tokens. Throws GoldenError if the set is not a model case.
Candidate anchored_run(const GoldenSet& set, const Candidate& candidate);

}  // namespace moeref::golden
