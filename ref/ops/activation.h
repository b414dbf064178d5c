// Feed-forward activations, elementwise, computed in double and rounded once to fp32.
//
// SwiGLU (Shazeer 2020), as in Mixtral: out = silu(gate) * up, silu(a) = a / (1 + exp(-a)).
// GELU, the exact erf form (Hendrycks & Gimpel 2016; Hugging Face "gelu"):
//   gelu(x) = x / 2 * (1 + erf(x / sqrt(2))).
//
// Fast twin: simd/activation.h, the same arguments in the same order. Tests: tests/ops_test.cc
// (Activation); the twin against this op: tests/simd_ops_test.cc.
#pragma once

#include <cstdint>

namespace moeref::ref {

// gate, up, out: [n]; out may alias gate or up.
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// x: [n], in place.
void gelu(float* x, int64_t n);

}  // namespace moeref::ref
