"""The real SPX chain in ``../shared/data/chains/spx_cboe_20251001`` as SVI fit inputs (tests, benchmarks).

A small private loader until ``volfast.surface.from_quotes`` exists on this branch: slices are (root,
expiry) with root SPX settled at 09:30 New York (AM) and SPXW at 16:00 (PM), as of 2025-10-01 16:15 New
York, ACT/365; per slice the forward and discount factor come from a weighted parity regression
``C - P = D F - D K`` over the strikes quoted on both sides within 20% of spot (weights 1 / (spread_C^2 +
spread_P^2)); vols are Black-76 (``volfast.implied_vol``) of the out-of-the-money mids, bids and asks
(puts below the forward, calls at or above it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

import volfast

REPO = Path(__file__).resolve().parents[1]
# the shared data folder: $VOLFAST_SHARED_DATA where set, else ``<repo>/../shared/data``
SHARED_DATA = Path(os.environ.get("VOLFAST_SHARED_DATA") or REPO.parent / "shared" / "data")
SPX_CSV = SHARED_DATA / "chains" / "spx_cboe_20251001" / "spx_20251001_close_chain_tidy.csv"
ASOF = pd.Timestamp("2025-10-01 16:15", tz="America/New_York")


def parity_forward(
    strike: np.ndarray, call_mid: np.ndarray, put_mid: np.ndarray, spread_sq: np.ndarray
) -> tuple[float, float]:
    """Least squares of ``C - P`` on ``K`` weighted by ``1 / spread_sq`` (the summed squared spreads):
    returns (forward, discount factor)."""
    w = 1.0 / spread_sq
    X = np.column_stack([np.ones_like(strike), strike])
    beta = np.linalg.lstsq(X * np.sqrt(w)[:, None], (call_mid - put_mid) * np.sqrt(w), rcond=None)[0]
    D = -beta[1]
    return float(beta[0] / D), float(D)


def load_spx_chain(path: Path = SPX_CSV) -> dict[str, np.ndarray]:
    """Flat, slice-ordered SVI inputs: ``k``, ``w`` (mid total variance), ``bid``/``ask`` (total variance),
    ``offsets``, ``expiry_years``, ``forward``, ``discount``, ``label`` per slice."""
    df = pd.read_csv(path)
    df = df[(df["bid"] > 0) & (df["ask"] > df["bid"])].copy()
    hour = np.where(df["root"] == "SPX", "09:30", "16:00")
    exp = pd.to_datetime(df["expiry"] + " " + hour).dt.tz_localize("America/New_York")
    df["T"] = (exp - ASOF).dt.total_seconds() / (365.0 * 86400.0)
    df["mid"] = 0.5 * (df["bid"] + df["ask"])
    spot = float(df["underlying_last"].iloc[0])
    out: dict[str, list] = {k: [] for k in ("k", "w", "bid", "ask")}
    T_s, F_s, D_s, lab, counts = [], [], [], [], []
    for (root, expiry), g in sorted(df.groupby(["root", "expiry"]), key=lambda x: x[1]["T"].iloc[0]):
        c = g[g["cp"] == "C"].set_index("strike")
        p = g[g["cp"] == "P"].set_index("strike")
        both = c.index.intersection(p.index)
        both = both[np.abs(np.log(both.to_numpy() / spot)) < 0.2]
        if len(both) < 5:
            continue
        K = both.to_numpy(dtype=float)
        F, D = parity_forward(
            K,
            c.loc[both, "mid"].to_numpy(),
            p.loc[both, "mid"].to_numpy(),
            (c.loc[both, "ask"] - c.loc[both, "bid"]).to_numpy() ** 2
            + (p.loc[both, "ask"] - p.loc[both, "bid"]).to_numpy() ** 2,
        )
        T = float(g["T"].iloc[0])
        otm = g[((g["cp"] == "P") & (g["strike"] < F)) | ((g["cp"] == "C") & (g["strike"] >= F))]
        otm = otm.sort_values("strike")
        kw = {
            "forward": F,
            "strike": otm["strike"].to_numpy(float),
            "expiry_years": T,
            "is_call": (otm["cp"] == "C").to_numpy(),
            "discount_factor": D,
        }
        iv_mid = volfast.implied_vol(otm["mid"].to_numpy(float), **kw)
        iv_bid = volfast.implied_vol(otm["bid"].to_numpy(float), **kw)
        iv_ask = volfast.implied_vol(otm["ask"].to_numpy(float), **kw)
        good = (iv_mid.status == 0) & (iv_ask.status == 0) & (iv_mid.iv > 0)
        if good.sum() < 5:
            continue
        out["k"].append(np.log(kw["strike"][good] / F))
        out["w"].append(iv_mid.iv[good] ** 2 * T)
        out["bid"].append(np.where(iv_bid.status[good] == 0, iv_bid.iv[good] ** 2 * T, np.nan))
        out["ask"].append(iv_ask.iv[good] ** 2 * T)
        T_s.append(T)
        F_s.append(F)
        D_s.append(D)
        lab.append(f"{root} {expiry}")
        counts.append(int(good.sum()))
    res = {key: np.concatenate(val) for key, val in out.items()}
    res["offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    res["expiry_years"] = np.array(T_s)
    res["forward"] = np.array(F_s)
    res["discount"] = np.array(D_s)
    res["label"] = np.array(lab)
    return res
