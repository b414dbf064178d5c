// Speculative decoding: greedy output equals the target's own greedy output bit for bit; sampled
// output follows the target's distribution (a chi-square test, with a wrong acceptance rule as
// the negative control that must fail it); caches after rollback equal caches built without
// speculation.
#include "ref/generation/speculative.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "ref/generation/generate.h"
#include "ref/io/config.h"
#include "ref/model/model.h"
#include "ref/model/weights.h"

namespace moeref {
namespace {

ModelConfig tiny() { return load_config(std::string(MOEREF_SOURCE_DIR) + "/configs/tiny.json"); }

Model model_of(const DraftModel& draft) { return Model(draft.config, draft.weights); }

// A draft whose LM head is all zeros: every logit is 0, so its argmax is always token 0.
Model always_token_zero(const ModelConfig& config) {
  ModelWeights weights = init_weights(config);
  for (float& v : weights.lm_head.values()) v = 0.0f;
  return Model(config, std::move(weights));
}

const std::vector<std::vector<int32_t>> kPrompts = {
    {1, 17, 42, 99, 128}, {200, 3}, {7, 7, 7, 7, 7, 7, 7, 7, 250, 31, 64}};

GenerationRequest greedy_request(const std::vector<int32_t>& prompt, int64_t new_tokens) {
  GenerationRequest request;
  request.prompt = prompt;
  request.max_new_tokens = new_tokens;
  return request;
}

TEST(SpeculativeGreedy, EqualsPlainGreedyForEveryDraftAndGamma) {
  const ModelConfig config = tiny();
  const Model target(config, init_weights(config));
  const Model identical(config, init_weights(config));
  const Model shallow = model_of(make_shallow_draft(config, target.weights(), 1));
  const Model disagreeing = always_token_zero(config);
  struct Draft {
    const char* name;
    const Model* model;
  };
  for (const Draft& draft : {Draft{"identical", &identical}, Draft{"shallow", &shallow},
                             Draft{"always disagrees", &disagreeing}}) {
    for (const std::vector<int32_t>& prompt : kPrompts) {
      const GenerationRequest request = greedy_request(prompt, 24);
      const std::vector<int32_t> plain = generate(target, request).tokens;
      for (int64_t gamma : {1, 2, 4, 7}) {
        SpeculativeOptions options;
        options.gamma = gamma;
        const SpeculativeResult result =
            speculative_generate(target, *draft.model, request, options);
        EXPECT_EQ(result.tokens, plain) << draft.name << ", gamma " << gamma;
        const SpeculativeStats& s = result.stats;
        EXPECT_EQ(s.emitted, 24);
        if (draft.model == &identical) {
          EXPECT_EQ(s.accepted, s.drafted) << "an identical draft is always accepted";
          EXPECT_EQ(s.blocks, (24 + gamma) / (gamma + 1));
        }
        if (draft.model == &disagreeing) {
          ASSERT_THAT(plain, ::testing::Not(::testing::Contains(0)));
          EXPECT_EQ(s.accepted, 0) << "a draft that always proposes token 0 is never accepted";
          EXPECT_EQ(s.blocks, 24);
        }
      }
    }
  }
}

TEST(SpeculativeGreedy, AdaptiveGammaFollowsTheHuggingFaceRule) {
  const ModelConfig config = tiny();
  const Model target(config, init_weights(config));
  const Model identical(config, init_weights(config));
  SpeculativeOptions options;
  options.gamma = 1;
  options.adaptive_gamma = true;
  SpeculativeDecoder all_accepted(target, identical, greedy_request(kPrompts[0], 40), options);
  std::vector<int64_t> gammas;
  while (!all_accepted.done()) {
    gammas.push_back(all_accepted.gamma());
    all_accepted.step();
  }
  // 1, 3, 5, 7, ...: +2 after each fully accepted block (until the tokens left cap a block).
  ASSERT_GE(gammas.size(), 4u);
  EXPECT_EQ(std::vector<int64_t>(gammas.begin(), gammas.begin() + 4),
            (std::vector<int64_t>{1, 3, 5, 7}));

  options.gamma = 4;
  const Model disagreeing = always_token_zero(config);
  SpeculativeDecoder rejected(target, disagreeing, greedy_request(kPrompts[0], 10), options);
  gammas.clear();
  while (!rejected.done()) {
    gammas.push_back(rejected.gamma());
    rejected.step();
  }
  EXPECT_EQ(std::vector<int64_t>(gammas.begin(), gammas.begin() + 5),
            (std::vector<int64_t>{4, 3, 2, 1, 1}));  // -1 after each rejection, never below 1
}

TEST(SpeculativeGreedy, StopsAtEosInTheMiddleOfABlock) {
  ModelConfig config = tiny();
  const Model plain_target(config, init_weights(config));
  const std::vector<int32_t> plain = generate(plain_target, greedy_request(kPrompts[0], 20)).tokens;
  config.eos_token_id = plain[5];
  const Model target(config, init_weights(config));
  const Model identical(config, init_weights(config));
  SpeculativeOptions options;
  options.gamma = 7;  // the first block could emit 8 tokens; EOS is the sixth
  const SpeculativeResult result =
      speculative_generate(target, identical, greedy_request(kPrompts[0], 20), options);
  const auto first_eos = std::find(plain.begin(), plain.end(), config.eos_token_id);
  EXPECT_EQ(result.tokens, std::vector<int32_t>(plain.begin(), first_eos + 1));
  EXPECT_TRUE(result.stopped_at_eos);
}

TEST(SpeculativeCaches, RollbackLeavesTheCachesOfAPlainRun) {
  const ModelConfig config = tiny();
  const Model target(config, init_weights(config));
  const DraftModel shallow_parts = make_shallow_draft(config, target.weights(), 1);
  const Model shallow = model_of(shallow_parts);
  GenerationRequest request = greedy_request(kPrompts[2], 30);
  request.sampling = {.temperature = 0.9, .top_k = 40, .top_p = 0.95, .seed = 5};
  SpeculativeOptions options;
  options.gamma = 4;
  SpeculativeDecoder decoder(target, shallow, request, options);
  int checked = 0;
  while (!decoder.done()) {
    decoder.step();
    const std::vector<int32_t>& context = decoder.context();
    // The target's cache holds every context token but the last, exactly as a plain prefill.
    KvCache fresh_target = target.new_cache();
    target.forward(std::span(context.data(), context.size() - 1), fresh_target);
    EXPECT_TRUE(decoder.target_cache().same_contents(fresh_target)) << "block " << checked;
    // The draft's cache holds a prefix of the context (it catches up at the next block).
    const int64_t draft_length = decoder.draft_cache().length();
    ASSERT_LE(draft_length, static_cast<int64_t>(context.size()) - 1);
    KvCache fresh_draft = shallow.new_cache();
    shallow.forward(std::span(context.data(), static_cast<size_t>(draft_length)), fresh_draft);
    EXPECT_TRUE(decoder.draft_cache().same_contents(fresh_draft)) << "block " << checked;
    ++checked;
  }
  EXPECT_GT(decoder.result().stats.accepted, 0);
  EXPECT_LT(decoder.result().stats.accepted, decoder.result().stats.drafted);
}

TEST(SpeculativeErrors, PairingAndGammaAreChecked) {
  const ModelConfig config = tiny();
  ModelConfig other = config;
  other.name = "other";
  other.vocab_size = 300;
  const Model target(config, init_weights(config));
  const Model draft(other, init_weights(other));
  EXPECT_THAT(
      [&] {
        speculative_generate(target, draft, greedy_request({1, 2}, 4), {});
      },
      ::testing::ThrowsMessage<std::invalid_argument>(::testing::AllOf(
          ::testing::HasSubstr("vocab_size 300"), ::testing::HasSubstr("has 256"))));
  SpeculativeOptions zero;
  zero.gamma = 0;
  EXPECT_THROW(speculative_generate(target, target, greedy_request({1, 2}, 4), zero),
               std::invalid_argument);
}

// ---- The output distribution. ----

// A model small enough for thousands of seeded runs: 8 tokens, and weights spread enough that
// the target and the draft disagree often.
ModelConfig eight_tokens(uint64_t seed, int64_t layers) {
  ModelConfig c = tiny();
  c.name = "eight-tokens";
  c.vocab_size = 8;
  c.d_model = 16;
  c.n_layers = layers;
  c.n_heads = 2;
  c.head_dim = 8;
  c.n_experts = 4;
  c.expert_d_ff = 16;
  c.max_seq_len = 16;
  c.init_seed = seed;
  c.init_std = 0.6;
  return c;
}

// Pearson's chi-square of the counts of the first two emitted tokens over seeds 0..runs-1,
// against the target's own p(t1) p(t2 | t1). Cells expected to hold fewer than 5 are pooled.
double chi_square_of_first_two_tokens(const Model& target, const Model& draft,
                                      const SpeculativeOptions& options, int runs,
                                      int* degrees_of_freedom) {
  const std::vector<int32_t> prompt = {3, 1, 4};
  SamplingParams sampling{.temperature = 1.0, .top_k = 0, .top_p = 1.0, .seed = 0};
  std::map<std::pair<int32_t, int32_t>, int> counts;
  for (int run = 0; run < runs; ++run) {
    GenerationRequest request;
    request.prompt = prompt;
    request.max_new_tokens = 3;
    request.sampling = sampling;
    request.sampling.seed = static_cast<uint64_t>(run);
    const std::vector<int32_t> tokens =
        speculative_generate(target, draft, request, options).tokens;
    ++counts[{tokens[0], tokens[1]}];
  }
  auto target_distribution = [&](const std::vector<int32_t>& context) {
    KvCache cache = target.new_cache();
    const Tensor logits = target.forward(context, cache).logits;
    std::vector<double> p(8, 0.0);
    const auto row = std::span<const float>(logits.row(logits.dim(0) - 1), 8);
    for (const TokenProbability& t : processed_distribution(row, sampling))
      p[t.token] = t.probability;
    return p;
  };
  const std::vector<double> p1 = target_distribution(prompt);
  double chi_square = 0.0, pooled_observed = 0.0, pooled_expected = 0.0;
  int cells = 0;
  for (int32_t a = 0; a < 8; ++a) {
    std::vector<int32_t> context = prompt;
    context.push_back(a);
    const std::vector<double> p2 = target_distribution(context);
    for (int32_t b = 0; b < 8; ++b) {
      const double expected = runs * p1[a] * p2[b];
      const double observed = counts[{a, b}];
      if (expected < 5.0) {
        pooled_expected += expected;
        pooled_observed += observed;
        continue;
      }
      chi_square += (observed - expected) * (observed - expected) / expected;
      ++cells;
    }
  }
  if (pooled_expected > 0.0) {
    chi_square +=
        (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / pooled_expected;
    ++cells;
  }
  *degrees_of_freedom = cells - 1;
  return chi_square;
}

// The 99.9th percentile of chi-square with k degrees of freedom (Wilson-Hilferty).
double chi_square_critical(int k) {
  const double z = 3.090232;  // the standard normal's 99.9th percentile
  const double h = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - h + z * std::sqrt(h), 3.0);
}

TEST(SpeculativeSampling, OutputFollowsTheTargetDistribution) {
  const Model target(eight_tokens(21, 2), init_weights(eight_tokens(21, 2)));
  const Model draft(eight_tokens(22, 1), init_weights(eight_tokens(22, 1)));
  SpeculativeOptions options;
  options.gamma = 2;
  int dof = 0;
  const double statistic = chi_square_of_first_two_tokens(target, draft, options, 6000, &dof);
  EXPECT_GT(dof, 20);
  EXPECT_LT(statistic, chi_square_critical(dof)) << "degrees of freedom " << dof;
}

// The negative control: the acceptance ratio inverted (q / p instead of p / q, the slip the two
// papers' opposite naming invites) must be caught by the same test.
bool inverted_acceptance(double u, double p, double q) { return u * p <= q; }

TEST(SpeculativeSampling, AWrongAcceptanceRuleFailsTheSameTest) {
  const Model target(eight_tokens(21, 2), init_weights(eight_tokens(21, 2)));
  const Model draft(eight_tokens(22, 1), init_weights(eight_tokens(22, 1)));
  SpeculativeOptions options;
  options.gamma = 2;
  options.accept = inverted_acceptance;
  int dof = 0;
  const double statistic = chi_square_of_first_two_tokens(target, draft, options, 6000, &dof);
  EXPECT_GT(statistic, chi_square_critical(dof)) << "degrees of freedom " << dof;
}

}  // namespace
}  // namespace moeref
