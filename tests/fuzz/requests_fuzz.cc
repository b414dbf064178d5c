// A serve-sim requests file (JSON lines): read_requests, the serve-sim command's own reader. It
// reports malformed lines in its list of errors and throws nothing for a readable file.
//
// The reader is private to the command's source file, so that file is compiled into this one.
#include "tests/fuzz/fuzz_support.h"
#include "tools/command_serve_sim.cc"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> errors;
  moeref::cli::read_requests(moeref::fuzz::scratch_file("requests.jsonl", data, size).string(),
                             errors);
  return 0;
}
