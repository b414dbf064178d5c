#include "golden/decisions.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <vector>

namespace moeref::golden {

namespace {

double tol(const Tolerance& t, double value) { return t.atol + t.rtol * std::fabs(value); }

template <class... Args>
std::string format(const char* pattern, Args... args) {
  char text[320];
  std::snprintf(text, sizeof text, pattern, args...);
  return text;
}

// The verdict on a choice of score `actual_score` where the reference's has `expected_score`;
// `what` names the two options ("expert 5 ... expert 2"), `unit` the scores ("probability").
DecisionVerdict by_scores(double expected_score, double actual_score, const std::string& options,
                          const char* unit, const Tolerance& tolerance, Precision precision,
                          const char* tie_rule) {
  const double distance = std::fabs(expected_score - actual_score);
  const double resolution = tol(tolerance, expected_score) + tol(tolerance, actual_score);
  const std::string scores = format(" (golden %s %.4g where the golden choice has %.4g)", unit,
                                    actual_score, expected_score);
  if (distance == 0.0) {
    return {false, options + scores + ": an exact tie, which " + tie_rule + ", not rounding"};
  }
  if (distance <= resolution) {
    return {true, options + scores +
                      format(": %.3g apart, within the %s resolution %.3g: a near-tie", distance,
                             precision_name(precision), resolution)};
  }
  return {false, options + scores +
                     format(": %.3g apart, beyond the %s resolution %.3g", distance,
                            precision_name(precision), resolution)};
}

// The verdict on `actual` drawn with u from the distribution `kept` (in token-id order): excused
// when u is within `resolution` of its interval; nullopt when `kept` lacks the token.
std::optional<DecisionVerdict> by_interval(const std::vector<TokenProbability>& kept, double u,
                                           int32_t actual, const std::string& options,
                                           double resolution, Precision precision) {
  double low = 0.0;
  for (const TokenProbability& t : kept) {
    const double high = low + t.probability;
    if (t.token == actual) {
      const double distance = u < low ? low - u : u >= high ? u - high : 0.0;
      const std::string where =
          options + format(": its interval is [%.6f, %.6f), %.3g from u", low, high, distance);
      const bool excused = distance <= resolution;
      return DecisionVerdict{excused,
                             where + format(excused ? ", within the %s resolution %.3g: a near-tie"
                                                    : ", beyond the %s resolution %.3g",
                                            precision_name(precision), resolution)};
    }
    low = high;
  }
  return std::nullopt;
}

int32_t most_probable(std::span<const float> scores) {
  return static_cast<int32_t>(std::max_element(scores.begin(), scores.end()) - scores.begin());
}

}  // namespace

DecisionVerdict judge_top_k(std::span<const float> probs, std::span<const int32_t> expected,
                            std::span<const int32_t> actual, const Tolerance& tolerance,
                            Precision precision) {
  const auto n_experts = static_cast<int64_t>(probs.size());
  DecisionVerdict verdict{true, ""};
  for (size_t r = 0; r < actual.size(); ++r) {
    const int32_t a = actual[r];
    if (a < 0 || a >= n_experts) {
      return {false, format("rank %zu: expert %d does not exist (%lld experts)", r, a,
                            static_cast<long long>(n_experts))};
    }
    if (std::find(actual.begin(), actual.begin() + static_cast<std::ptrdiff_t>(r), a) !=
        actual.begin() + static_cast<std::ptrdiff_t>(r)) {
      return {false, format("rank %zu: expert %d chosen twice", r, a)};
    }
  }
  for (size_t r = 0; r < actual.size(); ++r) {
    if (actual[r] == expected[r]) continue;
    DecisionVerdict rank = by_scores(
        probs[static_cast<size_t>(expected[r])], probs[static_cast<size_t>(actual[r])],
        format("rank %zu: expert %d where the reference chose expert %d", r, actual[r],
               expected[r]),
        "probability", tolerance, precision, "the tie rule decides (the lower index ranks first)");
    if (!rank.excused) return rank;
    if (verdict.note.empty()) verdict.note = rank.note;
  }
  return verdict;
}

DecisionVerdict judge_greedy(std::span<const float> logits, int32_t expected, int32_t actual,
                             const Tolerance& tolerance, Precision precision) {
  const auto vocab = static_cast<int64_t>(logits.size());
  if (actual < 0 || actual >= vocab) {
    return {false, format("token %d is outside the vocabulary of %lld", actual,
                          static_cast<long long>(vocab))};
  }
  return by_scores(logits[static_cast<size_t>(expected)], logits[static_cast<size_t>(actual)],
                   format("token %d where the reference chose token %d", actual, expected), "logit",
                   tolerance, precision, "the tie rule decides (the lowest token id wins)");
}

DecisionVerdict judge_sampled(std::span<const float> logits, const SamplingParams& params, double u,
                              int32_t expected, int32_t actual, const Tolerance& tolerance,
                              Precision precision) {
  const auto vocab = static_cast<int64_t>(logits.size());
  if (actual < 0 || actual >= vocab) {
    return {false, format("token %d is outside the vocabulary of %lld", actual,
                          static_cast<long long>(vocab))};
  }
  if (params.temperature == 0.0) {
    return judge_greedy(logits, expected, actual, tolerance, precision);
  }
  const double resolution = 2.0 * tol(tolerance, u);
  const std::string options =
      format("token %d where the reference drew token %d (u = %.6f)", actual, expected, u);
  const std::vector<TokenProbability> kept = processed_distribution(logits, params);
  if (std::optional<DecisionVerdict> verdict =
          by_interval(kept, u, actual, options, resolution, precision)) {
    return *verdict;
  }
  // Cut by top-k or top-p: compare its probability before the cut with the least kept token's.
  SamplingParams uncut = params;
  uncut.top_k = 0;
  uncut.top_p = 1.0;
  const std::vector<TokenProbability> all = processed_distribution(logits, uncut);
  double least_kept = 1.0;
  for (const TokenProbability& t : kept) {
    least_kept = std::min(least_kept, all[static_cast<size_t>(t.token)].probability);
  }
  const double probability = all[static_cast<size_t>(actual)].probability;
  const double distance = least_kept - probability;
  // Equal probabilities are the cut's tie rule (the lower token id ranks first), not rounding's.
  const bool excused = distance > 0.0 && distance <= resolution;
  return {excused,
          options + format(": the top-k/top-p cut removed it (probability %.4g before the cut, "
                           "%.3g below the least kept token's), %s the %s resolution %.3g%s",
                           probability, distance, excused ? "within" : "beyond",
                           precision_name(precision), resolution, excused ? ": a near-tie" : "")};
}

DecisionVerdict judge_drawn(std::span<const float> weights, bool greedy, double u, int32_t expected,
                            int32_t actual, const Tolerance& tolerance, Precision precision) {
  const auto vocab = static_cast<int64_t>(weights.size());
  if (actual < 0 || actual >= vocab) {
    return {false, format("token %d is outside the vocabulary of %lld", actual,
                          static_cast<long long>(vocab))};
  }
  if (greedy) {
    return by_scores(weights[static_cast<size_t>(expected)], weights[static_cast<size_t>(actual)],
                     format("token %d where the reference chose token %d", actual, expected),
                     "probability", tolerance, precision,
                     "the tie rule decides (the lowest token id wins)");
  }
  double total = 0.0;
  for (float w : weights) total += std::max(0.0f, w);
  std::vector<TokenProbability> kept;
  for (int64_t t = 0; t < vocab; ++t) {
    if (weights[static_cast<size_t>(t)] > 0.0f) {
      kept.push_back({static_cast<int32_t>(t), weights[static_cast<size_t>(t)] / total});
    }
  }
  const std::string options =
      format("token %d where the reference drew token %d (u = %.6f)", actual, expected, u);
  const double resolution = 2.0 * tol(tolerance, u);
  if (std::optional<DecisionVerdict> verdict =
          by_interval(kept, u, actual, options, resolution, precision)) {
    return *verdict;
  }
  return {false, options + ": it has no probability there"};
}

DecisionVerdict judge_acceptance(std::span<const float> p_row, std::span<const float> q_row,
                                 int32_t proposal, bool greedy, double u, int32_t actual,
                                 const Tolerance& tolerance, Precision precision) {
  const auto vocab = static_cast<int64_t>(p_row.size());
  if (proposal < 0 || proposal >= vocab) {
    return {false, format("proposal %d is outside the vocabulary of %lld", proposal,
                          static_cast<long long>(vocab))};
  }
  const char* decided = actual != 0 ? "accepted" : "rejected";
  const double p = p_row[static_cast<size_t>(proposal)];
  if (greedy) {
    // The target's argmax against the proposal, or, where they are one token, against the best
    // other token: the two options the test decided between.
    const int32_t best = most_probable(p_row);
    std::vector<float> others(p_row.begin(), p_row.end());
    others[static_cast<size_t>(best)] = -std::numeric_limits<float>::infinity();
    const int32_t other = best == proposal ? most_probable(others) : proposal;
    return by_scores(
        p_row[static_cast<size_t>(best)], p_row[static_cast<size_t>(other)],
        format("proposal %d %s, where token %d is the reference's argmax", proposal, decided, best),
        "probability", tolerance, precision, "the tie rule decides (the lowest token id wins)");
  }
  const double q = q_row[static_cast<size_t>(proposal)];
  const double distance = std::fabs(u * q - p);
  const double resolution = tol(tolerance, p) + u * tol(tolerance, q);
  const bool excused = distance > 0.0 && distance <= resolution;
  return {excused, format("proposal %d %s where the reference %s it (u q = %.6g, p = %.6g): %.3g "
                          "apart, %s the %s resolution %.3g%s",
                          proposal, decided, actual != 0 ? "rejected" : "accepted", u * q, p,
                          distance, excused ? "within" : "beyond", precision_name(precision),
                          resolution, excused ? ": a near-tie" : "")};
}

}  // namespace moeref::golden
