// Autoregressive generation: prefill the prompt in one forward call, then one decode call per
// new token, each token chosen by ref/generation/sampling.h from the logits of the last position.
//
// Generation stops after max_new_tokens tokens or right after emitting the config's EOS token
// (which is returned). Errors (std::invalid_argument, nothing generated): an empty prompt, a
// prompt token outside the vocabulary, max_new_tokens < 0, prompt length + max_new_tokens past
// max_seq_len, invalid sampling parameters.
//
// With an image (vision configs), the image is encoded once, before the prefill, and its K/V are
// read by every forward call: the tokens at positions >= image_position see it
// (ref/model/cross_attention.h). image_position may be 0 .. the prompt's length (then no prompt
// token sees it: the first new token comes from the last prompt row, and the tokens fed back after
// it see the image). More errors: an image for a text-only config, an image of the wrong shape, an
// image_position outside that range.
//
// With a tracer, the image's encoding is recorded under "image/", the prefill under "prefill/" and
// the i-th decode call (which feeds the i-th generated token back, i from 0) under "decode.i/",
// e.g. "decode.0/logits".
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "ref/generation/sampling.h"
#include "ref/model/model.h"
#include "ref/model/tracer.h"

namespace moeref {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 16;
  SamplingParams sampling;
  uint32_t request_id = 0;  // counter word 2 of every sampling draw
  // [channels, image_size, image_size], normalised (ref/io/image.h reads one from a file).
  std::optional<Tensor> image;
  int64_t image_position = 0;
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // the new tokens only
  bool stopped_at_eos = false;
  double prefill_seconds = 0.0;  // the image's encoding included
  double decode_seconds = 0.0;
};

GenerationResult generate(const Model& model, const GenerationRequest& request,
                          Tracer* tracer = nullptr);

// The checks generate() makes before it runs (the errors listed above).
void check_generation_request(const ModelConfig& config, const GenerationRequest& request);

}  // namespace moeref
