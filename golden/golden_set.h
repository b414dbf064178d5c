// A golden set on disk: one directory per case (docs/golden-format.md).
//
//   manifest.json        format_version, kind ("model", "op", "speculative" or
//                        "batching"), case, description,
//   moeref version
//                        and commit, what produced it (config and inputs, or the op and its
//                        parameters), margins, the sha256 of every file, and every expected
//                        tensor in execution order: name, file, dtype, shape, sha256, op,
//                        tolerance_class
//   weights.safetensors  the model's weights (model cases)
//   inputs.safetensors   the inputs (prompt tokens, or an op's operands)
//   trace.safetensors    the expected tensors
//
// Opening a set checks the format version, every file's sha256 and every tensor entry against the
// file that holds it; each problem is a GoldenError naming the directory, the file or tensor and
// what is wrong. Writing never leaves a partial set: the files are written into a hidden temporary
// directory beside the target, which then replaces the target in one step (ref/io/atomic_file.h,
// StagedDirectory). Writing never destroys what is not a golden set: the target must be new, an
// empty directory, or an earlier golden set (GoldenTarget).
//
// Opening reads nothing outside the set and nothing unbounded: the manifest's "files" may name
// only the set's own safetensors files, every file read must be a regular file in the directory
// (no link, device or FIFO), and each file's size must be the one its header declares before it
// is hashed.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "golden/tensor_kinds.h"
#include "ref/io/safetensors.h"

namespace moeref::golden {

constexpr int kFormatVersion = 1;

class GoldenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ExpectedTensor {
  std::string name;
  std::string op;
  ToleranceClass tolerance = ToleranceClass::kActivation;
};

// kSkipDigests reads a set without checking sha256s: for finding which tensor of a changed file
// differs (golden/verify.h), never for trusting a set.
enum class Integrity { kCheckDigests, kSkipDigests };

class GoldenSet {
 public:
  static GoldenSet open(const std::filesystem::path& dir,
                        Integrity integrity = Integrity::kCheckDigests);

  const std::filesystem::path& dir() const { return dir_; }
  const nlohmann::json& manifest() const { return manifest_; }
  std::string name() const { return manifest_.at("case").get<std::string>(); }
  std::string kind() const { return manifest_.at("kind").get<std::string>(); }

  // The tensors a candidate is checked against, in execution order.
  const std::vector<ExpectedTensor>& expected() const { return expected_; }
  bool has_expected(const std::string& name) const { return trace_.contains(name); }
  // Throws GoldenError naming the set and the tensor if it has none of that name.
  const TensorRecord& expected_tensor(const std::string& name) const;
  const ExpectedTensor& expected_entry(const std::string& name) const;

  const SafetensorsFile& inputs() const { return inputs_; }
  const std::optional<SafetensorsFile>& weights() const { return weights_; }
  const SafetensorsFile& trace() const { return trace_; }

 private:
  std::filesystem::path dir_;
  nlohmann::json manifest_;
  std::vector<ExpectedTensor> expected_;
  std::map<std::string, size_t> expected_index_;
  std::optional<SafetensorsFile> weights_;
  SafetensorsFile inputs_;
  SafetensorsFile trace_;
};

// What a directory holds, for deciding whether golden sets may be written there.
enum class GoldenTarget {
  kAbsent,          // nothing there
  kEmptyDirectory,  // a directory with nothing in it
  kGoldenSet,       // a golden set's manifest.json and only the files its "files" lists
  kGoldenTree,      // one or more golden sets (directories) and nothing else: `golden --ops`
  kOther,           // a file, or a directory holding anything else
};
GoldenTarget classify_golden_target(const std::filesystem::path& dir);

// Writes `dir` from a manifest without "files" and "tensors", which this adds. `expected` lists
// the trace records' kinds, in the same order. Empty weights write no weights file. `dir` must be
// kAbsent, kEmptyDirectory or kGoldenSet (which is replaced); anything else throws GoldenError
// naming it, untouched.
void write_golden_set(const std::filesystem::path& dir, nlohmann::json manifest,
                      const std::vector<TensorRecord>& weights,
                      const std::vector<TensorRecord>& inputs,
                      const std::vector<TensorRecord>& trace,
                      const std::vector<ExpectedTensor>& expected);

// Every directory under `root` (itself included) that holds a manifest.json, sorted.
std::vector<std::filesystem::path> find_golden_sets(const std::filesystem::path& root);

}  // namespace moeref::golden
