// Highway SwiGLU and GELU, the contract of ref/ops/activation.h, same arguments in the same order
// (swiglu's out may alias gate or up); any n, 0 included, and unaligned pointers are fine. Tests:
// tests/simd_ops_test.cc (SwigluMatchesTheReference..., Gelu...).
//
// Every element goes through the same vector code whether it sits in a whole vector or in the
// tail, so an output depends only on its inputs and the target, not on n, alignment or threads
// (n >= 2^16 is split over OpenMP threads in chunks).
//
// Accuracy against the reference's double evaluation (the derivations are in the .cc):
// - swiglu: silu through Highway's Exp (1 ulp) in an overflow-free form, within 3.2 ulp relative
//   while exp(-|gate|) is a normal float (gate > -87.3; below, that exponential is subnormal
//   and silu, under 1.5e-36 in size, is within 1.3e-43 absolute), then one rounding for the
//   product with up;
// - gelu: erf from its series near 0 and a Chebyshev fit of erfc beyond (relative error below
//   1.2e-7 in exact arithmetic), within kGeluErfBound as evaluated; the negative tail keeps its
//   relative accuracy (4e-6 down to x = -10) where the reference's 1 + erf cancels.
#pragma once

#include <cstdint>

namespace moeref::simd {

// How far gelu's erf may be from the exact one: gelu(x) is within |x| / 2 * kGeluErfBound plus one
// ulp of x / 2 (1 + erf(x / sqrt 2)). About 1e-7 by construction (the .cc); 9.5e-8 measured on
// every target over [-16, 16] at steps of 2^-16; tests/simd_ops_test.cc checks it on a grid.
inline constexpr double kGeluErfBound = 1.5e-7;

// gate, up, out: [n]; out = silu(gate) * up, silu(a) = a / (1 + exp(-a)).
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// x: [n], in place: x / 2 * (1 + erf(x / sqrt(2))).
void gelu(float* x, int64_t n);

}  // namespace moeref::simd
