// Highway kernel for rotary position embedding, the contract of ref/ops/rope.h: x [tokens, n_heads,
// head_dim] rotated in place, rotate-half pairs (i, i + D/2), head_dim even.
//
// The angles are the reference's to the bit: inv_freq[i] and the attention scaling s from
// ref/ops/rope_frequencies.h (for theta, the scaling and the call's largest position) and angle =
// position * inv_freq[i] in double, and s cos and s sin of it in double, each rounded once to fp32
// into a table per token (one std::cos and std::sin per token and i, shared by all heads). The
// rotation is then fp32 vector code over i:
//   x'[i] = x[i] c - x[i + D/2] s,  x'[i + D/2] = x[i + D/2] c + x[i] s,
// within a few ulp of |x[i]| + |x[i + D/2]|. Each (token, head) is one thread's (split over OpenMP
// when tokens * n_heads * head_dim >= 2^16), so the bits do not depend on the thread count.
// Tests: tests/simd_ops_test.cc (Rope...).
#pragma once

#include <cstdint>
#include <span>

#include "ref/ops/rope_scaling.h"

namespace moeref::simd {

void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
          double theta, const RopeScaling& scaling);

}  // namespace moeref::simd
