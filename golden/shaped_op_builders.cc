#include "golden/shaped_op_builders.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>

#include "golden/margins.h"
#include "golden/op_case_builder.h"
#include "golden/tensor_kinds.h"
#include "ref/generation/philox.h"
#include "ref/generation/sampling.h"
#include "ref/model/feed_forward.h"
#include "ref/model/moe.h"
#include "ref/model/tracer.h"
#include "ref/ops/attention.h"
#include "ref/ops/softmax.h"

namespace moeref::golden::shaped {

using nlohmann::json;

double least_margin(const std::vector<Decision>& decisions) {
  double least = std::numeric_limits<double>::infinity();
  for (const Decision& d : decisions) least = std::min(least, d.margin);
  return least;
}

std::invalid_argument shape_error(const std::string& op, const std::string& key,
                                  const std::string& what) {
  return std::invalid_argument("shape \"" + key + "\" of op " + op + " " + what);
}

namespace {

void require_divides(const std::string& op, const Shape& s, const char* divisor,
                     const char* multiple) {
  if (s.count(multiple) % s.count(divisor) != 0) {
    throw shape_error(op, divisor,
                      "must divide " + std::string(multiple) + " (" +
                          std::to_string(s.count(multiple)) + "), got " +
                          std::to_string(s.count(divisor)));
  }
}

void require_at_most(const std::string& op, const Shape& s, const char* key, const char* bound) {
  if (s.count(key) > s.count(bound)) {
    throw shape_error(op, key,
                      "must be at most " + std::string(bound) + " (" +
                          std::to_string(s.count(bound)) + "), got " +
                          std::to_string(s.count(key)));
  }
}

std::vector<Decision> row_gaps(const std::vector<float>& scores, int64_t width, int64_t k,
                               const std::string& name) {
  std::vector<Decision> decisions;
  for (size_t row = 0; row * width < scores.size(); ++row) {
    const auto begin = scores.begin() + static_cast<std::ptrdiff_t>(row * width);
    decisions.push_back({name + " row " + std::to_string(row), top_gap({begin, begin + width}, k)});
  }
  return decisions;
}

Built norm_case(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels,
                bool layer_norm) {
  constexpr double kEps = 1e-5;
  const int64_t rows = s.count("rows"), d = s.count("d");
  CaseBuilder c(name, layer_norm ? "layer_norm" : "rms_norm",
                layer_norm ? "LayerNorm of each row, inputs off-centre so the mean matters"
                           : "RMSNorm of each row, eps inside the square root, gain after",
                {{"rows", rows}, {"d", d}, {"eps", kEps}}, seed);
  const std::vector<float> x = c.random("x", {rows, d}, 2.0f, layer_norm ? 3.0f : 0.0f);
  const std::vector<float> weight = c.random("weight", {d}, 0.5f, 1.0f);
  std::vector<float> y(x.size());
  if (layer_norm) {
    const std::vector<float> bias = c.random("bias", {d}, 0.5f);
    kernels.layer_norm(x.data(), weight.data(), bias.data(), kEps, y.data(), rows, d);
  } else {
    kernels.rms_norm(x.data(), weight.data(), kEps, y.data(), rows, d);
  }
  c.output(make_f32_record("out", {rows, d}, y), ToleranceClass::kActivation);
  return {c.finish(), {}};
}

}  // namespace

Built matmul(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels) {
  const int64_t rows = s.count("rows"), in = s.count("in"), out = s.count("out");
  CaseBuilder c(name, "matmul", "y[r, o] = sum_i x[r, i] * w[o, i], w in the [out, in] layout",
                {{"rows", rows}, {"in", in}, {"out", out}}, seed);
  const std::vector<float> x = c.random("x", {rows, in}, 1.0f);
  const std::vector<float> w = c.random("w", {out, in}, 0.25f);
  std::vector<float> y(static_cast<size_t>(rows * out));
  kernels.matmul(x.data(), w.data(), y.data(), rows, in, out);
  c.output(make_f32_record("out", {rows, out}, y), ToleranceClass::kActivation);
  return {c.finish(), {}};
}

Built rms_norm(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels) {
  return norm_case(s, name, seed, kernels, false);
}

Built layer_norm(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels) {
  return norm_case(s, name, seed, kernels, true);
}

Built rope_case(const RopeSpec& spec, const std::string& name, uint32_t seed,
                const Kernels& kernels) {
  const auto tokens = static_cast<int64_t>(spec.positions.size());
  json parameters = spec.extra_parameters;
  parameters["tokens"] = tokens;
  parameters["n_heads"] = spec.n_heads;
  parameters["head_dim"] = spec.head_dim;
  parameters["theta"] = spec.theta;
  parameters["positions"] = spec.positions;
  if (spec.scaling.kind != RopeScalingKind::kDefault) {
    parameters["rope_scaling"] = rope_scaling_to_json(spec.scaling);
  }
  CaseBuilder c(name, "rope", spec.description, parameters, seed);
  std::vector<float> x = c.random("x", {tokens, spec.n_heads, spec.head_dim}, 1.0f);
  c.input(make_i32_record("positions", {tokens}, spec.positions), spec.positions_how);
  kernels.rope(x.data(), to_int64(spec.positions), spec.n_heads, spec.head_dim, spec.theta,
               spec.scaling);
  c.output(make_f32_record("out", {tokens, spec.n_heads, spec.head_dim}, x),
           ToleranceClass::kActivation);
  return {c.finish(), {}};
}

Built rope(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels) {
  const int64_t tokens = s.count("tokens"), max_position = s.count("max_position");
  const int64_t head_dim = s.count("head_dim");
  if (head_dim % 2 != 0) {
    throw shape_error("rope", "head_dim", "must be even, got " + std::to_string(head_dim));
  }
  // t = 2u - 1 exactly, so (t + 1) / 2 gives u back.
  std::vector<int32_t> positions(static_cast<size_t>(tokens));
  const std::vector<float> t = unit_stream(name, "positions", tokens, seed);
  for (size_t i = 0; i < positions.size(); ++i) {
    const double u = (static_cast<double>(t[i]) + 1.0) / 2.0;
    positions[i] = static_cast<int32_t>(std::floor(u * static_cast<double>(max_position)));
  }
  return rope_case(
      {.n_heads = s.count("n_heads"),
       .head_dim = head_dim,
       .theta = s.real("theta"),
       .positions = std::move(positions),
       .positions_how = "floor(u * max_position), u = (t + 1) / 2 of the stream \"positions\"",
       .description = "rotate-half RoPE (pairs i, i + D/2) at positions below max_position",
       .extra_parameters = {{"max_position", max_position}}},
      name, seed, kernels);
}

Built softmax(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels) {
  const int64_t rows = s.count("rows"), n = s.count("n");
  CaseBuilder c(name, "softmax", "softmax over the last axis, max subtracted",
                {{"rows", rows}, {"n", n}}, seed);
  std::vector<float> x = c.random("x", {rows, n}, 4.0f);
  kernels.softmax(x.data(), rows, n);
  c.output(make_f32_record("out", {rows, n}, x), ToleranceClass::kProbability);
  return {c.finish(), {}};
}

Built attention(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels) {
  require_divides("attention", s, "n_kv_heads", "n_heads");
  constexpr int64_t kSpareSlots = 3;  // cache rows past the last position, never to be read
  const int64_t heads = s.count("n_heads"), kv_heads = s.count("n_kv_heads");
  const int64_t head_dim = s.count("head_dim"), cached = s.count("cached_positions");
  const int64_t new_tokens = s.count("new_tokens");
  const int64_t width = cached + new_tokens;
  const ref::AttentionDims dims{heads, kv_heads, head_dim, width + kSpareSlots};
  CaseBuilder c(name, "attention",
                "causal attention of T new queries over a cache holding P earlier positions; cache "
                "rows past P + T hold random values that must not be read",
                {{"n_heads", heads},
                 {"n_kv_heads", kv_heads},
                 {"head_dim", head_dim},
                 {"kv_capacity", dims.kv_capacity},
                 {"cached_positions", cached},
                 {"new_tokens", new_tokens},
                 {"probs_width", width}},
                seed);
  const std::vector<float> q = c.random("q", {new_tokens, heads, head_dim}, 1.0f);
  const std::vector<float> keys = c.random("keys", {kv_heads, dims.kv_capacity, head_dim}, 1.0f);
  const std::vector<float> values =
      c.random("values", {kv_heads, dims.kv_capacity, head_dim}, 1.0f);
  std::vector<int32_t> positions(static_cast<size_t>(new_tokens));
  for (int64_t t = 0; t < new_tokens; ++t) positions[t] = static_cast<int32_t>(cached + t);
  c.input(make_i32_record("positions", {new_tokens}, positions),
          "cached_positions + t for query t");
  std::vector<float> context(q.size());
  std::vector<float> probs(static_cast<size_t>(new_tokens * heads * width), 0.0f);
  kernels.attention(q.data(), keys.data(), values.data(), to_int64(positions), dims, context.data(),
                    probs.data(), width);
  c.output(make_f32_record("context", {new_tokens, heads, head_dim}, context),
           ToleranceClass::kActivation);
  c.output(make_f32_record("probs", {new_tokens, heads, width}, probs),
           ToleranceClass::kProbability);
  return {c.finish(), {}};
}

Built cross_attention(const Shape& s, const std::string& name, uint32_t seed,
                      const Kernels& kernels) {
  require_divides("cross_attention", s, "n_kv_heads", "n_heads");
  const int64_t heads = s.count("n_heads"), kv_heads = s.count("n_kv_heads");
  const int64_t head_dim = s.count("head_dim"), vision_tokens = s.count("vision_tokens");
  const int64_t queries = s.count("queries");
  CaseBuilder c(name, "cross_attention",
                "attention of T text queries over N_v vision tokens: no mask, no RoPE, scale "
                "1/sqrt(head_dim); query head h reads K/V head h / (H / G)",
                {{"n_heads", heads},
                 {"n_kv_heads", kv_heads},
                 {"head_dim", head_dim},
                 {"vision_tokens", vision_tokens},
                 {"queries", queries}},
                seed);
  const std::vector<float> q = c.random("q", {queries, heads, head_dim}, 1.0f);
  const std::vector<float> keys = c.random("keys", {kv_heads, vision_tokens, head_dim}, 1.0f);
  const std::vector<float> values = c.random("values", {kv_heads, vision_tokens, head_dim}, 1.0f);
  std::vector<float> context(q.size());
  std::vector<float> probs(static_cast<size_t>(queries * heads * vision_tokens));
  const std::vector<int64_t> last_vision_token(static_cast<size_t>(queries), vision_tokens - 1);
  kernels.attention(q.data(), keys.data(), values.data(), last_vision_token,
                    ref::AttentionDims(heads, kv_heads, head_dim, vision_tokens), context.data(),
                    probs.data(), vision_tokens);
  c.output(make_f32_record("context", {queries, heads, head_dim}, context),
           ToleranceClass::kActivation);
  c.output(make_f32_record("probs", {queries, heads, vision_tokens}, probs),
           ToleranceClass::kProbability);
  return {c.finish(), {}};
}

Built top_k(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels) {
  require_at_most("top_k", s, "k", "n_experts");
  const int64_t tokens = s.count("tokens"), experts = s.count("n_experts"), k = s.count("k");
  const bool renormalize = s.count("renormalize") == 1;
  CaseBuilder c(
      name, "top_k",
      "router top-k of softmax(random logits): larger probability first, weights "
      "renormalised over the chosen k or not",
      {{"tokens", tokens}, {"n_experts", experts}, {"k", k}, {"renormalize", renormalize}}, seed);
  std::vector<float> probs = c.stream("probs", tokens * experts);
  for (float& p : probs) p *= 2.0f;
  ref::softmax(probs.data(), tokens, experts);  // makes the input: always the reference's
  c.input(make_f32_record("probs", {tokens, experts}, probs),
          "softmax over each row of 2 * t, t the stream of \"probs\"");
  std::vector<int32_t> indices(static_cast<size_t>(tokens * k));
  std::vector<float> weights(indices.size());
  kernels.select_top_k(probs.data(), tokens, experts, k, renormalize, indices.data(),
                       weights.data());
  c.output(make_i32_record("indices", {tokens, k}, indices), ToleranceClass::kExact);
  c.output(make_f32_record("weights", {tokens, k}, weights), ToleranceClass::kProbability);
  return {c.finish(), row_gaps(probs, experts, k, "indices")};
}

Built expert_ffn(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels) {
  const int64_t rows = s.count("rows"), d = s.count("d_model"), d_ff = s.count("d_ff");
  const Activation activation = s.activation();
  CaseBuilder c(
      name, "expert_ffn",
      activation == Activation::kSwiGlu ? "expert FFN: down(silu(gate x) * up x)"
                                        : "expert FFN: down(gelu(up x)), exact erf GELU",
      {{"rows", rows}, {"d_model", d}, {"d_ff", d_ff}, {"activation", activation_name(activation)}},
      seed);
  const std::vector<float> x = c.random("x", {rows, d}, 1.0f);
  const FeedForwardWeights w = random_ffn(c, "", "", activation, d, d_ff);
  std::vector<float> y(x.size());
  feed_forward(kernels, activation, w, x.data(), rows, y.data());
  c.output(make_f32_record("out", {rows, d}, y), ToleranceClass::kActivation);
  return {c.finish(), {}};
}

Built moe_case(const MoeSpec& spec, const std::string& name, uint32_t seed,
               const Kernels& kernels) {
  const ModelConfig& config = spec.config;
  const int64_t tokens = spec.tokens, d = config.d_model, experts = config.n_experts;
  CaseBuilder c(name, "moe", spec.description,
                {{"tokens", tokens},
                 {"d_model", d},
                 {"n_experts", experts},
                 {"expert_d_ff", config.expert_d_ff},
                 {"top_k", config.top_k},
                 {"activation", activation_name(config.ffn_activation)},
                 {"router_renormalize", config.router_renormalize},
                 {"capacity_factor", config.capacity_factor}},
                seed);
  const std::vector<float> x = c.random("x", {tokens, d}, 1.0f, spec.x_offset);
  LayerWeights weights;
  weights.router = Tensor(
      {experts, d}, spec.router_row_offsets
                        ? c.random_rows("moe.router.weight", {experts, d},
                                        std::vector<float>(static_cast<size_t>(experts), 0.25f),
                                        *spec.router_row_offsets)
                        : c.random("moe.router.weight", {experts, d}, 0.25f));
  for (int64_t e = 0; e < experts; ++e) {
    weights.experts.push_back(random_ffn(c, "moe.experts." + std::to_string(e) + ".", ".weight",
                                         config.ffn_activation, d, config.expert_d_ff));
  }
  TraceRecorder recorder;
  std::vector<float> out(x.size());
  const RouterStats stats = moe_forward(kernels, config, weights, x.data(), tokens, out.data(),
                                        TraceScope(&recorder, ""));
  for (const TensorRecord& record : recorder.records()) {
    c.output(record, classify_model_tensor(record.name));
  }
  std::vector<int64_t> chosen_by(static_cast<size_t>(experts), 0);
  for (const int32_t e : recorder.at("moe.topk_indices").to_i32()) ++chosen_by[e];
  c.manifest()["routing"] = {{"capacity", stats.capacity},
                             {"dropped_assignments", stats.dropped},
                             {"assignments_per_expert", chosen_by}};
  return {c.finish(), row_gaps(recorder.at("moe.router_probs").to_f32(), experts, config.top_k,
                               "moe.router_probs")};
}

Built moe(const Shape& s, const std::string& name, uint32_t seed, const Kernels& kernels) {
  require_at_most("moe", s, "top_k", "n_experts");
  MoeSpec spec;
  spec.tokens = s.count("tokens");
  spec.description =
      "the MoE layer: router, top-k, capacity, experts, the weighted sum in rank order";
  ModelConfig& config = spec.config;
  config.name = name;
  config.d_model = s.count("d_model");
  config.n_experts = s.count("n_experts");
  config.expert_d_ff = s.count("expert_d_ff");
  config.top_k = s.count("top_k");
  config.ffn_activation = s.activation();
  config.router_renormalize = s.count("renormalize") == 1;
  config.capacity_factor = s.real("capacity_factor");
  return moe_case(spec, name, seed, kernels);
}

Built sampling_case(const SamplingParams& params, int64_t positions, int64_t vocab,
                    const std::string& name, uint32_t seed) {
  CaseBuilder c(
      name, "sampling",
      "temperature, top-k, top-p and the Philox draw of ref/generation/sampling.h; position p "
      "samples from logits row p with request 0, draw 0",
      {{"positions", positions},
       {"vocab_size", vocab},
       {"temperature", params.temperature},
       {"top_k", params.top_k},
       {"top_p", params.top_p},
       {"seed", params.seed},
       {"request", 0},
       {"draw", 0}},
      seed);
  const std::vector<float> logits = c.random("logits", {positions, vocab}, 4.0f);
  std::vector<float> probs(logits.size(), 0.0f);
  std::vector<int32_t> tokens(static_cast<size_t>(positions));
  std::vector<Decision> decisions;
  for (int64_t p = 0; p < positions; ++p) {
    const std::span<const float> row(logits.data() + p * vocab, static_cast<size_t>(vocab));
    for (const TokenProbability& t : processed_distribution(row, params)) {
      probs[p * vocab + t.token] = static_cast<float>(t.probability);
    }
    const double u =
        generation_uniform(params.seed, 0, static_cast<uint32_t>(p), 0, RandomStream::kSampling);
    decisions.push_back({"tokens row " + std::to_string(p), token_margin(row, params, u)});
    tokens[p] = sample_token(row, params, static_cast<uint32_t>(p));
  }
  c.output(make_f32_record("probs", {positions, vocab}, probs), ToleranceClass::kProbability);
  c.output(make_i32_record("tokens", {positions}, tokens), ToleranceClass::kExact);
  return {c.finish(), std::move(decisions)};
}

Built sampling(const Shape& s, const std::string& name, uint32_t seed, const Kernels&) {
  const SamplingParams params{.temperature = s.real("temperature"),
                              .top_k = s.count("top_k"),
                              .top_p = s.real("top_p"),
                              .seed = seed};
  return sampling_case(params, s.count("positions"), s.count("vocab_size"), name, seed);
}

Built greedy(const Shape& s, const std::string& name, uint32_t seed, const Kernels&) {
  const int64_t rows = s.count("rows"), vocab = s.count("vocab_size");
  CaseBuilder c(name, "greedy", "greedy decoding (temperature 0): the largest logit's id",
                {{"rows", rows}, {"vocab_size", vocab}, {"temperature", 0.0}}, seed);
  const std::vector<float> logits = c.random("logits", {rows, vocab}, 4.0f);
  std::vector<int32_t> tokens(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    tokens[r] = greedy_token({logits.data() + r * vocab, static_cast<size_t>(vocab)});
  }
  c.output(make_i32_record("tokens", {rows}, tokens), ToleranceClass::kExact);
  return {c.finish(), row_gaps(logits, vocab, 1, "tokens")};
}

}  // namespace moeref::golden::shaped
