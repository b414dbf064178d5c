// Philox4x32-10, the counter-based random number generator of Salmon et al. (SC11), and the
// conversions moeref builds on it.
//
// A counter-based generator maps (counter, key) to random bits with no hidden state, so any draw
// can be reproduced on its own, by a GPU thread as well as here, from the numbers that name it.
// moeref names every draw (docs/model.md, "Random numbers"):
//   key     = {seed & 0xffffffff, seed >> 32}
//   counter = {c0, c1, c2, c3}, whose meaning depends on the stream (weights, sampling, ...).
// Only the first word of each block is used for sampling; weight initialisation uses all four.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace moeref {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// Ten rounds of Philox4x32; matches Random123's philox4x32_R(10, ...).
PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key);

PhiloxKey philox_key_from_seed(uint64_t seed);

// Exact conversion of 32 random bits to a float in [0, 1): the top 24 bits times 2^-24.
// Every value is representable, so the result does not depend on rounding mode or compiler.
inline float uniform_from_bits(uint32_t bits) { return static_cast<float>(bits >> 8) * 0x1.0p-24f; }

// The stream identifiers that fill counter word 3 for draws made during generation.
enum class RandomStream : uint32_t {
  kSampling = 0,           // the token drawn at a position (and speculative decoding's bonus)
  kSpeculativeAccept = 1,  // speculative decoding's acceptance test (ref/generation/speculative.h)
  kSpeculativeResidual = 2,  // speculative decoding's draw from the residual distribution
  kDraftProposal = 3         // the draft model's proposal
};

// The uniform number for one draw of generation: key = seed,
// counter = {draw, position, request, stream}.
float generation_uniform(uint64_t seed, uint32_t draw, uint32_t position, uint32_t request,
                         RandomStream stream);

// 32-bit FNV-1a of a tensor name: the counter word that separates the weight streams, so that
// adding or renaming one tensor never changes another's values.
uint32_t fnv1a32(std::string_view text);

}  // namespace moeref
