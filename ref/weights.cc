#include "ref/weights.h"

#include <cmath>
#include <set>
#include <type_traits>

#include "ref/philox.h"
#include "ref/stats.h"

namespace moeref {

namespace {

constexpr uint32_t kWeightStream = 0x57454947;  // "WEIG"

// The one listing of the model's tensors. Calls visit(spec, tensor) for each, in canonical order;
// tensor points into `weights` or is null when weights is null. A mutable ModelWeights is first
// sized to the config; a const one must already have been built for it.
template <class Weights, class Visit>
void visit_weights(const ModelConfig& c, Weights* weights, Visit visit) {
  using TensorPtr = decltype(&weights->embed);
  using FeedForwardPtr = decltype(&weights->layers[0].dense);
  constexpr bool kMutable = !std::is_const_v<Weights>;
  const int64_t d = c.d_model;
  const bool layernorm = c.norm == NormKind::kLayerNorm;
  const bool swiglu = c.ffn_activation == Activation::kSwiGlu;
  auto norm = [&](const std::string& prefix, TensorPtr gain, TensorPtr bias) {
    visit(WeightSpec{prefix + ".weight", {d}, InitKind::kGain}, gain);
    if (layernorm) visit(WeightSpec{prefix + ".bias", {d}, InitKind::kBias}, bias);
  };
  auto feed_forward = [&](const std::string& prefix, int64_t d_ff, int64_t expert,
                          FeedForwardPtr ffn) {
    if (swiglu) {
      visit(WeightSpec{prefix + ".gate_proj.weight", {d_ff, d}, InitKind::kMatrix, expert},
            ffn ? &ffn->gate_proj : nullptr);
    }
    visit(WeightSpec{prefix + ".up_proj.weight", {d_ff, d}, InitKind::kMatrix, expert},
          ffn ? &ffn->up_proj : nullptr);
    visit(WeightSpec{prefix + ".down_proj.weight", {d, d_ff}, InitKind::kMatrix, expert},
          ffn ? &ffn->down_proj : nullptr);
  };

  if constexpr (kMutable) {
    if (weights) weights->layers.resize(static_cast<size_t>(c.n_layers));
  }
  visit(WeightSpec{"embed.weight", {c.vocab_size, d}}, weights ? &weights->embed : nullptr);
  if (c.positions == PositionKind::kLearned) {
    visit(WeightSpec{"pos_embed.weight", {c.max_seq_len, d}},
          weights ? &weights->pos_embed : nullptr);
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    auto* layer = weights ? &weights->layers[l] : nullptr;
    const std::string prefix = "layers." + std::to_string(l);
    norm(prefix + ".attn_norm", layer ? &layer->attn_norm : nullptr,
         layer ? &layer->attn_norm_bias : nullptr);
    visit(WeightSpec{prefix + ".attn.q_proj.weight", {c.q_dim(), d}},
          layer ? &layer->q_proj : nullptr);
    visit(WeightSpec{prefix + ".attn.k_proj.weight", {c.kv_dim(), d}},
          layer ? &layer->k_proj : nullptr);
    visit(WeightSpec{prefix + ".attn.v_proj.weight", {c.kv_dim(), d}},
          layer ? &layer->v_proj : nullptr);
    visit(WeightSpec{prefix + ".attn.o_proj.weight", {d, c.q_dim()}},
          layer ? &layer->o_proj : nullptr);
    norm(prefix + ".ffn_norm", layer ? &layer->ffn_norm : nullptr,
         layer ? &layer->ffn_norm_bias : nullptr);
    if (c.is_moe_layer(l)) {
      visit(WeightSpec{prefix + ".moe.router.weight", {c.n_experts, d}},
            layer ? &layer->router : nullptr);
      if constexpr (kMutable) {
        if (layer) layer->experts.resize(static_cast<size_t>(c.n_experts));
      }
      for (int64_t e = 0; e < c.n_experts; ++e) {
        feed_forward(prefix + ".moe.experts." + std::to_string(e), c.expert_d_ff, e,
                     layer ? &layer->experts[e] : nullptr);
      }
    } else {
      feed_forward(prefix + ".ffn", c.dense_d_ff, -1, layer ? &layer->dense : nullptr);
    }
  }
  norm("final_norm", weights ? &weights->final_norm : nullptr,
       weights ? &weights->final_norm_bias : nullptr);
  if (!c.tied_embeddings) {
    visit(WeightSpec{"lm_head.weight", {c.vocab_size, d}}, weights ? &weights->lm_head : nullptr);
  }
}

Tensor init_tensor(const WeightSpec& spec, uint64_t seed, double std) {
  Tensor tensor(spec.shape);
  const PhiloxKey key = philox_key_from_seed(seed);
  const uint32_t name_hash = fnv1a32(spec.name);
  const double half_width = std * std::sqrt(3.0);
  const double offset = spec.init == InitKind::kGain ? 1.0 : 0.0;
  float* values = tensor.data();
  const int64_t n = tensor.numel();
  for (int64_t block = 0; block * 4 < n; ++block) {
    const PhiloxCounter bits =
        philox4x32_10({static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), name_hash,
                       kWeightStream},
                      key);
    for (int64_t word = 0; word < 4 && block * 4 + word < n; ++word) {
      const double u = uniform_from_bits(bits[word]);
      values[block * 4 + word] = static_cast<float>(offset + half_width * (2.0 * u - 1.0));
    }
  }
  return tensor;
}

std::string file_name(const TensorNaming& naming, const std::string& name) {
  return naming ? naming(name) : name;
}

}  // namespace

std::vector<WeightSpec> weight_specs(const ModelConfig& config) {
  std::vector<WeightSpec> specs;
  visit_weights(config, static_cast<const ModelWeights*>(nullptr),
                [&](const WeightSpec& spec, const Tensor*) { specs.push_back(spec); });
  return specs;
}

ModelWeights init_weights(const ModelConfig& config) {
  check_fits_in_memory(config);
  ModelWeights weights;
  visit_weights(config, &weights, [&](const WeightSpec& spec, Tensor* tensor) {
    *tensor = init_tensor(spec, config.init_seed, config.init_std);
  });
  return weights;
}

ModelWeights load_weights(const ModelConfig& config, const SafetensorsFile& file,
                          const TensorNaming& naming) {
  check_fits_in_memory(config);
  const std::string where = file.path().string() + ": ";
  std::set<std::string> expected;
  ModelWeights weights;
  visit_weights(config, &weights, [&](const WeightSpec& spec, Tensor* tensor) {
    const std::string name = file_name(naming, spec.name);
    expected.insert(name);
    const TensorRecord& record = file.at(name);
    if (record.dtype != DType::kF32) {
      throw SafetensorsError(where + "tensor \"" + name + "\" has dtype " +
                             dtype_name(record.dtype) + ", expected F32");
    }
    if (record.shape != spec.shape) {
      throw SafetensorsError(where + "tensor \"" + name + "\" has shape " +
                             shape_string(record.shape) + ", the config needs " +
                             shape_string(spec.shape));
    }
    *tensor = Tensor(spec.shape, record.to_f32());
  });
  for (const TensorRecord& record : file.tensors()) {
    if (!expected.contains(record.name)) {
      throw SafetensorsError(where + "tensor \"" + record.name + "\" is not part of this config");
    }
  }
  return weights;
}

ModelWeights load_weights(const ModelConfig& config, const std::filesystem::path& path) {
  return load_weights(config, SafetensorsFile::read(path));
}

std::vector<TensorRecord> weight_records(const ModelConfig& config, const ModelWeights& weights,
                                         const TensorNaming& naming) {
  std::vector<TensorRecord> records;
  visit_weights(config, &weights, [&](const WeightSpec& spec, const Tensor* tensor) {
    records.push_back(make_f32_record(file_name(naming, spec.name), spec.shape, tensor->values()));
  });
  return records;
}

void save_weights(const ModelConfig& config, const ModelWeights& weights,
                  const std::filesystem::path& path,
                  const std::map<std::string, std::string>& metadata) {
  write_safetensors(path, weight_records(config, weights), metadata);
}

}  // namespace moeref
