#include "golden/fp16.h"

#include <bit>
#include <cmath>

namespace moeref::golden {

float fp16_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1F;
  const uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0x1F && mantissa == 0) return std::bit_cast<float>(sign | 0x7F800000);
  if (exponent == 0x1F)
    return std::bit_cast<float>(sign | 0x7FC00000 | (mantissa << 13));  // a quiet NaN
  // Subnormal: mantissa * 2^-24; normal: (1024 + mantissa) * 2^(exponent - 25). Both exact.
  const float magnitude = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -24)
                                        : std::ldexp(static_cast<float>(1024 + mantissa),
                                                     static_cast<int>(exponent) - 25);
  return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
}

float round_to_fp16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint32_t sign = bits & 0x80000000;
  uint32_t magnitude = bits & 0x7FFFFFFF;
  if (magnitude > 0x7F800000) {
    // NaN: fp16 keeps the quiet bit and the top 10 bits of the payload.
    return std::bit_cast<float>((bits & 0xFFFFE000) | 0x00400000);
  }
  if (magnitude == 0x7F800000) return value;
  if (std::bit_cast<float>(magnitude) < 0x1p-14f) {
    // fp16 subnormals are multiples of 2^-24: scaling by 2^24 is exact and nearbyint rounds
    // ties to even (the default rounding mode).
    magnitude = std::bit_cast<uint32_t>(std::nearbyint(std::bit_cast<float>(magnitude) * 0x1p24f) *
                                        0x1p-24f);
  } else {
    // Normal: keep 10 of float's 23 mantissa bits, ties to even; a carry moves into the exponent.
    const uint32_t dropped = magnitude & 0x1FFF;
    magnitude -= dropped;
    if (dropped > 0x1000 || (dropped == 0x1000 && (magnitude & 0x2000) != 0)) magnitude += 0x2000;
    if (std::bit_cast<float>(magnitude) > 65504.0f) magnitude = 0x7F800000;
  }
  return std::bit_cast<float>(sign | magnitude);
}

}  // namespace moeref::golden
