// Golden sets and the checker: committed sets regenerate bit for bit, a changed byte is caught
// and named, planted backend bugs are named at the tensor where they first show, near-ties are
// told apart from failures, and bad golden directories give clear errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "golden/bug_catalog.h"
#include "golden/buggy_kernels.h"
#include "golden/candidate_runner.h"
#include "golden/compare.h"
#include "golden/emulated_kernels.h"
#include "golden/forced_routing.h"
#include "golden/golden_set.h"
#include "golden/verify.h"
#include "ref/model/weights.h"
#include "ref/ops/attention.h"
#include "ref/ops/kernels.h"
#include "ref/ops/router.h"
#include "ref/ops/softmax.h"
#include "tests/test_support.h"

namespace moeref::golden {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kSets = fs::path(MOEREF_SOURCE_DIR) / "golden" / "sets";

fs::path fresh_copy(const std::string& set, const std::string& tag) {
  const fs::path target = fs::path(::testing::TempDir()) / ("golden_" + tag) / set;
  fs::remove_all(target);
  fs::create_directories(target.parent_path());
  fs::copy(kSets / set, target, fs::copy_options::recursive);
  return target;
}

// Flips one bit of the data section of a safetensors file, `offset` bytes into the data.
void flip_data_bit(const fs::path& file, size_t offset) {
  std::fstream stream(file, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t header = 0;
  stream.read(reinterpret_cast<char*>(&header), 8);
  stream.seekg(static_cast<std::streamoff>(8 + header + offset));
  char byte = 0;
  stream.read(&byte, 1);
  byte = static_cast<char>(byte ^ 1);
  stream.seekp(static_cast<std::streamoff>(8 + header + offset));
  stream.write(&byte, 1);
}

TEST(GoldenVerify, CommittedSetsRegenerateBitForBit) {
  const std::vector<VerifyResult> results = verify_golden_tree(kSets);
  ASSERT_GE(results.size(), 4u);
  for (const VerifyResult& r : results) EXPECT_TRUE(r.ok) << r.set << ": " << r.message;
}

TEST(GoldenVerify, AChangedByteIsCaughtAndItsTensorNamed) {
  const fs::path trace_copy = fresh_copy("tiny-mqa-moe", "trace_byte");
  flip_data_bit(trace_copy / "trace.safetensors", 0);  // the first traced tensor: prefill/embed.out
  std::vector<VerifyResult> results = verify_golden_tree(trace_copy);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(results[0].ok);
  EXPECT_THAT(results[0].message, HasSubstr("trace.safetensors"));
  EXPECT_THAT(results[0].message, HasSubstr("\"prefill/embed.out\" differs bitwise"));

  const fs::path weights_copy = fresh_copy("tiny-mqa-moe", "weights_byte");
  // embed.weight is [256, 32] fp32 = 32768 bytes; the next tensor is layers.0.attn_norm.weight.
  flip_data_bit(weights_copy / "weights.safetensors", 32768 + 4);
  results = verify_golden_tree(weights_copy);
  EXPECT_FALSE(results[0].ok);
  EXPECT_THAT(results[0].message, HasSubstr("\"layers.0.attn_norm.weight\" differs bitwise"));
}

TEST(GoldenVerify, AnEditedMarginIsCaught) {
  // The checker excuses near-ties by the recorded margins, so they must be what the code computes.
  const fs::path dir = fresh_copy("tiny-mqa-moe", "margin");
  std::ifstream in(dir / "manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(in);
  in.close();
  manifest["margins"]["greedy_tokens"][0] = 1e-9;
  std::ofstream(dir / "manifest.json") << manifest.dump();
  const std::vector<VerifyResult> results = verify_golden_tree(dir);
  EXPECT_FALSE(results[0].ok);
  EXPECT_THAT(results[0].message, HasSubstr("\"margins\" differs from what regeneration computes"));
}

// ---- Bad golden directories. ----

struct BadSetCase {
  const char* description;
  void (*damage)(const fs::path& dir);
  const char* expected;
};

void rewrite_manifest(const fs::path& dir, void (*edit)(nlohmann::json&)) {
  std::ifstream in(dir / "manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(in);
  in.close();
  edit(manifest);
  std::ofstream(dir / "manifest.json") << manifest.dump();
}

TEST(GoldenSetErrors, BadDirectoriesGiveClearErrors) {
  const std::vector<BadSetCase> cases = {
      {"missing manifest", [](const fs::path& d) { fs::remove(d / "manifest.json"); },
       "manifest.json: cannot open"},
      {"missing file", [](const fs::path& d) { fs::remove(d / "inputs.safetensors"); },
       "inputs.safetensors: missing"},
      {"sha256 mismatch", [](const fs::path& d) { flip_data_bit(d / "trace.safetensors", 3); },
       "trace.safetensors: sha256 does not match"},
      {"malformed manifest",
       [](const fs::path& d) { std::ofstream(d / "manifest.json") << "{\"format_version\": 1,"; },
       "malformed JSON"},
      {"unknown format version",
       [](const fs::path& d) {
         rewrite_manifest(d, [](nlohmann::json& m) { m["format_version"] = 7; });
       },
       "unknown format_version 7"},
      {"unknown kind",
       [](const fs::path& d) {
         rewrite_manifest(d, [](nlohmann::json& m) { m["kind"] = "movie"; });
       },
       "unknown kind \"movie\""},
      {"tensor entry disagrees",
       [](const fs::path& d) {
         rewrite_manifest(d, [](nlohmann::json& m) { m["tensors"][2]["shape"] = {1, 2, 3}; });
       },
       "dtype or shape differs"},
      {"tensor missing from the list",
       [](const fs::path& d) {
         rewrite_manifest(d, [](nlohmann::json& m) { m["tensors"].erase(m["tensors"].begin()); });
       },
       "lists 206 of the 207 tensors"},
      {"number overflow in the manifest",
       [](const fs::path& d) {
         std::string text = test_support::read_file(d / "manifest.json");
         text.replace(text.find("\"format_version\": 1"), 19, "\"format_version\": 1e999");
         std::ofstream(d / "manifest.json") << text;
       },
       "key \"format_version\": number 1e999 is out of the range of a double"},
      // Entries of "files" name the set's own files, nothing outside it.
      {"a file entry with an absolute path",
       [](const fs::path& d) {
         rewrite_manifest(d, [](nlohmann::json& m) { m["files"]["/dev/zero"] = "00"; });
       },
       "lists \"/dev/zero\", which is not one of"},
      {"a file entry going up",
       [](const fs::path& d) {
         rewrite_manifest(d, [](nlohmann::json& m) {
           m["files"]["../tiny-mqa-moe/trace.safetensors"] = m["files"]["trace.safetensors"];
         });
       },
       "lists \"../tiny-mqa-moe/trace.safetensors\", which is not one of"},
      {"a file entry in a subdirectory",
       [](const fs::path& d) {
         rewrite_manifest(d, [](nlohmann::json& m) { m["files"]["sub/trace.safetensors"] = "00"; });
       },
       "lists \"sub/trace.safetensors\""},
      {"the trace not listed",
       [](const fs::path& d) {
         rewrite_manifest(d, [](nlohmann::json& m) { m["files"].erase("trace.safetensors"); });
       },
       "key \"files\" does not list trace.safetensors"},
      // Reading a device or a FIFO would never end.
      {"a file of the set linked to /dev/zero",
       [](const fs::path& d) {
         fs::remove(d / "trace.safetensors");
         fs::create_symlink("/dev/zero", d / "trace.safetensors");
       },
       "trace.safetensors: not a regular file"},
      {"a file of the set is a FIFO",
       [](const fs::path& d) {
         fs::remove(d / "inputs.safetensors");
         ASSERT_EQ(mkfifo((d / "inputs.safetensors").c_str(), 0600), 0);
       },
       "inputs.safetensors: not a regular file"},
      {"the manifest is a FIFO",
       [](const fs::path& d) {
         fs::remove(d / "manifest.json");
         ASSERT_EQ(mkfifo((d / "manifest.json").c_str(), 0600), 0);
       },
       "manifest.json: not a regular file"},
      // The size hashed is the size the file's own header declares.
      {"bytes appended to a listed file",
       [](const fs::path& d) { std::ofstream(d / "weights.safetensors", std::ios::app) << "x"; },
       "weights.safetensors: tensor data ends at offset"},
  };
  for (const BadSetCase& c : cases) {
    const fs::path dir = fresh_copy("tiny-mqa-moe", "bad");
    c.damage(dir);
    EXPECT_THAT([&] { GoldenSet::open(dir); },
                ::testing::ThrowsMessage<GoldenError>(
                    ::testing::AllOf(HasSubstr(dir.string()), HasSubstr(c.expected))))
        << c.description;
  }
}

// ---- The checker against honest candidates. ----

TEST(Checker, GoldenTraceItselfPasses) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-gqa-mixed");
  const CompareReport report = compare(set, candidate_from_file(set.trace()));
  EXPECT_TRUE(report.passed) << report.to_text();
  EXPECT_EQ(report.compared, static_cast<int64_t>(set.expected().size()));
  for (const TensorReport& t : report.tensors) EXPECT_EQ(t.max_abs_error, 0.0) << t.name;
}

TEST(Checker, EmulatedPrecisionsPassAtTheirPrecisionAndBf16FailsAtFp32) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-mqa-moe");
  for (Precision p : {Precision::kFP32, Precision::kTF32, Precision::kBF16, Precision::kFP16}) {
    CompareOptions options;
    options.precision = p;
    const CompareReport report = compare(set, run_model_case(set, emulated_kernels(p)), options);
    EXPECT_TRUE(report.passed) << precision_name(p) << "\n" << report.to_text();
  }
  const CompareReport strict =
      compare(set, run_model_case(set, emulated_kernels(Precision::kBF16)), CompareOptions{});
  EXPECT_FALSE(strict.passed);
  ASSERT_TRUE(strict.first_failure.has_value());
  EXPECT_EQ(*strict.first_failure, "prefill/layers.0.attn_norm.out");
}

// ---- Planted bugs: each must be named where it first shows. ----

// The reference kernels with one op replaced.
class PlantedBug : public RefKernels {
 public:
  const char* name() const override { return "planted"; }
};

// RoPE on adjacent pairs (2i, 2i+1), as llama.cpp's 'llama' kernels, instead of rotate-half.
class AdjacentPairRope final : public PlantedBug {
  void rope(float* x, std::span<const int64_t> positions, int64_t n_heads, int64_t head_dim,
            double theta, const RopeScaling&) const override {
    for (size_t t = 0; t < positions.size(); ++t) {
      for (int64_t h = 0; h < n_heads; ++h) {
        float* head = x + (static_cast<int64_t>(t) * n_heads + h) * head_dim;
        for (int64_t i = 0; i < head_dim / 2; ++i) {
          const double angle =
              static_cast<double>(positions[t]) *
              std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
          const double a = head[2 * i], b = head[2 * i + 1];
          head[2 * i] = static_cast<float>(a * std::cos(angle) - b * std::sin(angle));
          head[2 * i + 1] = static_cast<float>(b * std::cos(angle) + a * std::sin(angle));
        }
      }
    }
  }
};

// Query head h reads K/V head h % G instead of h / (H / G).
class WrongKvHead final : public PlantedBug {
  void attention(const float* q, const float* keys, const float* values,
                 std::span<const int64_t> positions, const ref::AttentionDims& dims, float* context,
                 float* probs, int64_t probs_width) const override {
    const int64_t hd = dims.head_dim;
    for (int64_t h = 0; h < dims.n_heads; ++h) {
      const int64_t g = h % dims.n_kv_heads;
      // One head at a time through the reference op, with the wrong K/V head as its only one.
      for (size_t t = 0; t < positions.size(); ++t) {
        const int64_t token = static_cast<int64_t>(t);
        ref::attention(q + (token * dims.n_heads + h) * hd, keys + g * dims.kv_capacity * hd,
                       values + g * dims.kv_capacity * hd, positions.subspan(t, 1),
                       {1, 1, hd, dims.kv_capacity}, context + (token * dims.n_heads + h) * hd,
                       probs ? probs + (token * dims.n_heads + h) * probs_width : nullptr,
                       probs_width);
      }
    }
  }
};

class MissingResidual final : public PlantedBug {
  void residual_add(float* x, const float* branch, int64_t n) const override {
    std::copy(branch, branch + n, x);
  }
};

struct PlantedCase {
  const char* description;
  const char* set;
  const Kernels* kernels;
  void (*damage_weights)(ModelWeights&);
  const char* first_failure;
};

TEST(Checker, NamesTheFirstTensorAPlantedBugReaches) {
  static const AdjacentPairRope adjacent_rope;
  static const WrongKvHead wrong_kv_head;
  static const MissingResidual missing_residual;
  const std::vector<PlantedCase> cases = {
      {"RoPE on adjacent pairs", "tiny-mqa-moe", &adjacent_rope, nullptr,
       "prefill/layers.0.attn.q"},
      {"wrong K/V head", "tiny-gqa-mixed", &wrong_kv_head, nullptr, "prefill/layers.0.attn.probs"},
      {"missing residual", "tiny-mqa-moe", &missing_residual, nullptr,
       "prefill/layers.0.attn.residual"},
      {"two experts swapped", "tiny-mqa-moe", &ref_kernels(),
       [](ModelWeights& w) { std::swap(w.layers[0].experts[0], w.layers[0].experts[1]); },
       "prefill/layers.0.moe.expert_outputs"},
  };
  for (const PlantedCase& c : cases) {
    const GoldenSet set = GoldenSet::open(kSets / c.set);
    ModelWeights weights =
        load_weights(config_from_json(set.manifest().at("config"), c.set), *set.weights());
    if (c.damage_weights) c.damage_weights(weights);
    const CompareReport report = compare(set, run_model_case(set, *c.kernels, &weights));
    EXPECT_FALSE(report.passed) << c.description;
    ASSERT_TRUE(report.first_failure.has_value()) << c.description;
    EXPECT_EQ(*report.first_failure, c.first_failure) << c.description << "\n" << report.to_text();
  }
}

// ---- bf16: bugs that the elementwise bound alone let pass. ----

// An honest bf16 backend whose top-k picks the k least likely experts.
class LeastLikelyExperts final : public BuggyKernels {
 public:
  LeastLikelyExperts() : BuggyKernels(emulated_kernels(Precision::kBF16), Precision::kBF16) {}
  void select_top_k(const float* probs, int64_t n_tokens, int64_t n_experts, int64_t k,
                    bool renormalize, int32_t* indices, float* weights) const override {
    std::vector<float> negated(probs, probs + n_tokens * n_experts);
    for (float& p : negated) p = -p;
    std::vector<float> unused(static_cast<size_t>(n_tokens * k));
    ref::select_top_k(negated.data(), n_tokens, n_experts, k, renormalize, indices, unused.data());
    ref::top_k_weights(probs, n_tokens, n_experts, k, renormalize, indices, weights);
  }
};

CompareOptions at(Precision precision) {
  CompareOptions options;
  options.precision = precision;
  return options;
}

TEST(CheckerAtBf16, ANormWithoutItsGainFailsAtItsOwnTensor) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-hf-mixtral");
  const CompareReport report =
      compare(set, *find_bug("norm-without-gain").run(set, Precision::kBF16), at(Precision::kBF16));
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.first_failure, "prefill/layers.0.attn_norm.out") << report.to_text();
}

TEST(CheckerAtBf16, TheLeastLikelyExpertsFailAtTheRouting) {
  for (const char* name : {"tiny-mqa-moe", "tiny-hf-mixtral", "tiny-capacity"}) {
    const GoldenSet set = GoldenSet::open(kSets / name);
    const CompareReport report =
        compare(set, run_model_case(set, LeastLikelyExperts()), at(Precision::kBF16));
    EXPECT_FALSE(report.passed) << name;
    EXPECT_EQ(report.first_failure, "prefill/layers.0.moe.topk_indices") << report.to_text();
    for (const TensorReport& t : report.tensors) {
      if (t.name == "prefill/layers.0.moe.topk_indices") {
        EXPECT_THAT(t.note, HasSubstr("beyond the bf16 resolution")) << name;
      }
    }
  }
}

// One element of one float tensor of tiny-hf-mixtral moved by a share of the tensor's largest
// value; the number of tensors where the checker then fails that tensor first.
int64_t caught_perturbations(const GoldenSet& set, float share, const CompareOptions& options,
                             int64_t& tried) {
  int64_t caught = 0;
  tried = 0;
  for (const ExpectedTensor& entry : set.expected()) {
    if (entry.tolerance == ToleranceClass::kExact) continue;
    Candidate candidate = candidate_from_file(set.trace());
    std::vector<float> values = candidate.at(entry.name).to_f32();
    float largest = 0.0f;
    for (float v : values) largest = std::max(largest, std::fabs(v));
    if (largest == 0.0f) continue;
    values[values.size() / 2] += share * largest;
    candidate[entry.name] = make_f32_record(entry.name, candidate.at(entry.name).shape, values);
    const CompareReport report = compare(set, candidate, options);
    ++tried;
    if (!report.passed && report.first_failure == entry.name) ++caught;
  }
  return caught;
}

TEST(CheckerAtBf16, OneElementOffBy15PercentOfTheLargestFails) {
  // With the per-tensor gates at least 95% of the tensors are caught; the elementwise bound alone
  // (0.4 (1 + |e|) at bf16) catches under half. At 6.6% the gates catch about two thirds: in a
  // 32-element decode tensor an honest bf16 backend's worst element is off by 2-3% of the largest.
  const GoldenSet set = GoldenSet::open(kSets / "tiny-hf-mixtral");
  int64_t tried = 0;
  const int64_t caught = caught_perturbations(set, 0.15f, at(Precision::kBF16), tried);
  EXPECT_GE(static_cast<double>(caught), 0.95 * static_cast<double>(tried))
      << caught << " of " << tried;
  CompareOptions elementwise_only = at(Precision::kBF16);
  elementwise_only.per_tensor_gates = false;
  EXPECT_LT(static_cast<double>(caught_perturbations(set, 0.15f, elementwise_only, tried)),
            0.5 * static_cast<double>(tried));
}

TEST(Checker, NamesAPerturbedValue) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-hf-mixtral");
  Candidate candidate = candidate_from_file(set.trace());
  const std::string name = "decode.2/layers.1.moe.out";
  std::vector<float> values = candidate.at(name).to_f32();
  values[17] += 1e-3f;
  candidate[name] = make_f32_record(name, candidate.at(name).shape, values);
  const CompareReport report = compare(set, candidate);
  ASSERT_TRUE(report.first_failure.has_value());
  EXPECT_EQ(*report.first_failure, name);
  const auto failed = std::find_if(report.tensors.begin(), report.tensors.end(),
                                   [&](const TensorReport& t) { return t.name == name; });
  EXPECT_EQ(failed->out_of_tolerance, 1);
  EXPECT_NEAR(failed->max_abs_error, 1e-3, 1e-6);
}

TEST(Checker, SoftmaxWithoutMaxSubtractionFailsOnLargeLogits) {
  // A backend's naive softmax: exp(x) / sum exp(x). With logits near 1000, exp overflows to inf
  // and the probabilities become NaN; the checker must call that a failure, not a match.
  const GoldenSet set = GoldenSet::open(kSets / "tiny-mqa-moe");
  Candidate candidate = candidate_from_file(set.trace());
  const std::string name = "prefill/layers.0.moe.router_probs";
  const TensorRecord& logits_record = set.expected_tensor("prefill/layers.0.moe.router_logits");
  std::vector<float> logits = logits_record.to_f32();
  for (float& v : logits) v += 1000.0f;  // softmax is shift-invariant: same golden answer
  std::vector<float> naive(logits.size());
  const int64_t n = logits_record.shape[1];
  for (size_t row = 0; row < logits.size(); row += static_cast<size_t>(n)) {
    float sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += naive[row + j] = std::exp(logits[row + j]);
    for (int64_t j = 0; j < n; ++j) naive[row + j] /= sum;
  }
  candidate[name] = make_f32_record(name, candidate.at(name).shape, naive);
  const CompareReport report = compare(set, candidate);
  ASSERT_TRUE(report.first_failure.has_value());
  EXPECT_EQ(*report.first_failure, name);
  const auto failed = std::find_if(report.tensors.begin(), report.tensors.end(),
                                   [&](const TensorReport& t) { return t.name == name; });
  EXPECT_GT(failed->non_finite, 0);
  // The stable softmax on the same shifted logits stays finite and close; the shift itself cost
  // the logits about 6e-5 of precision (fp32 spacing near 1000), so it is not bit-equal.
  ref::softmax(logits.data(), static_cast<int64_t>(logits.size()) / n, n);
  candidate[name] = make_f32_record(name, candidate.at(name).shape, logits);
  const CompareReport stable = compare(set, candidate);
  const auto row = std::find_if(stable.tensors.begin(), stable.tensors.end(),
                                [&](const TensorReport& t) { return t.name == name; });
  EXPECT_EQ(row->non_finite, 0);
  EXPECT_LT(row->max_abs_error, 1e-4);
}

// ---- Near-ties. ----

// A two-token set whose router probabilities put token 0's second and third expert 1e-7 apart
// and token 1's 0.2 apart.
// Written under `temp`, one per test: ctest runs tests in parallel processes.
fs::path write_near_tie_set(const test_support::TempDir& temp) {
  const fs::path dir = temp.path() / "golden_near_tie";
  const std::vector<float> probs = {0.4f, 0.3000001f, 0.3f, 0.0f, 0.5f, 0.3f, 0.1f, 0.1f};
  const std::vector<int32_t> indices = {0, 1, 0, 1};
  const std::vector<TensorRecord> trace = {
      make_f32_record("prefill/layers.0.moe.router_probs", {2, 4}, probs),
      make_i32_record("prefill/layers.0.moe.topk_indices", {2, 2}, indices)};
  const std::vector<ExpectedTensor> kinds = {
      {trace[0].name, "softmax", ToleranceClass::kProbability},
      {trace[1].name, "top_k", ToleranceClass::kExact}};
  const nlohmann::json manifest = {{"format_version", 1}, {"kind", "op"}, {"case", "near-tie"}};
  write_golden_set(dir, manifest, {}, {}, trace, kinds);
  return dir;
}

CompareReport compare_flipped_token(const GoldenSet& set, int token) {
  Candidate candidate = candidate_from_file(set.trace());
  std::vector<int32_t> indices = {0, 1, 0, 1};
  indices[token * 2 + 1] = 2;  // the third expert instead of the second
  const std::string name = "prefill/layers.0.moe.topk_indices";
  candidate[name] = make_i32_record(name, {2, 2}, indices);
  return compare(set, candidate);
}

TEST(Checker, FlipAtATinyMarginIsANearTie) {
  const test_support::TempDir temp;
  const GoldenSet set = GoldenSet::open(write_near_tie_set(temp));
  const CompareReport report = compare_flipped_token(set, 0);
  EXPECT_TRUE(report.passed) << report.to_text();
  EXPECT_EQ(report.tensors[1].status, TensorStatus::kNearTie);
  EXPECT_THAT(report.tensors[1].note, HasSubstr("near-tie"));
}

TEST(Checker, FlipAtALargeMarginIsAFailure) {
  const test_support::TempDir temp;
  const GoldenSet set = GoldenSet::open(write_near_tie_set(temp));
  const CompareReport report = compare_flipped_token(set, 1);
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.tensors[1].status, TensorStatus::kFail);
  EXPECT_EQ(report.first_failure, "prefill/layers.0.moe.topk_indices");
}

TEST(Checker, ANearTieInOneRowDoesNotExcuseAnotherRow) {
  const test_support::TempDir temp;
  const GoldenSet set = GoldenSet::open(write_near_tie_set(temp));
  Candidate candidate = candidate_from_file(set.trace());
  const std::string name = "prefill/layers.0.moe.topk_indices";
  candidate[name] = make_i32_record(name, {2, 2}, std::vector<int32_t>{0, 2, 0, 2});
  const CompareReport report = compare(set, candidate);
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.tensors[1].status, TensorStatus::kFail);
  EXPECT_THAT(report.tensors[1].note,
              HasSubstr("row 1 differs: rank 1: expert 2 where the reference chose expert 1"));
  EXPECT_THAT(report.tensors[1].note, HasSubstr("beyond the fp32 resolution"));
}

TEST(Checker, NonFiniteGoldenValuesMustBeMatchedExactly) {
  const test_support::TempDir temp;
  const fs::path dir = temp.path() / "golden_non_finite";
  const std::vector<float> golden = {1.0f, INFINITY, NAN};
  write_golden_set(dir, {{"format_version", 1}, {"kind", "op"}, {"case", "non-finite"}}, {}, {},
                   {make_f32_record("out", {3}, golden)},
                   {{"out", "softmax", ToleranceClass::kActivation}});
  const GoldenSet set = GoldenSet::open(dir);
  auto check = [&](std::vector<float> values) {
    return compare(set, {{"out", make_f32_record("out", {3}, values)}}).passed;
  };
  EXPECT_TRUE(check({1.0f, INFINITY, NAN}));
  EXPECT_FALSE(check({1.0f, 3.0e38f, NAN}));
  EXPECT_FALSE(check({1.0f, -INFINITY, NAN}));
  EXPECT_FALSE(check({1.0f, INFINITY, 0.0f}));
}

// ---- Re-anchoring after a legitimate flip. ----

// The golden routing of every call and MoE layer, in the order the set traces it.
std::vector<std::vector<int32_t>> golden_routing(const GoldenSet& set) {
  std::vector<std::vector<int32_t>> routing;
  for (const ExpectedTensor& entry : set.expected()) {
    if (entry.name.ends_with("moe.topk_indices")) {
      routing.push_back(set.expected_tensor(entry.name).to_i32());
    }
  }
  return routing;
}

// In tiny-mqa-moe's prefill, layer 0 (the first routing of the run), token 0's golden rank-1
// expert, the third most likely one, the least likely one, and the gap between ranks 1 and 2
// (0.00135: bf16 cannot resolve it, fp32 can).
struct Flip {
  int32_t second;
  int32_t third;
  int32_t least;  // the least likely expert
  double gap;
};

Flip prefill_token0_flip(const GoldenSet& set) {
  const std::vector<float> probs =
      set.expected_tensor("prefill/layers.0.moe.router_probs").to_f32();
  std::vector<int32_t> order(16);  // tiny-mqa-moe has 16 experts; token 0 is the first row
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return probs[static_cast<size_t>(a)] > probs[static_cast<size_t>(b)];
  });
  return {order[1], order[2], order.back(),
          probs[static_cast<size_t>(order[1])] - probs[static_cast<size_t>(order[2])]};
}

// The reference with token 0's layer-0 choice at rank 1 replaced in the prefill: what a backend
// that took another expert there computes, everything else honest.
Candidate flipped_candidate(const GoldenSet& set, int32_t expert) {
  // The first routing forced, every later one the reference's own choice on what follows it.
  std::vector<std::vector<int32_t>> routing = {golden_routing(set).at(0)};
  routing.at(0).at(1) = expert;
  const ForcedRouting kernels(routing);
  return run_model_case(set, kernels);
}

TEST(Checker, AFlipWithinTheResolutionIsReanchoredAndPasses) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-mqa-moe");
  const Flip flip = prefill_token0_flip(set);
  ASSERT_LT(flip.gap, 0.002) << "the case needs a router gap that bf16 cannot resolve";
  const Candidate candidate = flipped_candidate(set, flip.third);
  CompareOptions bf16;
  bf16.precision = Precision::kBF16;
  const CompareReport report = compare(set, candidate, bf16);
  EXPECT_TRUE(report.passed) << report.to_text();
  EXPECT_TRUE(report.anchored);
  for (const TensorReport& t : report.tensors) {
    if (t.name == "prefill/layers.0.moe.topk_indices") {
      EXPECT_EQ(t.status, TensorStatus::kNearTie);
      EXPECT_THAT(t.note,
                  HasSubstr("expert " + std::to_string(flip.third) +
                            " where the reference chose expert " + std::to_string(flip.second)));
    } else if (t.status != TensorStatus::kMissing) {
      // Every other tensor, the flipped expert's outputs and the logits after it included, is
      // the re-anchored reference's to the bit.
      EXPECT_EQ(t.max_abs_error, 0.0) << t.name;
    }
  }
  // fp32 resolves the gap: the same flip fails there, at the decision itself.
  const CompareReport strict = compare(set, candidate);
  EXPECT_FALSE(strict.passed);
  EXPECT_EQ(strict.first_failure, "prefill/layers.0.moe.topk_indices");
}

TEST(Checker, AfterALegitimateFlipALaterBugStillFails) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-mqa-moe");
  Candidate candidate = flipped_candidate(set, prefill_token0_flip(set).third);
  const std::string later = "decode.1/logits";
  std::vector<float> logits = candidate.at(later).to_f32();
  logits[0] += 5.0f;
  candidate[later] = make_f32_record(later, candidate.at(later).shape, logits);
  CompareOptions bf16;
  bf16.precision = Precision::kBF16;
  const CompareReport report = compare(set, candidate, bf16);
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.first_failure, later) << report.to_text();
}

TEST(Checker, AFlipToAnUnlikelyExpertFailsAndSaysHowFar) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-mqa-moe");
  const Flip flip = prefill_token0_flip(set);
  CompareOptions bf16;
  bf16.precision = Precision::kBF16;
  const CompareReport report = compare(set, flipped_candidate(set, flip.least), bf16);
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.first_failure, "prefill/layers.0.moe.topk_indices");
  for (const TensorReport& t : report.tensors) {
    if (t.name != "prefill/layers.0.moe.topk_indices") continue;
    EXPECT_THAT(t.note,
                HasSubstr("rank 1: expert " + std::to_string(flip.least) +
                          " where the reference chose expert " + std::to_string(flip.second)));
    EXPECT_THAT(t.note, HasSubstr("beyond the bf16 resolution"));
  }
}

// ---- Missing, extra and misshapen tensors. ----

TEST(Checker, ReportsMissingExtraAndMisshapenTensors) {
  const GoldenSet set = GoldenSet::open(kSets / "tiny-mqa-moe");
  Candidate candidate;
  candidate.emplace("prefill/logits", set.expected_tensor("prefill/logits"));
  const std::vector<float> zeros(8, 0.0f);
  candidate.emplace("my_debug_tensor", make_f32_record("my_debug_tensor", {8}, zeros));
  CompareReport report = compare(set, candidate);
  EXPECT_TRUE(report.passed) << "a candidate may cover part of the set";
  EXPECT_EQ(report.compared, 1);
  EXPECT_EQ(report.extra, std::vector<std::string>{"my_debug_tensor"});
  CompareOptions all;
  all.require_all = true;
  report = compare(set, candidate, all);
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.first_failure, "prefill/embed.out");

  candidate.erase("prefill/logits");
  EXPECT_FALSE(compare(set, candidate).passed) << "nothing compared is no pass";

  candidate.emplace("prefill/logits", make_f32_record("prefill/logits", {8}, zeros));
  report = compare(set, candidate);
  EXPECT_FALSE(report.passed);
  EXPECT_EQ(report.first_failure, "prefill/logits");
  const auto logits =
      std::find_if(report.tensors.begin(), report.tensors.end(),
                   [](const TensorReport& t) { return t.name == "prefill/logits"; });
  EXPECT_THAT(logits->note, HasSubstr("shape [8], expected [12,256]"));
}

}  // namespace
}  // namespace moeref::golden
