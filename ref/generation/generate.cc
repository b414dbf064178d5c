#include "ref/generation/generate.h"

#include <chrono>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

#include "ref/model/vision_encoder.h"

namespace moeref {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

void check_generation_request(const ModelConfig& config, const GenerationRequest& request) {
  validate(request.sampling);
  if (request.prompt.empty()) throw std::invalid_argument("the prompt is empty");
  for (size_t t = 0; t < request.prompt.size(); ++t) {
    if (request.prompt[t] < 0 || request.prompt[t] >= config.vocab_size) {
      throw std::invalid_argument(
          "prompt token " + std::to_string(request.prompt[t]) + " at index " + std::to_string(t) +
          " is outside the vocabulary of " + std::to_string(config.vocab_size) + " tokens");
    }
  }
  if (request.max_new_tokens < 0) {
    throw std::invalid_argument("max_new_tokens must be >= 0, got " +
                                std::to_string(request.max_new_tokens));
  }
  const int64_t prompt_length = static_cast<int64_t>(request.prompt.size());
  if (request.image) {
    check_image(config, *request.image);
    check_image_position(request.image_position, prompt_length);
  }
  if (request.max_new_tokens > config.max_seq_len - prompt_length) {  // no overflow
    throw std::invalid_argument("a prompt of " + std::to_string(prompt_length) + " tokens plus " +
                                std::to_string(request.max_new_tokens) +
                                " new tokens exceeds the context of " +
                                std::to_string(config.max_seq_len) + " positions (max_seq_len)");
  }
}

namespace {

// The tracer for one forward call of a generation, named as generate.h documents.
std::optional<PrefixedTracer> call_tracer(Tracer* tracer, std::string prefix) {
  if (tracer == nullptr) return std::nullopt;
  return PrefixedTracer(*tracer, std::move(prefix));
}

Tracer* get(std::optional<PrefixedTracer>& tracer) { return tracer ? &*tracer : nullptr; }

}  // namespace

GenerationResult generate(const Model& model, const GenerationRequest& request, Tracer* tracer) {
  check_generation_request(model.config(), request);
  GenerationResult result;
  if (request.max_new_tokens == 0) return result;

  KvCache cache = model.new_cache();
  const auto prefill_start = std::chrono::steady_clock::now();
  ImageKv image_kv;
  SequenceImage image;
  if (request.image) {
    std::optional<PrefixedTracer> image_tracer = call_tracer(tracer, "image/");
    image_kv = model.encode_image(*request.image, get(image_tracer));
    image = {&image_kv, request.image_position};
  }
  std::optional<PrefixedTracer> prefill_tracer = call_tracer(tracer, "prefill/");
  Tensor logits = model.forward(request.prompt, cache, image, get(prefill_tracer)).logits;
  result.prefill_seconds = seconds_since(prefill_start);

  const auto decode_start = std::chrono::steady_clock::now();
  while (true) {
    const int64_t last = logits.dim(0) - 1;
    const std::span<const float> last_logits(logits.row(last), static_cast<size_t>(logits.dim(1)));
    const auto position = static_cast<uint32_t>(cache.length());
    const int32_t token = sample_token(last_logits, request.sampling, position, request.request_id);
    result.tokens.push_back(token);
    if (token == model.config().eos_token_id) {
      result.stopped_at_eos = true;
      break;
    }
    if (static_cast<int64_t>(result.tokens.size()) == request.max_new_tokens) break;
    std::optional<PrefixedTracer> step_tracer =
        call_tracer(tracer, "decode." + std::to_string(result.tokens.size() - 1) + "/");
    logits =
        model.forward(std::span<const int32_t>(&token, 1), cache, image, get(step_tracer)).logits;
  }
  result.decode_seconds = seconds_since(decode_start);
  return result;
}

}  // namespace moeref
