// moeref candidate GOLDEN_DIR --emulate PRECISION --out FILE: run a golden model, batching or
// speculative case with the emulated kernels of a precision (golden/emulated_kernels.h) and write
// the candidate's tensors to a safetensors file: a model case teacher-forced as a backend would
// (golden/candidate_runner.h), a batching or speculative case re-run from the set's own scenario
// and prompt with the kernels' own decisions (run_case), as the calibration runs them. It shows
// what an honest backend at that precision hands to `moeref compare`: for tutorials
// (docs/checking-a-backend.md), for calibrating tolerances, and for the Python checker's tests.
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "golden/candidate_runner.h"
#include "golden/compare.h"
#include "golden/emulated_kernels.h"
#include "golden/golden_set.h"
#include "tools/commands.h"
#include "tools/output_guard.h"
#include "tools/usage.h"

namespace moeref::cli {

namespace {

struct CandidateOptions {
  std::string golden_dir;
  std::string precision;
  std::string out_path;
};

// The candidate's tensors in the set's execution order (greedy_tokens and sampled_tokens come
// last there), then any the set does not list, by name.
std::vector<TensorRecord> in_execution_order(const golden::GoldenSet& set,
                                             golden::Candidate candidate) {
  std::vector<TensorRecord> records;
  records.reserve(candidate.size());
  for (const golden::ExpectedTensor& expected : set.expected()) {
    auto it = candidate.find(expected.name);
    if (it == candidate.end()) continue;
    records.push_back(std::move(it->second));
    candidate.erase(it);
  }
  for (auto& [name, record] : candidate) records.push_back(std::move(record));
  return records;
}

}  // namespace

Command register_candidate(CLI::App& app) {
  auto options = std::make_shared<CandidateOptions>();
  CLI::App* command = app.add_subcommand(
      "candidate",
      "Run a golden model, batching or speculative case with kernels emulating a precision and "
      "write the candidate");
  command
      ->add_option("golden", options->golden_dir,
                   "Golden model, batching or speculative set directory")
      ->required();
  command
      ->add_option("--emulate", options->precision,
                   "Precision the emulated kernels compute in: fp32, tf32, bf16 or fp16")
      ->required()
      ->check(precision_name());
  command->add_option("--out", options->out_path, "Safetensors file to write")->required();
  guard_outputs(command, [options] {
    return OutputPlan{{options->golden_dir}, {{"--out", options->out_path}}};
  });
  return {command, [options] {
            const golden::Precision precision = golden::precision_from_name(options->precision);
            const golden::GoldenSet set = golden::GoldenSet::open(options->golden_dir);
            if (set.kind() != "model" && set.kind() != "batching" && set.kind() != "speculative") {
              throw golden::GoldenError(options->golden_dir +
                                        ": not a model, batching or speculative case (kind \"" +
                                        set.kind() + "\"); candidate runs those sets only");
            }
            const std::vector<TensorRecord> records =
                in_execution_order(set, golden::run_case(set, golden::emulated_kernels(precision)));
            write_safetensors(options->out_path, records);
            std::cout << "wrote " << records.size() << " tensors to " << options->out_path << " ("
                      << set.name() << " with emulated " << golden::precision_name(precision)
                      << " kernels" << (set.kind() == "model" ? ", teacher-forced" : "") << ")\n";
            return 0;
          }};
}

}  // namespace moeref::cli
