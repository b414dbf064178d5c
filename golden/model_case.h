// A golden model case: one config's weights, a prompt, and everything the reference computes from
// them (docs/golden-format.md):
//   - a traced greedy generation: the prefill ("prefill/...") and `decode_steps` decode calls
//     ("decode.i/..."), every intermediate of docs/tracing.md;
//   - "greedy_tokens": the decode_steps + 1 tokens of that generation;
//   - "sampled_tokens": a seeded sampled generation of `sampled_tokens` tokens.
// Building a case is deterministic: the same spec gives the same bits, which is what
// `moeref golden --verify` relies on.
//
// With a vision config, both generations read one synthetic image (synthetic_image) placed before
// prompt token image_position; its encoding is traced under "image/" and the image itself is an
// input ("image", [channels, image_size, image_size], normalised).
//
// When no prompt is given, candidates are drawn from Philox (key = sampling seed, counter =
// {i / 4, candidate, 0, 0x50524F4D}, word i % 4, token = bits mod vocab_size) until one reaches
// every margin threshold: no routing decision, greedy token or sampled token is a near-tie. With
// `resolved_at`, a candidate must also pass the caller's check (golden/verify.h: every decision's
// margin above its resolution at that precision, golden/resolution.h, on the candidate's own
// calibration), and the manifest records the precision.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "golden/compare.h"
#include "ref/generation/sampling.h"
#include "ref/io/config.h"
#include "ref/io/safetensors.h"
#include "ref/tensor.h"

namespace moeref::golden {

struct ModelCaseSpec {
  std::string name;
  std::string description;
  ModelConfig config;
  std::vector<int32_t> prompt;  // empty: search for one of prompt_length tokens
  int64_t prompt_length = 12;
  int64_t decode_steps = 4;
  int64_t sampled_tokens = 8;
  SamplingParams sampling{.temperature = 0.8, .top_k = 0, .top_p = 0.95, .seed = 1234};
  double margin_threshold = 1e-3;
  std::optional<Precision> resolved_at;  // every decision resolved at this precision
  int64_t max_prompt_candidates = 2000;
  uint64_t image_seed = 7;     // vision configs only
  int64_t image_position = 4;  // vision configs only: prompt tokens before the image
};

// The smallest distance of each kind found in a generation. Router: the gap between consecutive
// router probabilities among the k + 1 largest of any token in any MoE layer. Greedy: the gap
// between the two largest logits at every greedy step. Sample: the distance of each draw u from
// the nearest boundary of the cumulative distribution it was drawn from.
struct Margins {
  double router = 0.0;
  double greedy = 0.0;
  double sample = 0.0;
  std::vector<double> per_greedy_token;
  std::vector<double> per_sampled_token;
};

struct ModelCase {
  nlohmann::json manifest;  // without the "files" and "tensors" sections, which writing adds
  std::vector<TensorRecord> weights;
  std::vector<TensorRecord> inputs;  // "prompt", and "image" with a vision config
  std::vector<TensorRecord> trace;   // in execution order
};

// Says why a searched candidate that reaches every margin threshold is still refused; empty to
// accept it.
using CaseCheck = std::function<std::string(const ModelCase&)>;

// Throws std::runtime_error when no prompt candidate reaches the margins and passes `check`,
// saying the best margin found or the last refusal, or when a given prompt fails `check`.
ModelCase build_model_case(const ModelCaseSpec& spec, const CaseCheck& check = {});

// Prompt candidate `candidate` of the search described above: `length` tokens below vocab_size.
std::vector<int32_t> prompt_candidate(uint64_t seed, int64_t length, int64_t vocab_size,
                                      uint32_t candidate);

// A deterministic test image: pixel i of the [channels, image_size, image_size] image is
// uniform_from_bits of Philox word i % 4 (key = seed, counter = {i / 4 (low, high 32 bits), 0,
// 0x494D4147}), in [0, 1); then normalised as a file's pixels are (ref/io/image.h).
Tensor synthetic_image(const VisionConfig& vision, uint64_t seed);

// The spec recorded in a manifest (prompt included), for regeneration. `source` prefixes errors.
ModelCaseSpec spec_from_manifest(const nlohmann::json& manifest, const std::string& source);

}  // namespace moeref::golden
