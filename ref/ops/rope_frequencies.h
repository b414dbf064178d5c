// RoPE's frequencies: inv_freq[i] for each rotated pair (i, i + D/2) of a head (D = head_dim) and
// the attention scaling that multiplies cos and sin, for every scaling kind of Hugging Face
// transformers (modeling_rope_utils.py). One place computes them; ref/ops/rope.h and
// simd/rope.h rotate by them. docs/model.md has the formulas with their papers.
//
// Computed in double from the config's parameters (transformers computes them in fp32, which moves
// them by an fp32 rounding). Unscaled ("default"): inv_freq[i] = theta^(-2i/D), the expression the
// reference has always used, so its rotations are unchanged to the bit.
//
// Dynamic NTK depends on the forward call: transformers recomputes inv_freq from seq_len = the
// call's largest position + 1 when that exceeds the pretraining context, and rotates only the
// call's own q and k with them; the keys already in the cache keep the rotation they were stored
// with. So does moeref: the rope ops pass their call's largest position (docs/model.md, "Dynamic
// NTK and the KV cache").
#pragma once

#include <cstdint>
#include <vector>

#include "ref/ops/rope_scaling.h"

namespace moeref::ref {

struct RopeFrequencies {
  std::vector<double> inv_freq;    // [head_dim / 2], radians per position
  double attention_scaling = 1.0;  // multiplies cos and sin (YaRN's attention factor, else 1)
};

// The frequencies of a call whose largest position is max_position (-1 for none); only dynamic
// reads it. head_dim is even and >= 2 (>= 4 for dynamic); theta > 0; `scaling` as validated by
// config_from_json. Throws std::invalid_argument otherwise.
RopeFrequencies rope_frequencies(double theta, int64_t head_dim, const RopeScaling& scaling = {},
                                 int64_t max_position = -1);

}  // namespace moeref::ref
