// A continuous-batching engine over the paged KV cache (Orca, Yu et al. 2022; vLLM, Kwon et al.
// 2023): the reference for what a serving engine must produce, whatever its batches.
//
// Iteration-level scheduling (docs/batching.md). Each step:
//   1. requests whose arrival_step has come join the waiting queue, in arrival order (ties: the
//      order they were submitted);
//   2. running sequences, oldest admission first, are scheduled: each its next token (decode), or
//      the next chunk of its prompt (chunked prefill), within the step's token budget;
//   3. waiting requests are admitted first come, first served, while fewer than max_sequences run,
//      budget remains and the pool has blocks for their first chunk; the queue is not skipped;
//   4. one forward pass runs over the ragged batch of all scheduled chunks (Model::forward_batch);
//   5. every sequence whose chunk reached the end of its known tokens samples its next token
//      (ref/generation/sampling.h, Philox counter {0, position, request id, 0}); a sequence that
//      emits EOS or reaches max_new_tokens finishes and frees its blocks.
// When a scheduled sequence needs a block and none is free, the newest running sequence is
// preempted: its blocks are freed and it returns to the front of the waiting queue with the tokens
// it generated, to be recomputed (prefilled again) when readmitted.
//
// Batch invariance: every op but attention works row by row and attention reads only the
// sequence's own blocks, so each request's tokens and logits are bitwise those of the request run
// alone, whatever the batch, the chunking, the arrival order or the preemptions. Capacity-factor
// MoE (capacity_factor > 0) is the exception: which tokens are dropped depends on the batch.
//
// Requests that can never be served are rejected when submitted, with the reason, and the others
// go on: an invalid prompt or sampling parameters, prompt + max_new_tokens past max_seq_len, or
// more blocks than the whole pool holds. A repeated request id throws std::invalid_argument. A
// request for 0 new tokens finishes when submitted.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ref/generation/sampling.h"
#include "ref/model/model.h"
#include "ref/model/paged_kv_cache.h"
#include "ref/model/tracer.h"

namespace moeref {

struct EngineRequest {
  int64_t id = 0;  // also counter word 2 of its sampling draws
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 16;
  SamplingParams sampling;
  int64_t arrival_step = 0;
};

struct EngineLimits {
  int64_t max_sequences = 8;         // running at once
  int64_t max_tokens_per_step = 64;  // decode tokens and prefill chunks together
  int64_t n_blocks = 64;
  int64_t block_size = 8;
};

enum class RequestStatus { kPending, kWaiting, kRunning, kFinished, kRejected };
const char* request_status_name(RequestStatus status);

struct RequestOutcome {
  int64_t id = 0;
  RequestStatus status = RequestStatus::kPending;
  std::vector<int32_t> tokens;  // generated
  std::vector<float> logits;    // [tokens, vocab]: the row each token was chosen from
  bool stopped_at_eos = false;
  int64_t preemptions = 0;
  std::string error;  // why it was rejected
};

struct ScheduledChunk {
  int64_t request = 0;
  int64_t start_position = 0;
  int64_t n_tokens = 0;
  bool prefill = false;  // part of a prompt (or of a recomputation), not a decode token
};

struct StepRecord {
  int64_t step = 0;
  std::vector<ScheduledChunk> chunks;              // in batch order
  std::vector<std::vector<int32_t>> block_tables;  // of each chunk's sequence, this step
  std::vector<int64_t> admitted;
  std::vector<int64_t> preempted;
  std::vector<int64_t> finished;
  std::vector<std::pair<int64_t, int32_t>> sampled;  // (request, token)
  int64_t running = 0;
  int64_t used_blocks = 0;
};

struct EngineSummary {
  int64_t steps = 0;
  int64_t prefill_tokens = 0;  // recomputations included
  int64_t decode_tokens = 0;   // tokens fed back for the next one
  int64_t generated_tokens = 0;
  int64_t peak_blocks = 0;
  int64_t preemptions = 0;
  int64_t finished = 0;
  int64_t rejected = 0;
};

// Every field of the summary, under its own name: what golden sets and `moeref serve-sim --json`
// record.
nlohmann::json summary_json(const EngineSummary& summary);

class Engine {
 public:
  // Throws std::invalid_argument for limits below 1.
  Engine(const Model& model, EngineLimits limits);

  void submit(EngineRequest request);
  bool done() const;  // nothing pending, waiting or running
  // One iteration. With a tracer, records "schedule" [chunks, 4] (request, start position,
  // tokens, prefill), "block_tables" [chunks, longest table] (padded with -1), "sampled"
  // [sampled, 2] (request, token) and the forward pass's traced tensors.
  StepRecord step(Tracer* tracer = nullptr);
  // When nothing is waiting or running, moves on to the step at which the next pending request
  // arrives. The steps in between would be idle (nothing scheduled, sampled or traced), so they
  // are counted in summary().steps as if stepped through, and the outcomes and the records of
  // the steps that follow are the same. Returns the number of steps skipped.
  int64_t skip_idle_steps();

  const std::map<int64_t, RequestOutcome>& outcomes() const { return outcomes_; }
  const EngineSummary& summary() const { return summary_; }
  const PagedKvCache& cache() const { return cache_; }
  const EngineLimits& limits() const { return limits_; }

 private:
  struct Sequence {
    EngineRequest request;
    std::vector<int32_t> tokens;  // prompt and generated
    int64_t computed = 0;         // tokens whose K/V are in the cache
    bool decoding = false;        // its known tokens were all computed since its last admission
  };

  std::string rejection(const EngineRequest& request) const;
  void preempt_newest();
  void finish(int64_t id);

  const Model& model_;
  EngineLimits limits_;
  PagedKvCache cache_;
  int64_t step_ = 0;
  std::vector<EngineRequest> pending_;  // not yet arrived, in submission order
  std::deque<Sequence> waiting_;
  std::vector<Sequence> running_;  // in admission order
  std::map<int64_t, RequestOutcome> outcomes_;
  EngineSummary summary_;
};

}  // namespace moeref
