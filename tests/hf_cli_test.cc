// import-hf and export-hf as a user runs them: the imported config names its weights file, so
// run and trace compute with the imported weights and never fall back to seeded ones; the
// commands that only know seeded weights refuse such a config; export-hf's --dtype and
// --max-shard-size.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "ref/io/config.h"
#include "tests/cli_runner.h"

namespace moeref::cli_tests {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

const std::string kRunArgs = " --tokens 1,2,3,4 --max-new-tokens 6";

// The output of `run` without its throughput line, which is timing and differs between runs.
std::string generated(const CliResult& result) {
  std::istringstream lines(result.out);
  std::string kept;
  for (std::string line; std::getline(lines, line);) {
    if (line.find("tokens/s") == std::string::npos) kept += line + "\n";
  }
  return kept;
}

// tiny exported and imported again, its config.json claiming another seed (99): the imported
// config then says init_seed 99 while its weights are tiny's, seeded from 1.
class ImportedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path hf = temp_.path() / "hf";
    const CliResult exported = run_cli("export-hf " + quote(kTiny) + " --out " + quote(hf));
    ASSERT_EQ(exported.exit_code, 0) << describe(exported);
    std::ifstream in(hf / "config.json");
    json hf_config = json::parse(in);
    hf_config["moeref"]["init_seed"] = 99;
    std::ofstream(hf / "config.json") << hf_config.dump();
    fs::create_directories(temp_.path() / "model" / "weights");
    config_ = temp_.path() / "model" / "imported.json";
    const CliResult imported =
        run_cli("import-hf " + quote(hf) + " --config-out " + quote(config_) + " --weights-out " +
                quote(temp_.path() / "model" / "weights" / "w.safetensors"));
    ASSERT_EQ(imported.exit_code, 0) << describe(imported);
  }

  TempDir temp_;
  fs::path config_;
};

TEST_F(ImportedModelTest, ConfigNamesItsWeightsRelativeToItself) {
  const ModelConfig config = load_config(config_);
  EXPECT_EQ(config.weights_file, "weights/w.safetensors");
  EXPECT_EQ(config.init_seed, 99u);
}

TEST_F(ImportedModelTest, RunAndTraceUseTheImportedWeightsWithoutWeightsOption) {
  const CliResult original = run_cli("run " + quote(kTiny) + kRunArgs);
  const CliResult imported = run_cli("run " + quote(config_) + kRunArgs);
  ASSERT_EQ(original.exit_code, 0) << describe(original);
  ASSERT_EQ(imported.exit_code, 0) << describe(imported);
  EXPECT_EQ(generated(imported), generated(original));

  // The seeded weights of init_seed 99 would give other tokens: the comparison can fail.
  json seeded = json::parse(read_file(config_));
  seeded.erase("weights_file");
  const fs::path seeded_config = temp_.path() / "seeded.json";
  std::ofstream(seeded_config) << seeded.dump();
  EXPECT_NE(generated(run_cli("run " + quote(seeded_config) + kRunArgs)), generated(original));

  const fs::path trace_a = temp_.path() / "a.safetensors";
  const fs::path trace_b = temp_.path() / "b.safetensors";
  ASSERT_EQ(run_cli("trace " + quote(kTiny) + " --tokens 1,2,3 --out " + quote(trace_a)).exit_code,
            0);
  ASSERT_EQ(
      run_cli("trace " + quote(config_) + " --tokens 1,2,3 --out " + quote(trace_b)).exit_code, 0);
  EXPECT_EQ(read_file(trace_a), read_file(trace_b));
}

TEST_F(ImportedModelTest, MissingWeightsFileIsAnErrorNotSeededWeights) {
  fs::rename(temp_.path() / "model" / "weights", temp_.path() / "moved");
  const CliResult result = run_cli("run " + quote(config_) + kRunArgs);
  EXPECT_EQ(result.exit_code, 1) << describe(result);
  EXPECT_THAT(result.err, HasSubstr("key \"weights_file\""));
  EXPECT_THAT(result.err, HasSubstr("weights/w.safetensors"));
  // --weights still chooses the file.
  const CliResult given = run_cli("run " + quote(config_) + kRunArgs + " --weights " +
                                  quote(temp_.path() / "moved" / "w.safetensors"));
  EXPECT_EQ(given.exit_code, 0) << describe(given);
}

TEST_F(ImportedModelTest, SeededOnlyCommandsRefuseIt) {
  for (const std::string& command :
       {"init " + quote(config_) + " --out " + quote(temp_.path() / "init.safetensors"),
        "golden " + quote(config_) + " --out " + quote(temp_.path() / "set")}) {
    SCOPED_TRACE(command);
    const CliResult result = run_cli(command);
    EXPECT_EQ(result.exit_code, 1) << describe(result);
    EXPECT_THAT(result.err, HasSubstr("key \"weights_file\""));
  }
}

TEST(ConfigWeightsFile, RoundTripsAndMayNotBeEmpty) {
  json config = json::parse(read_file(kTiny));
  EXPECT_FALSE(config_to_json(config_from_json(config, "tiny")).contains("weights_file"));
  config["weights_file"] = "w.safetensors";
  const ModelConfig named = config_from_json(config, "tiny");
  EXPECT_EQ(named.weights_file, "w.safetensors");
  EXPECT_EQ(config_from_json(config_to_json(named), "tiny"), named);
  config["weights_file"] = "";
  EXPECT_THROW(config_from_json(config, "tiny"), ConfigError);
}

TEST(ExportHfCli, DtypeAndShardOptions) {
  const TempDir temp;
  const CliResult bf16 =
      run_cli("export-hf " + quote(kTiny) + " --dtype bf16 --out " + quote(temp.path() / "bf16"));
  EXPECT_EQ(bf16.exit_code, 1) << describe(bf16);
  EXPECT_THAT(bf16.err, HasSubstr("model.embed_tokens.weight"));
  EXPECT_FALSE(fs::exists(temp.path() / "bf16" / "config.json"));

  const CliResult bad_size = run_cli("export-hf " + quote(kTiny) + " --max-shard-size 5XB --out " +
                                     quote(temp.path() / "bad"));
  EXPECT_EQ(bad_size.exit_code, 2) << describe(bad_size);
  EXPECT_THAT(bad_size.err, HasSubstr("--max-shard-size 5XB"));

  const fs::path dir = temp.path() / "sharded";
  const CliResult sharded =
      run_cli("export-hf " + quote(kTiny) + " --max-shard-size 1MB --out " + quote(dir));
  ASSERT_EQ(sharded.exit_code, 0) << describe(sharded);
  EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  const json index = json::parse(read_file(dir / "model.safetensors.index.json"));
  EXPECT_THAT(index.at("weight_map").at("model.embed_tokens.weight").get<std::string>(),
              ::testing::StartsWith("model-00001-of-0000"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  // A second export over the shards needs --force, as for any existing output.
  const CliResult again =
      run_cli("export-hf " + quote(kTiny) + " --max-shard-size 1MB --out " + quote(dir));
  EXPECT_EQ(again.exit_code, 2) << describe(again);
}

}  // namespace
}  // namespace moeref::cli_tests
