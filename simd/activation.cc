#include "simd/activation.h"

#include <cstddef>

#include "simd/elementwise_chunks.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "simd/activation.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
// After highway.h: the math header is per target too.
#include "hwy/contrib/math/math-inl.h"

HWY_BEFORE_NAMESPACE();
namespace moeref::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// silu(a) = a / (1 + exp(-a)). For a < 0 multiply numerator and denominator by exp(a):
// a exp(a) / (1 + exp(a)). With e = exp(-|a|) <= 1 both forms share one exponential that can
// neither overflow (exp(-a) would, for a < -88.7) nor lose the tail:
//   silu(a) = (a >= 0 ? a : a e) / (1 + e).
// Exp is within 1 ulp (hwy/contrib/math); one rounding each for the add, product and quotient.
template <class D, class V>
HWY_INLINE V Silu(D d, V a) {
  const V e = hn::Exp(d, hn::Neg(hn::Abs(a)));
  const V numerator = hn::IfThenElse(hn::Ge(a, hn::Zero(d)), a, hn::Mul(a, e));
  return hn::Div(numerator, hn::Add(hn::Set(d, 1.0f), e));
}

// erf(x / sqrt 2) for x^2 < 2 from the Maclaurin series (Abramowitz & Stegun 7.1.5)
//   erf(z) = 2 / sqrt(pi) sum_n (-1)^n z^(2n+1) / (n! (2n+1)),
// with z = x / sqrt 2 folded into the coefficients so that only x^2 is rounded:
//   erf(x / sqrt 2) = x sum_{n<=10} d_n (x^2)^n,  d_n = sqrt(2 / pi) (-1)^n / (n! (2n+1) 2^n).
// For z < 1 the terms alternate and shrink, so stopping after n = 10 errs by at most the next
// term, 2 / sqrt(pi) / (11! 23) = 1.3e-9; Horner's rule in fp32 adds a few ulp of erf.
template <class D, class V>
HWY_INLINE V ErfSeries(D d, V x, V x_squared) {
  V p = hn::Set(d, 1.022486958e-11f);
  p = hn::MulAdd(p, x_squared, hn::Set(d, -2.260234328e-10f));
  p = hn::MulAdd(p, x_squared, hn::Set(d, 4.547059649e-09f));
  p = hn::MulAdd(p, x_squared, hn::Set(d, -8.245334830e-08f));
  p = hn::MulAdd(p, x_squared, hn::Set(d, 1.331938703e-06f));
  p = hn::MulAdd(p, x_squared, hn::Set(d, -1.888931252e-05f));
  p = hn::MulAdd(p, x_squared, hn::Set(d, 2.308693752e-04f));
  p = hn::MulAdd(p, x_squared, hn::Set(d, -2.374656431e-03f));
  p = hn::MulAdd(p, x_squared, hn::Set(d, 1.994711402e-02f));
  p = hn::MulAdd(p, x_squared, hn::Set(d, -1.329807601e-01f));
  p = hn::MulAdd(p, x_squared, hn::Set(d, 7.978845608e-01f));
  return hn::Mul(x, p);
}

// erfc(z) for z >= 1, given t = 1 / (1 + z / 2) and z^2. Numerical Recipes' erfcc (Press et al.,
// 2nd ed., sec. 6.2), a Chebyshev fit:
//   erfc(z) = t exp(-z^2 + P(t)),
//   P(t) = -1.26551223 + 1.00002368 t + 0.37409196 t^2 + 0.09678418 t^3 - 0.18628806 t^4
//          + 0.27886807 t^5 - 1.13520398 t^6 + 1.48851587 t^7 - 0.82215223 t^8 + 0.17087277 t^9,
// relative error below 1.2e-7 for every z >= 0 in exact arithmetic, so the small tail keeps its
// relative accuracy (unlike fits of erf itself, e.g. Abramowitz & Stegun 7.1.26, 1.5e-7
// absolute). In fp32 the few ulp of t, P (|P| < 1.3) and Exp cost about 3e-7 of erfc; for z >= 1,
// where erfc <= 0.16, that is below 6e-8 absolute on erf. Nearer 0 the series above is used.
template <class D, class V>
HWY_INLINE V Erfc(D d, V t, V z_squared) {
  V p = hn::Set(d, 0.17087277f);
  p = hn::MulAdd(p, t, hn::Set(d, -0.82215223f));
  p = hn::MulAdd(p, t, hn::Set(d, 1.48851587f));
  p = hn::MulAdd(p, t, hn::Set(d, -1.13520398f));
  p = hn::MulAdd(p, t, hn::Set(d, 0.27886807f));
  p = hn::MulAdd(p, t, hn::Set(d, -0.18628806f));
  p = hn::MulAdd(p, t, hn::Set(d, 0.09678418f));
  p = hn::MulAdd(p, t, hn::Set(d, 0.37409196f));
  p = hn::MulAdd(p, t, hn::Set(d, 1.00002368f));
  p = hn::MulAdd(p, t, hn::Set(d, -1.26551223f));
  return hn::Mul(t, hn::Exp(d, hn::Sub(p, z_squared)));
}

// gelu(x) = x q, q = (1 + erf(x / sqrt 2)) / 2, with z = |x| / sqrt 2:
// - z < 1 (x^2 < 2): q = 1/2 + erf(x / sqrt 2) / 2 from the series; q >= 0.08, no cancellation.
// - z >= 1: with h = erfc(z) / 2 and erf(-z) = -erf(z), q = 1 - h for x > 0 and q = h for x < 0,
//   so the negative tail is erfc itself, never 1 + erf cancelling (gelu(-10) = -7.6e-23, not 0).
// t = 1 / (1 + |x| / (2 sqrt 2)); z^2 = x^2 / 2 is formed from x * x (one rounding, the halving
// exact) rather than from a rounded z, as the exponent's absolute error is erfc's relative error.
// Both branches are computed and one is selected per lane.
template <class D, class V>
HWY_INLINE V Gelu(D d, V x) {
  const V one = hn::Set(d, 1.0f);
  const V half = hn::Set(d, 0.5f);
  const V x_squared = hn::Mul(x, x);
  const V q_near_zero = hn::MulAdd(half, ErfSeries(d, x, x_squared), half);
  const V t = hn::Div(one, hn::MulAdd(hn::Abs(x), hn::Set(d, 0.35355339059327376f), one));
  const V h = hn::Mul(half, Erfc(d, t, hn::Mul(x_squared, half)));
  const V q_tail = hn::IfThenElse(hn::Ge(x, hn::Zero(d)), hn::Sub(one, h), h);
  return hn::Mul(x, hn::IfThenElse(hn::Lt(x_squared, hn::Set(d, 2.0f)), q_near_zero, q_tail));
}

void SwigluImpl(const float* gate, const float* up, float* out, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::Mul(Silu(df, hn::LoadU(df, gate + i)), hn::LoadU(df, up + i)), df, out + i);
  }
  const hn::CappedTag<float, 1> d1;
  for (; i < n; ++i) {
    hn::StoreU(hn::Mul(Silu(d1, hn::LoadU(d1, gate + i)), hn::LoadU(d1, up + i)), d1, out + i);
  }
}

void GeluImpl(float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(Gelu(df, hn::LoadU(df, x + i)), df, x + i);
  const hn::CappedTag<float, 1> d1;
  for (; i < n; ++i) hn::StoreU(Gelu(d1, hn::LoadU(d1, x + i)), d1, x + i);
}

}  // namespace HWY_NAMESPACE
}  // namespace moeref::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace moeref::simd {

HWY_EXPORT(SwigluImpl);
HWY_EXPORT(GeluImpl);

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  over_chunks(n, [&](int64_t begin, size_t count) {
    HWY_DYNAMIC_DISPATCH(SwigluImpl)(gate + begin, up + begin, out + begin, count);
  });
}

void gelu(float* x, int64_t n) {
  over_chunks(n, [&](int64_t begin, size_t count) {
    HWY_DYNAMIC_DISPATCH(GeluImpl)(x + begin, count);
  });
}

}  // namespace moeref::simd
#endif  // HWY_ONCE
