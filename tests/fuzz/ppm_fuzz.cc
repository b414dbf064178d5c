// A PPM image (--image): decode_ppm, from memory as read_pixels calls it once the file starts
// with "P6" or "P3" (the harness makes it so). ImageError is its documented rejection.
#include <string>

#include "ref/io/image_decoders.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || data[0] != 'P' || (data[1] != '6' && data[1] != '3')) return 0;
  try {
    moeref::decode_ppm("input.ppm", moeref::fuzz::as_text(data, size));
  } catch (const moeref::ImageError&) {
  }
  return 0;
}
