#include "golden/weight_bugs.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "golden/mutated_runner.h"

namespace moeref::golden {

namespace {

// A [rows, cols] matrix read as if it were stored [cols, rows]: element (r, c) taken from flat
// index c * rows + r.
Tensor read_transposed(const Tensor& matrix) {
  const int64_t rows = matrix.dim(0);
  const int64_t cols = matrix.dim(1);
  Tensor out({rows, cols});
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out.row(r)[c] = matrix.data()[c * rows + r];
  }
  return out;
}

// A backend computing g * branch where the model says tanh(g) * branch runs the model with
// atanh(g) for g.
void drop_tanh(Tensor& gate) {
  float& g = gate.data()[0];
  if (!(std::fabs(g) < 1.0f)) {
    throw std::domain_error("a gate of " + std::to_string(g) +
                            " has no atanh: the gate-without-tanh bug needs |gate| < 1");
  }
  g = static_cast<float>(std::atanh(static_cast<double>(g)));
}

using WeightMutation = std::function<void(const ModelConfig&, ModelWeights&)>;

Bug weight_bug(std::string name, std::string description, std::string own_tensor,
               std::function<bool(const ModelConfig&)> model, WeightMutation mutation) {
  return make_bug(
      std::move(name), std::move(description), std::move(own_tensor), {},
      {{"model", "batching"}, std::move(model), {}, {}},
      [mutation = std::move(mutation)](const GoldenSet& set, const Kernels& base, Precision) {
        RunMutation run;
        run.weights = mutation;
        return run_mutated(set, base, run);
      });
}

bool untied(const ModelConfig& c) { return !c.tied_embeddings; }

}  // namespace

std::vector<Bug> weight_bugs() {
  return {
      weight_bug(
          "experts-swapped",
          "experts 0 and 1 of the first MoE layer are loaded into each other's slots",
          "moe.expert_outputs", [](const ModelConfig& c) { return c.n_moe_layers() > 0; },
          [](const ModelConfig& c, ModelWeights& w) {
            int64_t layer = 0;
            while (!c.is_moe_layer(layer)) ++layer;
            std::swap(w.layers[layer].experts[0], w.layers[layer].experts[1]);
          }),
      weight_bug("embedding-transposed",
                 "the embedding [vocab, d] is read as if it were stored [d, vocab]", "embed.out",
                 {},
                 [](const ModelConfig&, ModelWeights& w) { w.embed = read_transposed(w.embed); }),
      weight_bug(
          "lm-head-transposed", "the LM head [vocab, d] is read as if it were stored [d, vocab]",
          "logits", untied,
          [](const ModelConfig&, ModelWeights& w) { w.lm_head = read_transposed(w.lm_head); }),
      weight_bug("lm-head-tied-by-mistake",
                 "the LM head is taken from the embedding although the model's is untied", "logits",
                 untied, [](const ModelConfig&, ModelWeights& w) { w.lm_head = w.embed; }),
      weight_bug(
          "xattn-gate-without-tanh",
          "the gated cross-attention multiplies by the gate itself, not by tanh(gate)",
          "xattn.attn_gated", [](const ModelConfig& c) { return c.vision.has_value(); },
          [](const ModelConfig&, ModelWeights& w) {
            for (CrossAttentionWeights& block : w.cross_attention) {
              drop_tanh(block.attn_gate);
              drop_tanh(block.ffn_gate);
            }
          }),
  };
}

}  // namespace moeref::golden
