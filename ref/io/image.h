// Image input for the vision tower: read a file, match the config's channels, resize, normalise.
//
// Pixels are held as PixelImage: fp32 values, [channels, height, width], channel-major (planar):
// the value at channel c, row y, column x is values[(c * height + y) * width + x]. The tower's
// input is the Tensor that load_image returns, [vision.channels, image_size, image_size].
//
// Formats are told apart by the file's first bytes, never by its extension:
// - PNG (the 8-byte PNG signature), decoded by libpng. Gray, gray + alpha, RGB, RGBA and palette
//   images at every bit depth the format allows. Palettes are expanded to RGB, 1/2/4-bit gray is
//   scaled to 8 bit, 16 bit is kept: a sample v becomes v / 255 (8 bit) or v / 65535 (16 bit), so
//   a d-bit gray sample is v / (2^d - 1). Alpha (an alpha channel or tRNS) is dropped, not
//   composited onto a background. No gamma or colour-profile conversion: stored values are
//   taken as they are. The result has 1 channel (gray) or 3 (RGB, palette).
// - PPM, "P6" (binary) or "P3" (ASCII): maxval 1..65535, '#' comments to the end of the line
//   between fields; P6 samples are one byte, or two big-endian bytes when maxval > 255. A sample
//   v becomes v / maxval; 3 channels. One image per file: data after it is an error.
// - safetensors (byte 8 is '{', where the format's JSON header begins): exactly one tensor,
//   "image", F32, [channels, height, width]. Its values are taken as they are, in any range
//   (callers may pass data already scaled), but must be finite. load_image never resizes it.
// Every value is computed in double and rounded once to fp32.
//
// Resources are bounded: a PNG or PPM image may have at most kMaxImagePixels pixels (width x
// height), checked from its header before any pixel is decoded; a larger one is an ImageError
// naming its size and the limit. PNG chunks other than IHDR, PLTE, tRNS, IDAT and IEND are
// skipped without being read into memory. Decoding needs about 20 bytes per pixel at most
// (samples as stored plus fp32 values); load_image resizes before it replicates a gray image.
//
// Every problem with a file is an ImageError whose message starts with the file's path: it
// cannot be opened or read (with the system's reason), it is truncated, it is neither PNG, PPM
// nor safetensors, libpng rejects it (its message is quoted), a PPM header field (width, height,
// maxval) is not an integer in range (the field and its text are named), a sample is above
// maxval (its row, column and channel are named), data follows the image, or the safetensors
// file is invalid (SafetensorsError's text), lacks "image", holds other tensors, or has the
// wrong dtype, rank, an empty dimension or a non-finite value. Nothing is clamped silently.
// Calling an operation below with an inconsistent PixelImage (a non-positive dimension, or
// values.size() != channels * height * width) or target size throws std::invalid_argument.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/io/config.h"
#include "ref/tensor.h"

namespace moeref {

// 4096 x 4096, or any other shape of as many pixels: a 12-megapixel photo fits.
constexpr int64_t kMaxImagePixels = int64_t{1} << 24;

class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Pixels in [0, 1] (a safetensors image: as given), [channels, height, width], planar.
struct PixelImage {
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::vector<float> values;
};

// A PNG, PPM or safetensors image, as described above.
PixelImage read_pixels(const std::filesystem::path& path);

// Bilinear resampling of each channel to [channels, height, width], the same formula as
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False). Along
// each axis, output index d reads the input at
//   src = max(0, (d + 0.5) * in / out - 0.5),
// between i0 = floor(src) and i1 = min(i0 + 1, in - 1), with weight t = src - i0 on i1. An output
// value is (1 - ty) * ((1 - tx) * p[y0][x0] + tx * p[y0][x1]) + ty * ((1 - tx) * p[y1][x0] +
// tx * p[y1][x1]), weights and sum in double, rounded once. There is no antialiasing when
// downscaling: a backend must resize with antialias=False to match (PIL's resize and, by
// default, torchvision's Resize do antialias). The same size returns the image unchanged, bit for
// bit.
PixelImage resize_bilinear(const PixelImage& image, int64_t height, int64_t width);

// The image with `channels` channels: unchanged when it already has them; a gray image (1
// channel) is replicated when 3 are asked for; anything else is an ImageError starting with
// `source` (the file's name), e.g. "photo.png: image has 3 channels, the config's
// vision.channels is 1". There is no colour-to-gray conversion.
PixelImage match_channels(const PixelImage& image, int64_t channels, const std::string& source);

// [channels, height, width]: ((double)p - vision.mean[c]) / vision.std[c], rounded once. The
// image must have vision.channels channels (std::invalid_argument otherwise).
Tensor normalize_image(const PixelImage& image, const VisionConfig& vision);

// The tower's input for the image at `path`: read_pixels, resize_bilinear to image_size x
// image_size, match_channels to vision.channels, normalize_image (resizing first, a gray image is
// replicated at the tower's size, with the same result). A safetensors image is not
// resized: its height and width must equal image_size, else an ImageError
//   "x.safetensors: tensor 'image' has shape [3, 32, 32], the config needs [3, 64, 64]".
// Returns [vision.channels, vision.image_size, vision.image_size].
Tensor load_image(const std::filesystem::path& path, const VisionConfig& vision);

}  // namespace moeref
