"""What every ``volfast bench`` suite shares: result rows, peers that may be missing, timing, the machine."""

from __future__ import annotations

import importlib
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any

#: peers by import name: (distribution name, the pip command that installs it)
PEERS: dict[str, tuple[str, str]] = {
    "py_vollib_vectorized": (
        "py_vollib_vectorized",
        'pip install "py_vollib_vectorized==0.1.1" "py_vollib==1.0.1" "py_lets_be_rational==1.0.1"',
    ),
    "iv_engine": ("iv_engine", "pip install iv_engine"),
    "QuantLib": ("QuantLib", "pip install QuantLib"),
    "fast_vollib": ("fast-vollib", "pip install fast-vollib"),
    "scipy": ("scipy", "pip install scipy"),
    "pandas": ("pandas", "pip install pandas"),
    "databento": ("databento", "pip install databento"),
}
ALL_PEERS_PIP = 'pip install "volfast[bench]"'


@dataclass
class Row:
    """One measured implementation: ``ns_per_item`` on ``items`` items (quotes, slices, records or days),
    its largest error against the suite's high-precision reference (None where it has none)."""

    bench: str
    library: str
    version: str
    ns_per_item: float
    max_abs_err: float | None
    threads: int
    items: int
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Missing:
    """A peer that is not installed, and how to install it."""

    bench: str
    library: str
    pip: str


@dataclass
class Suite:
    """The rows and missing peers of one suite (iv, svi, snapshot or day)."""

    name: str
    item: str  # what one item is: "quote", "slice", "record", "day"
    rows: list[Row] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def peer(self, import_name: str, label: str | None = None) -> ModuleType | None:
        """The peer module, or None after recording it as missing (with its pip command)."""
        try:
            return importlib.import_module(import_name)
        except ImportError:
            self.missing.append(Missing(self.name, label or import_name, PEERS[import_name][1]))
            return None


def dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def best_time(fn: Callable[[], Any], *, repeats: int = 3, warmup: bool = True) -> tuple[float, Any]:
    """Smallest wall time of ``repeats`` calls (after one untimed warm-up call: no JIT compile is timed) and
    the last result. The minimum is the figure least disturbed by other load on a shared machine."""
    out = fn() if warmup else None
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


@contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """Run Numba-parallel peers on ``n`` threads (restored afterwards)."""
    try:
        import numba
    except ImportError:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    try:
        yield
    finally:
        numba.set_num_threads(before)


def machine() -> dict[str, Any]:
    """CPU model, cores, the SIMD level in use and the versions that the figures depend on."""
    from volfast.info import cpu_model

    try:
        from volfast._native import simd_level

        simd = simd_level()
    except Exception as exc:  # the bench still runs its peers; the row says why volfast could not
        simd = f"unavailable ({exc})"
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "simd": simd,
        "python": platform.python_version(),
        "volfast": dist_version("volfast"),
        "numpy": dist_version("numpy"),
        "numba": dist_version("numba"),
    }
