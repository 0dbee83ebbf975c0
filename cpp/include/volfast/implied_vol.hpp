// Black-76 implied volatility.
//
// Method. Reduce every quote to the out-of-the-money call time value beta on the normalised scale of
// black76.hpp (x <= 0, 0 < beta < bmax = exp(x/2)), then solve bo(x, s) = beta for s = vol sqrt(T) with
// Householder iterations of order 4 (third derivatives) on an objective chosen by region, as in Jaeckel's
// "Let's Be Rational" (2015):
//   * below the inflection point s_c = sqrt(2|x|):  f(s) = 1/ln bo(s) - 1/ln beta, which is close to
//     quadratic in s where bo itself behaves like exp(-x^2 / 2s^2);
//   * above it:  f(s) = ln(bmax - beta) - ln(bmax - bo(s)), close to quadratic in s where bo approaches
//     its maximum.
// Starting points come from the same two models pinned at s_c, so the iteration starts within a few percent
// and converges in two to three steps. The loop stops once a step is below 1e-7 relative (the error after
// a fourth-order step from there is far below one ulp) and gives up, with kNoConvergence, after
// kMaxIterations.
//
// Accuracy contract: |vol - vol_true| within a few times the attainable floor
// 2^-52 * (vol + price / vega) (plus the rounding of ln(F/K)), over vols 1e-3..5, |ln(K/F)| up to 5 sqrt(T),
// expiries of an hour to 30 years, calls and puts (tests/test_implied_vol.py checks it against mpmath).
//
// Pure C++: no pybind11 here.
#pragma once

#include <cmath>
#include <cstdint>

#include "volfast/black76.hpp"

namespace volfast {

enum IVStatus : std::uint8_t {
  kOk = 0,
  kBelowIntrinsic = 1,  // price below the intrinsic value (or negative)
  kAboveMaximum = 2,    // price at or above the upper bound D*F (call) or D*K (put)
  kInvalidInput = 3,    // NaN/inf anywhere, or F, K, T, D not strictly positive
  kNoConvergence = 4,   // the iteration did not settle (not seen in tests; kept as a guard)
};

constexpr int kMaxIterations = 12;

namespace detail {

// bmax - bo(x, s) for x <= 0, as a sum of two positive terms (no cancellation near the maximum).
inline double bo_complement(double x, double s) {
  if (!(s > 0.0)) return std::exp(0.5 * x);
  const double h = x / s, t = 0.5 * s;
  return 0.5 * (std::exp(0.5 * x) * std::erfc((h + t) * kInvSqrt2) +
                std::exp(-0.5 * x) * std::erfc(-(h - t) * kInvSqrt2));
}

// Householder step of order 4 from nu = -f/f', h2 = f''/f', h3 = f'''/f'.
inline double householder_step(double nu, double h2, double h3) {
  return nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu * (1.0 / 6.0)));
}

}  // namespace detail

// Solve bo(x, s) = beta for s, with x <= 0 and 0 < beta < exp(x/2) (callers check the bounds).
// `iterations` receives the number of Householder steps taken.
inline double implied_normalised_vol_otm(double beta, double x, IVStatus& status, int& iterations) {
  using namespace detail;
  status = kOk;
  iterations = 0;
  const double bmax = std::exp(0.5 * x);
  const double sc = std::sqrt(-2.0 * x);
  const double bc = normalised_black_otm(x, sc);
  const bool lower = beta < bc;
  double s;
  double target;  // 1/ln(beta) (lower) or ln(bmax - beta) (upper)
  if (lower) {
    const double lnb = std::log(beta);
    target = 1.0 / lnb;
    s = sc * std::sqrt(std::log(bc) / lnb);
  } else {
    const double gc = bo_complement(x, sc);
    target = std::log(bmax - beta);
    s = std::sqrt(sc * sc + 8.0 * (std::log(gc) - target));
  }
  const double x2 = x * x;
  for (int it = 1; it <= kMaxIterations; ++it) {
    iterations = it;
    const double b = normalised_black_otm(x, s);
    const double bp = normalised_vega(x, s);
    const double s2 = s * s;
    const double r2 = x2 / (s2 * s) - 0.25 * s;                  // b''/b'
    const double r3 = r2 * r2 - 3.0 * x2 / (s2 * s2) - 0.25;      // b'''/b'
    double nu, h2, h3;
    if (lower) {
      if (!(b > 0.0) || !(bp > 0.0)) {  // fell into underflow: move towards the inflection point
        s = 0.5 * (s + sc);
        continue;
      }
      const double L = std::log(b);
      const double lam = bp / b;                                        // L'
      const double L2 = lam * r2 - lam * lam;                           // L''
      const double L3 = lam * r3 - 3.0 * lam * lam * r2 + 2.0 * lam * lam * lam;  // L'''
      const double iL = 1.0 / L;
      const double f = iL - target;
      const double f1 = -lam * iL * iL;
      const double f2 = (2.0 * lam * lam * iL - L2) * iL * iL;
      const double f3 = (-6.0 * lam * lam * lam * iL * iL + 6.0 * lam * L2 * iL - L3) * iL * iL;
      nu = -f / f1;
      h2 = f2 / f1;
      h3 = f3 / f1;
    } else {
      const double G = bo_complement(x, s);
      if (!(G > 0.0) || !(bp > 0.0)) {  // beyond the representable top: move back towards s_c
        s = 0.5 * (s + sc);
        continue;
      }
      const double mu = bp / G;
      const double f = target - std::log(G);
      const double f1 = mu;
      const double f2 = mu * r2 + mu * mu;
      const double f3 = mu * r3 + 3.0 * mu * mu * r2 + 2.0 * mu * mu * mu;
      nu = -f / f1;
      h2 = f2 / f1;
      h3 = f3 / f1;
    }
    double ds = householder_step(nu, h2, h3);
    if (!std::isfinite(ds)) ds = nu;  // fall back to a Newton step
    double s_new = s + ds;
    if (!(s_new > 0.0)) s_new = 0.5 * s;
    const bool done = std::fabs(s_new - s) <= 1e-7 * s_new;
    s = s_new;
    if (done) return s;
  }
  status = kNoConvergence;
  return s;
}

// Implied vol of one quote in market units. Never throws; NaN vol whenever status != kOk.
// A price exactly at intrinsic gives vol 0 with kOk.
inline double implied_vol(double price, double F, double K, double T, bool is_call, double D, IVStatus& status,
                          int& iterations) {
  iterations = 0;
  if (!black_inputs_valid(F, K, T, D) || !std::isfinite(price)) {
    status = kInvalidInput;
    return detail::kNaN;
  }
  const double intrinsic = is_call ? D * (F > K ? F - K : 0.0) : D * (K > F ? K - F : 0.0);
  const double upper = is_call ? D * F : D * K;
  if (price < intrinsic || price < 0.0) {
    status = kBelowIntrinsic;
    return detail::kNaN;
  }
  if (price >= upper) {
    status = kAboveMaximum;
    return detail::kNaN;
  }
  const double time_value = price - intrinsic;
  if (time_value == 0.0) {
    status = kOk;
    return 0.0;
  }
  const double x = -std::fabs(log_moneyness(F, K));
  const double beta = time_value / (D * std::sqrt(F) * std::sqrt(K));
  if (!(beta > 0.0)) {  // a positive time value that underflows on the normalised scale: vol 0 to double
    status = kOk;
    return 0.0;
  }
  if (!(beta < std::exp(0.5 * x))) {  // the time value alone reaches the bound: vol is infinite
    status = kAboveMaximum;
    return detail::kNaN;
  }
  const double s = implied_normalised_vol_otm(beta, x, status, iterations);
  if (status != kOk) return detail::kNaN;
  return s / std::sqrt(T);
}

}  // namespace volfast
