// A model config file (configs/*.json): load_config. ConfigError is its documented rejection.
#include "ref/io/config.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    moeref::load_config(moeref::fuzz::scratch_file("config.json", data, size));
  } catch (const moeref::ConfigError&) {
  }
  return 0;
}
