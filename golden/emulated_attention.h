// Attention (the contract of ref/ops/attention.h) computed the ways GPU attention kernels compute
// it, in fp32, rounding where each kernel rounds. golden/emulation.h picks one per emulated
// backend.
#pragma once

#include <cstdint>
#include <span>

#include "golden/compare.h"
#include "golden/emulated_dot.h"
#include "ref/ops/attention.h"

namespace moeref::golden {

enum class AttentionAlgorithm {
  // A fused softmax-attention kernel that holds a whole row: scores s = q.k * scale, softmax in
  // fp32 (fp32_softmax) with the probabilities rounded to storage, context = p.v accumulated in
  // fp32 and rounded.
  kMaterialized,
  // Eager attention under torch.autocast (Hugging Face's eager path): q.k^T is a low-precision
  // matmul (inputs rounded to the matmul precision, output rounded to storage), the scaling a
  // second rounded op, softmax in fp32 with fp32 probabilities (traced so), and p.v another
  // low-precision matmul whose inputs, the probabilities among them, are rounded.
  kEager,
  // FlashAttention-2: q, k and v in the storage precision; per block of kFlashKeyBlock keys an
  // online softmax with a running max and a running sum, in base 2 (exp2(s * scale * log2 e -
  // max * scale * log2 e) with one fused multiply-add, as its kernel does); the block's
  // probabilities are rounded to storage before the p.v product and the fp32 accumulator is
  // rescaled by exp2 of the max's change; context = accumulator / sum. The kernel returns only
  // the context and its fp32 log-sum-exp lse, so the traced probabilities are rebuilt as
  // exp(s - lse) and rounded to storage: at fp32 their rows sum to 1 only within about 1e-6.
  kFlash,
  // Memory-efficient attention (xformers, PyTorch's SDPA memory-efficient kernel): q, k and v in
  // the storage precision; a first pass over blocks of kMemoryEfficientKeyBlock keys computes lse
  // in fp32 (running max and sum), then each probability is exp(s - lse) rounded to storage, and
  // the context sums p.v per block in fp32, the block sums added in order, rounded at the end.
  kMemoryEfficient,
};

// Far smaller than a real kernel's 64 or 128 keys so that the golden sets' rows of 5 to 35 keys
// span several blocks and the rescaling between blocks happens.
inline constexpr int64_t kFlashKeyBlock = 8;
inline constexpr int64_t kMemoryEfficientKeyBlock = 16;

struct AttentionRecipe {
  AttentionAlgorithm algorithm = AttentionAlgorithm::kMaterialized;
  Reduction scores = Reduction::kInterleaved;  // q . k over head_dim
  Reduction context = Reduction::kSequential;  // p . v over keys (kMaterialized and kEager only)
};

// matmul_inputs: what kEager rounds its matmul inputs to (tf32 included); storage: what outputs
// are rounded to (fp32 at tf32).
void emulated_attention(const AttentionRecipe& recipe, Precision matmul_inputs, Precision storage,
                        const float* q, const float* keys, const float* values,
                        std::span<const int64_t> positions, const ref::AttentionDims& dims,
                        float* context, float* probs, int64_t probs_width);

}  // namespace moeref::golden
