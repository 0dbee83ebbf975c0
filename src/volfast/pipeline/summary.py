"""The end-of-build summary: days ok, skipped, invalid (with reasons), failed (error, file, how to re-run)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BuildSummary", "rerun_command"]


def rerun_command(base: Sequence[str], dates: Sequence[str]) -> str:
    """The shell command that re-runs just ``dates``: ``base`` (the build's own arguments, without dates)
    plus one ``--date`` per day. Days without a matching manifest are redone without ``--force``."""
    args = list(base)
    for d in dates:
        args += ["--date", d]
    return shlex.join(args)


@dataclass
class BuildSummary:
    """What a build did, day by day (the results are the small dicts of :func:`~volfast.pipeline.run_day`)."""

    results: list[dict[str, Any]]
    command: list[str]  # the build's arguments without --date/--from/--to, to re-run some days
    executor: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False
    not_run: list[str] = field(default_factory=list)  # days not reached before an interrupt
    write_error: str | None = None  # the summary file could not be written (read-only or full folder)

    def by_status(self, status: str) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("status") == status]

    @property
    def ok(self) -> list[dict[str, Any]]:
        return self.by_status("ok")

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return self.by_status("skipped")

    @property
    def invalid(self) -> list[dict[str, Any]]:
        return self.by_status("invalid")

    @property
    def failed(self) -> list[dict[str, Any]]:
        return self.by_status("failed")

    def rerun(self) -> str | None:
        """Command that redoes the failed days (and the ones an interrupt left), or None."""
        days = sorted({r["date"] for r in self.failed} | set(self.not_run))
        return rerun_command(self.command, days) if days else None

    def peak_rss_mb(self) -> float | None:
        v = [
            r["peak_rss_mb"]
            for r in self.results
            if r.get("peak_rss_mb") is not None and not r.get("skipped")
        ]
        return max(v) if v else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": {s: len(self.by_status(s)) for s in ("ok", "skipped", "invalid", "failed")},
            "interrupted": self.interrupted,
            "not_run": list(self.not_run),
            "seconds": round(self.seconds, 3),
            "executor": dict(self.executor),
            "peak_rss_mb": self.peak_rss_mb(),
            "rerun": self.rerun(),
            "days": sorted(self.results, key=lambda r: r["date"]),
        }

    def render(self, console: Any = None) -> None:
        """Print the summary with rich."""
        from rich.console import Console

        con = console or Console(stderr=True)
        n_run = sum(1 for r in self.results if not r.get("skipped"))
        rate = f", {n_run / self.seconds * 60:.1f} days/min" if self.seconds > 0 and n_run else ""
        ex = self.executor
        where = (
            f"{ex.get('kind')}: {ex.get('workers')} worker(s) x {ex.get('threads_per_worker')} thread(s)"
            if ex.get("workers")
            else "nothing to run"
        )
        con.print(
            f"[bold]build[/] {len(self.ok)} ok, {len(self.skipped)} skipped (already done), "
            f"{len(self.invalid)} invalid, {len(self.failed)} failed in {self.seconds:.1f} s{rate} ({where})"
        )
        peak = self.peak_rss_mb()
        if peak is not None:
            con.print(f"peak worker memory (RSS): {peak:.0f} MiB")
        # Plain lines, not a table: paths and errors stay whole, to copy and paste.
        if self.invalid:
            con.print("[yellow]invalid days[/]:")
            for r in sorted(self.invalid, key=lambda r: r["date"]):
                why = "; ".join(r.get("reasons") or ["(no reason recorded)"])
                con.print(f"  {r['date']}  {why}", markup=False, highlight=False, soft_wrap=True)
        if self.failed:
            con.print("[red]failed days[/]:")
            for r in sorted(self.failed, key=lambda r: r["date"]):
                con.print(
                    f"  {r['date']}  {r.get('error_type')}: {r.get('error')}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
                if r.get("file"):
                    con.print(f"      file: {r['file']}", markup=False, highlight=False, soft_wrap=True)
        if self.interrupted:
            con.print(
                f"[yellow]interrupted[/]: {len(self.not_run)} day(s) not finished; no partial output left "
                "and the same command resumes"
            )
        cmd = self.rerun()
        if cmd:
            con.print("re-run just those days with:")
            con.print(cmd, markup=False, highlight=False, soft_wrap=True)
