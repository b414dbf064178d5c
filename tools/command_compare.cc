// moeref compare GOLDEN_DIR CANDIDATE.safetensors: check a backend's tensors against a golden set
// (golden/compare.h). Exit 0 when every compared tensor passes, 1 otherwise.
#include <iostream>

#include "golden/compare.h"
#include "tools/commands.h"
#include "tools/usage.h"

namespace moeref::cli {

namespace {

struct CompareCommandOptions {
  std::string golden_dir;
  std::string candidate_path;
  std::string precision = "fp32";
  std::optional<double> rtol;
  std::optional<double> atol;
  bool require_all = false;
  bool json = false;
  bool verbose = false;
};

}  // namespace

Command register_compare(CLI::App& app) {
  auto options = std::make_shared<CompareCommandOptions>();
  CLI::App* command =
      app.add_subcommand("compare", "Check a candidate's tensors against a golden set");
  command->add_option("golden", options->golden_dir, "Golden set directory")->required();
  command
      ->add_option("candidate", options->candidate_path,
                   "The backend's tensors (safetensors, named as in the set)")
      ->required();
  command
      ->add_option("--precision", options->precision,
                   "The candidate's compute precision: fp32, tf32, bf16 or fp16")
      ->capture_default_str()
      ->check(precision_name());
  command->add_option("--rtol", options->rtol, "Relative tolerance for every float tensor");
  command->add_option("--atol", options->atol, "Absolute tolerance for every float tensor");
  command->add_flag("--require-all", options->require_all,
                    "Fail when the candidate lacks a tensor of the set");
  command->add_flag("--json", options->json, "Print the report as JSON");
  command->add_flag("--verbose", options->verbose,
                    "List every tensor, not only those that did not pass");
  return {command, [options] {
            golden::CompareOptions compare_options;
            compare_options.precision = golden::precision_from_name(options->precision);
            compare_options.rtol = options->rtol;
            compare_options.atol = options->atol;
            compare_options.require_all = options->require_all;
            const golden::GoldenSet set = golden::GoldenSet::open(options->golden_dir);
            const golden::Candidate candidate =
                golden::candidate_from_file(SafetensorsFile::read(options->candidate_path));
            const golden::CompareReport report = golden::compare(set, candidate, compare_options);
            if (options->json) {
              std::cout << report.to_json().dump(2) << "\n";
            } else {
              std::cout << report.to_text(options->verbose);
            }
            return report.passed ? 0 : 1;
          }};
}

}  // namespace moeref::cli
