"""Issue 14: every error a user can cause is one line, ``Error: ...``, exit code 2 (usage) or 1 (failure), no
traceback unless ``--debug``; nothing is lost on the way (the build summary of what finished)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from volfast.cli import main

DAY = dt.date(2024, 3, 4)


@pytest.fixture(scope="module")
def synth1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from volfast.synth import generate_days

    out = tmp_path_factory.mktemp("synth1")
    generate_days(DAY, 1, out, seed=5, scale="small")
    return out


def _run(args: list[str], **kw: object) -> SimpleNamespace:
    r = CliRunner().invoke(main, args, **kw)
    return SimpleNamespace(code=r.exit_code, out=r.output, exc=r.exception)


def _one_error_line(out: str) -> str:
    assert "Traceback" not in out, out
    lines = [ln for ln in out.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        (["--tz", "Mars/Olympus"], "Error: unknown time zone 'Mars/Olympus' (tz)"),
        (["--date", "2024-02-30"], "Error: date must be a real date as YYYY-MM-DD or YYYYMMDD, got '2024-02"),
        (["--lookback", "soon"], "Error: cannot parse 'soon'; use e.g. 10m, 90s, 1h, 250ms (lookback)"),
        (["--cut", "26:00"], "Error: cannot parse '26:00'; use HH:MM[:SS] or an ISO datetime (cut)"),
    ],
)
def test_snapshot_usage_errors_are_one_line_exit_2(synth1: Path, tmp_path: Path, extra, what) -> None:
    r = _run(["snapshot", "--data", str(synth1), "--out", str(tmp_path / "o"), *extra])
    assert r.code == 2, r.out
    assert _one_error_line(r.out).startswith(what), r.out
    assert not (tmp_path / "o").exists()  # checked before any day ran


def test_build_usage_errors_and_config_values_checked_when_read(synth1: Path, tmp_path: Path) -> None:
    r = _run(["build", "--data", str(synth1), "--out", str(tmp_path / "o"), "--date", "2024-02-30"])
    assert r.code == 2 and _one_error_line(r.out).startswith("Error: date must be a real date"), r.out
    cfg = tmp_path / "b.toml"
    cfg.write_text('[snapshot]\ntz = "Mars/Olympus"\n')
    r = _run(["build", "--data", str(synth1), "--out", str(tmp_path / "o"), "--config", str(cfg)])
    assert r.code == 2, r.out
    assert _one_error_line(r.out) == (
        "Error: unknown time zone 'Mars/Olympus' (tz); use an IANA name such as America/New_York or UTC "
        f"({cfg} [snapshot])"
    )
    cfg.write_text("[surfaces]\nmax_rmse = -2.0\n")
    r = _run(["build", "--data", str(synth1), "--out", str(tmp_path / "o"), "--config", str(cfg)])
    line = _one_error_line(r.out)
    assert r.code == 2 and line.startswith("Error: max_rmse must be > 0") and line.endswith(f"({cfg} [surfaces])")
    assert not (tmp_path / "o").exists()


def test_debug_shows_the_traceback(synth1: Path, tmp_path: Path) -> None:
    from volfast.errors import UsageError

    r = _run(["--debug", "snapshot", "--data", str(synth1), "--out", str(tmp_path / "o"), "--tz", "X/Y"])
    assert r.code != 0 and isinstance(r.exc, UsageError)


def test_read_only_output_keeps_the_summary_of_what_finished(
    synth1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every day's write fails and so does the summary file: the summary is still shown (one line per day)
    and the CLI says in one line that the summary file could not be written; exit 1, no traceback."""
    import errno

    import volfast.io.output as output
    import volfast.pipeline.build as build

    real = output.atomic_path

    def read_only(final):  # what a read-only folder does to every write after the config
        if Path(final).name != "build-config.json":
            raise PermissionError(errno.EROFS, "Read-only file system", str(final))
        return real(final)

    monkeypatch.setattr(output, "atomic_path", read_only)
    data = tmp_path / "dbn"
    shutil.copytree(synth1, data)
    out = tmp_path / "o"
    args = ["build", "--data", str(data), "--out", str(out), "--executor", "serial", "--stages", "snapshot"]
    r = _run([*args, "--quiet"])
    assert r.code == 1, r.out
    line = _one_error_line(r.out)
    assert line.startswith(f"Error: cannot write the build summary {out / build.SUMMARY_NAME}"), line
    assert "Read-only file system" in line
    assert "0 ok, 0 skipped (already done), 0 invalid, 1 failed" in r.out  # the summary, rendered
    # the library call returns the same summary with the reason
    s = build.run_build(data, out, config=build.BuildConfig(stages=("snapshot",)).replace(
        executor={"kind": "serial"}), progress=False)  # fmt: skip
    assert s.write_error and len(s.failed) == 1 and "Read-only file system" in s.failed[0]["error"]


def test_unwritable_output_folder_fails_before_any_day(
    synth1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import volfast.io.output as output

    def full(final):
        raise OSError(errno.ENOSPC, "No space left on device", str(final))

    monkeypatch.setattr(output, "atomic_path", full)
    args = ["build", "--data", str(synth1), "--out", str(tmp_path / "o"), "--quiet", "--executor", "serial"]
    r = _run(args)
    assert r.code == 1 and "No space left on device" in _one_error_line(r.out), r.out


def test_download_without_network_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import volfast.download as dl

    class Offline:
        class metadata:  # noqa: N801 - the Databento client's attribute
            @staticmethod
            def get_cost(**kw):
                raise ConnectionError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("DATABENTO_API_KEY", "db-" + "x" * 29)
    monkeypatch.setattr(dl, "make_client", lambda key=None: Offline())
    r = _run(["download", "--start", "2024-03-04", "--end", "2024-03-04", "--out", str(tmp_path), "--yes"])
    assert r.code == 1, r.out
    line = _one_error_line(r.out)
    assert line.startswith("Error: cannot reach Databento for the cost estimate of GLBX.MDP3 definition")
    assert "ConnectionError" in line


def test_every_purposeful_error_derives_from_the_base() -> None:
    """Each area's error class (imported where it is defined) derives from volfast.VolfastError."""
    import importlib
    import inspect
    import pkgutil

    import volfast
    from volfast.errors import VolfastError

    skip = ("volfast.kernels", "volfast.report", "volfast.models", "volfast.agent", "volfast.backtest")
    missing = []
    for m in pkgutil.walk_packages(volfast.__path__, "volfast."):
        if m.name.startswith(skip) or m.name.endswith("__main__"):
            continue
        mod = importlib.import_module(m.name)
        for name, obj in vars(mod).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Exception)
                and obj.__module__ == mod.__name__
                and not issubclass(obj, VolfastError)
                and not issubclass(obj, Warning)
            ):
                missing.append(f"{mod.__name__}.{name}")
    assert missing == []
    dec = importlib.import_module("volfast.kernels.mlp_decoder")
    assert issubclass(dec.DecoderTooLarge, VolfastError)


def test_json_summary_is_valid_after_an_ok_build(synth1: Path, tmp_path: Path) -> None:
    r = _run(["build", "--data", str(synth1), "--out", str(tmp_path / "o"), "--quiet", "--executor", "serial",
              "--stages", "snapshot"])  # fmt: skip
    assert r.code == 0, r.out
    s = json.loads((tmp_path / "o" / "build-summary.json").read_text())
    assert s["counts"]["ok"] == 1 and s["interrupted"] is False


def test_one_status_table_documented_from_the_enums() -> None:
    """The README's status-code table is the one status_table() renders from the IV / forward enums."""
    from volfast.status import status_table

    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.is_file():
        pytest.skip("no README beside the tests")
    text = readme.read_text()
    keep = ("| `implied_vol`", "| `implied_forward`")
    from volfast.forward.core import ForwardStatus
    from volfast.iv.black76 import IVStatus

    rows = [r for r in status_table().splitlines() if r.startswith(keep)]
    from volfast.forward import ForwardStatus
    from volfast.iv import IVStatus

    assert len(rows) == len(IVStatus) + len(ForwardStatus)
    missing = [r for r in rows if r not in text]
    assert missing == []


def test_surfaces_bad_date_is_a_usage_error(synth1: Path, tmp_path: Path) -> None:
    snaps = tmp_path / "snaps"
    r = _run(["snapshot", "--data", str(synth1), "--out", str(snaps)])
    assert r.code == 0, r.out
    r = _run(["surfaces", "--snapshots", str(snaps), "--out", str(tmp_path / "s"), "--date", "2024-13-01"])
    assert r.code == 2 and _one_error_line(r.out).startswith("Error: date must be a real date"), r.out


def test_status_table_success_column_matches_the_fit_masks() -> None:
    """What the table calls a success is exactly what ``ForwardFit.ok`` accepts."""
    from volfast.forward import core as fcore
    from volfast.status import STATUS_ENUMS

    ok = dict((fn, names) for fn, _, names in STATUS_ENUMS)["implied_forward"]
    assert {int(fcore.ForwardStatus[n]) for n in ok} == set(fcore._SUCCESS)


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        ("VolfastError('/d/b.toml: [train] lr must be > 0')", "lr must be > 0 (/d/b.toml [train])"),
        ("VolfastError('lookback: cannot parse x')", "cannot parse x (lookback)"),
        ("VolfastError('f.dbn.zst: byte 812: checksum mismatch')", "checksum mismatch (f.dbn.zst byte 812)"),
        ("VolfastError('bad value', where='b.toml [train] lr')", "bad value (b.toml [train] lr)"),
        ("VolfastError('date must be a real date')", "date must be a real date"),
        ("DBNReadError('/x/a.dbn', 'truncated', 3)", "truncated (/x/a.dbn at record 3)"),
    ],
)
def test_error_line_is_what_then_where(exc: str, line: str) -> None:
    """Issue 14: the CLI's line reads ``Error: <what> (<where>)``."""
    from volfast.errors import VolfastError, error_line
    from volfast.io.dbn import DBNReadError

    assert error_line(eval(exc, {"VolfastError": VolfastError, "DBNReadError": DBNReadError})) == line


def test_unexpected_exception_is_one_line_naming_a_bug_and_debug_shows_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An exception volfast did not raise on purpose is a bug: one line that says so (exit 1); its
    traceback only with --debug."""
    import volfast.info

    def broken() -> dict[str, object]:
        raise KeyError("cpu")

    monkeypatch.setattr(volfast.info, "collect_info", broken)
    r = _run(["info"])
    assert r.code == 1, r.out
    line = _one_error_line(r.out)
    assert line.startswith("Error: unexpected KeyError: 'cpu' (a bug in volfast; run `volfast --debug"), line
    r = _run(["--debug", "info"])
    assert r.code != 0 and isinstance(r.exc, KeyError)


@pytest.mark.parametrize(
    ("args", "code", "start"),
    [
        (["train", "--model", "pca", "--data", "{d}", "--out", "{o}", "--set", "train.lr=-1"], 2, "Error: "),
        (["train", "--model", "pca", "--data", "{d}", "--out", "{o}", "--set", "bogus"], 2, "Error: override"),
        (["evaluate", "--run", "{o}"], 1, "Error: "),
        (["report", "{o}/nothing"], 1, "Error: not a folder; produce a run with"),
        (["stress", "--run", "{o}", "--out", "{o}/s"], 1, "Error: no encoder stage"),
    ],
)
def test_model_commands_errors_are_one_line(synth1: Path, tmp_path: Path, args, code, start) -> None:  # type: ignore[no-untyped-def]
    """train / evaluate / report / stress: what used to be caught as a bare ValueError (or not at all) is one
    line with the command's exit code."""
    (tmp_path / "o").mkdir()
    r = _run([a.format(d=synth1, o=tmp_path / "o") for a in args])
    assert r.code == code, r.out
    assert _one_error_line(r.out).startswith(start), r.out


def test_backtest_and_hedge_config_values_are_usage_errors(tmp_path: Path) -> None:
    """A bad --set value is found when the config is read: exit 2, one line naming the key."""
    (tmp_path / "o").mkdir()
    r = _run(["backtest", "--data", str(tmp_path), "--out", str(tmp_path / "b"), "--set", "backtest.treshold=2"])
    assert r.code == 2 and "unknown keys ['treshold']" in _one_error_line(r.out), r.out
    r = _run(["hedge", "--run", str(tmp_path / "o"), "--data", str(tmp_path), "--out", str(tmp_path / "h"),
              "--set", "coverage=yes"])  # fmt: skip
    assert r.code == 2 and _one_error_line(r.out) == "Error: expected float, got 'yes' (config [hedge] coverage)", r.out


def test_status_table_gives_every_code_a_meaning() -> None:
    """No empty meaning cell: members documented by trailing or preceding ``#:`` comments are both read."""
    from volfast.status import status_table

    rows = [r for r in status_table().splitlines()[2:]]
    assert rows and all(r.rstrip(" |").split("|")[-1].strip() for r in rows), rows
