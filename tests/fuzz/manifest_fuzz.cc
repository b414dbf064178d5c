// A golden set's manifest.json: GoldenSet::open on a directory holding the input as manifest.json
// beside the real tensor files of golden/sets/ops/ffn-gelu-rows1, so that a manifest whose
// digests match reaches the checks of every tensor entry. GoldenError and SafetensorsError are
// the documented rejections.
#include <filesystem>
#include <string>

#include "golden/golden_set.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  using namespace moeref;
  static const fs::path set_dir = [] {
    const fs::path dir = fuzz::scratch_directory() / "set";
    fs::create_directories(dir);
    for (const char* file : {"inputs.safetensors", "trace.safetensors"}) {
      fs::copy_file(fuzz::source_path("golden/sets/ops/ffn-gelu-rows1") / file, dir / file,
                    fs::copy_options::overwrite_existing);
    }
    return dir;
  }();
  fuzz::scratch_file("set/manifest.json", data, size);
  try {
    golden::GoldenSet::open(set_dir);
  } catch (const golden::GoldenError&) {
  } catch (const SafetensorsError&) {
  }
  return 0;
}
