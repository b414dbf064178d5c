// moeref anchor GOLDEN_DIR CANDIDATE.safetensors --out ANCHORED.safetensors: the reference re-run
// on a candidate's own routing and sampling decisions (golden/anchored_run.h), under the set's
// names plus "sampled_logits". `moeref compare` makes this run itself when a decision differs;
// the command is for checkers in other languages (tools/moeref_golden.py), which compare with it
// under the same rules.
#include "golden/anchored_run.h"
#include "tools/commands.h"
#include "tools/output_guard.h"

namespace moeref::cli {

namespace {

struct AnchorCommandOptions {
  std::string golden_dir;
  std::string candidate_path;
  std::string out;
};

}  // namespace

Command register_anchor(CLI::App& app) {
  auto options = std::make_shared<AnchorCommandOptions>();
  CLI::App* command = app.add_subcommand(
      "anchor", "Re-run the reference of a model set on a candidate's own decisions");
  command->add_option("golden", options->golden_dir, "Golden model set directory")->required();
  command
      ->add_option("candidate", options->candidate_path,
                   "The backend's tensors (safetensors, named as in the set)")
      ->required();
  command->add_option("--out", options->out, "Where to write the re-run's tensors")->required();
  guard_outputs(command, [options] {
    return OutputPlan{{options->golden_dir, options->candidate_path}, {{"--out", options->out}}};
  });
  return {command, [options] {
            const golden::GoldenSet set = golden::GoldenSet::open(options->golden_dir);
            const golden::Candidate candidate =
                golden::candidate_from_file(SafetensorsFile::read(options->candidate_path));
            std::vector<TensorRecord> records;
            for (auto& [name, record] : golden::anchored_run(set, candidate)) {
              records.push_back(std::move(record));
            }
            write_safetensors(options->out, records);
            return 0;
          }};
}

}  // namespace moeref::cli
