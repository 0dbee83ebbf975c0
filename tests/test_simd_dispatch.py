"""Run-time SIMD dispatch of the C++ kernels: every level this CPU runs gives the same answers, and a forced
level (VOLFAST_SIMD, set_simd_level) is honoured or refused with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import volfast
from volfast import IVStatus, _native
from volfast._native import SIMD_LEVELS, SimdLevelError, core, set_simd_level, simd_level, simd_levels
from volfast.demo import es_like_chain
from volfast.iv import _reference as ref

from ._iv_domain import accuracy_domain, floor

RUNNABLE = [k for k, v in simd_levels().items() if v["compiled"] and v["supported"]]
COLS = ("forward", "strike", "expiry_years", "is_call", "discount_factor")


@pytest.fixture
def restore_level() -> Iterator[None]:
    before = simd_level()
    yield
    set_simd_level(before)


def _solve(level: str, price: np.ndarray, d: dict[str, np.ndarray], batched: bool) -> tuple[np.ndarray, ...]:
    set_simd_level(level)
    assert simd_level() == level
    return tuple(core().black76.implied_vol(price, *[d[k] for k in COLS], threads=1, batched=batched))


def _mixed_quotes() -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The accuracy domain, ES-like quotes and every status, shuffled so that blocks mix them."""
    a = accuracy_domain(30_000, seed=21)
    e = es_like_chain(10_000, seed=22)
    d = {k: np.concatenate([a[k], e[k]]) for k in a}
    n = len(d["vol"])
    rng = np.random.default_rng(23)
    bad = rng.choice(n, 400, replace=False)
    d["strike"][bad[350:]] = d["forward"][bad[350:]] * (1 + 1e-9)  # |x| below the SIMD cut-off
    price = volfast.black76_price(**d)
    price[bad[:100]] = np.nan  # invalid
    price[bad[100:200]] = -1.0  # below intrinsic
    price[bad[200:300]] = np.where(d["is_call"], d["forward"], d["strike"])[bad[200:300]] * 2  # above max
    d["forward"][bad[300:350]] = -5.0  # invalid forward
    # the truth check leaves out the near-the-money strikes: there ln(K/F) itself rounds (a larger floor)
    clean = np.ones(n, bool)
    clean[bad] = False
    perm = rng.permutation(n)
    return price[perm], {k: v[perm] for k, v in d.items()}, d["vol"][perm], clean[perm]


def test_levels_reported() -> None:
    levels = simd_levels()
    assert tuple(levels) == SIMD_LEVELS
    assert levels["scalar"] == {"compiled": True, "supported": True}
    best = core().simd_best()
    assert best in RUNNABLE and best == RUNNABLE[-1]
    # the level in use is the one VOLFAST_SIMD forces (CI runs the suite under two), else the best
    want = os.environ.get("VOLFAST_SIMD", "").strip().lower()
    assert simd_level() == (best if want in ("", "auto") else want)


@pytest.mark.parametrize("batched", [True, False])
def test_every_level_gives_the_same_answers(batched: bool, restore_level: None) -> None:
    """Same quotes through every level this CPU runs: identical statuses everywhere; AVX2 and AVX-512
    bit-identical (the same fused multiply-adds, only the vector width differs); the baseline level, which has
    no FMA, within 3 floors of them (each level's result carries its own rounding of bo, amplified by up to
    h^2 in the small-t series, which the accuracy contract allows: a few floors); every level within floors
    of the truth."""
    price, d, vol, clean = _mixed_quotes()
    out = {lv: _solve(lv, price, d, batched) for lv in RUNNABLE}
    iv0, st0 = out["scalar"]
    statuses = np.bincount(st0, minlength=5)
    assert statuses[IVStatus.OK] > 35_000 and statuses[1:4].min() >= 50
    vega = volfast.black76_vega(**{k: v for k, v in d.items() if k != "is_call"})
    intrinsic = d["discount_factor"] * np.maximum(
        np.where(d["is_call"], 1, -1) * (d["forward"] - d["strike"]), 0
    )
    # a time value that rounds away leaves nothing to learn about the vol (vol 0, compared above)
    ok = (st0 == IVStatus.OK) & (price > 1e-290) & (vega > 0) & (price - intrinsic > 1e-10 * price)
    fl = floor(vol, price, vega)
    for lv, (iv, st) in out.items():
        np.testing.assert_array_equal(st, st0, err_msg=lv)
        np.testing.assert_array_equal(np.isnan(iv), np.isnan(iv0), err_msg=lv)
        np.testing.assert_array_equal(iv == 0.0, iv0 == 0.0, err_msg=lv)
        if not batched:  # the scalar solver is the same code at every level: bit for bit
            np.testing.assert_array_equal(iv, iv0, err_msg=lv)
        between = np.abs(iv - iv0)[ok] / fl[ok]
        assert between.max() <= 3.0, (lv, between.max())
        to_truth = np.abs(iv - vol)[ok & clean] / fl[ok & clean]
        assert to_truth.max() < 6.0, (lv, to_truth.max())
    if "avx2" in out and "avx512" in out:
        # NaN where NaN, bit for bit elsewhere
        np.testing.assert_array_equal(out["avx512"][0], out["avx2"][0])


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the spacing of doubles at want (want: 40-digit values rounded once)."""
    return np.abs(got - want) / np.spacing(np.abs(want))


@pytest.mark.parametrize("level", RUNNABLE)
def test_lane_functions_against_40_digits(level: str, restore_level: None) -> None:
    """The vectorised exp and erfcx of the accurate SIMD step are within 2 ulp of 40-digit values at every
    level (erfcx over every piece of its table, both ends of each piece, and out to 1e6), and the hint's log
    within 1e-15 relative."""
    import mpmath as mp

    set_simd_level(level)
    lane = core().black76.lane_math
    rng = np.random.default_rng(3)
    edges = np.arange(0.0, 8.25, 0.25)
    y = np.concatenate(
        [
            rng.uniform(0.0, 10.0, 1500),
            np.exp(rng.uniform(np.log(1e-8), np.log(1e6), 500)),
            edges,
            np.nextafter(edges[1:], 0.0),
        ]
    )
    a = np.concatenate([rng.uniform(-700.0, 700.0, 1000), rng.uniform(-1.0, 1.0, 200)])
    xlog = np.exp(rng.uniform(np.log(1e-300), np.log(1e300), 1000))
    with mp.workdps(40):
        erfcx = np.array([float(mp.exp(mp.mpf(v) ** 2) * mp.erfc(mp.mpf(v))) for v in y])
        exp = np.array([float(mp.exp(mp.mpf(v))) for v in a])
        log = np.array([float(mp.log(mp.mpf(v))) for v in xlog])
    assert _ulps(lane("erfcx", y), erfcx).max() <= 2.0
    assert _ulps(lane("exp", a), exp).max() <= 2.0
    assert (np.abs(lane("log", xlog) - log) / np.maximum(1.0, np.abs(log))).max() < 1e-15
    assert np.isnan(lane("erfcx", np.array([np.nan])))[0]
    with pytest.raises(ValueError, match="unknown function"):
        lane("erfc", y)


@pytest.fixture(scope="module")
def exact_quotes() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    d = accuracy_domain(500, seed=31)
    truth = np.array(
        [
            float(
                ref.price_mp(
                    *(
                        d[k][i]
                        for k in ("forward", "strike", "expiry_years", "vol", "is_call", "discount_factor")
                    )
                )
            )
            for i in range(500)
        ]
    )
    return truth, d


def test_every_level_against_40_digit_prices(
    exact_quotes: tuple[np.ndarray, dict[str, np.ndarray]], restore_level: None
) -> None:
    """The accuracy contract (< 4 floors against prices computed at 40 digits) holds at every level."""
    truth, d = exact_quotes
    vega = volfast.black76_vega(**{k: v for k, v in d.items() if k != "is_call"})
    upper = np.where(d["is_call"], d["forward"], d["strike"]) * d["discount_factor"]
    intrinsic = d["discount_factor"] * np.maximum(
        np.where(d["is_call"], 1, -1) * (d["forward"] - d["strike"]), 0
    )
    usable = (truth > 1e-290) & (vega > 0) & (truth > intrinsic) & (truth < 0.999 * upper)
    assert usable.sum() > 200
    for lv in RUNNABLE:
        iv, st = _solve(lv, truth, d, True)
        assert np.all(st[usable] == IVStatus.OK), lv
        err = np.abs(iv - d["vol"])[usable] / floor(d["vol"], truth, vega)[usable]
        assert err.max() < 4.0, (lv, err.max())


def test_prices_agree_across_levels(restore_level: None) -> None:
    d = accuracy_domain(20_000, seed=41)
    out = {}
    for lv in RUNNABLE:
        set_simd_level(lv)
        out[lv] = volfast.black76_price(**d, threads=1)
    base = out["scalar"]
    for lv, p in out.items():
        np.testing.assert_array_equal(p, base, err_msg=lv)


def test_unknown_level_is_refused_and_changes_nothing(restore_level: None) -> None:
    before = simd_level()
    with pytest.raises(
        SimdLevelError, match=r"unknown SIMD level 'avx9' \(expected auto, scalar, avx2 or avx512\)"
    ):
        set_simd_level("avx9")
    assert simd_level() == before
    assert set_simd_level("auto") == core().simd_best()


def test_unsupported_level_is_refused(restore_level: None) -> None:
    missing = [k for k, v in simd_levels().items() if not (v["compiled"] and v["supported"])]
    if not missing:
        pytest.skip("this CPU runs every level")
    with pytest.raises(SimdLevelError, match=f"SIMD level {missing[0]} is not"):
        set_simd_level(missing[0])


def test_bad_environment_level_fails_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOLFAST_SIMD", "AVX9 ")
    err = _native._apply_simd_env()
    assert isinstance(err, SimdLevelError) and isinstance(err, volfast.VolfastError)
    assert str(err).startswith("VOLFAST_SIMD=avx9: unknown SIMD level") and "\n" not in str(err)
    monkeypatch.setattr(_native, "_SIMD_ERROR", err)
    with pytest.raises(SimdLevelError, match="VOLFAST_SIMD=avx9"):
        volfast.implied_vol(5.0, forward=100.0, strike=100.0, expiry_years=0.5, is_call=True)
    from volfast.info import collect_info, simd_line

    info = collect_info()
    assert info["core"]["simd"] is None and simd_line(info["core"]).startswith("ERROR: VOLFAST_SIMD=avx9")


def _run_python(code: str, level: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOLFAST_SIMD": level}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("level", ["scalar", *[lv for lv in ("avx2", "avx512") if lv in RUNNABLE]])
def test_environment_forces_level(level: str) -> None:
    code = (
        "import volfast\nfrom volfast._native import simd_level\n"
        "r = volfast.implied_vol(6.54635543387, forward=100.0, strike=100.0, expiry_years=0.5,"
        " is_call=True)\n"
        "print(simd_level(), repr(float(r.iv)))"
    )
    p = _run_python(code, level)
    assert p.returncode == 0, p.stderr
    name, iv = p.stdout.split()
    assert name == level and abs(float(iv) - 0.2323232320000792) < 1e-14


def test_cli_reports_bad_environment_level() -> None:
    code = "from volfast.cli import main\nmain(['info'])"
    p = _run_python(code, "neon")
    assert p.returncode == 0, p.stderr
    assert "VOLFAST_SIMD=neon: unknown SIMD level" in p.stdout.replace("\n", " ").replace("│", " ")
