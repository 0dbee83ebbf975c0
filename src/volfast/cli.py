"""The ``volfast`` command line. Each subcommand's work lives in its stage's module; this file only wires
arguments to functions, importing them lazily so that ``volfast --help`` stays fast."""

from __future__ import annotations

import click


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
def demo(quotes: int, seed: int, threads: int | None) -> None:
    """Run volfast's main job on the built-in synthetic market and print what it measured."""
    from volfast.demo import run_demo

    run_demo(quotes=quotes, seed=seed, threads=threads)


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
@click.option("--data", "data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of batch-style DBN files <dataset>-YYYYMMDD.<schema>.dbn.zst.")
@click.option("--date", "dates", multiple=True,
              help="Trading date YYYY-MM-DD (repeatable; default: every date found in --data).")
@click.option("--cut", default="15:48", show_default=True, help="Cut time of day (HH:MM[:SS]) in --tz.")
@click.option("--tz", default="America/New_York", show_default=True, help="IANA time zone of --cut.")
@click.option("--lookback", default="10m", show_default=True, help="Look-back window before the cut.")
@click.option("--stale-after", default="60s", show_default=True, help="Flag quotes older than this as stale.")
@click.option("--venues", type=click.Choice(["auto", "consolidate", "single"]), default="auto",
              show_default=True,
              help="Consolidate per-venue OPRA quotes to best bid/offer (auto: per-venue schemas).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output root; writes OUT/date=YYYY-MM-DD/part-0.parquet and _manifest.json.")
@click.option("--force", is_flag=True, help="Redo days whose manifest already matches.")
def snapshot(data: str, dates: tuple[str, ...], cut: str, tz: str, lookback: str, stale_after: str,
             venues: str, out: str, force: bool) -> None:
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

    reports = snapshot_days(data, list(dates) or None, out, force=force, on_day=show, cut=cut, tz=tz,
                            lookback=lookback, stale_after=stale_after, venues=venues)
    failed = [r for r in reports if r.status == "failed"]
    if not reports:
        raise click.ClickException(f"no DBN day files found in {data}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(reports)} days failed")
