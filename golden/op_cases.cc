// The op cases and how their inputs are drawn.
//
// Input streams. Element i (row-major) of the random input tensor N of case C is
//   bits = Philox4x32-10(key = {fnv1a32(C), 0},
//                        counter = {(i / 4) & 0xffffffff, i >> 34, fnv1a32(N), 0x4F504341 "OPCA"})
//          word i % 4
//   u    = (bits >> 8) * 2^-24                     in [0, 1), exact (uniform_from_bits)
//   t    = 2u - 1                                  in [-1, 1), exact in fp32
//   v    = offset + scale * t                      two fp32 operations, each rounded to nearest
// scale and offset are per tensor (per row for the MoE router and the large-logit softmax) and
// recorded in the manifest under "input_generation"; offset 0 gives v = scale * t exactly as
// rounded. Inputs written by hand (the tie cases) and positions are recorded there as such. Every
// step is a correctly rounded IEEE operation, so the inputs are the same bits on every machine.
//
// Outputs are the ref ops' (ref/ops/*.h, feed_forward, moe_forward) on those inputs.
#include "golden/op_cases.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <utility>

#include "golden/op_case_builder.h"
#include "ref/generation/philox.h"
#include "ref/generation/sampling.h"
#include "ref/io/config.h"
#include "ref/model/cross_attention.h"
#include "ref/model/feed_forward.h"
#include "ref/model/moe.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"
#include "ref/ops/attention.h"
#include "ref/ops/kernels.h"
#include "ref/ops/softmax.h"
#include "ref/tensor.h"

namespace moeref::golden {

using nlohmann::json;

namespace {

OpCase matmul_case(const std::string& name, const Kernels& kernels, int64_t rows, int64_t in,
                   int64_t out) {
  CaseBuilder c(name, "matmul", "y[r, o] = sum_i x[r, i] * w[o, i], w in the [out, in] layout",
                {{"rows", rows}, {"in", in}, {"out", out}});
  const std::vector<float> x = c.random("x", {rows, in}, 1.0f);
  const std::vector<float> w = c.random("w", {out, in}, 0.25f);
  std::vector<float> y(static_cast<size_t>(rows * out));
  kernels.matmul(x.data(), w.data(), y.data(), rows, in, out);
  c.output(make_f32_record("out", {rows, out}, y), ToleranceClass::kActivation);
  return c.finish();
}

OpCase norm_case(const std::string& name, const Kernels& kernels, bool layer_norm, int64_t rows,
                 int64_t d) {
  constexpr double kEps = 1e-5;
  CaseBuilder c(name, layer_norm ? "layer_norm" : "rms_norm",
                layer_norm ? "LayerNorm of each row, inputs off-centre so the mean matters"
                           : "RMSNorm of each row, eps inside the square root, gain after",
                {{"rows", rows}, {"d", d}, {"eps", kEps}});
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
  return c.finish();
}

// Unscaled RoPE, or a scaling kind (docs/model.md) with its positions past the pretraining context
// so that the scaling changes the rotation; the parameters record "rope_scaling" as a config
// spells it.
struct RopeSpec {
  int64_t head_dim = 0;
  RopeScaling scaling = {};
  std::vector<int32_t> positions = {0, 1, 7, 1000, 4095};
  std::string description =
      "rotate-half RoPE (pairs i, i + D/2) at positions up to 4095, where angles are large";
};

OpCase rope_case(const std::string& name, const Kernels& kernels, const RopeSpec& spec) {
  constexpr int64_t kHeads = 3;
  constexpr double kTheta = 10000.0;
  const int64_t head_dim = spec.head_dim;
  const std::vector<int32_t>& positions = spec.positions;
  const auto tokens = static_cast<int64_t>(positions.size());
  json parameters = {{"tokens", tokens},
                     {"n_heads", kHeads},
                     {"head_dim", head_dim},
                     {"theta", kTheta},
                     {"positions", positions}};
  if (spec.scaling.kind != RopeScalingKind::kDefault) {
    parameters["rope_scaling"] = rope_scaling_to_json(spec.scaling);
  }
  CaseBuilder c(name, "rope", spec.description, parameters);
  std::vector<float> x = c.random("x", {tokens, kHeads, head_dim}, 1.0f);
  c.input(make_i32_record("positions", {tokens}, positions), "the parameter \"positions\"");
  kernels.rope(x.data(), to_int64(positions), kHeads, head_dim, kTheta, spec.scaling);
  c.output(make_f32_record("out", {tokens, kHeads, head_dim}, x), ToleranceClass::kActivation);
  return c.finish();
}

OpCase softmax_case(const std::string& name, const Kernels& kernels, int64_t rows, int64_t n) {
  CaseBuilder c(name, "softmax", "softmax over the last axis, max subtracted",
                {{"rows", rows}, {"n", n}});
  std::vector<float> x = c.random("x", {rows, n}, 4.0f);
  kernels.softmax(x.data(), rows, n);
  c.output(make_f32_record("out", {rows, n}, x), ToleranceClass::kProbability);
  return c.finish();
}

OpCase softmax_large_case(const std::string& name, const Kernels& kernels) {
  // exp() overflows fp32 past 88.7 and underflows below -103: every row here is far outside that
  // range, so only a max-subtracting softmax gives finite results. The last row spans 1e3..1e4
  // (one-hot after rounding).
  const std::vector<float> offsets = {1000.0f, 4000.0f, 10000.0f, -10000.0f, 5500.0f};
  const std::vector<float> scales = {8.0f, 8.0f, 8.0f, 8.0f, 4500.0f};
  const auto rows = static_cast<int64_t>(offsets.size());
  constexpr int64_t kN = 17;
  CaseBuilder c(name, "softmax", "softmax of logits around +-1e3..1e4, where a naive exp overflows",
                {{"rows", rows}, {"n", kN}});
  std::vector<float> x = c.random_rows("x", {rows, kN}, scales, offsets);
  kernels.softmax(x.data(), rows, kN);
  c.output(make_f32_record("out", {rows, kN}, x), ToleranceClass::kProbability);
  return c.finish();
}

struct AttentionSpec {
  int64_t n_kv_heads;
  int64_t head_dim;
  int64_t cached;      // P, positions already in the cache
  int64_t new_tokens;  // T, queries at positions P .. P + T - 1
};

OpCase attention_case(const std::string& name, const Kernels& kernels, const AttentionSpec& s) {
  constexpr int64_t kHeads = 4;
  constexpr int64_t kSpareSlots = 3;  // cache rows past the last position, never to be read
  const ref::AttentionDims dims{kHeads, s.n_kv_heads, s.head_dim,
                                s.cached + s.new_tokens + kSpareSlots};
  const int64_t width = s.cached + s.new_tokens;
  CaseBuilder c(name, "attention",
                "causal attention of T new queries over a cache holding P earlier positions; cache "
                "rows past P + T hold random values that must not be read",
                {{"n_heads", kHeads},
                 {"n_kv_heads", s.n_kv_heads},
                 {"head_dim", s.head_dim},
                 {"kv_capacity", dims.kv_capacity},
                 {"cached_positions", s.cached},
                 {"new_tokens", s.new_tokens},
                 {"probs_width", width}});
  const std::vector<float> q = c.random("q", {s.new_tokens, kHeads, s.head_dim}, 1.0f);
  const std::vector<float> keys =
      c.random("keys", {s.n_kv_heads, dims.kv_capacity, s.head_dim}, 1.0f);
  const std::vector<float> values =
      c.random("values", {s.n_kv_heads, dims.kv_capacity, s.head_dim}, 1.0f);
  std::vector<int32_t> positions(static_cast<size_t>(s.new_tokens));
  for (int64_t t = 0; t < s.new_tokens; ++t) positions[t] = static_cast<int32_t>(s.cached + t);
  c.input(make_i32_record("positions", {s.new_tokens}, positions),
          "cached_positions + t for query t");

  std::vector<float> context(q.size());
  std::vector<float> probs(static_cast<size_t>(s.new_tokens * kHeads * width), 0.0f);
  kernels.attention(q.data(), keys.data(), values.data(), to_int64(positions), dims, context.data(),
                    probs.data(), width);
  c.output(make_f32_record("context", {s.new_tokens, kHeads, s.head_dim}, context),
           ToleranceClass::kActivation);
  c.output(make_f32_record("probs", {s.new_tokens, kHeads, width}, probs),
           ToleranceClass::kProbability);
  return c.finish();
}

// The smallest gap between consecutive values among the k + 1 largest of any row.
double top_k_margin(const std::vector<float>& probs, int64_t width, int64_t k) {
  double margin = std::numeric_limits<double>::infinity();
  for (size_t row = 0; row < probs.size(); row += static_cast<size_t>(width)) {
    std::vector<float> sorted(probs.begin() + static_cast<std::ptrdiff_t>(row),
                              probs.begin() + static_cast<std::ptrdiff_t>(row) + width);
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    for (int64_t j = 0; j < k && j + 1 < width; ++j) {
      margin = std::min(margin, static_cast<double>(sorted[j]) - sorted[j + 1]);
    }
  }
  return margin;
}

json finite_or_null(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }

void add_top_k_outputs(CaseBuilder& c, const Kernels& kernels, const std::vector<float>& probs,
                       int64_t tokens, int64_t n_experts, int64_t k, bool renormalize) {
  std::vector<int32_t> indices(static_cast<size_t>(tokens * k));
  std::vector<float> weights(indices.size());
  kernels.select_top_k(probs.data(), tokens, n_experts, k, renormalize, indices.data(),
                       weights.data());
  c.output(make_i32_record("indices", {tokens, k}, indices), ToleranceClass::kExact);
  c.output(make_f32_record("weights", {tokens, k}, weights), ToleranceClass::kProbability);
}

json top_k_parameters(int64_t tokens, int64_t n_experts, int64_t k, bool renormalize) {
  return {{"tokens", tokens}, {"n_experts", n_experts}, {"k", k}, {"renormalize", renormalize}};
}

OpCase top_k_case(const std::string& name, const Kernels& kernels, int64_t k, bool renormalize) {
  constexpr int64_t kTokens = 7;
  constexpr int64_t kExperts = 8;
  CaseBuilder c(name, "top_k",
                "router top-k of softmax(random logits): larger probability first, weights "
                "renormalised over the chosen k or not",
                top_k_parameters(kTokens, kExperts, k, renormalize));
  std::vector<float> probs = unit_stream(name, "probs", kTokens * kExperts);
  for (float& p : probs) p *= 2.0f;
  ref::softmax(probs.data(), kTokens, kExperts);  // makes the input: always the reference's
  c.input(make_f32_record("probs", {kTokens, kExperts}, probs),
          "softmax over each row of 2 * t, t the stream of \"probs\"");
  c.manifest()["margins"] = {{"min_top_k", finite_or_null(top_k_margin(probs, kExperts, k))}};
  add_top_k_outputs(c, kernels, probs, kTokens, kExperts, k, renormalize);
  return c.finish();
}

OpCase top_k_ties_case(const std::string& name, const Kernels& kernels, int64_t k) {
  constexpr int64_t kExperts = 8;
  // Dyadic probabilities, exactly representable, each row summing to 1, with exact ties.
  const std::vector<float> probs = {
      0.125f,  0.125f,  0.125f,  0.125f,  0.125f,  0.125f,  0.125f,  0.125f,   // all equal
      0.125f,  0.25f,   0.125f,  0.25f,   0.0625f, 0.0625f, 0.0625f, 0.0625f,  // 1 = 3 > 0 = 2
      0.0625f, 0.0625f, 0.1875f, 0.0625f, 0.1875f, 0.1875f, 0.1875f, 0.0625f,  // 2 = 4 = 5 = 6
      0.375f,  0.125f,  0.125f,  0.125f,  0.125f,  0.0625f, 0.0625f, 0.0f,     // tie past rank 0
      0.0625f, 0.0625f, 0.0625f, 0.0625f, 0.1875f, 0.1875f, 0.1875f, 0.1875f,  // top at the end
  };
  const auto tokens = static_cast<int64_t>(probs.size()) / kExperts;
  CaseBuilder c(name, "top_k",
                "router top-k with exact ties in the probabilities: equal values go to the lower "
                "expert index",
                top_k_parameters(tokens, kExperts, k, true));
  c.input(make_f32_record("probs", {tokens, kExperts}, probs), "hand-written, with exact ties");
  add_top_k_outputs(c, kernels, probs, tokens, kExperts, k, true);
  return c.finish();
}

OpCase ffn_case(const std::string& name, const Kernels& kernels, Activation activation,
                int64_t rows) {
  constexpr int64_t kDModel = 32;
  constexpr int64_t kDff = 64;
  CaseBuilder c(name, "expert_ffn",
                activation == Activation::kSwiGlu ? "expert FFN: down(silu(gate x) * up x)"
                                                  : "expert FFN: down(gelu(up x)), exact erf GELU",
                {{"rows", rows},
                 {"d_model", kDModel},
                 {"d_ff", kDff},
                 {"activation", activation_name(activation)}});
  const std::vector<float> x = c.random("x", {rows, kDModel}, 1.0f);
  const FeedForwardWeights w = random_ffn(c, "", "", activation, kDModel, kDff);
  std::vector<float> y(x.size());
  feed_forward(kernels, activation, w, x.data(), rows, y.data());
  c.output(make_f32_record("out", {rows, kDModel}, y), ToleranceClass::kActivation);
  return c.finish();
}

struct MoeSpec {
  const char* description;
  int64_t tokens;
  Activation activation;
  double capacity_factor = 0.0;
  float x_offset = 0.0f;       // added to every element of x
  int32_t biased_expert = -1;  // whose router row gets router_bias added to every element
  float router_bias = 0.0f;
};

OpCase moe_case(const std::string& name, const Kernels& kernels, const MoeSpec& s) {
  ModelConfig config;
  config.name = name;
  config.d_model = 32;
  config.n_experts = 8;
  config.expert_d_ff = 48;
  config.top_k = 2;
  config.ffn_activation = s.activation;
  config.router_renormalize = true;
  config.capacity_factor = s.capacity_factor;
  const int64_t d = config.d_model;
  const int64_t e_count = config.n_experts;
  CaseBuilder c(name, "moe", s.description,
                {{"tokens", s.tokens},
                 {"d_model", d},
                 {"n_experts", e_count},
                 {"expert_d_ff", config.expert_d_ff},
                 {"top_k", config.top_k},
                 {"activation", activation_name(s.activation)},
                 {"router_renormalize", config.router_renormalize},
                 {"capacity_factor", s.capacity_factor}});

  const std::vector<float> x = c.random("x", {s.tokens, d}, 1.0f, s.x_offset);
  std::vector<float> router_offsets(static_cast<size_t>(e_count), 0.0f);
  if (s.biased_expert >= 0) router_offsets[s.biased_expert] = s.router_bias;
  LayerWeights weights;
  weights.router =
      Tensor({e_count, d}, c.random_rows("moe.router.weight", {e_count, d},
                                         std::vector<float>(static_cast<size_t>(e_count), 0.25f),
                                         router_offsets));
  for (int64_t e = 0; e < e_count; ++e) {
    weights.experts.push_back(random_ffn(c, "moe.experts." + std::to_string(e) + ".", ".weight",
                                         s.activation, d, config.expert_d_ff));
  }

  TraceRecorder recorder;
  std::vector<float> out(x.size());
  const RouterStats stats = moe_forward(kernels, config, weights, x.data(), s.tokens, out.data(),
                                        TraceScope(&recorder, ""));
  for (const TensorRecord& record : recorder.records()) {
    c.output(record, classify_model_tensor(record.name));
  }

  std::vector<int64_t> chosen_by(static_cast<size_t>(e_count), 0);
  for (const int32_t e : recorder.at("moe.topk_indices").to_i32()) ++chosen_by[e];
  c.manifest()["routing"] = {{"capacity", stats.capacity},
                             {"dropped_assignments", stats.dropped},
                             {"assignments_per_expert", chosen_by}};
  c.manifest()["margins"] = {
      {"min_router", finite_or_null(top_k_margin(recorder.at("moe.router_probs").to_f32(), e_count,
                                                 config.top_k))}};
  return c.finish();
}

struct CrossAttentionSpec {
  int64_t n_kv_heads;
  int64_t head_dim;
  int64_t vision_tokens;  // N_v
  int64_t queries;        // T
};

// The attention of ref/model/cross_attention.h alone: every query sees every vision token.
OpCase cross_attention_case(const std::string& name, const Kernels& kernels,
                            const CrossAttentionSpec& s) {
  constexpr int64_t kHeads = 4;
  CaseBuilder c(name, "cross_attention",
                "attention of T text queries over N_v vision tokens: no mask, no RoPE, scale "
                "1/sqrt(head_dim); query head h reads K/V head h / (H / G)",
                {{"n_heads", kHeads},
                 {"n_kv_heads", s.n_kv_heads},
                 {"head_dim", s.head_dim},
                 {"vision_tokens", s.vision_tokens},
                 {"queries", s.queries}});
  const std::vector<float> q = c.random("q", {s.queries, kHeads, s.head_dim}, 1.0f);
  const std::vector<float> keys =
      c.random("keys", {s.n_kv_heads, s.vision_tokens, s.head_dim}, 1.0f);
  const std::vector<float> values =
      c.random("values", {s.n_kv_heads, s.vision_tokens, s.head_dim}, 1.0f);
  std::vector<float> context(q.size());
  std::vector<float> probs(static_cast<size_t>(s.queries * kHeads * s.vision_tokens));
  const std::vector<int64_t> last_vision_token(static_cast<size_t>(s.queries), s.vision_tokens - 1);
  kernels.attention(q.data(), keys.data(), values.data(), last_vision_token,
                    ref::AttentionDims(kHeads, s.n_kv_heads, s.head_dim, s.vision_tokens),
                    context.data(), probs.data(), s.vision_tokens);
  c.output(make_f32_record("context", {s.queries, kHeads, s.head_dim}, context),
           ToleranceClass::kActivation);
  c.output(make_f32_record("probs", {s.queries, kHeads, s.vision_tokens}, probs),
           ToleranceClass::kProbability);
  return c.finish();
}

// A whole gated cross-attention block (ref/model/cross_attention.h) with its vision K/V: tokens
// before image_position pass through unchanged.
OpCase gated_cross_attention_case(const std::string& name, const Kernels& kernels, bool qk_norm,
                                  int64_t n_kv_heads) {
  ModelConfig config;
  config.name = name;
  config.d_model = 32;
  config.head_dim = 8;
  config.norm_eps = 1e-5;
  VisionConfig v;
  v.cross_attention_layers = {0};
  v.cross_attention_heads = 4;
  v.cross_attention_kv_heads = n_kv_heads;
  v.cross_attention_d_ff = 48;
  v.cross_attention_qk_norm = qk_norm;
  config.vision = v;
  constexpr int64_t kTokens = 6;
  constexpr int64_t kVisionTokens = 5;
  constexpr int64_t kImagePosition = 2;
  const int64_t d = config.d_model;
  const int64_t hd = config.head_dim;
  const int64_t q_dim = v.cross_attention_heads * hd;
  const int64_t kv_dim = n_kv_heads * hd;
  CaseBuilder c(name, "gated_cross_attention",
                "Flamingo's gated block: y += tanh(a_attn) XAttn(Norm y, vision), y += "
                "tanh(a_ffn) FFN(Norm y), RMSNorm, SwiGLU; tokens at positions 0..5, the image "
                "seen from position 2 on",
                {{"tokens", kTokens},
                 {"d_model", d},
                 {"head_dim", hd},
                 {"n_heads", v.cross_attention_heads},
                 {"n_kv_heads", n_kv_heads},
                 {"d_ff", v.cross_attention_d_ff},
                 {"qk_norm", qk_norm},
                 {"norm_eps", config.norm_eps},
                 {"vision_tokens", kVisionTokens},
                 {"image_position", kImagePosition}});
  std::vector<float> x = c.random("x", {kTokens, d}, 1.0f);
  const Tensor tokens({kVisionTokens, d}, c.random("vision_tokens", {kVisionTokens, d}, 1.0f));
  CrossAttentionWeights w;
  auto matrix = [&](const std::string& tensor, int64_t out, int64_t in) {
    return Tensor({out, in}, c.random(tensor, {out, in}, 0.375f));
  };
  w.attn_norm = Tensor({d}, c.random("attn_norm.weight", {d}, 0.25f, 1.0f));
  w.q_proj = matrix("q_proj.weight", q_dim, d);
  w.k_proj = matrix("k_proj.weight", kv_dim, d);
  w.v_proj = matrix("v_proj.weight", kv_dim, d);
  w.o_proj = matrix("o_proj.weight", d, q_dim);
  if (qk_norm) {
    w.q_norm = Tensor({hd}, c.random("q_norm.weight", {hd}, 0.25f, 1.0f));
    w.k_norm = Tensor({hd}, c.random("k_norm.weight", {hd}, 0.25f, 1.0f));
  }
  w.attn_gate = Tensor({1}, c.random("attn_gate", {1}, 0.125f, 0.5f));
  w.ffn_norm = Tensor({d}, c.random("ffn_norm.weight", {d}, 0.25f, 1.0f));
  w.ffn = random_ffn(c, "ffn.", ".weight", Activation::kSwiGlu, d, v.cross_attention_d_ff);
  w.ffn_gate = Tensor({1}, c.random("ffn_gate", {1}, 0.125f, -0.5f));
  std::vector<int32_t> positions(kTokens);
  for (int64_t t = 0; t < kTokens; ++t) positions[t] = static_cast<int32_t>(t);
  c.input(make_i32_record("positions", {kTokens}, positions), "token t at position t");

  TraceRecorder recorder;
  const ImageKv kv = image_kv(kernels, config, std::span(&w, 1), tokens, &recorder);
  const std::vector<SequenceImage> images(kTokens, SequenceImage{&kv, kImagePosition});
  gated_cross_attention(kernels, config, w, 0, to_int64(positions), images, x.data(),
                        TraceScope(&recorder, "layers.0.xattn."));
  for (const TensorRecord& record : recorder.records()) {
    c.output(record, classify_model_tensor(record.name));
  }
  return c.finish();
}

OpCase sampling_case(const std::string& name) {
  constexpr int64_t kPositions = 32;
  constexpr int64_t kVocab = 50;
  const SamplingParams params{.temperature = 0.7, .top_k = 10, .top_p = 0.9, .seed = 42};
  CaseBuilder c(
      name, "sampling",
      "temperature, top-k, top-p and the Philox draw of ref/generation/sampling.h; position p "
      "samples from logits row p with request 0, draw 0",
      {{"positions", kPositions},
       {"vocab_size", kVocab},
       {"temperature", params.temperature},
       {"top_k", params.top_k},
       {"top_p", params.top_p},
       {"seed", params.seed},
       {"request", 0},
       {"draw", 0}});
  const std::vector<float> logits = c.random("logits", {kPositions, kVocab}, 4.0f);
  std::vector<float> probs(logits.size(), 0.0f);
  std::vector<int32_t> tokens(static_cast<size_t>(kPositions));
  std::vector<double> margins;
  for (int64_t p = 0; p < kPositions; ++p) {
    const std::span<const float> row(logits.data() + p * kVocab, static_cast<size_t>(kVocab));
    const std::vector<TokenProbability> kept = processed_distribution(row, params);
    const double u =
        generation_uniform(params.seed, 0, static_cast<uint32_t>(p), 0, RandomStream::kSampling);
    double cumulative = 0.0;
    double margin = std::numeric_limits<double>::infinity();
    for (const TokenProbability& t : kept) {
      probs[p * kVocab + t.token] = static_cast<float>(t.probability);
      cumulative += t.probability;
      margin = std::min(margin, std::fabs(u - cumulative));
    }
    margins.push_back(margin);
    tokens[p] = sample_token(row, params, static_cast<uint32_t>(p));
  }
  c.manifest()["margins"] = {{"tokens", margins}};
  c.output(make_f32_record("probs", {kPositions, kVocab}, probs), ToleranceClass::kProbability);
  c.output(make_i32_record("tokens", {kPositions}, tokens), ToleranceClass::kExact);
  return c.finish();
}

OpCase greedy_ties_case(const std::string& name) {
  constexpr int64_t kRows = 4;
  constexpr int64_t kVocab = 50;
  CaseBuilder c(name, "greedy",
                "greedy decoding (temperature 0) with equal maxima: the lowest token id wins",
                {{"rows", kRows}, {"vocab_size", kVocab}, {"temperature", 0.0}});
  // The stream (scale 4, so every value is below 4), then maxima set by hand.
  std::vector<float> logits = unit_stream(name, "logits", kRows * kVocab);
  for (float& v : logits) v *= 4.0f;
  logits[1 * kVocab + 23] = logits[1 * kVocab + 7] = 8.0f;
  logits[2 * kVocab + 49] = logits[2 * kVocab + 2] = logits[2 * kVocab + 30] = 6.0f;
  std::fill(logits.begin() + 3 * kVocab, logits.end(), 0.5f);
  c.input(make_f32_record("logits", {kRows, kVocab}, logits),
          "4 * t, then row 1: ids 7 and 23 set to 8; row 2: ids 2, 30 and 49 set to 6; row 3: "
          "every id set to 0.5");
  std::vector<int32_t> tokens(static_cast<size_t>(kRows));
  for (int64_t r = 0; r < kRows; ++r) {
    tokens[r] = sample_token({logits.data() + r * kVocab, static_cast<size_t>(kVocab)},
                             SamplingParams{}, static_cast<uint32_t>(r));
  }
  c.output(make_i32_record("tokens", {kRows}, tokens), ToleranceClass::kExact);
  return c.finish();
}

struct CaseEntry {
  std::string name;
  std::function<OpCase(const std::string&, const Kernels&)> build;
};

std::vector<CaseEntry> make_registry() {
  std::vector<CaseEntry> cases;
  auto add = [&](std::string name,
                 std::function<OpCase(const std::string&, const Kernels&)> build) {
    cases.push_back({std::move(name), std::move(build)});
  };
  struct MatmulShape {
    int64_t rows, in, out;
  };
  for (const MatmulShape m : {MatmulShape{1, 96, 40}, MatmulShape{13, 96, 40},
                              MatmulShape{8, 32, 16}, MatmulShape{33, 64, 48}}) {
    add("matmul-" + std::to_string(m.rows) + "x" + std::to_string(m.in) + "x" +
            std::to_string(m.out),
        [m](const std::string& n, const Kernels& kernels) {
          return matmul_case(n, kernels, m.rows, m.in, m.out);
        });
  }
  add("rmsnorm-5x64", [](const std::string& n, const Kernels& kernels) {
    return norm_case(n, kernels, false, 5, 64);
  });
  add("rmsnorm-5x37", [](const std::string& n, const Kernels& kernels) {
    return norm_case(n, kernels, false, 5, 37);
  });
  add("layernorm-5x64", [](const std::string& n, const Kernels& kernels) {
    return norm_case(n, kernels, true, 5, 64);
  });
  for (const int64_t hd : {8, 16, 64, 128}) {
    add("rope-hd" + std::to_string(hd), [hd](const std::string& n, const Kernels& kernels) {
      return rope_case(n, kernels, RopeSpec{.head_dim = hd});
    });
  }
  const std::vector<std::pair<std::string, RopeSpec>> scaled_rope_cases = {
      {"rope-linear-hd16",
       {.head_dim = 16,
        .scaling = {.kind = RopeScalingKind::kLinear, .factor = 4.0},
        .positions = {0, 1, 7, 100, 1000},
        .description = "linear RoPE scaling (position interpolation), factor 4: every "
                       "frequency divided by 4"}},
      {"rope-dynamic-hd16",
       {.head_dim = 16,
        .scaling = {.kind = RopeScalingKind::kDynamic,
                    .factor = 2.0,
                    .original_max_position_embeddings = 32},
        .positions = {0, 5, 33, 63, 90},
        .description = "dynamic NTK scaling, factor 2 past 32 positions: the largest position "
                       "(90) sets the base, 10000 * (2 * 91 / 32 - 1)^(16 / 14), for every token"}},
      {"rope-yarn-hd32",
       {.head_dim = 32,
        .scaling = {.kind = RopeScalingKind::kYarn,
                    .factor = 4.0,
                    .original_max_position_embeddings = 256},
        .positions = {0, 1, 100, 300, 1000},
        .description = "YaRN, factor 4 over 256 positions, betas 32 and 1: pairs 0..7 ramp from "
                       "kept to interpolated, cos and sin scaled by 0.1 ln 4 + 1"}},
      {"rope-yarn-mscale-untruncated-hd32",
       {.head_dim = 32,
        .scaling = {.kind = RopeScalingKind::kYarn,
                    .factor = 8.0,
                    .original_max_position_embeddings = 128,
                    .beta_fast = 16.0,
                    .beta_slow = 2.0,
                    .mscale = 1.0,
                    .mscale_all_dim = 0.5,
                    .truncate = false},
        .positions = {0, 3, 129, 500, 1023},
        .description = "YaRN, factor 8 over 128 positions, betas 16 and 2, the ramp's ends not "
                       "rounded, cos and sin scaled by the ratio of mscale 1 to mscale_all_dim "
                       "0.5"}},
      {"rope-llama3-hd32",
       {.head_dim = 32,
        .scaling = {.kind = RopeScalingKind::kLlama3,
                    .factor = 8.0,
                    .original_max_position_embeddings = 64,
                    .low_freq_factor = 1.0,
                    .high_freq_factor = 4.0},
        .positions = {0, 1, 65, 200, 511},
        .description = "Llama 3.1 scaling, factor 8 over 64 positions: pairs 0-1 kept, 2-4 "
                       "smoothed, 5-15 divided by 8"}},
  };
  for (const auto& [name, spec] : scaled_rope_cases) {
    // An init-capture: clang before 16 cannot capture a structured binding itself.
    add(name, [rope = spec](const std::string& n, const Kernels& kernels) {
      return rope_case(n, kernels, rope);
    });
  }
  add("softmax-4x17",
      [](const std::string& n, const Kernels& kernels) { return softmax_case(n, kernels, 4, 17); });
  add("softmax-3x1",
      [](const std::string& n, const Kernels& kernels) { return softmax_case(n, kernels, 3, 1); });
  add("softmax-2x256", [](const std::string& n, const Kernels& kernels) {
    return softmax_case(n, kernels, 2, 256);
  });
  add("softmax-large-logits", softmax_large_case);
  // H = 4 query heads throughout; G = 1 is MQA, 2 GQA, 4 MHA.
  for (const AttentionSpec a :
       {AttentionSpec{1, 8, 5, 3}, AttentionSpec{2, 32, 0, 1}, AttentionSpec{4, 64, 5, 3},
        AttentionSpec{1, 64, 30, 1}, AttentionSpec{2, 128, 5, 3}, AttentionSpec{2, 32, 0, 13},
        AttentionSpec{4, 8, 30, 1}}) {
    const char* kind = a.n_kv_heads == 1 ? "mqa" : a.n_kv_heads == 4 ? "mha" : "gqa";
    add("attention-" + std::string(kind) + "-hd" + std::to_string(a.head_dim) + "-p" +
            std::to_string(a.cached) + "-t" + std::to_string(a.new_tokens),
        [a](const std::string& n, const Kernels& kernels) {
          return attention_case(n, kernels, a);
        });
  }
  for (const int64_t k : {1, 2, 4}) {
    for (const bool renormalize : {true, false}) {
      add("router-topk-k" + std::to_string(k) + (renormalize ? "-renorm" : "-no-renorm"),
          [k, renormalize](const std::string& n, const Kernels& kernels) {
            return top_k_case(n, kernels, k, renormalize);
          });
    }
  }
  add("router-topk-ties-k2",
      [](const std::string& n, const Kernels& kernels) { return top_k_ties_case(n, kernels, 2); });
  add("router-topk-ties-k4",
      [](const std::string& n, const Kernels& kernels) { return top_k_ties_case(n, kernels, 4); });
  for (const Activation act : {Activation::kSwiGlu, Activation::kGelu}) {
    for (const int64_t rows : {1, 7}) {
      add("ffn-" + std::string(activation_name(act)) + "-rows" + std::to_string(rows),
          [act, rows](const std::string& n, const Kernels& kernels) {
            return ffn_case(n, kernels, act, rows);
          });
    }
  }
  const std::vector<std::pair<std::string, MoeSpec>> moe_cases = {
      {"moe-hot-expert",
       {.description = "x off-centre and the router row of expert 3 biased towards it: 15 of the "
                       "16 tokens choose it",
        .tokens = 16,
        .activation = Activation::kSwiGlu,
        .x_offset = 0.5f,
        .biased_expert = 3,
        .router_bias = 0.03125f}},
      {"moe-unused-expert",
       {.description = "x off-centre and the router row of expert 6 biased against it: no token "
                       "chooses it (nor, as it happens, expert 2)",
        .tokens = 10,
        .activation = Activation::kGelu,
        .x_offset = 0.25f,
        .biased_expert = 6,
        .router_bias = -0.5f}},
      {"moe-all-on-one",
       {.description = "x off-centre and the router row of expert 5 biased towards it: every "
                       "token's first choice",
        .tokens = 8,
        .activation = Activation::kGelu,
        .x_offset = 1.0f,
        .biased_expert = 5,
        .router_bias = 0.03125f}},
      {"moe-single-token",
       {.description = "one token", .tokens = 1, .activation = Activation::kGelu}},
      {"moe-capacity",
       {.description = "capacity_factor 0.5: C = ceil(0.5 * 12 * 2 / 8) = 2 tokens per expert, "
                       "assignments past it dropped",
        .tokens = 12,
        .activation = Activation::kGelu,
        .capacity_factor = 0.5}},
      {"moe-odd-length",
       {.description = "13 tokens, not a multiple of 8/16/32",
        .tokens = 13,
        .activation = Activation::kGelu}},
  };
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  for (const auto& moe : moe_cases) {
    add(moe.first, [spec = moe.second](const std::string& n, const Kernels& kernels) {
      return moe_case(n, kernels, spec);
    });
  }
  // H = 4 query heads; N_v not a multiple of 8 in most cases.
  for (const CrossAttentionSpec x :
       {CrossAttentionSpec{1, 8, 5, 3}, CrossAttentionSpec{2, 16, 9, 1},
        CrossAttentionSpec{4, 64, 17, 2}, CrossAttentionSpec{1, 128, 33, 2}}) {
    const char* kind = x.n_kv_heads == 1 ? "mqa" : x.n_kv_heads == 4 ? "mha" : "gqa";
    add("cross-attention-" + std::string(kind) + "-hd" + std::to_string(x.head_dim) + "-n" +
            std::to_string(x.vision_tokens) + "-t" + std::to_string(x.queries),
        [x](const std::string& n, const Kernels& kernels) {
          return cross_attention_case(n, kernels, x);
        });
  }
  add("gated-cross-attention-mqa-qk-norm", [](const std::string& n, const Kernels& kernels) {
    return gated_cross_attention_case(n, kernels, true, 1);
  });
  add("gated-cross-attention-gqa", [](const std::string& n, const Kernels& kernels) {
    return gated_cross_attention_case(n, kernels, false, 2);
  });
  add("sampling-top-k-top-p",
      [](const std::string& n, const Kernels&) { return sampling_case(n); });
  add("sampling-greedy-ties",
      [](const std::string& n, const Kernels&) { return greedy_ties_case(n); });
  return cases;
}

const std::vector<CaseEntry>& registry() {
  static const std::vector<CaseEntry> cases = make_registry();
  return cases;
}

}  // namespace

std::vector<std::string> op_case_names() {
  std::vector<std::string> names;
  for (const CaseEntry& entry : registry()) names.push_back(entry.name);
  return names;
}

OpCase build_op_case(const std::string& name, const Kernels& kernels) {
  for (const CaseEntry& entry : registry()) {
    if (entry.name == name) return entry.build(name, kernels);
  }
  throw std::invalid_argument("no op case named \"" + name + "\"");
}

}  // namespace moeref::golden
