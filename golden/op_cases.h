// Op-level golden cases: one op, small inputs, expected outputs (docs/golden-format.md, "Op
// cases"), including the shapes and routings backends get wrong: an expert chosen by many tokens,
// by none, all tokens on one expert, a single token, sequence lengths that are not multiples of
// 8/16/32, head_dim from 8 to 128, large logits.
//
// Every case is a pure function of its name: inputs come from Philox streams named after the case,
// outputs from the ref ops. Each manifest records the op and its parameters under "op" and
// "parameters"; its expected tensors are the op's outputs.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "golden/golden_set.h"
#include "ref/io/safetensors.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

struct OpCase {
  nlohmann::json manifest;  // format_version, kind "op", case, description, op, parameters, ...
  std::vector<TensorRecord> inputs;
  std::vector<TensorRecord> outputs;     // in the order the op produces them
  std::vector<ExpectedTensor> expected;  // one per output
};

// The names of every op case, in a fixed order.
std::vector<std::string> op_case_names();

// Throws std::invalid_argument naming the case if there is none of that name. With another kernel
// set than the reference's, the outputs are that set's (a candidate for the checker: the simd
// backend's test runs every committed op case so); inputs and manifest are the same.
OpCase build_op_case(const std::string& name, const Kernels& kernels = ref_kernels());

}  // namespace moeref::golden
