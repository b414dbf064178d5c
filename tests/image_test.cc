// Image input: PNG (fixtures written here with libpng), PPM and safetensors decoding, the
// bilinear resize, channel matching, normalisation and load_image end to end. Every expected
// value is worked out by hand from the documented rules, in the comments next to it.
#include "ref/io/image.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <png.h>
#include <sys/resource.h>
#include <zlib.h>

#include <bit>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/io/safetensors.h"
#include "tests/test_support.h"

namespace moeref {
namespace {

namespace fs = std::filesystem;
using test_support::read_file;
using test_support::TempDir;
using ::testing::HasSubstr;
using namespace std::string_literals;  // file contents with embedded zero bytes

void write_bytes(const fs::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  ASSERT_TRUE(out) << path;
}

// Reading `path` throws an ImageError whose message starts with the path and contains `parts`.
void expect_image_error(const fs::path& path, const std::vector<std::string>& parts) {
  try {
    read_pixels(path);
    ADD_FAILURE() << "no ImageError for " << path;
  } catch (const ImageError& e) {
    const std::string message = e.what();
    EXPECT_TRUE(message.starts_with(path.string() + ": ")) << message;
    for (const std::string& part : parts) EXPECT_THAT(message, HasSubstr(part));
  }
}

// Expected values are written as exact fractions in double (v / 255.0, v / 1000.0, ...); the
// reader rounds each once to fp32.
void expect_pixels(const PixelImage& image, int64_t channels, int64_t height, int64_t width,
                   const std::vector<double>& expected) {
  EXPECT_EQ(image.channels, channels);
  EXPECT_EQ(image.height, height);
  EXPECT_EQ(image.width, width);
  ASSERT_EQ(image.values.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(image.values[i], static_cast<float>(expected[i])) << "at " << i;
  }
}

VisionConfig vision_config(int64_t image_size, int64_t channels, std::vector<double> mean,
                           std::vector<double> std) {
  VisionConfig vision;
  vision.image_size = image_size;
  vision.channels = channels;
  vision.mean = std::move(mean);
  vision.std = std::move(std);
  return vision;
}

// ---------------------------------------------------------------------------------------------
// PNG fixtures, written with libpng's write API.

struct PngFixture {
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  int bit_depth = 8;
  int color_type = PNG_COLOR_TYPE_RGB;
  std::vector<std::vector<png_byte>> rows;  // packed as stored: MSB first, 16 bit big-endian
  std::vector<png_color> palette{};
  std::vector<png_byte> palette_alpha{};  // a tRNS chunk, when not empty
  int interlace = PNG_INTERLACE_NONE;
};

// libpng's errors longjmp here; nothing in this frame has a destructor.
bool run_png_writer(png_structp writer, png_infop info, std::FILE* file, const PngFixture& png,
                    png_bytepp rows) {
  if (setjmp(png_jmpbuf(writer))) return false;
  png_init_io(writer, file);
  png_set_IHDR(writer, info, png.width, png.height, png.bit_depth, png.color_type, png.interlace,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!png.palette.empty()) {
    png_set_PLTE(writer, info, png.palette.data(), static_cast<int>(png.palette.size()));
  }
  if (!png.palette_alpha.empty()) {
    png_set_tRNS(writer, info, png.palette_alpha.data(), static_cast<int>(png.palette_alpha.size()),
                 nullptr);
  }
  png_write_info(writer, info);
  png_write_image(writer, rows);
  png_write_end(writer, nullptr);
  return true;
}

void write_png(const fs::path& path, PngFixture png) {
  std::vector<png_bytep> rows;
  for (std::vector<png_byte>& row : png.rows) rows.push_back(row.data());
  std::FILE* file = std::fopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  png_structp writer = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(writer);
  const bool written = run_png_writer(writer, info, file, png, rows.data());
  png_destroy_write_struct(&writer, &info);
  ASSERT_EQ(std::fclose(file), 0) << path;
  ASSERT_TRUE(written) << path;
}

// 8-bit RGB, 3 wide and 2 high: pixel (y, x) has channel c = 10 * (3 * (3 * y + x) + c + 1).
PngFixture rgb_3x2() {
  return {3,
          2,
          8,
          PNG_COLOR_TYPE_RGB,
          {{10, 20, 30, 40, 50, 60, 70, 80, 90}, {100, 110, 120, 130, 140, 150, 160, 170, 180}}};
}

TEST(ImagePng, Rgb8IsPlanarChannelMajor) {
  const TempDir dir;
  const fs::path path = dir.path() / "rgb.png";
  write_png(path, rgb_3x2());
  const PixelImage image = read_pixels(path);
  ASSERT_EQ(image.channels, 3);
  ASSERT_EQ(image.height, 2);
  ASSERT_EQ(image.width, 3);
  // The layout: values[c * H * W + y * W + x] holds byte 3 * x + c of row y, divided by 255.
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t y = 0; y < 2; ++y) {
      for (int64_t x = 0; x < 3; ++x) {
        const double byte = 10.0 * static_cast<double>(3 * (3 * y + x) + c + 1);
        EXPECT_EQ(image.values[c * 6 + y * 3 + x], static_cast<float>(byte / 255.0))
            << c << " " << y << " " << x;
      }
    }
  }
  EXPECT_EQ(image.values[2 * 6 + 1 * 3 + 0], static_cast<float>(120 / 255.0));  // B of (1, 0)
}

struct PngCase {
  const char* name;
  PngFixture png;
  int64_t channels;
  std::vector<double> expected;  // planar
};

std::vector<PngCase> png_cases() {
  std::vector<PngCase> cases;
  // 16-bit samples are big-endian pairs: 0x0102 = 258, 0x8000 = 32768, 0xFFFF = 65535.
  cases.push_back({"gray 16 bit",
                   {3, 1, 16, PNG_COLOR_TYPE_GRAY, {{0x01, 0x02, 0x80, 0x00, 0xFF, 0xFF}}},
                   1,
                   {258 / 65535.0, 32768 / 65535.0, 1.0}});
  // Alpha is dropped, not composited: a fully transparent red pixel is still red.
  cases.push_back({"RGBA 8 bit",
                   {2, 1, 8, PNG_COLOR_TYPE_RGB_ALPHA, {{255, 0, 0, 0, 0, 128, 255, 77}}},
                   3,
                   {1.0, 0.0, 0.0, 128 / 255.0, 0.0, 1.0}});
  cases.push_back(
      {"RGBA 16 bit",
       {1, 1, 16, PNG_COLOR_TYPE_RGB_ALPHA, {{0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0x00, 0x00}}},
       3,
       {0x1234 / 65535.0, 0x5678 / 65535.0, 0x9ABC / 65535.0}});
  cases.push_back({"gray + alpha 8 bit",
                   {2, 1, 8, PNG_COLOR_TYPE_GRAY_ALPHA, {{7, 0, 200, 255}}},
                   1,
                   {7 / 255.0, 200 / 255.0}});
  // 2-bit indices 2 1 0 1, first pixel in the high bits: 10 01 00 01 = 0x91. The tRNS chunk
  // gives entries 0 and 1 alpha, which is dropped like an alpha channel.
  cases.push_back({"palette 2 bit with tRNS",
                   {4,
                    1,
                    2,
                    PNG_COLOR_TYPE_PALETTE,
                    {{0x91}},
                    {{255, 0, 0}, {0, 255, 0}, {0, 0, 51}},
                    {255, 0}},
                   3,
                   {0, 0, 1, 0, /**/ 0, 1, 0, 1, /**/ 51 / 255.0, 0, 0, 0}});
  // Rows of 10 bits: 10101100 11______ = 0xAC 0xC0 and 00000000 01______ = 0x00 0x40.
  cases.push_back({"gray 1 bit",
                   {10, 2, 1, PNG_COLOR_TYPE_GRAY, {{0xAC, 0xC0}, {0x00, 0x40}}},
                   1,
                   {1, 0, 1, 0, 1, 1, 0, 0, 1, 1, /**/ 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}});
  // A d-bit sample v is v / (2^d - 1): 00 01 10 11 = 0x1B is 0, 1/3, 2/3, 1.
  cases.push_back(
      {"gray 2 bit", {4, 1, 2, PNG_COLOR_TYPE_GRAY, {{0x1B}}}, 1, {0.0, 1 / 3.0, 2 / 3.0, 1.0}});
  cases.push_back({"gray 8 bit Adam7 interlaced",
                   {3,
                    3,
                    8,
                    PNG_COLOR_TYPE_GRAY,
                    {{0, 10, 20}, {30, 40, 50}, {60, 70, 80}},
                    {},
                    {},
                    PNG_INTERLACE_ADAM7},
                   1,
                   {0, 10 / 255.0, 20 / 255.0, 30 / 255.0, 40 / 255.0, 50 / 255.0, 60 / 255.0,
                    70 / 255.0, 80 / 255.0}});
  return cases;
}

TEST(ImagePng, EveryColorTypeAndBitDepth) {
  const TempDir dir;
  for (const PngCase& c : png_cases()) {
    SCOPED_TRACE(c.name);
    const fs::path path = dir.path() / "case.png";
    write_png(path, c.png);
    expect_pixels(read_pixels(path), c.channels, c.png.height, c.png.width, c.expected);
  }
}

TEST(ImagePng, TruncatedCorruptAndOversizedFilesAreErrors) {
  const TempDir dir;
  const fs::path valid = dir.path() / "valid.png";
  write_png(valid, rgb_3x2());
  const std::string bytes = read_file(valid);

  const fs::path half = dir.path() / "half.png";
  write_bytes(half, bytes.substr(0, bytes.size() / 2));
  expect_image_error(half, {"cannot decode PNG", "truncated"});

  // All the pixel data but not the closing IEND chunk (its last 12 bytes) is still cut short.
  const fs::path no_iend = dir.path() / "no_iend.png";
  write_bytes(no_iend, bytes.substr(0, bytes.size() - 12));
  expect_image_error(no_iend, {"cannot decode PNG", "truncated"});

  // Bytes 16..19 are IHDR's width; changing one breaks the chunk's CRC.
  std::string corrupt = bytes;
  corrupt[19] = static_cast<char>(corrupt[19] ^ 0x40);
  const fs::path bad_crc = dir.path() / "bad_crc.png";
  write_bytes(bad_crc, corrupt);
  expect_image_error(bad_crc, {"cannot decode PNG", "CRC"});

  // A valid IHDR (CRC recomputed) claiming 4000 x 4000 RGB pixels (within the pixel limit) in a
  // file of ~80 bytes: rejected before 48 MB of rows are allocated.
  std::string oversized = bytes;
  const std::string side = "\x00\x00\x0F\xA0"s;  // 4000, big-endian
  oversized.replace(16, 4, side);
  oversized.replace(20, 4, side);
  const uLong crc = crc32(0, reinterpret_cast<const Bytef*>(oversized.data() + 12), 17);
  for (int i = 0; i < 4; ++i) oversized[29 + i] = static_cast<char>((crc >> (24 - 8 * i)) & 0xFF);
  const fs::path huge = dir.path() / "huge.png";
  write_bytes(huge, oversized);
  expect_image_error(huge, {"cannot decode PNG", "truncated", "IHDR"});
}

// A PNG chunk: its length, type, data and CRC (over type and data), big-endian.
std::string png_chunk(const std::string& type, const std::string& data, uint32_t length) {
  std::string chunk;
  for (int shift = 24; shift >= 0; shift -= 8) chunk += static_cast<char>(length >> shift & 0xFF);
  chunk += type + data;
  const std::string covered = type + data;
  const uLong crc =
      crc32(0, reinterpret_cast<const Bytef*>(covered.data()), static_cast<uInt>(covered.size()));
  for (int shift = 24; shift >= 0; shift -= 8) chunk += static_cast<char>(crc >> shift & 0xFF);
  return chunk;
}

// The peak resident memory of this process, in bytes.
int64_t peak_resident_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return int64_t{usage.ru_maxrss} * 1024;
}

// A 45-byte file: a 32 x 32 RGB header, then a tEXt chunk that claims 2^31 - 1 bytes and holds
// none. libpng allocated (and touched) the claimed 2 GB before finding the file cut short; the
// chunk is now skipped unread. Run in a child process, whose peak memory is its own.
TEST(ImagePngDeathTest, AncillaryChunkLengthIsNotAllocated) {
  const TempDir dir;
  const std::string ihdr = "\x00\x00\x00\x20\x00\x00\x00\x20\x08\x02\x00\x00\x00"s;
  const fs::path path = dir.path() / "claims_2gb.png";
  write_bytes(path, "\x89PNG\r\n\x1a\n"s + png_chunk("IHDR", ihdr, 13) +
                        png_chunk("tEXt", "", 0x7FFFFFFF).substr(0, 8));
  EXPECT_EXIT(
      {
        try {
          read_pixels(path);
        } catch (const ImageError& e) {
          std::fprintf(stderr, "%s\n", e.what());
        }
        std::fprintf(stderr, "peak %lld MB\n", static_cast<long long>(peak_resident_bytes() >> 20));
        std::exit(peak_resident_bytes() < (int64_t{512} << 20) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "truncated");
}

// Skipping the chunks that are not used does not reject a valid image that has large ones: a
// 2 x 1 gray image with 100 KB tEXt and iTXt chunks (larger than any chunk libpng may allocate).
TEST(ImagePng, LargeTextChunksAreSkipped) {
  const TempDir dir;
  const std::string ihdr = "\x00\x00\x00\x02\x00\x00\x00\x01\x08\x00\x00\x00\x00"s;
  const std::string text = "key\0"s + std::string(100'000, 'x');
  const std::string rows = "\x00\x33\xFF"s;  // filter byte 0, then the samples 51 and 255
  std::string compressed(compressBound(rows.size()), '\0');
  uLongf compressed_size = compressed.size();
  ASSERT_EQ(compress(reinterpret_cast<Bytef*>(compressed.data()), &compressed_size,
                     reinterpret_cast<const Bytef*>(rows.data()), rows.size()),
            Z_OK);
  compressed.resize(compressed_size);
  const auto chunk = [](const std::string& type, const std::string& data) {
    return png_chunk(type, data, static_cast<uint32_t>(data.size()));
  };
  const fs::path path = dir.path() / "with_text.png";
  write_bytes(path, "\x89PNG\r\n\x1a\n"s + chunk("IHDR", ihdr) + chunk("tEXt", text) +
                        chunk("iTXt", "key\0\0\0\0\0"s + text) + chunk("IDAT", compressed) +
                        chunk("IEND", ""));
  expect_pixels(read_pixels(path), 1, 1, 2, {51 / 255.0, 1});
}

TEST(ImagePng, MoreThanThePixelLimitIsRefusedBeforeDecoding) {
  const TempDir dir;
  // 1-bit gray, 4097 x 4096 = kMaxImagePixels + 4096 pixels, in a few kilobytes of all-zero rows.
  PngFixture png{4097, 4096, 1, PNG_COLOR_TYPE_GRAY, {}};
  png.rows.assign(4096, std::vector<png_byte>(513, 0));
  const fs::path path = dir.path() / "wide.png";
  write_png(path, png);
  ASSERT_LT(fs::file_size(path), 100'000u);
  expect_image_error(path, {"cannot decode PNG",
                            "4097 x 4096 = 16781312 pixels, more than the limit of 16777216"});
}

// ---------------------------------------------------------------------------------------------
// PPM

struct PpmCase {
  const char* name;
  std::string contents;
  int64_t height;
  int64_t width;
  std::vector<double> expected;  // planar: R plane, G plane, B plane
};

TEST(ImagePpm, BinaryAndAsciiWithCommentsAndMaxvals) {
  const std::vector<PpmCase> cases = {
      {"P6 maxval 255, comments",
       "P6\n# made by hand\n2 1 # two pixels\n255\n"s + "\x00\x33\x66\x99\xCC\xFF"s,
       1,
       2,
       {0, 153 / 255.0, 51 / 255.0, 204 / 255.0, 102 / 255.0, 1}},
      // maxval > 255: two big-endian bytes per sample; (0, 500, 1000) and (1, 999, 250).
      {"P6 maxval 1000",
       "P6 1 2 1000\n"s + "\x00\x00\x01\xF4\x03\xE8\x00\x01\x03\xE7\x00\xFA"s,
       2,
       1,
       {0, 1 / 1000.0, 500 / 1000.0, 999 / 1000.0, 1, 250 / 1000.0}},
      {"P6 maxval 1", "P6 2 1 1\n"s + "\x00\x01\x00\x01\x01\x00"s, 1, 2, {0, 1, 1, 1, 0, 0}},
      {"P3 maxval 255, comments",
       "P3\n#c\n2 2\n255\n0 0 0  255 255 255\n# row two\n51 102 153\n1 2 3\n",
       2,
       2,
       {0, 1, 51 / 255.0, 1 / 255.0, 0, 1, 102 / 255.0, 2 / 255.0, 0, 1, 153 / 255.0, 3 / 255.0}},
      {"P3 maxval 1000", "P3 1 1 1000 1000 500 0", 1, 1, {1, 0.5, 0}},
  };
  const TempDir dir;
  for (const PpmCase& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path path = dir.path() / "case.ppm";
    write_bytes(path, c.contents);
    expect_pixels(read_pixels(path), 3, c.height, c.width, c.expected);
  }
}

struct BadFileCase {
  const char* name;
  std::string contents;
  std::vector<std::string> message_parts;
};

TEST(ImageFile, BadFilesAreErrorsNamingTheProblem) {
  const std::string p6 = "P6\n2 2\n255\n"s + std::string(12, '\x07');
  const std::string p3 = "P3\n2 2\n255\n0 0 0 255 255 255\n51 102 153 1 2 3\n";
  const std::vector<BadFileCase> cases = {
      {"garbage", "hello, this is not an image", {"not a PNG, PPM or safetensors image"}},
      {"empty", "", {"not a PNG, PPM or safetensors image"}},
      {"PPM zero width", "P6 0 2 255\n", {"PPM width is '0', expected an integer in 1.."}},
      {"PPM zero height", "P3 2 0 255\n", {"PPM height is '0'"}},
      {"PPM width not a number", "P6 abc 2 255\n", {"PPM width is 'abc'"}},
      {"PPM negative height", "P3 2 -1 255\n", {"PPM height is '-1'"}},
      {"PPM maxval 0",
       "P6 1 1 0\n\x00\x00\x00"s,
       {"PPM maxval is '0', expected an integer in 1..65535"}},
      {"PPM maxval 65536", "P6 1 1 65536\n", {"PPM maxval is '65536'"}},
      {"PPM header cut short", "P6 2 ", {"truncated", "before the PPM height"}},
      {"P6 maxval not followed by whitespace",
       "P6 1 1 255#\x01\x02\x03"s,
       {"maxval must be followed by one whitespace character"}},
      {"P6 sample above maxval",
       "P6 2 1 100\n\x00\x00\x00\x00\xC8\x00"s,
       {"sample 200 at row 0, column 1, channel 1 is above maxval 100"}},
      {"P3 sample above maxval",
       "P3 1 2 255\n0 0 0\n0 0 256\n",
       {"sample 256 at row 1, column 0, channel 2 is above maxval 255"}},
      {"P3 sample not a number", "P3 1 1 255\n1 x 3\n", {"P3 sample 'x' at row 0, column 0"}},
      {"P6 truncated", p6.substr(0, p6.size() / 2), {"truncated", "needs 12 samples of 1 byte"}},
      {"P6 maxval 1000 truncated",
       "P6 1 1 1000\n\x00\x01\x00\x02\x00"s,
       {"truncated", "3 samples of 2 bytes", "has 5 bytes"}},
      {"P3 truncated", p3.substr(0, p3.size() / 2), {"truncated"}},
      {"PPM more pixels than the limit",
       "P6 4097 4096 255\n",
       {"the PPM image is 4097 x 4096 = 16781312 pixels, more than the limit of 16777216"}},
      {"P6 data after the image", p6 + "\n", {"1 bytes after the P6 image data"}},
      {"P3 data after the image", p3 + "4\n", {"data after the last P3 sample: '4'"}},
      {"invalid safetensors", "\xFF\x00\x00\x00\x00\x00\x00\x00{}"s, {"header"}},
  };
  const TempDir dir;
  for (const BadFileCase& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path path = dir.path() / "bad.img";
    write_bytes(path, c.contents);
    expect_image_error(path, c.message_parts);
  }
}

TEST(ImageFile, MissingFileAndDirectoryAreErrors) {
  const TempDir dir;
  expect_image_error(dir.path() / "missing.png", {"cannot open", "No such file or directory"});
  expect_image_error(dir.path(), {"is a directory"});
}

// ---------------------------------------------------------------------------------------------
// safetensors

TEST(ImageSafetensors, ValuesAreTakenAsGiven) {
  const TempDir dir;
  const fs::path path = dir.path() / "image.safetensors";
  const std::vector<float> values = {-1.5f, 0.0f, 2.0f, 7.25f, 0.1f, 1.0f};
  write_safetensors(path, {make_f32_record("image", {2, 1, 3}, values)});
  const PixelImage image = read_pixels(path);
  EXPECT_EQ(image.channels, 2);
  EXPECT_EQ(image.height, 1);
  EXPECT_EQ(image.width, 3);
  EXPECT_EQ(image.values, values);
}

struct SafetensorsCase {
  const char* name;
  std::vector<TensorRecord> tensors;
  std::string message_part;
};

TEST(ImageSafetensors, OneFiniteF32TensorNamedImage) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> four = {0, 0, 0, 0};
  const std::vector<SafetensorsCase> cases = {
      {"no image tensor", {make_f32_record("pixels", {1, 2, 2}, four)}, "no tensor named 'image'"},
      {"another tensor",
       {make_f32_record("image", {1, 2, 2}, four),
        make_f32_record("label", {1}, std::vector<float>{1})},
       "has tensors other than 'image' ('label')"},
      {"dtype I32",
       {make_i32_record("image", {1, 1, 1}, std::vector<int32_t>{3})},
       "tensor 'image' has dtype I32, expected F32"},
      {"rank 2",
       {make_f32_record("image", {2, 2}, four)},
       "tensor 'image' has shape [2, 2], expected [channels, height, width]"},
      {"zero height",
       {make_f32_record("image", {3, 0, 2}, {})},
       "shape [3, 0, 2]: zero channels, height or width"},
      {"NaN",
       {make_f32_record("image", {1, 2, 2}, std::vector<float>{0, 0, nan, 0})},
       "non-finite value (nan) at [0, 1, 0]"},
      {"infinity",
       {make_f32_record("image", {2, 1, 2}, std::vector<float>{0, 0, 0, -inf})},
       "non-finite value (-inf) at [1, 0, 1]"},
  };
  const TempDir dir;
  for (const SafetensorsCase& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path path = dir.path() / "image.safetensors";
    write_safetensors(path, c.tensors);
    expect_image_error(path, {c.message_part});
  }
}

// ---------------------------------------------------------------------------------------------
// resize_bilinear

struct ResizeCase {
  const char* name;
  int64_t channels;
  int64_t in_height;
  int64_t in_width;
  std::vector<float> input;
  int64_t height;
  int64_t width;
  std::vector<float> expected;
};

// Along an axis, output d reads src = max(0, (d + 0.5) * in / out - 0.5) between floor(src) and
// min(floor(src) + 1, in - 1), weight src - floor(src) on the second. Values are chosen so every
// expected result is exact.
std::vector<ResizeCase> resize_cases() {
  return {
      // in 2, out 4: src = d / 2 - 0.25 = -0.25 (clamped to 0), 0.25, 0.75, 1.25; the last reads
      // pixels 1 and min(2, 1) = 1. So each axis gives p0, 0.75 p0 + 0.25 p1, 0.25 p0 + 0.75 p1,
      // p1:
      // rows [0, 4] -> [0, 1, 3, 4] and [8, 12] -> [8, 9, 11, 12], then down the columns.
      {"2x2 to 4x4",
       1,
       2,
       2,
       {0, 4, 8, 12},
       4,
       4,
       {0, 1, 3, 4, 2, 3, 5, 6, 6, 7, 9, 10, 8, 9, 11, 12}},
      // in 4, out 2: src = 2 d + 0.5, halfway between pixels 2d and 2d + 1 on both axes: each
      // output is the mean of a 2x2 block of 0..15, e.g. (0 + 1 + 4 + 5) / 4 = 2.5.
      {"4x4 to 2x2",
       1,
       4,
       4,
       {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
       2,
       2,
       {2.5f, 4.5f, 10.5f, 12.5f}},
      // in 3, out 2: src = 1.5 d + 0.25 = 0.25, 1.75: 0.75 * 0 + 0.25 * 4 = 1 and
      // 0.25 * 4 + 0.75 * 8 = 7. No antialiasing: only the two neighbours count.
      {"1x3 to 1x2", 1, 1, 3, {0, 4, 8}, 1, 2, {1, 7}},
      // in 3, out 4: src = 0.75 d - 0.125 = 0 (clamped), 0.625, 1.375, 2.125 (pixels 2 and 2):
      // 0, 0.375 * 0 + 0.625 * 8 = 5, 0.625 * 8 + 0.375 * 16 = 11, 16.
      {"1x3 to 1x4", 1, 1, 3, {0, 8, 16}, 1, 4, {0, 5, 11, 16}},
      // in 2, out 3: src = (d + 0.5) * 2 / 3 - 0.5 = -1/6 (clamped to 0), 0.5, 7/6 (columns 1
      // and min(2, 1) = 1): the edges clamp to 0 and 6, the middle is their mean.
      {"1x2 to 1x3, edges clamp", 1, 1, 2, {0, 6}, 1, 3, {0, 3, 6}},
      {"1x1 to 2x3", 1, 1, 1, {5}, 2, 3, {5, 5, 5, 5, 5, 5}},
      // Channels are resized independently, planes in order: [0, 4] -> [0, 1, 3, 4] and
      // [8, 0] -> [8, 6, 2, 0].
      {"2 channels, 1x2 to 1x4", 2, 1, 2, {0, 4, 8, 0}, 1, 4, {0, 1, 3, 4, 8, 6, 2, 0}},
  };
}

TEST(ImageResize, HandComputedCases) {
  for (const ResizeCase& c : resize_cases()) {
    SCOPED_TRACE(c.name);
    const PixelImage input{c.channels, c.in_height, c.in_width, c.input};
    const PixelImage resized = resize_bilinear(input, c.height, c.width);
    EXPECT_EQ(resized.channels, c.channels);
    EXPECT_EQ(resized.height, c.height);
    EXPECT_EQ(resized.width, c.width);
    EXPECT_EQ(resized.values, c.expected);
  }
}

TEST(ImageResize, SameSizeIsBitIdentical) {
  const PixelImage image{1, 2, 2, {0.1f, -0.0f, 1e30f, std::numeric_limits<float>::denorm_min()}};
  const PixelImage same = resize_bilinear(image, 2, 2);
  ASSERT_EQ(same.values.size(), image.values.size());
  for (size_t i = 0; i < image.values.size(); ++i) {
    EXPECT_EQ(std::bit_cast<uint32_t>(same.values[i]), std::bit_cast<uint32_t>(image.values[i]));
  }
}

TEST(ImageResize, RejectsBadArguments) {
  const PixelImage image{1, 1, 2, {0, 1}};
  EXPECT_THROW(resize_bilinear(image, 0, 2), std::invalid_argument);
  EXPECT_THROW(resize_bilinear(PixelImage{1, 2, 2, {0, 1}}, 2, 2), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// match_channels and normalize_image

TEST(ImageChannels, GrayIsReplicatedOtherMismatchesAreErrors) {
  const PixelImage gray{1, 1, 2, {0.25f, 0.5f}};
  EXPECT_EQ(match_channels(gray, 1, "g.png").values, gray.values);
  const PixelImage rgb = match_channels(gray, 3, "g.png");
  EXPECT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.values, (std::vector<float>{0.25f, 0.5f, 0.25f, 0.5f, 0.25f, 0.5f}));

  try {
    match_channels(rgb, 1, "photo.png");
    ADD_FAILURE() << "no ImageError";
  } catch (const ImageError& e) {
    EXPECT_STREQ(e.what(), "photo.png: image has 3 channels, the config's vision.channels is 1");
  }
  EXPECT_THROW(match_channels(PixelImage{2, 1, 1, {0, 0}}, 3, "two.png"), ImageError);
}

TEST(ImageNormalize, PerChannelMeanAndStd) {
  // Channel 0: (p - 0.5) / 0.25; channel 1: (p - 0.25) / 2; channel 2: p.
  const PixelImage image{3, 1, 2, {1, 0, 1, 0.25f, 0.75f, 0}};
  const Tensor normalized =
      normalize_image(image, vision_config(2, 3, {0.5, 0.25, 0}, {0.25, 2, 1}));
  EXPECT_EQ(normalized.shape(), (std::vector<int64_t>{3, 1, 2}));
  EXPECT_EQ(std::vector<float>(normalized.values().begin(), normalized.values().end()),
            (std::vector<float>{2, -2, 0.375f, 0, 0.75f, 0}));
  EXPECT_THROW(normalize_image(image, vision_config(2, 1, {0}, {1})), std::invalid_argument);
}

TEST(ImageNormalize, ComputedInDoubleRoundedOnce) {
  // 0.1f is 0.100000001490116119384765625; minus the double 0.1 that leaves 53687091 / 2^55,
  // about 1.49011611e-9. In fp32, 0.1f - (float)0.1 would be 0.
  const Tensor normalized =
      normalize_image(PixelImage{1, 1, 1, {0.1f}}, vision_config(1, 1, {0.1}, {1}));
  EXPECT_FLOAT_EQ(normalized.values()[0], 1.4901161e-9f);
}

// ---------------------------------------------------------------------------------------------
// load_image end to end

TEST(ImageLoad, PngIsResizedAndNormalized) {
  const TempDir dir;
  const fs::path path = dir.path() / "small.png";
  // 2x2 RGB: R is 0 on the left and 255 on the right, G 255 on top and 0 below, B 51 everywhere.
  write_png(path,
            {2, 2, 8, PNG_COLOR_TYPE_RGB, {{0, 255, 51, 255, 255, 51}, {0, 0, 51, 255, 0, 51}}});
  const Tensor input = load_image(path, vision_config(4, 3, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}));
  ASSERT_EQ(input.shape(), (std::vector<int64_t>{3, 4, 4}));
  // 2 -> 4 along each axis gives p0, 0.75 p0 + 0.25 p1, 0.25 p0 + 0.75 p1, p1: R is
  // [0, 0.25, 0.75, 1] along every row, G [1, 0.75, 0.25, 0] down every column; then
  // (p - 0.5) / 0.5 makes them [-1, -0.5, 0.5, 1] and [1, 0.5, -0.5, -1]. B: (0.2 - 0.5) / 0.5.
  const std::vector<float> steps = {-1, -0.5f, 0.5f, 1};
  for (int64_t y = 0; y < 4; ++y) {
    for (int64_t x = 0; x < 4; ++x) {
      EXPECT_EQ(input.values()[0 * 16 + y * 4 + x], steps[x]);
      EXPECT_EQ(input.values()[1 * 16 + y * 4 + x], steps[3 - y]);
      EXPECT_FLOAT_EQ(input.values()[2 * 16 + y * 4 + x], -0.6f);
    }
  }
}

TEST(ImageLoad, GrayPngIsReplicatedToThreeChannels) {
  const TempDir dir;
  const fs::path path = dir.path() / "gray.png";
  write_png(path, {2, 2, 8, PNG_COLOR_TYPE_GRAY, {{0, 51}, {102, 255}}});
  const Tensor input = load_image(path, vision_config(2, 3, {0, 0, 0}, {1, 1, 1}));
  ASSERT_EQ(input.shape(), (std::vector<int64_t>{3, 2, 2}));
  const std::vector<float> plane = {0, static_cast<float>(51 / 255.0),
                                    static_cast<float>(102 / 255.0), 1};
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_EQ(
        std::vector<float>(input.values().begin() + c * 4, input.values().begin() + c * 4 + 4),
        plane)
        << "channel " << c;
  }
}

// A 4096 x 4096 gray image for a 3-channel tower of 32 x 32: the 64 MB of decoded values are
// resized before they are replicated, where replicating first made a 192 MB copy. Run in a child
// process, whose peak memory is its own.
TEST(ImageLoadDeathTest, GrayIsReplicatedAfterResizing) {
  const TempDir dir;
  PngFixture png{4096, 4096, 1, PNG_COLOR_TYPE_GRAY, {}};
  png.rows.assign(4096, std::vector<png_byte>(512, 0xF0));
  const fs::path path = dir.path() / "gray.png";
  write_png(path, png);
  const VisionConfig vision = vision_config(32, 3, {0, 0, 0}, {1, 1, 1});
  EXPECT_EXIT(
      {
        const Tensor input = load_image(path, vision);
        std::fprintf(stderr, "shape [%lld, %lld, %lld], peak %lld MB\n",
                     static_cast<long long>(input.shape()[0]),
                     static_cast<long long>(input.shape()[1]),
                     static_cast<long long>(input.shape()[2]),
                     static_cast<long long>(peak_resident_bytes() >> 20));
        std::exit(peak_resident_bytes() < (int64_t{200} << 20) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "shape \\[3, 32, 32\\]");
}

TEST(ImageLoad, ChannelMismatchNamesTheFile) {
  const TempDir dir;
  const fs::path path = dir.path() / "photo.png";
  write_png(path, rgb_3x2());
  try {
    load_image(path, vision_config(4, 1, {0}, {1}));
    ADD_FAILURE() << "no ImageError";
  } catch (const ImageError& e) {
    EXPECT_EQ(std::string(e.what()),
              path.string() + ": image has 3 channels, the config's vision.channels is 1");
  }
}

TEST(ImageLoad, SafetensorsImageMustHaveTheConfigSize) {
  const TempDir dir;
  const fs::path path = dir.path() / "image.safetensors";
  const std::vector<float> values = {7.5f, 0.5f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0};
  write_safetensors(path, {make_f32_record("image", {3, 2, 2}, values)});
  const VisionConfig vision = vision_config(2, 3, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5});
  // Taken as is (7.5 is allowed), then normalised: (7.5 - 0.5) / 0.5 = 14.
  const Tensor input = load_image(path, vision);
  ASSERT_EQ(input.shape(), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ(input.values()[0], 14.0f);
  EXPECT_EQ(input.values()[1], 0.0f);
  EXPECT_EQ(input.values()[3], 1.0f);

  try {
    load_image(path, vision_config(4, 3, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}));
    ADD_FAILURE() << "no ImageError";
  } catch (const ImageError& e) {
    EXPECT_EQ(std::string(e.what()), path.string() +
                                         ": tensor 'image' has shape [3, 2, 2], the config needs "
                                         "[3, 4, 4] (safetensors images are not resized)");
  }
}

}  // namespace
}  // namespace moeref
