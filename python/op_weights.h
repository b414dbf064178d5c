// The weights of a layer-sized op (moeref.ops.ffn, moe, gated_cross_attention), given as a dict
// of float32 ndarrays under the names of ref/model/weights.h below the layer ("router.weight",
// "experts.0.up_proj.weight", "q_proj.weight", ...). Each is checked as an operand
// (python/arrays.h) under the name "weights['<name>']" and copied into the op's weight structs;
// a missing name raises KeyError, a name the op does not read ValueError.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "ref/io/config.h"
#include "ref/model/weights.h"
#include "ref/tensor.h"

namespace moeref::python {

// "swiglu" or "gelu", "rmsnorm" or "layernorm", as in a config; anything else raises ValueError.
Activation activation_from_name(const std::string& name);
NormKind norm_from_name(const std::string& name);

class OpWeights {
 public:
  OpWeights(pybind11::dict weights, std::string argument);

  // kAnySize (python/arrays.h) leaves a dimension free.
  Tensor tensor(const std::string& name, const std::vector<int64_t>& shape);
  // Empty when the dict has no such name.
  Tensor optional(const std::string& name, const std::vector<int64_t>& shape);
  // "<prefix>gate_proj.weight" (swiglu only), "<prefix>up_proj.weight" [d_ff, d_model] and
  // "<prefix>down_proj.weight" [d_model, d_ff].
  FeedForwardWeights feed_forward(const std::string& prefix, Activation activation,
                                  int64_t d_model);
  // The block of ref/model/cross_attention.h, under the names of layers.L.xattn.
  CrossAttentionWeights cross_attention(NormKind norm, Activation activation, int64_t d_model,
                                        int64_t q_dim, int64_t kv_dim, int64_t head_dim);
  // Raises ValueError naming the tensor unless it has `rows` rows.
  void require_rows(const Tensor& tensor, int64_t rows, const std::string& name) const;
  // Raises ValueError naming a weight the op did not read.
  void require_all_used() const;

 private:
  std::string label(const std::string& name) const;
  std::pair<Tensor, Tensor> norm(const std::string& prefix, NormKind kind, int64_t d);

  pybind11::dict weights_;
  std::string argument_;
  std::set<std::string> used_;
};

}  // namespace moeref::python
