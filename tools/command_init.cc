// moeref init CONFIG --out WEIGHTS: the config's deterministic weights, to a safetensors file.
#include <iostream>
#include <nlohmann/json.hpp>

#include "ref/io/config.h"
#include "ref/model/weights.h"
#include "tools/commands.h"
#include "tools/model_loading.h"
#include "tools/output_guard.h"

namespace moeref::cli {

namespace {

struct InitOptions {
  std::string config_path;
  std::string out_path;
};

}  // namespace

Command register_init(CLI::App& app) {
  auto options = std::make_shared<InitOptions>();
  CLI::App* command =
      app.add_subcommand("init", "Write the config's deterministic weights (safetensors)");
  command->add_option("config", options->config_path, "Model config (JSON)")->required();
  command->add_option("--out", options->out_path, "Weights file to write")->required();
  guard_outputs(command, [options] {
    return OutputPlan{{options->config_path}, {{"--out", options->out_path}}};
  });
  return {command, [options] {
            const ModelConfig config = load_seeded_config(options->config_path);
            save_weights(config, init_weights(config), options->out_path,
                         {{"moeref_config", config_to_json(config).dump()}});
            std::cout << "wrote " << options->out_path << "\n";
            return 0;
          }};
}

}  // namespace moeref::cli
