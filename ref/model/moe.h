// The mixture-of-experts FFN of one layer (Shazeer et al. 2017; Mixtral, Jiang et al. 2024).
//
//   router_logits = W_router x                      [tokens, n_experts]
//   router_probs  = softmax(router_logits)          [tokens, n_experts]
//   top-k experts and weights per token             [tokens, k], rank order (ref/ops/router.h)
//   capacity: which assignments are kept            [tokens, k], 1 kept / 0 dropped
//   expert_outputs[t, j] = expert_{idx[t,j]}(x_t)   [tokens, k, d_model], 0 where dropped
//   out[t] = sum_j weight[t, j] * expert_outputs[t, j]   summed in rank order, in double
//
// Tokens are grouped by expert (each expert runs once over the tokens that chose it), which gives
// the same bits as running token by token since the FFN's rows are independent.
// Traced under the layer's scope as moe.{router_logits, router_probs, topk_indices, topk_weights,
// kept, expert_outputs, out, aux_loss, z_loss} (docs/tracing.md).
#pragma once

#include <cstdint>

#include "ref/io/config.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"

namespace moeref {

struct RouterStats {
  int64_t layer = 0;
  double aux_loss = 0.0;  // load-balancing loss (ref/ops/router.h)
  double z_loss = 0.0;
  int64_t capacity = 0;  // per expert for this call, 0 = dropless
  int64_t dropped = 0;   // assignments dropped by capacity
};

// x, out: [n_tokens, d_model].
RouterStats moe_forward(const Kernels& kernels, const ModelConfig& config,
                        const LayerWeights& weights, const float* x, int64_t n_tokens, float* out,
                        const TraceScope& trace);

}  // namespace moeref
