#include "golden/scaled_rope_cases.h"

namespace moeref::golden {

const std::vector<NamedRopeCase>& scaled_rope_cases() {
  static const std::vector<NamedRopeCase> cases = {
      {.name = "rope-linear-hd16",
       .head_dim = 16,
       .scaling = {.kind = RopeScalingKind::kLinear, .factor = 4.0},
       .positions = {0, 1, 7, 100, 1000},
       .description =
           "linear RoPE scaling (position interpolation), factor 4: every frequency divided by 4"},
      {.name = "rope-dynamic-hd16",
       .head_dim = 16,
       .scaling = {.kind = RopeScalingKind::kDynamic,
                   .factor = 2.0,
                   .original_max_position_embeddings = 32},
       .positions = {0, 5, 33, 63, 90},
       .description = "dynamic NTK scaling, factor 2 past 32 positions: the largest position "
                      "(90) sets the base, 10000 * (2 * 91 / 32 - 1)^(16 / 14), for every token"},
      {.name = "rope-yarn-hd32",
       .head_dim = 32,
       .scaling = {.kind = RopeScalingKind::kYarn,
                   .factor = 4.0,
                   .original_max_position_embeddings = 256},
       .positions = {0, 1, 100, 300, 1000},
       .description = "YaRN, factor 4 over 256 positions, betas 32 and 1: pairs 0..7 ramp from "
                      "kept to interpolated, cos and sin scaled by 0.1 ln 4 + 1"},
      {.name = "rope-yarn-mscale-untruncated-hd32",
       .head_dim = 32,
       .scaling = {.kind = RopeScalingKind::kYarn,
                   .factor = 8.0,
                   .original_max_position_embeddings = 128,
                   .beta_fast = 16.0,
                   .beta_slow = 2.0,
                   .mscale = 1.0,
                   .mscale_all_dim = 0.5,
                   .truncate = false},
       .positions = {0, 3, 129, 500, 1023},
       .description = "YaRN, factor 8 over 128 positions, betas 16 and 2, the ramp's ends not "
                      "rounded, cos and sin scaled by the ratio of mscale 1 to mscale_all_dim 0.5"},
      {.name = "rope-llama3-hd32",
       .head_dim = 32,
       .scaling = {.kind = RopeScalingKind::kLlama3,
                   .factor = 8.0,
                   .original_max_position_embeddings = 64,
                   .low_freq_factor = 1.0,
                   .high_freq_factor = 4.0},
       .positions = {0, 1, 65, 200, 511},
       .description = "Llama 3.1 scaling, factor 8 over 64 positions: pairs 0-1 kept, 2-4 "
                      "smoothed, 5-15 divided by 8"},
  };
  return cases;
}

}  // namespace moeref::golden
