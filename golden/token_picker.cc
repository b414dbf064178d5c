#include "golden/token_picker.h"

#include "ref/generation/philox.h"

namespace moeref::golden {

int64_t TokenPicker::row(const Tensor& logits) const { return logits.dim(0) - 1; }

int32_t TokenPicker::greedy(std::span<const float> logits) const { return greedy_token(logits); }

std::vector<TokenProbability> TokenPicker::distribution(std::span<const float> logits,
                                                        const SamplingParams& params) const {
  return processed_distribution(logits, params);
}

double TokenPicker::uniform(uint64_t seed, uint32_t position, uint32_t request) const {
  return generation_uniform(seed, 0, position, request, RandomStream::kSampling);
}

int32_t TokenPicker::pick(std::span<const float> logits, const SamplingParams& params,
                          uint32_t position, uint32_t request) const {
  if (params.temperature == 0.0) return greedy(logits);
  return draw_token(distribution(logits, params), uniform(params.seed, position, request));
}

int32_t TokenPicker::pick_from_call(const Tensor& logits, const SamplingParams& params,
                                    uint32_t position, uint32_t request) const {
  const std::span<const float> chosen(logits.row(row(logits)), static_cast<size_t>(logits.dim(1)));
  return pick(chosen, params, position, request);
}

const TokenPicker& moeref_token_picker() {
  static const TokenPicker picker;
  return picker;
}

}  // namespace moeref::golden
