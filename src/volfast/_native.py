"""Access to the compiled extension ``volfast._core`` with a readable error when it is missing, and the
choice of its SIMD level.

The hot kernels of ``_core`` exist once per SIMD level (``scalar``: baseline x86-64 or any other CPU;
``avx2``: AVX2 + FMA; ``avx512``: AVX-512 F/DQ/VL/BW) and the best level this CPU supports runs by default.
``VOLFAST_SIMD=scalar|avx2|avx512`` (or ``auto``) in the environment forces one when volfast is imported; an
unknown level, or one this CPU or build cannot run, makes the first use of the core raise
:class:`SimdLevelError` (one line naming the setting) instead of silently running another level.
"""

from __future__ import annotations

import os
from types import ModuleType

from volfast.errors import VolfastError

try:  # pragma: no cover - exercised implicitly by every test
    import volfast._core as _core_module

    _IMPORT_ERROR: BaseException | None = None
except ImportError as exc:  # pragma: no cover - only on broken installs
    _core_module = None  # type: ignore[assignment]
    _IMPORT_ERROR = exc

#: the SIMD levels, narrowest first
SIMD_LEVELS = ("scalar", "avx2", "avx512")


class SimdLevelError(VolfastError, ValueError):
    """``VOLFAST_SIMD`` (or :func:`set_simd_level`) names a level that is unknown or that this CPU or build
    cannot run."""


def _apply_simd_env() -> SimdLevelError | None:
    want = os.environ.get("VOLFAST_SIMD", "").strip().lower()
    if _core_module is None or not want:
        return None
    try:
        _core_module.set_simd_level(want)
    except ValueError as exc:
        return SimdLevelError(f"VOLFAST_SIMD={want}: {exc}")
    return None


_SIMD_ERROR = _apply_simd_env()

BUILD_HINT = (
    "The compiled core volfast._core is not available ({err}). Build it with "
    "`python -m pip install .` from the source tree (needs a C++17 compiler and CMake), or for development "
    "`python -m pip install --no-build-isolation -e .`."
)


def core_available() -> bool:
    return _core_module is not None


def core() -> ModuleType:
    """Return ``volfast._core`` or raise ImportError explaining how to build it (or :class:`SimdLevelError`
    when ``VOLFAST_SIMD`` asked for a level that cannot run here)."""
    if _core_module is None:
        raise ImportError(BUILD_HINT.format(err=_IMPORT_ERROR))
    if _SIMD_ERROR is not None:
        raise _SIMD_ERROR
    return _core_module


def simd_level() -> str:
    """The SIMD level whose kernels the C++ core runs now: ``"scalar"``, ``"avx2"`` or ``"avx512"``."""
    return str(core().simd_level())


def simd_levels() -> dict[str, dict[str, bool]]:
    """Every SIMD level with whether this build holds its kernels (``compiled``) and this CPU can run them
    (``supported``)."""
    return {k: dict(v) for k, v in core().simd_levels().items()}


def set_simd_level(name: str) -> str:
    """Run the C++ kernels of level ``name`` (``"auto"``, ``"scalar"``, ``"avx2"``, ``"avx512"``) from now on,
    in this process; returns the level in use. Clears an error left by ``VOLFAST_SIMD`` when it succeeds.

    Raises
    ------
    SimdLevelError
        ``name`` is unknown, or this CPU or build cannot run it (the level in use is then unchanged).
    """
    global _SIMD_ERROR
    if _core_module is None:
        raise ImportError(BUILD_HINT.format(err=_IMPORT_ERROR))
    try:
        level = str(_core_module.set_simd_level(str(name).strip().lower()))
    except ValueError as exc:
        raise SimdLevelError(str(exc)) from None
    _SIMD_ERROR = None
    return level


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
