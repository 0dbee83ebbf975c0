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


class _Main(click.Group):
    """The ``volfast`` group: every error raised on purpose (:class:`volfast.VolfastError`) and every
    operating-system error (a read-only or full output folder, a missing file) becomes one line,
    ``Error: <what> (<where>)``, and exit code 2 (usage) or 1 (the work failed); any other exception is a bug
    in volfast: one line saying so and how to see the traceback. ``--debug`` (or ``VOLFAST_DEBUG=1``)
    shows the traceback instead."""

    def invoke(self, ctx: click.Context) -> Any:
        import os

        from volfast.errors import VolfastError, error_line

        debug = bool(ctx.params.get("debug")) or os.environ.get("VOLFAST_DEBUG", "") not in ("", "0")
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own usage errors and exits: click prints them
        except VolfastError as exc:
            if debug:
                raise
            click.echo(f"Error: {error_line(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            if debug:
                raise
            what = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"Error: {what}{where}", err=True)
            ctx.exit(1)
        except Exception as exc:
            if debug:
                raise
            click.echo(
                f"Error: unexpected {type(exc).__name__}: {_one_line(exc)} (a bug in volfast; run "
                "`volfast --debug ...` for the traceback and report it)",
                err=True,
            )
            ctx.exit(1)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="volfast")
@click.option("--debug", is_flag=True, help="Show the Python traceback of an error instead of one line.")
def main(debug: bool) -> None:
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
@click.argument("suites", nargs=-1, type=click.Choice(["iv", "svi", "snapshot", "day", "all"]))
@click.option(
    "--quotes",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(min=100),
    help="Implied-vol quotes; svi fits one slice per 1,000; snapshot/day use a full-scale day from 1M.",
)
@click.option(
    "--threads",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="volfast also runs on this many threads (always on one); peers run on one.",
)
@click.option(
    "--json",
    "json_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write the rows {library, version, ns_per_item, max_abs_err, threads, ...} here.",
)
def bench(suites: tuple[str, ...], quotes: int, threads: int, json_path: str | None) -> None:
    """volfast against the peers a user would otherwise pick, same inputs, one run: iv (default), svi,
    snapshot, day or all. Missing peers are listed with the pip command that installs them."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from volfast.bench import SUITES, print_report, run_bench, write_json
    from volfast.errors import VolfastError

    names = list(SUITES) if "all" in suites else list(dict.fromkeys(suites or ("iv",)))
    err = Console(stderr=True)
    cols = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    try:
        with Progress(*cols, console=err, transient=True) as prog:
            task = prog.add_task("volfast bench", total=len(names))
            done = []
            for name in names:

                def step(msg: str, name: str = name) -> None:
                    prog.update(task, description=f"{name}: {msg}")

                step("starting")
                done += run_bench([name], quotes=quotes, threads=threads, progress=step)
                prog.advance(task)
        print_report(done)
        if json_path:
            write_json(done, json_path)
            click.echo(f"rows written to {json_path}")
    except VolfastError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--quotes", default=200_000, show_default=True, help="Synthetic quotes to price and invert.")
@click.option("--seed", default=None, type=int, help="Master seed (default 0; demo.seed).")
@click.option("--threads", default=None, type=int, help="C++ threads (default: VOLFAST_NUM_THREADS or all).")
@click.option(
    "--out",
    default="volfast-demo",
    show_default=True,
    help="Work folder (data, build, models, stress, hedge, backtest, report; finished stages are reused).",
)
@click.option(
    "--days", default=None, type=int, help="Synthetic trading days (default 252; 0: implied vol only)."
)
@click.option(
    "--data",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Real DBN day files (`volfast download` layout) instead of the synthetic market.",
)
@click.option("--epochs", default=None, type=int, help="Cap every model's training epochs (default: theirs).")
@click.option("--quick", is_flag=True, help="60 days, 60 epochs, a short stress (about 5 min on 2 cores).")
@click.option(
    "--executor",
    default=None,
    type=click.Choice(["local", "serial"]),
    help="volfast build executor (default local).",
)
@_config_option("[demo], [snapshot], [surfaces], [train], [stress], [hedge], [energy], [backtest] tables")
@_set_option(
    "Override one setting, e.g. surfaces.arbitrage=check, train.epochs=2, stress.steps=10, days=40 "
    "(a bare KEY is a [demo] key; repeatable).",
    metavar="TABLE.KEY=VALUE",
)
def demo(
    quotes: int,
    seed: int | None,
    threads: int | None,
    out: str,
    days: int | None,
    data: str | None,
    epochs: int | None,
    quick: bool,
    executor: str | None,
    config_path: str | None,
    overrides: tuple[str, ...],
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
            config_path=config_path,
            overrides=overrides,
        )
    except KeyboardInterrupt:
        click.echo("interrupted: finished stages are kept; the same command resumes", err=True)
        raise SystemExit(130) from None


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--out", default=None, type=click.Path(file_okay=False), help="Folder (default RUN_DIR/report)."
)
def report(run_dir: str, out: str | None) -> None:
    """report.html (images embedded) and PNGs from a run folder: surfaces, smiles, latents, errors,
    forecasts, stress animation, hedge PnL, backtest equity and the metrics tables."""
    from volfast.report import build_report

    res = build_report(run_dir, out=out, log=click.echo)  # ReportError: one line (the group)
    click.echo(f"Report: {res.html.resolve()}")


@main.command()
@click.option("--start", required=True, help="First date YYYY-MM-DD (a non-trading date moves to the next).")
@click.option("--days", default=1, show_default=True, type=int, help="Number of trading days to generate.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Output folder (truth/ inside).")
@click.option("--seed", default=0, show_default=True, type=int, help="Master seed (day d: [seed, yyyymmdd]).")
@click.option("--scale", default="small", show_default=True, type=click.Choice(["small", "full"]))
@click.option(
    "--market",
    default="es",
    show_default=True,
    type=click.Choice(["es", "spy"]),
    help="es: CME Globex ES futures and options; spy: OPRA.PILLAR SPY equity options (American).",
)
@click.option(
    "--schema",
    "schemas",
    default=None,
    help="spy only: files to write, of definition, cbbo-1m, cmbp-1 (comma-separated; default "
    "definition,cbbo-1m).",
)
def synth(
    start: str, days: int, out_dir: str, seed: int, scale: str, market: str, schemas: str | None
) -> None:
    """Write a synthetic market (ES futures+options, or SPY options on OPRA) as Databento DBN files, with
    ground truth."""
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

    if market != "spy" and schemas is not None:
        raise click.BadParameter("applies to --market spy only", param_hint="--schema")
    if market == "spy":
        from volfast.synth.spy import SCHEMAS, SpyDayResult, generate_spy_days

        picked = tuple(x for x in (schemas or "definition,cbbo-1m").replace(",", " ").split() if x)
        bad = sorted(set(picked) - set(SCHEMAS))
        if bad or not picked:
            msg = f"unknown schema(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(SCHEMAS)}"
            raise click.BadParameter(msg, param_hint="--schema")

        def report_spy(r: SpyDayResult) -> None:
            c = r.counts
            click.echo(
                f"{r.date}  {c['options']:>6} options  {c['expiries']:>3} expiries  "
                f"{c['cbbo-1m']:>9} cbbo-1m  {c['cmbp-1']:>9} cmbp-1  {r.seconds:6.2f} s"
                + ("  [crash]" if r.crash else "")
            )

        generate_spy_days(moved, days, out_dir, seed=seed, scale=scale, schemas=picked, progress=report_spy)
        return
    generate_days(moved, days, out_dir, seed=seed, scale=scale, progress=report)  # VolfastErrors: the group


@main.command()
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of DBN files, any names (recognised by their metadata: dataset, schema, start/end).",
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
        from volfast.io.dbn import scan_folder

        infos = scan_folder(data)
        more = f"; and {len(infos) - 8} more" if len(infos) > 8 else ""
        what = "; ".join(i.describe() for i in infos[:8]) + more
        raise click.ClickException(f"no readable DBN file in {data} (found {what or 'no files'})")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(reports)} days failed")


def _surface_setting_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--arbitrage``, ``--rate``, ``--rate-curve``, ``--exercise`` (surfaces and build)."""
    for opt in reversed(
        (
            click.option(
                "--arbitrage",
                type=click.Choice(["enforce", "check", "off"]),
                default=None,
                help="SVI arbitrage: enforce (arbitrage-free fits; default), check (independent fits, "
                "violations flagged), off (independent fits, not checked).",
            ),
            click.option(
                "--rate",
                type=float,
                default=None,
                help="Zero rate, continuously compounded ACT/365 (0.04 = 4%): D = exp(-rate T) for every "
                "expiry, forwards by parity with it (default: from the quotes).",
            ),
            click.option(
                "--rate-curve",
                type=click.Path(exists=True, dir_okay=False),
                default=None,
                help="CSV with columns tenor_years, rate: a zero curve (linear in T, flat beyond).",
            ),
            click.option(
                "--exercise",
                type=click.Choice(["auto", "european", "american"]),
                default=None,
                help="auto (default): american for OPRA datasets; american: parity near the money only, "
                "vols from out-of-the-money quotes.",
            ),
        )
    ):
        f = opt(f)
    return f


def _surface_settings(
    arbitrage: str | None, rate: float | None, rate_curve: str | None, exercise: str | None
) -> dict[str, Any]:
    """The ``[surfaces]`` keys these options set (only those given)."""
    from volfast.surface.day import read_rate_curve

    out: dict[str, Any] = {}
    if arbitrage is not None:
        out["arbitrage"] = arbitrage
    if rate is not None and rate_curve is not None:
        raise click.UsageError("give --rate or --rate-curve, not both")
    if rate is not None:
        out["rate"] = rate
    if rate_curve is not None:
        out["rate_curve"] = [list(pt) for pt in read_rate_curve(rate_curve)]
    if exercise is not None:
        out["exercise"] = exercise
    return out


@main.command()
@click.option(
    "--snapshots",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="A `volfast snapshot` output folder (date=YYYY-MM-DD/part-0.parquet + _manifest.json).",
)
@click.option(
    "--quotes",
    "quotes_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Instead of --snapshots: one chain as CSV or Parquet (expiration, strike, cp, bid, ask; optional "
    "underlying/root, settlement, sizes); needs --asof.",
)
@click.option("--asof", default=None, help="With --quotes: when the quotes were taken, ISO date-time.")
@click.option(
    "--column",
    "column_map",
    multiple=True,
    metavar="LOGICAL=NAME",
    help="With --quotes: map a column, e.g. --column expiration=ExpDate (repeatable).",
)
@click.option(
    "--expiry-time",
    default="16:00",
    show_default=True,
    help="With --quotes: time of day of an expiration given as a bare date (AM/PM settlement overrides).",
)
@click.option("--tz", default="America/New_York", show_default=True, help="Zone of bare dates / naive times.")
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
    "--moneyness",
    type=click.Choice(["standardised", "log"]),
    default="standardised",
    show_default=True,
    help="Strike coverage of a valid expiry in k/(sigma_ATM sqrt T) (--z-low/--z-high) or ln(K/F) "
    "(--k-low/--k-high).",
)
@click.option(
    "--z-low",
    default=-1.5,
    show_default=True,
    help="Valid expiry: lowest quoted k/(sigma_ATM sqrt T) at most this.",
)
@click.option(
    "--z-high",
    default=0.5,
    show_default=True,
    help="Valid expiry: highest quoted k/(sigma_ATM sqrt T) at least this.",
)
@click.option(
    "--k-low", default=-0.5, show_default=True, help="--moneyness log: lowest quoted ln(K/F) at most this."
)
@click.option(
    "--k-high", default=0.15, show_default=True, help="--moneyness log: highest quoted ln(K/F) at least this."
)
@click.option("--min-two-sided", default=6, show_default=True, help="Valid expiry: two-sided strikes.")
@click.option("--no-arbitrage-repair", is_flag=True, help="Same as --arbitrage check (kept for old scripts).")
@_surface_setting_options
@click.option("--force", is_flag=True, help="Redo days whose manifest already matches.")
def surfaces(
    snapshots: str | None,
    quotes_file: str | None,
    asof: str | None,
    column_map: tuple[str, ...],
    expiry_time: str,
    tz: str,
    out: str,
    dates: tuple[str, ...],
    side: str,
    min_expiries: int,
    moneyness: str,
    z_low: float,
    z_high: float,
    k_low: float,
    k_high: float,
    min_two_sided: int,
    no_arbitrage_repair: bool,
    arbitrage: str | None,
    rate: float | None,
    rate_curve: str | None,
    exercise: str | None,
    force: bool,
) -> None:
    """Forwards, implied vols, SVI fits, day validity and rasterised grids, one partition per day."""
    from volfast.errors import VolfastError
    from volfast.surface.day import SurfaceConfig
    from volfast.surface.run import SurfacesError, surfaces_days
    from volfast.surface.validity import ValidityConfig

    if (snapshots is None) == (quotes_file is None):
        raise click.UsageError("give --snapshots DIR or --quotes FILE (one of them)")
    if quotes_file is not None and not asof:
        raise click.UsageError("--quotes needs --asof ISO-DATETIME (when the quotes were taken)")
    try:
        extra = _surface_settings(
            "check" if no_arbitrage_repair and arbitrage is None else arbitrage, rate, rate_curve, exercise
        )
        cfg = SurfaceConfig(
            side=side,
            validity=ValidityConfig(
                min_expiries=min_expiries,
                moneyness=moneyness,
                max_min_std_moneyness=z_low,
                min_max_std_moneyness=z_high,
                max_min_log_strike=k_low,
                min_max_log_strike=k_high,
                min_two_sided=min_two_sided,
            ),
            **extra,
        )
    except VolfastError:
        raise
    except ValueError as exc:  # the settings' own checks (SurfaceConfig, ValidityConfig): a usage error
        from volfast.errors import UsageError

        raise UsageError(str(exc), where="volfast surfaces options") from None

    if quotes_file is not None:
        _surfaces_from_quotes(quotes_file, asof or "", column_map, expiry_time, tz, out, cfg)
        return

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
        for w in r.warnings:
            if w.startswith("arbitrage check:"):  # --arbitrage check: the flagged slices, day by day
                click.secho(f"    {w}", fg="yellow", err=True)

    assert snapshots is not None
    reports = surfaces_days(snapshots, out, dates=list(dates) or None, config=cfg, force=force, on_day=show)
    failed = [r for r in reports if r.status == "failed"]
    if failed:
        raise SurfacesError(f"{len(failed)} of {len(reports)} days failed", where=str(out))


def _surfaces_from_quotes(
    path: str, asof: str, column_map: tuple[str, ...], expiry_time: str, tz: str, out: str, cfg: Any
) -> None:
    """``volfast surfaces --quotes FILE``: one chain through the surfaces stage, the same tables written."""
    from volfast.io.output import file_record
    from volfast.surface.chain import from_quotes
    from volfast.surface.run import SurfacesError, write_surface_day

    columns: dict[str, str] = {}
    for item in column_map:
        key, sep, val = item.partition("=")
        if not sep or not key.strip() or not val.strip():
            raise click.UsageError(f"--column {item!r}: expected LOGICAL=NAME, e.g. expiration=ExpDate")
        columns[key.strip()] = val.strip()
    try:
        day = from_quotes(
            path, asof=asof, config=cfg, columns=columns or None, expiry_time=expiry_time, tz=tz
        )
        mcfg = {
            "surfaces": cfg.to_dict(),
            "quotes": {"asof": asof, "columns": columns, "expiry_time": expiry_time, "tz": tz},
        }
        folder = write_surface_day(day, out, inputs=[dict(file_record(path), role="quotes")], config=mcfg)
    except OSError as exc:
        raise SurfacesError(f"cannot write the tables ({exc.strerror or exc})", where=str(out)) from None
    c = day.counts
    inp = c.get("input", {})
    verdict = "valid" if day.valid else "INVALID"
    click.echo(
        f"{day.date}  {verdict}  {c.get('expiries_valid', 0)}/{c.get('expiries', 0)} expiries  "
        f"{c.get('quotes_used', 0)} quotes fitted  ({inp.get('rows_used', 0)} of {inp.get('rows', 0)} rows)"
    )
    for w in day.warnings:
        click.secho(f"    {w}", fg="yellow", err=True)
    if not day.valid and day.reason:
        click.secho(f"    {day.reason}", fg="yellow", err=True)
    click.echo(f"tables under {out} (days manifest: {folder})")


@main.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of DBN files, any names (recognised by their metadata: dataset, schema, start/end).",
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
@_set_option(
    "Override a build config value (repeatable), e.g. --set snapshot.lookback=1s "
    "--set surfaces.max_rmse=0.02 --set seed=3; checked with the config, before any day runs.",
)
@click.option("--stages", default=None, help="Comma-separated stages to run (default: snapshot,surfaces).")
@click.option("--seed", type=int, default=None, help="Master seed (day d gets a seed from (seed, d)).")
@_surface_setting_options
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
    overrides: tuple[str, ...],
    stages: str | None,
    seed: int | None,
    arbitrage: str | None,
    rate: float | None,
    rate_curve: str | None,
    exercise: str | None,
    force: bool,
    quiet: bool,
) -> None:
    """Every trading day in --data through snapshot -> surfaces, one pure task per day, resumable."""
    import sys

    from volfast.io.dbn import _as_date
    from volfast.pipeline import ConfigError, load_config, run_build

    try:
        cfg = load_config(config_path, overrides)
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
        surf = _surface_settings(arbitrage, rate, rate_curve, exercise)
        if surf:  # into [surfaces]: hashed with the stage's config like any TOML key
            from volfast.pipeline.config import _freeze

            top["surfaces"] = _freeze({**cfg.surfaces_params(), **surf})
        cfg = cfg.replace(executor=ex, **top)
        from volfast.surface.day import SurfaceConfig

        try:  # a bad [surfaces] setting (TOML or option) is one error now, not a failure on every day
            SurfaceConfig.from_dict(cfg.surfaces_params())
        except (ValueError, TypeError) as exc:
            where = f"{config_path} [surfaces]" if config_path else "volfast build options"
            raise ConfigError(" ".join(str(exc).split()), where=where) from None
        first = _as_date(start) if start else None
        last = _as_date(end) if end else None
        days = [_as_date(d) for d in dates] or None
    except ConfigError:
        raise  # one line, exit code 2 (the group's handler)
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
    for o in overrides:
        cmd += ["--set", o]
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
    summary.render()
    if summary.write_error:
        click.echo(f"Error: {summary.write_error}", err=True)
        sys.exit(1)
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
@click.option("--dataset", default="GLBX.MDP3", show_default=True, help="Databento dataset (OPRA.PILLAR...).")
@click.option(
    "--symbols",
    multiple=True,
    help="Symbols (space- or comma-separated); parent symbols with --stype-in parent. "
    "Default: ES.OPT ES.FUT, or SPY.OPT on OPRA.",
)
@click.option(
    "--schema",
    "schemas",
    multiple=True,
    help="Schemas (space- or comma-separated). Default: definition mbp-1 ohlcv-1m, or definition cbbo-1m "
    "on OPRA.",
)
@click.option("--stype-in", default="parent", show_default=True, help="Input symbology.")
@click.option("--start", required=True, help="First trading day YYYY-MM-DD.")
@click.option("--end", required=True, help="Last trading day YYYY-MM-DD (inclusive).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the day files.")
@click.option("--cut", default="15:48", show_default=True, help="Snapshot cut (HH:MM[:SS]) in --tz.")
@click.option("--tz", default="America/New_York", show_default=True, help="IANA time zone of --cut.")
@click.option("--lookback", default="10m", show_default=True, help="Snapshot look-back before the cut.")
@click.option(
    "--full-day",
    is_flag=True,
    help="Whole UTC days for top-of-book schemas too (default: only each day's look-back window).",
)
@click.option("--dry-run", is_flag=True, help="Print the requests as JSON lines; no network, no key needed.")
@click.option("--yes", is_flag=True, help="Do not ask to confirm the cost estimate.")
def download(
    dataset: str,
    symbols: tuple[str, ...],
    schemas: tuple[str, ...],
    stype_in: str,
    start: str,
    end: str,
    out: str,
    cut: str,
    tz: str,
    lookback: str,
    full_day: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """Databento day files in the layout `volfast build` reads (cost shown first; key: DATABENTO_API_KEY).

    Top-of-book schemas are asked per trading day only for the snapshot window before the cut (--full-day
    for whole days); definitions and other schemas for the whole day."""
    import json
    import sys

    from volfast.download import (
        DownloadError,
        DownloadRequest,
        SnapshotWindow,
        default_schemas,
        default_symbols,
        estimate_cost,
        make_client,
        parse_list,
        plan_requests,
    )
    from volfast.download import download as run_download
    from volfast.io.dbn import _as_date

    window = None if full_day else SnapshotWindow(cut=cut, tz=tz, lookback=lookback)
    try:
        req = DownloadRequest(
            dataset=dataset,
            symbols=parse_list(symbols) or default_symbols(dataset),
            schemas=parse_list(schemas) or default_schemas(dataset),
            start=_as_date(start),
            end=_as_date(end),
            stype_in=stype_in,
        )
        plan = plan_requests(req, window)
        if dry_run:
            for p in plan:
                click.echo(json.dumps(p.to_json()))
            return
        client = make_client()
        costs = estimate_cost(client, req, window)
    except DownloadError:
        raise  # one line (the group's handler)
    except ValueError as exc:  # a bad list or date in the options
        raise DownloadError(str(exc), where="volfast download options") from None
    days = req.days()
    scope = "whole days" if window is None else f"{lookback} before {cut} {tz} for top of book"
    click.echo(
        f"{dataset} {' '.join(req.symbols)} ({stype_in}), {len(days)} trading days "
        f"{req.start}..{req.end}, {len(plan)} files ({scope})"
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

    report = run_download(client, req, out, on_file=show, window=window)
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
@click.option("--force", is_flag=True, help="Retrain even when the run's manifest matches.")
def train(
    kind: str,
    data: str,
    out: str,
    config_path: str | None,
    overrides: tuple[str, ...],
    encoder: str | None,
    force: bool,
) -> None:
    """Train a world model walk-forward (test period held out) and save it with its resolved config.

    An earlier run in OUT/<model>/ is reused only when its settings, code and inputs all match; otherwise
    it is retrained and the reason is printed (and recorded in its manifest)."""
    from volfast.models.train import train_stage

    # DatasetError, ModelConfigError (VolfastErrors naming the file / key) become one line in the group
    train_stage(
        kind,
        data,
        out,
        config_path=config_path,
        overrides=overrides,
        encoder=encoder,
        force=force,
        log=click.echo,
    )


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

    results = evaluate_run(run_dir, data=data, device=device)  # VolfastError / OSError: one line (the group)
    path = export_run(run_dir, export_dir, data=data, device=device) if export_dir else None
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

    run_stress(
        run_dir,
        out,
        data=data,
        config_path=config_path,
        overrides=overrides,
        device=device,
        log=click.echo,
    )


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
    click.echo(metrics_table(res.metrics))
