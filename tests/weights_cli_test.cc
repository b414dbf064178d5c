// The commands that read and write weights, run as separate processes: NaN and Inf refused
// unless --allow-nonfinite-weights, and one copy of the weights in memory at the peak of `init`
// and of loading `--weights` (the peak resident size of the child, counted by the kernel; no time
// is measured).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ref/io/config.h"
#include "ref/io/safetensors.h"
#include "ref/model/stats.h"
#include "ref/model/weights.h"
#include "tests/cli_runner.h"

namespace moeref::cli_tests {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// Rewrites a safetensors file with element `index` of tensor `name` set to NaN.
void plant_nan(const fs::path& file, const std::string& name, size_t index) {
  std::vector<TensorRecord> records = SafetensorsFile::read(file).tensors();
  for (TensorRecord& record : records) {
    if (record.name != name) continue;
    std::vector<float> values = record.to_f32();
    values.at(index) = std::nanf("");
    record = make_f32_record(name, record.shape, values);
  }
  write_safetensors(file, records);
}

TEST(WeightsCli, NonFiniteWeightsAreRefusedUnlessAllowed) {
  const TempDir temp;
  const fs::path weights = temp.path() / "tiny.safetensors";
  ASSERT_EQ(run_cli("init " + quote(kTiny) + " --out " + quote(weights)).exit_code, 0);
  plant_nan(weights, "lm_head.weight", 70);
  const std::string run =
      "run " + quote(kTiny) + " --tokens 1,2 --max-new-tokens 2 --weights " + quote(weights);
  const CliResult refused = run_cli(run);
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_THAT(refused.err, HasSubstr(weights.string() + ": tensor \"lm_head.weight\" holds NaN at "
                                                        "index 70 (element [1, 6] of [256, 64])"));
  const CliResult allowed = run_cli("--allow-nonfinite-weights " + run);
  EXPECT_EQ(allowed.exit_code, 0) << describe(allowed);

  const fs::path hf = temp.path() / "hf";
  ASSERT_EQ(run_cli("export-hf " + quote(kTiny) + " --out " + quote(hf)).exit_code, 0);
  plant_nan(hf / "model.safetensors", "model.norm.weight", 3);
  const std::string import = "import-hf " + quote(hf) + " --config-out " +
                             quote(temp.path() / "c.json") + " --weights-out " +
                             quote(temp.path() / "w.safetensors");
  const CliResult import_refused = run_cli(import);
  EXPECT_EQ(import_refused.exit_code, 1) << describe(import_refused);
  EXPECT_THAT(import_refused.err, HasSubstr("\"model.norm.weight\" holds NaN at index 3"));
  EXPECT_FALSE(fs::exists(temp.path() / "w.safetensors"));
  const CliResult import_allowed = run_cli("--allow-nonfinite-weights " + import);
  EXPECT_EQ(import_allowed.exit_code, 0) << describe(import_allowed);
}

// The peak resident size, in bytes, of `moeref ARGS...` run as a child of this process.
int64_t peak_resident_bytes(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  std::string program = MOEREF_CLI;
  argv.push_back(program.data());
  std::vector<std::string> owned = args;
  for (std::string& arg : owned) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const pid_t child = fork();
  if (child == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    execv(program.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  rusage usage{};
  EXPECT_EQ(wait4(child, &status, 0, &usage), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "moeref " << args.front();
  return int64_t{usage.ru_maxrss} * 1024;  // ru_maxrss is in KiB on Linux
}

// tiny with a 131072-token vocabulary: 64 MiB of embedding and LM head, so that a second copy
// of the weights stands far above everything else the process holds.
TEST(WeightsCli, InitAndLoadingHoldOneCopyOfTheWeights) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's shadow memory and quarantine swamp the resident size";
#endif
  const TempDir temp;
  json wide = json::parse(read_file(kTiny));
  wide["vocab_size"] = 131072;
  const fs::path wide_config = temp.path() / "wide.json";
  std::ofstream(wide_config) << wide.dump();
  const double wide_bytes =
      static_cast<double>(compute_stats(load_config(wide_config)).weight_bytes_f32);
  const double tiny_bytes = static_cast<double>(compute_stats(load_config(kTiny)).weight_bytes_f32);
  const fs::path wide_weights = temp.path() / "wide.safetensors";
  const fs::path tiny_weights = temp.path() / "tiny.safetensors";

  const int64_t init_wide =
      peak_resident_bytes({"init", wide_config.string(), "--out", wide_weights.string()});
  const int64_t init_tiny =
      peak_resident_bytes({"init", kTiny.string(), "--out", tiny_weights.string()});
  EXPECT_LT(static_cast<double>(init_wide - init_tiny), 1.5 * (wide_bytes - tiny_bytes))
      << "init holds a second copy of the weights";

  const auto run = [](const fs::path& config, const fs::path& weights) {
    return peak_resident_bytes({"run", config.string(), "--tokens", "1", "--max-new-tokens", "1",
                                "--weights", weights.string()});
  };
  const int64_t load_wide = run(wide_config, wide_weights);
  const int64_t load_tiny = run(kTiny, tiny_weights);
  EXPECT_LT(static_cast<double>(load_wide - load_tiny), 1.5 * (wide_bytes - tiny_bytes))
      << "loading --weights holds a second copy of the weights";
}

}  // namespace
}  // namespace moeref::cli_tests
