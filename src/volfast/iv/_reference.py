"""Slow, obvious reference for Black-76 in arbitrary precision (mpmath), used by tests and as
``backend="reference"``. Quote by quote in Python: milliseconds per quote, for checking, not for work."""

from __future__ import annotations

import mpmath as mp
import numpy as np

OK, BELOW_INTRINSIC, ABOVE_MAXIMUM, INVALID_INPUT = 0, 1, 2, 3
_DPS = 40


def _mp(a: object) -> mp.mpf:
    """Exact binary value of a float; mpf inputs (e.g. from mp.diff) pass through unrounded."""
    return a if isinstance(a, mp.mpf) else mp.mpf(float(a))  # type: ignore[arg-type]


def price_mp(
    forward: float,
    strike: float,
    expiry_years: float,
    vol: float,
    is_call: bool,
    discount_factor: float = 1.0,
) -> mp.mpf:
    """Black-76 price at 40 significant digits (inputs taken as exact binary values)."""
    with mp.workdps(max(_DPS, mp.mp.dps)):
        F, K, T, v, D = (_mp(a) for a in (forward, strike, expiry_years, vol, discount_factor))
        if v == 0:
            intrinsic = F - K if is_call else K - F
            return D * max(intrinsic, mp.mpf(0))
        s = v * mp.sqrt(T)
        d1 = mp.log(F / K) / s + s / 2
        d2 = d1 - s
        if is_call:
            return D * (F * mp.ncdf(d1) - K * mp.ncdf(d2))
        return D * (K * mp.ncdf(-d2) - F * mp.ncdf(-d1))


def vega_mp(
    forward: float, strike: float, expiry_years: float, vol: float, discount_factor: float = 1.0
) -> mp.mpf:
    with mp.workdps(max(_DPS, mp.mp.dps)):
        F, K, T, v, D = (_mp(a) for a in (forward, strike, expiry_years, vol, discount_factor))
        s = v * mp.sqrt(T)
        d1 = mp.log(F / K) / s + s / 2
        return D * F * mp.npdf(d1) * mp.sqrt(T)


def implied_vol_scalar(
    price: float,
    forward: float,
    strike: float,
    expiry_years: float,
    is_call: bool,
    discount_factor: float = 1.0,
) -> tuple[float, int]:
    """Vol whose 40-digit Black price equals ``price`` (bisection in ln vol, then rounded to double)."""
    vals = (price, forward, strike, expiry_years, discount_factor)
    if not all(np.isfinite(vals)) or min(forward, strike, expiry_years, discount_factor) <= 0:
        return float("nan"), INVALID_INPUT
    with mp.workdps(max(_DPS, mp.mp.dps)):
        P, F, K, D = (mp.mpf(float(a)) for a in (price, forward, strike, discount_factor))
        intrinsic = D * max(F - K if is_call else K - F, mp.mpf(0))
        upper = D * (F if is_call else K)
        if P < intrinsic or P < 0:
            return float("nan"), BELOW_INTRINSIC
        if P >= upper:
            return float("nan"), ABOVE_MAXIMUM
        if P == intrinsic:
            return 0.0, OK
        lo, hi = mp.mpf("1e-12"), mp.mpf(1)
        while price_mp(forward, strike, expiry_years, hi, is_call, discount_factor) < P:
            hi *= 2
            if hi > 1e6:
                return float("nan"), ABOVE_MAXIMUM
        for _ in range(200):
            mid = mp.sqrt(lo * hi)
            if price_mp(forward, strike, expiry_years, mid, is_call, discount_factor) < P:
                lo = mid
            else:
                hi = mid
            if hi - lo < hi * mp.mpf(10) ** (-30):
                break
        return float(mp.sqrt(lo * hi)), OK


def implied_vol(
    price: np.ndarray,
    forward: np.ndarray,
    strike: np.ndarray,
    expiry_years: np.ndarray,
    is_call: np.ndarray,
    discount_factor: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(price)
    iv = np.empty(n)
    status = np.empty(n, dtype=np.uint8)
    for i in range(n):
        iv[i], status[i] = implied_vol_scalar(
            float(price[i]),
            float(forward[i]),
            float(strike[i]),
            float(expiry_years[i]),
            bool(is_call[i]),
            float(discount_factor[i]),
        )
    return iv, status
