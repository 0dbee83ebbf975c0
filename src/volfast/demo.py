"""``volfast demo``: volfast's main job, run for real on a built-in synthetic market (or real DBN files).

1. implied vol: an ES-like option chain is priced from a known volatility surface, its prices are rounded to
   the exchange tick, and the implied vols are recovered, with the accuracy against the known truth and the
   throughput of each backend;
2. the pipeline (:func:`run_pipeline`), into one work folder laid out as :class:`volfast.report.RunLayout`:
   about a year of the synthetic ES market as DBN files (``volfast synth``, or ``--data DBN_DIR``) ->
   snapshots, forwards, vols, SVI fits and grids (``volfast build``; on synthetic data checked against the
   generator's truth) -> PCA, VAE, CVAE and LSTM (``volfast train`` + ``evaluate``) -> stress test -> hedging
   agent -> backtest -> ``report/report.html``. A finished stage whose settings, code and inputs are unchanged
   is reused, under the one freshness rule (:mod:`volfast.io.freshness`: each stage's ``_manifest.json``).

Settings: :class:`DemoConfig`, read from ``--config FILE`` and ``--set TABLE.KEY=VALUE`` by
:func:`load_demo_config` into the same dataclasses the stages' own commands use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from volfast.errors import UsageError, VolfastError


class DemoError(VolfastError, ValueError):
    """A demo stage cannot go on (names the stage and what to look at)."""


def es_like_chain(n_quotes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Quotes of an ES-like chain: F near 5000, strikes every 5 points from -60% to +20%, expiries 1 day
    to 3 years, a skewed smile, calls above the forward and puts below (the liquid side)."""
    rng = np.random.default_rng(seed)
    expiries = np.array([1, 2, 3, 5, 7, 14, 21, 30, 45, 60, 91, 122, 182, 273, 365, 547, 730, 1095]) / 365.0
    T = rng.choice(expiries, size=n_quotes)
    F = 5000.0 * np.exp(rng.normal(0.0, 0.002, size=n_quotes))
    K = np.round(F * rng.uniform(0.4, 1.2, size=n_quotes) / 5.0) * 5.0
    k = np.log(K / F)
    atm = 0.16 + 0.02 * np.sqrt(T)
    vol = atm - 0.25 * k / np.sqrt(np.maximum(T, 0.02)) * 0.1 + 0.4 * k * k
    vol = np.clip(vol, 0.05, 2.0)
    is_call = K >= F
    D = np.exp(-0.045 * T)
    return {
        "forward": F,
        "strike": K,
        "expiry_years": T,
        "vol": vol,
        "is_call": is_call,
        "discount_factor": D,
    }


class _BlackInputs(TypedDict):
    """The Black-76 keyword arguments of a chain, one array each."""

    forward: np.ndarray
    strike: np.ndarray
    expiry_years: np.ndarray
    is_call: np.ndarray
    discount_factor: np.ndarray


def _black_inputs(chain: Mapping[str, np.ndarray], rows: slice = slice(None)) -> _BlackInputs:
    """``forward, strike, expiry_years, is_call, discount_factor`` of ``chain[rows]`` (views, no copies)."""
    return _BlackInputs(
        forward=chain["forward"][rows],
        strike=chain["strike"][rows],
        expiry_years=chain["expiry_years"][rows],
        is_call=chain["is_call"][rows],
        discount_factor=chain["discount_factor"][rows],
    )


def run_demo(
    quotes: int = 200_000,
    seed: int | None = None,
    threads: int | None = None,
    *,
    out: str | None = "volfast-demo",
    days: int | None = None,
    data: str | None = None,
    epochs: int | None = None,
    executor: str | None = None,
    quick: bool = False,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
) -> Path | None:
    """The implied-vol demo, then (with ``out``) the whole pipeline into ``out`` (:func:`run_pipeline`);
    returns the report's path (None without ``out``).

    ``seed``, ``days``, ``data``, ``epochs`` and ``executor`` are ``[demo]`` settings (None: the config's, or
    the default); ``config_path`` and ``overrides`` as :func:`load_demo_config`. Every setting is checked
    before anything runs (:class:`DemoSettingsError`)."""
    from rich.console import Console
    from rich.table import Table

    import volfast
    from volfast.info import cpu_model

    if quotes < 1000:
        raise UsageError(f"quotes must be at least 1000, got {quotes} (--quotes)")
    flags = {"seed": seed, "days": days, "data": data, "epochs": epochs, "executor": executor}
    cfg = load_demo_config(config_path, overrides, **flags)
    if quick:
        cfg = dataclasses.replace(
            cfg, days=min(cfg.days, 60), epochs=cfg.epochs or 60, stress_steps=20, mc_scenarios=1000
        )
    seed = cfg.seed
    console = Console()
    chain = es_like_chain(quotes, seed)
    kw = _black_inputs(chain)
    price = volfast.black76_price(vol=chain["vol"], **kw)
    console.print(f"[bold]volfast demo[/bold]: {quotes:,} ES-like quotes on {cpu_model()}")

    table = Table(title="Black-76 implied vol: recover the true vols from exact prices")
    for col in ("backend", "quotes/s", "max |error| (vol)", "status ok"):
        table.add_column(col, justify="right")
    backends = ["cpp", "numba"] if _numba_available() else ["cpp"]
    for backend in backends:
        volfast.implied_vol(price[:1000], **_black_inputs(chain, slice(1000)), backend=backend)  # warm-up
        t0 = time.perf_counter()
        res = volfast.implied_vol(price, **kw, backend=backend, threads=threads)
        dt = time.perf_counter() - t0
        ok = res.status == volfast.IVStatus.OK
        err = np.max(np.abs(res.iv[ok] - chain["vol"][ok])) if ok.any() else float("nan")
        table.add_row(backend, f"{quotes / dt:,.0f}", f"{err:.2e}", f"{ok.mean():.2%}")
    console.print(table)

    # Tick-rounded quotes, as an exchange shows them: what the vol of a tick is worth.
    tick = np.where(price < 5.0, 0.05, 0.25)
    bid = np.floor(price / tick) * tick
    ask = bid + tick
    vb = volfast.implied_vol(bid, **kw, threads=threads)
    va = volfast.implied_vol(ask, **kw, threads=threads)
    both = (vb.status == 0) & (va.status == 0)
    width = (va.iv - vb.iv)[both] * 100
    console.print(
        f"Quotes rounded to ES ticks: {both.mean():.1%} have both sides invertible; "
        f"median bid/ask width {np.median(width):.3f} vol points; statuses of bids: "
        + ", ".join(
            f"{volfast.IVStatus(s).name}={c}"
            for s, c in zip(*np.unique(vb.status, return_counts=True), strict=True)
        )
    )
    if out is None or (cfg.days <= 0 and cfg.data is None):
        return None
    return run_pipeline(out, cfg, console=console)


def surfaces_demo(
    console: Any, out: str, *, days: int, seed: int, start: dt.date = dt.date(2024, 3, 4)
) -> dict[str, float]:
    """Synthesise ``days`` trading days into ``out/data``, build them into ``out/build`` and print how the
    forwards and the fitted surfaces compare with the generator's truth. Reuses finished days."""
    from volfast.pipeline import BuildConfig, run_build
    from volfast.pipeline.config import ExecutorConfig
    from volfast.synth import generate_days
    from volfast.synth.calendar import trading_days

    root = Path(out)
    data, build = root / "data", root / "build"
    wanted = trading_days(start, days)
    have = {p.name[5:] for p in (data / "truth").glob("date=*")} if (data / "truth").is_dir() else set()
    t0 = time.perf_counter()
    if any(d.isoformat() not in have for d in wanted):
        generate_days(wanted[0], days, data, seed=seed, scale="small")
    t_synth = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = run_build(
        data, build, config=BuildConfig(seed=seed, executor=ExecutorConfig(kind="serial")), dates=wanted
    )
    t_build = time.perf_counter() - t0
    console.print(
        f"\n[bold]Surfaces[/bold] for {days} synthetic days in {root}/: synth {t_synth:.1f} s, "
        f"build (snapshot, forwards, vols, SVI, grids) {t_build:.1f} s; "
        f"{len(summary.ok)} built, {len(summary.skipped)} reused, {len(summary.invalid)} invalid, "
        f"{len(summary.failed)} failed"
    )
    return truth_figures(console, data, build)


def truth_figures(console: Any, data: Path, build: Path) -> dict[str, float]:
    """Forward and fitted-vol errors of a ``volfast build`` of synthetic days against the generator's truth
    (``data/truth``), printed as a table and returned."""
    import pyarrow.parquet as pq
    from rich.table import Table

    from volfast.surface import read_output

    fwd = read_output(build, "forwards").to_pandas()
    quotes = read_output(build, "quotes").to_pandas()
    f_err, v_err = [], []
    for d in sorted(set(fwd["date"])):
        truth = pq.read_table(data / "truth" / f"date={d.isoformat()}" / "part-0.parquet").to_pandas()
        exp = truth[truth.kind == "expiry"].set_index("expiration")["forward"]
        f = fwd[(fwd["date"] == d) & fwd["forward"].notna()]
        f_true = exp.reindex(f["expiration"]).to_numpy()
        f_err.append(np.abs(f["forward"].to_numpy() / f_true - 1.0) * 1e4)
        q = quotes[(quotes["date"] == d) & quotes["used"] & quotes["fit_iv"].notna()]
        vol_true = truth[truth.kind == "option"].set_index("instrument_id")["vol"]
        v_err.append((q["fit_iv"].to_numpy() - vol_true.reindex(q["instrument_id"]).to_numpy()) * 100)
    fe = np.concatenate(f_err) if f_err else np.array([np.nan])
    ve = np.concatenate(v_err) if v_err else np.array([np.nan])
    used = quotes[quotes["used"]]
    figures = {
        "forward_err_median_bp": float(np.nanmedian(fe)),
        "forward_err_p95_bp": float(np.nanquantile(fe, 0.95)),
        "fit_vs_truth_rmse_volpts": float(np.sqrt(np.nanmean(ve**2))),
        "inside_bid_ask": float(used["inside_bid_ask"].mean()) if len(used) else float("nan"),
    }
    table = Table(title="Fitted surfaces against the generator's truth")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(
        "forward error, median / 95th pct (bp)",
        f"{figures['forward_err_median_bp']:.2f} / {figures['forward_err_p95_bp']:.2f}",
    )
    table.add_row(
        "SVI fit vs true vol at the quotes, RMSE (vol points)", f"{figures['fit_vs_truth_rmse_volpts']:.3f}"
    )
    table.add_row("fitted vol inside the quote's bid/ask", f"{figures['inside_bid_ask']:.1%}")
    table.add_row("quotes used in fits", f"{len(used):,}")
    console.print(table)
    return figures


#: the tables of a demo config (``--config FILE``, ``--set TABLE.KEY=VALUE``): the demo's own, then each
#: stage's, read into the same dataclasses as the stage's own command (build, train, stress, hedge, backtest)
DEMO_TABLES: tuple[str, ...] = (
    "demo", "snapshot", "surfaces", "train", "stress", "hedge", "energy", "backtest",
)  # fmt: skip
_MODEL_KINDS = ("pca", "vae", "cvae", "lstm")


class DemoSettingsError(UsageError):
    """A demo setting that cannot be used (names the file or ``--set``, the table and the key); exit code 2,
    raised when the config is read, before any stage runs."""


Table = tuple[tuple[str, Any], ...]  # a TOML table kept frozen: sorted (key, value) pairs


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo pipeline runs, checked when it is made (:class:`DemoSettingsError` naming the key).

    The ``[demo]`` table is the fields below up to ``mc_scenarios``. The other tables are the stages' own
    settings, validated against the dataclasses their commands use and applied on top of the demo's
    choices: ``[snapshot]`` / ``[surfaces]`` (the build's :class:`~volfast.pipeline.BuildConfig`),
    ``[train]`` (every model's :class:`~volfast.models.train.TrainConfig`), ``[stress]``
    (:class:`~volfast.agent.StressConfig`), ``[hedge]`` / ``[energy]``, ``[backtest]``
    (:class:`~volfast.backtest.BacktestConfig`). Defaults: one synthetic year at ``--scale small`` and
    every stage's own defaults (README); ``epochs`` and the smaller settings chosen for short runs make a
    quick demo.
    """

    days: int = 252  # synthetic trading days (ignored with ``data``)
    start: str = "2024-01-02"  # first synthetic day
    seed: int = 0  # synth, build, training and the agent's Monte Carlo
    data: str | None = None  # a folder of real DBN day files (``volfast download`` layout) instead of synth
    epochs: int | None = None  # cap on every model's training epochs (None: the models' own defaults)
    executor: str = "local"  # volfast build executor: local (process pool) | serial
    lstm_window: int = 0  # LSTM window; 0: 20 days, or 5 when fewer than 120 days are built
    stress_steps: int = 50  # the stress rollout's steps (a [stress] steps wins)
    mc_scenarios: int = 10000  # the stress Monte Carlo's scenarios (a [stress] mc_scenarios wins)
    snapshot: Table = ()
    surfaces: Table = ()
    train: Table = ()
    stress: Table = ()
    hedge: Table = ()
    energy: Table = ()
    backtest: Table = ()

    def __post_init__(self) -> None:
        for name in DEMO_TABLES[1:]:  # dicts are accepted and frozen
            v = getattr(self, name)
            if isinstance(v, Mapping):
                object.__setattr__(self, name, tuple(sorted(v.items())))
        self._check()

    # -- the settings each stage runs with -------------------------------------------------------------
    def build_config(self) -> Any:
        """The build's :class:`~volfast.pipeline.BuildConfig` (seed, ``[snapshot]``, ``[surfaces]``,
        executor)."""
        from volfast.pipeline.config import ConfigError, config_from_mapping

        doc = {
            "seed": self.seed,
            "snapshot": dict(self.snapshot),
            "surfaces": dict(self.surfaces),
            "executor": {"kind": self.executor},
        }
        try:
            return config_from_mapping(doc, source="demo")
        except ConfigError as exc:  # "demo: [surfaces] <what>": the table goes into the place
            what = " ".join(str(exc).split()).removeprefix("demo: ")
            table, _, rest = what.partition(" ")
            if table.startswith("[") and rest:
                raise DemoSettingsError(f"demo {table}: {rest}", where=f"demo {table}") from None
            raise DemoSettingsError(f"demo: {what}", where="demo") from None

    def train_overrides(self) -> list[str]:
        """``--set`` overrides of every model's training: the ``epochs`` cap, then ``[train]``."""
        cap = {} if self.epochs is None else {"epochs": self.epochs, "patience": self.epochs}
        return [f"train.{k}={_toml_value(v)}" for k, v in (cap | dict(self.train)).items()]

    def stress_config(self) -> Any:
        """The stress test's :class:`~volfast.agent.StressConfig`."""
        from volfast.agent.stress import StressConfig

        base = {"steps": self.stress_steps, "mc_scenarios": self.mc_scenarios, "seed": self.seed}
        return _section(StressConfig, "stress", base | dict(self.stress))

    def hedge_configs(self) -> tuple[Any, Any]:
        """The hedge's :class:`~volfast.agent.hedge.HedgeConfig` and
        :class:`~volfast.agent.energy.EnergyConfig`."""
        from volfast.agent.energy import EnergyConfig
        from volfast.agent.hedge import HedgeConfig

        hedge = _section(HedgeConfig, "hedge", dict(self.hedge))
        return hedge, _section(EnergyConfig, "energy", dict(self.energy))

    def backtest_config(self, n_valid: int) -> Any:
        """The backtest's :class:`~volfast.backtest.BacktestConfig`: a retrain every 100 usable days on a
        year, about three fits on a short run, then ``[backtest]``."""
        from volfast.backtest import BacktestConfig

        every = 100 if n_valid >= 200 else max(10, n_valid // 3)
        base = {"retrain_every": every, "min_history": min(20, max(5, n_valid // 5))}
        return _section(BacktestConfig, "backtest", base | dict(self.backtest))

    def backtest_train_config(self) -> Any:
        """The backtest's CVAE training: the cvae defaults, the seed, the epochs cap and ``[train]``."""
        from volfast.models.train import KIND_TRAIN_DEFAULTS, TrainConfig

        cap = {} if self.epochs is None else {"epochs": self.epochs, "patience": self.epochs}
        doc = dict(KIND_TRAIN_DEFAULTS["cvae"]) | {"seed": self.seed} | cap | dict(self.train)
        return _section(TrainConfig, "train", doc)

    def _check(self) -> None:
        hints = typing.get_type_hints(DemoConfig)
        for f in dataclasses.fields(self)[: len(_DEMO_KEYS)]:
            v = getattr(self, f.name)
            allowed = typing.get_args(hints[f.name]) or (hints[f.name],)
            ok = any(isinstance(v, a) for a in allowed) and not (isinstance(v, bool) and bool not in allowed)
            if not ok:
                want = " or ".join("none" if a is type(None) else a.__name__ for a in allowed)
                raise DemoSettingsError(f"[demo] {f.name} must be {want}, got {v!r}", where=f"demo.{f.name}")
        if self.days < 0:
            raise DemoSettingsError(
                f"days must be >= 0 (0: the implied-vol demo only), got {self.days}", where="--days"
            )
        if self.epochs is not None and self.epochs < 1:
            raise DemoSettingsError(f"epochs must be >= 1, got {self.epochs}", where="--epochs")
        if self.executor not in ("local", "serial"):
            raise DemoSettingsError(
                f"executor must be local or serial, got {self.executor!r}", where="demo.executor"
            )
        try:
            dt.date.fromisoformat(self.start)
        except ValueError:
            msg = f"start must be a date YYYY-MM-DD, got {self.start!r}"
            raise DemoSettingsError(msg, where="demo.start") from None
        for name in ("lstm_window", "stress_steps", "mc_scenarios"):
            if getattr(self, name) < 0:
                msg = f"{name} must be >= 0, got {getattr(self, name)}"
                raise DemoSettingsError(msg, where=f"demo.{name}")
        # every stage's table, read into its own dataclass now: a bad key or value stops before any stage
        self.build_config()
        self.stress_config()
        self.hedge_configs()
        self.backtest_config(252)
        self.backtest_train_config()
        from volfast.models.train import load_config

        for kind in _MODEL_KINDS:
            try:
                load_config(kind, None, self.train_overrides())
            except VolfastError as exc:
                raise _placed(exc, "demo") from None


_DEMO_KEYS = (
    "days", "start", "seed", "data", "epochs", "executor", "lstm_window", "stress_steps", "mc_scenarios",
)  # fmt: skip


def _toml_value(v: Any) -> str:
    """A value as TOML text for a ``--set`` override (JSON's scalars and lists are TOML)."""
    return json.dumps(v)


def _section(cls: type, table: str, doc: Mapping[str, Any]) -> Any:
    """``cls`` from a table of demo settings (unknown keys and wrong types: :class:`DemoSettingsError`)."""
    from volfast.models.io import config_from_dict

    doc = {k: v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for k, v in doc.items()}
    try:
        return config_from_dict(cls, dict(doc), where=f"demo [{table}]")
    except VolfastError as exc:
        raise _placed(exc, "") from None


def _placed(exc: VolfastError, source: str) -> DemoSettingsError:
    """``exc`` as a :class:`DemoSettingsError` whose place is ``source`` (a file, ``--set``) then the
    table and key it named: ``"<where>: <what>"``, one place, not repeated."""
    what, where = " ".join(str(exc).split()), getattr(exc, "where", None)
    if where and what.startswith(f"{where}: "):
        what = what[len(where) + 2 :]
    if source and where and where.startswith("--"):  # a flag's setting given in a file or by --set
        where = f"demo.{where[2:]}"
    place = " ".join(x for x in (source, where) if x) or None
    return DemoSettingsError(f"{place}: {what}" if place else what, where=place)


def load_demo_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = (), **demo: Any
) -> DemoConfig:
    """A :class:`DemoConfig` from a TOML file (tables :data:`DEMO_TABLES`), then the ``[demo]`` values given
    as keywords (the command's flags; None: not given), then ``--set TABLE.KEY=VALUE`` overrides (a bare
    ``KEY=VALUE`` is a ``[demo]`` key). The same rules as every other command's ``--set``
    (:mod:`volfast._toml`); every value is checked here, before any stage runs.

    Raises
    ------
    DemoSettingsError
        A missing or invalid file, an unknown table or key, a value of the wrong type or out of range; the
        message names the file (or ``--set``), the table and the key.
    """
    from volfast._toml import apply_overrides, read_tables

    raw = read_tables(path, DEMO_TABLES, error=DemoSettingsError)
    sections: dict[str, dict[str, Any]] = {}
    for t in DEMO_TABLES:
        if t in raw and not isinstance(raw[t], Mapping):
            raise DemoSettingsError(f"{path}: [{t}] must be a table")
        sections[t] = dict(raw.get(t, {}))
    sections["demo"].update({k: v for k, v in demo.items() if v is not None})
    apply_overrides(sections, overrides, default_section="demo", error=DemoSettingsError)
    source = " with ".join(x for x in (str(path) if path else "", "--set" if overrides else "") if x)
    d = sections["demo"]
    unknown = sorted(set(d) - set(_DEMO_KEYS))
    if unknown:
        raise DemoSettingsError(
            f"{source or 'demo'}: unknown key(s) {', '.join(unknown)} in [demo]; "
            f"known: {', '.join(_DEMO_KEYS)}",
            where=f"demo.{unknown[0]}",
        )
    d = {k: v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for k, v in d.items()}
    try:
        tables: dict[str, Any] = {t: sections[t] for t in DEMO_TABLES[1:]}  # frozen by DemoConfig
        return DemoConfig(**d, **tables)
    except DemoSettingsError as exc:
        if not source:
            raise
        raise _placed(exc, source) from None


def run_pipeline(
    out: str | os.PathLike[str], config: DemoConfig | None = None, *, console: Any = None
) -> Path:
    """Every stage of volfast into the work folder ``out`` (layout :class:`volfast.report.RunLayout`):
    synth (or ``config.data``) -> build -> train PCA, VAE, CVAE, LSTM + evaluate -> stress -> hedge ->
    backtest -> report. Finished stages with unchanged settings and inputs are reused. Prints each stage's
    time and returns the path of ``report.html``.

    Raises ``ValueError`` subclasses naming the stage's problem (a DBN folder without day files, too few
    valid days for a model, ...)."""
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from volfast.report import RunLayout, build_report

    console = console or Console()
    cfg = config or DemoConfig()
    lay = RunLayout.of(out)
    lay.root.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    reused: list[str] = []
    names = ["data", "build", "train pca", "train vae", "train cvae", "train lstm", "evaluate", "stress"]
    names += ["hedge", "backtest", "report"]
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} stages"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task("volfast demo", total=len(names))
    say: Callable[[str], Any] = progress.console.print
    t_all = time.perf_counter()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # the models are tiny: one thread is fastest (restored when the demo ends)

    def staged(name: str, fn: Callable[[], Any]) -> bool:
        """Run a stage that applies the freshness rule itself (returns a ``StageRun``); returns whether it
        ran, and says why."""
        progress.update(task, description=name)
        t0 = time.perf_counter()
        res = fn()
        if res.reused:
            reused.append(name)
            say(f"[dim]{name}: reused ({res.folder}: up to date)[/dim]")
        else:
            times[name] = time.perf_counter() - t0
            say(f"{name}: {times[name]:.1f} s (ran because {res.reason})")
        progress.advance(task)
        return not res.reused

    from volfast.io.freshness import run_stage, tree_inputs

    progress.start()
    try:
        # data: synthetic days under the one freshness rule (or the user's DBN folder, read in place: the
        # build's per-day manifests compare its files)
        if cfg.data is None:
            data = lay.data
            synth_cfg = {"days": cfg.days, "start": cfg.start, "seed": cfg.seed, "scale": "small"}

            def synth() -> None:
                from volfast.synth import generate_days
                from volfast.synth.calendar import trading_days

                first = dt.date.fromisoformat(cfg.start)
                keep_only_days(data, set(trading_days(first, cfg.days)))  # fewer or other days: the rest go
                generate_days(first, cfg.days, data, seed=cfg.seed, scale="small")

            staged(
                "data",
                lambda: run_stage(
                    data, stage="synth", config=synth_cfg, inputs=[], outputs=["synth-config.json"], run=synth
                ),
            )
        else:
            data = Path(cfg.data)
            if not data.is_dir():
                raise DemoError(f"--data {data}: not a folder of DBN day files")
            progress.advance(task)

        # build: always run; its own per-day freshness rule (manifests, through the per-day runner) decides
        # what is reused, so an interrupted or changed day is redone and a finished one costs a manifest read;
        # the demo's build holds exactly the days of its data (a day no longer there loses its tables)
        from volfast.io.dbn import list_dates
        from volfast.pipeline import run_build

        keep_only_days(lay.build, set(list_dates(data)))

        progress.update(task, description="build")
        t0 = time.perf_counter()
        progress.stop()  # the build draws its own progress bar
        try:
            s = run_build(data, lay.build, config=cfg.build_config(), console=console)
        finally:
            progress.start()
        say(
            f"build: {len(s.ok)} built, {len(s.skipped)} reused, {len(s.invalid)} invalid, "
            f"{len(s.failed)} failed"
        )
        if s.interrupted:  # the next demo resumes the build from its per-day manifests
            raise KeyboardInterrupt
        if s.failed:
            raise DemoError(f"build: {len(s.failed)} day(s) failed; see {lay.build / 'build-summary.json'}")
        if all(r.get("skipped") for r in s.results):
            reused.append("build")
            say(f"[dim]build: reused ({lay.build}: every day up to date)[/dim]")
        else:
            times["build"] = time.perf_counter() - t0
            say(f"build: {times['build']:.1f} s")
        progress.advance(task)
        if cfg.data is None and "build" not in reused:
            truth_figures(progress.console, data, lay.build)
        from volfast.surface.dataset import _day_is_valid

        n_valid = sum(
            _day_is_valid(lay.build / "days", dt.date.fromisoformat(p.name[5:]))
            for p in (lay.build / "grids").glob("date=*")
        )
        if n_valid < 10:
            raise DemoError(
                f"{lay.build}: {n_valid} valid days; the world model needs at least 10 (use more --days, or "
                f"see {lay.build / 'days'} for each day's reason)"
            )

        # world model and everything after it: each stage is reused only under the one freshness rule
        # (volfast.io.freshness.run_stage): same full settings, same code, same input files
        from volfast.models.evaluate import evaluate_run
        from volfast.models.train import train_stage

        ep = cfg.train_overrides()  # the epochs cap and [train], on every model's own defaults
        window = cfg.lstm_window or (20 if n_valid >= 120 else 5)
        build_files = ["*/date=*/_manifest.json", "grids/**/*.parquet"]
        build_inputs = tree_inputs(lay.build, build_files, prefix="build/")

        def models_inputs(*kinds: str) -> list[tuple[str, Path]]:
            pats = [f"{k}/{f}" for k in kinds for f in ("model.pt", "model.json", "config.json")]
            return tree_inputs(lay.models, pats, prefix="models/")

        for kind in ("pca", "vae", "cvae"):
            staged(
                f"train {kind}",
                functools.partial(train_stage, kind, lay.build, lay.models, overrides=ep, log=say),
            )
        staged(
            "train lstm",
            lambda: train_stage(
                "lstm", lay.build, lay.models, overrides=[*ep, f"model.window={window}"],
                encoder=lay.model("cvae"), log=say,
            ),
        )  # fmt: skip

        def evaluate() -> None:
            from volfast.models.evaluate import metrics_markdown

            say(metrics_markdown(evaluate_run(lay.models)))

        staged(
            "evaluate",
            lambda: run_stage(
                lay.models, stage="evaluate", config={"device": "cpu"},
                inputs=build_inputs + models_inputs("pca", "vae", "cvae", "lstm"),
                outputs=["metrics.json", "metrics.md"], run=evaluate,
            ),
        )  # fmt: skip

        # agent and backtest
        from volfast.agent.hedge import run_hedge
        from volfast.agent.stress import run_stress

        world_inputs = build_inputs + models_inputs("cvae", "lstm")
        stress_cfg = dataclasses.asdict(cfg.stress_config())
        stress_set = [f"{k}={_toml_value(v)}" for k, v in stress_cfg.items()]
        staged(
            "stress",
            lambda: run_stage(
                lay.stress, stage="stress", config={"stress": stress_cfg, "device": "cpu"},
                inputs=world_inputs, outputs=["stress.json"],
                run=lambda: run_stress(
                    lay.models, lay.stress, data=lay.build, overrides=stress_set, device="cpu", log=say
                ),
            ),
        )  # fmt: skip
        hcfg, ecfg = (dataclasses.asdict(c) for c in cfg.hedge_configs())
        hedge_cfg = {"hedge": hcfg, "energy": ecfg, "device": "cpu"}
        hedge_set = [f"hedge.{k}={_toml_value(v)}" for k, v in hcfg.items()]
        hedge_set += [f"energy.{k}={_toml_value(v)}" for k, v in ecfg.items()]
        staged(
            "hedge",
            lambda: run_stage(
                lay.hedge, stage="hedge", config=hedge_cfg, inputs=world_inputs, outputs=["hedge.json"],
                run=lambda: run_hedge(
                    lay.models, lay.build, lay.hedge, overrides=hedge_set, device="cpu", log=say
                ),
            ),
        )  # fmt: skip

        from volfast.backtest import backtest as run_backtest
        from volfast.backtest import metrics_table
        from volfast.models.cvae import CVAEConfig

        bt_cfg, bt_train = cfg.backtest_config(n_valid), cfg.backtest_train_config()
        bt_settings = {
            "backtest": dataclasses.asdict(bt_cfg),
            "model": dataclasses.asdict(CVAEConfig()),
            "train": dataclasses.asdict(bt_train),
        }

        def backtest() -> None:
            res = run_backtest(
                lay.build, config=bt_cfg, model_config=CVAEConfig(), train_config=bt_train,
                out=lay.backtest, log=say,
            )  # fmt: skip
            say(metrics_table(res.metrics))

        staged(
            "backtest",
            lambda: run_stage(
                lay.backtest, stage="backtest", config=bt_settings, inputs=build_inputs,
                outputs=["metrics.json"], run=backtest,
            ),
        )  # fmt: skip

        report_inputs = tree_inputs(
            lay.root,
            ["models/metrics.json", "models/*/config.json", "models/*/history.json", "stress/stress.json",
             "hedge/hedge.json", "backtest/metrics.json", "backtest/*.csv", "build/*/date=*/_manifest.json"],
        )  # fmt: skip
        staged(
            "report",
            lambda: run_stage(
                lay.report,
                stage="report",
                config={},
                inputs=report_inputs,
                outputs=["report.html"],
                run=lambda: build_report(lay.root, log=say),
            ),
        )
    finally:
        progress.stop()
        torch.set_num_threads(threads_before)  # no global side effect outlives the call
    total = time.perf_counter() - t_all
    ran = ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) or "nothing to do"
    console.print(
        f"\n[bold]volfast demo[/bold] pipeline in {total:.1f} s ({ran}"
        + (f"; reused: {', '.join(reused)}" if reused else "")
        + ")"
    )
    report = lay.report / "report.html"
    console.print(f"[bold green]Report:[/bold green] {report.resolve()}")
    return report


def keep_only_days(root: Path, dates: set[dt.date]) -> list[Path]:
    """Remove from a folder the demo owns every day that is not in ``dates``: batch-named DBN day files
    (``<dataset>-YYYYMMDD.<schema>.dbn.zst`` and their sidecars) directly under ``root``, and
    ``date=YYYY-MM-DD`` partitions one level down (a build's tables). Returns what went. Lowering ``--days``
    (or moving ``start``) thus leaves no day behind for the build or the models to pick up."""
    import re
    import shutil

    if not root.is_dir():
        return []
    gone: list[Path] = []
    stamp = re.compile(r"-(\d{8})\.")
    for f in sorted(root.iterdir()):
        m = stamp.search(f.name) if f.is_file() else None
        if m:
            try:
                day = dt.datetime.strptime(m.group(1), "%Y%m%d").date()
            except ValueError:
                continue
            if day not in dates:
                f.unlink()
                gone.append(f)
    for part in sorted(root.glob("*/date=*")):
        try:
            day = dt.date.fromisoformat(part.name[5:])
        except ValueError:
            continue
        if day not in dates and part.is_dir():
            shutil.rmtree(part)
            gone.append(part)
    return gone


def _numba_available() -> bool:
    try:
        from volfast.iv import _numba  # noqa: F401

        return True
    except ImportError:
        return False
