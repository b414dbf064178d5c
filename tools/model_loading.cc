#include "tools/model_loading.h"

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "ref/io/config.h"
#include "ref/io/image.h"
#include "ref/model/weights.h"
#include "runtime/kernel_sets.h"

namespace moeref::cli {

namespace {

const Kernels* selected_kernels = &ref_kernels();
NonFiniteWeights non_finite_policy = NonFiniteWeights::kRefuse;

}  // namespace

void select_backend(const std::string& name) { selected_kernels = &runtime::kernels_by_name(name); }

void set_non_finite_weights(NonFiniteWeights policy) { non_finite_policy = policy; }

NonFiniteWeights non_finite_weights() { return non_finite_policy; }

std::filesystem::path weights_named_by(const ModelConfig& config,
                                       const std::filesystem::path& config_path) {
  const std::filesystem::path named = config.weights_file;
  const std::filesystem::path path =
      named.is_absolute() ? named : config_path.parent_path() / named;
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw ConfigError(config_path.string() + ": key \"weights_file\": " + path.string() +
                      " is not a readable file (\"" + config.weights_file +
                      "\", relative to the config); give the weights with --weights");
  }
  return path;
}

Model load_model(const std::string& config_path, const std::string& weights_path) {
  ModelConfig config = load_config(config_path);
  ModelWeights weights;
  if (!weights_path.empty()) {
    weights = load_weights(config, weights_path, {{}, non_finite_policy});
  } else if (!config.weights_file.empty()) {
    weights = load_weights(config, weights_named_by(config, config_path), {{}, non_finite_policy});
  } else {
    weights = init_weights(config);
  }
  return Model(std::move(config), std::move(weights), *selected_kernels);
}

ModelConfig load_seeded_config(const std::string& config_path) {
  ModelConfig config = load_config(config_path);
  if (!config.weights_file.empty()) {
    throw ConfigError(config_path + ": key \"weights_file\": this command computes with the " +
                      "weights seeded from init_seed, and this config's weights are in \"" +
                      config.weights_file + "\"; remove the key to use seeded weights");
  }
  return config;
}

Tensor load_model_image(const ModelConfig& config, const std::string& path) {
  if (!config.vision) {
    throw std::invalid_argument("config \"" + config.name +
                                "\" has no vision section, so it cannot read an image (" + path +
                                ")");
  }
  return load_image(path, *config.vision);
}

std::vector<int32_t> parse_token_list(const std::string& text) {
  if (text.empty()) throw std::invalid_argument("--tokens: the list is empty");
  std::vector<int32_t> tokens;
  size_t begin = 0;
  while (true) {
    const size_t comma = text.find(',', begin);
    const std::string item = text.substr(begin, comma == std::string::npos ? comma : comma - begin);
    size_t used = 0;
    long long value = -1;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    while (used < item.size() && item[used] == ' ') ++used;
    if (item.empty() || used != item.size() || value < 0 || value > INT32_MAX) {
      throw std::invalid_argument("--tokens: \"" + item + "\" is not a token id");
    }
    tokens.push_back(static_cast<int32_t>(value));
    if (comma == std::string::npos) return tokens;
    begin = comma + 1;
  }
}

std::vector<int32_t> bytes_to_tokens(const std::string& text, int64_t vocab_size) {
  std::vector<int32_t> tokens;
  for (const char ch : text) {
    const int32_t byte = static_cast<unsigned char>(ch);
    if (byte >= vocab_size) {
      throw std::invalid_argument("--prompt: byte " + std::to_string(byte) +
                                  " is outside the vocabulary of " + std::to_string(vocab_size) +
                                  " tokens; give token ids with --tokens");
    }
    tokens.push_back(byte);
  }
  return tokens;
}

std::string tokens_to_display_text(const std::vector<int32_t>& tokens) {
  std::string text;
  for (const int32_t token : tokens) {
    char escaped[16];
    if (token >= 32 && token < 127) {
      text += static_cast<char>(token);
    } else if (token < 256) {
      std::snprintf(escaped, sizeof escaped, "\\x%02x", token);
      text += escaped;
    } else {
      text += '<';
      text += std::to_string(token);
      text += '>';
    }
  }
  return text;
}

}  // namespace moeref::cli
