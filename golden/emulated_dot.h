// Dot products accumulated in fp32 the ways GPU kernels accumulate them. Honest backends differ
// here first: the same products summed in another order, with or without fused multiply-adds,
// give other roundings (golden/emulated_kernels.h, honest_backends).
#pragma once

#include <cstdint>

#include "golden/compare.h"

namespace moeref::golden {

enum class Reduction {
  // 8 interleaved fp32 partial sums (lane i % 8) combined pairwise: a SIMD or tensor-core order.
  kInterleaved,
  // One fp32 chain in index order, each product rounded before it is added: one thread per
  // output, as a naive GEMV or a scalar loop compiled without contraction.
  kSequential,
  // One fp32 chain from the last index down: a kernel that walks K backwards.
  kReversed,
  // One chain of fused multiply-adds (std::fma) in index order: what nvcc emits for acc += a * b.
  kFmaChain,
  // Blocks of kSplitKBlock products, each an FMA chain, the block sums added in order at the end:
  // cuBLAS's split-K.
  kSplitK,
  // As kSplitK, and each block sum and each running total rounded to the storage precision:
  // cuBLAS with PyTorch's allow_bf16/fp16_reduced_precision_reduction.
  kSplitKRounded,
};

inline constexpr int64_t kSplitKBlock = 32;

// sum_i a[i] * b[i] over i < n, in fp32, in the order `reduction` names; `storage` is the
// precision kSplitKRounded rounds to (the others ignore it; at fp32 it rounds nothing). The
// inputs are taken as they are: rounding them to a precision is the caller's.
float emulated_dot(Reduction reduction, const float* a, const float* b, int64_t n,
                   Precision storage);

}  // namespace moeref::golden
