"""``volfast bench iv``: Black-76 implied vol on ES-like quotes through volfast and every installed peer.

The quotes are the ES-like chain of :func:`volfast.demo.es_like_chain` as model mids, bids and asks (tick
rounded), shuffled. Errors are against vols solved at 40 digits (mpmath, ``backend="reference"``) for a
subsample of them; the transcendental floor is n quotes' worth of vectorised exp/log/erfc (6, 4 and 2 per
quote) on the same machine and SIMD level. Peers quote by quote from Python (QuantLib, scipy brentq) run on a
prefix of the quotes that contains the subsample.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from volfast.bench._common import Row, Suite, best_time, dist_version, numba_threads

#: quotes the per-quote Python peers are timed on (at most)
QUANTLIB_QUOTES = 20_000
BRENTQ_QUOTES = 2_000
REFERENCE_QUOTES = 100
#: the smallest relative tolerance scipy's brentq accepts (4 eps)
RTOL = 4 * np.finfo(float).eps


def es_quotes(n: int, *, seed: int = 42) -> dict[str, np.ndarray]:
    """``n`` ES-like quotes (mid, bid and ask prices of one chain), in a fixed random order."""
    import volfast
    from volfast.demo import es_like_chain

    c: dict[str, Any] = es_like_chain(n // 3 + 1, seed=seed)
    mid = volfast.black76_price(**c)
    tick = np.where(mid < 5.0, 0.05, 0.25)
    bid = np.floor(mid / tick) * tick
    ask = bid + tick
    q = {k: np.concatenate([v, v, v]) for k, v in c.items() if k != "vol"}
    q["price"] = np.concatenate([mid, bid, ask])
    perm = np.random.default_rng(seed).permutation(len(q["price"]))[:n]
    return {k: np.ascontiguousarray(v[perm]) for k, v in q.items()}


def _reference(q: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    import volfast

    kw = {k: q[k][idx] for k in ("forward", "strike", "expiry_years", "is_call", "discount_factor")}
    return np.asarray(volfast.implied_vol(q["price"][idx], **kw, backend="reference").iv, dtype=float)


def _err(iv: np.ndarray, ref: np.ndarray, idx: np.ndarray) -> float:
    """Largest |vol - reference| over the subsample; a NaN where the reference has a vol counts as inf."""
    got = np.asarray(iv, dtype=float)[idx]
    has = np.isfinite(ref)
    with np.errstate(invalid="ignore"):
        d = np.abs(got[has] - ref[has])
    return float(np.max(np.where(np.isfinite(d), d, np.inf))) if d.size else float("nan")


def run(quotes: int, threads: int, progress: Callable[[str], None] | None = None) -> Suite:
    """Measure every implementation on ``quotes`` ES-like quotes; volfast on 1 and ``threads`` threads."""
    import volfast
    from volfast._native import core

    say = progress or (lambda _msg: None)
    s = Suite("iv", "quote")
    q = es_quotes(quotes)
    n = len(q["price"])
    kw: dict[str, Any] = {
        k: q[k] for k in ("forward", "strike", "expiry_years", "is_call", "discount_factor")
    }
    m_ref = min(n, BRENTQ_QUOTES)
    # the reference subsample: quotes with a time value (a bid rounded down to intrinsic has vol 0, where
    # libraries legitimately differ: 0, NaN or an error), spread over the first m_ref
    intrinsic = q["discount_factor"] * np.maximum(
        np.where(q["is_call"], 1, -1) * (q["forward"] - q["strike"]), 0
    )
    solvable = np.flatnonzero((q["price"] - intrinsic > 1e-9 * q["forward"])[:m_ref])
    idx = solvable[
        np.unique(np.linspace(0, len(solvable) - 1, min(REFERENCE_QUOTES, len(solvable))).astype(int))
    ]
    say("40-digit reference vols")
    ref = _reference(q, idx)
    vf = dist_version("volfast")

    def add(
        lib: str, ver: str, seconds: float, items: int, err: float | None, th: int, note: str = ""
    ) -> None:
        s.rows.append(Row("iv", lib, ver, seconds / items * 1e9, err, th, items, note))

    level = core().simd_level()
    for th in sorted({1, max(1, threads)}):
        say(f"volfast, {th} thread(s)")
        t, r = best_time(partial(volfast.implied_vol, q["price"], **kw, threads=th), repeats=5)
        add("volfast", vf, t, n, _err(r.iv, ref, idx), th, f"C++ {level}")
    say("transcendental floor")
    fl = core().black76.transcendental_floor
    t, _ = best_time(lambda: fl(n), repeats=5)
    add("transcendental floor", vf, t, n, None, 1, f"6 exp, 4 log, 2 erfc a quote ({level})")

    r_disc = -np.log(q["discount_factor"]) / q["expiry_years"]
    flag = np.where(q["is_call"], "c", "p")
    pvv = s.peer("py_vollib_vectorized")
    if pvv is not None:
        say("py_vollib_vectorized")
        args = (q["price"], q["forward"], q["strike"], r_disc, q["expiry_years"], flag)
        with numba_threads(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t, iv = best_time(lambda: pvv.vectorized_implied_volatility_black(*args, return_as="numpy"))
        add(
            "py_vollib_vectorized",
            dist_version("py_vollib_vectorized"),
            t,
            n,
            _err(np.ravel(iv), ref, idx),
            1,
        )

    ive = s.peer("iv_engine")
    if ive is not None:
        say("iv_engine")
        undisc = q["price"] / q["discount_factor"]  # it prices undiscounted Black
        calls = q["is_call"]

        def run_ive() -> np.ndarray:
            out = np.empty(n)
            for sel, c in ((calls, True), (~calls, False)):  # one option type per call
                out[sel] = ive.implied_volatilities(
                    undisc[sel], q["forward"][sel], q["strike"][sel], q["expiry_years"][sel], c, False
                )
            return out

        t, iv = best_time(run_ive)
        add("iv_engine", dist_version("iv_engine"), t, n, _err(iv, ref, idx), 1, "parallel=False")

    fvl = s.peer("fast_vollib", "fast-vollib")
    if fvl is not None:
        say("fast-vollib")
        args = (q["price"], q["forward"], q["strike"], r_disc, q["expiry_years"], flag)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t, iv = best_time(
                lambda: fvl.fast_implied_volatility_black(
                    *args, return_as="numpy", backend="numpy", on_error="ignore"
                ),
                repeats=1,
            )
        add(
            "fast-vollib", dist_version("fast-vollib"), t, n, _err(np.ravel(iv), ref, idx), 1, "numpy backend"
        )

    ql = s.peer("QuantLib")
    if ql is not None:
        m = min(n, QUANTLIB_QUOTES)
        say(f"QuantLib ({m:,} quotes)")

        def run_ql() -> np.ndarray:
            out = np.full(m, np.nan)
            for i in range(m):
                typ = ql.Option.Call if q["is_call"][i] else ql.Option.Put
                try:
                    sd = ql.blackFormulaImpliedStdDev(
                        typ,
                        float(q["strike"][i]),
                        float(q["forward"][i]),
                        float(q["price"][i]),
                        float(q["discount_factor"][i]),
                    )
                    out[i] = sd / np.sqrt(q["expiry_years"][i])
                except RuntimeError:
                    pass
            return out

        t, iv = best_time(run_ql, repeats=1, warmup=False)
        add("QuantLib", dist_version("QuantLib"), t, m, _err(iv, ref, idx), 1, "blackFormulaImpliedStdDev")

    sp = s.peer("scipy")
    if sp is not None:
        from scipy.optimize import brentq

        m = m_ref
        say(f"scipy brentq ({m:,} quotes)")
        price_fn = core().black76.price

        def run_brentq() -> np.ndarray:
            out = np.full(m, np.nan)
            one = np.ones(1)
            for i in range(m):
                a = [np.array([q[k][i]]) for k in ("forward", "strike", "expiry_years")]
                c = np.array([q["is_call"][i]])
                d = np.array([q["discount_factor"][i]])
                p = float(q["price"][i])

                def f(v: float, a: Any = a, c: Any = c, d: Any = d, p: float = p) -> float:
                    return float(price_fn(*a, one * v, c, d, threads=1)[0]) - p

                try:
                    out[i] = brentq(f, 1e-6, 10.0, xtol=1e-15, rtol=RTOL)
                except ValueError:
                    pass
            return out

        t, iv = best_time(run_brentq, repeats=1, warmup=False)
        add("scipy brentq", dist_version("scipy"), t, m, _err(iv, ref, idx), 1, "on volfast's Black-76 price")
    s.notes.append(
        f"max_abs_err: largest |vol - 40-digit vol| over {len(idx)} quotes with a time value among the first"
        f" {m_ref:,}; "
        "QuantLib's default accuracy is 1e-6 in std dev"
    )
    return s
