"""``volfast info``: what this installation can do on this machine, and why not where it cannot."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

PACKAGES = (
    "numpy",
    "numba",
    "pyarrow",
    "databento",
    "databento-dbn",
    "torch",
    "triton",
    "rich",
    "click",
    "scipy",
    "dask",
    "distributed",
)


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _check_numba() -> tuple[bool, str]:
    try:
        import numba

        @numba.njit(cache=False)
        def _add(a: int, b: int) -> int:
            return a + b

        _add(1, 2)
        layer = numba.config.THREADING_LAYER  # type: ignore[attr-defined]  # numba sets its config globals at import
        return True, f"numba {numba.__version__}, threading layer {layer}"
    except Exception as exc:  # report, never fail
        return False, f"{type(exc).__name__}: {exc}"


def _check_cuda() -> tuple[bool, str, str | None]:
    try:
        import torch
    except Exception as exc:
        return False, f"torch not importable: {exc}", None
    if not torch.cuda.is_available():
        why = "torch is a CPU build" if torch.version.cuda is None else "no CUDA device or driver found"
        return False, why, None
    return True, f"CUDA {torch.version.cuda}", torch.cuda.get_device_name(0)


def _check_triton(cuda_ok: bool) -> tuple[bool, str]:
    if _version("triton") is None:
        return False, "triton is not installed"
    if not cuda_ok:
        return False, "triton is installed but needs a CUDA GPU (CPU tests use TRITON_INTERPRET=1)"
    return True, f"triton {_version('triton')}"


def collect_info() -> dict[str, Any]:
    from volfast import _native
    from volfast._native import _IMPORT_ERROR, core_available, resolve_threads

    data: dict[str, Any] = {
        "volfast": _version("volfast"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": {p: _version(p) for p in PACKAGES},
    }
    if core_available():
        import volfast._core as _core

        data["core"] = {
            "available": True,
            "version": _core.__version__,
            # the level in use; None with simd_error set when VOLFAST_SIMD asks for one that cannot run
            "simd": None if _native._SIMD_ERROR else _core.simd_level(),
            "simd_error": str(_native._SIMD_ERROR) if _native._SIMD_ERROR else None,
            "simd_best": _core.simd_best(),
            "simd_levels": {k: dict(v) for k, v in _core.simd_levels().items()},
            "VOLFAST_SIMD": os.environ.get("VOLFAST_SIMD"),
            "hardware_threads": _core.hardware_threads(),
        }
    else:
        data["core"] = {"available": False, "why": str(_IMPORT_ERROR)}
    env_threads = os.environ.get("VOLFAST_NUM_THREADS")
    data["threads"] = {
        "VOLFAST_NUM_THREADS": env_threads,
        "resolved": resolve_threads(None) or os.cpu_count(),
    }
    ok, why = _check_numba()
    data["numba"] = {"usable": ok, "detail": why}
    cuda_ok, cuda_why, gpu = _check_cuda()
    data["cuda"] = {"usable": cuda_ok, "detail": cuda_why, "gpu": gpu}
    t_ok, t_why = _check_triton(cuda_ok)
    data["triton"] = {"usable": t_ok, "detail": t_why}
    return data


def simd_line(core: dict[str, Any]) -> str:
    """``avx512 (auto; this CPU: scalar, avx2, avx512)`` or the error a bad ``VOLFAST_SIMD`` left."""
    runnable = ", ".join(k for k, v in core["simd_levels"].items() if v["compiled"] and v["supported"])
    if core["simd_error"]:
        return f"ERROR: {core['simd_error']}"
    how = f"VOLFAST_SIMD={core['VOLFAST_SIMD']}" if core["VOLFAST_SIMD"] else "auto"
    return f"{core['simd']} ({how}; this CPU and build: {runnable})"


def print_info(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"volfast {data['volfast']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("python", f"{data['python']} on {data['platform']}")
    table.add_row("cpu", f"{data['cpu']} ({data['cpu_count']} logical cores)")
    core = data["core"]
    table.add_row("compiled core", f"yes, {core['version']}" if core["available"] else f"NO: {core['why']}")
    if core["available"]:
        table.add_row("SIMD level", simd_line(core))
    th = data["threads"]
    table.add_row("threads", f"{th['resolved']} (VOLFAST_NUM_THREADS={th['VOLFAST_NUM_THREADS'] or 'unset'})")
    for key in ("numba", "cuda", "triton"):
        d = data[key]
        table.add_row(key, ("yes: " if d["usable"] else "no: ") + d["detail"])
    if data["cuda"]["gpu"]:
        table.add_row("gpu", data["cuda"]["gpu"])
    for name, ver in data["packages"].items():
        table.add_row(name, ver or "not installed")
    Console().print(table)
