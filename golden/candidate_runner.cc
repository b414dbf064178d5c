#include "golden/candidate_runner.h"

#include <optional>
#include <span>

#include "golden/batching_case.h"
#include "golden/model_case.h"
#include "golden/op_cases.h"
#include "golden/speculative_case.h"
#include "ref/generate.h"
#include "ref/model.h"
#include "ref/weights.h"

namespace moeref::golden {

namespace {

void add_tokens(Candidate& candidate, const std::string& name, const std::vector<int32_t>& tokens) {
  candidate.emplace(name, make_i32_record(name, {static_cast<int64_t>(tokens.size())}, tokens));
}

}  // namespace

Candidate run_model_case(const GoldenSet& set, const Kernels& kernels,
                         const ModelWeights* weights) {
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
  return candidate_of(build_op_case(set.name(), kernels).outputs);
}

}  // namespace moeref::golden
