// moeref tolerances GOLDEN_DIR: how far emulated fp32, tf32, bf16 and fp16 backends land from
// the golden model sets under GOLDEN_DIR (golden/tolerance_measurement.h), beside the defaults the
// checker uses.
#include <cstdio>
#include <iostream>

#include "golden/golden_set.h"
#include "golden/tolerance_measurement.h"
#include "tools/commands.h"

namespace moeref::cli {

namespace {

struct TolerancesOptions {
  std::string golden_dir;
  bool json = false;
};

std::vector<std::filesystem::path> model_sets_under(const std::string& root) {
  std::vector<std::filesystem::path> sets;
  for (const auto& dir : golden::find_golden_sets(root)) {
    if (golden::GoldenSet::open(dir).kind() == "model") sets.push_back(dir);
  }
  if (sets.empty()) throw std::runtime_error(root + ": no golden model sets found");
  return sets;
}

}  // namespace

Command register_tolerances(CLI::App& app) {
  auto options = std::make_shared<TolerancesOptions>();
  CLI::App* command = app.add_subcommand(
      "tolerances", "Measure emulated low-precision backends against the golden model sets");
  command->add_option("golden", options->golden_dir, "Directory of golden sets")->required();
  command->add_flag("--json", options->json, "Print JSON");
  return {
      command, [options] {
        const auto results = golden::measure_tolerances(model_sets_under(options->golden_dir));
        nlohmann::json out = nlohmann::json::array();
        if (!options->json) {
          std::printf("%-6s %-12s %14s %12s %12s %14s   %s\n", "prec", "class", "max|a-e|/(1+|e|)",
                      "max abs", "max nmse", "default rtol/atol", "worst tensor");
        }
        for (const golden::PrecisionMeasurement& p : results) {
          for (const auto& [tolerance_class, m] : p.classes) {
            const golden::Tolerance d = golden::default_tolerance(p.precision, tolerance_class);
            if (options->json) {
              out.push_back({{"precision", golden::precision_name(p.precision)},
                             {"class", golden::tolerance_class_name(tolerance_class)},
                             {"max_scaled_error", m.max_scaled_error},
                             {"max_abs_error", m.max_abs_error},
                             {"max_nmse", m.max_nmse},
                             {"worst_tensor", m.worst_tensor},
                             {"default_rtol", d.rtol},
                             {"default_atol", d.atol}});
            } else {
              std::printf("%-6s %-12s %14.3e %12.3e %12.3e %8.0e/%.0e   %s\n",
                          golden::precision_name(p.precision),
                          golden::tolerance_class_name(tolerance_class), m.max_scaled_error,
                          m.max_abs_error, m.max_nmse, d.rtol, d.atol, m.worst_tensor.c_str());
            }
          }
          if (!options->json) {
            std::printf("%-6s near-ties excused: %lld, tensors after a near-tie left out: %lld\n",
                        golden::precision_name(p.precision), static_cast<long long>(p.near_ties),
                        static_cast<long long>(p.tensors_after_near_tie));
          }
        }
        if (options->json) std::cout << out.dump(2) << "\n";
        return 0;
      }};
}

}  // namespace moeref::cli
