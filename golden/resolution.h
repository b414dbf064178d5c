// Decision resolution: whether a model or op set's decisions can go the other way at a precision
// without the checker noticing (docs/golden-format.md, "Margins").
//
// The checker excuses a differing decision when the backend's option lies within the precision's
// resolution of the reference's (golden/decisions.h). A decision whose margin (golden/margins.h)
// is above that resolution can therefore not differ unexcused: a backend that makes it otherwise
// fails there. For every decision a model set records, this lists the margin and the resolution
// the checker would judge a flip with:
//   - "<call>/layers.L.moe.router_probs row t": the gaps between consecutive router probabilities
//     among the k + 1 largest, against tol(p_r) + tol(p_r+1) (the tightest pair by ratio);
//   - "greedy_tokens row i": the gap between the two largest logits of the row it was chosen from,
//     against tol(l_1) + tol(l_2);
//   - "sampled_tokens row i": the manifest's draw margin, against 2 tol(u).
// tol(v) is decision_tolerance's for the score tensor (calibrated sets) or the class tolerance.
// An op set's decisions are those golden/shaped_op_cases.h names: a top_k case's "indices row r"
// on its input probs, a moe case's "moe.router_probs row r", a greedy case's "tokens row r" on its
// input logits (the logits class tolerance) and a sampling case's "tokens row p" on the draw u;
// other ops have none.
#pragma once

#include <string>
#include <vector>

#include "golden/compare.h"
#include "golden/golden_set.h"

namespace moeref::golden {

struct DecisionResolution {
  std::string decision;  // "prefill/layers.1.moe.router_probs row 3", "greedy_tokens row 0"
  double margin = 0.0;
  double resolution = 0.0;
  bool resolved() const { return margin > resolution; }
};

// Every decision of a model set (kind "model"), in the set's order: router rows, greedy tokens,
// sampled tokens; or of an op set, row by row. Throws GoldenError for a set of another kind.
std::vector<DecisionResolution> decision_resolutions(const GoldenSet& set, Precision precision);

// The decision with the smallest margin / resolution; nullptr for none.
const DecisionResolution* least_resolved(const std::vector<DecisionResolution>& decisions);

}  // namespace moeref::golden
