// What each golden tensor is: the op that produced it and the tolerance class it is checked with.
//
// Model-case tensors are named "<call>/<traced name>" (call = "prefill" or "decode.i", traced name
// as in docs/tracing.md) or are generation outputs ("greedy_tokens", "sampled_tokens"). Op-level
// cases name their outputs after the op ("out", "probs", ...). Tolerance classes:
//   exact        integers (expert indices, kept flags, tokens): equal, or a documented near-tie
//   activation   hidden states, projections, expert outputs, losses
//   probability  values in [0, 1] (attention and router probabilities, top-k weights)
//   logits       the LM head's output, which greedy decoding reads
#pragma once

#include <string>
#include <string_view>

namespace moeref::golden {

enum class ToleranceClass { kExact, kActivation, kProbability, kLogits };

const char* tolerance_class_name(ToleranceClass c);
// Throws std::invalid_argument naming the unknown class.
ToleranceClass tolerance_class_from_name(std::string_view name);

struct TensorKind {
  std::string op;
  ToleranceClass tolerance = ToleranceClass::kActivation;
};

// Throws std::invalid_argument for a name that no traced tensor has.
TensorKind classify_model_tensor(std::string_view name);

// The traced name without its "<call>/" prefix: "decode.2/layers.0.attn.q" -> "layers.0.attn.q".
std::string_view traced_name(std::string_view name);
// The call prefix including the slash ("decode.2/"), or "" for generation outputs.
std::string_view call_prefix(std::string_view name);

}  // namespace moeref::golden
