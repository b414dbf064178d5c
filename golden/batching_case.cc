#include "golden/batching_case.h"

#include <stdexcept>

#include "golden/margins.h"
#include "ref/generation/philox.h"
#include "ref/io/version.h"
#include "ref/model/weights.h"

namespace moeref::golden {

using nlohmann::json;

namespace {

json request_json(const EngineRequest& r) {
  return {{"id", r.id},
          {"prompt", r.prompt},
          {"max_new_tokens", r.max_new_tokens},
          {"sampling",
           {{"temperature", r.sampling.temperature},
            {"top_k", r.sampling.top_k},
            {"top_p", r.sampling.top_p},
            {"seed", r.sampling.seed}}},
          {"arrival_step", r.arrival_step}};
}

EngineRequest request_from_json(const json& j) {
  EngineRequest r;
  r.id = j.at("id").get<int64_t>();
  r.prompt = j.at("prompt").get<std::vector<int32_t>>();
  r.max_new_tokens = j.at("max_new_tokens").get<int64_t>();
  const json& s = j.at("sampling");
  r.sampling = {.temperature = s.at("temperature").get<double>(),
                .top_k = s.at("top_k").get<int64_t>(),
                .top_p = s.at("top_p").get<double>(),
                .seed = s.at("seed").get<uint64_t>()};
  r.arrival_step = j.at("arrival_step").get<int64_t>();
  return r;
}

// What each traced name is: the engine's own records, the requests' outputs, or a forward
// pass's tensors (classified as in model cases).
ExpectedTensor kind_of(const std::string& name) {
  const std::string_view traced = traced_name(name);
  if (traced == "schedule" || traced == "block_tables" || traced == "sampled" ||
      traced == "tokens") {
    return {name, "continuous_batching", ToleranceClass::kExact};
  }
  const TensorKind kind = classify_model_tensor(name);
  return {name, kind.op, kind.tolerance};
}

// The margin of every decision: the routing's smallest, and each request's tokens'.
json margins_json(const BatchingCaseSpec& spec, const Engine& engine,
                  const std::vector<TensorRecord>& trace) {
  const int64_t vocab = spec.config.vocab_size;
  json requests = json::object();
  for (const EngineRequest& r : spec.requests) {
    const RequestOutcome& outcome = engine.outcomes().at(r.id);
    json tokens = json::array();
    for (size_t k = 0; k < outcome.tokens.size(); ++k) {
      const auto position = static_cast<uint32_t>(r.prompt.size() + k);
      const double u = generation_uniform(r.sampling.seed, 0, position, static_cast<uint32_t>(r.id),
                                          RandomStream::kSampling);
      const std::span<const float> row(outcome.logits.data() + k * static_cast<size_t>(vocab),
                                       static_cast<size_t>(vocab));
      tokens.push_back(token_margin(row, r.sampling, u));
    }
    requests[std::to_string(r.id)] = std::move(tokens);
  }
  return {{"router", router_margin(trace, spec.config.top_k)}, {"requests", requests}};
}

}  // namespace

BatchingCaseSpec default_batching_spec(const ModelConfig& config) {
  BatchingCaseSpec spec;
  spec.config = config;
  spec.limits = {.max_sequences = 3, .max_tokens_per_step = 16, .n_blocks = 10, .block_size = 4};
  const auto request = [](int64_t id, std::vector<int32_t> prompt, int64_t new_tokens,
                          SamplingParams sampling, int64_t arrival) {
    return EngineRequest{id, std::move(prompt), new_tokens, sampling, arrival};
  };
  spec.requests = {
      request(0, {17, 3, 250, 91, 44, 8, 129, 64, 200, 5, 33, 71}, 6, {}, 0),
      request(1, {9, 140, 61, 2, 88}, 8, {.temperature = 0.9, .seed = 3}, 0),
      request(2, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, 4, {}, 2),
      request(3, {77, 78, 79, 80, 81, 82, 83}, 5, {.temperature = 1.0, .top_k = 20, .seed = 4}, 3),
  };
  return spec;
}

BatchingCase build_batching_case(const BatchingCaseSpec& spec, const Kernels& kernels) {
  const Model model(spec.config, init_weights(spec.config), kernels);
  Engine engine(model, spec.limits);
  for (const EngineRequest& r : spec.requests) engine.submit(r);
  TraceRecorder recorder;
  for (int64_t step = 0; !engine.done(); ++step) {
    PrefixedTracer step_tracer(recorder, "step." + std::to_string(step) + "/");
    engine.step(&step_tracer);
  }

  BatchingCase c;
  json requests = json::array();
  for (const EngineRequest& r : spec.requests) {
    requests.push_back(request_json(r));
    c.inputs.push_back(make_i32_record("request." + std::to_string(r.id) + "/prompt",
                                       {static_cast<int64_t>(r.prompt.size())}, r.prompt));
  }
  c.manifest = {
      {"format_version", kFormatVersion},
      {"kind", "batching"},
      {"case", spec.name},
      {"description", spec.description},
      {"moeref_version", version()},
      {"git_commit", git_commit()},
      {"config", config_to_json(spec.config)},
      {"requests", requests},
      {"limits",
       {{"max_sequences", spec.limits.max_sequences},
        {"max_tokens_per_step", spec.limits.max_tokens_per_step},
        {"n_blocks", spec.limits.n_blocks},
        {"block_size", spec.limits.block_size}}},
      {"summary", summary_json(engine.summary())},
  };
  c.weights = weight_records(spec.config, model.weights());
  c.trace = recorder.records();
  c.manifest["margins"] = margins_json(spec, engine, c.trace);
  const int64_t vocab = spec.config.vocab_size;
  for (const auto& [id, outcome] : engine.outcomes()) {
    const std::string prefix = "request." + std::to_string(id) + "/";
    const auto n = static_cast<int64_t>(outcome.tokens.size());
    c.trace.push_back(make_i32_record(prefix + "tokens", {n}, outcome.tokens));
    c.trace.push_back(make_f32_record(prefix + "logits", {n, vocab}, outcome.logits));
  }
  for (const TensorRecord& record : c.trace) c.expected.push_back(kind_of(record.name));
  return c;
}

BatchingCaseSpec batching_spec_from_manifest(const json& manifest, const std::string& source) {
  try {
    BatchingCaseSpec spec;
    spec.name = manifest.at("case").get<std::string>();
    spec.description = manifest.at("description").get<std::string>();
    spec.config = config_from_json(manifest.at("config"), source + ": config");
    for (const json& r : manifest.at("requests")) spec.requests.push_back(request_from_json(r));
    const json& limits = manifest.at("limits");
    spec.limits = {.max_sequences = limits.at("max_sequences").get<int64_t>(),
                   .max_tokens_per_step = limits.at("max_tokens_per_step").get<int64_t>(),
                   .n_blocks = limits.at("n_blocks").get<int64_t>(),
                   .block_size = limits.at("block_size").get<int64_t>()};
    return spec;
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": malformed batching manifest: " + e.what());
  }
}

}  // namespace moeref::golden
