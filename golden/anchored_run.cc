#include "golden/anchored_run.h"

#include <algorithm>

#include "golden/batching_case.h"
#include "golden/batching_replay.h"
#include "golden/candidate_runner.h"
#include "golden/forced_routing.h"
#include "golden/speculative_case.h"
#include "ref/ops/router.h"

namespace moeref::golden {

namespace {

bool is_routing(const std::string& name) { return traced_name(name).ends_with("moe.topk_indices"); }

// The decisions that move what a set computes next: routing everywhere, and the tokens fed back.
bool is_decision_that_moves_tensors(const GoldenSet& set, const std::string& name) {
  if (is_routing(name)) return true;
  if (set.kind() == "model") return name == "sampled_tokens";
  return set.kind() == "batching" && (traced_name(name) == "sampled" ||
                                      (name.starts_with("request.") && name.ends_with("/tokens")));
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

// Every routing decision of the candidate in execution order, the set's own where the candidate's
// is missing or unusable.
std::vector<std::vector<int32_t>> routing_of(const GoldenSet& set, const Candidate& candidate) {
  std::vector<std::vector<int32_t>> routing;
  for (const ExpectedTensor& entry : set.expected()) {
    if (!is_routing(entry.name)) continue;
    const TensorRecord* record = usable(set, candidate, entry.name);
    routing.push_back(record != nullptr ? integers(*record)
                                        : set.expected_tensor(entry.name).to_i32());
  }
  return routing;
}

// A batching candidate's generated tokens by request: from its "request.id/tokens" where usable,
// otherwise from its "step.s/sampled" rows (those that name the request the schedule samples
// for), otherwise the set's.
ForcedTokens batching_tokens(const GoldenSet& set, const Candidate& candidate) {
  ForcedTokens tokens;
  for (const ExpectedTensor& entry : set.expected()) {
    if (traced_name(entry.name) != "sampled") continue;
    const std::vector<int32_t> golden = set.expected_tensor(entry.name).to_i32();
    const TensorRecord* record = usable(set, candidate, entry.name);
    const std::vector<int32_t> actual = record != nullptr ? integers(*record) : golden;
    for (size_t row = 0; row + 1 < golden.size(); row += 2) {
      tokens[golden[row]].push_back(actual[row] == golden[row] ? actual[row + 1] : golden[row + 1]);
    }
  }
  for (auto& [id, generated] : tokens) {
    const std::string name = "request." + std::to_string(id) + "/tokens";
    if (!set.has_expected(name)) continue;
    const TensorRecord* record = usable(set, candidate, name);
    if (record != nullptr) generated = integers(*record);
  }
  return tokens;
}

// A speculative candidate's integer tensor, whatever its shape (a block may examine more or fewer
// proposals than the set's), or nullptr.
const TensorRecord* integer_tensor(const Candidate& candidate, const std::string& name) {
  const auto found = candidate.find(name);
  if (found == candidate.end()) return nullptr;
  const DType dtype = found->second.dtype;
  return dtype == DType::kI32 || dtype == DType::kI64 ? &found->second : nullptr;
}

// The speculative decisions a candidate made, block by block, per mode.
std::map<std::string, std::vector<FollowedBlock>> speculative_decisions(
    const Candidate& candidate) {
  std::map<std::string, std::vector<FollowedBlock>> follow;
  for (const char* mode : {"greedy", "sampled"}) {
    std::vector<FollowedBlock>& blocks = follow[mode];
    for (int64_t b = 0;; ++b) {
      const std::string prefix = std::string(mode) + "/block." + std::to_string(b) + "/";
      const TensorRecord* proposals = integer_tensor(candidate, prefix + "draft_tokens");
      if (proposals == nullptr) break;
      FollowedBlock block{integers(*proposals), {}, -1};
      if (const TensorRecord* accepted = integer_tensor(candidate, prefix + "accepted")) {
        block.accepted = integers(*accepted);
      }
      const TensorRecord* final_token = integer_tensor(candidate, prefix + "final_token");
      if (final_token != nullptr && final_token->numel() == 1) {
        block.final_token = integers(*final_token)[0];
      }
      blocks.push_back(std::move(block));
    }
  }
  return follow;
}

bool is_speculative_decision(const std::string& name) {
  return name.ends_with("/draft_tokens") || name.ends_with("/accepted") ||
         name.ends_with("/final_token");
}

// The run traced the forced experts; what a candidate's choice is judged against is the
// reference's own choice on this run's router probabilities.
void replace_routing_by_own_choice(Candidate& run) {
  for (auto& [name, record] : run) {
    if (!is_routing(name)) continue;
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
}

}  // namespace

bool needs_anchoring(const GoldenSet& set, const Candidate& candidate) {
  if (set.kind() == "speculative") {
    if (!set.weights()) return false;
    for (const auto& [name, record] : candidate) {
      if (!is_speculative_decision(name) || integer_tensor(candidate, name) == nullptr) continue;
      if (!set.has_expected(name) || integers(record) != set.expected_tensor(name).to_i32()) {
        return true;
      }
    }
    return false;
  }
  if ((set.kind() != "model" && set.kind() != "batching") || !set.weights()) return false;
  for (const ExpectedTensor& entry : set.expected()) {
    if (!is_decision_that_moves_tensors(set, entry.name)) continue;
    const TensorRecord* record = usable(set, candidate, entry.name);
    if (record != nullptr && integers(*record) != set.expected_tensor(entry.name).to_i32()) {
      return true;
    }
  }
  return false;
}

Candidate anchored_run(const GoldenSet& set, const Candidate& candidate) {
  if (set.kind() == "speculative") {
    const SpeculativeCaseSpec spec =
        speculative_spec_from_manifest(set.manifest(), (set.dir() / "manifest.json").string());
    return candidate_of(follow_speculative_case(spec, speculative_decisions(candidate)));
  }
  const ForcedRouting kernels(routing_of(set, candidate));
  Candidate run;
  if (set.kind() == "batching") {
    const BatchingCaseSpec spec =
        batching_spec_from_manifest(set.manifest(), (set.dir() / "manifest.json").string());
    const ForcedTokens tokens = batching_tokens(set, candidate);
    run = replay_batching_case(set, kernels, load_weights(spec.config, *set.weights()),
                               moeref_token_picker(), BatchingFault::kNone, &tokens);
  } else {
    std::vector<int32_t> sampled = set.expected_tensor("sampled_tokens").to_i32();
    const TensorRecord* record = usable(set, candidate, "sampled_tokens");
    if (record != nullptr) sampled = integers(*record);
    run = run_model_case(set, kernels, nullptr, &sampled);
  }
  replace_routing_by_own_choice(run);
  return run;
}

std::vector<ExpectedTensor> anchored_expected(const GoldenSet& set, const Candidate& anchored) {
  if (set.kind() != "speculative") return set.expected();
  // The set's own order of a block's fields, block by block as far as the re-run went.
  std::vector<std::string> fields;
  for (const ExpectedTensor& entry : set.expected()) {
    if (entry.name.starts_with("greedy/block.0/")) {
      fields.push_back(entry.name.substr(std::string("greedy/block.0/").size()));
    }
  }
  std::vector<ExpectedTensor> expected;
  for (const char* mode : {"greedy", "sampled"}) {
    for (int64_t b = 0;; ++b) {
      const std::string prefix = std::string(mode) + "/block." + std::to_string(b) + "/";
      if (!anchored.contains(prefix + "position")) break;
      for (const std::string& field : fields)
        expected.push_back(speculative_tensor(prefix + field));
    }
    expected.push_back(speculative_tensor(std::string(mode) + "/tokens"));
  }
  return expected;
}

}  // namespace moeref::golden
