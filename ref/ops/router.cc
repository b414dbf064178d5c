#include "ref/ops/router.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "ref/ops/softmax.h"

namespace moeref::ref {

void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                  bool renormalize, int32_t* indices, float* weights) {
  if (k < 1 || k > n_experts) {
    throw std::invalid_argument("top-k of " + std::to_string(k) + " among " +
                                std::to_string(n_experts) + " experts");
  }
  std::vector<bool> taken(static_cast<size_t>(n_experts));
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* p = probs + t * n_experts;
    int32_t* chosen = indices + t * k;
    std::fill(taken.begin(), taken.end(), false);
    for (int64_t rank = 0; rank < k; ++rank) {
      int64_t best = -1;
      for (int64_t e = 0; e < n_experts; ++e) {
        // Strictly greater: on a tie the earlier (lower) expert index stays.
        if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
      }
      taken[best] = true;
      chosen[rank] = static_cast<int32_t>(best);
    }
  }
  top_k_weights(probs, n_tokens, n_experts, k, renormalize, indices, weights);
}

void top_k_weights(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                   bool renormalize, const int32_t* indices, float* weights) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* p = probs + t * n_experts;
    const int32_t* chosen = indices + t * k;
    double chosen_sum = 0.0;
    for (int64_t rank = 0; rank < k; ++rank) chosen_sum += p[chosen[rank]];
    for (int64_t rank = 0; rank < k; ++rank) {
      weights[t * k + rank] =
          renormalize ? static_cast<float>(p[chosen[rank]] / chosen_sum) : p[chosen[rank]];
    }
  }
}

int64_t expert_capacity(double capacity_factor, int64_t n_tokens, int64_t k, int64_t n_experts) {
  if (capacity_factor == 0.0) return 0;
  const double slots =
      capacity_factor * static_cast<double>(n_tokens * k) / static_cast<double>(n_experts);
  return static_cast<int64_t>(std::ceil(slots));
}

int64_t apply_capacity(const int32_t* indices, int64_t n_tokens, int64_t k, int64_t n_experts,
                       int64_t capacity, int32_t* kept) {
  std::vector<int64_t> load(static_cast<size_t>(n_experts), 0);
  int64_t dropped = 0;
  for (int64_t rank = 0; rank < k; ++rank) {
    for (int64_t t = 0; t < n_tokens; ++t) {
      const int32_t expert = indices[t * k + rank];
      const bool fits = capacity == 0 || load[expert] < capacity;
      kept[t * k + rank] = fits ? 1 : 0;
      if (fits) {
        ++load[expert];
      } else {
        ++dropped;
      }
    }
  }
  return dropped;
}

double load_balancing_loss(const float* probs, const int32_t* indices, int64_t n_tokens,
                           int64_t n_experts, int64_t k) {
  if (n_tokens == 0) return 0.0;
  std::vector<double> assignments(static_cast<size_t>(n_experts), 0.0);
  std::vector<double> prob_sum(static_cast<size_t>(n_experts), 0.0);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t rank = 0; rank < k; ++rank) assignments[indices[t * k + rank]] += 1.0;
    for (int64_t e = 0; e < n_experts; ++e) prob_sum[e] += probs[t * n_experts + e];
  }
  const double tokens = static_cast<double>(n_tokens);
  double sum = 0.0;
  for (int64_t e = 0; e < n_experts; ++e) sum += (assignments[e] / tokens) * (prob_sum[e] / tokens);
  return static_cast<double>(n_experts) * sum;
}

double router_z_loss(const float* logits, int64_t n_tokens, int64_t n_experts) {
  if (n_tokens == 0) return 0.0;
  double sum = 0.0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const double lse = log_sum_exp(logits + t * n_experts, n_experts);
    sum += lse * lse;
  }
  return sum / static_cast<double>(n_tokens);
}

}  // namespace moeref::ref
