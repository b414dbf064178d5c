#include "ref/generation/engine.h"

#include <algorithm>
#include <span>
#include <stdexcept>

#include "ref/generation/generate.h"

namespace moeref {

const char* request_status_name(RequestStatus status) {
  switch (status) {
    case RequestStatus::kPending:
      return "pending";
    case RequestStatus::kWaiting:
      return "waiting";
    case RequestStatus::kRunning:
      return "running";
    case RequestStatus::kFinished:
      return "finished";
    case RequestStatus::kRejected:
      return "rejected";
  }
  return "?";
}

nlohmann::json summary_json(const EngineSummary& s) {
  return {{"steps", s.steps},
          {"prefill_tokens", s.prefill_tokens},
          {"decode_tokens", s.decode_tokens},
          {"generated_tokens", s.generated_tokens},
          {"peak_blocks", s.peak_blocks},
          {"preemptions", s.preemptions},
          {"finished", s.finished},
          {"rejected", s.rejected}};
}

Engine::Engine(const Model& model, EngineLimits limits)
    : model_(model), limits_(limits), cache_(model.config(), limits.n_blocks, limits.block_size) {
  if (limits.max_sequences < 1 || limits.max_tokens_per_step < 1) {
    throw std::invalid_argument(
        "the engine needs max_sequences and max_tokens_per_step of at "
        "least 1");
  }
}

std::string Engine::rejection(const EngineRequest& request) const {
  try {
    check_generation_request(model_.config(), {request.prompt, request.max_new_tokens,
                                               request.sampling, 0, std::nullopt, 0});
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  // The last generated token is never fed back, so its K/V never needs a place.
  const int64_t positions = static_cast<int64_t>(request.prompt.size()) +
                            std::max<int64_t>(request.max_new_tokens, 1) - 1;
  if (cache_.blocks_for(positions) > cache_.n_blocks()) {
    return "it needs " + std::to_string(cache_.blocks_for(positions)) + " KV blocks of " +
           std::to_string(cache_.block_size()) + " positions and the pool has " +
           std::to_string(cache_.n_blocks());
  }
  return "";
}

void Engine::submit(EngineRequest request) {
  if (outcomes_.contains(request.id)) {
    throw std::invalid_argument("request id " + std::to_string(request.id) + " is used twice");
  }
  RequestOutcome& outcome = outcomes_[request.id];
  outcome.id = request.id;
  outcome.error = rejection(request);
  if (!outcome.error.empty()) {
    outcome.status = RequestStatus::kRejected;
    ++summary_.rejected;
    return;
  }
  if (request.max_new_tokens == 0) {  // nothing to generate: done without a step, as generate()
    outcome.status = RequestStatus::kFinished;
    ++summary_.finished;
    return;
  }
  outcome.status = RequestStatus::kPending;
  pending_.push_back(std::move(request));
}

bool Engine::done() const { return pending_.empty() && waiting_.empty() && running_.empty(); }

void Engine::preempt_newest() {
  Sequence victim = std::move(running_.back());
  running_.pop_back();
  cache_.release(victim.request.id);
  victim.computed = 0;  // recomputed from its tokens when readmitted
  victim.decoding = false;
  RequestOutcome& outcome = outcomes_[victim.request.id];
  outcome.status = RequestStatus::kWaiting;
  ++outcome.preemptions;
  ++summary_.preemptions;
  waiting_.push_front(std::move(victim));
}

void Engine::finish(int64_t id) {
  cache_.release(id);
  running_.erase(std::find_if(running_.begin(), running_.end(),
                              [&](const Sequence& s) { return s.request.id == id; }));
  outcomes_[id].status = RequestStatus::kFinished;
  ++summary_.finished;
}

int64_t Engine::skip_idle_steps() {
  if (!waiting_.empty() || !running_.empty() || pending_.empty()) return 0;
  const auto next = std::min_element(pending_.begin(), pending_.end(),
                                     [](const EngineRequest& a, const EngineRequest& b) {
                                       return a.arrival_step < b.arrival_step;
                                     });
  const int64_t skipped = std::max<int64_t>(next->arrival_step - step_, 0);
  step_ += skipped;
  summary_.steps += skipped;
  return skipped;
}

StepRecord Engine::step(Tracer* tracer) {
  StepRecord record;
  record.step = step_;

  // 1. Arrivals, in submission order.
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->arrival_step > step_) {
      ++it;
      continue;
    }
    outcomes_[it->id].status = RequestStatus::kWaiting;
    waiting_.push_back({*it, it->prompt, 0});
    it = pending_.erase(it);
  }

  // 2. Running sequences, oldest first: a decode token or the next prefill chunk each.
  int64_t budget = limits_.max_tokens_per_step;
  auto schedule = [&](const Sequence& seq, int64_t n_tokens) {
    record.chunks.push_back({seq.request.id, seq.computed, n_tokens, !seq.decoding});
    budget -= n_tokens;
  };
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    const int64_t want =
        std::min(static_cast<int64_t>(running_[i].tokens.size()) - running_[i].computed, budget);
    bool preempted_itself = false;
    while (!cache_.reserve(running_[i].request.id, running_[i].computed + want)) {
      preempted_itself = i + 1 == running_.size();
      record.preempted.push_back(running_.back().request.id);
      preempt_newest();
      if (preempted_itself) break;
    }
    if (preempted_itself) break;
    schedule(running_[i], want);
  }

  // 3. Admissions, first come first served; none in a step that had to preempt.
  while (record.preempted.empty() && !waiting_.empty() &&
         static_cast<int64_t>(running_.size()) < limits_.max_sequences && budget > 0) {
    Sequence& next = waiting_.front();
    const int64_t want = std::min(static_cast<int64_t>(next.tokens.size()), budget);
    if (!cache_.reserve(next.request.id, want)) break;
    record.admitted.push_back(next.request.id);
    outcomes_[next.request.id].status = RequestStatus::kRunning;
    running_.push_back(std::move(next));
    waiting_.pop_front();
    schedule(running_.back(), want);
  }

  auto sequence = [&](int64_t id) -> Sequence& {
    return *std::find_if(running_.begin(), running_.end(),
                         [&](const Sequence& s) { return s.request.id == id; });
  };
  for (const ScheduledChunk& chunk : record.chunks) {
    record.block_tables.push_back(cache_.block_table(chunk.request));
    (chunk.prefill ? summary_.prefill_tokens : summary_.decode_tokens) += chunk.n_tokens;
  }
  record.used_blocks = cache_.used_blocks();
  record.running = static_cast<int64_t>(running_.size());
  summary_.peak_blocks = std::max(summary_.peak_blocks, record.used_blocks);

  // 4. One forward pass over the ragged batch.
  std::vector<SequenceInput> inputs;
  for (const ScheduledChunk& chunk : record.chunks) {
    Sequence& seq = sequence(chunk.request);
    inputs.push_back({std::span(seq.tokens)
                          .subspan(static_cast<size_t>(chunk.start_position),
                                   static_cast<size_t>(chunk.n_tokens)),
                      chunk.start_position, cache_.views(chunk.request), SequenceImage{}});
  }
  Tensor logits;
  if (!inputs.empty()) logits = model_.forward_batch(inputs, tracer).logits;

  // 5. Sampling for every sequence whose known tokens are now all computed.
  const int64_t vocab = model_.config().vocab_size;
  int64_t row = 0;
  std::vector<int64_t> finishing;
  for (const ScheduledChunk& chunk : record.chunks) {
    Sequence& seq = sequence(chunk.request);
    row += chunk.n_tokens;
    seq.computed += chunk.n_tokens;
    if (seq.computed != static_cast<int64_t>(seq.tokens.size())) continue;
    const std::span<const float> last(logits.row(row - 1), static_cast<size_t>(vocab));
    const auto position = static_cast<uint32_t>(seq.tokens.size());
    const int32_t token =
        sample_token(last, seq.request.sampling, position, static_cast<uint32_t>(seq.request.id));
    seq.tokens.push_back(token);
    seq.decoding = true;
    RequestOutcome& outcome = outcomes_[seq.request.id];
    outcome.tokens.push_back(token);
    outcome.logits.insert(outcome.logits.end(), last.begin(), last.end());
    record.sampled.emplace_back(seq.request.id, token);
    ++summary_.generated_tokens;
    outcome.stopped_at_eos = token == model_.config().eos_token_id;
    if (outcome.stopped_at_eos ||
        static_cast<int64_t>(outcome.tokens.size()) == seq.request.max_new_tokens) {
      finishing.push_back(seq.request.id);
    }
  }
  for (int64_t id : finishing) finish(id);
  record.finished = finishing;

  if (tracer != nullptr) {
    std::vector<int32_t> schedule_rows, sampled_rows, tables;
    size_t widest = 0;
    for (const auto& table : record.block_tables) widest = std::max(widest, table.size());
    for (size_t i = 0; i < record.chunks.size(); ++i) {
      const ScheduledChunk& c = record.chunks[i];
      for (int64_t v : {c.request, c.start_position, c.n_tokens, static_cast<int64_t>(c.prefill)}) {
        schedule_rows.push_back(static_cast<int32_t>(v));
      }
      std::vector<int32_t> padded = record.block_tables[i];
      padded.resize(widest, -1);
      tables.insert(tables.end(), padded.begin(), padded.end());
    }
    for (const auto& [id, token] : record.sampled) {
      sampled_rows.push_back(static_cast<int32_t>(id));
      sampled_rows.push_back(token);
    }
    const auto n_chunks = static_cast<int64_t>(record.chunks.size());
    tracer->record("schedule", std::vector<int64_t>{n_chunks, 4}, std::span(schedule_rows));
    tracer->record("block_tables", std::vector<int64_t>{n_chunks, static_cast<int64_t>(widest)},
                   std::span(tables));
    tracer->record("sampled", std::vector<int64_t>{static_cast<int64_t>(record.sampled.size()), 2},
                   std::span(sampled_rows));
  }
  ++step_;
  ++summary_.steps;
  return record;
}

}  // namespace moeref
