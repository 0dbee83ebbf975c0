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

#include "volfast/arch.hpp"

namespace volfast {
VOLFAST_ARCH_BEGIN

enum IVStatus : std::uint8_t {
  kOk = 0,
  kBelowIntrinsic = 1,  // price below the intrinsic value (or negative)
  kAboveMaximum = 2,    // price at or above the upper bound D*F (call) or D*K (put)
  kInvalidInput = 3,    // NaN/inf anywhere, or F, K, T, D not strictly positive
  kNoConvergence = 4,   // the iteration did not settle (not seen in tests; kept as a guard)
};

constexpr int kMaxIterations = 40;
#ifndef VOLFAST_IV_CONVERGED_STEP
#define VOLFAST_IV_CONVERGED_STEP 1e-4
#endif
// A Householder step of order 4 from relative error e lands near e^4 (times derivative ratios of order
// one for these objectives): a step this small means the result is exact to double.
constexpr double kConvergedStep = VOLFAST_IV_CONVERGED_STEP;

namespace detail {

// bmax - bo(x, s) for x <= 0, as a sum of two positive terms (no cancellation near the maximum).
inline double bo_complement(double x, double s, double ex_half, double ex_mhalf) {
  if (!(s > 0.0)) return ex_half;
  const double h = x / s, t = 0.5 * s;
  return 0.5 * (ex_half * std::erfc((h + t) * kInvSqrt2) + ex_mhalf * std::erfc(-(h - t) * kInvSqrt2));
}

// Householder step of order 4 from nu = -f/f', h2 = f''/f', h3 = f'''/f'.
inline double householder_step(double nu, double h2, double h3) {
  return nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu * (1.0 / 6.0)));
}

}  // namespace detail

// Starting point below the inflection point: the smallest of three estimates that each overshoot
// (checked over the domain in tests): the model 1/ln bo ~ c s^2 pinned at s_c; the first-order
// expansion bo ~ s (phi(h) + h Phi(h)) expanded around h = 0 (good for |h| small); and the
// asymptotic bo ~ s^3 / (sqrt(2 pi) x^2) exp(-x^2/2s^2 - s^2/8) / (1 + 3/h^2), solved for w = |x|/s by
// three Newton steps (good for |h| large).
inline double lower_guess(double beta, double x, double sc, double bc) {
  const double lnb = std::log(beta);
  const double ax = -x;
  const double g1 = sc * std::sqrt(std::log(bc) / lnb);
  constexpr double c0 = detail::kInvSqrt2Pi;
  const double bx = beta - 0.5 * x;
  const double disc = bx * bx - 2.0 * c0 * c0 * x * x;
  const double g3 = disc > 0.0 ? (bx + std::sqrt(disc)) / (2.0 * c0) : g1;
  const double g13 = std::fmin(g1, g3);
  const double wc = ax / sc;
  // ln bo(w) ~ -w^2/2 - x^2/(8 w^2) - ln(w (w^2 + 3)) + ln|x| - ln(2 pi)/2
  const double C = std::log(ax) - 0.91893853320467274178;
  double w = std::sqrt(std::fmax(-2.0 * (lnb - C), wc * wc));
  for (int i = 0; i < 3; ++i) {
    const double w2 = w * w;
    const double m = -0.5 * w2 - ax * ax / (8.0 * w2) - std::log(w * (w2 + 3.0)) + C;
    const double dm = -w + ax * ax / (4.0 * w2 * w) - 1.0 / w - 2.0 * w / (w2 + 3.0);
    w = std::fmax(w - (m - lnb) / dm, wc);
  }
  return std::fmin(g13, ax / w);
}

namespace detail {

// The bracketed Householder iteration shared by the scalar and batched solvers, from the start s inside
// the bracket (lo, hi). lower: objective 1/ln bo - 1/ln beta (target = 1/ln beta); top: ln(bmax - beta) -
// ln(bmax - bo) (target = ln(bmax - beta)); otherwise bo - beta.
inline double householder_solve(double beta, double x, double ex_half, double ex_mhalf, bool lower, bool top,
                                double target, double s, double lo, double hi, IVStatus& status,
                                int& iterations) {
  const double bmax = ex_half;
  const double x2 = x * x;
  for (int it = 1; it <= kMaxIterations; ++it) {
    iterations = it;
    const BlackOtm ev = normalised_black_otm_vega(x, s, ex_half, ex_mhalf);
    const double b = ev.b, bp = ev.vega;
    // The bracket follows the sign of the objective itself: above s_c that is the complement G, which
    // keeps its digits where bo rounds to bmax.
    const double G = top ? bo_complement(x, s, ex_half, ex_mhalf) : 0.0;
    const bool below_root = top ? (G > bmax - beta) : (b < beta);
    if (below_root) {
      lo = s;
    } else {
      hi = s;
    }
    const double s2 = s * s;
    const double r2 = x2 / (s2 * s) - 0.25 * s;              // second over first derivative of bo
    const double r3 = r2 * r2 - 3.0 * x2 / (s2 * s2) - 0.25;  // third over first derivative of bo
    double ds = kNaN;
    if (lower) {
      if (b > 0.0 && bp > 0.0) {
        // f = 1/L - 1/ln(beta), L = ln bo; derivatives by the chain rule.
        const double L = std::log(b);
        const double lam = bp / b;                                                   // L'
        const double L2 = lam * r2 - lam * lam;                                      // L''
        const double L3 = lam * r3 - 3.0 * lam * lam * r2 + 2.0 * lam * lam * lam;  // L'''
        const double iL = 1.0 / L;
        const double f = iL - target;
        const double f1 = -lam * iL * iL;
        const double f2 = (2.0 * lam * lam * iL - L2) * iL * iL;
        const double f3 = (-6.0 * lam * lam * lam * iL * iL + 6.0 * lam * L2 * iL - L3) * iL * iL;
        ds = householder_step(-f / f1, f2 / f1, f3 / f1);
      }
    } else if (!top) {
      if (bp > 0.0) ds = householder_step(-(b - beta) / bp, r2, r3);  // f = bo - beta
    } else {
      // f = ln(bmax - beta) - ln G, G = bmax - bo.
      if (G > 0.0 && bp > 0.0) {
        const double mu = bp / G;
        const double f = target - std::log(G);
        const double f2 = mu * r2 + mu * mu;
        const double f3 = mu * r3 + 3.0 * mu * mu * r2 + 2.0 * mu * mu * mu;
        ds = householder_step(-f / mu, f2 / mu, f3 / mu);
      }
    }
    double s_new = s + ds;
    if (std::fabs(ds) <= kConvergedStep * s && s_new > 0.0) return s_new;  // converged (NaN ds fails this test)
    if (!(s_new > lo && s_new < hi)) {  // NaN or outside the bracket: bisect
      if (lo > 0.0 && std::isfinite(hi)) {
        s_new = std::sqrt(lo * hi);
      } else if (lo > 0.0) {
        s_new = 2.0 * lo;
      } else {
        s_new = 0.5 * hi;
      }
      if (!(s_new != s)) break;  // the bracket collapsed onto s: s is as good as double allows
    }
    s = s_new;
  }
  if (hi - lo <= 4.0 * kDblEps * hi) return s;  // bracket collapsed to rounding: converged
  status = kNoConvergence;
  return s;
}

}  // namespace detail

// Solve bo(x, s) = beta for s, with x <= 0 and 0 < beta < exp(x/2) (callers check the bounds).
// `iterations` receives the number of Householder steps taken. The iteration keeps a bracket from the sign
// of bo(s) - beta and falls back to bisection (in ln s) whenever a step would leave it, so it cannot
// diverge; in practice two or three steps suffice.
inline double implied_normalised_vol_otm(double beta, double x, IVStatus& status, int& iterations) {
  using namespace detail;
  status = kOk;
  iterations = 0;
  const double ex_half = std::exp(0.5 * x), ex_mhalf = std::exp(-0.5 * x);
  const double bmax = ex_half;
  const double sc = std::sqrt(-2.0 * x);
  // bo at the inflection point in closed form (h = -t there): exp(x/2)/2 - exp(-x/2) Phi(-s_c). It only
  // chooses the branch and pins the starting model, so its cancellation for tiny |x| is harmless.
  const double bc = std::fmax(0.5 * ex_half - 0.5 * ex_mhalf * std::erfc(sc * kInvSqrt2), 0.0);
  const bool lower = beta < bc;
  // Above s_c, the log-complement objective only where bmax - beta is exact (beta >= bmax/2, Sterbenz);
  // below that the rounding of bmax - beta would cost beta's own digits, so the plain bo - beta is used.
  const bool top = !lower && beta >= 0.5 * bmax;
  double s, target, lo, hi;
  if (lower) {
    target = 1.0 / std::log(beta);
    s = lower_guess(beta, x, sc, bc);
    lo = 0.0;
    hi = sc;
  } else {
    const double gc = bo_complement(x, sc, ex_half, ex_mhalf);
    target = std::log(bmax - beta);
    s = std::sqrt(sc * sc + 8.0 * (std::log(gc) - target));
    lo = sc;
    hi = kInf;
  }
  return detail::householder_solve(beta, x, ex_half, ex_mhalf, lower, top, target, s, lo, hi, status,
                                   iterations);
}

// The same solve for a quote known to lie below the inflection point (beta < bo(x, s_c), x < 0), started
// at s0 in (0, s_c) instead of lower_guess(): the batched solver (implied_vol_batch.hpp) supplies s0, within
// about 1e-10 of the root. When s0 is that close, one Householder step on the plain objective bo - beta is
// exact to double and cheaper than on 1/ln bo (no logarithms), and also a little more accurate (the
// rounding of 1/ln bo - 1/ln beta costs up to |ln beta| ulps of the objective). It is taken only when its
// step is below 1e-8 relative: bo ~ exp(-h^2/2) makes the plain objective's fourth-order step land near
// (h^2 e)^4 / h^2 from a relative error e, and h^2 < 1500 wherever beta is a normal double, so that bound
// is below 1e-19. Otherwise the bracketed iteration of householder_solve() continues from s0.
// ex_half = exp(x/2).
inline double implied_normalised_vol_otm_lower_from(double beta, double x, double ex_half, double s0,
                                                    IVStatus& status, int& iterations) {
  status = kOk;
  iterations = 1;
  const double sc = std::sqrt(-2.0 * x);
  const double ex_mhalf = 1.0 / ex_half;
  const BlackOtm ev = normalised_black_otm_vega(x, s0, ex_half, ex_mhalf);
  if (ev.b > 0.0 && ev.vega > 0.0 && beta > 0x1p-1000) {
    const double s2 = s0 * s0, x2 = x * x;
    const double r2 = x2 / (s2 * s0) - 0.25 * s0;
    const double r3 = r2 * r2 - 3.0 * x2 / (s2 * s2) - 0.25;
    const double ds = detail::householder_step(-(ev.b - beta) / ev.vega, r2, r3);
    const double s1 = s0 + ds;
    if (std::fabs(ds) <= 1e-8 * s0 && s1 > 0.0 && s1 < sc) return s1;
  }
  return detail::householder_solve(beta, x, ex_half, ex_mhalf, true, false, 1.0 / std::log(beta), s0, 0.0, sc,
                                   status, iterations);
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

VOLFAST_ARCH_END
}  // namespace volfast
