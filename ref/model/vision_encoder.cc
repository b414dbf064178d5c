#include "ref/model/vision_encoder.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "ref/model/vision_block.h"

namespace moeref {

Tensor patchify(const Tensor& image, int64_t patch_size) {
  const std::vector<int64_t>& shape = image.shape();
  if (shape.size() != 3 || shape[1] != shape[2] || patch_size <= 0 || shape[1] % patch_size != 0) {
    throw std::invalid_argument("patchify: an image of shape " + shape_string(shape) +
                                " does not split into square patches of " +
                                std::to_string(patch_size) + " (it needs [C, S, S], S a multiple)");
  }
  const int64_t channels = image.dim(0);
  const int64_t size = image.dim(1);
  const int64_t grid = size / patch_size;
  const int64_t p = patch_size;
  Tensor patches({grid * grid, channels * p * p});
  for (int64_t py = 0; py < grid; ++py) {
    for (int64_t px = 0; px < grid; ++px) {
      float* patch = patches.row(py * grid + px);
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t i = 0; i < p; ++i) {
          for (int64_t j = 0; j < p; ++j) {
            patch[(c * p + i) * p + j] = image.data()[(c * size + py * p + i) * size + px * p + j];
          }
        }
      }
    }
  }
  return patches;
}

void check_image(const ModelConfig& config, const Tensor& image) {
  if (!config.vision) {
    throw std::invalid_argument("an image was given, but config \"" + config.name +
                                "\" has no vision section");
  }
  const VisionConfig& v = *config.vision;
  const std::vector<int64_t> expected = {v.channels, v.image_size, v.image_size};
  if (image.shape() != expected) {
    throw std::invalid_argument("an image of shape " + shape_string(image.shape()) +
                                " cannot be encoded: the vision config needs " +
                                shape_string(expected));
  }
}

Tensor encode_image(const Kernels& kernels, const ModelConfig& config, const VisionWeights& w,
                    const Tensor& image, Tracer* tracer) {
  check_image(config, image);
  const VisionConfig& v = *config.vision;
  const TraceScope trace(tracer, "vision.");
  const int64_t width = v.width;
  const int64_t n = v.n_patches();
  trace("pixels", {v.channels, v.image_size, v.image_size}, image.data());

  const Tensor patches = patchify(image, v.patch_size);
  trace("patches", {n, v.patch_dim()}, patches.data());
  std::vector<float> x(static_cast<size_t>(n * width));
  linear(kernels, w.patch_embed, patches.data(), n, v.patch_dim(), width, x.data());
  kernels.residual_add(x.data(), w.pos_embed.data(), n * width);
  trace("embed.out", {n, width}, x.data());

  for (int64_t l = 0; l < v.layers; ++l) {
    vision_block_forward(kernels, v, w.layers[l], x.data(), n, nullptr, 0, tracer,
                         "vision.layers." + std::to_string(l) + ".");
  }
  std::vector<float> features(x.size());
  layer_norm(kernels, w.final_norm, v.norm_eps, x.data(), features.data(), n, width);
  trace("final_norm.out", {n, width}, features.data());

  if (v.resampler_latents > 0) {
    const int64_t latents = v.resampler_latents;
    std::vector<float> r(w.latents.values().begin(), w.latents.values().end());
    for (int64_t l = 0; l < v.resampler_layers; ++l) {
      vision_block_forward(kernels, v, w.resampler_layers[l], r.data(), latents, features.data(), n,
                           tracer, "vision.resampler.layers." + std::to_string(l) + ".");
    }
    features.assign(r.size(), 0.0f);
    layer_norm(kernels, w.resampler_norm, v.norm_eps, r.data(), features.data(), latents, width);
    trace("resampler.out", {latents, width}, features.data());
  }

  Tensor tokens({v.n_tokens(), config.d_model});
  linear(kernels, w.projector, features.data(), v.n_tokens(), width, config.d_model, tokens.data());
  trace("tokens", {v.n_tokens(), config.d_model}, tokens.data());
  return tokens;
}

}  // namespace moeref
