// moeref export-hf / import-hf: Mixtral-layout Hugging Face directories (ref/io/hf_interop.h).
#include <cstdint>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ref/io/atomic_file.h"
#include "ref/io/hf_checkpoint.h"
#include "ref/io/hf_interop.h"
#include "tools/commands.h"
#include "tools/model_loading.h"
#include "tools/output_guard.h"

namespace moeref::cli {

namespace {

struct ExportOptions {
  std::string config_path;
  std::string weights_path;
  std::string out_dir;
  std::string dtype = "f32";
  std::string max_shard_size;
};

// "20KB", "5GB", "2GiB" or a plain number of bytes, as transformers' max_shard_size reads them
// (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024).
uint64_t parse_shard_size(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::string unit = text.substr(digits);
  static const std::map<std::string, uint64_t> kUnits = {{"", 1},
                                                         {"B", 1},
                                                         {"KB", 1000},
                                                         {"MB", 1000 * 1000},
                                                         {"GB", 1000'000'000},
                                                         {"KiB", 1ULL << 10},
                                                         {"MiB", 1ULL << 20},
                                                         {"GiB", 1ULL << 30}};
  const auto found = kUnits.find(unit);
  uint64_t bytes = 0;
  if (digits == 0 || digits > 12 || found == kUnits.end() ||
      (bytes = std::stoull(text.substr(0, digits)) * found->second) == 0) {
    throw CLI::ValidationError("--max-shard-size " + text +
                               ": expected a positive size such as 20KB, 5GB or 2GiB");
  }
  return bytes;
}

// The weights file as the written config names it: relative to the config's directory, so the
// two may move together, or absolute where no relative path leads there.
std::string weights_file_for(const std::filesystem::path& config_out,
                             const std::filesystem::path& weights_out) {
  const std::filesystem::path weights = std::filesystem::absolute(weights_out).lexically_normal();
  const std::filesystem::path relative =
      weights.lexically_relative(std::filesystem::absolute(config_out).parent_path());
  return (relative.empty() ? weights : relative).string();
}

HfExportOptions export_options(const ExportOptions& options) {
  HfExportOptions hf;
  if (options.dtype == "bf16") hf.dtype = DType::kBF16;
  if (!options.max_shard_size.empty())
    hf.max_shard_bytes = parse_shard_size(options.max_shard_size);
  return hf;
}

struct ImportOptions {
  std::string hf_dir;
  std::string config_out;
  std::string weights_out;
};

}  // namespace

Command register_export_hf(CLI::App& app) {
  auto options = std::make_shared<ExportOptions>();
  CLI::App* command = app.add_subcommand(
      "export-hf", "Write config.json and safetensors weights for MixtralForCausalLM");
  command->add_option("config", options->config_path, "Model config (JSON)")->required();
  command->add_option("--weights", options->weights_path,
                      "Weights (safetensors); default: initialised from the config's seed");
  command->add_option("--out", options->out_dir, "Directory to write")->required();
  command
      ->add_option("--dtype", options->dtype,
                   "f32 (default) or bf16, refused unless every weight is exactly a bfloat16")
      ->check(CLI::IsMember({"f32", "bf16"}));
  command->add_option("--max-shard-size", options->max_shard_size,
                      "Shard the weights (model.safetensors.index.json) at this size, e.g. 5GB");
  guard_outputs(command, [options] {
    const std::filesystem::path dir = options->out_dir;
    std::vector<OutputFile> files = {{"--out", dir / "config.json"},
                                     {"--out", dir / kHfWeightsFile},
                                     {"--out", dir / kHfIndexFile}};
    const HfExportOptions hf = export_options(*options);
    if (hf.max_shard_bytes > 0) {
      // The shard names follow from the config; a config that does not load has none, and the
      // command reports its error when it runs (exit 1, as every command does).
      try {
        for (const HfShard& shard : hf_shards(load_config(options->config_path), hf)) {
          if (shard.file != kHfWeightsFile) files.push_back({"--out", dir / shard.file});
        }
      } catch (const ConfigError&) {
      }
    }
    return OutputPlan{{options->config_path, options->weights_path}, files};
  });
  return {command, [options] {
            const Model model = load_model(options->config_path, options->weights_path);
            const HfExportOptions hf = export_options(*options);
            export_hf(model.config(), model.weights(), options->out_dir, hf);
            const size_t shards = hf_shards(model.config(), hf).size();
            std::cout << "wrote " << options->out_dir << "/config.json and "
                      << (shards == 1 ? std::string(kHfWeightsFile)
                                      : std::to_string(shards) + " shards with " + kHfIndexFile)
                      << "\n";
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
            ImportedModel model = import_hf(options->hf_dir, non_finite_weights());
            std::vector<StagedFile> files;
            files.push_back(
                stage_safetensors(options->weights_out, weight_views(model.config, model.weights)));
            model.config.weights_file = weights_file_for(options->config_out, options->weights_out);
            const std::string config_text = config_to_json(model.config).dump(2) + "\n";
            files.push_back(
                StagedFile(options->config_out, [&](std::ostream& out) { out << config_text; }));
            publish_together(files);
            std::cout << "wrote " << options->config_out << " and " << options->weights_out << "\n";
            return 0;
          }};
}

}  // namespace moeref::cli
