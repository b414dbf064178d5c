// The rules every command that writes files follows (docs/outputs.md), checked as soon as its
// command line is parsed, before any work, each broken rule a usage error (exit 2) that names the
// option and the path:
//   - an output is never one of the command's inputs: not the same file however it is named
//     (compared by device and inode), not inside a directory the command reads (a golden set,
//     a Hugging Face directory), and not a directory that holds one of them;
//   - two outputs of one command are never the same file;
//   - an output that already exists is replaced only with --force, and only if it is what the
//     command writes: a regular file (or a link) for a file, a golden set for `golden --out`,
//     a tree of golden sets for `golden --ops --out`. A directory that holds anything else is
//     never replaced, --force or not.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace moeref::cli {

struct OutputFile {
  std::string option;  // as the user wrote it, e.g. "--out"
  std::filesystem::path path;
};

enum class GoldenOutput { kNone, kSet, kTree };

struct OutputPlan {
  OutputPlan(std::vector<std::filesystem::path> read, std::vector<OutputFile> written)
      : inputs(std::move(read)), files(std::move(written)) {}

  std::vector<std::filesystem::path> inputs;  // files and directories read; empty paths ignored
  std::vector<OutputFile> files;
  OutputFile golden_dir;  // `golden --out`, when golden is not kNone
  GoldenOutput golden = GoldenOutput::kNone;
};

// Adds --force to `command` and checks `plan()` once the command line is parsed, throwing
// CLI::ValidationError for the first broken rule.
void guard_outputs(CLI::App* command, std::function<OutputPlan()> plan);

}  // namespace moeref::cli
