#include "golden/run_bugs.h"

#include <algorithm>
#include <string>
#include <utility>

#include "golden/mutated_runner.h"
#include "ref/generation/philox.h"

namespace moeref::golden {

namespace {

// The next token from the first row of a prefill's logits instead of the last.
class FirstRowPicker final : public TokenPicker {
 public:
  int64_t row(const Tensor&) const override { return 0; }
};

// On equal logits the highest token id wins.
class GreedyTiesToHighestId final : public TokenPicker {
 public:
  int32_t greedy(std::span<const float> logits) const override {
    size_t best = 0;
    for (size_t i = 1; i < logits.size(); ++i) {
      if (logits[i] >= logits[best]) best = i;
    }
    return static_cast<int32_t>(best);
  }
};

// Top-p keeps the tokens whose cumulative probability stays below top_p, leaving out the one
// that crosses it.
class TopPExcludesCrossingToken final : public TokenPicker {
 public:
  std::vector<TokenProbability> distribution(std::span<const float> logits,
                                             const SamplingParams& params) const override {
    SamplingParams without_top_p = params;
    without_top_p.top_p = 1.0;
    std::vector<TokenProbability> kept = processed_distribution(logits, without_top_p);
    if (params.top_p >= 1.0) return kept;
    std::sort(kept.begin(), kept.end(), [](const TokenProbability& a, const TokenProbability& b) {
      return a.probability != b.probability ? a.probability > b.probability : a.token < b.token;
    });
    double cumulative = 0.0;
    size_t n_kept = 0;
    while (n_kept < kept.size() &&
           (n_kept == 0 || cumulative + kept[n_kept].probability < params.top_p)) {
      cumulative += kept[n_kept++].probability;
    }
    kept.resize(n_kept);
    std::sort(kept.begin(), kept.end(), [](const TokenProbability& a, const TokenProbability& b) {
      return a.token < b.token;
    });
    double sum = 0.0;
    for (const TokenProbability& t : kept) sum += t.probability;
    for (TokenProbability& t : kept) t.probability /= sum;
    return kept;
  }
};

// The logits multiplied by the temperature instead of divided by it.
class TemperatureMultiplied final : public TokenPicker {
 public:
  std::vector<TokenProbability> distribution(std::span<const float> logits,
                                             const SamplingParams& params) const override {
    SamplingParams inverted = params;
    inverted.temperature = 1.0 / params.temperature;
    return processed_distribution(logits, inverted);
  }
};

// The Philox counter's first two words swapped: {position, draw, ...} for {draw, position, ...}.
class PhiloxCounterWordsSwapped final : public TokenPicker {
 public:
  double uniform(uint64_t seed, uint32_t position, uint32_t request) const override {
    const PhiloxCounter bits =
        philox4x32_10({position, 0, request, static_cast<uint32_t>(RandomStream::kSampling)},
                      philox_key_from_seed(seed));
    return uniform_from_bits(bits[0]);
  }
};

// The rejected position's token drawn from p itself, not from norm(max(0, p - q)).
std::vector<double> residual_is_p(const std::vector<double>& p, const std::vector<double>&) {
  return p;
}

Bug run_bug(std::string name, std::string description, std::string own_tensor,
            std::vector<std::string> own_op_tensors, Reach reach,
            std::function<RunMutation()> mutation) {
  return make_bug(
      std::move(name), std::move(description), std::move(own_tensor), std::move(own_op_tensors),
      std::move(reach),
      [mutation = std::move(mutation)](const GoldenSet& set, const Kernels& base, Precision) {
        return run_mutated(set, base, mutation());
      });
}

template <typename Picker>
std::function<RunMutation()> picking() {
  return [] {
    static const Picker picker;
    RunMutation mutation;
    mutation.tokens = &picker;
    return mutation;
  };
}

}  // namespace

std::vector<Bug> run_bugs() {
  const Reach model_sets{{"model"}, {}, {}, {}};
  const Reach sampled{{"model"}, {}, {"sampling"}, {}};
  return {
      run_bug("image-seen-before-its-position",
              "text tokens before the image see it too: every token reads the image", "xattn.probs",
              {}, {{"model"}, [](const ModelConfig& c) { return c.vision.has_value(); }, {}, {}},
              [] {
                RunMutation mutation;
                mutation.image_position = 0;
                return mutation;
              }),
      run_bug("greedy-argmax-first-row",
              "the next token is chosen from the prefill's first logits row instead of its last",
              "greedy_tokens", {}, model_sets, picking<FirstRowPicker>()),
      run_bug("greedy-ties-to-highest-id", "on equal logits greedy picks the highest token id",
              "greedy_tokens", {"tokens"}, {{"model"}, {}, {"greedy"}, {}},
              picking<GreedyTiesToHighestId>()),
      run_bug("top-p-excludes-crossing-token",
              "top-p leaves out the token whose probability crosses top_p", "sampled_tokens",
              {"probs"}, sampled, picking<TopPExcludesCrossingToken>()),
      run_bug("sampling-temperature-multiplied",
              "sampling multiplies the logits by the temperature instead of dividing",
              "sampled_tokens", {"probs"}, sampled, picking<TemperatureMultiplied>()),
      run_bug(
          "philox-counter-words-swapped",
          "the sampling draw's Philox counter is {position, draw, ...}, not {draw, position, ...}",
          "sampled_tokens", {"tokens"}, sampled, picking<PhiloxCounterWordsSwapped>()),
      run_bug("speculative-residual-from-p",
              "a rejected draft token is replaced by a draw from p, not from norm(max(0, p - q))",
              "final_token", {}, {{"speculative"}, {}, {}, {}},
              [] {
                RunMutation mutation;
                mutation.speculative_residual = residual_is_p;
                return mutation;
              }),
      run_bug("batching-positions-restart-after-preemption",
              "a preempted sequence's recomputation puts its generated tokens at positions from 0",
              "attn.q", {}, {{"batching"}, {}, {}, {}},
              [] {
                RunMutation mutation;
                mutation.batching = BatchingFault::kPositionsRestartAfterPreemption;
                return mutation;
              }),
      run_bug("batching-stale-block-table-after-preemption",
              "a readmitted sequence keeps the block table it had before its preemption",
              "attn.probs", {}, {{"batching"}, {}, {}, {}},
              [] {
                RunMutation mutation;
                mutation.batching = BatchingFault::kStaleBlockTableAfterPreemption;
                return mutation;
              }),
  };
}

}  // namespace moeref::golden
