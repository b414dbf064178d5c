// moeref run CONFIG: generate from a prompt, greedy or sampled, and report tokens per second.
#include <cstdio>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>

#include "ref/generate.h"
#include "tools/commands.h"
#include "tools/model_loading.h"

namespace moeref::cli {

namespace {

struct RunOptions {
  std::string config_path;
  std::string weights_path;
  std::string prompt;
  std::string token_list;
  GenerationRequest request;
  bool json = false;
};

double per_second(size_t count, double seconds) {
  return seconds > 0.0 ? static_cast<double>(count) / seconds : 0.0;
}

}  // namespace

Command register_run(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  SamplingParams& sampling = options->request.sampling;
  CLI::App* command = app.add_subcommand("run", "Generate tokens from a prompt");
  command->add_option("config", options->config_path, "Model config (JSON)")->required();
  command->add_option("--weights", options->weights_path,
                      "Weights (safetensors); default: initialised from the config's seed");
  auto* prompt = command->add_option("--prompt", options->prompt, "Prompt text, one token a byte");
  auto* tokens =
      command->add_option("--tokens", options->token_list, "Prompt as comma-separated token ids");
  prompt->excludes(tokens);
  command->add_option("--max-new-tokens", options->request.max_new_tokens, "Tokens to generate")
      ->capture_default_str();
  command->add_option("--temperature", sampling.temperature, "0 = greedy")->capture_default_str();
  command->add_option("--top-k", sampling.top_k, "Keep the k most likely tokens (0 = off)")
      ->capture_default_str();
  command->add_option("--top-p", sampling.top_p, "Nucleus probability (1 = off)")
      ->capture_default_str();
  command->add_option("--seed", sampling.seed, "Sampling seed (Philox key)")->capture_default_str();
  command->add_flag("--json", options->json, "Print JSON");
  return {command, [options, prompt, tokens] {
            const Model model = load_model(options->config_path, options->weights_path);
            GenerationRequest request = options->request;
            if (*tokens) {
              request.prompt = parse_token_list(options->token_list);
            } else if (*prompt) {
              request.prompt = bytes_to_tokens(options->prompt, model.config().vocab_size);
            } else {
              throw std::invalid_argument("give a prompt with --prompt TEXT or --tokens IDS");
            }
            const GenerationResult result = generate(model, request);
            const double prefill_rate = per_second(request.prompt.size(), result.prefill_seconds);
            const double decode_rate = per_second(result.tokens.size(), result.decode_seconds);
            if (options->json) {
              const nlohmann::json out = {
                  {"prompt_tokens", request.prompt},
                  {"tokens", result.tokens},
                  {"stopped_at_eos", result.stopped_at_eos},
                  {"prefill_tokens_per_second", prefill_rate},
                  {"decode_tokens_per_second", decode_rate},
              };
              std::cout << out.dump(2) << "\n";
              return 0;
            }
            std::printf("prompt (%zu tokens): %s\n", request.prompt.size(),
                        tokens_to_display_text(request.prompt).c_str());
            std::printf("generated (%zu tokens%s):", result.tokens.size(),
                        result.stopped_at_eos ? ", stopped at EOS" : "");
            for (const int32_t token : result.tokens) std::printf(" %d", token);
            std::printf("\n  as text: %s\n", tokens_to_display_text(result.tokens).c_str());
            std::printf("prefill %.1f tokens/s, decode %.1f tokens/s (ref backend)\n", prefill_rate,
                        decode_rate);
            return 0;
          }};
}

}  // namespace moeref::cli
