"""The front future is one rule (volfast.market), used by the hedging agent and the backtest alike."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from volfast.market import front_future


def test_front_future_rule_by_hand() -> None:
    exp = {"ESH4": dt.date(2024, 3, 15), "ESM4": dt.date(2024, 6, 21), "ESU4": dt.date(2024, 9, 20)}
    assert front_future(exp, day=dt.date(2024, 3, 1), roll_days=7) == "ESH4"
    assert front_future(exp, day=dt.date(2024, 3, 8), roll_days=7) == "ESM4"  # 7 days left: rolled
    assert front_future(exp, day=dt.date(2024, 3, 7), roll_days=7) == "ESH4"  # 8 days left
    assert front_future(exp, day="2024-03-01", roll_days=7, quoted=["ESU4"]) == "ESU4"
    assert front_future(exp, day=np.datetime64("2024-09-15"), roll_days=7) is None


def test_hedger_and_backtest_pick_the_same_front() -> None:
    from volfast.agent.hedge import Market as HedgeMarket
    from volfast.agent.hedge import _front
    from volfast.backtest.market import DayMarket

    exp = {"ESH4": "2024-03-15", "ESM4": "2024-06-21", "ESU4": "2024-09-20"}
    ids = {"ESH4": 1, "ESM4": 2, "ESU4": 3}
    for day in pd.date_range("2024-02-20", "2024-03-20", freq="D"):
        d = day.date()
        quoted = [u for u in exp if not (u == "ESM4" and d.day % 3 == 0)]  # ESM4 unquoted some days
        hm = HedgeMarket(
            dates=np.array([np.datetime64(d, "D")]),
            futures={u: ({np.datetime64(d, "D"): 5000.0} if u in quoted else {}) for u in exp},
            last_expiry={u: np.datetime64(e, "D") for u, e in exp.items()},
            puts=None,
        )
        futs = pd.DataFrame(
            {
                "raw_symbol": list(exp),
                "expiration": pd.to_datetime([f"{e} 13:30" for e in exp.values()], utc=True),
                "bid": [5000.0 if u in quoted else np.nan for u in exp],
                "ask": [5000.25 if u in quoted else np.nan for u in exp],
                "mid": 5000.125,
                "multiplier": 50.0,
            },
            index=[ids[u] for u in exp],
        )
        dm = DayMarket(date=d, options=pd.DataFrame(), futures=futs)
        h = _front(hm, np.datetime64(d, "D"), 7)
        b = dm.front_future(7)
        assert (ids[h] if h is not None else None) == b, d
        assert h == front_future(exp, day=d, roll_days=7, quoted=quoted)
