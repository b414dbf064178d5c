// moeref.ops: every reference op on the caller's arrays, at the caller's shapes. Each function
// checks its operands (python/arrays.h), then calls the op of ref/ on them in place and returns
// what it wrote: the same bits as the C++ reference.
#include <pybind11/stl.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "golden/margins.h"
#include "python/arrays.h"
#include "python/bindings.h"
#include "python/op_weights.h"
#include "ref/generation/philox.h"
#include "ref/generation/sampling.h"
#include "ref/io/config.h"
#include "ref/model/cross_attention.h"
#include "ref/model/feed_forward.h"
#include "ref/model/moe.h"
#include "ref/model/tracer.h"
#include "ref/model/vision_encoder.h"
#include "ref/ops/activation.h"
#include "ref/ops/attention.h"
#include "ref/ops/kernels.h"
#include "ref/ops/matmul.h"
#include "ref/ops/norm.h"
#include "ref/ops/rope.h"
#include "ref/ops/router.h"
#include "ref/ops/softmax.h"

namespace moeref::python {

namespace {

using py::arg;

FloatArray copy_of(const FloatArray& x) {
  FloatArray copy = new_float_array({x.shape(), x.shape() + x.ndim()});
  std::copy(x.data(), x.data() + x.size(), copy.mutable_data());
  return copy;
}

FloatArray matmul(const py::object& x_in, const py::object& w_in) {
  const FloatArray x = float_operand(x_in, "x", {kAnySize, kAnySize});
  const FloatArray w = float_operand(w_in, "w", {kAnySize, dim(x, 1)});
  FloatArray y = new_float_array({dim(x, 0), dim(w, 0)});
  float* out = y.mutable_data();
  {
    py::gil_scoped_release release;
    ref::matmul(x.data(), w.data(), out, dim(x, 0), dim(x, 1), dim(w, 0));
  }
  return y;
}

FloatArray rms_norm(const py::object& x_in, const py::object& weight_in, double eps) {
  const FloatArray x = float_operand(x_in, "x", {kAnySize, kAnySize});
  require_at_least(dim(x, 1), 1, "x's last dimension");
  const FloatArray weight = float_operand(weight_in, "weight", {dim(x, 1)});
  FloatArray y = new_float_array({dim(x, 0), dim(x, 1)});
  ref::rms_norm(x.data(), weight.data(), eps, y.mutable_data(), dim(x, 0), dim(x, 1));
  return y;
}

FloatArray layer_norm(const py::object& x_in, const py::object& weight_in,
                      const py::object& bias_in, double eps) {
  const FloatArray x = float_operand(x_in, "x", {kAnySize, kAnySize});
  require_at_least(dim(x, 1), 1, "x's last dimension");
  const FloatArray weight = float_operand(weight_in, "weight", {dim(x, 1)});
  const FloatArray bias = float_operand(bias_in, "bias", {dim(x, 1)});
  FloatArray y = new_float_array({dim(x, 0), dim(x, 1)});
  ref::layer_norm(x.data(), weight.data(), bias.data(), eps, y.mutable_data(), dim(x, 0),
                  dim(x, 1));
  return y;
}

std::vector<int64_t> checked_positions(const py::object& positions_in, int64_t tokens) {
  std::vector<int64_t> positions = int64_operand(positions_in, "positions");
  if (static_cast<int64_t>(positions.size()) != tokens) {
    throw py::value_error("positions must hold one position per token (" + std::to_string(tokens) +
                          "), got " + std::to_string(positions.size()));
  }
  for (size_t t = 0; t < positions.size(); ++t) {
    if (positions[t] < 0) {
      throw py::value_error("positions[" + std::to_string(t) +
                            "] = " + std::to_string(positions[t]) + " is negative");
    }
  }
  return positions;
}

// rope_scaling: None (unscaled) or a dict spelt as a config's "rope_scaling" object
// (ref/io/config.h), validated as a config validates it (ConfigError naming "rope_scaling.<key>").
FloatArray rope(const py::object& x_in, const py::object& positions_in, double theta,
                const py::object& rope_scaling) {
  const FloatArray x = float_operand(x_in, "x", {kAnySize, kAnySize, kAnySize});
  if (dim(x, 2) % 2 != 0) {
    throw py::value_error("x: head_dim (its last dimension) must be even, got " +
                          std::to_string(dim(x, 2)));
  }
  const std::vector<int64_t> positions = checked_positions(positions_in, dim(x, 0));
  const RopeScaling scaling =
      rope_scaling.is_none()
          ? RopeScaling{}
          : rope_scaling_from_json(json_from_python(rope_scaling, "rope_scaling"), "rope_scaling",
                                   dim(x, 2), theta);
  FloatArray y = copy_of(x);
  ref::rope(y.mutable_data(), positions, dim(x, 1), dim(x, 2), theta, scaling);
  return y;
}

FloatArray softmax(const py::object& x_in) {
  const FloatArray x = float_operand(x_in, "x", {kAnySize, kAnySize});
  require_at_least(dim(x, 1), 1, "x's last dimension");
  FloatArray y = copy_of(x);
  ref::softmax(y.mutable_data(), dim(x, 0), dim(x, 1));
  return y;
}

// Causal attention over an unpaged cache [G, capacity, head_dim] or, with a block table, a pool
// of blocks [n_blocks, G, block_size, head_dim] (ref/ops/attention.h).
std::tuple<FloatArray, FloatArray> attention(const py::object& q_in, const py::object& keys_in,
                                             const py::object& values_in,
                                             const py::object& positions_in,
                                             const py::object& block_table_in,
                                             std::optional<int64_t> probs_width_in) {
  const FloatArray q = float_operand(q_in, "q", {kAnySize, kAnySize, kAnySize});
  const int64_t tokens = dim(q, 0), n_heads = dim(q, 1), head_dim = dim(q, 2);
  const bool paged = !block_table_in.is_none();
  std::vector<int32_t> block_table;
  FloatArray keys;
  int64_t n_kv_heads = 0, capacity = 0, block_size = 0;
  if (paged) {
    keys = float_operand(keys_in, "keys", {kAnySize, kAnySize, kAnySize, head_dim});
    n_kv_heads = dim(keys, 1);
    block_size = dim(keys, 2);
    block_table = int32_operand(block_table_in, "block_table");
    for (size_t b = 0; b < block_table.size(); ++b) {
      if (block_table[b] < 0 || block_table[b] >= dim(keys, 0)) {
        throw py::value_error(
            "block_table[" + std::to_string(b) + "] = " + std::to_string(block_table[b]) +
            " is not a block of keys (" + std::to_string(dim(keys, 0)) + " blocks)");
      }
    }
    capacity = static_cast<int64_t>(block_table.size()) * block_size;
  } else {
    keys = float_operand(keys_in, "keys", {kAnySize, kAnySize, head_dim});
    n_kv_heads = dim(keys, 0);
    capacity = dim(keys, 1);
  }
  std::vector<int64_t> shape(keys.shape(), keys.shape() + keys.ndim());
  const FloatArray values = float_operand(values_in, "values", shape);
  require_at_least(n_kv_heads, 1, "the K/V heads of keys");
  if (n_heads % n_kv_heads != 0) {
    throw py::value_error("q's heads (" + std::to_string(n_heads) +
                          ") must be a multiple of the K/V heads of keys (" +
                          std::to_string(n_kv_heads) + ")");
  }
  const std::vector<int64_t> positions = checked_positions(positions_in, tokens);
  int64_t last = -1;
  for (size_t t = 0; t < positions.size(); ++t) {
    if (positions[t] >= capacity) {
      throw py::value_error("positions[" + std::to_string(t) +
                            "] = " + std::to_string(positions[t]) + " is past the cache's " +
                            std::to_string(capacity) + " positions");
    }
    last = std::max(last, positions[t]);
  }
  const int64_t probs_width = probs_width_in.value_or(last + 1);
  if (probs_width <= last) {
    throw py::value_error("probs_width (" + std::to_string(probs_width) +
                          ") must exceed the largest position (" + std::to_string(last) + ")");
  }
  FloatArray context = new_float_array({tokens, n_heads, head_dim});
  FloatArray probs = new_float_array({tokens, n_heads, probs_width});
  float* context_out = context.mutable_data();
  float* probs_out = probs.mutable_data();
  {
    py::gil_scoped_release release;
    ref::attention(
        q.data(), keys.data(), values.data(), positions,
        ref::AttentionDims(n_heads, n_kv_heads, head_dim, capacity, block_table, block_size),
        context_out, probs_out, probs_width);
  }
  return {context, probs};
}

std::tuple<Int32Array, FloatArray> top_k(const py::object& probs_in, int64_t k, bool renormalize) {
  const FloatArray probs = float_operand(probs_in, "probs", {kAnySize, kAnySize});
  const int64_t tokens = dim(probs, 0), n_experts = dim(probs, 1);
  if (k < 1 || k > n_experts) {
    throw py::value_error("k must be in 1.." + std::to_string(n_experts) +
                          " (the experts of probs), got " + std::to_string(k));
  }
  Int32Array indices = new_int32_array({tokens, k});
  FloatArray weights = new_float_array({tokens, k});
  ref::select_top_k(probs.data(), tokens, n_experts, k, renormalize, indices.mutable_data(),
                    weights.mutable_data());
  return {indices, weights};
}

// The margin of every token's top-k choice (golden/margins.h, top_gap): how far its router
// probabilities are from choosing another set of experts.
py::array_t<double> top_k_margins(const py::object& probs_in, int64_t k) {
  const FloatArray probs = float_operand(probs_in, "probs", {kAnySize, kAnySize});
  const int64_t tokens = dim(probs, 0), n_experts = dim(probs, 1);
  if (k < 1 || k > n_experts) {
    throw py::value_error("k must be in 1.." + std::to_string(n_experts) +
                          " (the experts of probs), got " + std::to_string(k));
  }
  py::array_t<double> margins(tokens);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = probs.data() + t * n_experts;
    margins.mutable_at(t) = golden::top_gap({row, row + n_experts}, k);
  }
  return margins;
}

// Checks that every index is an expert and that no token repeats one.
void check_indices(const Int32Array& indices, int64_t n_experts) {
  for (int64_t t = 0; t < indices.shape(0); ++t) {
    std::set<int32_t> seen;
    for (int64_t j = 0; j < indices.shape(1); ++j) {
      const int32_t e = indices.at(t, j);
      if (e < 0 || e >= n_experts || !seen.insert(e).second) {
        throw py::value_error("indices[" + std::to_string(t) + ", " + std::to_string(j) +
                              "] = " + std::to_string(e) + " is not a distinct expert of " +
                              std::to_string(n_experts));
      }
    }
  }
}

std::tuple<Int32Array, int64_t> apply_capacity(const py::object& indices_in, int64_t n_experts,
                                               int64_t capacity) {
  require_at_least(n_experts, 1, "n_experts");
  require_at_least(capacity, 0, "capacity");
  const Int32Array indices = int32_array_operand(indices_in, "indices", {kAnySize, kAnySize});
  check_indices(indices, n_experts);
  Int32Array kept = new_int32_array({indices.shape(0), indices.shape(1)});
  const int64_t dropped = ref::apply_capacity(indices.data(), indices.shape(0), indices.shape(1),
                                              n_experts, capacity, kept.mutable_data());
  return {kept, dropped};
}

double load_balancing_loss(const py::object& probs_in, const py::object& indices_in) {
  const FloatArray probs = float_operand(probs_in, "probs", {kAnySize, kAnySize});
  const Int32Array indices = int32_array_operand(indices_in, "indices", {dim(probs, 0), kAnySize});
  check_indices(indices, dim(probs, 1));
  return ref::load_balancing_loss(probs.data(), indices.data(), dim(probs, 0), dim(probs, 1),
                                  indices.shape(1));
}

double router_z_loss(const py::object& logits_in) {
  const FloatArray logits = float_operand(logits_in, "logits", {kAnySize, kAnySize});
  return ref::router_z_loss(logits.data(), dim(logits, 0), dim(logits, 1));
}

FloatArray swiglu(const py::object& gate_in, const py::object& up_in) {
  const FloatArray gate = float_operand_any_shape(gate_in, "gate");
  const FloatArray up = float_operand(up_in, "up", {gate.shape(), gate.shape() + gate.ndim()});
  FloatArray out = new_float_array({gate.shape(), gate.shape() + gate.ndim()});
  ref::swiglu(gate.data(), up.data(), out.mutable_data(), gate.size());
  return out;
}

FloatArray gelu(const py::object& x_in) {
  const FloatArray x = float_operand_any_shape(x_in, "x");
  FloatArray y = copy_of(x);
  ref::gelu(y.mutable_data(), y.size());
  return y;
}

FloatArray ffn(const py::object& x_in, const py::dict& weights, const std::string& activation) {
  const FloatArray x = float_operand(x_in, "x", {kAnySize, kAnySize});
  const Activation kind = activation_from_name(activation);
  OpWeights w(weights, "weights");
  const FeedForwardWeights ffn_weights = w.feed_forward("", kind, dim(x, 1));
  w.require_all_used();
  FloatArray y = new_float_array({dim(x, 0), dim(x, 1)});
  float* out = y.mutable_data();
  {
    py::gil_scoped_release release;
    feed_forward(ref_kernels(), kind, ffn_weights, x.data(), dim(x, 0), out);
  }
  return y;
}

// The MoE layer of ref/model/moe.h on x [tokens, d_model] with the expert weights by name
// ("router.weight", "experts.E.{gate,up,down}_proj.weight"). Returns its traced tensors.
py::dict moe(const py::object& x_in, const py::dict& weights, int64_t top_k, bool renormalize,
             double capacity_factor, const std::string& activation) {
  const FloatArray x = float_operand(x_in, "x", {kAnySize, kAnySize});
  ModelConfig config;
  config.d_model = dim(x, 1);
  config.ffn_activation = activation_from_name(activation);
  config.router_renormalize = renormalize;
  if (!(capacity_factor >= 0.0) || !std::isfinite(capacity_factor)) {
    throw py::value_error("capacity_factor must be finite and >= 0, got " +
                          std::to_string(capacity_factor));
  }
  config.capacity_factor = capacity_factor;
  OpWeights w(weights, "weights");
  LayerWeights layer;
  layer.router = w.tensor("router.weight", {kAnySize, config.d_model});
  config.n_experts = layer.router.dim(0);
  require_at_least(config.n_experts, 1, "the experts of weights['router.weight']");
  if (top_k < 1 || top_k > config.n_experts) {
    throw py::value_error("top_k must be in 1.." + std::to_string(config.n_experts) +
                          " (the experts), got " + std::to_string(top_k));
  }
  config.top_k = top_k;
  for (int64_t e = 0; e < config.n_experts; ++e) {
    layer.experts.push_back(w.feed_forward("experts." + std::to_string(e) + ".",
                                           config.ffn_activation, config.d_model));
  }
  config.expert_d_ff = layer.experts.front().up_proj.dim(0);
  for (int64_t e = 0; e < config.n_experts; ++e) {
    w.require_rows(layer.experts[e].up_proj, config.expert_d_ff,
                   "experts." + std::to_string(e) + ".up_proj.weight");
  }
  w.require_all_used();
  TraceRecorder recorder;
  FloatArray out = new_float_array({dim(x, 0), dim(x, 1)});
  float* out_data = out.mutable_data();
  {
    py::gil_scoped_release release;
    moe_forward(ref_kernels(), config, layer, x.data(), dim(x, 0), out_data,
                TraceScope(&recorder, ""));
  }
  return dict_from_records(recorder.records());
}

// Flamingo's gated cross-attention block (ref/model/cross_attention.h) over one image's vision
// tokens, for x [tokens, d_model] at `positions`; the weights by their names under layers.L.xattn.
// Returns the traced tensors under "xattn.", with the image's K/V as "xattn.k" and "xattn.v".
py::dict gated_cross_attention(const py::object& x_in, const py::object& vision_tokens_in,
                               const py::object& positions_in, int64_t image_position,
                               const py::dict& weights, int64_t n_heads, int64_t n_kv_heads,
                               int64_t head_dim, const std::string& norm,
                               const std::string& activation, double eps) {
  const FloatArray x = float_operand(x_in, "x", {kAnySize, kAnySize});
  const int64_t d = dim(x, 1);
  const Tensor vision_tokens =
      tensor_from_operand(vision_tokens_in, "vision_tokens", {kAnySize, d});
  require_at_least(vision_tokens.dim(0), 1, "the rows of vision_tokens");
  require_at_least(n_heads, 1, "n_heads");
  require_at_least(n_kv_heads, 1, "n_kv_heads");
  require_at_least(head_dim, 1, "head_dim");
  require_at_least(image_position, 0, "image_position");
  if (n_heads % n_kv_heads != 0) {
    throw py::value_error("n_heads (" + std::to_string(n_heads) +
                          ") must be a multiple of n_kv_heads (" + std::to_string(n_kv_heads) +
                          ")");
  }
  const std::vector<int64_t> positions = checked_positions(positions_in, dim(x, 0));
  ModelConfig config;
  config.d_model = d;
  config.head_dim = head_dim;
  config.norm = norm_from_name(norm);
  config.norm_eps = eps;
  config.ffn_activation = activation_from_name(activation);
  OpWeights w(weights, "weights");
  CrossAttentionWeights block = w.cross_attention(
      config.norm, config.ffn_activation, d, n_heads * head_dim, n_kv_heads * head_dim, head_dim);
  w.require_all_used();
  VisionConfig vision;
  vision.cross_attention_layers = {0};
  vision.cross_attention_heads = n_heads;
  vision.cross_attention_kv_heads = n_kv_heads;
  vision.cross_attention_d_ff = block.ffn.up_proj.dim(0);
  vision.cross_attention_qk_norm = !block.q_norm.empty();
  config.vision = vision;
  TraceRecorder recorder;
  FloatArray y = copy_of(x);
  float* y_data = y.mutable_data();
  {
    py::gil_scoped_release release;
    const ImageKv kv =
        image_kv(ref_kernels(), config, std::span(&block, 1), vision_tokens, &recorder);
    const std::vector<SequenceImage> images(positions.size(), SequenceImage{&kv, image_position});
    gated_cross_attention(ref_kernels(), config, block, 0, positions, images, y_data,
                          TraceScope(&recorder, "layers.0.xattn."));
  }
  py::dict traced;
  const std::string prefix = "layers.0.";
  for (const TensorRecord& record : recorder.records()) {
    traced[py::str(record.name.substr(prefix.size()))] = array_from_record(record);
  }
  return traced;
}

py::array patchify_image(const py::object& image_in, int64_t patch_size) {
  require_at_least(patch_size, 1, "patch_size");
  const Tensor image = tensor_from_operand(image_in, "image", {kAnySize, kAnySize, kAnySize});
  return array_from_tensor(patchify(image, patch_size));
}

int64_t expert_capacity(double capacity_factor, int64_t n_tokens, int64_t k, int64_t n_experts) {
  if (!(capacity_factor >= 0.0) || !std::isfinite(capacity_factor)) {
    throw py::value_error("capacity_factor must be finite and >= 0, got " +
                          std::to_string(capacity_factor));
  }
  require_at_least(n_tokens, 0, "n_tokens");
  require_at_least(k, 1, "k");
  require_at_least(n_experts, 1, "n_experts");
  return ref::expert_capacity(capacity_factor, n_tokens, k, n_experts);
}

SamplingParams sampling_params(double temperature, int64_t top_k, double top_p, uint64_t seed) {
  const SamplingParams params{
      .temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = seed};
  validate(params);
  return params;
}

std::span<const float> logits_row(const FloatArray& logits) {
  return {logits.data(), static_cast<size_t>(logits.size())};
}

FloatArray vocabulary_logits(const py::object& logits_in) {
  FloatArray logits = float_operand(logits_in, "logits", {kAnySize});
  require_at_least(dim(logits, 0), 1, "the length of logits");
  return logits;
}

uint32_t counter_word(int64_t value, const char* argument) {
  if (value < 0 || value > 0xffffffffLL) {
    throw py::value_error(std::string(argument) + " must be in 0..2^32-1, got " +
                          std::to_string(value));
  }
  return static_cast<uint32_t>(value);
}

}  // namespace

void bind_ops(py::module_& module) {
  py::module_ ops = module.def_submodule(
      "ops", "Every reference op (ref/ops/*.h) on float32 ndarrays at any shape, bit for bit.");
  ops.def("matmul", &matmul, arg("x"), arg("w"),
          "y[r, o] = sum_i x[r, i] w[o, i]; x [rows, in], w [out, in] -> [rows, out]");
  ops.def("rms_norm", &rms_norm, arg("x"), arg("weight"), arg("eps") = 1e-5,
          "RMSNorm of each row: x [rows, d], weight [d] -> [rows, d]");
  ops.def("layer_norm", &layer_norm, arg("x"), arg("weight"), arg("bias"), arg("eps") = 1e-5,
          "LayerNorm of each row: x [rows, d], weight and bias [d] -> [rows, d]");
  ops.def("rope", &rope, arg("x"), arg("positions"), arg("theta") = 10000.0,
          arg("rope_scaling") = py::none(),
          "rotate-half RoPE: x [tokens, heads, head_dim] at positions [tokens] -> a new array; "
          "rope_scaling as a config's \"rope_scaling\" object (None: unscaled)");
  ops.def("softmax", &softmax, arg("x"), "softmax of each row: x [rows, n] -> [rows, n]");
  ops.def("attention", &attention, arg("q"), arg("keys"), arg("values"), arg("positions"),
          arg("block_table") = py::none(), arg("probs_width") = py::none(),
          "causal attention of q [tokens, H, head_dim] at positions over a cache keys, values "
          "[G, capacity, head_dim] (or a block pool [blocks, G, block_size, head_dim] with a "
          "block_table) -> (context [tokens, H, head_dim], probs [tokens, H, probs_width])");
  ops.def("top_k", &top_k, arg("probs"), arg("k"), arg("renormalize") = true,
          "router top-k: probs [tokens, experts] -> (indices int32 [tokens, k], weights [tokens, "
          "k])");
  ops.def("top_k_margins", &top_k_margins, arg("probs"), arg("k"),
          "per token, the smallest gap between neighbours among its k + 1 largest probabilities");
  ops.def("expert_capacity", &expert_capacity, arg("capacity_factor"), arg("n_tokens"), arg("k"),
          arg("n_experts"), "tokens per expert: ceil(factor * tokens * k / experts)");
  ops.def("apply_capacity", &apply_capacity, arg("indices"), arg("n_experts"), arg("capacity"),
          "GShard dropping: indices int32 [tokens, k] -> (kept int32 [tokens, k], dropped)");
  ops.def("load_balancing_loss", &load_balancing_loss, arg("probs"), arg("indices"));
  ops.def("router_z_loss", &router_z_loss, arg("logits"));
  ops.def("swiglu", &swiglu, arg("gate"), arg("up"), "silu(gate) * up, elementwise");
  ops.def("gelu", &gelu, arg("x"), "exact (erf) GELU, elementwise -> a new array");
  ops.def("ffn", &ffn, arg("x"), arg("weights"), arg("activation") = "swiglu",
          "one expert or dense FFN; weights {'gate_proj.weight', 'up_proj.weight', "
          "'down_proj.weight'}");
  ops.def("moe", &moe, arg("x"), arg("weights"), arg("top_k"), arg("renormalize") = true,
          arg("capacity_factor") = 0.0, arg("activation") = "swiglu",
          "the MoE layer on x [tokens, d_model] -> its traced tensors by name (moe.*)");
  ops.def("gated_cross_attention", &gated_cross_attention, arg("x"), arg("vision_tokens"),
          arg("positions"), arg("image_position"), arg("weights"), arg("n_heads"),
          arg("n_kv_heads"), arg("head_dim"), arg("norm") = "rmsnorm", arg("activation") = "swiglu",
          arg("eps") = 1e-5,
          "Flamingo's gated cross-attention block -> its traced tensors by name (xattn.*)");
  ops.def("patchify", &patchify_image, arg("image"), arg("patch_size"),
          "image [C, S, S] -> patches [(S/P)^2, C*P*P]");
  ops.def(
      "greedy_token",
      [](const py::object& logits) { return greedy_token(logits_row(vocabulary_logits(logits))); },
      arg("logits"), "the argmax, the lowest id on ties");
  ops.def(
      "sample_token",
      [](const py::object& logits_in, double temperature, int64_t top_k, double top_p,
         uint64_t seed, int64_t position, int64_t request, int64_t draw) {
        const FloatArray logits = vocabulary_logits(logits_in);
        return sample_token(logits_row(logits), sampling_params(temperature, top_k, top_p, seed),
                            counter_word(position, "position"), counter_word(request, "request"),
                            counter_word(draw, "draw"));
      },
      arg("logits"), arg("temperature"), arg("top_k") = 0, arg("top_p") = 1.0, arg("seed") = 0,
      arg("position") = 0, arg("request") = 0, arg("draw") = 0,
      "the token ref/generation/sampling.h draws, with Philox counter {draw, position, request, "
      "0}");
  ops.def(
      "processed_distribution",
      [](const py::object& logits_in, double temperature, int64_t top_k, double top_p) {
        const FloatArray logits = vocabulary_logits(logits_in);
        if (!(temperature > 0.0)) {
          throw py::value_error("temperature must be > 0 for a distribution, got " +
                                std::to_string(temperature));
        }
        const std::vector<TokenProbability> kept = processed_distribution(
            logits_row(logits), sampling_params(temperature, top_k, top_p, 0));
        Int32Array tokens = new_int32_array({static_cast<int64_t>(kept.size())});
        py::array_t<double> probabilities(static_cast<py::ssize_t>(kept.size()));
        for (size_t i = 0; i < kept.size(); ++i) {
          tokens.mutable_at(i) = kept[i].token;
          probabilities.mutable_at(i) = kept[i].probability;
        }
        return std::make_tuple(tokens, probabilities);
      },
      arg("logits"), arg("temperature"), arg("top_k") = 0, arg("top_p") = 1.0,
      "steps 1-5 of ref/generation/sampling.h -> (kept tokens int32, their probabilities float64)");
  ops.def(
      "philox4x32_10",
      [](std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
        return philox4x32_10(counter, key);
      },
      arg("counter"), arg("key"), "Philox4x32-10 of four counter words and two key words");
  ops.def(
      "generation_uniform",
      [](uint64_t seed, int64_t draw, int64_t position, int64_t request, uint32_t stream) {
        if (stream > static_cast<uint32_t>(RandomStream::kDraftProposal)) {
          throw py::value_error("stream must be 0..3 (sampling, accept, residual, proposal), got " +
                                std::to_string(stream));
        }
        return generation_uniform(
            seed, counter_word(draw, "draw"), counter_word(position, "position"),
            counter_word(request, "request"), static_cast<RandomStream>(stream));
      },
      arg("seed"), arg("draw"), arg("position"), arg("request"), arg("stream") = 0,
      "the uniform number in [0, 1) of one draw of generation");
}

}  // namespace moeref::python
