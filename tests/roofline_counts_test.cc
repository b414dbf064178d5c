// A prefill's bound in the roofline model (bench/roofline_counts.h), for routings whose bound is
// counted here by hand from the shapes of configs/small.json: 8 MoE layers of 16 experts, top-2,
// each expert's gate, up and down 512 x 1024 (1,572,864 weights per expert and layer).
#include "bench/roofline_counts.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "ref/io/config.h"

namespace moeref::bench {
namespace {

constexpr double kExpertValues = 3.0 * 512 * 1024;
constexpr double kPeak = 1e11;       // FLOP/s
constexpr double kBandwidth = 1e10;  // bytes/s: the ridge at 10 FLOPs per byte, 20 tokens

ModelConfig small_config() {
  return load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/small.json");
}

std::vector<std::vector<int64_t>> every_layer(const std::vector<int64_t>& tokens_per_expert) {
  return std::vector<std::vector<int64_t>>(8, tokens_per_expert);
}

// 128 tokens, every one to experts 0 and 1: two compute-bound experts per layer, the other 14 not
// read. The bound is the compute roofline.
TEST(PrefillRooflineModel, ExpertsOfManyTokensAreComputeBound) {
  std::vector<int64_t> two(16, 0);
  two[0] = two[1] = 128;
  const ModelConfig config = small_config();
  EXPECT_DOUBLE_EQ(prefill_roofline_model_seconds(config, 128, every_layer(two), kPeak, kBandwidth),
                   prefill_flops_per_token(config, 128) * 128 / kPeak);
}

// 128 tokens, 16 to each expert: 16 tokens do 32 FLOPs per weight, 0.32 us per thousand weights
// at the peak, against 0.4 us to read their 4 KB: every expert is read-bound.
TEST(PrefillRooflineModel, ExpertsOfFewTokensAreReadBound) {
  const ModelConfig config = small_config();
  const double flops = prefill_flops_per_token(config, 128) * 128;
  const double expert_flops = 8 * 16 * 2.0 * 16 * kExpertValues;
  const double expert_reads = 8 * 16 * 4.0 * kExpertValues / kBandwidth;
  EXPECT_DOUBLE_EQ(prefill_roofline_model_seconds(
                       config, 128, every_layer(std::vector<int64_t>(16, 16)), kPeak, kBandwidth),
                   (flops - expert_flops) / kPeak + expert_reads);
}

// One expert of 226 tokens (compute-bound), 15 of 2 (read-bound) in each layer.
TEST(PrefillRooflineModel, EachExpertTakesTheLongerOfItsTwo) {
  std::vector<int64_t> uneven(16, 2);
  uneven[5] = 226;
  const ModelConfig config = small_config();
  const double flops = prefill_flops_per_token(config, 128) * 128;
  const double big = 2.0 * 226 * kExpertValues, small = 2.0 * 2 * kExpertValues;
  const double seconds = (flops - 8 * (big + 15 * small)) / kPeak +
                         8 * (big / kPeak + 15 * 4.0 * kExpertValues / kBandwidth);
  // Equal up to the order of the sums: 128 terms here, in a different order there.
  EXPECT_NEAR(prefill_roofline_model_seconds(config, 128, every_layer(uneven), kPeak, kBandwidth),
              seconds, 1e-12 * seconds);
}

TEST(PrefillRooflineModel, RejectsARoutingOfAnotherShape) {
  const ModelConfig config = small_config();
  const std::vector<int64_t> uniform(16, 16);
  EXPECT_THROW(prefill_roofline_model_seconds(
                   config, 128, std::vector<std::vector<int64_t>>(7, uniform), kPeak, kBandwidth),
               std::invalid_argument);
  EXPECT_THROW(prefill_roofline_model_seconds(
                   config, 128, every_layer(std::vector<int64_t>(15, 16)), kPeak, kBandwidth),
               std::invalid_argument);
  EXPECT_THROW(prefill_roofline_model_seconds(config, 129, every_layer(uniform), kPeak, kBandwidth),
               std::invalid_argument);
}

}  // namespace
}  // namespace moeref::bench
