"""Progress display for a build (rich): days done, days per minute, time left."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["BuildProgress"]


class BuildProgress:
    """A rich progress bar over days, fed with each day's result dict.

    The rate counts only days that did work (skipped days finish instantly and would make the estimate
    of the time left meaningless); the estimate is (days left) / rate.

    Parameters
    ----------
    total : int
        Days in the run.
    enabled : bool
        False: no display at all (tests, ``--quiet``).
    console : rich.console.Console, optional
    """

    def __init__(self, total: int, *, enabled: bool = True, console: Any = None) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.counts = {"ok": 0, "skipped": 0, "invalid": 0, "failed": 0}
        self._worked = 0
        self._t0 = time.monotonic()
        self._progress: Any = None
        self._task: Any = None
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("[bold]build[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("days"),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[eta]}"),
                TextColumn("{task.fields[tally]}"),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task("build", total=total, **self._fields())

    def rate_per_min(self) -> float | None:
        """Days that did work per minute so far (None before the first)."""
        dt = time.monotonic() - self._t0
        return None if self._worked == 0 or dt <= 0 else self._worked / dt * 60.0

    def eta_s(self) -> float | None:
        """Seconds left at the current rate."""
        r = self.rate_per_min()
        left = self.total - sum(self.counts.values())
        return None if r is None else left / r * 60.0

    def _fields(self) -> dict[str, str]:
        r, eta = self.rate_per_min(), self.eta_s()
        tally = f"ok {self.counts['ok']}  skipped {self.counts['skipped']}"
        if self.counts["invalid"]:
            tally += f"  [yellow]invalid {self.counts['invalid']}[/]"
        if self.counts["failed"]:
            tally += f"  [red]failed {self.counts['failed']}[/]"
        return {
            "rate": "-- days/min" if r is None else f"{r:.1f} days/min",
            "eta": "ETA --" if eta is None else f"ETA {_fmt_s(eta)}",
            "tally": tally,
        }

    def __enter__(self) -> BuildProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, result: dict[str, Any]) -> None:
        """Count one finished day."""
        st = result.get("status", "failed")
        self.counts[st if st in self.counts else "failed"] += 1
        if not result.get("skipped", False):
            self._worked += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, **self._fields())


def _fmt_s(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
