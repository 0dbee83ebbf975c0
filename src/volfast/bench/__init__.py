"""``volfast bench``: volfast against the libraries a user would otherwise pick, on the same inputs, in one
run on this machine.

Suites: ``iv`` (Black-76 implied vol: py_vollib_vectorized, iv_engine, QuantLib, fast-vollib, scipy brentq,
and the transcendental floor), ``svi`` (scipy least_squares), ``snapshot`` (the databento client with pandas,
and its decode alone) and ``day`` (the do-it-yourself pipeline of :mod:`volfast.bench.diy`). Each reports ns
per item, items per second, the ratio to volfast measured in the same run and the largest error against a
high-precision reference (40-digit vols, the synthetic truth, or the obvious implementation). A peer that is
not installed is listed with the pip command that installs it; ``pip install "volfast[bench]"`` installs them
all.

Run::

    volfast bench all --quotes 1000000 --threads 2 --json bench.json
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from volfast.bench._common import ALL_PEERS_PIP, Missing, Row, Suite, machine
from volfast.errors import UsageError

__all__ = ["SUITES", "Missing", "Row", "Suite", "print_report", "run_bench", "to_json", "write_json"]

SUITES: tuple[str, ...] = ("iv", "svi", "snapshot", "day")


def _runner(name: str) -> Callable[[int, int, Callable[[str], None] | None], Suite]:
    import importlib

    run: Callable[[int, int, Callable[[str], None] | None], Suite] = importlib.import_module(
        f"volfast.bench.{name}"
    ).run
    return run


def run_bench(
    suites: Sequence[str] = ("iv",),
    *,
    quotes: int = 1_000_000,
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[Suite]:
    """Run the named suites (``"all"`` for every one) and return their results.

    Parameters
    ----------
    suites : sequence of str
        Any of ``iv``, ``svi``, ``snapshot``, ``day``, or ``all``.
    quotes : int
        Size: implied-vol quotes (``iv``); ``svi`` fits one slice per 1,000 (12 to 1,000); ``snapshot`` and
        ``day`` use a full-scale synthetic day from 1,000,000 on, a small one below.
    threads : int
        volfast also runs on this many threads (always on one); peers run on one.
    progress : callable, optional
        Called with a short description of each step as it starts.
    """
    names = list(SUITES) if "all" in suites else list(dict.fromkeys(suites))
    bad = [n for n in names if n not in SUITES]
    if bad:
        raise UsageError(f"unknown bench suite {bad[0]!r} (expected iv, svi, snapshot, day or all)")
    if quotes < 100:
        raise UsageError(f"--quotes must be at least 100, got {quotes}")
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    return [_runner(n)(quotes, threads, progress) for n in names]


def _ratios(suite: Suite) -> dict[int, float]:
    """Each row's ns per item over volfast's (one thread, first row of its kind) in the same suite."""
    base = next((r.ns_per_item for r in suite.rows if r.library == "volfast" and r.threads == 1), None)
    if base is None:
        base = next((r.ns_per_item for r in suite.rows if r.library == "volfast"), None)
    return {i: (r.ns_per_item / base if base else float("nan")) for i, r in enumerate(suite.rows)}


def to_json(suites: Sequence[Suite]) -> dict[str, Any]:
    """``{"machine": {...}, "rows": [{bench, library, version, ns_per_item, max_abs_err, threads, items,
    note, ratio_to_volfast}], "missing": [{bench, library, pip}], "notes": [...]}``."""
    rows: list[dict[str, Any]] = []
    for s in suites:
        ratio = _ratios(s)
        for i, r in enumerate(s.rows):
            row = {**r.as_json(), "ratio_to_volfast": ratio[i]}
            if row["max_abs_err"] is not None and not math.isfinite(row["max_abs_err"]):
                # strict JSON has no inf: a library that left reference quotes unsolved (NaN) gets null
                row["max_abs_err"] = None
                row["note"] = (
                    row["note"] + "; " if row["note"] else ""
                ) + "left some reference quotes unsolved"
            rows.append(row)
    return {
        "machine": machine(),
        "rows": rows,
        "missing": [vars(m) for m in (m for s in suites for m in s.missing)],
        "notes": [n for s in suites for n in s.notes],
    }


def _count(n: int, item: str) -> str:
    return f"{n:,} {item}" + ("" if n == 1 else "s")


def _fmt_ns(ns: float) -> str:
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"


def _fmt_rate(per_s: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if per_s >= scale:
            return f"{per_s / scale:.2f} {unit}"
    return f"{per_s:.2f}"


def print_report(suites: Sequence[Suite], console: Any = None) -> None:
    """The rich table of every suite, the machine line, missing peers and notes."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = console or Console()
    if not con.is_terminal and con.width < 120:  # a file or a pipe: wide enough that no column collapses
        con = Console(file=con.file, width=120)
    m = machine()
    con.print(
        f"[bold]machine[/]: {m['cpu']}, {m['cores']} cores, SIMD {m['simd']}; Python {m['python']}, "
        f"volfast {m['volfast']}, numpy {m['numpy']}, numba {m['numba']}"
    )
    for s in suites:
        ratio = _ratios(s)
        t = Table(
            title=f"volfast bench {s.name} ({_count(s.rows[0].items, s.item)})" if s.rows else s.name,
            title_justify="left",
        )
        t.add_column("library", no_wrap=True)
        t.add_column("threads", justify="right", no_wrap=True, min_width=7)
        t.add_column(f"ns/{s.item}", justify="right", no_wrap=True)
        t.add_column(f"{s.item}s/s", justify="right", no_wrap=True)
        t.add_column("x volfast", justify="right", no_wrap=True)
        t.add_column("max err", justify="right", no_wrap=True)
        t.add_column("note", ratio=1, min_width=20)
        for i, r in enumerate(s.rows):
            err = "-" if r.max_abs_err is None else f"{r.max_abs_err:.1e}"
            items = "" if r.items == s.rows[0].items else f"{r.items:,} {s.item}s; "
            t.add_row(
                f"{r.library} {r.version}" if len(r.version) < 12 else r.library,
                str(r.threads),
                _fmt_ns(r.ns_per_item),
                _fmt_rate(1e9 / r.ns_per_item) if r.ns_per_item > 0 else "-",
                f"{ratio[i]:.2f}",
                err,
                items + r.note,
            )
        con.print(t)
        for n in s.notes:
            con.print(f"  [dim]{escape(n)}[/]")
    missing = [mm for s in suites for mm in s.missing]
    if missing:
        con.print("[bold yellow]not installed[/] (not measured):")
        for mm in missing:
            con.print(f"  {mm.bench}: {mm.library}: {escape(mm.pip)}")
        con.print(f"  or all of them: {escape(ALL_PEERS_PIP)}")


def write_json(suites: Sequence[Suite], path: str | Path) -> None:
    try:
        from volfast.io.output import atomic_write_bytes

        atomic_write_bytes(path, (json.dumps(to_json(suites), indent=2) + "\n").encode())
    except OSError as exc:
        raise UsageError(f"--json {path}: cannot write ({exc.strerror or exc})") from None
