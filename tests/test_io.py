"""DBN ingest: chunked reading, versions, bad files, definitions, symbols, atomic outputs."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volfast.io import (
    DBNFile,
    DBNReadError,
    definitions_from_symbology,
    find_day_files,
    load_definitions,
    parse_cme_option_symbol,
    parse_occ_symbol,
)
from volfast.io.dbn import file_sha256, read_sha256_sidecar, write_sha256_sidecar
from volfast.io.output import (
    atomic_write_bytes,
    manifest_matches,
    read_manifest,
    write_manifest,
    write_parquet_atomic,
)

UNDEF = 2**63 - 1
DAY = 1_709_510_400_000_000_000  # 2024-03-04T00:00Z


# -- symbols ---------------------------------------------------------------------------------------
def test_parse_occ_symbol_examples() -> None:
    q = parse_occ_symbol("QQQ   250428C00472000")
    assert q is not None and (q.root, q.expiry, q.is_call, q.strike) == (
        "QQQ",
        dt.date(2025, 4, 28),
        True,
        472.0,
    )
    s = parse_occ_symbol("SPY   240119P00340000")
    assert s is not None and (s.root, s.expiry, s.is_call, s.strike) == (
        "SPY",
        dt.date(2024, 1, 19),
        False,
        340.0,
    )
    a = parse_occ_symbol("AAPL  230331C00157500")
    assert a is not None and a.strike == 157.5
    assert parse_occ_symbol("ESM4 P5230") is None
    assert parse_occ_symbol("QQQ   251328C00472000") is None  # month 13


@settings(max_examples=200, deadline=None)
@given(
    root=st.from_regex(r"[A-Z]{1,6}", fullmatch=True),
    day=st.dates(dt.date(2000, 1, 1), dt.date(2068, 12, 31)),
    call=st.booleans(),
    strike_milli=st.integers(0, 99_999_999),
)
def test_occ_symbol_round_trip(root: str, day: dt.date, call: bool, strike_milli: int) -> None:
    sym = f"{root:<6}{day:%y%m%d}{'C' if call else 'P'}{strike_milli:08d}"
    q = parse_occ_symbol(sym)
    assert q is not None
    assert (q.root, q.expiry, q.is_call, q.strike) == (root, day, call, strike_milli / 1000)


def test_parse_cme_option_symbol() -> None:
    p = parse_cme_option_symbol("ESM4 P5230")
    assert p is not None and (p.root, p.contract, p.is_call, p.strike) == ("ES", "ESM4", False, 5230.0)
    w = parse_cme_option_symbol("EW2F6 C7000")
    assert w is not None and (w.root, w.contract, w.is_call, w.strike) == ("EW2", "EW2F6", True, 7000.0)
    assert parse_cme_option_symbol("ESM4") is None
    assert parse_cme_option_symbol("ESM4-ESU4") is None


# -- reading ---------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("count", [1, 7, 100, 5000])
def test_chunks_equal_databento_to_ndarray(shared_dbn: Path, count: int) -> None:
    import databento as db

    p = shared_dbn / "nautilus_trader/es-futures-20240701/glbx-mdp3.ESU4.mbp-1.20240701T2358-0002.v1.dbn.zst"
    chunks = list(DBNFile(p).iter_chunks(count))
    assert all(len(c) <= count and not c.flags.writeable for c in chunks)
    got = np.concatenate(chunks)
    ref = db.DBNStore.from_bytes(p.read_bytes()).to_ndarray()
    assert got.dtype == ref.dtype and len(got) == 2288
    assert (got == ref).all()
    f = DBNFile(p)
    list(f.iter_chunks(count))
    assert f.sha256 is not None and len(f.sha256) == 64


@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "o_direct"])
@pytest.mark.parametrize("background", [False, True])
def test_block_boundaries_straddles_and_background_reader(
    dbn_writer, monkeypatch, background: bool, direct: bool
) -> None:
    """Small reads force many decompressed blocks with records cut across them (and, with
    ``background``, the helper-thread reader; with ``direct``, O_DIRECT reads by the I/O thread into
    4 KiB buffers that are reused): the chunks are still exactly databento's records, in order,
    read-only, at most ``count`` each, and the sha256 is the file's."""
    import hashlib
    import threading

    import databento as db

    import volfast.io.dbn as dbn

    monkeypatch.setattr(dbn, "_READ_BYTES", 1 << 10)  # 1 KiB compressed -> a few KiB out: many straddles
    monkeypatch.setattr(dbn, "_SMALL_BLOCK", 1 << 12)  # both straddle paths: joined and one-record chunks
    monkeypatch.setattr(dbn, "_BACKGROUND_MIN_BYTES", 0 if background else 1 << 40)
    monkeypatch.setattr(dbn, "_DIRECT_MIN_BYTES", 0 if direct else 1 << 40)
    monkeypatch.setattr(dbn, "_DIRECT_BYTES", 1 << 12)
    if direct and not dbn._direct_io():
        pytest.skip("no O_DIRECT on this platform")
    rng = np.random.default_rng(3)
    n = 20_000
    recs = dbn_writer.mbp1_records(
        np.sort(DAY + rng.integers(0, 10**12, n)).astype(np.uint64),
        rng.integers(1, 500, n),
        rng.integers(1, 10**6, n) * 10**6,
        rng.integers(1, 10**6, n) * 10**6,
        rng.integers(1, 100, n),
    )
    p = dbn_writer.write("b.dbn.zst", recs, mappings={f"ESH4 C{5000 + i}": i for i in range(1, 500)})
    before = threading.active_count()
    f = DBNFile(p)
    started: list[str] = []
    real_init = dbn._DirectReader.__init__

    def spy(self, path):  # type: ignore[no-untyped-def]
        real_init(self, path)
        started.append(str(path))

    monkeypatch.setattr(dbn._DirectReader, "__init__", spy)
    chunks = list(f.iter_chunks(1000))
    # O_DIRECT where asked and the filesystem allows it (tmpfs does not: then buffered, same bytes)
    assert bool(started) == (direct and _o_direct_works(p)), started
    assert all(0 < len(c) <= 1000 and not c.flags.writeable for c in chunks)
    assert any(len(c) == 1 for c in chunks) and len(chunks) > n // 1000 + 5  # straddles happened
    got = np.concatenate(chunks)
    assert got.tobytes() == db.DBNStore.from_bytes(p.read_bytes()).to_ndarray().tobytes()
    assert f.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    # Stopping early stops the helper threads (decompression and hashing) and closes the file.
    it = DBNFile(p).iter_chunks(1000)
    next(it)
    it.close()
    assert threading.active_count() == before


def _o_direct_works(p: Path) -> bool:
    try:
        fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
    except (OSError, AttributeError):
        return False
    os.close(fd)
    return True


def test_o_direct_refused_falls_back_and_errors_name_the_file(dbn_writer, monkeypatch) -> None:
    import volfast.io.dbn as dbn

    monkeypatch.setattr(dbn, "_DIRECT_MIN_BYTES", 0)
    monkeypatch.setattr(dbn, "_DIRECT_BYTES", 1 << 12)
    p = dbn_writer.write("d.dbn.zst", _records(dbn_writer, 5000))
    want = np.concatenate(list(DBNFile(p).iter_chunks(700)))

    def refuse(self, path):  # type: ignore[no-untyped-def]
        raise OSError(22, "Invalid argument")  # what tmpfs says to O_DIRECT

    with monkeypatch.context() as m:
        m.setattr(dbn._DirectReader, "__init__", refuse)
        got = np.concatenate(list(DBNFile(p).iter_chunks(700)))
    assert got.tobytes() == want.tobytes()
    if _o_direct_works(p):  # O_DIRECT taken at open but failing in a read: buffered from that byte on
        calls = {"n": 0}
        real_readv = os.readv

        def flaky(fd, bufs):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] > 3:
                raise OSError(22, "Invalid argument")
            return real_readv(fd, bufs)

        with monkeypatch.context() as m:
            m.setattr(os, "readv", flaky)
            got = np.concatenate(list(DBNFile(p).iter_chunks(700)))
        assert got.tobytes() == want.tobytes() and calls["n"] == 4
    # a truncated file read through O_DIRECT: the same error, naming the file
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(DBNReadError, match=r"d\.dbn\.zst.*truncated: the last zstd frame is incomplete"):
        list(DBNFile(p).iter_chunks(700))


@pytest.mark.parametrize("one_thread", [False, True])
def test_reader_threads_follow_the_thread_budget(dbn_writer, monkeypatch, one_thread: bool) -> None:
    """With VOLFAST_NUM_THREADS=1 (a pool worker with one core) the reader starts no helper thread; without
    it a big file is decompressed by one. The records are the same either way."""
    import threading

    import volfast.io.dbn as dbn

    monkeypatch.setattr(dbn, "_BACKGROUND_MIN_BYTES", 0)
    if one_thread:
        monkeypatch.setenv("VOLFAST_NUM_THREADS", "1")
    else:
        monkeypatch.delenv("VOLFAST_NUM_THREADS", raising=False)
    rng = np.random.default_rng(4)
    n = 5_000
    recs = dbn_writer.mbp1_records(
        np.sort(DAY + rng.integers(0, 10**12, n)).astype(np.uint64),
        rng.integers(1, 50, n),
        rng.integers(1, 10**6, n) * 10**6,
        rng.integers(1, 10**6, n) * 10**6,
        rng.integers(1, 100, n),
    )
    p = dbn_writer.write("t.dbn.zst", recs, mappings={f"ESH4 C{5000 + i}": i for i in range(1, 50)})
    started: list[str] = []  # names of the threads the reader starts (a fast helper may be gone already)
    real_start = threading.Thread.start

    def record(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", record)
    chunks = list(DBNFile(p).iter_chunks(1000))
    assert any(name.startswith("volfast-dbn-read") for name in started) is not one_thread
    import databento as db

    assert np.concatenate(chunks).tobytes() == db.DBNStore.from_bytes(p.read_bytes()).to_ndarray().tobytes()


@pytest.mark.parametrize("background", [False, True])
def test_background_reader_errors_name_file_and_offset(dbn_writer, monkeypatch, background: bool) -> None:
    import volfast.io.dbn as dbn

    monkeypatch.setattr(dbn, "_READ_BYTES", 1 << 10)
    monkeypatch.setattr(dbn, "_BACKGROUND_MIN_BYTES", 0 if background else 1 << 40)
    recs = _records(dbn_writer, 5000).copy()
    recs["rtype"][4321] = 0xA0
    p = dbn_writer.write("r.dbn.zst", recs)
    with pytest.raises(DBNReadError, match=r"r\.dbn\.zst at record 4321: corrupt record .*rtype 0xa0") as ei:
        list(DBNFile(p).iter_chunks(1000))
    assert ei.value.record_offset == 4321
    t = dbn_writer.write("t.dbn.zst", _records(dbn_writer, 5000))
    t.write_bytes(t.read_bytes()[:-40])
    with pytest.raises(
        DBNReadError, match=r"t\.dbn\.zst at record \d+: truncated: the last zstd frame"
    ) as ei:
        list(DBNFile(t).iter_chunks(1000))
    assert ei.value.record_offset is not None and 0 < ei.value.record_offset <= 5000


@pytest.mark.realdata
def test_versions_v1_v2_v3_same_records(shared_dbn: Path) -> None:
    cols = ["ts_recv", "instrument_id", "bid_px_00", "ask_px_00", "bid_sz_00", "ask_sz_00"]
    arrs = {}
    for v in (1, 2, 3):
        f = DBNFile(shared_dbn / f"dbn/glbx-mdp3.ESH1.mbp-1.v{v}.dbn.zst")
        assert f.version == v and f.schema == "mbp-1" and f.dataset == "GLBX.MDP3"
        arrs[v] = np.concatenate(list(f.iter_chunks(1)))
    for v in (1, 2):
        for c in cols:
            np.testing.assert_array_equal(arrs[v][c], arrs[3][c])
    unc = np.concatenate(
        list(DBNFile(shared_dbn / "dbn/uncompressed/glbx-mdp3.ESH1.mbp-1.v2.dbn").iter_chunks())
    )
    np.testing.assert_array_equal(unc["bid_px_00"], arrs[2]["bid_px_00"])


@pytest.mark.realdata
def test_definitions_v1_v2_v3_agree(shared_dbn: Path) -> None:
    tables = [
        load_definitions(shared_dbn / p)[0]
        for p in (
            "databento-python/history/glbx-mdp3.ESH1.definition.v1.dbn.zst",
            "databento-python/history/glbx-mdp3.ESH1.definition.v2.dbn.zst",
            "databento-python/glbx-mdp3.ESH1.definition.v3.dbn.zst",
        )
    ]
    for t in tables:
        assert t.instrument_id.tolist() == [5482]
        assert t.raw_symbol.tolist() == ["ESH1"] and t.instrument_class.tolist() == ["F"]
        assert np.isnan(t.strike[0]) and t.multiplier[0] == 50.0 and t.tick[0] == 0.25
        assert t.expiration[0] == np.datetime64("2021-03-19T13:30:00", "ns")


@pytest.mark.realdata
def test_option_definitions_values(shared_dbn: Path) -> None:
    d, files = load_definitions(
        [
            shared_dbn
            / "nautilus_trader/es-options-20240509/glbx-mdp3.ESM4-P5230-P5250.definition.v1.dbn.zst",
            shared_dbn / "databento-python/opra-pillar.AAPL250221C250.definition.v3.dbn.zst",
            shared_dbn / "nautilus_trader/definitions-v3/glbx-mdp3.ESU6-C9600-P6575.definition.v3.dbn.zst",
        ]
    )
    assert [f.version for f in files] == [1, 3, 3]
    rows = {s: i for i, s in enumerate(d.raw_symbol)}
    es = rows["ESM4 P5250"]
    assert (d.instrument_class[es], d.strike[es], d.underlying[es], d.multiplier[es]) == (
        "P",
        5250.0,
        "ESM4",
        50.0,
    )
    assert d.expiration[es] == np.datetime64("2024-06-21T13:30:00", "ns")
    assert d.strike[rows["ESM4 P5230"]] == 5230.0
    aapl = rows["AAPL  250221C00250000"]
    assert (d.instrument_class[aapl], d.strike[aapl], d.underlying[aapl]) == ("C", 250.0, "AAPL")
    assert d.multiplier[aapl] == 100.0  # OPRA leaves it undefined: standard equity option contract
    # OPRA definitions carry a date only: the expiry counts to the 16:00 New York close (21:00 UTC in winter)
    assert d.expiration[aapl] == np.datetime64("2025-02-21T21:00", "ns")
    assert d.instrument_id[aapl] == 16783963
    assert d.strike[rows["ESU6 C9600"]] == 9600.0 and d.instrument_class[rows["ESU6 P6575"]] == "P"
    idx, found = d.lookup(np.array([16783963, 1, 4163986], np.uint32))
    assert found.tolist() == [True, False, True] and d.raw_symbol[idx[2]] == "ESM4 P5250"


@pytest.mark.realdata
def test_qqq_chain_from_occ_symbols(shared_dbn: Path) -> None:
    f = DBNFile(
        shared_dbn / "derived_from_bentoclient/opra-pillar.QQQ.OPT.20250428T142952-143002Z.cbbo-1s.v3.dbn.zst"
    )
    assert f.schema == "cbbo-1s" and f.dataset == "OPRA.PILLAR"
    d = definitions_from_symbology(f.metadata, date=dt.date(2025, 4, 28))
    assert len(d) == 1315 and set(d.source) == {"occ_symbol"} and set(d.underlying) == {"QQQ"}
    exp, n = np.unique(d.expiration.astype("datetime64[D]").astype(str), return_counts=True)
    assert dict(zip(exp.tolist(), n.tolist(), strict=True)) == {
        "2025-04-28": 310,
        "2025-04-29": 308,
        "2025-04-30": 399,
        "2025-05-01": 298,
    }
    for day, lo, hi in (("2025-04-28", 300, 550), ("2025-04-30", 280, 600), ("2025-05-01", 300, 520)):
        k = d.strike[d.expiration.astype("datetime64[D]") == np.datetime64(day)]
        assert (k.min(), k.max()) == (lo, hi)
    assert set(d.instrument_class) == {"C", "P"}
    i = list(d.raw_symbol).index("QQQ   250428C00472000")
    assert (d.strike[i], d.instrument_class[i]) == (472.0, "C")


@pytest.mark.realdata
def test_cme_and_spy_symbology(shared_dbn: Path) -> None:
    es = DBNFile(
        shared_dbn / "nautilus_trader/glbx-mdp3.ES.OPT.definition.2rec+11294mappings.20230801.v1.dbn.zst"
    )
    d = definitions_from_symbology(es.metadata)
    assert len(d) > 1000 and set(d.source) == {"cme_symbol"} and set(d.asset) >= {"ES"}
    assert np.isnat(d.expiration).all()
    spy = DBNFile(
        shared_dbn / "nautilus_trader/opra-pillar.SPY.OPT.definition.2rec+13492mappings.20230801.v1.dbn.zst"
    )
    s = definitions_from_symbology(spy.metadata, date=dt.date(2023, 8, 1))  # OPRA ids are reassigned daily
    i = list(s.raw_symbol).index("SPY   240119P00340000")
    assert (s.strike[i], s.instrument_class[i], s.underlying[i]) == (340.0, "P", "SPY")


# -- bad files -------------------------------------------------------------------------------------
def _records(dbn_writer, n: int = 50):
    ts = DAY + np.arange(n, dtype=np.uint64) * 1000
    return dbn_writer.mbp1_records(ts, np.full(n, 7), np.full(n, 100 * 10**9), np.full(n, 101 * 10**9))


def test_truncated_uncompressed_names_file_and_offset(dbn_writer) -> None:
    p = dbn_writer.write("t.dbn", _records(dbn_writer), compress=False)
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(DBNReadError, match=r"t\.dbn at record 49: truncated") as ei:
        list(DBNFile(p).iter_chunks(16))
    assert ei.value.record_offset == 49 and ei.value.path == p


def test_truncated_zstd_frame(dbn_writer) -> None:
    p = dbn_writer.write("t.dbn.zst", _records(dbn_writer, 5000))
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(DBNReadError, match=r"t\.dbn\.zst.*truncated: the last zstd frame is incomplete"):
        list(DBNFile(p).iter_chunks(1000))


def test_corrupt_record_header(dbn_writer) -> None:
    recs = _records(dbn_writer)
    recs = recs.copy()
    recs["length"][17] = 3
    p = dbn_writer.write("c.dbn.zst", recs)
    with pytest.raises(DBNReadError, match=r"c\.dbn\.zst at record 17: corrupt record") as ei:
        list(DBNFile(p).iter_chunks(8))
    assert ei.value.record_offset == 17


def test_corrupt_zstd_data(dbn_writer) -> None:
    p = dbn_writer.write("z.dbn.zst", _records(dbn_writer, 2000))
    b = bytearray(p.read_bytes())
    b[len(b) // 2 : len(b) // 2 + 16] = b"\xff" * 16
    p.write_bytes(bytes(b))
    with pytest.raises(DBNReadError, match=r"z\.dbn\.zst"):
        list(DBNFile(p).iter_chunks(100))


@pytest.mark.parametrize(
    ("content", "msg"),
    [(b"", "empty file"), (b"not a dbn file at all" * 10, "not a DBN file"), (b"DBN\x03", "metadata")],
)
def test_not_dbn(tmp_path: Path, content: bytes, msg: str) -> None:
    p = tmp_path / "x.dbn"
    p.write_bytes(content)
    with pytest.raises(DBNReadError, match=msg):
        DBNFile(p)
    with pytest.raises(DBNReadError, match="no such file"):
        DBNFile(tmp_path / "missing.dbn.zst")


def test_header_only_file_has_no_chunks(dbn_writer) -> None:
    p = dbn_writer.write("h.dbn.zst", _records(dbn_writer, 0))
    assert list(DBNFile(p).iter_chunks()) == []


def test_wrong_schema_and_dataset(dbn_writer) -> None:
    p = dbn_writer.write("q.dbn.zst", _records(dbn_writer))
    f = DBNFile(p)
    with pytest.raises(DBNReadError, match=r"q\.dbn\.zst: schema is 'mbp-1'; expected one of definition"):
        f.require(schemas=("definition",))
    with pytest.raises(DBNReadError, match="dataset is 'GLBX.MDP3'; expected 'OPRA.PILLAR'"):
        f.require(dataset="OPRA.PILLAR")
    with pytest.raises(DBNReadError, match="schema is 'mbp-1'"):
        load_definitions(p)


def test_find_day_files(tmp_path: Path) -> None:
    for n in (
        "glbx-mdp3-20240304.mbp-1.dbn.zst",
        "glbx-mdp3-20240304.definition.dbn.zst",
        "glbx-mdp3-20240304.bbo-1m.dbn.zst",
        "glbx-mdp3-20240305.mbp-1.dbn.zst",
        "notes.txt",
    ):
        (tmp_path / n).write_bytes(b"x")
    d = find_day_files(tmp_path, "2024-03-04")
    q = d.quotes()
    assert (
        q is not None and q[0] == "mbp-1" and [p.name for p in q[1]] == ["glbx-mdp3-20240304.mbp-1.dbn.zst"]
    )
    assert [p.name for p in d.definitions()] == ["glbx-mdp3-20240304.definition.dbn.zst"]
    assert find_day_files(tmp_path, "20240306").quotes() is None


# -- outputs ---------------------------------------------------------------------------------------
def test_atomic_parquet_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    final = tmp_path / "date=2024-03-04" / "part-0.parquet"
    t = pa.table({"x": pa.array(np.arange(1000))})
    write_parquet_atomic(t, final)
    old = final.read_bytes()

    real = pq.write_table

    def dies_half_way(table, where, **kw):
        real(table, where, **kw)
        Path(where).write_bytes(Path(where).read_bytes()[:100])  # a partial file on disk, then the crash
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pq, "write_table", dies_half_way)
    with pytest.raises(OSError, match="simulated"):
        write_parquet_atomic(pa.table({"x": pa.array(np.arange(5))}), final)
    assert final.read_bytes() == old  # the previous complete file is untouched
    assert sorted(p.name for p in final.parent.iterdir()) == ["part-0.parquet"]  # no temp file left
    with pytest.raises(OSError, match="simulated"):
        write_parquet_atomic(t, tmp_path / "date=2024-03-05" / "part-0.parquet")
    assert list((tmp_path / "date=2024-03-05").iterdir()) == []


def test_manifest_round_trip(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "part-0.parquet", b"abc")
    inputs = [{"name": "a.dbn.zst", "size": 10, "sha256": "0" * 64}]
    outputs = [{"name": "part-0.parquet", "size": 3, "sha256": "1" * 64}]
    write_manifest(
        tmp_path,
        stage="t",
        config={"b": 1, "a": 2},
        inputs=inputs,
        outputs=outputs,
        counts={"rows": 1},
        warnings=["w"],
    )
    m = read_manifest(tmp_path)
    assert m is not None and m["stage"] == "t" and m["warnings"] == ["w"] and "volfast_version" in m
    assert json.loads((tmp_path / "_manifest.json").read_text())["counts"] == {"rows": 1}
    assert manifest_matches(tmp_path, config={"a": 2, "b": 1}, inputs=inputs)
    assert not manifest_matches(tmp_path, config={"a": 3, "b": 1}, inputs=inputs)
    assert not manifest_matches(tmp_path, config={"a": 2, "b": 1}, inputs=[dict(inputs[0], size=11)])
    (tmp_path / "part-0.parquet").unlink()
    assert not manifest_matches(tmp_path, config={"a": 2, "b": 1}, inputs=inputs)


def test_equity_option_close_moves_date_only_expirations() -> None:
    from volfast.io.definitions import equity_option_close

    exp = np.array(
        [
            "2025-01-17T00:00",  # date only, winter: 21:00 UTC
            "2025-07-18T00:00",  # summer: 20:00 UTC
            "2021-03-19T13:30",  # CME quarterly with its real time: unchanged
            "NaT",  # missing stays missing
        ],
        "datetime64[ns]",
    )
    out = equity_option_close(exp)
    assert list(out[:3]) == [
        np.datetime64("2025-01-17T21:00", "ns"),
        np.datetime64("2025-07-18T20:00", "ns"),
        np.datetime64("2021-03-19T13:30", "ns"),
    ]
    assert np.isnat(out[3])


# -- sha256 sidecars -------------------------------------------------------------------------------
def test_sha256_sidecar_is_trusted_only_while_the_file_is_unchanged(dbn_writer) -> None:
    p = dbn_writer.write("s.dbn.zst", _records(dbn_writer, 500))
    real = file_sha256(p)
    f = DBNFile(p)
    assert f.sha256 is None  # no sidecar: hashed while streaming
    sum(len(a) for a in f.iter_chunks(64))
    assert f.sha256 == real
    # a sidecar is believed for manifests without hashing the file first (shown with a made-up hash) ...
    fake = "ab" * 32
    side = write_sha256_sidecar(p, fake)
    assert side.name == "s.dbn.zst.sha256.json" and read_sha256_sidecar(p) == fake
    f = DBNFile(p)
    assert f.sha256 == fake and f.describe()["sha256"] == fake
    # ... but a read to the end verifies it (issue 14): a file that differs from its sidecar is named
    with pytest.raises(DBNReadError, match=r"s\.dbn\.zst.*differs from its sidecar s\.dbn\.zst\.sha256"):
        sum(len(a) for a in f.iter_chunks(64))
    write_sha256_sidecar(p, real)
    f = DBNFile(p)
    sum(len(a) for a in f.iter_chunks(64))
    assert f.sha256 == real
    # ... until the file's modification time or size changes: then the file is hashed again
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert read_sha256_sidecar(p) is None
    f = DBNFile(p)
    sum(len(a) for a in f.iter_chunks(64))
    assert f.sha256 == real
    write_sha256_sidecar(p, real)
    with open(p, "ab") as fh:  # appended bytes (and a restored mtime) still invalidate it
        fh.write(b"\0")
    os.utime(p, ns=(st.st_atime_ns, json.loads(side.read_text())["mtime_ns"]))
    assert read_sha256_sidecar(p) is None


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[1, 2]", b'{"name": "other.dbn.zst"}', b'{"sha256": "xyz"}'],
    ids=["garbage", "not-a-dict", "other-name", "bad-hex"],
)
def test_bad_sha256_sidecars_are_ignored(dbn_writer, content: bytes) -> None:
    p = dbn_writer.write("b.dbn.zst", _records(dbn_writer, 50))
    st = p.stat()
    doc = {"name": p.name, "sha256": "cd" * 32, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if content.startswith(b"{"):
        doc.update(json.loads(content))
        content = json.dumps(doc).encode()
    Path(f"{p}.sha256.json").write_bytes(content)
    assert read_sha256_sidecar(p) is None
    f = DBNFile(p)
    sum(len(a) for a in f.iter_chunks(64))
    assert f.sha256 == file_sha256(p)
    with pytest.raises(ValueError, match=r"b\.dbn\.zst: 'XYZ' is not a hex sha256"):
        write_sha256_sidecar(p, "XYZ")


def test_synthetic_files_come_with_their_sha256(synth_small: Path) -> None:
    files = sorted(synth_small.glob("*.dbn.zst"))
    assert files
    for p in files:
        assert read_sha256_sidecar(p) == file_sha256(p), p.name


# -- issue 14: files honour the umask; temporaries of killed runs are removed -----------------------------
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    """Outputs were 0600 whatever the umask (mkstemp); now they get 0666 & ~umask, like open()."""
    import pyarrow as pa

    from volfast.io import output
    from volfast.synth import generate_days

    old = os.umask(mask)
    output._umask.cache_clear()
    try:
        a = output.atomic_write_bytes(tmp_path / "a.bin", b"x")
        b = output.write_parquet_atomic(pa.table({"x": [1]}), tmp_path / "b.parquet")
        c = output.write_manifest(
            tmp_path, stage="t", config={}, inputs=[], outputs=[], counts={}, warnings=[]
        )
        generate_days(dt.date(2024, 3, 4), 1, tmp_path / "synth", seed=0, scale="small")
        files = [a, b, c, *sorted((tmp_path / "synth").glob("*.dbn.zst*"))]
        assert len(files) > 5
        for p in files:
            assert p.stat().st_mode & 0o777 == mode, (p, oct(p.stat().st_mode))
    finally:
        os.umask(old)
        output._umask.cache_clear()


def test_temporaries_of_killed_runs_are_removed_everywhere(tmp_path: Path) -> None:
    from volfast.io.output import clean_temporaries

    left = [
        tmp_path / "snapshots" / "date=2024-03-04" / ".part-0.parquet.k3j2.tmp",
        tmp_path / "grids" / "date=2024-03-04" / ".part-0.parquet.zz.tmp",
        tmp_path / "days" / "date=2024-03-04" / "._manifest.json.ab.tmp",
        tmp_path / ".build-summary.json.q.tmp",
    ]
    keep = tmp_path / "grids" / "date=2024-03-04" / "part-0.parquet"
    for p in [*left, keep]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    assert clean_temporaries(tmp_path) == len(left)
    assert [p for p in left if p.exists()] == [] and keep.exists()


def test_every_output_goes_through_the_one_atomic_write() -> None:
    """Issue 14, one mechanism per concern: no module writes a file under its final name itself. Renames,
    Parquet, text and CSV writes, figure and torch saves happen only in :mod:`volfast.io.output` or into the
    temporary path its ``atomic_path`` hands out (named ``tmp...`` at every call site)."""
    import re

    import volfast

    direct = re.compile(
        r"os\.(replace|rename)\(|\.write_text\(|\.write_bytes\(|open\([^)]*['\"][wa]b?['\"]"
        r"|(pq|parquet)\.write_table\([^,]+,\s*(?!\s|tmp)|\.savefig\(\s*(?!\s|tmp)|torch\.save\([^,]+,\s*(?!\s|tmp)"
        r"|\.to_(csv|parquet|json)\(\s*(?!\s|index=|\))"
    )
    root = Path(volfast.__file__).parent
    found = []
    for py in sorted(root.rglob("*.py")):
        if py.relative_to(root).as_posix() == "io/output.py":
            continue
        for i, line in enumerate(py.read_text().splitlines(), 1):
            if direct.search(line.split("#")[0]):
                found.append(f"{py.relative_to(root)}:{i}: {line.strip()}")
    assert found == [], "\n".join(found)
