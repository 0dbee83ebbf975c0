// Batched Black-76 implied volatility: SIMD starting points and a SIMD accurate step.
//
// The scalar solver of implied_vol.hpp spends most of its time on work that does not need full precision:
// the starting point (five or six logarithms) and the first Householder step. Only the last step decides
// the accuracy: a fourth-order step from a relative error e lands near e^4, so the result is as accurate
// as the one evaluation of bo(x, s) it makes, whatever produced the start.
//
// So quotes are processed in blocks of kBlock, every stage a loop over the block that the compiler vectorises
// (`#pragma omp simd` with -fopenmp-simd; branch-free lanes, selects instead of branches):
//   1. the inputs (scalar: strided columns), then in SIMD the statuses, the time value and beta with the
//      same tests and arithmetic as implied_vol(); x = -|ln(F/K)| by libm (scalar, as implied_vol()); the
//      bound beta < exp(x/2) in SIMD, with libm deciding the quotes within 1e-14 of it;
//   2. for quotes below the inflection point (the common case: out-of-the-money quotes of short and medium
//      expiries), implied_vol.hpp's lower_guess (two Newton steps instead of three) and one Householder
//      step on f(s) = 1/ln bo(s) - 1/ln beta, evaluated in log space with a polynomial log (relative error
//      about 1e-15) and erfcx_block so that nothing underflows. This "hint" is within about 1e-6;
//   3. the accurate step: one Householder step on bo - beta with bo from bo_lower_acc() (erfcx to about one
//      ulp from the piecewise table of erfcx_table.hpp, exp to about one ulp, squares split exactly),
//      accepted when the step was small enough for the result to be exact to double (lower_finish);
//   4. scalar: the accurate solver of implied_vol.hpp for the rest (started at the hint where there is one,
//      with its own convergence test, bracket and fallbacks): quotes whose branch is ambiguous, above the
//      inflection point, at the money, or whose vector step was not accepted.
// The hint only decides how many accurate steps are needed, never the accuracy: results satisfy the same
// contract as implied_vol() (tests/test_implied_vol.py) and agree with it to within a few ulps.
//
// Levels: the AVX2 and AVX-512 kernels fuse the multiply-adds of the lane polynomials and series (madd());
// the baseline kernel cannot, so its vols differ from theirs in the last bits (within the attainable floor),
// while every status decision is computed identically at every level. AVX2 and AVX-512 agree bit for bit.
//
// Every lane runs the same vector code on a full block (short blocks are padded), so a quote's result does
// not depend on its neighbours or on how the caller splits the work across threads.
//
// Pure C++: no pybind11 here.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "volfast/black76.hpp"
#include "volfast/erfcx_table.hpp"
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

// a * b + c: one fused multiply-add where the level has FMA (AVX2, AVX-512), else a multiply and an add.
// Only the polynomials and series of the lane functions use it, so the levels differ in those last bits alone
// (well inside the attainable floor; tests/test_simd_dispatch.py) while every decision that sets a status is
// computed the same way at every level (the kernels are otherwise compiled without FMA contraction).
VOLFAST_LANE double madd(double a, double b, double c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
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
  p = madd(p, w, 1.0 / 21);
  p = madd(p, w, 1.0 / 19);
  p = madd(p, w, 1.0 / 17);
  p = madd(p, w, 1.0 / 15);
  p = madd(p, w, 1.0 / 13);
  p = madd(p, w, 1.0 / 11);
  p = madd(p, w, 1.0 / 9);
  p = madd(p, w, 1.0 / 7);
  p = madd(p, w, 1.0 / 5);
  p = madd(p, w, 1.0 / 3);
  // ln(1 + f) = 2z + 2 z w p, with 2z = f - z f exactly enough.
  const double l1p = (f - z * f) + 2.0 * z * w * p;
  constexpr double ln2_hi = 6.93147180369123816490e-01;  // 21 trailing zero bits: e * ln2_hi is exact
  constexpr double ln2_lo = 1.90821492927058770002e-10;
  return e * ln2_hi + (e * ln2_lo + l1p);
}

// exp(a) for |a| < 700, branch-free: a = n ln2 + r (Cody-Waite, |r| <= ln2/2), exp(r) by its Taylor series
// to r^13 (truncation below 1e-17 relative), 2^n put into the exponent bits. Relative error about 2 ulp.
// Used by the accurate step (bo_lower_acc), the prologue's bound and transcendental_floor().
VOLFAST_LANE double exp_lane(double a) {
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  const double big = a * kLog2e + 0x1.8p52;  // n in the low mantissa bits (no 64-bit conversion needed)
  const double nf = big - 0x1.8p52;           // n = round(a / ln2)
  const double r = (a - nf * ln2_hi) - nf * ln2_lo;
  double p = 1.0 / 6227020800.0;
  p = madd(p, r, 1.0 / 479001600.0);
  p = madd(p, r, 1.0 / 39916800.0);
  p = madd(p, r, 1.0 / 3628800.0);
  p = madd(p, r, 1.0 / 362880.0);
  p = madd(p, r, 1.0 / 40320.0);
  p = madd(p, r, 1.0 / 5040.0);
  p = madd(p, r, 1.0 / 720.0);
  p = madd(p, r, 1.0 / 120.0);
  p = madd(p, r, 1.0 / 24.0);
  p = madd(p, r, 1.0 / 6.0);
  p = madd(p, r, 0.5);
  p = madd(p, r, 1.0);
  p = madd(p, r, 1.0);
  const std::uint64_t e = (bits_of(big) + 1023) << 52;  // the high bits shift out: (n + 1023) << 52
  return p * from_bits(e);
}

// a * b = p + lo exactly (p the rounded product): by FMA where the level has it, else by Veltkamp/Dekker
// splitting. Both are exact, so every level gets the same p and lo.
VOLFAST_LANE double two_prod(double a, double b, double& lo) {
  const double p = a * b;
#if defined(__FMA__)
  lo = std::fma(a, b, -p);
#else
  constexpr double kSplit = 134217729.0;  // 2^27 + 1
  const double ca = kSplit * a, cb = kSplit * b;
  const double ah = ca - (ca - a), al = a - ah;
  const double bh = cb - (cb - b), bl = b - bh;
  lo = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
#endif
  return p;
}

// erfcx(y) = exp(y^2) erfc(y) for y >= 0 to about one ulp, over a block of kBlock values in place
// (largest relative error about 2.5e-16 against mpmath on [0, 1e6]; tests/test_simd_dispatch.py),
// branch-free: every lane gathers the 12 coefficients of its piece of erfcx_table.hpp (y in [i/4, (i+1)/4)
// for y < 8, one piece in w = 64/y^2 beyond) and evaluates one polynomial in a variable of [-1, 1] where the
// constant term dominates, so rounding stays near one ulp. Negative y evaluates as 0; NaN reads row 0 and
// stays NaN. GCC does not turn table lookups into gathers inside a vectorised loop, so the AVX2 and AVX-512
// levels gather explicitly.
#if defined(__AVX512F__)
// tab[ix + k] for 8 lanes (the masked form: GCC 12's plain gather warns about its undefined source)
VOLFAST_LANE __m512d gather8(__m256i ix, int k, const double* tab) {
  return _mm512_mask_i32gather_pd(_mm512_setzero_pd(), 0xFF, _mm256_add_epi32(ix, _mm256_set1_epi32(k)), tab, 8);
}
#elif defined(__AVX2__)
// tab[ix + k] for 4 lanes (masked form, as gather8)
VOLFAST_LANE __m256d gather4(__m128i ix, int k, const double* tab) {
  const __m256d all = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
  return _mm256_mask_i32gather_pd(_mm256_setzero_pd(), tab, _mm_add_epi32(ix, _mm_set1_epi32(k)), all, 8);
}
#endif

inline void erfcx_block(double* y) {
  alignas(64) double u[kBlock], r[kBlock];
  alignas(64) int row[kBlock];
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) {
    double yc = y[j] > 0.0 ? y[j] : 0.0;  // NaN -> 0: the row index stays in the table
    yc = yc < 8.0 ? yc : 8.0;
    const int i = static_cast<int>(yc * 4.0);
    const bool big = !(y[j] < 8.0);
    r[j] = 1.0 / (big ? y[j] : 8.0);
    u[j] = big ? 128.0 * r[j] * r[j] - 1.0 : 8.0 * yc - static_cast<double>(2 * i + 1);
    row[j] = i * tables::kErfcxTerms;
  }
  const double* tab = tables::kErfcx;
#if defined(__AVX512F__)
  for (int j = 0; j < kBlock; j += 8) {
    const __m256i ix = _mm256_load_si256(reinterpret_cast<const __m256i*>(row + j));
    const __m512d uu = _mm512_load_pd(u + j);
    __m512d p = gather8(ix, 11, tab);
    for (int k = 10; k >= 0; --k)
      p = _mm512_fmadd_pd(p, uu, gather8(ix, k, tab));
    _mm512_store_pd(u + j, p);
  }
#elif defined(__AVX2__)
  for (int j = 0; j < kBlock; j += 4) {
    const __m128i ix = _mm_load_si128(reinterpret_cast<const __m128i*>(row + j));
    const __m256d uu = _mm256_load_pd(u + j);
    __m256d p = gather4(ix, 11, tab);
    for (int k = 10; k >= 0; --k)
      p = _mm256_fmadd_pd(p, uu, gather4(ix, k, tab));
    _mm256_store_pd(u + j, p);
  }
#else
  for (int j = 0; j < kBlock; ++j) {
    const double* c = tab + row[j];
    double p = c[11];
    for (int k = 10; k >= 0; --k) p = madd(p, u[j], c[k]);
    u[j] = p;
  }
#endif
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) y[j] = !(y[j] < 8.0) ? u[j] * (r[j] * detail::kInvSqrtPi) : u[j];
}

// bo(x, s) and its vega for x < 0 below the inflection point (0 < s < s_c), to the accuracy of
// normalised_black_otm_vega() in black76.hpp and by the same formulas in the same regions (the small-t series
// for t < 0.21 and x > -1.5, else the difference of two erfcx), but branch-free with erfcx_block and exp_lane
// in place of libm. ok is false where exp(-(h^2 + t^2)/2) would leave exp_lane's range (the caller then takes
// the scalar path).
struct BlackLower {
  double b, vega, ok;  // ok: 1 or 0 (a double keeps the struct one vector type)
};

// The erfcx arguments bo_lower_acc() needs, computed in a loop of their own so that the table lookups stay
// unconditional gathers (inside one big loop the compiler may turn them into masked loads and give up).
struct LowerArgs {
  double y1, y2;
};

VOLFAST_LANE LowerArgs bo_lower_args(double x, double s) {
  using namespace detail;
  const double h = x / s, t = 0.5 * s;
  const bool small = (t < 0.21 ? 1.0 : 0.0) * (x > -1.5 ? 1.0 : 0.0) != 0.0;
  const double a = -(h + t) * kInvSqrt2;  // > 0 below the inflection point
  return {small ? -h * kInvSqrt2 : a, -(h - t) * kInvSqrt2};
}

// e1, e2 = erfcx of bo_lower_args(x, s) (erfcx_block).
VOLFAST_LANE BlackLower bo_lower_acc(double x, double s, double e1, double e2) {
  using namespace detail;
  const double h = x / s, t = 0.5 * s;
  // a 0/1 double rather than a && of two bools, which the vectoriser cannot always turn into one mask
  const bool small = (t < 0.21 ? 1.0 : 0.0) * (x > -1.5 ? 1.0 : 0.0) != 0.0;
  // E = exp(-(h^2 + t^2)/2) / sqrt(2 pi) with both squares and their sum carried exactly to first order
  double qa, qc;
  const double pa = two_prod(h, h, qa), pc = two_prod(t, t, qc);
  const double S2 = pa + pc;
  const double bb = S2 - pa;
  const double e = (pa - (S2 - bb)) + (pc - bb);
  const bool ok = S2 < 1400.0;
  const double arg = ok ? -0.5 * S2 : -700.0;
  const double E = exp_lane(arg) * (1.0 - 0.5 * (qa + qc + e)) * kInvSqrt2Pi;
  // bo = 2 E sum_{k odd} y_k t^k / k!, y_0 = sqrt(pi/2) erfcx(-h/sqrt2), y_1 = 1 + h y_0,
  // y_{k+1} = h y_k + k y_{k-1} (terms to t^19; black76.hpp's bo_small_t)
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
    const double y2 = madd(h, yk, k * ykm1);
    const double y3 = madd(h, y2, (k + 1.0) * yk);
    ykm1 = y2;
    yk = y3;
    scale *= t2 * kInvPair[i];
    sum = madd(yk, scale, sum);
  }
  constexpr double kSqrtPiOver8 = 0.62665706865775012560;
  const double S = small ? sum : kSqrtPiOver8 * (e1 - e2);
  return {2.0 * E * S, E, ok ? 1.0 : 0.0};
}

// ln bo(x, s) and lam = bo'/bo for x < 0 below the inflection point (h + t < 0), in log space so that
// nothing underflows: bo = 2 E S with E = exp(-(h^2 + t^2)/2) / sqrt(2 pi) = bo', so lam = 1 / (2 S).
// S comes from the small-t series of black76.hpp (bo_small_t, fixed length) for t < 0.21 and from the
// difference of two erfcx otherwise.
struct LogBlack {
  double L;
  double lam;
};

// The erfcx arguments of log_black_lower (computed in a loop of their own, then erfcx_block).
VOLFAST_LANE LowerArgs log_black_args(double x, double s) {
  using namespace detail;
  const double h = x * (1.0 / s), t = 0.5 * s;
  const bool small = t < 0.21;
  const double a = -(h + t) * kInvSqrt2;  // > 0 below the inflection point
  const double ya = small ? -h * kInvSqrt2 : a;
  return {ya > 0.0 ? ya : 0.0, a + kSqrt2 * t};
}

// e1, e2: erfcx of log_black_args(x, s).
VOLFAST_LANE LogBlack log_black_lower(double x, double inv_s, double s, double e1, double e2) {
  using namespace detail;
  const double h = x * inv_s, t = 0.5 * s;
  const bool small = t < 0.21;
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
    const double y2 = madd(h, yk, k * ykm1);
    const double y3 = madd(h, y2, (k + 1.0) * yk);
    ykm1 = y2;
    yk = y3;
    scale *= t2 * kInvPair[i];
    sum = madd(yk, scale, sum);
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
VOLFAST_LANE double lower_step(double x, double s, double inv_lnb, double sc, double e1, double e2) {
  const double inv_s = 1.0 / s;
  const LogBlack ev = log_black_lower(x, inv_s, s, e1, e2);
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

// exs = erfcx(sqrt(-x)).
VOLFAST_LANE LowerStart lower_start(double x, double beta, double exs) {
  using namespace detail;
  const double ax = -x;
  const double lnb = log_pos(beta);
  const double sc = std::sqrt(2.0 * ax);
  // bc = bo(x, s_c) = exp(x/2) (1 - erfcx(sqrt(-x))) / 2. Its cancellation for tiny |x| is why
  // |x| <= 1e-6 is left to the scalar solver; the margin of 1e-9 in ln beta covers the rest.
  const double one_m = 1.0 - exs;
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
  // two Newton steps (three in the scalar lower_guess): the one SIMD step and the accurate step that follow
  // absorb the difference, and each of these costs a logarithm and two divisions
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) {
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
  alignas(64) double s[kBlock], inv_lnb[kBlock], sc[kBlock], sure[kBlock], e1[kBlock], e2[kBlock];
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) e1[j] = std::sqrt(-x[j]);
  erfcx_block(e1);
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) {
    const LowerStart st = lower_start(x[j], beta[j], e1[j]);
    s[j] = st.s0;
    inv_lnb[j] = st.inv_lnb;
    sc[j] = st.sc;
    sure[j] = st.sure;
  }
  // one step: from the starting point's few per cent it lands within about 1e-6 on ES-like quotes, close
  // enough for lower_finish's accurate step
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) {
    const LowerArgs a = log_black_args(x[j], s[j]);
    e1[j] = a.y1;
    e2[j] = a.y2;
  }
  erfcx_block(e1);
  erfcx_block(e2);
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) s[j] = lower_step(x[j], s[j], inv_lnb[j], sc[j], e1[j], e2[j]);
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) hint[j] = (sure[j] != 0.0 && s[j] > 0.0 && s[j] < sc[j]) ? s[j] : 0.0;
}

// The accurate final step for a block, vectorised: for every lane with a hint s0 (lower_hints), one
// Householder step of order 4 on the plain objective bo - beta from bo_lower_acc, the step that
// implied_vol.hpp's implied_normalised_vol_otm_lower_from() takes. The result is as accurate as that one
// evaluation of bo, provided the step started close enough: bo ~ exp(-h^2/2) makes the plain objective's
// fourth-order step land near ((1 + h^2) e)^4 / (1 + h^2) from a relative error e ~ |ds|/s, so a step with
// (1 + h^2) |ds| <= 1e-5 s leaves at most about 1e-20 (the scalar solver's |ds| <= 1e-8 s is the same bound
// for h^2 < 1500). The result must also lie inside (0, s_c), and beta must not be tiny. out[j] is the solved
// s, or 0 where the lane has no hint or the step is not accepted; next[j] is the step's result wherever it is
// valid (inside (0, s_c), from a good evaluation), accepted or not: a start for one more step.
inline void lower_finish(const double* x, const double* beta, const double* hint, double* out, double* next) {
  alignas(64) double y1[kBlock], y2[kBlock];
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) {
    const LowerArgs a = bo_lower_args(x[j], hint[j] > 0.0 ? hint[j] : 0.5);
    y1[j] = a.y1;
    y2[j] = a.y2;
  }
  erfcx_block(y1);
  erfcx_block(y2);
#pragma omp simd
  for (int j = 0; j < kBlock; ++j) {
    const double s0 = hint[j] > 0.0 ? hint[j] : 0.5;  // benign lane where there is no hint
    const double xj = x[j];
    const BlackLower ev = bo_lower_acc(xj, s0, y1[j], y2[j]);
    const double s2 = s0 * s0, x2 = xj * xj;
    const double r2 = x2 / (s2 * s0) - 0.25 * s0;
    const double r3 = r2 * r2 - 3.0 * x2 / (s2 * s2) - 0.25;
    const double nu = -(ev.b - beta[j]) / ev.vega;
    const double ds = nu * (1.0 + 0.5 * r2 * nu) / (1.0 + nu * (r2 + r3 * nu * (1.0 / 6.0)));
    const double s1 = s0 + ds;
    const double sc = std::sqrt(-2.0 * xj);
    const double ads = ds < 0.0 ? -ds : ds;
    // nested selects on doubles rather than one && chain: the vectoriser keeps those in vector masks
    double r = s1 > 0.0 ? s1 : 0.0;
    r = s1 < sc ? r : 0.0;
    r = beta[j] > 0x1p-1000 ? r : 0.0;
    r = ev.b > 0.0 ? r : 0.0;
    r = ev.vega > 0.0 ? r : 0.0;
    r = ev.ok != 0.0 ? r : 0.0;
    r = hint[j] > 0.0 ? r : 0.0;
    next[j] = r;  // a valid step that may still be too large to settle the quote
    out[j] = ads * (1.0 + x2 / s2) <= 1e-5 * s0 ? r : 0.0;  // (1 + h^2) |ds| <= 1e-5 s: see above
  }
}

// The transcendental floor: n quotes' worth of the exponentials, logarithms and error functions an
// implied-vol solve needs (6 exp, 4 log, 2 erfc per quote), each through the vectorised lane functions
// above, in blocks of kBlock lanes. Returns a checksum so that nothing is optimised away; the caller times it.
inline double transcendental_floor(std::int64_t n) {
  alignas(64) double acc[kBlock] = {}, c1[kBlock], c2[kBlock];
  for (std::int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int base = static_cast<int>(b0 & 1023);  // 32-bit lanes: int64 -> double needs AVX-512DQ
#pragma omp simd
    for (int j = 0; j < kBlock; ++j) {
      const double u = 0.001 * static_cast<double>((base + j) & 1023) + 0.01;  // (0.01, 1.04)
      c1[j] = u;
      c2[j] = 2.0 * u;
    }
    erfcx_block(c1);
    erfcx_block(c2);
#pragma omp simd
    for (int j = 0; j < kBlock; ++j) {
      const double u = 0.001 * static_cast<double>((base + j) & 1023) + 0.01;
      double e = 0.0;
#pragma GCC unroll 6
      for (int r = 0; r < 6; ++r) e += exp_lane(-u * (r + 1));
      double l = 0.0;
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) l += log_pos(u * (r + 1));
      acc[j] += e + l + c1[j] + c2[j];
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
  constexpr double kMax = std::numeric_limits<double>::max();
  // what the prologue decided per lane (a double, so that its loop vectorises): kSolve, a status, or kZero
  constexpr double kSolve = -1.0, kZero = -2.0;
  alignas(64) double P[B], Fv[B], Kv[B], Tv[B], Dv[B], Cv[B];
  alignas(64) double code[B], low[B], xs[B], betas[B], hints[B], done[B], next[B];
  // Quotes whose vector step was valid but not small enough to settle them wait here, with that step's
  // result as their start, for one more vector step in a batch of their own (deep out of the money, where
  // the hint is rougher, most quotes take this route). A quote's result depends only on its own inputs.
  alignas(64) double qx[B], qb[B], qs[B], qt[B], qdone[B], qnext[B];
  std::int64_t qo[B];
  int qn = 0;
  const auto flush = [&]() {
    for (int k = qn; k < B; ++k) {  // benign padding lanes (no start: not solved)
      qx[k] = -1.0;
      qb[k] = 0.1;
      qs[k] = 0.0;
    }
    lane::lower_finish(qx, qb, qs, qdone, qnext);
    for (int k = 0; k < qn; ++k) {
      const std::int64_t o = qo[k];
      if (qdone[k] > 0.0) {
        status[o] = kOk;
        iv[o] = qdone[k] / qt[k];
        if (iterations) iterations[o] = 2;
        continue;
      }
      IVStatus st;
      int nit;
      const double sv = implied_normalised_vol_otm_lower_from(qb[k], qx[k], std::exp(0.5 * qx[k]), qs[k], st, nit);
      status[o] = st;
      iv[o] = st == kOk ? sv / qt[k] : detail::kNaN;
      if (iterations) iterations[o] = static_cast<std::uint8_t>(1 + nit);
    }
    qn = 0;
  };
  for (std::int64_t b0 = begin; b0 < end; b0 += B) {
    const int nb = static_cast<int>(end - b0 < B ? end - b0 : B);
    // 1. the block's inputs (scalar: the columns are strided); padding lanes get a benign quote
    for (int j = 0; j < nb; ++j) {
      bool c;
      load(b0 + j, P[j], Fv[j], Kv[j], Tv[j], c, Dv[j]);
      Cv[j] = c ? 1.0 : 0.0;
    }
    for (int j = nb; j < B; ++j) {
      P[j] = 0.01;
      Fv[j] = 1.0;
      Kv[j] = 1.2;
      Tv[j] = 1.0;
      Dv[j] = 1.0;
      Cv[j] = 1.0;
    }
    // 2. statuses, time value and beta, in SIMD: the same tests, in the same order, and the same arithmetic
    //    as implied_vol() (finite means |v| <= DBL_MAX, which NaN fails).
#pragma omp simd
    for (int j = 0; j < B; ++j) {
      const double p = P[j], F = Fv[j], K = Kv[j], T = Tv[j], D = Dv[j];
      const bool call = Cv[j] != 0.0;
      const double valid = (F > 0.0 && F <= kMax ? 1.0 : 0.0) * (K > 0.0 && K <= kMax ? 1.0 : 0.0) *
                           (T > 0.0 && T <= kMax ? 1.0 : 0.0) * (D > 0.0 && D <= kMax ? 1.0 : 0.0) *
                           (std::fabs(p) <= kMax ? 1.0 : 0.0);
      const double intrinsic = call ? D * (F > K ? F - K : 0.0) : D * (K > F ? K - F : 0.0);
      const double upper = call ? D * F : D * K;
      const double tv = p - intrinsic;
      const double beta = tv / (D * std::sqrt(F) * std::sqrt(K));
      double c = beta > 0.0 ? kSolve : kZero;  // a time value that underflows on the normalised scale: vol 0
      c = tv == 0.0 ? kZero : c;
      c = p >= upper ? double(kAboveMaximum) : c;
      c = (p < intrinsic ? 1.0 : 0.0) + (p < 0.0 ? 1.0 : 0.0) != 0.0 ? double(kBelowIntrinsic) : c;
      code[j] = valid != 0.0 ? c : double(kInvalidInput);
      betas[j] = beta;
    }
    // 3. x = -|ln(F/K)| where there is something to solve (scalar: libm's log1p / log, as implied_vol())
    for (int j = 0; j < B; ++j) xs[j] = code[j] == kSolve ? -std::fabs(log_moneyness(Fv[j], Kv[j])) : -1.0;
    // 4. the upper bound beta < exp(x/2), in SIMD with exp_lane where it is clear by a margin far above
    //    exp_lane's error; within 1e-14 of the bound, libm's exp decides, exactly as implied_vol() does.
    //    Lanes that are not solved here get a benign lower-region quote.
#pragma omp simd
    for (int j = 0; j < B; ++j) {
      // exp_lane's range ends at -700: beyond it (and for x = -inf, NaN ratio) libm decides; the clamped
      // bound is above the true one, so a beta above it is above the true one too.
      const double hx = 0.5 * xs[j];
      const double ratio = betas[j] / lane::exp_lane(hx > -700.0 ? hx : -700.0);
      // nested selects on doubles (not && of bools), which the vectoriser keeps in masks
      double c = ratio <= 1.0 - 1e-14 ? kSolve : kZero - 1.0;  // -3: close to the bound, libm decides
      c = hx > -700.0 ? c : kZero - 1.0;
      c = ratio >= 1.0 + 1e-14 ? double(kAboveMaximum) : c;
      code[j] = code[j] == kSolve ? c : code[j];
    }
    for (int j = 0; j < B; ++j) {
      if (code[j] == kZero - 1.0) code[j] = betas[j] < std::exp(0.5 * xs[j]) ? kSolve : double(kAboveMaximum);
    }
#pragma omp simd
    for (int j = 0; j < B; ++j) {
      // x == 0 (at the money) has no lower region
      const double lower = (code[j] == kSolve ? 1.0 : 0.0) * (xs[j] < 0.0 ? 1.0 : 0.0);
      low[j] = lower;
      xs[j] = lower != 0.0 ? xs[j] : -1.0;
      betas[j] = lower != 0.0 ? betas[j] : 0.1;
    }
    // 5. SIMD starting points, then the accurate step, also in SIMD.
    lane::lower_hints(xs, betas, hints);
    lane::lower_finish(xs, betas, hints, done, next);
    // 6. results: the quotes the vector step settled, the decided ones, and the scalar solver for the rest.
    for (int j = 0; j < nb; ++j) {
      const std::int64_t o = b0 + j - begin;
      const double c = code[j];
      if (c != kSolve) {
        status[o] = c == kZero ? std::uint8_t{kOk} : static_cast<std::uint8_t>(c);
        iv[o] = c == kZero ? 0.0 : detail::kNaN;
        if (iterations) iterations[o] = 0;
        continue;
      }
      if (low[j] != 0.0 && done[j] > 0.0) {  // (benign padding lanes solve too: low tells them apart)
        status[o] = kOk;
        iv[o] = done[j] / std::sqrt(Tv[j]);
        if (iterations) iterations[o] = 1;
        continue;
      }
      if (low[j] != 0.0 && next[j] > 0.0) {  // one more vector step, in the queue's next batch
        qx[qn] = xs[j];
        qb[qn] = betas[j];
        qs[qn] = next[j];
        qt[qn] = std::sqrt(Tv[j]);
        qo[qn] = o;
        if (++qn == B) flush();
        continue;
      }
      const double beta = P[j] - (Cv[j] != 0.0 ? Dv[j] * (Fv[j] > Kv[j] ? Fv[j] - Kv[j] : 0.0)
                                               : Dv[j] * (Kv[j] > Fv[j] ? Kv[j] - Fv[j] : 0.0));
      const double b = beta / (Dv[j] * std::sqrt(Fv[j]) * std::sqrt(Kv[j]));
      const double x = -std::fabs(log_moneyness(Fv[j], Kv[j]));
      IVStatus st;
      int nit;
      // A tiny beta (a subnormal price, a few significant bits) leaves any evaluation of bo a few bits, so
      // a step of the hint's size (about 1e-6) would carry that error into the vol: such quotes get the
      // scalar solver from its own start, exactly as implied_vol().
      const double s = low[j] != 0.0 && hints[j] > 0.0 && b > 0x1p-1000
                           ? implied_normalised_vol_otm_lower_from(b, x, std::exp(0.5 * x), hints[j], st, nit)
                           : implied_normalised_vol_otm(b, x, st, nit);
      status[o] = st;
      iv[o] = st == kOk ? s / std::sqrt(Tv[j]) : detail::kNaN;
      if (iterations) iterations[o] = static_cast<std::uint8_t>(nit);
    }
  }
  if (qn > 0) flush();
}

VOLFAST_ARCH_END
}  // namespace volfast
