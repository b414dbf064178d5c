// Elementwise and row ops computed as a GPU kernel computes them: in fp32 arithmetic (float sums,
// float exp, erf, sin and cos), where the reference computes in double. The emulated backends
// (golden/emulation.h) use them where a real backend keeps an op in fp32: torch.autocast runs
// norms, softmax, RoPE and activations in fp32, and a fused activation kernel evaluates its own
// formula in fp32 before rounding once. Each has the contract of the ref op of the same name
// (shapes, layout, aliasing: ref/ops/norm.h, ref/ops/rope.h, ref/ops/activation.h); the arithmetic
// differs.
#pragma once

#include <cstdint>
#include <span>

#include "golden/compare.h"
#include "ref/ops/rope_scaling.h"

namespace moeref::golden {

// Each row: max subtracted, fp32 exp, an fp32 sum in index order, each probability e / sum
// rounded to `storage` (fp32: not rounded).
void fp32_softmax(float* x, int64_t rows, int64_t n, Precision storage);

// The sum of squares (and LayerNorm's mean and variance, two passes) in fp32 over 8 interleaved
// partial sums; y = weight * (x * (1 / sqrt(mean square + eps))), as PyTorch's RMSNorm does.
void fp32_rms_norm(const float* x, const float* weight, double eps, float* y, int64_t rows,
                   int64_t d);
void fp32_layer_norm(const float* x, const float* weight, const float* bias, double eps, float* y,
                     int64_t rows, int64_t d);

// Hugging Face's rotary embedding: inv_freq_i = 1 / theta^(2i / D) and the angle position *
// inv_freq_i both in fp32, then fp32 cos and sin. The angle carries an error of about
// position * 2^-24 radians, which grows with the position (1e-4 at 4095). A scaled kind's
// inv_freq and attention scaling are the reference's (ref/ops/rope_frequencies.h) rounded to fp32,
// where transformers computes them in fp32: both are within an fp32 rounding of the exact value.
void fp32_rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
               double theta, const RopeScaling& scaling);

// PyTorch's CUDA activation kernels: silu(g) = g / (1 + exp(-g)), out = silu(g) * up; and
// gelu(x) = x * 0.5 * (1 + erf(x / sqrt 2)).
void fp32_swiglu(const float* gate, const float* up, float* out, int64_t n);
void fp32_gelu(float* x, int64_t n);

// The same functions in another correct order, as a fused kernel evaluates them (each then stored
// once by the caller):
// out = (g * up) / (1 + exp(-g)) (the SwiGLU epilogue multiplies before it divides), and
// gelu(x) = 0.5 * x * erfc(-x / sqrt 2) (JAX's exact GELU).
void fused_swiglu(const float* gate, const float* up, float* out, int64_t n);
void fused_gelu(float* x, int64_t n);

// SwiGLU as two PyTorch eager kernels: silu(g) (fp32_swiglu's formula) stored in `storage`, then
// the product with up, stored again by the caller.
void unfused_swiglu(const float* gate, const float* up, float* out, int64_t n, Precision storage);

}  // namespace moeref::golden
