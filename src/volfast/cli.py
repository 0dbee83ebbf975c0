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
