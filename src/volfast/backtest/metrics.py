"""Performance figures of a backtest period: equity curve, Sharpe, drawdown, turnover, hit rate and the
PnL attribution."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["max_drawdown", "period_metrics", "sharpe"]


def sharpe(pnl: np.ndarray, capital: float, periods_per_year: int = 252) -> float:
    """Annualised Sharpe ratio of daily PnL as returns on ``capital`` (no risk-free rate: cash earns none
    in the ledger): ``mean / std(ddof=1) * sqrt(periods_per_year)``; NaN with fewer than 2 days or zero
    dispersion."""
    r = np.asarray(pnl, dtype=np.float64) / capital
    if r.size < 2:
        return float("nan")
    sd = float(r.std(ddof=1))
    return float(r.mean() / sd * math.sqrt(periods_per_year)) if sd > 0 else float("nan")


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough fall of an equity curve (currency, >= 0)."""
    e = np.asarray(equity, dtype=np.float64)
    if e.size == 0:
        return 0.0
    return float((np.maximum.accumulate(e) - e).max())


def period_metrics(
    daily: pd.DataFrame, trades: pd.DataFrame, *, capital: float, periods_per_year: int = 252
) -> dict[str, Any]:
    """Figures over the rows of ``daily`` (one period) and the trades entered in it. The period's equity
    curve starts from the equity before its first day; turnover is traded notional (options and futures,
    |qty| x price x multiplier) over capital, per year; hit rate is the share of closed trades whose PnL
    (option fill to fill, plus its own hedge at mid, less commissions) is positive."""
    n = len(daily)
    if n == 0:
        return {"days": 0}
    pnl = daily["pnl"].to_numpy()
    start_equity = float(daily["equity"].iloc[0] - pnl[0])
    curve = np.concatenate([[start_equity], daily["equity"].to_numpy()])
    traded = float(daily["traded_notional"].sum())
    closed = trades[trades["exit_date"].notna()] if len(trades) else trades
    return {
        "days": n,
        "from": str(daily["date"].iloc[0]),
        "to": str(daily["date"].iloc[-1]),
        "pnl": float(pnl.sum()),
        "return": float(pnl.sum() / capital),
        "sharpe": sharpe(pnl, capital, periods_per_year),
        "max_drawdown": max_drawdown(curve),
        "max_drawdown_pct": max_drawdown(curve) / capital,
        "turnover": traded / capital * periods_per_year / n,
        "trades": int(len(trades)),
        "closed_trades": int(len(closed)),
        "hit_rate": float((closed["pnl"] > 0).mean()) if len(closed) else float("nan"),
        "day_hit_rate": float((pnl > 0).sum() / max((pnl != 0).sum(), 1)),
        "pnl_option": float(daily["pnl_option"].sum()),
        "pnl_hedge": float(daily["pnl_hedge"].sum()),
        "cost_spread": float(daily["pnl_spread"].sum()),
        "cost_commission": float(daily["pnl_commission"].sum()),
        "max_margin": float(daily["margin"].max()),
        "max_abs_net_delta": float(daily["net_delta"].abs().max()),
    }
