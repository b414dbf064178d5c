#include "golden/speculative_case.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>

#include "golden/margins.h"
#include "golden/model_case.h"
#include "ref/generation/philox.h"
#include "ref/generation/speculative.h"
#include "ref/io/version.h"
#include "ref/model/weights.h"

namespace moeref::golden {

using nlohmann::json;

namespace {

struct Run {
  TraceRecorder trace;
  SpeculativeResult result;
};

Run run(const Model& target, const Model& draft, const SpeculativeCaseSpec& spec,
        const std::vector<int32_t>& prompt, bool greedy,
        const std::vector<FollowedBlock>* follow = nullptr) {
  GenerationRequest request{prompt, spec.new_tokens, spec.sampling, 0, std::nullopt, 0};
  if (greedy) request.sampling = SamplingParams{};
  SpeculativeOptions options;
  options.gamma = spec.gamma;
  options.adaptive_gamma = spec.adaptive_gamma;
  options.follow = follow;
  Run r;
  r.result = speculative_generate(target, draft, request, options, &r.trace);
  return r;
}

// Rows of the record as vectors of double.
std::vector<std::vector<double>> rows(const TensorRecord& record) {
  const std::vector<float> values = record.to_f32();
  const size_t width = static_cast<size_t>(record.shape.back());
  std::vector<std::vector<double>> out;
  for (size_t i = 0; width > 0 && i < values.size(); i += width) {
    out.emplace_back(values.begin() + static_cast<std::ptrdiff_t>(i),
                     values.begin() + static_cast<std::ptrdiff_t>(i + width));
  }
  return out;
}

double log_gap(std::vector<double> probs) {
  std::sort(probs.begin(), probs.end(), std::greater<>());
  return std::log(probs[0]) - std::log(probs[1]);
}

// How far u is from going to another token of the distribution `weights` (normalised here).
double boundary_distance(const std::vector<double>& weights, double u) {
  double total = 0.0;
  for (double w : weights) total += w;
  std::vector<double> probabilities(weights.size());
  for (size_t t = 0; t < weights.size(); ++t) probabilities[t] = weights[t] / total;
  return draw_margin(probabilities, u);
}

// Every decision's margin, block by block: greedy, the log-probability gap of the two most likely
// tokens of each distribution a decision was taken on; sampled, each proposal's draw against the
// draft's q, each acceptance's |u q(x) - p(x)|, and the final token's draw against the residual
// or the last p. A block's "final" is null when it emitted no final token.
json block_margins(const Run& r, bool greedy, uint64_t seed) {
  json blocks = json::array();
  for (int64_t b = 0; b < r.result.stats.blocks; ++b) {
    const std::string prefix = "block." + std::to_string(b) + "/";
    const auto q = rows(r.trace.at(prefix + "draft_probs"));
    const auto p = rows(r.trace.at(prefix + "target_probs"));
    const std::vector<int32_t> proposals = r.trace.at(prefix + "draft_tokens").to_i32();
    const std::vector<float> accept_u = r.trace.at(prefix + "accept_u").to_f32();
    const int32_t final_kind = r.trace.at(prefix + "final_kind").to_i32()[0];
    const double final_u = r.trace.at(prefix + "final_u").to_f32()[0];
    const int64_t position = r.trace.at(prefix + "position").to_i32()[0];
    json proposal_margins = json::array(), acceptance_margins = json::array();
    json final_margin = nullptr;
    // Every proposal is recorded (and must be reproduced), examined or not.
    for (size_t i = 0; i < proposals.size(); ++i) {
      const double u = generation_uniform(seed, 0, static_cast<uint32_t>(position + i), 0,
                                          RandomStream::kDraftProposal);
      proposal_margins.push_back(greedy ? log_gap(q[i]) : boundary_distance(q[i], u));
    }
    for (size_t i = 0; i < accept_u.size(); ++i) {
      const int32_t x = proposals[i];
      acceptance_margins.push_back(greedy ? log_gap(p[i])
                                          : std::fabs(accept_u[i] * q[i][x] - p[i][x]));
    }
    if (final_kind == 0) {
      const size_t i = accept_u.size() - 1;
      std::vector<double> residual(p[i].size());
      for (size_t t = 0; t < residual.size(); ++t) residual[t] = std::max(0.0, p[i][t] - q[i][t]);
      final_margin = greedy ? log_gap(p[i]) : boundary_distance(residual, final_u);
    } else if (final_kind == 1) {
      final_margin = greedy ? log_gap(p.back()) : boundary_distance(p.back(), final_u);
    }
    blocks.push_back({{"proposals", proposal_margins},
                      {"acceptances", acceptance_margins},
                      {"final", final_margin}});
  }
  return blocks;
}

// The smallest margin of any decision of block_margins.
double smallest_margin(const json& blocks) {
  double margin = std::numeric_limits<double>::infinity();
  for (const json& block : blocks) {
    for (const char* key : {"proposals", "acceptances"}) {
      for (const json& m : block.at(key)) margin = std::min(margin, m.get<double>());
    }
    if (!block.at("final").is_null()) margin = std::min(margin, block.at("final").get<double>());
  }
  return margin;
}

void add_run(SpeculativeCase& c, const Run& r, const std::string& mode) {
  for (const TensorRecord& record : r.trace.records()) {
    TensorRecord renamed = record;
    renamed.name = mode + "/" + record.name;
    c.expected.push_back(speculative_tensor(renamed.name));
    c.trace.push_back(std::move(renamed));
  }
  const std::string tokens = mode + "/tokens";
  c.trace.push_back(
      make_i32_record(tokens, {static_cast<int64_t>(r.result.tokens.size())}, r.result.tokens));
  c.expected.push_back({tokens, "speculative_decoding", ToleranceClass::kExact});
}

json sampling_json(const SamplingParams& s) {
  return {{"temperature", s.temperature}, {"top_k", s.top_k}, {"top_p", s.top_p}, {"seed", s.seed}};
}

}  // namespace

ExpectedTensor speculative_tensor(const std::string& name) {
  for (const char* field : {"draft_probs", "target_probs", "accept_u", "final_u"}) {
    if (name.ends_with(field)) return {name, "speculative_decoding", ToleranceClass::kProbability};
  }
  return {name, "speculative_decoding", ToleranceClass::kExact};
}

std::vector<TensorRecord> follow_speculative_case(
    const SpeculativeCaseSpec& spec,
    const std::map<std::string, std::vector<FollowedBlock>>& follow) {
  const Model target(spec.target, init_weights(spec.target), ref_kernels());
  const Model draft(spec.draft, init_weights(spec.draft), ref_kernels());
  SpeculativeCase c;
  for (const bool greedy : {true, false}) {
    const std::string mode = greedy ? "greedy" : "sampled";
    const auto found = follow.find(mode);
    add_run(c,
            run(target, draft, spec, spec.prompt, greedy,
                found != follow.end() ? &found->second : nullptr),
            mode);
  }
  return c.trace;
}

SpeculativeCase build_speculative_case(const SpeculativeCaseSpec& spec, const Kernels& kernels) {
  const Model target(spec.target, init_weights(spec.target), kernels);
  const Model draft(spec.draft, init_weights(spec.draft), kernels);
  check_pairing(spec.target, spec.draft);
  std::vector<int32_t> prompt = spec.prompt;
  Run greedy, sampled;
  json greedy_blocks, sampled_blocks;
  double greedy_margin = 0.0, sampled_margin = 0.0;
  for (uint32_t candidate = 0;; ++candidate) {
    if (spec.prompt.empty()) {
      if (candidate == spec.max_prompt_candidates) {
        throw std::runtime_error("case \"" + spec.name + "\": no prompt among " +
                                 std::to_string(spec.max_prompt_candidates) +
                                 " keeps every margin above the threshold");
      }
      prompt = prompt_candidate(spec.sampling.seed, spec.prompt_length, spec.target.vocab_size,
                                candidate);
    }
    greedy = run(target, draft, spec, prompt, true);
    sampled = run(target, draft, spec, prompt, false);
    greedy_blocks = block_margins(greedy, true, spec.sampling.seed);
    sampled_blocks = block_margins(sampled, false, spec.sampling.seed);
    greedy_margin = smallest_margin(greedy_blocks);
    sampled_margin = smallest_margin(sampled_blocks);
    const bool reached =
        greedy_margin >= spec.margin_threshold && sampled_margin >= spec.margin_threshold;
    if (!spec.prompt.empty() || reached) break;
  }

  SpeculativeCase c;
  c.manifest = {
      {"format_version", kFormatVersion},
      {"kind", "speculative"},
      {"case", spec.name},
      {"description", spec.description},
      {"moeref_version", version()},
      {"git_commit", git_commit()},
      {"target_config", config_to_json(spec.target)},
      {"draft_config", config_to_json(spec.draft)},
      {"inputs",
       {{"prompt", prompt},
        {"new_tokens", spec.new_tokens},
        {"gamma", spec.gamma},
        {"adaptive_gamma", spec.adaptive_gamma},
        {"sampling", sampling_json(spec.sampling)}}},
      {"margins",
       {{"threshold", spec.margin_threshold},
        {"greedy", greedy_margin},
        {"sampled", sampled_margin},
        {"greedy_blocks", greedy_blocks},
        {"sampled_blocks", sampled_blocks}}},
      {"statistics",
       {{"greedy",
         {{"blocks", greedy.result.stats.blocks},
          {"accepted", greedy.result.stats.accepted},
          {"drafted", greedy.result.stats.drafted}}},
        {"sampled",
         {{"blocks", sampled.result.stats.blocks},
          {"accepted", sampled.result.stats.accepted},
          {"drafted", sampled.result.stats.drafted}}}}},
  };
  for (TensorRecord record : weight_records(spec.target, target.weights())) {
    record.name = "target/" + record.name;
    c.weights.push_back(std::move(record));
  }
  for (TensorRecord record : weight_records(spec.draft, draft.weights())) {
    record.name = "draft/" + record.name;
    c.weights.push_back(std::move(record));
  }
  c.inputs.push_back(make_i32_record("prompt", {static_cast<int64_t>(prompt.size())}, prompt));
  add_run(c, greedy, "greedy");
  add_run(c, sampled, "sampled");
  return c;
}

SpeculativeCaseSpec speculative_spec_from_manifest(const json& manifest,
                                                   const std::string& source) {
  try {
    SpeculativeCaseSpec spec;
    spec.name = manifest.at("case").get<std::string>();
    spec.description = manifest.at("description").get<std::string>();
    spec.target = config_from_json(manifest.at("target_config"), source + ": target_config");
    spec.draft = config_from_json(manifest.at("draft_config"), source + ": draft_config");
    const json& inputs = manifest.at("inputs");
    spec.prompt = inputs.at("prompt").get<std::vector<int32_t>>();
    spec.prompt_length = static_cast<int64_t>(spec.prompt.size());
    spec.new_tokens = inputs.at("new_tokens").get<int64_t>();
    spec.gamma = inputs.at("gamma").get<int64_t>();
    spec.adaptive_gamma = inputs.at("adaptive_gamma").get<bool>();
    const json& sampling = inputs.at("sampling");
    spec.sampling.temperature = sampling.at("temperature").get<double>();
    spec.sampling.top_k = sampling.at("top_k").get<int64_t>();
    spec.sampling.top_p = sampling.at("top_p").get<double>();
    spec.sampling.seed = sampling.at("seed").get<uint64_t>();
    spec.margin_threshold = manifest.at("margins").at("threshold").get<double>();
    return spec;
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": malformed speculative manifest: " + e.what());
  }
}

}  // namespace moeref::golden
