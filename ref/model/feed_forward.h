// One feed-forward network, the shape of both a routed expert and a dense FFN layer.
//
//   swiglu: y = down(silu(gate x) * up x)      gate, up: [d_ff, d_model], down: [d_model, d_ff]
//   gelu:   y = down(gelu(up x))               (no gate matrix)
//
// x: [rows, d_model] -> y: [rows, d_model]. Rows are independent: the result for a token does not
// depend on which other tokens share the call (what makes grouping tokens by expert exact).
#pragma once

#include <cstdint>

#include "ref/io/config.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"

namespace moeref {

void feed_forward(const Kernels& kernels, Activation activation, const FeedForwardWeights& w,
                  const float* x, int64_t rows, float* y);

}  // namespace moeref
