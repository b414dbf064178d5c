// kVectorRegisters, per SIMD target: how many vector registers a kernel's accumulators and
// operands share. 32 on x86's AVX-512 targets; 16 on the others (AVX2 and SSE; other
// architectures are counted as 16 too, which at worst leaves registers unused). Kernels size their
// register blocks from it, so that a block's accumulators and operands fit without spilling: the
// register tiles (simd/tile_gemm.cc), attention's blocks of heads (simd/attention.cc), and the rows
// of x a weight row meets at once (simd/matvec.cc). Included after hwy/highway.h inside a
// foreach_target.h pass.
//
// Toggle guard (not #pragma once): this header is compiled once per target.
#if defined(MOEREF_SIMD_VECTOR_REGISTERS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef MOEREF_SIMD_VECTOR_REGISTERS_INL_H_
#undef MOEREF_SIMD_VECTOR_REGISTERS_INL_H_
#else
#define MOEREF_SIMD_VECTOR_REGISTERS_INL_H_
#endif

#include <cstddef>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
inline constexpr size_t kVectorRegisters = 32;
#else
inline constexpr size_t kVectorRegisters = 16;
#endif

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#endif  // MOEREF_SIMD_VECTOR_REGISTERS_INL_H_
