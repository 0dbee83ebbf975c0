"""Per-day market data the backtest trades on: listed options (bid/ask/mid, Black-76 inputs, multiplier)
and ES futures (bid/ask/mid, expiration, multiplier), read from a ``volfast build`` run folder or built by
hand (tests)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from volfast.backtest.config import BacktestError

__all__ = ["DayMarket", "Market", "OPTION_COLUMNS", "FUTURE_COLUMNS", "load_market"]

#: columns of :attr:`DayMarket.options` (index: instrument_id)
OPTION_COLUMNS = (
    "raw_symbol", "underlying", "expiration", "expiry_years", "strike", "is_call", "bid", "ask", "mid",
    "forward", "discount_factor", "log_moneyness", "mid_iv", "fit_iv", "multiplier",
)  # fmt: skip
#: columns of :attr:`DayMarket.futures` (index: instrument_id)
FUTURE_COLUMNS = ("raw_symbol", "expiration", "bid", "ask", "mid", "multiplier")


@dataclasses.dataclass
class DayMarket:
    """One day's tradable instruments at the cut: ``options`` and ``futures`` DataFrames indexed by
    ``instrument_id`` (prices in index points; ``expiration`` tz-aware UTC timestamps)."""

    date: _dt.date
    options: pd.DataFrame
    futures: pd.DataFrame

    def front_future(self, roll_days: int) -> int | None:
        """instrument_id of the nearest-expiry future with a two-sided quote that expires more than
        ``roll_days`` calendar days after this date (None when there is none)."""
        from volfast.market import front_future

        f = self.futures.sort_values("expiration", kind="stable")
        two = np.isfinite(f["bid"]) & np.isfinite(f["ask"]) & (f["ask"] >= f["bid"])
        exp_day = pd.to_datetime(f["expiration"], utc=True).dt.date
        k = front_future(
            dict(zip(f.index, exp_day, strict=True)), day=self.date, roll_days=roll_days, quoted=f.index[two]
        )
        return None if k is None else int(k)


@dataclasses.dataclass
class Market:
    """The days of a backtest, in date order."""

    days: dict[_dt.date, DayMarket]

    @property
    def dates(self) -> list[_dt.date]:
        return sorted(self.days)

    def __getitem__(self, d: _dt.date) -> DayMarket:
        return self.days[d]


def _need(path: Path, what: str) -> None:
    if not path.is_dir() or not any(path.glob("date=*/part-0.parquet")):
        raise BacktestError(
            f"{path}: no {what} partitions (date=YYYY-MM-DD/part-0.parquet); produce them with "
            f"`volfast build --data DBN_DIR --out {path.parent}`"
        )


def load_market(run: str | os.PathLike[str], dates: Any = None) -> Market:
    """Options (``quotes`` table, multipliers joined from ``snapshots``) and futures (``snapshots`` rows of
    instrument class F) of every day in ``dates`` (default: every quotes day) of a ``volfast build`` run.

    Raises :class:`BacktestError` naming the missing folder or day and the command that produces it.
    """
    import pyarrow.parquet as pq

    root = Path(run)
    for sub, what in (("quotes", "quotes"), ("snapshots", "snapshot")):
        _need(root / sub, what)
    if dates is None:
        dates = sorted(_dt.date.fromisoformat(p.name[5:]) for p in (root / "quotes").glob("date=*"))
    days: dict[_dt.date, DayMarket] = {}
    for d in dates:
        qp = root / "quotes" / f"date={d.isoformat()}" / "part-0.parquet"
        sp = root / "snapshots" / f"date={d.isoformat()}" / "part-0.parquet"
        for p, stage in ((qp, "surfaces"), (sp, "snapshot")):
            if not p.is_file():
                raise BacktestError(
                    f"{p}: missing for {d} (the {stage} stage did not run for it); produce it with "
                    f"`volfast build --data DBN_DIR --out {root} --date {d}`"
                )
        q = pq.read_table(qp).to_pandas()
        s = pq.read_table(sp).to_pandas()
        cls = s["instrument_class"].astype(str)
        fut = s[cls == "F"].set_index("instrument_id")
        fut = fut.assign(mid=0.5 * (fut["bid"] + fut["ask"]))[list(FUTURE_COLUMNS)]
        mult = s.set_index("instrument_id")["multiplier"]
        q = q.drop_duplicates("instrument_id").set_index("instrument_id")
        q["multiplier"] = mult.reindex(q.index).to_numpy(dtype=np.float64)
        days[d] = DayMarket(d, q[list(OPTION_COLUMNS)], fut)
    return Market(days)
