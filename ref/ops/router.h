// The MoE router's decisions: top-k experts per token, their weights, capacity dropping, and the
// router's auxiliary losses. Router logits and probabilities are computed by the caller
// (logits = W_router x, probs = softmax(logits)); everything here is exact integer logic or a
// double-precision reduction rounded once.
//
// Fast twin: simd/router.h (select_top_k), the same arguments in the same order. Tests:
// tests/ops_test.cc (RouterTopK, Capacity, RouterLosses); the twin against this op:
// tests/simd_ops_test.cc (TopK...).
#pragma once

#include <cstdint>
#include <vector>

namespace moeref::ref {

// probs: [tokens, n_experts]. indices, weights: [tokens, k], in rank order.
// Rank order: larger probability first; equal probabilities go to the lower expert index
// (torch.topk and ggml leave ties unspecified; moeref fixes the rule so it can be tested).
// With renormalize, weight_j = p_j / sum of the k chosen p (summed in rank order, in double);
// without, weight_j = p_j. Throws std::invalid_argument unless 1 <= k <= n_experts.
void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                  bool renormalize, int32_t* indices, float* weights);

// The weights of chosen experts, as select_top_k computes them: indices [tokens, k] holds each
// token's k experts in rank order (distinct, each below n_experts). Backend checking uses it to
// re-run the reference with a backend's own choices (golden/forced_routing.h).
void top_k_weights(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                   bool renormalize, const int32_t* indices, float* weights);

// Switch / GShard capacity: C = ceil(capacity_factor * tokens * k / n_experts), computed in double,
// for the tokens of one forward call. 0 means dropless (no limit).
int64_t expert_capacity(double capacity_factor, int64_t n_tokens, int64_t k, int64_t n_experts);

// Marks in kept ([tokens, k]) which assignments fit, in GShard priority order: every token's
// rank-0 choice in token order, then every rank-1 choice in token order, and so on; an assignment
// that finds its expert already holding C tokens is dropped (kept = 0) and contributes nothing.
// capacity 0 keeps everything. Returns the number dropped.
int64_t apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k, int64_t n_experts,
                       int64_t capacity, int32_t* kept);

// Load-balancing loss as in Hugging Face Mixtral: aux = E * sum_e f_e * P_e, where f_e is the
// share of tokens whose choice at some rank is e, summed over ranks (aux = k under uniform
// routing), and P_e the mean router probability of e. Every assignment counts, dropped or not.
double load_balancing_loss(const float* probs, const int32_t* indices, int64_t n_tokens,
                           int64_t n_experts, int64_t k);

// ST-MoE router z-loss (Zoph et al. 2022): mean over tokens of logsumexp(logits_t)^2.
double router_z_loss(const float* logits, int64_t n_tokens, int64_t n_experts);

}  // namespace moeref::ref
