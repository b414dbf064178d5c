// A safetensors file (weights, golden tensors, candidates, images): SafetensorsFile::read and every
// tensor's values as fp32. SafetensorsError is the reader's documented rejection.
#include "ref/io/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moeref;
  try {
    const SafetensorsFile file =
        SafetensorsFile::read(fuzz::scratch_file("input.safetensors", data, size));
    for (const TensorRecord& record : file.tensors()) {
      if (record.dtype == DType::kF32) record.to_f32();
    }
  } catch (const SafetensorsError&) {
  }
  return 0;
}
