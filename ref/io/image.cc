#include "ref/io/image.h"

#include <png.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include "ref/io/image_decoders.h"
#include "ref/io/safetensors.h"

namespace moeref {
namespace {

namespace fs = std::filesystem;

// The whole file, or its first `max_bytes` bytes.
std::string read_file_bytes(const fs::path& path, size_t max_bytes = std::string::npos) {
  std::error_code error;
  if (fs::is_directory(path, error)) image_error(path, "cannot read an image: is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) image_error(path, std::string("cannot open: ") + std::strerror(errno));
  std::string bytes;
  std::array<char, 1 << 16> chunk{};
  while (in && bytes.size() < max_bytes) {
    in.read(chunk.data(),
            static_cast<std::streamsize>(std::min(chunk.size(), max_bytes - bytes.size())));
    bytes.append(chunk.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) image_error(path, std::string("cannot read: ") + std::strerror(errno));
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
  image_error(path, "not a PNG, PPM or safetensors image");
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
  if (!file.contains("image")) image_error(path, "has no tensor named 'image'");
  if (file.tensors().size() != 1) {
    std::string others;
    for (const TensorRecord& record : file.tensors()) {
      if (record.name != "image") others += (others.empty() ? "'" : ", '") + record.name + "'";
    }
    image_error(path, "has tensors other than 'image' (" + others + "); an image file holds one");
  }
  const TensorRecord& record = file.at("image");
  if (record.dtype != DType::kF32) {
    image_error(path, std::string("tensor 'image' has dtype ") + dtype_name(record.dtype) +
                          ", expected F32");
  }
  if (record.shape.size() != 3) {
    image_error(path, "tensor 'image' has shape " + shape_string(record.shape) +
                          ", expected [channels, height, width]");
  }
  if (record.numel() == 0) {
    image_error(path, "tensor 'image' has shape " + shape_string(record.shape) +
                          ": zero channels, height or width");
  }
  PixelImage image{record.shape[0], record.shape[1], record.shape[2], record.to_f32()};
  const auto non_finite = std::find_if(image.values.begin(), image.values.end(),
                                       [](float v) { return !std::isfinite(v); });
  if (non_finite != image.values.end()) {
    const int64_t i = non_finite - image.values.begin();
    const int64_t plane = image.height * image.width;
    image_error(path, "tensor 'image' has a non-finite value (" + std::to_string(*non_finite) +
                          ") at [" + std::to_string(i / plane) + ", " +
                          std::to_string(i % plane / image.width) + ", " +
                          std::to_string(i % image.width) + "]");
  }
  return image;
}

struct DecodedImage {
  ImageFormat format;
  PixelImage pixels;
};

DecodedImage decode_image_file(const fs::path& path) {
  // The safetensors reader reads its file itself; PNG and PPM are decoded from memory.
  const ImageFormat format = detect_format(path, read_file_bytes(path, kSignatureBytes));
  if (format == ImageFormat::kSafetensors) return {format, read_safetensors_image(path)};
  const std::string file = read_file_bytes(path);
  if (format == ImageFormat::kPng) return {format, decode_png(path, file)};
  if (file.size() < 2) image_error(path, "truncated: the file ends inside the PPM magic number");
  return {format, decode_ppm(path, file)};
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

void image_error(const fs::path& path, const std::string& problem) {
  throw ImageError(path.string() + ": " + problem);
}

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
    image_error(path, "tensor 'image' has shape " + shape_string(shape) + ", the config needs " +
                          shape_string(needed) + " (safetensors images are not resized)");
  }
  return normalize_image(
      match_channels(resize_bilinear(pixels, size, size), vision.channels, path.string()), vision);
}

}  // namespace moeref
