// Decoding a PNG file held in memory, through libpng (the rules are in ref/io/image.h).
#include <png.h>

#include <array>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ref/io/image_decoders.h"

namespace moeref {
namespace {

namespace fs = std::filesystem;

// The largest chunk libpng may allocate: PLTE (768 bytes) and tRNS (256) are the largest read.
constexpr png_alloc_size_t kMaxPngChunkBytes = 1 << 16;

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
  // Only IHDR, PLTE, tRNS, IDAT and IEND are read; every other chunk is skipped unread, in small
  // pieces. libpng would otherwise allocate an ancillary chunk's declared length (a tEXt chunk
  // claiming 2 GB in a 50-byte file took 2 GB), and what is still kept is capped.
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, nullptr, -1);
  png_set_chunk_malloc_max(png, kMaxPngChunkBytes);
  png_set_user_limits(png, static_cast<png_uint_32>(kMaxImagePixels),
                      static_cast<png_uint_32>(kMaxImagePixels));
  png_read_info(png, info);
  // Refused before any row is allocated (ref/io/image.h states the limit).
  const png_uint_32 header_width = png_get_image_width(png, info);
  const png_uint_32 header_height = png_get_image_height(png, info);
  const uint64_t pixels = uint64_t{header_width} * header_height;
  if (pixels > static_cast<uint64_t>(kMaxImagePixels)) {
    std::array<char, 160> too_many_pixels{};
    std::snprintf(too_many_pixels.data(), too_many_pixels.size(),
                  "the image is %u x %u = %llu pixels, more than the limit of %lld", header_width,
                  header_height, static_cast<unsigned long long>(pixels),
                  static_cast<long long>(kMaxImagePixels));
    png_error(png, too_many_pixels.data());
  }
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

}  // namespace

PixelImage decode_png(const fs::path& path, std::string_view file) {
  PngDecoding decoding;
  decoding.file = file;
  const PngReader reader(decoding);
  if (reader.png() == nullptr || reader.info() == nullptr) {
    image_error(path, "cannot decode PNG: libpng is out of memory");
  }
  if (!run_libpng(reader.png(), reader.info(), decoding)) {
    image_error(path, std::string("cannot decode PNG: ") + decoding.error.data());
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

}  // namespace moeref
