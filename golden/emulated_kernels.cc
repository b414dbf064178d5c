#include "golden/emulated_kernels.h"

#include <bit>
#include <cmath>
#include <memory>

#include "golden/emulation.h"
#include "golden/fp16.h"

namespace moeref::golden {

namespace {

// Keeps the top (32 - dropped) bits, rounding to nearest even; NaN stays NaN.
float round_mantissa(float value, int dropped) {
  if (std::isnan(value)) return value;
  const uint32_t u = std::bit_cast<uint32_t>(value);
  const uint32_t half = (1u << (dropped - 1)) - 1;
  const uint32_t odd = (u >> dropped) & 1u;
  return std::bit_cast<float>(((u + half + odd) >> dropped) << dropped);
}

struct Member {
  const char* name;
  const char* description;
  Emulation emulation;
};

// Every dot product, attention's scores and context included, accumulated one way.
Emulation accumulating(Reduction matmul, Reduction attention) {
  Emulation e;
  e.matmul = matmul;
  e.attention.scores = attention;
  e.attention.context = attention;
  return e;
}

Emulation attention_kernel(AttentionAlgorithm algorithm) {
  Emulation e;
  e.attention.algorithm = algorithm;
  return e;
}

// The family. Each differs from the plain recipe in one respect, the way one kind of real
// backend does.
std::vector<Member> family() {
  Emulation autocast = attention_kernel(AttentionAlgorithm::kEager);
  autocast.attention.context = Reduction::kInterleaved;  // p.v is a matmul too
  autocast.fp32_outside_matmul = true;
  Emulation fp32_residual;
  fp32_residual.fp32_residual = true;
  Emulation fused_activation;
  fused_activation.activation = ActivationFormula::kFused;
  Emulation eager_activation;
  eager_activation.activation = ActivationFormula::kEager;
  return {
      {"plain",
       "a SIMD/tensor-core order (8 interleaved fp32 partial sums), every op's output stored at "
       "the precision",
       {}},
      {"sequential",
       "one fp32 chain per dot product in index order, one thread per output (a naive GEMV)",
       accumulating(Reduction::kSequential, Reduction::kSequential)},
      {"reversed", "one fp32 chain per dot product from the last index down",
       accumulating(Reduction::kReversed, Reduction::kReversed)},
      {"fma", "one chain of fused multiply-adds per dot product (nvcc contracts acc += a * b)",
       accumulating(Reduction::kFmaChain, Reduction::kFmaChain)},
      {"split-k",
       "dot products in blocks of 32, each an FMA chain, the block sums added at the end "
       "(cuBLAS split-K)",
       accumulating(Reduction::kSplitK, Reduction::kSplitK)},
      {"reduced-precision",
       "matmuls split-K with each block sum rounded to the precision (PyTorch's allow_bf16/fp16_"
       "reduced_precision_reduction); equals split-k at fp32 and tf32",
       accumulating(Reduction::kSplitKRounded, Reduction::kSplitK)},
      {"flash-attention",
       "FlashAttention-2: online softmax over blocks of 8 keys, probabilities rebuilt as "
       "exp(s - lse) from the kernel's fp32 log-sum-exp",
       attention_kernel(AttentionAlgorithm::kFlash)},
      {"memory-efficient",
       "memory-efficient SDPA: fp32 log-sum-exp first over blocks of 16 keys, then p = exp(s - "
       "lse) stored at the precision, p.v summed per block",
       attention_kernel(AttentionAlgorithm::kMemoryEfficient)},
      {"autocast",
       "torch.autocast: matmuls (attention's too) round inputs and outputs; norms, softmax, RoPE "
       "(fp32 angles), activations and residual adds in fp32 with fp32 outputs",
       autocast},
      {"fp32-residual",
       "the residual stream kept in fp32 (residual adds not rounded, norms read fp32); equals "
       "plain at fp32 and tf32",
       fp32_residual},
      {"fused-activation",
       "a fused SwiGLU/GELU kernel: (g * up) / (1 + exp(-g)) and 0.5 x erfc(-x / sqrt 2) in fp32, "
       "rounded once",
       fused_activation},
      {"eager-activation",
       "PyTorch eager kernels: silu(gate) stored at the precision, then its product with up "
       "stored again; GELU by PyTorch's fp32 formula, stored",
       eager_activation},
  };
}

struct Family {
  std::vector<std::unique_ptr<const Kernels>> owned;
  std::vector<HonestBackend> backends;
};

Family make_family(Precision precision) {
  Family f;
  for (const Member& m : family()) {
    const Kernels* kernels = &emulated_kernels(precision);
    if (std::string(m.name) != "plain") {
      f.owned.push_back(make_emulated_kernels(
          precision, m.emulation, std::string(precision_name(precision)) + ":" + m.name));
      kernels = f.owned.back().get();
    }
    f.backends.push_back({m.name, m.description, kernels});
  }
  return f;
}

}  // namespace

float round_to_precision(float value, Precision precision) {
  switch (precision) {
    case Precision::kFP32:
      return value;
    case Precision::kTF32:
      return round_mantissa(value, 13);
    case Precision::kBF16:
      return round_mantissa(value, 16);
    case Precision::kFP16:
      return round_to_fp16(value);
  }
  return value;
}

Precision storage_precision(Precision precision) {
  return precision == Precision::kTF32 ? Precision::kFP32 : precision;
}

const Kernels& emulated_kernels(Precision precision) {
  static const auto fp32 = make_emulated_kernels(Precision::kFP32, {}, "fp32");
  static const auto tf32 = make_emulated_kernels(Precision::kTF32, {}, "tf32");
  static const auto bf16 = make_emulated_kernels(Precision::kBF16, {}, "bf16");
  static const auto fp16 = make_emulated_kernels(Precision::kFP16, {}, "fp16");
  switch (precision) {
    case Precision::kFP32:
      return *fp32;
    case Precision::kTF32:
      return *tf32;
    case Precision::kBF16:
      return *bf16;
    case Precision::kFP16:
      return *fp16;
  }
  return *fp32;
}

const std::vector<HonestBackend>& honest_backends(Precision precision) {
  static const Family fp32 = make_family(Precision::kFP32), tf32 = make_family(Precision::kTF32),
                      bf16 = make_family(Precision::kBF16), fp16 = make_family(Precision::kFP16);
  switch (precision) {
    case Precision::kFP32:
      return fp32.backends;
    case Precision::kTF32:
      return tf32.backends;
    case Precision::kBF16:
      return bf16.backends;
    case Precision::kFP16:
      return fp16.backends;
  }
  return fp32.backends;
}

}  // namespace moeref::golden
