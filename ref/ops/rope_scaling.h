// How RoPE's frequencies are stretched for contexts longer than pretraining, as Hugging Face
// transformers computes them (ref/ops/rope_frequencies.h computes them; docs/model.md has the
// math).
//
// A model config reads it from its "rope_scaling" object, whose keys are the field names below
// with the kind under "type" (errors name them "rope_scaling.<key>"); absent, RoPE is unscaled.
// A key that the kind does not read is refused. Required where marked; the others default as in
// transformers. The ranges are those config_from_json enforces (ref/io/config.h).
#pragma once

#include <cstdint>
#include <optional>

namespace moeref {

enum class RopeScalingKind { kDefault, kLinear, kDynamic, kYarn, kLlama3 };

struct RopeScaling {
  RopeScalingKind kind = RopeScalingKind::kDefault;
  double factor = 1.0;  // linear, dynamic, yarn, llama3 (required): >= 1
  // dynamic, yarn, llama3 (required): the pretraining context, > 0. Dynamic scales only past it.
  int64_t original_max_position_embeddings = 0;
  // yarn: the scale of cos and sin, > 0; absent: derived from factor, mscale and mscale_all_dim.
  std::optional<double> attention_factor = std::nullopt;
  double beta_fast = 32.0;        // yarn: > 0, >= beta_slow
  double beta_slow = 1.0;         // yarn: > 0
  double mscale = 0.0;            // yarn: >= 0; read when mscale and mscale_all_dim > 0
  double mscale_all_dim = 0.0;    // yarn: >= 0
  bool truncate = true;           // yarn: round the ramp's ends to whole dimensions
  double low_freq_factor = 0.0;   // llama3 (required): > 0
  double high_freq_factor = 0.0;  // llama3 (required): > low_freq_factor
};

// The name of a scaling kind as the configs spell it ("default", "linear", "dynamic", "yarn",
// "llama3"), which is also transformers' rope_type.
const char* rope_scaling_name(RopeScalingKind kind);

bool operator==(const RopeScaling& a, const RopeScaling& b);

}  // namespace moeref
