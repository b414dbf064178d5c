// The file decoders behind ref/io/image.h, one per format: each takes the whole file in memory and
// returns its pixels, or throws ImageError through image_error. The format rules are stated in
// ref/io/image.h.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "ref/io/image.h"

namespace moeref {

// Throws ImageError("<path>: <problem>").
[[noreturn]] void image_error(const std::filesystem::path& path, const std::string& problem);

// A PNG file, through libpng: 1 (gray) or 3 channels, alpha dropped.
PixelImage decode_png(const std::filesystem::path& path, std::string_view file);

// A P6 or P3 PPM file: 3 channels. `file` starts with "P6" or "P3".
PixelImage decode_ppm(const std::filesystem::path& path, std::string_view file);

}  // namespace moeref
