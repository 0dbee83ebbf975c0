// Black-76 on the normalised scale used by Jaeckel ("Let's Be Rational", Wilmott 2015):
//   x = ln(F/K), s = vol * sqrt(T), beta = price / (D * sqrt(F K)),
//   b(x, s, theta) = theta * [exp(x/2) Phi(theta (x/s + s/2)) - exp(-x/2) Phi(theta (x/s - s/2))].
// Everything reduces to the out-of-the-money call time value bo(x, s) for x <= 0, since
//   b(x, s, theta) = intrinsic(x, theta) + bo(-|x|, s).
//
// Accuracy contract (checked against mpmath in tests/test_black76.py): the relative error of bo, converted
// to a volatility error through the vega (|db/b| * b / (s b')), stays within about 3 units of
// 2^-52 * (1 + b / (s b')), the floor that one ulp of the price implies. Deep out of the money this allows a
// larger relative price error, exactly as the price's own sensitivity to vol does.
//
// Pure C++: no pybind11 here.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace volfast {
namespace detail {

constexpr double kSqrt2 = 1.4142135623730950488;
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrtPiOver2 = 1.2533141373155002512;
constexpr double kInvSqrtPi = 0.56418958354775628695;
constexpr double kDblEps = std::numeric_limits<double>::epsilon();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// exp(-a^2/2) with the square split exactly (a^2 = p + q): the rounding of a^2 would otherwise cost
// a relative error of a^2/2 ulp, i.e. hundreds of ulp in the far tails.
inline double exp_neg_half_square(double a) {
  const double p = a * a;
  const double q = std::fma(a, a, -p);
  return std::exp(-0.5 * p) * (1.0 - 0.5 * q);
}

// Scaled complementary error function erfcx(y) = exp(y^2) erfc(y), for y >= 0 (callers guarantee it).
// Relative error about 2 ulp. Unlike erfc itself, erfcx is insensitive to a rounding of its argument.
inline double erfcx_nonneg(double y) {
  if (y < 10.0) {
    const double p = y * y;
    const double q = std::fma(y, y, -p);
    return std::exp(p) * (1.0 + q) * std::erfc(y);
  }
  // Asymptotic series; at y >= 10 the 13th term is below 1e-17 relative.
  const double z = 0.5 / (y * y);
  double term = 1.0, sum = 1.0;
  for (int n = 1; n <= 13; ++n) {
    term *= -(2 * n - 1) * z;
    sum += term;
  }
  return sum * kInvSqrtPi / y;
}

// Small-t expansion: bo = 2 E sum_{k odd} Y^(k)(h) t^k / k!, with Y = Phi/phi, E = phi(h) exp(-t^2/2),
// and the derivatives from Y' = 1 + h Y, Y^(k+1) = h Y^(k) + k Y^(k-1). Used for t = s/2 < 0.21, where
// the plain formula loses digits to cancellation. Terms up to t^17 keep the truncation below 1e-16.
inline double bo_small_t(double h, double t) {
  const double Y = kSqrtPiOver2 * erfcx_nonneg(-h * kInvSqrt2);
  const double t2 = t * t;
  double ykm1 = Y;            // Y^(k-1), k = 1
  double yk = 1.0 + h * Y;    // Y^(k)
  double coef[9];
  double tk = t, fact = 1.0;
  for (int i = 0; i < 9; ++i) {  // k = 1, 3, ..., 17
    const int k = 2 * i + 1;
    coef[i] = yk * tk / fact;
    const double y2 = h * yk + k * ykm1;
    const double y3 = h * y2 + (k + 1) * yk;
    ykm1 = y2;
    yk = y3;
    tk *= t2;
    fact *= (k + 1) * (k + 2);
  }
  double sum = 0.0;
  for (int i = 8; i >= 0; --i) sum += coef[i];  // smallest first
  const double E = exp_neg_half_square(h) * exp_neg_half_square(t) * kInvSqrt2Pi;
  return 2.0 * E * sum;
}

}  // namespace detail

// Out-of-the-money call time value bo(x, s) for x <= 0, s >= 0.
inline double normalised_black_otm(double x, double s) {
  using namespace detail;
  if (!(s > 0.0)) return 0.0;
  const double h = x / s, t = 0.5 * s;
  if (t < 0.21) return bo_small_t(h, t);
  if (h + t > 0.0) {
    // Near the money with a large s: both terms are O(1) and their difference is well conditioned.
    return 0.5 * (std::exp(0.5 * x) * std::erfc(-(h + t) * kInvSqrt2) -
                  std::exp(-0.5 * x) * std::erfc(-(h - t) * kInvSqrt2));
  }
  // Otherwise the erfcx form, immune to the argument rounding that erfc suffers in the tails.
  const double E = exp_neg_half_square(h) * exp_neg_half_square(t);
  return 0.5 * E * (erfcx_nonneg(-(h + t) * kInvSqrt2) - erfcx_nonneg(-(h - t) * kInvSqrt2));
}

// Intrinsic part of the normalised price: max(theta * 2 sinh(x/2), 0).
inline double normalised_intrinsic(double x, double theta) {
  if (theta * x <= 0.0) return 0.0;
  return std::fabs(2.0 * std::sinh(0.5 * x));
}

inline double normalised_black(double x, double s, double theta) {
  return normalised_intrinsic(x, theta) + normalised_black_otm(-std::fabs(x), s);
}

// d b / d s = phi(x/s + s/2) exp(x/2) = exp(-(h^2 + t^2)/2) / sqrt(2 pi), the same for calls and puts.
inline double normalised_vega(double x, double s) {
  if (!(s > 0.0)) return 0.0;
  const double h = x / s, t = 0.5 * s;
  return detail::kInvSqrt2Pi * detail::exp_neg_half_square(h) * detail::exp_neg_half_square(t);
}

// ---- Black-76 in market units -------------------------------------------------------------------------
// forward F > 0, strike K > 0, expiry T in years (ACT/365) > 0, vol as a fraction, discount factor D > 0,
// is_call selects theta = +1 / -1. Prices are in the units of F and K (index points).

inline bool black_inputs_valid(double F, double K, double T, double D) {
  return std::isfinite(F) && std::isfinite(K) && std::isfinite(T) && std::isfinite(D) && F > 0.0 && K > 0.0 &&
         T > 0.0 && D > 0.0;
}

// ln(F/K), accurate to an ulp of x itself near the money: F - K is exact there (Sterbenz), so log1p of
// (F - K)/K avoids the absolute error of 2^-53 that rounding F/K to double would put into a tiny x.
inline double log_moneyness(double F, double K) {
  const double d = F - K;
  if (std::fabs(d) < 0.5 * K) return std::log1p(d / K);
  return std::log(F / K);
}

inline double black_price(double F, double K, double T, double vol, bool is_call, double D) {
  if (!black_inputs_valid(F, K, T, D) || !(vol >= 0.0) || std::isinf(vol)) return detail::kNaN;
  const double x = log_moneyness(F, K);
  const double s = vol * std::sqrt(T);
  return D * std::sqrt(F) * std::sqrt(K) * normalised_black(x, s, is_call ? 1.0 : -1.0);
}

// Vega: dPrice/dvol (per unit of vol, not per vol point).
inline double black_vega(double F, double K, double T, double vol, double D) {
  if (!black_inputs_valid(F, K, T, D) || !(vol >= 0.0) || std::isinf(vol)) return detail::kNaN;
  const double sqrtT = std::sqrt(T);
  return D * std::sqrt(F) * std::sqrt(K) * normalised_vega(log_moneyness(F, K), vol * sqrtT) * sqrtT;
}

// Standard normal CDF, accurate in both tails.
inline double norm_cdf(double z) { return 0.5 * std::erfc(-z * detail::kInvSqrt2); }

// Delta with respect to the forward: dPrice/dF = D * theta * Phi(theta * d1).
inline double black_delta(double F, double K, double T, double vol, bool is_call, double D) {
  if (!black_inputs_valid(F, K, T, D) || !(vol >= 0.0) || std::isinf(vol)) return detail::kNaN;
  const double theta = is_call ? 1.0 : -1.0;
  const double s = vol * std::sqrt(T);
  const double x = log_moneyness(F, K);
  if (s == 0.0) {  // the limit: a step at the money
    if (x == 0.0) return D * theta * 0.5;
    return (theta * x > 0.0) ? D * theta : 0.0;
  }
  const double d1 = x / s + 0.5 * s;
  return D * theta * norm_cdf(theta * d1);
}

// Gamma with respect to the forward: d2Price/dF2 = D phi(d1) / (F s).
inline double black_gamma(double F, double K, double T, double vol, double D) {
  if (!black_inputs_valid(F, K, T, D) || !(vol >= 0.0) || std::isinf(vol)) return detail::kNaN;
  const double s = vol * std::sqrt(T);
  if (s == 0.0) return 0.0;
  const double x = log_moneyness(F, K);
  const double d1 = x / s + 0.5 * s;
  return D * detail::kInvSqrt2Pi * detail::exp_neg_half_square(d1) / (F * s);
}

}  // namespace volfast
