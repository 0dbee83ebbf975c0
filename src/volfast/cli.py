"""The ``volfast`` command line. Each subcommand's work lives in its stage's module; this file only wires
arguments to functions, importing them lazily so that ``volfast --help`` stays fast."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def _config_option(tables: str) -> Callable[[Any], Any]:
    """``--config FILE`` (an existing TOML file) into ``config_path``."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False),
        help=f"TOML with {tables}.",
    )


def _set_option(example: str, metavar: str = "KEY=VALUE") -> Callable[[Any], Any]:
    """``--set KEY=VALUE`` (repeatable) into ``overrides``."""
    return click.option("--set", "overrides", multiple=True, metavar=metavar, help=example)


#: ``--run`` of the commands that use a trained world model (stress, hedge).
_world_run_option = click.option(
    "--run",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="`volfast train` run folder with an encoder (cvae) and lstm.",
)
_agent_device_option = click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="volfast")
def main() -> None:
    """volfast: option quotes to implied-volatility surfaces, fast, and a latent world model on top."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
def info(as_json: bool) -> None:
    """Versions, compiled core, threads, CPU, and whether Numba / Triton / CUDA are usable (and why not)."""
    from volfast.info import collect_info, print_info

    data = collect_info()
    if as_json:
        import json

        click.echo(json.dumps(data, indent=2))
    else:
        print_info(data)


@main.command()
@click.option("--quotes", default=200_000, show_default=True, help="Synthetic quotes to price and invert.")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", default=None, type=int, help="C++ threads (default: VOLFAST_NUM_THREADS or all).")
@click.option(
    "--out",
    default="volfast-demo",
    show_default=True,
    help="Work folder (data, build, models, stress, hedge, backtest, report; finished stages are reused).",
)
@click.option("--days", default=252, show_default=True, help="Synthetic trading days (0: implied vol only).")
@click.option(
    "--data",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Real DBN day files (`volfast download` layout) instead of the synthetic market.",
)
@click.option("--epochs", default=None, type=int, help="Cap every model's training epochs (default: theirs).")
@click.option("--quick", is_flag=True, help="60 days, 60 epochs, a short stress: a run of a minute or two.")
@click.option(
    "--executor",
    default="local",
    show_default=True,
    type=click.Choice(["local", "serial"]),
    help="volfast build executor.",
)
def demo(
    quotes: int,
    seed: int,
    threads: int | None,
    out: str,
    days: int,
    data: str | None,
    epochs: int | None,
    quick: bool,
    executor: str,
) -> None:
    """Run volfast's main job (synth -> build -> train -> stress -> hedge -> backtest -> report)."""
    from volfast.demo import run_demo

    try:
        run_demo(
            quotes=quotes,
            seed=seed,
            threads=threads,
            out=out,
            days=days,
            data=data,
            epochs=epochs,
            quick=quick,
            executor=executor,
        )
    except ValueError as exc:  # stage errors name the file / stage and what to run
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--out", default=None, type=click.Path(file_okay=False), help="Folder (default RUN_DIR/report)."
)
def report(run_dir: str, out: str | None) -> None:
    """report.html (images embedded) and PNGs from a run folder: surfaces, smiles, latents, errors,
    forecasts, stress animation, hedge PnL, backtest equity and the metrics tables."""
    from volfast.report import build_report

    try:
        res = build_report(run_dir, out=out, log=click.echo)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Report: {res.html.resolve()}")


@main.command()
@click.option("--start", required=True, help="First date YYYY-MM-DD (a non-trading date moves to the next).")
@click.option("--days", default=1, show_default=True, type=int, help="Number of trading days to generate.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Output folder (truth/ inside).")
@click.option("--seed", default=0, show_default=True, type=int, help="Master seed (day d: [seed, yyyymmdd]).")
@click.option("--scale", default="small", show_default=True, type=click.Choice(["small", "full"]))
def synth(start: str, days: int, out_dir: str, seed: int, scale: str) -> None:
    """Write a synthetic ES futures+options market as Databento DBN files, with ground truth."""
    import datetime as dt
    from pathlib import Path

    from volfast.synth.calendar import next_trading_day
    from volfast.synth.generate import DayResult, generate_days

    try:
        first = dt.date.fromisoformat(start)
    except ValueError:
        msg = f"{start!r} is not a date in YYYY-MM-DD form"
        raise click.BadParameter(msg, param_hint="--start") from None
    if days < 1:
        raise click.BadParameter(f"must be at least 1, got {days}", param_hint="--days")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise click.BadParameter(f"{out_dir!r} exists and is not a directory", param_hint="--out")
    moved = next_trading_day(first)
    if moved != first:
        click.echo(f"note: {first} is not a trading day; starting at {moved}", err=True)

    def report(r: DayResult) -> None:
        c = r.counts
        flags = ("  [thin day]" if r.thin_day else "") + ("  [crash]" if r.crash else "")
        click.echo(
            f"{r.date}  {c['options']:>6} options  {c['mbp-1']:>9} mbp-1  {c['bbo-1m']:>8} bbo-1m  "
            f"{c['ohlcv-1m']:>6} ohlcv-1m  {r.seconds:6.2f} s{flags}"
        )

    try:
        generate_days(moved, days, out_dir, seed=seed, scale=scale, progress=report)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of batch-style DBN files <dataset>-YYYYMMDD.<schema>.dbn.zst.",
)
@click.option(
    "--date",
    "dates",
    multiple=True,
    help="Trading date YYYY-MM-DD (repeatable; default: every date found in --data).",
)
@click.option("--cut", default="15:48", show_default=True, help="Cut time of day (HH:MM[:SS]) in --tz.")
@click.option("--tz", default="America/New_York", show_default=True, help="IANA time zone of --cut.")
@click.option("--lookback", default="10m", show_default=True, help="Look-back window before the cut.")
@click.option("--stale-after", default="60s", show_default=True, help="Flag quotes older than this as stale.")
@click.option(
    "--venues",
    type=click.Choice(["auto", "consolidate", "single"]),
    default="auto",
    show_default=True,
    help="Consolidate per-venue OPRA quotes to best bid/offer (auto: per-venue schemas).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output root; writes OUT/date=YYYY-MM-DD/part-0.parquet and _manifest.json.",
)
@click.option("--force", is_flag=True, help="Redo days whose manifest already matches.")
def snapshot(
    data: str,
    dates: tuple[str, ...],
    cut: str,
    tz: str,
    lookback: str,
    stale_after: str,
    venues: str,
    out: str,
    force: bool,
) -> None:
    """Last top-of-book quote per instrument as of a cut time, one Parquet partition per day."""
    from volfast.snapshot import snapshot_days

    def show(rep: object) -> None:
        r = rep  # DayReport
        if r.status == "failed":  # type: ignore[attr-defined]
            click.secho(f"{r.date}  FAILED  {r.error}", fg="red", err=True)  # type: ignore[attr-defined]
        else:
            click.echo(f"{r.date}  {r.status}  {r.rows} rows  -> {r.folder}")  # type: ignore[attr-defined]
            for w in r.warnings:  # type: ignore[attr-defined]
                click.secho(f"    warning: {w}", fg="yellow", err=True)

    reports = snapshot_days(
        data,
        list(dates) or None,
        out,
        force=force,
        on_day=show,
        cut=cut,
        tz=tz,
        lookback=lookback,
        stale_after=stale_after,
        venues=venues,
    )
    failed = [r for r in reports if r.status == "failed"]
    if not reports:
        raise click.ClickException(f"no DBN day files found in {data}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(reports)} days failed")


@main.command()
@click.option(
    "--snapshots",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A `volfast snapshot` output folder (date=YYYY-MM-DD/part-0.parquet + _manifest.json).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output root: OUT/{quotes,forwards,svi,grids,days}/date=YYYY-MM-DD/part-0.parquet.",
)
@click.option("--date", "dates", multiple=True, help="Date YYYY-MM-DD (repeatable; default: every day).")
@click.option(
    "--side",
    type=click.Choice(["otm", "call", "put", "both"]),
    default="otm",
    show_default=True,
    help="Quotes in the smile (otm: puts below the forward, calls above).",
)
@click.option("--min-expiries", default=3, show_default=True, help="Valid day: expiries passing the checks.")
@click.option(
    "--k-low", default=-0.5, show_default=True, help="Valid expiry: lowest quoted ln(K/F) at most this."
)
@click.option(
    "--k-high", default=0.15, show_default=True, help="Valid expiry: highest quoted ln(K/F) at least this."
)
@click.option("--min-two-sided", default=6, show_default=True, help="Valid expiry: two-sided strikes.")
@click.option(
    "--no-arbitrage-repair", is_flag=True, help="Keep the raw SVI fits (no butterfly/calendar repair)."
)
@click.option("--force", is_flag=True, help="Redo days whose manifest already matches.")
def surfaces(
    snapshots: str,
    out: str,
    dates: tuple[str, ...],
    side: str,
    min_expiries: int,
    k_low: float,
    k_high: float,
    min_two_sided: int,
    no_arbitrage_repair: bool,
    force: bool,
) -> None:
    """Forwards, implied vols, SVI fits, day validity and rasterised grids, one partition per day."""
    from volfast.surface.day import SurfaceConfig
    from volfast.surface.run import SurfacesError, surfaces_days
    from volfast.surface.validity import ValidityConfig

    try:
        cfg = SurfaceConfig(
            side=side,
            arbitrage_free=not no_arbitrage_repair,
            validity=ValidityConfig(
                min_expiries=min_expiries,
                max_min_log_strike=k_low,
                min_max_log_strike=k_high,
                min_two_sided=min_two_sided,
            ),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None

    def show(r: object) -> None:
        from volfast.surface.run import SurfaceDayReport

        assert isinstance(r, SurfaceDayReport)
        if r.status == "failed":
            click.secho(f"{r.date}  FAILED  {r.error}", fg="red", err=True)
            return
        c = r.counts
        verdict = "valid" if r.valid else "INVALID"
        ms = sum(r.timings.values()) * 1e3
        n_ok, n_all = c.get("expiries_valid", 0), c.get("expiries", 0)
        click.echo(
            f"{r.date}  {r.status:7}  {verdict:7}  {n_ok}/{n_all} "
            f"expiries  {c.get('quotes_used', 0)} quotes fitted" + (f"  {ms:.0f} ms" if ms else "")
        )
        if not r.valid and r.reason:
            click.secho(f"    {r.reason}", fg="yellow", err=True)

    try:
        reports = surfaces_days(
            snapshots, out, dates=list(dates) or None, config=cfg, force=force, on_day=show
        )
    except SurfacesError as exc:
        raise click.ClickException(str(exc)) from None
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(reports)} days failed")


@main.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of batch-style DBN files <dataset>-YYYYMMDD.<schema>.dbn.zst.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output root: OUT/snapshots/date=YYYY-MM-DD/..., then the surfaces tables.",
)
@click.option("--from", "start", default=None, help="First date YYYY-MM-DD (default: the first in --data).")
@click.option("--to", "end", default=None, help="Last date YYYY-MM-DD, inclusive (default: the last).")
@click.option("--date", "dates", multiple=True, help="Only this day (repeatable): re-runs failed days.")
@click.option(
    "--executor",
    type=click.Choice(["local", "dask", "serial"]),
    default=None,
    help="local process pool (default), dask.distributed, or serial in this process.",
)
@click.option("--scheduler", default=None, help="Dask scheduler address (default: start a LocalCluster).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: one per core).")
@click.option(
    "--threads-per-worker",
    type=int,
    default=None,
    help="C++/Numba/BLAS threads per worker (default: cores // workers).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML build config ([snapshot], [surfaces], [executor], seed, stages).",
)
@click.option("--stages", default=None, help="Comma-separated stages to run (default: snapshot,surfaces).")
@click.option("--seed", type=int, default=None, help="Master seed (day d gets a seed from (seed, d)).")
@click.option("--force", is_flag=True, help="Redo days whose manifests already match.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build(
    data: str,
    out: str,
    start: str | None,
    end: str | None,
    dates: tuple[str, ...],
    executor: str | None,
    scheduler: str | None,
    workers: int | None,
    threads_per_worker: int | None,
    config_path: str | None,
    stages: str | None,
    seed: int | None,
    force: bool,
    quiet: bool,
) -> None:
    """Every trading day in --data through snapshot -> surfaces, one pure task per day, resumable."""
    import sys

    from volfast.io.dbn import _as_date
    from volfast.pipeline import BuildError, ConfigError, StageUnavailable, load_config, run_build

    try:
        cfg = load_config(config_path)
        top: dict[str, object] = {}
        if stages is not None:
            top["stages"] = tuple(s.strip() for s in stages.split(",") if s.strip())
        if seed is not None:
            top["seed"] = seed
        ex = {
            "kind": executor,
            "scheduler": scheduler,
            "workers": workers,
            "threads_per_worker": threads_per_worker,
        }
        if scheduler and executor is None:
            ex["kind"] = "dask"
        cfg = cfg.replace(executor=ex, **top)
        first = _as_date(start) if start else None
        last = _as_date(end) if end else None
        days = [_as_date(d) for d in dates] or None
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    # The re-run command the summary prints: these same arguments without the dates.
    cmd = ["volfast", "build", "--data", data, "--out", out]
    for flag, val in (
        ("--config", config_path),
        ("--stages", ",".join(cfg.stages)),
        ("--executor", cfg.executor.kind),
        ("--scheduler", scheduler),
        ("--workers", workers),
        ("--threads-per-worker", threads_per_worker),
        ("--seed", seed),
    ):
        if val is not None:
            cmd += [flag, str(val)]
    try:
        summary = run_build(
            data,
            out,
            config=cfg,
            start=first,
            end=last,
            dates=days,
            force=force,
            progress=not quiet,
            command=cmd,
            config_path=config_path,
        )
    except (BuildError, StageUnavailable, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    summary.render()
    if summary.interrupted:
        sys.exit(130)
    if summary.failed:
        sys.exit(1)


class _ManyValuesCommand(click.Command):
    """Lets ``--symbols ES.OPT ES.FUT`` stand for ``--symbols ES.OPT --symbols ES.FUT`` (for the options
    named in ``many``), as the Databento docs write multi-valued arguments."""

    many = ("--symbols", "--schema")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        cur: str | None = None
        for a in args:
            if a.startswith("-"):
                cur = a if a in self.many else None
                out.append(a)
            elif cur is not None and out and out[-1] != cur:
                out += [cur, a]
            else:
                out.append(a)
        return super().parse_args(ctx, out)


@main.command(cls=_ManyValuesCommand)
@click.option("--dataset", default="GLBX.MDP3", show_default=True, help="Databento dataset.")
@click.option(
    "--symbols",
    multiple=True,
    default=("ES.OPT", "ES.FUT"),
    show_default=True,
    help="Symbols (space- or comma-separated); parent symbols with --stype-in parent.",
)
@click.option(
    "--schema",
    "schemas",
    multiple=True,
    default=("definition", "mbp-1", "ohlcv-1m"),
    show_default=True,
    help="Schemas (space- or comma-separated).",
)
@click.option("--stype-in", default="parent", show_default=True, help="Input symbology.")
@click.option("--start", required=True, help="First trading day YYYY-MM-DD.")
@click.option("--end", required=True, help="Last trading day YYYY-MM-DD (inclusive).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the day files.")
@click.option("--yes", is_flag=True, help="Do not ask to confirm the cost estimate.")
def download(
    dataset: str,
    symbols: tuple[str, ...],
    schemas: tuple[str, ...],
    stype_in: str,
    start: str,
    end: str,
    out: str,
    yes: bool,
) -> None:
    """Databento day files in the layout `volfast build` reads (cost shown first; key: DATABENTO_API_KEY)."""
    import sys

    from volfast.download import DownloadError, DownloadRequest, estimate_cost, make_client, parse_list
    from volfast.download import download as run_download
    from volfast.io.dbn import _as_date

    try:
        req = DownloadRequest(
            dataset=dataset,
            symbols=parse_list(symbols),
            schemas=parse_list(schemas),
            start=_as_date(start),
            end=_as_date(end),
            stype_in=stype_in,
        )
        client = make_client()
    except (DownloadError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    days = req.days()
    costs = estimate_cost(client, req)
    click.echo(
        f"{dataset} {' '.join(req.symbols)} ({stype_in}), {len(days)} trading days "
        f"{req.start}..{req.end}, {len(days) * len(req.schemas)} files"
    )
    for s, c in costs.items():
        click.echo(f"  {s:<12} ${c:,.2f}")
    click.echo(f"  {'total':<12} ${sum(costs.values()):,.2f}  (Databento metadata.get_cost estimate)")
    if not yes and not click.confirm("download?", default=False):
        raise click.ClickException("cancelled; nothing downloaded")

    def show(f: object) -> None:
        r = f  # FileResult
        msg = f"{r.day}  {r.schema:<10} {r.status:<10} {r.path.name}"  # type: ignore[attr-defined]
        if r.status == "failed":  # type: ignore[attr-defined]
            click.secho(f"{msg}  {r.error}", fg="red", err=True)  # type: ignore[attr-defined]
        else:
            click.echo(msg)

    report = run_download(client, req, out, on_file=show)
    if report.failed:
        click.secho(
            f"{len(report.failed)} file(s) failed; run the same command again to fetch only those",
            fg="red",
            err=True,
        )
        sys.exit(1)


@main.command()
@click.option(
    "--model",
    "kind",
    required=True,
    type=click.Choice(["pca", "vae", "cvae", "cvae-conv", "lstm"]),
    help="Model kind; lstm learns the latent dynamics of a trained encoder run.",
)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A `volfast surfaces` output folder, or a `volfast synth` folder (its true surfaces).",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Run folder; writes OUT/<model>/."
)
@_config_option("[model], [train] and optional [search] tables")
@_set_option(
    "Override a config value (repeatable), e.g. --set model.latent=4 --set train.epochs=200.",
    metavar="SECTION.KEY=VALUE",
)
@click.option(
    "--encoder",
    type=click.Path(exists=True, file_okay=False),
    help="lstm only: the trained encoder folder (default: OUT/cvae, OUT/vae, OUT/cvae-conv, OUT/pca).",
)
def train(
    kind: str, data: str, out: str, config_path: str | None, overrides: tuple[str, ...], encoder: str | None
) -> None:
    """Train a world model walk-forward (test period held out) and save it with its resolved config."""
    from volfast.models.train import run_train

    try:
        run_train(
            kind, data, out, config_path=config_path, overrides=overrides, encoder=encoder, log=click.echo
        )
    except ValueError as exc:  # DatasetError, ModelConfigError: messages name the file / key
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option(
    "--run",
    "run_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A `volfast train` run folder (all models in it) or one model folder.",
)
@click.option(
    "--data",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Evaluate on this dataset instead of the one each model was trained on.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option(
    "--export",
    "export_dir",
    default=None,
    type=click.Path(),
    help="Also write DIR/surfaces.parquet: every model's decoded test surfaces and the market's, long rows "
    "(model, date, tenor_years, log_moneyness, total_variance).",
)
def evaluate(run_dir: str, data: str | None, device: str, export_dir: str | None) -> None:
    """Out-of-sample metrics of every model in a run, side by side: RUN/metrics.json and RUN/metrics.md."""
    from volfast.models.evaluate import evaluate_run, export_run, metrics_markdown

    try:
        results = evaluate_run(run_dir, data=data, device=device)
        path = export_run(run_dir, export_dir, data=data, device=device) if export_dir else None
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(metrics_markdown(results))
    if path is not None:
        click.echo(f"decoded surfaces: {path}")


@main.command()
@_world_run_option
@click.option(
    "--data",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Grid dataset (default: the encoder's).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@_config_option("a [stress] table")
@_set_option("Override a [stress] value, e.g. --set steps=50.")
@_agent_device_option
def stress(
    run_dir: str, data: str | None, out: str, config_path: str | None, overrides: tuple[str, ...], device: str
) -> None:
    """Latent shock + LSTM rollout (path, half-life) and Monte Carlo scenarios; Parquet, PNG frames, GIF."""
    from volfast.agent.stress import run_stress

    try:
        run_stress(
            run_dir,
            out,
            data=data,
            config_path=config_path,
            overrides=overrides,
            device=device,
            log=click.echo,
        )
    except ValueError as exc:  # AgentError, ModelConfigError, DatasetError name what is missing
        raise click.ClickException(str(exc)) from None


@main.command()
@_world_run_option
@click.option(
    "--data",
    required=True,
    type=click.Path(file_okay=False),
    help="`volfast build` output (quotes, forwards, grids).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@_config_option("[hedge], [energy] and [scenarios] tables")
@_set_option(
    "Override a [hedge] value, e.g. --set coverage=1, an [energy] one (--set energy.alarm=change) "
    "or a [scenarios] one: --set scenarios.horizon=20."
)
@_agent_device_option
@click.option(
    "--scenarios",
    "n_scenarios",
    default=0,
    type=click.IntRange(min=0),
    help="Also run the hedger on N LSTM stress scenarios per set (noise, shocked) from the test days.",
)
def hedge(
    run_dir: str,
    data: str,
    out: str,
    config_path: str | None,
    overrides: tuple[str, ...],
    device: str,
    n_scenarios: int,
) -> None:
    """Latent-energy put hedger on the test period: hedged vs unhedged PnL, Sharpe, drawdown, costs."""
    from volfast.agent.hedge import run_hedge
    from volfast.agent.scenarios import run_scenarios

    try:
        hist = [o for o in overrides if not o.strip().startswith("scenarios.")]
        run_hedge(run_dir, data, out, config_path=config_path, overrides=hist, device=device, log=click.echo)
        if n_scenarios > 0:
            run_scenarios(
                run_dir,
                data,
                out,
                scenarios=n_scenarios,
                config_path=config_path,
                overrides=overrides,
                device=device,
                log=click.echo,
            )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(file_okay=False),
    help="`volfast build` output (snapshots, quotes, grids).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Results folder.")
@_config_option("[backtest], [model] and [train] tables")
@_set_option("Override a config value (repeatable), e.g. --set backtest.threshold=2.5 --set train.epochs=200")
@click.option(
    "--model",
    "model_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="A trained `volfast train` CVAE folder used for every day (default: walk-forward retraining).",
)
@click.option("--from", "start", default=None, help="First date YYYY-MM-DD.")
@click.option("--to", "end", default=None, help="Last date YYYY-MM-DD, inclusive.")
def backtest(
    data: str,
    out: str,
    config_path: str | None,
    overrides: tuple[str, ...],
    model_dir: str | None,
    start: str | None,
    end: str | None,
) -> None:
    """CVAE rich/cheap signal in listed options, delta-hedged with the front future; IS/OOS metrics."""
    from volfast.backtest import backtest as run_backtest
    from volfast.backtest import load_backtest_config, metrics_table

    try:
        bcfg, mcfg, tcfg = load_backtest_config(config_path, overrides)
        res = run_backtest(
            data,
            config=bcfg,
            model_config=mcfg,
            train_config=tcfg,
            model=model_dir,
            start=start,
            end=end,
            out=out,
            log=click.echo,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(metrics_table(res.metrics))
