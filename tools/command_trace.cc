// moeref trace CONFIG --tokens IDS --out FILE: one prefill forward pass with every traced
// intermediate (docs/tracing.md) written to a safetensors file, in execution order, under the
// golden sets' names ("prefill/..."), so that `moeref compare` takes the file as a candidate. With
// --image (vision configs), the image's encoding comes first ("image/...").
#include <iostream>

#include "ref/generation/generate.h"
#include "tools/commands.h"
#include "tools/model_loading.h"
#include "tools/output_guard.h"

namespace moeref::cli {

namespace {

struct TraceOptions {
  std::string config_path;
  std::string weights_path;
  std::string token_list;
  std::string out_path;
  std::string image_path;
  int64_t image_position = 0;
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
  auto* image_option = command->add_option(
      "--image", options->image_path, "An image for a vision config; its encoding is traced first");
  command
      ->add_option("--image-position", options->image_position,
                   "Prompt tokens before the image; the tokens from there on see it")
      ->capture_default_str()
      ->needs(image_option);
  guard_outputs(command, [options] {
    return OutputPlan{{options->config_path, options->weights_path, options->image_path},
                      {{"--out", options->out_path}}};
  });
  return {command, [options] {
            const Model model = load_model(options->config_path, options->weights_path);
            const std::vector<int32_t> tokens = parse_token_list(options->token_list);
            KvCache cache = model.new_cache();
            TraceRecorder recorder;
            ImageKv image_kv;
            SequenceImage image;
            if (!options->image_path.empty()) {
              check_image_position(options->image_position, static_cast<int64_t>(tokens.size()));
              PrefixedTracer image_tracer(recorder, "image/");
              image_kv = model.encode_image(load_model_image(model.config(), options->image_path),
                                            &image_tracer);
              image = {&image_kv, options->image_position};
            }
            PrefixedTracer prefill_tracer(recorder, "prefill/");
            model.forward(tokens, cache, image, &prefill_tracer);
            write_safetensors(options->out_path, recorder.records());
            std::cout << "wrote " << recorder.records().size() << " tensors to "
                      << options->out_path << "\n";
            return 0;
          }};
}

}  // namespace moeref::cli
