"""Rich/cheap CVAE signal traded in listed options, delta-hedged daily with the front ES future, with
multipliers, bid/ask fills, commissions, margin and PnL attribution (README "Backtest")."""

from __future__ import annotations

from volfast.backtest.config import BacktestConfig, BacktestError, load_backtest_config
from volfast.backtest.engine import EngineResult, Trade, nearest_option, run_engine
from volfast.backtest.ledger import Ledger, Position
from volfast.backtest.market import DayMarket, Market, load_market
from volfast.backtest.metrics import max_drawdown, period_metrics, sharpe
from volfast.backtest.run import BacktestResult, backtest, metrics_table
from volfast.backtest.signal import SignalResult, expanding_zscores, half_life, walk_forward

__all__ = [
    "BacktestConfig",
    "BacktestError",
    "BacktestResult",
    "DayMarket",
    "EngineResult",
    "Ledger",
    "Market",
    "Position",
    "SignalResult",
    "Trade",
    "backtest",
    "expanding_zscores",
    "half_life",
    "load_backtest_config",
    "load_market",
    "max_drawdown",
    "metrics_table",
    "nearest_option",
    "period_metrics",
    "run_engine",
    "sharpe",
    "walk_forward",
]
