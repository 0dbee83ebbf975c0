"""Access to the compiled extension ``volfast._core`` with a readable error when it is missing."""

from __future__ import annotations

import os
from types import ModuleType

try:  # pragma: no cover - exercised implicitly by every test
    # The pybind11 extension ships no .pyi type declarations: mypy sees it as a missing module (``Any``).
    import volfast._core as _core_module

    _IMPORT_ERROR: BaseException | None = None
except ImportError as exc:  # pragma: no cover - only on broken installs
    _core_module = None
    _IMPORT_ERROR = exc

BUILD_HINT = (
    "The compiled core volfast._core is not available ({err}). Build it with "
    "`python -m pip install .` from the source tree (needs a C++17 compiler and CMake), or for development "
    "`python -m pip install --no-build-isolation -e .`."
)


def core_available() -> bool:
    return _core_module is not None


def core() -> ModuleType:
    """Return ``volfast._core`` or raise ImportError explaining how to build it."""
    if _core_module is None:
        raise ImportError(BUILD_HINT.format(err=_IMPORT_ERROR))
    return _core_module


def resolve_threads(threads: int | None) -> int:
    """Thread count for the C++ core: the argument, else ``VOLFAST_NUM_THREADS``, else 0 (all cores)."""
    if threads is None:
        env = os.environ.get("VOLFAST_NUM_THREADS", "").strip()
        if not env:
            return 0
        try:
            threads = int(env)
        except ValueError:
            raise ValueError(f"VOLFAST_NUM_THREADS must be an integer, got {env!r}") from None
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 means all cores), got {threads}")
    return int(threads)
