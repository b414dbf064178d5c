// How op cases are put together (golden/op_cases.h, golden/shaped_op_cases.h): the Philox stream
// their random inputs are drawn from, and a builder that collects a case's manifest, inputs and
// outputs.
//
// Element i (row-major) of random input tensor N of case C with seed S is
//   bits = Philox4x32-10(key = {fnv1a32(C), S},
//                        counter = {(i / 4) & 0xffffffff, i >> 34, fnv1a32(N), 0x4F504341 "OPCA"})
//          word i % 4
//   t    = 2 * uniform_from_bits(bits) - 1          in [-1, 1), exact in fp32
// and the builder makes it offset + scale * t, two correctly rounded fp32 operations. The named
// cases use S = 0.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "golden/op_cases.h"
#include "golden/tensor_kinds.h"
#include "ref/io/config.h"
#include "ref/model/weights.h"

namespace moeref::golden {

// t = 2u - 1 for elements 0..n-1 of input `tensor` of case `case_name` (the rule above).
std::vector<float> unit_stream(std::string_view case_name, std::string_view tensor, int64_t n,
                               uint32_t seed = 0);

std::vector<int64_t> to_int64(const std::vector<int32_t>& values);

// Collects one case: manifest, inputs (with how each was made, under "input_generation"), outputs
// and their kinds.
class CaseBuilder {
 public:
  CaseBuilder(const std::string& name, std::string op, const std::string& description,
              nlohmann::json parameters, uint32_t seed = 0);

  // Row r of the [rows, ...] tensor takes offsets[r] + scales[r] * t.
  std::vector<float> random_rows(const std::string& tensor, const std::vector<int64_t>& shape,
                                 const std::vector<float>& scales,
                                 const std::vector<float>& offsets);
  std::vector<float> random(const std::string& tensor, const std::vector<int64_t>& shape,
                            float scale, float offset = 0.0f);
  // t itself, unscaled and not yet an input: for inputs made from it (softmax of it, ...).
  std::vector<float> stream(const std::string& tensor, int64_t n) const;
  void input(TensorRecord record, const std::string& how_made);

  void output(TensorRecord record, ToleranceClass tolerance);
  void output(TensorRecord record, const TensorKind& kind);

  nlohmann::json& manifest() { return result_.manifest; }
  OpCase finish();

 private:
  std::string name_;
  std::string op_;
  uint32_t seed_;
  nlohmann::json generation_ = nlohmann::json::object();
  OpCase result_;
};

// Draws one expert's matrices as inputs named `prefix`{gate,up,down}_proj`suffix`: gate and up
// with scale 0.375, down with 0.25 (gate for SwiGLU only).
FeedForwardWeights random_ffn(CaseBuilder& c, const std::string& prefix, const std::string& suffix,
                              Activation activation, int64_t d_model, int64_t d_ff);

const char* activation_name(Activation activation);  // "swiglu", "gelu"

}  // namespace moeref::golden
