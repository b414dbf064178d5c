#include "python/op_weights.h"

#include "python/arrays.h"

namespace moeref::python {

Activation activation_from_name(const std::string& name) {
  if (name == "swiglu") return Activation::kSwiGlu;
  if (name == "gelu") return Activation::kGelu;
  throw py::value_error("activation must be \"swiglu\" or \"gelu\", got \"" + name + "\"");
}

NormKind norm_from_name(const std::string& name) {
  if (name == "rmsnorm") return NormKind::kRmsNorm;
  if (name == "layernorm") return NormKind::kLayerNorm;
  throw py::value_error("norm must be \"rmsnorm\" or \"layernorm\", got \"" + name + "\"");
}

OpWeights::OpWeights(py::dict weights, std::string argument)
    : weights_(std::move(weights)), argument_(std::move(argument)) {
  for (const auto& [key, value] : weights_) {
    if (!py::isinstance<py::str>(key)) {
      throw py::type_error(argument_ + " must be keyed by tensor names (str), got a key of type " +
                           py::str(py::type::handle_of(key).attr("__name__")).cast<std::string>());
    }
  }
}

std::string OpWeights::label(const std::string& name) const {
  return argument_ + "['" + name + "']";
}

Tensor OpWeights::tensor(const std::string& name, const std::vector<int64_t>& shape) {
  if (!weights_.contains(name)) throw py::key_error(label(name) + " is missing");
  return optional(name, shape);
}

Tensor OpWeights::optional(const std::string& name, const std::vector<int64_t>& shape) {
  if (!weights_.contains(name)) return {};
  used_.insert(name);
  return tensor_from_operand(weights_[py::str(name)], label(name), shape);
}

FeedForwardWeights OpWeights::feed_forward(const std::string& prefix, Activation activation,
                                           int64_t d_model) {
  FeedForwardWeights w;
  w.up_proj = tensor(prefix + "up_proj.weight", {kAnySize, d_model});
  const int64_t d_ff = w.up_proj.dim(0);
  require_at_least(d_ff, 1, "the rows of " + label(prefix + "up_proj.weight"));
  if (activation == Activation::kSwiGlu) {
    w.gate_proj = tensor(prefix + "gate_proj.weight", {d_ff, d_model});
  }
  w.down_proj = tensor(prefix + "down_proj.weight", {d_model, d_ff});
  return w;
}

std::pair<Tensor, Tensor> OpWeights::norm(const std::string& prefix, NormKind kind, int64_t d) {
  Tensor weight = tensor(prefix + ".weight", {d});
  Tensor bias = kind == NormKind::kLayerNorm ? tensor(prefix + ".bias", {d}) : Tensor();
  return {std::move(weight), std::move(bias)};
}

CrossAttentionWeights OpWeights::cross_attention(NormKind norm_kind, Activation activation,
                                                 int64_t d_model, int64_t q_dim, int64_t kv_dim,
                                                 int64_t head_dim) {
  CrossAttentionWeights w;
  std::tie(w.attn_norm, w.attn_norm_bias) = norm("attn_norm", norm_kind, d_model);
  w.q_proj = tensor("q_proj.weight", {q_dim, d_model});
  w.k_proj = tensor("k_proj.weight", {kv_dim, d_model});
  w.v_proj = tensor("v_proj.weight", {kv_dim, d_model});
  w.o_proj = tensor("o_proj.weight", {d_model, q_dim});
  w.q_norm = optional("q_norm.weight", {head_dim});
  w.k_norm = optional("k_norm.weight", {head_dim});
  if (w.q_norm.empty() != w.k_norm.empty()) {
    throw py::value_error(argument_ +
                          ": 'q_norm.weight' and 'k_norm.weight' come together or not at all");
  }
  w.attn_gate = tensor("attn_gate", {1});
  std::tie(w.ffn_norm, w.ffn_norm_bias) = norm("ffn_norm", norm_kind, d_model);
  w.ffn = feed_forward("ffn.", activation, d_model);
  w.ffn_gate = tensor("ffn_gate", {1});
  return w;
}

void OpWeights::require_rows(const Tensor& tensor, int64_t rows, const std::string& name) const {
  if (tensor.dim(0) != rows) {
    throw py::value_error(label(name) + " has " + std::to_string(tensor.dim(0)) +
                          " rows, the other experts " + std::to_string(rows));
  }
}

void OpWeights::require_all_used() const {
  for (const auto& [key, value] : weights_) {
    const std::string name = key.cast<std::string>();
    if (!used_.contains(name)) {
      throw py::value_error(label(name) + " is not a weight of this op");
    }
  }
}

}  // namespace moeref::python
