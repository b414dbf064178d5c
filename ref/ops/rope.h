// Rotary position embedding (Su et al. 2021), Hugging Face "rotate half" convention.
//
// x: [tokens, n_heads, head_dim], rotated in place; token t sits at positions[t].
// For i < D/2 (D = head_dim): inv_freq[i] = theta^(-2i/D), angle = position * inv_freq[i], and the
// pair (i, i + D/2) is rotated:
//   x'[i]       = x[i] cos(angle) - x[i + D/2] sin(angle)
//   x'[i + D/2] = x[i + D/2] cos(angle) + x[i] sin(angle)
// Not the adjacent pairs (2i, 2i+1) of the original paper and llama.cpp's 'llama' kernels.
// Angles, sines and cosines are computed in double; each output is rounded once to fp32.
// head_dim must be even (the config enforces it).
#pragma once

#include <cstdint>
#include <span>

namespace moeref::ref {

void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
          double theta);

}  // namespace moeref::ref
