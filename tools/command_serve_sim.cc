// moeref serve-sim CONFIG REQUESTS.jsonl: replay a file of requests through the continuous-batching
// engine (ref/generation/engine.h) and show what each request got and what every step scheduled.
//
// REQUESTS.jsonl holds one JSON object a line (blank lines are skipped):
//   {"id": 0, "prompt": [1, 2, 3] | "prompt_text": "hi", "max_new_tokens": 16,
//    "temperature": 0, "top_k": 0, "top_p": 1, "seed": 0, "arrival_step": 0}
// Only "id" and one of "prompt" / "prompt_text" are required. A malformed file (bad JSON, a line
// that is not an object, an unknown field, a value of the wrong type, a missing or repeated id)
// is an error naming the file, the line and the field, and nothing runs. What only the engine can
// judge (token ids outside the vocabulary, sampling parameters out of range, a request too long
// for the context or the block pool) rejects that request alone, with the engine's reason.
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "ref/generation/engine.h"
#include "ref/io/json_text.h"
#include "tools/commands.h"
#include "tools/model_loading.h"
#include "tools/usage.h"

namespace moeref::cli {

namespace {

using nlohmann::json;

struct ServeSimOptions {
  std::string config_path;
  std::string requests_path;
  std::string weights_path;
  EngineLimits limits;
  bool json = false;
};

struct ParsedRequest {
  EngineRequest request;
  int64_t line = 0;
};

// A malformed line of the requests file.
class LineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The value as JSON, shortened when long.
std::string shown(const json& value) {
  std::string text = value.dump();
  constexpr size_t kLongest = 60;
  if (text.size() > kLongest) text = text.substr(0, kLongest - 3) + "...";
  return text;
}

[[noreturn]] void field_error(const std::string& field, const std::string& expected,
                              const json& value) {
  throw LineError("field \"" + field + "\": expected " + expected + ", got " + shown(value));
}

// An integer in [lowest, highest], or nullopt (floats such as 2.0 are not integers).
std::optional<int64_t> integer_in(const json& value, int64_t lowest, int64_t highest) {
  if (!value.is_number_integer()) return std::nullopt;
  if (value.is_number_unsigned()) {
    const auto v = value.get<uint64_t>();
    if (highest < 0 || v > static_cast<uint64_t>(highest)) return std::nullopt;
    const auto s = static_cast<int64_t>(v);
    return s >= lowest ? std::optional<int64_t>(s) : std::nullopt;
  }
  const auto v = value.get<int64_t>();
  return v >= lowest && v <= highest ? std::optional<int64_t>(v) : std::nullopt;
}

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// Counts and steps stop at 2^31 - 1, like positions, so that no sum of them overflows.
int64_t non_negative(const json& object, const std::string& field) {
  constexpr int64_t kLargest = std::numeric_limits<int32_t>::max();
  const json& value = object.at(field);
  const std::optional<int64_t> v = integer_in(value, 0, kInt64Max);
  if (!v) field_error(field, "a non-negative integer", value);
  if (*v > kLargest) {
    throw LineError("field \"" + field + "\": " + shown(value) + " is past the largest accepted, " +
                    std::to_string(kLargest));
  }
  return *v;
}

double number(const json& object, const std::string& field) {
  const json& value = object.at(field);
  if (!value.is_number()) field_error(field, "a number", value);
  return value.get<double>();
}

std::vector<int32_t> prompt_tokens(const json& value) {
  if (!value.is_array()) field_error("prompt", "an array of token ids", value);
  std::vector<int32_t> tokens;
  for (size_t i = 0; i < value.size(); ++i) {
    // Any 32-bit id is accepted here: the engine rejects those outside the vocabulary.
    const std::optional<int64_t> token = integer_in(value[i], std::numeric_limits<int32_t>::min(),
                                                    std::numeric_limits<int32_t>::max());
    if (!token) {
      throw LineError("field \"prompt\": element " + std::to_string(i) +
                      ": expected a 32-bit integer token id, got " + shown(value[i]));
    }
    tokens.push_back(static_cast<int32_t>(*token));
  }
  return tokens;
}

// One line's request; throws LineError saying what is wrong with it.
EngineRequest parse_request(const std::string& line) {
  json object;
  try {
    object = parse_json_text(line);
  } catch (const JsonTextError& e) {
    throw LineError(e.what());
  }
  if (!object.is_object()) {
    throw LineError(std::string("expected a JSON object, got ") + object.type_name() + " " +
                    shown(object));
  }
  static const std::vector<std::string> kFields = {
      "id",    "prompt", "prompt_text", "max_new_tokens", "temperature",
      "top_k", "top_p",  "seed",        "arrival_step"};
  for (const auto& [key, value] : object.items()) {
    if (std::find(kFields.begin(), kFields.end(), key) == kFields.end()) {
      throw LineError("unknown field \"" + key +
                      "\" (known: id, prompt, prompt_text, max_new_tokens, temperature, top_k, "
                      "top_p, seed, arrival_step)");
    }
  }

  EngineRequest request;
  if (!object.contains("id")) throw LineError("field \"id\" is missing");
  // The id is also the request word of the sampling counter, 32 bits (ref/generation/sampling.h).
  const std::optional<int64_t> id =
      integer_in(object.at("id"), 0, std::numeric_limits<uint32_t>::max());
  if (!id) field_error("id", "an integer from 0 to 4294967295", object.at("id"));
  request.id = *id;

  const bool has_prompt = object.contains("prompt");
  const bool has_text = object.contains("prompt_text");
  if (has_prompt == has_text) {
    throw LineError(has_prompt ? "give \"prompt\" or \"prompt_text\", not both"
                               : "field \"prompt\" or \"prompt_text\" is missing");
  }
  if (has_prompt) {
    request.prompt = prompt_tokens(object.at("prompt"));
  } else {
    const json& text = object.at("prompt_text");
    if (!text.is_string()) field_error("prompt_text", "a string", text);
    // One token a byte, whatever the vocabulary: the engine rejects bytes outside it.
    for (const char ch : text.get<std::string>()) {
      request.prompt.push_back(static_cast<unsigned char>(ch));
    }
  }
  if (object.contains("max_new_tokens")) {
    request.max_new_tokens = non_negative(object, "max_new_tokens");
  }
  if (object.contains("arrival_step")) request.arrival_step = non_negative(object, "arrival_step");
  if (object.contains("temperature")) request.sampling.temperature = number(object, "temperature");
  if (object.contains("top_p")) request.sampling.top_p = number(object, "top_p");
  if (object.contains("top_k")) {
    const std::optional<int64_t> top_k =
        integer_in(object.at("top_k"), std::numeric_limits<int64_t>::min(), kInt64Max);
    if (!top_k) field_error("top_k", "an integer", object.at("top_k"));
    request.sampling.top_k = *top_k;
  }
  if (object.contains("seed")) {
    const json& seed = object.at("seed");
    if (!seed.is_number_unsigned() && !(seed.is_number_integer() && seed.get<int64_t>() >= 0)) {
      field_error("seed", "an unsigned 64-bit integer", seed);
    }
    request.sampling.seed = seed.get<uint64_t>();
  }
  return request;
}

// Every request of the file, in file order, or every malformed line's message.
std::vector<ParsedRequest> read_requests(const std::string& path,
                                         std::vector<std::string>& errors) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    throw std::runtime_error(path + ": is a directory, not a requests file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error(path + ": cannot open the requests file: " + std::strerror(errno));
  }
  std::vector<ParsedRequest> requests;
  std::map<int64_t, int64_t> line_of_id;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    try {
      EngineRequest request = parse_request(line);
      const auto [it, inserted] = line_of_id.emplace(request.id, number);
      if (!inserted) {
        throw LineError("field \"id\": " + std::to_string(request.id) +
                        " is used twice (first on line " + std::to_string(it->second) + ")");
      }
      requests.push_back({std::move(request), number});
    } catch (const LineError& e) {
      errors.push_back(path + ":" + std::to_string(number) + ": " + e.what());
    }
  }
  if (errors.empty() && requests.empty()) errors.push_back(path + ": no requests");
  return requests;
}

// A step that scheduled nothing and preempted no one: waiting for arrivals.
bool idle(const StepRecord& record) { return record.chunks.empty() && record.preempted.empty(); }

// The engine serves the oldest running sequence every step, so each request it accepted is done
// within prompt + max_new_tokens + 2 steps of becoming the oldest: past this bound it is stuck.
int64_t step_bound(const std::vector<ParsedRequest>& requests, const Engine& engine) {
  int64_t bound = 16;
  for (const ParsedRequest& r : requests) {
    if (engine.outcomes().at(r.request.id).status == RequestStatus::kRejected) continue;
    bound = std::max(bound, r.request.arrival_step + 16);
  }
  for (const ParsedRequest& r : requests) {
    if (engine.outcomes().at(r.request.id).status == RequestStatus::kRejected) continue;
    bound += 2 * (static_cast<int64_t>(r.request.prompt.size()) + r.request.max_new_tokens + 2);
  }
  return bound;
}

struct RequestTimes {
  std::optional<int64_t> first_token_step;
  std::optional<int64_t> finished_step;
};

std::string id_list(const std::vector<int64_t>& ids) {
  std::string text;
  for (const int64_t id : ids) text += (text.empty() ? "" : " ") + std::to_string(id);
  return text;
}

// "id:P@start+tokens" for a prefill chunk, "id:D@position" for a decode token.
std::string chunk_text(const ScheduledChunk& c) {
  std::string text = std::to_string(c.request);
  text += c.prefill ? ":P@" : ":D@";
  text += std::to_string(c.start_position);
  if (c.prefill || c.n_tokens != 1) {
    text += '+';
    text += std::to_string(c.n_tokens);
  }
  return text;
}

// "1 step", "2 steps".
std::string counted(int64_t count, const char* noun) {
  std::string text = std::to_string(count);
  text += ' ';
  text += noun;
  if (count != 1) text += 's';
  return text;
}

json optional_json(const std::optional<int64_t>& value) {
  return value ? json(*value) : json(nullptr);
}

void print_json(const std::vector<ParsedRequest>& requests, const Engine& engine,
                const std::vector<StepRecord>& records,
                const std::map<int64_t, RequestTimes>& times) {
  json out_requests = json::array();
  for (const ParsedRequest& r : requests) {
    const RequestOutcome& outcome = engine.outcomes().at(r.request.id);
    const RequestTimes& t = times.at(r.request.id);
    json entry = {
        {"id", r.request.id},
        {"status", request_status_name(outcome.status)},
        {"prompt_tokens", r.request.prompt.size()},
        {"arrival_step", r.request.arrival_step},
        {"tokens", outcome.tokens},
        {"text", tokens_to_display_text(outcome.tokens)},
        {"stopped_at_eos", outcome.stopped_at_eos},
        {"preemptions", outcome.preemptions},
        {"first_token_step", optional_json(t.first_token_step)},
        {"finished_step", optional_json(t.finished_step)},
    };
    if (outcome.status == RequestStatus::kRejected) entry["error"] = outcome.error;
    out_requests.push_back(std::move(entry));
  }
  json out_steps = json::array();
  for (const StepRecord& record : records) {
    json chunks = json::array();
    for (size_t i = 0; i < record.chunks.size(); ++i) {
      const ScheduledChunk& c = record.chunks[i];
      chunks.push_back({{"request", c.request},
                        {"phase", c.prefill ? "prefill" : "decode"},
                        {"start", c.start_position},
                        {"tokens", c.n_tokens},
                        {"block_table", record.block_tables[i]}});
    }
    json sampled = json::array();
    for (const auto& [id, token] : record.sampled) sampled.push_back({id, token});
    out_steps.push_back({{"step", record.step},
                         {"chunks", std::move(chunks)},
                         {"used_blocks", record.used_blocks},
                         {"running", record.running},
                         {"admitted", record.admitted},
                         {"preempted", record.preempted},
                         {"finished", record.finished},
                         {"sampled", std::move(sampled)}});
  }
  const EngineLimits& limits = engine.limits();
  json summary = summary_json(engine.summary());
  summary["blocks"] = limits.n_blocks;
  summary["block_size"] = limits.block_size;
  summary["max_sequences"] = limits.max_sequences;
  summary["max_tokens_per_step"] = limits.max_tokens_per_step;
  const json out = {
      {"requests", std::move(out_requests)},
      {"steps", std::move(out_steps)},
      {"summary", std::move(summary)},
  };
  std::cout << out.dump(2) << "\n";
}

void print_text(const std::vector<ParsedRequest>& requests, const Engine& engine,
                const std::vector<StepRecord>& records,
                const std::map<int64_t, RequestTimes>& times) {
  std::printf("requests:\n");
  for (const ParsedRequest& r : requests) {
    const RequestOutcome& outcome = engine.outcomes().at(r.request.id);
    const RequestTimes& t = times.at(r.request.id);
    if (outcome.status == RequestStatus::kRejected) {
      std::printf("  %lld: rejected: %s\n", static_cast<long long>(r.request.id),
                  outcome.error.c_str());
      continue;
    }
    std::printf("  %lld: %s, %zu tokens%s:", static_cast<long long>(r.request.id),
                request_status_name(outcome.status), outcome.tokens.size(),
                outcome.stopped_at_eos ? " (stopped at EOS)" : "");
    for (const int32_t token : outcome.tokens) std::printf(" %d", token);
    std::printf("\n      as text: %s\n", tokens_to_display_text(outcome.tokens).c_str());
    std::printf("      prompt %zu tokens, arrived step %lld", r.request.prompt.size(),
                static_cast<long long>(r.request.arrival_step));
    if (t.first_token_step) {
      std::printf(", first token step %lld", static_cast<long long>(*t.first_token_step));
    }
    if (t.finished_step) {
      std::printf(", finished step %lld", static_cast<long long>(*t.finished_step));
    }
    std::printf(", %s\n", counted(outcome.preemptions, "preemption").c_str());
  }

  const EngineLimits& limits = engine.limits();
  std::printf("schedule (P prefill id:P@start+tokens, D decode id:D@position):\n");
  int64_t next = 0;  // the step after the last one printed
  auto print_idle = [&](int64_t upto) {
    if (upto == next + 1) std::printf("  step %lld: idle\n", static_cast<long long>(next));
    if (upto > next + 1) {
      std::printf("  steps %lld-%lld: idle\n", static_cast<long long>(next),
                  static_cast<long long>(upto - 1));
    }
  };
  for (const StepRecord& record : records) {
    print_idle(record.step);
    std::string line = "  step " + std::to_string(record.step) + ":";
    for (const ScheduledChunk& c : record.chunks) {
      line += ' ';
      line += chunk_text(c);
    }
    line +=
        "  blocks " + std::to_string(record.used_blocks) + "/" + std::to_string(limits.n_blocks);
    if (!record.admitted.empty()) line += "  admitted " + id_list(record.admitted);
    if (!record.preempted.empty()) line += "  preempted " + id_list(record.preempted);
    if (!record.finished.empty()) line += "  finished " + id_list(record.finished);
    std::printf("%s\n", line.c_str());
    next = record.step + 1;
  }
  print_idle(engine.summary().steps);

  const EngineSummary& s = engine.summary();
  std::printf(
      "summary: %s, %s, %s, %s, peak %lld/%lld KV blocks of %lld positions, %s, %lld finished, "
      "%lld rejected\n",
      counted(s.steps, "step").c_str(), counted(s.prefill_tokens, "prefill token").c_str(),
      counted(s.decode_tokens, "decode token").c_str(),
      counted(s.generated_tokens, "generated token").c_str(), static_cast<long long>(s.peak_blocks),
      static_cast<long long>(limits.n_blocks), static_cast<long long>(limits.block_size),
      counted(s.preemptions, "preemption").c_str(), static_cast<long long>(s.finished),
      static_cast<long long>(s.rejected));
}

int serve_sim(const ServeSimOptions& options) {
  std::vector<std::string> errors;
  const std::vector<ParsedRequest> requests = read_requests(options.requests_path, errors);
  if (!errors.empty()) {
    constexpr size_t kShown = 20;
    for (size_t i = 0; i < errors.size() && i < kShown; ++i) {
      std::fprintf(stderr, "moeref serve-sim: error: %s\n", errors[i].c_str());
    }
    if (errors.size() > kShown) {
      std::fprintf(stderr, "moeref serve-sim: error: ... and %zu more malformed lines\n",
                   errors.size() - kShown);
    }
    return 1;
  }

  const Model model = load_model(options.config_path, options.weights_path);
  Engine engine(model, options.limits);
  for (const ParsedRequest& r : requests) engine.submit(r.request);

  std::map<int64_t, RequestTimes> times;
  for (const ParsedRequest& r : requests) times[r.request.id];
  std::vector<StepRecord> records;  // all but idle steps
  const int64_t bound = step_bound(requests, engine);
  while (!engine.done()) {
    if (engine.summary().steps >= bound) {
      throw std::logic_error("the engine has not finished after " + std::to_string(bound) +
                             " steps; it is stuck (a bug in ref/generation/engine.cc)");
    }
    engine.skip_idle_steps();  // an arrival far ahead is reached at once, not step by step
    StepRecord record = engine.step();
    for (const auto& [id, token] : record.sampled) {
      if (!times[id].first_token_step) times[id].first_token_step = record.step;
    }
    for (const int64_t id : record.finished) times[id].finished_step = record.step;
    if (!idle(record)) records.push_back(std::move(record));
  }

  if (options.json) {
    print_json(requests, engine, records, times);
  } else {
    print_text(requests, engine, records, times);
  }
  return 0;
}

}  // namespace

Command register_serve_sim(CLI::App& app) {
  auto options = std::make_shared<ServeSimOptions>();
  EngineLimits& limits = options->limits;
  CLI::App* command = app.add_subcommand(
      "serve-sim",
      "Serve a file of requests with the continuous-batching engine and show the "
      "schedule");
  command->add_option("config", options->config_path, "Model config (JSON)")->required();
  command
      ->add_option("requests", options->requests_path,
                   "Requests, one JSON object a line: id, prompt or prompt_text, max_new_tokens, "
                   "temperature, top_k, top_p, seed, arrival_step")
      ->required();
  command->add_option("--weights", options->weights_path,
                      "Weights (safetensors); default: initialised from the config's seed");
  command->add_option("--max-sequences", limits.max_sequences, "Sequences running at once")
      ->capture_default_str()
      ->check(at_least(1));
  command
      ->add_option("--max-tokens-per-step", limits.max_tokens_per_step,
                   "Tokens a step computes, decode tokens and prefill chunks together")
      ->capture_default_str()
      ->check(at_least(1));
  command->add_option("--blocks", limits.n_blocks, "KV cache blocks in the pool")
      ->capture_default_str()
      ->check(at_least(1));
  command->add_option("--block-size", limits.block_size, "Positions a KV block holds")
      ->capture_default_str()
      ->check(at_least(1));
  command->add_flag("--json", options->json, "Print JSON");
  return {command, [options] { return serve_sim(*options); }};
}

}  // namespace moeref::cli
