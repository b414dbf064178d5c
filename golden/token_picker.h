// How a backend picks its next token from a forward call's logits, step by step, so that a
// candidate runner can run a backend that gets one step wrong (golden/bug_catalog.h).
//
// The base class is moeref's rules (ref/generation/sampling.h): the last row of the call's logits;
// greedy is its argmax, ties to the lowest id; sampling draws u from Philox (key = seed, counter =
// {0, position, request, stream 0}) and inverts the processed distribution (temperature, top-k,
// top-p, renormalised) in token-id order. pick() with the base rules equals sample_token.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ref/generation/sampling.h"
#include "ref/tensor.h"

namespace moeref::golden {

class TokenPicker {
 public:
  virtual ~TokenPicker() = default;

  // The row of a call's logits [T, vocab] the next token is chosen from.
  virtual int64_t row(const Tensor& logits) const;
  // Temperature 0.
  virtual int32_t greedy(std::span<const float> logits) const;
  // Steps 1-5 of ref/generation/sampling.h: the kept tokens in token-id order, their probabilities.
  virtual std::vector<TokenProbability> distribution(std::span<const float> logits,
                                                     const SamplingParams& params) const;
  // Step 6's u in [0, 1).
  virtual double uniform(uint64_t seed, uint32_t position, uint32_t request) const;

  // The token for one row of logits, sampled or greedy by params.temperature.
  int32_t pick(std::span<const float> logits, const SamplingParams& params, uint32_t position,
               uint32_t request) const;
  // The same for the row of a call's logits that row() chooses.
  int32_t pick_from_call(const Tensor& logits, const SamplingParams& params, uint32_t position,
                         uint32_t request) const;
};

// moeref's own rules.
const TokenPicker& moeref_token_picker();

}  // namespace moeref::golden
