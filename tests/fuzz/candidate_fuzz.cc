// A candidate file (what a backend hands to `moeref compare`): read, turned into a Candidate and
// compared against golden/sets/ops/ffn-gelu-rows1 at every precision. SafetensorsError and
// GoldenError are the documented rejections; a candidate's wrong names, dtypes, shapes or values
// fail tensors in the report instead.
#include "golden/compare.h"
#include "golden/golden_set.h"
#include "ref/io/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moeref;
  static const golden::GoldenSet set =
      golden::GoldenSet::open(fuzz::source_path("golden/sets/ops/ffn-gelu-rows1"));
  try {
    const golden::Candidate candidate = golden::candidate_from_file(
        SafetensorsFile::read(fuzz::scratch_file("candidate.safetensors", data, size)));
    for (const golden::Precision precision : {golden::Precision::kFP32, golden::Precision::kTF32,
                                              golden::Precision::kBF16, golden::Precision::kFP16}) {
      golden::CompareOptions options;
      options.precision = precision;
      const golden::CompareReport report = golden::compare(set, candidate, options);
      report.to_text(true);
      report.to_json();
    }
  } catch (const SafetensorsError&) {
  } catch (const golden::GoldenError&) {
  }
  return 0;
}
