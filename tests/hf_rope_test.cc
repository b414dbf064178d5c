// Each RoPE scaling kind against transformers itself: tests/data/hf-transformers/rope-<kind> holds
// a tiny random Mixtral that transformers 5.17 saved with save_pretrained (BF16) and the logits of
// its own forward of a 24-token prompt (README.md there). The prompt is longer than the original
// context of yarn and llama3 (16) and than max_position_embeddings of dynamic (16), so every
// scaling changes the rotation of most positions.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "ref/io/hf_interop.h"
#include "ref/io/safetensors.h"
#include "ref/model/model.h"
#include "ref/ops/rope_frequencies.h"

namespace moeref {
namespace {

namespace fs = std::filesystem;

const fs::path kData = fs::path(MOEREF_SOURCE_DIR) / "tests/data/hf-transformers";

fs::path kind_dir(const std::string& kind) { return kData / ("rope-" + kind); }

template <class T>
std::vector<T> elements(const TensorRecord& record, DType dtype) {
  EXPECT_EQ(record.dtype, dtype) << record.name;
  std::vector<T> values(static_cast<size_t>(record.numel()));
  std::memcpy(values.data(), record.bytes.data(), values.size() * sizeof(T));
  return values;
}

// max |a - b| / max |b|: the error relative to the logits' scale (docs/hf-interop.md).
template <class T>
double relative_error(const std::vector<float>& actual, const std::vector<T>& expected) {
  double max_difference = 0.0, max_expected = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    max_difference =
        std::max(max_difference, std::abs(actual[i] - static_cast<double>(expected[i])));
    max_expected = std::max(max_expected, std::abs(static_cast<double>(expected[i])));
  }
  return max_difference / max_expected;
}

struct KindCase {
  const char* kind;
  RopeScalingKind expected_kind;
  int64_t max_seq_len;  // dynamic: factor 2 * max_position_embeddings 16
};

class HfRopeTest : public testing::TestWithParam<KindCase> {};

TEST_P(HfRopeTest, LogitsMatchTransformers) {
  const KindCase& c = GetParam();
  const fs::path dir = kind_dir(c.kind);
  ImportedModel imported = import_hf(dir);
  EXPECT_EQ(imported.config.rope_scaling.kind, c.expected_kind);
  EXPECT_EQ(imported.config.max_seq_len, c.max_seq_len);

  const SafetensorsFile expected = SafetensorsFile::read(dir / "expected.safetensors");
  const std::vector<int64_t> tokens64 = elements<int64_t>(expected.at("tokens"), DType::kI64);
  const std::vector<int32_t> tokens(tokens64.begin(), tokens64.end());
  const std::vector<float> logits = expected.at("logits").to_f32();
  const std::vector<double> logits_f64 = elements<double>(expected.at("logits_f64"), DType::kF64);

  const Model model(imported.config, std::move(imported.weights));
  KvCache cache = model.new_cache();
  const ForwardOutput out = model.forward(tokens, cache);
  ASSERT_EQ(out.logits.numel(), static_cast<int64_t>(logits.size()));
  const std::vector<float> ours(out.logits.data(), out.logits.data() + out.logits.numel());
  const double against_fp32 = relative_error(ours, logits);
  const double against_f64 = relative_error(ours, logits_f64);
  EXPECT_LE(against_fp32, 1e-5) << "transformers' fp32 logits";
  EXPECT_LE(against_f64, 1e-5) << "transformers' float64 logits";
  if (expected.contains("logits_exact")) {
    const std::vector<double> exact = elements<double>(expected.at("logits_exact"), DType::kF64);
    EXPECT_LE(relative_error(ours, exact), 1e-5) << "transformers' all-float64 logits";
  }

  // The frequencies transformers' rotary module held after that forward (computed in fp32; the
  // dynamic kind's for seq_len 24), against moeref's for the prompt's largest position.
  const ref::RopeFrequencies frequencies =
      ref::rope_frequencies(imported.config.rope_theta, imported.config.head_dim,
                            imported.config.rope_scaling, static_cast<int64_t>(tokens.size()) - 1);
  const std::vector<float> inv_freq = expected.at("inv_freq").to_f32();
  ASSERT_EQ(inv_freq.size(), frequencies.inv_freq.size());
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    EXPECT_NEAR(frequencies.inv_freq[i], inv_freq[i], 2e-6 * inv_freq[i]) << "pair " << i;
  }
  EXPECT_NEAR(frequencies.attention_scaling, expected.at("attention_scaling").to_f32()[0], 1e-6);
}

std::string kind_name(const testing::TestParamInfo<KindCase>& info) { return info.param.kind; }

INSTANTIATE_TEST_SUITE_P(EveryKind, HfRopeTest,
                         testing::Values(KindCase{"default", RopeScalingKind::kDefault, 64},
                                         KindCase{"linear", RopeScalingKind::kLinear, 64},
                                         KindCase{"dynamic", RopeScalingKind::kDynamic, 32},
                                         KindCase{"yarn", RopeScalingKind::kYarn, 64},
                                         KindCase{"llama3", RopeScalingKind::kLlama3, 64}),
                         kind_name);

// The prompt's last token run as a decode step after a prefill of the others. Its frequencies
// follow the call's largest position, and the cached keys keep the rotation they were stored
// with (docs/model.md, "Dynamic NTK and the KV cache"): with dynamic scaling past the context the
// logits differ from the whole prompt's forward, as in transformers; every other kind gives the
// same bits.
TEST(HfRopeKvCache, DynamicScalingRotatesEachCallWithItsOwnFrequencies) {
  for (const char* kind : {"linear", "dynamic", "yarn", "llama3"}) {
    SCOPED_TRACE(kind);
    ImportedModel imported = import_hf(kind_dir(kind));
    const SafetensorsFile expected = SafetensorsFile::read(kind_dir(kind) / "expected.safetensors");
    const std::vector<int64_t> tokens64 = elements<int64_t>(expected.at("tokens"), DType::kI64);
    const std::vector<int32_t> tokens(tokens64.begin(), tokens64.end());
    const Model model(imported.config, std::move(imported.weights));
    const int64_t vocab = imported.config.vocab_size;

    KvCache whole_cache = model.new_cache();
    const Tensor whole = model.forward(tokens, whole_cache).logits;
    KvCache split_cache = model.new_cache();
    const std::span<const int32_t> all(tokens);
    model.forward(all.first(tokens.size() - 1), split_cache);
    const Tensor last = model.forward(all.last(1), split_cache).logits;

    const std::vector<float> whole_last(whole.data() + (whole.numel() - vocab),
                                        whole.data() + whole.numel());
    const std::vector<float> decoded(last.data(), last.data() + vocab);
    if (std::string(kind) == "dynamic") {
      EXPECT_NE(decoded, whole_last);
    } else {
      EXPECT_EQ(decoded, whole_last);
    }
  }
}

}  // namespace
}  // namespace moeref
