#include "ref/model/weights.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <span>
#include <type_traits>

#include "ref/generation/philox.h"
#include "ref/model/stats.h"

namespace moeref {

namespace {

constexpr uint32_t kWeightStream = 0x57454947;  // "WEIG"

// The vision tower's tensors, in canonical order (the tail of visit_weights).
template <class Vision, class Visit>
void visit_vision_weights(const ModelConfig& c, Vision* vision, Visit visit) {
  using LinearPtr = decltype(&vision->projector);
  using LayerNormPtr = decltype(&vision->final_norm);
  using BlockPtr = decltype(&vision->layers[0]);
  const VisionConfig& v = *c.vision;
  const int64_t w = v.width;
  auto layer_norm = [&](const std::string& prefix, LayerNormPtr norm) {
    visit(WeightSpec{prefix + ".weight", {w}, InitKind::kGain}, norm ? &norm->weight : nullptr);
    visit(WeightSpec{prefix + ".bias", {w}, InitKind::kBias}, norm ? &norm->bias : nullptr);
  };
  auto linear = [&](const std::string& prefix, int64_t out, int64_t in, LinearPtr linear_weights) {
    visit(WeightSpec{prefix + ".weight", {out, in}},
          linear_weights ? &linear_weights->weight : nullptr);
    visit(WeightSpec{prefix + ".bias", {out}, InitKind::kBias},
          linear_weights ? &linear_weights->bias : nullptr);
  };
  auto block = [&](const std::string& prefix, bool resampler, BlockPtr b) {
    if (resampler) layer_norm(prefix + ".media_norm", b ? &b->media_norm : nullptr);
    layer_norm(prefix + (resampler ? ".latent_norm" : ".attn_norm"), b ? &b->attn_norm : nullptr);
    linear(prefix + ".attn.q_proj", w, w, b ? &b->q_proj : nullptr);
    linear(prefix + ".attn.k_proj", w, w, b ? &b->k_proj : nullptr);
    linear(prefix + ".attn.v_proj", w, w, b ? &b->v_proj : nullptr);
    linear(prefix + ".attn.o_proj", w, w, b ? &b->o_proj : nullptr);
    layer_norm(prefix + ".mlp_norm", b ? &b->mlp_norm : nullptr);
    linear(prefix + ".mlp.up_proj", v.mlp_size, w, b ? &b->up_proj : nullptr);
    linear(prefix + ".mlp.down_proj", w, v.mlp_size, b ? &b->down_proj : nullptr);
  };

  linear("vision.patch_embed", w, v.patch_dim(), vision ? &vision->patch_embed : nullptr);
  visit(WeightSpec{"vision.pos_embed.weight", {v.n_patches(), w}},
        vision ? &vision->pos_embed : nullptr);
  for (int64_t l = 0; l < v.layers; ++l) {
    block("vision.layers." + std::to_string(l), false, vision ? &vision->layers[l] : nullptr);
  }
  layer_norm("vision.final_norm", vision ? &vision->final_norm : nullptr);
  if (v.resampler_latents > 0) {
    visit(WeightSpec{"vision.resampler.latents", {v.resampler_latents, w}},
          vision ? &vision->latents : nullptr);
    for (int64_t l = 0; l < v.resampler_layers; ++l) {
      block("vision.resampler.layers." + std::to_string(l), true,
            vision ? &vision->resampler_layers[l] : nullptr);
    }
    layer_norm("vision.resampler.final_norm", vision ? &vision->resampler_norm : nullptr);
  }
  linear("vision.projector", c.d_model, w, vision ? &vision->projector : nullptr);
}

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
    if (weights) {
      weights->layers.resize(static_cast<size_t>(c.n_layers));
      if (c.vision) {
        weights->cross_attention.resize(c.vision->cross_attention_layers.size());
        weights->vision.layers.resize(static_cast<size_t>(c.vision->layers));
        weights->vision.resampler_layers.resize(static_cast<size_t>(c.vision->resampler_layers));
      }
    }
  }
  visit(WeightSpec{"embed.weight", {c.vocab_size, d}}, weights ? &weights->embed : nullptr);
  if (c.positions == PositionKind::kLearned) {
    visit(WeightSpec{"pos_embed.weight", {c.max_seq_len, d}},
          weights ? &weights->pos_embed : nullptr);
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    auto* layer = weights ? &weights->layers[l] : nullptr;
    const std::string prefix = "layers." + std::to_string(l);
    if (c.vision && c.vision->has_cross_attention(l)) {
      const VisionConfig& v = *c.vision;
      auto* block = weights ? &weights->cross_attention[v.cross_attention_index(l)] : nullptr;
      const std::string x = prefix + ".xattn";
      const int64_t q_dim = v.cross_attention_heads * c.head_dim;
      const int64_t kv_dim = v.cross_attention_kv_heads * c.head_dim;
      norm(x + ".attn_norm", block ? &block->attn_norm : nullptr,
           block ? &block->attn_norm_bias : nullptr);
      visit(WeightSpec{x + ".q_proj.weight", {q_dim, d}}, block ? &block->q_proj : nullptr);
      visit(WeightSpec{x + ".k_proj.weight", {kv_dim, d}}, block ? &block->k_proj : nullptr);
      visit(WeightSpec{x + ".v_proj.weight", {kv_dim, d}}, block ? &block->v_proj : nullptr);
      visit(WeightSpec{x + ".o_proj.weight", {d, q_dim}}, block ? &block->o_proj : nullptr);
      if (v.cross_attention_qk_norm) {
        visit(WeightSpec{x + ".q_norm.weight", {c.head_dim}, InitKind::kGain},
              block ? &block->q_norm : nullptr);
        visit(WeightSpec{x + ".k_norm.weight", {c.head_dim}, InitKind::kGain},
              block ? &block->k_norm : nullptr);
      }
      visit(WeightSpec{x + ".attn_gate", {1}, InitKind::kGate, -1, v.gate_init},
            block ? &block->attn_gate : nullptr);
      norm(x + ".ffn_norm", block ? &block->ffn_norm : nullptr,
           block ? &block->ffn_norm_bias : nullptr);
      feed_forward(x + ".ffn", v.cross_attention_d_ff, -1, block ? &block->ffn : nullptr);
      visit(WeightSpec{x + ".ffn_gate", {1}, InitKind::kGate, -1, -v.gate_init},
            block ? &block->ffn_gate : nullptr);
    }
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
  if (c.vision) visit_vision_weights(c, weights ? &weights->vision : nullptr, visit);
}

Tensor init_tensor(const WeightSpec& spec, uint64_t seed, double std) {
  Tensor tensor(spec.shape);
  const PhiloxKey key = philox_key_from_seed(seed);
  const uint32_t name_hash = fnv1a32(spec.name);
  const double half_width = std * std::sqrt(3.0);
  const double offset = spec.init == InitKind::kGain   ? 1.0
                        : spec.init == InitKind::kGate ? spec.gate_center
                                                       : 0.0;
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

// Checks the file's tensor list (TensorRecords or TensorEntries: name, dtype, shape) against the
// config, before any data is read, and returns each tensor by its name in the file.
template <class Stored>
std::map<std::string, const Stored*> check_tensor_list(const ModelConfig& config,
                                                       const std::filesystem::path& path,
                                                       const std::vector<Stored>& stored,
                                                       const TensorNaming& naming) {
  const std::string where = path.string() + ": ";
  std::map<std::string, const Stored*> by_name;
  for (const Stored& tensor : stored) by_name.emplace(tensor.name, &tensor);
  std::set<std::string> expected;
  visit_weights(config, static_cast<const ModelWeights*>(nullptr),
                [&](const WeightSpec& spec, const Tensor*) {
                  const std::string name = file_name(naming, spec.name);
                  expected.insert(name);
                  const auto found = by_name.find(name);
                  if (found == by_name.end()) {
                    throw SafetensorsError(where + "no tensor named '" + name + "'");
                  }
                  const Stored& tensor = *found->second;
                  if (tensor.dtype != DType::kF32) {
                    throw SafetensorsError(where + "tensor \"" + name + "\" has dtype " +
                                           dtype_name(tensor.dtype) + ", expected F32");
                  }
                  if (tensor.shape != spec.shape) {
                    throw SafetensorsError(where + "tensor \"" + name + "\" has shape " +
                                           shape_string(tensor.shape) + ", the config needs " +
                                           shape_string(spec.shape));
                  }
                });
  for (const Stored& tensor : stored) {
    if (!expected.contains(tensor.name)) {
      throw SafetensorsError(where + "tensor \"" + tensor.name + "\" is not part of this config");
    }
  }
  return by_name;
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

void check_finite_weight(const std::filesystem::path& path, const std::string& name,
                         const Tensor& tensor) {
  const std::span<const float> values = tensor.values();
  const auto bad =
      std::find_if(values.begin(), values.end(), [](float value) { return !std::isfinite(value); });
  if (bad == values.end()) return;
  const int64_t index = bad - values.begin();
  const std::vector<int64_t>& shape = tensor.shape();
  std::vector<int64_t> element(shape.size());
  int64_t rest = index;
  for (size_t d = shape.size(); d-- > 0;) {
    element[d] = rest % shape[d];
    rest /= shape[d];
  }
  const char* value = std::isnan(*bad) ? "NaN" : *bad > 0 ? "+Inf" : "-Inf";
  throw SafetensorsError(path.string() + ": tensor \"" + name + "\" holds " + value + " at index " +
                         std::to_string(index) + " (element " + shape_string(element) + " of " +
                         shape_string(shape) +
                         "): weights must be finite (moeref --allow-nonfinite-weights accepts "
                         "them)");
}

ModelWeights fill_weights(const ModelConfig& config,
                          const std::function<void(const WeightSpec&, Tensor&)>& fill) {
  check_fits_in_memory(config);
  ModelWeights weights;
  visit_weights(config, &weights, [&](const WeightSpec& spec, Tensor* tensor) {
    *tensor = Tensor(spec.shape);
    fill(spec, *tensor);
  });
  return weights;
}

ModelWeights load_weights(const ModelConfig& config, const SafetensorsFile& file,
                          const WeightLoading& loading) {
  return load_weights(config, file.tensors(), file.path(), loading);
}

ModelWeights load_weights(const ModelConfig& config, const std::vector<TensorRecord>& tensors,
                          const std::filesystem::path& source, const WeightLoading& loading) {
  const std::map<std::string, const TensorRecord*> records =
      check_tensor_list(config, source, tensors, loading.naming);
  check_fits_in_memory(config);
  ModelWeights weights;
  visit_weights(config, &weights, [&](const WeightSpec& spec, Tensor* tensor) {
    const TensorRecord& record = *records.at(file_name(loading.naming, spec.name));
    *tensor = Tensor(spec.shape);
    record.copy_f32_into(tensor->values());
    if (loading.non_finite == NonFiniteWeights::kRefuse) {
      check_finite_weight(source, record.name, *tensor);
    }
  });
  return weights;
}

ModelWeights load_weights(const ModelConfig& config, const std::filesystem::path& path,
                          const WeightLoading& loading) {
  SafetensorsIndex index = SafetensorsIndex::open(path);
  const std::map<std::string, const TensorEntry*> entries =
      check_tensor_list(config, path, index.entries(), loading.naming);
  check_fits_in_memory(config);
  ModelWeights weights;
  visit_weights(config, &weights, [&](const WeightSpec& spec, Tensor* tensor) {
    const TensorEntry& entry = *entries.at(file_name(loading.naming, spec.name));
    *tensor = Tensor(spec.shape);
    index.read_into(entry, std::as_writable_bytes(tensor->values()));
    if (loading.non_finite == NonFiniteWeights::kRefuse) {
      check_finite_weight(path, entry.name, *tensor);
    }
  });
  return weights;
}

std::vector<TensorRecord> weight_records(const ModelConfig& config, const ModelWeights& weights,
                                         const TensorNaming& naming) {
  std::vector<TensorRecord> records;
  visit_weights(config, &weights, [&](const WeightSpec& spec, const Tensor* tensor) {
    records.push_back(make_f32_record(file_name(naming, spec.name), spec.shape, tensor->values()));
  });
  return records;
}

std::vector<TensorView> weight_views(const ModelConfig& config, const ModelWeights& weights,
                                     const TensorNaming& naming) {
  std::vector<TensorView> views;
  visit_weights(config, &weights, [&](const WeightSpec& spec, const Tensor* tensor) {
    views.push_back(
        {file_name(naming, spec.name), DType::kF32, spec.shape, std::as_bytes(tensor->values())});
  });
  return views;
}

void save_weights(const ModelConfig& config, const ModelWeights& weights,
                  const std::filesystem::path& path,
                  const std::map<std::string, std::string>& metadata) {
  write_safetensors_views(path, weight_views(config, weights), metadata);
}

}  // namespace moeref
