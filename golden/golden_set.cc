#include "golden/golden_set.h"

#include <fstream>
#include <iterator>
#include <system_error>

#include "golden/sha256.h"
#include "ref/io/atomic_file.h"
#include "ref/io/json_text.h"

namespace moeref::golden {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kWeightsFile = "weights.safetensors";
constexpr const char* kInputsFile = "inputs.safetensors";
constexpr const char* kTraceFile = "trace.safetensors";

[[noreturn]] void fail(const fs::path& where, const std::string& problem) {
  throw GoldenError(where.string() + ": " + problem);
}

// A file of the set must be a regular file in the set's directory itself: not a link, device or
// FIFO (/dev/zero would be read forever), nothing reached through another directory.
void check_regular_file(const fs::path& path, const std::string& listed_as) {
  std::error_code error;
  const fs::file_status status = fs::symlink_status(path, error);
  if (error || !fs::exists(status)) fail(path, "missing (" + listed_as + ")");
  if (!fs::is_regular_file(status)) {
    fail(path, "not a regular file (" + listed_as + "); a golden set holds only its own files");
  }
}

json read_manifest(const fs::path& path) {
  std::error_code error;
  if (!fs::exists(fs::symlink_status(path, error))) {
    fail(path, "cannot open (is this a golden set directory?)");
  }
  check_regular_file(path, "the set's manifest");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open (is this a golden set directory?)");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) fail(path, "cannot read");
  try {
    return parse_json_text(text);
  } catch (const JsonTextError& e) {
    fail(path, e.what());
  }
}

const json& require(const json& object, const char* key, const fs::path& where) {
  if (!object.is_object() || !object.contains(key))
    fail(where, "key \"" + std::string(key) + "\" is missing");
  return object.at(key);
}

std::string require_string(const json& object, const char* key, const fs::path& where) {
  const json& value = require(object, key, where);
  if (!value.is_string()) fail(where, "key \"" + std::string(key) + "\" must be a string");
  return value.get<std::string>();
}

// "files" names exactly the set's safetensors files (the weights only for sets that have them),
// so no entry reaches outside the directory; each is hashed only once its own header has been
// checked against its size, so the bytes hashed are the bytes the header declares.
void check_file_digests(const fs::path& dir, const json& files, const fs::path& manifest_path) {
  if (!files.is_object()) fail(manifest_path, "key \"files\" must be an object");
  for (const char* required : {kInputsFile, kTraceFile}) {
    if (!files.contains(required)) {
      fail(manifest_path, "key \"files\" does not list " + std::string(required));
    }
  }
  for (const auto& [file, digest] : files.items()) {
    if (file != kWeightsFile && file != kInputsFile && file != kTraceFile) {
      fail(manifest_path, "key \"files\" lists \"" + file + "\", which is not one of " +
                              kWeightsFile + ", " + kInputsFile + " or " + kTraceFile);
    }
    const fs::path path = dir / file;
    check_regular_file(path, "listed in manifest.json");
    try {
      SafetensorsIndex::open(path);
    } catch (const SafetensorsError& e) {
      throw GoldenError(e.what());
    }
    if (!digest.is_string() || sha256_file_hex(path) != digest.get<std::string>()) {
      fail(path, "sha256 does not match manifest.json: the file was changed or corrupted");
    }
  }
}

}  // namespace

GoldenSet GoldenSet::open(const fs::path& dir, Integrity integrity) {
  GoldenSet set;
  set.dir_ = dir;
  const fs::path manifest_path = dir / "manifest.json";
  set.manifest_ = read_manifest(manifest_path);
  const json& m = set.manifest_;
  if (!m.is_object()) fail(manifest_path, "expected a JSON object");
  const json& version = require(m, "format_version", manifest_path);
  if (version != kFormatVersion) {
    fail(manifest_path, "unknown format_version " + version.dump() + " (this moeref reads " +
                            std::to_string(kFormatVersion) + ")");
  }
  const std::string kind = require_string(m, "kind", manifest_path);
  if (kind != "model" && kind != "op" && kind != "speculative" && kind != "batching") {
    fail(manifest_path, "unknown kind \"" + kind + "\"");
  }
  require_string(m, "case", manifest_path);

  const json& files = require(m, "files", manifest_path);
  const bool check = integrity == Integrity::kCheckDigests;
  if (check) check_file_digests(dir, files, manifest_path);
  if (!check && !files.is_object()) fail(manifest_path, "key \"files\" must be an object");
  if (files.contains(kWeightsFile)) check_regular_file(dir / kWeightsFile, "a file of the set");
  check_regular_file(dir / kInputsFile, "a file of the set");
  check_regular_file(dir / kTraceFile, "a file of the set");
  try {
    if (files.contains(kWeightsFile)) set.weights_ = SafetensorsFile::read(dir / kWeightsFile);
    set.inputs_ = SafetensorsFile::read(dir / kInputsFile);
    set.trace_ = SafetensorsFile::read(dir / kTraceFile);
  } catch (const SafetensorsError& e) {
    throw GoldenError(e.what());
  }

  const json& tensors = require(m, "tensors", manifest_path);
  if (!tensors.is_array()) fail(manifest_path, "key \"tensors\" must be an array");
  for (const json& entry : tensors) {
    const std::string name = require_string(entry, "name", manifest_path);
    const fs::path where = manifest_path.string() + ": tensor \"" + name + "\"";
    if (set.expected_index_.contains(name)) fail(where, "listed twice");
    if (!set.trace_.contains(name)) fail(where, "not in " + std::string(kTraceFile));
    const TensorRecord& record = set.trace_.at(name);
    if (require_string(entry, "dtype", where) != dtype_name(record.dtype) ||
        require(entry, "shape", where) != json(record.shape)) {
      fail(where, "dtype or shape differs from " + std::string(kTraceFile));
    }
    if (check && require_string(entry, "sha256", where) != sha256_hex(record.bytes)) {
      fail(where, "sha256 does not match the tensor's bytes");
    }
    ExpectedTensor expected{name, require_string(entry, "op", where), ToleranceClass::kExact};
    try {
      expected.tolerance =
          tolerance_class_from_name(require_string(entry, "tolerance_class", where));
    } catch (const std::invalid_argument& e) {
      fail(where, e.what());
    }
    set.expected_index_[name] = set.expected_.size();
    set.expected_.push_back(std::move(expected));
  }
  if (set.expected_.size() != set.trace_.tensors().size()) {
    fail(manifest_path, "\"tensors\" lists " + std::to_string(set.expected_.size()) + " of the " +
                            std::to_string(set.trace_.tensors().size()) + " tensors in " +
                            kTraceFile);
  }
  return set;
}

const TensorRecord& GoldenSet::expected_tensor(const std::string& name) const {
  if (!trace_.contains(name)) fail(dir_, "no expected tensor named \"" + name + "\"");
  return trace_.at(name);
}

const ExpectedTensor& GoldenSet::expected_entry(const std::string& name) const {
  const auto found = expected_index_.find(name);
  if (found == expected_index_.end()) fail(dir_, "no expected tensor named \"" + name + "\"");
  return expected_[found->second];
}

namespace {

bool is_golden_set(const fs::path& dir) {
  std::error_code error;
  if (!fs::is_regular_file(dir / "manifest.json", error)) return false;
  json manifest;
  try {
    manifest = read_manifest(dir / "manifest.json");
  } catch (const GoldenError&) {
    return false;
  }
  if (!manifest.is_object() || !manifest.contains("format_version") || !manifest.contains("kind") ||
      !manifest.contains("files") || !manifest.at("files").is_object()) {
    return false;
  }
  const json& files = manifest.at("files");
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name != "manifest.json" && !files.contains(name)) return false;
  }
  return !error;
}

}  // namespace

GoldenTarget classify_golden_target(const fs::path& dir) {
  std::error_code error;
  const fs::file_status status = fs::symlink_status(dir, error);
  if (status.type() == fs::file_type::not_found) return GoldenTarget::kAbsent;
  if (status.type() != fs::file_type::directory) return GoldenTarget::kOther;
  if (fs::is_empty(dir, error) && !error) return GoldenTarget::kEmptyDirectory;
  if (is_golden_set(dir)) return GoldenTarget::kGoldenSet;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    if (!it->is_directory() || it->is_symlink() || !is_golden_set(it->path())) {
      return GoldenTarget::kOther;
    }
  }
  return error ? GoldenTarget::kOther : GoldenTarget::kGoldenTree;
}

void write_golden_set(const fs::path& dir, json manifest, const std::vector<TensorRecord>& weights,
                      const std::vector<TensorRecord>& inputs,
                      const std::vector<TensorRecord>& trace,
                      const std::vector<ExpectedTensor>& expected) {
  if (expected.size() != trace.size()) {
    throw GoldenError(dir.string() + ": " + std::to_string(trace.size()) + " traced tensors but " +
                      std::to_string(expected.size()) + " kinds");
  }
  const GoldenTarget target = classify_golden_target(dir);
  if (target == GoldenTarget::kGoldenTree || target == GoldenTarget::kOther) {
    throw GoldenError(dir.string() +
                      ": not a golden set, nor an empty directory; refusing to replace it");
  }
  try {
    StagedDirectory staging(dir);
    const fs::path& staged = staging.path();
    json files = json::object();
    if (!weights.empty()) {
      write_safetensors(staged / kWeightsFile, weights);
      files[kWeightsFile] = sha256_file_hex(staged / kWeightsFile);
    }
    write_safetensors(staged / kInputsFile, inputs);
    files[kInputsFile] = sha256_file_hex(staged / kInputsFile);
    write_safetensors(staged / kTraceFile, trace);
    files[kTraceFile] = sha256_file_hex(staged / kTraceFile);
    json tensors = json::array();
    for (size_t i = 0; i < trace.size(); ++i) {
      tensors.push_back({{"name", trace[i].name},
                         {"file", kTraceFile},
                         {"dtype", dtype_name(trace[i].dtype)},
                         {"shape", trace[i].shape},
                         {"sha256", sha256_hex(trace[i].bytes)},
                         {"op", expected[i].op},
                         {"tolerance_class", tolerance_class_name(expected[i].tolerance)}});
    }
    manifest["files"] = files;
    manifest["tensors"] = tensors;
    write_file_atomically(staged / "manifest.json", manifest.dump(1) + "\n");
    staging.publish();
  } catch (const std::exception& e) {
    throw GoldenError(dir.string() + ": cannot write the golden set: " + e.what());
  }
}

std::vector<fs::path> find_golden_sets(const fs::path& root) {
  if (!fs::is_directory(root)) throw GoldenError(root.string() + ": not a directory");
  std::vector<fs::path> sets;
  if (fs::exists(root / "manifest.json")) sets.push_back(root);
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    if (!it->is_directory()) continue;
    if (it->path().filename().string().front() == '.') {
      it.disable_recursion_pending();  // staging directories of an interrupted write
    } else if (fs::exists(it->path() / "manifest.json")) {
      sets.push_back(it->path());
    }
  }
  std::sort(sets.begin(), sets.end());
  return sets;
}

}  // namespace moeref::golden
