#include "ref/generation/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "ref/generation/philox.h"

namespace moeref {

void validate(const SamplingParams& params) {
  if (!std::isfinite(params.temperature) || params.temperature < 0.0) {
    throw std::invalid_argument("temperature must be finite and >= 0, got " +
                                std::to_string(params.temperature));
  }
  if (params.top_k < 0) {
    throw std::invalid_argument("top_k must be >= 0 (0 = off), got " +
                                std::to_string(params.top_k));
  }
  if (!(params.top_p > 0.0 && params.top_p <= 1.0)) {
    throw std::invalid_argument("top_p must be in (0, 1], got " + std::to_string(params.top_p));
  }
}

int32_t greedy_token(std::span<const float> logits) {
  if (logits.empty()) throw std::invalid_argument("no logits to choose a token from");
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

std::vector<TokenProbability> processed_distribution(std::span<const float> logits,
                                                     const SamplingParams& params) {
  if (logits.empty()) throw std::invalid_argument("no logits to sample from");
  std::vector<TokenProbability> kept(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    kept[i] = {static_cast<int32_t>(i), static_cast<double>(logits[i]) / params.temperature};
  }
  // Until step 3 the `probability` field holds the scaled logit z.
  auto by_value_then_id = [](const TokenProbability& a, const TokenProbability& b) {
    return a.probability != b.probability ? a.probability > b.probability : a.token < b.token;
  };
  auto by_id = [](const TokenProbability& a, const TokenProbability& b) {
    return a.token < b.token;
  };

  if (params.top_k > 0 && params.top_k < static_cast<int64_t>(kept.size())) {
    std::sort(kept.begin(), kept.end(), by_value_then_id);
    kept.resize(static_cast<size_t>(params.top_k));
    std::sort(kept.begin(), kept.end(), by_id);
  }

  double max_z = kept[0].probability;
  for (const TokenProbability& t : kept) max_z = std::max(max_z, t.probability);
  double sum = 0.0;
  for (TokenProbability& t : kept) {
    t.probability = std::exp(t.probability - max_z);
    sum += t.probability;
  }
  for (TokenProbability& t : kept) t.probability /= sum;

  if (params.top_p < 1.0) {
    std::sort(kept.begin(), kept.end(), by_value_then_id);
    double cumulative = 0.0;
    size_t n_kept = 0;
    while (n_kept < kept.size() && (n_kept == 0 || cumulative < params.top_p)) {
      cumulative += kept[n_kept++].probability;
    }
    kept.resize(n_kept);
    std::sort(kept.begin(), kept.end(), by_id);
  }

  double kept_sum = 0.0;
  for (const TokenProbability& t : kept) kept_sum += t.probability;
  for (TokenProbability& t : kept) t.probability /= kept_sum;
  return kept;
}

int32_t draw_token(const std::vector<TokenProbability>& distribution, double u) {
  double cumulative = 0.0;
  for (const TokenProbability& t : distribution) {
    cumulative += t.probability;
    if (u < cumulative) return t.token;
  }
  return distribution.back().token;
}

int32_t sample_token(std::span<const float> logits, const SamplingParams& params, uint32_t position,
                     uint32_t request, uint32_t draw) {
  if (params.temperature == 0.0) return greedy_token(logits);
  const double u =
      generation_uniform(params.seed, draw, position, request, RandomStream::kSampling);
  return draw_token(processed_distribution(logits, params), u);
}

}  // namespace moeref
