// The decoder-only MoE transformer: embedding, n_layers decoder layers, final norm, LM head.
//
//   x = embed[tokens] (+ pos_embed[positions] with learned positions)
//   for each layer: x = DecoderLayer(x)              (ref/model/decoder_layer.h)
//   logits = lm_head(FinalNorm(x))                   [tokens, vocab_size]
//
// forward() runs a block of new tokens at positions cache.length() .. cache.length() + T - 1 and
// appends their K/V to the cache: one call with the whole prompt (prefill) and one call per
// token (decode) give bit-identical logits at the same positions, since no op mixes tokens other
// than attention, which reads the cache in position order either way. The exception is a config
// with capacity_factor > 0, whose dropping depends on the tokens of the call by definition.
//
// With a vision config, a sequence may carry one image (encode_image), read by the gated
// cross-attention blocks of ref/model/cross_attention.h by the tokens at or after its position.
//
// Errors: std::invalid_argument for a token outside the vocabulary or a block that would run past
// max_seq_len (the message says which token or how many positions), an image given to a
// text-only model, or image K/V that do not fit the config (check_image_kv); the cache is left
// unchanged.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ref/io/config.h"
#include "ref/model/cross_attention.h"
#include "ref/model/kv_cache.h"
#include "ref/model/kv_view.h"
#include "ref/model/moe.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"
#include "ref/tensor.h"

namespace moeref {

// One sequence's part of a batched forward call: its new tokens, the position of the first, and
// its K/V for every layer (ref/model/kv_view.h), with room for start_position + tokens.size().
struct SequenceInput {
  std::span<const int32_t> tokens;
  int64_t start_position = 0;
  std::vector<KvView> kv;  // one per layer
  SequenceImage image;     // its image (encoded once by Model::encode_image), if any
};

struct ForwardOutput {
  Tensor logits;                     // [tokens, vocab_size]
  std::vector<RouterStats> routers;  // one per MoE layer, in layer order
};

class Model {
 public:
  Model(ModelConfig config, ModelWeights weights, const Kernels& kernels = ref_kernels());

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Kernels& kernels() const { return *kernels_; }
  KvCache new_cache() const { return KvCache(config_); }

  ForwardOutput forward(std::span<const int32_t> tokens, KvCache& cache,
                        Tracer* tracer = nullptr) const;
  // The same for a sequence with an image (vision configs): the gated blocks read `image`.
  ForwardOutput forward(std::span<const int32_t> tokens, KvCache& cache, SequenceImage image,
                        Tracer* tracer = nullptr) const;

  // Vision configs: runs the tower on `image` ([channels, image_size, image_size], normalised;
  // ref/io/image.h reads one) and computes every gated block's K/V, once per image. Traced under
  // "vision." and "layers.L.xattn.{k,v}". Throws std::invalid_argument for a text-only config or
  // an image of the wrong shape.
  ImageKv encode_image(const Tensor& image, Tracer* tracer = nullptr) const;

  // Several sequences in one call (continuous batching, ref/generation/engine.h): their tokens are
  // concatenated in the order given, and the logits' rows follow that order. Each sequence
  // attends to its own K/V only; every other op is row by row, so a token's logits are the same
  // bits whatever else is in the batch (for dropless configs). Throws std::invalid_argument for a
  // token outside the vocabulary or a sequence whose K/V views are too short.
  ForwardOutput forward_batch(std::span<const SequenceInput> sequences,
                              Tracer* tracer = nullptr) const;

 private:
  void check_tokens(std::span<const int32_t> tokens, int64_t start_position,
                    int64_t capacity) const;

  ModelConfig config_;
  ModelWeights weights_;
  const Kernels* kernels_;
};

}  // namespace moeref
