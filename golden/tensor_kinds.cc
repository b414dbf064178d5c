#include "golden/tensor_kinds.h"

#include <stdexcept>
#include <utility>
#include <vector>

namespace moeref::golden {

namespace {

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

}  // namespace

const char* tolerance_class_name(ToleranceClass c) {
  switch (c) {
    case ToleranceClass::kExact:
      return "exact";
    case ToleranceClass::kActivation:
      return "activation";
    case ToleranceClass::kProbability:
      return "probability";
    case ToleranceClass::kLogits:
      return "logits";
  }
  return "?";
}

ToleranceClass tolerance_class_from_name(std::string_view name) {
  for (ToleranceClass c : {ToleranceClass::kExact, ToleranceClass::kActivation,
                           ToleranceClass::kProbability, ToleranceClass::kLogits}) {
    if (name == tolerance_class_name(c)) return c;
  }
  throw std::invalid_argument("unknown tolerance class \"" + std::string(name) + "\"");
}

std::string_view call_prefix(std::string_view name) {
  const size_t slash = name.find('/');
  return slash == std::string_view::npos ? std::string_view() : name.substr(0, slash + 1);
}

std::string_view traced_name(std::string_view name) {
  return name.substr(call_prefix(name).size());
}

TensorKind classify_model_tensor(std::string_view name) {
  using C = ToleranceClass;
  // The vision tower's names (ref/model/vision_encoder.h, ref/model/vision_block.h), under
  // "vision.".
  static const std::vector<std::pair<std::string_view, TensorKind>> vision_by_suffix = {
      {"vision.pixels", {"image_input", C::kActivation}},
      {"vision.patches", {"patchify", C::kActivation}},
      {"vision.embed.out", {"patch_embedding", C::kActivation}},
      {"norm.out", {"layer_norm", C::kActivation}},
      {"attn.q", {"linear", C::kActivation}},
      {"attn.k", {"linear", C::kActivation}},
      {"attn.v", {"linear", C::kActivation}},
      {"attn.probs", {"bidirectional_softmax", C::kProbability}},
      {"attn.context", {"attention", C::kActivation}},
      {"attn.out", {"linear", C::kActivation}},
      {"attn.residual", {"residual_add", C::kActivation}},
      {"mlp.hidden", {"linear_gelu", C::kActivation}},
      {"mlp.out", {"linear", C::kActivation}},
      {"vision.resampler.out", {"layer_norm", C::kActivation}},
      {"vision.tokens", {"projector", C::kActivation}},
      {".out", {"residual_add", C::kActivation}},
  };
  static const std::vector<std::pair<std::string_view, TensorKind>> by_suffix = {
      // The gated cross-attention blocks (ref/model/cross_attention.h), before "attn.q" and the
      // like,
      // which "xattn.q" also ends with.
      {"xattn.q", {"linear_qk_norm", C::kActivation}},
      {"xattn.k", {"linear_qk_norm", C::kActivation}},
      {"xattn.v", {"linear", C::kActivation}},
      {"xattn.probs", {"cross_attention_softmax", C::kProbability}},
      {"xattn.context", {"cross_attention", C::kActivation}},
      {"xattn.attn_out", {"linear", C::kActivation}},
      {"xattn.attn_gated", {"tanh_gate", C::kActivation}},
      {"xattn.attn_residual", {"residual_add", C::kActivation}},
      {"xattn.ffn_gated", {"tanh_gate", C::kActivation}},
      {"embed.out", {"embedding", C::kActivation}},
      {"attn_norm.out", {"norm", C::kActivation}},
      {"ffn_norm.out", {"norm", C::kActivation}},
      {"final_norm.out", {"norm", C::kActivation}},
      {"attn.q", {"linear_rope", C::kActivation}},
      {"attn.k", {"linear_rope", C::kActivation}},
      {"attn.v", {"linear", C::kActivation}},
      {"attn.probs", {"attention_softmax", C::kProbability}},
      {"attn.context", {"attention", C::kActivation}},
      {"attn.out", {"linear", C::kActivation}},
      {"attn.residual", {"residual_add", C::kActivation}},
      {"moe.router_logits", {"linear", C::kActivation}},
      {"moe.router_probs", {"softmax", C::kProbability}},
      {"moe.topk_indices", {"top_k", C::kExact}},
      {"moe.topk_weights", {"top_k", C::kProbability}},
      {"moe.kept", {"capacity", C::kExact}},
      {"moe.expert_outputs", {"expert_ffn", C::kActivation}},
      {"moe.out", {"moe_combine", C::kActivation}},
      {"moe.aux_loss", {"load_balancing_loss", C::kActivation}},
      {"moe.z_loss", {"router_z_loss", C::kActivation}},
      {"ffn.out", {"dense_ffn", C::kActivation}},
      {"logits", {"lm_head", C::kLogits}},
      {"greedy_tokens", {"greedy", C::kExact}},
      {"sampled_tokens", {"sampling", C::kExact}},
      {".out", {"residual_add", C::kActivation}},  // layers.L.out, after the more specific names
  };
  const std::string_view traced = traced_name(name);
  const bool in_tower = traced.starts_with("vision.");
  for (const auto& [suffix, kind] : in_tower ? vision_by_suffix : by_suffix) {
    if (ends_with(traced, suffix)) return kind;
  }
  throw std::invalid_argument("\"" + std::string(name) + "\" is not a traced tensor name");
}

}  // namespace moeref::golden
