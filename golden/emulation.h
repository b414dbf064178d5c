// An emulated backend put together from the choices in which honest GPU backends differ: how
// dot products are accumulated (golden/emulated_dot.h), which attention kernel runs
// (golden/emulated_attention.h), where results are rounded to the storage precision, and which
// formula the activations use (golden/fp32_ops.h). golden/emulated_kernels.h names the family
// built from it; the plain recipe, Emulation{}, is emulated_kernels(precision).
//
// At every precision, matmul rounds its inputs (activations and weights) to the precision and
// accumulates in fp32; its output, and every output the recipe does not keep in fp32, is rounded
// to the storage precision: the precision itself, except tf32, whose storage is fp32 (only
// matmul inputs are tf32, as with PyTorch's allow_tf32).
#pragma once

#include <memory>
#include <string>

#include "golden/compare.h"
#include "golden/emulated_attention.h"
#include "golden/emulated_dot.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

enum class ActivationFormula {
  kReference,  // the ref op (double), its output rounded to storage
  kFused,      // fused_swiglu / fused_gelu in fp32, rounded to storage once
  kEager,      // unfused_swiglu (silu stored, then the product stored) / fp32_gelu, stored
};

struct Emulation {
  Reduction matmul = Reduction::kInterleaved;
  AttentionRecipe attention;
  ActivationFormula activation = ActivationFormula::kReference;
  // torch.autocast: norms, softmax, RoPE and activations computed in fp32 arithmetic
  // (golden/fp32_ops.h), and their outputs, residual adds' and the top-k weights kept fp32;
  // norms read their input as it is. Only matmuls (and attention's, with kEager) round.
  bool fp32_outside_matmul = false;
  // The residual stream stays fp32: residual adds are not rounded and norms read the fp32
  // residual; their outputs are rounded to storage.
  bool fp32_residual = false;
};

// A deterministic kernel set (no threads, no random numbers) computing as `emulation` says at
// `precision`; name() returns `name`.
std::unique_ptr<const Kernels> make_emulated_kernels(Precision precision,
                                                     const Emulation& emulation, std::string name);

}  // namespace moeref::golden
