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
// Outputs are the ref ops' (ref/ops/*.h, feed_forward, moe_forward) on those inputs. Most cases are
// the builders of golden/shaped_op_builders.h at fixed shapes and seed 0, so that a named case and
// a generated one of the same op are made the same way; the cases no shape describes (logits
// around 1e4, hand-written ties, the whole gated cross-attention block) are written here.
#include "golden/op_cases.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <utility>

#include "golden/op_case_builder.h"
#include "golden/scaled_rope_cases.h"
#include "golden/shaped_op_builders.h"
#include "ref/generation/sampling.h"
#include "ref/io/config.h"
#include "ref/model/cross_attention.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"
#include "ref/ops/kernels.h"
#include "ref/tensor.h"

namespace moeref::golden {

using nlohmann::json;

namespace {

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

json finite_or_null(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }

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
                {{"tokens", tokens}, {"n_experts", kExperts}, {"k", k}, {"renormalize", true}});
  c.input(make_f32_record("probs", {tokens, kExperts}, probs), "hand-written, with exact ties");
  std::vector<int32_t> indices(static_cast<size_t>(tokens * k));
  std::vector<float> weights(indices.size());
  kernels.select_top_k(probs.data(), tokens, kExperts, k, true, indices.data(), weights.data());
  c.output(make_i32_record("indices", {tokens, k}, indices), ToleranceClass::kExact);
  c.output(make_f32_record("weights", {tokens, k}, weights), ToleranceClass::kProbability);
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

// A named case that is its op's case at a shape of golden/shaped_op_cases.h, seed 0.
using ShapedBuilder = shaped::Built (*)(const shaped::Shape&, const std::string&, uint32_t,
                                        const Kernels&);

// The named top_k and moe cases record their least margin under "margins" as `key`.
OpCase with_least_margin(shaped::Built built, const char* key) {
  built.op_case.manifest["margins"] = {
      {key, finite_or_null(shaped::least_margin(built.decisions))}};
  return std::move(built.op_case);
}

struct MoeCase {
  std::string name;
  const char* description;
  int64_t tokens;
  Activation activation;
  double capacity_factor = 0.0;
  float x_offset = 0.0f;       // added to every element of x
  int32_t biased_expert = -1;  // whose router row gets router_bias added to every element
  float router_bias = 0.0f;
};

OpCase moe_case(const MoeCase& m, const std::string& name, const Kernels& kernels) {
  shaped::MoeSpec spec;
  spec.tokens = m.tokens;
  spec.description = m.description;
  spec.x_offset = m.x_offset;
  ModelConfig& config = spec.config;
  config.name = name;
  config.d_model = 32;
  config.n_experts = 8;
  config.expert_d_ff = 48;
  config.top_k = 2;
  config.ffn_activation = m.activation;
  config.router_renormalize = true;
  config.capacity_factor = m.capacity_factor;
  spec.router_row_offsets = std::vector<float>(static_cast<size_t>(config.n_experts), 0.0f);
  if (m.biased_expert >= 0) (*spec.router_row_offsets)[m.biased_expert] = m.router_bias;
  return with_least_margin(shaped::moe_case(spec, name, 0, kernels), "min_router");
}

OpCase sampling_case(const std::string& name) {
  const SamplingParams params{.temperature = 0.7, .top_k = 10, .top_p = 0.9, .seed = 42};
  shaped::Built built = shaped::sampling_case(params, 32, 50, name, 0);
  std::vector<double> margins;
  for (const shaped::Decision& d : built.decisions) margins.push_back(d.margin);
  built.op_case.manifest["margins"] = {{"tokens", margins}};
  return std::move(built.op_case);
}

// The attention cases' 4 query heads over G K/V heads: G = 1 is MQA, 4 MHA, otherwise GQA.
std::string head_sharing(int64_t n_kv_heads) {
  return n_kv_heads == 1 ? "mqa" : n_kv_heads == 4 ? "mha" : "gqa";
}

std::vector<CaseEntry> make_registry() {
  std::vector<CaseEntry> cases;
  auto add = [&](std::string name,
                 std::function<OpCase(const std::string&, const Kernels&)> build) {
    cases.push_back({std::move(name), std::move(build)});
  };
  auto add_shaped = [&](std::string name, ShapedBuilder build, json shape) {
    add(std::move(name),
        [build, shape = std::move(shape)](const std::string& n, const Kernels& kernels) {
          return build(shaped::Shape(shape), n, 0, kernels).op_case;
        });
  };
  struct MatmulShape {
    int64_t rows, in, out;
  };
  for (const MatmulShape m : {MatmulShape{1, 96, 40}, MatmulShape{13, 96, 40},
                              MatmulShape{8, 32, 16}, MatmulShape{33, 64, 48}}) {
    add_shaped("matmul-" + std::to_string(m.rows) + "x" + std::to_string(m.in) + "x" +
                   std::to_string(m.out),
               shaped::matmul, {{"rows", m.rows}, {"in", m.in}, {"out", m.out}});
  }
  add_shaped("rmsnorm-5x64", shaped::rms_norm, {{"rows", 5}, {"d", 64}});
  add_shaped("rmsnorm-5x37", shaped::rms_norm, {{"rows", 5}, {"d", 37}});
  add_shaped("layernorm-5x64", shaped::layer_norm, {{"rows", 5}, {"d", 64}});
  auto add_rope = [&](const NamedRopeCase& rope) {
    add(rope.name, [rope](const std::string& n, const Kernels& kernels) {
      return shaped::rope_case({.n_heads = 3,
                                .head_dim = rope.head_dim,
                                .scaling = rope.scaling,
                                .positions = rope.positions,
                                .positions_how = "the parameter \"positions\"",
                                .description = rope.description},
                               n, 0, kernels)
          .op_case;
    });
  };
  for (const int64_t hd : {8, 16, 64, 128}) {
    add_rope({.name = "rope-hd" + std::to_string(hd),
              .head_dim = hd,
              .scaling = {},
              .positions = {0, 1, 7, 1000, 4095},
              .description = "rotate-half RoPE (pairs i, i + D/2) at positions up to 4095, where "
                             "angles are large"});
  }
  for (const NamedRopeCase& rope : scaled_rope_cases()) add_rope(rope);
  add_shaped("softmax-4x17", shaped::softmax, {{"rows", 4}, {"n", 17}});
  add_shaped("softmax-3x1", shaped::softmax, {{"rows", 3}, {"n", 1}});
  add_shaped("softmax-2x256", shaped::softmax, {{"rows", 2}, {"n", 256}});
  add("softmax-large-logits", softmax_large_case);
  // H = 4 query heads throughout.
  struct AttentionShape {
    int64_t n_kv_heads, head_dim;
    int64_t cached;      // P, positions already in the cache
    int64_t new_tokens;  // T, queries at positions P .. P + T - 1
  };
  for (const AttentionShape a :
       {AttentionShape{1, 8, 5, 3}, AttentionShape{2, 32, 0, 1}, AttentionShape{4, 64, 5, 3},
        AttentionShape{1, 64, 30, 1}, AttentionShape{2, 128, 5, 3}, AttentionShape{2, 32, 0, 13},
        AttentionShape{4, 8, 30, 1}}) {
    add_shaped("attention-" + head_sharing(a.n_kv_heads) + "-hd" + std::to_string(a.head_dim) +
                   "-p" + std::to_string(a.cached) + "-t" + std::to_string(a.new_tokens),
               shaped::attention,
               {{"new_tokens", a.new_tokens},
                {"n_heads", 4},
                {"n_kv_heads", a.n_kv_heads},
                {"head_dim", a.head_dim},
                {"cached_positions", a.cached}});
  }
  for (const int64_t k : {1, 2, 4}) {
    for (const bool renormalize : {true, false}) {
      add("router-topk-k" + std::to_string(k) + (renormalize ? "-renorm" : "-no-renorm"),
          [k, renormalize](const std::string& n, const Kernels& kernels) {
            const shaped::Shape shape(
                {{"tokens", 7}, {"n_experts", 8}, {"k", k}, {"renormalize", renormalize ? 1 : 0}});
            return with_least_margin(shaped::top_k(shape, n, 0, kernels), "min_top_k");
          });
    }
  }
  add("router-topk-ties-k2",
      [](const std::string& n, const Kernels& kernels) { return top_k_ties_case(n, kernels, 2); });
  add("router-topk-ties-k4",
      [](const std::string& n, const Kernels& kernels) { return top_k_ties_case(n, kernels, 4); });
  for (const Activation act : {Activation::kSwiGlu, Activation::kGelu}) {
    for (const int64_t rows : {1, 7}) {
      add_shaped(
          "ffn-" + std::string(activation_name(act)) + "-rows" + std::to_string(rows),
          shaped::expert_ffn,
          {{"rows", rows}, {"d_model", 32}, {"d_ff", 64}, {"activation", activation_name(act)}});
    }
  }
  const std::vector<MoeCase> moe_cases = {
      {.name = "moe-hot-expert",
       .description = "x off-centre and the router row of expert 3 biased towards it: 15 of the "
                      "16 tokens choose it",
       .tokens = 16,
       .activation = Activation::kSwiGlu,
       .x_offset = 0.5f,
       .biased_expert = 3,
       .router_bias = 0.03125f},
      {.name = "moe-unused-expert",
       .description = "x off-centre and the router row of expert 6 biased against it: no token "
                      "chooses it (nor, as it happens, expert 2)",
       .tokens = 10,
       .activation = Activation::kGelu,
       .x_offset = 0.25f,
       .biased_expert = 6,
       .router_bias = -0.5f},
      {.name = "moe-all-on-one",
       .description = "x off-centre and the router row of expert 5 biased towards it: every "
                      "token's first choice",
       .tokens = 8,
       .activation = Activation::kGelu,
       .x_offset = 1.0f,
       .biased_expert = 5,
       .router_bias = 0.03125f},
      {.name = "moe-single-token",
       .description = "one token",
       .tokens = 1,
       .activation = Activation::kGelu},
      {.name = "moe-capacity",
       .description = "capacity_factor 0.5: C = ceil(0.5 * 12 * 2 / 8) = 2 tokens per expert, "
                      "assignments past it dropped",
       .tokens = 12,
       .activation = Activation::kGelu,
       .capacity_factor = 0.5},
      {.name = "moe-odd-length",
       .description = "13 tokens, not a multiple of 8/16/32",
       .tokens = 13,
       .activation = Activation::kGelu},
  };
  for (const MoeCase& moe : moe_cases) {
    add(moe.name,
        [moe](const std::string& n, const Kernels& kernels) { return moe_case(moe, n, kernels); });
  }
  // H = 4 query heads; N_v not a multiple of 8 in most cases.
  struct CrossAttentionShape {
    int64_t n_kv_heads, head_dim;
    int64_t vision_tokens;  // N_v
    int64_t queries;        // T
  };
  for (const CrossAttentionShape x :
       {CrossAttentionShape{1, 8, 5, 3}, CrossAttentionShape{2, 16, 9, 1},
        CrossAttentionShape{4, 64, 17, 2}, CrossAttentionShape{1, 128, 33, 2}}) {
    add_shaped("cross-attention-" + head_sharing(x.n_kv_heads) + "-hd" +
                   std::to_string(x.head_dim) + "-n" + std::to_string(x.vision_tokens) + "-t" +
                   std::to_string(x.queries),
               shaped::cross_attention,
               {{"queries", x.queries},
                {"n_heads", 4},
                {"n_kv_heads", x.n_kv_heads},
                {"head_dim", x.head_dim},
                {"vision_tokens", x.vision_tokens}});
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
