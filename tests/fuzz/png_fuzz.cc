// A PNG image (--image): decode_png, from memory as read_pixels calls it. ImageError is its
// documented rejection.
#include "ref/io/image_decoders.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    moeref::decode_png("input.png", moeref::fuzz::as_text(data, size));
  } catch (const moeref::ImageError&) {
  }
  return 0;
}
