// moeref: the command-line program. Exit codes: 0 success, 1 failure, 2 usage error.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "ref/io/temporary_cleanup.h"
#include "runtime/freed_memory.h"
#include "runtime/huge_pages.h"
#include "tools/commands.h"
#include "tools/model_loading.h"
#include "tools/usage.h"

namespace {

// The names of the subcommands, for the message about a name that is none of them.
std::string command_names(const CLI::App& app) {
  std::string names;
  for (const CLI::App* subcommand : app.get_subcommands({})) {
    names += (names.empty() ? "" : ", ") + subcommand->get_name();
  }
  return names;
}

constexpr const char* kHelpHint = "Run with --help for more information.";

// The global options, and the subcommands that read each; given to any other subcommand, an
// option is a usage error rather than ignored (`moeref --backend simd golden` would otherwise
// write the reference's outputs as if they were simd's).
struct GlobalOption {
  const char* name;
  std::vector<std::string> read_by;
};

const std::vector<GlobalOption> kGlobalOptions = {
    {"--backend", {"run", "trace", "serve-sim"}},
    {"--threads",
     {"run", "trace", "serve-sim", "golden", "compare", "anchor", "tolerances", "candidate",
      "bugs"}},
    {"--allow-nonfinite-weights", {"run", "trace", "serve-sim", "export-hf", "import-hf"}},
};

// The message for the first global option given that `subcommand` does not read; "" if none.
std::string inapplicable_option(const CLI::App& app, const std::string& subcommand) {
  for (const GlobalOption& option : kGlobalOptions) {
    if (app.count(option.name) == 0) continue;
    if (std::ranges::find(option.read_by, subcommand) != option.read_by.end()) continue;
    std::string readers;
    for (const std::string& reader : option.read_by)
      readers += (readers.empty() ? "" : ", ") + reader;
    return std::string(option.name) + " does not apply to " + subcommand + "; only " + readers +
           " read it";
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace moeref::cli;
  // Memory for a program that calls the model in a loop: Tensors on huge pages, freed memory kept
  // mapped (runtime/). Where memory lives, never what it holds.
  moeref::runtime::use_huge_pages_for_tensors();
  moeref::runtime::retain_freed_memory();
  moeref::remove_temporaries_on_interrupt();
  CLI::App app(
      "moeref: reference implementation and correctness oracle of a GPT-4-style "
      "mixture-of-experts transformer");
  // At most one subcommand while parsing, so that a word that names none is reported as such
  // (CLI11 would otherwise report the missing subcommand first); none is reported below.
  app.require_subcommand(0, 1);
  int threads = 0;
  app.add_option("--threads", threads, "OpenMP threads (default: all cores)")->check(at_least(0));
  std::string backend = "ref";
  app.add_option("--backend", backend, "Kernel set: ref (the oracle) or simd (fast)")
      ->check(CLI::IsMember({"ref", "simd"}))
      ->capture_default_str();
  bool allow_nonfinite_weights = false;
  app.add_flag("--allow-nonfinite-weights", allow_nonfinite_weights,
               "Load weights holding NaN or Inf (refused by default), to test how a backend "
               "propagates them");

  const std::vector<Command> commands = {
      register_stats(app),     register_init(app),      register_run(app),
      register_export_hf(app), register_import_hf(app), register_trace(app),
      register_golden(app),    register_compare(app),   register_tolerances(app),
      register_candidate(app), register_serve_sim(app), register_anchor(app),
      register_bugs(app)};

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ExtrasError& e) {
    const std::vector<std::string> extras = app.remaining();
    if (app.get_subcommands().empty() && !extras.empty() && !extras.front().starts_with("-")) {
      std::fprintf(stderr, "moeref: error: '%s' is not a command; the commands are %s\n%s\n",
                   extras.front().c_str(), command_names(app).c_str(), kHelpHint);
    } else {
      app.exit(e);
    }
    return 2;
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  if (app.get_subcommands().empty()) {
    std::fprintf(stderr, "moeref: error: a command is required: %s\n%s\n",
                 command_names(app).c_str(), kHelpHint);
    return 2;
  }

  const std::string subcommand = app.get_subcommands().front()->get_name();
  if (const std::string message = inapplicable_option(app, subcommand); !message.empty()) {
    std::fprintf(stderr, "moeref %s: error: %s\n%s\n", subcommand.c_str(), message.c_str(),
                 kHelpHint);
    return 2;
  }

  if (threads > 0) omp_set_num_threads(threads);
  try {
    select_backend(backend);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moeref %s: error: %s\n", subcommand.c_str(), e.what());
    return 1;
  }
  set_non_finite_weights(allow_nonfinite_weights ? moeref::NonFiniteWeights::kAllow
                                                 : moeref::NonFiniteWeights::kRefuse);
  for (const Command& command : commands) {
    if (!command.subcommand->parsed()) continue;
    const std::string name = command.subcommand->get_name();
    try {
      return command.run();
    } catch (const UsageError& e) {
      std::fprintf(stderr, "moeref %s: error: %s\n%s\n", name.c_str(), e.what(), kHelpHint);
      return 2;
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr,
                   "moeref %s: error: out of memory: the command needed more memory than the "
                   "system would give\n",
                   name.c_str());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "moeref %s: error: %s\n", name.c_str(), e.what());
      return 1;
    }
  }
  return 2;
}
