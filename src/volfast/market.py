"""Market conventions shared by every consumer of a built day (the hedging agent, the backtest).

One rule, one place: which futures contract is the *front* future that hedges are held in on a given day.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

__all__ = ["front_future"]

K = TypeVar("K")


def _day(x: Any) -> _dt.date:
    if isinstance(x, _dt.datetime):
        return x.date()
    if isinstance(x, _dt.date):
        return x
    return _dt.date.fromisoformat(str(np.datetime64(x, "D")))


def front_future(
    expiries: Mapping[K, Any], *, day: Any, roll_days: float, quoted: Iterable[K] | None = None
) -> K | None:
    """The front future on ``day``: among the contracts ``quoted`` that day (default: all of ``expiries``),
    the one with the nearest expiry that is *more than* ``roll_days`` calendar days after ``day`` (a hedge
    is rolled out of a contract ``roll_days`` before it expires). Ties go to the first in ``expiries``'
    order. None when no contract qualifies.

    Parameters
    ----------
    expiries : mapping
        Contract key (instrument_id, underlying symbol...) -> expiry (date, datetime, numpy datetime64 or
        ISO text); only the calendar day counts.
    day : date-like
        The trading day.
    roll_days : float
        Calendar days before expiry at which the front rolls to the next contract.
    quoted : iterable of keys, optional
        The contracts with a usable quote on ``day``.
    """
    d = _day(day)
    keys = list(expiries) if quoted is None else [k for k in expiries if k in set(quoted)]
    best: K | None = None
    best_exp: _dt.date | None = None
    for k in keys:
        e = _day(expiries[k])
        if (e - d).days > roll_days and (best_exp is None or e < best_exp):
            best, best_exp = k, e
    return best
