// moeref bugs [SETS_DIR]: the checker's detection matrix against the bug catalog
// (golden/detection_matrix.h): one row per bug and set where the bug can arise, one column per
// precision (caught or missed, the first failing tensor, whether it is the bug's own), then the
// catch rates over the visible pairs, per precision and per bug. One thread unless --threads says
// otherwise.
#include <omp.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "golden/bug_catalog.h"
#include "golden/detection_matrix.h"
#include "tools/commands.h"
#include "tools/usage.h"

namespace moeref::cli {

namespace {

struct BugsOptions {
  std::string golden_dir = "golden/sets";
  std::vector<std::string> precisions;
  std::vector<std::string> bugs;
  bool json = false;
};

// "caught own   TENSOR", "caught other TENSOR" or "missed"; "!" marks a precision at which the
// honest baseline fails the set too.
std::string cell(const golden::Detection& d) {
  const std::string verdict = d.caught ? std::string(d.own ? "caught own   " : "caught other ") +
                                             d.first_failure.value_or("")
                                       : "missed";
  return (d.honest_passes ? "  " : "! ") + verdict;
}

std::string fraction(int64_t part, int64_t whole) {
  return std::to_string(part) + "/" + std::to_string(whole);
}

double percent(int64_t part, int64_t whole) {
  return whole > 0 ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

nlohmann::json rate_json(const golden::CatchRate& rate) {
  return {{"visible", rate.visible},
          {"caught", rate.caught},
          {"own", rate.own},
          {"honest_passes", rate.honest_passes},
          {"caught_where_honest_passes", rate.caught_where_honest_passes}};
}

nlohmann::json matrix_json(const std::vector<golden::Bug>& bugs,
                           const std::vector<golden::Precision>& precisions,
                           const std::vector<golden::Detection>& matrix) {
  nlohmann::json out;
  for (const golden::Precision p : precisions)
    out["precisions"].push_back(golden::precision_name(p));
  for (const golden::Bug& bug : bugs) {
    out["bugs"].push_back({{"name", bug.name},
                           {"description", bug.description},
                           {"own_tensor", bug.own_tensor},
                           {"own_op_tensors", bug.own_op_tensors}});
  }
  out["detections"] = nlohmann::json::array();
  for (const golden::Detection& d : matrix) {
    out["detections"].push_back(
        {{"bug", d.bug},
         {"set", d.set},
         {"precision", golden::precision_name(d.precision)},
         {"visible", d.visible},
         {"first_visible",
          d.first_visible ? nlohmann::json(*d.first_visible) : nlohmann::json(nullptr)},
         {"caught", d.caught},
         {"first_failure",
          d.first_failure ? nlohmann::json(*d.first_failure) : nlohmann::json(nullptr)},
         {"own", d.own},
         {"honest_passes", d.honest_passes}});
  }
  for (const auto& [p, rate] : golden::catch_rates(matrix)) {
    out["catch_rates"][golden::precision_name(p)] = rate_json(rate);
  }
  for (const auto& [bug, rates] : golden::catch_rates_by_bug(matrix)) {
    for (const auto& [p, rate] : rates) {
      out["catch_rates_by_bug"][bug][golden::precision_name(p)] = rate_json(rate);
    }
  }
  return out;
}

void print_matrix(const std::vector<golden::Bug>& bugs,
                  const std::vector<golden::Precision>& precisions,
                  const std::vector<golden::Detection>& matrix) {
  const size_t columns = precisions.size();
  std::printf("%-44s %-34s %-7s", "bug", "set", "visible");
  for (const golden::Precision p : precisions) std::printf(" | %-58s", golden::precision_name(p));
  std::printf("\n");
  for (size_t row = 0; row < matrix.size(); row += columns) {
    const golden::Detection& first = matrix[row];
    std::printf("%-44s %-34s %-7s", first.bug.c_str(), first.set.c_str(),
                first.visible ? "yes" : "no");
    for (size_t c = 0; c < columns; ++c) std::printf(" | %-58s", cell(matrix[row + c]).c_str());
    std::printf("\n");
  }

  std::printf(
      "\n\"!\": the honest baseline fails that set at that precision too.\n"
      "\ncatch rate over the visible (bug, set) pairs; the first failure being the bug's own "
      "tensor; the catch rate where the honest baseline passes:\n");
  const auto rates = golden::catch_rates(matrix);
  for (const golden::Precision p : precisions) {
    const auto found = rates.find(p);
    const golden::CatchRate rate = found == rates.end() ? golden::CatchRate{} : found->second;
    std::printf("  %-5s caught %-8s (%5.1f%%)   own first %-8s   where honest passes %s (%.1f%%)\n",
                golden::precision_name(p), fraction(rate.caught, rate.visible).c_str(),
                percent(rate.caught, rate.visible), fraction(rate.own, rate.caught).c_str(),
                fraction(rate.caught_where_honest_passes, rate.honest_passes).c_str(),
                percent(rate.caught_where_honest_passes, rate.honest_passes));
  }

  std::printf("\nper bug, caught / visible pairs:\n%-44s", "bug");
  for (const golden::Precision p : precisions) std::printf(" %-7s", golden::precision_name(p));
  std::printf("\n");
  const auto by_bug = golden::catch_rates_by_bug(matrix);
  for (const golden::Bug& bug : bugs) {
    const auto found = by_bug.find(bug.name);
    if (found == by_bug.end()) continue;
    std::printf("%-44s", bug.name.c_str());
    for (const golden::Precision p : precisions) {
      const auto rate = found->second.find(p);
      const golden::CatchRate r = rate == found->second.end() ? golden::CatchRate{} : rate->second;
      std::printf(" %-7s", fraction(r.caught, r.visible).c_str());
    }
    std::printf("\n");
  }
}

}  // namespace

Command register_bugs(CLI::App& app) {
  auto options = std::make_shared<BugsOptions>();
  const CLI::Option* threads = app.get_option("--threads");
  CLI::App* command = app.add_subcommand(
      "bugs", "Measure which catalogued backend bugs the checker catches on the golden sets");
  command->add_option("golden", options->golden_dir, "Directory of golden sets")
      ->capture_default_str();
  command
      ->add_option("--precision", options->precisions,
                   "A precision to check at (repeatable; default fp32, tf32, bf16, fp16)")
      ->allow_extra_args(false)
      ->check(precision_name());
  command->add_option("--bug", options->bugs, "Only this bug of the catalog (repeatable)")
      ->allow_extra_args(false);
  command->add_flag("--json", options->json, "Print JSON");
  return {command, [options, threads] {
            // The sets are tiny: more threads cost more to start than they save.
            if (threads->count() == 0) omp_set_num_threads(1);
            std::vector<golden::Precision> precisions;
            for (const std::string& name : options->precisions) {
              precisions.push_back(golden::precision_from_name(name));
            }
            if (precisions.empty()) {
              precisions = {golden::Precision::kFP32, golden::Precision::kTF32,
                            golden::Precision::kBF16, golden::Precision::kFP16};
            }
            std::vector<golden::Bug> bugs;
            for (const std::string& name : options->bugs) bugs.push_back(golden::find_bug(name));
            if (bugs.empty()) bugs = golden::bug_catalog();
            std::vector<golden::GoldenSet> sets;
            for (const auto& dir : golden::find_golden_sets(options->golden_dir)) {
              sets.push_back(golden::GoldenSet::open(dir));
            }
            if (sets.empty())
              throw std::runtime_error(options->golden_dir + ": no golden sets found");
            const std::vector<golden::Detection> matrix =
                golden::detection_matrix(sets, precisions, bugs);
            if (options->json) {
              std::cout << matrix_json(bugs, precisions, matrix).dump(2) << "\n";
            } else {
              print_matrix(bugs, precisions, matrix);
            }
            return 0;
          }};
}

}  // namespace moeref::cli
