// Batched Black-76 implied volatility: SIMD starting points, one accurate scalar step.
//
// The scalar solver of implied_vol.hpp spends most of its time on work that does not need full precision:
// the starting point (five or six logarithms) and the first Householder step. Only the last step decides
// the accuracy: a fourth-order step from a relative error e lands near e^4, so the result is as accurate
// as the one evaluation of bo(x, s) it makes, whatever produced the start.
//
// So quotes are processed in blocks of kBlock:
//   1. scalar: validate, statuses, x = -|ln(F/K)| and beta exactly as implied_vol() does;
//   2. SIMD across the block (branch-free lanes that the compiler vectorises; `#pragma omp simd` with
//      -fopenmp-simd): for quotes below the inflection point (the common case: out-of-the-money quotes of
//      short and medium expiries), the starting point of implied_vol.hpp's lower_guess and two Householder
//      steps on f(s) = 1/ln bo(s) - 1/ln beta, evaluated in log space with polynomial log and erfcx
//      (relative error about 1e-15 and 2e-15) so that nothing underflows. This "hint" is within about 1e-10
//      of the root;
//   3. scalar: the accurate solver of implied_vol.hpp started at the hint (one evaluation in practice,
//      with the same convergence test, bracket and fallbacks). Quotes whose branch is ambiguous, above the
//      inflection point, or whose hint failed take the unchanged scalar path.
// The hint only decides how many accurate steps are needed, never the accuracy: results satisfy the same
// contract as implied_vol() (tests/test_implied_vol.py) and agree with it to within a few ulps.
//
// Every lane runs the same vector code on a full block (short blocks are padded), so a quote's result does
// not depend on its neighbours or on how the caller splits the work across threads.
//
// Pure C++: no pybind11 here.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "volfast/black76.hpp"
#include "volfast/implied_vol.hpp"

#if defined(__GNUC__) || defined(__clang__)
#define VOLFAST_LANE inline __attribute__((always_inline))
#else
#define VOLFAST_LANE inline
#endif

#include "volfast/arch.hpp"

namespace volfast {
VOLFAST_ARCH_BEGIN

namespace lane {

// Quotes per block of the batched solver.
constexpr int kBlock = 64;

VOLFAST_LANE std::uint64_t bits_of(double a) {
  std::uint64_t u;
  std::memcpy(&u, &a, sizeof u);
  return u;
}

VOLFAST_LANE double from_bits(std::uint64_t u) {
  double a;
  std::memcpy(&a, &u, sizeof a);
  return a;
}

// Natural log for finite a > 0 (subnormals included), branch-free; relative error about 1e-15.
// a = 2^e m with m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(z), z = (m - 1)/(m + 1), |z| <= 0.1716, by the
// atanh series to z^23 (truncation below 3e-18). The exponent is converted to double through the 2^52
// trick, which vectorises without 64-bit integer conversions.
VOLFAST_LANE double log_pos(double a) {
  const bool sub = a < 0x1p-1022;
  a = sub ? a * 0x1p54 : a;
  const std::uint64_t u = bits_of(a);
  const double e_raw = from_bits((u >> 52) | 0x4330000000000000ULL) - 0x1p52;  // biased exponent
  double m = from_bits((u & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL);  // [1, 2)
  const bool big = m > detail::kSqrt2;
  m = big ? 0.5 * m : m;
  const double e = e_raw - 1023.0 + (big ? 1.0 : 0.0) - (sub ? 54.0 : 0.0);
  const double f = m - 1.0;
  const double z = f / (2.0 + f);
  const double w = z * z;
  double p = 1.0 / 23;
  p = p * w + 1.0 / 21;
  p = p * w + 1.0 / 19;
  p = p * w + 1.0 / 17;
  p = p * w + 1.0 / 15;
  p = p * w + 1.0 / 13;
  p = p * w + 1.0 / 11;
  p = p * w + 1.0 / 9;
  p = p * w + 1.0 / 7;
  p = p * w + 1.0 / 5;
  p = p * w + 1.0 / 3;
  // ln(1 + f) = 2z + 2 z w p, with 2z = f - z f exactly enough.
  const double l1p = (f - z * f) + 2.0 * z * w * p;
  constexpr double ln2_hi = 6.93147180369123816490e-01;  // 21 trailing zero bits: e * ln2_hi is exact
  constexpr double ln2_lo = 1.90821492927058770002e-10;
  return e * ln2_hi + (e * ln2_lo + l1p);
}

// exp(a) for |a| < 700, branch-free: a = n ln2 + r (Cody-Waite, |r| <= ln2/2), exp(r) by its Taylor series
// to r^13 (truncation below 1e-17 relative), 2^n put into the exponent bits. Relative error about 2 ulp.
// Used by transcendental_floor() to time the exponentials a quote costs when vectorised.
VOLFAST_LANE double exp_lane(double a) {
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  const double big = a * kLog2e + 0x1.8p52;  // n in the low mantissa bits (no 64-bit conversion needed)
  const double nf = big - 0x1.8p52;           // n = round(a / ln2)
  const double r = (a - nf * ln2_hi) - nf * ln2_lo;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const std::uint64_t e = (bits_of(big) + 1023) << 52;  // the high bits shift out: (n + 1023) << 52
  return p * from_bits(e);
}

// Scaled complementary error function erfcx(y) = exp(y^2) erfc(y) for y >= 0 (finite), branch-free.
// erfcx(y) = 2K/(y + K) g(u), u = (y - K)/(y + K) in [-1, 1), g a degree-21 Chebyshev series fitted to
// 40-digit values (K = 3.5); relative error about 1.5e-15 over [0, inf).
VOLFAST_LANE double erfcx_pos(double y) {
  constexpr double K = 3.5;
  static constexpr double c[22] = {
      2.18098252924718128e-01,  -1.89051097253873729e-01, 6.73963610664221058e-02,  -1.97848075014623939e-02,
      4.69970839424203087e-03,  -8.61120015243762465e-04, 1.06439551619918473e-04,  -4.01270831310416526e-06,
      -1.50623006312207817e-06, 3.01017944341874076e-07,  -4.06687833933052444e-10, -7.74143822162523126e-09,
      6.98180974646608448e-10,  1.74067383786969393e-10,  -3.19072418747739223e-11, -4.09419899889026642e-12,
      1.21582560676031790e-12,  1.14572122414959334e-13,  -4.55978119258661390e-14, -4.20217770608632891e-15,
      1.73943247235109550e-15,  1.97827881301368812e-16};
  const double r = 1.0 / (y + K);
  const double u = (y - K) * r;
  const double u2 = 2.0 * u;
  double b1 = 0.0, b2 = 0.0;
#pragma GCC unroll 21
  for (int k = 21; k >= 1; --k) {
    const double b0 = u2 * b1 - b2 + c[k];
    b2 = b1;
    b1 = b0;
  }
  return 2.0 * K * r * (u * b1 - b2 + c[0]);
}

// ln bo(x, s) and lam = bo'/bo for x < 0 below the inflection point (h + t < 0), in log space so that
// nothing underflows: bo = 2 E S with E = exp(-(h^2 + t^2)/2) / sqrt(2 pi) = bo', so lam = 1 / (2 S).
// S comes from the small-t series of black76.hpp (bo_small_t, fixed length) for t < 0.21 and from the
// difference of two erfcx otherwise.
struct LogBlack {
  double L;
  double lam;
};

VOLFAST_LANE LogBlack log_black_lower(double x, double inv_s, double s) {
  using namespace detail;
  const double h = x * inv_s, t = 0.5 * s;
  const bool small = t < 0.21;
  const double a = -(h + t) * kInvSqrt2;  // > 0 below the inflection point
  const double ya = small ? -h * kInvSqrt2 : a;
  const double e1 = erfcx_pos(ya > 0.0 ? ya : 0.0);
  const double e2 = erfcx_pos(a + kSqrt2 * t);
  // Series: S = sum_{k odd} y_k t^k / k!, y_0 = sqrt(pi/2) erfcx(-h/sqrt2), y_1 = 1 + h y_0,
  // y_{k+1} = h y_k + k y_{k-1} (terms to t^19).
  static constexpr double kInvPair[9] = {1.0 / 6,   1.0 / 20,  1.0 / 42,  1.0 / 72, 1.0 / 110,
                                         1.0 / 156, 1.0 / 210, 1.0 / 272, 1.0 / 342};
  const double t2 = t * t;
  double ykm1 = kSqrtPiOver2 * e1;
  double yk = 1.0 + h * ykm1;
  double scale = t;
  double sum = yk * scale;
#pragma GCC unroll 9
  for (int i = 0; i < 9; ++i) {
    const double k = 2 * i + 1;
    const double y2 = h * yk + k * ykm1;
    const double y3 = h * y2 + (k + 1.0) * yk;
    ykm1 = y2;
    yk = y3;
    scale *= t2 * kInvPair[i];
    sum += yk * scale;
  }
  // Large t: bo = exp(-(h^2+t^2)/2) (erfcx(a) - erfcx(a + sqrt2 t)) / 2, i.e. S = sqrt(pi/8) (e1 - e2).
  constexpr double kSqrtPiOver8 = 0.62665706865775012560;
  const double S = small ? sum : kSqrtPiOver8 * (e1 - e2);
  constexpr double kLn2MinusHalfLn2Pi = -0.22579135264472743236;  // ln 2 - ln(2 pi)/2
  const double L = kLn2MinusHalfLn2Pi - 0.5 * (h * h + t * t) + log_pos(S > 0.0 ? S : 1e-300);
  return {L, 0.5 / S};
}

// One Householder step of order 4 on f(s) = 1/ln bo(s) - 1/ln beta (as in implied_vol.hpp), kept inside
// (0, sc): a step that leaves it, or is not finite, keeps s.
VOLFAST_LANE double lower_step(double x, double s, double inv_lnb, double sc) {
  const double inv_s = 1.0 / s;
  const LogBlack ev = log_black_lower(x, inv_s, s);
  const double x2 = x * x, q = x2 * inv_s * inv_s;  // h^2
  const double r2 = q * inv_s - 0.25 * s;
  const double r3 = r2 * r2 - 3.0 * q * inv_s * inv_s - 0.25;
  const double lam = ev.lam;
  const double L2 = lam * r2 - lam * lam;
  const double L3 = lam * r3 - 3.0 * lam * lam * r2 + 2.0 * lam * lam * lam;
  const double iL = 1.0 / ev.L;
  const double f = iL - inv_lnb;
  // f1 = -lam iL^2; nu = -f/f1, h2 = f2/f1, h3 = f3/f1 with the common iL^2 cancelled.
  const double inv_m = -1.0 / lam;
  const double nu = f / (lam * iL * iL);
  const double h2 = (2.0 * lam * lam * iL - L2) * inv_m;
  const double h3 = (-6.0 * lam * lam * lam * iL * iL + 6.0 * lam * L2 * iL - L3) * inv_m;
  const double ds = nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu * (1.0 / 6.0)));
  const double s_new = s + ds;
  return (s_new > 0.0 && s_new < sc) ? s_new : s;
}

// The starting point for a quote (x < 0, 0 < beta < exp(x/2)): lower_guess() of implied_vol.hpp, lane by
// lane, with bo(x, s_c) in log space. Sets sure when the quote lies surely below the inflection point.
struct LowerStart {
  double s0, inv_lnb, sc, sure;
};

VOLFAST_LANE LowerStart lower_start(double x, double beta) {
  using namespace detail;
  const double ax = -x;
  const double lnb = log_pos(beta);
  const double sc = std::sqrt(2.0 * ax);
  // bc = bo(x, s_c) = exp(x/2) (1 - erfcx(sqrt(-x))) / 2. Its cancellation for tiny |x| is why
  // |x| <= 1e-6 is left to the scalar solver; the margin of 1e-9 in ln beta covers the rest.
  const double ysc = std::sqrt(ax);
  const double one_m = 1.0 - erfcx_pos(ysc);
  const double lnbc = 0.5 * x + log_pos(0.5 * (one_m > 0.0 ? one_m : 1e-300));
  const double sure = (ax > 1e-6 ? 1.0 : 0.0) * (lnb < lnbc - 1e-9 ? 1.0 : 0.0);
  const double g1 = sc * std::sqrt(lnbc / lnb);
  constexpr double c0 = kInvSqrt2Pi;
  const double bx = beta - 0.5 * x;
  const double disc = bx * bx - 2.0 * c0 * c0 * x * x;
  const double g3 = disc > 0.0 ? (bx + std::sqrt(disc > 0.0 ? disc : 0.0)) / (2.0 * c0) : g1;
  const double g13 = g1 < g3 ? g1 : g3;
  const double wc = ax / sc;
  const double C = log_pos(ax) - 0.91893853320467274178;
  const double w0sq = -2.0 * (lnb - C);
  double w = std::sqrt(w0sq > wc * wc ? w0sq : wc * wc);
#pragma GCC unroll 3
  for (int i = 0; i < 3; ++i) {
    const double w2 = w * w, iw = 1.0 / w, iw2 = iw * iw;
    const double v = w * (w2 + 3.0);
    const double m = -0.5 * w2 - 0.125 * ax * ax * iw2 - log_pos(v) + C;
    const double dm = -w + 0.25 * ax * ax * iw2 * iw - iw - 2.0 * w2 / v;
    const double wn = w - (m - lnb) / dm;
    w = wn > wc ? wn : wc;
  }
  const double gw = ax / w;
  const double s = g13 < gw ? g13 : gw;
  return {(s > 0.0 && s < sc) ? s : 0.5 * sc, 1.0 / lnb, sc, sure};
}

// Starting hints for a block: a value in (0, s_c) where the quote lies surely below the inflection point,
// else 0 (the caller then runs the plain scalar solver). Stage by stage, so that each loop stays simple
// enough for the vectoriser.
inline void lower_hints(const double* x, const double* beta, double* hint) {
  alignas(64) double s[kBlock], inv_lnb[kBlock], sc[kBlock], sure[kBlock];
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) {
    const LowerStart st = lower_start(x[j], beta[j]);
    s[j] = st.s0;
    inv_lnb[j] = st.inv_lnb;
    sc[j] = st.sc;
    sure[j] = st.sure;
  }
  for (int step = 0; step < 2; ++step) {
#pragma omp simd
    for (int j = 0; j < kBlock; ++j) s[j] = lower_step(x[j], s[j], inv_lnb[j], sc[j]);
  }
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) hint[j] = (sure[j] != 0.0 && s[j] > 0.0 && s[j] < sc[j]) ? s[j] : 0.0;
}

// The transcendental floor: n quotes' worth of the exponentials, logarithms and error functions an
// implied-vol solve needs (6 exp, 4 log, 2 erfc per quote), each through the vectorised lane functions
// above, in blocks of kBlock lanes. Returns a checksum so that nothing is optimised away; the caller times it.
inline double transcendental_floor(std::int64_t n) {
  alignas(64) double acc[kBlock] = {};
  for (std::int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int base = static_cast<int>(b0 & 1023);  // 32-bit lanes: int64 -> double needs AVX-512DQ
#pragma omp simd
    for (int j = 0; j < kBlock; ++j) {
      const double u = 0.001 * static_cast<double>((base + j) & 1023) + 0.01;  // (0.01, 1.04)
      double e = 0.0;
#pragma GCC unroll 6
      for (int r = 0; r < 6; ++r) e += exp_lane(-u * (r + 1));
      double l = 0.0;
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) l += log_pos(u * (r + 1));
      const double c = erfcx_pos(u) + erfcx_pos(2.0 * u);
      acc[j] += e + l + c;
    }
  }
  double s = 0.0;
  for (int j = 0; j < kBlock; ++j) s += acc[j];
  return s;
}

}  // namespace lane

// Implied vols of quotes [begin, end): load(i, p, F, K, T, is_call, D) fills the inputs of quote i.
// Writes iv[i - begin], status[i - begin] and, when iterations is not null, the number of accurate
// (scalar) Householder steps taken. Same statuses as implied_vol(); vols within its accuracy contract.
template <class Load>
void implied_vol_batch(const Load& load, std::int64_t begin, std::int64_t end, double* iv, std::uint8_t* status,
                       std::uint8_t* iterations) {
  constexpr int B = lane::kBlock;
  alignas(64) double xs[B], betas[B], hints[B], xq[B], bq[B], ehs[B], sqrt_t[B];
  alignas(64) bool solve[B];
  for (std::int64_t b0 = begin; b0 < end; b0 += B) {
    const int nb = static_cast<int>(end - b0 < B ? end - b0 : B);
    // 1. statuses, x and beta (scalar; the same tests and arithmetic as implied_vol()).
    for (int j = 0; j < B; ++j) {
      xs[j] = -1.0;
      betas[j] = 0.1;  // a benign lower-region lane for padding and quotes already decided
      solve[j] = false;
    }
    for (int j = 0; j < nb; ++j) {
      const std::int64_t o = b0 + j - begin;
      double p, F, K, T, D;
      bool is_call;
      load(b0 + j, p, F, K, T, is_call, D);
      if (iterations) iterations[o] = 0;
      if (!black_inputs_valid(F, K, T, D) || !std::isfinite(p)) {
        status[o] = kInvalidInput;
        iv[o] = detail::kNaN;
        continue;
      }
      const double intrinsic = is_call ? D * (F > K ? F - K : 0.0) : D * (K > F ? K - F : 0.0);
      const double upper = is_call ? D * F : D * K;
      if (p < intrinsic || p < 0.0) {
        status[o] = kBelowIntrinsic;
        iv[o] = detail::kNaN;
        continue;
      }
      if (p >= upper) {
        status[o] = kAboveMaximum;
        iv[o] = detail::kNaN;
        continue;
      }
      const double time_value = p - intrinsic;
      status[o] = kOk;
      if (time_value == 0.0) {
        iv[o] = 0.0;
        continue;
      }
      const double x = -std::fabs(log_moneyness(F, K));
      const double beta = time_value / (D * std::sqrt(F) * std::sqrt(K));
      if (!(beta > 0.0)) {
        iv[o] = 0.0;
        continue;
      }
      const double eh = std::exp(0.5 * x);
      if (!(beta < eh)) {
        status[o] = kAboveMaximum;
        iv[o] = detail::kNaN;
        continue;
      }
      solve[j] = true;
      xq[j] = x;
      bq[j] = beta;
      ehs[j] = eh;
      sqrt_t[j] = std::sqrt(T);
      if (x < 0.0) {  // x == 0 (at the money) has no lower region: the lane keeps its benign padding
        xs[j] = x;
        betas[j] = beta;
      }
    }
    // 2. SIMD hints across the whole block.
    lane::lower_hints(xs, betas, hints);
    // 3. the accurate scalar step(s).
    for (int j = 0; j < nb; ++j) {
      if (!solve[j]) continue;
      const std::int64_t o = b0 + j - begin;
      IVStatus st;
      int nit;
      const double s = hints[j] > 0.0 && xq[j] < 0.0
                           ? implied_normalised_vol_otm_lower_from(bq[j], xq[j], ehs[j], hints[j], st, nit)
                           : implied_normalised_vol_otm(bq[j], xq[j], st, nit);
      status[o] = st;
      iv[o] = st == kOk ? s / sqrt_t[j] : detail::kNaN;
      if (iterations) iterations[o] = static_cast<std::uint8_t>(nit);
    }
  }
}

VOLFAST_ARCH_END
}  // namespace volfast
