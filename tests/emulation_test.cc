// The honest emulated backends (golden/emulated_kernels.h): each one computes, is deterministic,
// keeps the equalities its description promises, and stays within a bound of the exact math that
// follows from the unit roundoff of its precision. The bounds are written here from the
// formulas, in double, independently of golden/: an honest backend may round differently, but
// never by more than its precision allows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "golden/candidate_runner.h"
#include "golden/compare.h"
#include "golden/emulated_kernels.h"
#include "golden/golden_set.h"
#include "ref/ops/attention.h"
#include "ref/ops/kernels.h"

namespace moeref::golden {
namespace {

namespace fs = std::filesystem;

const fs::path kSets = fs::path(MOEREF_SOURCE_DIR) / "golden" / "sets";
constexpr Precision kPrecisions[] = {Precision::kFP32, Precision::kTF32, Precision::kBF16,
                                     Precision::kFP16};

// ---- The family. ----

TEST(HonestBackends, AtLeastNinePerPrecisionPlainFirstSameNamesEverywhere) {
  const std::vector<HonestBackend>& fp32 = honest_backends(Precision::kFP32);
  for (Precision p : kPrecisions) {
    const std::vector<HonestBackend>& family = honest_backends(p);
    ASSERT_GE(family.size(), 9u) << precision_name(p);
    EXPECT_EQ(family[0].name, "plain");
    EXPECT_EQ(family[0].kernels, &emulated_kernels(p));
    std::set<std::string> names;
    for (size_t i = 0; i < family.size(); ++i) {
      EXPECT_TRUE(names.insert(family[i].name).second) << family[i].name << " twice";
      EXPECT_FALSE(family[i].description.empty()) << family[i].name;
      EXPECT_NE(family[i].kernels, nullptr) << family[i].name;
      ASSERT_EQ(family[i].name, fp32.at(i).name) << precision_name(p);
    }
    for (const char* required : {"sequential", "reversed", "fma", "split-k", "reduced-precision",
                                 "flash-attention", "memory-efficient", "autocast", "fp32-residual",
                                 "fused-activation", "eager-activation"}) {
      EXPECT_TRUE(names.contains(required)) << required << " at " << precision_name(p);
    }
  }
}

const HonestBackend& backend_named(Precision p, const std::string& name) {
  for (const HonestBackend& b : honest_backends(p)) {
    if (b.name == name) return b;
  }
  throw std::invalid_argument("no honest backend " + name);
}

// Each backend's candidate for a model set (RMSNorm, SwiGLU, MoE) and for one with LayerNorm,
// GELU and dense layers, run twice.
struct Runs {
  std::map<std::string, Candidate> first, second;  // by "precision:backend:set"
};

const Runs& runs() {
  static const Runs all = [] {
    Runs r;
    for (const char* set_name : {"tiny-mqa-moe", "tiny-gqa-mixed"}) {
      const GoldenSet set = GoldenSet::open(kSets / set_name);
      for (Precision p : kPrecisions) {
        for (const HonestBackend& b : honest_backends(p)) {
          const std::string key = std::string(precision_name(p)) + ":" + b.name + ":" + set_name;
          r.first.emplace(key, run_case(set, *b.kernels));
          r.second.emplace(key, run_case(set, *b.kernels));
        }
      }
    }
    return r;
  }();
  return all;
}

bool same_bits(const Candidate& a, const Candidate& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, record] : a) {
    const auto other = b.find(name);
    if (other == b.end() || other->second.bytes != record.bytes) return false;
  }
  return true;
}

TEST(HonestBackends, EachDiffersFromTheReferenceAndRepeatsBitForBit) {
  for (const char* set_name : {"tiny-mqa-moe", "tiny-gqa-mixed"}) {
    const GoldenSet set = GoldenSet::open(kSets / set_name);
    for (Precision p : kPrecisions) {
      for (const HonestBackend& b : honest_backends(p)) {
        const std::string key = std::string(precision_name(p)) + ":" + b.name + ":" + set_name;
        const Candidate& candidate = runs().first.at(key);
        EXPECT_TRUE(same_bits(candidate, runs().second.at(key))) << key;
        int64_t differing = 0;
        for (const ExpectedTensor& e : set.expected()) {
          if (candidate.at(e.name).bytes != set.expected_tensor(e.name).bytes) ++differing;
        }
        EXPECT_GT(differing, 0) << key << " computes exactly the reference";
      }
    }
  }
}

// What the descriptions promise. reduced-precision rounds block sums to the storage precision,
// which at fp32 and tf32 is fp32, so there it is split-k, and at bf16 and fp16 it is not;
// fp32-residual keeps in fp32 what plain stores, which at fp32 and tf32 is fp32 already. At
// fp32 every other backend rounds differently from plain. (At bf16 reduction orders rarely
// change a stored value: sequential, reversed, fma, split-k and fused-activation compute
// these two sets bit for bit as plain does.)
TEST(HonestBackends, EqualOrDifferentAsTheirDescriptionsSay) {
  auto same = [](Precision p, const std::string& a, const std::string& b) {
    for (const char* set : {"tiny-mqa-moe", "tiny-gqa-mixed"}) {
      const std::string prefix = std::string(precision_name(p)) + ":";
      const std::string suffix = std::string(":") + set;
      if (!same_bits(runs().first.at(prefix + a + suffix), runs().first.at(prefix + b + suffix))) {
        return false;
      }
    }
    return true;
  };
  for (Precision p : {Precision::kFP32, Precision::kTF32}) {
    EXPECT_TRUE(same(p, "reduced-precision", "split-k")) << precision_name(p);
    EXPECT_TRUE(same(p, "fp32-residual", "plain")) << precision_name(p);
  }
  for (Precision p : {Precision::kBF16, Precision::kFP16}) {
    EXPECT_FALSE(same(p, "reduced-precision", "split-k")) << precision_name(p);
    EXPECT_FALSE(same(p, "fp32-residual", "plain")) << precision_name(p);
    EXPECT_FALSE(same(p, "eager-activation", "plain")) << precision_name(p);
  }
  for (const HonestBackend& b : honest_backends(Precision::kFP32)) {
    if (b.name != "plain" && b.name != "fp32-residual") {
      EXPECT_FALSE(same(Precision::kFP32, b.name, "plain")) << b.name;
    }
  }
}

// ---- Inputs, and the exact math in double. ----

// A deterministic stream of floats in [lo, hi] (xorshift32), with a random sign if `signed`.
std::vector<float> stream(size_t n, uint32_t seed, double lo, double hi, bool random_sign) {
  std::vector<float> out(n);
  uint32_t state = seed * 2654435761u + 1u;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return static_cast<double>(state) / 4294967296.0;
  };
  for (float& v : out) {
    const double magnitude = lo + (hi - lo) * next();
    v = static_cast<float>(random_sign && next() < 0.5 ? -magnitude : magnitude);
  }
  return out;
}

// The unit roundoff of a precision's mantissa (half an ulp at 1); tf32 stores fp32.
double mantissa_roundoff(Precision p) {
  switch (p) {
    case Precision::kFP32:
      return std::ldexp(1.0, -24);
    case Precision::kTF32:
    case Precision::kFP16:
      return std::ldexp(1.0, -11);
    case Precision::kBF16:
      return std::ldexp(1.0, -8);
  }
  return 1.0;
}
Precision storage_of(Precision p) { return p == Precision::kTF32 ? Precision::kFP32 : p; }

const double kU32 = std::ldexp(1.0, -24);

// The absolute error of storing a tiny value: fp16's subnormals are 2^-24 apart.
double underflow(Precision storage) {
  return storage == Precision::kFP16 ? std::ldexp(1.0, -24) : 1e-30;
}

// One op's results against the exact values with per-element bounds.
void expect_within(const std::vector<float>& actual, const std::vector<double>& exact,
                   const std::vector<double>& bound, const std::string& what) {
  ASSERT_EQ(actual.size(), exact.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < exact.size(); ++i) {
    const double error = std::fabs(actual[i] - exact[i]);
    if (!(error <= bound[i]) && reported++ < 3) {
      ADD_FAILURE() << what << "[" << i << "]: " << actual[i] << " vs exact " << exact[i]
                    << ", error " << error << " above the bound " << bound[i];
    }
  }
}

// Every op of every backend against its bound; `check` runs one op for one backend.
template <class Check>
void for_every_backend(Check check) {
  for (Precision p : kPrecisions) {
    for (const HonestBackend& b : honest_backends(p)) {
      check(p, b, std::string(precision_name(p)) + " " + b.name);
    }
  }
}

// y = x w^T: each product's inputs rounded to the precision (2u), an fp32 sum of n products in
// any order with or without fused multiply-adds ((n + 2) u32), the output stored (u_s), and, for
// a reduced-precision reduction, every block sum and running total stored (2 u_s per block of
// 32): the bound is sum |x_i w_i| times these, as gemma.cpp's matmul tests bound theirs.
TEST(HonestBackends, MatmulWithinTheUnitRoundoffBound) {
  constexpr int64_t kRows = 5, kIn = 96, kOut = 7;
  const std::vector<float> x = stream(kRows * kIn, 1, 0.05, 1.0, true);
  const std::vector<float> w = stream(kOut * kIn, 2, 0.05, 0.5, true);
  for_every_backend([&](Precision p, const HonestBackend& b, const std::string& what) {
    std::vector<float> y(kRows * kOut);
    b.kernels->matmul(x.data(), w.data(), y.data(), kRows, kIn, kOut);
    const double us = mantissa_roundoff(storage_of(p));
    const double blocks = b.name == "reduced-precision" ? std::ceil(kIn / 32.0) : 0.0;
    std::vector<double> exact(y.size()), bound(y.size());
    for (int64_t r = 0; r < kRows; ++r) {
      for (int64_t o = 0; o < kOut; ++o) {
        double sum = 0, magnitude = 0;
        for (int64_t i = 0; i < kIn; ++i) {
          sum += static_cast<double>(x[r * kIn + i]) * w[o * kIn + i];
          magnitude += std::fabs(static_cast<double>(x[r * kIn + i]) * w[o * kIn + i]);
        }
        exact[r * kOut + o] = sum;
        bound[r * kOut + o] =
            magnitude * (2.01 * mantissa_roundoff(p) + (kIn + 2) * kU32 + (1 + 2 * blocks) * us) +
            underflow(storage_of(p));
      }
    }
    expect_within(y, exact, bound, what + " matmul");
  });
}

// y = w x / rms(x): the input may be stored first (u_s on each x_i and on the rms), the sums in
// fp32 (d u32), the output stored (u_s).
TEST(HonestBackends, RmsNormWithinTheUnitRoundoffBound) {
  constexpr int64_t kRows = 4, kD = 37;
  const std::vector<float> x = stream(kRows * kD, 3, 0.0, 2.0, true);
  const std::vector<float> weight = stream(kD, 4, 0.5, 1.5, false);
  for_every_backend([&](Precision p, const HonestBackend& b, const std::string& what) {
    std::vector<float> y(x.size());
    b.kernels->rms_norm(x.data(), weight.data(), 1e-5, y.data(), kRows, kD);
    const double us = mantissa_roundoff(storage_of(p));
    std::vector<double> exact(y.size()), bound(y.size());
    for (int64_t r = 0; r < kRows; ++r) {
      double squares = 0;
      for (int64_t i = 0; i < kD; ++i)
        squares += static_cast<double>(x[r * kD + i]) * x[r * kD + i];
      const double inv_rms = 1.0 / std::sqrt(squares / kD + 1e-5);
      for (int64_t i = 0; i < kD; ++i) {
        const double e = weight[i] * x[r * kD + i] * inv_rms;
        exact[r * kD + i] = e;
        bound[r * kD + i] = std::fabs(e) * (3 * us + (kD + 6) * kU32) + underflow(storage_of(p));
      }
    }
    expect_within(y, exact, bound, what + " rms_norm");
  });
}

// y = (x - mean) / std * w + b with x off-centre: storing the inputs moves each deviation by up
// to 2 u_s max|x|, so the normalised value errs by that over std, scaled by 1 + its size.
TEST(HonestBackends, LayerNormWithinTheUnitRoundoffBound) {
  constexpr int64_t kRows = 4, kD = 64;
  std::vector<float> x = stream(kRows * kD, 5, 0.0, 2.0, true);
  for (float& v : x) v += 3.0f;
  const std::vector<float> weight = stream(kD, 6, 0.5, 1.5, false);
  const std::vector<float> bias = stream(kD, 7, 0.0, 0.5, true);
  for_every_backend([&](Precision p, const HonestBackend& b, const std::string& what) {
    std::vector<float> y(x.size());
    b.kernels->layer_norm(x.data(), weight.data(), bias.data(), 1e-5, y.data(), kRows, kD);
    const double us = mantissa_roundoff(storage_of(p));
    std::vector<double> exact(y.size()), bound(y.size());
    for (int64_t r = 0; r < kRows; ++r) {
      const float* xr = x.data() + r * kD;
      double mean = 0, largest = 0;
      for (int64_t i = 0; i < kD; ++i) {
        mean += xr[i] / static_cast<double>(kD);
        largest = std::max(largest, std::fabs(static_cast<double>(xr[i])));
      }
      double variance = 0;
      for (int64_t i = 0; i < kD; ++i) variance += (xr[i] - mean) * (xr[i] - mean) / kD;
      const double std_dev = std::sqrt(variance + 1e-5);
      for (int64_t i = 0; i < kD; ++i) {
        const double normalised = (xr[i] - mean) / std_dev;
        const double e = normalised * weight[i] + bias[i];
        exact[r * kD + i] = e;
        bound[r * kD + i] = weight[i] * (1 + std::fabs(normalised)) * largest / std_dev *
                                (2 * us + (kD + 8) * kU32) +
                            us * std::fabs(e) + underflow(storage_of(p));
      }
    }
    expect_within(y, exact, bound, what + " layer_norm");
  });
}

// Rotate-half RoPE: an fp32 angle errs by a few u32 times the position, which moves each output
// by that times |a| + |b|; the output is stored (u_s).
TEST(HonestBackends, RopeWithinTheUnitRoundoffBound) {
  constexpr int64_t kHeads = 3, kHeadDim = 16;
  const std::vector<int64_t> positions = {0, 1, 7, 100, 1000, 4095};
  const int64_t tokens = static_cast<int64_t>(positions.size());
  const std::vector<float> x = stream(tokens * kHeads * kHeadDim, 8, 0.0, 1.0, true);
  for_every_backend([&](Precision p, const HonestBackend& b, const std::string& what) {
    std::vector<float> y = x;
    b.kernels->rope(y.data(), positions, kHeads, kHeadDim, 10000.0, RopeScaling{});
    const double us = mantissa_roundoff(storage_of(p));
    std::vector<double> exact(y.size()), bound(y.size());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < kHeads; ++h) {
        const int64_t base = (t * kHeads + h) * kHeadDim;
        for (int64_t i = 0; i < kHeadDim / 2; ++i) {
          const double angle = static_cast<double>(positions[t]) *
                               std::pow(10000.0, -2.0 * static_cast<double>(i) / kHeadDim);
          const double a = x[base + i], c = x[base + i + kHeadDim / 2];
          exact[base + i] = a * std::cos(angle) - c * std::sin(angle);
          exact[base + i + kHeadDim / 2] = c * std::cos(angle) + a * std::sin(angle);
          const double angle_error = 4 * kU32 * (static_cast<double>(positions[t]) + 4);
          for (int64_t k : {base + i, base + i + kHeadDim / 2}) {
            bound[k] = (std::fabs(a) + std::fabs(c)) * angle_error + us * std::fabs(exact[k]) +
                       underflow(storage_of(p));
          }
        }
      }
    }
    expect_within(y, exact, bound, what + " rope");
  });
}

// Softmax in fp32: exp(x - max) errs by u32 |x - max| plus its own ulp, the sum by n u32; each
// probability is stored (u_s).
std::vector<double> softmax_bound(const std::vector<double>& probs, double spread, int64_t n,
                                  double us, Precision storage) {
  std::vector<double> bound(probs.size());
  for (size_t j = 0; j < probs.size(); ++j) {
    bound[j] = probs[j] * (2 * spread * kU32 + static_cast<double>(n + 6) * kU32 + us) +
               underflow(storage);
  }
  return bound;
}

TEST(HonestBackends, SoftmaxWithinTheUnitRoundoffBound) {
  constexpr int64_t kRows = 4, kN = 17;
  const std::vector<float> x = stream(kRows * kN, 9, 0.0, 4.0, true);
  for_every_backend([&](Precision p, const HonestBackend& b, const std::string& what) {
    std::vector<float> y = x;
    b.kernels->softmax(y.data(), kRows, kN);
    for (int64_t r = 0; r < kRows; ++r) {
      const float* xr = x.data() + r * kN;
      const double top = *std::max_element(xr, xr + kN);
      const double bottom = *std::min_element(xr, xr + kN);
      std::vector<double> exact(kN);
      double sum = 0;
      for (int64_t j = 0; j < kN; ++j) sum += exact[j] = std::exp(xr[j] - top);
      for (double& e : exact) e /= sum;
      expect_within(
          std::vector<float>(y.begin() + r * kN, y.begin() + (r + 1) * kN), exact,
          softmax_bound(exact, top - bottom, kN, mantissa_roundoff(storage_of(p)), storage_of(p)),
          what + " softmax row " + std::to_string(r));
    }
  });
}

// Attention of 3 queries at positions 20..22 over a cache of 23 keys, 4 heads over 2 K/V heads.
// Scores err by the dot product's bound (inputs rounded, fp32 sums, a kernel's own stored
// intermediates) times the scale; a probability then by twice the largest score error, plus the
// softmax's own (a rebuilt exp(s - lse) errs by a few u32 times |s| + |lse|); the context by
// the probabilities' and values' errors and its own fp32 sums over the keys, stored.
TEST(HonestBackends, AttentionWithinTheUnitRoundoffBound) {
  constexpr int64_t kHeads = 4, kKvHeads = 2, kDim = 16, kCached = 20, kNew = 3;
  constexpr int64_t kCapacity = kCached + kNew;
  const ref::AttentionDims dims(kHeads, kKvHeads, kDim, kCapacity);
  const std::vector<float> q = stream(kNew * kHeads * kDim, 10, 0.0, 1.0, true);
  const std::vector<float> keys = stream(kKvHeads * kCapacity * kDim, 11, 0.0, 1.0, true);
  const std::vector<float> values = stream(kKvHeads * kCapacity * kDim, 12, 0.0, 1.0, true);
  std::vector<int64_t> positions(kNew);
  for (int64_t t = 0; t < kNew; ++t) positions[t] = kCached + t;
  for_every_backend([&](Precision p, const HonestBackend& b, const std::string& what) {
    std::vector<float> context(q.size()), probs(kNew * kHeads * kCapacity);
    b.kernels->attention(q.data(), keys.data(), values.data(), positions, dims, context.data(),
                         probs.data(), kCapacity);
    const double us = mantissa_roundoff(storage_of(p));
    const double ui = mantissa_roundoff(p);
    const double scale = 1.0 / std::sqrt(static_cast<double>(kDim));
    for (int64_t t = 0; t < kNew; ++t) {
      for (int64_t h = 0; h < kHeads; ++h) {
        const int64_t n = positions[t] + 1;
        const float* qh = q.data() + (t * kHeads + h) * kDim;
        const int64_t g = h / (kHeads / kKvHeads);
        std::vector<double> s(n), p_exact(n);
        double score_error = 0, largest_score = 0;
        for (int64_t j = 0; j < n; ++j) {
          double dot = 0, magnitude = 0;
          for (int64_t i = 0; i < kDim; ++i) {
            const double product = static_cast<double>(qh[i]) * keys[ref::kv_row(dims, g, j) + i];
            dot += product;
            magnitude += std::fabs(product);
          }
          s[j] = dot * scale;
          largest_score = std::max(largest_score, std::fabs(s[j]));
          score_error =
              std::max(score_error, scale * magnitude * (2.01 * ui + 2 * us + (kDim + 4) * kU32) +
                                        2 * us * std::fabs(s[j]));
        }
        const double top = *std::max_element(s.begin(), s.end());
        const double bottom = *std::min_element(s.begin(), s.end());
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += p_exact[j] = std::exp(s[j] - top);
        for (double& v : p_exact) v /= sum;
        const double lse = top + std::log(sum);
        const double relative = 2.2 * score_error +
                                8 * kU32 * (largest_score + std::fabs(lse) + (top - bottom) + 2) +
                                static_cast<double>(n + 8) * kU32 + us;
        std::vector<double> p_bound(n);
        for (int64_t j = 0; j < n; ++j) {
          p_bound[j] = p_exact[j] * relative + underflow(storage_of(p));
        }
        const float* row = probs.data() + (t * kHeads + h) * kCapacity;
        const std::string head = " t" + std::to_string(t) + " h" + std::to_string(h);
        expect_within(std::vector<float>(row, row + n), p_exact, p_bound, what + " probs" + head);
        std::vector<double> c_exact(kDim), c_bound(kDim);
        for (int64_t i = 0; i < kDim; ++i) {
          double c = 0, magnitude = 0;
          for (int64_t j = 0; j < n; ++j) {
            c += p_exact[j] * values[ref::kv_row(dims, g, j) + i];
            magnitude += p_exact[j] * std::fabs(values[ref::kv_row(dims, g, j) + i]);
          }
          c_exact[i] = c;
          c_bound[i] =
              magnitude * (relative + 2 * us + 2.01 * ui + static_cast<double>(3 * n + 6) * kU32) +
              us * std::fabs(c) + underflow(storage_of(p));
        }
        expect_within(std::vector<float>(context.begin() + (t * kHeads + h) * kDim,
                                         context.begin() + (t * kHeads + h + 1) * kDim),
                      c_exact, c_bound, what + " context" + head);
      }
    }
  });
}

// Flash attention keeps only the context and the log-sum-exp: its traced probabilities, rebuilt
// as exp(s - lse), are normalised by construction only up to fp32 rounding of lse.
TEST(HonestBackends, FlashAttentionRebuildsFp32ProbabilitiesFromTheLogSumExp) {
  constexpr int64_t kHeads = 4, kDim = 8, kTokens = 30;
  const ref::AttentionDims dims(kHeads, 1, kDim, kTokens);
  const std::vector<float> q = stream(kTokens * kHeads * kDim, 13, 0.0, 2.0, true);
  const std::vector<float> keys = stream(kTokens * kDim, 14, 0.0, 2.0, true);
  const std::vector<float> values = stream(kTokens * kDim, 15, 0.0, 1.0, true);
  std::vector<int64_t> positions(kTokens);
  for (int64_t t = 0; t < kTokens; ++t) positions[t] = t;
  auto probabilities = [&](const Kernels& kernels) {
    std::vector<float> context(q.size()), probs(kTokens * kHeads * kTokens);
    kernels.attention(q.data(), keys.data(), values.data(), positions, dims, context.data(),
                      probs.data(), kTokens);
    return probs;
  };
  const std::vector<float> flash =
      probabilities(*backend_named(Precision::kFP32, "flash-attention").kernels);
  int rows_not_one = 0;
  for (int64_t row = 0; row < kTokens * kHeads; ++row) {
    double sum = 0;
    for (int64_t j = 0; j < kTokens; ++j) sum += flash[row * kTokens + j];
    EXPECT_NEAR(sum, 1.0, 1e-5) << "row " << row;
    if (sum != 1.0) ++rows_not_one;
  }
  EXPECT_GT(rows_not_one, 0);
  EXPECT_NE(flash, probabilities(emulated_kernels(Precision::kFP32)));
}

// silu(g) * up and the erf GELU, computed in fp32 or in double, stored once (u_s), or twice for
// eager-activation's silu stored before the product; fp32 erf's absolute error near -1 costs a
// few u32 times |x|.
TEST(HonestBackends, ActivationsWithinTheUnitRoundoffBound) {
  constexpr int64_t kN = 200;
  const std::vector<float> gate = stream(kN, 16, 0.0, 8.0, true);
  const std::vector<float> up = stream(kN, 17, 0.0, 2.0, true);
  for_every_backend([&](Precision p, const HonestBackend& b, const std::string& what) {
    const double us = mantissa_roundoff(storage_of(p));
    const double swiglu_stores = b.name == "eager-activation" ? 2.0 : 1.0;
    std::vector<float> swiglu(kN), gelu = gate;
    b.kernels->swiglu(gate.data(), up.data(), swiglu.data(), kN);
    b.kernels->gelu(gelu.data(), kN);
    std::vector<double> swiglu_exact(kN), gelu_exact(kN), swiglu_bound(kN), gelu_bound(kN);
    for (int64_t i = 0; i < kN; ++i) {
      const double g = gate[i];
      swiglu_exact[i] = g / (1 + std::exp(-g)) * up[i];
      gelu_exact[i] = 0.5 * g * (1 + std::erf(g / std::sqrt(2.0)));
      swiglu_bound[i] =
          std::fabs(swiglu_exact[i]) * (swiglu_stores * us + 8 * kU32) + underflow(storage_of(p));
      gelu_bound[i] = std::fabs(gelu_exact[i]) * (us + 8 * kU32) + 8 * kU32 * std::fabs(g) +
                      underflow(storage_of(p));
    }
    expect_within(swiglu, swiglu_exact, swiglu_bound, what + " swiglu");
    expect_within(gelu, gelu_exact, gelu_bound, what + " gelu");
  });
}

// x + branch in fp32, stored or not; and the top-k weights, renormalised, stored or not. The
// chosen experts themselves must be exactly the exact order's (the margins here are wide).
TEST(HonestBackends, ResidualAddAndTopKWithinTheUnitRoundoffBound) {
  constexpr int64_t kN = 64, kTokens = 5, kExperts = 8, kK = 2;
  const std::vector<float> x = stream(kN, 18, 0.0, 4.0, true);
  const std::vector<float> branch = stream(kN, 19, 0.0, 1.0, true);
  std::vector<float> probs(kTokens * kExperts);
  for (int64_t t = 0; t < kTokens; ++t) {
    for (int64_t e = 0; e < kExperts; ++e) {
      probs[t * kExperts + e] =
          static_cast<float>(static_cast<double>(1 + (e * 5 + t * 3) % kExperts) / 36.0);
    }
  }
  for_every_backend([&](Precision p, const HonestBackend& b, const std::string& what) {
    const double us = mantissa_roundoff(storage_of(p));
    std::vector<float> sum = x;
    b.kernels->residual_add(sum.data(), branch.data(), kN);
    std::vector<double> exact(kN), bound(kN);
    for (int64_t i = 0; i < kN; ++i) {
      exact[i] = static_cast<double>(x[i]) + branch[i];
      bound[i] = std::fabs(exact[i]) * (us + kU32) + underflow(storage_of(p));
    }
    expect_within(sum, exact, bound, what + " residual_add");

    std::vector<int32_t> indices(kTokens * kK);
    std::vector<float> weights(kTokens * kK);
    b.kernels->select_top_k(probs.data(), kTokens, kExperts, kK, true, indices.data(),
                            weights.data());
    std::vector<double> weights_exact(weights.size()), weights_bound(weights.size());
    for (int64_t t = 0; t < kTokens; ++t) {
      std::vector<int32_t> order(kExperts);
      for (int32_t e = 0; e < kExperts; ++e) order[e] = e;
      const float* row = probs.data() + t * kExperts;
      std::stable_sort(order.begin(), order.end(),
                       [row](int32_t a, int32_t c) { return row[a] > row[c]; });
      const double chosen = static_cast<double>(row[order[0]]) + row[order[1]];
      for (int64_t r = 0; r < kK; ++r) {
        EXPECT_EQ(indices[t * kK + r], order[r]) << what << " token " << t << " rank " << r;
        weights_exact[t * kK + r] = row[order[r]] / chosen;
        weights_bound[t * kK + r] = weights_exact[t * kK + r] * (us + 4 * kU32);
      }
    }
    expect_within(weights, weights_exact, weights_bound, what + " top_k weights");
  });
}

}  // namespace
}  // namespace moeref::golden
