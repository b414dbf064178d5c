#include "ref/model/moe.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/model/feed_forward.h"
#include "ref/ops/parallel.h"
#include "ref/ops/router.h"

namespace moeref {

namespace {

// One (token, rank) pair routed to an expert.
struct Assignment {
  int64_t token;
  int64_t rank;
};

// The experts in the kernel set's expert_order for these assignments; throws std::logic_error
// naming the kernel set when that order is not a permutation of the experts.
std::vector<int64_t> ordered_experts(const Kernels& kernels,
                                     const std::vector<std::vector<Assignment>>& assignments) {
  const int64_t n_experts = std::ssize(assignments);
  std::vector<int64_t> tokens_per_expert(assignments.size());
  std::ranges::transform(assignments, tokens_per_expert.begin(),
                         [](const std::vector<Assignment>& a) { return std::ssize(a); });
  std::vector<int64_t> order = kernels.expert_order(tokens_per_expert);
  std::vector<bool> seen(assignments.size(), false);
  for (const int64_t e : order) {
    if (e < 0 || e >= n_experts || seen[e]) break;
    seen[e] = true;
  }
  if (std::ssize(order) != n_experts || std::ranges::find(seen, false) != seen.end()) {
    throw std::logic_error(std::string("the kernel set \"") + kernels.name() +
                           "\" gave an expert_order that is not a permutation of the " +
                           std::to_string(n_experts) + " experts");
  }
  return order;
}

// Runs every expert over the tokens assigned to it, writing expert_outputs [tokens, k, d]: gather
// each expert's tokens, run its FFN on them, scatter the outputs to their (token, rank) rows.
// Experts run in parallel, one per thread at a time, once the layer's expert work reaches
// kParallelWork (ref/ops/parallel.h), in the kernel set's expert_order. Each writes only its own
// (token, rank) rows, and the kernels it calls run on that one thread (a nested OpenMP region has
// one thread), so the results do not depend on which thread runs which expert, nor on the order.
void run_experts(const Kernels& kernels, const ModelConfig& config, const LayerWeights& weights,
                 const float* x, int64_t n_tokens, const std::vector<int32_t>& indices,
                 const std::vector<int32_t>& kept, std::vector<float>& expert_outputs) {
  const int64_t d = config.d_model;
  const int64_t k = config.top_k;
  const int64_t matrices = config.ffn_activation == Activation::kSwiGlu ? 3 : 2;
  const int64_t work = n_tokens * k * d * config.expert_d_ff * matrices;
  std::vector<std::vector<Assignment>> assignments(static_cast<size_t>(config.n_experts));
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      if (kept[t * k + j]) assignments[indices[t * k + j]].push_back({t, j});
    }
  }
  const std::vector<int64_t> order = ordered_experts(kernels, assignments);
#pragma omp parallel for schedule(dynamic, 1) if (work >= ref::kParallelWork)
  for (int64_t i = 0; i < config.n_experts; ++i) {
    const int64_t e = order[i];
    const std::vector<Assignment>& assigned = assignments[e];
    if (assigned.empty()) continue;
    const int64_t rows = static_cast<int64_t>(assigned.size());
    std::vector<float> inputs(static_cast<size_t>(rows * d));
    std::vector<float> outputs(inputs.size());
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(x + assigned[r].token * d, d, inputs.begin() + r * d);
    }
    feed_forward(kernels, config.ffn_activation, weights.experts[e], inputs.data(), rows,
                 outputs.data());
    for (int64_t r = 0; r < rows; ++r) {
      std::copy_n(outputs.begin() + r * d, d,
                  expert_outputs.begin() + (assigned[r].token * k + assigned[r].rank) * d);
    }
  }
}

}  // namespace

RouterStats moe_forward(const Kernels& kernels, const ModelConfig& config,
                        const LayerWeights& weights, const float* x, int64_t n_tokens, float* out,
                        const TraceScope& trace) {
  const int64_t d = config.d_model;
  const int64_t n_experts = config.n_experts;
  const int64_t k = config.top_k;
  RouterStats stats;

  std::vector<float> router_logits(static_cast<size_t>(n_tokens * n_experts));
  kernels.matmul(x, weights.router.data(), router_logits.data(), n_tokens, d, n_experts);
  trace("moe.router_logits", {n_tokens, n_experts}, router_logits.data());

  std::vector<float> router_probs = router_logits;
  kernels.softmax(router_probs.data(), n_tokens, n_experts);
  trace("moe.router_probs", {n_tokens, n_experts}, router_probs.data());

  std::vector<int32_t> indices(static_cast<size_t>(n_tokens * k));
  std::vector<float> topk_weights(indices.size());
  kernels.select_top_k(router_probs.data(), n_tokens, n_experts, k, config.router_renormalize,
                       indices.data(), topk_weights.data());
  trace("moe.topk_indices", {n_tokens, k}, indices.data());
  trace("moe.topk_weights", {n_tokens, k}, topk_weights.data());

  std::vector<int32_t> kept(indices.size());
  stats.capacity = ref::expert_capacity(config.capacity_factor, n_tokens, k, n_experts);
  stats.dropped =
      kernels.apply_capacity(indices.data(), n_tokens, k, n_experts, stats.capacity, kept.data());
  trace("moe.kept", {n_tokens, k}, kept.data());

  std::vector<float> expert_outputs(static_cast<size_t>(n_tokens * k * d), 0.0f);
  run_experts(kernels, config, weights, x, n_tokens, indices, kept, expert_outputs);
  trace("moe.expert_outputs", {n_tokens, k, d}, expert_outputs.data());

  // out[t] = sum_j weight[t, j] * expert_outputs[t, j], in double, ranks in order; token by
  // token, in parallel from kParallelWork up.
#pragma omp parallel if (n_tokens * k * d >= ref::kParallelWork)
  {
    std::vector<double> sum(static_cast<size_t>(d));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t j = 0; j < k; ++j) {
        const double weight = topk_weights[t * k + j];
        const float* expert_output = expert_outputs.data() + (t * k + j) * d;
        for (int64_t i = 0; i < d; ++i) sum[i] += weight * expert_output[i];
      }
      for (int64_t i = 0; i < d; ++i) out[t * d + i] = static_cast<float>(sum[i]);
    }
  }
  trace("moe.out", {n_tokens, d}, out);

  stats.aux_loss =
      ref::load_balancing_loss(router_probs.data(), indices.data(), n_tokens, n_experts, k);
  stats.z_loss = ref::router_z_loss(router_logits.data(), n_tokens, n_experts);
  const float aux = static_cast<float>(stats.aux_loss);
  const float z = static_cast<float>(stats.z_loss);
  trace("moe.aux_loss", {}, &aux);
  trace("moe.z_loss", {}, &z);
  return stats;
}

}  // namespace moeref
