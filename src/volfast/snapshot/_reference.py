"""The snapshot rule stated in plain pandas: the slow, obvious reference for tests and benchmarks."""

from __future__ import annotations

from typing import Any

import numpy as np

UNDEF_PRICE = int(np.iinfo(np.int64).max)


def reference_snapshot(records: Any, *, cut_ns: int, lookback_ns: int, by_venue: bool = False) -> Any:
    """Last in-window quote per instrument (per venue, then consolidated, when ``by_venue``).

    Parameters
    ----------
    records : pandas.DataFrame or numpy structured array
        Columns ``ts_recv`` (uint64 ns), ``instrument_id``, ``bid_px_00``, ``ask_px_00`` (int64 fixed 1e-9),
        ``bid_sz_00``, ``ask_sz_00`` and, for ``by_venue``, ``publisher_id``, in file order.
    cut_ns, lookback_ns : int
        The window is ``[cut_ns - lookback_ns, cut_ns]``.

    Returns
    -------
    pandas.DataFrame
        Indexed 0..n-1, sorted by instrument_id, columns instrument_id, bid_px, ask_px, bid_sz, ask_sz,
        ts_recv, n_venues; only instruments with a quote in the window.
    """
    import pandas as pd

    cols = ["ts_recv", "instrument_id", "bid_px_00", "ask_px_00", "bid_sz_00", "ask_sz_00", "publisher_id"]
    if isinstance(records, pd.DataFrame):
        df = records[[c for c in cols if c in records.columns]].copy()
    else:
        df = pd.DataFrame({c: np.asarray(records[c]) for c in cols if c in records.dtype.names})
    df = df.reset_index(drop=True)
    lo = max(cut_ns - lookback_ns, 0)
    ts = df["ts_recv"].astype("uint64")
    w = df[(ts >= np.uint64(lo)) & (ts <= np.uint64(cut_ns))]
    w = w.sort_values("ts_recv", kind="stable")  # stable: equal ts_recv keep file order, so the last one wins
    keys = ["instrument_id", "publisher_id"] if by_venue else ["instrument_id"]
    last = w.groupby(keys, sort=True).tail(1)
    out = pd.DataFrame(
        {
            "instrument_id": last["instrument_id"].to_numpy(np.uint32),
            "bid_px": last["bid_px_00"].to_numpy(np.int64),
            "ask_px": last["ask_px_00"].to_numpy(np.int64),
            "bid_sz": last["bid_sz_00"].to_numpy(np.uint32),
            "ask_sz": last["ask_sz_00"].to_numpy(np.uint32),
            "ts_recv": last["ts_recv"].to_numpy(np.uint64),
        }
    )
    if not by_venue:
        # A missing side has no size: reported as 0, as the reducer does.
        out.loc[out.bid_px == UNDEF_PRICE, "bid_sz"] = 0
        out.loc[out.ask_px == UNDEF_PRICE, "ask_sz"] = 0
        out["n_venues"] = np.uint16(1)
        return out.sort_values("instrument_id").reset_index(drop=True)
    rows = []
    for iid, g in out.groupby("instrument_id", sort=True):
        bids = g[g.bid_px != UNDEF_PRICE]
        asks = g[g.ask_px != UNDEF_PRICE]
        bb = int(bids.bid_px.max()) if len(bids) else UNDEF_PRICE
        ba = int(asks.ask_px.min()) if len(asks) else UNDEF_PRICE
        at_b = g[(g.bid_px == bb) & (bb != UNDEF_PRICE)]
        at_a = g[(g.ask_px == ba) & (ba != UNDEF_PRICE)]
        contrib = pd.concat([at_b.ts_recv, at_a.ts_recv])
        ts = int(contrib.max()) if len(contrib) else int(g.ts_recv.max())
        rows.append((iid, bb, ba, int(at_b.bid_sz.sum()), int(at_a.ask_sz.sum()), ts, len(g)))
    return pd.DataFrame(
        {
            "instrument_id": np.array([r[0] for r in rows], np.uint32),
            "bid_px": np.array([r[1] for r in rows], np.int64),
            "ask_px": np.array([r[2] for r in rows], np.int64),
            "bid_sz": np.array([r[3] for r in rows], np.uint32),
            "ask_sz": np.array([r[4] for r in rows], np.uint32),
            "ts_recv": np.array([r[5] for r in rows], np.uint64),
            "n_venues": np.array([r[6] for r in rows], np.uint16),
        }
    )
