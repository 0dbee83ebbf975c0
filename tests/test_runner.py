"""The one per-day runner (volfast.pipeline.runner): reuse under the freshness verdict with its reason, a
failing day reported (its tables cleared) while the others go on, ``on_day`` as days finish, ``force``,
and an executor that receives only the days that must run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from volfast.errors import VolfastError
from volfast.io.freshness import Freshness
from volfast.pipeline.runner import DayJob, run_days, run_one

DAYS = [dt.date(2024, 3, d) for d in (4, 5, 6, 7)]


class _Hooks:
    """Day 5 is up to date, day 6 fails in ``run``, day 7's check raises; every call is logged."""

    def __init__(self) -> None:
        self.log: list[tuple[str, dt.date]] = []
        self.cleared: list[tuple[dt.date, str, str]] = []

    def job(self) -> DayJob[dt.date, dict[str, Any]]:
        return DayJob(check=self.check, run=self.run, reused=self.reused, failed=self.failed)

    def check(self, d: dt.date) -> Freshness:
        self.log.append(("check", d))
        if d.day == 7:
            raise OSError(f"input of {d} unreadable")
        if d.day == 5:
            return Freshness(True, "up to date")
        return Freshness(False, "settings changed: x 1 -> 2")

    def run(self, d: dt.date, why: str) -> dict[str, Any]:
        self.log.append(("run", d))
        if d.day == 6:
            raise VolfastError(f"day {d} is corrupt")
        return {"date": d, "status": "ok", "why": why}

    def reused(self, d: dt.date, f: Freshness) -> dict[str, Any]:
        return {"date": d, "status": "skipped", "why": f.reason}

    def failed(self, d: dt.date, exc: BaseException, why: str) -> dict[str, Any]:
        self.cleared.append((d, str(exc), why))
        return {"date": d, "status": "failed", "error": str(exc), "why": why}


def test_serial_days_reuse_run_and_fail_independently(tmp_path: Path) -> None:
    h = _Hooks()
    (tmp_path / "x").mkdir()
    leftover = tmp_path / "x" / ".part-0.parquet.abc.tmp"  # a killed run's temporary file
    leftover.write_bytes(b"half")
    seen: list[dt.date] = []
    reps = run_days(DAYS, h.job(), on_day=lambda r: seen.append(r["date"]), temp_root=tmp_path)
    assert not leftover.exists()
    assert seen == DAYS and [r["date"] for r in reps] == DAYS
    assert [r["status"] for r in reps] == ["ok", "skipped", "failed", "failed"]
    assert reps[0]["why"] == "settings changed: x 1 -> 2" and reps[1]["why"] == "up to date"
    # the failing day is cleared with the reason it ran; a day whose check raised, with none
    assert h.cleared == [
        (DAYS[2], "day 2024-03-06 is corrupt", "settings changed: x 1 -> 2"),
        (DAYS[3], "input of 2024-03-07 unreadable", ""),
    ]
    assert ("run", DAYS[1]) not in h.log  # reused: never run
    # force: no check at all, every day runs and says why
    h = _Hooks()
    reps = run_days(DAYS[:2], h.job(), force=True)
    assert [r["why"] for r in reps] == ["--force", "--force"] and all(k == "run" for k, _ in h.log)
    assert run_one(_Hooks().job(), DAYS[1])["status"] == "skipped"


def test_executor_gets_only_the_days_that_must_run() -> None:
    h = _Hooks()
    sent: list[dt.date] = []

    def executor(items: Any, work: Any, emit: Any) -> None:  # e.g. a process pool, in reverse order
        sent.extend(items)
        for item in reversed(items):
            emit(work(item))

    reps = run_days(DAYS, h.job(), executor=executor, key=lambda r: r["date"])
    assert sent == [DAYS[0], DAYS[2]]  # day 5 reused and day 7 failed in this process
    assert [r["status"] for r in reps] == ["ok", "skipped", "failed", "failed"]
    assert [k for k, d in h.log if d == DAYS[0]] == ["check", "run"]  # checked once, in the parent
    assert reps[0]["why"] == "" and reps[2]["error"] == "day 2024-03-06 is corrupt"


def test_commands_run_their_days_through_the_runner(monkeypatch, tmp_path: Path) -> None:
    """snapshot_days and surfaces_days hand their days to run_days (run_build too: test_pipeline's builds
    report reused days through it)."""
    import volfast.pipeline.runner as runner
    from volfast.snapshot.run import snapshot_days
    from volfast.surface.run import surfaces_days

    calls: list[int] = []

    def spy(items: Any, job: Any, **kw: Any) -> list[Any]:
        calls.append(len(items))
        return []

    monkeypatch.setattr(runner, "run_days", spy)
    snapshot_days(tmp_path, ["2024-03-04"], tmp_path / "o")
    (tmp_path / "snaps" / "date=2024-03-04").mkdir(parents=True)
    surfaces_days(tmp_path / "snaps", tmp_path / "s")
    assert calls == [1, 1]
