"""Snapshot throughput on a full-scale synthetic day (``volfast synth --scale full``: ~1.3 M mbp-1 records).

Run:  python -m pytest benchmarks/bench_snapshot.py --benchmark-enable -s -p no:cacheprovider
      (set VOLFAST_SNAPSHOT_DAY=/tmp/vf-full to reuse a day made by
      ``volfast synth --start 2024-03-04 --days 1 --out /tmp/vf-full --seed 5 --scale full``)

Groups: decode (databento ``to_ndarray`` chunks, volfast's chunk reader), reduce (C++ reducer over decoded
chunks), end to end (``volfast.snapshot`` from .dbn.zst) and the pandas route a user would write
(``DBNStore.to_df()``, filter the window, stable sort, groupby-last). ``test_bars`` runs every route in
interleaved rounds in one process, asserts the answers agree, prints records/s (median) and peak memory, and
checks the bars on the median of the per-round ratios: end to end >= 20x the pandas route, and end-to-end
throughput >= 70% of decompress+decode alone (databento ``to_ndarray``, what a user's own loop would pay).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import statistics
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
    cached = os.environ.get("VOLFAST_SNAPSHOT_DAY")
    if cached and (Path(cached) / f"glbx-mdp3-{DAY:%Y%m%d}.mbp-1.dbn.zst").is_file():
        out = Path(cached)
    else:
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
    return volfast.take_snapshot(big["mbp"], definitions=big["defs"], cut="15:48", date=DAY, lookback="10m")


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
    np.testing.assert_array_equal(q.bid_size.to_numpy(), ref.bid_sz_00.to_numpy())
    np.testing.assert_array_equal(q.ts_recv.to_numpy(), ref.ts_recv.to_numpy())

    routes = {
        "decompress+decode (databento to_ndarray)": (decode_databento, big_day["mbp"]),
        "decompress+decode (volfast DBNFile)": (decode_volfast, big_day["mbp"]),
        "reduce decoded arrays (C++, 1 thread)": (reduce_chunks, big_day["chunks"], big_day["cut_ns"]),
        "end to end volfast.take_snapshot(.dbn.zst)": (end_to_end, big_day),
        "pandas route (to_df + groupby-last)": (pandas_route, big_day),
    }
    times: dict[str, list[float]] = {k: [] for k in routes}
    rounds = int(os.environ.get("VOLFAST_BENCH_ROUNDS", "5"))
    for _ in range(rounds):  # interleaved: a burst of load from elsewhere hits every route alike
        for name, (fn, *args) in routes.items():
            t0 = time.perf_counter()
            fn(*args)
            times[name].append(time.perf_counter() - t0)
    e2e = times["end to end volfast.take_snapshot(.dbn.zst)"]
    vs_pandas = statistics.median(
        p / e for p, e in zip(times["pandas route (to_df + groupby-last)"], e2e, strict=True)
    )
    vs_decode = statistics.median(
        d / e for d, e in zip(times["decompress+decode (databento to_ndarray)"], e2e, strict=True)
    )

    tracemalloc.start()
    end_to_end(big_day)
    _, peak_e2e = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    size_mb = big_day["mbp"].stat().st_size / 1e6
    lines = [
        f"\nsnapshot benchmark: {n:,} mbp-1 records, {size_mb:.1f} MB .dbn.zst, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python "
        f"{platform.python_version()}, {rounds} interleaved rounds (median)"
    ]
    for name, ts in times.items():
        med = statistics.median(ts)
        lines.append(f"  {name:42s} {med:.3f} s  {n / med / 1e6:7.1f} M rec/s  (min {min(ts):.3f} s)")
    lines.append(
        f"  end to end vs pandas: {vs_pandas:.1f}x (bar 20x); vs decode alone: {vs_decode:.0%} (bar 70%)"
    )
    lines.append(
        f"  peak traced Python memory end to end: {peak_e2e / 2**20:.1f} MiB; "
        f"process max RSS {rss_mib:.0f} MiB"
    )
    print("\n".join(lines))
    assert vs_pandas >= 20, f"end to end only {vs_pandas:.1f}x the pandas route"
    assert vs_decode >= 0.70, f"end to end at {vs_decode:.0%} of decode-alone throughput"
    assert peak_e2e < 64 * 2**20  # bounded: chunks + per-instrument state, not the 100 MB of records
