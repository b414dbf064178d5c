#include "ref/generation/speculative.h"

#include <algorithm>
#include <span>
#include <stdexcept>
#include <string>

#include "ref/generation/philox.h"
#include "ref/generation/sampling.h"

namespace moeref {

namespace {

// A processed distribution as a dense vector over the vocabulary: the kept tokens' probabilities,
// zeros elsewhere. In greedy mode, all mass on the argmax.
std::vector<double> processed_dense(std::span<const float> logits, const SamplingParams& sampling) {
  std::vector<double> dense(logits.size(), 0.0);
  if (sampling.temperature == 0.0) {
    dense[static_cast<size_t>(greedy_token(logits))] = 1.0;
    return dense;
  }
  for (const TokenProbability& t : processed_distribution(logits, sampling)) {
    dense[static_cast<size_t>(t.token)] = t.probability;
  }
  return dense;
}

// softmax(logits) at temperature 1: what a greedy block records, since its decisions (one-hot
// distributions) would show nothing of how close they were.
std::vector<double> softmax_dense(std::span<const float> logits) {
  return processed_dense(logits, SamplingParams{.temperature = 1.0});
}

// Inverse CDF over the tokens with nonzero weight, in token-id order, after normalising.
int32_t draw_from_weights(const std::vector<double>& weights, double u) {
  std::vector<TokenProbability> distribution;
  double total = 0.0;
  for (size_t token = 0; token < weights.size(); ++token) {
    if (weights[token] > 0.0) {
      distribution.push_back({static_cast<int32_t>(token), weights[token]});
      total += weights[token];
    }
  }
  for (TokenProbability& t : distribution) t.probability /= total;
  return draw_token(distribution, u);
}

int32_t argmax(const std::vector<double>& values) {
  return static_cast<int32_t>(std::max_element(values.begin(), values.end()) - values.begin());
}

std::span<const float> row_of(const Tensor& logits, int64_t row) {
  return {logits.row(row), static_cast<size_t>(logits.dim(1))};
}

// What one block decided, kept for the trace.
struct BlockRecord {
  int64_t position = 0;  // of the first proposal
  std::vector<int32_t> draft_tokens;
  std::vector<float> draft_probs;   // [gamma, vocab]
  std::vector<float> target_probs;  // [gamma + 1, vocab]
  std::vector<float> accept_u;
  std::vector<int32_t> accepted;
  int32_t final_kind = -1;  // 0 residual, 1 bonus, -1 none (stopped first)
  float final_u = 0.0f;
  int32_t final_token = -1;

  void write(Tracer& tracer, int64_t vocab) const {
    const int64_t gamma = static_cast<int64_t>(draft_tokens.size());
    const int64_t examined = static_cast<int64_t>(accepted.size());
    const int32_t position_value = static_cast<int32_t>(position);
    const int32_t gamma_value = static_cast<int32_t>(gamma);
    const std::vector<int64_t> one = {1};
    tracer.record("position", one, std::span(&position_value, 1));
    tracer.record("gamma", one, std::span(&gamma_value, 1));
    tracer.record("draft_tokens", std::vector<int64_t>{gamma}, std::span(draft_tokens));
    tracer.record("draft_probs", std::vector<int64_t>{gamma, vocab}, std::span(draft_probs));
    tracer.record("target_probs", std::vector<int64_t>{gamma + 1, vocab}, std::span(target_probs));
    tracer.record("accept_u", std::vector<int64_t>{examined}, std::span(accept_u));
    tracer.record("accepted", std::vector<int64_t>{examined}, std::span(accepted));
    tracer.record("final_kind", one, std::span(&final_kind, 1));
    tracer.record("final_u", one, std::span(&final_u, 1));
    tracer.record("final_token", one, std::span(&final_token, 1));
  }
};

void append(std::vector<float>& out, const std::vector<double>& values) {
  for (double v : values) out.push_back(static_cast<float>(v));
}

}  // namespace

bool exact_acceptance(double u, double p, double q) { return u * q <= p; }

std::vector<double> exact_residual(const std::vector<double>& p, const std::vector<double>& q) {
  std::vector<double> residual(p.size());
  for (size_t token = 0; token < residual.size(); ++token) {
    residual[token] = std::max(0.0, p[token] - q[token]);
  }
  return residual;
}

double SpeculativeStats::acceptance_rate() const {
  return drafted > 0 ? static_cast<double>(accepted) / static_cast<double>(drafted) : 0.0;
}

double SpeculativeStats::tokens_per_target_forward() const {
  return blocks > 0 ? static_cast<double>(emitted) / static_cast<double>(blocks) : 0.0;
}

int64_t SpeculativeStats::target_forwards_saved() const { return emitted - target_forwards; }

DraftModel make_shallow_draft(const ModelConfig& target_config, const ModelWeights& target_weights,
                              int64_t n_layers) {
  if (n_layers < 1 || n_layers > target_config.n_layers) {
    throw std::invalid_argument("a shallow draft of " + std::to_string(n_layers) +
                                " layers from a target of " +
                                std::to_string(target_config.n_layers));
  }
  DraftModel draft{target_config, target_weights};
  draft.config.name = target_config.name + "-draft" + std::to_string(n_layers);
  draft.config.n_layers = n_layers;
  draft.weights.layers.resize(static_cast<size_t>(n_layers));
  return draft;
}

void check_pairing(const ModelConfig& target, const ModelConfig& draft) {
  if (target.vocab_size != draft.vocab_size) {
    throw std::invalid_argument("the draft \"" + draft.name + "\" has vocab_size " +
                                std::to_string(draft.vocab_size) + " but the target \"" +
                                target.name + "\" has " + std::to_string(target.vocab_size) +
                                ": speculative decoding needs one vocabulary");
  }
}

SpeculativeDecoder::SpeculativeDecoder(const Model& target, const Model& draft,
                                       GenerationRequest request, SpeculativeOptions options)
    : target_(target),
      draft_(draft),
      request_(std::move(request)),
      options_(options),
      target_cache_(target.new_cache()),
      draft_cache_(draft.new_cache()),
      gamma_(options.gamma) {
  check_pairing(target.config(), draft.config());
  if (request_.image) {
    throw std::invalid_argument(
        "speculative decoding does not read images: generate without a draft (docs/vision.md)");
  }
  check_generation_request(target.config(), request_);
  check_generation_request(draft.config(), request_);
  if (options_.gamma < 1) {
    throw std::invalid_argument("gamma must be at least 1, got " + std::to_string(options_.gamma));
  }
  context_ = request_.prompt;
  done_ = request_.max_new_tokens == 0;
  if (!done_) prefill();
}

void SpeculativeDecoder::prefill() {
  // Both caches take every prompt token but the last, which opens the first block.
  const std::span<const int32_t> head(context_.data(), context_.size() - 1);
  if (head.empty()) return;
  target_.forward(head, target_cache_);
  draft_.forward(head, draft_cache_);
  ++result_.stats.target_forwards;
  ++result_.stats.draft_forwards;
}

bool SpeculativeDecoder::emit(int32_t token) {
  context_.push_back(token);
  result_.tokens.push_back(token);
  ++result_.stats.emitted;
  if (token == target_.config().eos_token_id) {
    result_.stopped_at_eos = true;
    done_ = true;
  } else if (static_cast<int64_t>(result_.tokens.size()) == request_.max_new_tokens) {
    done_ = true;
  }
  return !done_;
}

void SpeculativeDecoder::step(Tracer* tracer) {
  if (done_) return;
  const SamplingParams& sampling = request_.sampling;
  const bool greedy = sampling.temperature == 0.0;
  const int64_t n = static_cast<int64_t>(context_.size());
  const int64_t remaining = request_.max_new_tokens - static_cast<int64_t>(result_.tokens.size());
  // No more proposals than can be emitted, and no forward past either model's context.
  const int64_t gamma =
      std::max<int64_t>(0, std::min({gamma_, remaining - 1, target_.config().max_seq_len - n,
                                     draft_.config().max_seq_len - n + 1}));
  const auto seed = sampling.seed;
  const uint32_t request = request_.request_id;
  auto uniform = [&](int64_t position, RandomStream stream) {
    return static_cast<double>(
        generation_uniform(seed, 0, static_cast<uint32_t>(position), request, stream));
  };

  const FollowedBlock* followed =
      options_.follow != nullptr && result_.stats.blocks < std::ssize(*options_.follow)
          ? &(*options_.follow)[static_cast<size_t>(result_.stats.blocks)]
          : nullptr;
  const int64_t vocab = target_.config().vocab_size;
  // The followed decision i of a list where it has a valid one (0 <= value < limit), else `own`.
  auto follow = [](const std::vector<int32_t>& list, int64_t i, int32_t own, int64_t limit) {
    if (i >= std::ssize(list)) return own;
    const int32_t value = list[static_cast<size_t>(i)];
    return value >= 0 && value < limit ? value : own;
  };

  BlockRecord block;
  block.position = n;
  std::vector<int32_t> proposals;  // the ones fed: the own ones unless followed
  std::vector<std::vector<double>> q(static_cast<size_t>(gamma));
  if (gamma > 0) {
    const std::span<const int32_t> pending(context_.data() + draft_cache_.length(),
                                           static_cast<size_t>(n - draft_cache_.length()));
    Tensor logits = draft_.forward(pending, draft_cache_).logits;
    ++result_.stats.draft_forwards;
    for (int64_t i = 0; i < gamma; ++i) {
      const std::span<const float> draft_row = row_of(logits, logits.dim(0) - 1);
      q[i] = processed_dense(draft_row, sampling);
      const int32_t proposal =
          greedy ? argmax(q[i])
                 : draw_from_weights(q[i], uniform(n + i, RandomStream::kDraftProposal));
      block.draft_tokens.push_back(proposal);
      proposals.push_back(followed != nullptr ? follow(followed->draft_tokens, i, proposal, vocab)
                                              : proposal);
      append(block.draft_probs, greedy ? softmax_dense(draft_row) : q[i]);
      if (i + 1 < gamma) {
        logits = draft_.forward(std::span(&proposals.back(), 1), draft_cache_).logits;
        ++result_.stats.draft_forwards;
      }
    }
  }

  // The target scores the last context token and every proposal in one forward pass.
  std::vector<int32_t> scored(context_.begin() + target_cache_.length(), context_.end());
  scored.insert(scored.end(), proposals.begin(), proposals.end());
  const Tensor target_logits = target_.forward(scored, target_cache_).logits;
  ++result_.stats.target_forwards;
  ++result_.stats.blocks;
  const int64_t first_row = static_cast<int64_t>(scored.size()) - gamma - 1;
  std::vector<std::vector<double>> p(static_cast<size_t>(gamma + 1));
  for (int64_t i = 0; i <= gamma; ++i) {
    const std::span<const float> target_row = row_of(target_logits, first_row + i);
    p[i] = processed_dense(target_row, sampling);
    append(block.target_probs, greedy ? softmax_dense(target_row) : p[i]);
  }

  auto followed_final = [&](int32_t own) {
    return followed != nullptr ? follow({followed->final_token}, 0, own, vocab) : own;
  };
  int64_t accepted = 0;
  bool going = true;
  for (int64_t i = 0; i < gamma && going; ++i) {
    const int32_t x = proposals[i];
    const int64_t position = n + i;
    const double u = greedy ? 0.0 : uniform(position, RandomStream::kSpeculativeAccept);
    const bool own_accept = greedy ? x == argmax(p[i]) : options_.accept(u, p[i][x], q[i][x]);
    block.accept_u.push_back(static_cast<float>(u));
    block.accepted.push_back(own_accept ? 1 : 0);
    const bool accept = followed != nullptr
                            ? follow(followed->accepted, i, own_accept ? 1 : 0, 2) == 1
                            : own_accept;
    if (accept) {
      ++accepted;
      going = emit(x);
      continue;
    }
    const std::vector<double> residual = options_.residual(p[i], q[i]);
    // A rejection implies q(x) > p(x) somewhere, so the residual has mass; only rounding could
    // empty it, and then p itself is the right distribution (p = q up to rounding).
    const bool residual_empty =
        std::all_of(residual.begin(), residual.end(), [](double r) { return r <= 0.0; });
    const double draw_u = greedy ? 0.0 : uniform(position, RandomStream::kSpeculativeResidual);
    block.final_kind = 0;
    block.final_u = static_cast<float>(draw_u);
    block.final_token =
        greedy ? argmax(p[i]) : draw_from_weights(residual_empty ? p[i] : residual, draw_u);
    going = false;
    emit(followed_final(block.final_token));
  }
  if (going) {  // every proposal accepted: the bonus token from the target's last distribution
    const double draw_u = greedy ? 0.0 : uniform(n + gamma, RandomStream::kSampling);
    block.final_kind = 1;
    block.final_u = static_cast<float>(draw_u);
    block.final_token = greedy ? argmax(p[gamma]) : draw_from_weights(p[gamma], draw_u);
    emit(followed_final(block.final_token));
  }

  result_.stats.drafted += gamma;
  result_.stats.accepted += accepted;
  // Forget what the block computed past the accepted tokens; keep every context token but the last.
  const int64_t keep = static_cast<int64_t>(context_.size()) - 1;
  target_cache_.truncate(std::min(target_cache_.length(), keep));
  draft_cache_.truncate(std::min(draft_cache_.length(), keep));
  if (options_.adaptive_gamma && gamma > 0) {
    gamma_ = accepted == gamma ? gamma_ + 2 : std::max<int64_t>(1, gamma_ - 1);
  }
  if (tracer != nullptr) block.write(*tracer, vocab);
}

SpeculativeResult speculative_generate(const Model& target, const Model& draft,
                                       const GenerationRequest& request,
                                       const SpeculativeOptions& options, Tracer* tracer) {
  SpeculativeDecoder decoder(target, draft, request, options);
  for (int64_t block = 0; !decoder.done(); ++block) {
    if (tracer == nullptr) {
      decoder.step();
    } else {
      PrefixedTracer block_tracer(*tracer, "block." + std::to_string(block) + "/");
      decoder.step(&block_tracer);
    }
  }
  return decoder.result();
}

}  // namespace moeref
