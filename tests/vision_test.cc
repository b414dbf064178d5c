// The vision path (docs/vision.md): the tower and the gated cross-attention
// against the scalar oracle of tests/scalar_oracle.h, and the properties docs/vision.md promises:
// gates at zero give the text-only model, text before the image is unaffected, cached vision K/V
// equal recomputed ones, the patch order is pinned, multi-query cross-attention is multi-head with
// the K/V head copied.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "golden/model_case.h"
#include "ref/generation/generate.h"
#include "ref/io/config.h"
#include "ref/model/model.h"
#include "ref/model/stats.h"
#include "ref/model/vision_encoder.h"
#include "ref/model/weights.h"
#include "tests/scalar_oracle.h"

namespace moeref {
namespace {

ModelConfig tiny_vision() {
  return load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/golden/tiny-vision.json");
}

// The other options: LayerNorm and GELU in the decoder, no resampler, no q/k norm, grouped
// cross-attention K/V heads, one gated block in front of the last layer.
ModelConfig tiny_vision_variant() {
  ModelConfig c = load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/tiny-vision.json");
  c.norm = NormKind::kLayerNorm;
  c.ffn_activation = Activation::kGelu;
  c.vision->patch_size = 16;
  return c;
}

ModelConfig text_only(ModelConfig c) {
  c.vision.reset();
  return c;
}

// A normalised image [C, S, S] of Philox pixels, as the golden sets use.
Tensor test_image(const VisionConfig& v, uint64_t seed = 5) {
  return golden::synthetic_image(v, seed);
}

const std::vector<int32_t> kPrompt = {1, 17, 42, 99, 128, 200, 255, 3, 64, 77};

bool rows_equal(const Tensor& a, const Tensor& b, int64_t row) {
  return std::memcmp(a.row(row), b.row(row), static_cast<size_t>(a.row_size()) * sizeof(float)) ==
         0;
}

Tensor logits_with_image(const Model& model, const Tensor& image, int64_t position) {
  const ImageKv kv = model.encode_image(image);
  KvCache cache = model.new_cache();
  return model.forward(kPrompt, cache, SequenceImage{&kv, position}).logits;
}

class VisionConfigs : public ::testing::TestWithParam<ModelConfig (*)()> {};

TEST_P(VisionConfigs, LogitsMatchTheScalarOracle) {
  const ModelConfig config = GetParam()();
  const Model model(config, init_weights(config));
  const Tensor image = test_image(*config.vision);
  const int64_t position = 3;
  const Tensor logits = logits_with_image(model, image, position);
  const test::OracleImage oracle_image{test::vision_tokens(config, model.weights().vision, image),
                                       position};
  const test::Vec expected =
      test::oracle_last_logits(config, model.weights(), kPrompt, &oracle_image);
  const test::Vec text_only_expected =
      test::oracle_last_logits(config, model.weights(), kPrompt, nullptr);
  double max_abs = 0, max_err = 0, image_effect = 0;
  const int64_t last = static_cast<int64_t>(kPrompt.size()) - 1;
  for (int64_t v = 0; v < config.vocab_size; ++v) {
    max_abs = std::max(max_abs, std::fabs(expected[v]));
    max_err = std::max(max_err, std::fabs(logits.row(last)[v] - expected[v]));
    image_effect = std::max(image_effect, std::fabs(expected[v] - text_only_expected[v]));
  }
  // As for the text model (model_test): fp32 rounding of each op's output, relative to the
  // largest logit. A wrong patch order, a missing gate or a causal mask over the vision tokens
  // moves the logits by far more; so does dropping the image altogether (image_effect).
  EXPECT_LT(max_err, 1e-5 * max_abs) << "max |error| " << max_err << " of max |logit| " << max_abs;
  EXPECT_GT(image_effect, 1000 * max_err) << "the image must matter for this test to mean much";
}

TEST_P(VisionConfigs, GatesAtZeroGiveTheTextOnlyModelBitwise) {
  const ModelConfig config = GetParam()();
  ModelWeights weights = init_weights(config);
  for (CrossAttentionWeights& block : weights.cross_attention) {
    block.attn_gate.data()[0] = 0.0f;
    block.ffn_gate.data()[0] = 0.0f;
  }
  const Model model(config, std::move(weights));
  const Tensor logits = logits_with_image(model, test_image(*config.vision), 0);

  // The text weights are a function of (seed, name) alone, so the text-only config has them too.
  const ModelConfig text = text_only(config);
  const Model text_model(text, init_weights(text));
  KvCache cache = text_model.new_cache();
  const Tensor text_logits = text_model.forward(kPrompt, cache).logits;
  ASSERT_EQ(logits.shape(), text_logits.shape());
  for (int64_t t = 0; t < logits.dim(0); ++t) EXPECT_TRUE(rows_equal(logits, text_logits, t)) << t;
}

TEST_P(VisionConfigs, TextBeforeTheImageIsUnaffectedAndTextAfterItIs) {
  const ModelConfig config = GetParam()();
  const Model model(config, init_weights(config));
  const ModelConfig text = text_only(config);
  const Model text_model(text, init_weights(text));
  KvCache cache = text_model.new_cache();
  const Tensor text_logits = text_model.forward(kPrompt, cache).logits;

  const int64_t position = 4;
  const Tensor image = test_image(*config.vision);
  Tensor one_pixel_changed = image;
  one_pixel_changed.data()[image.numel() / 2] += 0.5f;
  const Tensor logits = logits_with_image(model, image, position);
  const Tensor changed = logits_with_image(model, one_pixel_changed, position);
  for (int64_t t = 0; t < logits.dim(0); ++t) {
    if (t < position) {
      EXPECT_TRUE(rows_equal(logits, text_logits, t)) << "token " << t << " precedes the image";
      EXPECT_TRUE(rows_equal(logits, changed, t)) << t;
    } else {
      EXPECT_FALSE(rows_equal(logits, text_logits, t)) << "token " << t << " sees the image";
      EXPECT_FALSE(rows_equal(logits, changed, t)) << "token " << t << ": one pixel changed";
    }
  }
}

TEST_P(VisionConfigs, CachedVisionKvEqualsRecomputedKvBitwise) {
  const ModelConfig config = GetParam()();
  const Model model(config, init_weights(config));
  const Tensor image = test_image(*config.vision);
  const int64_t position = 2;

  // Encoded once, read by a prefill and then one decode call per token.
  const ImageKv cached = model.encode_image(image);
  KvCache cache = model.new_cache();
  std::vector<Tensor> once;
  once.push_back(model.forward(std::span(kPrompt).first(5), cache, {&cached, position}).logits);
  for (size_t t = 5; t < kPrompt.size(); ++t) {
    once.push_back(
        model.forward(std::span(kPrompt).subspan(t, 1), cache, {&cached, position}).logits);
  }
  // Encoded again before every call.
  KvCache cache2 = model.new_cache();
  std::vector<Tensor> again;
  {
    const ImageKv fresh = model.encode_image(image);
    again.push_back(model.forward(std::span(kPrompt).first(5), cache2, {&fresh, position}).logits);
  }
  for (size_t t = 5; t < kPrompt.size(); ++t) {
    const ImageKv fresh = model.encode_image(image);
    again.push_back(
        model.forward(std::span(kPrompt).subspan(t, 1), cache2, {&fresh, position}).logits);
  }
  ASSERT_EQ(once.size(), again.size());
  for (size_t i = 0; i < once.size(); ++i) {
    ASSERT_EQ(once[i].shape(), again[i].shape());
    EXPECT_EQ(std::memcmp(once[i].data(), again[i].data(), once[i].values().size_bytes()), 0) << i;
  }
  // And the decode calls equal one prefill of the whole prompt (rows are computed alike).
  KvCache whole = model.new_cache();
  const Tensor all = model.forward(kPrompt, whole, {&cached, position}).logits;
  for (size_t t = 5; t < kPrompt.size(); ++t) {
    EXPECT_EQ(std::memcmp(all.row(static_cast<int64_t>(t)), once[t - 4].data(),
                          static_cast<size_t>(all.dim(1)) * sizeof(float)),
              0)
        << t;
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, VisionConfigs,
                         ::testing::Values(&tiny_vision, &tiny_vision_variant),
                         [](const auto& param) {
                           return param.index == 0 ? "TinyVision" : "LayerNormGeluGroupedKv";
                         });

TEST(VisionBatch, EachSequenceEqualsItsSoloRunBitwise) {
  const ModelConfig config = tiny_vision();
  const Model model(config, init_weights(config));
  const ImageKv first = model.encode_image(test_image(*config.vision, 5));
  const ImageKv second = model.encode_image(test_image(*config.vision, 6));
  const std::vector<int32_t> a = {5, 6, 7, 8, 9, 10};
  const std::vector<int32_t> b = {11, 12, 13, 14};
  const std::vector<int32_t> c = {15, 16, 17};
  struct Solo {
    const std::vector<int32_t>* tokens;
    SequenceImage image;
  };
  const std::vector<Solo> solos = {{&a, {&first, 2}}, {&b, {}}, {&c, {&second, 0}}};
  std::vector<KvCache> caches;
  std::vector<SequenceInput> batch;
  for (size_t s = 0; s < solos.size(); ++s) caches.push_back(model.new_cache());
  for (size_t s = 0; s < solos.size(); ++s) {
    SequenceInput input{*solos[s].tokens, 0, {}, solos[s].image};
    for (int64_t l = 0; l < config.n_layers; ++l) input.kv.push_back(caches[s].view(l));
    batch.push_back(std::move(input));
  }
  const Tensor together = model.forward_batch(batch).logits;
  int64_t row = 0;
  for (const Solo& solo : solos) {
    KvCache cache = model.new_cache();
    const Tensor alone = model.forward(*solo.tokens, cache, solo.image).logits;
    for (int64_t t = 0; t < alone.dim(0); ++t, ++row) {
      EXPECT_EQ(std::memcmp(together.row(row), alone.row(t),
                            static_cast<size_t>(alone.dim(1)) * sizeof(float)),
                0)
          << "row " << row;
    }
  }
}

TEST(VisionGenerate, AnImageAfterThePromptIsSeenByTheTokensFedBack) {
  const ModelConfig config = tiny_vision();
  const Model model(config, init_weights(config));
  const ModelConfig text = text_only(config);
  const Model text_model(text, init_weights(text));
  TraceRecorder with_image, without;
  const int64_t end = static_cast<int64_t>(kPrompt.size());
  generate(model, {kPrompt, 4, SamplingParams{}, 0, test_image(*config.vision), end}, &with_image);
  generate(text_model, {kPrompt, 4, SamplingParams{}, 0, std::nullopt, 0}, &without);
  // The prefill: no token sees the image, the text model's bits.
  EXPECT_EQ(with_image.at("prefill/logits").bytes, without.at("prefill/logits").bytes);
  EXPECT_FALSE(with_image.contains("prefill/layers.0.xattn.out"));
  // The first token is the same (from the last prompt row); the calls that feed it back see the
  // image.
  ASSERT_TRUE(with_image.contains("decode.0/layers.0.xattn.out"));
  EXPECT_NE(with_image.at("decode.0/logits").bytes, without.at("decode.0/logits").bytes);
}

TEST(VisionErrors, ImageKvThatDoesNotFitTheModelIsRefused) {
  const ModelConfig config = tiny_vision();
  const Model model(config, init_weights(config));
  ImageKv kv = model.encode_image(test_image(*config.vision));
  KvCache cache = model.new_cache();
  std::vector<ImageKv> bad(3, kv);
  bad[0].keys.pop_back();                                        // one block short
  bad[1].values[1] = Tensor({2, kv.n_tokens, config.head_dim});  // two K/V heads, not one
  bad[2] = ImageKv{};                                            // no vision tokens
  for (const ImageKv& b : bad) {
    EXPECT_THROW(model.forward(kPrompt, cache, {&b, 0}), std::invalid_argument);
    EXPECT_EQ(cache.length(), 0);
  }
  EXPECT_NO_THROW(model.forward(kPrompt, cache, {&kv, 0}));
  EXPECT_THROW(patchify(Tensor({3, 16, 12}), 4), std::invalid_argument);
  EXPECT_THROW(patchify(Tensor({3, 16, 16}), 5), std::invalid_argument);
  EXPECT_THROW(patchify(Tensor({16, 16}), 4), std::invalid_argument);
}

TEST(Patchify, OrderIsPinnedByHand) {
  // 2 channels of 4 x 4, patch 2: value = 100 c + 10 row + column.
  Tensor image({2, 4, 4});
  for (int64_t c = 0; c < 2; ++c) {
    for (int64_t y = 0; y < 4; ++y) {
      for (int64_t x = 0; x < 4; ++x)
        image.data()[(c * 4 + y) * 4 + x] = float(100 * c + 10 * y + x);
    }
  }
  const Tensor patches = patchify(image, 2);
  ASSERT_EQ(patches.shape(), (std::vector<int64_t>{4, 8}));
  const std::vector<std::vector<float>> expected = {
      {0, 1, 10, 11, 100, 101, 110, 111},     // patch 0: top left
      {2, 3, 12, 13, 102, 103, 112, 113},     // patch 1: top right (row-major over the grid)
      {20, 21, 30, 31, 120, 121, 130, 131},   // patch 2: bottom left
      {22, 23, 32, 33, 122, 123, 132, 133}};  // patch 3: bottom right
  for (int64_t n = 0; n < 4; ++n) {
    EXPECT_EQ(std::vector<float>(patches.row(n), patches.row(n) + 8), expected[n]) << n;
  }
}

TEST(CrossAttention, MultiQueryEqualsMultiHeadWithTheKvHeadCopied) {
  ModelConfig mqa = tiny_vision();
  mqa.vision->cross_attention_kv_heads = 1;
  ModelConfig mha = mqa;
  mha.vision->cross_attention_kv_heads = mha.vision->cross_attention_heads;
  const ModelWeights mqa_weights = init_weights(mqa);
  ModelWeights mha_weights = init_weights(mha);
  // Every K/V head of the multi-head model is a copy of the multi-query model's one head.
  for (size_t b = 0; b < mha_weights.cross_attention.size(); ++b) {
    for (auto [from, to] :
         {std::pair{&mqa_weights.cross_attention[b].k_proj, &mha_weights.cross_attention[b].k_proj},
          std::pair{&mqa_weights.cross_attention[b].v_proj,
                    &mha_weights.cross_attention[b].v_proj}}) {
      for (int64_t row = 0; row < to->dim(0); ++row) {
        std::memcpy(to->row(row), from->row(row % from->dim(0)),
                    static_cast<size_t>(to->dim(1)) * sizeof(float));
      }
    }
    mha_weights.cross_attention[b].k_norm = mqa_weights.cross_attention[b].k_norm;
  }
  const Model a(mqa, mqa_weights);
  const Model b(mha, std::move(mha_weights));
  const Tensor image = test_image(*mqa.vision);
  const Tensor la = logits_with_image(a, image, 1);
  const Tensor lb = logits_with_image(b, image, 1);
  for (int64_t t = 0; t < la.dim(0); ++t) EXPECT_TRUE(rows_equal(la, lb, t)) << t;
}

TEST(Vision, TracesEveryDocumentedName) {
  const ModelConfig config = tiny_vision();
  const Model model(config, init_weights(config));
  TraceRecorder recorder;
  GenerationRequest request{kPrompt, 2, SamplingParams{}, 0, test_image(*config.vision), 3};
  generate(model, request, &recorder);
  const VisionConfig& v = *config.vision;
  const int64_t n = v.n_patches(), w = v.width, hd = v.head_dim(), L = v.resampler_latents;
  const std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {
      {"image/vision.pixels", {3, 16, 16}},
      {"image/vision.patches", {n, 48}},
      {"image/vision.embed.out", {n, w}},
      {"image/vision.layers.0.attn_norm.out", {n, w}},
      {"image/vision.layers.0.attn.q", {n, v.heads, hd}},
      {"image/vision.layers.0.attn.probs", {n, v.heads, n}},
      {"image/vision.layers.1.mlp.hidden", {n, v.mlp_size}},
      {"image/vision.layers.1.out", {n, w}},
      {"image/vision.final_norm.out", {n, w}},
      {"image/vision.resampler.layers.0.media_norm.out", {n, w}},
      {"image/vision.resampler.layers.0.latent_norm.out", {L, w}},
      {"image/vision.resampler.layers.0.attn.k", {n + L, v.heads, hd}},
      {"image/vision.resampler.layers.0.attn.probs", {L, v.heads, n + L}},
      {"image/vision.resampler.out", {L, w}},
      {"image/vision.tokens", {L, config.d_model}},
      {"image/layers.0.xattn.k", {L, 1, config.head_dim}},
      {"image/layers.1.xattn.v", {L, 1, config.head_dim}},
      {"prefill/layers.0.xattn.attn_norm.out", {10, config.d_model}},
      {"prefill/layers.0.xattn.q", {10, 4, config.head_dim}},
      {"prefill/layers.0.xattn.probs", {10, 4, L}},
      {"prefill/layers.1.xattn.attn_gated", {10, config.d_model}},
      {"prefill/layers.1.xattn.ffn_gated", {10, config.d_model}},
      {"prefill/layers.1.xattn.out", {10, config.d_model}},
      {"decode.0/layers.1.xattn.probs", {1, 4, L}},
  };
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(recorder.contains(name)) << name;
    EXPECT_EQ(recorder.at(name).shape, shape) << name;
  }
  // The gated block runs in front of its layer's attention.
  std::vector<std::string> names;
  for (const TensorRecord& r : recorder.records()) names.push_back(r.name);
  const auto at = [&](const std::string& name) {
    return std::find(names.begin(), names.end(), name) - names.begin();
  };
  EXPECT_LT(at("prefill/layers.1.xattn.out"), at("prefill/layers.1.attn_norm.out"));
  EXPECT_LT(at("prefill/layers.0.out"), at("prefill/layers.1.xattn.attn_norm.out"));
  // Rows before the image: zero probabilities and gated branches; rows after: a distribution.
  const std::vector<float> probs = recorder.at("prefill/layers.0.xattn.probs").to_f32();
  const std::vector<float> gated = recorder.at("prefill/layers.0.xattn.attn_gated").to_f32();
  for (int64_t t = 0; t < 10; ++t) {
    double sum = 0, gated_sum = 0;
    for (int64_t j = 0; j < 4 * L; ++j) sum += probs[t * 4 * L + j];
    for (int64_t i = 0; i < config.d_model; ++i)
      gated_sum += std::fabs(gated[t * config.d_model + i]);
    if (t < 3) {
      EXPECT_EQ(sum, 0.0) << t;
      EXPECT_EQ(gated_sum, 0.0) << t;
    } else {
      EXPECT_NEAR(sum, 4.0, 1e-5) << t;  // one distribution per head
      EXPECT_GT(gated_sum, 0.0) << t;
    }
  }
}

TEST(Vision, GatesStartNearPlusAndMinusGateInit) {
  const ModelConfig config = tiny_vision();
  const ModelWeights weights = init_weights(config);
  const double spread = config.init_std * std::sqrt(3.0);
  for (const CrossAttentionWeights& block : weights.cross_attention) {
    EXPECT_NEAR(block.attn_gate.data()[0], config.vision->gate_init, spread);
    EXPECT_NEAR(block.ffn_gate.data()[0], -config.vision->gate_init, spread);
  }
}

TEST(Vision, ErrorsNameTheProblem) {
  const ModelConfig config = tiny_vision();
  const Model model(config, init_weights(config));
  try {
    model.encode_image(Tensor({3, 8, 8}));
    FAIL() << "a wrong-sized image was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 8, 8]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3, 16, 16]"), std::string::npos) << e.what();
  }
  const ModelConfig text = text_only(config);
  const Model text_model(text, init_weights(text));
  EXPECT_THROW(text_model.encode_image(test_image(*config.vision)), std::invalid_argument);
  GenerationRequest request{kPrompt, 1, SamplingParams{}, 0, test_image(*config.vision), 11};
  EXPECT_THROW(generate(model, request), std::invalid_argument);  // past the prompt's end
  request.image_position = 10;  // the prompt's length: only new tokens see the image
  EXPECT_NO_THROW(generate(model, request));
}

TEST(Stats, VisionParametersMatchTheHandCount) {
  const ModelConfig config = tiny_vision();  // width 32, mlp 64, 16 patches of 48, 8 latents
  const ModelStats with = compute_stats(config);
  const ModelStats without = compute_stats(text_only(config));
  const int64_t block = 2 * 2 * 32 + 4 * (32 * 32 + 32) + (64 * 32 + 64) + (32 * 64 + 32);
  const int64_t tower = (32 * 48 + 32) + 16 * 32 + 2 * block + 2 * 32;
  const int64_t resampler = 8 * 32 + (block + 2 * 32) + 2 * 32;
  const int64_t projector = 32 * 32 + 32;  // d_model 32
  EXPECT_EQ(with.params_vision, tower + resampler + projector);
  // Two gated blocks: RMSNorm gains, q/k/v/o (4 query heads, 1 K/V head of 8), q/k norms, gates,
  // a SwiGLU FFN of 32.
  const int64_t gated = 32 + 32 * 32 + 2 * 8 * 32 + 32 * 32 + 2 * 8 + 1 + 32 + 3 * 32 * 32 + 1;
  EXPECT_EQ(with.params_cross_attention, 2 * gated);
  EXPECT_EQ(with.params_total, without.params_total + with.params_vision + 2 * gated);
  // Per token: everything of the gated blocks but k_proj and v_proj (once per image).
  EXPECT_EQ(with.params_active, without.params_active + 2 * (gated - 2 * 8 * 32));
  EXPECT_EQ(with.cross_attention_flops_per_token, 2 * 4 * 4 * 8 * 8);
  // FLOPs per image, by hand (N = 16 patches of 48 values, W = 32, M = 64, 8 latents, d = 32):
  //   patch embedding      2 * 16 * 48 * 32                                      =  49,152
  //   2 tower blocks       2 * (2 * 16 * (4 * 32 * 32 + 2 * 32 * 64) + 4 * 16 * 16 * 32)
  //                                                                              = 589,824
  //   1 resampler layer    2 * 8 * (2 * 32 * 32 + 2 * 32 * 64)    q, o, MLP on the latents
  //                      + 2 * 24 * 2 * 32 * 32                   k, v on 16 + 8 rows
  //                      + 4 * 8 * 24 * 32                        q.k and p.v    = 221,184
  //   projector            2 * 8 * 32 * 32                                       =  16,384
  //   K/V of 2 blocks      2 * (2 * 8 * 2 * 8 * 32)               1 K/V head     =  16,384
  EXPECT_EQ(with.vision_flops_per_image, 892'928);
}

}  // namespace
}  // namespace moeref
