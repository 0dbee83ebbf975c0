"""Numba backend (volfast.iv._numba): ground truth, published values, agreement with C++, use from @njit."""

from __future__ import annotations

import math

import mpmath
import numba
import numpy as np
import pytest

import volfast
from volfast._native import core
from volfast.iv import _numba as nb

EPS = 2.0**-52
TINY = 2.0**-1022  # smallest normal double
ONE_HOUR = 1.0 / (365.0 * 24.0)


def _random_quotes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Vols 1e-3..5, T one hour..30y, ln(K/F) in [-5 sqrt(T), 3 sqrt(T)], calls and puts."""
    T = np.exp(rng.uniform(np.log(ONE_HOUR), np.log(30.0), n))
    vol = np.exp(rng.uniform(np.log(1e-3), np.log(5.0), n))
    F = 100.0 * np.exp(rng.uniform(-1.0, 1.0, n))
    K = F * np.exp(rng.uniform(-5.0, 3.0, n) * np.sqrt(T))
    return {
        "forward": F,
        "strike": K,
        "expiry_years": T,
        "vol": vol,
        "is_call": rng.random(n) < 0.5,
        "discount_factor": rng.uniform(0.5, 1.0, n),
    }


def _bad_quotes() -> dict[str, np.ndarray]:
    """Every argument in turn NaN, +-inf, negative or zero, on an OTM and an ITM call and put."""
    base = [  # price, F, K, T, is_call, D
        (3.0, 100.0, 110.0, 0.5, True, 0.9),
        (12.0, 100.0, 90.0, 0.5, True, 0.9),
        (3.0, 100.0, 90.0, 0.5, False, 0.9),
        (12.0, 100.0, 110.0, 0.5, False, 0.9),
    ]
    rows = list(base)
    for row in base:
        for j in (0, 1, 2, 3, 5):
            for bad in (math.nan, math.inf, -math.inf, -1.0, 0.0):
                r = list(row)
                r[j] = bad
                rows.append(tuple(r))
    cols = list(zip(*rows, strict=True))
    return {
        "price": np.array(cols[0]),
        "forward": np.array(cols[1]),
        "strike": np.array(cols[2]),
        "expiry_years": np.array(cols[3]),
        "is_call": np.array(cols[4], dtype=bool),
        "discount_factor": np.array(cols[5]),
    }


def _floor(iv: np.ndarray, price: np.ndarray, vega: np.ndarray) -> np.ndarray:
    """Attainable vol error 2^-52 vol + ulp(price)/vega (the ulp of a subnormal price where it applies)."""
    return EPS * iv + np.maximum(EPS * price, 2.0**-1074) / vega


# ---- (3) published values -----------------------------------------------------------------------------


def test_published_atm_price_and_vol() -> None:
    p = nb.black76_price_scalar(100.0, 100.0, 0.5, 0.2, True, 1.0)
    assert abs(p - 5.637197779701664) <= 1e-15 * 5.637197779701664
    vol, status = nb.implied_vol_scalar(6.54635543387, 100.0, 100.0, 0.5, True, 1.0)
    assert status == 0
    assert abs(vol - 0.2323232320000792) <= 1e-14 * 0.2323232320000792
    iv, st = nb.implied_vol_array(
        np.array([6.54635543387]),
        np.array([100.0]),
        np.array([100.0]),
        np.array([0.5]),
        np.array([True]),
        np.array([1.0]),
    )
    assert st[0] == 0 and iv[0] == vol


def test_put_call_parity_of_normalised_black() -> None:
    # b(x, s, +1) - b(x, s, -1) = 2 sinh(x/2): both sides go through different regions of bo.
    for x in (-2.0, -0.3, -1e-6, 1e-6, 0.3, 2.0):
        for s in (1e-3, 0.1, 0.41, 1.0, 4.0):
            diff = nb.normalised_black(x, s, 1.0) - nb.normalised_black(x, s, -1.0)
            scale = abs(diff) + nb.normalised_black(x, s, 1.0)
            assert abs(diff - 2.0 * math.sinh(0.5 * x)) <= 4 * EPS * scale


# ---- (2) ground truth: vol -> mpmath price -> vol -------------------------------------------------------


def _mp_price_vega(F: float, K: float, T: float, vol: float, is_call: bool, D: float) -> tuple[float, float]:
    with mpmath.workdps(40):
        F_, K_, T_, v_, D_ = (mpmath.mpf(a) for a in (F, K, T, vol, D))
        s = v_ * mpmath.sqrt(T_)
        d1 = mpmath.log(F_ / K_) / s + s / 2
        d2 = d1 - s
        th = 1 if is_call else -1
        ncdf = lambda z: mpmath.erfc(-z / mpmath.sqrt(2)) / 2  # noqa: E731
        price = D_ * th * (F_ * ncdf(th * d1) - K_ * ncdf(th * d2))
        vega = D_ * F_ * mpmath.npdf(d1) * mpmath.sqrt(T_)
        return float(price), float(vega)


Quotes = dict[str, np.ndarray]


def _round_trip(seed: int, n: int, take: int) -> tuple[Quotes, np.ndarray, np.ndarray, np.ndarray]:
    """vol -> mpmath price (rounded to double) -> Numba vol: (quotes, selection, error / floor, status)."""
    q = _random_quotes(np.random.default_rng(seed), n)
    # Pre-select in double (cheap) quotes whose price is a normal double; mpmath decides below.
    p_double = nb.black76_price_array(
        q["forward"], q["strike"], q["expiry_years"], q["vol"], q["is_call"], q["discount_factor"]
    )
    F, K, D, c = q["forward"], q["strike"], q["discount_factor"], q["is_call"]
    intrinsic = D * np.where(c, np.maximum(F - K, 0.0), np.maximum(K - F, 0.0))
    # the bound less a few ulps: within them beta rounds onto bmax and the vol is infinite (status 2)
    upper = D * np.where(c, F, K)
    upper = upper - 8.0 * np.spacing(upper)
    idx = np.flatnonzero((p_double > 1e-300) & (p_double - intrinsic > 0.0) & (p_double < upper))[:take]
    price, vega, keep = np.empty(idx.size), np.empty(idx.size), np.zeros(idx.size, dtype=bool)
    for j, i in enumerate(idx):
        price[j], vega[j] = _mp_price_vega(F[i], K[i], q["expiry_years"][i], q["vol"][i], bool(c[i]), D[i])
        # a normal price with a representable time value, clear of the upper bound
        keep[j] = price[j] >= TINY and price[j] - intrinsic[i] > 0.0 and price[j] < upper[i] and vega[j] > 0.0
    sel = idx[keep]
    price, vega = price[keep], vega[keep]
    args = [q[k][sel] for k in ("forward", "strike", "expiry_years", "is_call", "discount_factor")]
    iv, status = nb.implied_vol_array(price, *args)
    vol = q["vol"][sel]
    with np.errstate(over="ignore"):  # price / vega overflows only where the floor is infinite anyway
        floor = EPS * (vol + price / vega)
    return q, sel, np.abs(iv - vol) / floor, status


def test_round_trip_against_mpmath() -> None:
    q, sel, ratio, status = _round_trip(20240611, 6000, 700)
    assert sel.size > 500
    assert np.all(status == 0)
    assert ratio.max() <= 4.0, (ratio.max(), sel[np.argmax(ratio)])
    # the floor is attained, not a loose bound: a typical quote is within one floor
    assert np.median(ratio) <= 1.0
    # the domain reaches the corners the solver has regions for
    T, K, F, vol = q["expiry_years"][sel], q["strike"][sel], q["forward"][sel], q["vol"][sel]
    h = np.log(F / K) / (vol * np.sqrt(T))
    assert T.min() < 2 * ONE_HOUR and vol.max() > 3.0 and h.min() < -4.0 and h.max() > 3.0


# ---- (1) agreement with the C++ core -------------------------------------------------------------------


def test_agrees_with_cpp_backend() -> None:
    rng = np.random.default_rng(7)
    q = _random_quotes(rng, 200_000)
    price = volfast.black76_price(**q)
    quotes = {k: v for k, v in q.items() if k != "vol"}
    bad = _bad_quotes()
    price = np.concatenate([price, bad.pop("price")])
    quotes = {k: np.concatenate([quotes[k], bad[k]]) for k in quotes}
    # The port mirrors the scalar C++ solver (batched=False); the default batched C++ path starts from SIMD
    # hints and differs from it by a few ulps within the same contract (tests/test_implied_vol.py).
    args = [price] + [quotes[k] for k in ("forward", "strike", "expiry_years", "is_call", "discount_factor")]
    iv_c, st_c = core().black76.implied_vol(*args, threads=1, batched=False)
    iv_n, st_n = volfast.implied_vol(price, **quotes, backend="numba")
    assert iv_n.dtype == np.float64 and st_n.dtype == np.uint8
    np.testing.assert_array_equal(st_n, st_c)
    assert np.all(np.isnan(iv_n) == (st_n != 0))
    ok = st_n == 0
    assert ok.sum() > 190_000 and np.count_nonzero(st_n == 3) > 50
    ulps = np.abs(iv_n[ok].view(np.int64) - iv_c[ok].view(np.int64))
    # Bit-identical to the headers compiled without FMA contraction. The installed core is built with
    # -march=native, where GCC contracts a*b+c into FMAs by default for C++ (-ffp-contract=fast); the
    # lower-branch objective 1/ln(bo) then turns those last-bit differences into up to ~|ln bo| ulps of
    # vol. So: nearly all within 2 ulps, and every quote within a few attainable floors of the C++ vol.
    assert np.mean(ulps <= 2) >= 0.98, np.mean(ulps <= 2)
    vega = volfast.black76_vega(
        forward=quotes["forward"][ok],
        strike=quotes["strike"][ok],
        expiry_years=quotes["expiry_years"][ok],
        vol=iv_c[ok],
        discount_factor=quotes["discount_factor"][ok],
    )
    pos = vega > 0.0  # vol 0 (price at intrinsic, or underflowed): compared bit for bit
    np.testing.assert_array_equal(iv_n[ok][~pos], iv_c[ok][~pos])
    ratio = np.abs(iv_n[ok][pos] - iv_c[ok][pos]) / _floor(iv_c[ok][pos], price[ok][pos], vega[pos])
    assert ratio.max() <= 8.0, ratio.max()


def test_bad_inputs_statuses() -> None:
    cases = [  # (price, F, K, T, is_call, D) -> status, vol
        ((math.nan, 100.0, 100.0, 1.0, True, 1.0), 3),
        ((5.0, -100.0, 100.0, 1.0, True, 1.0), 3),
        ((5.0, 100.0, 0.0, 1.0, True, 1.0), 3),
        ((5.0, 100.0, 100.0, 0.0, True, 1.0), 3),
        ((5.0, 100.0, 100.0, 1.0, True, math.inf), 3),
        ((-1.0, 100.0, 120.0, 1.0, True, 1.0), 1),
        ((19.0, 100.0, 80.0, 1.0, True, 1.0), 1),  # below intrinsic 20
        ((100.0, 100.0, 80.0, 1.0, True, 1.0), 2),  # at the upper bound D F
        ((80.0, 100.0, 80.0, 1.0, False, 1.0), 2),  # put: upper bound D K
    ]
    for args, want in cases:
        vol, status = nb.implied_vol_scalar(*args)
        assert status == want and math.isnan(vol), (args, vol, status)
    # exactly at intrinsic: vol 0, ok (ITM and OTM, call and put)
    assert nb.implied_vol_scalar(18.0, 100.0, 80.0, 1.0, True, 0.9) == (0.0, 0)
    assert nb.implied_vol_scalar(0.0, 100.0, 80.0, 1.0, False, 0.9) == (0.0, 0)
    # bulk: length mismatch is the only error; read-only inputs are accepted
    a = np.ones(3)
    with pytest.raises(ValueError, match="same length"):
        nb.implied_vol_array(a, a, a, a, np.ones(2, dtype=bool), a)
    ro = np.full(3, 100.0)
    ro.setflags(write=False)
    iv, st = nb.implied_vol_array(np.full(3, 5.0), ro, ro, a, np.ones(3, dtype=bool), a)
    assert np.all(st == 0) and np.allclose(iv, iv[0])


# ---- (4) scalar functions inside a user's @njit code ---------------------------------------------------


@numba.njit(cache=False)
def _user_round_trip(vols: np.ndarray) -> np.ndarray:
    out = np.empty(vols.shape[0])
    for i in range(vols.shape[0]):
        p = nb.black76_price_scalar(100.0, 105.0, 0.25, vols[i], True, 0.99)
        v, status = nb.implied_vol_scalar(p, 100.0, 105.0, 0.25, True, 0.99)
        out[i] = v if status == 0 else -1.0
    return out


@numba.njit(cache=False)
def _user_normalised(x: float, s: float) -> float:
    return nb.normalised_black(x, s, 1.0) - nb.normalised_black(x, s, -1.0)


def test_scalars_callable_from_user_njit() -> None:
    vols = np.array([0.05, 0.2, 0.8, 2.0])
    back = _user_round_trip(vols)
    np.testing.assert_allclose(back, vols, rtol=1e-14, atol=0.0)
    assert abs(_user_normalised(0.1, 0.3) - 2.0 * math.sinh(0.05)) < 1e-16
    one = np.array([1.0])
    bulk = nb.black76_price_array(100.0 * one, 100.0 * one, one, 0.2 * one, np.array([True]), one)
    assert nb.black76_price_scalar(100.0, 100.0, 1.0, 0.2, True, 1.0) == bulk[0]
