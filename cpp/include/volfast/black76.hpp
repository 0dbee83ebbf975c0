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

#include "volfast/arch.hpp"

namespace volfast {
VOLFAST_ARCH_BEGIN
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

// exp(-(a^2 + c^2)/2) with both squares and their sum carried exactly to first order.
inline double exp_neg_half_sum_squares(double a, double c) {
  const double pa = a * a, qa = std::fma(a, a, -pa);
  const double pc = c * c, qc = std::fma(c, c, -pc);
  const double S = pa + pc;
  const double bb = S - pa;
  const double e = (pa - (S - bb)) + (pc - bb);  // two-sum error of pa + pc
  return std::exp(-0.5 * S) * (1.0 - 0.5 * (qa + qc + e));
}

// erfc(-h / sqrt2) for h <= 0 with the rounding of -h/sqrt2 corrected to first order. `e_half_h2`
// is exp(-h^2/2), which the caller has at hand; erfc'(y) = -2/sqrt(pi) exp(-y^2).
inline double erfc_neg_h_over_sqrt2(double h, double e_half_h2) {
  constexpr double k_lo = -4.833646656726457e-17;  // 1/sqrt2 - fl(1/sqrt2)
  const double y = -h * kInvSqrt2;
  const double y_lo = std::fma(-h, kInvSqrt2, -y) - h * k_lo;
  return std::erfc(y) - 2.0 * kInvSqrtPi * e_half_h2 * y_lo;
}

}  // namespace detail

// Out-of-the-money call time value bo(x, s) for x <= 0, s > 0, together with its vega b' = db/ds.
struct BlackOtm {
  double b;
  double vega;
};

// Small-t expansion, used for t = s/2 < 0.21 where the plain formula loses digits to cancellation:
//   bo = 2 sum_{k odd} Z_k t^k / k!,  Z_k = E Y^(k)(h),  Y = Phi/phi,  E = phi(h) exp(-t^2/2) = b',
// with Z_0 = E Y = exp(-t^2/2) erfc(-h/sqrt2) / 2, Z_1 = E + h Z_0 and Z_{k+1} = h Z_k + k Z_{k-1}
// (from Y' = 1 + h Y). Terms up to t^17 keep the truncation below 1e-16 at t = 0.21; the loop stops
// earlier once terms no longer matter. For h < -14 erfc(-h/sqrt2) underflows before bo does, so Z_0 comes
// from the asymptotic series of erfcx instead.
inline BlackOtm bo_small_t(double h, double t) {
  using namespace detail;
  const double et = exp_neg_half_square(t);
  double E, z0;
  if (h > -14.0) {
    const double eh = exp_neg_half_square(h);
    E = eh * et * kInvSqrt2Pi;
    z0 = 0.5 * et * erfc_neg_h_over_sqrt2(h, eh);
  } else {
    E = exp_neg_half_sum_squares(h, t) * kInvSqrt2Pi;
    z0 = E * kSqrtPiOver2 * erfcx_nonneg(-h * kInvSqrt2);
  }
  if (E == 0.0) return {0.0, 0.0};
  // 1/(k+1)!/(k+2)! ratios folded into multipliers: term_{k+2} = term_k-scale * t^2 / ((k+1)(k+2)).
  static constexpr double kInvPair[8] = {1.0 / 6, 1.0 / 20, 1.0 / 42, 1.0 / 72, 1.0 / 110, 1.0 / 156, 1.0 / 210,
                                         1.0 / 272};
  const double t2 = t * t;
  double zkm1 = z0, zk = E + h * z0;  // Z_0, Z_1
  double scale = t;                    // t^k / k!
  double sum = zk * scale;
  for (int i = 0; i < 8; ++i) {
    const double k = 2 * i + 1;
    const double z2 = h * zk + k * zkm1;
    const double z3 = h * z2 + (k + 1.0) * zk;
    zkm1 = z2;
    zk = z3;
    scale *= t2 * kInvPair[i];
    const double term = zk * scale;
    sum += term;
    if (std::fabs(term) <= 1e-17 * sum) break;
  }
  return {2.0 * sum, E};
}

// bo and its vega for x <= 0. exp(x/2) and exp(-x/2) are passed in because the solver evaluates many s
// for one x.
inline BlackOtm normalised_black_otm_vega(double x, double s, double ex_half, double ex_mhalf) {
  using namespace detail;
  if (!(s > 0.0)) return {0.0, 0.0};
  const double h = x / s, t = 0.5 * s;
  if (t < 0.21 && x > -1.5) return bo_small_t(h, t);
  const double E = exp_neg_half_sum_squares(h, t);
  if (h + t > 0.0) {
    // Near the money with a large s: both terms are O(1) and their difference is well conditioned.
    const double b = 0.5 * (ex_half * std::erfc(-(h + t) * kInvSqrt2) - ex_mhalf * std::erfc(-(h - t) * kInvSqrt2));
    return {b, E * kInvSqrt2Pi};
  }
  // Otherwise the erfcx form, immune to the argument rounding that erfc suffers in the tails.
  const double b = 0.5 * E * (erfcx_nonneg(-(h + t) * kInvSqrt2) - erfcx_nonneg(-(h - t) * kInvSqrt2));
  return {b, E * kInvSqrt2Pi};
}

inline double normalised_black_otm(double x, double s) {
  return normalised_black_otm_vega(x, s, std::exp(0.5 * x), std::exp(-0.5 * x)).b;
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
  return detail::kInvSqrt2Pi * detail::exp_neg_half_sum_squares(x / s, 0.5 * s);
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
  const double p = D * std::sqrt(F) * std::sqrt(K) * normalised_black(x, s, is_call ? 1.0 : -1.0);
  // Keep the rounding of the products inside the no-arbitrage bounds [intrinsic, D F] / [intrinsic, D K].
  const double upper = D * (is_call ? F : K);
  const double intrinsic = D * (is_call ? std::fmax(F - K, 0.0) : std::fmax(K - F, 0.0));
  return std::fmin(std::fmax(p, intrinsic), upper);
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

VOLFAST_ARCH_END
}  // namespace volfast
