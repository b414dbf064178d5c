// Running the moeref command (MOEREF_CLI, set by tests/CMakeLists.txt) as a user does, with its
// exit code and output captured, and the model the command tests run: the source tree's
// configs/tiny.json. The command tests live in namespace moeref::cli_tests, where these and the
// helpers of tests/test_support.h they use are in scope.
#pragma once

#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/test_support.h"

namespace moeref::cli_tests {

namespace fs = std::filesystem;
using test_support::quote;
using test_support::read_file;
using test_support::TempDir;

inline const fs::path kSourceDir = MOEREF_SOURCE_DIR;
inline const fs::path kTiny = kSourceDir / "configs/tiny.json";

struct CliResult {
  int exit_code = -1;  // -1: the command did not exit normally
  std::string out;
  std::string err;
};

// Runs `moeref ARGS` (ARGS already quoted where needed), capturing stdout and stderr in files;
// with `address_space_kib` > 0, under `ulimit -v` of that many KiB.
inline CliResult run_cli(const std::string& args, int64_t address_space_kib = 0) {
  const TempDir capture;
  const fs::path out = capture.path() / "stdout";
  const fs::path err = capture.path() / "stderr";
  const std::string limit =
      address_space_kib > 0 ? "ulimit -v " + std::to_string(address_space_kib) + " && " : "";
  const std::string command =
      limit + quote(std::string(MOEREF_CLI)) + " " + args + " >" + quote(out) + " 2>" + quote(err);
  const int status = std::system(command.c_str());
  CliResult result;
  if (status != -1 && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  result.out = read_file(out);
  result.err = read_file(err);
  return result;
}

// The exit code and both outputs, for a failure message.
inline std::string describe(const CliResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

}  // namespace moeref::cli_tests
