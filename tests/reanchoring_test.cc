// Decisions and re-anchoring in batching and speculative sets (golden/anchored_run.h,
// golden/decisions.h): forcing the golden decisions changes no bit; a token flipped where the
// reference's draw was near a boundary is a near-tie at bf16 and a failure at fp32, and what
// follows it is compared with the reference re-run on it; a flip far from the draw fails at every
// precision; a bug after a legitimate flip still fails.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "golden/anchored_run.h"
#include "golden/batching_replay.h"
#include "golden/candidate_runner.h"
#include "golden/compare.h"
#include "golden/golden_set.h"
#include "golden/speculative_case.h"
#include "ref/generation/philox.h"
#include "ref/generation/sampling.h"
#include "ref/io/config.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kSets = fs::path(MOEREF_SOURCE_DIR) / "golden" / "sets";

CompareOptions at(Precision precision) {
  CompareOptions options;
  options.precision = precision;
  return options;
}

// The token whose interval of the cumulative distribution `probabilities` (token-id order) is
// nearest to u without holding it (nearest: true), or farthest from it (nearest: false).
int32_t neighbour(const std::vector<double>& probabilities, double u, bool nearest) {
  double low = 0.0, best = nearest ? std::numeric_limits<double>::infinity() : -1.0;
  int32_t chosen = -1;
  for (size_t t = 0; t < probabilities.size(); ++t) {
    const double high = low + probabilities[t];
    const double distance = u < low ? low - u : u >= high ? u - high : 0.0;
    if (probabilities[t] > 0.0 && distance > 0.0 && (nearest ? distance < best : distance > best)) {
      best = distance;
      chosen = static_cast<int32_t>(t);
    }
    low = high;
  }
  return chosen;
}

std::vector<double> as_vector(std::span<const float> row) { return {row.begin(), row.end()}; }

TEST(Reanchoring, ForcingTheGoldenDecisionsReproducesEverySetKindBitForBit) {
  for (const char* name : {"tiny-batching", "tiny-speculative", "tiny-mqa-moe"}) {
    const GoldenSet set = GoldenSet::open(kSets / name);
    const Candidate golden = candidate_from_file(set.trace());
    EXPECT_FALSE(needs_anchoring(set, golden)) << name;
    const Candidate run = anchored_run(set, golden);
    for (const ExpectedTensor& entry : set.expected()) {
      ASSERT_TRUE(run.contains(entry.name)) << name << ": " << entry.name;
      EXPECT_EQ(run.at(entry.name).bytes, set.expected_tensor(entry.name).bytes)
          << name << ": " << entry.name;
    }
  }
}

// ---- Batching: request 1 samples (temperature 0.9). ----

struct BatchingFlip {
  Candidate candidate;
  std::string step_sampled;  // the step tensor whose row carries the flipped token
};

// Request 1's token k replaced by `token`, the run replayed on it with the reference's own
// choices everywhere else, and the candidate reporting its own tokens.
BatchingFlip flip_request_token(const GoldenSet& set, int64_t k, int32_t token) {
  ForcedTokens forced;
  forced[1] = set.expected_tensor("request.1/tokens").to_i32();
  forced[1].resize(static_cast<size_t>(k));
  forced[1].push_back(token);
  const ModelConfig config = config_from_json(set.manifest().at("config"), "config");
  BatchingFlip flip{replay_batching_case(set, ref_kernels(), load_weights(config, *set.weights()),
                                         moeref_token_picker(), BatchingFault::kNone, &forced),
                    ""};
  // The replay records its own choice; the candidate reports the token it fed.
  std::vector<int32_t> tokens = flip.candidate.at("request.1/tokens").to_i32();
  tokens.at(static_cast<size_t>(k)) = token;
  flip.candidate["request.1/tokens"] =
      make_i32_record("request.1/tokens", {std::ssize(tokens)}, tokens);
  int64_t seen = 0;
  for (int64_t s = 0; flip.candidate.contains("step." + std::to_string(s) + "/sampled"); ++s) {
    const std::string name = "step." + std::to_string(s) + "/sampled";
    std::vector<int32_t> rows = flip.candidate.at(name).to_i32();
    for (size_t r = 0; r < rows.size(); r += 2) {
      if (rows[r] != 1) continue;
      if (seen++ == k) {
        rows[r + 1] = token;
        flip.step_sampled = name;
      }
    }
    flip.candidate[name] = make_i32_record(name, flip.candidate.at(name).shape, rows);
  }
  return flip;
}

// Request 1's token with the smallest margin: its index, u, and the processed distribution.
struct Draw {
  int64_t k = 0;
  double u = 0.0;
  std::vector<double> probabilities;
};

Draw closest_draw(const GoldenSet& set) {
  const nlohmann::json& margins = set.manifest().at("margins").at("requests").at("1");
  Draw draw;
  for (size_t k = 1; k < margins.size(); ++k) {
    if (margins[k].get<double>() < margins[draw.k].get<double>()) draw.k = static_cast<int64_t>(k);
  }
  const nlohmann::json& request = set.manifest().at("requests").at(1);
  const SamplingParams params{.temperature = request.at("sampling").at("temperature").get<double>(),
                              .seed = request.at("sampling").at("seed").get<uint64_t>()};
  draw.u = generation_uniform(params.seed, 0,
                              static_cast<uint32_t>(request.at("prompt").size() + draw.k), 1,
                              RandomStream::kSampling);
  const TensorRecord& logits = set.expected_tensor("request.1/logits");
  const std::vector<float> values = logits.to_f32();
  const auto vocab = static_cast<size_t>(logits.shape[1]);
  const std::span<const float> row(values.data() + static_cast<size_t>(draw.k) * vocab, vocab);
  std::vector<TokenProbability> uncut = processed_distribution(row, params);
  draw.probabilities.assign(vocab, 0.0);
  for (const TokenProbability& t : uncut)
    draw.probabilities[static_cast<size_t>(t.token)] = t.probability;
  return draw;
}

TEST(Reanchoring, ABatchingTokenNextToTheDrawIsANearTieAtBf16AndAFailureAtFp32) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-batching");
  const Draw draw = closest_draw(set);
  const BatchingFlip flip =
      flip_request_token(set, draw.k, neighbour(draw.probabilities, draw.u, true));
  const CompareReport bf16 = compare(set, flip.candidate, at(Precision::kBF16));
  EXPECT_TRUE(bf16.passed) << bf16.to_text();
  EXPECT_TRUE(bf16.anchored);
  for (const TensorReport& t : bf16.tensors) {
    if (t.name == flip.step_sampled || t.name == "request.1/tokens") {
      EXPECT_EQ(t.status, TensorStatus::kNearTie) << t.name;
    } else if (t.status != TensorStatus::kMissing) {
      EXPECT_EQ(t.max_abs_error, 0.0) << t.name << ": the re-anchored reference's to the bit";
    }
  }
  const CompareReport fp32 = compare(set, flip.candidate);
  EXPECT_FALSE(fp32.passed);
  EXPECT_EQ(fp32.first_failure, flip.step_sampled) << fp32.to_text();
}

TEST(Reanchoring, ABatchingTokenFarFromTheDrawFailsAtBf16) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-batching");
  const Draw draw = closest_draw(set);
  const BatchingFlip flip =
      flip_request_token(set, draw.k, neighbour(draw.probabilities, draw.u, false));
  const CompareReport report = compare(set, flip.candidate, at(Precision::kBF16));
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.first_failure, flip.step_sampled) << report.to_text();
  for (const TensorReport& t : report.tensors) {
    if (t.name == flip.step_sampled) {
      EXPECT_THAT(t.note, HasSubstr("beyond the bf16 resolution"));
    }
  }
}

TEST(Reanchoring, AfterALegitimateBatchingFlipALaterBugStillFails) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-batching");
  const Draw draw = closest_draw(set);
  BatchingFlip flip = flip_request_token(set, draw.k, neighbour(draw.probabilities, draw.u, true));
  const std::string later = "request.3/logits";
  std::vector<float> logits = flip.candidate.at(later).to_f32();
  logits.back() += 5.0f;
  flip.candidate[later] = make_f32_record(later, flip.candidate.at(later).shape, logits);
  const CompareReport report = compare(set, flip.candidate, at(Precision::kBF16));
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.first_failure, later) << report.to_text();
}

// ---- Speculative: the sampled generation's proposal with the smallest margin. ----

struct ProposalFlip {
  Candidate candidate;
  std::string name;  // "sampled/block.b/draft_tokens"
};

// The sampled generation with proposal i of block b replaced by `token`, the reference's own
// decisions everywhere else, and the candidate reporting the proposal it fed.
ProposalFlip flip_proposal(const GoldenSet& set, int64_t b, int64_t i, int32_t token) {
  const SpeculativeCaseSpec spec =
      speculative_spec_from_manifest(set.manifest(), "tiny-speculative");
  std::vector<FollowedBlock> blocks(static_cast<size_t>(b + 1));
  const std::string name = "sampled/block." + std::to_string(b) + "/draft_tokens";
  std::vector<int32_t> proposals = set.expected_tensor(name).to_i32();
  proposals.resize(static_cast<size_t>(i));
  proposals.push_back(token);
  blocks.back().draft_tokens = proposals;
  ProposalFlip flip{candidate_of(follow_speculative_case(spec, {{"sampled", blocks}})), name};
  std::vector<int32_t> reported = flip.candidate.at(name).to_i32();
  reported.at(static_cast<size_t>(i)) = token;
  flip.candidate[name] = make_i32_record(name, flip.candidate.at(name).shape, reported);
  return flip;
}

struct ProposalDraw {
  int64_t block = 0, index = 0;
  double u = 0.0;
  std::vector<double> q;
};

ProposalDraw closest_proposal(const GoldenSet& set) {
  const nlohmann::json& blocks = set.manifest().at("margins").at("sampled_blocks");
  ProposalDraw draw;
  double smallest = std::numeric_limits<double>::infinity();
  for (size_t b = 0; b < blocks.size(); ++b) {
    const nlohmann::json& proposals = blocks[b].at("proposals");
    for (size_t i = 0; i < proposals.size(); ++i) {
      if (proposals[i].get<double>() < smallest) {
        smallest = proposals[i].get<double>();
        draw.block = static_cast<int64_t>(b);
        draw.index = static_cast<int64_t>(i);
      }
    }
  }
  const std::string prefix = "sampled/block." + std::to_string(draw.block) + "/";
  const int64_t position = set.expected_tensor(prefix + "position").to_i32()[0] + draw.index;
  draw.u = generation_uniform(set.manifest().at("inputs").at("sampling").at("seed").get<uint64_t>(),
                              0, static_cast<uint32_t>(position), 0, RandomStream::kDraftProposal);
  const TensorRecord& q = set.expected_tensor(prefix + "draft_probs");
  const std::vector<float> values = q.to_f32();
  const auto vocab = static_cast<size_t>(q.shape[1]);
  draw.q = as_vector({values.data() + static_cast<size_t>(draw.index) * vocab, vocab});
  return draw;
}

TEST(Reanchoring, AProposalNextToTheDrawIsANearTieAtBf16AndAFailureAtFp32) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-speculative");
  const ProposalDraw draw = closest_proposal(set);
  const ProposalFlip flip =
      flip_proposal(set, draw.block, draw.index, neighbour(draw.q, draw.u, true));
  const CompareReport bf16 = compare(set, flip.candidate, at(Precision::kBF16));
  EXPECT_TRUE(bf16.passed) << bf16.to_text();
  EXPECT_TRUE(bf16.anchored);
  for (const TensorReport& t : bf16.tensors) {
    if (t.name == flip.name) {
      EXPECT_EQ(t.status, TensorStatus::kNearTie);
    } else if (t.status != TensorStatus::kMissing) {
      EXPECT_EQ(t.max_abs_error, 0.0) << t.name << ": the re-anchored reference's to the bit";
    }
  }
  EXPECT_TRUE(bf16.extra.empty()) << "the re-run's blocks are the candidate's";
  const CompareReport fp32 = compare(set, flip.candidate);
  EXPECT_FALSE(fp32.passed);
  EXPECT_EQ(fp32.first_failure, flip.name) << fp32.to_text();
}

TEST(Reanchoring, AProposalFarFromTheDrawFailsAtBf16) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-speculative");
  const ProposalDraw draw = closest_proposal(set);
  const ProposalFlip flip =
      flip_proposal(set, draw.block, draw.index, neighbour(draw.q, draw.u, false));
  const CompareReport report = compare(set, flip.candidate, at(Precision::kBF16));
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.first_failure, flip.name) << report.to_text();
}

TEST(Reanchoring, AnAcceptanceDecidedTheOtherWayFarFromItsDrawFails) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-speculative");
  // The sampled generation's acceptance test farthest from its draw, decided the other way.
  const nlohmann::json& blocks = set.manifest().at("margins").at("sampled_blocks");
  size_t block = 0, index = 0;
  double largest = -1.0;
  for (size_t b = 0; b < blocks.size(); ++b) {
    const nlohmann::json& acceptances = blocks[b].at("acceptances");
    for (size_t i = 0; i < acceptances.size(); ++i) {
      if (acceptances[i].get<double>() > largest) {
        largest = acceptances[i].get<double>();
        block = b;
        index = i;
      }
    }
  }
  ASSERT_GT(largest, 0.1) << "the case needs an acceptance far from its draw";
  // A backend that decided so and went on from there: the reference following it.
  const std::string prefix = "sampled/block." + std::to_string(block) + "/";
  const std::string name = prefix + "accepted";
  std::vector<FollowedBlock> followed(block + 1);
  followed.back().draft_tokens = set.expected_tensor(prefix + "draft_tokens").to_i32();
  followed.back().accepted = set.expected_tensor(name).to_i32();
  followed.back().accepted.resize(index + 1);
  followed.back().accepted.back() = 1 - followed.back().accepted.back();
  Candidate candidate = candidate_of(follow_speculative_case(
      speculative_spec_from_manifest(set.manifest(), "tiny-speculative"), {{"sampled", followed}}));
  std::vector<int32_t> accepted = candidate.at(name).to_i32();
  accepted.at(index) = followed.back().accepted.back();
  candidate[name] = make_i32_record(name, candidate.at(name).shape, accepted);
  const CompareReport report = compare(set, candidate, at(Precision::kBF16));
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.first_failure, name) << report.to_text();
  for (const TensorReport& t : report.tensors) {
    if (t.name == name) {
      EXPECT_THAT(t.note, HasSubstr("beyond the bf16 resolution"));
    }
  }
}

TEST(Reanchoring, AfterALegitimateProposalFlipALaterBugStillFails) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-speculative");
  const ProposalDraw draw = closest_proposal(set);
  ProposalFlip flip = flip_proposal(set, draw.block, draw.index, neighbour(draw.q, draw.u, true));
  const std::string later = "sampled/block." + std::to_string(draw.block + 1) + "/target_probs";
  ASSERT_TRUE(flip.candidate.contains(later));
  std::vector<float> probs = flip.candidate.at(later).to_f32();
  probs[0] += 0.2f;
  probs[1] -= 0.2f;
  flip.candidate[later] = make_f32_record(later, flip.candidate.at(later).shape, probs);
  const CompareReport report = compare(set, flip.candidate, at(Precision::kBF16));
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.first_failure, later) << report.to_text();
}

}  // namespace
}  // namespace moeref::golden
