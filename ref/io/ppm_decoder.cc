// Decoding a PPM file held in memory (the rules are in ref/io/image.h).
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "ref/io/image_decoders.h"

namespace moeref {
namespace {

namespace fs = std::filesystem;

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
  if (field.empty()) image_error(path, "truncated: the file ends before the PPM " + name);
  const std::optional<uint64_t> value = parse_decimal(field);
  if (!value || *value < 1 || *value > max) {
    image_error(path, "PPM " + name + " is '" + std::string(field) +
                          "', expected an integer in 1.." + std::to_string(max));
  }
  return static_cast<int64_t>(*value);
}

}  // namespace

PixelImage decode_ppm(const fs::path& path, std::string_view file) {
  const bool binary = file[1] == '6';
  PpmScanner scanner(file, 2);
  const int64_t width = read_ppm_header_field(path, scanner, "width", kMaxPpmSide);
  const int64_t height = read_ppm_header_field(path, scanner, "height", kMaxPpmSide);
  const int64_t maxval = read_ppm_header_field(path, scanner, "maxval", kMaxPpmMaxval);
  if (width * height > kMaxImagePixels) {  // each side is below 2^31: no overflow
    image_error(path, "the PPM image is " + std::to_string(width) + " x " + std::to_string(height) +
                          " = " + std::to_string(width * height) +
                          " pixels, more than the limit of " + std::to_string(kMaxImagePixels));
  }
  size_t data_begin = scanner.offset();
  if (binary) {
    // Exactly one whitespace byte separates maxval from the samples, which may be any bytes.
    if (data_begin == file.size())
      image_error(path, "truncated: the file ends after the PPM maxval");
    if (!is_ppm_whitespace(file[data_begin])) {
      image_error(path, "PPM maxval must be followed by one whitespace character");
    }
    ++data_begin;
  }

  // A P6 sample is 1 or 2 bytes, a P3 sample at least one digit: a sample count the file cannot
  // hold is rejected before anything is allocated. 3 * width * height < 3 * 2^62 fits in uint64.
  const uint64_t sample_bytes = binary && maxval > 255 ? 2 : 1;
  const uint64_t available = file.size() - data_begin;
  const uint64_t n_samples = 3 * static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  if (n_samples > available / sample_bytes) {
    image_error(path,
                "truncated: a " + std::to_string(width) + " x " + std::to_string(height) +
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
      image_error(path, "sample " + std::to_string(sample) + " at " + position(i) +
                            " is above maxval " + std::to_string(maxval));
    }
    image.values[i % 3 * height * width + i / 3] =
        static_cast<float>(static_cast<double>(sample) / static_cast<double>(maxval));
  };

  if (binary) {
    if (n_samples * sample_bytes < available) {
      image_error(path, "has " + std::to_string(available - n_samples * sample_bytes) +
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
      image_error(path, "truncated: the P3 data ends after " + std::to_string(i) + " of " +
                            std::to_string(count) + " samples");
    }
    const std::optional<uint64_t> sample = parse_decimal(field);
    if (!sample) {
      image_error(path, "P3 sample '" + std::string(field) + "' at " + position(i) +
                            " is not a number in 0.." + std::to_string(maxval));
    }
    store(i, *sample);
  }
  const std::string_view extra = scanner.next_field();
  if (!extra.empty()) {
    image_error(path, "has data after the last P3 sample: '" + std::string(extra) +
                          "' (one image per file)");
  }
  return image;
}

}  // namespace moeref
