"""Cash-and-positions ledger with marks at mid and PnL attribution.

Conventions (documented in the README, tested as identities):

* Options are premium-paid: a buy of ``q`` contracts at ``price`` moves ``q * price * multiplier`` out of
  cash. Futures are booked the same way (price x multiplier against cash, the position carried at its mark);
  with no interest on cash this equals daily variation margin.
* ``equity = cash + sum(qty * mark * multiplier)``, marks at mid.
* Each fill books its distance from mid as ``spread`` cost (``(fill - mid) * qty * multiplier``) and its
  commission as ``commission`` cost; moves of the marks are ``option`` or ``hedge`` PnL. So each day's
  ``option + hedge - spread - commission`` equals the change in equity exactly.
* Margin: ``margin_rate * |qty| * multiplier * futures price`` for short options and futures; long options
  need none (paid in full).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

__all__ = ["Ledger", "Position"]

Kind = Literal["option", "future"]
BUCKETS = ("option", "hedge", "spread", "commission")


@dataclasses.dataclass
class Position:
    kind: Kind
    qty: float  # contracts, signed
    multiplier: float  # currency per index point per contract
    mark: float  # last mid, index points


class Ledger:
    """Positions keyed by instrument_id, cash, and the running attribution of the current day."""

    def __init__(self, cash: float) -> None:
        self.cash = float(cash)
        self.positions: dict[int, Position] = {}
        self.day = dict.fromkeys(BUCKETS, 0.0)
        self.traded_notional = 0.0  # today's sum of |qty| * price * multiplier over fills

    def start_day(self) -> None:
        self.day = dict.fromkeys(BUCKETS, 0.0)
        self.traded_notional = 0.0

    def mark(self, key: int, mid: float) -> None:
        """Move a held position's mark to ``mid`` (index points), booking the change as option/hedge PnL."""
        p = self.positions[key]
        self.day["option" if p.kind == "option" else "hedge"] += p.qty * (mid - p.mark) * p.multiplier
        p.mark = float(mid)

    def fill(
        self,
        key: int,
        qty: float,
        *,
        price: float,
        mid: float,
        multiplier: float,
        kind: Kind,
        commission: float,
    ) -> None:
        """Trade ``qty`` contracts (signed) at ``price``; ``mid`` is the current mark, ``commission`` the
        charge per contract (currency). An open position must already be marked at ``mid``."""
        if qty == 0:
            return
        p = self.positions.get(key)
        if p is None:
            p = self.positions[key] = Position(kind, 0.0, float(multiplier), float(mid))
        elif p.kind != kind or p.multiplier != multiplier:
            raise ValueError(f"instrument {key}: kind/multiplier differ from the open position's")
        elif p.mark != mid:
            self.mark(key, mid)
        fee = abs(qty) * commission
        self.cash -= qty * price * multiplier + fee
        self.day["spread"] += qty * (price - mid) * multiplier
        self.day["commission"] += fee
        self.traded_notional += abs(qty) * abs(price) * multiplier
        p.qty += qty
        if abs(p.qty) < 1e-12:
            del self.positions[key]

    def qty(self, key: int) -> float:
        p = self.positions.get(key)
        return 0.0 if p is None else p.qty

    def marks_value(self) -> float:
        return sum(p.qty * p.mark * p.multiplier for p in self.positions.values())

    def equity(self) -> float:
        return self.cash + self.marks_value()

    def day_pnl(self) -> float:
        d = self.day
        return d["option"] + d["hedge"] - d["spread"] - d["commission"]
