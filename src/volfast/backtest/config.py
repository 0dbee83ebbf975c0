"""Backtest configuration: a frozen dataclass with commented defaults, read from a TOML ``[backtest]``
table (``[model]`` and ``[train]`` tables configure the CVAE as in ``volfast train``) and overridden with
``section.key=value`` strings."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

from volfast.errors import VolfastError

__all__ = ["BacktestConfig", "BacktestError", "load_backtest_config"]


class BacktestError(VolfastError, ValueError):
    """A backtest that cannot run as asked (names the file, day or instrument and how to fix it)."""


@functools.lru_cache(maxsize=1)  # one class: built lazily so that importing the backtest needs no torch
def _settings_error() -> type[Exception]:
    """The error for a bad [backtest]/[model]/[train] value: a :class:`BacktestError` that is also the
    config loader's usage error (:class:`volfast.models.io.SettingsError`, exit code 2)."""
    from volfast.models.io import SettingsError

    return type("BacktestSettingsError", (BacktestError, SettingsError), {"__module__": __name__})


@dataclasses.dataclass(frozen=True)
class BacktestConfig:
    # --- signal
    threshold: float = 2.0  # |z| of the most extreme node needed to trade
    min_history: int = 20  # past residuals a node's z-score needs (expanding window, past days only)
    hold_days: int = 0  # trading days a position is held; 0: twice the measured residual half-life
    max_hold_days: int = 20  # cap on the measured holding period
    max_open: int = 5  # open trades at most; a signal beyond that is skipped (and counted)
    # --- walk-forward
    retrain_every: int = 100  # usable days between CVAE retrains (each on all earlier days only)
    initial_train: int = 0  # usable days of the in-sample period (first fit); 0: retrain_every
    # --- execution and accounting
    contracts: float = 10.0  # option contracts per trade
    option_commission: float = 1.50  # currency per option contract per side (fees included)
    future_commission: float = 1.50  # currency per futures contract per side
    hedge_integer: bool = False  # round the futures hedge to whole contracts (False: fractional hedge)
    roll_days: int = 7  # roll the hedge out of the front future this many calendar days before it expires
    margin_rate: float = 0.05  # margin = rate x |contracts| x multiplier x futures price (short options
    #                            and futures; long options are paid in full)
    capital: float = 1_000_000.0  # starting equity, currency; returns and drawdowns are against it
    periods_per_year: int = 252  # annualisation of Sharpe and turnover

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.min_history < 2:
            raise BacktestError("backtest: threshold > 0 and min_history >= 2 needed")
        if self.hold_days < 0 or self.max_hold_days < 1 or self.max_open < 1:
            raise BacktestError("backtest: hold_days >= 0, max_hold_days >= 1 and max_open >= 1 needed")
        if self.retrain_every < 1 or self.initial_train < 0:
            raise BacktestError("backtest: retrain_every >= 1 and initial_train >= 0 needed")
        if self.contracts <= 0 or self.capital <= 0 or not (0 <= self.margin_rate <= 1):
            raise BacktestError("backtest: contracts > 0, capital > 0 and 0 <= margin_rate <= 1 needed")
        if self.option_commission < 0 or self.future_commission < 0 or self.roll_days < 0:
            raise BacktestError("backtest: commissions and roll_days must be >= 0")

    @property
    def first_train(self) -> int:
        return self.initial_train or self.retrain_every


def load_backtest_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> tuple[BacktestConfig, Any, Any]:
    """``(BacktestConfig, CVAEConfig, TrainConfig)`` from a TOML file (tables ``[backtest]``, ``[model]``,
    ``[train]``) and ``section.key=value`` overrides; the CVAE's [train] defaults are ``volfast train``'s."""
    from volfast._toml import apply_overrides, read_tables
    from volfast.models.cvae import CVAEConfig
    from volfast.models.io import ModelConfigError, config_from_dict
    from volfast.models.train import KIND_TRAIN_DEFAULTS, TrainConfig

    err = _settings_error()
    raw = read_tables(path, ("backtest", "model", "train"), error=err)
    sections = {s: dict(raw.get(s, {})) for s in ("backtest", "model", "train")}
    sections["train"] = KIND_TRAIN_DEFAULTS["cvae"] | sections["train"]
    apply_overrides(sections, overrides, error=err)
    where = str(path) if path else "config"
    try:
        bcfg = config_from_dict(BacktestConfig, sections["backtest"], where=f"{where} [backtest]")
        mcfg = config_from_dict(CVAEConfig, sections["model"], where=f"{where} [model]")
        tcfg = config_from_dict(TrainConfig, sections["train"], where=f"{where} [train]")
    except ModelConfigError as exc:
        raise err(str(exc)) from None
    return bcfg, mcfg, tcfg
