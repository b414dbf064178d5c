#include "golden/model_case.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <span>
#include <stdexcept>

#include "golden/margins.h"
#include "ref/generation/generate.h"
#include "ref/generation/philox.h"
#include "ref/io/image.h"
#include "ref/io/version.h"
#include "ref/model/model.h"
#include "ref/model/weights.h"

namespace moeref::golden {

using nlohmann::json;

namespace {

constexpr uint32_t kPromptStream = 0x50524F4D;  // "PROM"
constexpr uint32_t kImageStream = 0x494D4147;   // "IMAG"

struct Generations {
  TraceRecorder greedy_trace;
  GenerationResult greedy;
  TraceRecorder sampled_trace;
  GenerationResult sampled;
};

Generations run_generations(const Model& model, const ModelCaseSpec& spec,
                            const std::vector<int32_t>& prompt) {
  Generations runs;
  GenerationRequest greedy{prompt, spec.decode_steps + 1, SamplingParams{}, 0, std::nullopt, 0};
  if (spec.config.vision) {
    greedy.image = synthetic_image(*spec.config.vision, spec.image_seed);
    greedy.image_position = spec.image_position;
  }
  runs.greedy = generate(model, greedy, &runs.greedy_trace);
  GenerationRequest sampled = greedy;
  sampled.max_new_tokens = spec.sampled_tokens;
  sampled.sampling = spec.sampling;
  runs.sampled = generate(model, sampled, &runs.sampled_trace);
  return runs;
}

// The logits row that chose generated token i: the prefill's last row, then each decode call's.
std::vector<float> logits_for_token(const TraceRecorder& trace, size_t i) {
  const std::string name =
      i == 0 ? "prefill/logits" : "decode." + std::to_string(i - 1) + "/logits";
  const TensorRecord& record = trace.at(name);
  std::vector<float> values = record.to_f32();
  const int64_t vocab = record.shape[1];
  return std::vector<float>(values.end() - vocab, values.end());
}

Margins measure_margins(const ModelCaseSpec& spec, const std::vector<int32_t>& prompt,
                        const Generations& runs) {
  Margins margins;
  margins.router = std::min(router_margin(runs.greedy_trace.records(), spec.config.top_k),
                            router_margin(runs.sampled_trace.records(), spec.config.top_k));
  for (size_t i = 0; i < runs.greedy.tokens.size(); ++i) {
    margins.per_greedy_token.push_back(top_gap(logits_for_token(runs.greedy_trace, i), 1));
  }
  for (size_t i = 0; i < runs.sampled.tokens.size(); ++i) {
    const auto position = static_cast<uint32_t>(prompt.size() + i);
    const double u =
        generation_uniform(spec.sampling.seed, 0, position, 0, RandomStream::kSampling);
    margins.per_sampled_token.push_back(
        token_margin(logits_for_token(runs.sampled_trace, i), spec.sampling, u));
  }
  auto minimum = [](const std::vector<double>& v) {
    return v.empty() ? std::numeric_limits<double>::infinity()
                     : *std::min_element(v.begin(), v.end());
  };
  margins.greedy = minimum(margins.per_greedy_token);
  margins.sample = minimum(margins.per_sampled_token);
  return margins;
}

bool reaches(const Margins& m, double threshold) {
  return m.router >= threshold && m.greedy >= threshold && m.sample >= threshold;
}

int64_t dropped_assignments(const TraceRecorder& trace) {
  int64_t dropped = 0;
  for (const TensorRecord& record : trace.records()) {
    if (!record.name.ends_with("moe.kept")) continue;
    for (int32_t kept : record.to_i32()) dropped += kept == 0;
  }
  return dropped;
}

json finite_or_null(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }

json manifest_for(const ModelCaseSpec& spec, const std::vector<int32_t>& prompt,
                  const Margins& margins, int64_t dropped) {
  json manifest = {
      {"format_version", 1},
      {"kind", "model"},
      {"case", spec.name},
      {"description", spec.description},
      {"moeref_version", version()},
      {"git_commit", git_commit()},
      {"config", config_to_json(spec.config)},
      {"inputs",
       {{"prompt", prompt},
        {"decode_steps", spec.decode_steps},
        {"sampled_tokens", spec.sampled_tokens},
        {"sampling",
         {{"temperature", spec.sampling.temperature},
          {"top_k", spec.sampling.top_k},
          {"top_p", spec.sampling.top_p},
          {"seed", spec.sampling.seed}}}}},
      {"margins",
       {{"threshold", spec.margin_threshold},
        {"min_router", finite_or_null(margins.router)},
        {"min_greedy", finite_or_null(margins.greedy)},
        {"min_sample", finite_or_null(margins.sample)},
        {"greedy_tokens", margins.per_greedy_token},
        {"sampled_tokens", margins.per_sampled_token}}},
      {"capacity",
       {{"capacity_factor", spec.config.capacity_factor}, {"dropped_assignments", dropped}}},
  };
  if (spec.resolved_at) manifest["margins"]["resolved_at"] = precision_name(*spec.resolved_at);
  if (spec.config.vision) {
    manifest["inputs"]["image"] = {{"seed", spec.image_seed}, {"position", spec.image_position}};
  }
  return manifest;
}

// The case of one prompt and its runs.
ModelCase assemble(const ModelCaseSpec& spec, const Model& model,
                   const std::vector<int32_t>& prompt, const Generations& runs,
                   const Margins& margins) {
  ModelCase result;
  result.manifest = manifest_for(spec, prompt, margins, dropped_assignments(runs.greedy_trace));
  result.weights = weight_records(spec.config, model.weights());
  result.inputs.push_back(make_i32_record("prompt", {static_cast<int64_t>(prompt.size())}, prompt));
  if (spec.config.vision) {
    const Tensor image = synthetic_image(*spec.config.vision, spec.image_seed);
    result.inputs.push_back(make_f32_record("image", image.shape(), image.values()));
  }
  result.trace = runs.greedy_trace.records();
  result.trace.push_back(make_i32_record(
      "greedy_tokens", {static_cast<int64_t>(runs.greedy.tokens.size())}, runs.greedy.tokens));
  result.trace.push_back(make_i32_record(
      "sampled_tokens", {static_cast<int64_t>(runs.sampled.tokens.size())}, runs.sampled.tokens));
  return result;
}

}  // namespace

ModelCase build_model_case(const ModelCaseSpec& spec, const CaseCheck& check) {
  validate(spec.sampling);
  if (spec.sampling.temperature == 0.0) {
    throw std::invalid_argument("the sampled generation needs a temperature above 0");
  }
  const Model model(spec.config, init_weights(spec.config));

  if (!spec.prompt.empty()) {
    const Generations runs = run_generations(model, spec, spec.prompt);
    ModelCase result =
        assemble(spec, model, spec.prompt, runs, measure_margins(spec, spec.prompt, runs));
    const std::string refusal = check ? check(result) : "";
    if (!refusal.empty()) {
      throw std::runtime_error("case \"" + spec.name +
                               "\": the given prompt fails the check: " + refusal);
    }
    return result;
  }
  double best = -1.0;
  std::string refusal;
  for (uint32_t candidate = 0; candidate < spec.max_prompt_candidates; ++candidate) {
    const std::vector<int32_t> prompt =
        prompt_candidate(spec.sampling.seed, spec.prompt_length, spec.config.vocab_size, candidate);
    const Generations runs = run_generations(model, spec, prompt);
    const Margins margins = measure_margins(spec, prompt, runs);
    if (!reaches(margins, spec.margin_threshold)) {
      best = std::max(best, std::min({margins.router, margins.greedy, margins.sample}));
      continue;
    }
    ModelCase result = assemble(spec, model, prompt, runs, margins);
    if (!check) return result;
    refusal = check(result);
    if (refusal.empty()) return result;
  }
  throw std::runtime_error(
      "case \"" + spec.name + "\": none of " + std::to_string(spec.max_prompt_candidates) +
      " prompts of " + std::to_string(spec.prompt_length) + " tokens keeps every margin above " +
      std::to_string(spec.margin_threshold) +
      (refusal.empty() ? " (best smallest margin " + std::to_string(best) + ")"
                       : " and passes the check (last refused: " + refusal + ")") +
      "; use a shorter prompt or fewer steps");
}

std::vector<int32_t> prompt_candidate(uint64_t seed, int64_t length, int64_t vocab_size,
                                      uint32_t candidate) {
  std::vector<int32_t> prompt(static_cast<size_t>(length));
  const PhiloxKey key = philox_key_from_seed(seed);
  for (size_t i = 0; i < prompt.size(); ++i) {
    const PhiloxCounter bits =
        philox4x32_10({static_cast<uint32_t>(i / 4), candidate, 0, kPromptStream}, key);
    prompt[i] = static_cast<int32_t>(bits[i % 4] % static_cast<uint32_t>(vocab_size));
  }
  return prompt;
}

Tensor synthetic_image(const VisionConfig& vision, uint64_t seed) {
  PixelImage pixels{vision.channels, vision.image_size, vision.image_size, {}};
  pixels.values.resize(
      static_cast<size_t>(vision.channels * vision.image_size * vision.image_size));
  const PhiloxKey key = philox_key_from_seed(seed);
  for (size_t i = 0; i < pixels.values.size(); ++i) {
    const uint64_t block = i / 4;
    const PhiloxCounter bits = philox4x32_10(
        {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0, kImageStream}, key);
    pixels.values[i] = uniform_from_bits(bits[i % 4]);
  }
  return normalize_image(pixels, vision);
}

ModelCaseSpec spec_from_manifest(const json& manifest, const std::string& source) {
  auto field = [&](const json& object, const char* key) -> const json& {
    if (!object.is_object() || !object.contains(key)) {
      throw std::runtime_error(source + ": key \"" + key + "\" is missing");
    }
    return object.at(key);
  };
  try {
    ModelCaseSpec spec;
    spec.name = field(manifest, "case").get<std::string>();
    spec.description = field(manifest, "description").get<std::string>();
    spec.config = config_from_json(field(manifest, "config"), source + ": config");
    const json& inputs = field(manifest, "inputs");
    spec.prompt = field(inputs, "prompt").get<std::vector<int32_t>>();
    spec.prompt_length = static_cast<int64_t>(spec.prompt.size());
    spec.decode_steps = field(inputs, "decode_steps").get<int64_t>();
    spec.sampled_tokens = field(inputs, "sampled_tokens").get<int64_t>();
    const json& sampling = field(inputs, "sampling");
    spec.sampling.temperature = field(sampling, "temperature").get<double>();
    spec.sampling.top_k = field(sampling, "top_k").get<int64_t>();
    spec.sampling.top_p = field(sampling, "top_p").get<double>();
    spec.sampling.seed = field(sampling, "seed").get<uint64_t>();
    const json& margins = field(manifest, "margins");
    spec.margin_threshold = field(margins, "threshold").get<double>();
    if (margins.contains("resolved_at")) {
      spec.resolved_at = precision_from_name(margins.at("resolved_at").get<std::string>());
    }
    if (spec.config.vision) {
      const json& image = field(inputs, "image");
      spec.image_seed = field(image, "seed").get<uint64_t>();
      spec.image_position = field(image, "position").get<int64_t>();
    }
    return spec;
  } catch (const json::exception& e) {
    throw std::runtime_error(source + ": malformed manifest: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(source + ": margins.resolved_at: " + e.what());
  }
}

}  // namespace moeref::golden
