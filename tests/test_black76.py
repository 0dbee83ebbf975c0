"""Black-76 price and Greeks: published values, identities, and accuracy against 40-digit mpmath."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import volfast
from volfast.iv import _reference as ref

from ._iv_domain import accuracy_domain


def test_published_value() -> None:
    p = volfast.black76_price(forward=100.0, strike=100.0, expiry_years=0.5, vol=0.2, is_call=True)
    # The published figure and the 40-digit value (5.6371977797016627) differ by an ulp; we are within 2.
    assert float(p) == pytest.approx(5.637197779701664, rel=4.5e-16, abs=0)
    assert float(p) == pytest.approx(float(ref.price_mp(100, 100, 0.5, 0.2, True)), rel=2.3e-16, abs=0)


def test_price_accuracy_against_mpmath_in_vol_terms() -> None:
    """Relative price error converted to vol through vega stays within ~3 floors (the contract)."""
    d = accuracy_domain(1500, seed=11)
    p = volfast.black76_price(**d)
    vega = volfast.black76_vega(**{k: v for k, v in d.items() if k != "is_call"})
    truth = np.array(
        [
            float(
                ref.price_mp(
                    d["forward"][i],
                    d["strike"][i],
                    d["expiry_years"][i],
                    d["vol"][i],
                    d["is_call"][i],
                    d["discount_factor"][i],
                )
            )
            for i in range(1500)
        ]
    )
    ok = (truth > 1e-290) & (vega > 1e-290)
    with np.errstate(all="ignore"):
        rel = np.abs(p[ok] - truth[ok]) / truth[ok]
        vol_equiv = rel * truth[ok] / vega[ok] / (d["vol"][ok] + truth[ok] / vega[ok])
    assert np.max(vol_equiv) / 2.0**-52 < 4.0
    # and near the money prices are accurate to a few ulp outright
    near = ok & (np.abs(np.log(d["strike"] / d["forward"])) < 0.1 * d["vol"] * np.sqrt(d["expiry_years"]))
    assert near.sum() > 10
    assert np.max(np.abs(p[near] - truth[near]) / truth[near]) < 8 * 2.0**-52


@settings(max_examples=200, deadline=None)
@given(
    F=st.floats(1.0, 1e4),
    k=st.floats(-2.0, 2.0),
    T=st.floats(1e-3, 10.0),
    vol=st.floats(0.01, 2.0),
    D=st.floats(0.5, 1.05),
)
def test_put_call_parity(F: float, k: float, T: float, vol: float, D: float) -> None:
    K = F * np.exp(k)
    kw = {"forward": F, "strike": K, "expiry_years": T, "vol": vol, "discount_factor": D}
    c = float(volfast.black76_price(**kw, is_call=True))
    p = float(volfast.black76_price(**kw, is_call=False))
    assert c - p == pytest.approx(D * (F - K), abs=1e-12 * D * max(F, K))


def test_greeks_against_mpmath() -> None:
    d = accuracy_domain(300, seed=3)
    kw = {k: v for k, v in d.items() if k != "is_call"}
    vega = volfast.black76_vega(**kw)
    delta = volfast.black76_delta(**d)
    gamma = volfast.black76_gamma(**kw)
    with mp.workdps(40):
        for i in range(300):
            F, K, T, v, D = (
                mp.mpf(float(d[k][i]))
                for k in ("forward", "strike", "expiry_years", "vol", "discount_factor")
            )
            s = v * mp.sqrt(T)
            d1 = mp.log(F / K) / s + s / 2
            theta = 1 if d["is_call"][i] else -1
            assert vega[i] == pytest.approx(float(D * F * mp.npdf(d1) * mp.sqrt(T)), rel=1e-12, abs=1e-300)
            assert delta[i] == pytest.approx(float(D * theta * mp.ncdf(theta * d1)), rel=1e-12, abs=1e-300)
            assert gamma[i] == pytest.approx(float(D * mp.npdf(d1) / (F * s)), rel=1e-12, abs=1e-300)
    # and the first two against a finite difference of the price itself
    i = 0
    args = {k: d[k][i] for k in d}
    h = 1e-5 * args["forward"]
    up = volfast.black76_price(**{**args, "forward": args["forward"] + h})
    dn = volfast.black76_price(**{**args, "forward": args["forward"] - h})
    assert float((up - dn) / (2 * h)) == pytest.approx(delta[i], rel=1e-6, abs=1e-12)


def test_broadcasting_and_shapes() -> None:
    strikes = np.arange(4000.0, 6001.0, 500.0).reshape(1, -1)
    expiries = np.array([[0.1], [0.5], [1.0]])
    p = volfast.black76_price(forward=5000.0, strike=strikes, expiry_years=expiries, vol=0.2, is_call=True)
    assert p.shape == (3, 5)
    flat = volfast.black76_price(
        forward=5000.0,
        strike=np.tile(strikes, (3, 1)).ravel(),
        expiry_years=np.repeat(expiries.ravel(), 5),
        vol=0.2,
        is_call=True,
    )
    np.testing.assert_array_equal(p.ravel(), flat)
    with pytest.raises(ValueError, match="broadcast"):
        volfast.black76_price(
            forward=[1.0, 2.0], strike=[1.0, 2.0, 3.0], expiry_years=1.0, vol=0.2, is_call=True
        )


def test_invalid_inputs_give_nan_not_errors() -> None:
    F = np.array([100.0, np.nan, -1.0, 100.0, 100.0, 100.0, np.inf])
    T = np.array([1.0, 1.0, 1.0, 0.0, -1.0, 1.0, 1.0])
    vol = np.array([0.2, 0.2, 0.2, 0.2, 0.2, -0.1, 0.2])
    p = volfast.black76_price(forward=F, strike=100.0, expiry_years=T, vol=vol, is_call=True)
    assert np.isfinite(p[0]) and np.all(np.isnan(p[1:]))


def test_bad_dtypes_and_is_call_values() -> None:
    with pytest.raises(TypeError, match="forward"):
        volfast.black76_price(forward=["a"], strike=1.0, expiry_years=1.0, vol=0.2, is_call=True)
    with pytest.raises(ValueError, match="is_call"):
        volfast.black76_price(forward=1.0, strike=1.0, expiry_years=1.0, vol=0.2, is_call="X")
    a = volfast.black76_price(
        forward=100.0, strike=[90.0, 110.0], expiry_years=1.0, vol=0.2, is_call=["C", "p"]
    )
    b = volfast.black76_price(forward=100.0, strike=[90.0, 110.0], expiry_years=1.0, vol=0.2, is_call=[1, 0])
    np.testing.assert_array_equal(a, b)
    i = volfast.black76_price(
        forward=np.array([100]), strike=np.array([100]), expiry_years=1, vol=0.2, is_call=True
    )
    assert i.dtype == np.float64


def test_torch_in_torch_out() -> None:
    torch = pytest.importorskip("torch")
    p = volfast.black76_price(
        forward=torch.tensor([100.0]), strike=100.0, expiry_years=0.5, vol=0.2, is_call=True
    )
    assert isinstance(p, torch.Tensor)
    assert float(p[0]) == pytest.approx(5.637197779701664, rel=1e-15)


def test_zero_vol_limit() -> None:
    p = volfast.black76_price(
        forward=100.0, strike=[90.0, 110.0], expiry_years=1.0, vol=0.0, is_call=True, discount_factor=0.9
    )
    np.testing.assert_allclose(p, [9.0, 0.0], rtol=1e-15)
