"""The one error base: every error volfast raises on purpose derives from :class:`VolfastError`.

Each area keeps its own subclass (``SnapshotError``, ``ConfigError``, ``DBNReadError``, ...) where it is
defined, mixing in ``ValueError`` or ``OSError`` where callers may already catch those. The CLI turns any
``VolfastError`` into one line, ``Error: <what> (<where>)`` (:func:`error_line`), and exit code 1 (2 for usage
errors); any other exception is a bug: one line saying so, and its traceback only with ``--debug``.
"""

from __future__ import annotations

import re

__all__ = ["UsageError", "VolfastError", "error_line"]


class VolfastError(Exception):
    """Base of every error volfast raises on purpose; its message is one line a user can act on.

    Parameters
    ----------
    *args
        The message (what is wrong), as for ``Exception``.
    where : str, optional
        The file, row, setting or option it concerns. Without it, a leading ``"<path>: "`` or
        ``"<setting>: "`` of the message is taken as the place (the older messages' form).
    """

    #: process exit code the CLI uses for this error (1: the work failed; 2: the command was misused)
    exit_code: int = 1

    def __init__(self, *args: object, where: str | None = None) -> None:
        super().__init__(*args)
        self.where = where


class UsageError(VolfastError, ValueError):
    """A command or function was called with settings that cannot work (exit code 2 in the CLI)."""

    exit_code = 2


# "<where>: <what>": a path (has a slash, or a file name with an extension), or a setting / option name
_PLACE = re.compile(
    r"^(?P<where>(?:\S*[/\\]\S*|[\w.\-]+\.(?:toml|json|csv|parquet|dbn|zst|html|pt)|--?[\w\-]+|[A-Za-z_][\w.]*))"
    r": (?P<what>.+)$"
)
# what narrows the place further: "[table] ...", "byte 812: ...", "row 3: ..."
_SECTION = re.compile(r"^(?P<section>\[[\w.\-]+\]|(?:byte|offset|row|line|record) \d+):? (?P<what>.+)$")


def error_line(exc: BaseException) -> str:
    """``"<what> (<where>)"`` of an error, on one line: the ``where`` it was given, or else a leading
    ``"<path>: "`` / ``"<setting>: "`` (and a ``[table]`` after it) moved to the end; just ``<what>`` when the
    message names no place."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    where = getattr(exc, "where", None)
    if where is not None and msg.startswith(f"{where}: "):  # str(exc) keeps the place first for logs
        msg = msg[len(where) + 2 :]
    elif where is None:
        m = _PLACE.match(msg)
        if m is not None:
            where, msg = m["where"], m["what"]
    if where is not None:
        while (s := _SECTION.match(msg)) is not None:  # "[snapshot] unknown tz" -> where "b.toml [snapshot]"
            where, msg = f"{where} {s['section']}", s["what"]
        return f"{msg} ({where})"
    return msg
