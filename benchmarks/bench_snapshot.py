"""Snapshot throughput on a full-scale synthetic day (``volfast synth --scale full``: ~1.5 M mbp-1 records).

Run:  python -m pytest benchmarks/bench_snapshot.py --benchmark-enable -s -p no:cacheprovider

Groups: decode (databento ``to_ndarray`` chunks, volfast's chunk reader), reduce (C++ reducer over decoded
chunks), end to end (``volfast.snapshot`` from .dbn.zst) and the pandas route a user would write
(``DBNStore.to_df()``, filter the window, stable sort, groupby-last). ``test_bars`` times each route in the
same process (best of 3), asserts the answers agree, prints records/s and peak memory, and checks the bars:
end to end >= 20x the pandas route, and >= 70% of the throughput of decompress+decode alone.
"""

from __future__ import annotations

import datetime as dt
import platform
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import volfast
from volfast._native import core
from volfast.io import DBNFile
from volfast.snapshot import resolve_cut

pd = pytest.importorskip("pandas")
# DBNStore.from_file leaves its file handles to the garbage collector; that is databento's, not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
db = pytest.importorskip("databento")

DAY = dt.date(2024, 3, 4)
LOOKBACK_NS = 600 * 10**9
CHUNK = 1 << 16


@pytest.fixture(scope="module")
def big_day(tmp_path_factory: pytest.TempPathFactory) -> dict:
    try:
        from volfast.synth import generate_days
    except ImportError:
        pytest.skip("volfast.synth not available")
    out = tmp_path_factory.mktemp("synth_full")
    generate_days(DAY, 1, out, seed=5, scale="full")
    mbp = out / f"glbx-mdp3-{DAY:%Y%m%d}.mbp-1.dbn.zst"
    defs = out / f"glbx-mdp3-{DAY:%Y%m%d}.definition.dbn.zst"
    chunks = list(DBNFile(mbp).iter_chunks(CHUNK))
    n = sum(len(c) for c in chunks)
    cut_ns = resolve_cut("15:48", date=DAY, tz="America/New_York")[0]
    return {"mbp": mbp, "defs": defs, "chunks": chunks, "n": n, "cut_ns": cut_ns}


def decode_databento(path: Path) -> int:
    n = 0
    for a in db.DBNStore.from_file(path).to_ndarray(count=CHUNK):
        n += len(a)
    return n


def decode_volfast(path: Path) -> int:
    return sum(len(a) for a in DBNFile(path).iter_chunks(CHUNK))


def reduce_chunks(chunks: list[np.ndarray], cut_ns: int) -> dict:
    r = core().snapshot.Reducer(cut_ns, LOOKBACK_NS, False)
    for c in chunks:
        r.update(
            c["ts_recv"],
            c["instrument_id"],
            c["bid_px_00"],
            c["ask_px_00"],
            c["bid_sz_00"],
            c["ask_sz_00"],
            c["publisher_id"],
        )
    return r.result()


def end_to_end(big: dict):
    return volfast.snapshot(big["mbp"], definitions=big["defs"], cut="15:48", date=DAY, lookback="10m")


def pandas_route(big: dict):
    """What a user would write: the whole file as a DataFrame, then filter and groupby-last."""
    df = db.DBNStore.from_file(big["mbp"]).to_df()  # defaults: float prices, pretty UTC index, symbols mapped
    cut = pd.Timestamp(big["cut_ns"], tz="UTC")
    lo = pd.Timestamp(big["cut_ns"] - LOOKBACK_NS, tz="UTC")
    w = df[(df.index >= lo) & (df.index <= cut)].reset_index()  # ts_recv is the index
    w = w.sort_values("ts_recv", kind="stable")
    # groupby().last() would skip NaN and silently mix an older bid into a now one-sided quote:
    # take whole rows.
    return w.groupby("instrument_id", sort=True).tail(1).set_index("instrument_id").sort_index()


@pytest.mark.benchmark(group="snapshot-decode")
def test_decode_databento(benchmark, big_day) -> None:
    assert benchmark(decode_databento, big_day["mbp"]) == big_day["n"]


@pytest.mark.benchmark(group="snapshot-decode")
def test_decode_volfast(benchmark, big_day) -> None:
    assert benchmark(decode_volfast, big_day["mbp"]) == big_day["n"]


@pytest.mark.benchmark(group="snapshot-reduce")
def test_reduce_decoded(benchmark, big_day) -> None:
    res = benchmark(reduce_chunks, big_day["chunks"], big_day["cut_ns"])
    assert res["has_quote"].sum() > 0


@pytest.mark.benchmark(group="snapshot-end-to-end")
def test_end_to_end(benchmark, big_day) -> None:
    res = benchmark.pedantic(end_to_end, args=(big_day,), rounds=3, iterations=1)
    assert res.counts["records"] == big_day["n"]


@pytest.mark.benchmark(group="snapshot-end-to-end")
def test_pandas_route(benchmark, big_day) -> None:
    out = benchmark.pedantic(pandas_route, args=(big_day,), rounds=1, iterations=1)
    assert len(out) > 0


def _best(fn, *args, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def test_bars(big_day) -> None:
    n = big_day["n"]
    res = end_to_end(big_day)  # warm-up (imports, page cache)
    ref = pandas_route(big_day)
    # The answers agree: instrument, prices, sizes and quote times of every quoted instrument.
    t = res.to_pandas()
    q = t[t.has_quote].set_index("instrument_id")
    assert q.index.tolist() == ref.index.tolist()
    np.testing.assert_allclose(q.bid.to_numpy(), ref.bid_px_00.to_numpy(), rtol=0, atol=1e-9)  # NaN == NaN
    np.testing.assert_allclose(q.ask.to_numpy(), ref.ask_px_00.to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(q.ts_recv.to_numpy(), ref.ts_recv.to_numpy())

    t_dec_db = _best(decode_databento, big_day["mbp"])
    t_dec_vf = _best(decode_volfast, big_day["mbp"])
    t_red = _best(reduce_chunks, big_day["chunks"], big_day["cut_ns"])
    t_e2e = _best(end_to_end, big_day)
    t_pd = _best(pandas_route, big_day, repeat=1)

    tracemalloc.start()
    end_to_end(big_day)
    _, peak_e2e = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    size_mb = big_day["mbp"].stat().st_size / 1e6
    print(
        f"\nsnapshot benchmark: {n:,} mbp-1 records, {size_mb:.1f} MB .dbn.zst, "
        f"{platform.processor() or platform.machine()}, threads: 1 reducer, "
        f"python {platform.python_version()}\n"
        f"  decompress+decode (databento to_ndarray): {t_dec_db:.3f} s  {n / t_dec_db / 1e6:7.1f} M rec/s\n"
        f"  decompress+decode (volfast DBNFile):      {t_dec_vf:.3f} s  {n / t_dec_vf / 1e6:7.1f} M rec/s\n"
        f"  reduce decoded arrays (C++):              {t_red:.3f} s  {n / t_red / 1e6:7.1f} M rec/s\n"
        f"  end to end volfast.snapshot(.dbn.zst):    {t_e2e:.3f} s  {n / t_e2e / 1e6:7.1f} M rec/s\n"
        f"  pandas route (to_df + groupby-last):      {t_pd:.3f} s  {n / t_pd / 1e6:7.1f} M rec/s\n"
        f"  end to end vs pandas: {t_pd / t_e2e:.1f}x; vs decode alone: {t_dec_db / t_e2e:.0%}\n"
        f"  peak traced Python memory end to end: {peak_e2e / 2**20:.1f} MiB; "
        f"process max RSS {rss_mib:.0f} MiB"
    )
    assert t_pd / t_e2e >= 20, f"end to end only {t_pd / t_e2e:.1f}x the pandas route"
    assert t_dec_db / t_e2e >= 0.70, f"end to end at {t_dec_db / t_e2e:.0%} of decode-alone throughput"
    assert peak_e2e < 256 * 2**20  # bounded: chunks + per-instrument state, not the file
