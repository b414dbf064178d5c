// A Hugging Face config.json (import-hf): parsed as import_hf parses it (parse_json_text), then
// config_from_hf_json. ConfigError is the documented rejection, malformed JSON and numbers past
// a double included.
#include <nlohmann/json.hpp>

#include "ref/io/config.h"
#include "ref/io/hf_interop.h"
#include "ref/io/json_text.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json hf;
  try {
    hf = moeref::parse_json_text(moeref::fuzz::as_text(data, size));
  } catch (const moeref::JsonTextError&) {
    return 0;  // import_hf reports it as a ConfigError
  }
  try {
    moeref::config_from_hf_json(hf, "hf/config.json");
  } catch (const moeref::ConfigError&) {
  }
  return 0;
}
