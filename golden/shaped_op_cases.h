// Op cases at the caller's shapes (docs/golden-format.md, "Op cases at your shapes"): one op, its
// shape parameters and a seed give a case in the format of the named op cases (golden/op_cases.h),
// so the checker, `moeref golden --verify` and the reference's own run (golden/candidate_runner.h)
// work on it unchanged.
//
// Ops and their shape parameters (integers >= 1 unless said, at most 2^20; "= v" marks a default):
//   matmul           rows, in, out
//   rms_norm         rows, d
//   layer_norm       rows, d
//   rope             tokens, n_heads, head_dim (even), max_position = 4096, theta = 10000 (> 0)
//   softmax          rows, n
//   attention        new_tokens, n_heads, n_kv_heads (dividing n_heads), head_dim,
//                    cached_positions (>= 0)
//   cross_attention  queries, n_heads, n_kv_heads (dividing n_heads), head_dim, vision_tokens
//   top_k            tokens, n_experts, k (<= n_experts), renormalize = 1 (0 or 1)
//   expert_ffn       rows, d_model, d_ff, activation = swiglu (swiglu or gelu)
//   moe              tokens, d_model, n_experts, expert_d_ff, top_k (<= n_experts),
//                    capacity_factor = 0 (>= 0, 0 dropless), activation = swiglu,
//                    renormalize = 1
//   sampling         positions, vocab_size, temperature (> 0), top_k = 0 (>= 0), top_p = 1 (0..1]
//   greedy           rows, vocab_size
// Inputs are drawn from the op-case stream (golden/op_case_builder.h) keyed by the case name and
// the seed, at the scales of the named cases; rope's positions are floor(u * max_position) of the
// stream "positions"; top_k's probs are the softmax of 2 t per row; sampling draws position p with
// the seed, request 0, draw 0 (ref/generation/sampling.h).
//
// Decisions and their margins (golden/margins.h): top_k, each row's top-k gap of "probs"
// ("indices row r"); moe, of "moe.router_probs" ("moe.router_probs row r"); sampling, each draw's
// distance from the nearest boundary of its cumulative distribution ("tokens row p"); greedy, the
// gap between the two largest logits ("tokens row r"). The search tries seeds seed, seed + 1, ...
// (`tries` of them) until every decision's margin is above `margin`, and, with `resolved_at`, the
// caller's check accepts the case (golden/verify.h: every decision resolved at that precision on
// the case's own calibration, golden/resolution.h). Ops without decisions take the first seed.
//
// The manifest records the request under "generator" ({"shape": every parameter, defaults
// included, "seed": the seed found}) and the margins under "margins" ({"threshold", "decisions",
// "min", "tightest", and "resolved_at" when asked}); the case is rebuilt from them.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "golden/compare.h"
#include "golden/golden_set.h"
#include "golden/op_cases.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

struct OpCaseRequest {
  std::string op;
  nlohmann::json shape = nlohmann::json::object();  // parameter -> number (activation: a string)
  std::string name{};                               // empty: "<op>-<key><value>-..."
  uint32_t seed = 1234;
  double margin = 1e-3;
  std::optional<Precision> resolved_at{};
  int64_t tries = 1000;
};

// The ops a case can be generated for, in the order above.
std::vector<std::string> shaped_op_names();

// Says why a case whose margins are all above the threshold is still refused; empty to accept it.
using OpCaseCheck = std::function<std::string(const OpCase&)>;

// The search above. Throws std::invalid_argument naming the field for an unknown op, a missing,
// unknown, non-numeric or out-of-range shape parameter, a negative margin or tries below 1; and
// std::runtime_error naming the tightest decision when no seed of the tries passes.
OpCase build_shaped_op_case(const OpCaseRequest& request, const OpCaseCheck& check = {});

// Whether an op set's manifest was generated (has "generator") rather than named.
bool is_shaped_op_case(const nlohmann::json& manifest);

// Any op set rebuilt from its manifest: a generated one at its recorded seed (no search), a named
// one by name; outputs from `kernels`. Throws GoldenError naming the manifest when it is malformed.
OpCase rebuild_op_case(const GoldenSet& set, const Kernels& kernels = ref_kernels());

}  // namespace moeref::golden
