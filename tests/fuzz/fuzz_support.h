// What the fuzz harnesses of tests/fuzz share (docs/fuzzing.md).
//
// Each harness is one file that defines LLVMFuzzerTestOneInput: it hands the bytes to one loader
// of untrusted input and returns 0. The loader may reject them with the error its header documents
// (ConfigError, SafetensorsError, ImageError, GoldenError, ...), which the harness catches; any
// other exception escapes and aborts, like a crash, a sanitizer report, a hang or a huge
// allocation: each is a finding. Built with MOEREF_FUZZ (clang), libFuzzer drives the harness;
// otherwise replay_main.cc feeds it the files named on its command line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace moeref::fuzz {

// The bytes as text, for loaders that parse from memory.
inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// This process's scratch directory: made on first use, removed at exit.
const std::filesystem::path& scratch_directory();

// Writes the bytes to `name` in the scratch directory and returns its path, for loaders that read
// a file. Each call replaces the file.
std::filesystem::path scratch_file(const std::string& name, const uint8_t* data, size_t size);

// A directory of the source tree, for harnesses that need a fixed companion (a golden set).
std::filesystem::path source_path(const std::string& relative);

}  // namespace moeref::fuzz
