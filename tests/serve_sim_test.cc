// moeref serve-sim (tools/command_serve_sim.cc), run as a separate process: a file of requests
// through the continuous-batching engine, checked against `moeref run` of each request alone
// (batch invariance through the command line), plus the errors of a malformed requests file.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/cli_runner.h"

namespace moeref::cli_tests {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

// A fresh file under the test temp directory.
fs::path temp_file(const std::string& name, const std::string& contents) {
  static int counter = 0;
  const fs::path dir =
      fs::path(::testing::TempDir()) /
      ("moeref_serve_sim_test." + std::to_string(getpid()) + "." + std::to_string(counter++));
  fs::create_directories(dir);
  const fs::path path = dir / name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

// `serve-sim tiny REQUESTS --json EXTRA`, parsed; fails the test on a non-zero exit.
json serve_sim(const std::string& requests, const std::string& extra = "") {
  const fs::path path = temp_file("requests.jsonl", requests);
  const CliResult r = run_cli("serve-sim " + quote(kTiny) + " " + quote(path) + " --json " + extra);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  if (r.exit_code != 0) return json::object();
  return json::parse(r.out);
}

// The tokens `moeref run` gives for the prompt alone.
std::vector<int32_t> solo_tokens(const std::string& prompt_args, int64_t max_new_tokens,
                                 const std::string& extra = "") {
  const CliResult r = run_cli("run " + quote(kTiny) + " " + prompt_args + " --max-new-tokens " +
                              std::to_string(max_new_tokens) + " --json " + extra);
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  if (r.exit_code != 0) return {};
  return json::parse(r.out).at("tokens").get<std::vector<int32_t>>();
}

const json& request_with_id(const json& out, int64_t id) {
  for (const json& r : out.at("requests")) {
    if (r.at("id") == id) return r;
  }
  ADD_FAILURE() << "no request " << id << " in\n" << out.dump(2);
  static const json kNone = json::object();
  return kNone;
}

std::vector<int32_t> tokens_of(const json& out, int64_t id) {
  return request_with_id(out, id).value("tokens", std::vector<int32_t>{});
}

TEST(ServeSim, ThreeRequestsFinishWithTheTokensOfSoloRuns) {
  // Request 0 samples (its id is the counter word `run` uses, 0), 1 arrives at step 2 and 2 is
  // given as text.
  const json out = serve_sim(
      R"({"id": 0, "prompt": [1, 2, 3, 4, 5], "max_new_tokens": 6, "temperature": 0.8, "top_k": 40, "seed": 9})"
      "\n"
      R"({"id": 1, "prompt": [10, 20, 30], "max_new_tokens": 5, "arrival_step": 2})"
      "\n\n"
      R"({"id": 2, "prompt_text": "hello", "max_new_tokens": 4})"
      "\n");
  ASSERT_FALSE(out.empty());
  ASSERT_EQ(out.at("requests").size(), 3u);
  for (const json& r : out.at("requests")) {
    EXPECT_EQ(r.at("status"), "finished") << r.dump();
    EXPECT_FALSE(r.contains("error")) << r.dump();
  }
  EXPECT_EQ(tokens_of(out, 0),
            solo_tokens("--tokens 1,2,3,4,5", 6, "--temperature 0.8 --top-k 40 --seed 9"));
  EXPECT_EQ(tokens_of(out, 1), solo_tokens("--tokens 10,20,30", 5));
  EXPECT_EQ(tokens_of(out, 2), solo_tokens("--tokens 104,101,108,108,111", 4));
  EXPECT_EQ(tokens_of(out, 1).size(), 5u);
  EXPECT_EQ(request_with_id(out, 1).at("first_token_step").get<int64_t>(), 2);

  const json& summary = out.at("summary");
  EXPECT_GT(summary.at("steps").get<int64_t>(), 0);
  EXPECT_GT(summary.at("peak_blocks").get<int64_t>(), 0);
  EXPECT_LE(summary.at("peak_blocks").get<int64_t>(), 64);
  EXPECT_EQ(summary.at("blocks"), 64);
  EXPECT_EQ(summary.at("finished"), 3);
  EXPECT_EQ(summary.at("rejected"), 0);
  EXPECT_EQ(summary.at("generated_tokens"), 6 + 5 + 4);
  EXPECT_EQ(summary.at("prefill_tokens"), 5 + 3 + 5);  // no preemption, no recomputation

  // The schedule: request 1 appears first at step 2, as a prefill of its 3 tokens.
  bool seen_request_1 = false;
  for (const json& step : out.at("steps")) {
    EXPECT_LE(step.at("used_blocks").get<int64_t>(), 64);
    for (const json& chunk : step.at("chunks")) {
      if (chunk.at("request") != 1 || seen_request_1) continue;
      seen_request_1 = true;
      EXPECT_EQ(step.at("step"), 2);
      EXPECT_EQ(chunk.at("phase"), "prefill");
      EXPECT_EQ(chunk.at("start"), 0);
      EXPECT_EQ(chunk.at("tokens"), 3);
    }
  }
  EXPECT_TRUE(seen_request_1);
}

TEST(ServeSim, TextOutputShowsRequestsScheduleAndSummary) {
  const fs::path path = temp_file("requests.jsonl",
                                  "{\"id\": 7, \"prompt_text\": \"hi\", \"max_new_tokens\": 2}\n"
                                  "{\"id\": 8, \"prompt\": [1, 2], \"max_new_tokens\": 2, "
                                  "\"arrival_step\": 3}\n");
  const CliResult r = run_cli("serve-sim " + quote(kTiny) + " " + quote(path));
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr("7: finished, 2 tokens"));
  EXPECT_THAT(r.out, HasSubstr("as text: "));
  EXPECT_THAT(r.out, HasSubstr("step 0: 7:P@0+2  blocks 1/64  admitted 7"));
  EXPECT_THAT(r.out, HasSubstr("step 1: 7:D@2  blocks 1/64  finished 7"));
  EXPECT_THAT(r.out, HasSubstr("step 2: idle"));
  EXPECT_THAT(r.out, HasSubstr("step 3: 8:P@0+2"));
  EXPECT_THAT(r.out, HasSubstr("summary: 5 steps"));
  EXPECT_THAT(r.out, HasSubstr("2 finished, 0 rejected"));
}

TEST(ServeSim, PreemptionInASmallPoolKeepsTheTokensOfSoloRuns) {
  // 4 blocks of 4 positions; each request needs 3 blocks (6 + 7 - 1 = 12 positions).
  std::string requests;
  for (int id = 0; id < 3; ++id) {
    requests += "{\"id\": " + std::to_string(id) + ", \"prompt\": [" + std::to_string(id + 1) +
                ", 5, 9, 13, 17, 21], \"max_new_tokens\": 7}\n";
  }
  const json out = serve_sim(requests, "--blocks 4 --block-size 4");
  ASSERT_FALSE(out.empty());
  EXPECT_GT(out.at("summary").at("preemptions").get<int64_t>(), 0) << out.dump(2);
  EXPECT_EQ(out.at("summary").at("finished"), 3);
  EXPECT_LE(out.at("summary").at("peak_blocks").get<int64_t>(), 4);
  int64_t preemptions = 0;
  for (int id = 0; id < 3; ++id) {
    SCOPED_TRACE(id);
    EXPECT_EQ(request_with_id(out, id).at("status"), "finished");
    preemptions += request_with_id(out, id).at("preemptions").get<int64_t>();
    EXPECT_EQ(tokens_of(out, id),
              solo_tokens("--tokens " + std::to_string(id + 1) + ",5,9,13,17,21", 7));
  }
  EXPECT_EQ(preemptions, out.at("summary").at("preemptions").get<int64_t>());
  // Recomputation shows up as prefill tokens beyond the prompts.
  EXPECT_GT(out.at("summary").at("prefill_tokens").get<int64_t>(), 3 * 6);
}

TEST(ServeSim, RequestsTheEngineCannotServeAreRejectedWhileTheOthersFinish) {
  // 4 blocks of 4 positions hold 16: request 1 needs 10 + 10 - 1 = 19 positions, 5 blocks.
  const json out = serve_sim(
      "{\"id\": 0, \"prompt\": [1, 2, 3], \"max_new_tokens\": 3}\n"
      "{\"id\": 1, \"prompt\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], \"max_new_tokens\": 10}\n"
      "{\"id\": 2, \"prompt\": [1, 300], \"max_new_tokens\": 3}\n"
      "{\"id\": 3, \"prompt\": [4, 5], \"max_new_tokens\": 3, \"top_p\": 0}\n"
      "{\"id\": 4, \"prompt\": [6], \"max_new_tokens\": 2, \"arrival_step\": 1}\n",
      "--blocks 4 --block-size 4");
  ASSERT_FALSE(out.empty());
  const json& too_long = request_with_id(out, 1);
  EXPECT_EQ(too_long.at("status"), "rejected");
  EXPECT_THAT(too_long.value("error", ""), HasSubstr("5 KV blocks"));
  EXPECT_TRUE(too_long.at("tokens").empty());
  const json& out_of_vocab = request_with_id(out, 2);
  EXPECT_EQ(out_of_vocab.at("status"), "rejected");
  EXPECT_THAT(out_of_vocab.value("error", ""), HasSubstr("300"));
  EXPECT_THAT(request_with_id(out, 3).value("error", ""), HasSubstr("top_p"));
  for (const int id : {0, 4}) {
    EXPECT_EQ(request_with_id(out, id).at("status"), "finished");
    EXPECT_FALSE(request_with_id(out, id).contains("error"));
  }
  EXPECT_EQ(tokens_of(out, 0), solo_tokens("--tokens 1,2,3", 3));
  EXPECT_EQ(tokens_of(out, 4), solo_tokens("--tokens 6", 2));
  EXPECT_EQ(out.at("summary").at("rejected"), 3);
  EXPECT_EQ(out.at("summary").at("finished"), 2);
  for (const json& step : out.at("steps")) {
    for (const json& chunk : step.at("chunks")) {
      EXPECT_TRUE(chunk.at("request") == 0 || chunk.at("request") == 4) << step.dump();
    }
  }

  // The text output says why.
  const fs::path path = temp_file(
      "requests.jsonl", "{\"id\": 5, \"prompt\": [1, 256]}\n{\"id\": 6, \"prompt\": [1]}");
  const CliResult r = run_cli("serve-sim " + quote(kTiny) + " " + quote(path));
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr("5: rejected: prompt token 256"));
  EXPECT_THAT(r.out, HasSubstr("6: finished, 16 tokens"));
}

TEST(ServeSim, MalformedFilesExitOneNamingTheLineAndField) {
  const std::string good = "{\"id\": 0, \"prompt\": [1, 2]}\n";
  struct Case {
    std::string name;
    std::string contents;
    std::string expected;  // after "requests.jsonl:"
  };
  const std::vector<Case> cases = {
      {"invalid JSON", good + "{\"id\": 1, \"prompt\": [1, 2}\n", "2: malformed JSON: "},
      {"truncated JSON", "\n" + good + "{\"id\": 1,\n", "3: malformed JSON: "},
      {"not an object", good + "[1, 2, 3]\n", "2: expected a JSON object, got array"},
      {"a bare number", "7\n", "1: expected a JSON object, got number"},
      {"unknown field", good + "{\"id\": 1, \"prompt\": [1], \"max_tokens\": 3}\n",
       "2: unknown field \"max_tokens\""},
      {"missing id", good + good + "\n{\"prompt\": [1]}\n", "4: field \"id\" is missing"},
      {"id not an integer", "{\"id\": \"a\", \"prompt\": [1]}\n",
       "1: field \"id\": expected an integer from 0 to 4294967295, got \"a\""},
      {"negative id", "{\"id\": -1, \"prompt\": [1]}\n", "1: field \"id\": expected"},
      {"fractional id", "{\"id\": 1.5, \"prompt\": [1]}\n", "1: field \"id\": expected"},
      {"duplicate id", good + "{\"id\": 1, \"prompt\": [1]}\n" + good,
       "3: field \"id\": 0 is used twice (first on line 1)"},
      {"both prompts", "{\"id\": 0, \"prompt\": [1], \"prompt_text\": \"a\"}\n",
       "1: give \"prompt\" or \"prompt_text\", not both"},
      {"no prompt", good + "{\"id\": 1, \"max_new_tokens\": 3}\n",
       "2: field \"prompt\" or \"prompt_text\" is missing"},
      {"prompt not an array", "{\"id\": 0, \"prompt\": \"abc\"}\n",
       "1: field \"prompt\": expected an array of token ids, got \"abc\""},
      {"prompt element not an integer", "{\"id\": 0, \"prompt\": [1, \"x\"]}\n",
       "1: field \"prompt\": element 1: expected a 32-bit integer token id, got \"x\""},
      {"prompt element past int32", "{\"id\": 0, \"prompt\": [99999999999]}\n",
       "1: field \"prompt\": element 0: expected a 32-bit integer token id, got 99999999999"},
      {"prompt_text not a string", "{\"id\": 0, \"prompt_text\": 5}\n",
       "1: field \"prompt_text\": expected a string, got 5"},
      {"max_new_tokens a word",
       good + "{\"id\": 1, \"prompt\": [1], \"max_new_tokens\": \"ten\"}\n",
       "2: field \"max_new_tokens\": expected a non-negative integer, got \"ten\""},
      {"max_new_tokens negative", "{\"id\": 0, \"prompt\": [1], \"max_new_tokens\": -3}\n",
       "1: field \"max_new_tokens\": expected a non-negative integer, got -3"},
      {"max_new_tokens past 2^31 - 1",
       "{\"id\": 0, \"prompt\": [1], \"max_new_tokens\": 9223372036854775807}\n",
       "1: field \"max_new_tokens\": 9223372036854775807 is past the largest accepted, "
       "2147483647"},
      {"arrival_step negative", "{\"id\": 0, \"prompt\": [1], \"arrival_step\": -1}\n",
       "1: field \"arrival_step\": expected a non-negative integer, got -1"},
      {"arrival_step fractional", "{\"id\": 0, \"prompt\": [1], \"arrival_step\": 0.5}\n",
       "1: field \"arrival_step\": expected a non-negative integer, got 0.5"},
      {"temperature a string", "{\"id\": 0, \"prompt\": [1], \"temperature\": \"hot\"}\n",
       "1: field \"temperature\": expected a number, got \"hot\""},
      {"top_p null", "{\"id\": 0, \"prompt\": [1], \"top_p\": null}\n",
       "1: field \"top_p\": expected a number, got null"},
      {"top_k fractional", "{\"id\": 0, \"prompt\": [1], \"top_k\": 2.5}\n",
       "1: field \"top_k\": expected an integer, got 2.5"},
      {"seed negative", "{\"id\": 0, \"prompt\": [1], \"seed\": -4}\n",
       "1: field \"seed\": expected an unsigned 64-bit integer, got -4"},
      {"no requests at all", "\n  \n", " no requests"},
      {"number overflow", good + "{\"id\": 1, \"prompt\": [1], \"temperature\": 1e999}\n",
       "2: key \"temperature\": number 1e999 is out of the range of a double"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path path = temp_file("requests.jsonl", c.contents);
    const CliResult r = run_cli("serve-sim " + quote(kTiny) + " " + quote(path));
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_THAT(r.err, HasSubstr(path.string() + ":" + c.expected)) << describe(r);
    EXPECT_TRUE(r.out.empty()) << r.out;  // nothing ran
  }
}

TEST(ServeSim, EveryMalformedLineIsReported) {
  const fs::path path = temp_file("requests.jsonl",
                                  "{\"id\": 0, \"prompt\": [1], \"max_new_tokens\": \"ten\"}\n"
                                  "{\"id\": 1, \"prompt\": [1]}\n"
                                  "{\"id\": 2, \"prompt\": [1], \"top_k\": \"x\"}\n");
  const CliResult r = run_cli("serve-sim " + quote(kTiny) + " " + quote(path));
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr(path.string() + ":1: field \"max_new_tokens\""));
  EXPECT_THAT(r.err, HasSubstr(path.string() + ":3: field \"top_k\""));
  EXPECT_THAT(r.err, Not(HasSubstr(":2:")));
}

TEST(ServeSim, ANumberOverflowIsOneMalformedLineAmongOthers) {
  const fs::path path = temp_file("requests.jsonl",
                                  "{\"id\": 0, \"prompt\": [1], \"top_p\": -1e400}\n"
                                  "{\"id\": 1, \"prompt\": [1]}\n"
                                  "{\"id\": 2, \"prompt\": [1], \"top_k\": \"x\"}\n");
  const CliResult r = run_cli("serve-sim " + quote(kTiny) + " " + quote(path));
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr(path.string() + ":1: key \"top_p\": number -1e400"));
  EXPECT_THAT(r.err, HasSubstr(path.string() + ":3: field \"top_k\""));
}

// The idle steps before a late arrival are skipped, not computed one by one: the last accepted
// arrival step is served at once.
TEST(ServeSim, ALateArrivalIsReachedAtOnce) {
  const json out = serve_sim(
      "{\"id\": 0, \"prompt\": [1, 2], \"max_new_tokens\": 2, \"arrival_step\": 2147483647}\n");
  const json& request = request_with_id(out, 0);
  EXPECT_EQ(request.value("status", ""), "finished");
  EXPECT_EQ(request.value("first_token_step", json()), 2147483647);
  EXPECT_EQ(request.value("finished_step", json()), 2147483648);
  EXPECT_EQ(tokens_of(out, 0), solo_tokens("--tokens 1,2", 2));
  EXPECT_EQ(out.at("summary").at("steps"), 2147483649);
}

TEST(ServeSim, UsageErrorsExitTwoAndAMissingFileExitsOne) {
  for (const std::string& args : {std::string("serve-sim"), "serve-sim " + quote(kTiny),
                                  "serve-sim " + quote(kTiny) + " x.jsonl --blocks 0",
                                  "serve-sim " + quote(kTiny) + " x.jsonl --max-sequences -1"}) {
    SCOPED_TRACE(args);
    const CliResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << describe(r);
  }
  const CliResult r = run_cli("serve-sim " + quote(kTiny) + " /nonexistent/requests.jsonl");
  EXPECT_EQ(r.exit_code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/requests.jsonl"));
}

}  // namespace
}  // namespace moeref::cli_tests
