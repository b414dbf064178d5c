// Writing golden sets from their specs, and verifying committed ones: every set under a directory
// is regenerated from what its manifest records; its tensors must match the files bit for bit and
// every manifest field it computes (margins, routing figures, ...) must match the manifest, all
// but moeref_version and git_commit.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "golden/batching_case.h"
#include "golden/model_case.h"
#include "golden/shaped_op_cases.h"
#include "golden/speculative_case.h"

namespace moeref::golden {

// Builds the case and writes it atomically to `dir`.
void write_model_case(const ModelCaseSpec& spec, const std::filesystem::path& dir);
void write_batching_case(const BatchingCaseSpec& spec, const std::filesystem::path& dir);
void write_speculative_case(const SpeculativeCaseSpec& spec, const std::filesystem::path& dir);
// Builds the op case at the caller's shapes (golden/shaped_op_cases.h) and writes it atomically to
// `dir`; with resolved_at, each candidate seed is calibrated in a draft beside `dir` and refused
// while a decision is not resolved at that precision.
void write_shaped_op_case(const OpCaseRequest& request, const std::filesystem::path& dir);
// Writes every op case (golden/op_cases.h) under `dir`, one directory each, as a whole: the tree
// is built beside `dir` and replaces it in one step. `dir` must be new, an empty directory or an
// earlier tree of golden sets (GoldenTarget::kGoldenTree); anything else throws GoldenError.
void write_op_cases(const std::filesystem::path& dir);

struct VerifyResult {
  std::filesystem::path set;
  bool ok = false;
  std::string message;  // what matched, or the first difference: file, tensor, why
};

// Opens (integrity checks included) and regenerates every set under root, in sorted order.
std::vector<VerifyResult> verify_golden_tree(const std::filesystem::path& root);

}  // namespace moeref::golden
