// The builders of golden/shaped_op_cases.h, one per op: each makes its case at one seed from a
// validated shape, with its outputs from `kernels` and its decisions' margins on the reference's
// scores. Internal to golden/shaped_op_cases.cc.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "golden/op_cases.h"
#include "ref/io/config.h"
#include "ref/ops/kernels.h"

namespace moeref::golden::shaped {

// The validated shape of one request: every parameter of the op, defaults filled in.
class Shape {
 public:
  explicit Shape(nlohmann::json values) : values_(std::move(values)) {}
  int64_t count(const char* key) const { return values_.at(key).get<int64_t>(); }
  double real(const char* key) const { return values_.at(key).get<double>(); }
  Activation activation() const {
    return values_.at("activation") == "gelu" ? Activation::kGelu : Activation::kSwiGlu;
  }
  const nlohmann::json& values() const { return values_; }

 private:
  nlohmann::json values_;
};

struct Decision {
  std::string name;  // "indices row 3"
  double margin;
};

// One case at a seed: the case and its decisions.
struct Built {
  OpCase op_case;
  std::vector<Decision> decisions;
};

// "shape \"KEY\" of op OP WHAT".
std::invalid_argument shape_error(const std::string& op, const std::string& key,
                                  const std::string& what);

// Each throws std::invalid_argument (shape_error) for shapes the op cannot take together.
Built matmul(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);
Built rms_norm(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);
Built layer_norm(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);
Built rope(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);
Built softmax(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);
Built attention(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);
Built cross_attention(const Shape& s, const std::string& name, uint32_t seed,
                      const Kernels& kernels);
Built top_k(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);
Built expert_ffn(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);
Built moe(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);
Built sampling(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);
Built greedy(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels);

}  // namespace moeref::golden::shaped
