// moeref trace CONFIG --tokens IDS --out FILE: one prefill forward pass with every traced
// intermediate (docs/tracing.md) written to a safetensors file, in execution order.
#include <iostream>

#include "ref/generate.h"
#include "tools/commands.h"
#include "tools/model_loading.h"

namespace moeref::cli {

namespace {

struct TraceOptions {
  std::string config_path;
  std::string weights_path;
  std::string token_list;
  std::string out_path;
};

}  // namespace

Command register_trace(CLI::App& app) {
  auto options = std::make_shared<TraceOptions>();
  CLI::App* command = app.add_subcommand(
      "trace", "Run one prefill and write every traced intermediate tensor (safetensors)");
  command->add_option("config", options->config_path, "Model config (JSON)")->required();
  command->add_option("--weights", options->weights_path,
                      "Weights (safetensors); default: initialised from the config's seed");
  command->add_option("--tokens", options->token_list, "Comma-separated token ids")->required();
  command->add_option("--out", options->out_path, "Safetensors file to write")->required();
  return {command, [options] {
            const Model model = load_model(options->config_path, options->weights_path);
            const std::vector<int32_t> tokens = parse_token_list(options->token_list);
            KvCache cache = model.new_cache();
            TraceRecorder recorder;
            model.forward(tokens, cache, &recorder);
            write_safetensors(options->out_path, recorder.records());
            std::cout << "wrote " << recorder.records().size() << " tensors to "
                      << options->out_path << "\n";
            return 0;
          }};
}

}  // namespace moeref::cli
