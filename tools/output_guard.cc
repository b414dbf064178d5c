#include "tools/output_guard.h"

#include <sys/stat.h>

#include <memory>
#include <system_error>

#include "golden/golden_set.h"

namespace moeref::cli {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void refuse(const OutputFile& output, const std::string& problem) {
  throw CLI::ValidationError(output.option + " " + output.path.string() + ": " + problem);
}

// Both exist and are one file (or directory), whatever the names.
bool same_file(const fs::path& a, const fs::path& b) {
  struct stat sa {};
  struct stat sb {};
  if (stat(a.c_str(), &sa) != 0 || stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// `path` is `dir` or lies somewhere under it, once links and ".." are resolved.
bool is_inside(const fs::path& path, const fs::path& dir) {
  std::error_code error;
  const fs::path resolved_dir = fs::canonical(dir, error);
  if (error) return false;
  const fs::path resolved = fs::weakly_canonical(path, error);
  if (error) return false;
  auto it = resolved.begin();
  for (const fs::path& part : resolved_dir) {
    if (it == resolved.end() || *it != part) return false;
    ++it;
  }
  return true;
}

bool is_existing_directory(const fs::path& path) {
  std::error_code error;
  return fs::is_directory(path, error);
}

void check_file(const OutputFile& output, const std::vector<fs::path>& inputs, bool force) {
  for (const fs::path& input : inputs) {
    if (same_file(output.path, input)) {
      refuse(output, "is also an input of this command (" + input.string() + ")");
    }
    if (is_existing_directory(input) && is_inside(output.path, input)) {
      refuse(output, "lies inside " + input.string() + ", which this command reads");
    }
  }
  std::error_code error;
  const fs::file_status status = fs::symlink_status(output.path, error);
  switch (status.type()) {
    case fs::file_type::not_found:
      return;
    case fs::file_type::directory:
      refuse(output, "is a directory");
    case fs::file_type::regular:
    case fs::file_type::symlink:
      if (!force) refuse(output, "exists; give --force to replace it");
      return;
    default:
      refuse(output, "exists and is not a regular file");
  }
}

void check_golden_dir(const OutputFile& output, GoldenOutput kind,
                      const std::vector<fs::path>& inputs, bool force) {
  for (const fs::path& input : inputs) {
    if (is_inside(input, output.path)) {
      refuse(output, "holds " + input.string() + ", an input of this command");
    }
    if (is_existing_directory(input) && is_inside(output.path, input)) {
      refuse(output, "lies inside " + input.string() + ", which this command reads");
    }
  }
  const bool tree = kind == GoldenOutput::kTree;
  switch (golden::classify_golden_target(output.path)) {
    case golden::GoldenTarget::kAbsent:
    case golden::GoldenTarget::kEmptyDirectory:
      return;
    case golden::GoldenTarget::kGoldenSet:
      if (tree) refuse(output, "is a golden set, not a directory of the op cases' sets");
      if (!force) refuse(output, "holds a golden set; give --force to replace it");
      return;
    case golden::GoldenTarget::kGoldenTree:
      if (!tree) refuse(output, "holds several golden sets, not one");
      if (!force) refuse(output, "holds golden sets; give --force to replace them");
      return;
    case golden::GoldenTarget::kOther:
      break;
  }
  std::error_code error;
  if (fs::is_symlink(output.path, error)) {
    refuse(output, "is a symbolic link; give the directory it names");
  }
  if (!is_existing_directory(output.path)) refuse(output, "exists and is not a directory");
  refuse(output, std::string("holds files that are not ") +
                     (tree ? "golden sets" : "a golden set") +
                     "; give a new or empty directory (--force replaces only golden sets)");
}

void check_plan(const OutputPlan& plan, bool force) {
  std::vector<fs::path> inputs;
  for (const fs::path& input : plan.inputs) {
    if (!input.empty()) inputs.push_back(input);
  }
  for (size_t i = 0; i < plan.files.size(); ++i) {
    check_file(plan.files[i], inputs, force);
    for (size_t j = 0; j < i; ++j) {
      std::error_code error_i;
      std::error_code error_j;
      const fs::path resolved_i = fs::weakly_canonical(plan.files[i].path, error_i);
      const fs::path resolved_j = fs::weakly_canonical(plan.files[j].path, error_j);
      if ((!error_i && !error_j && resolved_i == resolved_j) ||
          same_file(plan.files[i].path, plan.files[j].path)) {
        refuse(plan.files[i], "is the same file as " + plan.files[j].option);
      }
    }
  }
  if (plan.golden != GoldenOutput::kNone) {
    check_golden_dir(plan.golden_dir, plan.golden, inputs, force);
  }
}

}  // namespace

void guard_outputs(CLI::App* command, std::function<OutputPlan()> plan) {
  auto force = std::make_shared<bool>(false);
  command->add_flag("--force", *force,
                    "Replace outputs that exist (files; golden sets for golden --out); never "
                    "inputs, never other directories");
  command->parse_complete_callback([force, plan = std::move(plan)] { check_plan(plan(), *force); });
}

}  // namespace moeref::cli
