// Highway top-k of the MoE router, the contract of ref/ops/router.h's select_top_k, with exactly
// its results: indices in rank order (larger probability first, the lower expert index on a tie, +0
// and -0 equal) and the same weights to the bit (renormalised in double in rank order, as the
// reference does; only the search is vector code).
//
// Each rank is found with two vector passes over the token's row: the largest probability among
// the experts not yet chosen (vector Max, the chosen ones masked to -inf), then the first
// unchosen index holding it (vector Eq, FindFirstTrue). A row that holds a NaN goes through the
// reference's loop: its strict > comparisons give NaN an order-dependent place that a vector max
// has no reason to reproduce. Throws std::invalid_argument unless 1 <= k <= n_experts. Tests:
// tests/simd_ops_test.cc (TopK...). The router's other op, apply_capacity, has no fast twin:
// integer bookkeeping over a few experts per token, the reference's own code serves.
#pragma once

#include <cstdint>

namespace moeref::simd {

void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                  bool renormalize, int32_t* indices, float* weights);

}  // namespace moeref::simd
