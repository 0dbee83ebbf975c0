"""The do-it-yourself pipeline a researcher writes with the databento client, pandas, py_vollib_vectorized
and scipy (snapshot, forward by put-call parity, vols, one SVI fit per expiry), and the ATM-vol readers that
compare it with volfast and with the synthetic truth. Used by ``volfast bench day`` and
``benchmarks/bench_e2e.py``.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

CUT, TZ, LOOKBACK_MIN = "15:48", "America/New_York", 10


def true_atm_vols(root: Path, date: dt.date) -> pd.DataFrame:
    """Per expiry of the synthetic truth: expiration, expiry_years, true ATM vol sqrt(theta / T)."""
    import pandas as pd

    ex = pd.read_parquet(root / "truth" / f"date={date.isoformat()}" / "part-0.parquet")
    ex = ex[ex["kind"] == "expiry"]
    return pd.DataFrame(
        {
            "expiration": ex["expiration"].to_numpy(),
            "expiry_years": ex["expiry_years"].to_numpy(float),
            "true_atm": np.sqrt(ex["ssvi_theta"].to_numpy(float) / ex["expiry_years"].to_numpy(float)),
        }
    )


def volfast_atm(out: Path, date: dt.date) -> pd.DataFrame:
    """volfast's SVI ATM vol per fitted expiry: sqrt(w(k=0) / T), from a ``volfast build`` output folder."""
    import pandas as pd

    s = pd.read_parquet(out / "svi" / f"date={date.isoformat()}" / "part-0.parquet").dropna(subset=["a"])
    a, b, rho, m, sg = (s[c].to_numpy(float) for c in ("a", "b", "rho", "m", "sigma"))
    w0 = a + b * (-rho * m + np.sqrt(m * m + sg * sg))
    return pd.DataFrame(
        {"expiration": s["expiration"].to_numpy(), "vf_atm": np.sqrt(np.maximum(w0, 0.0) / s["expiry_years"])}
    )


def diy_day(data: Path, date: dt.date) -> pd.DataFrame:
    """What a researcher writes with pandas, py_vollib_vectorized and scipy: one row per fitted expiry
    (expiration, expiry_years, forward, discount_factor, n_quotes, atm_vol, rmse in vol points)."""
    import databento as db
    import pandas as pd
    import py_vollib_vectorized as pvv
    from scipy.optimize import least_squares

    tag = date.strftime("%Y%m%d")
    with warnings.catch_warnings():  # databento's to_df on pandas 3, its file handles left to the GC
        warnings.simplefilter("ignore")
        defs = db.DBNStore.from_file(next(data.glob(f"*-{tag}.definition.dbn.zst"))).to_df()
        quotes = db.DBNStore.from_file(next(data.glob(f"*-{tag}.mbp-1.dbn.zst"))).to_df()
    cut = pd.Timestamp(f"{date.isoformat()} {CUT}", tz=TZ).tz_convert("UTC")
    win = quotes[(quotes.index >= cut - pd.Timedelta(minutes=LOOKBACK_MIN)) & (quotes.index <= cut)]
    last = win.groupby("instrument_id")[["bid_px_00", "ask_px_00"]].last()
    opts = defs[defs["instrument_class"].isin(["C", "P"])].drop_duplicates("instrument_id", keep="last")
    opts = opts[["instrument_id", "instrument_class", "strike_price", "expiration"]]
    opts = opts.join(last, on="instrument_id")
    opts = opts[(opts["bid_px_00"] > 0) & (opts["ask_px_00"] >= opts["bid_px_00"])].copy()
    opts["mid"] = 0.5 * (opts["bid_px_00"] + opts["ask_px_00"])
    opts["t"] = (opts["expiration"] - cut).dt.total_seconds() / (365.0 * 86400.0)
    rows = []
    for exp, ch in opts.groupby("expiration"):
        t = float(ch["t"].iloc[0])
        pc = ch.pivot_table(index="strike_price", columns="instrument_class", values="mid").dropna()
        if t <= 0 or len(pc) < 6:
            continue
        diff = pc["C"] - pc["P"]
        k0 = float(diff.abs().idxmin())
        near = diff.loc[(pc.index.to_series() - k0).abs().sort_values().index[:6]]
        slope, _ = np.polyfit(near.index.to_numpy(float), near.to_numpy(float), 1)  # C - P = D F - D K
        disc = -float(slope)
        fwd = k0 + float(diff.loc[k0]) / disc
        r = -np.log(disc) / t
        is_c = ch["instrument_class"] == "C"
        otm = ch[(is_c & (ch["strike_price"] >= fwd)) | (~is_c & (ch["strike_price"] < fwd))]
        n = len(otm)
        strikes = otm["strike_price"].to_numpy(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iv = pvv.vectorized_implied_volatility_black(
                otm["mid"].to_numpy(float),
                np.full(n, fwd),
                strikes,
                np.full(n, r),
                np.full(n, t),
                np.where(otm["instrument_class"] == "C", "c", "p"),
                return_as="numpy",
                on_error="ignore",
            )
        iv = np.asarray(iv, dtype=float).ravel()
        ok = np.isfinite(iv) & (iv > 0)
        k, w = np.log(strikes[ok] / fwd), iv[ok] ** 2 * t
        if k.size < 5:
            continue

        def svi(p: np.ndarray, k: np.ndarray) -> np.ndarray:
            a, b, rho, m, sg = p
            return a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sg * sg))

        fit = least_squares(
            lambda p, k=k, w=w: svi(p, k) - w,
            [w.min(), 0.1, -0.5, 0.0, 0.1],
            bounds=([-1, 0, -0.999, -2, 1e-4], [1, 10, 0.999, 2, 5]),
        )
        fit_iv = np.sqrt(np.maximum(svi(fit.x, k), 0.0) / t)
        rows.append(
            {
                "expiration": exp,
                "expiry_years": t,
                "forward": fwd,
                "discount_factor": disc,
                "n_quotes": int(k.size),
                "atm_vol": float(np.sqrt(max(float(svi(fit.x, np.zeros(1))[0]), 0.0) / t)),
                "rmse": float(np.sqrt(np.mean((fit_iv - iv[ok]) ** 2)) * 100),
            }
        )
    return pd.DataFrame(rows)
