// IEEE 754 binary16 (fp16) conversions in software, bit for bit what a conversion through GCC's
// _Float16 gives, on every compiler (clang 14 has no _Float16 on x86-64).
#pragma once

#include <cstdint>

namespace moeref::golden {

// The fp16 value with these bits, as float (exact: every fp16 value is a float). A NaN keeps its
// sign and payload, shifted into float's mantissa, and becomes quiet.
float fp16_to_float(uint16_t bits);

// `value` rounded to the nearest fp16, ties to even, as float: magnitudes past 65504 that round
// beyond it become infinity, those below 2^-14 are rounded to a multiple of 2^-24 (fp16's
// subnormals). Infinities stay; a NaN becomes the quiet NaN an fp16 round trip gives.
float round_to_fp16(float value);

}  // namespace moeref::golden
