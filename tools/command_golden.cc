// moeref golden: write golden sets (docs/golden-format.md), or verify committed ones.
//   moeref golden CONFIG --out DIR [options]   a model case
//   moeref golden --ops --out DIR              every op-level case, one directory each
//   moeref golden --op OP --shape K=V ... --out DIR   one op case at the caller's shapes
//   moeref golden --verify DIR                 regenerate every set under DIR, demand equal bits
#include <cstdint>
#include <cstdio>
#include <iostream>

#include "golden/verify.h"
#include "ref/io/config.h"
#include "tools/commands.h"
#include "tools/model_loading.h"
#include "tools/output_guard.h"
#include "tools/usage.h"

namespace moeref::cli {

namespace {

struct GoldenOptions {
  std::string config_path;
  std::string out_dir;
  std::string verify_dir;
  std::string token_list;
  std::string draft_config_path;
  std::string resolved_at;
  std::string op;
  std::vector<std::string> shape;
  int64_t tries = 1000;
  int64_t gamma = 3;
  bool ops = false;
  bool batching = false;
  golden::ModelCaseSpec spec;
};

int verify(const std::string& root) {
  const std::vector<golden::VerifyResult> results = golden::verify_golden_tree(root);
  int failed = 0;
  for (const golden::VerifyResult& r : results) {
    std::printf("%s %s: %s\n", r.ok ? "ok  " : "FAIL", r.set.string().c_str(), r.message.c_str());
    failed += r.ok ? 0 : 1;
  }
  if (results.empty()) throw std::runtime_error(root + ": no golden sets (manifest.json) found");
  std::printf("%zu golden set%s, %d failed\n", results.size(), results.size() == 1 ? "" : "s",
              failed);
  return failed == 0 ? 0 : 1;
}

// A speculative case takes the model case's prompt, sampling and margin options.
int write_speculative(const GoldenOptions& options) {
  golden::SpeculativeCaseSpec spec;
  spec.target = load_seeded_config(options.config_path);
  spec.draft = load_seeded_config(options.draft_config_path);
  spec.name = options.spec.name.empty() ? spec.target.name : options.spec.name;
  spec.description = options.spec.description;
  if (!options.token_list.empty()) spec.prompt = parse_token_list(options.token_list);
  spec.prompt_length = options.spec.prompt_length;
  spec.new_tokens = options.spec.sampled_tokens;
  spec.gamma = options.gamma;
  spec.sampling = options.spec.sampling;
  spec.margin_threshold = options.spec.margin_threshold;
  golden::write_speculative_case(spec, options.out_dir);
  std::cout << "wrote speculative golden set \"" << spec.name << "\" to " << options.out_dir
            << "\n";
  return 0;
}

// "rows=13" -> {"rows": 13}: an integer, another number, or else a string (activation=gelu).
nlohmann::json shape_of(const std::vector<std::string>& assignments) {
  nlohmann::json shape = nlohmann::json::object();
  for (const std::string& assignment : assignments) {
    const size_t equals = assignment.find('=');
    if (equals == std::string::npos || equals == 0 || equals + 1 == assignment.size()) {
      throw UsageError("--shape: expected KEY=VALUE, got \"" + assignment + "\"");
    }
    const std::string key = assignment.substr(0, equals);
    const std::string value = assignment.substr(equals + 1);
    if (shape.contains(key)) throw UsageError("--shape: \"" + key + "\" given twice");
    const nlohmann::json number = nlohmann::json::parse(value, nullptr, false);
    shape[key] = number.is_number() ? number : nlohmann::json(value);
  }
  return shape;
}

int write_shaped(const GoldenOptions& options) {
  if (options.op.empty()) throw UsageError("--shape describes the op of --op; give --op NAME");
  if (options.ops || options.batching || !options.config_path.empty() ||
      !options.draft_config_path.empty()) {
    throw UsageError("--op writes one op case: give no CONFIG, --ops, --batching or --draft");
  }
  if (options.spec.sampling.seed > UINT32_MAX) {
    throw UsageError("--seed: an op case's seed is below 2^32, got " +
                     std::to_string(options.spec.sampling.seed));
  }
  golden::OpCaseRequest request;
  request.op = options.op;
  request.shape = shape_of(options.shape);
  request.name = options.spec.name;
  request.seed = static_cast<uint32_t>(options.spec.sampling.seed);
  request.margin = options.spec.margin_threshold;
  request.tries = options.tries;
  if (!options.resolved_at.empty()) {
    request.resolved_at = golden::precision_from_name(options.resolved_at);
  }
  golden::write_shaped_op_case(request, options.out_dir);
  std::cout << "wrote op case of " << request.op << " to " << options.out_dir << "\n";
  return 0;
}

}  // namespace

Command register_golden(CLI::App& app) {
  auto options = std::make_shared<GoldenOptions>();
  golden::ModelCaseSpec& spec = options->spec;
  CLI::App* command = app.add_subcommand("golden", "Write golden sets, or verify committed ones");
  command->add_option("config", options->config_path, "Model config (JSON) of a model case");
  command->add_option("--out", options->out_dir, "Directory to write the set to");
  command->add_option("--verify", options->verify_dir,
                      "Regenerate every set under this directory and compare bit for bit");
  command->add_flag("--ops", options->ops, "Write the op-level cases");
  command->add_option("--op", options->op,
                      "Write one case of this op at the shapes of --shape (docs/golden-format.md)");
  command->add_option("--shape", options->shape, "A shape parameter of --op, KEY=VALUE (repeat)")
      ->allow_extra_args(false);
  command->add_option("--tries", options->tries, "Seeds --op tries, from --seed, for the margins")
      ->capture_default_str()
      ->check(at_least(1));
  command->add_flag("--batching", options->batching,
                    "Write the continuous-batching case of CONFIG (docs/batching.md)");
  command->add_option("--draft", options->draft_config_path,
                      "Draft config: write a speculative-decoding case (docs/speculative.md)");
  command->add_option("--gamma", options->gamma, "Proposals per block of the speculative case")
      ->capture_default_str();
  command->add_option("--name", spec.name, "Case name (default: the config's name)");
  command->add_option("--description", spec.description, "What the case is for");
  command->add_option("--tokens", options->token_list,
                      "Prompt token ids (default: searched for comfortable margins)");
  command->add_option("--prompt-length", spec.prompt_length, "Length of a searched prompt")
      ->capture_default_str();
  command->add_option("--decode-steps", spec.decode_steps, "Traced decode calls")
      ->capture_default_str();
  command->add_option("--sampled-tokens", spec.sampled_tokens, "Tokens of the sampled generation")
      ->capture_default_str();
  command->add_option("--temperature", spec.sampling.temperature)->capture_default_str();
  command->add_option("--top-k", spec.sampling.top_k)->capture_default_str();
  command->add_option("--top-p", spec.sampling.top_p)->capture_default_str();
  command
      ->add_option("--seed", spec.sampling.seed,
                   "Sampling and prompt-search seed; with --op, the first seed tried")
      ->capture_default_str();
  command
      ->add_option("--image-seed", spec.image_seed, "Seed of the synthetic image (vision configs)")
      ->capture_default_str();
  command
      ->add_option("--image-position", spec.image_position,
                   "Prompt tokens before the image (vision configs)")
      ->capture_default_str();
  command
      ->add_option("--margin", spec.margin_threshold,
                   "Smallest router, greedy and sampling margin to accept")
      ->capture_default_str();
  command
      ->add_option("--resolved-at", options->resolved_at,
                   "Also require every decision's margin above its resolution at this precision "
                   "(fp32, tf32, bf16 or fp16), on the set's own calibration")
      ->check(precision_name());
  guard_outputs(command, [options] {
    OutputPlan plan{{options->config_path, options->draft_config_path}, {}};
    if (options->verify_dir.empty() && !options->out_dir.empty()) {
      plan.golden_dir = {"--out", options->out_dir};
      plan.golden = options->ops ? GoldenOutput::kTree : GoldenOutput::kSet;
    }
    return plan;
  });
  return {command, [options] {
            if (!options->verify_dir.empty()) return verify(options->verify_dir);
            if (options->out_dir.empty()) {
              throw UsageError("give --out DIR to write a set, or --verify DIR");
            }
            if (!options->resolved_at.empty() &&
                (options->ops || options->batching || !options->draft_config_path.empty())) {
              throw UsageError(
                  "--resolved-at applies to model cases and --op only, not to --ops, "
                  "--batching or --draft");
            }
            if (!options->op.empty() || !options->shape.empty()) return write_shaped(*options);
            if (options->ops) {
              golden::write_op_cases(options->out_dir);
              std::cout << "wrote the op cases under " << options->out_dir << "\n";
              return 0;
            }
            if (options->config_path.empty()) {
              throw UsageError("give a CONFIG for a model case, or --ops");
            }
            if (!options->draft_config_path.empty()) return write_speculative(*options);
            if (options->batching) {
              golden::BatchingCaseSpec batching =
                  golden::default_batching_spec(load_seeded_config(options->config_path));
              batching.name =
                  options->spec.name.empty() ? batching.config.name : options->spec.name;
              batching.description = options->spec.description;
              golden::write_batching_case(batching, options->out_dir);
              std::cout << "wrote batching golden set \"" << batching.name << "\" to "
                        << options->out_dir << "\n";
              return 0;
            }
            golden::ModelCaseSpec case_spec = options->spec;
            case_spec.config = load_seeded_config(options->config_path);
            if (case_spec.name.empty()) case_spec.name = case_spec.config.name;
            if (!options->token_list.empty()) {
              case_spec.prompt = parse_token_list(options->token_list);
            }
            if (!options->resolved_at.empty()) {
              case_spec.resolved_at = golden::precision_from_name(options->resolved_at);
            }
            golden::write_model_case(case_spec, options->out_dir);
            std::cout << "wrote golden set \"" << case_spec.name << "\" to " << options->out_dir
                      << "\n";
            return 0;
          }};
}

}  // namespace moeref::cli
