// Rotary position embedding (Su et al. 2021), Hugging Face "rotate half" convention, with the RoPE
// scaling kinds of transformers.
//
// x: [tokens, n_heads, head_dim], rotated in place; token t sits at positions[t]. For i < D/2
// (D = head_dim), with inv_freq[i] and the attention scaling s of ref/ops/rope_frequencies.h for
// (theta, scaling) and this call's largest position (unscaled: inv_freq[i] = theta^(-2i/D), s = 1)
// and angle = position * inv_freq[i], the pair (i, i + D/2) is rotated and scaled:
//   x'[i]       = x[i] s cos(angle) - x[i + D/2] s sin(angle)
//   x'[i + D/2] = x[i + D/2] s cos(angle) + x[i] s sin(angle)
// Not the adjacent pairs (2i, 2i+1) of the original paper and llama.cpp's 'llama' kernels.
// Angles, sines and cosines are computed in double; each output is rounded once to fp32.
// head_dim must be even (the config enforces it), and at least 4 with dynamic scaling.
//
// Fast twin: simd/rope.h, the same arguments in the same order. Tests: tests/ops_test.cc (Rope),
// tests/rope_scaling_test.cc; the twin against this op: tests/simd_ops_test.cc.
#pragma once

#include <cstdint>
#include <span>

#include "ref/ops/rope_scaling.h"

namespace moeref::ref {

void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
          double theta, const RopeScaling& scaling);

// The largest of `positions`, -1 when empty: what dynamic scaling reads of a call.
int64_t max_position(std::span<const int64_t> positions);

}  // namespace moeref::ref
