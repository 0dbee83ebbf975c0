"""Black-76 implied volatility in float64 on the GPU (Triton), a port of the C++ solver.

The kernel follows ``cpp/include/volfast/implied_vol.hpp`` and ``black76.hpp`` step for step: the reduction
to the out-of-the-money normalised time value ``beta`` on ``x = -|ln(F/K)| <= 0``, the two objectives split at
the inflection point ``s_c = sqrt(2|x|)`` (``1/ln bo`` below, ``ln(bmax - bo)`` above for ``beta >= bmax/2``,
plain ``bo - beta`` between), the three-way lower starting guess, fourth-order Householder steps inside a
bracket with bisection in ``ln s`` as the fallback, the same convergence test (a step below 1e-4 relative)
and the same status codes (:class:`volfast.IVStatus`). Each quote is one lane; every branch of the C++ code
becomes a per-lane select, and the loop runs until every lane of the block has settled.

Special functions. Triton's ``libdevice.erfc``/``erfcx`` exist on CUDA but are extern calls the interpreter
(``TRITON_INTERPRET=1``) cannot run, and ``tl.math`` has ``erf`` only (``1 - erf`` loses every digit in the
tail). So erfc and erfcx are computed here from W. J. Cody's rational Chebyshev approximations
("Rational Chebyshev approximations for the error function", Math. Comp. 23, 1969, 631-638; the
near-minimax coefficients of his three intervals, theoretical accuracy 18 significant digits). The
exponentials that turn erfcx into erfc take the square of the argument split exactly (``fma``), as the C++
code does, so the result is insensitive to the rounding of ``y^2``. Measured against 40-digit mpmath
(``tests/test_kernels.py::test_erfc_erfcx_accuracy``) the relative error is below 4 ulp for erfc on
``[-6, 26]`` and for erfcx on ``[0, 1e6]``. ``log1p`` (for ``ln(F/K)`` near the money, where ``F - K`` is
exact) uses Goldberg's ``u * log(1+u) / ((1+u) - 1)``, a few ulp of ``ln(F/K)`` itself.

Numeric contract: the same as the C++ core. Where the C++ solver returns status OK this kernel returns OK
too, with a vol within a few times the attainable floor ``2^-52 (vol + price / vega)`` of the C++ vol
(tests compare the two on a mixed domain and on the boundary cases); statuses are identical.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl

__all__ = ["implied_vol_reference", "implied_vol_triton"]

_INV_SQRT2 = tl.constexpr(0.70710678118654752440)
_INV_SQRT2PI = tl.constexpr(0.39894228040143267794)
_SQRT_PI_OVER_2 = tl.constexpr(1.2533141373155002512)
_INV_SQRT_PI = tl.constexpr(0.56418958354775628695)
_INV_SQRT2_LO = tl.constexpr(-4.833646656726457e-17)  # 1/sqrt2 - fl(1/sqrt2)
_DBL_EPS = tl.constexpr(2.220446049250313e-16)
_HALF_LN_2PI = tl.constexpr(0.91893853320467274178)
_CONVERGED_STEP = tl.constexpr(1e-4)  # kConvergedStep in implied_vol.hpp
_INF = tl.constexpr(float("inf"))
_NAN = tl.constexpr(float("nan"))
_CODY_THRESH = tl.constexpr(0.46875)


# ---- special functions ------------------------------------------------------------------------------
@triton.jit
def _cody_core(y):
    """For y >= 0: ``(m, small)`` with ``m = erfc(y)`` where ``small`` (y <= 0.46875), else ``m = erfcx(y)``.

    Three rational approximations of Cody (1969), each evaluated by Horner; the lane picks its interval.
    """
    # |y| <= 0.46875: erf(y) = y * A(y^2) / B(y^2)
    v = y * y
    na = 0.185777706184603153 * v + 3.16112374387056560
    na = na * v + 113.864154151050156
    na = na * v + 377.485237685302021
    na = na * v + 3209.37758913846947
    da = v + 23.6012909523441209
    da = da * v + 244.024637934444173
    da = da * v + 1282.61652607737228
    da = da * v + 2844.23683343917062
    erfc_small = 1.0 - y * na / da
    # 0.46875 < y <= 4: erfcx(y) = C(y) / D(y)
    nc = 2.15311535474403846e-8 * y + 0.564188496988670089
    nc = nc * y + 8.88314979438837594
    nc = nc * y + 66.1191906371416295
    nc = nc * y + 298.635138197400131
    nc = nc * y + 881.952221241769090
    nc = nc * y + 1712.04761263407058
    nc = nc * y + 2051.07837782607147
    nc = nc * y + 1230.33935479799725
    dc = y + 15.7449261107098347
    dc = dc * y + 117.693950891312499
    dc = dc * y + 537.181101862009858
    dc = dc * y + 1621.38957456669019
    dc = dc * y + 3290.79923573345963
    dc = dc * y + 4362.61909014324716
    dc = dc * y + 3439.36767414372164
    dc = dc * y + 1230.33935480374942
    erfcx_mid = nc / dc
    # y > 4: erfcx(y) = (1/sqrt(pi) - z P(z) / Q(z)) / y, z = 1/y^2
    z = 1.0 / tl.maximum(v, 16.0)
    npq = 1.63153871373020978e-2 * z + 3.05326634961232344e-1
    npq = npq * z + 3.60344899949804439e-1
    npq = npq * z + 1.25781726111229246e-1
    npq = npq * z + 1.60837851487422766e-2
    npq = npq * z + 6.58749161529837803e-4
    dq = z + 2.56852019228982242
    dq = dq * z + 1.87295284992346047
    dq = dq * z + 5.27905102951428412e-1
    dq = dq * z + 6.05183413124413191e-2
    dq = dq * z + 2.33520497626869185e-3
    erfcx_large = (_INV_SQRT_PI - z * npq / dq) / tl.maximum(y, 4.0)
    small = y <= _CODY_THRESH
    m = tl.where(small, erfc_small, tl.where(y <= 4.0, erfcx_mid, erfcx_large))
    return m, small


@triton.jit
def _exp_neg_half_square(a):
    """exp(-a^2/2) with a^2 split exactly (p + q)."""
    p = a * a
    q = tl.fma(a, a, -p)
    return tl.exp(-0.5 * p) * (1.0 - 0.5 * q)


@triton.jit
def _exp_square(y, sign: tl.constexpr):
    """exp(sign * y^2) with y^2 split exactly."""
    p = y * y
    q = tl.fma(y, y, -p)
    return tl.exp(sign * p) * (1.0 + sign * q)


@triton.jit
def _erfcx_nonneg(y):
    """Scaled complementary error function exp(y^2) erfc(y) for y >= 0 (including +inf -> 0)."""
    m, small = _cody_core(y)
    # exp(y^2) is only needed (and finite) on the small interval
    return tl.where(small, _exp_square(tl.minimum(y, 1.0), 1.0) * m, m)


@triton.jit
def _erfc(y):
    """Complementary error function for any real y; erfc(-y) = 2 - erfc(y)."""
    a = tl.abs(y)
    m, small = _cody_core(a)
    # beyond 27 erfc underflows to 0; clamp so the split square stays finite
    e = tl.where(small, m, _exp_square(tl.minimum(a, 27.0), -1.0) * m)
    e = tl.where(a > 27.0, 0.0, e)
    return tl.where(y < 0.0, 2.0 - e, e)


@triton.jit
def _exp_neg_half_sum_squares(a, c):
    """exp(-(a^2 + c^2)/2) with both squares and their sum carried exactly to first order."""
    pa = a * a
    qa = tl.fma(a, a, -pa)
    pc = c * c
    qc = tl.fma(c, c, -pc)
    s = pa + pc
    bb = s - pa
    e = (pa - (s - bb)) + (pc - bb)
    return tl.exp(-0.5 * s) * (1.0 - 0.5 * (qa + qc + e))


@triton.jit
def _log1p(u):
    """log(1 + u) for |u| < 1/2 (Goldberg): a few ulp, exact as u -> 0."""
    w = 1.0 + u
    d = w - 1.0
    return tl.where(d == 0.0, u, tl.log(w) * (u / tl.where(d == 0.0, 1.0, d)))


# ---- normalised Black (black76.hpp) -----------------------------------------------------------------
@triton.jit
def _bo_small_t(h, t):
    """Small-t series for bo and its vega (bo_small_t in black76.hpp)."""
    et = _exp_neg_half_square(t)
    eh = _exp_neg_half_square(h)
    # h > -14: Z_0 from erfc(-h/sqrt2) with the rounding of -h/sqrt2 corrected to first order
    e_a = eh * et * _INV_SQRT2PI
    y = -h * _INV_SQRT2
    y_lo = tl.fma(-h, _INV_SQRT2, -y) - h * _INV_SQRT2_LO
    z0_a = 0.5 * et * (_erfc(y) - 2.0 * _INV_SQRT_PI * eh * y_lo)
    # h <= -14: erfc underflows before bo does; Z_0 from erfcx instead
    e_b = _exp_neg_half_sum_squares(h, t) * _INV_SQRT2PI
    z0_b = e_b * _SQRT_PI_OVER_2 * _erfcx_nonneg(y)
    far = h <= -14.0
    big_e = tl.where(far, e_b, e_a)
    z0 = tl.where(far, z0_b, z0_a)
    t2 = t * t
    zkm1 = z0
    zk = big_e + h * z0
    scale = t
    total = zk * scale
    going = total == total  # all true (NaN lanes are never selected)
    for i in tl.static_range(8):
        k = 2.0 * i + 1.0
        z2 = h * zk + k * zkm1
        z3 = h * z2 + (k + 1.0) * zk
        zkm1 = z2
        zk = z3
        scale = scale * (t2 / ((k + 1.0) * (k + 2.0)))
        term = zk * scale
        total = tl.where(going, total + term, total)
        going = going & (tl.abs(term) > 1e-17 * total)
    zero = big_e == 0.0
    return tl.where(zero, 0.0, 2.0 * total), tl.where(zero, 0.0, big_e)


@triton.jit
def _black_otm_vega(x, s, ex_half, ex_mhalf):
    """bo(x, s) and its vega for x <= 0 (normalised_black_otm_vega in black76.hpp)."""
    s_ok = s > 0.0
    s_safe = tl.where(s_ok, s, 1.0)
    h = x / s_safe
    t = 0.5 * s_safe
    b_small, v_small = _bo_small_t(h, t)
    e2 = _exp_neg_half_sum_squares(h, t)
    a1 = -(h + t) * _INV_SQRT2
    a2 = -(h - t) * _INV_SQRT2
    b_near = 0.5 * (ex_half * _erfc(a1) - ex_mhalf * _erfc(a2))
    b_far = 0.5 * e2 * (_erfcx_nonneg(tl.maximum(a1, 0.0)) - _erfcx_nonneg(tl.maximum(a2, 0.0)))
    b_big = tl.where(h + t > 0.0, b_near, b_far)
    small = (t < 0.21) & (x > -1.5)
    b = tl.where(small, b_small, b_big)
    vega = tl.where(small, v_small, e2 * _INV_SQRT2PI)
    return tl.where(s_ok, b, 0.0), tl.where(s_ok, vega, 0.0)


@triton.jit
def _bo_complement(x, s, ex_half, ex_mhalf):
    """bmax - bo(x, s) as a sum of two positive terms."""
    s_ok = s > 0.0
    s_safe = tl.where(s_ok, s, 1.0)
    h = x / s_safe
    t = 0.5 * s_safe
    g = 0.5 * (ex_half * _erfc((h + t) * _INV_SQRT2) + ex_mhalf * _erfc(-(h - t) * _INV_SQRT2))
    return tl.where(s_ok, g, ex_half)


@triton.jit
def _householder_step(nu, h2, h3):
    return nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu * (1.0 / 6.0)))


@triton.jit
def _lower_guess(beta, x, sc, bc):
    """Starting point below the inflection point: the smallest of three overshooting estimates."""
    lnb = tl.log(beta)
    ax = -x
    g1 = sc * tl.sqrt(tl.log(bc) / lnb)
    c0 = _INV_SQRT2PI
    bx = beta - 0.5 * x
    disc = bx * bx - 2.0 * c0 * c0 * x * x
    g3 = tl.where(disc > 0.0, (bx + tl.sqrt(tl.maximum(disc, 0.0))) / (2.0 * c0), g1)
    g13 = tl.minimum(g1, g3)
    wc = ax / sc
    cc = tl.log(ax) - _HALF_LN_2PI
    w = tl.sqrt(tl.maximum(-2.0 * (lnb - cc), wc * wc))
    for _ in tl.static_range(3):
        w2 = w * w
        m = -0.5 * w2 - ax * ax / (8.0 * w2) - tl.log(w * (w2 + 3.0)) + cc
        dm = -w + ax * ax / (4.0 * w2 * w) - 1.0 / w - 2.0 * w / (w2 + 3.0)
        w = tl.maximum(w - (m - lnb) / dm, wc)
    return tl.minimum(g13, ax / w)


# ---- the kernel -------------------------------------------------------------------------------------
@triton.jit
def _implied_vol_kernel(
    price_ptr, fwd_ptr, strike_ptr, expiry_ptr, call_ptr, df_ptr, iv_ptr, status_ptr,
    n, s_price, s_fwd, s_strike, s_expiry, s_call, s_df,
    BLOCK: tl.constexpr, MAX_ITER: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)  # int64: batches beyond 2^31 quotes
    inb = offs < n
    price = tl.load(price_ptr + offs * s_price, mask=inb, other=1.0)
    fwd = tl.load(fwd_ptr + offs * s_fwd, mask=inb, other=1.0)
    strike = tl.load(strike_ptr + offs * s_strike, mask=inb, other=1.0)
    expiry = tl.load(expiry_ptr + offs * s_expiry, mask=inb, other=1.0)
    is_call = tl.load(call_ptr + offs * s_call, mask=inb, other=0) != 0
    df = tl.load(df_ptr + offs * s_df, mask=inb, other=1.0)

    finite = (tl.abs(price) < _INF) & (tl.abs(fwd) < _INF) & (tl.abs(strike) < _INF)
    finite = finite & (tl.abs(expiry) < _INF) & (tl.abs(df) < _INF)
    valid = finite & (fwd > 0.0) & (strike > 0.0) & (expiry > 0.0) & (df > 0.0)
    intrinsic = tl.where(is_call, df * tl.maximum(fwd - strike, 0.0), df * tl.maximum(strike - fwd, 0.0))
    upper = tl.where(is_call, df * fwd, df * strike)
    below = (price < intrinsic) | (price < 0.0)
    above = price >= upper
    time_value = price - intrinsic
    # x = -|ln(F/K)|; log1p of (F - K)/K near the money, where F - K is exact
    dfk = fwd - strike
    near = tl.abs(dfk) < 0.5 * strike
    lm = tl.where(near, _log1p(dfk / strike), tl.log(fwd / strike))
    x = -tl.abs(lm)
    beta = time_value / (df * tl.sqrt(fwd) * tl.sqrt(strike))
    ex_half = tl.exp(0.5 * x)
    ex_mhalf = tl.exp(-0.5 * x)
    zero_vol = (time_value == 0.0) | (~(beta > 0.0))
    infinite_vol = ~(beta < ex_half)
    status = tl.where(
        ~valid, 3, tl.where(below, 1, tl.where(above, 2, tl.where(zero_vol, 0, tl.where(infinite_vol, 2, 0))))
    ).to(tl.int32)
    solve = valid & ~below & ~above & ~zero_vol & ~infinite_vol & inb

    # ---- implied_normalised_vol_otm: setup
    bmax = ex_half
    sc = tl.sqrt(-2.0 * x)
    bc = tl.maximum(0.5 * ex_half - 0.5 * ex_mhalf * _erfc(sc * _INV_SQRT2), 0.0)
    lower = beta < bc
    top = (~lower) & (beta >= 0.5 * bmax)
    gc = _bo_complement(x, sc, ex_half, ex_mhalf)
    target_up = tl.log(bmax - beta)
    s_up = tl.sqrt(sc * sc + 8.0 * (tl.log(gc) - target_up))
    s_lo = _lower_guess(beta, x, sc, bc)
    target = tl.where(lower, 1.0 / tl.log(beta), target_up)
    s = tl.where(lower, s_lo, s_up)
    lo = tl.where(lower, 0.0, sc)
    hi = tl.where(lower, sc, _INF)
    s = tl.where(solve, s, 1.0)
    x2 = x * x

    running = solve
    converged = solve & ~solve
    result = s
    it = 0
    left = tl.sum(running.to(tl.int32), axis=0)
    while left > 0:
        b, bp = _black_otm_vega(x, s, ex_half, ex_mhalf)
        g = _bo_complement(x, s, ex_half, ex_mhalf)
        below_root = tl.where(top, g > bmax - beta, b < beta)
        lo = tl.where(running & below_root, s, lo)
        hi = tl.where(running & ~below_root, s, hi)
        s2 = s * s
        r2 = x2 / (s2 * s) - 0.25 * s
        r3 = r2 * r2 - 3.0 * x2 / (s2 * s2) - 0.25
        # lower: f = 1/ln bo - 1/ln beta
        lam = bp / b
        big_l = tl.log(b)
        l2 = lam * r2 - lam * lam
        l3 = lam * r3 - 3.0 * lam * lam * r2 + 2.0 * lam * lam * lam
        il = 1.0 / big_l
        f = il - target
        f1 = -lam * il * il
        f2 = (2.0 * lam * lam * il - l2) * il * il
        f3 = (-6.0 * lam * lam * lam * il * il + 6.0 * lam * l2 * il - l3) * il * il
        ds_lower = tl.where((b > 0.0) & (bp > 0.0), _householder_step(-f / f1, f2 / f1, f3 / f1), _NAN)
        # between: f = bo - beta
        ds_mid = tl.where(bp > 0.0, _householder_step(-(b - beta) / bp, r2, r3), _NAN)
        # top: f = ln(bmax - beta) - ln G
        mu = bp / g
        ft = target - tl.log(g)
        ft2 = mu * r2 + mu * mu
        ft3 = mu * r3 + 3.0 * mu * mu * r2 + 2.0 * mu * mu * mu
        ds_top = tl.where((g > 0.0) & (bp > 0.0), _householder_step(-ft / mu, ft2 / mu, ft3 / mu), _NAN)
        ds = tl.where(lower, ds_lower, tl.where(top, ds_top, ds_mid))

        s_new = s + ds
        done_now = running & (tl.abs(ds) <= _CONVERGED_STEP * s) & (s_new > 0.0)
        result = tl.where(done_now, s_new, result)
        converged = converged | done_now
        running = running & ~done_now
        outside = ~((s_new > lo) & (s_new < hi))
        bisect = tl.where((lo > 0.0) & (hi < _INF), tl.sqrt(lo * hi), tl.where(lo > 0.0, 2.0 * lo, 0.5 * hi))
        s_next = tl.where(outside, bisect, s_new)
        collapsed = running & outside & ~(bisect != s)
        result = tl.where(collapsed, s, result)
        running = running & ~collapsed
        s = tl.where(running, s_next, s)
        result = tl.where(running, s, result)
        it += 1
        left = tl.where(it < MAX_ITER, tl.sum(running.to(tl.int32), axis=0), 0)

    # lanes that stopped without a small step: converged only if the bracket collapsed to rounding
    settled = converged | (hi - lo <= 4.0 * _DBL_EPS * hi)
    status = tl.where(solve & ~settled, 4, status)
    vol = tl.where(solve, result / tl.sqrt(expiry), 0.0)
    vol = tl.where(status == 0, vol, _NAN)
    tl.store(iv_ptr + offs, vol, mask=inb)
    tl.store(status_ptr + offs, status.to(tl.uint8), mask=inb)


# ---- launcher ---------------------------------------------------------------------------------------


def _empty(shape: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Output allocation (one place, so tests can poison it and catch unwritten elements)."""
    return torch.empty(shape, dtype=dtype, device=device)


_BLOCK = 128
_MAX_ITERATIONS = 40  # kMaxIterations in implied_vol.hpp


def interpreting() -> bool:
    """True when Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _as_f64(name: str, t: Any) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype == torch.float64:
        return t
    if t.dtype.is_floating_point or t.dtype in (
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
    ):
        if t.dtype == torch.int64 and t.numel() and bool((t.abs() > 2**53).any()):
            raise ValueError(f"{name}: integers beyond 2^53 are not exact in float64")
        return t.to(torch.float64)  # exact widening
    raise TypeError(f"{name}: expected real numbers (float or int), got dtype {t.dtype}")


def _as_call(t: Any) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"is_call: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype == torch.bool:
        return t.view(torch.uint8) if t.is_contiguous() or t.dim() <= 1 else t.to(torch.uint8)
    if t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        return (t != 0).view(torch.uint8)
    raise TypeError(f"is_call: expected booleans or 0/1 integers, got dtype {t.dtype}")


def _check_device(named: dict[str, torch.Tensor]) -> torch.device:
    devices = {str(t.device) for t in named.values()}
    if len(devices) != 1:
        listing = ", ".join(f"{k} on {t.device}" for k, t in named.items())
        raise ValueError(f"implied_vol_triton: all inputs must be on one device, got {listing}")
    device = next(iter(named.values())).device
    if device.type != "cuda" and not interpreting():
        raise ValueError(
            f"implied_vol_triton needs CUDA tensors, got {device.type} tensors; use backend='cpp' for CPU "
            "data (CPU tensors run only under the Triton interpreter, TRITON_INTERPRET=1, for tests)"
        )
    return device


def implied_vol_triton(
    price: torch.Tensor,
    *,
    forward: torch.Tensor,
    strike: torch.Tensor,
    expiry_years: torch.Tensor,
    is_call: torch.Tensor,
    discount_factor: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Black-76 implied vols of option prices on the GPU, with a status per quote.

    Parameters
    ----------
    price : torch.Tensor
        Option premium in index points. float64 (other real dtypes are widened exactly).
    forward, strike : torch.Tensor
        > 0, index points; broadcast against ``price``.
    expiry_years : torch.Tensor
        Time to expiry in years (ACT/365), > 0.
    is_call : torch.Tensor of bool (or 0/1 integers)
        True for calls, False for puts.
    discount_factor : torch.Tensor
        > 0.

    All inputs live on one CUDA device (CPU tensors are accepted only under ``TRITON_INTERPRET=1``) and
    broadcast to a common shape; stride-0 (expanded) 1-D inputs are read in place, without copies.

    Returns
    -------
    (iv, status)
        ``iv`` float64 vols as fractions, NaN where ``status != 0``; ``status`` uint8 codes of
        :class:`volfast.IVStatus` (0 ok, 1 below intrinsic, 2 at or above the maximum, 3 invalid input,
        4 no convergence). A price exactly at intrinsic gives vol 0 with status 0.

    Notes
    -----
    Accuracy: the C++ contract, within a few times ``2^-52 (vol + price / vega)`` of the true vol over vols
    1e-3..5, ``|ln(K/F)| <= 5 sqrt(T)``, expiries of an hour to 30 years.
    """
    named = {
        "price": _as_f64("price", price),
        "forward": _as_f64("forward", forward),
        "strike": _as_f64("strike", strike),
        "expiry_years": _as_f64("expiry_years", expiry_years),
        "discount_factor": _as_f64("discount_factor", discount_factor),
        "is_call": _as_call(is_call),
    }
    device = _check_device(named)
    try:
        shape = torch.broadcast_shapes(*(t.shape for t in named.values()))
    except RuntimeError:
        shapes = ", ".join(f"{k}{tuple(t.shape)}" for k, t in named.items())
        raise ValueError(f"inputs do not broadcast to a common shape: {shapes}") from None
    n = 1
    for d in shape:
        n *= d
    iv = _empty(shape, torch.float64, device)
    status = _empty(shape, torch.uint8, device)
    if n == 0:
        return iv, status
    flat = {}
    for k, t in named.items():
        e = t.expand(shape)
        flat[k] = e if e.dim() == 1 else e.reshape(-1)  # 1-D views keep their stride (0 for broadcasts)
    grid = (triton.cdiv(n, _BLOCK),)
    # the interpreter evaluates every branch in numpy, including lanes a GPU would compute silently
    with np.errstate(all="ignore"):
        _launch(grid, flat, iv, status, n)
    return iv, status


def _launch(
    grid: tuple[int], flat: dict[str, torch.Tensor], iv: torch.Tensor, status: torch.Tensor, n: int
) -> None:
    _implied_vol_kernel[grid](
        flat["price"], flat["forward"], flat["strike"], flat["expiry_years"], flat["is_call"],
        flat["discount_factor"], iv, status, n,
        flat["price"].stride(0), flat["forward"].stride(0), flat["strike"].stride(0),
        flat["expiry_years"].stride(0), flat["is_call"].stride(0), flat["discount_factor"].stride(0),
        BLOCK=_BLOCK, MAX_ITER=_MAX_ITERATIONS,
    )  # fmt: skip


def implied_vol_reference(
    price: torch.Tensor,
    *,
    forward: torch.Tensor,
    strike: torch.Tensor,
    expiry_years: torch.Tensor,
    is_call: torch.Tensor,
    discount_factor: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference beside the kernel: the C++ core (``volfast.implied_vol(backend="cpp")``) on the host.

    Same signature and return types as :func:`implied_vol_triton`; results are moved back to the device of
    ``price``. The C++ solver is itself checked against 40-digit mpmath in ``tests/test_implied_vol.py``.
    """
    import volfast

    r = volfast.implied_vol(
        price.detach().cpu(),
        forward=forward.detach().cpu(),
        strike=strike.detach().cpu(),
        expiry_years=expiry_years.detach().cpu(),
        is_call=is_call.detach().cpu(),
        discount_factor=discount_factor.detach().cpu(),
        backend="cpp",
    )
    return r.iv.to(price.device), r.status.to(price.device)
