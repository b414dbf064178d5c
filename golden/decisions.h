// Judging a backend's decision that differs from the reference's (docs/golden-format.md,
// "Decisions").
//
// A decision (the experts a token is routed to, a greedy token, a sampled token) is discrete: a
// backend at reduced precision may make another choice where the reference's scores put two
// options closer than that precision can resolve, and that is not a bug. A backend that picks an
// option far from the reference's is. So a differing choice is excused only when the backend's own
// option scores, on the reference's scores, within the resolution of the reference's option:
//   resolution = tol(score of the reference's option) + tol(score of the backend's option),
// tol(v) = atol + rtol * |v| of the scores' tolerance class at the precision (two scores each off
// by their tolerance can swap). An exact tie is the tie rule's to decide and is never excused.
//
// - Router top-k, rank by rank on the router probabilities of every expert: the backend's expert
//   at rank r against the reference's expert at rank r.
// - Greedy token, on the logits row it was chosen from.
// - Sampled token, on the logits row, the sampling parameters and the Philox draw u
//   (ref/generation/sampling.h): the reference's token is the one whose cumulative-probability
//   interval holds u; the backend's token is excused when the probability mass between u and its
//   own interval is within the resolution of the probabilities at u (tol(u) twice). A token that
//   the top-k or top-p cut removed is excused only when its probability before the cut is below the
//   least probable kept token's, and within that resolution of it.
// - Speculative decisions (ref/generation/speculative.h), on the block's recorded q and p: a
// proposal drawn
//   from q (or its argmax, greedy), on the draft's probabilities as a sampled token is; an
//   acceptance u q(x) <= p(x) decided the other way when |u q(x) - p(x)| is within
//   tol(p(x)) + u tol(q(x)) (greedy: p(x) against the best other token's, as a greedy token); the
//   final token drawn from the residual max(0, p - q) (tolerance doubled: two probabilities) or,
//   after every proposal was accepted, from the last p.
// Each verdict carries a note that names both options, their scores and the distance.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "golden/compare.h"
#include "ref/generation/sampling.h"

namespace moeref::golden {

struct DecisionVerdict {
  bool excused = false;
  std::string note;  // "rank 1: expert 5 (golden probability 0.0015) ..."
};

// One token's experts, rank order: expected and actual [k], probs [n_experts] (the reference's).
DecisionVerdict judge_top_k(std::span<const float> probs, std::span<const int32_t> expected,
                            std::span<const int32_t> actual, const Tolerance& tolerance,
                            Precision precision);

// One greedy token chosen from `logits` (the reference's row).
DecisionVerdict judge_greedy(std::span<const float> logits, int32_t expected, int32_t actual,
                             const Tolerance& tolerance, Precision precision);

// One sampled token from `logits` with `params` and the draw `u`; `tolerance` is the
// probabilities' tolerance.
DecisionVerdict judge_sampled(std::span<const float> logits, const SamplingParams& params, double u,
                              int32_t expected, int32_t actual, const Tolerance& tolerance,
                              Precision precision);

// One token drawn with u from `weights` over the vocabulary (normalised by their sum, in token-id
// order, zero weights left out), or with greedy its argmax; `tolerance` is the weights' tolerance.
DecisionVerdict judge_drawn(std::span<const float> weights, bool greedy, double u, int32_t expected,
                            int32_t actual, const Tolerance& tolerance, Precision precision);

// A speculative acceptance test decided `actual` (1 accept, 0 reject) where the reference decided
// the other way: sampled, u q(x) <= p(x); greedy, x is the argmax of `p_row`.
DecisionVerdict judge_acceptance(std::span<const float> p_row, std::span<const float> q_row,
                                 int32_t proposal, bool greedy, double u, int32_t actual,
                                 const Tolerance& tolerance, Precision precision);

}  // namespace moeref::golden
