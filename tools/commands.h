// The moeref command's subcommands. Each register_* adds one subcommand to the app and returns it
// with the action that runs it once the command line has been parsed; the action returns the exit
// code and may throw (any std::exception is reported as an error, exit code 1).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace moeref::cli {

using Action = std::function<int()>;

struct Command {
  CLI::App* subcommand;
  Action run;
};

Command register_stats(CLI::App& app);
Command register_init(CLI::App& app);
Command register_run(CLI::App& app);
Command register_export_hf(CLI::App& app);
Command register_import_hf(CLI::App& app);
Command register_trace(CLI::App& app);
Command register_golden(CLI::App& app);
Command register_compare(CLI::App& app);
Command register_anchor(CLI::App& app);
Command register_tolerances(CLI::App& app);
Command register_candidate(CLI::App& app);
Command register_serve_sim(CLI::App& app);
Command register_bugs(CLI::App& app);

}  // namespace moeref::cli
