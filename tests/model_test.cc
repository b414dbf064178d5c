// The whole model: against a scalar oracle written here from the math (docs/model.md),
// and the properties the reference promises: prefill equals decode bitwise, thread counts do not
// change a bit, tracing does not change a bit, weights are a function of (seed, name) alone.
#include "ref/model/model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/generation/generate.h"
#include "ref/generation/philox.h"
#include "ref/io/config.h"
#include "ref/model/stats.h"
#include "ref/model/weights.h"
#include "tests/scalar_oracle.h"

namespace moeref {
namespace {

using test::oracle_last_logits;
using test::Vec;

ModelConfig tiny() { return load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/tiny.json"); }

// Grouped K/V heads, LayerNorm, learned positions, GELU, dense layers between MoE layers,
// tied embeddings: every option that tiny does not take.
ModelConfig tiny_variant() {
  ModelConfig c = tiny();
  c.n_layers = 4;
  c.n_kv_heads = 2;
  c.norm = NormKind::kLayerNorm;
  c.positions = PositionKind::kLearned;
  c.ffn_activation = Activation::kGelu;
  c.moe_every = 2;
  c.dense_d_ff = 96;
  c.tied_embeddings = true;
  c.router_renormalize = false;
  c.n_experts = 8;
  c.top_k = 3;
  return c;
}

Model make_model(const ModelConfig& config) { return Model(config, init_weights(config)); }

const std::vector<int32_t> kPrompt = {1, 17, 42, 99, 128, 200, 255, 3, 64, 77};

bool bitwise_equal(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

class ModelVsOracle : public ::testing::TestWithParam<ModelConfig (*)()> {};

TEST_P(ModelVsOracle, LogitsMatchTheScalarOracle) {
  const ModelConfig config = GetParam()();
  const Model model = make_model(config);
  KvCache cache = model.new_cache();
  const Tensor logits = model.forward(kPrompt, cache).logits;
  const Vec expected = oracle_last_logits(config, model.weights(), kPrompt);
  double max_abs = 0, max_err = 0;
  for (int64_t v = 0; v < config.vocab_size; ++v) {
    max_abs = std::max(max_abs, std::fabs(expected[v]));
    max_err = std::max(max_err, std::fabs(logits.row(9)[v] - expected[v]));
  }
  // fp32 rounding of each op's output, relative to the largest logit: a wiring bug (a wrong
  // head, a missing residual, adjacent-pair RoPE) moves logits by percent, not by 1e-5.
  EXPECT_LT(max_err, 1e-5 * max_abs) << "max |error| " << max_err << " of max |logit| " << max_abs;
  EXPECT_GT(max_abs, 0.1);  // the logits are not trivially small
}

INSTANTIATE_TEST_SUITE_P(Configs, ModelVsOracle, ::testing::Values(&tiny, &tiny_variant));

// ---- Properties of the reference. ----

class ModelProperties : public ::testing::TestWithParam<ModelConfig (*)()> {};

TEST_P(ModelProperties, PrefillEqualsTokenByTokenDecodeBitwise) {
  const Model model = make_model(GetParam()());
  KvCache prefill_cache = model.new_cache();
  const Tensor prefill = model.forward(kPrompt, prefill_cache).logits;
  KvCache decode_cache = model.new_cache();
  for (size_t t = 0; t < kPrompt.size(); ++t) {
    const Tensor step = model.forward(std::span(&kPrompt[t], 1), decode_cache).logits;
    EXPECT_TRUE(bitwise_equal(step.data(), prefill.row(static_cast<int64_t>(t)), step.numel()))
        << "position " << t;
  }
  EXPECT_TRUE(prefill_cache.same_contents(decode_cache));
}

TEST_P(ModelProperties, ChunkedPrefillEqualsOneCallBitwise) {
  const Model model = make_model(GetParam()());
  KvCache whole = model.new_cache();
  const Tensor expected = model.forward(kPrompt, whole).logits;
  KvCache chunked = model.new_cache();
  const std::span<const int32_t> prompt(kPrompt);
  model.forward(prompt.first(3), chunked);
  const Tensor rest = model.forward(prompt.subspan(3), chunked).logits;
  EXPECT_TRUE(bitwise_equal(rest.data(), expected.row(3), rest.numel()));
}

TEST_P(ModelProperties, OneThreadEqualsTwoThreadsBitwise) {
  // 96 tokens: enough work that the projections, attention and norms really split across threads
  // (ref/ops/parallel.h).
  const Model model = make_model(GetParam()());
  std::vector<int32_t> prompt;
  for (int i = 0; i < 96; ++i) prompt.push_back(kPrompt[i % kPrompt.size()]);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  KvCache one = model.new_cache();
  const Tensor single = model.forward(prompt, one).logits;
  omp_set_num_threads(2);
  KvCache two = model.new_cache();
  const Tensor dual = model.forward(prompt, two).logits;
  omp_set_num_threads(saved);
  EXPECT_TRUE(bitwise_equal(single.data(), dual.data(), single.numel()));
}

TEST_P(ModelProperties, TracingDoesNotChangeAnything) {
  const Model model = make_model(GetParam()());
  KvCache plain_cache = model.new_cache();
  const Tensor plain = model.forward(kPrompt, plain_cache).logits;
  KvCache traced_cache = model.new_cache();
  TraceRecorder recorder;
  const Tensor traced = model.forward(kPrompt, traced_cache, &recorder).logits;
  EXPECT_TRUE(bitwise_equal(plain.data(), traced.data(), plain.numel()));
  const std::vector<float> logged = recorder.at("logits").to_f32();
  EXPECT_TRUE(bitwise_equal(logged.data(), plain.data(), plain.numel()));
}

INSTANTIATE_TEST_SUITE_P(Configs, ModelProperties, ::testing::Values(&tiny, &tiny_variant));

TEST(Tracer, RecordsEveryDocumentedNameInExecutionOrder) {
  const ModelConfig config = tiny_variant();  // layer 0 dense, layer 1 MoE
  const Model model = make_model(config);
  KvCache cache = model.new_cache();
  TraceRecorder recorder;
  model.forward(std::span(kPrompt).first(5), cache, &recorder);
  std::vector<std::string> names;
  for (const TensorRecord& r : recorder.records()) names.push_back(r.name);
  const std::vector<std::string> attention = {"attn_norm.out", "attn.q",        "attn.k",
                                              "attn.v",        "attn.probs",    "attn.context",
                                              "attn.out",      "attn.residual", "ffn_norm.out"};
  std::vector<std::string> expected = {"embed.out"};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    for (const std::string& n : attention) expected.push_back(p + n);
    if (l == 0) {
      expected.push_back(p + "ffn.out");
    } else {
      for (const char* n :
           {"moe.router_logits", "moe.router_probs", "moe.topk_indices", "moe.topk_weights",
            "moe.kept", "moe.expert_outputs", "moe.out", "moe.aux_loss", "moe.z_loss"}) {
        expected.push_back(p + n);
      }
    }
    expected.push_back(p + "out");
  }
  names.resize(expected.size());
  EXPECT_EQ(names, expected);
  EXPECT_EQ(recorder.records().back().name, "logits");
  EXPECT_EQ(recorder.at("layers.1.attn.probs").shape, (std::vector<int64_t>{5, 4, 5}));
  EXPECT_EQ(recorder.at("layers.1.attn.k").shape, (std::vector<int64_t>{5, 2, 16}));
  EXPECT_EQ(recorder.at("layers.1.moe.expert_outputs").shape, (std::vector<int64_t>{5, 3, 64}));
  EXPECT_EQ(recorder.at("layers.1.moe.topk_indices").dtype, DType::kI32);
}

TEST(Tracer, MoeOutputIsTheWeightedSumOfTracedExpertOutputs) {
  const ModelConfig config = tiny();
  const Model model = make_model(config);
  KvCache cache = model.new_cache();
  TraceRecorder recorder;
  model.forward(kPrompt, cache, &recorder);
  const int64_t T = 10, k = 2, d = 64;
  const std::vector<float> weights = recorder.at("layers.0.moe.topk_weights").to_f32();
  const std::vector<float> experts = recorder.at("layers.0.moe.expert_outputs").to_f32();
  const std::vector<float> out = recorder.at("layers.0.moe.out").to_f32();
  for (int64_t t = 0; t < T; ++t) {
    EXPECT_FLOAT_EQ(weights[t * k] + weights[t * k + 1], 1.0f);  // renormalised
    for (int64_t i = 0; i < d; ++i) {
      const double sum = static_cast<double>(weights[t * k]) * experts[(t * k) * d + i] +
                         static_cast<double>(weights[t * k + 1]) * experts[(t * k + 1) * d + i];
      EXPECT_EQ(out[t * d + i], static_cast<float>(sum));
    }
  }
}

// The reference kernels with the experts run in a given order (reversed, or broken).
class OrderedExperts : public RefKernels {
 public:
  explicit OrderedExperts(bool broken) : broken_(broken) {}
  const char* name() const override { return broken_ ? "broken-order" : "reversed-order"; }
  std::vector<int64_t> expert_order(std::span<const int64_t> tokens_per_expert) const override {
    std::vector<int64_t> order = RefKernels::expert_order(tokens_per_expert);
    std::ranges::reverse(order);
    if (broken_) order.back() = order.front();  // one expert twice, another never
    return order;
  }

 private:
  bool broken_;
};

// The order of the experts decides which thread waits for which, never a bit: reversed, at two
// threads (96 tokens: the experts run in parallel), the logits are the index order's.
TEST(ExpertOrder, AnyOrderGivesTheSameBits) {
  const ModelConfig config = tiny();
  const ModelWeights weights = init_weights(config);
  const OrderedExperts reversed(false);
  const Model in_index_order(config, weights);
  const Model in_reverse(config, weights, reversed);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 96; ++i) prompt.push_back(kPrompt[i % kPrompt.size()]);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  KvCache a = in_index_order.new_cache(), b = in_reverse.new_cache();
  const Tensor expected = in_index_order.forward(prompt, a).logits;
  const Tensor got = in_reverse.forward(prompt, b).logits;
  omp_set_num_threads(saved);
  EXPECT_TRUE(bitwise_equal(got.data(), expected.data(), expected.numel()));
}

TEST(ExpertOrder, OneThatIsNotAPermutationIsAnErrorNamingTheKernelSet) {
  const ModelConfig config = tiny();
  const OrderedExperts broken(true);
  const Model model(config, init_weights(config), broken);
  KvCache cache = model.new_cache();
  EXPECT_THAT([&] { model.forward(kPrompt, cache); },
              ::testing::ThrowsMessage<std::logic_error>(::testing::HasSubstr(
                  "the kernel set \"broken-order\" gave an expert_order that is not a "
                  "permutation of the 16 experts")));
}

TEST(Capacity, DroppedAssignmentsContributeNothing) {
  ModelConfig config = tiny();
  config.capacity_factor = 0.5;  // C = ceil(0.5 * 10 * 2 / 16) = 1 token per expert
  const Model model = make_model(config);
  KvCache cache = model.new_cache();
  TraceRecorder recorder;
  const ForwardOutput output = model.forward(kPrompt, cache, &recorder);
  ASSERT_EQ(output.routers.size(), 2u);
  EXPECT_EQ(output.routers[0].capacity, 1);
  const std::vector<int32_t> kept = recorder.at("layers.0.moe.kept").to_i32();
  const std::vector<int32_t> indices = recorder.at("layers.0.moe.topk_indices").to_i32();
  const std::vector<float> experts = recorder.at("layers.0.moe.expert_outputs").to_f32();
  int64_t dropped = 0;
  std::vector<int> load(16, 0);
  for (size_t a = 0; a < kept.size(); ++a) {
    if (kept[a]) {
      ++load[indices[a]];
    } else {
      ++dropped;
      for (int64_t i = 0; i < 64; ++i) EXPECT_EQ(experts[a * 64 + i], 0.0f);
    }
  }
  EXPECT_EQ(dropped, output.routers[0].dropped);
  // 20 assignments over 16 experts of capacity 1: at least 4 must drop.
  EXPECT_GE(dropped, 4);
  for (int count : load) EXPECT_LE(count, 1);
}

TEST(RouterStats, ReportedPerMoeLayer) {
  const Model model = make_model(tiny_variant());  // MoE at layers 1 and 3
  KvCache cache = model.new_cache();
  const ForwardOutput output = model.forward(kPrompt, cache);
  ASSERT_EQ(output.routers.size(), 2u);
  EXPECT_EQ(output.routers[0].layer, 1);
  EXPECT_EQ(output.routers[1].layer, 3);
  for (const RouterStats& r : output.routers) {
    EXPECT_GT(r.aux_loss, 0.0);
    EXPECT_GT(r.z_loss, 0.0);
    EXPECT_EQ(r.dropped, 0);
  }
}

TEST(ModelErrors, TokenOutsideVocabularyLeavesCacheUnchanged) {
  const Model model = make_model(tiny());
  KvCache cache = model.new_cache();
  const std::vector<int32_t> bad = {1, 256};
  EXPECT_THAT([&] { model.forward(bad, cache); },
              ::testing::ThrowsMessage<std::invalid_argument>(
                  ::testing::HasSubstr("token 256 at index 1 is outside the vocabulary of 256")));
  EXPECT_EQ(cache.length(), 0);
  const std::vector<int32_t> negative = {-1};
  EXPECT_THROW(model.forward(negative, cache), std::invalid_argument);
}

TEST(ModelErrors, ContextOverflowIsAnError) {
  const Model model = make_model(tiny());  // max_seq_len 128
  KvCache cache = model.new_cache();
  const std::vector<int32_t> long_prompt(129, 5);
  EXPECT_THAT([&] { model.forward(long_prompt, cache); },
              ::testing::ThrowsMessage<std::invalid_argument>(
                  ::testing::HasSubstr("exceed the context of 128 positions")));
  const std::vector<int32_t> full(128, 5);
  model.forward(full, cache);
  EXPECT_THROW(model.forward(std::span(kPrompt).first(1), cache), std::invalid_argument);
}

TEST(KvCache, TruncateRollsBack) {
  const Model model = make_model(tiny());
  KvCache reference = model.new_cache();
  model.forward(std::span(kPrompt).first(4), reference);
  KvCache rolled = model.new_cache();
  model.forward(std::span(kPrompt).first(7), rolled);
  rolled.truncate(4);
  EXPECT_TRUE(rolled.same_contents(reference));
  EXPECT_THROW(rolled.truncate(5), std::out_of_range);
}

// ---- Weights. ----

TEST(Weights, SameSeedSameBitsOtherSeedOtherBits) {
  const ModelConfig config = tiny();
  const ModelWeights a = init_weights(config);
  const ModelWeights b = init_weights(config);
  ModelConfig reseeded = config;
  reseeded.init_seed = config.init_seed + 1;
  const ModelWeights c = init_weights(reseeded);
  const auto ra = weight_records(config, a), rb = weight_records(config, b),
             rc = weight_records(config, c);
  for (size_t i = 0; i < ra.size(); ++i) {
    EXPECT_EQ(ra[i].bytes, rb[i].bytes) << ra[i].name;
    EXPECT_NE(ra[i].bytes, rc[i].bytes) << ra[i].name;
  }
}

TEST(Weights, AddingTensorsNeverChangesOthers) {
  // Tying the head, adding learned positions or a layer, changing sizes elsewhere: every tensor
  // present in both configs with the same name and shape keeps its bits.
  const ModelConfig base = tiny();
  ModelConfig grown = base;
  grown.n_layers = 3;
  grown.positions = PositionKind::kLearned;
  grown.tied_embeddings = true;
  std::map<std::string, std::vector<std::byte>> base_bytes;
  for (const TensorRecord& r : weight_records(base, init_weights(base)))
    base_bytes[r.name] = r.bytes;
  int shared = 0;
  for (const TensorRecord& r : weight_records(grown, init_weights(grown))) {
    if (base_bytes.contains(r.name)) {
      EXPECT_EQ(r.bytes, base_bytes[r.name]) << r.name;
      ++shared;
    }
  }
  EXPECT_GT(shared, 100);
}

TEST(Weights, InitialisationHasTheConfiguredSpread) {
  // Uniform on [-a, a) with a = std * sqrt(3) has standard deviation std; gains centre on 1.
  const ModelConfig config = tiny();  // init_std 0.08
  const ModelWeights w = init_weights(config);
  double sum = 0, sum_squares = 0, max_abs = 0;
  for (float v : w.embed.values()) {
    sum += v;
    sum_squares += static_cast<double>(v) * v;
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(v)));
  }
  const double n = static_cast<double>(w.embed.numel());
  EXPECT_NEAR(sum / n, 0.0, 0.002);
  EXPECT_NEAR(std::sqrt(sum_squares / n), 0.08, 0.002);
  EXPECT_LE(max_abs, 0.08 * std::sqrt(3.0));
  double gain_sum = 0;
  for (float v : w.final_norm.values()) gain_sum += v;
  EXPECT_NEAR(gain_sum / 64, 1.0, 0.05);
}

TEST(Weights, FirstValuesFollowTheDocumentedPhiloxLayout) {
  // Element 0 of "embed.weight": word 0 of Philox4x32-10 with key {seed, 0} and counter
  // {0, 0, fnv1a32("embed.weight"), 0x57454947}; value = a * (2u - 1), a = std * sqrt(3).
  const ModelConfig config = tiny();
  const ModelWeights w = init_weights(config);
  uint32_t hash = 0x811C9DC5;
  for (char ch : std::string("embed.weight"))
    hash = (hash ^ static_cast<unsigned char>(ch)) * 0x01000193;
  const PhiloxCounter bits =
      philox4x32_10({0, 0, hash, 0x57454947}, {static_cast<uint32_t>(config.init_seed), 0});
  for (int word = 0; word < 4; ++word) {
    const double u = static_cast<double>(bits[word] >> 8) / 16777216.0;
    const float expected = static_cast<float>(0.08 * std::sqrt(3.0) * (2 * u - 1));
    EXPECT_EQ(w.embed.data()[word], expected) << "word " << word;
  }
}

TEST(Weights, SaveAndLoadRoundTripBitwise) {
  const ModelConfig config = tiny_variant();
  const ModelWeights w = init_weights(config);
  const std::string path = ::testing::TempDir() + "/weights_round_trip.safetensors";
  save_weights(config, w, path);
  const ModelWeights loaded = load_weights(config, path);
  const auto a = weight_records(config, w), b = weight_records(config, loaded);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].bytes, b[i].bytes) << a[i].name;
}

struct LoadErrorCase {
  const char* description;
  void (*mutate)(std::vector<TensorRecord>&);
  const char* expected;
};

TEST(Weights, LoadRejectsFilesThatDoNotFitTheConfig) {
  const ModelConfig config = tiny();
  const std::vector<LoadErrorCase> cases = {
      {"missing tensor", [](std::vector<TensorRecord>& r) { r.erase(r.begin() + 2); },
       "no tensor named 'layers.0.attn.q_proj.weight'"},
      {"extra tensor",
       [](std::vector<TensorRecord>& r) {
         const float one = 1;
         r.push_back(make_f32_record("surprise", {1}, std::span(&one, 1)));
       },
       "tensor \"surprise\" is not part of this config"},
      {"wrong shape",
       [](std::vector<TensorRecord>& r) {
         r[0] = make_f32_record("embed.weight", {64, 256}, r[0].to_f32());
       },
       "has shape [64, 256], the config needs [256, 64]"},
      {"wrong dtype",
       [](std::vector<TensorRecord>& r) {
         const std::vector<int32_t> ints(64, 1);
         r[1] = make_i32_record(r[1].name, {64}, ints);
       },
       "has dtype I32, expected F32"},
  };
  for (const LoadErrorCase& c : cases) {
    std::vector<TensorRecord> records = weight_records(config, init_weights(config));
    c.mutate(records);
    const std::string path = ::testing::TempDir() + "/bad_weights.safetensors";
    write_safetensors(path, records);
    EXPECT_THAT([&] { load_weights(config, path); },
                ::testing::ThrowsMessage<SafetensorsError>(
                    ::testing::AllOf(::testing::HasSubstr(path), ::testing::HasSubstr(c.expected))))
        << c.description;
  }
}

// A NaN or Inf is refused at load, naming the tensor, the flat index and the element, through
// both loaders (a path and a file already read); NonFiniteWeights::kAllow loads it as it is.
TEST(Weights, LoadRefusesNonFiniteValuesUnlessAllowed) {
  struct Case {
    size_t tensor;  // position in the canonical order
    int64_t index;
    float value;
    const char* expected;
  };
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Case> cases = {
      {0, 0, std::nanf(""),
       "tensor \"embed.weight\" holds NaN at index 0 (element [0, 0] of "
       "[256, 64])"},
      {0, 64 * 255 + 63, -inf, "holds -Inf at index 16383 (element [255, 63] of [256, 64])"},
      {1, 7, inf,
       "tensor \"layers.0.attn_norm.weight\" holds +Inf at index 7 (element [7] of "
       "[64])"},
      {2, 64 * 9 + 1, std::nanf(""),
       "tensor \"layers.0.attn.q_proj.weight\" holds NaN at index 577"},
  };
  const ModelConfig config = tiny();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expected);
    std::vector<TensorRecord> records = weight_records(config, init_weights(config));
    std::vector<float> values = records[c.tensor].to_f32();
    values[static_cast<size_t>(c.index)] = c.value;
    records[c.tensor] = make_f32_record(records[c.tensor].name, records[c.tensor].shape, values);
    const std::string path = ::testing::TempDir() + "/nonfinite_weights.safetensors";
    write_safetensors(path, records);
    const auto refused = ::testing::ThrowsMessage<SafetensorsError>(
        ::testing::AllOf(::testing::HasSubstr(path), ::testing::HasSubstr(c.expected),
                         ::testing::HasSubstr("--allow-nonfinite-weights")));
    EXPECT_THAT([&] { load_weights(config, path); }, refused);
    const SafetensorsFile file = SafetensorsFile::read(path);
    EXPECT_THAT([&] { load_weights(config, file); }, refused);

    const WeightLoading allow{{}, NonFiniteWeights::kAllow};
    for (const ModelWeights& loaded :
         {load_weights(config, path, allow), load_weights(config, file, allow)}) {
      const TensorRecord stored = weight_records(config, loaded)[c.tensor];
      EXPECT_EQ(stored.bytes, records[c.tensor].bytes);
    }
  }
}

// Names, shapes and dtypes are checked against the config from the header, before any data is
// read: a file whose one tensor claims 256 GiB (a sparse file, taking no disk) is refused by its
// shape, without allocating or reading the 256 GiB.
TEST(Weights, LoadChecksTheHeaderBeforeReadingAnyData) {
  const std::string path = ::testing::TempDir() + "/huge_weights.safetensors";
  const uint64_t n_floats = uint64_t{1} << 36;
  std::string header = "{\"embed.weight\":{\"dtype\":\"F32\",\"shape\":[" +
                       std::to_string(n_floats) + "],\"data_offsets\":[0," +
                       std::to_string(n_floats * 4) + "]}}";
  header.append((8 - header.size() % 8) % 8, ' ');
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const uint64_t length = header.size();  // little-endian host
    out.write(reinterpret_cast<const char*>(&length), 8);
    out << header;
  }
  std::filesystem::resize_file(path, 8 + header.size() + n_floats * 4);
  EXPECT_THAT([&] { load_weights(tiny(), path); },
              ::testing::ThrowsMessage<SafetensorsError>(::testing::HasSubstr(
                  "tensor \"embed.weight\" has shape [68719476736], the config needs [256, 64]")));
  std::filesystem::remove(path);
}

// Saving writes from the weights' own memory: the views it writes borrow it, no copy is made.
TEST(Weights, SavingBorrowsTheWeightsMemory) {
  const ModelConfig config = tiny();
  const ModelWeights weights = init_weights(config);
  const std::vector<TensorView> views = weight_views(config, weights);
  ASSERT_FALSE(views.empty());
  EXPECT_EQ(views.front().name, "embed.weight");
  EXPECT_EQ(views.front().bytes.data(), std::as_bytes(weights.embed.values()).data());
  EXPECT_EQ(views.back().name, "lm_head.weight");
  EXPECT_EQ(views.back().bytes.data(), std::as_bytes(weights.lm_head.values()).data());
}

TEST(Weights, RefusesConfigsThatCannotFitInMemory) {
  const ModelConfig config =
      load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/gpt4-rumored.json");
  EXPECT_THAT([&] { init_weights(config); },
              ::testing::ThrowsMessage<std::runtime_error>(::testing::AllOf(
                  ::testing::HasSubstr("needs 6.81 TiB"), ::testing::HasSubstr("gpt4-rumored"))));
}

// ---- Counting. ----

TEST(Stats, Gpt4RumoredMatchesTheHandCount) {
  // The shape public reports give GPT-4 (docs/model.md, "Counting"): d 15360, 120 layers, 120 heads
  // x 128, 1 K/V head, 16 experts of two d x 30720 matrices (GELU), vocab 100256, RMSNorm gains,
  // untied head.
  const ModelConfig c = load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/gpt4-rumored.json");
  const ModelStats s = compute_stats(c);
  const int64_t d = 15360, L = 120, q = 120 * 128, kv = 128, ff = 30720, E = 16, V = 100256;
  const int64_t attention = L * (2 * d * q + 2 * d * kv);
  const int64_t expert = L * 2 * d * ff;
  const int64_t shared = attention + L * (E * d + 2 * d) + d + 2 * V * d;
  EXPECT_EQ(s.params_attention, attention);
  EXPECT_EQ(s.params_per_expert, expert);
  EXPECT_EQ(s.params_total, shared + E * expert);
  EXPECT_EQ(s.params_active, shared + 2 * expert);
  // Matmuls: attention, router and LM head (norm gains are elementwise, the embedding a lookup).
  EXPECT_EQ(s.matmul_flops_per_token, 2 * (attention + L * E * d + V * d + 2 * expert));
  EXPECT_EQ(s.kv_values_per_token, 2 * L * kv);
  EXPECT_EQ(s.kv_values_per_token_mha, 120 * s.kv_values_per_token);
  // The report's round figures: ~1.8T total, ~280B active, ~560 GFLOP per token.
  EXPECT_NEAR(static_cast<double>(s.params_total), 1.87e12, 0.01e12);
  EXPECT_NEAR(static_cast<double>(s.params_active), 2.87e11, 0.01e11);
  EXPECT_NEAR(static_cast<double>(s.matmul_flops_per_token), 5.7e11, 0.1e11);
  EXPECT_EQ(4 * s.kv_values_per_token / 2, 60 * 1024);  // 60 KiB per token at fp16
}

}  // namespace
}  // namespace moeref

namespace moeref {
namespace {

TEST(Tracer, GenerationRecordsEachCallUnderItsOwnPrefix) {
  const Model model = make_model(tiny());
  GenerationRequest request;
  request.prompt = {1, 2, 3};
  request.max_new_tokens = 3;
  TraceRecorder recorder;
  const GenerationResult result = generate(model, request, &recorder);
  ASSERT_EQ(result.tokens.size(), 3u);
  // Prefill, then two decode calls (the last token is not fed back).
  EXPECT_EQ(recorder.at("prefill/logits").shape, (std::vector<int64_t>{3, 256}));
  EXPECT_EQ(recorder.at("decode.0/logits").shape, (std::vector<int64_t>{1, 256}));
  EXPECT_EQ(recorder.at("decode.1/layers.0.attn.probs").shape, (std::vector<int64_t>{1, 4, 5}));
  EXPECT_FALSE(recorder.contains("decode.2/logits"));
  // Each decode call's greedy token is the next generated token.
  const std::vector<float> step0 = recorder.at("decode.0/logits").to_f32();
  EXPECT_EQ(greedy_token(step0), result.tokens[1]);
  const std::string path = ::testing::TempDir() + "/generation_trace.safetensors";
  EXPECT_NO_THROW(write_safetensors(path, recorder.records()));  // names are all distinct
}

}  // namespace
}  // namespace moeref
