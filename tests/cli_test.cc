// The moeref command-line program (tools/), run as a separate process: exit codes, output, and
// agreement with the library it is built on.
//
// Expected numbers are computed here from the config by hand (stats) or by calling the library in
// this process (tokens, logits); exit codes follow tools/moeref.cc's contract: 0 success,
// 1 failure, 2 usage error.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ref/generation/generate.h"
#include "ref/io/config.h"
#include "ref/io/safetensors.h"
#include "ref/model/model.h"
#include "ref/model/stats.h"
#include "ref/model/weights.h"
#include "tests/cli_runner.h"

namespace moeref::cli_tests {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

const fs::path kGpt4 = kSourceDir / "configs/gpt4-rumored.json";

// The tokens of `run ... --json`.
std::vector<int32_t> json_tokens(const CliResult& r) {
  if (r.exit_code != 0) {
    ADD_FAILURE() << describe(r);
    return {};
  }
  return json::parse(r.out).at("tokens").get<std::vector<int32_t>>();
}

// ------------------------------------------------------------------------------------------------
// Usage.

TEST(Cli, HelpExitsZero) {
  const CliResult r = run_cli("--help");
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  for (const char* subcommand : {"stats", "init", "run", "export-hf", "import-hf", "trace"}) {
    EXPECT_THAT(r.out, HasSubstr(subcommand));
  }
}

TEST(Cli, UsageErrorsExitTwo) {
  const std::vector<std::string> cases = {
      "",                                                // no subcommand
      "--bogus",                                         // unknown option
      "stats " + quote(kTiny) + " --bogus",              // unknown option of a subcommand
      "frobnicate",                                      // unknown subcommand
      "stats",                                           // missing positional config
      "init " + quote(kTiny),                            // missing required --out
      "run " + quote(kTiny) + " --prompt a --tokens 1",  // excluded combination
      "--threads -1 stats " + quote(kTiny),              // negative thread count
  };
  for (const std::string& args : cases) {
    SCOPED_TRACE(args);
    const CliResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << describe(r);
    EXPECT_FALSE(r.err.empty());
  }
}

// A global option given to a subcommand that does not read it is refused, naming both, before
// anything runs or is written.
TEST(Cli, GlobalOptionsASubcommandDoesNotReadAreRefused) {
  const TempDir temp;
  const std::string out = quote(temp.path() / "out");
  const struct {
    std::string args;
    std::string message;
  } cases[] = {
      {"--backend simd golden " + quote(kTiny) + " --out " + out,
       "--backend does not apply to golden; only run, trace, serve-sim read it"},
      {"--backend ref stats " + quote(kTiny), "--backend does not apply to stats"},
      {"--backend simd candidate " + quote(kSourceDir / "golden/sets/tiny-mqa-moe") +
           " --emulate bf16 --out " + out,
       "--backend does not apply to candidate"},
      {"--threads 2 init " + quote(kTiny) + " --out " + out, "--threads does not apply to init"},
      {"--threads 2 import-hf " + quote(temp.path() / "hf") + " --config-out " + out +
           " --weights-out " + quote(temp.path() / "weights"),
       "--threads does not apply to import-hf"},
      {"--allow-nonfinite-weights golden " + quote(kTiny) + " --out " + out,
       "--allow-nonfinite-weights does not apply to golden"},
      {"--allow-nonfinite-weights compare " + quote(kSourceDir / "golden/sets/tiny-mqa-moe") + " " +
           out,
       "--allow-nonfinite-weights does not apply to compare"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    const CliResult r = run_cli(c.args);
    EXPECT_EQ(r.exit_code, 2) << describe(r);
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_FALSE(fs::exists(temp.path() / "out"));
  }
  // The same options where they apply.
  EXPECT_EQ(
      run_cli("--backend simd --threads 1 trace " + quote(kTiny) + " --tokens 1,2 --out " + out)
          .exit_code,
      0);
}

// ------------------------------------------------------------------------------------------------
// stats.

TEST(CliStats, TinyExitsZero) {
  const CliResult r = run_cli("stats " + quote(kTiny));
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr("tiny"));
}

TEST(CliStats, Gpt4RumoredJsonReproducesTheReport) {
  const CliResult r = run_cli("stats " + quote(kGpt4) + " --json");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const json s = json::parse(r.out);

  // The report's figures (docs: ~1.8T total, ~280B active, ~560 GFLOP per token).
  const auto total = s.at("params_total").get<int64_t>();
  const auto active = s.at("params_active_per_token").get<int64_t>();
  const auto flops = s.at("matmul_flops_per_token").get<int64_t>();
  EXPECT_GE(total, int64_t{1'800'000'000'000});
  EXPECT_LE(total, int64_t{1'900'000'000'000});
  EXPECT_GE(active, int64_t{280'000'000'000});
  EXPECT_LE(active, int64_t{290'000'000'000});
  EXPECT_GE(flops, int64_t{550'000'000'000});
  EXPECT_LE(flops, int64_t{580'000'000'000});

  // Exactly, from configs/gpt4-rumored.json by hand: d 15360, 120 layers, 120 query heads of 128,
  // 1 K/V head, 16 experts top-2, GELU experts of d_ff 30720 (up and down only), vocab 100256,
  // RMSNorm gains (no biases), untied LM head.
  const int64_t d = 15360, layers = 120, heads = 120, kv_heads = 1, head_dim = 128;
  const int64_t experts = 16, top_k = 2, d_ff = 30720, vocab = 100256;
  const int64_t attention = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2;  // q,o + k,v
  const int64_t expert = 2 * d * d_ff;
  const int64_t router = experts * d;
  const int64_t norms = 2 * d;
  const int64_t embeddings = 2 * vocab * d;  // input embedding + LM head
  EXPECT_EQ(total, embeddings + d + layers * (attention + router + norms + experts * expert));
  EXPECT_EQ(active, embeddings + d + layers * (attention + router + norms + top_k * expert));
  // 2 FLOPs per multiply-add of every active matrix except the input embedding (a lookup).
  EXPECT_EQ(flops, 2 * (layers * (attention + router + top_k * expert) + vocab * d));

  // KV cache: K and V, fp32, every layer, one K/V head of 128.
  const int64_t kv_bytes = 4 * 2 * 120 * 128;
  EXPECT_EQ(s.at("kv_cache_bytes_per_token_f32").get<int64_t>(), kv_bytes);
  EXPECT_EQ(s.at("kv_cache_bytes_per_token_f32_multi_head").get<int64_t>(), 120 * kv_bytes);
}

// ------------------------------------------------------------------------------------------------
// run.

TEST(CliRun, Gpt4RumoredRefusesSayingHowMuchMemoryItNeeds) {
  const CliResult r = run_cli("run " + quote(kGpt4) + " --prompt hi");
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("TiB"));
}

// The greedy tokens the library gives for tiny, in this process.
std::vector<int32_t> library_tokens(const std::vector<int32_t>& prompt, int64_t n,
                                    const SamplingParams& sampling = {}) {
  const ModelConfig config = load_config(kTiny);
  const Model model(config, init_weights(config));
  GenerationRequest request;
  request.prompt = prompt;
  request.max_new_tokens = n;
  request.sampling = sampling;
  return generate(model, request).tokens;
}

TEST(CliRun, TinyJsonIsReproducibleAcrossRunsAndThreadCounts) {
  const std::string args = "run " + quote(kTiny) + " --tokens 1,2,3 --max-new-tokens 4 --json";
  const CliResult first = run_cli(args);
  ASSERT_EQ(first.exit_code, 0) << describe(first);
  const json out = json::parse(first.out);
  EXPECT_EQ(out.at("prompt_tokens"), json::array({1, 2, 3}));
  EXPECT_EQ(out.at("stopped_at_eos"), false);
  const std::vector<int32_t> tokens = out.at("tokens").get<std::vector<int32_t>>();
  EXPECT_EQ(tokens.size(), 4u);
  for (const int32_t t : tokens) {
    EXPECT_GE(t, 0);
    EXPECT_LT(t, 256);
  }
  EXPECT_EQ(tokens, library_tokens({1, 2, 3}, 4));
  EXPECT_EQ(json_tokens(run_cli(args)), tokens);
  EXPECT_EQ(json_tokens(run_cli("--threads 1 " + args)), tokens);
  EXPECT_EQ(json_tokens(run_cli("--threads 2 " + args)), tokens);
}

TEST(CliRun, SampledTokensFollowTheSeed) {
  const std::string args = "run " + quote(kTiny) +
                           " --tokens 7,8,9 --max-new-tokens 8 --json --temperature 1 --top-k 50";
  SamplingParams sampling;
  sampling.temperature = 1.0;
  sampling.top_k = 50;
  sampling.seed = 5;
  const std::vector<int32_t> seed5 = json_tokens(run_cli(args + " --seed 5"));
  EXPECT_EQ(seed5, library_tokens({7, 8, 9}, 8, sampling));
  EXPECT_EQ(json_tokens(run_cli(args + " --seed 5")), seed5);
  EXPECT_NE(json_tokens(run_cli(args + " --seed 6")), seed5);
}

TEST(CliRun, PromptTextIsOneTokenPerByte) {
  const std::string args = "run " + quote(kTiny) + " --max-new-tokens 3 --json";
  const CliResult r = run_cli(args + " --prompt hi");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(json::parse(r.out).at("prompt_tokens"), json::array({'h', 'i'}));  // 104, 105
  EXPECT_EQ(json_tokens(r), library_tokens({104, 105}, 3));
}

TEST(CliRun, BadRequestsExitOneNamingTheProblem) {
  struct Case {
    std::string args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"--tokens 1,x", "\"x\""},
      {"--tokens 1,,2", "\"\""},
      {"--tokens 1,256", "token 256"},  // outside the vocabulary of 256
      {"--tokens ''", "empty"},
      {"--tokens 1,99999999999", "99999999999"},     // past int32
      {"--tokens 1,2 --max-new-tokens 127", "128"},  // 2 + 127 > max_seq_len 128
      {"--tokens 1 --top-p 0", "top_p"},
      {"--tokens 1 --temperature -1", "temperature"},
  };  // no prompt at all is a usage error (tests/cli_messages_test.cc)
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const CliResult r = run_cli("run " + quote(kTiny) + " " + c.args);
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_THAT(r.err, HasSubstr(c.expected));
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

// tools/model_loading.h: parse_token_list throws "naming the bad entry"; "1,,2" is refused for its
// empty entry, so a trailing empty entry ("1,2,") must be refused the same way rather than
// dropped silently.
TEST(CliRun, TrailingEmptyTokenEntryIsRefusedLikeAnInnerOne) {
  for (const char* list : {"1,,2", "1,2,"}) {
    SCOPED_TRACE(list);
    const CliResult r = run_cli("run " + quote(kTiny) + " --max-new-tokens 1 --tokens " + list);
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_THAT(r.err, HasSubstr("\"\" is not a token id"));
  }
}

TEST(CliRun, BadConfigFileExitsOneNamingFileAndKey) {
  const TempDir temp;
  json config = json::parse(read_file(kTiny));
  config["n_kv_heads"] = 3;  // 4 query heads are not a multiple of 3 K/V heads
  const fs::path path = temp.path() / "bad.json";
  std::ofstream(path) << config.dump(2);
  const CliResult r = run_cli("run " + quote(path) + " --tokens 1,2");
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr(path.string()));
  EXPECT_THAT(r.err, HasSubstr("\"n_kv_heads\""));

  const CliResult missing = run_cli("run " + quote(temp.path() / "absent.json") + " --tokens 1");
  EXPECT_EQ(missing.exit_code, 1) << describe(missing);
  EXPECT_THAT(missing.err, HasSubstr("absent.json"));
}

// ------------------------------------------------------------------------------------------------
// init, export-hf, import-hf, trace.

// Same names, dtypes, shapes and bytes, in the same order.
void expect_same_tensors(const SafetensorsFile& a, const SafetensorsFile& b) {
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (size_t i = 0; i < a.tensors().size(); ++i) {
    const TensorRecord& x = a.tensors()[i];
    const TensorRecord& y = b.tensors()[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.dtype, y.dtype) << x.name;
    EXPECT_EQ(x.shape, y.shape) << x.name;
    EXPECT_TRUE(x.bytes == y.bytes) << x.name;
  }
}

TEST(CliInit, WritesTheWeightsThatRunUses) {
  const TempDir temp;
  const fs::path weights = temp.path() / "tiny.safetensors";
  const CliResult init = run_cli("init " + quote(kTiny) + " --out " + quote(weights));
  ASSERT_EQ(init.exit_code, 0) << describe(init);

  // The file holds the config's initial weights, bit for bit.
  const ModelConfig config = load_config(kTiny);
  const ModelWeights expected = init_weights(config);
  const ModelWeights loaded = load_weights(config, weights);
  const Model a(config, expected);
  const Model b(config, loaded);
  KvCache cache_a = a.new_cache();
  KvCache cache_b = b.new_cache();
  const Tensor la = a.forward(std::vector<int32_t>{4, 5, 6}, cache_a).logits;
  const Tensor lb = b.forward(std::vector<int32_t>{4, 5, 6}, cache_b).logits;
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), static_cast<size_t>(la.numel()) * sizeof(float)), 0);

  const std::string args = "run " + quote(kTiny) + " --tokens 1,2,3 --max-new-tokens 5 --json";
  EXPECT_EQ(json_tokens(run_cli(args + " --weights " + quote(weights))),
            json_tokens(run_cli(args)));

  // A weights file of another config is refused, naming the file.
  const CliResult wrong = run_cli("run " + quote(kSourceDir / "configs/small.json") +
                                  " --tokens 1 --weights " + quote(weights));
  EXPECT_EQ(wrong.exit_code, 1) << describe(wrong);
  EXPECT_THAT(wrong.err, HasSubstr(weights.string()));
}

TEST(CliInit, IntoAMissingDirectoryFailsAndLeavesNothing) {
  const TempDir temp;
  const fs::path dir = temp.path() / "no" / "such" / "dir";
  const CliResult r = run_cli("init " + quote(kTiny) + " --out " + quote(dir / "w.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("w.safetensors"));
  EXPECT_FALSE(fs::exists(temp.path() / "no"));
  EXPECT_TRUE(fs::is_empty(temp.path()));
}

TEST(CliHf, ExportThenImportRoundTrips) {
  const TempDir temp;
  const fs::path hf = temp.path() / "hf";
  const CliResult exported = run_cli("export-hf " + quote(kTiny) + " --out " + quote(hf));
  ASSERT_EQ(exported.exit_code, 0) << describe(exported);
  EXPECT_TRUE(fs::exists(hf / "config.json"));
  EXPECT_TRUE(fs::exists(hf / "model.safetensors"));
  EXPECT_EQ(json::parse(read_file(hf / "config.json")).at("model_type"), "mixtral");

  const fs::path config_out = temp.path() / "imported.json";
  const fs::path weights_out = temp.path() / "imported.safetensors";
  const CliResult imported = run_cli("import-hf " + quote(hf) + " --config-out " +
                                     quote(config_out) + " --weights-out " + quote(weights_out));
  ASSERT_EQ(imported.exit_code, 0) << describe(imported);
  // The same config, naming the imported weights beside it.
  ModelConfig expected = load_config(kTiny);
  expected.weights_file = "imported.safetensors";
  EXPECT_EQ(load_config(config_out), expected);

  // The imported weights are the initial weights `init` writes, bit for bit.
  const fs::path initial = temp.path() / "initial.safetensors";
  ASSERT_EQ(run_cli("init " + quote(kTiny) + " --out " + quote(initial)).exit_code, 0);
  expect_same_tensors(SafetensorsFile::read(weights_out), SafetensorsFile::read(initial));

  const std::string tail = " --tokens 9,8,7 --max-new-tokens 4 --json";
  EXPECT_EQ(
      json_tokens(run_cli("run " + quote(config_out) + " --weights " + quote(weights_out) + tail)),
      json_tokens(run_cli("run " + quote(kTiny) + tail)));
}

TEST(CliHf, ExportOfAnIncompatibleConfigFailsNamingTheKey) {
  const TempDir temp;
  json config = json::parse(read_file(kTiny));
  config["ffn_activation"] = "gelu";  // Mixtral's experts are SwiGLU
  const fs::path path = temp.path() / "gelu.json";
  std::ofstream(path) << config.dump(2);
  const CliResult r = run_cli("export-hf " + quote(path) + " --out " + quote(temp.path() / "x"));
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("\"ffn_activation\""));
  EXPECT_FALSE(fs::exists(temp.path() / "x"));
}

TEST(CliTrace, WritesSafetensorsWithTheLogits) {
  const TempDir temp;
  const fs::path out = temp.path() / "trace.safetensors";
  const CliResult r = run_cli("trace " + quote(kTiny) + " --tokens 1,2,3 --out " + quote(out));
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const SafetensorsFile file = SafetensorsFile::read(out);
  ASSERT_TRUE(file.contains("prefill/logits"));
  const TensorRecord& logits = file.at("prefill/logits");
  EXPECT_EQ(logits.shape, (std::vector<int64_t>{3, 256}));

  // The same logits as a prefill in this process.
  const ModelConfig config = load_config(kTiny);
  const Model model(config, init_weights(config));
  KvCache cache = model.new_cache();
  const Tensor expected = model.forward(std::vector<int32_t>{1, 2, 3}, cache).logits;
  ASSERT_EQ(logits.bytes.size(), static_cast<size_t>(expected.numel()) * sizeof(float));
  EXPECT_EQ(std::memcmp(logits.bytes.data(), expected.data(), logits.bytes.size()), 0);
}

// A trace of a set's config and prompt carries the set's names: compare takes it as a candidate,
// and every tensor of the prefill passes (the decode steps are missing, which is no failure).
TEST(CliTrace, IsACandidateForCompareUnderTheSetsNames) {
  const TempDir temp;
  const fs::path out = temp.path() / "trace.safetensors";
  const fs::path set = kSourceDir / "golden/sets/tiny-mqa-moe";
  const CliResult traced =
      run_cli("trace " + quote(kSourceDir / "configs/golden/tiny-mqa-moe.json") +
              " --tokens 142,108,41,33,182,9,39,190,255,138,220,149 --out " + quote(out));
  ASSERT_EQ(traced.exit_code, 0) << describe(traced);
  const CliResult compared = run_cli("compare " + quote(set) + " " + quote(out) + " --json");
  ASSERT_EQ(compared.exit_code, 0) << describe(compared);
  const json report = json::parse(compared.out);
  const int64_t traced_tensors = int64_t(SafetensorsFile::read(out).tensors().size());
  EXPECT_EQ(report["compared"], traced_tensors) << compared.out;
  EXPECT_TRUE(report["extra"].empty()) << compared.out;
  EXPECT_EQ(report["passed"], true) << compared.out;
}

// ------------------------------------------------------------------------------------------------
// Vision (docs/vision.md).

const fs::path kTinyVision = kSourceDir / "configs/tiny-vision.json";

// A binary PPM of width x height whose pixel (x, y) is (x * 7 + seed, y * 5, (x + y) * 3) mod 256.
fs::path write_ppm(const fs::path& dir, int width, int height, int seed = 0) {
  std::string bytes = "P6\n" + std::to_string(width) + " " + std::to_string(height) + "\n255\n";
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (const int v : {x * 7 + seed, y * 5, (x + y) * 3}) bytes += static_cast<char>(v % 256);
    }
  }
  const fs::path path = dir / ("image" + std::to_string(seed) + ".ppm");
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(CliVision, RunReadsTheImageAndItChangesTheTokensAfterIt) {
  const TempDir temp;
  const std::string base =
      "run " + quote(kTinyVision) + " --tokens 1,2,3,4 --max-new-tokens 6 --json";
  const std::vector<int32_t> without = json_tokens(run_cli(base));
  const std::vector<int32_t> with =
      json_tokens(run_cli(base + " --image " + quote(write_ppm(temp.path(), 40, 24))));
  const std::vector<int32_t> other =
      json_tokens(run_cli(base + " --image " + quote(write_ppm(temp.path(), 40, 24, 100))));
  ASSERT_EQ(with.size(), 6u);
  EXPECT_NE(with, without);
  EXPECT_NE(with, other);
  // The same image again, on 1 thread: the same tokens.
  EXPECT_EQ(json_tokens(run_cli("--threads 1 " + base + " --image " +
                                quote(write_ppm(temp.path(), 40, 24)))),
            with);
}

TEST(CliVision, BadImagesExitOneNamingTheFile) {
  const TempDir temp;
  const fs::path missing = temp.path() / "missing.png";
  const fs::path truncated = temp.path() / "truncated.ppm";
  std::ofstream(truncated, std::ios::binary) << "P6\n4 4\n255\n\x01\x02";
  const fs::path image = write_ppm(temp.path(), 8, 8);
  struct Case {
    fs::path config;
    std::string args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {kTinyVision, "--image " + quote(missing), missing.string()},
      {kTinyVision, "--image " + quote(truncated), truncated.string()},
      {kTiny, "--image " + quote(image), "has no vision section"},
      {kTinyVision, "--image " + quote(image) + " --image-position 5", "image_position 5"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const CliResult r = run_cli("run " + quote(c.config) + " --tokens 1,2,3 " + c.args);
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_THAT(r.err, HasSubstr(c.expected));
  }
  const CliResult speculative = run_cli("run " + quote(kTinyVision) + " --tokens 1,2,3 --image " +
                                        quote(image) + " --draft " + quote(kTiny));
  EXPECT_EQ(speculative.exit_code, 1) << describe(speculative);
  EXPECT_THAT(speculative.err, HasSubstr("does not read images"));
}

TEST(CliVision, ImagePositionIsCheckedAndNeedsAnImage) {
  const TempDir temp;
  const fs::path image = write_ppm(temp.path(), 8, 8);
  const fs::path out = temp.path() / "trace.safetensors";
  const CliResult past_the_end =
      run_cli("trace " + quote(kTinyVision) + " --tokens 1,2,3 --image " + quote(image) +
              " --image-position 4 --out " + quote(out));
  EXPECT_EQ(past_the_end.exit_code, 1) << describe(past_the_end);
  EXPECT_THAT(past_the_end.err, HasSubstr("image_position 4 is outside the prompt (0..3)"));
  EXPECT_FALSE(fs::exists(out));
  for (const std::string& command :
       {"run " + quote(kTinyVision) + " --tokens 1,2,3",
        "trace " + quote(kTinyVision) + " --tokens 1,2,3 --out " + quote(out)}) {
    SCOPED_TRACE(command);
    const CliResult alone = run_cli(command + " --image-position 1");
    EXPECT_EQ(alone.exit_code, 2) << describe(alone);
    EXPECT_THAT(alone.err, HasSubstr("--image"));
  }
}

TEST(CliVision, StatsCountTheVisionParametersAndFlops) {
  const CliResult r = run_cli("stats " + quote(kTinyVision) + " --json");
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const json stats = json::parse(r.out);
  const ModelStats expected = compute_stats(load_config(kTinyVision));
  ASSERT_TRUE(stats.contains("vision")) << r.out;
  EXPECT_EQ(stats["vision"]["params"], expected.params_vision);
  EXPECT_EQ(stats["vision"]["flops_per_image"], expected.vision_flops_per_image);
  EXPECT_EQ(stats["vision"]["vision_tokens_per_image"], 16);  // (32 / 8)^2 patches
  const CliResult table = run_cli("stats " + quote(kTinyVision));
  EXPECT_THAT(table.out, HasSubstr("FLOPs / image"));
  EXPECT_FALSE(json::parse(run_cli("stats " + quote(kTiny) + " --json").out).contains("vision"));
}

TEST(CliVision, TraceRecordsTheImageEncodingFirst) {
  const TempDir temp;
  const fs::path out = temp.path() / "trace.safetensors";
  const CliResult r =
      run_cli("trace " + quote(kTinyVision) + " --tokens 1,2,3 --image " +
              quote(write_ppm(temp.path(), 32, 32)) + " --image-position 1 --out " + quote(out));
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const SafetensorsFile file = SafetensorsFile::read(out);
  EXPECT_EQ(file.tensors().front().name, "image/vision.pixels");
  EXPECT_EQ(file.at("image/vision.tokens").shape, (std::vector<int64_t>{16, 64}));
  EXPECT_EQ(file.at("prefill/layers.1.xattn.probs").shape, (std::vector<int64_t>{3, 4, 16}));
  // The gated block is in front of layer 1.
  EXPECT_FALSE(file.contains("prefill/layers.0.xattn.probs"));
}

}  // namespace
}  // namespace moeref::cli_tests
