// Decision margins: how far each decision a golden set records is from going the other way, on
// the reference's own scores (docs/golden-format.md, "Margins"). A backend whose scores are off by
// less than a margin makes that decision as the reference does; the checker's near-tie rules
// (golden/decisions.h) judge the rest.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ref/generation/sampling.h"
#include "ref/io/safetensors.h"

namespace moeref::golden {

// The smallest gap between neighbours among the k + 1 largest values: how far a top-k choice is
// from another (k = 1: a greedy token's logit margin).
double top_gap(std::vector<float> values, int64_t k);

// The smallest top-k gap of every row of every "moe.router_probs" record.
double router_margin(const std::vector<TensorRecord>& records, int64_t k);

// The distance of the draw u from the nearest boundary of the cumulative distribution of
// `probabilities` (in token-id order): how far a sampled token is from another.
double draw_margin(std::span<const double> probabilities, double u);

// A token chosen from one row of logits: its greedy logit margin at temperature 0, otherwise the
// draw margin of u on the processed distribution (ref/generation/sampling.h).
double token_margin(std::span<const float> logits, const SamplingParams& params, double u);

}  // namespace moeref::golden
