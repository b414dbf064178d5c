#include "golden/candidate_runner.h"

#include <optional>
#include <span>

#include "golden/batching_case.h"
#include "golden/model_case.h"
#include "golden/op_cases.h"
#include "golden/shaped_op_cases.h"
#include "golden/speculative_case.h"
#include "ref/generation/generate.h"
#include "ref/generation/sampling.h"
#include "ref/model/model.h"
#include "ref/model/weights.h"

namespace moeref::golden {

namespace {

void add_tokens(Candidate& candidate, const std::string& name, const std::vector<int32_t>& tokens) {
  candidate.emplace(name, make_i32_record(name, {static_cast<int64_t>(tokens.size())}, tokens));
}

// The sampled generation of `spec`, step i feeding back forced[i] where it is a usable token:
// adds the model's own choices as "sampled_tokens" and its logits as "sampled_logits".
void add_forced_generation(Candidate& candidate, const Model& model, const ModelCaseSpec& spec,
                           SequenceImage image, const std::vector<int32_t>& forced) {
  const int64_t vocab = spec.config.vocab_size;
  KvCache cache = model.new_cache();
  Tensor logits = model.forward(spec.prompt, cache, image).logits;
  std::vector<int32_t> chosen;
  std::vector<float> step_logits;
  for (int64_t i = 0; i < spec.sampled_tokens; ++i) {
    const std::span<const float> row(logits.row(logits.dim(0) - 1), static_cast<size_t>(vocab));
    step_logits.insert(step_logits.end(), row.begin(), row.end());
    chosen.push_back(sample_token(row, spec.sampling, static_cast<uint32_t>(cache.length())));
    if (i + 1 == spec.sampled_tokens) break;
    const size_t at = static_cast<size_t>(i);
    const bool usable = at < forced.size() && forced[at] >= 0 && forced[at] < vocab;
    const int32_t fed = usable ? forced[at] : chosen.back();
    logits = model.forward(std::span(&fed, 1), cache, image).logits;
  }
  add_tokens(candidate, "sampled_tokens", chosen);
  candidate.emplace("sampled_logits",
                    make_f32_record("sampled_logits", {spec.sampled_tokens, vocab}, step_logits));
}

}  // namespace

Candidate run_model_case(const GoldenSet& set, const Kernels& kernels, const ModelWeights* weights,
                         const std::vector<int32_t>* forced_sampled) {
  if (set.kind() != "model" || !set.weights()) {
    throw GoldenError(set.dir().string() + ": not a model case");
  }
  const ModelCaseSpec spec =
      spec_from_manifest(set.manifest(), (set.dir() / "manifest.json").string());
  const Model model(spec.config, weights ? *weights : load_weights(spec.config, *set.weights()),
                    kernels);
  const std::vector<int32_t> golden_tokens = set.expected_tensor("greedy_tokens").to_i32();

  TraceRecorder recorder;
  std::optional<Tensor> image;
  ImageKv image_kv;
  SequenceImage sequence_image;
  if (spec.config.vision) {
    const TensorRecord& record = set.inputs().at("image");
    image = Tensor(record.shape, record.to_f32());
    PrefixedTracer encoding(recorder, "image/");
    image_kv = model.encode_image(*image, &encoding);
    sequence_image = {&image_kv, spec.image_position};
  }
  KvCache cache = model.new_cache();
  std::vector<int32_t> greedy;
  {
    PrefixedTracer prefill(recorder, "prefill/");
    const Tensor logits = model.forward(spec.prompt, cache, sequence_image, &prefill).logits;
    greedy.push_back(
        greedy_token({logits.row(logits.dim(0) - 1), static_cast<size_t>(logits.dim(1))}));
  }
  for (int64_t i = 0; i < spec.decode_steps; ++i) {
    PrefixedTracer step(recorder, "decode." + std::to_string(i) + "/");
    const Tensor logits =
        model.forward(std::span(&golden_tokens[i], 1), cache, sequence_image, &step).logits;
    greedy.push_back(greedy_token({logits.data(), static_cast<size_t>(logits.dim(1))}));
  }

  Candidate candidate;
  for (const TensorRecord& record : recorder.records()) candidate.emplace(record.name, record);
  add_tokens(candidate, "greedy_tokens", greedy);
  if (forced_sampled != nullptr) {
    add_forced_generation(candidate, model, spec, sequence_image, *forced_sampled);
    return candidate;
  }
  const GenerationRequest sampled{spec.prompt, spec.sampled_tokens, spec.sampling, 0,
                                  image,       spec.image_position};
  add_tokens(candidate, "sampled_tokens", generate(model, sampled).tokens);
  return candidate;
}

Candidate candidate_of(const std::vector<TensorRecord>& records) {
  Candidate candidate;
  for (const TensorRecord& record : records) candidate.emplace(record.name, record);
  return candidate;
}

Candidate run_case(const GoldenSet& set, const Kernels& kernels) {
  const std::string manifest = (set.dir() / "manifest.json").string();
  if (set.kind() == "model") return run_model_case(set, kernels);
  if (set.kind() == "batching") {
    return candidate_of(
        build_batching_case(batching_spec_from_manifest(set.manifest(), manifest), kernels).trace);
  }
  if (set.kind() == "speculative") {
    return candidate_of(
        build_speculative_case(speculative_spec_from_manifest(set.manifest(), manifest), kernels)
            .trace);
  }
  return candidate_of(rebuild_op_case(set, kernels).outputs);
}

}  // namespace moeref::golden
