#include "ref/model/model.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "ref/model/decoder_layer.h"
#include "ref/model/vision_encoder.h"

namespace moeref {

Model::Model(ModelConfig config, ModelWeights weights, const Kernels& kernels)
    : config_(std::move(config)), weights_(std::move(weights)), kernels_(&kernels) {}

void Model::check_tokens(std::span<const int32_t> tokens, int64_t start_position,
                         int64_t capacity) const {
  const int64_t n_tokens = static_cast<int64_t>(tokens.size());
  const int64_t context = std::min(capacity, config_.max_seq_len);
  if (start_position + n_tokens > context) {
    throw std::invalid_argument(
        std::to_string(n_tokens) + " tokens after " + std::to_string(start_position) +
        " cached positions exceed the context of " + std::to_string(context) + " positions" +
        (context == config_.max_seq_len ? " (max_seq_len)" : ""));
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (tokens[t] < 0 || tokens[t] >= config_.vocab_size) {
      throw std::invalid_argument("token " + std::to_string(tokens[t]) + " at index " +
                                  std::to_string(t) + " is outside the vocabulary of " +
                                  std::to_string(config_.vocab_size) + " tokens");
    }
  }
}

ForwardOutput Model::forward(std::span<const int32_t> tokens, KvCache& cache,
                             Tracer* tracer) const {
  return forward(tokens, cache, SequenceImage{}, tracer);
}

ForwardOutput Model::forward(std::span<const int32_t> tokens, KvCache& cache, SequenceImage image,
                             Tracer* tracer) const {
  SequenceInput sequence{tokens, cache.length(), {}, image};
  for (int64_t l = 0; l < config_.n_layers; ++l) sequence.kv.push_back(cache.view(l));
  ForwardOutput output = forward_batch(std::span(&sequence, 1), tracer);
  cache.advance(static_cast<int64_t>(tokens.size()));
  return output;
}

ImageKv Model::encode_image(const Tensor& image, Tracer* tracer) const {
  const Tensor tokens = moeref::encode_image(*kernels_, config_, weights_.vision, image, tracer);
  return image_kv(*kernels_, config_, weights_.cross_attention, tokens, tracer);
}

ForwardOutput Model::forward_batch(std::span<const SequenceInput> sequences, Tracer* tracer) const {
  const Kernels& kernels = *kernels_;
  const int64_t d = config_.d_model;
  const int64_t vocab = config_.vocab_size;

  std::vector<int32_t> tokens;
  std::vector<int64_t> positions;
  for (const SequenceInput& s : sequences) {
    if (static_cast<int64_t>(s.kv.size()) != config_.n_layers) {
      throw std::invalid_argument("a sequence of the batch has K/V views for " +
                                  std::to_string(s.kv.size()) + " layers, the model has " +
                                  std::to_string(config_.n_layers));
    }
    check_tokens(s.tokens, s.start_position, s.kv[0].capacity);
    if (s.image.kv != nullptr) {
      if (!config_.vision) {
        throw std::invalid_argument("a sequence has an image, but config \"" + config_.name +
                                    "\" has no vision section");
      }
      check_image_kv(config_, *s.image.kv);
    }
    tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
    for (size_t t = 0; t < s.tokens.size(); ++t) {
      positions.push_back(s.start_position + static_cast<int64_t>(t));
    }
  }
  const int64_t n_tokens = static_cast<int64_t>(tokens.size());

  // Embedding: a row lookup, plus the learned position's row.
  std::vector<float> x(static_cast<size_t>(n_tokens * d));
  for (int64_t t = 0; t < n_tokens; ++t) {
    std::copy_n(weights_.embed.row(tokens[t]), d, x.begin() + t * d);
    if (config_.positions == PositionKind::kLearned) {
      const float* position_row = weights_.pos_embed.row(positions[t]);
      for (int64_t i = 0; i < d; ++i) x[t * d + i] += position_row[i];
    }
  }
  const TraceScope model_trace(tracer, "");
  model_trace("embed.out", {n_tokens, d}, x.data());

  ForwardOutput output;
  std::vector<SequenceSlice> slices(sequences.size());
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    for (size_t s = 0; s < sequences.size(); ++s) {
      slices[s] = {static_cast<int64_t>(sequences[s].tokens.size()), sequences[s].start_position,
                   sequences[s].kv[static_cast<size_t>(l)], sequences[s].image};
    }
    const TraceScope layer_trace(tracer, "layers." + std::to_string(l) + ".");
    const int64_t block = config_.vision ? config_.vision->cross_attention_index(l) : -1;
    const LayerContext context{kernels,
                               config_,
                               l,
                               weights_.layers[l],
                               block >= 0 ? &weights_.cross_attention[block] : nullptr,
                               positions,
                               slices,
                               layer_trace};
    if (auto router = decoder_layer_forward(context, x.data())) {
      output.routers.push_back(*router);
    }
  }

  std::vector<float> normed(x.size());
  apply_norm(kernels, config_, weights_.final_norm, weights_.final_norm_bias, x.data(),
             normed.data(), n_tokens);
  model_trace("final_norm.out", {n_tokens, d}, normed.data());

  output.logits = Tensor({n_tokens, vocab});
  kernels.matmul(normed.data(), weights_.output_head().data(), output.logits.data(), n_tokens, d,
                 vocab);
  model_trace("logits", {n_tokens, vocab}, output.logits.data());
  return output;
}

}  // namespace moeref
