#include "ref/image.h"

#include <png.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include "ref/safetensors.h"

namespace moeref {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const fs::path& path, const std::string& problem) {
  throw ImageError(path.string() + ": " + problem);
}

// The whole file, or its first `max_bytes` bytes.
std::string read_file_bytes(const fs::path& path, size_t max_bytes = std::string::npos) {
  std::error_code error;
  if (fs::is_directory(path, error)) fail(path, "cannot read an image: is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open: ") + std::strerror(errno));
  std::string bytes;
  std::array<char, 1 << 16> chunk{};
  while (in && bytes.size() < max_bytes) {
    in.read(chunk.data(),
            static_cast<std::streamsize>(std::min(chunk.size(), max_bytes - bytes.size())));
    bytes.append(chunk.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) fail(path, std::string("cannot read: ") + std::strerror(errno));
  return bytes;
}

enum class ImageFormat { kPng, kPpm, kSafetensors };

// Enough to tell the formats apart: PNG's signature is 8 bytes; a safetensors file is an 8-byte
// header length followed by the JSON header, which the format requires to begin with '{'.
constexpr size_t kSignatureBytes = 9;

ImageFormat detect_format(const fs::path& path, std::string_view head) {
  if (head.size() >= 8 && png_sig_cmp(reinterpret_cast<png_const_bytep>(head.data()), 0, 8) == 0) {
    return ImageFormat::kPng;
  }
  if (head.starts_with("P6") || head.starts_with("P3")) return ImageFormat::kPpm;
  if (head.size() >= kSignatureBytes && head[8] == '{') return ImageFormat::kSafetensors;
  fail(path, "not a PNG, PPM or safetensors image");
}

// ---------------------------------------------------------------------------------------------
// PNG, through libpng.

// What the libpng callbacks share with the decoder: the file and how far it has been read, the
// message of the error that stopped libpng, and the decoded rows.
struct PngDecoding {
  std::string_view file;
  size_t offset = 0;
  std::array<char, 256> error{};
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  int channels = 0;   // per pixel in the rows, alpha included
  int bit_depth = 0;  // 8 or 16
  bool has_alpha = false;
  std::vector<png_byte> rows;
  std::vector<png_bytep> row_pointers;
};

// libpng must not get control back from its error callback (it would abort): the message is kept
// and the callback jumps back to the setjmp in run_libpng.
void on_png_error(png_structp png, png_const_charp message) {
  auto* decoding = static_cast<PngDecoding*>(png_get_error_ptr(png));
  std::snprintf(decoding->error.data(), decoding->error.size(), "%s", message);
  png_longjmp(png, 1);
}

// Warnings concern ancillary chunks that are not used here (colour profiles, text, times).
void on_png_warning(png_structp /*png*/, png_const_charp /*message*/) {}

void read_png_bytes(png_structp png, png_bytep out, size_t length) {
  auto* decoding = static_cast<PngDecoding*>(png_get_io_ptr(png));
  if (length > decoding->file.size() - decoding->offset) {
    png_error(png, "truncated: the file ends inside the PNG data");
  }
  std::memcpy(out, decoding->file.data() + decoding->offset, length);
  decoding->offset += length;
}

// Every libpng call that can fail is made here. A failure longjmps back to the setjmp and this
// returns false; no object with a destructor lives in this frame, so the jump skips none.
bool run_libpng(png_structp png, png_infop info, PngDecoding& decoding) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, &decoding, read_png_bytes);
  png_read_info(png, info);
  // Deflate expands at most 1032:1, so a header promising more pixel bytes than that many times
  // the file's size describes a file that is not all there; checked before rows are allocated.
  const double stored_bytes = static_cast<double>(png_get_rowbytes(png, info)) *
                              static_cast<double>(png_get_image_height(png, info));
  if (stored_bytes > 1032.0 * static_cast<double>(decoding.file.size())) {
    png_error(png, "truncated: IHDR's image size needs more data than the file holds");
  }
  const png_byte color_type = png_get_color_type(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) {
    png_set_expand_gray_1_2_4_to_8(png);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);

  decoding.width = png_get_image_width(png, info);
  decoding.height = png_get_image_height(png, info);
  decoding.channels = png_get_channels(png, info);
  decoding.bit_depth = png_get_bit_depth(png, info);
  decoding.has_alpha = (png_get_color_type(png, info) & PNG_COLOR_MASK_ALPHA) != 0;
  const size_t row_bytes = png_get_rowbytes(png, info);
  decoding.rows.resize(row_bytes * decoding.height);
  decoding.row_pointers.resize(decoding.height);
  for (png_uint_32 y = 0; y < decoding.height; ++y) {
    decoding.row_pointers[y] = decoding.rows.data() + y * row_bytes;
  }
  png_read_image(png, decoding.row_pointers.data());
  png_read_end(png, nullptr);  // reads on to IEND, checking the remaining chunks
  return true;
}

// Owns libpng's read and info structs.
class PngReader {
 public:
  explicit PngReader(PngDecoding& decoding)
      : png_(
            png_create_read_struct(PNG_LIBPNG_VER_STRING, &decoding, on_png_error, on_png_warning)),
        info_(png_ == nullptr ? nullptr : png_create_info_struct(png_)) {}
  ~PngReader() { png_destroy_read_struct(&png_, &info_, nullptr); }
  PngReader(const PngReader&) = delete;
  PngReader& operator=(const PngReader&) = delete;

  png_structp png() const { return png_; }
  png_infop info() const { return info_; }

 private:
  png_structp png_;
  png_infop info_;
};

PixelImage read_png(const fs::path& path, std::string_view file) {
  PngDecoding decoding;
  decoding.file = file;
  const PngReader reader(decoding);
  if (reader.png() == nullptr || reader.info() == nullptr) {
    fail(path, "cannot decode PNG: libpng is out of memory");
  }
  if (!run_libpng(reader.png(), reader.info(), decoding)) {
    fail(path, std::string("cannot decode PNG: ") + decoding.error.data());
  }

  // Alpha, when present, is the last sample of each pixel.
  const int64_t channels = decoding.channels - (decoding.has_alpha ? 1 : 0);
  const int64_t height = decoding.height;
  const int64_t width = decoding.width;
  const bool wide = decoding.bit_depth == 16;  // samples are then two bytes, big-endian
  const double max_sample = wide ? 65535.0 : 255.0;
  PixelImage image{channels, height, width, std::vector<float>(channels * height * width)};
  for (int64_t y = 0; y < height; ++y) {
    const png_byte* row = decoding.row_pointers[y];
    for (int64_t x = 0; x < width; ++x) {
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t i = x * decoding.channels + c;
        const unsigned sample = wide ? (unsigned{row[2 * i]} << 8) | row[2 * i + 1] : row[i];
        image.values[(c * height + y) * width + x] = static_cast<float>(sample / max_sample);
      }
    }
  }
  return image;
}

// ---------------------------------------------------------------------------------------------
// PPM (netpbm): "P6" or "P3", then width, height and maxval as ASCII decimal fields separated by
// whitespace and '#' comments; then the samples, R G B per pixel, rows top to bottom.

bool is_ppm_whitespace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Reads the fields of a PPM file from `offset` on, skipping whitespace and comments.
class PpmScanner {
 public:
  PpmScanner(std::string_view file, size_t offset) : file_(file), offset_(offset) {}

  // The next field, or "" at the end of the file.
  std::string_view next_field() {
    while (offset_ < file_.size()) {
      if (file_[offset_] == '#') {
        while (offset_ < file_.size() && file_[offset_] != '\n' && file_[offset_] != '\r') {
          ++offset_;
        }
      } else if (is_ppm_whitespace(file_[offset_])) {
        ++offset_;
      } else {
        break;
      }
    }
    const size_t begin = offset_;
    while (offset_ < file_.size() && !is_ppm_whitespace(file_[offset_]) && file_[offset_] != '#') {
      ++offset_;
    }
    return file_.substr(begin, offset_ - begin);
  }

  size_t offset() const { return offset_; }

 private:
  std::string_view file_;
  size_t offset_;
};

// A field of decimal digits as a number; nullopt when it holds anything else or exceeds uint64.
std::optional<uint64_t> parse_decimal(std::string_view field) {
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (error != std::errc() || end != field.data() + field.size()) return std::nullopt;
  return value;
}

constexpr uint64_t kMaxPpmSide = std::numeric_limits<int32_t>::max();
constexpr uint64_t kMaxPpmMaxval = 65535;

int64_t read_ppm_header_field(const fs::path& path, PpmScanner& scanner, const std::string& name,
                              uint64_t max) {
  const std::string_view field = scanner.next_field();
  if (field.empty()) fail(path, "truncated: the file ends before the PPM " + name);
  const std::optional<uint64_t> value = parse_decimal(field);
  if (!value || *value < 1 || *value > max) {
    fail(path, "PPM " + name + " is '" + std::string(field) + "', expected an integer in 1.." +
                   std::to_string(max));
  }
  return static_cast<int64_t>(*value);
}

PixelImage read_ppm(const fs::path& path, std::string_view file) {
  const bool binary = file[1] == '6';
  PpmScanner scanner(file, 2);
  const int64_t width = read_ppm_header_field(path, scanner, "width", kMaxPpmSide);
  const int64_t height = read_ppm_header_field(path, scanner, "height", kMaxPpmSide);
  const int64_t maxval = read_ppm_header_field(path, scanner, "maxval", kMaxPpmMaxval);
  size_t data_begin = scanner.offset();
  if (binary) {
    // Exactly one whitespace byte separates maxval from the samples, which may be any bytes.
    if (data_begin == file.size()) fail(path, "truncated: the file ends after the PPM maxval");
    if (!is_ppm_whitespace(file[data_begin])) {
      fail(path, "PPM maxval must be followed by one whitespace character");
    }
    ++data_begin;
  }

  // A P6 sample is 1 or 2 bytes, a P3 sample at least one digit: a sample count the file cannot
  // hold is rejected before anything is allocated. 3 * width * height < 3 * 2^62 fits in uint64.
  const uint64_t sample_bytes = binary && maxval > 255 ? 2 : 1;
  const uint64_t available = file.size() - data_begin;
  const uint64_t n_samples = 3 * static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  if (n_samples > available / sample_bytes) {
    fail(path, "truncated: a " + std::to_string(width) + " x " + std::to_string(height) +
                   (binary ? " P6" : " P3") + " image with maxval " + std::to_string(maxval) +
                   " needs " + std::to_string(n_samples) + " samples of " +
                   (!binary             ? "at least 1 byte"
                    : sample_bytes == 2 ? "2 bytes"
                                        : "1 byte") +
                   ", the file has " + std::to_string(available) + " bytes after the header");
  }
  const auto count = static_cast<int64_t>(n_samples);

  PixelImage image{3, height, width, std::vector<float>(n_samples)};
  // Sample i of the file is channel i % 3 of pixel i / 3, pixels row by row; planar, pixel p of
  // channel c is at c * height * width + p.
  const auto position = [width](int64_t i) {
    return "row " + std::to_string(i / 3 / width) + ", column " + std::to_string(i / 3 % width) +
           ", channel " + std::to_string(i % 3);
  };
  const auto store = [&](int64_t i, uint64_t sample) {
    if (sample > static_cast<uint64_t>(maxval)) {
      fail(path, "sample " + std::to_string(sample) + " at " + position(i) + " is above maxval " +
                     std::to_string(maxval));
    }
    image.values[i % 3 * height * width + i / 3] =
        static_cast<float>(static_cast<double>(sample) / static_cast<double>(maxval));
  };

  if (binary) {
    if (n_samples * sample_bytes < available) {
      fail(path, "has " + std::to_string(available - n_samples * sample_bytes) +
                     " bytes after the P6 image data (one image per file)");
    }
    const auto* data = reinterpret_cast<const unsigned char*>(file.data() + data_begin);
    for (int64_t i = 0; i < count; ++i) {
      const uint64_t sample =
          sample_bytes == 2 ? (uint64_t{data[2 * i]} << 8) | data[2 * i + 1] : data[i];
      store(i, sample);
    }
    return image;
  }

  for (int64_t i = 0; i < count; ++i) {
    const std::string_view field = scanner.next_field();
    if (field.empty()) {
      fail(path, "truncated: the P3 data ends after " + std::to_string(i) + " of " +
                     std::to_string(count) + " samples");
    }
    const std::optional<uint64_t> sample = parse_decimal(field);
    if (!sample) {
      fail(path, "P3 sample '" + std::string(field) + "' at " + position(i) +
                     " is not a number in 0.." + std::to_string(maxval));
    }
    store(i, *sample);
  }
  const std::string_view extra = scanner.next_field();
  if (!extra.empty()) {
    fail(path,
         "has data after the last P3 sample: '" + std::string(extra) + "' (one image per file)");
  }
  return image;
}

// ---------------------------------------------------------------------------------------------
// safetensors: one F32 tensor "image", [channels, height, width], taken as it is.

PixelImage read_safetensors_image(const fs::path& path) {
  SafetensorsFile file;
  try {
    file = SafetensorsFile::read(path);
  } catch (const SafetensorsError& e) {
    throw ImageError(e.what());  // its message already starts with the path
  }
  if (!file.contains("image")) fail(path, "has no tensor named 'image'");
  if (file.tensors().size() != 1) {
    std::string others;
    for (const TensorRecord& record : file.tensors()) {
      if (record.name != "image") others += (others.empty() ? "'" : ", '") + record.name + "'";
    }
    fail(path, "has tensors other than 'image' (" + others + "); an image file holds one");
  }
  const TensorRecord& record = file.at("image");
  if (record.dtype != DType::kF32) {
    fail(path,
         std::string("tensor 'image' has dtype ") + dtype_name(record.dtype) + ", expected F32");
  }
  if (record.shape.size() != 3) {
    fail(path, "tensor 'image' has shape " + shape_string(record.shape) +
                   ", expected [channels, height, width]");
  }
  if (record.numel() == 0) {
    fail(path, "tensor 'image' has shape " + shape_string(record.shape) +
                   ": zero channels, height or width");
  }
  PixelImage image{record.shape[0], record.shape[1], record.shape[2], record.to_f32()};
  const auto non_finite = std::find_if(image.values.begin(), image.values.end(),
                                       [](float v) { return !std::isfinite(v); });
  if (non_finite != image.values.end()) {
    const int64_t i = non_finite - image.values.begin();
    const int64_t plane = image.height * image.width;
    fail(path, "tensor 'image' has a non-finite value (" + std::to_string(*non_finite) + ") at [" +
                   std::to_string(i / plane) + ", " + std::to_string(i % plane / image.width) +
                   ", " + std::to_string(i % image.width) + "]");
  }
  return image;
}

struct DecodedImage {
  ImageFormat format;
  PixelImage pixels;
};

DecodedImage decode_image_file(const fs::path& path) {
  // The safetensors reader reads its file itself; PNG and PPM are decoded from memory.
  if (detect_format(path, read_file_bytes(path, kSignatureBytes)) == ImageFormat::kSafetensors) {
    return {ImageFormat::kSafetensors, read_safetensors_image(path)};
  }
  const std::string file = read_file_bytes(path);
  const ImageFormat format = detect_format(path, file);
  if (format == ImageFormat::kPng) return {format, read_png(path, file)};
  if (format == ImageFormat::kPpm) return {format, read_ppm(path, file)};
  return {format, read_safetensors_image(path)};
}

// The operations' own arguments: a PixelImage built by a caller must be consistent.
void check_pixel_image(const PixelImage& image, const char* operation) {
  int64_t numel = 0;
  const bool consistent = image.channels > 0 && image.height > 0 && image.width > 0 &&
                          !__builtin_mul_overflow(image.channels, image.height, &numel) &&
                          !__builtin_mul_overflow(numel, image.width, &numel) &&
                          std::cmp_equal(numel, image.values.size());
  if (!consistent) {
    throw std::invalid_argument(std::string(operation) + ": image [" +
                                std::to_string(image.channels) + ", " +
                                std::to_string(image.height) + ", " + std::to_string(image.width) +
                                "] with " + std::to_string(image.values.size()) + " values");
  }
}

// One output index along an axis: its two input neighbours and the weight of the upper one.
struct LinearTap {
  int64_t lower;
  int64_t upper;
  double weight;
};

// PyTorch's source index for align_corners=False: src = (dst + 0.5) * in / out - 0.5, clamped
// below at 0; it never reaches in - 0.5, so floor(src) is a valid index.
std::vector<LinearTap> linear_taps(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  std::vector<LinearTap> taps(out);
  for (int64_t dst = 0; dst < out; ++dst) {
    const double src = std::max(0.0, (static_cast<double>(dst) + 0.5) * scale - 0.5);
    const auto lower = static_cast<int64_t>(src);  // floor, as src >= 0
    taps[dst] = {lower, std::min(lower + 1, in - 1), src - static_cast<double>(lower)};
  }
  return taps;
}

}  // namespace

PixelImage read_pixels(const fs::path& path) { return decode_image_file(path).pixels; }

PixelImage resize_bilinear(const PixelImage& image, int64_t height, int64_t width) {
  check_pixel_image(image, "resize_bilinear");
  if (height < 1 || width < 1) {
    throw std::invalid_argument("resize_bilinear: target size " + std::to_string(height) + " x " +
                                std::to_string(width) + " is not positive");
  }
  if (height == image.height && width == image.width) return image;
  const std::vector<LinearTap> rows = linear_taps(image.height, height);
  const std::vector<LinearTap> columns = linear_taps(image.width, width);
  PixelImage resized{image.channels, height, width,
                     std::vector<float>(shape_numel(std::vector{image.channels, height, width}))};
  for (int64_t c = 0; c < image.channels; ++c) {
    const float* plane = image.values.data() + c * image.height * image.width;
    float* out = resized.values.data() + c * height * width;
    for (int64_t y = 0; y < height; ++y) {
      const float* top = plane + rows[y].lower * image.width;
      const float* bottom = plane + rows[y].upper * image.width;
      const double ty = rows[y].weight;
      for (int64_t x = 0; x < width; ++x) {
        const LinearTap& tap = columns[x];
        const double tx = tap.weight;
        const double top_value = (1.0 - tx) * top[tap.lower] + tx * top[tap.upper];
        const double bottom_value = (1.0 - tx) * bottom[tap.lower] + tx * bottom[tap.upper];
        out[y * width + x] = static_cast<float>((1.0 - ty) * top_value + ty * bottom_value);
      }
    }
  }
  return resized;
}

PixelImage match_channels(const PixelImage& image, int64_t channels, const std::string& source) {
  check_pixel_image(image, "match_channels");
  if (image.channels == channels) return image;
  if (image.channels != 1 || channels != 3) {
    throw ImageError(source + ": image has " + std::to_string(image.channels) +
                     " channels, the config's vision.channels is " + std::to_string(channels));
  }
  PixelImage rgb{3, image.height, image.width, {}};
  rgb.values.reserve(3 * image.values.size());
  for (int64_t c = 0; c < 3; ++c) {
    rgb.values.insert(rgb.values.end(), image.values.begin(), image.values.end());
  }
  return rgb;
}

Tensor normalize_image(const PixelImage& image, const VisionConfig& vision) {
  check_pixel_image(image, "normalize_image");
  if (image.channels != vision.channels || std::ssize(vision.mean) != image.channels ||
      std::ssize(vision.std) != image.channels) {
    throw std::invalid_argument("normalize_image: image has " + std::to_string(image.channels) +
                                " channels, the config " + std::to_string(vision.channels) +
                                " with " + std::to_string(vision.mean.size()) + " means and " +
                                std::to_string(vision.std.size()) + " stds");
  }
  const int64_t plane = image.height * image.width;
  std::vector<float> normalized(image.values.size());
  for (int64_t c = 0; c < image.channels; ++c) {
    for (int64_t i = c * plane; i < (c + 1) * plane; ++i) {
      normalized[i] = static_cast<float>((static_cast<double>(image.values[i]) - vision.mean[c]) /
                                         vision.std[c]);
    }
  }
  return Tensor({image.channels, image.height, image.width}, std::move(normalized));
}

Tensor load_image(const fs::path& path, const VisionConfig& vision) {
  const DecodedImage decoded = decode_image_file(path);
  const int64_t size = vision.image_size;
  const PixelImage& pixels = decoded.pixels;
  if (decoded.format == ImageFormat::kSafetensors &&
      (pixels.height != size || pixels.width != size)) {
    const std::vector<int64_t> shape = {pixels.channels, pixels.height, pixels.width};
    const std::vector<int64_t> needed = {vision.channels, size, size};
    fail(path, "tensor 'image' has shape " + shape_string(shape) + ", the config needs " +
                   shape_string(needed) + " (safetensors images are not resized)");
  }
  return normalize_image(
      resize_bilinear(match_channels(pixels, vision.channels, path.string()), size, size), vision);
}

}  // namespace moeref
