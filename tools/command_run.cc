// moeref run CONFIG: generate from a prompt, greedy or sampled, and report tokens per second.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>

#include "ref/generation/generate.h"
#include "ref/generation/speculative.h"
#include "tools/commands.h"
#include "tools/model_loading.h"
#include "tools/usage.h"

namespace moeref::cli {

namespace {

struct RunOptions {
  std::string config_path;
  std::string weights_path;
  std::string draft_config_path;
  std::string draft_weights_path;
  SpeculativeOptions speculative;
  std::string prompt;
  std::string token_list;
  std::string image_path;
  GenerationRequest request;
  bool json = false;
};

double per_second(size_t count, double seconds) {
  return seconds > 0.0 ? static_cast<double>(count) / seconds : 0.0;
}

void print_generation(const std::vector<int32_t>& prompt, const std::vector<int32_t>& tokens,
                      bool stopped_at_eos) {
  std::printf("prompt (%zu tokens): %s\n", prompt.size(), tokens_to_display_text(prompt).c_str());
  std::printf("generated (%zu tokens%s):", tokens.size(), stopped_at_eos ? ", stopped at EOS" : "");
  for (const int32_t token : tokens) std::printf(" %d", token);
  std::printf("\n  as text: %s\n", tokens_to_display_text(tokens).c_str());
}

int run_speculative(const Model& target, const GenerationRequest& request,
                    const RunOptions& options) {
  const Model draft = load_model(options.draft_config_path, options.draft_weights_path);
  const auto start = std::chrono::steady_clock::now();
  const SpeculativeResult result =
      speculative_generate(target, draft, request, options.speculative);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const SpeculativeStats& s = result.stats;
  if (options.json) {
    const nlohmann::json out = {
        {"prompt_tokens", request.prompt},
        {"tokens", result.tokens},
        {"stopped_at_eos", result.stopped_at_eos},
        {"tokens_per_second", per_second(result.tokens.size(), seconds)},
        {"blocks", s.blocks},
        {"drafted", s.drafted},
        {"accepted", s.accepted},
        {"acceptance_rate", s.acceptance_rate()},
        {"tokens_per_target_forward", s.tokens_per_target_forward()},
        {"target_forwards", s.target_forwards},
        {"target_forwards_saved", s.target_forwards_saved()},
        {"draft_forwards", s.draft_forwards},
    };
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  print_generation(request.prompt, result.tokens, result.stopped_at_eos);
  std::printf(
      "speculative: %lld blocks, %lld of %lld proposals accepted (%.1f%%), %.2f tokens per "
      "target forward, %lld target forwards saved; %.1f tokens/s\n",
      static_cast<long long>(s.blocks), static_cast<long long>(s.accepted),
      static_cast<long long>(s.drafted), 100.0 * s.acceptance_rate(), s.tokens_per_target_forward(),
      static_cast<long long>(s.target_forwards_saved()), per_second(result.tokens.size(), seconds));
  return 0;
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
  command->add_option("--draft", options->draft_config_path,
                      "Draft model config: decode speculatively (docs/speculative.md)");
  command->add_option("--draft-weights", options->draft_weights_path,
                      "Draft weights; default: initialised from the draft config's seed");
  command->add_option("--gamma", options->speculative.gamma, "Tokens the draft proposes a block")
      ->capture_default_str();
  command->add_flag("--adaptive-gamma", options->speculative.adaptive_gamma,
                    "Grow gamma by 2 after a fully accepted block, else shrink it by 1");
  auto* image = command->add_option(
      "--image", options->image_path,
      "An image (PNG, PPM, or a safetensors tensor \"image\") for a vision config");
  command
      ->add_option("--image-position", options->request.image_position,
                   "Prompt tokens before the image; the tokens from there on see it")
      ->capture_default_str()
      ->needs(image);
  command->add_flag("--json", options->json, "Print JSON");
  return {command, [options, prompt, tokens] {
            if (!*tokens && !*prompt) {
              throw UsageError("give a prompt with --prompt TEXT or --tokens IDS");
            }
            const Model model = load_model(options->config_path, options->weights_path);
            GenerationRequest request = options->request;
            if (*tokens) {
              request.prompt = parse_token_list(options->token_list);
            } else {
              request.prompt = bytes_to_tokens(options->prompt, model.config().vocab_size);
            }
            if (!options->image_path.empty()) {
              request.image = load_model_image(model.config(), options->image_path);
            }
            if (!options->draft_config_path.empty()) {
              return run_speculative(model, request, *options);
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
            print_generation(request.prompt, result.tokens, result.stopped_at_eos);
            std::printf("prefill %.1f tokens/s, decode %.1f tokens/s (%s backend)\n", prefill_rate,
                        decode_rate, model.kernels().name());
            return 0;
          }};
}

}  // namespace moeref::cli
