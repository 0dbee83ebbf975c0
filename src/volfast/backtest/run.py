"""``volfast backtest``: read a ``volfast build`` run, compute the walk-forward CVAE signal, trade it,
report in-sample and out-of-sample figures, write the results folder."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from volfast.backtest.config import BacktestConfig, BacktestError
from volfast.backtest.engine import EngineResult, run_engine
from volfast.backtest.market import load_market
from volfast.backtest.metrics import period_metrics
from volfast.backtest.signal import (
    Reconstructor,
    SignalResult,
    cvae_fitter,
    fixed_model,
    half_life,
    model_reconstructor,
    walk_forward,
)

__all__ = ["BacktestResult", "backtest", "metrics_table"]


@dataclasses.dataclass
class BacktestResult:
    signal: SignalResult
    decisions: pd.DataFrame
    engine: EngineResult
    metrics: dict[str, dict[str, Any]]  # in_sample, out_of_sample, all
    half_life: float  # residual half-life over the whole run (days), for the record


def _dataset(run: Path, start: Any, end: Any) -> Any:
    from volfast.surface import DatasetError, load_dataset

    if not (run / "grids").is_dir():
        raise BacktestError(
            f"{run / 'grids'}: missing; the surfaces stage has not run. Produce it with "
            f"`volfast build --data DBN_DIR --out {run}`"
        )
    try:
        ds = load_dataset(run, start=start, end=end)
    except DatasetError as exc:
        have = sorted(p.name[5:] for p in (run / "grids").glob("date=*"))
        if (start is not None or end is not None) and have:
            raise BacktestError(
                f"the backtest period {start or '...'} to {end or '...'} has no valid days in "
                f"{run / 'grids'} (it covers {have[0]} to {have[-1]}); change --from/--to or build those days"
            ) from None
        raise BacktestError(
            f"{exc}. Produce the grids with `volfast build --data DBN_DIR --out {run}`"
        ) from None
    ok = ds.complete("cvae")
    if not ok.any():
        span = f" between {start or 'start'} and {end or 'end'}"
        raise BacktestError(
            f"{run}: no valid days{span} (no day with a complete 3x11 CVAE grid among {len(ds)}); see "
            f"{run / 'days'} for each day's reason, or widen --from/--to"
        )
    return ds


def _fixed(model_dir: Path, ds: Any) -> tuple[Any, np.ndarray, list[dict[str, Any]]]:
    from volfast.models.io import ModelConfigError, load_model

    try:
        kind, model = load_model(model_dir)
    except ModelConfigError as exc:
        raise BacktestError(
            f"{exc}; train one with `volfast train --model cvae --data RUN --out DIR`"
        ) from None
    if kind not in ("cvae", "cvae-conv"):
        raise BacktestError(f"{model_dir}: a {kind!r} model; the backtest needs a cvae or cvae-conv model")
    shape = tuple(model.config.shape)
    if shape != tuple(ds.cvae.shape[1:]):
        raise BacktestError(
            f"{model_dir}: model grid {shape} does not match the dataset's CVAE grid "
            f"{tuple(ds.cvae.shape[1:])}; retrain it on this run with `volfast train --model cvae`"
        )
    in_sample = np.zeros(len(ds), dtype=bool)
    fits: list[dict[str, Any]] = [{"fit": 0, "model": str(model_dir)}]
    cfg_path = model_dir / "config.json"
    if cfg_path.is_file():
        split = json.loads(cfg_path.read_text()).get("split", {})
        if "test_start" in split:
            in_sample = ds.dates < np.datetime64(split["test_start"], "D")
            fits[0]["train_end_before"] = split["test_start"]
    return model_reconstructor(kind, model, ds), in_sample, fits


def backtest(
    run: str | os.PathLike[str],
    *,
    config: BacktestConfig | None = None,
    model_config: Any = None,
    train_config: Any = None,
    model: str | os.PathLike[str] | None = None,
    start: _dt.date | str | None = None,
    end: _dt.date | str | None = None,
    out: str | os.PathLike[str] | None = None,
    fitter: Reconstructor | None = None,
    log: Any = None,
) -> BacktestResult:
    """Backtest the CVAE rich/cheap signal on a ``volfast build`` run folder.

    ``model``: a trained ``volfast train`` CVAE folder used for every day (no retraining; days before its
    test period count as in-sample); default: walk-forward retraining (``config.retrain_every``).
    ``fitter`` replaces the CVAE fit (tests). With ``out``, writes ``daily.csv``, ``trades.csv``,
    ``signals.csv``, ``metrics.json``, ``metrics.md`` and ``config.json`` there.
    """
    from volfast.models.cvae import CVAEConfig
    from volfast.models.train import KIND_TRAIN_DEFAULTS, TrainConfig

    say = log or (lambda s: None)
    cfg = config or BacktestConfig()
    mcfg = model_config or CVAEConfig()
    tcfg = train_config or TrainConfig(**KIND_TRAIN_DEFAULTS["cvae"])
    root = Path(run)
    if not root.is_dir():
        raise BacktestError(
            f"{root}: not a folder; produce a run with `volfast build --data DBN_DIR --out {root}`"
        )
    ds = _dataset(root, start, end)
    dates = [pd.Timestamp(d).date() for d in ds.dates[ds.complete("cvae")]]
    market = load_market(root, dates)
    if model is not None:
        rec, in_sample, fits = _fixed(Path(model), ds)
        sig = fixed_model(ds, cfg, rec, in_sample, fits)
    else:
        sig = walk_forward(ds, cfg, fitter or cvae_fitter(mcfg, tcfg))
    say(f"signal: {len(sig.dates)} days, {len(sig.fits)} fits")
    dec = sig.decisions(cfg)
    is_map = {pd.Timestamp(d).date(): bool(b) for d, b in zip(sig.dates, sig.in_sample, strict=True)}
    eng = run_engine(market, dec, cfg, in_sample=is_map)
    mets: dict[str, dict[str, Any]] = {}
    for name, sel in (
        ("in_sample", eng.daily["in_sample"]),
        ("out_of_sample", ~eng.daily["in_sample"]),
        ("all", eng.daily["in_sample"] | True),
    ):
        tsel = eng.trades["in_sample"] == (name == "in_sample") if name != "all" else slice(None)
        trades = eng.trades[tsel] if len(eng.trades) else eng.trades
        mets[name] = period_metrics(
            eng.daily[sel.to_numpy()], trades, capital=cfg.capital, periods_per_year=cfg.periods_per_year
        )
    res = BacktestResult(sig, dec, eng, mets, half_life(sig.residual))
    if out is not None:
        _write(Path(out), res, cfg, mcfg, tcfg, root, model)
        say(f"backtest -> {out}")
    return res


def metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Markdown table of the periods' figures."""
    keys = [
        ("days", "days", "{:d}"), ("pnl", "PnL", "{:,.0f}"), ("sharpe", "Sharpe", "{:.2f}"),
        ("max_drawdown", "max DD", "{:,.0f}"), ("turnover", "turnover /yr", "{:.2f}"),
        ("trades", "trades", "{:d}"), ("hit_rate", "hit rate", "{:.2f}"), ("pnl_option", "option", "{:,.0f}"),
        ("pnl_hedge", "hedge", "{:,.0f}"), ("cost_spread", "spread", "{:,.0f}"),
        ("cost_commission", "commission", "{:,.0f}"),
    ]  # fmt: skip
    lines = ["| period | " + " | ".join(k[1] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, m in metrics.items():
        cells = []
        for k, _, fmt in keys:
            v = m.get(k)
            cells.append("-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write(
    out: Path, res: BacktestResult, cfg: BacktestConfig, mcfg: Any, tcfg: Any, run: Path, model: Any
) -> None:
    from volfast.io.output import atomic_write_bytes

    def text(name: str, body: str) -> None:  # every file through the one atomic write
        atomic_write_bytes(out / name, body.encode())

    out.mkdir(parents=True, exist_ok=True)
    text("daily.csv", res.engine.daily.to_csv(index=False))
    text("trades.csv", res.engine.trades.to_csv(index=False))
    text("signals.csv", res.decisions.to_csv(index=False))
    text(
        "metrics.json",
        json.dumps(
            {"periods": res.metrics, "fits": res.signal.fits, "half_life_days": res.half_life},
            indent=2,
            default=str,
        ),
    )
    text("metrics.md", metrics_table(res.metrics) + "\n")
    resolved = {
        "run": str(run.resolve()),
        "model": None if model is None else str(model),
        "backtest": dataclasses.asdict(cfg),
        "cvae": dataclasses.asdict(mcfg),
        "train": dataclasses.asdict(tcfg),
    }
    text("config.json", json.dumps(resolved, indent=2, default=str))
