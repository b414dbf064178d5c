// moeref: the command-line program. Exit codes: 0 success, 1 failure, 2 usage error.
#include <omp.h>

#include <cstdio>
#include <exception>
#include <vector>

#include "ref/freed_memory.h"
#include "ref/temporary_cleanup.h"
#include "tools/commands.h"
#include "tools/model_loading.h"

int main(int argc, char** argv) {
  using namespace moeref::cli;
  moeref::retain_freed_memory();
  moeref::remove_temporaries_on_interrupt();
  CLI::App app(
      "moeref: reference implementation and correctness oracle of a GPT-4-style "
      "mixture-of-experts transformer");
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "OpenMP threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
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
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  if (threads > 0) omp_set_num_threads(threads);
  select_backend(backend);
  set_non_finite_weights(allow_nonfinite_weights ? moeref::NonFiniteWeights::kAllow
                                                 : moeref::NonFiniteWeights::kRefuse);
  for (const Command& command : commands) {
    if (!command.subcommand->parsed()) continue;
    try {
      return command.run();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "moeref %s: error: %s\n", command.subcommand->get_name().c_str(),
                   e.what());
      return 1;
    }
  }
  return 2;
}
