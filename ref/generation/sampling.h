// Choosing the next token from a row of logits, defined exactly so that a GPU backend can
// reproduce every token (docs/model.md, "Sampling").
//
// temperature = 0: greedy, the argmax; on equal logits the lowest token id wins.
// temperature > 0, in this order:
//   1. z_i = logit_i / temperature                                       (double)
//   2. top-k (k > 0): keep the k largest z; on equal z the lower token id ranks first
//   3. p_i = softmax of z over the kept tokens (max subtracted)          (double)
//   4. top-p (p < 1): rank the kept tokens by p (ties: lower id first) and keep the shortest
//      prefix whose cumulative probability, summed in that rank order, reaches top_p
//   5. renormalise: p_i / sum of the kept p, summed in token-id order
//   6. draw u from Philox (ref/generation/philox.h: key = seed, counter = {draw, position, request,
//      stream 0}), walk the kept tokens in token-id order accumulating p, and return the first
//      whose cumulative sum exceeds u; if rounding leaves u at or past the total, the last kept.
// `position` is the position the sampled token will occupy in the sequence.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

namespace moeref {

struct SamplingParams {
  double temperature = 0.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // 1 = off
  uint64_t seed = 0;
};

// Throws std::invalid_argument naming the parameter and value: temperature < 0 or not finite,
// top_k < 0, top_p not in (0, 1].
void validate(const SamplingParams& params);

int32_t greedy_token(std::span<const float> logits);

struct TokenProbability {
  int32_t token;
  double probability;
};

// Steps 1-5: the kept tokens in token-id order, with probabilities summing to 1. temperature > 0.
std::vector<TokenProbability> processed_distribution(std::span<const float> logits,
                                                     const SamplingParams& params);

// Step 6 on a processed distribution with a given u in [0, 1).
int32_t draw_token(const std::vector<TokenProbability>& distribution, double u);

int32_t sample_token(std::span<const float> logits, const SamplingParams& params, uint32_t position,
                     uint32_t request = 0, uint32_t draw = 0);

}  // namespace moeref
