"""Numba backend for Black-76 pricing and implied volatility: a line-by-line port of the C++ core.

Ports ``cpp/include/volfast/black76.hpp`` (the normalised pricer) and ``cpp/include/volfast/implied_vol.hpp``
(the solver) with the same regions, formulas, thresholds and evaluation order:

* normalised scale (Jaeckel, "Let's Be Rational", 2015): ``x = ln(F/K)``, ``s = vol sqrt(T)``,
  ``beta = price / (D sqrt(F K))``; every quote is reduced to the out-of-the-money call time value
  ``bo(x, s)``, ``x <= 0``;
* ``bo``: small-``t`` series for ``t = s/2 < 0.21`` and ``x > -1.5``, the erfc difference above the
  inflection line ``h + t > 0`` and the erfcx form below it;
* solver: Householder steps of order 4 on ``1/ln bo - 1/ln beta`` below ``s_c = sqrt(2|x|)``, on
  ``bo - beta`` above it while ``beta < bmax/2``, and on ``ln(bmax - beta) - ln(bmax - bo)`` above that,
  inside a bracket with bisection in ``ln s``; converged once a step is below ``1e-4`` relative
  (``kConvergedStep`` of the C++ build), :data:`MAX_ITERATIONS` = 40.

``std::fma`` becomes an exact Veltkamp/Dekker two-product (:func:`_two_prod_err`), which returns exactly
``fma(a, b, -fl(a b))`` whenever the product neither overflows nor underflows; elsewhere the two only differ
in terms far below an ulp of what they correct (or both give inf/NaN). ``math.exp``, ``log``, ``log1p``,
``erfc`` and ``sinh`` call the same libm as the C++ build, ``fastmath`` is off, and
``error_model="numpy"`` gives IEEE division (inf/NaN, never ZeroDivisionError), as in C++.

Numeric contract (same as the C++ core, checked by ``tests/test_iv_numba.py``):

* prices and vols are bit-identical to the C++ headers compiled without floating-point contraction
  (checked on 300k random quotes); status codes always match. A C++ build where the compiler fuses
  ``a*b + c`` into FMAs (GCC's default for C++ with ``-march=native``, as in the default volfast build)
  differs in last bits of the price, which the ``1/ln bo`` objective can amplify to ~``|ln bo|`` ulps of
  vol: about 99% of vols within 2 ulps of such a build, all within a few attainable floors (below);
* ``|vol - vol_true| <= a few * 2**-52 * (vol + price / vega)`` (the floor that one ulp of the price
  implies, plus the rounding of ``ln(F/K)``) over vols 1e-3..5, ``|ln(K/F)| <= 5 sqrt(T)``, expiries
  of an hour to 30 years, calls and puts;
* the price's relative error, converted to a vol error through the vega, stays within about
  3 * 2**-52 * (1 + b / (s b')).

Status codes (uint8): 0 ok, 1 below intrinsic (or negative), 2 at/above the maximum ``D F`` (call) /
``D K`` (put), 3 invalid input (NaN/inf anywhere, or F, K, T, D not > 0), 4 no convergence (a guard).
The vol is NaN wherever the status is not 0; a price exactly at intrinsic gives vol 0, status 0.

The scalar functions (:func:`black76_price_scalar`, :func:`implied_vol_scalar`,
:func:`normalised_black`, ...) are ``@njit`` and can be called from users' own ``@njit`` code; the
``*_array`` functions loop over 1-D float64 arrays of equal length with ``numba.prange``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# ---- constants (immutable; Numba freezes them at compile time) --------------------------------------
_SQRT2 = 1.4142135623730950488
_INV_SQRT2 = 0.70710678118654752440
_INV_SQRT2PI = 0.39894228040143267794
_SQRT_PI_OVER_2 = 1.2533141373155002512
_INV_SQRT_PI = 0.56418958354775628695
_DBL_EPS = 2.220446049250313e-16
_INV_SQRT2_LO = -4.833646656726457e-17  # 1/sqrt2 - fl(1/sqrt2)
_SPLIT = 134217729.0  # 2^27 + 1, Veltkamp's splitting constant for binary64
_NAN = math.nan
_INF = math.inf
# 1/((k+1)(k+2)) for k = 1, 3, ..., 15: the small-t series multipliers (kInvPair in black76.hpp).
_INV_PAIR = (1.0 / 6, 1.0 / 20, 1.0 / 42, 1.0 / 72, 1.0 / 110, 1.0 / 156, 1.0 / 210, 1.0 / 272)

OK = 0
BELOW_INTRINSIC = 1
ABOVE_MAXIMUM = 2
INVALID_INPUT = 3
NO_CONVERGENCE = 4

MAX_ITERATIONS = 40
CONVERGED_STEP = 1e-4  # VOLFAST_IV_CONVERGED_STEP of the C++ build


# ---- exact arithmetic helpers ------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _two_prod_err(a: float, b: float, p: float) -> float:
    """``fma(a, b, -p)`` for ``p = fl(a b)``: the exact rounding error of the product (Veltkamp/Dekker).

    Exact when ``a b`` neither overflows nor underflows and ``|a|, |b| < 2**995``. An overflowed ``p``
    gives ``-p`` (as fma does for finite operands); inf/NaN operands give NaN.
    """
    if math.isinf(p):
        if math.isfinite(a) and math.isfinite(b):
            return -p
        return _NAN
    ca = _SPLIT * a
    a_hi = ca - (ca - a)
    a_lo = a - a_hi
    cb = _SPLIT * b
    b_hi = cb - (cb - b)
    b_lo = b - b_hi
    return ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _fmin(a: float, b: float) -> float:
    """C ``fmin``: the other operand when one is NaN."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a < b else b


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _fmax(a: float, b: float) -> float:
    """C ``fmax``: the other operand when one is NaN."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a > b else b


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _exp_neg_half_square(a: float) -> float:
    """exp(-a^2/2) with the square split exactly (a^2 = p + q)."""
    p = a * a
    q = _two_prod_err(a, a, p)
    return math.exp(-0.5 * p) * (1.0 - 0.5 * q)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _erfcx_nonneg(y: float) -> float:
    """erfcx(y) = exp(y^2) erfc(y) for y >= 0, about 2 ulp."""
    if y < 10.0:
        p = y * y
        q = _two_prod_err(y, y, p)
        return math.exp(p) * (1.0 + q) * math.erfc(y)
    # Asymptotic series; at y >= 10 the 13th term is below 1e-17 relative.
    z = 0.5 / (y * y)
    term = 1.0
    total = 1.0
    for n in range(1, 14):
        term *= -(2 * n - 1) * z
        total += term
    return total * _INV_SQRT_PI / y


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _exp_neg_half_sum_squares(a: float, c: float) -> float:
    """exp(-(a^2 + c^2)/2) with both squares and their sum carried exactly to first order."""
    pa = a * a
    qa = _two_prod_err(a, a, pa)
    pc = c * c
    qc = _two_prod_err(c, c, pc)
    S = pa + pc
    bb = S - pa
    e = (pa - (S - bb)) + (pc - bb)  # two-sum error of pa + pc
    return math.exp(-0.5 * S) * (1.0 - 0.5 * (qa + qc + e))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _erfc_neg_h_over_sqrt2(h: float, e_half_h2: float) -> float:
    """erfc(-h/sqrt2) for h <= 0, the rounding of -h/sqrt2 corrected to first order."""
    y = -h * _INV_SQRT2
    y_lo = _two_prod_err(-h, _INV_SQRT2, y) - h * _INV_SQRT2_LO
    return math.erfc(y) - 2.0 * _INV_SQRT_PI * e_half_h2 * y_lo


# ---- normalised Black ----------------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _bo_small_t(h: float, t: float) -> tuple[float, float]:
    """(bo, b') from the small-t expansion bo = 2 sum_{k odd} Z_k t^k / k! (t = s/2 < 0.21)."""
    et = _exp_neg_half_square(t)
    if h > -14.0:
        eh = _exp_neg_half_square(h)
        E = eh * et * _INV_SQRT2PI
        z0 = 0.5 * et * _erfc_neg_h_over_sqrt2(h, eh)
    else:
        E = _exp_neg_half_sum_squares(h, t) * _INV_SQRT2PI
        z0 = E * _SQRT_PI_OVER_2 * _erfcx_nonneg(-h * _INV_SQRT2)
    if E == 0.0:
        return 0.0, 0.0
    t2 = t * t
    zkm1 = z0
    zk = E + h * z0  # Z_0, Z_1
    scale = t  # t^k / k!
    total = zk * scale
    for i in range(8):
        k = 2.0 * i + 1.0
        z2 = h * zk + k * zkm1
        z3 = h * z2 + (k + 1.0) * zk
        zkm1 = z2
        zk = z3
        scale *= t2 * _INV_PAIR[i]
        term = zk * scale
        total += term
        if math.fabs(term) <= 1e-17 * total:
            break
    return 2.0 * total, E


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def normalised_black_otm_vega(x: float, s: float, ex_half: float, ex_mhalf: float) -> tuple[float, float]:
    """Out-of-the-money call time value bo(x, s) and its vega db/ds, for x <= 0.

    ``ex_half = exp(x/2)`` and ``ex_mhalf = exp(-x/2)`` are passed in (the solver reuses them).
    """
    if not (s > 0.0):
        return 0.0, 0.0
    h = x / s
    t = 0.5 * s
    if t < 0.21 and x > -1.5:
        return _bo_small_t(h, t)
    E = _exp_neg_half_sum_squares(h, t)
    if h + t > 0.0:
        # Near the money with a large s: both terms are O(1) and their difference is well conditioned.
        b = 0.5 * (ex_half * math.erfc(-(h + t) * _INV_SQRT2) - ex_mhalf * math.erfc(-(h - t) * _INV_SQRT2))
        return b, E * _INV_SQRT2PI
    # Otherwise the erfcx form, immune to the argument rounding that erfc suffers in the tails.
    b = 0.5 * E * (_erfcx_nonneg(-(h + t) * _INV_SQRT2) - _erfcx_nonneg(-(h - t) * _INV_SQRT2))
    return b, E * _INV_SQRT2PI


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def normalised_black_otm(x: float, s: float) -> float:
    """bo(x, s) for x <= 0, s >= 0."""
    return normalised_black_otm_vega(x, s, math.exp(0.5 * x), math.exp(-0.5 * x))[0]


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def normalised_intrinsic(x: float, theta: float) -> float:
    """max(theta * 2 sinh(x/2), 0)."""
    if theta * x <= 0.0:
        return 0.0
    return math.fabs(2.0 * math.sinh(0.5 * x))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def normalised_black(x: float, s: float, theta: float) -> float:
    """Normalised Black price b(x, s, theta) = price / (D sqrt(F K)), x = ln(F/K), s = vol sqrt(T).

    ``theta`` is +1 for a call, -1 for a put.
    """
    return normalised_intrinsic(x, theta) + normalised_black_otm(-math.fabs(x), s)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def normalised_vega(x: float, s: float) -> float:
    """db/ds = exp(-(h^2 + t^2)/2) / sqrt(2 pi), the same for calls and puts."""
    if not (s > 0.0):
        return 0.0
    return _INV_SQRT2PI * _exp_neg_half_sum_squares(x / s, 0.5 * s)


# ---- Black-76 in market units --------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def black_inputs_valid(F: float, K: float, T: float, D: float) -> bool:
    """All finite and strictly positive."""
    return (
        math.isfinite(F)
        and math.isfinite(K)
        and math.isfinite(T)
        and math.isfinite(D)
        and F > 0.0
        and K > 0.0
        and T > 0.0
        and D > 0.0
    )


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def log_moneyness(F: float, K: float) -> float:
    """ln(F/K), via log1p((F - K)/K) near the money where F - K is exact (Sterbenz)."""
    d = F - K
    if math.fabs(d) < 0.5 * K:
        return math.log1p(d / K)
    return math.log(F / K)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def black76_price_scalar(F: float, K: float, T: float, vol: float, is_call: bool, D: float) -> float:
    """Black-76 price in the units of F and K; NaN for invalid input (T in years ACT/365, vol a fraction)."""
    if not black_inputs_valid(F, K, T, D) or not (vol >= 0.0) or math.isinf(vol):
        return _NAN
    x = log_moneyness(F, K)
    s = vol * math.sqrt(T)
    p = D * math.sqrt(F) * math.sqrt(K) * normalised_black(x, s, 1.0 if is_call else -1.0)
    # Keep the rounding of the products inside the no-arbitrage bounds [intrinsic, D F] / [intrinsic, D K].
    upper = D * (F if is_call else K)
    intrinsic = D * (_fmax(F - K, 0.0) if is_call else _fmax(K - F, 0.0))
    return _fmin(_fmax(p, intrinsic), upper)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def black76_vega_scalar(F: float, K: float, T: float, vol: float, D: float) -> float:
    """dPrice/dvol per unit of vol; NaN for invalid input."""
    if not black_inputs_valid(F, K, T, D) or not (vol >= 0.0) or math.isinf(vol):
        return _NAN
    sqrtT = math.sqrt(T)
    return D * math.sqrt(F) * math.sqrt(K) * normalised_vega(log_moneyness(F, K), vol * sqrtT) * sqrtT


# ---- implied volatility --------------------------------------------------------------------------------
@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _bo_complement(x: float, s: float, ex_half: float, ex_mhalf: float) -> float:
    """bmax - bo(x, s) for x <= 0 as a sum of two positive terms."""
    if not (s > 0.0):
        return ex_half
    h = x / s
    t = 0.5 * s
    return 0.5 * (ex_half * math.erfc((h + t) * _INV_SQRT2) + ex_mhalf * math.erfc(-(h - t) * _INV_SQRT2))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _householder_step(nu: float, h2: float, h3: float) -> float:
    """Householder step of order 4 from nu = -f/f', h2 = f''/f', h3 = f'''/f'."""
    return nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu * (1.0 / 6.0)))


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def _lower_guess(beta: float, x: float, sc: float, bc: float) -> float:
    """Starting point below the inflection point: the smallest of three overshooting estimates."""
    lnb = math.log(beta)
    ax = -x
    g1 = sc * math.sqrt(math.log(bc) / lnb)
    c0 = _INV_SQRT2PI
    bx = beta - 0.5 * x
    disc = bx * bx - 2.0 * c0 * c0 * x * x
    g3 = (bx + math.sqrt(disc)) / (2.0 * c0) if disc > 0.0 else g1
    g13 = _fmin(g1, g3)
    wc = ax / sc
    # ln bo(w) ~ -w^2/2 - x^2/(8 w^2) - ln(w (w^2 + 3)) + ln|x| - ln(2 pi)/2
    C = math.log(ax) - 0.91893853320467274178
    w = math.sqrt(_fmax(-2.0 * (lnb - C), wc * wc))
    for _ in range(3):
        w2 = w * w
        m = -0.5 * w2 - ax * ax / (8.0 * w2) - math.log(w * (w2 + 3.0)) + C
        dm = -w + ax * ax / (4.0 * w2 * w) - 1.0 / w - 2.0 * w / (w2 + 3.0)
        w = _fmax(w - (m - lnb) / dm, wc)
    return _fmin(g13, ax / w)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def implied_normalised_vol_otm(beta: float, x: float) -> tuple[float, int, int]:
    """Solve bo(x, s) = beta for s, given x <= 0 and 0 < beta < exp(x/2).

    Returns ``(s, status, iterations)``; status is 0 or 4 (no convergence).
    """
    ex_half = math.exp(0.5 * x)
    ex_mhalf = math.exp(-0.5 * x)
    bmax = ex_half
    sc = math.sqrt(-2.0 * x)
    # bo at the inflection point in closed form; it only picks the branch and pins the starting model.
    bc = _fmax(0.5 * ex_half - 0.5 * ex_mhalf * math.erfc(sc * _INV_SQRT2), 0.0)
    lower = beta < bc
    # Log-complement objective only where bmax - beta is exact (beta >= bmax/2, Sterbenz).
    top = (not lower) and beta >= 0.5 * bmax
    if lower:
        target = 1.0 / math.log(beta)
        s = _lower_guess(beta, x, sc, bc)
        lo = 0.0
        hi = sc
    else:
        gc = _bo_complement(x, sc, ex_half, ex_mhalf)
        target = math.log(bmax - beta)
        s = math.sqrt(sc * sc + 8.0 * (math.log(gc) - target))
        lo = sc
        hi = _INF
    x2 = x * x
    iterations = 0
    for it in range(1, MAX_ITERATIONS + 1):
        iterations = it
        b, bp = normalised_black_otm_vega(x, s, ex_half, ex_mhalf)
        # The bracket follows the sign of the objective itself (the complement G above s_c).
        G = _bo_complement(x, s, ex_half, ex_mhalf) if top else 0.0
        below_root = (G > bmax - beta) if top else (b < beta)
        if below_root:
            lo = s
        else:
            hi = s
        s2 = s * s
        r2 = x2 / (s2 * s) - 0.25 * s  # second over first derivative of bo
        r3 = r2 * r2 - 3.0 * x2 / (s2 * s2) - 0.25  # third over first derivative of bo
        ds = _NAN
        if lower:
            if b > 0.0 and bp > 0.0:
                # f = 1/L - 1/ln(beta), L = ln bo; derivatives by the chain rule.
                L = math.log(b)
                lam = bp / b  # L'
                L2 = lam * r2 - lam * lam  # L''
                L3 = lam * r3 - 3.0 * lam * lam * r2 + 2.0 * lam * lam * lam  # L'''
                iL = 1.0 / L
                f = iL - target
                f1 = -lam * iL * iL
                f2 = (2.0 * lam * lam * iL - L2) * iL * iL
                f3 = (-6.0 * lam * lam * lam * iL * iL + 6.0 * lam * L2 * iL - L3) * iL * iL
                ds = _householder_step(-f / f1, f2 / f1, f3 / f1)
        elif not top:
            if bp > 0.0:
                ds = _householder_step(-(b - beta) / bp, r2, r3)  # f = bo - beta
        else:
            # f = ln(bmax - beta) - ln G, G = bmax - bo.
            if G > 0.0 and bp > 0.0:
                mu = bp / G
                f = target - math.log(G)
                f2 = mu * r2 + mu * mu
                f3 = mu * r3 + 3.0 * mu * mu * r2 + 2.0 * mu * mu * mu
                ds = _householder_step(-f / mu, f2 / mu, f3 / mu)
        s_new = s + ds
        if math.fabs(ds) <= CONVERGED_STEP * s and s_new > 0.0:  # converged (NaN ds fails this test)
            return s_new, OK, iterations
        if not (s_new > lo and s_new < hi):  # NaN or outside the bracket: bisect
            if lo > 0.0 and math.isfinite(hi):
                s_new = math.sqrt(lo * hi)
            elif lo > 0.0:
                s_new = 2.0 * lo
            else:
                s_new = 0.5 * hi
            if not (s_new != s):  # the bracket collapsed onto s: s is as good as double allows
                break
        s = s_new
    if hi - lo <= 4.0 * _DBL_EPS * hi:  # bracket collapsed to rounding: converged
        return s, OK, iterations
    return s, NO_CONVERGENCE, iterations


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def implied_vol_scalar(
    price: float, F: float, K: float, T: float, is_call: bool, D: float
) -> tuple[float, int]:
    """Black-76 implied vol of one quote: ``(vol, status)``; vol NaN whenever status != 0.

    Same units and conventions as :func:`black76_price_scalar`. Never raises.
    """
    if not black_inputs_valid(F, K, T, D) or not math.isfinite(price):
        return _NAN, INVALID_INPUT
    if is_call:
        intrinsic = D * (F - K if F > K else 0.0)
        upper = D * F
    else:
        intrinsic = D * (K - F if K > F else 0.0)
        upper = D * K
    if price < intrinsic or price < 0.0:
        return _NAN, BELOW_INTRINSIC
    if price >= upper:
        return _NAN, ABOVE_MAXIMUM
    time_value = price - intrinsic
    if time_value == 0.0:
        return 0.0, OK
    x = -math.fabs(log_moneyness(F, K))
    beta = time_value / (D * math.sqrt(F) * math.sqrt(K))
    if not (beta > 0.0):  # a positive time value that underflows on the normalised scale: vol 0 to double
        return 0.0, OK
    if not (beta < math.exp(0.5 * x)):  # the time value alone reaches the bound: vol is infinite
        return _NAN, ABOVE_MAXIMUM
    s, status, _ = implied_normalised_vol_otm(beta, x)
    if status != OK:
        return _NAN, status
    return s / math.sqrt(T), OK


# ---- bulk ----------------------------------------------------------------------------------------------
@numba.jit(nopython=True, parallel=True, cache=True, fastmath=False, error_model="numpy")
def implied_vol_array(
    price: np.ndarray,
    forward: np.ndarray,
    strike: np.ndarray,
    expiry_years: np.ndarray,
    is_call: np.ndarray,
    discount_factor: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Implied vols of 1-D arrays of equal length: ``(iv float64, status uint8)``; never raises per quote.

    Raises ValueError only if the lengths differ. Threads: ``numba.set_num_threads``.
    """
    n = price.shape[0]
    if (
        forward.shape[0] != n
        or strike.shape[0] != n
        or expiry_years.shape[0] != n
        or is_call.shape[0] != n
        or discount_factor.shape[0] != n
    ):
        raise ValueError("implied_vol_array: all inputs must have the same length")
    iv = np.empty(n, dtype=np.float64)
    status = np.empty(n, dtype=np.uint8)
    for i in numba.prange(n):
        v, st = implied_vol_scalar(
            price[i], forward[i], strike[i], expiry_years[i], is_call[i] != 0, discount_factor[i]
        )
        iv[i] = v
        status[i] = st
    return iv, status


@numba.jit(nopython=True, parallel=True, cache=True, fastmath=False, error_model="numpy")
def black76_price_array(
    forward: np.ndarray,
    strike: np.ndarray,
    expiry_years: np.ndarray,
    vol: np.ndarray,
    is_call: np.ndarray,
    discount_factor: np.ndarray,
) -> np.ndarray:
    """Black-76 prices of 1-D arrays of equal length (NaN where an input is invalid)."""
    n = forward.shape[0]
    if (
        strike.shape[0] != n
        or expiry_years.shape[0] != n
        or vol.shape[0] != n
        or is_call.shape[0] != n
        or discount_factor.shape[0] != n
    ):
        raise ValueError("black76_price_array: all inputs must have the same length")
    out = np.empty(n, dtype=np.float64)
    for i in numba.prange(n):
        out[i] = black76_price_scalar(
            forward[i], strike[i], expiry_years[i], vol[i], is_call[i] != 0, discount_factor[i]
        )
    return out
