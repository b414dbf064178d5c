// Checkpoints written by Hugging Face transformers itself (tests/data/hf-transformers, made by
// tools/hf_make_test_data.py on a machine with PyTorch and transformers; the versions are in
// versions.json there): imported as they are, the reference reproduces transformers' own fp32
// logits, which were computed from the same saved files.
//
// mixtral-bf16-sharded: a tiny random MixtralForCausalLM saved with save_pretrained in BF16, in
// five shards with an index, a list eos_token_id, a generation_config.json beside it. Its
// expected.safetensors holds the prompt and transformers' forward of it (CPU, eager attention
// and experts) after loading those files with dtype=float32 (`logits`) and with dtype=float64 and
// the float32 steps transformers keeps there (RMSNorm, softmax, RoPE angles) made float64
// (`logits_exact`). Errors are max |diff| / max |logit|. transformers' fp32 logits are 1.4e-6 from
// its float64 ones: its own fp32 rounding, larger than the bar of 1e-6. So the bar is held against
// the float64 forward: the reference is 6.7e-7 from it (its fp32 activations), and the simd path
// 1.9e-6, as close as transformers' fp32 forward within a factor 2.
#include <gmock/gmock.h>
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
#include "simd/kernels.h"

namespace moeref {
namespace {

namespace fs = std::filesystem;

const fs::path kData = fs::path(MOEREF_SOURCE_DIR) / "tests" / "data" / "hf-transformers";

struct Expected {
  std::vector<int32_t> tokens;
  std::vector<double> logits;  // [tokens, vocab], transformers in fp32
  std::vector<double> exact;   // [tokens, vocab], transformers in float64 throughout
};

template <typename T>
std::vector<T> elements(const TensorRecord& record, DType dtype) {
  EXPECT_EQ(record.dtype, dtype) << record.name;
  std::vector<T> out(size_t(record.numel()));
  std::memcpy(out.data(), record.bytes.data(), out.size() * sizeof(T));
  return out;
}

Expected read_expected(const fs::path& dir) {
  const SafetensorsFile file = SafetensorsFile::read(dir / "expected.safetensors");
  Expected expected;
  for (const int64_t token : elements<int64_t>(file.at("tokens"), DType::kI64)) {
    expected.tokens.push_back(static_cast<int32_t>(token));
  }
  for (const float logit : elements<float>(file.at("logits"), DType::kF32)) {
    expected.logits.push_back(logit);
  }
  expected.exact = elements<double>(file.at("logits_exact"), DType::kF64);
  return expected;
}

// max |a - b| / max |b|: the error relative to the logits' scale.
double relative_error(const Tensor& a, const std::vector<double>& b) {
  double max_diff = 0.0, max_b = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(double(a.data()[i]) - double(b[i])));
    max_b = std::max(max_b, std::abs(double(b[i])));
  }
  return max_diff / max_b;
}

template <typename T>
std::vector<int64_t> argmax_rows(const T* x, int64_t rows, int64_t cols) {
  std::vector<int64_t> out;
  for (int64_t r = 0; r < rows; ++r) {
    out.push_back(std::max_element(x + r * cols, x + (r + 1) * cols) - (x + r * cols));
  }
  return out;
}

TEST(TransformersCheckpoint, Bf16ShardsImportWithTheConfigTransformersWrote) {
  const fs::path dir = kData / "mixtral-bf16-sharded";
  ASSERT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  ASSERT_FALSE(fs::exists(dir / "model.safetensors"));
  const ImportedModel imported = import_hf(dir);
  const ModelConfig& c = imported.config;
  EXPECT_EQ(c.vocab_size, 64);
  EXPECT_EQ(c.d_model, 64);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.n_experts, 4);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.expert_d_ff, 32);
  EXPECT_EQ(c.eos_token_id, 2);  // the first of [2, 3]
  // BF16 widened exactly: every weight's low 16 bits are zero.
  const Tensor& embedding = imported.weights.embed;
  ASSERT_GT(embedding.numel(), 0);
  for (int64_t i = 0; i < embedding.numel(); ++i) {
    uint32_t bits = 0;
    std::memcpy(&bits, embedding.data() + i, sizeof(bits));
    ASSERT_EQ(bits & 0xFFFFu, 0u) << "element " << i;
  }
}

TEST(TransformersCheckpoint, Bf16ShardsGiveTransformersLogits) {
  const fs::path dir = kData / "mixtral-bf16-sharded";
  const Expected expected = read_expected(dir);
  ASSERT_EQ(expected.tokens.size(), 24u);
  ImportedModel imported = import_hf(dir);
  const int64_t vocab = imported.config.vocab_size;
  ASSERT_EQ(expected.logits.size(), expected.tokens.size() * size_t(vocab));

  const Model model(imported.config, imported.weights);
  KvCache cache = model.new_cache();
  const Tensor logits = model.forward(expected.tokens, cache).logits;
  const double ref_error = relative_error(logits, expected.exact);
  EXPECT_LE(ref_error, 1e-6);
  const int64_t rows = int64_t(expected.tokens.size());
  EXPECT_EQ(argmax_rows(logits.data(), rows, vocab),
            argmax_rows(expected.logits.data(), rows, vocab));
  EXPECT_EQ(argmax_rows(logits.data(), rows, vocab),
            argmax_rows(expected.exact.data(), rows, vocab));

  double transformers_fp32_error = 0.0, max_exact = 0.0;
  for (size_t i = 0; i < expected.exact.size(); ++i) {
    transformers_fp32_error =
        std::max(transformers_fp32_error, std::abs(expected.logits[i] - expected.exact[i]));
    max_exact = std::max(max_exact, std::abs(expected.exact[i]));
  }
  transformers_fp32_error /= max_exact;
  EXPECT_LT(ref_error, transformers_fp32_error);

  const Model fast(imported.config, imported.weights, simd::simd_kernels());
  KvCache fast_cache = fast.new_cache();
  const Tensor fast_logits = fast.forward(expected.tokens, fast_cache).logits;
  const double simd_error = relative_error(fast_logits, expected.exact);
  EXPECT_LE(simd_error, 2 * transformers_fp32_error);
  EXPECT_EQ(argmax_rows(fast_logits.data(), rows, vocab),
            argmax_rows(expected.logits.data(), rows, vocab));
  RecordProperty("ref_vs_transformers_float64", testing::PrintToString(ref_error));
  RecordProperty("transformers_fp32_vs_float64", testing::PrintToString(transformers_fp32_error));
  RecordProperty("simd_vs_transformers_float64", testing::PrintToString(simd_error));
}

}  // namespace
}  // namespace moeref
