"""volfast download against a fake Databento client with the real client's method names and arguments."""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from volfast.cli import main as cli
from volfast.download import (
    DownloadError,
    DownloadRequest,
    day_file_name,
    download,
    estimate_cost,
    make_client,
)
from volfast.io.dbn import DBNFile, file_sha256, find_day_files, list_dates, read_sha256_sidecar

KEY = "db-SECRETKEY1234567890"
REQ = DownloadRequest(
    dataset="GLBX.MDP3",
    symbols=("ES.OPT", "ES.FUT"),
    schemas=("definition", "mbp-1"),
    start=dt.date(2024, 1, 1),  # a holiday
    end=dt.date(2024, 1, 3),
)


class FakeClient:
    """``metadata.get_cost`` and ``timeseries.get_range(..., path=)`` like ``databento.Historical``.

    ``faults[(YYYYMMDD, schema)]`` is a list consumed one per request: ``"error"`` (raise after writing half
    a file, as a dropped stream does), ``"truncate"`` (return normally with half a file), ``"key"`` (raise an
    error whose text contains the API key), ``None`` (succeed).
    """

    def __init__(self, writer, faults=None) -> None:
        self.writer = writer
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.calls: list[dict] = []
        self.cost_calls: list[dict] = []
        self.metadata = self
        self.timeseries = self

    def get_cost(
        self,
        dataset,
        start,
        end=None,
        mode=None,
        symbols=None,
        schema="trades",
        stype_in="raw_symbol",
        limit=None,
    ) -> float:
        self.cost_calls.append(
            dict(dataset=dataset, start=start, end=end, symbols=symbols, schema=schema, stype_in=stype_in)
        )
        return {"definition": 1.25, "mbp-1": 40.5}[schema]

    def get_range(
        self,
        dataset,
        start,
        end=None,
        symbols=None,
        schema="trades",
        stype_in="raw_symbol",
        stype_out="instrument_id",
        limit=None,
        path=None,
    ):
        self.calls.append(
            dict(
                dataset=dataset,
                start=start,
                end=end,
                symbols=symbols,
                schema=schema,
                stype_in=stype_in,
                path=path,
            )
        )
        p = Path(path)
        if p.exists():  # databento's validate_file_write_path
            raise FileExistsError(path)
        day = start[:10].replace("-", "")
        fault = (self.faults.get((day, schema)) or [None]).pop(0) if (day, schema) in self.faults else None
        t0 = int(dt.datetime.fromisoformat(start).timestamp() * 1e9)
        recs = (
            self.writer.mbp1_records(t0 + np.arange(5) * 10**9, [7] * 5, [100 * 10**9] * 5, [101 * 10**9] * 5)
            if schema == "mbp-1"
            else b""
        )
        tmp = self.writer.write(p.name, recs, schema=schema, dataset=dataset, start=t0)
        assert tmp == p
        if fault in ("error", "truncate"):
            p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
            if fault == "error":
                raise ConnectionError("connection reset by peer")
        if fault == "key":
            raise RuntimeError(f"401 Unauthorized for key {KEY}")
        return None


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    d = tmp_path / "dl"
    d.mkdir()
    return d


@pytest.fixture()
def fake(out: Path, dbn_writer):
    """A FakeClient factory writing into ``out`` with conftest's DBN writer."""
    return lambda out, faults=None: FakeClient(type(dbn_writer)(out), faults)


def test_fake_has_the_real_client_signatures() -> None:
    from databento.historical.api.metadata import MetadataHttpAPI
    from databento.historical.api.timeseries import TimeseriesHttpAPI

    for real, ours in (
        (TimeseriesHttpAPI.get_range, FakeClient.get_range),
        (MetadataHttpAPI.get_cost, FakeClient.get_cost),
    ):
        assert list(inspect.signature(real).parameters) == list(inspect.signature(ours).parameters)


def test_layout_is_what_build_reads_and_holidays_are_skipped(fake, out: Path) -> None:
    assert day_file_name("GLBX.MDP3", dt.date(2024, 1, 2), "mbp-1") == "glbx-mdp3-20240102.mbp-1.dbn.zst"
    assert REQ.days() == [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    c = fake(out)
    rep = download(c, REQ, out, sleep=lambda s: None)
    assert [f.status for f in rep.files] == ["downloaded"] * 4
    assert list_dates(out) == [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    files = find_day_files(out, "2024-01-02")
    assert files.quotes() == ("mbp-1", [out / "glbx-mdp3-20240102.mbp-1.dbn.zst"])
    assert files.definitions() == [out / "glbx-mdp3-20240102.definition.dbn.zst"]
    assert DBNFile(files.quotes()[1][0]).schema == "mbp-1" and rep.files[1].records == 5
    first = c.calls[0]
    assert (first["start"], first["end"]) == ("2024-01-02T00:00:00+00:00", "2024-01-03T00:00:00+00:00")
    assert first["symbols"] == ["ES.OPT", "ES.FUT"] and first["stype_in"] == "parent"
    # the day files and, beside each, the sha256 computed while verifying it (builds then need not hash it)
    names = sorted(f.path.name for f in rep.files)
    assert sorted(p.name for p in out.iterdir()) == sorted(names + [n + ".sha256.json" for n in names])
    for f in rep.files:
        assert read_sha256_sidecar(f.path) == file_sha256(f.path)
        assert DBNFile(f.path).sha256 == file_sha256(f.path)


def test_cost_estimate_is_one_get_cost_per_schema_over_the_range(fake, out: Path) -> None:
    c = fake(out)
    assert estimate_cost(c, REQ) == {"definition": 1.25, "mbp-1": 40.5}
    assert [k["schema"] for k in c.cost_calls] == ["definition", "mbp-1"]
    assert c.cost_calls[0]["start"] == "2024-01-01T00:00:00+00:00"
    assert c.cost_calls[0]["end"] == "2024-01-04T00:00:00+00:00"  # exclusive end: the day after --end
    assert all(k["stype_in"] == "parent" and k["symbols"] == ["ES.OPT", "ES.FUT"] for k in c.cost_calls)


def test_failures_are_retried_reported_and_resumed(fake, out: Path) -> None:
    waits: list[float] = []
    faults = {
        ("20240102", "mbp-1"): ["error", None],  # dropped stream, then fine
        ("20240103", "mbp-1"): ["truncate", "truncate", "truncate"],  # always a truncated file
        ("20240103", "definition"): ["key"] * 3,
    }
    c = fake(out, faults)
    rep = download(c, REQ, out, attempts=3, backoff_s=0.5, sleep=waits.append, key=KEY)
    st = {(f.day.isoformat(), f.schema): (f.status, f.attempts) for f in rep.files}
    assert st == {
        ("2024-01-02", "definition"): ("downloaded", 1),
        ("2024-01-02", "mbp-1"): ("downloaded", 2),
        ("2024-01-03", "definition"): ("failed", 3),
        ("2024-01-03", "mbp-1"): ("failed", 3),
    }
    assert waits == [0.5, 0.5, 1.0, 0.5, 1.0]
    bad = {f.schema: f.error for f in rep.failed}
    assert "truncated" in bad["mbp-1"] and "glbx-mdp3-20240103.mbp-1.dbn.zst" in bad["mbp-1"]
    assert KEY not in bad["definition"] and "<redacted>" in bad["definition"]
    # No final name holds a partial file and no temporary is left (each complete file has its sha256).
    assert sorted(p.name for p in out.iterdir()) == [
        "glbx-mdp3-20240102.definition.dbn.zst",
        "glbx-mdp3-20240102.definition.dbn.zst.sha256.json",
        "glbx-mdp3-20240102.mbp-1.dbn.zst",
        "glbx-mdp3-20240102.mbp-1.dbn.zst.sha256.json",
    ]
    # A re-run asks only for what is missing.
    c2 = fake(out)
    rep = download(c2, REQ, out, sleep=lambda s: None)
    assert [(f.status) for f in rep.files] == ["present", "present", "downloaded", "downloaded"]
    assert [k["start"][:10] for k in c2.calls] == ["2024-01-03", "2024-01-03"]


def test_interrupted_download_leftovers_are_discarded(fake, out: Path) -> None:
    (out / ".glbx-mdp3-20240102.mbp-1.dbn.zst.deadbeef0000.part").write_bytes(b"\x28\xb5\x2f\xfd half")
    (out / ".glbx-mdp3-20240102.mbp-1.dbn.zst.k3j2x9.tmp").write_bytes(b"\x28\xb5\x2f\xfd half")  # today's
    # A file under a final name that is not what was asked for (another schema) is fetched again.
    fake(out).writer.write("glbx-mdp3-20240102.definition.dbn.zst", b"", schema="ohlcv-1m")
    c = fake(out)
    rep = download(c, REQ, out, sleep=lambda s: None)
    assert [f.status for f in rep.files] == ["downloaded"] * 4
    assert not list(out.glob(".*"))
    assert DBNFile(out / "glbx-mdp3-20240102.definition.dbn.zst").schema == "definition"


def test_key_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)
    with pytest.raises(DownloadError, match="set DATABENTO_API_KEY"):
        make_client()
    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    client = make_client()
    assert type(client).__name__ == "Historical" and KEY not in repr(client)


def test_bad_requests() -> None:
    with pytest.raises(DownloadError, match="after end"):
        DownloadRequest("GLBX.MDP3", ("ES.OPT",), ("mbp-1",), dt.date(2024, 2, 1), dt.date(2024, 1, 1))
    with pytest.raises(DownloadError, match="no symbols"):
        DownloadRequest("GLBX.MDP3", (), ("mbp-1",), dt.date(2024, 1, 1), dt.date(2024, 1, 1))
    with pytest.raises(DownloadError, match="dataset must look like"):
        DownloadRequest("glbx", ("ES.OPT",), ("mbp-1",), dt.date(2024, 1, 1), dt.date(2024, 1, 1))


def test_cli_shows_cost_asks_and_downloads(fake, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import volfast.download as dl

    monkeypatch.setenv("DATABENTO_API_KEY", KEY)
    c = fake(out)
    monkeypatch.setattr(dl, "make_client", lambda key=None: c)
    args = [
        "download",
        "--dataset",
        "GLBX.MDP3",
        "--symbols",
        "ES.OPT",
        "ES.FUT",
        "--schema",
        "definition",
        "mbp-1",
        "--start",
        "2024-01-02",
        "--end",
        "2024-01-03",
        "--out",
        str(out),
        "--full-day",
    ]
    r = CliRunner().invoke(cli, args, input="n\n")
    assert r.exit_code == 1 and "cancelled" in r.output
    assert not c.calls and not list(out.iterdir())
    # the estimate shown before asking: one get_cost per schema over the whole request (the values, not text)
    assert [(k["schema"], k["start"][:10], k["end"][:10]) for k in c.cost_calls] == [
        ("definition", "2024-01-02", "2024-01-04"), ("mbp-1", "2024-01-02", "2024-01-04")
    ]  # fmt: skip
    r = CliRunner().invoke(cli, args, input="y\n")
    assert r.exit_code == 0, r.output
    assert len(c.calls) == 4 and c.calls[0]["symbols"] == ["ES.OPT", "ES.FUT"]
    assert KEY not in r.output
    stamp = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    r = CliRunner().invoke(cli, [*args, "--yes"])
    assert r.exit_code == 0 and len(c.calls) == 4  # every file present: nothing asked for again
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamp


# -- snapshot windows, dry runs, OPRA ------------------------------------------------------------------------
OPRA = DownloadRequest(
    dataset="OPRA.PILLAR",
    symbols=("SPY.OPT",),
    schemas=("definition", "cbbo-1m", "ohlcv-1d"),
    start=dt.date(2024, 3, 8),  # Friday; US clocks move on Sunday 10 March
    end=dt.date(2024, 3, 11),
)


def test_plan_asks_top_of_book_only_for_the_window_before_the_cut() -> None:
    from volfast.download import SnapshotWindow, plan_requests

    plan = plan_requests(OPRA, SnapshotWindow(cut="15:48", tz="America/New_York", lookback="10m"))
    assert [(p.day.day, p.schema) for p in plan] == [
        (d, s) for d in (8, 11) for s in ("definition", "cbbo-1m", "ohlcv-1d")
    ]
    by = {(p.day.day, p.schema): (p.start, p.end) for p in plan}
    # 15:38-15:48:01 New York: 20:38 UTC in EST (8 March), 19:38 UTC in EDT (11 March)
    assert by[(8, "cbbo-1m")] == ("2024-03-08T20:38:00+00:00", "2024-03-08T20:48:01+00:00")
    assert by[(11, "cbbo-1m")] == ("2024-03-11T19:38:00+00:00", "2024-03-11T19:48:01+00:00")
    # definitions (and schemas that are not top of book) keep the whole UTC day
    assert by[(8, "definition")] == ("2024-03-08T00:00:00+00:00", "2024-03-09T00:00:00+00:00")
    assert by[(11, "ohlcv-1d")] == ("2024-03-11T00:00:00+00:00", "2024-03-12T00:00:00+00:00")
    full = plan_requests(OPRA)  # no window: whole days for everything
    assert {(p.start[11:], p.end[11:]) for p in full} == {("00:00:00+00:00", "00:00:00+00:00")}


def test_windowed_download_and_cost(fake, out: Path) -> None:
    from volfast.download import SnapshotWindow

    win = SnapshotWindow(lookback="5m")
    req = DownloadRequest(
        dataset="GLBX.MDP3",
        symbols=("ES.OPT",),
        schemas=("definition", "mbp-1"),
        start=REQ.start,
        end=REQ.end,
    )
    c = fake(out)
    costs = estimate_cost(c, req, win)
    # definitions priced once over the range, the mbp-1 windows one by one (2 trading days)
    assert costs == {"definition": 1.25, "mbp-1": 81.0}
    assert [(x["schema"], x["start"], x["end"]) for x in c.cost_calls] == [
        ("definition", "2024-01-01T00:00:00+00:00", "2024-01-04T00:00:00+00:00"),
        ("mbp-1", "2024-01-02T20:43:00+00:00", "2024-01-02T20:48:01+00:00"),
        ("mbp-1", "2024-01-03T20:43:00+00:00", "2024-01-03T20:48:01+00:00"),
    ]
    rep = download(c, req, out, sleep=lambda s: None, window=win)
    assert [f.status for f in rep.files] == ["downloaded"] * 4
    got = [(x["schema"], x["start"], x["end"]) for x in c.calls]
    assert got[1] == ("mbp-1", "2024-01-02T20:43:00+00:00", "2024-01-02T20:48:01+00:00")
    assert got[0] == ("definition", "2024-01-02T00:00:00+00:00", "2024-01-03T00:00:00+00:00")
    assert find_day_files(out, dt.date(2024, 1, 3)).by_schema.keys() == {"definition", "mbp-1"}


def test_cli_dry_run_prints_the_plan_without_network_or_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json

    import volfast.download as dl

    monkeypatch.delenv("DATABENTO_API_KEY", raising=False)

    def no_network(key=None):
        raise AssertionError("a dry run must not make a client")

    monkeypatch.setattr(dl, "make_client", no_network)
    args = ["download", "--dataset", "OPRA.PILLAR", "--start", "2024-03-08", "--end", "2024-03-11"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "o"), "--dry-run"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.output.splitlines()]
    assert [x["schema"] for x in lines] == ["definition", "cbbo-1m"] * 2
    assert all(set(x) == {"dataset", "schema", "symbols", "stype_in", "start", "end"} for x in lines)
    assert lines[0]["symbols"] == ["SPY.OPT"] and lines[0]["stype_in"] == "parent"  # OPRA parent default
    assert lines[1]["start"] == "2024-03-08T20:38:00+00:00"
    assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "o"), "--dry-run", "--full-day"])
    assert json.loads(r.output.splitlines()[1])["start"] == "2024-03-08T00:00:00+00:00"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--symbols", "SPY"], "OPRA parent symbols name an underlying's options, like SPY.OPT; got SPY"),
        (["--lookback", "ten"], "snapshot window: lookback: cannot parse 'ten'"),
        (["--cut", "25:99"], "snapshot window:"),
    ],
)
def test_cli_download_bad_input_is_one_line(extra, message, tmp_path) -> None:
    args = ["download", "--dataset", "OPRA.PILLAR", "--start", "2024-03-08", "--end", "2024-03-08"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path), "--dry-run", *extra])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output
