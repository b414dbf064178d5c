#include "golden/mutated_runner.h"

#include <span>
#include <string>
#include <vector>

#include "golden/candidate_runner.h"
#include "golden/model_case.h"
#include "golden/op_cases.h"
#include "golden/shaped_op_cases.h"
#include "golden/speculative_case.h"
#include "ref/model/model.h"

namespace moeref::golden {

namespace {

std::string manifest_path(const GoldenSet& set) { return (set.dir() / "manifest.json").string(); }

ModelWeights set_weights(const GoldenSet& set, const ModelConfig& config,
                         const RunMutation& mutation) {
  ModelWeights weights = load_weights(config, *set.weights());
  if (mutation.weights) mutation.weights(config, weights);
  return weights;
}

void add_tokens(Candidate& candidate, const std::string& name, const std::vector<int32_t>& tokens) {
  candidate.insert_or_assign(name,
                             make_i32_record(name, {static_cast<int64_t>(tokens.size())}, tokens));
}

// The sampled generation of a model case (ref/generation/generate.h's loop), its tokens picked by
// `picker`.
std::vector<int32_t> sampled_generation(const Model& model, const ModelCaseSpec& spec,
                                        SequenceImage image, const TokenPicker& picker) {
  std::vector<int32_t> tokens;
  if (spec.sampled_tokens == 0) return tokens;
  KvCache cache = model.new_cache();
  Tensor logits = model.forward(spec.prompt, cache, image).logits;
  while (true) {
    const int32_t token =
        picker.pick_from_call(logits, spec.sampling, static_cast<uint32_t>(cache.length()), 0);
    tokens.push_back(token);
    if (token == model.config().eos_token_id ||
        static_cast<int64_t>(tokens.size()) == spec.sampled_tokens) {
      return tokens;
    }
    logits = model.forward(std::span(&token, 1), cache, image).logits;
  }
}

Candidate run_model(const GoldenSet& set, const Kernels& kernels, const RunMutation& mutation,
                    const TokenPicker& picker) {
  const ModelCaseSpec spec = spec_from_manifest(set.manifest(), manifest_path(set));
  const Model model(spec.config, set_weights(set, spec.config, mutation), kernels);
  const std::vector<int32_t> golden_tokens = set.expected_tensor("greedy_tokens").to_i32();
  const SamplingParams greedy_params;

  TraceRecorder recorder;
  ImageKv image_kv;
  SequenceImage image;
  if (spec.config.vision) {
    const TensorRecord& record = set.inputs().at("image");
    PrefixedTracer encoding(recorder, "image/");
    image_kv = model.encode_image(Tensor(record.shape, record.to_f32()), &encoding);
    image = {&image_kv, mutation.image_position.value_or(spec.image_position)};
  }
  KvCache cache = model.new_cache();
  std::vector<int32_t> greedy;
  {
    PrefixedTracer prefill(recorder, "prefill/");
    const Tensor logits = model.forward(spec.prompt, cache, image, &prefill).logits;
    greedy.push_back(picker.pick_from_call(logits, greedy_params, 0, 0));
  }
  for (int64_t i = 0; i < spec.decode_steps; ++i) {
    PrefixedTracer step(recorder, "decode." + std::to_string(i) + "/");
    const Tensor logits =
        model.forward(std::span(&golden_tokens[i], 1), cache, image, &step).logits;
    greedy.push_back(picker.pick_from_call(logits, greedy_params, 0, 0));
  }

  Candidate candidate = candidate_of(recorder.records());
  add_tokens(candidate, "greedy_tokens", greedy);
  add_tokens(candidate, "sampled_tokens", sampled_generation(model, spec, image, picker));
  return candidate;
}

Candidate run_speculative(const GoldenSet& set, const Kernels& kernels,
                          const RunMutation& mutation) {
  const SpeculativeCaseSpec spec =
      speculative_spec_from_manifest(set.manifest(), manifest_path(set));
  ModelWeights target_weights = init_weights(spec.target);
  ModelWeights draft_weights = init_weights(spec.draft);
  if (mutation.weights) {
    mutation.weights(spec.target, target_weights);
    mutation.weights(spec.draft, draft_weights);
  }
  const Model target(spec.target, std::move(target_weights), kernels);
  const Model draft(spec.draft, std::move(draft_weights), kernels);
  SpeculativeOptions options;
  options.gamma = spec.gamma;
  options.adaptive_gamma = spec.adaptive_gamma;
  options.residual = mutation.speculative_residual;

  Candidate candidate;
  for (const bool greedy : {true, false}) {
    const std::string mode = greedy ? "greedy" : "sampled";
    const GenerationRequest request{
        spec.prompt, spec.new_tokens, greedy ? SamplingParams{} : spec.sampling, 0, {}, 0};
    TraceRecorder recorder;
    const SpeculativeResult result =
        speculative_generate(target, draft, request, options, &recorder);
    for (TensorRecord record : recorder.records()) {
      record.name = mode + "/" + record.name;
      candidate.insert_or_assign(record.name, std::move(record));
    }
    add_tokens(candidate, mode + "/tokens", result.tokens);
  }
  return candidate;
}

// The sampling and greedy op cases (golden/op_cases.h) through the picker; the others as built.
Candidate run_op(const GoldenSet& set, const Kernels& kernels, const TokenPicker& picker) {
  const std::string op = set.manifest().at("op").get<std::string>();
  if (op != "sampling" && op != "greedy")
    return candidate_of(rebuild_op_case(set, kernels).outputs);
  const nlohmann::json& parameters = set.manifest().at("parameters");
  const TensorRecord& logits_record = set.inputs().at("logits");
  const std::vector<float> logits = logits_record.to_f32();
  const int64_t rows = logits_record.shape[0];
  const int64_t vocab = logits_record.shape[1];
  SamplingParams params;
  uint32_t request = 0;
  if (op == "sampling") {
    params = {.temperature = parameters.at("temperature").get<double>(),
              .top_k = parameters.at("top_k").get<int64_t>(),
              .top_p = parameters.at("top_p").get<double>(),
              .seed = parameters.at("seed").get<uint64_t>()};
    request = parameters.at("request").get<uint32_t>();
  }
  std::vector<float> probs(logits.size(), 0.0f);
  std::vector<int32_t> tokens(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const std::span<const float> row(logits.data() + r * vocab, static_cast<size_t>(vocab));
    tokens[r] = picker.pick(row, params, static_cast<uint32_t>(r), request);
    if (op == "sampling") {
      for (const TokenProbability& t : picker.distribution(row, params)) {
        probs[r * vocab + t.token] = static_cast<float>(t.probability);
      }
    }
  }
  Candidate candidate;
  if (op == "sampling") {
    candidate.emplace("probs", make_f32_record("probs", {rows, vocab}, probs));
  }
  add_tokens(candidate, "tokens", tokens);
  return candidate;
}

}  // namespace

Candidate run_mutated(const GoldenSet& set, const Kernels& kernels, const RunMutation& mutation) {
  const TokenPicker& picker = mutation.tokens ? *mutation.tokens : moeref_token_picker();
  const std::string kind = set.kind();
  if (kind == "model") return run_model(set, kernels, mutation, picker);
  if (kind == "speculative") return run_speculative(set, kernels, mutation);
  if (kind == "batching") {
    const ModelConfig config = config_from_json(set.manifest().at("config"), manifest_path(set));
    return replay_batching_case(set, kernels, set_weights(set, config, mutation), picker,
                                mutation.batching);
  }
  return run_op(set, kernels, picker);
}

}  // namespace moeref::golden
