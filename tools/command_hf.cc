// moeref export-hf / import-hf: Mixtral-layout Hugging Face directories (ref/hf_interop.h).
#include <iostream>
#include <nlohmann/json.hpp>

#include "ref/atomic_file.h"
#include "ref/hf_interop.h"
#include "tools/commands.h"
#include "tools/model_loading.h"
#include "tools/output_guard.h"

namespace moeref::cli {

namespace {

struct ExportOptions {
  std::string config_path;
  std::string weights_path;
  std::string out_dir;
};

struct ImportOptions {
  std::string hf_dir;
  std::string config_out;
  std::string weights_out;
};

}  // namespace

Command register_export_hf(CLI::App& app) {
  auto options = std::make_shared<ExportOptions>();
  CLI::App* command = app.add_subcommand(
      "export-hf", "Write config.json and model.safetensors for MixtralForCausalLM");
  command->add_option("config", options->config_path, "Model config (JSON)")->required();
  command->add_option("--weights", options->weights_path,
                      "Weights (safetensors); default: initialised from the config's seed");
  command->add_option("--out", options->out_dir, "Directory to write")->required();
  guard_outputs(command, [options] {
    const std::filesystem::path dir = options->out_dir;
    return OutputPlan{{options->config_path, options->weights_path},
                      {{"--out", dir / "config.json"}, {"--out", dir / "model.safetensors"}}};
  });
  return {command, [options] {
            const Model model = load_model(options->config_path, options->weights_path);
            export_hf(model.config(), model.weights(), options->out_dir);
            std::cout << "wrote " << options->out_dir << "/config.json and model.safetensors\n";
            return 0;
          }};
}

Command register_import_hf(CLI::App& app) {
  auto options = std::make_shared<ImportOptions>();
  CLI::App* command = app.add_subcommand(
      "import-hf", "Read a Mixtral-layout Hugging Face directory into a moeref config and weights");
  command->add_option("dir", options->hf_dir, "Directory with config.json and model.safetensors")
      ->required();
  command->add_option("--config-out", options->config_out, "moeref config to write")->required();
  command->add_option("--weights-out", options->weights_out, "Weights to write")->required();
  guard_outputs(command, [options] {
    return OutputPlan{
        {options->hf_dir},
        {{"--config-out", options->config_out}, {"--weights-out", options->weights_out}}};
  });
  return {command, [options] {
            const ImportedModel model = import_hf(options->hf_dir, non_finite_weights());
            std::vector<StagedFile> files;
            files.push_back(
                stage_safetensors(options->weights_out, weight_views(model.config, model.weights)));
            const std::string config_text = config_to_json(model.config).dump(2) + "\n";
            files.push_back(
                StagedFile(options->config_out, [&](std::ostream& out) { out << config_text; }));
            publish_together(files);
            std::cout << "wrote " << options->config_out << " and " << options->weights_out << "\n";
            return 0;
          }};
}

}  // namespace moeref::cli
