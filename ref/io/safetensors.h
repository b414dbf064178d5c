// safetensors files: read with every validation rule of the format, write atomically.
//
// Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
//   {name: {"dtype": D, "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {str: str}}
// then the tensor data, little-endian, row-major, offsets relative to the start of the data.
//
// The reader rejects, each with its own SafetensorsError naming the file and what is wrong:
// a file under 8 bytes; N over 100,000,000; N + 8 past the end of the file; a header that is not
// UTF-8 or not a JSON object; an entry that is not an object with exactly dtype, shape and
// data_offsets; an unknown dtype; a negative or non-integer dimension; offsets that leave gaps or
// overlap; end - begin != prod(shape) * size(dtype) (computed with overflow checks); data that
// does not end exactly at the end of the file; duplicate names; metadata that is not str -> str.
//
// The writer sorts nothing: tensors are laid out in the order given. It pads the header with
// spaces to a multiple of 8 and writes to a temporary file in the same directory, renamed over
// the target only when complete, so a failed write leaves no partial file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/io/atomic_file.h"

namespace moeref {

class SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class DType { kBool, kU8, kI8, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kF64, kI64, kU64 };

const char* dtype_name(DType dtype);  // "F32", ...
size_t dtype_size(DType dtype);       // bytes per element

struct TensorRecord {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;  // prod(shape) * dtype_size(dtype) bytes, little-endian

  int64_t numel() const;
  // Copies out the elements; throws SafetensorsError naming the tensor if the dtype differs.
  std::vector<float> to_f32() const;
  std::vector<int32_t> to_i32() const;
  // The same checks as to_f32, then the elements copied into `out`, which must hold numel()
  // floats (a Tensor made for them: one copy instead of two).
  void copy_f32_into(std::span<float> out) const;
};

TensorRecord make_f32_record(std::string name, std::vector<int64_t> shape,
                             std::span<const float> values);
TensorRecord make_i32_record(std::string name, std::vector<int64_t> shape,
                             std::span<const int32_t> values);

// A tensor as the header describes it: its bytes are [begin, end) of the data section.
struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// The header of a file, checked by every rule above (the layout against the file's size
// included) without reading any tensor data, and the file held open to read tensors one at a
// time: a loader checks names, shapes and dtypes first and then reads only what it keeps, into
// memory it owns.
class SafetensorsIndex {
 public:
  static SafetensorsIndex open(const std::filesystem::path& path);

  const std::vector<TensorEntry>& entries() const { return entries_; }  // in data order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return path_; }
  // Reads the entry's bytes into `out`, which must hold exactly end - begin bytes; throws
  // SafetensorsError naming the file and the tensor if it cannot.
  void read_into(const TensorEntry& entry, std::span<std::byte> out);
  // Reads bytes [offset, offset + out.size()) of the entry's data (a slice of a fused tensor);
  // throws SafetensorsError naming the file and the tensor when they are not all inside it.
  void read_part_into(const TensorEntry& entry, uint64_t offset, std::span<std::byte> out);

 private:
  std::filesystem::path path_;
  std::ifstream in_;
  uint64_t data_start_ = 0;  // file offset of the data section
  std::vector<TensorEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// A whole file in memory.
class SafetensorsFile {
 public:
  static SafetensorsFile read(const std::filesystem::path& path);

  const std::vector<TensorRecord>& tensors() const { return tensors_; }  // in file order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  // Throws SafetensorsError naming the file and the missing tensor.
  const TensorRecord& at(const std::string& name) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::vector<TensorRecord> tensors_;
  std::map<std::string, size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// A tensor to write whose bytes stay where the caller keeps them, so writing copies nothing.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;  // prod(shape) * dtype_size(dtype) bytes, little-endian
};

void write_safetensors_views(const std::filesystem::path& path,
                             const std::vector<TensorView>& tensors,
                             const std::map<std::string, std::string>& metadata = {});
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorRecord>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The same file written beside `path` and not yet published, for publish_together
// (ref/io/atomic_file.h) with the files that belong with it.
StagedFile stage_safetensors(const std::filesystem::path& path,
                             const std::vector<TensorView>& tensors,
                             const std::map<std::string, std::string>& metadata = {});

}  // namespace moeref
