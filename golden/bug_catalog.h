// A catalog of realistic backend bugs, each one a backend that gets exactly one thing wrong, run
// on the golden sets, so that the checker's power to catch them can be measured
// (golden/detection_matrix.h, `moeref bugs`, docs/checking-a-backend.md).
//
// A bug is planted, in order of preference: as a kernel set that wraps an honest base and gets one
// op wrong (golden/kernel_bugs.h); as a mutation of the weights the backend loads
// (golden/weight_bugs.h); or as a run that gets a step around the model wrong: picking tokens,
// placing the image, speculative decoding's residual, the engine's preemption
// (golden/run_bugs.h, through golden/mutated_runner.h). The honest parts of every candidate
// compute like the base kernels at the precision, and the buggy op rounds its outputs as the base
// does, so that a bug is measured at a precision exactly as a backend at that precision would
// show it.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "golden/compare.h"
#include "golden/golden_set.h"
#include "ref/io/config.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {

// The candidate of a backend with a bug whose honest parts compute with `base` and whose buggy op
// rounds its outputs to `precision`'s storage (golden/emulated_kernels.h).
using BugRun = std::function<std::optional<Candidate>(const GoldenSet& set, const Kernels& base,
                                                      Precision precision)>;

// The sets a bug can arise in: sets of these kinds ("model", "batching", "speculative") with a
// model that `model` accepts (any model when null), and op cases of these ops (their manifest's
// "op") whose "parameters" `op_parameters` accepts (any when null).
struct Reach {
  std::set<std::string> kinds;
  std::function<bool(const ModelConfig&)> model;
  std::set<std::string> ops;
  std::function<bool(const nlohmann::json&)> op_parameters;

  bool covers(const GoldenSet& set) const;
};

struct Bug {
  std::string name;         // stable, kebab-case: "rope-adjacent-pairs"
  std::string description;  // what the backend got wrong, one line
  // The traced name (without "<call>/" prefix or layer) where it first shows, e.g. "attn.q",
  // "moe.topk_indices", "greedy_tokens".
  std::string own_tensor;
  // The outputs of the op it breaks, in the op cases it reaches that name their outputs by role
  // ("out"; "context" and "probs"; "indices"); empty when it reaches none (moe and gated
  // cross-attention cases use the traced names, and own_tensor applies there).
  std::vector<std::string> own_op_tensors;
  // Traced names (suffixes, as own_tensor) where the broken op also runs, and so may show first,
  // in a vision set: the tower and the gated cross-attention blocks call the same norm, SwiGLU and
  // residual add as the decoder layers, before them.
  std::vector<std::string> also_own;
  Reach reach;  // the sets it can arise in; run_on and run give std::nullopt elsewhere
  // The candidate of a backend with this bug on `base` kernels (the exact reference's, with
  // Precision::kFP32, for the bug alone); std::nullopt when the bug cannot arise in that set (a
  // vision bug on a text-only set, a capacity bug on a dropless set).
  BugRun run_on;
  // The candidate of a backend with this bug computing at `precision`: the honest base is
  // emulated_kernels(precision) with the bug applied on top.
  std::function<std::optional<Candidate>(const GoldenSet& set, Precision precision)> run;
};

// A Bug that runs `candidate` on the sets `reach` covers, and is std::nullopt elsewhere.
Bug make_bug(std::string name, std::string description, std::string own_tensor,
             std::vector<std::string> own_op_tensors, Reach reach,
             std::function<Candidate(const GoldenSet&, const Kernels&, Precision)> candidate);

// Every bug, in a fixed order; names are unique.
const std::vector<Bug>& bug_catalog();

// Throws std::invalid_argument naming the bug if there is none of that name.
const Bug& find_bug(const std::string& name);

// The bug alone: on the exact reference kernels, no precision emulated.
std::optional<Candidate> run_exact(const Bug& bug, const GoldenSet& set);

// Whether a tensor of `set` (its name as in the set) is the bug's own: its traced name ends with
// own_tensor, or, in an op case, is one of own_op_tensors.
bool is_own_tensor(const Bug& bug, const GoldenSet& set, const std::string& name);

// The models of a set: a model or batching case's config, a speculative case's target and draft;
// none for op cases.
std::vector<ModelConfig> models_of(const GoldenSet& set);

}  // namespace moeref::golden
