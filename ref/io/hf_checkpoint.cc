#include "ref/io/hf_checkpoint.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "ref/io/half_float.h"
#include "ref/io/json_text.h"

namespace moeref {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void fail(const fs::path& file, const std::string& problem) {
  throw SafetensorsError(file.string() + ": " + problem);
}

std::string json_quoted(const std::string& text) { return json(text).dump(); }

json read_index(const fs::path& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) fail(index_path, "cannot open for reading");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) fail(index_path, "cannot read");
  // nlohmann keeps the last of repeated keys; a tensor mapped twice is refused instead.
  std::set<std::string> tensor_names;
  bool in_weight_map = false;
  const json::parser_callback_t reject_repeated = [&](int depth, json::parse_event_t event,
                                                      json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      in_weight_map = parsed == "weight_map";
    } else if (event == json::parse_event_t::key && depth == 2 && in_weight_map) {
      const std::string name = parsed.get<std::string>();
      if (!tensor_names.insert(name).second) {
        fail(index_path,
             "key \"weight_map\": tensor " + json_quoted(name) + " appears more than once");
      }
    }
    return true;
  };
  try {
    return parse_json_text(text, reject_repeated);
  } catch (const JsonTextError& e) {
    fail(index_path, e.what());
  }
}

// The shard's path, checked to be a regular file inside `dir`.
fs::path shard_path(const fs::path& dir, const fs::path& index_path, const std::string& tensor,
                    const std::string& shard) {
  const std::string where =
      "key \"weight_map\": tensor " + json_quoted(tensor) + ": shard " + json_quoted(shard);
  const fs::path relative(shard);
  if (shard.empty() || relative.is_absolute() || relative.has_root_name()) {
    fail(index_path, where + " is not a file name relative to the checkpoint directory");
  }
  for (const fs::path& part : relative.lexically_normal()) {
    if (part == "..") fail(index_path, where + " leaves the checkpoint directory");
  }
  const fs::path path = dir / relative;
  std::error_code error;
  const fs::path real_dir = fs::canonical(dir, error);
  const fs::path real_path = error ? fs::path() : fs::canonical(path, error);
  if (error) fail(index_path, where + " cannot be read: " + error.message());
  const fs::path inside = real_path.lexically_relative(real_dir);
  if (inside.empty() || *inside.begin() == "..") {
    fail(index_path,
         where + " leaves the checkpoint directory (it resolves to " + real_path.string() + ")");
  }
  if (!fs::is_regular_file(real_path, error)) fail(index_path, where + " is not a regular file");
  return path;
}

}  // namespace

HfCheckpoint HfCheckpoint::open(const fs::path& dir) {
  const fs::path single = dir / kHfWeightsFile;
  const fs::path index_path = dir / kHfIndexFile;
  std::error_code error;
  const bool has_index = fs::exists(index_path, error);
  HfCheckpoint checkpoint;
  if (!has_index) {
    if (!fs::exists(single, error)) {
      fail(dir, std::string("holds neither ") + kHfWeightsFile + " nor " + kHfIndexFile);
    }
    checkpoint.source_ = single;
    checkpoint.shards_.push_back(SafetensorsIndex::open(single));
    const std::vector<TensorEntry>& entries = checkpoint.shards_[0].entries();
    for (size_t e = 0; e < entries.size(); ++e) {
      checkpoint.tensors_.emplace(entries[e].name, Location{0, e});
    }
    return checkpoint;
  }
  if (fs::exists(single, error)) {
    fail(dir, std::string("holds both ") + kHfWeightsFile + " and " + kHfIndexFile +
                  ": which of them is the checkpoint is ambiguous; remove the other");
  }
  checkpoint.source_ = index_path;
  const json index = read_index(index_path);
  if (!index.is_object()) fail(index_path, "expected a JSON object (" + index.dump() + ")");
  for (const auto& [key, value] : index.items()) {
    if (key != "weight_map" && key != "metadata") {
      fail(index_path, "key " + json_quoted(key) +
                           ": unknown key (an index holds \"weight_map\" and " + "\"metadata\")");
    }
  }
  if (index.contains("metadata") && !index.at("metadata").is_object()) {
    fail(index_path, "key \"metadata\": expected an object (" + index.at("metadata").dump() + ")");
  }
  if (!index.contains("weight_map")) fail(index_path, "key \"weight_map\": missing");
  const json& weight_map = index.at("weight_map");
  if (!weight_map.is_object() || weight_map.empty()) {
    fail(index_path,
         "key \"weight_map\": expected an object of tensor -> shard (" + weight_map.dump() + ")");
  }
  std::map<std::string, std::string> shard_of;  // tensor -> shard name as the index writes it
  std::map<std::string, fs::path> shard_files;  // shard name -> its checked path
  for (const auto& [tensor, shard] : weight_map.items()) {
    if (!shard.is_string()) {
      fail(index_path, "key \"weight_map\": tensor " + json_quoted(tensor) +
                           ": expected a shard file name (" + shard.dump() + ")");
    }
    const std::string name = shard.get<std::string>();
    shard_of.emplace(tensor, name);
    if (!shard_files.contains(name)) {
      shard_files.emplace(name, shard_path(dir, index_path, tensor, name));
    }
  }
  std::map<std::string, size_t> shard_number;
  for (const auto& [name, path] : shard_files) {
    shard_number.emplace(name, checkpoint.shards_.size());
    checkpoint.shards_.push_back(SafetensorsIndex::open(path));
  }
  for (const auto& [name, number] : shard_number) {
    const std::vector<TensorEntry>& entries = checkpoint.shards_[number].entries();
    for (size_t e = 0; e < entries.size(); ++e) {
      const std::string& tensor = entries[e].name;
      const auto mapped = shard_of.find(tensor);
      if (mapped == shard_of.end()) {
        fail(shard_files.at(name),
             "holds tensor " + json_quoted(tensor) + ", which " + kHfIndexFile + " does not list");
      }
      if (mapped->second != name) {
        fail(shard_files.at(name), "holds tensor " + json_quoted(tensor) + ", which " +
                                       kHfIndexFile + " maps to shard " +
                                       json_quoted(mapped->second));
      }
      checkpoint.tensors_.emplace(tensor, Location{number, e});
    }
  }
  for (const auto& [tensor, shard] : shard_of) {
    if (!checkpoint.tensors_.contains(tensor)) {
      fail(index_path, "key \"weight_map\": tensor " + json_quoted(tensor) + ": shard " +
                           json_quoted(shard) + " holds no tensor of that name");
    }
  }
  return checkpoint;
}

std::vector<std::string> HfCheckpoint::names() const {
  std::vector<std::string> names;
  for (const auto& [name, location] : tensors_) names.push_back(name);
  return names;
}

const TensorEntry* HfCheckpoint::find(const std::string& name) const {
  const auto found = tensors_.find(name);
  if (found == tensors_.end()) return nullptr;
  return &shards_[found->second.shard].entries()[found->second.entry];
}

const fs::path& HfCheckpoint::file_of(const std::string& name) const {
  return shards_[tensors_.at(name).shard].path();
}

void HfCheckpoint::read_f32(const std::string& name, uint64_t first, std::span<float> out) {
  const Location& location = tensors_.at(name);
  SafetensorsIndex& shard = shards_[location.shard];
  const TensorEntry& entry = shard.entries()[location.entry];
  switch (entry.dtype) {
    case DType::kF32:
      shard.read_part_into(entry, first * sizeof(float), std::as_writable_bytes(out));
      return;
    case DType::kF16:
    case DType::kBF16: {
      std::vector<uint16_t> bits(out.size());
      shard.read_part_into(entry, first * sizeof(uint16_t),
                           std::as_writable_bytes(std::span<uint16_t>(bits)));
      const bool f16 = entry.dtype == DType::kF16;
      std::transform(bits.begin(), bits.end(), out.begin(),
                     [f16](uint16_t b) { return f16 ? f16_to_f32(b) : bf16_to_f32(b); });
      return;
    }
    default:
      fail(shard.path(), "tensor " + json_quoted(name) + " has dtype " + dtype_name(entry.dtype) +
                             "; weights are read from F32, F16 or BF16");
  }
}

}  // namespace moeref
