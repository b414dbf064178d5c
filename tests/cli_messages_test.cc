// The moeref command's messages and exit codes for bad command lines and for what goes wrong
// while running: 2 and a pointer to --help for a usage error, whenever it is found; 1 and the
// reason (the system's text, the amounts involved) for a failure. One table row per case.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/cli_runner.h"

namespace moeref::cli_tests {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

const fs::path kModelSet = kSourceDir / "golden/sets/tiny-gqa-mixed";

struct MessageCase {
  const char* name;
  std::string args;  // after `moeref`, quoted where needed
  int exit_code;
  std::vector<std::string> message_parts;  // each in stderr
};

void expect_message(const MessageCase& c) {
  SCOPED_TRACE(std::string(c.name) + ": moeref " + c.args);
  const CliResult r = run_cli(c.args);
  EXPECT_EQ(r.exit_code, c.exit_code) << describe(r);
  for (const std::string& part : c.message_parts) EXPECT_THAT(r.err, HasSubstr(part));
  // CLI11's numeric range checks printed the largest double in full.
  EXPECT_THAT(r.err, Not(HasSubstr("1797693134862315")));
  if (c.exit_code == 2) {
    EXPECT_THAT(r.err, HasSubstr("Run with --help for more information."));
  }
}

TEST(CliMessages, UsageErrorsExitTwoWhereverTheyAreFound) {
  const TempDir temp;
  const fs::path requests = temp.path() / "requests.jsonl";
  std::ofstream(requests) << R"({"id": 1, "prompt": [1, 2]})"
                          << "\n";
  const std::string tiny = quote(kTiny);
  const std::vector<MessageCase> cases = {
      {"negative thread count",
       "--threads -1 stats " + tiny,
       2,
       {"--threads: -1 is not an integer of at least 0"}},
      {"zero blocks",
       "serve-sim " + tiny + " " + quote(requests) + " --blocks 0",
       2,
       {"--blocks: 0 is not an integer of at least 1"}},
      {"zero block size",
       "serve-sim " + tiny + " " + quote(requests) + " --block-size 0",
       2,
       {"--block-size: 0 is not an integer of at least 1"}},
      {"golden without --out", "golden " + tiny, 2, {"moeref golden: error: give --out DIR"}},
      {"run without a prompt", "run " + tiny, 2, {"moeref run: error: give a prompt"}},
      {"unknown precision",
       "compare " + quote(kModelSet) + " " + quote(temp.path() / "c.safetensors") +
           " --precision fp8",
       2,
       {"--precision: fp8 not in {fp32,tf32,bf16,fp16}"}},
      {"unknown emulated precision",
       "candidate " + quote(kModelSet) + " --emulate int4 --out " +
           quote(temp.path() / "c.safetensors"),
       2,
       {"--emulate: int4 not in {fp32,tf32,bf16,fp16}"}},
      {"unknown bugs precision", "bugs --precision fp64", 2, {"--precision: fp64 not in"}},
      {"unknown command",
       "frobnicate",
       2,
       {"'frobnicate' is not a command; the commands are stats, init, run,"}},
      {"no command", "", 2, {"a command is required: stats, init, run,"}},
      {"unknown option", "--bogus", 2, {"--bogus"}},
  };
  for (const MessageCase& c : cases) expect_message(c);
  EXPECT_FALSE(fs::exists(temp.path() / "c.safetensors"));
}

TEST(CliMessages, FailuresSayWhy) {
  const TempDir temp;
  const fs::path requests = temp.path() / "requests.jsonl";
  std::ofstream(requests) << R"({"id": 1, "prompt": [1, 2]})"
                          << "\n";
  const std::string serve_sim = "serve-sim " + quote(kTiny) + " ";

  // An exported Hugging Face directory whose vocab_size is 2^64 - 1.
  const fs::path hf = temp.path() / "hf";
  ASSERT_EQ(run_cli("export-hf " + quote(kTiny) + " --out " + quote(hf)).exit_code, 0);
  json hf_config = json::parse(read_file(hf / "config.json"));
  hf_config["vocab_size"] = UINT64_MAX;
  std::ofstream(hf / "config.json") << hf_config.dump(2);

  const std::vector<MessageCase> cases = {
      {"write into a missing directory",
       "init " + quote(kTiny) + " --out " + quote(temp.path() / "missing" / "w.safetensors"),
       1,
       {"w.safetensors: cannot open for writing: No such file or directory"}},
      {"import-hf of an integer past int64",
       "import-hf " + quote(hf) + " --config-out " + quote(temp.path() / "c.json") +
           " --weights-out " + quote(temp.path() / "w.safetensors"),
       1,
       {"\"vocab_size\": integer out of the int64 range (18446744073709551615)"}},
      {"a directory as the requests file",
       serve_sim + quote(temp.path()),
       1,
       {temp.path().string() + ": is a directory, not a requests file"}},
      {"a missing requests file",
       serve_sim + quote(temp.path() / "none.jsonl"),
       1,
       {"none.jsonl: cannot open the requests file: No such file or directory"}},
      {"a KV pool larger than the machine",
       serve_sim + quote(requests) + " --block-size 2147483647",
       1,
       {"a paged KV cache of 64 blocks of 2147483647 positions needs", "this machine has"}},
      {"more blocks than int32 numbers",
       serve_sim + quote(requests) + " --blocks 2147483648 --block-size 1",
       1,
       {"at most 2147483647 blocks (block ids are int32), got 2147483648"}},
  };
  for (const MessageCase& c : cases) expect_message(c);
  EXPECT_FALSE(fs::exists(temp.path() / "c.json"));
}

// A sanitizer reserves terabytes of address space at start, so a process limited to 400 MB of it
// cannot start at all: the limit only applies to the plain build.
#if defined(__SANITIZE_ADDRESS__)
#define MOEREF_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOEREF_ADDRESS_SANITIZER 1
#endif
#endif

TEST(CliMessages, OutOfMemoryIsNamed) {
#ifdef MOEREF_ADDRESS_SANITIZER
  GTEST_SKIP() << "an address-space limit stops a sanitized process from starting";
#else
  const TempDir temp;
  // configs/small.json's weights are several hundred megabytes: more than 400 MB of address
  // space holds once the program and its threads are in.
  const CliResult r = run_cli("init " + quote(kSourceDir / "configs/small.json") + " --out " +
                                  quote(temp.path() / "w.safetensors"),
                              400000);
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("moeref init: error: out of memory"));
  EXPECT_THAT(r.err, Not(HasSubstr("std::bad_alloc")));
#endif
}

}  // namespace
}  // namespace moeref::cli_tests
