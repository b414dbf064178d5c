#include "golden/batching_replay.h"

#include <algorithm>
#include <deque>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "golden/batching_case.h"
#include "ref/model/model.h"

namespace moeref::golden {

namespace {

struct Sequence {
  EngineRequest request;
  std::vector<int32_t> tokens;  // prompt and generated
  int64_t computed = 0;
  bool readmitted = false;                 // preempted at least once
  std::vector<int32_t> table;              // its block table at the last step it ran
  std::vector<int32_t> before_preemption;  // its block table when it was last preempted
  std::vector<int32_t> generated;
  std::vector<float> logits;  // [generated, vocab]: the rows the tokens were picked from
};

// One part of a chunk with contiguous positions: the whole chunk, unless a fault splits it.
struct Part {
  int64_t first_token = 0;  // index into the sequence's tokens
  int64_t n_tokens = 0;
  int64_t start_position = 0;
};

std::vector<int32_t> table_row(const std::vector<int32_t>& tables, int64_t width, int64_t row) {
  std::vector<int32_t> table;
  for (int64_t i = 0; i < width; ++i) {
    const int32_t block = tables[row * width + i];
    if (block >= 0) table.push_back(block);
  }
  return table;
}

std::vector<Part> parts_of(const Sequence& s, int64_t start, int64_t n, bool prefill,
                           BatchingFault fault) {
  const int64_t prompt = static_cast<int64_t>(s.request.prompt.size());
  const bool restart = fault == BatchingFault::kPositionsRestartAfterPreemption && s.readmitted &&
                       prefill && start + n > prompt;
  if (!restart) return {{start, n, start}};
  std::vector<Part> parts;
  if (start < prompt) parts.push_back({start, prompt - start, start});
  const int64_t first = std::max(start, prompt);
  parts.push_back({first, start + n - first, first - prompt});
  return parts;
}

// The table the sequence's K/V go through: its own, or with the fault, its table from before the
// preemption as far as that reaches.
std::vector<int32_t> table_used(const Sequence& s, BatchingFault fault) {
  if (fault != BatchingFault::kStaleBlockTableAfterPreemption || !s.readmitted) return s.table;
  std::vector<int32_t> table = s.table;
  if (table.size() < s.before_preemption.size()) table.resize(s.before_preemption.size());
  std::copy(s.before_preemption.begin(), s.before_preemption.end(), table.begin());
  return table;
}

// The token fed back: the forced one where there is one in the vocabulary, else the picked one.
int32_t forced_token(const ForcedTokens* forced, const Sequence& s, int32_t picked, int64_t vocab) {
  if (forced == nullptr) return picked;
  const auto found = forced->find(s.request.id);
  if (found == forced->end() || s.generated.size() >= found->second.size()) return picked;
  const int32_t token = found->second[s.generated.size()];
  return token >= 0 && token < vocab ? token : picked;
}

}  // namespace

Candidate replay_batching_case(const GoldenSet& set, const Kernels& kernels,
                               const ModelWeights& weights, const TokenPicker& tokens,
                               BatchingFault fault, const ForcedTokens* forced) {
  if (set.kind() != "batching") throw GoldenError(set.dir().string() + ": not a batching case");
  const BatchingCaseSpec spec =
      batching_spec_from_manifest(set.manifest(), (set.dir() / "manifest.json").string());
  const ModelConfig& config = spec.config;
  const Model model(config, weights, kernels);
  const int64_t block_size = spec.limits.block_size;
  const int64_t vocab = config.vocab_size;
  const auto pool_size =
      static_cast<size_t>(spec.limits.n_blocks * config.n_kv_heads * block_size * config.head_dim);
  std::vector<std::vector<float>> keys(static_cast<size_t>(config.n_layers),
                                       std::vector<float>(pool_size));
  std::vector<std::vector<float>> values = keys;

  std::map<int64_t, Sequence> sequences;
  for (const EngineRequest& r : spec.requests) {
    Sequence& s = sequences[r.id];
    s.request = r;
    s.tokens = r.prompt;
  }

  TraceRecorder recorder;
  Candidate candidate;
  auto keep = [&](TensorRecord record) {
    const std::string name = record.name;
    candidate.insert_or_assign(name, std::move(record));
  };
  for (int64_t step = 0;; ++step) {
    const std::string prefix = "step." + std::to_string(step) + "/";
    if (!set.has_expected(prefix + "schedule")) break;
    const TensorRecord& schedule_record = set.expected_tensor(prefix + "schedule");
    const TensorRecord& tables_record = set.expected_tensor(prefix + "block_tables");
    const std::vector<int32_t> schedule = schedule_record.to_i32();
    const std::vector<int32_t> tables = tables_record.to_i32();
    const int64_t n_chunks = schedule_record.shape[0];
    const int64_t width = tables_record.shape[1];

    std::deque<std::vector<int32_t>> used_tables;  // stable storage for the views' spans
    std::vector<SequenceInput> inputs;
    for (int64_t c = 0; c < n_chunks; ++c) {
      Sequence& s = sequences.at(schedule[c * 4]);
      const int64_t start = schedule[c * 4 + 1];
      if (start == 0 && s.computed > 0) {
        s.readmitted = true;
        s.before_preemption = s.table;
        s.computed = 0;
      }
      s.table = table_row(tables, width, c);
      const std::vector<int32_t>& table = used_tables.emplace_back(table_used(s, fault));
      for (const Part& part :
           parts_of(s, start, schedule[c * 4 + 2], schedule[c * 4 + 3] != 0, fault)) {
        SequenceInput input{std::span(s.tokens).subspan(static_cast<size_t>(part.first_token),
                                                        static_cast<size_t>(part.n_tokens)),
                            part.start_position,
                            {},
                            SequenceImage{}};
        for (int64_t l = 0; l < config.n_layers; ++l) {
          input.kv.push_back({keys[l].data(), values[l].data(), table, block_size,
                              static_cast<int64_t>(table.size()) * block_size});
        }
        inputs.push_back(std::move(input));
      }
    }
    Tensor logits;
    if (!inputs.empty()) {
      PrefixedTracer step_tracer(recorder, prefix);
      logits = model.forward_batch(inputs, &step_tracer).logits;
    }

    std::vector<int32_t> sampled;
    int64_t row = 0;
    for (int64_t c = 0; c < n_chunks; ++c) {
      Sequence& s = sequences.at(schedule[c * 4]);
      const int64_t n = schedule[c * 4 + 2];
      row += n;
      s.computed += n;
      if (s.computed != static_cast<int64_t>(s.tokens.size())) continue;
      const Tensor chunk({n, vocab}, std::vector<float>(logits.row(row - n), logits.row(row)));
      const int32_t token =
          tokens.pick_from_call(chunk, s.request.sampling, static_cast<uint32_t>(s.tokens.size()),
                                static_cast<uint32_t>(s.request.id));
      const float* picked_row = chunk.row(tokens.row(chunk));
      s.tokens.push_back(forced_token(forced, s, token, vocab));
      s.generated.push_back(token);
      s.logits.insert(s.logits.end(), picked_row, picked_row + vocab);
      sampled.push_back(static_cast<int32_t>(s.request.id));
      sampled.push_back(token);
    }
    keep(schedule_record);
    keep(tables_record);
    keep(make_i32_record(prefix + "sampled", {static_cast<int64_t>(sampled.size()) / 2, 2},
                         sampled));
  }
  for (const TensorRecord& record : recorder.records()) keep(record);
  for (const auto& [id, s] : sequences) {
    const std::string prefix = "request." + std::to_string(id) + "/";
    const auto n = static_cast<int64_t>(s.generated.size());
    keep(make_i32_record(prefix + "tokens", {n}, s.generated));
    keep(make_f32_record(prefix + "logits", {n, vocab}, s.logits));
  }
  return candidate;
}

}  // namespace moeref::golden
