"""Market presets: surfaces settings that follow from the data's dataset, so `volfast build` needs no flags.

The research defaults (:class:`volfast.surface.validity.ValidityConfig`) describe index options on futures
(ES, SPX): every valid day has three expiries quoted from ``ln(K/F) = -0.5`` to ``0.15``. An OPRA equity
chain (SPY, QQQ) at a 15:48 cut is denser in expiries but narrower in strikes: short-dated expiries list
strikes a few percent around the money, and quotes below a penny are one-sided. Its preset asks for the same
three expiries over ``-0.10 .. 0.04`` with 8 two-sided strikes.

OPRA options are American: in-the-money pairs carry early-exercise premiums (puts through the rate, calls
before an ex-dividend date). The surfaces stage handles that itself once ``exercise`` resolves to american
(auto does for OPRA datasets): it removes the premiums before parity and vols
(:mod:`volfast.forward.american`), so the preset keeps the default Huber parity fit (it used the CBOE rule,
``forward_method = "naive"``, before the premiums were removed).

A preset only fills keys the user left out: ``[surfaces]`` settings in a build config always win, and the
resolved settings (preset included) are what a day's manifest hashes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["MARKET_PRESETS", "market_preset", "with_market_preset"]

#: ``{dataset prefix: [surfaces] defaults}``; the longest matching prefix wins.
MARKET_PRESETS: dict[str, dict[str, Any]] = {
    "GLBX.": {},  # CME Globex (ES options on futures): the research defaults
    "OPRA.": {
        "validity": {"max_min_log_strike": -0.10, "min_max_log_strike": 0.04, "min_two_sided": 8},
    },
}


def market_preset(dataset: str | None) -> dict[str, Any]:
    """The ``[surfaces]`` defaults of ``dataset`` (``"OPRA.PILLAR"``...); empty for unknown datasets."""
    if not dataset:
        return {}
    hits = [p for p in MARKET_PRESETS if dataset.upper().startswith(p)]
    return copy.deepcopy(MARKET_PRESETS[max(hits, key=len)]) if hits else {}


def with_market_preset(params: Mapping[str, Any], dataset: str | None) -> dict[str, Any]:
    """``params`` (the user's ``[surfaces]`` table) over the dataset's preset; nested tables merge by key."""
    out = market_preset(dataset)
    for k, v in params.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **dict(v)}
        else:
            out[k] = v
    return out
