// The builders of the op cases, one per op: each makes its case at one seed from a validated
// shape, with its outputs from `kernels` and its decisions' margins on the reference's scores.
// golden/shaped_op_cases.cc calls them at the caller's shapes, golden/op_cases.cc at the named
// cases' fixed shapes with seed 0; rope, moe and sampling also take what only named cases set
// (explicit positions and a scaling, biased inputs, a sampling seed of their own).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "golden/op_cases.h"
#include "ref/generation/sampling.h"
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

// The smallest margin of `decisions`; infinite when there are none.
double least_margin(const std::vector<Decision>& decisions);

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

// RoPE of random x [tokens, n_heads, head_dim] at `positions`, tokens = positions.size(). The
// parameters are tokens, n_heads, head_dim, theta and positions, with `extra_parameters` added and,
// for a scaling kind, "rope_scaling" as a config spells it.
struct RopeSpec {
  int64_t n_heads = 0;
  int64_t head_dim = 0;
  double theta = 10000.0;
  RopeScaling scaling = {};
  std::vector<int32_t> positions;
  std::string positions_how;  // the manifest's "input_generation" entry for "positions"
  std::string description;
  nlohmann::json extra_parameters = nlohmann::json::object();
};
Built rope_case(const RopeSpec& spec, const std::string& name, uint32_t seed,
                const Kernels& kernels);

// The MoE layer of `config` (d_model, n_experts, expert_d_ff, top_k, ffn_activation,
// router_renormalize, capacity_factor) over random x [tokens, d_model] + x_offset. The router
// [n_experts, d_model] is 0.25 t, or with `router_row_offsets` row e is router_row_offsets[e] +
// 0.25 t (recorded per row).
struct MoeSpec {
  ModelConfig config;
  int64_t tokens = 0;
  std::string description;
  float x_offset = 0.0f;
  std::optional<std::vector<float>> router_row_offsets{};
};
Built moe_case(const MoeSpec& spec, const std::string& name, uint32_t seed, const Kernels& kernels);

// Temperature, top-k, top-p and the Philox draw of `params` (its own seed) on random logits
// [positions, vocab] drawn at case seed `seed`.
Built sampling_case(const SamplingParams& params, int64_t positions, int64_t vocab,
                    const std::string& name, uint32_t seed);

}  // namespace moeref::golden::shaped
