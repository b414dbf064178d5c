// When the reference ops spread work over OpenMP threads. Only independent outputs are split
// (rows, heads, elements), never a reduction, so the results are the same bits for any thread
// count; the threshold only keeps tiny models from paying a thread team's start and barrier for a
// few hundred operations, which costs far more than the work when the cores are busy.
#pragma once

#include <cstdint>

namespace moeref::ref {

// Multiply-adds (or elementwise operations) below which an op runs on one thread.
constexpr int64_t kParallelWork = 1 << 16;

}  // namespace moeref::ref
