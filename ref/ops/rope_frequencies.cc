#include "ref/ops/rope_frequencies.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace moeref::ref {

namespace {

// Su et al. 2021: pair i turns by theta^(-2i/D) radians per position, from 1 down to ~1/theta.
std::vector<double> unscaled(double theta, int64_t head_dim) {
  std::vector<double> inv_freq(static_cast<size_t>(head_dim / 2));
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    inv_freq[i] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
  }
  return inv_freq;
}

// Dynamic NTK (bloc97's NTK-aware scaling, made dynamic by emozilla): the base grows with the
// context s = max(seq_len, L), L the pretraining context,
//   theta' = theta * (factor * s / L - (factor - 1))^(D / (D - 2)),
// which is theta itself at s = L and stretches the slowest pair's wavelength by about
// factor * s / L - (factor - 1) while leaving the fastest pairs nearly unchanged.
std::vector<double> dynamic_ntk(double theta, int64_t head_dim, const RopeScaling& r,
                                int64_t max_position) {
  const double dim = static_cast<double>(head_dim);
  const double context = static_cast<double>(r.original_max_position_embeddings);
  const double seq_len = std::max(static_cast<double>(max_position) + 1.0, context);
  const double base =
      theta * std::pow(r.factor * seq_len / context - (r.factor - 1.0), dim / (dim - 2.0));
  return unscaled(base, head_dim);
}

// YaRN's "NTK-by-parts" (Peng et al. 2023). A pair that turns r times over the pretraining
// context L has inv_freq = 2 pi r / L, so it is pair d(r) = D ln(L / (2 pi r)) / (2 ln theta).
// Pairs below d(beta_fast) (many turns) keep their frequency, pairs above d(beta_slow) (less than
// about one turn) are interpolated as linear scaling does (inv_freq / factor), and a linear ramp
// over i in between mixes the two:
//   ramp(i) = clamp((i - low) / (high - low), 0, 1),  low = d(beta_fast), high = d(beta_slow),
//   inv_freq'[i] = inv_freq[i] / factor * ramp(i) + inv_freq[i] * (1 - ramp(i)),
// low and high rounded outwards to whole pairs unless truncate is false, then clipped to
// [0, D - 1], and high nudged by 0.001 when they meet.
std::vector<double> yarn(double theta, int64_t head_dim, const RopeScaling& r) {
  const double dim = static_cast<double>(head_dim);
  const double context = static_cast<double>(r.original_max_position_embeddings);
  const auto pair_of = [&](double rotations) {
    return dim * std::log(context / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(theta));
  };
  double low = pair_of(r.beta_fast);
  double high = pair_of(r.beta_slow);
  if (r.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, dim - 1.0);
  if (low == high) high += 0.001;

  std::vector<double> inv_freq = unscaled(theta, head_dim);
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolated = inv_freq[i];
    const double interpolated = inv_freq[i] / r.factor;
    inv_freq[i] = interpolated * ramp + extrapolated * (1.0 - ramp);
  }
  return inv_freq;
}

// YaRN's scale of cos and sin, so of every attention logit by its square: attention_factor when
// given, else get_mscale(factor) = 0.1 ln(factor) + 1 (1 for factor <= 1), or with DeepSeek's
// mscale and mscale_all_dim both set, get_mscale(factor, mscale) / get_mscale(factor,
// mscale_all_dim), where get_mscale(s, m) = 0.1 m ln(s) + 1.
double yarn_attention_scaling(const RopeScaling& r) {
  if (r.attention_factor) return *r.attention_factor;
  const auto get_mscale = [&](double m) {
    return r.factor <= 1.0 ? 1.0 : 0.1 * m * std::log(r.factor) + 1.0;
  };
  if (r.mscale > 0 && r.mscale_all_dim > 0)
    return get_mscale(r.mscale) / get_mscale(r.mscale_all_dim);
  return get_mscale(1.0);
}

// Llama 3.1 (Meta): by wavelength w = 2 pi / inv_freq against the pretraining context L,
//   w < L / high_freq_factor: unchanged;  w > L / low_freq_factor: inv_freq / factor;
//   otherwise, with s = (L / w - low_freq_factor) / (high_freq_factor - low_freq_factor),
//   inv_freq' = (1 - s) inv_freq / factor + s inv_freq.
std::vector<double> llama3(double theta, int64_t head_dim, const RopeScaling& r) {
  const double context = static_cast<double>(r.original_max_position_embeddings);
  const double low_freq_wavelen = context / r.low_freq_factor;
  const double high_freq_wavelen = context / r.high_freq_factor;
  std::vector<double> inv_freq = unscaled(theta, head_dim);
  for (double& f : inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_freq_wavelen) {
      f /= r.factor;
    } else if (!(wavelen < high_freq_wavelen)) {
      const double smooth =
          (context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      f = (1.0 - smooth) * f / r.factor + smooth * f;
    }
  }
  return inv_freq;
}

}  // namespace

RopeFrequencies rope_frequencies(double theta, int64_t head_dim, const RopeScaling& scaling,
                                 int64_t max_position) {
  const int64_t min_head_dim = scaling.kind == RopeScalingKind::kDynamic ? 4 : 2;
  if (head_dim < min_head_dim || head_dim % 2 != 0) {
    throw std::invalid_argument("rope_frequencies: head_dim must be even and at least " +
                                std::to_string(min_head_dim) + ", got " + std::to_string(head_dim));
  }
  if (!(theta > 0) || !std::isfinite(theta)) {
    throw std::invalid_argument("rope_frequencies: theta must be finite and positive, got " +
                                std::to_string(theta));
  }
  RopeFrequencies frequencies;
  switch (scaling.kind) {
    case RopeScalingKind::kDefault:
      frequencies.inv_freq = unscaled(theta, head_dim);
      break;
    case RopeScalingKind::kLinear:
      // Chen et al. 2023, position interpolation: position p is rotated as p / factor was.
      frequencies.inv_freq = unscaled(theta, head_dim);
      for (double& f : frequencies.inv_freq) f /= scaling.factor;
      break;
    case RopeScalingKind::kDynamic:
      frequencies.inv_freq = dynamic_ntk(theta, head_dim, scaling, max_position);
      break;
    case RopeScalingKind::kYarn:
      frequencies.inv_freq = yarn(theta, head_dim, scaling);
      frequencies.attention_scaling = yarn_attention_scaling(scaling);
      break;
    case RopeScalingKind::kLlama3:
      frequencies.inv_freq = llama3(theta, head_dim, scaling);
      break;
  }
  return frequencies;
}

}  // namespace moeref::ref
