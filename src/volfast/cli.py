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
