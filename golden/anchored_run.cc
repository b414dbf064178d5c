#include "golden/anchored_run.h"

#include <algorithm>

#include "golden/candidate_runner.h"
#include "golden/forced_routing.h"
#include "ref/router.h"

namespace moeref::golden {

namespace {

bool is_decision_that_moves_tensors(const std::string& name) {
  return name == "sampled_tokens" || traced_name(name).ends_with("moe.topk_indices");
}

// The candidate's integer tensor of this name with the set's shape, or nullptr.
const TensorRecord* usable(const GoldenSet& set, const Candidate& candidate,
                           const std::string& name) {
  const auto found = candidate.find(name);
  if (found == candidate.end()) return nullptr;
  const TensorRecord& record = found->second;
  const bool integer = record.dtype == DType::kI32 || record.dtype == DType::kI64;
  return integer && record.shape == set.expected_tensor(name).shape ? &record : nullptr;
}

// I32 or I64 values as decisions (golden/compare.h).
std::vector<int32_t> integers(const TensorRecord& record) {
  const std::vector<double> values = as_doubles(record);
  std::vector<int32_t> result(values.size());
  std::transform(values.begin(), values.end(), result.begin(), as_decision);
  return result;
}

}  // namespace

bool needs_anchoring(const GoldenSet& set, const Candidate& candidate) {
  if (set.kind() != "model" || !set.weights()) return false;
  for (const ExpectedTensor& entry : set.expected()) {
    if (!is_decision_that_moves_tensors(entry.name)) continue;
    const TensorRecord* record = usable(set, candidate, entry.name);
    if (record != nullptr && integers(*record) != set.expected_tensor(entry.name).to_i32()) {
      return true;
    }
  }
  return false;
}

Candidate anchored_run(const GoldenSet& set, const Candidate& candidate) {
  std::vector<std::vector<int32_t>> routing;
  std::vector<int32_t> sampled = set.expected_tensor("sampled_tokens").to_i32();
  for (const ExpectedTensor& entry : set.expected()) {
    if (!is_decision_that_moves_tensors(entry.name)) continue;
    const TensorRecord* record = usable(set, candidate, entry.name);
    if (entry.name == "sampled_tokens") {
      if (record != nullptr) sampled = integers(*record);
    } else {
      routing.push_back(record != nullptr ? integers(*record)
                                          : set.expected_tensor(entry.name).to_i32());
    }
  }
  const ForcedRouting kernels(std::move(routing));
  Candidate run = run_model_case(set, kernels, nullptr, &sampled);
  // The run traced the forced experts; what a candidate's choice is judged against is the
  // reference's own choice on this run's router probabilities.
  for (auto& [name, record] : run) {
    if (!traced_name(name).ends_with("moe.topk_indices")) continue;
    const std::string probs_name =
        name.substr(0, name.size() - std::string("topk_indices").size()) + "router_probs";
    const TensorRecord& probs = run.at(probs_name);
    const int64_t n_tokens = probs.shape[0];
    const int64_t k = record.shape[1];
    std::vector<int32_t> indices(static_cast<size_t>(n_tokens * k));
    std::vector<float> weights(indices.size());
    ref::select_top_k(probs.to_f32().data(), n_tokens, probs.shape[1], k, false, indices.data(),
                      weights.data());
    record = make_i32_record(name, record.shape, indices);
  }
  return run;
}

}  // namespace moeref::golden
