#include "ref/io/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <system_error>
#include <vector>

namespace moeref {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;  // tensor bytes with embedded zeros

// ---------------------------------------------------------------------------------------------
// Byte helpers, written independently of the writer so hand-built files check the reader alone.

std::string le_u64(uint64_t value) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes += static_cast<char>((value >> (8 * i)) & 0xFF);
  return bytes;
}

std::string le_u32(uint32_t value) {
  std::string bytes;
  for (int i = 0; i < 4; ++i) bytes += static_cast<char>((value >> (8 * i)) & 0xFF);
  return bytes;
}

std::string le_f32(float value) { return le_u32(std::bit_cast<uint32_t>(value)); }

std::string le_i32(int32_t value) { return le_u32(static_cast<uint32_t>(value)); }

uint64_t decode_le_u64(const std::string& bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8; ++i) value |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  return value;
}

// A whole file: length prefix, `header` as given (no padding), then `data`.
std::string file_bytes(const std::string& header, const std::string& data) {
  return le_u64(header.size()) + header + data;
}

// `header` followed by `data_size` zero bytes of tensor data.
std::string file_with_zero_data(const std::string& header, size_t data_size) {
  return file_bytes(header, std::string(data_size, '\0'));
}

void write_raw(const fs::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  ASSERT_TRUE(out) << path;
}

std::string read_raw(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::byte> as_bytes(const std::string& text) {
  std::vector<std::byte> bytes(text.size());
  std::transform(text.begin(), text.end(), bytes.begin(),
                 [](char c) { return static_cast<std::byte>(c); });
  return bytes;
}

TensorRecord raw_record(std::string name, DType dtype, std::vector<int64_t> shape,
                        const std::string& bytes) {
  return TensorRecord{std::move(name), dtype, std::move(shape), as_bytes(bytes)};
}

// The SafetensorsError message `action` throws, or "" if it succeeds. Any other exception
// escapes and fails the test: malformed input must never surface as a crash or a foreign type.
template <typename Action>
std::string error_message(const Action& action) {
  try {
    action();
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  return "";
}

std::string read_error(const fs::path& path) {
  return error_message([&] { SafetensorsFile::read(path); });
}

std::string write_error(const fs::path& path, const std::vector<TensorRecord>& tensors) {
  return error_message([&] { write_safetensors(path, tensors); });
}

bool starts_with_path(const std::string& message, const fs::path& path) {
  return message.starts_with(path.string() + ": ");
}

bool mentions(const std::string& message, const std::string& expected) {
  return message.find(expected) != std::string::npos;
}

// A fresh, empty directory per test under gtest's temp dir.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("safetensors_test_") + std::to_string(getpid()) + "_" +
                       info->test_suite_name() + "_" + info->name();
    std::replace(name.begin(), name.end(), '/', '_');  // parameterized tests carry slashes
    dir_ = fs::path(::testing::TempDir()) / name;
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  fs::path dir_;
};

void expect_same_records(const std::vector<TensorRecord>& actual,
                         const std::vector<TensorRecord>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(expected[i].name);
    EXPECT_EQ(actual[i].name, expected[i].name);
    EXPECT_EQ(actual[i].dtype, expected[i].dtype);
    EXPECT_EQ(actual[i].shape, expected[i].shape);
    EXPECT_EQ(actual[i].bytes, expected[i].bytes);
  }
}

// ---------------------------------------------------------------------------------------------
// Dtypes and records

TEST(SafetensorsDtypeTest, NamesAndSizesOfAllThirteen) {
  struct Expected {
    DType dtype;
    const char* name;
    size_t size;
  };
  const Expected table[] = {
      {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},   {DType::kI8, "I8", 1},
      {DType::kI16, "I16", 2},   {DType::kU16, "U16", 2}, {DType::kF16, "F16", 2},
      {DType::kBF16, "BF16", 2}, {DType::kI32, "I32", 4}, {DType::kU32, "U32", 4},
      {DType::kF32, "F32", 4},   {DType::kF64, "F64", 8}, {DType::kI64, "I64", 8},
      {DType::kU64, "U64", 8},
  };
  for (const Expected& row : table) {
    EXPECT_STREQ(dtype_name(row.dtype), row.name);
    EXPECT_EQ(dtype_size(row.dtype), row.size) << row.name;
  }
}

TEST(SafetensorsRecordTest, NumelOfScalarEmptyAndMatrix) {
  const float one = 1.0f;
  EXPECT_EQ(make_f32_record("scalar", {}, {&one, 1}).numel(), 1);
  EXPECT_EQ(make_f32_record("empty", {0, 5}, {}).numel(), 0);
  const std::vector<float> six(6, 0.5f);
  EXPECT_EQ(make_f32_record("matrix", {2, 3}, six).numel(), 6);
}

TEST(SafetensorsRecordTest, MakeRecordChecksValueCount) {
  const std::vector<float> five(5, 0.0f);
  const std::vector<int32_t> three(3, 0);
  EXPECT_TRUE(mentions(error_message([&] {
                         make_f32_record("w", {2, 3}, five);
                       }),
                       "tensor 'w': 5 values do not fill shape [2, 3]"));
  EXPECT_TRUE(mentions(error_message([&] { make_f32_record("w", {-5}, five); }),
                       "tensor 'w': 5 values do not fill shape [-5]"));
  EXPECT_TRUE(mentions(error_message([&] { make_i32_record("ids", {4}, three); }),
                       "tensor 'ids': 3 values do not fill shape [4]"));
}

TEST(SafetensorsRecordTest, ConversionsRejectOtherDtypes) {
  const std::vector<int32_t> ids = {1, -2};
  const std::vector<float> weights = {0.5f, -1.5f};
  const TensorRecord ids_record = make_i32_record("ids", {2}, ids);
  const TensorRecord weight_record = make_f32_record("weight", {2}, weights);
  EXPECT_EQ(ids_record.to_i32(), ids);
  EXPECT_EQ(weight_record.to_f32(), weights);
  EXPECT_EQ(error_message([&] { ids_record.to_f32(); }), "tensor 'ids' has dtype I32, not F32");
  EXPECT_EQ(error_message([&] { weight_record.to_i32(); }),
            "tensor 'weight' has dtype F32, not I32");
}

TEST(SafetensorsRecordTest, CopyIntoFillsExactlyTheRoomForItsElements) {
  const std::vector<float> weights = {0.5f, -1.5f, 2.25f};
  const TensorRecord record = make_f32_record("weight", {3}, weights);
  std::vector<float> out(3, 9.0f);
  record.copy_f32_into(out);
  EXPECT_EQ(out, weights);
  std::vector<float> short_room(2);
  EXPECT_EQ(error_message([&] { record.copy_f32_into(short_room); }),
            "tensor 'weight' holds 3 elements, copied into room for 2");
  const TensorRecord ids = make_i32_record("ids", {3}, std::vector<int32_t>{1, 2, 3});
  EXPECT_EQ(error_message([&] { ids.copy_f32_into(out); }), "tensor 'ids' has dtype I32, not F32");
}

// ---------------------------------------------------------------------------------------------
// Round trips and the layout the writer produces

TEST_F(SafetensorsTest, RoundTripIsByteExact) {
  const std::vector<float> embed = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
  const std::vector<int32_t> positions = {0, 1, -7, std::numeric_limits<int32_t>::max()};
  const std::vector<TensorRecord> tensors = {
      // Two empty tensors share offset 0, named against alphabetical order: the reader must keep
      // the header's order for ties.
      raw_record("z_empty", DType::kI64, {0, 5}, ""),
      raw_record("a_empty", DType::kF16, {3, 0}, ""),
      make_f32_record("embed.weight", {2, 3}, embed),
      make_i32_record("positions", {4}, positions),
      raw_record("mask", DType::kBool, {2}, "\x00\x01"s),
      raw_record("scale", DType::kF64, {}, "\x00\x00\x00\x00\x00\x00\x0a\x40"s),
      raw_record("bf16", DType::kBF16, {2, 2}, "\x80\x3f\x00\xc0\x7f\x7f\x01\x00"s),
      raw_record("bytes", DType::kU8, {3}, "\x01\x02\xff"),
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                       {"note", "gr\xc3\xbc\xc3\x9f"}};
  const fs::path first = dir_ / "first.safetensors";
  write_safetensors(first, tensors, metadata);

  const SafetensorsFile file = SafetensorsFile::read(first);
  expect_same_records(file.tensors(), tensors);
  EXPECT_EQ(file.metadata(), metadata);
  EXPECT_EQ(file.path(), first);
  EXPECT_EQ(file.at("embed.weight").to_f32(), embed);
  EXPECT_EQ(file.at("positions").to_i32(), positions);

  // The data section is the tensors' bytes back to back, in the order given.
  std::string data;
  for (const TensorRecord& record : tensors) {
    data.append(reinterpret_cast<const char*>(record.bytes.data()), record.bytes.size());
  }
  const std::string bytes = read_raw(first);
  EXPECT_EQ(bytes.substr(8 + decode_le_u64(bytes)), data);

  // Writing what was read reproduces the file byte for byte.
  const fs::path second = dir_ / "second.safetensors";
  write_safetensors(second, file.tensors(), file.metadata());
  EXPECT_EQ(read_raw(second), bytes);
}

TEST_F(SafetensorsTest, EveryDtypeRoundTrips) {
  const DType all[] = {DType::kBool, DType::kU8,   DType::kI8,  DType::kI16, DType::kU16,
                       DType::kF16,  DType::kBF16, DType::kI32, DType::kU32, DType::kF32,
                       DType::kF64,  DType::kI64,  DType::kU64};
  std::vector<TensorRecord> tensors;
  for (const DType dtype : all) {
    std::string bytes;
    for (size_t i = 0; i < 3 * dtype_size(dtype); ++i) bytes += static_cast<char>(7 * i + 1);
    tensors.push_back(raw_record(std::string("t_") + dtype_name(dtype), dtype, {3}, bytes));
  }
  const fs::path path = dir_ / "all.safetensors";
  write_safetensors(path, tensors);
  const SafetensorsFile file = SafetensorsFile::read(path);
  expect_same_records(file.tensors(), tensors);
  EXPECT_TRUE(file.metadata().empty());
}

TEST_F(SafetensorsTest, FileWithoutTensors) {
  const fs::path path = dir_ / "none.safetensors";
  write_safetensors(path, {}, {{"k", "v"}});
  const SafetensorsFile file = SafetensorsFile::read(path);
  EXPECT_TRUE(file.tensors().empty());
  EXPECT_EQ(file.metadata().at("k"), "v");
}

TEST_F(SafetensorsTest, HeaderIsPaddedWithSpacesToMultipleOf8) {
  const float value = 2.0f;
  // Name lengths 1..16 move the unpadded header length through every residue mod 8.
  for (size_t length = 1; length <= 16; ++length) {
    const std::string name(length, 'x');
    SCOPED_TRACE(name);
    const fs::path path = dir_ / (name + ".safetensors");
    write_safetensors(path, {make_f32_record(name, {1}, {&value, 1})});
    const std::string bytes = read_raw(path);
    const uint64_t header_length = decode_le_u64(bytes);
    EXPECT_EQ(header_length % 8, 0u);
    ASSERT_EQ(bytes.size(), 8 + header_length + 4);
    const std::string header = bytes.substr(8, header_length);
    const size_t json_end = header.rfind('}') + 1;
    EXPECT_LT(header.size() - json_end, 8u);
    EXPECT_EQ(header.find_first_not_of(' ', json_end), std::string::npos) << header;
    EXPECT_EQ(bytes.substr(8 + header_length), le_f32(value));
    EXPECT_EQ(SafetensorsFile::read(path).at(name).to_f32(), std::vector<float>{value});
  }
}

TEST_F(SafetensorsTest, ReadsHandBuiltFile) {
  // Keys out of offset order, spaces, metadata last and no padding: what other writers may do.
  const std::string header = R"({ "bias": {"dtype": "I32", "shape": [2], "data_offsets": [8, 16]},
      "weight": {"shape": [2, 1], "dtype": "F32", "data_offsets": [0, 8]},
      "empty": {"dtype": "F64", "shape": [0, 3], "data_offsets": [16, 16]},
      "__metadata__": {"format": "pt"} })";
  const std::string data = le_f32(1.5f) + le_f32(-2.0f) + le_i32(7) + le_i32(-9);
  const fs::path path = dir_ / "hand.safetensors";
  write_raw(path, file_bytes(header, data));

  const SafetensorsFile file = SafetensorsFile::read(path);
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.tensors()[0].name, "weight");  // file order is data order
  EXPECT_EQ(file.tensors()[1].name, "bias");
  EXPECT_EQ(file.tensors()[2].name, "empty");
  EXPECT_EQ(file.at("weight").shape, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(file.at("weight").to_f32(), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(file.at("bias").to_i32(), (std::vector<int32_t>{7, -9}));
  EXPECT_EQ(file.at("empty").dtype, DType::kF64);
  EXPECT_TRUE(file.at("empty").bytes.empty());
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_TRUE(file.contains("bias"));
  EXPECT_FALSE(file.contains("missing"));
  const std::string message = error_message([&] { file.at("missing"); });
  EXPECT_TRUE(starts_with_path(message, path)) << message;
  EXPECT_TRUE(mentions(message, "no tensor named 'missing'")) << message;
}

TEST_F(SafetensorsTest, EmptyTensorListedAfterOneAtTheSameOffset) {
  // Both begin at 0; ordering by (begin, end) puts the empty one first so the two still tile.
  const std::string header = R"({"w": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]},
                                 "e": {"dtype": "I32", "shape": [0], "data_offsets": [0, 0]}})";
  const fs::path path = dir_ / "shared_offset.safetensors";
  write_raw(path, file_bytes(header, le_i32(42)));
  const SafetensorsFile file = SafetensorsFile::read(path);
  ASSERT_EQ(file.tensors().size(), 2u);
  EXPECT_EQ(file.tensors()[0].name, "e");
  EXPECT_EQ(file.tensors()[1].to_i32(), std::vector<int32_t>{42});
}

TEST_F(SafetensorsTest, MissingFileIsRejected) {
  const fs::path path = dir_ / "absent.safetensors";
  const std::string message = read_error(path);
  EXPECT_TRUE(starts_with_path(message, path)) << message;
  EXPECT_TRUE(mentions(message, "cannot read")) << message;
}

// ---------------------------------------------------------------------------------------------
// The writer's rejections happen before anything is written

TEST_F(SafetensorsTest, WriterRejectsDuplicateNamesAndLeavesTargetUntouched) {
  const fs::path path = dir_ / "kept.safetensors";
  const float value = 1.0f;
  write_safetensors(path, {make_f32_record("w", {1}, {&value, 1})});
  const std::string before = read_raw(path);

  const std::string message = write_error(
      path, {make_f32_record("w", {1}, {&value, 1}), make_f32_record("w", {1}, {&value, 1})});
  EXPECT_TRUE(starts_with_path(message, path)) << message;
  EXPECT_TRUE(mentions(message, "duplicate tensor name 'w'")) << message;
  EXPECT_EQ(read_raw(path), before);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(SafetensorsTest, WriterRejectsByteCountMismatch) {
  const fs::path path = dir_ / "bad.safetensors";
  const std::string message =
      write_error(path, {raw_record("w", DType::kF32, {3}, std::string(8, '\0'))});
  EXPECT_TRUE(starts_with_path(message, path)) << message;
  EXPECT_TRUE(
      mentions(message, "tensor 'w' with shape [3] and dtype F32 needs 12 bytes but holds 8"))
      << message;
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(SafetensorsTest, WriterRejectsReservedName) {
  const fs::path path = dir_ / "reserved.safetensors";
  const std::string message = write_error(path, {raw_record("__metadata__", DType::kU8, {1}, "x")});
  EXPECT_TRUE(mentions(message, "'__metadata__' is reserved")) << message;
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(SafetensorsTest, FailedWriteLeavesNothingBehind) {
  const fs::path missing_dir = dir_ / "missing";
  const fs::path path = missing_dir / "out.safetensors";
  const float value = 1.0f;
  const std::string message = write_error(path, {make_f32_record("w", {1}, {&value, 1})});
  EXPECT_TRUE(starts_with_path(message, path)) << message;
  EXPECT_FALSE(fs::exists(missing_dir));
  EXPECT_TRUE(fs::is_empty(dir_));
}

// ---------------------------------------------------------------------------------------------
// Every rejection rule of the reader, one hand-crafted file each (cf. llama.cpp's
// test-backend-ops case tables).

struct BadFileCase {
  std::string name;
  std::string contents;  // the whole file
  std::string expected;  // must appear in the message, after the path
};

// gtest names the failing case instead of dumping the struct's bytes.
void PrintTo(const BadFileCase& bad, std::ostream* out) { *out << bad.name; }

// A deeply nested array: the reader must neither recurse on it nor print it.
std::string nested_arrays(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

std::vector<BadFileCase> bad_file_cases() {
  const std::string w4 = R"("w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]})";
  return {
      // Length prefix.
      {"EmptyFile", "", "file is 0 bytes, shorter than the 8-byte header length"},
      {"FileUnder8Bytes", "\x01\x02\x03", "file is 3 bytes, shorter than the 8-byte header length"},
      {"HeaderLengthOverLimit", le_u64(100'000'001) + "{}",
       "header length 100000001 exceeds the limit of 100000000 bytes"},
      {"HeaderLengthHuge", le_u64(std::numeric_limits<uint64_t>::max()),
       "header length 18446744073709551615 exceeds the limit"},
      {"HeaderPastFileEnd", le_u64(64) + "{}",
       "header length 64 reaches past the end of the 10-byte file"},
      // UTF-8.
      {"Utf8StrayByte", file_with_zero_data("{\"a\xff\": 1}", 0), "not valid UTF-8 at byte 3"},
      {"Utf8LoneContinuation", file_with_zero_data("{\"\x80\": 1}", 0),
       "not valid UTF-8 at byte 2"},
      {"Utf8Overlong", file_with_zero_data("{\"\xc0\xaf\": 1}", 0), "not valid UTF-8 at byte 2"},
      {"Utf8Surrogate", file_with_zero_data("{\"\xed\xa0\x80\": 1}", 0),
       "not valid UTF-8 at byte 2"},
      {"Utf8AboveMax", file_with_zero_data("{\"\xf4\x90\x80\x80\": 1}", 0),
       "not valid UTF-8 at byte 2"},
      {"Utf8Truncated", file_with_zero_data("{\"x\": \"\xe2\x82", 0), "not valid UTF-8 at byte 7"},
      // JSON.
      {"HeaderEmpty", file_with_zero_data("", 0), "header is not valid JSON"},
      {"HeaderNotJson", file_with_zero_data("{\"w\": ", 0), "header is not valid JSON"},
      {"HeaderTrailingGarbage", file_with_zero_data("{} x", 0), "header is not valid JSON"},
      {"HeaderArray", file_with_zero_data("[]", 0), "header is a JSON array, not a JSON object"},
      {"HeaderString", file_with_zero_data("\"w\"", 0),
       "header is a JSON string, not a JSON object"},
      // Entries.
      {"EntryNotObject", file_with_zero_data(R"({"w": 5})", 0),
       "tensor 'w' is a JSON number, not an object"},
      {"EntryDeeplyNested", file_with_zero_data("{\"w\": " + nested_arrays(100'000) + "}", 0),
       "tensor 'w' is a JSON array, not an object"},
      {"EntryMissingKey", file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [1]}})", 0),
       "tensor 'w' is missing key 'data_offsets'"},
      {"EntryExtraKey",
       file_with_zero_data(
           R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "strides": [1]}})", 4),
       "tensor 'w' has unexpected key 'strides'"},
      {"DtypeUnknown",
       file_with_zero_data(R"({"w": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}})", 4),
       "tensor 'w': unknown dtype \"F33\""},
      {"DtypeLowercase",
       file_with_zero_data(R"({"w": {"dtype": "f32", "shape": [1], "data_offsets": [0, 4]}})", 4),
       "tensor 'w': unknown dtype \"f32\""},
      {"DtypeNotString",
       file_with_zero_data(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", 4),
       "tensor 'w': dtype is 4, not a string"},
      {"ShapeNotArray",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}})", 4),
       "tensor 'w': shape is 1, not an array"},
      {"ShapeNegative",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4),
       "tensor 'w': shape[0] is -1, not a non-negative integer"},
      {"ShapeFraction",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [1, 1.5], "data_offsets": [0, 4]}})",
                           4),
       "tensor 'w': shape[1] is 1.5, not a non-negative integer"},
      {"ShapeString",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}})", 4),
       "tensor 'w': shape[0] is \"1\", not a non-negative integer"},
      {"ShapeAbove2To63",
       file_with_zero_data(
           R"({"w": {"dtype": "U8", "shape": [9223372036854775808], "data_offsets": [0, 4]}})", 4),
       "tensor 'w': shape[0] is 9223372036854775808, not a non-negative integer below 2^63"},
      {"ShapeDeeplyNested",
       file_with_zero_data(R"({"w": {"dtype": "F32", "data_offsets": [0, 4], "shape": [)" +
                               nested_arrays(100'000) + "]}}",
                           4),
       "tensor 'w': shape[0] is a JSON array, not a non-negative integer"},
      {"OffsetsNotArray",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": 0}})", 4),
       "tensor 'w': data_offsets is 0, not an array"},
      {"OffsetsOneElement",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4]}})", 4),
       "tensor 'w': data_offsets has 1 elements, not 2"},
      {"OffsetsThreeElements",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})",
                           4),
       "tensor 'w': data_offsets has 3 elements, not 2"},
      {"OffsetsNegative",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4),
       "tensor 'w': data_offsets[0] is -4, not a non-negative integer"},
      {"OffsetsFraction",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}})", 4),
       "tensor 'w': data_offsets[1] is 4.0, not a non-negative integer"},
      {"OffsetsBeginAfterEnd",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8),
       "tensor 'w': data_offsets begin 8 is after end 4"},
      // Sizes.
      {"SizeMismatch",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8),
       "tensor 'w': shape [3] of F32 needs 12 bytes but data_offsets [0, 8] span 8"},
      {"SizeOverflowInShape",
       file_with_zero_data(
           R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})",
           0),
       "tensor 'w': shape [4294967296, 4294967296] of U8 overflows 64 bits"},
      {"SizeOverflowByDtype",
       file_with_zero_data(
           R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", 0),
       "tensor 'w': shape [4611686018427387904] of F32 overflows 64 bits"},
      // Layout.
      {"GapAtStart",
       file_with_zero_data(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8),
       "gap before the first tensor 'w' (data_offsets [4, 8]): data must start at offset 0"},
      {"GapBetween",
       file_with_zero_data(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                               "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                           12),
       "gap between tensor 'a', which ends at 4, and tensor 'b' (data_offsets [8, 12])"},
      {"Overlap",
       file_with_zero_data(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                           12),
       "tensor 'b' (data_offsets [4, 12]) overlaps tensor 'a', which ends at 8"},
      {"SameRangeTwice",
       file_with_zero_data(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                               "b": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})",
                           4),
       "tensor 'b' (data_offsets [0, 4]) overlaps tensor 'a', which ends at 4"},
      {"DataPastFileEnd", file_with_zero_data("{" + w4 + "}", 2),
       "tensor 'w' ends at data offset 4, past the end of the file (2 data bytes)"},
      {"TrailingBytes", file_with_zero_data("{" + w4 + "}", 5),
       "tensor data ends at offset 4 but the file holds 5 data bytes: data does not end at the end "
       "of file"},
      {"TrailingBytesWithoutTensors", file_with_zero_data("{}", 3),
       "tensor data ends at offset 0 but the file holds 3 data bytes"},
      // Duplicates, which nlohmann::json alone would silently merge.
      {"DuplicateName",
       file_with_zero_data(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                               "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                           8),
       "duplicate tensor name 'a'"},
      {"DuplicateNameIdenticalEntry", file_with_zero_data("{" + w4 + ", " + w4 + "}", 4),
       "duplicate tensor name 'w'"},
      {"DuplicateKeyInEntry",
       file_with_zero_data(
           R"({"w": {"dtype": "F32", "dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})", 4),
       "duplicate key 'dtype' in entry 'w'"},
      {"DuplicateMetadata",
       file_with_zero_data(R"({"__metadata__": {}, "__metadata__": {"k": "v"}})", 0),
       "duplicate '__metadata__' entry"},
      {"DuplicateMetadataKey", file_with_zero_data(R"({"__metadata__": {"k": "v", "k": "u"}})", 0),
       "duplicate key 'k' in entry '__metadata__'"},
      // Metadata.
      {"MetadataNotObject", file_with_zero_data(R"({"__metadata__": ["k", "v"]})", 0),
       "__metadata__ is a JSON array, not an object of strings"},
      {"MetadataNull", file_with_zero_data(R"({"__metadata__": null})", 0),
       "__metadata__ is a JSON null, not an object of strings"},
      {"MetadataValueNumber", file_with_zero_data(R"({"__metadata__": {"k": 1}})", 0),
       "__metadata__['k'] is 1, not a string"},
      {"MetadataValueObject", file_with_zero_data(R"({"__metadata__": {"k": {}}})", 0),
       "__metadata__['k'] is a JSON object, not a string"},
  };
}

class SafetensorsRejectTest : public SafetensorsTest,
                              public ::testing::WithParamInterface<BadFileCase> {};

TEST_P(SafetensorsRejectTest, ErrorNamesFileAndProblem) {
  const BadFileCase& bad = GetParam();
  const fs::path path = dir_ / (bad.name + ".safetensors");
  write_raw(path, bad.contents);
  const std::string message = read_error(path);
  EXPECT_TRUE(starts_with_path(message, path)) << message;
  EXPECT_TRUE(mentions(message, bad.expected)) << message;
}

INSTANTIATE_TEST_SUITE_P(BadFiles, SafetensorsRejectTest, ::testing::ValuesIn(bad_file_cases()),
                         [](const ::testing::TestParamInfo<BadFileCase>& case_info) {
                           return case_info.param.name;
                         });

}  // namespace
}  // namespace moeref
