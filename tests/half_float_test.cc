// F16 and BF16 to float32 (ref/io/half_float.h): edge cases from a table written by hand from the
// IEEE layouts, and every one of the 65536 binary16 values against the textbook formula
// (-1)^s * 2^(e - 15) * (1 + m / 1024), or m * 2^-24 for subnormals, evaluated with ldexp.

#include "ref/io/half_float.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace moeref {
namespace {

struct WideningCase {
  const char* what;
  uint16_t bits;
  uint32_t float_bits;  // the float32 expected, as bits (signed zeros and NaN payloads count)
};

const WideningCase kF16Cases[] = {
    {"+0", 0x0000, 0x00000000},
    {"-0", 0x8000, 0x80000000},
    {"smallest subnormal 2^-24", 0x0001, 0x33800000},
    {"-smallest subnormal", 0x8001, 0xB3800000},
    {"subnormal 2^-15", 0x0200, 0x38000000},
    {"largest subnormal 1023 * 2^-24", 0x03FF, 0x387FC000},
    {"smallest normal 2^-14", 0x0400, 0x38800000},
    {"1", 0x3C00, 0x3F800000},
    {"1 + 2^-10", 0x3C01, 0x3F802000},
    {"-2", 0xC000, 0xC0000000},
    {"largest finite 65504", 0x7BFF, 0x477FE000},
    {"+Inf", 0x7C00, 0x7F800000},
    {"-Inf", 0xFC00, 0xFF800000},
    {"quiet NaN", 0x7E00, 0x7FC00000},
    {"negative quiet NaN", 0xFE00, 0xFFC00000},
    {"signalling NaN, payload 1", 0x7C01, 0x7F802000},
    {"NaN, all payload bits", 0x7FFF, 0x7FFFE000},
};

const WideningCase kBF16Cases[] = {
    {"+0", 0x0000, 0x00000000},
    {"-0", 0x8000, 0x80000000},
    {"smallest subnormal 2^-133", 0x0001, 0x00010000},
    {"smallest normal 2^-126", 0x0080, 0x00800000},
    {"1", 0x3F80, 0x3F800000},
    {"1 + 2^-7", 0x3F81, 0x3F810000},
    {"largest finite", 0x7F7F, 0x7F7F0000},
    {"+Inf", 0x7F80, 0x7F800000},
    {"-Inf", 0xFF80, 0xFF800000},
    {"quiet NaN", 0x7FC0, 0x7FC00000},
    {"NaN with payload", 0x7F81, 0x7F810000},
};

TEST(HalfFloat, F16EdgeCasesWidenToTheirFloat32Bits) {
  for (const WideningCase& c : kF16Cases) {
    EXPECT_EQ(std::bit_cast<uint32_t>(f16_to_f32(c.bits)), c.float_bits) << c.what;
  }
}

TEST(HalfFloat, BF16EdgeCasesWidenToTheirFloat32Bits) {
  for (const WideningCase& c : kBF16Cases) {
    EXPECT_EQ(std::bit_cast<uint32_t>(bf16_to_f32(c.bits)), c.float_bits) << c.what;
  }
}

TEST(HalfFloat, EveryFiniteF16EqualsTheFormula) {
  int checked = 0;
  for (uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
    const int sign = (bits >> 15) ? -1 : 1;
    const int exponent = static_cast<int>((bits >> 10) & 0x1F);
    const int mantissa = static_cast<int>(bits & 0x3FF);
    if (exponent == 0x1F) continue;  // Inf and NaN: the table above
    const double magnitude =
        exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 15 - 10);
    const float widened = f16_to_f32(static_cast<uint16_t>(bits));
    ASSERT_EQ(static_cast<double>(widened), sign * magnitude) << std::hex << bits;
    ASSERT_EQ(std::signbit(widened), sign < 0) << std::hex << bits;
    ++checked;
  }
  EXPECT_EQ(checked, 65536 - 2 * 1024);
}

struct NarrowingCase {
  const char* what;
  uint32_t float_bits;
  bool exact;
  uint16_t bits;
};

const NarrowingCase kNarrowingCases[] = {
    {"1", 0x3F800000, true, 0x3F80},
    {"-0", 0x80000000, true, 0x8000},
    {"1 + 2^-7", 0x3F810000, true, 0x3F81},
    {"1 + 2^-8 (one bit too fine)", 0x3F808000, false, 0},
    {"the float after 1", 0x3F800001, false, 0},
    {"smallest float32 subnormal", 0x00000001, false, 0},
    {"+Inf", 0x7F800000, true, 0x7F80},
    {"quiet NaN", 0x7FC00000, true, 0x7FC0},
    {"NaN with a payload in the low bits", 0x7FC00001, false, 0},
};

TEST(HalfFloat, BF16ExactlyOnlyWhenTheLow16BitsAreZero) {
  for (const NarrowingCase& c : kNarrowingCases) {
    const std::optional<uint16_t> narrowed = bf16_exactly(std::bit_cast<float>(c.float_bits));
    ASSERT_EQ(narrowed.has_value(), c.exact) << c.what;
    if (c.exact) {
      EXPECT_EQ(*narrowed, c.bits) << c.what;
    }
  }
}

}  // namespace
}  // namespace moeref
