// Loading what the subcommands share: a model from a config and optional weights, and prompts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ref/model/model.h"
#include "ref/model/weights.h"

namespace moeref::cli {

// The kernel set every model of this run uses: "ref" (the default) or "simd" (--backend).
// Throws std::invalid_argument for another name.
void select_backend(const std::string& name);

// Whether weights holding NaN or Inf load (--allow-nonfinite-weights); refused by default.
void set_non_finite_weights(NonFiniteWeights policy);
NonFiniteWeights non_finite_weights();

// Weights from `weights_path`; when it is empty, from the config's weights_file (relative to the
// config's directory; a ConfigError naming the key when it is not a readable file), or else
// initialised from the config's seed. Computed with the selected backend.
Model load_model(const std::string& config_path, const std::string& weights_path);

// A config for a command that always computes with seeded weights (init, golden): one naming a
// weights_file is refused (ConfigError naming the key), so that an imported model is never
// replaced by seeded weights without a word.
ModelConfig load_seeded_config(const std::string& config_path);

// The image file at `path` as the vision tower's input (ref/io/image.h). Throws
// std::invalid_argument when the config has no vision section, ImageError for a bad file.
Tensor load_model_image(const ModelConfig& config, const std::string& path);

// "1, 2,3" -> {1, 2, 3}; throws std::invalid_argument naming the bad entry.
std::vector<int32_t> parse_token_list(const std::string& text);

// One token per byte (byte-level vocabulary); throws std::invalid_argument when a byte is not in
// a vocabulary of vocab_size tokens.
std::vector<int32_t> bytes_to_tokens(const std::string& text, int64_t vocab_size);

// Tokens below 256 as bytes, printable ASCII as is, everything else escaped (\xNN, <id>).
std::string tokens_to_display_text(const std::vector<int32_t>& tokens);

}  // namespace moeref::cli
