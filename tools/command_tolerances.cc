// moeref tolerances GOLDEN_DIR: how far the honest emulated backends at fp32, tf32, bf16 and fp16
// land from every golden set under GOLDEN_DIR (golden/tolerance_measurement.h): the worst figures
// per tolerance class over the whole family, beside the defaults the checker uses, then the same
// figures for each backend.
#include <cstdio>
#include <iostream>

#include "golden/golden_set.h"
#include "golden/tolerance_measurement.h"
#include "tools/commands.h"

namespace moeref::cli {

namespace {

using nlohmann::json;

struct TolerancesOptions {
  std::string golden_dir;
  bool json = false;
};

std::vector<std::filesystem::path> sets_under(const std::string& root) {
  std::vector<std::filesystem::path> sets = golden::find_golden_sets(root);
  if (sets.empty()) throw std::runtime_error(root + ": no golden sets found");
  return sets;
}

json worst_json(const golden::Worst& w) {
  return {{"value", w.value}, {"backend", w.backend}, {"tensor", w.tensor}};
}

json measurement_json(const golden::Measurement& m, golden::Precision precision) {
  json classes = json::array();
  for (const auto& [tolerance_class, c] : m.classes) {
    const golden::Tolerance d = golden::default_tolerance(precision, tolerance_class);
    classes.push_back({{"class", golden::tolerance_class_name(tolerance_class)},
                       {"tensors", c.tensors},
                       {"max_scaled_error", worst_json(c.scaled_error)},
                       {"max_abs_error", c.max_abs_error},
                       {"max_nmse", worst_json(c.nmse)},
                       {"max_one_minus_cosine", worst_json(c.one_minus_cosine)},
                       {"max_abs_gate_ratio", worst_json(c.max_abs_ratio)},
                       {"nmse_gate_ratio", worst_json(c.nmse_ratio)},
                       {"default_rtol", d.rtol},
                       {"default_atol", d.atol}});
  }
  return {{"classes", classes},
          {"runs", m.runs},
          {"near_ties", m.near_ties},
          {"failed_decisions", m.failed_decisions},
          {"failed_decision_names", m.failed_decision_names},
          {"failed_tensors", m.failed_tensors},
          {"failed_tensor_names", m.failed_tensor_names},
          {"tensors_after_flip", m.tensors_after_flip}};
}

std::string where(const golden::Worst& w) { return w.backend + ": " + w.tensor; }

void print_family(const golden::PrecisionMeasurement& p) {
  const char* name = golden::precision_name(p.precision);
  for (const auto& [tolerance_class, c] : p.family.classes) {
    const golden::Tolerance d = golden::default_tolerance(p.precision, tolerance_class);
    std::printf("%-5s %-12s %12.3e %10.3e %10.3e %10.3e  %6.0e/%-6.0e  %s\n", name,
                golden::tolerance_class_name(tolerance_class), c.scaled_error.value,
                c.max_abs_error, c.nmse.value, c.one_minus_cosine.value, d.rtol, d.atol,
                where(c.scaled_error).c_str());
    std::printf("%-18s worst nmse: %s; worst 1-cos: %s\n", "", where(c.nmse).c_str(),
                where(c.one_minus_cosine).c_str());
    const golden::GateFactors factors = golden::gate_factors(p.precision, tolerance_class);
    std::printf("%-18s gate ratios: max abs %.3g of %g (%s), nmse %.3g of %g (%s)\n", "",
                c.max_abs_ratio.value, factors.max_abs, where(c.max_abs_ratio).c_str(),
                c.nmse_ratio.value, factors.nmse, where(c.nmse_ratio).c_str());
  }
  std::printf(
      "%-5s %lld runs; decisions: %lld near-ties excused, %lld failed; %lld tensors after "
      "a flip left out\n",
      name, static_cast<long long>(p.family.runs), static_cast<long long>(p.family.near_ties),
      static_cast<long long>(p.family.failed_decisions),
      static_cast<long long>(p.family.tensors_after_flip));
  for (const std::string& failed : p.family.failed_decision_names) {
    std::printf("%-5s   failed decision: %s\n", name, failed.c_str());
  }
  for (const std::string& failed : p.family.failed_tensor_names) {
    std::printf("%-5s   failed tensor: %s\n", name, failed.c_str());
  }
}

void print_backends(const golden::PrecisionMeasurement& p) {
  const char* name = golden::precision_name(p.precision);
  for (const golden::BackendMeasurement& b : p.backends) {
    for (const auto& [tolerance_class, c] : b.measurement.classes) {
      std::printf("%-5s %-18s %-12s %12.3e %10.3e %10.3e  %s\n", name, b.name.c_str(),
                  golden::tolerance_class_name(tolerance_class), c.scaled_error.value, c.nmse.value,
                  c.one_minus_cosine.value, c.scaled_error.tensor.c_str());
    }
    std::printf("%-5s %-18s decisions: %lld near-ties, %lld failed, %lld tensors left out\n", name,
                b.name.c_str(), static_cast<long long>(b.measurement.near_ties),
                static_cast<long long>(b.measurement.failed_decisions),
                static_cast<long long>(b.measurement.tensors_after_flip));
  }
}

}  // namespace

Command register_tolerances(CLI::App& app) {
  auto options = std::make_shared<TolerancesOptions>();
  CLI::App* command = app.add_subcommand(
      "tolerances", "Measure the honest emulated backends of each precision on the golden sets");
  command->add_option("golden", options->golden_dir, "Directory of golden sets")->required();
  command->add_flag("--json", options->json, "Print JSON");
  return {command, [options] {
            const auto results = golden::measure_tolerances(sets_under(options->golden_dir));
            if (options->json) {
              json out = json::array();
              for (const golden::PrecisionMeasurement& p : results) {
                json backends = json::array();
                for (const golden::BackendMeasurement& b : p.backends) {
                  json entry = measurement_json(b.measurement, p.precision);
                  entry["name"] = b.name;
                  backends.push_back(entry);
                }
                json entry = measurement_json(p.family, p.precision);
                entry["precision"] = golden::precision_name(p.precision);
                entry["backends"] = backends;
                out.push_back(entry);
              }
              std::cout << out.dump(2) << "\n";
              return 0;
            }
            std::printf("Per tolerance class, the worst over every honest backend:\n");
            std::printf("%-5s %-12s %12s %10s %10s %10s  %-13s  %s\n", "prec", "class",
                        "|a-e|/(1+|e|)", "max abs", "max nmse", "max 1-cos", "default r/atol",
                        "worst |a-e|/(1+|e|): backend: set: tensor");
            for (const golden::PrecisionMeasurement& p : results) print_family(p);
            std::printf("\nPer honest backend:\n");
            std::printf("%-5s %-18s %-12s %12s %10s %10s  %s\n", "prec", "backend", "class",
                        "|a-e|/(1+|e|)", "max nmse", "max 1-cos",
                        "worst |a-e|/(1+|e|): set: tensor");
            for (const golden::PrecisionMeasurement& p : results) print_backends(p);
            return 0;
          }};
}

}  // namespace moeref::cli
