"""The one error base: every error volfast raises on purpose derives from :class:`VolfastError`.

Each area keeps its own subclass (``SnapshotError``, ``ConfigError``, ``DBNReadError``, ...) where it is
defined, mixing in ``ValueError`` or ``OSError`` where callers may already catch those. The CLI turns any
``VolfastError`` into one line, ``Error: <what> (<where>)``, and exit code 1 (2 for usage errors); other
exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

__all__ = ["UsageError", "VolfastError"]


class VolfastError(Exception):
    """Base of every error volfast raises on purpose; its message is one line a user can act on."""

    #: process exit code the CLI uses for this error (1: the work failed; 2: the command was misused)
    exit_code: int = 1


class UsageError(VolfastError, ValueError):
    """A command or function was called with settings that cannot work (exit code 2 in the CLI)."""

    exit_code = 2
