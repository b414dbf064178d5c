// Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a small draft model proposes
// gamma tokens, the target scores them all in one forward pass, and a rejection rule keeps the
// output distributed exactly as the target's own sampling (docs/speculative.md has the proof).
//
// One block, with context t_0 .. t_{n-1}:
//   1. the draft proposes x_1..x_gamma, each drawn from its processed distribution q_i;
//   2. the target runs one forward over [t_{n-1}, x_1, .., x_gamma] and gives p_1..p_{gamma+1}
//      (p and q processed alike: temperature, top-k, top-p, ref/generation/sampling.h);
//   3. for i = 1..gamma: accept x_i iff u_i * q_i(x_i) <= p_i(x_i); at the first rejection emit a
//      draw from norm(max(0, p_i - q_i)) and end the block;
//   4. if all gamma are accepted, emit a bonus token drawn from p_{gamma+1}.
// Greedy (temperature 0): accept while x_i equals argmax p_i; on a mismatch emit argmax p_i; the
// bonus is argmax p_{gamma+1}. The output then equals the target's greedy output bit for bit, and
// sampled output follows the target's distribution exactly, for dropless configs: with
// capacity_factor > 0 which tokens are dropped depends on how tokens are grouped into calls.
//
// Random numbers, Philox with key = seed and counter = {0, position, request, stream}, where
// position is the position of the token being decided:
//   proposal x_i: stream 3 (RandomStream::kDraftProposal)   acceptance u_i: stream 1
//   residual draw: stream 2                                  bonus draw: stream 0 (as plain
//   sampling)
// A position's numbers decide at most one emitted token: when a block is rejected at position r,
// the numbers of later positions were used for nothing that was emitted, so reusing them in the
// next block leaves every emitted token's draw independent of the tokens before it.
//
// Caches: the target's cache holds every context token but the last; the draft's holds a prefix
// of the context (after a fully accepted block it lacks the last two tokens). After a block each
// is truncated back to the accepted length (what the target's forward and the draft's proposals
// computed beyond it is forgotten); the draft catches up at the start of its next proposals. EOS
// stops the generation in the middle of a block; max_new_tokens caps gamma so that no block
// overshoots it. gamma is fixed, or adaptive as in Hugging Face
// transformers: +2 after a block whose proposals were all accepted, otherwise -1, never below 1;
// it is also cut so that no forward pass runs past either model's max_seq_len.
//
// Errors (std::invalid_argument): models whose vocabulary sizes differ (the message gives both),
// gamma < 1, and everything generate() rejects (ref/generation/generate.h).
#pragma once

#include <cstdint>
#include <vector>

#include "ref/generation/generate.h"
#include "ref/model/model.h"
#include "ref/model/tracer.h"

namespace moeref {

// The acceptance test of step 3 for a drawn u in [0, 1), the target's p(x) and the draft's q(x).
using AcceptanceTest = bool (*)(double u, double p, double q);
bool exact_acceptance(double u, double p, double q);  // u * q <= p

// The weights a rejected position's token is drawn from (step 3), over the vocabulary, given the
// target's p and the draft's q; normalised by the draw.
using ResidualWeights = std::vector<double> (*)(const std::vector<double>& p,
                                                const std::vector<double>& q);
std::vector<double> exact_residual(const std::vector<double>& p,
                                   const std::vector<double>& q);  // max(0, p - q)

// One block's decisions as another implementation made them (see SpeculativeOptions::follow).
struct FollowedBlock {
  std::vector<int32_t> draft_tokens;
  std::vector<int32_t> accepted;  // 1 accepted, 0 rejected, per examined proposal
  int32_t final_token = -1;
};

struct SpeculativeOptions {
  int64_t gamma = 4;
  bool adaptive_gamma = false;
  // Decisions to follow instead of the decoder's own, block by block: how the checker re-runs the
  // reference on a backend's own decisions (golden/anchored_run.h). Block b feeds (*follow)[b]'s
  // proposals, acceptances and final token where it has one that is valid (a token of the
  // vocabulary; 0 or 1), its own choice elsewhere; the records keep the decoder's own choices,
  // made on the same probabilities, and the emitted tokens are the ones fed.
  const std::vector<FollowedBlock>* follow = nullptr;
  // Replaceable only so that a wrong rule can be planted and shown to be caught
  // (tests/speculative_test.cc, golden/bug_catalog.h).
  AcceptanceTest accept = exact_acceptance;
  ResidualWeights residual = exact_residual;
};

struct SpeculativeStats {
  int64_t blocks = 0;
  int64_t drafted = 0;          // proposals made
  int64_t accepted = 0;         // proposals accepted
  int64_t target_forwards = 0;  // the prefill included
  int64_t draft_forwards = 0;
  int64_t emitted = 0;

  double acceptance_rate() const;
  double tokens_per_target_forward() const;  // decode forwards only, the prefill left out
  // Plain decoding calls the target once per emitted token; this is that minus target_forwards.
  int64_t target_forwards_saved() const;
};

struct SpeculativeResult {
  std::vector<int32_t> tokens;  // the new tokens
  bool stopped_at_eos = false;
  SpeculativeStats stats;
};

// A draft cut from the target itself: its embedding, its first n_layers layers, its final norm
// and LM head, copied; the same as the target's config with n_layers lowered and the same seed,
// since weights are keyed by (seed, tensor name). It shares the target's vocabulary. With
// randomly initialised weights its sampled distributions overlap the target's a lot (the logits
// are nearly flat), its greedy choices rarely agree. The benchmark's pair.
// Throws std::invalid_argument unless 1 <= n_layers <= the target's layers.
struct DraftModel {
  ModelConfig config;
  ModelWeights weights;
};
DraftModel make_shallow_draft(const ModelConfig& target_config, const ModelWeights& target_weights,
                              int64_t n_layers);

// Throws std::invalid_argument when the two models cannot be paired, naming both vocabularies.
void check_pairing(const ModelConfig& target, const ModelConfig& draft);

// Runs a whole generation. With a tracer, block b is recorded under "block.b/"
// (docs/speculative.md): position, gamma, draft_tokens [gamma], draft_probs [gamma, vocab],
// target_probs [gamma + 1, vocab], accept_u [examined], accepted [examined], final_kind (0
// residual, 1 bonus, -1 none), final_u and final_token. The probabilities are q and p; in greedy
// mode, where those are one-hot, they are softmax(logits) at temperature 1 instead, and the u 0.
SpeculativeResult speculative_generate(const Model& target, const Model& draft,
                                       const GenerationRequest& request,
                                       const SpeculativeOptions& options, Tracer* tracer = nullptr);

// The same generation one block at a time, with its caches in view (what the tests inspect).
class SpeculativeDecoder {
 public:
  SpeculativeDecoder(const Model& target, const Model& draft, GenerationRequest request,
                     SpeculativeOptions options);

  bool done() const { return done_; }
  void step(Tracer* tracer = nullptr);  // one block

  const std::vector<int32_t>& context() const { return context_; }  // prompt and new tokens
  const SpeculativeResult& result() const { return result_; }
  const KvCache& target_cache() const { return target_cache_; }
  const KvCache& draft_cache() const { return draft_cache_; }
  int64_t gamma() const { return gamma_; }

 private:
  bool emit(int32_t token);  // false once generation must stop
  void prefill();

  const Model& target_;
  const Model& draft_;
  GenerationRequest request_;
  SpeculativeOptions options_;
  KvCache target_cache_;
  KvCache draft_cache_;
  std::vector<int32_t> context_;
  SpeculativeResult result_;
  int64_t gamma_;
  bool done_ = false;
};

}  // namespace moeref
