// Replays a continuous-batching set (golden/batching_case.h) step by step from its recorded
// schedule: a serving engine whose scheduler is right, for candidates whose mistakes are in the
// model, in how tokens are picked, or in the K/V bookkeeping around a preemption
// (golden/bug_catalog.h). Each step runs the set's chunks with the set's block tables through
// Model::forward_batch over a paged pool of its own, then samples for every sequence whose known
// tokens are all computed, as ref/generation/engine.h does. The schedule is taken, not recomputed:
// it depends on token counts only as long as no request emits an EOS token, true of the committed
// scenario. With the reference kernels, moeref's token rules and no fault, the candidate equals the
// set bit for bit.
//
// With forced tokens (request id -> its generated tokens), each sequence is fed the forced token
// where there is one and it is a token of the vocabulary, while "step.s/sampled" and
// "request.id/tokens" record the picker's own choice: how the checker re-runs the reference on a
// backend's own tokens (golden/anchored_run.h).
//
// A preemption is read from the schedule: a sequence scheduled from position 0 after it had
// computed tokens was preempted in between, and this chunk starts its recomputation.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "golden/compare.h"
#include "golden/golden_set.h"
#include "golden/token_picker.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

enum class BatchingFault {
  kNone,
  // The recomputation of a readmitted sequence numbers the tokens it generated before the
  // preemption from position 0 again, as if prompt and output positions were counted apart.
  kPositionsRestartAfterPreemption,
  // A readmitted sequence writes and reads its K/V through the block table it had before the
  // preemption (blocks since handed to other sequences), as far as that table reaches.
  kStaleBlockTableAfterPreemption,
};

using ForcedTokens = std::map<int64_t, std::vector<int32_t>>;

// Throws GoldenError if the set is not a batching case.
Candidate replay_batching_case(const GoldenSet& set, const Kernels& kernels,
                               const ModelWeights& weights, const TokenPicker& tokens,
                               BatchingFault fault, const ForcedTokens* forced = nullptr);

}  // namespace moeref::golden
