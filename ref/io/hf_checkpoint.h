// The tensors of a Hugging Face checkpoint directory, whole or sharded, read as float32.
//
// A directory holds either one `model.safetensors` or `model.safetensors.index.json`
//   {"metadata": {...}, "weight_map": {tensor name: shard file name, ...}}
// and the shards it names; both at once is refused as ambiguous. The index is validated before
// any tensor data is read, each violation a SafetensorsError naming the file, the key and the
// value:
//   - it is a JSON object with a "weight_map" object of strings, and nothing but "weight_map" and
//     an optional "metadata" object (not read: its "total_size" describes, it does not decide);
//   - a tensor name appears once;
//   - a shard name is a relative path that stays inside the directory, symbolic links resolved,
//     and names a regular file;
//   - every tensor is held by exactly the shard the index names: a shard holding a tensor the
//     index maps elsewhere or not at all is refused as well as a shard missing one.
// Every shard is then checked by all of safetensors.h's rules.
//
// Tensor data is read as float32: F32 copied, F16 and BF16 widened exactly (ref/io/half_float.h);
// any other dtype is refused naming the file, the tensor and the dtype.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "ref/io/safetensors.h"

namespace moeref {

inline constexpr const char* kHfWeightsFile = "model.safetensors";
inline constexpr const char* kHfIndexFile = "model.safetensors.index.json";

class HfCheckpoint {
 public:
  static HfCheckpoint open(const std::filesystem::path& dir);

  // model.safetensors or the index: what errors about the checkpoint as a whole name.
  const std::filesystem::path& source() const { return source_; }
  // Every tensor name of the checkpoint, sorted.
  std::vector<std::string> names() const;
  // The tensor's header entry, or null when the checkpoint has no tensor of that name.
  const TensorEntry* find(const std::string& name) const;
  // The file holding tensor `name`, which must exist.
  const std::filesystem::path& file_of(const std::string& name) const;
  // Elements [first, first + out.size()) of tensor `name` (row-major) as float32. Throws
  // SafetensorsError naming the file and the tensor for a dtype other than F32, F16 or BF16.
  void read_f32(const std::string& name, uint64_t first, std::span<float> out);

 private:
  struct Location {
    size_t shard = 0;
    size_t entry = 0;  // in shards_[shard].entries()
  };
  std::filesystem::path source_;
  std::vector<SafetensorsIndex> shards_;
  std::map<std::string, Location> tensors_;
};

}  // namespace moeref
