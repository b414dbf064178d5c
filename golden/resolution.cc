#include "golden/resolution.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "golden/calibration.h"
#include "golden/margins.h"
#include "ref/generation/philox.h"

namespace moeref::golden {
namespace {

using nlohmann::json;

double tol(const Tolerance& t, double value) { return t.atol + t.rtol * std::fabs(value); }

// The pair of neighbours among the k + 1 largest of `row` whose gap is the smallest fraction of
// its resolution.
DecisionResolution tightest_gap(std::vector<float> row, int64_t k, const Tolerance& t,
                                std::string decision) {
  std::sort(row.begin(), row.end(), std::greater<>());
  DecisionResolution tightest{std::move(decision), INFINITY, 0.0};
  for (int64_t j = 0; j < k && j + 1 < static_cast<int64_t>(row.size()); ++j) {
    const double gap = static_cast<double>(row[j]) - row[j + 1];
    const double resolution = tol(t, row[j]) + tol(t, row[j + 1]);
    if (j == 0 || gap * tightest.resolution < tightest.margin * resolution) {
      tightest.margin = gap;
      tightest.resolution = resolution;
    }
  }
  return tightest;
}

std::vector<float> row_of(const TensorRecord& record, int64_t row) {
  const std::vector<float> values = record.to_f32();
  const auto width = static_cast<size_t>(record.shape.back());
  return {values.begin() + static_cast<std::ptrdiff_t>(row * width),
          values.begin() + static_cast<std::ptrdiff_t>((row + 1) * width)};
}

// The decisions of an op set, named as golden/shaped_op_cases.h names them: a top_k case's rows of
// its input "probs", a moe case's rows of "moe.router_probs", a sampling or greedy case's tokens.
// Scores are judged as the checker judges them: probabilities with decision_tolerance, sampled
// tokens on the draw u with the probability class tolerance, greedy tokens on the logits with the
// logits class tolerance.
std::vector<DecisionResolution> op_decision_resolutions(const GoldenSet& set, Precision precision) {
  const json& manifest = set.manifest();
  const std::string op = manifest.at("op").get<std::string>();
  const json& parameters = manifest.at("parameters");
  std::vector<DecisionResolution> decisions;
  auto rows_of = [&](const TensorRecord& scores, int64_t k, const Tolerance& t,
                     const std::string& name) {
    for (int64_t row = 0; row < scores.shape[0]; ++row) {
      decisions.push_back(
          tightest_gap(row_of(scores, row), k, t, name + " row " + std::to_string(row)));
    }
  };
  if (op == "top_k") {
    rows_of(set.inputs().at("probs"), parameters.at("k").get<int64_t>(),
            decision_tolerance(set, precision, ToleranceClass::kProbability, "probs"), "indices");
  } else if (op == "moe") {
    rows_of(set.expected_tensor("moe.router_probs"), parameters.at("top_k").get<int64_t>(),
            decision_tolerance(set, precision, ToleranceClass::kProbability, "moe.router_probs"),
            "moe.router_probs");
  } else if (op == "greedy") {
    rows_of(set.inputs().at("logits"), 1, default_tolerance(precision, ToleranceClass::kLogits),
            "tokens");
  } else if (op == "sampling") {
    const TensorRecord& logits = set.inputs().at("logits");
    const SamplingParams params{.temperature = parameters.at("temperature").get<double>(),
                                .top_k = parameters.at("top_k").get<int64_t>(),
                                .top_p = parameters.at("top_p").get<double>(),
                                .seed = parameters.at("seed").get<uint64_t>()};
    const Tolerance t = default_tolerance(precision, ToleranceClass::kProbability);
    for (int64_t row = 0; row < logits.shape[0]; ++row) {
      const double u = generation_uniform(
          params.seed, parameters.at("draw").get<uint32_t>(), static_cast<uint32_t>(row),
          parameters.at("request").get<uint32_t>(), RandomStream::kSampling);
      decisions.push_back({"tokens row " + std::to_string(row),
                           token_margin(row_of(logits, row), params, u), 2.0 * tol(t, u)});
    }
  }
  return decisions;
}

}  // namespace

std::vector<DecisionResolution> decision_resolutions(const GoldenSet& set, Precision precision) {
  if (set.kind() == "op") return op_decision_resolutions(set, precision);
  if (set.kind() != "model") {
    throw GoldenError(set.dir().string() +
                      ": decision resolutions are defined for model sets, not " + set.kind() +
                      " sets");
  }
  const json& manifest = set.manifest();
  const auto top_k = manifest.at("config").at("top_k").get<int64_t>();
  std::vector<DecisionResolution> decisions;

  for (const ExpectedTensor& entry : set.expected()) {
    if (!entry.name.ends_with("moe.router_probs")) continue;
    const TensorRecord& probs = set.expected_tensor(entry.name);
    const Tolerance t =
        decision_tolerance(set, precision, ToleranceClass::kProbability, entry.name);
    for (int64_t row = 0; row < probs.shape[0]; ++row) {
      decisions.push_back(
          tightest_gap(row_of(probs, row), top_k, t, entry.name + " row " + std::to_string(row)));
    }
  }

  const TensorRecord& greedy = set.expected_tensor("greedy_tokens");
  for (int64_t i = 0; i < greedy.shape[0]; ++i) {
    const std::string logits_name =
        i == 0 ? "prefill/logits" : "decode." + std::to_string(i - 1) + "/logits";
    const TensorRecord& logits = set.expected_tensor(logits_name);
    decisions.push_back(
        tightest_gap(row_of(logits, logits.shape[0] - 1), 1,
                     decision_tolerance(set, precision, ToleranceClass::kLogits, logits_name),
                     "greedy_tokens row " + std::to_string(i)));
  }

  // Sampled tokens are judged with the probability class tolerance (their distributions are not
  // stored, so not calibrated), on the draw u of each position.
  const json& inputs = manifest.at("inputs");
  const auto seed = inputs.at("sampling").at("seed").get<uint64_t>();
  const auto prompt_length = static_cast<uint32_t>(inputs.at("prompt").size());
  const Tolerance t = default_tolerance(precision, ToleranceClass::kProbability);
  const json& margins = manifest.at("margins").at("sampled_tokens");
  for (size_t i = 0; i < margins.size(); ++i) {
    const double u = generation_uniform(seed, 0, prompt_length + static_cast<uint32_t>(i), 0,
                                        RandomStream::kSampling);
    decisions.push_back(
        {"sampled_tokens row " + std::to_string(i), margins[i].get<double>(), 2.0 * tol(t, u)});
  }
  return decisions;
}

const DecisionResolution* least_resolved(const std::vector<DecisionResolution>& decisions) {
  const DecisionResolution* least = nullptr;
  for (const DecisionResolution& d : decisions) {
    if (least == nullptr || d.margin * least->resolution < least->margin * d.resolution) least = &d;
  }
  return least;
}

}  // namespace moeref::golden
