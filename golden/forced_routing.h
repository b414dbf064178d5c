// The reference kernels with the router's choices forced to a backend's: what re-anchors the
// checker after a legitimate routing flip (golden/anchored_run.h, docs/golden-format.md,
// "Re-anchoring").
//
// The model calls select_top_k once per MoE layer per forward call, in execution order; the n-th
// call takes the n-th entry of `choices` ([tokens, k] expert indices, rank order), in the order the
// set traces its "moe.topk_indices" tensors. A row is forced when the backend's row is usable (k
// distinct experts, each below n_experts); otherwise, and for calls past the end of the list or
// with an empty entry or a different token count, the reference chooses. The weights of forced
// rows are computed from the reference's own probabilities exactly as select_top_k would
// (ref::top_k_weights), so forcing the reference's own choices changes no bit.
//
// Not thread-safe: one model run at a time (the model calls select_top_k from one thread).
#pragma once

#include <cstdint>
#include <vector>

#include "ref/ops/kernels.h"

namespace moeref::golden {

class ForcedRouting final : public RefKernels {
 public:
  explicit ForcedRouting(std::vector<std::vector<int32_t>> choices);
  const char* name() const override { return "ref with forced routing"; }
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override;

 private:
  std::vector<std::vector<int32_t>> choices_;
  mutable size_t next_call_ = 0;
};

}  // namespace moeref::golden
