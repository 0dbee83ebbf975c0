"""Quote snapshot: the C++ reducer against the pandas reference, real samples, synthetic days, bad input."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import volfast
from volfast._native import core
from volfast.io import DBNFile, DBNReadError, IngestWarning
from volfast.snapshot import SNAPSHOT_SCHEMA, snapshot_days, write_snapshot
from volfast.snapshot._reference import reference_snapshot

pd = pytest.importorskip("pandas")

UNDEF = 2**63 - 1
NS = 10**9
DAY = 1_709_510_400_000_000_000  # 2024-03-04T00:00Z
CUT = DAY + (20 * 3600 + 48 * 60) * NS  # 15:48 New York (EST) on 2024-03-04


def run_reducer(recs: np.ndarray, cut: int, lookback: int, by_venue: bool, bounds: list[int]) -> pd.DataFrame:
    r = core().snapshot.Reducer(cut, lookback, by_venue)
    edges = [0, *sorted(bounds), len(recs)]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        c = recs[a:b]
        r.update(
            c["ts_recv"],
            c["instrument_id"],
            c["bid_px_00"],
            c["ask_px_00"],
            c["bid_sz_00"],
            c["ask_sz_00"],
            c["publisher_id"],
        )
    res = pd.DataFrame(r.result())
    return res


def assert_matches_reference(
    res: pd.DataFrame, recs: np.ndarray, cut: int, lookback: int, by_venue: bool
) -> None:
    ref = reference_snapshot(recs, cut_ns=cut, lookback_ns=lookback, by_venue=by_venue)
    quoted = res[res.has_quote].reset_index(drop=True)
    cols = ["instrument_id", "bid_px", "ask_px", "bid_sz", "ask_sz", "ts_recv", "n_venues"]
    pd.testing.assert_frame_equal(quoted[cols], ref[cols], check_dtype=False)
    # Every instrument in the data has a row; those without an in-window quote are marked, not dropped.
    assert sorted(res.instrument_id) == sorted(np.unique(recs["instrument_id"]).tolist())
    unq = res[~res.has_quote]
    assert set(unq.instrument_id).isdisjoint(ref.instrument_id)
    assert (unq.bid_px == UNDEF).all() and (unq.ts_recv == 0).all()


@st.composite
def record_sets(draw):
    n = draw(st.integers(0, 120))
    n_ids = draw(st.integers(1, 6))
    # Few distinct timestamps: plenty of ties, records before, inside and after the window.
    ts = draw(st.lists(st.integers(-6, 3), min_size=n, max_size=n))
    ids = draw(st.lists(st.integers(0, n_ids - 1), min_size=n, max_size=n))
    pubs = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    bid = draw(st.lists(st.one_of(st.just(UNDEF), st.integers(95, 105)), min_size=n, max_size=n))
    ask = draw(st.lists(st.one_of(st.just(UNDEF), st.integers(95, 105)), min_size=n, max_size=n))
    sz = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    import databento_dbn as dd

    a = np.zeros(n, np.dtype(dd.MBP1Msg._dtypes))
    a["ts_recv"] = CUT + np.array(ts, np.int64) * NS
    a["instrument_id"] = np.array(ids) * 1000 + 7
    a["publisher_id"] = pubs
    a["bid_px_00"] = [b if b == UNDEF else b * 10**9 for b in bid]
    a["ask_px_00"] = [x if x == UNDEF else x * 10**9 for x in ask]
    a["bid_sz_00"] = sz
    a["ask_sz_00"] = sz[::-1]
    bounds = draw(st.lists(st.integers(0, n), max_size=5))
    lookback = draw(st.sampled_from([0, 2 * NS, 4 * NS, 100 * NS]))
    return a, bounds, lookback


@settings(max_examples=300, deadline=None)
@given(data=record_sets(), by_venue=st.booleans())
def test_reducer_equals_pandas_reference(data, by_venue: bool) -> None:
    recs, bounds, lookback = data
    res = run_reducer(recs, CUT, lookback, by_venue, bounds)
    assert_matches_reference(res, recs, CUT, lookback, by_venue)
    # Chunk boundaries never change the answer.
    whole = run_reducer(recs, CUT, lookback, by_venue, [])
    pd.testing.assert_frame_equal(res, whole)


def test_ties_later_record_in_file_order_wins() -> None:
    import databento_dbn as dd

    a = np.zeros(4, np.dtype(dd.MBP1Msg._dtypes))
    a["ts_recv"] = [CUT - 5, CUT - 5, CUT - 5, CUT + 1]
    a["instrument_id"] = 1
    a["bid_px_00"] = [1, 2, 3, 4]
    a["ask_px_00"] = 10
    for bounds in ([], [1], [2], [1, 2, 3]):
        res = run_reducer(a, CUT, NS, False, bounds)
        assert res.bid_px.tolist() == [3]  # the third record: last of the tie, the fourth is after the cut


def test_venue_consolidation_rule() -> None:
    import databento_dbn as dd

    a = np.zeros(5, np.dtype(dd.MBP1Msg._dtypes))
    # venue 1 old quote replaced, venue 2 and 3 at the same bid (sizes add), venue 3 has the best ask alone
    a["ts_recv"] = [CUT - 9, CUT - 5, CUT - 4, CUT - 3, CUT - 2]
    a["instrument_id"] = 1
    a["publisher_id"] = [1, 1, 2, 3, 4]
    a["bid_px_00"] = [9, 5, 6, 6, UNDEF]
    a["ask_px_00"] = [10, 8, 9, 7, UNDEF]
    a["bid_sz_00"] = [1, 2, 3, 4, 5]
    a["ask_sz_00"] = [1, 2, 3, 4, 5]
    res = run_reducer(a, CUT, NS, True, [])
    row = res.iloc[0]
    assert (row.bid_px, row.bid_sz, row.ask_px, row.ask_sz) == (6, 7, 7, 4)
    assert row.ts_recv == CUT - 3 and row.n_venues == 4  # venue 3 is the latest at the best bid/ask


# -- reducer input validation ----------------------------------------------------------------------
def test_reducer_rejects_bad_arrays() -> None:
    R = core().snapshot.Reducer
    r = R(CUT, NS, False)
    ts = np.arange(3, dtype=np.uint64)
    iid = np.ones(3, np.uint32)
    px = np.ones(3, np.int64)
    sz = np.ones(3, np.uint32)
    with pytest.raises(ValueError, match="instrument_id: length 2 does not match 3"):
        r.update(ts, iid[:2], px, px, sz, sz)
    with pytest.raises(TypeError, match="bid_px: expected dtype int64, got float64"):
        r.update(ts, iid, px.astype(float), px, sz, sz)
    with pytest.raises(TypeError, match="ts_recv: expected dtype uint64, got int64"):
        r.update(ts.astype(np.int64), iid, px, px, sz, sz)
    with pytest.raises(ValueError, match="expected a 1-D array"):
        r.update(ts.reshape(1, 3), iid, px, px, sz, sz)
    with pytest.raises(TypeError):
        r.update([1, 2, 3], iid, px, px, sz, sz)
    with pytest.raises(ValueError, match="publisher_id is required"):
        R(CUT, NS, True).update(ts, iid, px, px, sz, sz)
    with pytest.raises(TypeError, match="publisher_id"):
        r.update(ts, iid, px, px, sz, sz, "venue")
    r.update(ts, iid, px, px, sz, sz)  # still usable after rejected calls
    assert r.counters["records"] == 3
    ro = ts.copy()
    ro.flags.writeable = False
    r.update(ro[::-1], iid, px, px, sz, sz)  # read-only, negative stride: fine
    assert r.counters["records"] == 6


# -- files -----------------------------------------------------------------------------------------
def _day_files(dbn_writer, *, n: int = 400, seed: int = 0, with_defs: bool = True):
    rng = np.random.default_rng(seed)
    ts = np.sort(CUT - rng.integers(-60, 1800, n) * NS // 3).astype(np.uint64)
    ids = rng.integers(0, 8, n) + 100
    bid = rng.integers(100, 110, n) * 250_000_000
    ask = bid + rng.integers(0, 3, n) * 250_000_000
    bid[rng.random(n) < 0.1] = UNDEF
    recs = dbn_writer.mbp1_records(ts, ids, bid, ask, rng.integers(1, 9, n), rng.integers(1, 9, n))
    recs["instrument_id"][:3] = 999  # quoted only long before the window
    recs["ts_recv"][:3] = DAY
    q = dbn_writer.write(
        "glbx-mdp3-20240304.mbp-1.dbn.zst",
        recs,
        start=DAY,
        mappings={f"ESH4 C{5000 + 5 * i}": 100 + i for i in range(8)},
    )
    return q, recs


def test_snapshot_files_equal_reference(dbn_writer) -> None:
    q, recs = _day_files(dbn_writer)
    with pytest.warns(IngestWarning, match="have no definition"):
        res = volfast.take_snapshot(q, cut="15:48", date="2024-03-04", lookback="10m", chunk_records=37)
    t = res.to_pandas()
    assert res.table.schema.equals(SNAPSHOT_SCHEMA)
    ref = reference_snapshot(recs, cut_ns=CUT, lookback_ns=600 * NS)
    quoted = t[t.has_quote].reset_index(drop=True)
    assert quoted.instrument_id.tolist() == ref.instrument_id.tolist()
    np.testing.assert_array_equal(quoted.ts_recv.astype("int64").to_numpy(), ref.ts_recv.astype("int64"))
    exp_bid = np.where(ref.bid_px == UNDEF, np.nan, ref.bid_px / 1e9)
    np.testing.assert_array_equal(quoted.bid.to_numpy(), exp_bid)
    np.testing.assert_array_equal(quoted.ask.to_numpy(), ref.ask_px / 1e9)
    assert (quoted.one_sided == np.isnan(exp_bid)).all()
    assert (quoted.locked == (quoted.bid == quoted.ask)).all()
    np.testing.assert_allclose(quoted.age_s, (CUT - ref.ts_recv.astype("int64")) / 1e9)
    # CME symbols from the mappings describe the options; 999 is reported, not dropped.
    row = t.set_index("instrument_id").loc[999]
    assert not row.has_quote and np.isnan(row.bid) and row.definition_source == "missing"
    assert t.set_index("instrument_id").loc[103].strike == 5015.0
    assert res.counts["instruments_without_definition"] == 1 and res.counts["records"] == len(recs)


def test_reading_stops_at_the_cut_only_in_a_sorted_file(dbn_writer) -> None:
    # 300 records before and in the window, then 200 after the cut (instrument 555 in the last 100)
    n_in, n_after = 300, 200
    ts = np.concatenate(
        [
            CUT - np.arange(n_in, 0, -1, dtype=np.int64) * NS,
            CUT + np.arange(1, n_after + 1, dtype=np.int64) * NS,
        ]
    ).astype(np.uint64)
    ids = np.where(np.arange(ts.size) < 400, 100 + np.arange(ts.size) % 5, 555)
    px = np.full(ts.size, 100 * 10**9)
    recs = dbn_writer.mbp1_records(ts, ids, px, px + 250_000_000)
    q = dbn_writer.write("glbx-mdp3-20240304.mbp-1.dbn.zst", recs, start=DAY)
    kw = {"cut": "15:48", "date": "2024-03-04", "lookback": "10m", "chunk_records": 64}
    with pytest.warns(IngestWarning):
        stop = volfast.take_snapshot(q, **kw)
    with pytest.warns(IngestWarning):
        full = volfast.take_snapshot(q, **kw, stop_at_cut=False)
    assert stop.counts["stopped_at_cut"] == [q.name] and full.counts["stopped_at_cut"] == []
    assert stop.counts["records"] == 320 and full.counts["records"] == 500  # 5 chunks of 64 read, not 8
    st, ft = stop.to_pandas(), full.to_pandas()
    assert 555 not in set(st.instrument_id) and not ft.set_index("instrument_id").loc[555].has_quote
    assert st.equals(ft[ft.instrument_id != 555].reset_index(drop=True))
    # a file out of ts_recv order before the cut is read to its end (its order cannot be trusted)
    recs2 = recs.copy()
    recs2["ts_recv"][[10, 11]] = recs2["ts_recv"][[11, 10]]
    q2 = dbn_writer.write("glbx-mdp3-20240305.mbp-1.dbn.zst", recs2, start=DAY)
    with pytest.warns(IngestWarning):
        un = volfast.take_snapshot(q2, **kw)
    assert un.counts["stopped_at_cut"] == [] and un.counts["records"] == 500
    assert un.counts["records_out_of_order"] == 1


def test_day_folder_cli_and_manifest(dbn_writer, tmp_path: Path) -> None:
    import json

    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from volfast.cli import main

    _day_files(dbn_writer)
    data = dbn_writer.root
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["snapshot", "--data", str(data), "--date", "2024-03-04", "--out", str(out)])
    assert r.exit_code == 0, r.output
    part = out / "date=2024-03-04" / "part-0.parquet"
    t = pq.read_table(part)
    assert t.schema.equals(SNAPSHOT_SCHEMA, check_metadata=False) and t.num_rows == 9
    m = json.loads((part.parent / "_manifest.json").read_text())
    assert (
        m["inputs"][0]["name"] == "glbx-mdp3-20240304.mbp-1.dbn.zst" and len(m["inputs"][0]["sha256"]) == 64
    )
    assert m["outputs"][0]["rows"] == 9 and m["config"]["lookback"] == 600.0
    assert m["resolved"]["lookback_s"] == 600.0 and m["status"] == "complete"
    assert m["code"]["core_sha256"] and m["code"]["git"]
    assert any("no definition file" in w for w in m["warnings"])
    reps = snapshot_days(data, ["2024-03-04"], out)
    assert reps[0].status == "skipped" and reps[0].reason == "up to date"


@pytest.mark.parametrize(
    ("setting", "value", "changed"),
    [
        ("lookback", "1s", "lookback 600.0 -> 1.0"),
        ("stale_after", "5s", "stale_after 60.0 -> 5.0"),
        ("cut", "15:40", "cut 15:48 -> 15:40"),
        ("tz", "America/Chicago", "tz America/New_York -> America/Chicago"),
        ("venues", "single", "venues auto -> single"),
        ("chunk_records", 1000, "chunk_records 65536 -> 1000"),
        ("stop_at_cut", False, "stop_at_cut True -> False"),
    ],
)
def test_every_setting_change_recomputes_the_day(dbn_writer, tmp_path: Path, setting, value, changed) -> None:
    """The freshness rule compares the full resolved settings: each one changed alone redoes the day, the
    report says which, and the new manifest holds the new value (issue 14: --lookback 1s kept 600 s)."""
    import json

    _day_files(dbn_writer)
    out = tmp_path / "out"
    first = snapshot_days(dbn_writer.root, ["2024-03-04"], out)
    assert first[0].status == "ok", first[0].error
    again = snapshot_days(dbn_writer.root, ["2024-03-04"], out, **{setting: value})
    assert again[0].status == "ok", (again[0].status, again[0].reason)
    assert again[0].reason == f"settings changed: {changed}"
    m = json.loads((out / "date=2024-03-04" / "_manifest.json").read_text())
    assert str(m["config"][setting]) == str(changed.split(" -> ")[1])
    third = snapshot_days(dbn_writer.root, ["2024-03-04"], out, **{setting: value})
    assert third[0].status == "skipped"


def test_changed_input_content_or_code_recomputes_the_day(dbn_writer, tmp_path: Path, monkeypatch) -> None:
    import os

    from volfast.io import freshness

    _day_files(dbn_writer)
    out = tmp_path / "out"
    assert snapshot_days(dbn_writer.root, ["2024-03-04"], out)[0].status == "ok"
    # same size, same name, other bytes (a byte flipped in the header's padding would do the same)
    q = dbn_writer.root / "glbx-mdp3-20240304.mbp-1.dbn.zst"
    os.utime(q, ns=(q.stat().st_atime_ns, q.stat().st_mtime_ns + 10**9))
    rep = snapshot_days(dbn_writer.root, ["2024-03-04"], out)[0]
    assert rep.status == "skipped"  # touched but the same content: the sha256 decides
    b = bytearray(q.read_bytes())
    b[-1] ^= 0xFF
    q.write_bytes(bytes(b))
    rep = snapshot_days(dbn_writer.root, ["2024-03-04"], out)[0]
    assert rep.reason == "input glbx-mdp3-20240304.mbp-1.dbn.zst changed content (sha256 differs)"
    q.write_bytes(bytes(b[:-1]) + bytes([b[-1] ^ 0xFF]))
    assert snapshot_days(dbn_writer.root, ["2024-03-04"], out)[0].status == "ok"
    ident = dict(freshness.code_identity(), git="v9.9.9-other")
    monkeypatch.setattr(freshness, "code_identity", lambda: ident)
    import volfast.io.output as output

    rep = snapshot_days(dbn_writer.root, ["2024-03-04"], out)[0]
    assert rep.status == "ok" and rep.reason.startswith("code changed (git)"), rep.reason
    assert output.read_manifest(out / "date=2024-03-04")["code"]["git"] == "v9.9.9-other"


def test_interrupted_day_is_recorded_and_redone(dbn_writer, tmp_path: Path, monkeypatch) -> None:
    """A kill between the data and the final manifest leaves "running": the next run redoes the day."""
    import volfast.snapshot.run as srun

    _day_files(dbn_writer)
    out = tmp_path / "out"

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(srun, "write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        snapshot_days(dbn_writer.root, ["2024-03-04"], out)
    monkeypatch.undo()
    from volfast.io.output import read_manifest

    assert read_manifest(out / "date=2024-03-04")["status"] == "running"
    rep = snapshot_days(dbn_writer.root, ["2024-03-04"], out)[0]
    assert rep.status == "ok" and rep.reason.startswith("interrupted: an earlier run started")


def test_bad_settings_fail_before_any_day(dbn_writer, tmp_path: Path) -> None:
    from volfast.errors import VolfastError

    _day_files(dbn_writer)
    for kw, what in (
        ({"tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"lookback": "ten minutes"}, "lookback: cannot parse"),
        ({"cut": "25:99"}, "cut: cannot parse"),
        ({"venues": "all"}, "venues must be"),
        ({"nonsense": 1}, "unknown snapshot setting(s) nonsense"),
    ):
        with pytest.raises(VolfastError, match=re.escape(what)):
            snapshot_days(dbn_writer.root, ["2024-03-04"], tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_multi_day_run_goes_on_after_a_bad_day(dbn_writer, tmp_path: Path) -> None:
    _day_files(dbn_writer)
    bad = dbn_writer.root / "glbx-mdp3-20240305.mbp-1.dbn.zst"
    good = (dbn_writer.root / "glbx-mdp3-20240304.mbp-1.dbn.zst").read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    out = tmp_path / "out"
    reps = snapshot_days(dbn_writer.root, None, out)
    assert [(r.date.isoformat(), r.status) for r in reps] == [("2024-03-04", "ok"), ("2024-03-05", "failed")]
    assert "glbx-mdp3-20240305.mbp-1.dbn.zst" in reps[1].error and "truncated" in reps[1].error
    assert not (out / "date=2024-03-05").exists()
    # the day had an output before: a failure removes it and its manifest says why
    bad.write_bytes(good.replace(b"20240304", b"20240305"))
    assert snapshot_days(dbn_writer.root, ["2024-03-05"], out)[0].status == "ok"
    bad.write_bytes(good[: len(good) // 2])
    rep = snapshot_days(dbn_writer.root, ["2024-03-05"], out)[0]
    assert rep.status == "failed"
    import json

    m = json.loads((out / "date=2024-03-05" / "_manifest.json").read_text())
    assert m["status"] == "failed" and "truncated" in m["error"] and m["outputs"] == []
    assert not (out / "date=2024-03-05" / "part-0.parquet").exists()
    assert (out / "date=2024-03-04" / "part-0.parquet").is_file()


def test_failure_mid_write_leaves_no_partial_parquet(dbn_writer, tmp_path: Path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    q, _ = _day_files(dbn_writer)
    with pytest.warns(IngestWarning):
        res = volfast.take_snapshot(q, cut="15:48", date="2024-03-04")
    real = pq.write_table

    def crash(table, where, **kw):
        real(table.slice(0, 2), where, **kw)
        raise KeyboardInterrupt  # interrupted after bytes hit the disk

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        write_snapshot(res, tmp_path / "out")
    folder = tmp_path / "out" / "date=2024-03-04"
    # no part file, no temp file; the manifest says the day is running (interrupted), not complete
    assert [p.name for p in folder.iterdir()] == ["_manifest.json"]
    import json

    assert json.loads((folder / "_manifest.json").read_text())["status"] == "running"


def _warned(fn, *args, **kw):
    import warnings

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn(*args, **kw)
    assert all(issubclass(x.category, IngestWarning) for x in w), [str(x.message) for x in w]
    return out, [str(x.message) for x in w]


def test_empty_window_and_cut_outside_session(dbn_writer) -> None:
    q, _ = _day_files(dbn_writer)
    res, msgs = _warned(volfast.take_snapshot, q, cut="23:30", date="2024-03-04")
    assert any(m.startswith(f"{q}: cut 2024-03-05T04:30:00.000000Z is outside the session") for m in msgs), (
        msgs
    )
    assert res.counts["instruments_quoted"] == 0 and len(res) == 9
    assert res.warnings == msgs
    # A window that falls in a gap of the quotes: inside the session, nothing to snapshot.
    recs = np.concatenate(list(DBNFile(q).iter_chunks()))
    ts = np.unique(recs["ts_recv"][3:])
    gap = int(np.argmax(np.diff(ts)))
    cut = int(ts[gap]) + int(np.diff(ts)[gap]) // 2
    res, msgs = _warned(volfast.take_snapshot, q, cut=cut, lookback=(int(np.diff(ts)[gap]) // 2 - 1) / 1e9)
    assert any("empty window: no quote with ts_recv in" in m and str(q) in m for m in msgs), msgs
    assert res.counts["records_in_window"] == 0 and not res.to_pandas().has_quote.any()


def test_day_without_definitions_is_reported(dbn_writer) -> None:
    _day_files(dbn_writer)
    res, msgs = _warned(volfast.take_snapshot, data=dbn_writer.root, date="2024-03-04")
    assert any("no definition file for 2024-03-04" in m for m in msgs)
    t = res.to_pandas()
    assert (t.definition_source == "cme_symbol").sum() == 8 and (t.definition_source == "missing").sum() == 1


def test_wrong_schema_and_dataset_are_named(dbn_writer, shared_dbn: Path) -> None:
    q, _ = _day_files(dbn_writer)
    trades = shared_dbn / "dbn/glbx-mdp3.ESH1.trades.v3.dbn.zst"
    with pytest.raises(DBNReadError, match=r"glbx-mdp3\.ESH1\.trades\.v3\.dbn\.zst: schema is 'trades'"):
        volfast.take_snapshot(trades, cut=CUT)
    with pytest.raises(
        DBNReadError, match=r"xnas-itch\.MSFT\.definition\.v3\.dbn\.zst: definitions are for dataset"
    ):
        volfast.take_snapshot(q, definitions=shared_dbn / "dbn/xnas-itch.MSFT.definition.v3.dbn.zst", cut=CUT)
    with pytest.raises(DBNReadError, match="expected 'OPRA.PILLAR'"):
        volfast.take_snapshot(q, cut=CUT, dataset="OPRA.PILLAR")
    renamed = dbn_writer.root / "opra-pillar-20240304.mbp-1.dbn.zst"
    renamed.write_bytes(q.read_bytes())
    with pytest.raises(
        DBNReadError, match="file name says dataset OPRA.PILLAR but its metadata says GLBX.MDP3"
    ):
        volfast.take_snapshot(renamed, cut=CUT)
    # the schema in the metadata must be the one the name says (issue 14)
    renamed = dbn_writer.root / "glbx-mdp3-20240304.cbbo-1s.dbn.zst"
    renamed.write_bytes(q.read_bytes())
    with pytest.raises(DBNReadError, match="file name says schema cbbo-1s but its metadata says mbp-1"):
        volfast.take_snapshot(renamed, cut=CUT)
    renamed.unlink()


# -- real samples ----------------------------------------------------------------------------------
@pytest.mark.realdata
def test_es_options_mbp1_values(shared_dbn: Path) -> None:
    d = shared_dbn / "nautilus_trader/es-options-20240509"
    res = volfast.take_snapshot(
        d / "glbx-mdp3.ESM4-P5230-P5250.mbp-1.20240509T1000-1005.v1.dbn.zst",
        definitions=d / "glbx-mdp3.ESM4-P5230-P5250.definition.v1.dbn.zst",
        cut="2024-05-09T06:05:00",
        tz="America/New_York",
    )
    t = res.to_pandas().set_index("raw_symbol")
    p = t.loc["ESM4 P5250"]
    assert (p.instrument_id, p.strike, p.is_call, p.multiplier) == (4163986, 5250.0, False, 50.0)
    assert p.expiration == pd.Timestamp("2024-06-21T13:30:00Z")
    assert (p.bid, p.ask, p.bid_size, p.ask_size) == (107.25, 108.0, 125, 89)
    assert p.ts_recv == pd.Timestamp("2024-05-09T10:04:57.192240890Z")
    q = t.loc["ESM4 P5230"]
    assert (q.bid, q.ask, q.strike) == (96.75, 97.25, 5230.0)
    assert not t.crossed.any() and not t.stale.any() and res.warnings == []
    recs = np.concatenate(
        list(DBNFile(d / "glbx-mdp3.ESM4-P5230-P5250.mbp-1.20240509T1000-1005.v1.dbn.zst").iter_chunks())
    )
    ref = reference_snapshot(recs, cut_ns=res.cut_ns, lookback_ns=600 * NS)
    assert sorted(ref.bid_px / 1e9) == sorted(t.bid)


@pytest.mark.realdata
def test_esh1_v1_v2_v3_same_snapshot(shared_dbn: Path) -> None:
    tables = []
    for v in (1, 2, 3):
        with pytest.warns(IngestWarning, match="no definition"):
            res = volfast.take_snapshot(
                shared_dbn / f"dbn/glbx-mdp3.ESH1.mbp-1.v{v}.dbn.zst",
                cut="2020-12-28T13:00:01Z",
                lookback="1h",
            )
        tables.append(res.table)
    pd.testing.assert_frame_equal(tables[0].to_pandas(), tables[1].to_pandas())
    pd.testing.assert_frame_equal(tables[1].to_pandas(), tables[2].to_pandas())
    row = tables[2].to_pylist()[0]
    assert row["instrument_id"] == 5482 and row["raw_symbol"] == "ESH1" and row["has_quote"]
    defs = shared_dbn / "databento-python/glbx-mdp3.ESH1.definition.v3.dbn.zst"
    res = volfast.take_snapshot(
        shared_dbn / "databento-python/glbx-mdp3.ESH1.mbp-1.v3.dbn.zst",
        definitions=defs,
        cut="2020-12-28T00:00:01Z",
    )
    row = res.table.to_pylist()[0]
    assert (row["bid"], row["ask"], row["instrument_class"], row["tick"]) == (3702.25, 3702.75, "F", 0.25)


@pytest.mark.realdata
def test_aapl_mbp1_venues_and_cbbo(shared_dbn: Path) -> None:
    base = shared_dbn / "databento-python"
    defs = base / "opra-pillar.AAPL250221C250.definition.v3.dbn.zst"
    mbp = base / "opra-pillar.AAPL250221C250.mbp-1.v3.dbn.zst"
    recs = np.concatenate(list(DBNFile(mbp).iter_chunks()))
    cut = int(recs["ts_recv"].max())
    res = volfast.take_snapshot(mbp, definitions=defs, cut=cut, lookback="1m")
    assert res.config["by_venue"] is True
    ref = reference_snapshot(recs, cut_ns=cut, lookback_ns=60 * NS, by_venue=True)
    row = res.table.to_pylist()[0]
    assert row["raw_symbol"] == "AAPL  250221C00250000" and row["strike"] == 250.0 and row["is_call"]
    assert (
        row["n_venues"] == int(ref.n_venues[0]) and row["ts_recv"].value == int(ref.ts_recv[0])
        if hasattr(row["ts_recv"], "value")
        else True
    )
    cb = volfast.take_snapshot(
        base / "opra-pillar.AAPL250221C250.cbbo-1s.v3.dbn.zst",
        definitions=defs,
        cut="2025-02-20T14:30:03Z",
        lookback="1s",
    )
    r = cb.table.to_pylist()[0]
    assert cb.config["by_venue"] is False and r["has_quote"]
    cb2 = volfast.take_snapshot(
        shared_dbn / "databento-python/history/opra-pillar.AAPL250221C250.cbbo-1s.v2.dbn.zst",
        definitions=defs,
        cut="2025-02-20T14:30:03Z",
        lookback="1s",
    )
    cols = ["bid", "ask", "bid_size", "ask_size", "ts_recv"]
    pd.testing.assert_frame_equal(cb2.table.select(cols).to_pandas(), cb.table.select(cols).to_pandas())


@pytest.mark.realdata
def test_qqq_chain_snapshot(shared_dbn: Path) -> None:
    p = shared_dbn / "derived_from_bentoclient/opra-pillar.QQQ.OPT.20250428T142952-143002Z.cbbo-1s.v3.dbn.zst"
    res = volfast.take_snapshot(p, cut="10:30", date="2025-04-28", lookback="10m")
    t = res.to_pandas()
    assert len(t) == 1315 and t.has_quote.all() and res.warnings == []
    assert (
        set(t.definition_source) == {"occ_symbol"}
        and t.is_call.sum() + (~t.is_call.astype(bool)).sum() == 1315
    )
    assert t.groupby(t.expiration.dt.date).size().to_dict() == {
        dt.date(2025, 4, 28): 310,
        dt.date(2025, 4, 29): 308,
        dt.date(2025, 4, 30): 399,
        dt.date(2025, 5, 1): 298,
    }
    # OCC symbols carry dates only: the expiry is the 16:00 New York close (20:00 UTC in April)
    atm = t[(t.strike == 472.0) & (t.expiration == pd.Timestamp("2025-04-28 20:00", tz="UTC"))].set_index(
        "is_call"
    )
    c, pu = atm.loc[True], atm.loc[False]
    fwd = 472.0 + (c.bid + c.ask) / 2 - (pu.bid + pu.ask) / 2  # put-call parity, D ~ 1 at 0 DTE
    assert 471.4 < fwd < 472.2
    assert t.one_sided.sum() > 0 and not t.crossed.any()
    recs = np.concatenate(list(DBNFile(p).iter_chunks()))
    ref = reference_snapshot(recs, cut_ns=res.cut_ns, lookback_ns=600 * NS)
    assert (ref.ts_recv.astype("int64").to_numpy() == t.ts_recv.astype("int64").to_numpy()).all()


# -- synthetic days --------------------------------------------------------------------------------
def test_synth_day_equals_reference_and_truth(synth_small: Path) -> None:
    day = dt.date(2024, 3, 4)
    res = volfast.take_snapshot(data=synth_small, date=day, lookback="24h", stale_after="1h")
    assert res.warnings == [] and res.config["schema"] == "mbp-1"
    t = res.to_pandas()
    recs = np.concatenate(list(DBNFile(synth_small / "glbx-mdp3-20240304.mbp-1.dbn.zst").iter_chunks()))
    ref = reference_snapshot(recs, cut_ns=res.cut_ns, lookback_ns=24 * 3600 * NS)
    q = t[t.has_quote].reset_index(drop=True)
    np.testing.assert_array_equal(q.instrument_id.to_numpy(), ref.instrument_id.to_numpy())
    np.testing.assert_array_equal(
        q.ts_recv.astype("int64").to_numpy(), ref.ts_recv.astype("int64").to_numpy()
    )
    np.testing.assert_array_equal(q.bid_size.to_numpy(), ref.bid_sz.to_numpy())

    _assert_matches_truth(res, synth_small, day)


def _assert_matches_truth(res, root: Path, day: dt.date) -> None:
    """The snapshot (taken with a window reaching back past the session open) against the generator's truth:
    which options are quoted, their last update time, flags and contract terms."""
    import pyarrow.parquet as pq

    t = res.to_pandas()
    truth = pq.read_table(root / "truth" / f"date={day}" / "part-0.parquet").to_pandas()
    assert (truth.cut_ts == pd.Timestamp(res.cut_ns, tz="UTC")).all()
    m = truth[truth.kind == "option"].merge(t, on="instrument_id", how="left", suffixes=("_t", ""))
    m["has_quote"] = m.has_quote.fillna(False).astype(bool)
    for c in ("missing", "stale_t", "crossed_t", "one_sided_t"):
        m[c] = m[c].astype(bool)
    assert (m.has_quote == ~m.missing).all()
    live = m[~m.missing]
    assert (live.ts_recv == live.last_update_ts).all()
    assert (live.stale == live.stale_t).all()
    assert (live.one_sided == live.one_sided_t).all()
    assert ((live.crossed | live.locked) == live.crossed_t).all()  # truth counts bid >= ask as crossed
    opts = live  # never-quoted instruments have no quote record, hence no row
    assert (opts.raw_symbol == opts.raw_symbol_t).all() and (opts.strike == opts.strike_t).all()
    assert (opts.expiration == opts.expiration_t).all() and (opts.is_call == opts.is_call_t).all()


def test_synth_default_window_and_bbo(synth_small: Path) -> None:
    day = dt.date(2024, 3, 5)
    res = volfast.take_snapshot(data=synth_small, date=day)  # 15:48 New York, 10 minute look-back
    t = res.to_pandas()
    recs = np.concatenate(list(DBNFile(synth_small / "glbx-mdp3-20240305.mbp-1.dbn.zst").iter_chunks()))
    ref = reference_snapshot(recs, cut_ns=res.cut_ns, lookback_ns=600 * NS)
    q = t[t.has_quote]
    assert q.instrument_id.tolist() == ref.instrument_id.tolist()
    assert (q.age_s <= 600).all() and len(t) > len(q)
    bbo = volfast.take_snapshot(
        synth_small / "glbx-mdp3-20240305.bbo-1m.dbn.zst",
        definitions=synth_small / "glbx-mdp3-20240305.definition.dbn.zst",
        cut="15:48",
        date=day,
    )
    assert bbo.config["schema"] == "bbo-1m" and bbo.counts["instruments_quoted"] > 0


@pytest.mark.slow
def test_full_scale_day_equals_reference_and_truth(tmp_path: Path) -> None:
    """One ``--scale full`` day (about 1.3 M mbp-1 records, 44 MB .dbn.zst; 6-10 s to generate): the chunked
    reader (background thread, zero-copy views) equals databento's decoder record for record, the default
    15:48 / 10 min snapshot equals the pandas reference, a whole-session window agrees with the generator's
    truth, and memory stays bounded by chunks and per-instrument state, not by the file."""
    import tracemalloc

    import databento as db

    from volfast.synth import generate_days

    day = dt.date(2024, 3, 4)
    generate_days(day, 1, tmp_path, seed=5, scale="full")
    mbp = tmp_path / "glbx-mdp3-20240304.mbp-1.dbn.zst"
    f = DBNFile(mbp)
    assert f.size_bytes > 2**21  # big enough for the background reader
    chunks = list(f.iter_chunks(1 << 16))
    recs = np.concatenate(chunks)
    assert len(recs) > 10**6 and all(not c.flags.writeable and len(c) <= 1 << 16 for c in chunks)
    # from_bytes, not from_file: that one leaves its file handle to the garbage collector (ResourceWarning)
    want = np.concatenate(list(db.DBNStore.from_bytes(mbp.read_bytes()).to_ndarray(count=1 << 16)))
    assert recs.tobytes() == want.tobytes()
    del chunks, want

    tracemalloc.start()
    try:
        res = volfast.take_snapshot(data=tmp_path, date=day)  # 15:48 New York, 10 minute look-back
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.warnings == [] and res.counts["stopped_at_cut"] == [mbp.name]
    # reading stopped at the first chunk past the cut: every record up to the cut, less than the file
    n_to_cut = int((recs["ts_recv"] <= res.cut_ns).sum())
    assert n_to_cut <= res.counts["records"] <= n_to_cut + (1 << 16) < len(recs)
    assert peak < 64 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"  # the file is 100 MB decoded
    full = volfast.take_snapshot(data=tmp_path, date=day, stop_at_cut=False)
    assert full.counts["records"] == len(recs) and full.counts["stopped_at_cut"] == []
    ft = full.to_pandas()
    assert (
        ft[ft.has_quote]
        .reset_index(drop=True)
        .equals(res.to_pandas().query("has_quote").reset_index(drop=True))
    )
    t = res.to_pandas()
    ref = reference_snapshot(recs, cut_ns=res.cut_ns, lookback_ns=600 * NS)
    q = t[t.has_quote].reset_index(drop=True)
    assert len(q) > 1000
    np.testing.assert_array_equal(q.instrument_id.to_numpy(), ref.instrument_id.to_numpy())
    np.testing.assert_array_equal(q.ts_recv.astype("int64").to_numpy(), ref.ts_recv.astype("int64"))
    for side in ("bid", "ask"):
        px = ref[f"{side}_px"].to_numpy()
        np.testing.assert_array_equal(q[side].to_numpy(), np.where(px == UNDEF, np.nan, px / 1e9))
        np.testing.assert_array_equal(q[f"{side}_size"].to_numpy(), ref[f"{side}_sz"].to_numpy())
    del recs

    whole = volfast.take_snapshot(data=tmp_path, date=day, lookback="24h", stale_after="1h")
    _assert_matches_truth(whole, tmp_path, day)


def test_resolve_cut_rejects_what_is_not_a_time() -> None:
    import datetime as _dt

    from volfast.snapshot.core import resolve_cut

    with pytest.raises(TypeError, match="cut: expected HH:MM"):
        resolve_cut(True, date=_dt.date(2024, 3, 4), tz="America/New_York")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot parse"):
        resolve_cut("15:48:00:00:00", date=_dt.date(2024, 3, 4), tz="America/New_York")
    with pytest.raises(ValueError, match="cannot parse"):
        resolve_cut("25:00", date=_dt.date(2024, 3, 4), tz="America/New_York")


# -- issue 14: corruption is caught ----------------------------------------------------------------------
def _frames(blob: bytes) -> list[tuple[int, int, bool]]:
    """(offset, length, has_checksum) of each zstd frame, found by an independent walk of the format."""
    import zstandard

    out, off = [], 0
    while off < len(blob):
        assert blob[off : off + 4] == b"\x28\xb5\x2f\xfd", off
        n = zstandard.frame_content_size(blob[off:])  # noqa: F841 - the header parses
        params = zstandard.get_frame_parameters(blob[off:])
        d = zstandard.ZstdDecompressor().decompressobj()
        d.decompress(blob[off:])
        length = len(blob) - off - len(d.unused_data)
        out.append((off, length, bool(params.has_checksum)))
        off += length
    return out


@pytest.fixture()
def framed_day(tmp_path: Path, monkeypatch) -> Path:
    """One small synthetic day whose files are cut into 64 KiB frames (many frames, some past the cut)."""
    import volfast.synth.dbn as sdbn
    from volfast.synth import generate_days

    monkeypatch.setattr(sdbn, "FRAME_BYTES", 64 << 10)
    generate_days(dt.date(2024, 3, 4), 1, tmp_path / "d", seed=2, scale="small")
    return tmp_path / "d"


def test_synth_writes_checksummed_frames_and_a_flipped_byte_fails_the_day(framed_day: Path) -> None:
    q = framed_day / "glbx-mdp3-20240304.mbp-1.dbn.zst"
    good = q.read_bytes()
    frames = _frames(good)
    assert len(frames) > 3 and all(c for _, _, c in frames)
    ok = volfast.take_snapshot(data=framed_day, date="2024-03-04")
    assert ok.counts["stopped_at_cut"] == [q.name]
    # the frame the snapshot stops in, and one it reads whole: each flipped byte fails the day, by name
    n_read = ok.counts["per_file"][q.name]["records"]
    assert 0 < n_read
    for off, length, _ in frames[1:3]:
        bad = bytearray(good)
        bad[off + length // 2] ^= 0x20
        q.write_bytes(bytes(bad))
        with pytest.raises(DBNReadError, match=rf"{re.escape(q.name)}.*(zstd|checksum)") as ei:
            volfast.take_snapshot(data=framed_day, date="2024-03-04")
        assert "byte" in str(ei.value) and "\n" not in str(ei.value)
    # a flipped byte past the cut: not read when stopping at the cut, caught when reading everything
    off, length, _ = frames[-1]
    bad = bytearray(good)
    bad[off + length // 2] ^= 0x20
    q.write_bytes(bytes(bad))
    same = volfast.take_snapshot(data=framed_day, date="2024-03-04")
    assert same.table.to_pandas().equals(ok.table.to_pandas())  # (NaN == NaN here)
    with pytest.raises(DBNReadError, match=re.escape(q.name)):
        volfast.take_snapshot(data=framed_day, date="2024-03-04", stop_at_cut=False)


def test_stopping_at_the_cut_verifies_the_frame_it_stops_in(tmp_path: Path, monkeypatch) -> None:
    """The checksum of the frame holding the cut is checked although the reader stops inside it: a byte
    flipped after the last record read, in the same frame, still fails."""
    import zstandard

    import volfast.synth.dbn as sdbn
    from volfast.io import dbn
    from volfast.synth import generate_days

    monkeypatch.setattr(sdbn, "FRAME_BYTES", 1 << 20)  # frames of several 128 KiB zstd blocks
    generate_days(dt.date(2024, 3, 4), 1, tmp_path / "d", seed=2, scale="small")
    monkeypatch.setattr(dbn, "_READ_BYTES", 1 << 10)  # 1 KiB reads: the reader stops inside frame 0
    q = tmp_path / "d" / "glbx-mdp3-20240304.mbp-1.dbn.zst"
    good = q.read_bytes()
    frames = _frames(good)
    f = DBNFile(q)
    it = f.iter_chunks(1 << 30)
    first = next(it)  # the first block only
    it.close()
    assert len(first) > 0
    # damage the end of the first frame's data (the checksum itself, its last 4 bytes)
    off, length, _ = frames[0]
    bad = bytearray(good)
    bad[off + length - 2] ^= 0xFF
    q.write_bytes(bytes(bad))
    f = DBNFile(q)
    it = f.iter_chunks(1 << 30)
    next(it)
    with pytest.raises(DBNReadError, match=rf"{re.escape(q.name)}: corrupt zstd data in the frame from byte"):
        it.close()
    assert zstandard  # the format walk above used it


def test_record_sanity_counts_reach_the_manifest(dbn_writer, tmp_path: Path) -> None:
    """Negative prices and timestamps outside the file's range are counted (and the first named in a
    warning), crossed instruments too; a clean file counts zero of each."""
    q, recs = _day_files(dbn_writer)
    with pytest.warns(IngestWarning):
        clean = volfast.take_snapshot(q, cut="15:48", date="2024-03-04")
    assert clean.counts["records_negative_price"] == 0 and clean.counts["records_outside_file_range"] == 0
    assert clean.counts["instruments_crossed"] == int(clean.table.column("crossed").to_numpy().sum())
    recs = recs.copy()
    recs["bid_px_00"][50] = -9_200_000_000_000_000_000
    recs["bid_px_00"][60] = 5 * 250_000_000 * 1000
    recs["ask_px_00"][60] = 250_000_000
    q.unlink()
    q = dbn_writer.write(
        "glbx-mdp3-20240304.mbp-1.dbn.zst",
        recs,
        start=DAY,
        end=int(recs["ts_recv"][-2]),
        mappings={f"ESH4 C{5000 + 5 * i}": 100 + i for i in range(8)},
    )
    with pytest.warns(IngestWarning) as rec:
        res = volfast.take_snapshot(q, cut="15:48", date="2024-03-04", stop_at_cut=False)
    assert res.counts["records_negative_price"] == 1
    assert res.counts["records_outside_file_range"] == int((recs["ts_recv"] > recs["ts_recv"][-2]).sum())
    msgs = [str(w.message) for w in rec]
    assert any(m.startswith("1 records with a negative bid or ask, first in glbx-mdp3") for m in msgs)
