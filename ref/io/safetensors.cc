#include "ref/io/safetensors.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>

#include "ref/io/atomic_file.h"

namespace moeref {
namespace {

namespace fs = std::filesystem;

// ordered_json keeps the header's key order, so tensors that share a data offset (empty ones)
// come back in the order the writer listed them.
using Json = nlohmann::ordered_json;

// Tensor bytes are memcpy'd to and from host floats and ints; that is the file's little-endian
// layout only on a little-endian host.
static_assert(std::endian::native == std::endian::little, "moeref assumes a little-endian host");

constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr uint64_t kHeaderLengthBytes = 8;
constexpr std::string_view kMetadataKey = "__metadata__";

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

// Indexed by the enum's value; the static_assert below keeps the two in step.
constexpr std::array<DTypeInfo, 13> kDTypes = {{
    {DType::kBool, "BOOL", 1},
    {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},
    {DType::kI16, "I16", 2},
    {DType::kU16, "U16", 2},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kI32, "I32", 4},
    {DType::kU32, "U32", 4},
    {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},
    {DType::kI64, "I64", 8},
    {DType::kU64, "U64", 8},
}};

constexpr bool dtype_table_matches_enum() {
  for (size_t i = 0; i < kDTypes.size(); ++i) {
    if (static_cast<size_t>(kDTypes[i].dtype) != i) return false;
  }
  return true;
}
static_assert(dtype_table_matches_enum());

std::optional<DType> parse_dtype(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return info.dtype;
  }
  return std::nullopt;
}

std::string single_quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

[[noreturn]] void fail(const fs::path& path, const std::string& problem) {
  throw SafetensorsError(path.string() + ": " + problem);
}

// What a UTF-8 lead byte announces: the sequence length, the code point bits it carries, and the
// smallest code point that needs this length (anything below is a forbidden overlong form).
struct Utf8Lead {
  size_t length;
  uint32_t payload;
  uint32_t smallest;
};

std::optional<Utf8Lead> decode_utf8_lead(unsigned char lead) {
  if ((lead & 0xE0) == 0xC0) return Utf8Lead{2, lead & 0x1Fu, 0x80};
  if ((lead & 0xF0) == 0xE0) return Utf8Lead{3, lead & 0x0Fu, 0x800};
  if ((lead & 0xF8) == 0xF0) return Utf8Lead{4, lead & 0x07u, 0x10000};
  return std::nullopt;  // a continuation byte or 0xF8..0xFF
}

// The offset of the first byte that does not start a well-formed UTF-8 sequence (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF), or nullopt when all of `text` is valid.
// nlohmann's lexer checks only inside strings, and its error would not say where.
std::optional<size_t> first_invalid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    const std::optional<Utf8Lead> sequence = decode_utf8_lead(lead);
    if (!sequence) return i;
    const size_t length = sequence->length;
    uint32_t code_point = sequence->payload;
    if (text.size() - i < length) return i;
    for (size_t k = 1; k < length; ++k) {
      const auto continuation = static_cast<unsigned char>(text[i + k]);
      if ((continuation & 0xC0) != 0x80) return i;
      code_point = (code_point << 6) | (continuation & 0x3Fu);
    }
    const bool surrogate = code_point >= 0xD800 && code_point <= 0xDFFF;
    if (code_point < sequence->smallest || code_point > 0x10FFFF || surrogate) return i;
    i += length;
  }
  return std::nullopt;
}

// prod(shape) * element_size, or nullopt when a dimension is negative or the product does not
// fit in 64 bits (a hostile header can name dimensions whose product wraps to a small number).
std::optional<uint64_t> checked_byte_count(const std::vector<int64_t>& shape,
                                           uint64_t element_size) {
  uint64_t count = element_size;
  for (const int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count)) return std::nullopt;
  }
  return count;
}

// Why `record`'s bytes do not match its shape and dtype, or nullopt when they do.
template <class Stored>
std::optional<std::string> byte_count_problem(const Stored& record) {
  const std::optional<uint64_t> expected =
      checked_byte_count(record.shape, dtype_size(record.dtype));
  const std::string described = "tensor " + single_quoted(record.name) + " with shape " +
                                shape_string(record.shape) + " and dtype " +
                                dtype_name(record.dtype);
  if (!expected) return described + " has a negative dimension or overflows 64 bits";
  if (*expected != record.bytes.size()) {
    return described + " needs " + std::to_string(*expected) + " bytes but holds " +
           std::to_string(record.bytes.size());
  }
  return std::nullopt;
}

// Copies the record's elements into `out`, which must hold exactly all of them; throws
// SafetensorsError naming the tensor if its dtype is not `expected` or its bytes do not fit.
template <typename T>
void copy_elements_into(const TensorRecord& record, DType expected, std::span<T> out) {
  if (record.dtype != expected) {
    throw SafetensorsError("tensor " + single_quoted(record.name) + " has dtype " +
                           dtype_name(record.dtype) + ", not " + dtype_name(expected));
  }
  if (std::optional<std::string> problem = byte_count_problem(record)) {
    throw SafetensorsError(*problem);
  }
  if (out.size_bytes() != record.bytes.size()) {
    throw SafetensorsError("tensor " + single_quoted(record.name) + " holds " +
                           std::to_string(record.bytes.size() / sizeof(T)) +
                           " elements, copied into room for " + std::to_string(out.size()));
  }
  if (!out.empty()) std::memcpy(out.data(), record.bytes.data(), record.bytes.size());
}

template <typename T>
std::vector<T> copy_elements(const TensorRecord& record, DType expected) {
  std::vector<T> values(record.bytes.size() / sizeof(T));
  copy_elements_into(record, expected, std::span<T>(values));
  return values;
}

template <typename T>
TensorRecord make_record(std::string name, DType dtype, std::vector<int64_t> shape,
                         std::span<const T> values) {
  const std::optional<uint64_t> numel = checked_byte_count(shape, 1);
  if (!numel || *numel != values.size()) {
    throw SafetensorsError("tensor " + single_quoted(name) + ": " + std::to_string(values.size()) +
                           " values do not fill shape " + shape_string(shape));
  }
  TensorRecord record{std::move(name), dtype, std::move(shape), {}};
  record.bytes.resize(values.size_bytes());
  if (!values.empty()) std::memcpy(record.bytes.data(), values.data(), values.size_bytes());
  return record;
}

// ---------------------------------------------------------------------------------------------
// Reading

uint64_t decode_u64_le(const std::array<unsigned char, kHeaderLengthBytes>& bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes.size(); ++i) value |= uint64_t{bytes[i]} << (8 * i);
  return value;
}

// Reads the length prefix and the header text, rejecting lengths the file cannot hold before
// allocating anything for them.
std::string read_header_text(std::ifstream& in, const fs::path& path, uint64_t file_size) {
  if (file_size < kHeaderLengthBytes) {
    fail(path,
         "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
  }
  std::array<unsigned char, kHeaderLengthBytes> length_bytes{};
  in.read(reinterpret_cast<char*>(length_bytes.data()), length_bytes.size());
  if (!in) fail(path, "cannot read the header length");
  const uint64_t header_length = decode_u64_le(length_bytes);
  if (header_length > kMaxHeaderBytes) {
    fail(path, "header length " + std::to_string(header_length) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (header_length > file_size - kHeaderLengthBytes) {
    fail(path, "header length " + std::to_string(header_length) + " reaches past the end of the " +
                   std::to_string(file_size) + "-byte file");
  }
  std::string text(header_length, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_length));
  if (!in) fail(path, "cannot read the " + std::to_string(header_length) + "-byte header");
  return text;
}

// `entry` is the top-level name whose value holds the repeated key, nullopt for the top level.
std::string duplicate_key_problem(const std::string& key, const std::optional<std::string>& entry) {
  if (entry) return "duplicate key " + single_quoted(key) + " in entry " + single_quoted(*entry);
  if (key == kMetadataKey) return "duplicate '__metadata__' entry";
  return "duplicate tensor name " + single_quoted(key);
}

// Parses the header, catching duplicate keys at any depth: nlohmann keeps one of two equal keys
// without a word, so the parser callback tracks the keys of every open object itself.
Json parse_header_json(const fs::path& path, const std::string& text) {
  if (std::optional<size_t> offset = first_invalid_utf8(text)) {
    fail(path, "header is not valid UTF-8 at byte " + std::to_string(*offset));
  }
  std::vector<std::set<std::string>> open_object_keys;
  std::string current_entry;
  std::optional<std::string> duplicate;
  const Json::parser_callback_t track_keys = [&](int, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      open_object_keys.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      open_object_keys.pop_back();
    } else if (event == Json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      const bool top_level = open_object_keys.size() == 1;
      if (!open_object_keys.back().insert(key).second && !duplicate) {
        duplicate =
            duplicate_key_problem(key, top_level ? std::nullopt : std::optional(current_entry));
      }
      if (top_level) current_entry = key;
    }
    return true;
  };
  Json header;
  try {
    header = Json::parse(text, track_keys);
  } catch (const Json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) {
    fail(path, std::string("header is a JSON ") + header.type_name() + ", not a JSON object");
  }
  if (duplicate) fail(path, *duplicate);
  return header;
}

// A header value for an error message: scalars as JSON (long strings cut), containers by type
// only, so a hostile header can make the message neither huge nor deeply recursive to print.
std::string describe(const Json& value) {
  if (value.is_structured()) return std::string("a JSON ") + value.type_name();
  constexpr size_t kLongest = 64;
  const std::string text = value.dump();
  return text.size() <= kLongest ? text : text.substr(0, kLongest) + "...";
}

// `value` as an integer >= 0 that fits in int64, so shapes and offsets survive the signed types
// used elsewhere; anything else (negative, fraction, string, too large) is rejected naming
// `field`.
uint64_t require_index(const fs::path& path, const std::string& field, const Json& value) {
  constexpr auto kLargest = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (value.is_number_unsigned() && value.get<uint64_t>() <= kLargest) {
    return value.get<uint64_t>();
  }
  // "-0" is a signed integer that is still a valid zero.
  if (value.is_number_integer() && !value.is_number_unsigned() && value.get<int64_t>() == 0) {
    return 0;
  }
  fail(path, field + " is " + describe(value) + ", not a non-negative integer below 2^63");
}

void check_entry_keys(const fs::path& path, const std::string& where, const Json& entry) {
  if (!entry.is_object()) fail(path, where + " is a JSON " + entry.type_name() + ", not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) fail(path, where + " is missing key " + single_quoted(key));
  }
  for (const auto& [key, value] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      fail(path, where + " has unexpected key " + single_quoted(key));
    }
  }
}

DType parse_dtype_field(const fs::path& path, const std::string& where, const Json& dtype) {
  if (!dtype.is_string()) fail(path, where + ": dtype is " + describe(dtype) + ", not a string");
  const std::optional<DType> known = parse_dtype(dtype.get_ref<const std::string&>());
  if (!known) fail(path, where + ": unknown dtype " + describe(dtype));
  return *known;
}

std::vector<int64_t> parse_shape_field(const fs::path& path, const std::string& where,
                                       const Json& shape) {
  if (!shape.is_array()) fail(path, where + ": shape is " + describe(shape) + ", not an array");
  std::vector<int64_t> dims;
  for (size_t i = 0; i < shape.size(); ++i) {
    const std::string field = where + ": shape[" + std::to_string(i) + "]";
    dims.push_back(static_cast<int64_t>(require_index(path, field, shape[i])));
  }
  return dims;
}

void parse_offsets_field(const fs::path& path, const std::string& where, const Json& offsets,
                         TensorEntry& entry) {
  if (!offsets.is_array()) {
    fail(path, where + ": data_offsets is " + describe(offsets) + ", not an array");
  }
  if (offsets.size() != 2) {
    fail(path, where + ": data_offsets has " + std::to_string(offsets.size()) +
                   " elements, not 2 (begin, end)");
  }
  entry.begin = require_index(path, where + ": data_offsets[0]", offsets[0]);
  entry.end = require_index(path, where + ": data_offsets[1]", offsets[1]);
  if (entry.begin > entry.end) {
    fail(path, where + ": data_offsets begin " + std::to_string(entry.begin) + " is after end " +
                   std::to_string(entry.end));
  }
}

// The byte span must be exactly what the shape and dtype need; the product is overflow-checked
// because wrapped products of huge dimensions could otherwise match a small span.
void check_entry_size(const fs::path& path, const std::string& where, const TensorEntry& entry) {
  const std::optional<uint64_t> expected = checked_byte_count(entry.shape, dtype_size(entry.dtype));
  const std::string described =
      where + ": shape " + shape_string(entry.shape) + " of " + dtype_name(entry.dtype);
  if (!expected) fail(path, described + " overflows 64 bits");
  if (*expected != entry.end - entry.begin) {
    fail(path, described + " needs " + std::to_string(*expected) + " bytes but data_offsets [" +
                   std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "] span " +
                   std::to_string(entry.end - entry.begin));
  }
}

TensorEntry parse_entry(const fs::path& path, const std::string& name, const Json& entry) {
  const std::string where = "tensor " + single_quoted(name);
  check_entry_keys(path, where, entry);
  TensorEntry parsed;
  parsed.name = name;
  parsed.dtype = parse_dtype_field(path, where, entry["dtype"]);
  parsed.shape = parse_shape_field(path, where, entry["shape"]);
  parse_offsets_field(path, where, entry["data_offsets"], parsed);
  check_entry_size(path, where, parsed);
  return parsed;
}

std::map<std::string, std::string> parse_metadata(const fs::path& path, const Json& metadata) {
  if (!metadata.is_object()) {
    fail(path, "__metadata__ is a JSON " + std::string(metadata.type_name()) +
                   ", not an object of strings");
  }
  std::map<std::string, std::string> parsed;
  for (const auto& [key, value] : metadata.items()) {
    if (!value.is_string()) {
      fail(path,
           "__metadata__[" + single_quoted(key) + "] is " + describe(value) + ", not a string");
    }
    parsed.emplace(key, value.get<std::string>());
  }
  return parsed;
}

// `entries` sorted by offset must tile [0, data_size) exactly: the format has no padding between
// tensors, so a gap or overlap means a corrupt or hostile header.
void check_layout(const fs::path& path, const std::vector<TensorEntry>& entries,
                  uint64_t data_size) {
  uint64_t covered = 0;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& entry : entries) {
    const std::string where = "tensor " + single_quoted(entry.name) + " (data_offsets [" +
                              std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "])";
    if (entry.begin > covered) {
      fail(path, previous ? "gap between tensor " + single_quoted(previous->name) +
                                ", which ends at " + std::to_string(covered) + ", and " + where
                          : "gap before the first " + where + ": data must start at offset 0");
    }
    if (entry.begin < covered) {
      fail(path, where + " overlaps tensor " + single_quoted(previous->name) + ", which ends at " +
                     std::to_string(covered));
    }
    covered = entry.end;
    previous = &entry;
  }
  if (covered > data_size) {
    fail(path, "tensor " + single_quoted(previous->name) + " ends at data offset " +
                   std::to_string(covered) + ", past the end of the file (" +
                   std::to_string(data_size) + " data bytes)");
  }
  if (covered < data_size) {
    fail(path, "tensor data ends at offset " + std::to_string(covered) + " but the file holds " +
                   std::to_string(data_size) + " data bytes: data does not end at the end of file");
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

void check_utf8(const fs::path& path, const std::string& what, const std::string& text) {
  if (first_invalid_utf8(text)) fail(path, what + " is not valid UTF-8");
}

// Everything that could make the writer fail is checked here, before the file is touched.
void check_writable(const fs::path& path, const std::vector<TensorView>& tensors,
                    const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const TensorView& record : tensors) {
    check_utf8(path, "tensor name " + single_quoted(record.name), record.name);
    if (record.name == kMetadataKey) fail(path, "tensor name '__metadata__' is reserved");
    if (!names.insert(record.name).second) {
      fail(path, "duplicate tensor name " + single_quoted(record.name));
    }
    if (std::optional<std::string> problem = byte_count_problem(record)) fail(path, *problem);
  }
  for (const auto& [key, value] : metadata) {
    check_utf8(path, "__metadata__ key " + single_quoted(key), key);
    check_utf8(path, "__metadata__[" + single_quoted(key) + "]", value);
  }
}

// The header JSON padded with spaces to a multiple of 8, so the data that follows starts
// 8-byte aligned in a mapped file.
std::string padded_header(const std::vector<TensorView>& tensors,
                          const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header[std::string(kMetadataKey)] = metadata;
  uint64_t offset = 0;
  for (const TensorView& record : tensors) {
    const uint64_t end = offset + record.bytes.size();
    header[record.name] = {{"dtype", dtype_name(record.dtype)},
                           {"shape", record.shape},
                           {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

void write_u64_le(std::ostream& out, uint64_t value) {
  std::array<char, kHeaderLengthBytes> bytes{};
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
  out.write(bytes.data(), bytes.size());
}

}  // namespace

const char* dtype_name(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].name; }

size_t dtype_size(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].size; }

int64_t TensorRecord::numel() const {
  const std::optional<uint64_t> count = checked_byte_count(shape, 1);
  if (!count || *count > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    throw SafetensorsError("tensor " + single_quoted(name) + ": shape " + shape_string(shape) +
                           " has a negative dimension or too many elements");
  }
  return static_cast<int64_t>(*count);
}

std::vector<float> TensorRecord::to_f32() const { return copy_elements<float>(*this, DType::kF32); }

void TensorRecord::copy_f32_into(std::span<float> out) const {
  copy_elements_into(*this, DType::kF32, out);
}

std::vector<int32_t> TensorRecord::to_i32() const {
  return copy_elements<int32_t>(*this, DType::kI32);
}

TensorRecord make_f32_record(std::string name, std::vector<int64_t> shape,
                             std::span<const float> values) {
  return make_record(std::move(name), DType::kF32, std::move(shape), values);
}

TensorRecord make_i32_record(std::string name, std::vector<int64_t> shape,
                             std::span<const int32_t> values) {
  return make_record(std::move(name), DType::kI32, std::move(shape), values);
}

SafetensorsIndex SafetensorsIndex::open(const fs::path& path) {
  std::error_code error;
  const uint64_t file_size = fs::file_size(path, error);
  if (error) fail(path, "cannot read: " + error.message());
  SafetensorsIndex index;
  index.path_ = path;
  index.in_.open(path, std::ios::binary);
  if (!index.in_) fail(path, "cannot open for reading");

  const std::string header_text = read_header_text(index.in_, path, file_size);
  const Json header = parse_header_json(path, header_text);
  for (const auto& [name, value] : header.items()) {
    if (name == kMetadataKey) {
      index.metadata_ = parse_metadata(path, value);
    } else {
      index.entries_.push_back(parse_entry(path, name, value));
    }
  }
  // Stable, so empty tensors sharing an offset keep their header order.
  std::stable_sort(index.entries_.begin(), index.entries_.end(),
                   [](const TensorEntry& a, const TensorEntry& b) {
                     return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
                   });
  index.data_start_ = kHeaderLengthBytes + header_text.size();
  check_layout(path, index.entries_, file_size - index.data_start_);
  return index;
}

void SafetensorsIndex::read_into(const TensorEntry& entry, std::span<std::byte> out) {
  if (out.size() != entry.end - entry.begin) {
    fail(path_, "tensor " + single_quoted(entry.name) + " holds " +
                    std::to_string(entry.end - entry.begin) + " bytes, read into room for " +
                    std::to_string(out.size()));
  }
  read_part_into(entry, 0, out);
}

void SafetensorsIndex::read_part_into(const TensorEntry& entry, uint64_t offset,
                                      std::span<std::byte> out) {
  const uint64_t size = entry.end - entry.begin;
  if (offset > size || out.size() > size - offset) {
    fail(path_, "tensor " + single_quoted(entry.name) + " holds " + std::to_string(size) +
                    " bytes, not bytes [" + std::to_string(offset) + ", " + std::to_string(offset) +
                    " + " + std::to_string(out.size()) + ")");
  }
  if (out.empty()) return;
  // check_layout bounded every entry by the file's size, so the offset fits a streamoff.
  in_.seekg(static_cast<std::streamoff>(data_start_ + entry.begin + offset));
  in_.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
  if (!in_) fail(path_, "cannot read the data of tensor " + single_quoted(entry.name));
}

SafetensorsFile SafetensorsFile::read(const fs::path& path) {
  SafetensorsIndex index = SafetensorsIndex::open(path);
  SafetensorsFile file;
  file.path_ = path;
  file.metadata_ = index.metadata();
  for (const TensorEntry& entry : index.entries()) {
    TensorRecord record{entry.name, entry.dtype, entry.shape, {}};
    record.bytes.resize(entry.end - entry.begin);
    index.read_into(entry, record.bytes);
    file.index_.emplace(record.name, file.tensors_.size());
    file.tensors_.push_back(std::move(record));
  }
  return file;
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.contains(name); }

const TensorRecord& SafetensorsFile::at(const std::string& name) const {
  const auto found = index_.find(name);
  if (found == index_.end()) fail(path_, "no tensor named " + single_quoted(name));
  return tensors_[found->second];
}

StagedFile stage_safetensors(const fs::path& path, const std::vector<TensorView>& tensors,
                             const std::map<std::string, std::string>& metadata) {
  check_writable(path, tensors, metadata);
  const std::string header = padded_header(tensors, metadata);
  try {
    return StagedFile(path, [&](std::ostream& out) {
      write_u64_le(out, header.size());
      out.write(header.data(), static_cast<std::streamsize>(header.size()));
      for (const TensorView& view : tensors) {
        out.write(reinterpret_cast<const char*>(view.bytes.data()),
                  static_cast<std::streamsize>(view.bytes.size()));
      }
    });
  } catch (const std::runtime_error& e) {
    // StagedFile's message already starts with the path; callers of this module catch one error
    // type.
    throw SafetensorsError(e.what());
  }
}

void write_safetensors_views(const fs::path& path, const std::vector<TensorView>& tensors,
                             const std::map<std::string, std::string>& metadata) {
  StagedFile staged = stage_safetensors(path, tensors, metadata);
  try {
    staged.publish();
  } catch (const std::runtime_error& e) {
    throw SafetensorsError(e.what());
  }
}

void write_safetensors(const fs::path& path, const std::vector<TensorRecord>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorView> views;
  views.reserve(tensors.size());
  for (const TensorRecord& record : tensors) {
    views.push_back({record.name, record.dtype, record.shape, record.bytes});
  }
  write_safetensors_views(path, views, metadata);
}

}  // namespace moeref
