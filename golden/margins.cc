#include "golden/margins.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

namespace moeref::golden {

double top_gap(std::vector<float> values, int64_t k) {
  std::sort(values.begin(), values.end(), std::greater<>());
  double gap = std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < k && j + 1 < static_cast<int64_t>(values.size()); ++j) {
    gap = std::min(gap, static_cast<double>(values[j]) - values[j + 1]);
  }
  return gap;
}

double router_margin(const std::vector<TensorRecord>& records, int64_t k) {
  double margin = std::numeric_limits<double>::infinity();
  for (const TensorRecord& record : records) {
    if (!record.name.ends_with("moe.router_probs")) continue;
    const std::vector<float> probs = record.to_f32();
    const auto n_experts = static_cast<size_t>(record.shape[1]);
    for (size_t row = 0; row < probs.size(); row += n_experts) {
      margin = std::min(margin, top_gap({probs.begin() + row, probs.begin() + row + n_experts}, k));
    }
  }
  return margin;
}

double draw_margin(std::span<const double> probabilities, double u) {
  double cumulative = 0.0;
  double distance = std::numeric_limits<double>::infinity();
  for (double p : probabilities) {
    if (p <= 0.0) continue;
    cumulative += p;
    distance = std::min(distance, std::fabs(u - cumulative));
  }
  return distance;
}

double token_margin(std::span<const float> logits, const SamplingParams& params, double u) {
  if (params.temperature == 0.0) return top_gap({logits.begin(), logits.end()}, 1);
  std::vector<double> probabilities;
  for (const TokenProbability& t : processed_distribution(logits, params)) {
    probabilities.push_back(t.probability);
  }
  return draw_margin(probabilities, u);
}

}  // namespace moeref::golden
