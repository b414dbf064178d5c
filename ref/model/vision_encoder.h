// The vision tower: one image in, its vision tokens out (ViT, Dosovitskiy et al. 2021; the
// optional Perceiver Resampler of Flamingo, Alayrac et al. 2022). docs/vision.md has the math.
//
//   patches = patchify(image)                          [N, C*P*P], N = (S/P)^2
//   x = patches W_pe^T + b_pe + pos_embed              [N, W]
//   x = TowerBlock_l(x) for each of the `layers` blocks (ref/model/vision_block.h)
//   x = LN_final(x)
//   with a resampler: r = latents; r = ResamplerBlock_l(r, x) for each layer; x = LN_resampler(r)
//   tokens = x W_proj^T + b_proj                       [n_tokens, d_model]
//
// patchify reads the image [C, S, S] (channel-major, rows top to bottom) in non-overlapping P x P
// patches: patch n = py * (S/P) + px covers rows py*P .. py*P+P-1 and columns px*P .. px*P+P-1,
// and its element c*P*P + i*P + j is image[c][py*P + i][px*P + j]. That is the order of a PyTorch
// Conv2d(C, W, kernel_size=P, stride=P) weight [W, C, P, P] flattened to [W, C*P*P], and of the
// conv's output flattened over (height, width).
//
// Traced under "vision.": pixels [C, S, S] (the normalised input), patches, embed.out [N, W],
// layers.L.* and resampler.layers.L.* (ref/model/vision_block.h), final_norm.out [N, W],
// resampler.out [latents, W], tokens [n_tokens, d_model].
//
// Errors: std::invalid_argument for a text-only config or an image that is not [channels,
// image_size, image_size] (check_image).
#pragma once

#include <cstdint>

#include "ref/io/config.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"
#include "ref/tensor.h"

namespace moeref {

// image: [C, S, S] with S a multiple of patch_size -> [(S/P)^2, C*P*P]. Throws
// std::invalid_argument for another shape or a patch size that does not divide S.
Tensor patchify(const Tensor& image, int64_t patch_size);

// Throws std::invalid_argument unless the config has a vision section and `image` is its
// [channels, image_size, image_size] (what encode_image and generate check first).
void check_image(const ModelConfig& config, const Tensor& image);

// Checks the image (check_image). Returns the vision tokens [n_tokens, d_model].
Tensor encode_image(const Kernels& kernels, const ModelConfig& config, const VisionWeights& w,
                    const Tensor& image, Tracer* tracer = nullptr);

}  // namespace moeref
