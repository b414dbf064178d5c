// Usage errors of the moeref command: a command line it cannot act on. main reports every one the
// same way, "moeref COMMAND: error: MESSAGE" and a pointer to --help, with exit code 2, whether
// CLI11 finds it while parsing or a command finds it after.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <stdexcept>

namespace moeref::cli {

// Thrown by a command's action for a combination of options CLI11 cannot express (a prompt given
// neither as --prompt nor as --tokens, say), before any work is done.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An integer option of at least `least`: "--blocks: 0 is not an integer of at least 1". CLI11's
// own NonNegativeNumber and PositiveNumber name a range up to the largest double, all 309 digits
// of it.
CLI::Validator at_least(int64_t least);

// One of the precisions golden/compare.h names: "--precision: fp8 not in {fp32,tf32,bf16,fp16}".
CLI::Validator precision_name();

}  // namespace moeref::cli
