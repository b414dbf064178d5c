// The 16-bit floats of checkpoints (IEEE binary16 "F16" and bfloat16 "BF16") to float32 and back,
// by their bits.
//
// Both widen to float32 exactly: every F16 and every BF16 value, subnormals, signed zeros and
// infinities included, is a float32 value. A NaN stays a NaN of the same sign, its payload kept
// (shifted into the wider mantissa). Narrowing is offered only where it is exact: bf16_exactly
// gives the bfloat16 bits of a float32 whose low 16 bits are zero, and nothing for any other
// float32, so no caller can round without saying so.
//
// Layouts: float32 = sign 1 | exponent 8 (bias 127) | mantissa 23;
//          bfloat16 = the upper 16 bits of float32;
//          binary16 = sign 1 | exponent 5 (bias 15) | mantissa 10.
#pragma once

#include <bit>
#include <cstdint>
#include <optional>

namespace moeref {

constexpr float bf16_to_f32(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

constexpr std::optional<uint16_t> bf16_exactly(float value) {
  const auto bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0xFFFFu) != 0) return std::nullopt;
  return static_cast<uint16_t>(bits >> 16);
}

constexpr float f16_to_f32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0x1F) {  // infinity (mantissa 0) or NaN: all exponent bits set in float32 too
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  }
  if (exponent != 0) {  // normal: rebias 15 -> 127
    return std::bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
  }
  if (mantissa == 0) return std::bit_cast<float>(sign);  // signed zero
  // Subnormal: mantissa * 2^-24. Shift the leading one up to the implicit bit; each shift takes
  // one from the exponent, which starts at that of 2^-14 (the smallest normal binary16).
  int32_t float_exponent = -14 + 127;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    --float_exponent;
  }
  mantissa &= 0x3FFu;
  return std::bit_cast<float>(sign | (static_cast<uint32_t>(float_exponent) << 23) |
                              (mantissa << 13));
}

}  // namespace moeref
