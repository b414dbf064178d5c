#include "golden/forced_routing.h"

#include <algorithm>

#include "ref/ops/router.h"

namespace moeref::golden {

namespace {

bool usable_row(const int32_t* row, int64_t k, int64_t n_experts) {
  for (int64_t j = 0; j < k; ++j) {
    if (row[j] < 0 || row[j] >= n_experts) return false;
    if (std::find(row, row + j, row[j]) != row + j) return false;
  }
  return true;
}

}  // namespace

ForcedRouting::ForcedRouting(std::vector<std::vector<int32_t>> choices)
    : choices_(std::move(choices)) {}

void ForcedRouting::select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                                 bool renormalize, int32_t* indices, float* weights) const {
  ref::select_top_k(probs, n_tokens, n_experts, k, renormalize, indices, weights);
  const size_t call = next_call_++;
  if (call >= choices_.size()) return;
  const std::vector<int32_t>& forced = choices_[call];
  if (static_cast<int64_t>(forced.size()) != n_tokens * k) return;
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (usable_row(forced.data() + t * k, k, n_experts)) {
      std::copy_n(forced.data() + t * k, k, indices + t * k);
    }
  }
  ref::top_k_weights(probs, n_tokens, n_experts, k, renormalize, indices, weights);
}

}  // namespace moeref::golden
